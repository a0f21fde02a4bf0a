"""Imports flow one way through the layers of docs/ARCHITECTURE.md, and every project import goes through ``rvos``.

A module may import modules of its own layer and of the layers below it, never above. Lazy imports inside
functions count too. The check reads the source (``ast``), so it sees every import without running any.
"""
import ast
from pathlib import Path
from typing import Dict, List, Optional

from conftest import REPO_ROOT

# Bottom to top. Each entry: the layer's name and the checkout folders / root modules it holds.
LAYERS = (
    ("util", ("util",)),
    ("models", ("models",)),
    ("opts", ("opts",)),
    ("datasets", ("datasets",)),
    ("evaluation", ("evaluation",)),
    ("predict", ("predict",)),
    ("ensemble", ("ensemble",)),
    ("entry points", ("engine", "main", "inference", "tools", "rvos")),
)
RANK: Dict[str, int] = {part: rank for rank, (_, parts) in enumerate(LAYERS) for part in parts}
LAYER_NAME = {part: name for name, parts in LAYERS for part in parts}


def _component(path: Path, root: Path) -> str:
    """The first name under ``rvos`` of the module at ``path`` (a folder, or a root module's stem)."""
    relative = path.relative_to(root)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(["rvos"] + [p for p in parts if p != "rvos"])


def _imported_components(tree: ast.AST, module: str, is_package: bool) -> List[tuple]:
    """(line, imported project component or None, the import as written) of every import in ``tree``."""
    found = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "rvos":
                names = [f"rvos.{alias.name}" for alias in node.names]
            else:
                names = [target]
        else:
            continue
        for name in names:
            first, _, rest = name.partition(".")
            if first == "rvos":
                component = rest.partition(".")[0] or "rvos"
                found.append((node.lineno, component, name))
            elif first in RANK and first != "rvos":
                found.append((node.lineno, None, name))
    return found


def layer_violations(root: Path) -> List[str]:
    """Every import in the project tree at ``root`` that runs against the layers, or bypasses ``rvos``."""
    problems = []
    sources = [p for part in RANK for p in ([root / f"{part}.py"] + sorted((root / part).rglob("*.py")))]
    for path in sources:
        if not path.is_file():
            continue
        own = _component(path, root)
        module = _module_name(path, root)
        tree = ast.parse(path.read_text(), filename=str(path))
        for line, component, written in _imported_components(tree, module, path.name == "__init__.py"):
            where = f"{path.relative_to(root)}:{line}"
            if component is None:
                problems.append(f"{where}: `{written}` bypasses the rvos package (import rvos.{written})")
            elif component in RANK and RANK[component] > RANK[own]:
                problems.append(f"{where}: {LAYER_NAME[own]} imports {written}, from the higher layer "
                                f"{LAYER_NAME[component]}")
    return problems


def test_imports_follow_the_layers():
    problems = layer_violations(REPO_ROOT)
    assert not problems, "imports against the layers (docs/ARCHITECTURE.md):\n" + "\n".join(problems)


def _write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_the_check_reports_an_upward_import_and_a_bypass(tmp_path):
    """The check fails on a tree with an upward import (lazy, in a function), a relative one across packages and
    an import that bypasses rvos, naming file and line."""
    _write(tmp_path, "util/__init__.py", "")
    _write(tmp_path, "util/box.py", "def f():\n    from rvos.models.build import build_model\n")
    _write(tmp_path, "models/__init__.py", "")
    _write(tmp_path, "models/sub/__init__.py", "")
    _write(tmp_path, "models/sub/x.py", "from ...predict import engine\nfrom ..layers import MLP\n")
    _write(tmp_path, "datasets/__init__.py", "")
    _write(tmp_path, "datasets/y.py", "import util.misc\nfrom rvos import opts\n")
    problems = layer_violations(tmp_path)
    assert any(p.startswith("util/box.py:2: util imports rvos.models.build") for p in problems), problems
    assert any(p.startswith("models/sub/x.py:1: models imports rvos.predict") for p in problems), problems
    assert any(p.startswith("datasets/y.py:1: `util.misc` bypasses the rvos package") for p in problems), problems
    assert len(problems) == 3, problems  # ..layers (same layer) and rvos.opts (below datasets) are allowed


def _first_line_docstring(path: Path) -> Optional[str]:
    doc = ast.get_docstring(ast.parse(path.read_text()))
    return doc.splitlines()[0] if doc else None


def test_every_package_says_what_it_holds():
    """Each top-level package opens with a docstring (what lives there), as docs/ARCHITECTURE.md describes it."""
    for part in RANK:
        init = REPO_ROOT / part / "__init__.py"
        if init.is_file():
            assert _first_line_docstring(init), f"{init.relative_to(REPO_ROOT)} has no docstring"
