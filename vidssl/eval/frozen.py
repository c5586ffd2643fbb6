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


def check_models(models: dict[str, nn.Module], needs: tuple[str, ...], evaluation: str) -> None:
    """Raise TypeError, before any data is read, unless ``models`` maps row names to modules holding ``needs`` (the
    attributes of the backbone contract, vidssl.models.Backbone, this evaluation reads): a model of one's own without
    them failed as an AttributeError deep inside, a bare model as "object is not iterable"."""
    if not isinstance(models, dict):
        raise TypeError(f"{evaluation} takes a dict of row name -> model, e.g. {{'mine': model}}, got "
                        f"{type(models).__name__}")
    for name, model in models.items():
        missing = [attr for attr in needs if not hasattr(model, attr)]
        if missing:
            hint = (": pass its .backbone" if hasattr(model, "backbone") else
                    "; mean and std are the per-channel statistics its input is normalised with "
                    "(vidssl.models.IMAGENET_MEAN / IMAGENET_STD for ImageNet's)")
            raise TypeError(f"{evaluation}: model {name!r} ({type(model).__name__}) lacks {', '.join(missing)} of "
                            f"the backbone contract it needs ({', '.join(needs)}; see vidssl.models.Backbone){hint}")


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
