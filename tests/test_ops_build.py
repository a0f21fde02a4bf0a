"""Real compilation of the MultiScaleDeformableAttention extension (no GPU needed; skipped without a toolkit).

Both build paths compile for ONE architecture (TORCH_CUDA_ARCH_LIST=9.0) into temporary directories:
``setup.py build_ext`` (the ahead-of-time build) and ``python -m rvos.models.ops.build`` (the JIT build, then loaded
through the real loader with RVOS_MSDA_JIT=1).  The built modules are imported in fresh processes; the compiled
CPU loops, which share the bilinear code with the CUDA kernels, are checked against the reference cases.
"""
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rvos.models.ops import build as msda_build

from conftest import REFERENCE_DIR, REPO_ROOT

logger = logging.getLogger(__name__)

BUILD_ARCH = "9.0"
CASES_PATH = REFERENCE_DIR / "msdeform" / "cases.pt"
TOLERANCE = {"float64": 1e-10, "float32": 1e-5}
GRAD_KEYS = ("grad_value", "grad_sampling_locations", "grad_attention_weights")
CUDA_HOME = msda_build.find_cuda_home()

pytestmark = pytest.mark.skipif(
    CUDA_HOME is None or not msda_build.is_cuda_toolkit(Path(CUDA_HOME)),
    reason="no CUDA toolkit found (bin/nvcc + include/cuda_runtime.h): set CUDA_HOME to compile the extension",
)

# Runs in a fresh process: loads a built module by path and writes what the tests inspect.
PROBE_SCRIPT = """
import importlib.util, sys, torch
module_name, module_path, cases_path, out_path = sys.argv[1:5]
spec = importlib.util.spec_from_file_location(module_name, module_path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
results = {"build_info": dict(module.build_info()), "im2col_step": {}, "cases": {}, "errors": {}}
for batch in range(1, 41):
    for requested in range(1, 11):
        results["im2col_step"][(batch, requested)] = module.effective_im2col_step(batch, requested)
for name, case in torch.load(cases_path, weights_only=False).items():
    for dtype in ("float64", "float32"):
        d = case[dtype]
        inputs = [d["value"], d["spatial_shapes"], d["level_start_index"], d["sampling_locations"],
                  d["attention_weights"]]
        results["cases"][(name, dtype)] = {"output": module.forward(*inputs, 64),
                                           "grads": module.backward(*inputs, d["grad_output"], 64)}
bad_calls = {
    "half_value": lambda: module.forward(inputs[0].half(), *inputs[1:], 64),
    "levels_do_not_cover_value": lambda: module.forward(inputs[0][:, :-1].contiguous(), *inputs[1:], 64),
    "zero_im2col_step": lambda: module.forward(*inputs, 0),
    "grad_output_shape": lambda: module.backward(*inputs, d["grad_output"][:, :-1], 64),
}
for name, call in bad_calls.items():
    try:
        call()
        results["errors"][name] = None
    except RuntimeError as error:
        results["errors"][name] = str(error)
torch.save(results, out_path)
"""


def _build_env() -> dict:
    env = dict(os.environ, CUDA_HOME=CUDA_HOME, TORCH_CUDA_ARCH_LIST=BUILD_ARCH, FORCE_CUDA="1", MAX_JOBS="2")
    env.pop("RVOS_MSDA_JIT", None)
    # ninja is installed beside the interpreter (virtual environment bin/)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def _run(command, env, timeout=900, cwd=REPO_ROOT):
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - start
    command_line = " ".join(map(str, command))
    assert result.returncode == 0, f"{command_line} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result, seconds


def _probe(module_name: str, module_path: Path, out_path: Path) -> dict:
    _run([sys.executable, "-c", PROBE_SCRIPT, module_name, str(module_path), str(CASES_PATH), str(out_path)],
         env=_build_env(), timeout=300)
    return torch.load(out_path, weights_only=False)


@pytest.fixture(scope="module")
def aot_build(tmp_path_factory):
    root = tmp_path_factory.mktemp("msda_setup_py")
    _, seconds = _run([sys.executable, "setup.py", "build_ext", "--build-lib", str(root / "lib"),
                       "--build-temp", str(root / "temp")], env=_build_env())
    logger.info("setup.py build_ext (one arch) took %.1f s", seconds)
    built = sorted((root / "lib" / "rvos" / "models" / "ops").glob(f"{msda_build.AOT_MODULE_NAME}.*"))
    return root, built, seconds


@pytest.fixture(scope="module")
def aot_probe(aot_build):
    root, built, _ = aot_build
    assert len(built) == 1, built
    return _probe(msda_build.AOT_MODULE_NAME, built[0], root / "probe.pt")


def test_setup_py_builds_the_extension(aot_build, record_property):
    _, built, seconds = aot_build
    record_property("compile_seconds", round(seconds, 1))
    assert len(built) == 1 and built[0].stat().st_size > 0


def test_built_module_records_its_build(aot_probe):
    info = aot_probe["build_info"]
    assert info["with_cuda"] is True
    assert info["cuda_arch_list"] == BUILD_ARCH
    assert info["torch_version"] == torch.__version__
    assert info["cuda_runtime_version"].split(".")[0] == str(torch.version.cuda).split(".")[0]


def test_compiled_im2col_step_is_largest_divisor(aot_probe):
    for (batch, requested), step in aot_probe["im2col_step"].items():
        expected = max(d for d in range(1, min(batch, requested) + 1) if batch % d == 0)
        assert step == expected, (batch, requested, step)


def test_compiled_cpu_loops_match_reference_cases(aot_probe):
    cases = torch.load(CASES_PATH, weights_only=False)
    assert set(aot_probe["cases"]) == {(name, dtype) for name in cases for dtype in TOLERANCE}
    for (name, dtype), result in aot_probe["cases"].items():
        reference = cases[name][dtype]
        assert (result["output"] - reference["output"]).abs().max().item() <= TOLERANCE[dtype], (name, dtype)
        for grad, key in zip(result["grads"], GRAD_KEYS):
            assert (grad - reference[key]).abs().max().item() <= TOLERANCE[dtype], (name, dtype, key)


def test_compiled_op_rejects_bad_inputs_with_clear_errors(aot_probe):
    expected_messages = {
        "half_value": "computes in float32 or float64",
        "levels_do_not_cover_value": "spatial_shapes cover",
        "zero_im2col_step": "im2col_step must be >= 1",
        "grad_output_shape": "grad_output must be [N, Lq, n_heads * d_head]",
    }
    for name, message in expected_messages.items():
        assert aot_probe["errors"][name] is not None and message in aot_probe["errors"][name], name


def test_jit_build_is_found_by_the_loader(tmp_path):
    """``python -m rvos.models.ops.build`` compiles into a cache dir; RVOS_MSDA_JIT=1 makes the loader use it. An
    in-place build would take precedence, so this runs on a copy of ``rvos`` and ``models`` without it."""
    repo = tmp_path / "repo"
    for package in ("rvos", "models"):
        shutil.copytree(REPO_ROOT / package, repo / package,
                        ignore=shutil.ignore_patterns(f"{msda_build.AOT_MODULE_NAME}.*", "__pycache__"))
    build_dir = tmp_path / "jit"
    _, seconds = _run([sys.executable, "-m", "rvos.models.ops.build", "--build-dir", str(build_dir)], env=_build_env(),
                      cwd=repo)
    logger.info("JIT build (one arch) took %.1f s", seconds)
    loader = ("import json\nfrom rvos.models.ops.extension import get_extension, extension_unavailable_reason\n"
              "module = get_extension()\n"
              "print(json.dumps({'file': module and module.__file__, 'info': module and dict(module.build_info()),"
              " 'reason': extension_unavailable_reason()}))\n")
    env = dict(_build_env(), RVOS_MSDA_JIT="1", RVOS_MSDA_BUILD_DIR=str(build_dir))
    result, _ = _run([sys.executable, "-c", loader], env=env, timeout=600, cwd=repo)
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["file"] is not None, loaded["reason"]
    assert Path(loaded["file"]).resolve().parent == build_dir.resolve()
    assert loaded["info"]["cuda_arch_list"] == BUILD_ARCH
