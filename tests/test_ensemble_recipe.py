"""Recipe mistakes fail before any work with the recipe file and line; every preset parses."""
import subprocess
import sys

import pytest

from conftest import REPO_ROOT
from ensemble_world import RECIPE, make_world
from rvos.ensemble.recipe import load_recipe, RecipeError


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("w")
    make_world(root, videos=2)
    return root


@pytest.mark.parametrize("old,new,needle,message", [
    ("    min_votes: half", "    min_vote: half", "min_vote:", "unknown key 'min_vote'"),
    ("    inputs: [first, d, a]", "    inputs: [first, e, a]", "[first, e, a]", "unknown input 'e'"),
    ("    op: vote\n    inputs: [first", "    op: average\n    inputs: [first", "op: average",
     "unknown operator 'average'"),
    ("  c: {type: pth, path: c.pth}", "  c: {type: pth, path: cc.pth}", "cc.pth", "does not exist"),
    ("  d: {type: png, path: d}", "  d: {type: jpg, path: d}", "type: jpg", "type 'jpg' is not one of"),
    ("    grouping: consecutive_pairs", "    grouping: pairs", "grouping: pairs", "grouping 'pairs'"),
    ("    key_frame: {rule: product, inputs: [a, b, c]}", "    key_frame: {rule: best, inputs: [a, b, c]}",
     "rule: best", "rule 'best'"),
    ("    min_votes: majority", "    min_votes: 4", "min_votes: 4", "min_votes 4 is outside 1..3"),
    ("    min_votes: half", "    min_votes: 0", "min_votes: 0", "min_votes 0 is outside 1..6"),
    ("    min_votes: half", "    min_votes: 5", "min_votes: 5", "exceeds the 3 votes of an unpaired expression"),
    ("    inputs: [first, d, a]", "    inputs: [first, d, d]", "[first, d, d]", "input d is listed more than once"),
    ("inputs: [a, b, c]}", "inputs: [a, a, c]}", "inputs: [a, a, c]}", "key_frame input a is listed more than once"),
    ("frames: frames", "frames: nonexistent", "frames: nonexistent", "frames folder"),
])
def test_mistake_names_file_and_line_before_any_work(world, tmp_path, old, new, needle, message):
    text = RECIPE.replace(old, new)
    assert text != RECIPE
    path = world / f"bad_{abs(hash(new))}.yaml"
    path.write_text(text)
    with pytest.raises(RecipeError) as err:
        load_recipe(path, output=tmp_path / "out")
    assert str(err.value).startswith(f"{path}:{line_of(text, needle)}: ")
    assert message in str(err.value)
    assert not (tmp_path / "out").exists()


def test_cli_exits_2_on_a_bad_recipe(world, tmp_path):
    path = world / "typo.yaml"
    path.write_text(RECIPE.replace("rounds:", "round:"))
    result = subprocess.run([sys.executable, str(REPO_ROOT / "tools/ensemble.py"), str(path), "--output",
                             str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert f"{path}:" in result.stderr and "unknown key 'round'" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("preset", sorted(p.name for p in (REPO_ROOT / "configs/ensemble").glob("*.yaml")))
def test_presets_parse(preset, reference_dir, tmp_path):
    recipe = load_recipe(REPO_ROOT / "configs/ensemble" / preset, root=reference_dir / "ensemble",
                         output=tmp_path / "out")
    assert recipe.rounds and recipe.final == recipe.rounds[-1].name
