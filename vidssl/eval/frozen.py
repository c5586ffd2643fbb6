"""Models held for an evaluation: eval mode (BatchNorm's running statistics, no dropout) on the evaluation's device,
and handed back as they came, so an evaluation can run as a hook inside someone's training loop."""
from __future__ import annotations

import itertools
from contextlib import ExitStack, contextmanager
from typing import Iterator

import torch
from torch import nn


@contextmanager
def _held(model: nn.Module, device: torch.device | None) -> Iterator[None]:
    # each submodule's own mode: a model training with frozen BatchNorm layers must get them back frozen
    modes = [(m, m.training) for m in model.modules()]
    tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
    home = None if tensor is None else tensor.device
    try:
        model.eval()
        if device is not None and home is not None and home != device:
            model.to(device)
        yield
    finally:
        for module, training in modes:
            module.training = training
        if device is not None and home is not None and home != device:
            model.to(home)  # a model split over several devices comes back whole on its first tensor's


@contextmanager
def evaluation_mode(models: dict[str, nn.Module], device: torch.device | str | None = None) -> Iterator[None]:
    """Every model in eval mode (and on ``device``, unless None) for the block; afterwards, error or not, every
    submodule's train/eval mode and the model's device are as they were. A model left in train mode would score with
    batch statistics and overwrite its running ones."""
    device = None if device is None else torch.device(device)
    unique = {id(model): model for model in models.values()}  # one model under two names is held once
    with ExitStack() as stack:
        for model in unique.values():
            stack.enter_context(_held(model, device))
        yield
