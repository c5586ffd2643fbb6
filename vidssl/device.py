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


def resolve_device(name: str, key: str) -> torch.device:
    """The value ``name`` of config key ``key`` (e.g. ``eval.davis.device``) as a torch device: auto is cuda when
    torch sees one. A GPU that is not there is a ConfigError naming the key and the setting that runs without it,
    not torch's "no NVIDIA driver" traceback minutes into a run."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            seen = f"torch sees {count} CUDA device(s)" if count else "torch sees no CUDA device"
            raise ConfigError(f"config key '{key}' is {name!r} but {seen}; use cpu or auto (--set {key}=cpu)")
    return device
