"""What counts as a referring expression's text, for the loaders and the checks (no torch here)."""
from pathlib import Path
from typing import Any, Union


def is_sentence(text: Any) -> bool:
    """Whether an expression's text is a string with a visible character."""
    return isinstance(text, str) and bool(text.strip())


def expression_text(text: Any, source: Union[Path, str], where: str) -> str:
    """``text`` when it is a sentence (``is_sentence``); a ValueError naming the file ``source`` and the
    expression (``where``) otherwise: an empty sentence would be trained or segmented as a real one."""
    if not is_sentence(text):
        raise ValueError(f"{source}: {where} has no expression text ({text!r}); every expression needs a sentence")
    return text
