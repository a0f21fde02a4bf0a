"""Install the project (editable) and build the MultiScaleDeformableAttention CUDA extension.

    pip install -e . --no-build-isolation          # needs PyTorch installed first
    python setup.py build_ext --inplace            # extension only, placed at models/ops/_msda*.so

The distribution claims one import name, ``rvos``: the checkout's folders (``models/``, ``datasets/``, ...) are
its subpackages (``rvos.models``, ``rvos.datasets``; see rvos/__init__.py), so nothing generic such as
``datasets`` or ``util`` shadows another package.  It also adds the console commands ``rvos-train``,
``rvos-infer``, ``rvos-evaluate``, ``rvos-check-dataset`` and ``rvos-check-submission``.  RVOS_BUILD_OP=0 skips
the extension (an install for the Python API and the commands only; PyTorch is then not needed to install).

The extension is built when a CUDA toolkit is found (CUDA_HOME / CUDA_PATH, nvcc on PATH or /usr/local/cuda);
no GPU is needed at build time.  FORCE_CUDA=1 makes a missing toolkit an error instead of a skip.
TORCH_CUDA_ARCH_LIST selects the architectures (e.g. "9.0", or "8.0;8.6;9.0+PTX"); see docs/OPS.md.
"""
import importlib.util
import os
import sys
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
CONSOLE_SCRIPTS = [
    "rvos-train = rvos.main:main",
    "rvos-infer = rvos.inference:main",
    "rvos-evaluate = rvos.tools.evaluate:main",
    "rvos-check-dataset = rvos.tools.check_dataset:main",
    "rvos-check-submission = rvos.tools.check_submission:main",
]


def load_build_helpers():
    """models/ops/build.py loaded by path: importing the models package would import the whole model."""
    spec = importlib.util.spec_from_file_location("rvos_msda_build", ROOT / "models" / "ops" / "build.py")
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    return helpers


def extension_kwargs():
    """``ext_modules`` / ``cmdclass`` for setup(), or {} when the extension is skipped."""
    if os.environ.get("RVOS_BUILD_OP", "1") == "0":
        return {}
    try:
        import torch  # noqa: F401
    except ImportError:
        sys.exit("PyTorch must be installed before building (use `pip install -e . --no-build-isolation`)")
    helpers = load_build_helpers()
    force_cuda = os.environ.get("FORCE_CUDA", "0") == "1"
    if helpers.find_cuda_home() is None:
        if force_cuda:
            sys.exit("FORCE_CUDA=1 but no CUDA toolkit was found: set CUDA_HOME to a directory with bin/nvcc")
        print("rvos setup: no CUDA toolkit found (set CUDA_HOME); skipping the MultiScaleDeformableAttention "
              "extension, the pure-PyTorch path will be used", file=sys.stderr)
        return {}
    cuda_home = helpers.ensure_cuda_home()
    cuda_arch_list = helpers.resolve_cuda_arch_list()
    os.environ["TORCH_CUDA_ARCH_LIST"] = cuda_arch_list  # read by BuildExtension when compiling
    print(f"rvos setup: building the MultiScaleDeformableAttention extension with CUDA_HOME={cuda_home}, "
          f"TORCH_CUDA_ARCH_LIST={cuda_arch_list}", file=sys.stderr)

    from torch.utils.cpp_extension import BuildExtension, CUDAExtension

    class BuildExtensionWithInfo(BuildExtension):
        """Writes the generated build-info header into the build's temp dir before compiling."""

        def build_extensions(self):
            header_dir = helpers.write_build_info_header(Path(self.build_temp) / "rvos_generated", cuda_arch_list)
            for extension in self.extensions:
                extension.include_dirs.append(str(header_dir))
            super().build_extensions()

    extension = CUDAExtension(
        name=f"rvos.models.ops.{helpers.AOT_MODULE_NAME}",
        sources=helpers.source_files(relative_to=ROOT),
        extra_compile_args=helpers.compile_args(),
    )
    return {"ext_modules": [extension], "cmdclass": {"build_ext": BuildExtensionWithInfo}}


setup(
    name="rvos",
    version="0.1.0",
    description="Referring video object segmentation: the ReferFormer family in one codebase",
    python_requires=">=3.9",
    packages=["rvos"],
    # Where the extension module rvos.models.ops._msda is placed (the checkout's models/ops folder).
    package_dir={"rvos.models.ops": "models/ops"},
    entry_points={"console_scripts": CONSOLE_SCRIPTS},
    zip_safe=False,
    **extension_kwargs(),
)
