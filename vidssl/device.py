"""The one place a config's device name becomes a torch device (train.device, eval.*.device), and torchrun's
WORLD_SIZE a process count."""
from __future__ import annotations

import os

import torch

from vidssl.errors import ConfigError, VidsslError


def world_size() -> int:
    """Processes in the run, from torchrun's WORLD_SIZE (1 without it); a value that is no positive integer is a
    one-line error, not a traceback from int()."""
    text = os.environ.get("WORLD_SIZE", "1")
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise VidsslError(f"WORLD_SIZE={text!r} is not a positive integer: torchrun sets it for its processes; unset "
                          "it to run as one process")
    return value


def local_rank(device_kind: str) -> int:
    """This process's LOCAL_RANK (torchrun sets it): on CUDA, the GPU it trains on, so one is required."""
    value = os.environ.get("LOCAL_RANK")
    if value is None:
        # with several GPUs visible every rank would take cuda:0 (NCCL: "Duplicate GPU detected"); one visible GPU
        # per process (srun --gpus-per-task=1) is this process's own
        if device_kind == "cuda" and torch.cuda.device_count() != 1:
            raise VidsslError("WORLD_SIZE is set but LOCAL_RANK is not: launch with torchrun, which sets both, or "
                              "set LOCAL_RANK to each process's GPU index on its node")
        return 0
    try:
        index = int(value)
    except ValueError:
        raise VidsslError(f"LOCAL_RANK={value!r} is not a GPU index on this node (torchrun sets it)") from None
    if device_kind == "cuda" and not 0 <= index < torch.cuda.device_count():
        raise VidsslError(f"LOCAL_RANK={index}, but this node has {torch.cuda.device_count()} GPU(s): start "
                          "at most that many processes per node (torchrun --nproc_per_node)")
    return index


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse ``train.precision`` fp16 off CUDA (its loss scaling is CUDA's); one rule for `vidssl train` and for
    pretrain, which checks it before mining rather than after it."""
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("train.precision 'fp16' needs CUDA; use auto, bf16 or fp32 on the CPU")


def resolve_device(name: str, key: str, flag: str | None = None) -> torch.device:
    """The value ``name`` of config key ``key`` (e.g. ``eval.davis.device``) as a torch device: auto is cuda when
    torch sees one. A GPU that is not there is a ConfigError naming the key (or the command-line ``flag`` that set
    it, as typed) and the setting that runs without it, not torch's "no NVIDIA driver" traceback minutes into a
    run."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            seen = f"torch sees {count} CUDA device(s)" if count else "torch sees no CUDA device"
            if flag is not None:
                raise ConfigError(f"{flag} {name}: {seen}; use {flag} cpu (or auto)")
            raise ConfigError(f"config key '{key}' is {name!r} but {seen}; use cpu or auto (--set {key}=cpu)")
    return device
