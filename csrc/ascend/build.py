"""The guarded Ascend part of the genet_ops build, called from setup.py.

    configure(root, log) -> dict of Extension arguments for genet_ops._C_ascend, or None

Returns None, after logging ONE line that says why, unless all of these hold:
  * GENET_OPS_ASCEND is not 0/off (=1 turns a missing piece into an error instead);
  * a CANN toolkit: ASCEND_HOME_PATH or ASCEND_TOOLKIT_HOME names an existing folder
    (`source <CANN>/set_env.sh` sets both);
  * SOC_VERSION names an Atlas A2/A3 SoC (Ascend910B1..B4, Ascend910_93xx);
  * cmake is on PATH and torch_npu imports.
Otherwise it builds the Ascend C kernels with CMake (csrc/ascend/CMakeLists.txt, CANN's
ascendc_library) into build/ascend/, copies libgenet_ascend_kernels.so into genet_ops/,
and returns what the separate extension module genet_ops._C_ascend needs (sources,
include and library paths, link libraries, rpath). genet_ops._C (CPU / CUDA) never links
anything from here, so an Ascend link or load problem cannot take it down.
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys

SUPPORTED_SOC_PREFIXES = ("ascend910b", "ascend910_93")
KERNEL_LIB = "genet_ascend_kernels"
# The host launcher's own needs, then what CANN's tiling archive (libtiling_api.a, which
# PlatformAscendCManager lives in) pulls in: without register / exe_graph / c_sec, the
# first `import genet_ops._C_ascend` fails with an undefined symbol.
LINK_LIBS = ("torch_npu", "ascendcl", "tiling_api", "platform", "register", "exe_graph", "c_sec")
SOURCES = ("csrc/ascend/launcher.cpp", "csrc/ascend/tiling.cpp", "csrc/ascend/module.cpp", "csrc/genet_ops.cpp")


def _cann_home():
    for var in ("ASCEND_HOME_PATH", "ASCEND_TOOLKIT_HOME"):
        path = os.environ.get(var)
        if path and os.path.isdir(path):
            return path
    return None


def why_not():
    """None when the Ascend part can be built here, else the reason in a few words."""
    flag = os.environ.get("GENET_OPS_ASCEND", "auto").lower()
    if flag in ("0", "off", "false", "no"):
        return "GENET_OPS_ASCEND=0"
    home = _cann_home()
    if home is None:
        return "no CANN toolkit (set ASCEND_HOME_PATH or ASCEND_TOOLKIT_HOME, e.g. source <CANN>/set_env.sh)"
    soc = os.environ.get("SOC_VERSION", "")
    if not soc:
        return "SOC_VERSION is not set (e.g. Ascend910B3; see npu-smi info)"
    if not soc.lower().startswith(SUPPORTED_SOC_PREFIXES):
        return f"SOC_VERSION={soc} is not an Atlas A2/A3 SoC (Ascend910B*, Ascend910_93*)"
    if shutil.which("cmake") is None:
        return "cmake is not on PATH"
    try:
        import torch_npu  # noqa: F401
    except Exception as exc:  # ImportError, or torch_npu failing on a broken CANN
        return f"torch_npu does not import ({type(exc).__name__}: {exc})"
    return None


def _run(cmd, log):
    log("$ " + " ".join(cmd))
    subprocess.run(cmd, check=True)


def build_kernels(root, log):
    """CMake-build the kernels; returns (library folder, generated header folder)."""
    src = os.path.join(root, "csrc", "ascend")
    build = os.path.join(root, "build", "ascend")
    out = os.path.join(build, "out")
    jobs = str(max(1, (os.cpu_count() or 2) // 2))
    _run(["cmake", "-S", src, "-B", build,
          f"-DSOC_VERSION={os.environ['SOC_VERSION']}",
          f"-DASCEND_CANN_PACKAGE_PATH={_cann_home()}",
          f"-DCMAKE_INSTALL_PREFIX={out}",
          f"-DASCEND_PYTHON_EXECUTABLE={sys.executable}",
          # GENET_OPS_ASCEND_SANITIZE=1: kernels instrumented for mssanitizer (npu_check.sh)
          f"-DGENET_ASCEND_SANITIZER={'ON' if os.environ.get('GENET_OPS_ASCEND_SANITIZE') == '1' else 'OFF'}",
          "-DCMAKE_BUILD_TYPE=Release"], log)
    _run(["cmake", "--build", build, "-j", jobs], log)
    _run(["cmake", "--install", build], log)
    libs = glob.glob(os.path.join(out, "lib*", f"lib{KERNEL_LIB}.so"))
    headers = os.path.join(out, "include", KERNEL_LIB)
    if not libs or not glob.glob(os.path.join(headers, "aclrtlaunch_genet_*.h")):
        raise SystemExit(f"genet_ops setup: the CMake build of the Ascend kernels left no lib{KERNEL_LIB}.so "
                         f"or aclrtlaunch_genet_*.h under {out}")
    return os.path.dirname(libs[0]), headers


def configure(root, log):
    reason = why_not()
    if reason is not None:
        if os.environ.get("GENET_OPS_ASCEND", "").lower() in ("1", "on", "true", "yes"):
            raise SystemExit(f"genet_ops setup: GENET_OPS_ASCEND=1 but {reason}")
        log(f"Ascend kernels skipped: {reason}")
        return None

    import torch_npu

    home = _cann_home()
    npu_dir = os.path.dirname(os.path.realpath(torch_npu.__file__))
    arch = f"{os.uname().machine}-linux"
    # CANN's and torch_npu's libraries, checked before the (slow) kernel build.
    system_dirs = [d for d in (os.path.join(npu_dir, "lib"), os.path.join(home, "lib64"),
                               os.path.join(home, arch, "lib64")) if os.path.isdir(d)]
    missing = missing_libs(LINK_LIBS, system_dirs)
    if missing:
        raise SystemExit(f"genet_ops setup: CANN / torch_npu libraries not found: {', '.join(missing)} "
                         f"(searched {', '.join(system_dirs) or 'nothing: no lib folder exists'})")
    lib_dir, header_dir = build_kernels(root, log)
    pkg_dir = os.path.join(root, "genet_ops")  # next to _C_ascend*.so, found through $ORIGIN
    shutil.copy2(os.path.join(lib_dir, f"lib{KERNEL_LIB}.so"), pkg_dir)
    log(f"Ascend kernels on: SOC_VERSION={os.environ['SOC_VERSION']}, CANN={home}, torch_npu={npu_dir}")

    include_dirs = [os.path.join(root, "csrc"), os.path.join(root, "csrc", "ascend"), header_dir,
                    os.path.join(npu_dir, "include"), os.path.join(npu_dir, "include", "third_party", "acl", "inc"),
                    os.path.join(home, "include"), os.path.join(home, arch, "include")]
    return {
        "name": "genet_ops._C_ascend",
        "sources": list(SOURCES),
        "include_dirs": [d for d in include_dirs if os.path.isdir(d)],
        "library_dirs": [pkg_dir, lib_dir] + system_dirs,
        "libraries": [KERNEL_LIB, *LINK_LIBS],
        # GENET_OPS_CHECKS_ONLY: csrc/genet_ops.cpp without the schemas (they are _C's).
        "extra_compile_args": ["-O2", "-DGENET_OPS_CHECKS_ONLY"],
        # $ORIGIN finds the kernel library; torch_npu's lib (libtorch_npu.so) and CANN's lib64
        # on the rpath, so the import needs no LD_LIBRARY_PATH beyond what set_env.sh sets.
        "extra_link_args": ["-Wl,-rpath,$ORIGIN", f"-Wl,-rpath,{lib_dir}"] + [f"-Wl,-rpath,{d}" for d in system_dirs],
    }


def missing_libs(names, dirs):
    """The names in `names` with no lib<name>.so / lib<name>.a in any of `dirs`."""
    def found(name):
        return any(os.path.exists(os.path.join(d, f"lib{name}{ext}")) for d in dirs for ext in (".so", ".a"))
    return [n for n in names if not found(n)]
