"""DAVIS label propagation: the semi-supervised video object segmentation protocol of CRW, VFS and DINO.

Given the first frame's object masks, every later frame ``t`` is labelled from a context of already-labelled
frames: the first frame (ground truth) and the ``n`` previous frames (their propagated soft labels). With dense
features ``f`` at stride 8, L2-normalised per cell, each target cell ``q`` scores every context cell ``k`` by
``<f_k, f_q>``; cells of the previous frames farther than ``radius`` cells from ``q`` are excluded (the first
frame is searched whole, as in CRW, so an object can be re-found after a large motion, unless
``radius_first_frame``). The ``topk`` best candidates over all context frames vote with weights
``softmax(score / temperature)`` on their soft labels; the resulting label distribution is upsampled to the
annotation resolution and arg-maxed.

Computation per target frame: one (N x N) matrix product and one top-k per context frame (N = cells per frame),
then a top-k over the ``(n + 1) * topk`` candidates. Exact, since the global top-k is contained in the union of the
per-frame top-k sets, and memory stays O(N^2) instead of O(n N^2).
"""
from __future__ import annotations

import logging
import os
import re
import time
from collections import deque
from dataclasses import asdict
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from vidssl.eval import jf
from vidssl.eval.config import DavisConfig
from vidssl.eval.davis_data import DavisSequence, list_sequences, load_sequence
from vidssl.io import atomic_write_bytes, atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)
STRIDE = 8


# ----------------------------------------------------------------------------------------------------------------
# propagation core


def radius_mask(h: int, w: int, radius: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """(N, N) bool, N = h * w (row-major cells): True where key cell and query cell are within ``radius`` cells
    (Euclidean). Radius 0 means no restriction."""
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    coords = torch.stack([ys.flatten(), xs.flatten()], 1).float()
    if radius <= 0:
        return torch.ones(h * w, h * w, dtype=torch.bool, device=device)
    return torch.cdist(coords, coords) <= radius + 1e-6


def propagate_step(query: torch.Tensor, keys: Sequence[torch.Tensor], labels: Sequence[torch.Tensor],
                   restricted: Sequence[bool], mask: torch.Tensor, topk: int, temperature: float) -> torch.Tensor:
    """Soft labels of one target frame from its context.

    query: (C, N) target features; keys: M tensors (C, N) context features (same cell grid); labels: M tensors
    (L, N) context soft labels; restricted: per context frame, whether ``mask`` applies; mask: (N, N) bool
    (key, query) pairs allowed. Returns (L, N): for each query cell, the softmax(score / temperature)-weighted
    mean of the labels of its ``topk`` highest-scoring allowed context cells.
    """
    scores, cands = [], []
    for key, label, restrict in zip(keys, labels, restricted):
        affinity = key.t() @ query  # (N_key, N_query)
        if restrict:
            affinity = affinity.masked_fill(~mask, float("-inf"))
        value, index = affinity.topk(min(topk, affinity.shape[0]), dim=0)  # (k, N)
        scores.append(value)
        cands.append(label[:, index])  # (L, k, N)
    score = torch.cat(scores, 0)
    cand = torch.cat(cands, 1)
    value, index = score.topk(min(topk, score.shape[0]), dim=0)  # (k, N)
    weight = torch.softmax(value / temperature, dim=0)
    chosen = cand.gather(1, index.unsqueeze(0).expand(cand.shape[0], -1, -1))  # (L, k, N)
    return (chosen * weight.unsqueeze(0)).sum(1)


def propagate(features: Iterable[torch.Tensor], first_labels: torch.Tensor, cfg: DavisConfig) -> Iterator[torch.Tensor]:
    """Propagate ``first_labels`` (L, h, w) through a sequence.

    features: T tensors (C, h, w), L2-normalised over C, frame 0 first (consumed lazily: only the first frame and
    the last ``cfg.context`` frames are held). Yields T - 1 soft label maps (L, h, w), for frames 1..T-1.
    """
    it = iter(features)
    first = next(it)
    c, h, w = first.shape
    mask = radius_mask(h, w, cfg.radius, first.device)
    first_key, first_label = first.reshape(c, -1), first_labels.reshape(first_labels.shape[0], -1)
    recent: deque[tuple[torch.Tensor, torch.Tensor]] = deque(maxlen=cfg.context)
    for feat in it:
        query = feat.reshape(c, -1)
        keys = [first_key] + [k for k, _ in recent]
        labels = [first_label] + [lab for _, lab in recent]
        restricted = [cfg.radius_first_frame] + [True] * len(recent)
        pred = propagate_step(query, keys, labels, restricted, mask, cfg.topk, cfg.temperature)
        if cfg.context > 0:
            recent.append((query, pred))
        yield pred.reshape(-1, h, w)


# ----------------------------------------------------------------------------------------------------------------
# geometry: frames -> feature grid, masks <-> labels


def working_size(h: int, w: int, max_side: int) -> tuple[int, int]:
    """Frame size fed to the backbone: long side at most ``max_side`` (0: unchanged)."""
    if max_side <= 0 or max(h, w) <= max_side:
        return h, w
    scale = max_side / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def labels_to_grid(mask: np.ndarray, num_labels: int, size: tuple[int, int]) -> torch.Tensor:
    """(H, W) label map -> (L, ceil(h/8), ceil(w/8)) soft labels: the share of each label in every 8x8 cell of
    the mask resized to ``size`` = (h, w) by area averaging (edge cells extended by replication)."""
    onehot = F.one_hot(torch.from_numpy(mask.astype(np.int64)), num_labels).permute(2, 0, 1).float()[None]
    h, w = size
    onehot = F.interpolate(onehot, size=(h, w), mode="area")
    gh, gw = -(-h // STRIDE), -(-w // STRIDE)
    onehot = F.pad(onehot, (0, gw * STRIDE - w, 0, gh * STRIDE - h), mode="replicate")
    return F.avg_pool2d(onehot, STRIDE)[0]


def grid_to_mask(soft: torch.Tensor, size: tuple[int, int], out_size: tuple[int, int]) -> np.ndarray:
    """(L, gh, gw) soft labels on the stride-8 grid of a ``size`` frame -> (H, W) uint8 arg-max label map at
    ``out_size`` (bilinear: cell centres land on the centres of their 8x8 pixel blocks)."""
    gh, gw = soft.shape[-2:]
    up = F.interpolate(soft[None].float(), size=(gh * STRIDE, gw * STRIDE), mode="bilinear", align_corners=False)
    up = up[..., :size[0], :size[1]]
    if tuple(out_size) != tuple(size):
        up = F.interpolate(up, size=tuple(out_size), mode="bilinear", align_corners=False)
    return up[0].argmax(0).to(torch.uint8).cpu().numpy()


def _device(model: torch.nn.Module) -> torch.device:
    param = next(iter(model.parameters()), None)
    return param.device if param is not None else torch.device("cpu")


def dense_features(model, frames: Sequence[np.ndarray], size: tuple[int, int], batch_size: int) -> Iterator[torch.Tensor]:
    """Yield per frame (C, ceil(h/8), ceil(w/8)) features, L2-normalised over C, of the frames resized to ``size``
    = (h, w) and normalised with the model's mean/std. Batches of ``batch_size`` frames, computed lazily."""
    import cv2

    device = _device(model)
    mean = torch.tensor(model.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(model.std, device=device).view(1, 3, 1, 1)
    expect = (-(-size[0] // STRIDE), -(-size[1] // STRIDE))
    for start in range(0, len(frames), batch_size):
        batch = [f if f.shape[:2] == size else cv2.resize(f, (size[1], size[0]), interpolation=cv2.INTER_AREA)
                 for f in frames[start:start + batch_size]]
        x = torch.from_numpy(np.stack(batch)).to(device).permute(0, 3, 1, 2).float().div_(255)
        with torch.inference_mode():
            feats = model.dense_features((x - mean) / std)
        if tuple(feats.shape[-2:]) != expect:
            raise ValueError(f"{type(model).__name__}.dense_features gave a {tuple(feats.shape[-2:])} grid for a "
                             f"{size} input; the Backbone contract is stride 8, ceil(H/8) x ceil(W/8) = {expect}")
        yield from F.normalize(feats.float(), dim=1)


# ----------------------------------------------------------------------------------------------------------------
# one sequence, many models


def propagate_sequence(model, seq: DavisSequence, cfg: DavisConfig, progress: bool | None = None) -> dict:
    """Label-propagate ``seq`` with ``model``; returns ``{"masks": T (H, W) uint8 label maps (frame 0 = ground
    truth), "features_s", "propagation_s"}`` (seconds, wall clock)."""
    from tqdm import tqdm

    height, width = seq.masks[0].shape
    size = working_size(height, width, cfg.max_side)
    device = _device(model)
    first = labels_to_grid(seq.masks[0], seq.num_objects + 1, size).to(device)
    timer = {"features_s": 0.0, "propagation_s": 0.0}

    def timed_features() -> Iterator[torch.Tensor]:
        stream = dense_features(model, seq.frames, size, cfg.batch_size)
        while True:
            t0 = time.perf_counter()
            feat = next(stream, None)
            timer["features_s"] += time.perf_counter() - t0
            if feat is None:
                return
            yield feat

    masks = [seq.masks[0].copy()]
    stream = propagate(timed_features(), first, cfg)
    bar = tqdm(total=len(seq) - 1, desc=f"davis {seq.name}", unit="frame", leave=False,
               disable=None if progress is None else not progress)
    with torch.inference_mode(), bar:
        while True:
            t0 = time.perf_counter()
            soft = next(stream, None)
            timer["propagation_s"] += time.perf_counter() - t0
            if soft is None:
                break
            masks.append(grid_to_mask(soft, size, (height, width)))
            bar.update()
    timer["propagation_s"] -= timer["features_s"]  # the feature stream runs inside the propagation generator
    return {"masks": masks, **timer}


def evaluate_davis(models: dict, data_dir: str | os.PathLike, out_dir: str | os.PathLike, cfg: DavisConfig,
                   progress: bool | None = None) -> dict:
    """Propagate the first-frame masks of every sequence with every model and score them.

    models: name -> Backbone (``dense_features``, ``mean``, ``std``; see vidssl.models). Writes
    ``out_dir/metrics.json`` (one block per model: ``J_mean``, ``F_mean``, ``JF_mean``, recalls, timings and per
    sequence / per object results), ``out_dir/metrics.md`` and ``out_dir/overlays/<model>/<sequence>.png``
    (``cfg.overlay_frames`` frames: prediction filled, ground truth outlined); with ``cfg.save_masks`` also the
    predicted palette PNGs in ``out_dir/masks/<model>/<sequence>/`` (readable by the official DAVIS evaluator).
    Returns the metrics.json content.
    """
    from vidssl.config import versions

    out_dir = Path(out_dir)
    names = list(cfg.sequences) or list_sequences(data_dir)
    results: dict[str, dict] = {name: {"sequences": {}, "features_s": 0.0, "propagation_s": 0.0, "frames": 0}
                                for name in models}
    for seq_name in names:
        seq = load_sequence(data_dir, seq_name)
        for model_name, model in models.items():
            run = propagate_sequence(model, seq, cfg, progress)
            scores = jf.evaluate_sequence(seq.masks, run["masks"], seq.num_objects)
            block = results[model_name]
            block["sequences"][seq_name] = scores
            block["features_s"] += run["features_s"]
            block["propagation_s"] += run["propagation_s"]
            block["frames"] += len(seq) - 1
            slug = _slug(model_name)
            atomic_write_bytes(out_dir / "overlays" / slug / f"{seq_name}.png",
                               overlay_png(seq, run["masks"], cfg.overlay_frames, f"{model_name}  {seq_name}"))
            if cfg.save_masks:
                for stem, mask in zip(seq.frame_names, run["masks"]):
                    atomic_write_bytes(out_dir / "masks" / slug / seq_name / f"{stem}.png", palette_png(mask))
            log.info("davis %s %s: J&F %.3f (J %.3f, F %.3f)", model_name, seq_name, scores["JF_mean"],
                     scores["J_mean"], scores["F_mean"])
    models_out = {}
    for model_name, block in results.items():
        frames = max(block.pop("frames"), 1)
        models_out[model_name] = {**jf.aggregate(block["sequences"]),
                                  "features_s_per_frame": block.pop("features_s") / frames,
                                  "propagation_s_per_frame": block.pop("propagation_s") / frames,
                                  "sequences": block["sequences"]}
    metrics = {"task": "davis_label_propagation", "data": str(data_dir), "sequences": names,
               "protocol": {"bound_th": jf.BOUND_TH, "scored_frames": "all but the first and the last",
                            "mean_over": "objects"},
               "config": asdict(cfg), "versions": versions(), "models": models_out}
    atomic_write_json(out_dir / "metrics.json", metrics)
    atomic_write_text(out_dir / "metrics.md", metrics_markdown(metrics))
    return metrics


# ----------------------------------------------------------------------------------------------------------------
# outputs


def metrics_markdown(metrics: dict) -> str:
    """A summary table (one row per model) and a per-sequence J&F table."""
    models = metrics["models"]
    lines = ["## DAVIS label propagation", "",
             f"{len(metrics['sequences'])} sequence(s) from `{metrics['data']}`; means over objects, frames 1..T-2.",
             "", "| model | J&F | J | F | J recall | F recall | s/frame (features + propagation) |",
             "|---|---|---|---|---|---|---|"]
    for name, m in models.items():
        lines.append(f"| {name} | {m['JF_mean']:.3f} | {m['J_mean']:.3f} | {m['F_mean']:.3f} | "
                     f"{m['J_recall']:.3f} | {m['F_recall']:.3f} | "
                     f"{m['features_s_per_frame']:.3f} + {m['propagation_s_per_frame']:.3f} |")
    lines += ["", "| sequence | " + " | ".join(f"{n} J&F" for n in models) + " |",
              "|---|" + "---|" * len(models)]
    for seq in metrics["sequences"]:
        lines.append(f"| {seq} | " + " | ".join(f"{m['sequences'][seq]['JF_mean']:.3f}" for m in models.values())
                     + " |")
    return "\n".join(lines) + "\n"


def palette(n: int = 256) -> np.ndarray:
    """(n, 3) uint8: the PASCAL VOC / DAVIS palette (object 1 dark red, 2 green, 3 olive, ...)."""
    pal = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        pal[i] = (r, g, b)
    return pal


def palette_png(mask: np.ndarray) -> bytes:
    """PNG bytes of an (H, W) label map as a DAVIS-2017 palette image."""
    import io

    from PIL import Image

    im = Image.fromarray(mask.astype(np.uint8), mode="P")
    im.putpalette(palette().flatten().tolist())
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def overlay_png(seq: DavisSequence, pred: Sequence[np.ndarray], num_frames: int, title: str,
                max_side: int = 480) -> bytes:
    """PNG bytes: ``num_frames`` evenly spaced frames after the first, side by side; the prediction is blended
    in its palette colour, the ground-truth boundary drawn in white."""
    import cv2

    pal = palette()
    picks = np.unique(np.linspace(1, len(seq) - 1, max(1, num_frames)).round().astype(int))
    h, w = working_size(*seq.masks[0].shape, max_side)
    tiles = []
    for t in picks:
        frame = cv2.resize(seq.frames[t], (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
        p = cv2.resize(pred[t], (w, h), interpolation=cv2.INTER_NEAREST)
        g = cv2.resize(seq.masks[t], (w, h), interpolation=cv2.INTER_NEAREST)
        fg = p > 0
        frame[fg] = 0.45 * frame[fg] + 0.55 * pal[p[fg]].astype(np.float32)
        frame[jf.seg2bmap(g > 0)] = 255
        tile = np.ascontiguousarray(frame.clip(0, 255).astype(np.uint8))
        cv2.putText(tile, f"frame {t}", (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(tile)
    strip = np.concatenate(tiles, 1)
    banner = np.zeros((24, strip.shape[1], 3), dtype=np.uint8)
    cv2.putText(banner, title, (6, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.concatenate([banner, strip], 0), cv2.COLOR_RGB2BGR))
    return buf.tobytes()


def _slug(name: str) -> str:
    """A file-name-safe form of a model name ("pretrained:run/backbone.pt" -> "pretrained_run_backbone.pt")."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "model"
