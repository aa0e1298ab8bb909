"""Devices and distributed setup: torchrun (env://), the seed's
--multiprocessing-distributed spawn, or a manual --world-size/--rank/--dist-url launch.

Process-group backends: nccl on CUDA, hccl on Ascend NPU, gloo on CPU.
"""
from __future__ import annotations

import os
import socket
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

BACKENDS = {"cuda": "nccl", "npu": "hccl", "cpu": "gloo"}
_joined = False  # this process joined a process group (see leave_process)


def import_npu():
    """Import torch_npu (registers the 'npu' device), or a clear error."""
    try:
        import torch_npu  # noqa: F401
    except ImportError as exc:
        raise SystemExit(f"error: --device npu needs torch_npu (Ascend's PyTorch adapter): {exc}") from None


def resolve_device_type(requested: str | None) -> str:
    """'cuda', 'npu' or 'cpu': the one asked for (checked), else the best available."""
    if requested in (None, "", "auto"):
        if torch.cuda.is_available():
            return "cuda"
        try:
            import torch_npu  # noqa: F401

            if torch.npu.is_available():
                return "npu"
        except ImportError:
            pass
        return "cpu"
    requested = requested.split(":")[0].lower()
    if requested == "gpu":
        requested = "cuda"
    if requested == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda asked for but torch.cuda.is_available() is False")
    if requested == "npu":
        import_npu()
        if not torch.npu.is_available():
            raise SystemExit("error: --device npu asked for but no NPU is available")
    if requested not in BACKENDS:
        raise SystemExit(f"error: --device must be cpu, cuda or npu, got {requested!r}")
    return requested


def device_count(device_type: str) -> int:
    if device_type == "cuda":
        return torch.cuda.device_count()
    if device_type == "npu":
        return torch.npu.device_count()
    return 1


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    attempt: int | None = None  # under torchrun: which start of the job's workers this is (1, 2, ...)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and "LOCAL_RANK" in os.environ


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def elastic_store(rank: int, world_size: int, timeout: timedelta):
    """Under torchrun, a view of the agent's store that no earlier attempt has written.

    torchrun's agent hosts one TCPStore for all the restarts of a job (shared with its
    rendezvous since torch 2.4) and env:// puts no per-attempt prefix on the keys, so
    a restarted worker can read the address a killed worker of the previous attempt
    published there and gloo's connectFullMesh waits on that dead peer. Restart counts
    are per agent (a replaced node starts again at 0), so the prefix comes from a
    handshake: rank 0 takes a new generation number from a counter in the store and
    hands it to each rank in answer to a nonce that rank made up, which no earlier
    attempt can have answered.
    """
    host, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    store = dist.TCPStore(host, port, world_size, is_master=False, timeout=timeout)
    deadline = time.monotonic() + timeout.total_seconds()

    def wait():
        if time.monotonic() > deadline:
            raise RuntimeError(f"rank {rank}: no answer from the other ranks in the torchrun store {host}:{port} "
                               f"within --dist-timeout {timeout.total_seconds() / 60:g} min")
        time.sleep(0.01)

    key = "genet_ops/attempt"
    if rank == 0:
        gen = store.add(f"{key}/generation", 1)
        answered, pending = {}, set(range(1, world_size))
        while pending:
            for r in sorted(pending):
                if store.check([f"{key}/{gen}/ok/{r}"]):
                    pending.discard(r)
                elif store.check([f"{key}/hello/{r}"]):
                    nonce = store.get(f"{key}/hello/{r}")
                    if answered.get(r) != nonce:
                        store.set(f"{key}/answer/{r}", nonce + b":" + str(gen).encode())
                        answered[r] = nonce
            if pending:
                wait()
    else:
        nonce = uuid.uuid4().hex.encode()
        store.set(f"{key}/hello/{rank}", nonce)
        while True:
            if store.check([f"{key}/answer/{rank}"]):
                got, _, gen = store.get(f"{key}/answer/{rank}").partition(b":")
                if got == nonce:
                    gen = int(gen)
                    store.set(f"{key}/{gen}/ok/{rank}", b"1")
                    break
            wait()
    return dist.PrefixStore(f"{key}/{gen}/pg", store), gen


def setup(device_type: str, backend: str | None, rank: int, world_size: int, local_rank: int,
          dist_url: str | None, timeout_min: float = 10.0) -> DistInfo:
    """Pick this process's device and, when world_size > 1, join the process group;
    a collective that waits longer than timeout_min fails instead of hanging."""
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    elif device_type == "npu":
        torch.npu.set_device(local_rank)
        device = torch.device("npu", local_rank)
    else:
        device = torch.device("cpu")
    info = DistInfo(rank, world_size, local_rank, device)
    if world_size > 1 and not dist.is_initialized():
        backend = backend or BACKENDS[device_type]
        timeout = timedelta(minutes=timeout_min)
        kwargs = {"device_id": device} if device_type == "cuda" else {}
        if dist_url is None and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
            kwargs["store"], info.attempt = elastic_store(rank, world_size, timeout)
        else:
            kwargs["init_method"] = dist_url or "env://"
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size, timeout=timeout, **kwargs)
        global _joined
        _joined = True
    return info


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def leave_process(code: int | str | None = 0) -> None:
    """End a process that joined a process group without finalizing the interpreter; a
    no-op in any other process. A gloo worker thread drops a finished collective's
    tensors a moment after the caller resumes, and destroy_process_group() does not join
    those threads: when the drop lands while Python is finalizing, the thread cannot take
    the GIL and std::terminate aborts a run that succeeded (SIGABRT at exit, cf.
    pytorch/pytorch#179291; how often: docs/STATUS.md, measurements behind code choices)."""
    if not _joined:
        return
    if isinstance(code, str):  # a SystemExit message: printed as Python would, exit status 1
        print(code, file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_buffers(module: torch.nn.Module, info: DistInfo) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics). DDP broadcasts
    them at the start of each forward, so after the last training step of an epoch
    every rank holds its own; validation and checkpoints need one set."""
    if info.distributed:
        for b in module.buffers():
            dist.broadcast(b, src=0)


def replicas_in_sync(module: torch.nn.Module, info: DistInfo) -> bool:
    """True if every rank holds bit-identical parameters and buffers (a checksum of the
    raw bytes, gathered and compared)."""
    if not info.distributed:
        return True
    import hashlib

    h = hashlib.sha256()
    for t in list(module.parameters()) + list(module.buffers()):
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    digests = [None] * info.world_size
    dist.all_gather_object(digests, h.hexdigest())
    return len(set(digests)) == 1


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()
