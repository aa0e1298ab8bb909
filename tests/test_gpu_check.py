"""benchmarks/gpu_check.sh without a GPU: a dry run leaves in $OUT only what the device
tool brings back (at most 6 plain files, names of letters, digits, '.', '_', '-', at most
two folders down, 16 MiB each) and a summary.json that records versions and every step;
the summary survives a run cut mid-line; bench_ops streams rows, honours its deadline
and builds A/B cases from genet_ops._tuning's interface (a fake module here)."""
import json
import os
import re
import subprocess
import sys
import tarfile
import types
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_ops  # noqa: E402
import gpu_check  # noqa: E402

STEPS = ["versions", "build", "check_cuda", "check_triton", "bw_cuda", "racecheck", "synccheck", "memcheck",
         "bw_triton", "ab", "compile", "memory", "tests", "train"]
BENCH_STEPS = {"check_cuda", "check_triton", "bw_cuda", "bw_triton", "ab", "compile"}


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu_check")
    env = dict(os.environ, GPU_CHECK_DRY_RUN="1", GPU_CHECK_SKIP_BUILD="1", OUT=str(tmp / "out"),
               GPU_CHECK_SCRATCH=str(tmp / "scratch"), PYTHON=sys.executable)
    env.pop("TRITON_INTERPRET", None)  # as on the GPU machine
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], env=env, capture_output=True,
                          text=True, timeout=900)
    return proc, tmp / "out"


def test_dry_run_leaves_only_what_the_device_tool_brings_back(dry_run):
    proc, out = dry_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    files = [p for p in out.rglob("*")]
    assert sorted(p.name for p in files) == ["logs.tar.gz", "summary.json", "table.txt"]
    assert len(files) <= 6
    for p in files:
        assert p.is_file() and not p.is_symlink()
        assert re.fullmatch(r"[A-Za-z0-9._-]+", p.name)
        assert len(p.relative_to(out).parts) <= 3  # at most two folders down
        assert p.stat().st_size <= 16 * 2**20
    with tarfile.open(out / "logs.tar.gz") as tar:
        names = tar.getnames()
    assert "steps.jsonl" in names and "rows.jsonl" in names and "logs/versions.log" in names
    # the short table is what the run prints last
    assert "genet_ops GPU check (DRY RUN" in proc.stdout.split("=== [")[-1]


def test_dry_run_summary_records_versions_and_every_step(dry_run):
    _, out = dry_run
    s = json.loads((out / "summary.json").read_text())
    assert s["dry_run"] is True and s["budget_s"] > 0
    v = s["versions"]
    assert v["torch"] == torch.__version__ and v["python"] and "triton" in v and "nvcc" in v and "driver" in v
    steps = {st["step"]: st for st in s["steps"]}
    assert [st["step"] for st in s["steps"]] == STEPS
    assert steps["versions"]["status"] == "ok"
    assert steps["build"]["status"] == "skipped" and "GPU_CHECK_SKIP_BUILD" in steps["build"]["note"]
    for name in STEPS[2:]:
        assert steps[name]["status"] == "skipped", steps[name]
        assert steps[name]["note"].startswith("dry run: needs a GPU"), steps[name]
    for name in BENCH_STEPS - {"ab"}:  # their bench_ops commands parsed and planned their cases
        assert re.search(r"bench_ops --dry-run: dry run: [1-9]\d* cases", steps[name]["note"]), steps[name]
    assert "FAILED" not in json.dumps(s["steps"])
    assert s["rows"] == [] and set(s["targets"]) == {"cuda", "triton"}
    assert (out / "table.txt").read_text().startswith("genet_ops GPU check (DRY RUN")


def test_summary_keeps_every_finished_row_of_a_cut_run(tmp_path):
    (tmp_path / "logs").mkdir()
    base = {"op": "gather_excite", "shape_name": "wrn-s1", "dtype": "bfloat16", "layout": "nchw", "extent": 0,
            "provider": "fused"}
    rows = [dict(base, mode="forward", ms=0.1, frac_clone=0.9), dict(base, mode="backward", ms=0.2, frac_clone=0.7),
            dict(base, mode="check", provider="triton", ok=False, err_y=1.0, tol_y=0.1, nan_y=True, note="")]
    with open(tmp_path / "rows.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
        f.write('{"op": "gather_excite", "mode": "fu')  # the line being written when the run was killed
    (tmp_path / "steps.jsonl").write_text(json.dumps({"step": "bw_cuda", "status": "cut", "rc": 124, "seconds": 9,
                                                      "limit": 9, "note": "cut off"}) + "\n")
    out = tmp_path / "out"
    out.mkdir()
    gpu_check.summary(str(tmp_path), str(out))
    s = json.loads((out / "summary.json").read_text())
    assert s["rows"] == rows
    assert s["targets"]["cuda"]["forward_vs_clone"] == {"met": 1, "of": 1, "missed": []}
    assert s["targets"]["cuda"]["backward_vs_clone"]["met"] == 0
    assert s["targets"]["cuda"]["backward_vs_clone"]["missed"] == ["gather_excite/wrn-s1/bfloat16/nchw/0 0.70"]
    text = (out / "table.txt").read_text()
    assert "correctness triton: 0/1 cases ok" in text and "FAIL gather_excite wrn-s1" in text
    assert "bw_cuda" in text and "cut" in text


def test_summary_times_the_lean_backward_next_to_the_input_keeping_one(tmp_path):
    (tmp_path / "logs").mkdir()
    base = {"op": "excite", "shape_name": "wrn-s2", "dtype": "bfloat16", "layout": "cl", "extent": 2}
    rows = [dict(base, provider="fused", mode="backward", ms=0.5), dict(base, provider="fused_lean", mode="backward",
                                                                        ms=0.25),
            dict(base, provider="fused_lean", mode="full", ms=0.5)]  # no fused full row: no ratio
    with open(tmp_path / "rows.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    out = tmp_path / "out"
    out.mkdir()
    gpu_check.summary(str(tmp_path), str(out))
    assert gpu_check.lean_vs_input(rows) == {"backward": [0.5]}
    text = (out / "table.txt").read_text()
    assert "fused_lean backward" in text and "median 0.500x" in text and "fused_lean full" not in text
    assert "fused_lean: op" in text  # its own rows in the bandwidth table
    # the bench command the check runs plans fused_lean cases (dry run: no kernels needed)
    assert bench_ops.main(["--device", "cuda", "--providers", "fused,fused_lean,clone", "--dry-run"]) == 0


def test_bench_ops_streams_rows_and_stops_at_its_deadline(tmp_path):
    jsonl = tmp_path / "rows.jsonl"
    rc = bench_ops.main(["--device", "cpu", "--quick", "--ops", "gather_excite", "--extents", "0,2",
                         "--layouts", "nchw", "--providers", "fused,clone", "--modes", "forward", "--budget", "0.01",
                         "--dtype", "float32", "--jsonl", str(jsonl), "--deadline", "0", "--no-files", "--tag", "t"])
    assert rc == 3  # the first case ran, the deadline had passed before the second
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [(r["provider"], r["mode"], r["extent"], r["run"]) for r in rows] == [("fused", "forward", 0, "t"),
                                                                                 ("clone", "forward", 0, "t")]
    assert all(r["ms"] > 0 for r in rows)


def _fake_tuning():
    values = {"k_cuda": "old", "k_triton": "a"}
    knob = types.SimpleNamespace
    fake = types.ModuleType("genet_ops._tuning")
    fake.KNOBS = {
        "k_cuda": knob(values=("old", "new"), backend="cuda", ops=("gather_excite", "gather_excite_backward"),
                       applies=lambda layout, shape, e: layout == "channels_last" and e == 0, doc=""),
        "k_triton": knob(values=("a", "b", "c"), backend="triton", ops=("excite",),
                         applies=lambda layout, shape, e: shape[2] == 7, doc=""),
    }
    fake.get = values.__getitem__
    fake.set = values.__setitem__
    fake.using = None
    return fake


def test_ab_cases_follow_the_knobs(monkeypatch):
    import genet_ops

    fake = _fake_tuning()
    monkeypatch.setitem(sys.modules, "genet_ops._tuning", fake)
    monkeypatch.setattr(genet_ops, "_tuning", fake, raising=False)
    monkeypatch.setattr(bench_ops.Fused, "unavailable", lambda self, device, op: None)
    monkeypatch.setattr(bench_ops.Triton, "unavailable", lambda self, device, op: None)
    args = bench_ops.parse_args(["--device", "cuda", "--ab", "--dtype", "bfloat16", "--extents", "0,2,4,8"])
    plan = bench_ops.plan_cases(args, "cuda")
    cuda = [(c, ps, m) for c, ps, m in plan if ps[0].knob == "k_cuda"]
    triton = [(c, ps, m) for c, ps, m in plan if ps[0].knob == "k_triton"]
    # k_cuda: channels_last, extent 0, every stage, gather_excite forward and backward
    assert sorted(c.shape_name for c, _, _ in cuda) == sorted(n for n, _ in bench_ops.shapes_for("all", "cuda"))
    assert all(c.layout == "cl" and c.extent == 0 and c.op == "gather_excite" and m == ["forward", "backward"]
               for c, _, m in cuda)
    # k_triton: the 7x7 stage, both layouts, Triton's extents (0 and 2) only, excite forward
    assert sorted((c.layout, c.extent) for c, _, _ in triton) == [("cl", 0), ("cl", 2), ("nchw", 0), ("nchw", 2)]
    assert all(c.shape_name == "rn50-s4" and c.op == "excite" and m == ["forward"] for c, _, m in triton)
    _, providers, _ = triton[0]
    assert [p.name for p in providers] == ["triton:k_triton=a", "triton:k_triton=b", "triton:k_triton=c", "clone"]
    assert [p.default for p in providers[:3]] == [True, False, False]
    rows = bench_ops.ab_compare([
        {"knob": "k", "default": True, "mode": "forward", "ms": 2.0},
        {"knob": "k", "default": False, "mode": "forward", "ms": 1.0},
    ])
    assert [r["vs_default"] for r in rows] == [1.0, 2.0]


def test_ab_is_skipped_without_tuning(monkeypatch):
    import genet_ops

    monkeypatch.setitem(sys.modules, "genet_ops._tuning", None)  # import raises ImportError
    monkeypatch.delattr(genet_ops, "_tuning", raising=False)
    assert bench_ops.main(["--device", "cuda", "--ab", "--dry-run"]) == 4
