"""Models held for an evaluation: eval mode (BatchNorm's running statistics, no dropout) on the evaluation's device,
and handed back as they came, so an evaluation can run as a hook inside someone's training loop."""
from __future__ import annotations

import itertools
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn


@contextmanager
def evaluation_mode(models: dict[str, nn.Module], device: torch.device | str | None = None) -> Iterator[None]:
    """Every model in eval mode (and on ``device``, unless None) for the block; afterwards each one's train/eval
    mode and device are restored. A model left in train mode would score with batch statistics and overwrite its
    running ones."""
    held = []
    for model in models.values():
        tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
        held.append((model, model.training, None if tensor is None else tensor.device))
        model.eval()
        if device is not None:
            model.to(device)
    try:
        yield
    finally:
        for model, training, where in held:
            model.train(training)
            if where is not None:
                model.to(where)
