"""Method 4, FlowNetC-style transfer: the backbone as a Siamese feature extractor (frozen, or fine-tuned), a cosine
correlation layer and a small dilated-convolution decoder, trained on synthetic pairs with exact ground truth.

The decoder predicts a residual on top of the zero-shot soft-argmax flow, with its last layer zero-initialised, so
training starts exactly at method 3 and every step of it is measured against that.
"""
from __future__ import annotations

import copy
import functools
import hashlib
import json
import logging
import math
import os
import time
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from vidssl.progress import bars_on_stderr
from vidssl.eval.config import FlowConfig
from vidssl.eval.flow.correlation import correlation, soft_argmax, upsample_flow
from vidssl.eval.flow.methods import cell_offset, unit_features
from vidssl.eval.flow.synthetic import synthetic_pairs
from vidssl.io import atomic_write_bytes, torch_bytes

log = logging.getLogger(__name__)

_VAL_SEED = 987_654_321  # the fixed synthetic validation batch, apart from every training step's seed
_VAL_PAIRS = 16


def _conv(cin: int, cout: int, dilation: int = 1) -> list[nn.Module]:
    # BatchNorm: a CPU budget buys a few hundred steps; normalised activations train faster at a larger learning rate
    return [nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation, bias=False), nn.BatchNorm2d(cout),
            nn.LeakyReLU(0.1, inplace=True)]


class CorrFlowNet(nn.Module):
    """([B, 3, H, W], [B, 3, H, W]) RGB in [0, 1] -> [B, 2, H, W] flow in pixels.

    At stride s = backbone.dense_stride: the cosine correlation [B, (2d+1)^2, h, w] (standardised per cell), a 1x1
    projection of frame 1's features (context, as FlowNetC's conv_redir) and the soft-argmax flow go through dilated
    3x3 conv-BN-LeakyReLU layers (receptive field 35 cells) to a residual flow in cells; the sum is scaled by s and
    upsampled bilinearly.
    """

    def __init__(self, backbone: nn.Module, max_displacement: int, temperature: float, finetune: bool = False):
        super().__init__()
        self.backbone, self.finetune = backbone, finetune
        self.max_displacement = max_displacement
        self.log_temperature = nn.Parameter(torch.tensor(math.log(temperature)))
        k = (2 * max_displacement + 1) ** 2
        self.project = nn.Conv2d(backbone.dense_dim, 32, 1)
        self.decoder = nn.Sequential(*_conv(k + 32 + 2, 96), *_conv(96, 96, 2), *_conv(96, 64, 4), *_conv(64, 64, 8),
                                     *_conv(64, 32), nn.Conv2d(32, 2, 3, padding=1))
        nn.init.zeros_(self.decoder[-1].weight)
        nn.init.zeros_(self.decoder[-1].bias)

    def head_parameters(self) -> list[nn.Parameter]:
        return [self.log_temperature, *self.project.parameters(), *self.decoder.parameters()]

    def forward(self, image1: torch.Tensor, image2: torch.Tensor) -> torch.Tensor:
        self.backbone.eval()  # BatchNorm keeps its statistics: small synthetic batches would corrupt them
        with torch.set_grad_enabled(self.finetune and torch.is_grad_enabled()):
            f1, f2 = unit_features(self.backbone, image1), unit_features(self.backbone, image2)
        d = self.max_displacement
        cost = correlation(f1, f2, d)
        init = soft_argmax(cost, d, self.log_temperature.exp())
        # unit features have per-channel size ~1/sqrt(C); rescale so the projection sees unit-variance inputs
        context = self.project(f1 * math.sqrt(f1.shape[1]))
        # the decoder sees each cell's scores relative to its own window: features whose cosines are all high (raw
        # colour) or all low (random init) give the same contrast
        scores = (cost - cost.mean(1, keepdim=True)) / (cost.std(1, keepdim=True) + 1e-3)
        cells = init + self.decoder(torch.cat([scores, context, init], dim=1))
        stride = self.backbone.dense_stride
        return upsample_flow(cells * stride, stride, image1.shape[-2:], cell_offset(self.backbone))


def _epe(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    return (pred - gt).norm(dim=1).mean()


# the FlowConfig fields that change what training computes (budget, device, figures... do not: a run resumes under
# the budget it began with)
_TRAINING_KEYS = ("max_displacement", "temperature", "steps", "finetune", "lr", "backbone_lr", "batch_size",
                  "synthetic_size", "max_motion", "num_shapes")


def fingerprint(backbone: nn.Module, cfg: FlowConfig, seed: int) -> str:
    """Identity of a training run: the backbone's class, weights and cell placement, the training settings and the
    seed; a checkpoint resumes only the run it came from (under the budget it began with, see _train_transfer)."""
    settings = {key: getattr(cfg, key) for key in _TRAINING_KEYS}
    identity = [settings, seed, type(backbone).__name__, cell_offset(backbone)]
    h = hashlib.sha256(json.dumps(identity, sort_keys=True).encode())
    for name, tensor in sorted(backbone.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _trainable_state(net: CorrFlowNet) -> dict:
    return {k: v for k, v in net.state_dict().items() if net.finetune or not k.startswith("backbone.")}


@functools.lru_cache(maxsize=1)
def _validation_pairs(size: tuple[int, int], max_motion: float, num_shapes: tuple[int, int]):
    """The fixed validation batch, made once: each model's decoder is scored on it before and after training."""
    return synthetic_pairs(_VAL_PAIRS, *size, torch.Generator().manual_seed(_VAL_SEED), max_motion, num_shapes)


@torch.no_grad()
def synthetic_epe(net: nn.Module, cfg: FlowConfig, device: torch.device | str) -> float:
    """Mean EPE (px) of ``net`` on the fixed synthetic validation pairs, in eval mode (a new net is in train mode:
    its BatchNorm layers took the validation batch into their running statistics), handed back in its mode."""
    val = _validation_pairs(tuple(cfg.synthetic_size), cfg.max_motion, tuple(cfg.num_shapes))
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            return float(_epe(net(val.image1.to(device), val.image2.to(device)), val.flow.to(device)))
    finally:
        net.train(was_training)


def train_transfer(backbone: nn.Module, cfg: FlowConfig, budget_s: float, seed: int = 0,
                   device: torch.device | str = "cpu", checkpoint: str | os.PathLike | None = None,
                   progress: bool = True) -> tuple[CorrFlowNet, dict]:
    """Train a :class:`CorrFlowNet` on ``backbone`` for at most ``cfg.steps`` steps and ``budget_s`` seconds.

    Step i trains on the synthetic batch seeded by (seed, i), so a run resumed from ``checkpoint`` (written
    atomically every ``cfg.checkpoint_seconds``) sees the same data as an uninterrupted one. The caller's backbone
    is never modified (fine-tuning works on a copy). Returns the net in eval mode and a summary dict. The caller's
    torch generator is left as it was.
    """
    with torch.random.fork_rng(devices=[]):
        return _train_transfer(backbone, cfg, budget_s, seed, device, checkpoint, progress)


def _train_transfer(backbone: nn.Module, cfg: FlowConfig, budget_s: float, seed: int, device: torch.device | str,
                    checkpoint: str | os.PathLike | None, progress: bool) -> tuple[CorrFlowNet, dict]:
    torch.default_generator.manual_seed(seed)  # the CPU's alone: torch.manual_seed reseeds every GPU's too
    net = CorrFlowNet(copy.deepcopy(backbone) if cfg.finetune else backbone, cfg.max_displacement, cfg.temperature,
                      cfg.finetune).to(device)
    groups = [{"params": net.head_parameters(), "lr": cfg.lr}]
    if cfg.finetune:
        groups.append({"params": list(net.backbone.parameters()), "lr": cfg.backbone_lr})
    base_lrs = [g["lr"] for g in groups]
    optimizer = torch.optim.Adam(groups)
    key = fingerprint(backbone, cfg, seed)
    state = {"step": 0, "elapsed_s": 0.0, "epe_start": None, "losses": [], "budget_s": budget_s}
    path = Path(checkpoint) if checkpoint is not None else None
    try:
        saved = torch.load(path, map_location=device, weights_only=True) if path is not None and path.is_file() \
            else None
    except Exception as e:  # torch raises many types for a damaged file; the decoder is cheap to train again
        log.warning("transfer: %s is unreadable (%s); training from scratch", path, type(e).__name__)
        saved = None
    if saved is not None and not isinstance(saved, dict):
        log.warning("transfer: %s is not a transfer checkpoint; training from scratch", path)
        saved = None
    if saved is not None:
        trainable = {k: v.shape for k, v in _trainable_state(net).items()}
        if saved.get("fingerprint") != key:
            log.info("transfer: %s belongs to another backbone, config or seed; training from scratch", path)
        elif {k: v.shape for k, v in saved["net"].items()} != trainable:  # a version with another decoder
            log.info("transfer: %s holds other layers than this decoder (%d missing, %d unexpected, %d of other "
                     "shapes); training from scratch", path, len(trainable.keys() - saved["net"].keys()),
                     len(saved["net"].keys() - trainable.keys()),
                     sum(saved["net"][k].shape != v for k, v in trainable.items() if k in saved["net"]))
        else:
            missing, unexpected = net.load_state_dict(saved["net"], strict=False)
            # only the frozen backbone is left out (BatchNorm fills its own num_batches_tracked, so a subset)
            if unexpected or not set(missing) <= set(net.state_dict()) - set(trainable):
                raise RuntimeError(f"{path}: the decoder's layers were checked, yet {unexpected} unexpected and "
                                   f"{sorted(set(missing) & set(trainable))} trainable missing")
            optimizer.load_state_dict(saved["optimizer"])
            state = {"budget_s": budget_s, **saved["state"]}
            log.info("transfer: resuming %s at step %d", path, state["step"])
            # the cosine follows the time spent over the budget: resumed under another (a larger --budget-minutes,
            # or pretrain's share of what its rerun has left, which differs by the seconds the rerun skipped) the
            # learning rate of a decayed run jumped back up; the budget it began with holds, and starting over
            # (delete the checkpoint, or a new --out) takes another
            if abs(state["budget_s"] - budget_s) > 1.0:
                # an info line, not a warning: pretrain's reruns resume under a smaller share every time (what is
                # left of the run's budget), which is how it should be; a user who wanted the new budget is told how
                longer = state["budget_s"] - budget_s > max(5.0, 0.1 * budget_s)
                log.info("transfer: continuing under the budget it began with (%.0f s, not %.0f s)%s",
                         state["budget_s"], budget_s,
                         f"; delete {path} to train under the new one from the start" if longer else "")
    budget_s = state["budget_s"]
    if state["epe_start"] is None:
        state["epe_start"] = synthetic_epe(net, cfg, device)

    def save() -> None:
        if path is not None:
            atomic_write_bytes(path, torch_bytes({"fingerprint": key, "net": _trainable_state(net),
                                                  "optimizer": optimizer.state_dict(), "state": state}))

    net.train()
    last_save, resumed_at = time.perf_counter(), state["step"]

    def done() -> float:  # the share of training done: of the steps or of the budget, whichever ends first
        steps = state["step"] / cfg.steps if cfg.steps > 0 else 1.0
        return min(1.0, max(steps, state["elapsed_s"] / budget_s if budget_s > 0 else 1.0))

    # in % of that share: a bar over cfg.steps (3000) showed 13 of 3000 and an ETA of an hour for a 15 s budget
    bar = tqdm(total=100.0, initial=100 * done(), desc="flow transfer", disable=not bars_on_stderr(progress),
               leave=False, bar_format="{l_bar}{bar}| {n:.0f}% [{elapsed}<{remaining}{postfix}]")
    while state["step"] < cfg.steps and state["elapsed_s"] < budget_s:
        t0 = time.perf_counter()
        for group, base in zip(optimizer.param_groups, base_lrs):
            group["lr"] = base * 0.5 * (1.0 + math.cos(math.pi * done()))  # cosine over whichever ends first
        batch = synthetic_pairs(cfg.batch_size, *cfg.synthetic_size,
                                torch.Generator().manual_seed(seed * 1_000_003 + state["step"]), cfg.max_motion,
                                tuple(cfg.num_shapes))
        loss = _epe(net(batch.image1.to(device), batch.image2.to(device)), batch.flow.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        # .item() waits for the step: on a GPU the kernels are only queued until then, and the budget and the
        # cosine lr would count launch time alone
        state["losses"].append(loss.item())
        state["step"] += 1
        state["elapsed_s"] += time.perf_counter() - t0
        bar.update(100 * done() - bar.n)
        bar.set_postfix(step=state["step"], epe=f"{state['losses'][-1]:.2f}")
        if time.perf_counter() - last_save > cfg.checkpoint_seconds:
            save()
            last_save = time.perf_counter()
    bar.close()
    if state["step"] > resumed_at:  # a finished decoder's checkpoint, rewritten for nothing, was a window for a kill
        save()
    net.eval()
    info = {"steps": state["step"], "train_seconds": round(state["elapsed_s"], 1),
            "synthetic_epe_start": state["epe_start"], "synthetic_epe_end": synthetic_epe(net, cfg, device),
            "temperature": net.log_temperature.exp().item(), "finetune": cfg.finetune,
            "loss_curve": loss_curve(state["losses"])}
    return net, info


def loss_curve(losses: list[float], points: int = 10) -> list[float]:
    """Training EPE averaged over ``points`` consecutive, equal shares of the steps (fewer with fewer steps)."""
    if not losses:
        return []
    chunks = torch.tensor(losses, dtype=torch.float64).tensor_split(min(points, len(losses)))
    return [round(float(c.mean()), 3) for c in chunks]
