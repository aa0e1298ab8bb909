"""train.py under faults: preemption, restarts, broken or interrupted checkpoints, and
resumes whose flags differ from the checkpoint's (docs/TRAINING.md, "Faults and restarts").

The claim checked throughout: a run that is interrupted and started again ends with the
weights and momentum of the uninterrupted run, bit for bit (CPU, --deterministic).
In-process runs use a GE-WRN-10-1 on 256 digits images (8 steps per epoch); the torchrun
runs are real subprocesses with 2 gloo processes and a hard timeout.
"""
import csv
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch

import train
from training import checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_PY = os.path.join(ROOT, "train.py")
TINY = ["--depth", "10", "--width", "1", "--progress", "false", "--device", "cpu", "--deterministic",
        "--batch-size", "32", "--max-train-samples", "256", "--max-val-samples", "64", "--seed", "1",
        "--milestones", "1", "--save-every-minutes", "0"]


def final_state(out):
    return torch.load(os.path.join(out, checkpoint.LAST), weights_only=False)


def assert_same_weights(a, b):
    sa, sb = final_state(a), final_state(b)
    assert (sa["epoch"], sa["global_step"]) == (sb["epoch"], sb["global_step"])
    for k, v in sa["state_dict"].items():
        assert torch.equal(sb["state_dict"][k], v), f"{k} differs"
    for k, v in sa["optimizer"]["state"].items():
        assert torch.equal(sb["optimizer"]["state"][k]["momentum_buffer"], v["momentum_buffer"]), f"momentum {k}"


def step_losses(out):
    with open(os.path.join(out, "steps.csv")) as f:
        return [(r["epoch"], r["step"], r["loss"]) for r in csv.DictReader(f)]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The uninterrupted 2-epoch in-process run everything here is compared with."""
    out = tmp_path_factory.mktemp("straight")
    train.main([*TINY, "--epochs", "2", "--output-dir", str(out)])
    return out


def signal_at_step(monkeypatch, n, signum=signal.SIGTERM):
    """Deliver a real signal to this process at the n-th loss computed (training steps and validation batches)."""
    from training import engine

    real, calls = engine.F.cross_entropy, {"n": 0}

    def hooked(*a, **k):
        calls["n"] += 1
        if calls["n"] == n:
            os.kill(os.getpid(), signum)
        return real(*a, **k)

    monkeypatch.setattr(engine.F, "cross_entropy", hooked)


def test_sigterm_mid_epoch_then_the_same_command_continues_exactly(tmp_path, straight, monkeypatch, capsys):
    out = str(tmp_path / "out")
    cmd = [*TINY, "--epochs", "2", "--output-dir", out]
    signal_at_step(monkeypatch, 12)  # epoch 2, step 3 (8 steps and 1 validation batch in epoch 1)
    with pytest.raises(SystemExit) as exc:
        train.main(cmd)
    assert exc.value.code == 128 + signal.SIGTERM
    log = capsys.readouterr().out
    assert "received SIGTERM: finishing this step" in log
    assert "stopped by SIGTERM at epoch 2 step 3/8" in log and "run the same command again" in log
    state = final_state(out)
    assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == (1, 3, 11)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handlers put back
    monkeypatch.undo()
    train.main(cmd)
    assert "resuming from" in (log := capsys.readouterr().out) and "epoch 2 step 3/8 (global step 11)" in log
    assert_same_weights(straight, out)
    assert step_losses(out) == step_losses(straight)
    assert [r["epoch"] for r in csv.DictReader(open(os.path.join(out, "metrics.csv")))] == ["1", "2"]


def test_corrupted_newest_checkpoint_falls_back_to_the_one_before(tmp_path, straight, capsys):
    out = str(tmp_path / "out")
    train.main([*TINY, "--epochs", "1", "--save-every-steps", "2", "--output-dir", out])
    steps = [s for s, _ in checkpoint.step_files(out)]
    assert steps == [8, 6]  # saves at steps 2, 4, 6 and the epoch's end; the newest 2 kept
    assert os.path.samefile(os.path.join(out, checkpoint.LAST), checkpoint.step_path(out, 8))
    newest = checkpoint.step_path(out, 8)
    with open(newest, "r+b") as f:  # a torn or damaged file
        f.truncate(os.path.getsize(newest) // 2)
    capsys.readouterr()
    train.main([*TINY, "--epochs", "2", "--output-dir", out])
    log = capsys.readouterr().out
    assert f"warning: checkpoint {newest} cannot be read" in log and "falling back to the one before" in log
    assert "epoch 1 step 6/8 (global step 6)" in log
    assert os.path.exists(newest + ".unreadable")
    assert_same_weights(straight, out)


def test_a_kill_during_a_save_leaves_the_previous_checkpoint(tmp_path, straight, capsys):
    """A real SIGKILL in the middle of writing a checkpoint (a child process writing into
    the run's folder); the next start removes its temporary file and continues."""
    out = str(tmp_path / "out")
    train.main([*TINY, "--epochs", "1", "--output-dir", out])
    before = final_state(out)["global_step"]
    child = ("import os, signal, sys, torch; sys.path.insert(0, sys.argv[1]); from training import checkpoint\n"
             "def torn(obj, f):\n    f.write(b'x' * 4096); f.flush(); os.kill(os.getpid(), signal.SIGKILL)\n"
             "checkpoint._serialize = torn\n"
             "checkpoint.save(sys.argv[2], {'global_step': 9}, True)\n")
    proc = subprocess.run([sys.executable, "-c", child, ROOT, out], timeout=120, capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    tmp = [n for n in os.listdir(os.path.join(out, checkpoint.STEP_DIR)) if n.endswith(".tmp")]
    assert len(tmp) == 1 and final_state(out)["global_step"] == before
    capsys.readouterr()
    train.main([*TINY, "--epochs", "2", "--output-dir", out])
    assert "removed 1 temporary file(s) of interrupted checkpoint writes" in capsys.readouterr().out
    assert not [n for n in os.listdir(os.path.join(out, checkpoint.STEP_DIR)) if n.endswith(".tmp")]
    assert_same_weights(straight, out)


def test_disk_full_names_the_file_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    out = str(tmp_path / "out")
    train.main([*TINY, "--epochs", "1", "--output-dir", out])
    real = checkpoint._serialize

    def full(obj, f):  # the bytes go to /dev/full: a genuine ENOSPC from torch.save
        with open("/dev/full", "wb") as dev_full:
            real(obj, dev_full)

    monkeypatch.setattr(checkpoint, "_serialize", full)
    with pytest.raises(SystemExit, match=r"cannot write .*step-000000016\.pth\.tar: no space left on device; "
                                         r"the previous checkpoint .*step-000000008\.pth\.tar is intact"):
        train.main([*TINY, "--epochs", "2", "--output-dir", out])
    monkeypatch.undo()
    assert final_state(out)["global_step"] == 8
    assert not [n for n in os.listdir(os.path.join(out, checkpoint.STEP_DIR)) if n.endswith(".tmp")]


def test_resume_conflicts_are_applied_or_refused(tmp_path, capsys):
    out = str(tmp_path / "out")
    train.main([*TINY, "--epochs", "1", "--save-every-steps", "3", "--output-dir", out])
    # a new lr and milestones take effect from the checkpoint on, and the banner says what is used
    capsys.readouterr()
    train.main([*TINY, "--epochs", "2", "--lr", "0.05", "--milestones", "3", "--wd", "0.001", "--save-every-steps", "3",
                "--output-dir", out])
    log = capsys.readouterr().out
    assert "resume: from the checkpoint's step on, --lr 0.05 (checkpoint: 0.1); --milestones 3 (checkpoint: 1)" in log
    assert "lr now 0.05; --wd 0.001 (checkpoint: 0.0005)" in log and "lr 0.05 (not scaled)" in log
    assert torch.load(os.path.join(out, checkpoint.LAST), weights_only=False)["optimizer"]["param_groups"][0][
        "weight_decay"] == 0.001
    rows = list(csv.DictReader(open(os.path.join(out, "metrics.csv"))))
    assert [(r["epoch"], float(r["lr"])) for r in rows] == [("1", 0.1), ("2", 0.05)]
    # epochs at or below the checkpoint's
    assert train.main([*TINY, "--epochs", "2", "--output-dir", out])["epochs"] == 2
    assert "nothing to do" in capsys.readouterr().out
    with pytest.raises(SystemExit, match=r"--epochs 1 is below the 2 epoch\(s\)"):
        train.main([*TINY, "--epochs", "1", "--output-dir", out])
    # another seed, another model, another data set: another run
    with pytest.raises(SystemExit, match=r"is of another run \(--seed 1, not 2\).*--override-checkpoint"):
        train.main([*TINY, "--epochs", "3", "--seed", "2", "--output-dir", out])
    with pytest.raises(SystemExit, match=r"trained with --model ge_wrn_10_1"):
        train.main([*TINY, "--epochs", "3", "--width", "2", "--output-dir", out])
    with pytest.raises(SystemExit, match=r"data digits with 256 training images, not digits with 320"):
        train.main([*TINY, "--epochs", "3", "--max-train-samples", "320", "--output-dir", out])
    # mid-epoch, another batch size is refused; an older checkpoint never replaces a newer one
    mid = checkpoint.step_path(out, 15)
    assert torch.load(mid, weights_only=False)["step_in_epoch"] == 7
    with pytest.raises(SystemExit, match=r"stopped inside epoch 2 \(step 7\) with --batch-size 32 x 1 process\(es\), "
                                         r"not 16 x 1"):
        train.main([*TINY, "--epochs", "3", "--batch-size", "16", "--resume", mid, "--output-dir", str(tmp_path / "b")])
    other = str(tmp_path / "c")
    train.main([*TINY, "--epochs", "2", "--lr", "0.05", "--milestones", "3", "--wd", "0.001", "--batch-size", "16",
                "--resume", mid, "--override-checkpoint", "--output-dir", other])
    assert "--override-checkpoint: --batch-size 32 x 1 process(es), not 16 x 1: epoch 2 goes on at step 14 of 16" in \
        capsys.readouterr().out
    assert final_state(other)["global_step"] == 15 + 16 - 14
    with pytest.raises(SystemExit, match=r"holds a newer checkpoint \(step 16\) than --resume .*step 15"):
        train.main([*TINY, "--epochs", "3", "--resume", mid, "--output-dir", out])
    with pytest.raises(SystemExit, match=r"--resume none, but --output-dir .* holds checkpoints"):
        train.main([*TINY, "--epochs", "3", "--resume", "none", "--output-dir", out])
    # at an epoch's end a new batch size is taken, and said so
    train.main([*TINY, "--epochs", "3", "--batch-size", "64", "--output-dir", out])
    assert "resume: batch 64 x 1 process(es) from epoch 3 on (checkpoint: 32 x 1)" in capsys.readouterr().out


@pytest.mark.parametrize("argv, match", [
    (["--lr", "-1"], r"--lr must be a number > 0, got -1"),
    (["--variant", "foo"], r"--variant must be theta- \(θ⁻\), theta \(θ\), theta\+ \(θ⁺\) or none, got 'foo'"),
    (["--keep-checkpoints", "0"], r"--keep-checkpoints must be >= 1"),
])
def test_bad_flags_are_one_line_errors(argv, match, capsys):
    with pytest.raises(SystemExit):
        train.main([*TINY, *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("train.py: error:")
    assert re.search(match, err[-1]), err[-1]


def test_batch_larger_than_the_data_is_one_line_error(tmp_path):
    with pytest.raises(SystemExit, match=r"--batch-size 512 is too large: .* the largest allowed is 256$"):
        train.main([*TINY, "--batch-size", "512", "--output-dir", str(tmp_path)])


# ------------------------------------------------------------------ torchrun
DIST = [*TINY, "--epochs", "3", "--save-every-steps", "2"]  # 2 ranks: 4 steps per epoch, 12 in all
DIST_TIMEOUT = 300


def _torchrun():
    exe = os.path.join(os.path.dirname(sys.executable), "torchrun")
    return [exe] if os.path.exists(exe) else [sys.executable, "-m", "torch.distributed.run"]


class Launch:
    """A subprocess in its own session whose merged output is collected by a thread."""

    def __init__(self, cmd, cwd, **env_extra):
        env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **env_extra)
        self.proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True)
        self.lines = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(iter(self.proc.stdout.readline, "")),
                                        daemon=True)
        self._reader.start()

    @property
    def text(self):
        return "".join(self.lines)

    def wait_for(self, needle, deadline):
        while needle not in self.text:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.kill()
                pytest.fail(f"{needle!r} never came:\n{self.text[-4000:]}")
            time.sleep(0.02)

    def finish(self, deadline):
        try:
            self.proc.wait(timeout=max(1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"timed out:\n{self.text[-4000:]}")
        self._reader.join(10)
        return self.proc.returncode

    def kill(self):
        """SIGKILL the launched process and its children (torchrun puts its workers in
        sessions of their own), as when a node is lost."""
        for pid in [self.proc.pid, *children(self.proc.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(30)


def _procs():
    """(pid, parent pid, environment) of every process we may read."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        yield int(pid), ppid, env


def children(parent):
    return [pid for pid, ppid, _ in _procs() if ppid == parent]


def worker_pid(agent_pid, rank):
    """The pid of the torchrun worker (a child of agent_pid) that has RANK=rank."""
    return next((pid for pid, ppid, env in _procs() if ppid == agent_pid and f"RANK={rank}".encode() in env), None)


@pytest.fixture(scope="module")
def straight_two_ranks(tmp_path_factory):
    """The uninterrupted 2-process torchrun run the restarted ones are compared with."""
    out = tmp_path_factory.mktemp("straight2")
    run = Launch([*_torchrun(), "--standalone", "--nproc-per-node", "2", TRAIN_PY, *DIST, "--output-dir", str(out)],
                 cwd=out)
    assert run.finish(time.monotonic() + DIST_TIMEOUT) == 0, run.text[-4000:]
    return out


def test_slow_torchrun_restart_after_a_worker_sigkill_continues_exactly(tmp_path, straight_two_ranks):
    """torchrun --max-restarts 1; rank 1 is SIGKILLed in epoch 2: the workers restart, resume
    from the newest step checkpoint by themselves, and end with the uninterrupted weights."""
    out = tmp_path / "out"
    deadline = time.monotonic() + DIST_TIMEOUT
    run = Launch([*_torchrun(), "--standalone", "--nproc-per-node", "2", "--max-restarts", "1", TRAIN_PY, *DIST,
                  "--output-dir", str(out)], cwd=tmp_path)
    run.wait_for("(global step 6)", deadline)  # epoch 2, step 2
    pid = worker_pid(run.proc.pid, 1)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    assert run.finish(deadline) == 0, run.text[-4000:]
    log = run.text
    assert "torchrun: start 1 of this job's workers" in log and "torchrun: start 2 of this job's workers" in log
    assert "resuming from" in log and "replicas in sync across 2 ranks: yes" in log
    assert_same_weights(straight_two_ranks, out)
    assert step_losses(out) == step_losses(straight_two_ranks)


def test_slow_two_torchrun_nodes_one_killed_and_restarted_continue_exactly(tmp_path, straight_two_ranks):
    """Two torchrun "nodes" (one process each) over the c10d rendezvous on loopback. Node B
    (not the rendezvous host) is killed whole mid-epoch and started again: node A's agent
    restarts its worker, the new round forms, and the job ends with the uninterrupted weights.
    With the agents' default shared TCPStore the new round deadlocks inside torchrun (node A,
    rank 0 again, does not publish MASTER_ADDR for a new agent): the documented launch turns
    the sharing off."""
    import socket

    from training.dist import free_port

    out = tmp_path / "out"
    port = free_port()
    node = [*_torchrun(), "--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint",
            f"127.0.0.1:{port}", "--rdzv-id", "faults", "--max-restarts", "2", TRAIN_PY, *DIST,
            "--output-dir", str(out)]
    deadline = time.monotonic() + DIST_TIMEOUT
    env = {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}
    a = Launch(node, cwd=tmp_path, **env)
    while True:  # node A hosts the rendezvous store before node B starts
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or a.proc.poll() is not None:
                a.kill()
                pytest.fail(f"node A never listened on {port}:\n{a.text[-4000:]}")
            time.sleep(0.1)
    b = Launch(node, cwd=tmp_path, **env)
    try:
        while "(global step 6)" not in a.text + b.text:
            if time.monotonic() > deadline or a.proc.poll() is not None or b.proc.poll() is not None:
                pytest.fail(f"no checkpoint at step 6:\nA:\n{a.text[-3000:]}\nB:\n{b.text[-3000:]}")
            time.sleep(0.02)
        b.kill()  # the agent and its worker at once, as a lost node
        b = Launch(node, cwd=tmp_path, **env)
        assert b.finish(deadline) == 0, b.text[-4000:]
        assert a.finish(deadline) == 0, a.text[-4000:]
    finally:
        a.kill()
        b.kill()
    log = a.text + b.text
    assert "resuming from" in log and "replicas in sync across 2 ranks: yes" in log
    assert_same_weights(straight_two_ranks, out)
