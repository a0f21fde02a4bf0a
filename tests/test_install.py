"""Installing the project shadows nothing.

A fresh virtual environment gets the project installed the documented way (``pip install -e .``, here without
the CUDA op: ``RVOS_BUILD_OP=0``) beside Hugging Face ``datasets``. Outside the checkout, one Python process
then imports both: ``datasets`` is Hugging Face's, the project is ``rvos`` (``rvos.datasets``, ``rvos.models``),
and no generic name (``models``, ``util``, ``tools``) is importable. The fresh environment reuses this one's
packages (torch, Hugging Face ``datasets``) through a ``.pth`` file instead of downloading them again.
"""
import json
import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

from conftest import REPO_ROOT

PROBE = textwrap.dedent("""
    import importlib.util, json
    import datasets
    import rvos.datasets, rvos.models, rvos.opts
    from rvos.models import build_model
    print(json.dumps({
        "hf_datasets_file": datasets.__file__,
        "hf_has_load_dataset": hasattr(datasets, "load_dataset"),
        "rvos_datasets_file": rvos.datasets.__file__,
        "rvos_file": __import__("rvos").__file__,
        "generic_names_found": [name for name in ("models", "util", "tools", "evaluation", "predict", "opts")
                                if importlib.util.find_spec(name) is not None],
    }))
""")


def _run(command, **kwargs):
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, **kwargs)
    assert result.returncode == 0, f"{' '.join(map(str, command))} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def fresh_env(tmp_path_factory):
    pytest.importorskip("datasets", reason="Hugging Face datasets is installed by scripts/setup_env.sh "
                                           "(requirements-extras.txt)")
    root = tmp_path_factory.mktemp("install")
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    purelib = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (purelib / "reuse_test_environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = dict(os.environ, RVOS_BUILD_OP="0", PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.pop("PYTHONPATH", None)
    _run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--no-build-isolation",
          "-e", str(REPO_ROOT)], env=env, cwd=root)
    outside = root / "elsewhere"
    outside.mkdir()
    return venv, outside, env


def test_installed_project_and_hugging_face_datasets_import_side_by_side(fresh_env):
    venv, outside, env = fresh_env
    result = _run([str(venv / "bin" / "python"), "-c", PROBE], cwd=outside, env=env)
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["hf_has_load_dataset"], found
    assert "site-packages" in found["hf_datasets_file"], found
    assert Path(found["rvos_datasets_file"]) == REPO_ROOT / "datasets" / "__init__.py"
    assert Path(found["rvos_file"]) == REPO_ROOT / "rvos" / "__init__.py"
    assert found["generic_names_found"] == [], found


def test_installed_console_commands_run_outside_the_checkout(fresh_env):
    venv, outside, env = fresh_env
    result = _run([str(venv / "bin" / "rvos-evaluate"), "--help"], cwd=outside, env=env)
    assert "--protocol" in result.stdout
    result = _run([str(venv / "bin" / "rvos-check-submission"), "--help"], cwd=outside, env=env)
    assert "usage" in result.stdout.lower()
