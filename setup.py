"""Builds genet_ops._C: the C++ CPU kernels always, the CUDA kernels when nvcc and a
CUDA build of torch are both present (GENET_OPS_CUDA=0 turns them off, =1 insists);
and genet_ops._C_ascend, the Ascend kernels, where CANN and torch_npu are found
(csrc/ascend/README.md).

    python setup.py build_ext --inplace      # or: pip install --no-build-isolation -e .
"""
import glob
import os
import shutil
import sys
import sysconfig

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _log(msg):
    print(f"genet_ops setup: {msg}", file=sys.stderr)


def _find_cuda_home():
    """CUDA_HOME / CUDA_PATH, else the toolkit above the nvcc on PATH, else /usr/local/cuda.
    The nvcc on PATH may be a wrapper script (e.g. /usr/local/bin/nvcc) whose parent
    folder is no toolkit: that guess counts only with include/cuda_runtime.h beside it."""
    for var in ("CUDA_HOME", "CUDA_PATH"):
        home = os.environ.get(var)
        if home and os.path.exists(os.path.join(home, "bin", "nvcc")):
            return home
    nvcc = shutil.which("nvcc")
    if nvcc:
        home = os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))
        if os.path.exists(os.path.join(home, "include", "cuda_runtime.h")):
            return home
    if os.path.exists("/usr/local/cuda/bin/nvcc"):
        return "/usr/local/cuda"
    return None


def _pip_cuda_includes():
    """Headers that pip's nvidia-* wheels install (cusparse.h etc.): torch's CUDA
    headers include them, and a bare toolkit may lack them."""
    site = sysconfig.get_paths()["purelib"]
    found = glob.glob(os.path.join(site, "nvidia", "cu*", "include"))  # CUDA 13 wheels
    found += glob.glob(os.path.join(site, "nvidia", "*", "include"))   # CUDA 12 wheels
    return sorted({p for p in found if os.path.isdir(p)})


def _cuda_wanted():
    flag = os.environ.get("GENET_OPS_CUDA", "auto").lower()
    if flag in ("0", "off", "false", "no"):
        _log("CUDA kernels off (GENET_OPS_CUDA=0)")
        return False
    import torch

    home = _find_cuda_home()
    reason = None
    if torch.version.cuda is None:
        reason = "this torch is not a CUDA build"
    elif home is None:
        reason = "no nvcc found (set CUDA_HOME)"
    if reason:
        if flag in ("1", "on", "true", "yes"):
            raise SystemExit(f"genet_ops setup: GENET_OPS_CUDA=1 but {reason}")
        _log(f"CUDA kernels skipped: {reason}")
        return False
    os.environ["CUDA_HOME"] = home  # read by torch.utils.cpp_extension at import
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
    _log(f"CUDA kernels on: CUDA_HOME={home}, TORCH_CUDA_ARCH_LIST={os.environ['TORCH_CUDA_ARCH_LIST']}")
    return True


def _ascend_extension(cpp_extension):
    """genet_ops._C_ascend (csrc/ascend/build.py): the Ascend C kernels and their PrivateUse1
    registration, a module of its own built only where CANN, SOC_VERSION and torch_npu are
    found; otherwise one line says why and the list is empty."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("genet_ascend_build", os.path.join(ROOT, "csrc", "ascend", "build.py"))
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    kw = build.configure(ROOT, _log)
    if not kw:
        return []
    flags = kw.pop("extra_compile_args")
    return [cpp_extension.CppExtension(kw.pop("name"), kw.pop("sources"), extra_compile_args={"cxx": flags},
                                       py_limited_api=False, **kw)]


def _extensions():
    with_cuda = _cuda_wanted()
    from torch.utils import cpp_extension

    rel = lambda pattern: sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))
    sources = rel("csrc/*.cpp") + rel("csrc/cpu/*.cpp")
    cxx_flags = ["-O3", "-fopenmp"]
    kwargs = dict(
        include_dirs=[os.path.join(ROOT, "csrc")],
        extra_link_args=["-fopenmp"],
        py_limited_api=False,
    )
    ascend = _ascend_extension(cpp_extension)
    if not with_cuda:
        return [cpp_extension.CppExtension("genet_ops._C", sources, extra_compile_args={"cxx": cxx_flags}, **kwargs)] + ascend, cpp_extension
    sources += rel("csrc/cuda/*.cu") + rel("csrc/cuda/*.cpp")
    kwargs["include_dirs"] += _pip_cuda_includes()
    # No --use_fast_math: the kernels' only transcendental is one sigmoid per tile, and a
    # precise expf keeps the fp32 outputs within the reference's own error budget.
    nvcc_flags = ["-O3", "-lineinfo", "--expt-relaxed-constexpr"]
    return [
        cpp_extension.CUDAExtension(
            "genet_ops._C",
            sources,
            extra_compile_args={"cxx": cxx_flags + ["-DGENET_OPS_WITH_CUDA"], "nvcc": nvcc_flags + ["-DGENET_OPS_WITH_CUDA"]},
            **kwargs,
        )
    ] + ascend, cpp_extension


ext_modules, cpp_extension = _extensions()

setup(
    name="genet-ops",
    version="0.1.0",
    description="Fused gather-excite (GENet) operators for PyTorch: CPU, CUDA, Triton and Ascend kernels",
    packages=find_packages(include=["genet_ops", "genet_ops.*"]),  # models/ and train.py run from the checkout
    python_requires=">=3.10",
    install_requires=["torch>=2.6"],
    ext_modules=ext_modules,
    cmdclass={"build_ext": cpp_extension.BuildExtension.with_options(no_python_abi_suffix=False)},
    zip_safe=False,
)
