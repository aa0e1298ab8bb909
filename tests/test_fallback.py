"""The pure-PyTorch fallback passes the same op tests as the compiled kernels.

Reruns test_ops.py in a fresh interpreter with GENET_OPS_LOAD_EXTENSION=0, since the
extension, once loaded, cannot be unloaded from this one.
"""
import os
import subprocess
import sys

import pytest

import genet_ops

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.skipif(not genet_ops.backend_info()["extension_loaded"], reason="already running on the fallback")
def test_op_suite_passes_without_the_extension():
    env = dict(os.environ, GENET_OPS_LOAD_EXTENSION="0")
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", os.path.join(HERE, "test_ops.py")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
    tail = "\n".join(proc.stdout.splitlines()[-15:])
    assert proc.returncode == 0, f"fallback run failed:\n{tail}\n{proc.stderr[-2000:]}"
    assert " passed" in tail and "failed" not in tail, tail


def test_fallback_warns_and_reports_reference():
    code = (
        "import warnings\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    import genet_ops\n"
        "assert any('compiled kernels not loaded' in str(m.message) for m in w), [str(m.message) for m in w]\n"
        "info = genet_ops.backend_info()\n"
        "assert not info['extension_loaded'] and 'GENET_OPS_LOAD_EXTENSION' in info['extension_error']\n"
        "assert all(d['cpu'] == 'reference' for d in info['kernels'].values()), info\n"
    )
    env = dict(os.environ, GENET_OPS_LOAD_EXTENSION="0")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.skipif(not genet_ops.backend_info()["extension_loaded"], reason="extension not built")
def test_bare_import_loads_the_extension():
    """`import genet_ops` alone (torch not imported first) must find _C's libraries."""
    code = "import genet_ops; assert genet_ops.backend_info()['extension_loaded'], genet_ops.backend_info()"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=os.path.dirname(HERE))
    assert proc.returncode == 0, proc.stderr[-2000:]
