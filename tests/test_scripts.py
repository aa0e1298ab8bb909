"""The seed's entry points, test/*.sh (ModelZoo conventions), run as a user runs them:
bash, from another folder, on a small CIFAR-format tree with smoke-size overrides, on the
CPU. What is checked is what ModelZoo's tooling reads: the summary lines on stdout, the case
log and its keys, the train log's seed lines, the loss file, and the exit codes.

Three real runs (1-2 minutes together on 2 busy cores): train_performance_1p.sh; train_full_1p.sh,
then train_eval_8p.sh (8 gloo processes) on the checkpoint it left. The argument errors stop
before any training.
"""
import json
import os
import re
import subprocess
import sys

import pytest

from oracle import write_cifar_tree

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ["train_full_1p.sh", "train_performance_1p.sh", "train_full_8p.sh", "train_performance_8p.sh",
           "train_eval_8p.sh"]
SMOKE = ["--depth=10", "--width=1", "--max_train_samples=128", "--max_val_samples=48"]
PERF_KEYS = ["Network", "RankSize", "BatchSize", "DeviceType", "CaseName", "ActualFPS", "TrainingTime", "ActualLoss"]
FULL_KEYS = PERF_KEYS[:7] + ["TrainAccuracy", "ActualLoss", "E2ETrainingTime"]
EVAL_KEYS = PERF_KEYS[:6] + ["TrainAccuracy", "ActualLoss", "E2ETrainingTime"]


def run_script(name, args, cwd, out, timeout=300):
    env = dict(os.environ, PYTHON=sys.executable, GENET_TEST_OUTPUT=str(out), PYTHONWARNINGS="ignore",
               OMP_NUM_THREADS="1")
    env.pop("ASCEND_DEVICE_ID", None)
    return subprocess.run(["bash", os.path.join(ROOT, "test", name), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def summary(stdout):
    """The 'Final ... : N' lines -> {label: float}."""
    return {m[1]: float(m[2]) for m in re.finditer(r"^(Final Performance images/sec|Final Train Accuracy|"
                                                  r"E2E Training Duration sec) : ([0-9.]+)$", stdout, re.M)}


def case_log(path):
    """'Key = value' lines, in order."""
    with open(path) as f:
        return [tuple(part.strip() for part in ln.split("=", 1)) for ln in f if ln.strip()]


def last_number(log, pattern):
    return float(re.findall(pattern, log)[-1])


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    write_cifar_tree(root / "data")
    return root


def expected_device():
    import torch

    try:
        import torch_npu  # noqa: F401

        if torch.npu.is_available():
            return "npu"
    except ImportError:
        pass
    return "cuda" if torch.cuda.is_available() else "cpu"


def test_performance_1p(cifar, tmp_path):
    """The device picked by itself; the bounded default (2 epochs); the seed's AMP O2;
    what the case log, loss file and stdout say agree with the train log."""
    out = tmp_path / "out"
    proc = run_script("train_performance_1p.sh", ["--data_path=./data", "--batch_size=32", *SMOKE], cifar, out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    s = summary(proc.stdout)
    assert set(s) == {"Final Performance images/sec", "E2E Training Duration sec"}, proc.stdout
    log = open(out / "0" / "train_0.log").read()
    banner = next(ln for ln in log.splitlines() if ln.startswith("model "))
    assert f"device {expected_device()} x 1 process(es)" in banner and "precision O2" in banner, banner
    assert len(re.findall(r"^\[epoch \d/2\].*\* Err@1 [0-9.]+ Err@5 [0-9.]+ .*FPS@all", log, re.M)) == 2
    fps = last_number(log, r"FPS@all ([0-9.]+)")
    assert s["Final Performance images/sec"] == fps > 0
    case = case_log(out / "0" / "GENET_bs32_1p_perf.log")
    assert [k for k, _ in case] == PERF_KEYS
    c = dict(case)
    assert (c["Network"], c["RankSize"], c["BatchSize"], c["CaseName"]) == ("GENET", "1", "32", "GENET_bs32_1p_perf")
    assert float(c["ActualFPS"]) == fps
    assert float(c["TrainingTime"]) == pytest.approx(32 * 1000 / fps, abs=0.01)  # ms per step
    losses = open(out / "0" / "train_GENET_bs32_1p_perf_loss.txt").read().split()
    assert len(losses) == 2 * 4  # 2 epochs x 128 / 32 steps
    assert float(c["ActualLoss"]) == float(losses[-1])
    assert abs(last_number(log, r"\] lr \S+ loss ([0-9.]+)") - sum(map(float, losses[4:])) / 4) < 1e-4


def test_full_1p_then_eval_8p_on_its_checkpoint(cifar, tmp_path):
    """float32 (--amp=false, passed on to train.py) so that 8 processes must find exactly the
    accuracy the 1-process run reported for its checkpoint."""
    out = tmp_path / "out"
    proc = run_script("train_full_1p.sh", ["--data_path=./data", "--batch_size=32", "--epochs=1", "--amp=false",
                                           *SMOKE], cifar, out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    s = summary(proc.stdout)
    log = open(out / "0" / "train_0.log").read()
    err1 = last_number(log, r"\* Err@1 ([0-9.]+)")
    assert s["Final Train Accuracy"] == pytest.approx(100 - err1, abs=1e-3)
    assert "precision float32" in log and "epochs 1..1" in log
    case = case_log(out / "0" / "GENET_bs32_1p_acc.log")
    assert [k for k, _ in case] == FULL_KEYS
    c = dict(case)
    assert c["CaseName"] == "GENET_bs32_1p_acc" and float(c["TrainAccuracy"]) == s["Final Train Accuracy"]
    assert int(c["E2ETrainingTime"]) == s["E2E Training Duration sec"]
    ckpt = out / "0" / "full_1p" / "model_best.pth.tar"
    trained = json.load(open(out / "0" / "full_1p" / "summary.json"))

    ev = run_script("train_eval_8p.sh", ["--data_path=./data", f"--resume={ckpt}", "--amp=false", "--device=cpu",
                                         *SMOKE], cifar, out)
    assert ev.returncode == 0, ev.stdout + ev.stderr
    es = summary(ev.stdout)
    log = open(out / "0" / "train_0.log").read()
    assert "device cpu x 8 process(es)" in log and f"checkpoint {ckpt}" in log
    assert es["Final Train Accuracy"] == pytest.approx(trained["acc1"], abs=1e-3)
    assert es["Final Performance images/sec"] == last_number(log, r"FPS@all ([0-9.]+)") > 0
    case = case_log(out / "0" / "GENET_bs1024_8p_eval.log")
    assert [k for k, _ in case] == EVAL_KEYS
    c = dict(case)
    assert (c["RankSize"], c["CaseName"]) == ("8", "GENET_bs1024_8p_eval")
    assert float(c["ActualLoss"]) == pytest.approx(trained["val_loss"], rel=1e-5)
    assert os.path.exists(out / "0" / "GENET_bs32_1p_acc.log")  # the training record stays


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("args, message", [
    ([], "--data_path is required"),
    (["--data_path="], "--data_path is required"),
    (["--data_path", "./data"], "--data_path needs a value"),
    (["--data_path=./nowhere"], "is not a directory"),
    (["--data_path=./data", "--batch_size=12"], None),  # not a multiple of 8 on 8p; fine on 1p (stopped below)
])
def test_argument_errors_exit_1_before_training(cifar, tmp_path, script, args, message):
    if message is None:
        if script.endswith("_1p.sh"):
            args = args + ["--epochs=0"]
            message = "--epochs must be a positive integer"
        else:
            message = "must be a multiple of the 8 devices"
    proc = run_script(script, args, cifar, tmp_path / "out", timeout=60)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.startswith("[Error] ") and message in proc.stderr, proc.stderr
    assert "Final" not in proc.stdout and not (tmp_path / "out").exists()


def test_eval_without_checkpoint_and_train_py_failure(cifar, tmp_path):
    out = tmp_path / "out"
    proc = run_script("train_eval_8p.sh", ["--data_path=./data", "--device=cpu"], cifar, out, timeout=60)
    assert proc.returncode == 1 and "full_8p/model_best.pth.tar: no such checkpoint" in proc.stderr, proc.stderr
    assert not out.exists()
    # train.py's own refusal (argparse: status 2) is the script's exit status, with the log's end shown
    proc = run_script("train_performance_1p.sh", ["--data_path=./data", "--device=cpu", "--bogus=1"], cifar, out)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "train.py exited with status 2" in proc.stderr and "unrecognized arguments: --bogus=1" in proc.stderr
    assert "Final" not in proc.stdout
