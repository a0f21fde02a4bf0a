"""Keyword options (the Python API's, the zoo's) as the command line that sets them, so the one parser (opts.py)
checks and converts them exactly as for ``inference.py`` / ``main.py``."""
import argparse
from typing import Any, Dict, List

import yaml


def options_to_argv(parser: argparse.ArgumentParser, options: Dict[str, Any]) -> List[str]:
    """Keyword options (``backbone="swin_l_p4w7"``, ``with_box_refine=True``) as the command line that sets them,
    so the parser checks and converts them as for ``inference.py``; an unknown name is a ValueError."""
    actions = {action.dest: action for action in parser._actions if action.option_strings}
    argv: List[str] = []
    for key, value in options.items():
        if key not in actions:
            raise ValueError(f"unknown option {key!r} (options are the command line's: see python inference.py --help)")
        action = actions[key]
        flag = max(action.option_strings, key=len)
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            if bool(value) == isinstance(action, argparse._StoreTrueAction):
                argv.append(flag)
        elif value is None:
            continue
        elif isinstance(value, (list, tuple)):
            argv += [flag, *(str(v) for v in value)]
        elif isinstance(value, dict):
            argv += [flag, yaml.safe_dump(value, default_flow_style=True).strip()]
        else:
            argv += [flag, str(value)]
    return argv
