"""DAVIS label propagation: the semi-supervised video object segmentation protocol of CRW, VFS and DINO (CRW
and VFS evaluate at the full 854x480 frames, ``max_side=0``, DINO at 832x480; the default 480-px long side is
faster and not comparable with published numbers).

Given the first frame's object masks, every later frame ``t`` is labelled from a context of already-labelled
frames: the first frame (ground truth) and the ``n`` previous frames (their propagated soft labels). With dense
features ``f`` at stride 8, L2-normalised per cell, each target cell ``q`` scores every context cell ``k`` by
``<f_k, f_q>``; context cells farther than ``radius`` cells from ``q`` (Euclidean: a disc, its edge included, where
CRW's mask is strict; DINO's is the enclosing square) are excluded, in every context frame as DINO does (with
``radius_first_frame`` off the first frame is searched whole, as CRW does: 0.5 to 4 J&F points worse on blackswan
for pixels and random-init CNNs). The ``topk`` best candidates over all context frames vote
with weights ``softmax(score / temperature)`` on their soft labels; the resulting label distribution is
upsampled to the annotation resolution and arg-maxed.

Computation per target frame: the query cells are cut into 8x8-cell tiles; each tile takes one matrix product
with the key windows (tile grown by the radius) of all context frames, the radius mask added as a -inf bias, and
one top-k per context frame; then a top-k over the ``(n + 1) * topk`` candidates. Exact (the global top-k lies in
the union of the per-frame top-k sets), memory O(n N) for N cells per frame (the candidates, and one affinity of
at most AFFINITY_BLOCK elements at a time), and the windows make it 1.5x to 6.5x (480x270 input, radius 12, up to
854x480) faster than full N x N affinities (tools/_bench_davis.py; README). With the radius off (``radius`` 0, or
the first frame searched whole) the key window is the whole frame and the query cells are scored against it a block
at a time: never the N x n x N affinity (3.3 GB per frame at 854x480 with the default context of 20).
"""
from __future__ import annotations

import logging
import math
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from vidssl.eval import MASKS, jf, retire_results
from vidssl.eval.baselines import weights_record
from vidssl.eval.config import DavisConfig
from vidssl.eval.davis_data import (DavisDataError, DavisSequence, FirstFrameOnly, check_layout, list_sequences,
                                    load_sequence)
from vidssl.device import resolve_device
from vidssl.errors import VidsslError
from vidssl.eval.frozen import check_models, evaluation_mode
from vidssl.io import atomic_write_bytes, atomic_write_json, atomic_write_text, drawable
from vidssl.models.base import MIN_SIDE, normalize_rgb

log = logging.getLogger(__name__)
STRIDE = 8
TILE = 8  # query cells per tile side: small enough that windows shrink, large enough to amortise the per-tile work
# most elements of one affinity (32 MiB in float32): a window of the whole frame (radius 0, or the first frame
# searched whole) is scored a block of query cells at a time (65 at 854x480 with 20 context frames), where all N
# cells at once took N x M x N elements, 3.3 GB a frame
AFFINITY_BLOCK = 1 << 23


# ----------------------------------------------------------------------------------------------------------------
# propagation core


@dataclass(frozen=True)
class Tile:
    """A block of query cells and the window of key cells that can reach it.

    query: (nq,) flat (row-major) indices of the tile's cells; rows, cols: the key window (nk cells); window:
    (nk,) flat indices of the window's cells; bias: (nq, nk) float, 0 for (query, key) pairs within the radius and
    -inf beyond it (added to the affinities in place), or None when every pair is allowed.
    """

    query: torch.Tensor
    rows: slice
    cols: slice
    window: torch.Tensor
    bias: torch.Tensor | None


def make_tiles(h: int, w: int, radius: float, tile: int = TILE, device: torch.device | str = "cpu",
               dtype: torch.dtype = torch.float32) -> list[Tile]:
    """Cover an (h, w) cell grid with ``tile`` x ``tile`` query blocks, each paired with the key window within
    ``radius`` cells (Euclidean) of it. Radius 0: one tile, the whole grid, nothing blocked (scored a block of
    query cells at a time, see AFFINITY_BLOCK)."""
    if radius <= 0:
        every = torch.arange(h * w, device=device)
        return [Tile(every, slice(0, h), slice(0, w), every, None)]
    reach = int(radius)
    tiles = []
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            rows, cols = slice(max(0, y0 - reach), min(h, y1 + reach)), slice(max(0, x0 - reach), min(w, x1 + reach))
            qy, qx = [g.reshape(-1, 1) for g in torch.meshgrid(torch.arange(y0, y1), torch.arange(x0, x1),
                                                               indexing="ij")]
            ky, kx = [g.reshape(1, -1) for g in torch.meshgrid(torch.arange(rows.start, rows.stop),
                                                               torch.arange(cols.start, cols.stop), indexing="ij")]
            blocked = (qy - ky) ** 2 + (qx - kx) ** 2 > radius * radius
            bias = torch.zeros(blocked.shape, dtype=dtype).masked_fill_(blocked, float("-inf"))
            tiles.append(Tile((qy * w + qx).reshape(-1).to(device), rows, cols, (ky * w + kx).reshape(-1).to(device),
                              bias.to(device) if blocked.any() else None))
    return tiles


def frame_candidates(query: torch.Tensor, keys: torch.Tensor, tiles: Sequence[Tile],
                     topk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``topk`` best allowed key cells of each context frame for every query cell.

    query: (h, w, C); keys: (M, h, w, C). Returns scores (N, M * topk) (dot products; -inf in unused slots) and
    the candidates' indices (N, M * topk) into the M * N context cells (frame-major), N = h * w. Per tile one
    matrix product (nq, C) x (C, M * nk), the radius bias added in place, and one top-k; a tile whose affinity
    would pass AFFINITY_BLOCK elements takes its query cells in even blocks under it (the same result up to float32
    rounding: a product of fewer rows may take another kernel, which sums in another order).
    """
    h, w, c = query.shape
    m, n = keys.shape[0], h * w
    scores = query.new_full((n, m, topk), float("-inf"))
    index = torch.zeros((n, m, topk), dtype=torch.long, device=query.device)
    flat_query = query.reshape(n, c)
    frame_offset = torch.arange(m, device=query.device).view(1, m, 1) * n
    for tile in tiles:
        key = keys[:, tile.rows, tile.cols].reshape(-1, c)  # (M * nk, C): the windows (a copy unless whole)
        step = max(1, AFFINITY_BLOCK // key.shape[0])
        if len(tile.query) > step:  # even blocks: a last block of a cell or two rounded furthest from the others
            step = math.ceil(len(tile.query) / math.ceil(len(tile.query) / step))
        for start in range(0, len(tile.query), step):
            cells = tile.query[start:start + step]
            affinity = (flat_query[cells] @ key.t()).view(len(cells), m, -1)  # (nq, M, nk)
            if tile.bias is not None:
                affinity += tile.bias[start:start + step].unsqueeze(1)
            k = min(topk, affinity.shape[-1])
            value, pos = affinity.topk(k, dim=-1)  # (nq, M, k)
            scores[cells, :, :k] = value
            index[cells, :, :k] = tile.window[pos] + frame_offset
    return scores.reshape(n, m * topk), index.reshape(n, m * topk)


def vote(scores: torch.Tensor, index: torch.Tensor, labels: torch.Tensor, topk: int,
         temperature: float) -> torch.Tensor:
    """(N, S) candidate scores, (N, S) their rows in ``labels`` (R, L) -> (N, L): the softmax(score /
    temperature)-weighted mean label of each query's ``topk`` best candidates."""
    value, best = scores.topk(min(topk, scores.shape[1]), dim=1)
    weight = torch.softmax(value / temperature, dim=1)  # (N, k)
    chosen = labels[index.gather(1, best)]  # (N, k, L)
    return (chosen * weight.unsqueeze(-1)).sum(1)


def propagate(features: Iterable[torch.Tensor], first_labels: torch.Tensor, cfg: DavisConfig,
              tile: int = TILE) -> Iterator[torch.Tensor]:
    """Propagate ``first_labels`` (L, h, w) through a sequence.

    features: T tensors (C, h, w), L2-normalised over C, frame 0 first (consumed lazily: only the first frame and
    the last ``cfg.context`` frames are held, in a ring buffer). Yields T - 1 soft label maps (L, h, w) for frames
    1..T-1: each the vote of the ``cfg.topk`` best candidates over the first frame (whole, or within the radius
    when ``cfg.radius_first_frame``) and the previous ``cfg.context`` frames (within ``cfg.radius`` cells).
    """
    it = iter(features)
    first = next(it)
    c, h, w = first.shape
    n, n_labels = h * w, first_labels.shape[0]
    first_key = first.permute(1, 2, 0).contiguous()[None]  # (1, h, w, C)
    near = make_tiles(h, w, cfg.radius, tile, first.device, first.dtype)
    first_tiles = near if cfg.radius_first_frame else make_tiles(h, w, 0, tile, first.device, first.dtype)
    ring_keys = first.new_empty((cfg.context, h, w, c))
    # label table: row 0..N-1 the first frame, then N rows per ring slot
    labels = first.new_empty((1 + cfg.context) * n, n_labels)
    labels[:n] = first_labels.reshape(n_labels, n).t()
    filled = 0
    for t, feat in enumerate(it, start=1):
        query = feat.permute(1, 2, 0).contiguous()
        scores, index = frame_candidates(query, first_key, first_tiles, cfg.topk)
        if filled:
            more_scores, more_index = frame_candidates(query, ring_keys[:filled], near, cfg.topk)
            scores, index = torch.cat([scores, more_scores], 1), torch.cat([index, more_index + n], 1)
        pred = vote(scores, index, labels, cfg.topk, cfg.temperature)  # (N, L)
        if cfg.context:
            slot = (t - 1) % cfg.context
            ring_keys[slot] = query
            labels[(1 + slot) * n:(2 + slot) * n] = pred
            filled = min(filled + 1, cfg.context)
        yield pred.t().reshape(n_labels, h, w)


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
    the mask resized to ``size`` = (h, w) by area averaging (OpenCV's INTER_AREA, as :func:`dense_features`
    resizes the frames); a partial edge cell holds the shares of its real pixels."""
    import cv2

    h, w = size
    planes = [(mask == label).astype(np.float32) for label in range(num_labels)]
    if mask.shape != (h, w):
        # not F.interpolate(mode="area"): that is adaptive pooling, whose windows overlap at a ratio that is not
        # whole (854 -> 480 px), so a 1-px column kept 0.33-0.83 of its mass by position where the frames, resized
        # by true area, keep 0.56. One label at a time: INTER_AREA takes at most 4 channels
        planes = [cv2.resize(p, (w, h), interpolation=cv2.INTER_AREA) for p in planes]
    onehot = torch.from_numpy(np.stack(planes))[None]
    gh, gw = -(-h // STRIDE), -(-w // STRIDE)
    padding = (0, gw * STRIDE - w, 0, gh * STRIDE - h)
    # zero padding divided by each cell's share of real pixels: replicating the last row or column weighted it
    # as several (5 object rows of a 6-row edge cell read 0.625 instead of 0.833 when the last row was background)
    real = F.avg_pool2d(F.pad(torch.ones(1, 1, h, w), padding), STRIDE)
    return (F.avg_pool2d(F.pad(onehot, padding), STRIDE) / real)[0]


def grid_to_mask(soft: torch.Tensor, size: tuple[int, int], out_size: tuple[int, int],
                 norm_mask: bool = False) -> np.ndarray:
    """(L, gh, gw) soft labels on the stride-8 grid of a ``size`` frame -> (H, W) uint8 arg-max label map at
    ``out_size`` (bilinear: cell centres land on the centres of their 8x8 pixel blocks). ``norm_mask``: each
    label's map is first rescaled to [0, 1] over the frame, as DINO's ``norm_mask`` does, here on the frame at
    ``out_size`` (DINO rescales the map at the feature grid's upsampled size, padding included, then resizes
    the argmax by nearest neighbour); a label whose map is nowhere positive, or constant, is left as it is."""
    gh, gw = soft.shape[-2:]
    up = F.interpolate(soft[None].float(), size=(gh * STRIDE, gw * STRIDE), mode="bilinear", align_corners=False)
    up = up[..., :size[0], :size[1]]
    if tuple(out_size) != tuple(size):
        up = F.interpolate(up, size=tuple(out_size), mode="bilinear", align_corners=False)
    if norm_mask:
        low, high = up.amin(dim=(-2, -1), keepdim=True), up.amax(dim=(-2, -1), keepdim=True)
        rescale = (high > 0) & (high > low)
        up = torch.where(rescale, (up - low) / torch.where(rescale, high - low, 1.0), up)
    # arg-max over a contiguous last axis: ~8x faster on CPU than reducing the leading (label) axis
    return up[0].permute(1, 2, 0).contiguous().argmax(-1).to(torch.uint8).cpu().numpy()


def _first_mask_through_the_grid(seq: DavisSequence, size: tuple[int, int], norm_mask: bool) -> float:
    """Mean J over the objects of the first mask put on the feature grid of a ``size`` frame and read back as
    propagation reads its labels: the most any model can score where nothing moves."""
    first = seq.masks[0]
    back = grid_to_mask(labels_to_grid(first, seq.num_objects + 1, size), size, first.shape, norm_mask)
    return float(np.mean([jf.jaccard(first == obj, back == obj) for obj in seq.object_ids]))


def _device(model: torch.nn.Module) -> torch.device:
    param = next(iter(model.parameters()), None)
    return param.device if param is not None else torch.device("cpu")


class BrokenFeatures(VidsslError):
    """A model's features hold NaN or infinity (raised by :func:`dense_features`, named by the caller)."""


def dense_features(model, frames: Sequence[np.ndarray], size: tuple[int, int], batch_size: int,
                   device: torch.device | None = None) -> Iterator[torch.Tensor]:
    """Yield per frame (C, ceil(h/8), ceil(w/8)) features, L2-normalised over C, of the frames resized to ``size``
    = (h, w) and normalised with the model's mean/std. Batches of ``batch_size`` frames, computed lazily, on
    ``device`` (default: the model's)."""
    import cv2

    device = _device(model) if device is None else device
    expect = (-(-size[0] // STRIDE), -(-size[1] // STRIDE))
    for start in range(0, len(frames), batch_size):
        batch = [f if f.shape[:2] == size else cv2.resize(f, (size[1], size[0]), interpolation=cv2.INTER_AREA)
                 for f in frames[start:start + batch_size]]
        x = torch.from_numpy(np.stack(batch)).to(device).permute(0, 3, 1, 2).float().div_(255)
        with torch.inference_mode():
            feats = model.dense_features(normalize_rgb(x, model.mean, model.std))
        if tuple(feats.shape[-2:]) != expect:
            raise ValueError(f"{type(model).__name__}.dense_features gave a {tuple(feats.shape[-2:])} grid for a "
                             f"{size} input; the Backbone contract is stride 8, ceil(H/8) x ceil(W/8) = {expect}")
        if not bool(torch.isfinite(feats).all()):  # NaN spreads through the soft labels: a J&F with no warning
            raise BrokenFeatures(f"its dense features of frames {start}-{start + len(batch) - 1} hold NaN or "
                                 "infinity; these weights are broken (a diverged run, or a damaged file): retrain or "
                                 "re-export")
        yield from F.normalize(feats.float(), dim=1)


# ----------------------------------------------------------------------------------------------------------------
# one sequence, many models


def propagate_sequence(model, seq: DavisSequence, cfg: DavisConfig, progress: bool = True,
                       device: torch.device | None = None) -> dict:
    """Label-propagate ``seq`` with ``model`` on ``device`` (default: the model's; a model without parameters, as
    raw pixels, would otherwise run on the CPU beside GPU rows, its timings not comparable); returns ``{"masks": T
    (H, W) uint8 label maps (frame 0 = ground truth), "features_s", "propagation_s"}`` (seconds, wall clock;
    propagation includes upsampling and arg-max)."""
    from tqdm import tqdm

    from vidssl.progress import bars_on_stderr

    height, width = seq.masks[0].shape
    size = working_size(height, width, cfg.max_side)
    device = _device(model) if device is None else device
    first = labels_to_grid(seq.masks[0], seq.num_objects + 1, size).to(device)
    timer = {"features_s": 0.0, "propagation_s": 0.0}

    def timed_features() -> Iterator[torch.Tensor]:
        stream = dense_features(model, seq.frames, size, cfg.batch_size, device)
        while True:
            t0 = time.perf_counter()
            feat = next(stream, None)
            timer["features_s"] += time.perf_counter() - t0
            if feat is None:
                return
            yield feat

    masks = [seq.masks[0].copy()]
    stream = propagate(timed_features(), first, cfg)
    # progress as the other evaluations take it: a bar on a terminal, none when False
    bar = tqdm(total=len(seq) - 1, desc=f"davis {seq.name}", unit="frame", leave=False,
               disable=not bars_on_stderr(progress))
    with torch.inference_mode(), bar:
        while True:
            t0 = time.perf_counter()
            soft = next(stream, None)
            if soft is not None:
                masks.append(grid_to_mask(soft, size, (height, width), cfg.norm_mask))
            timer["propagation_s"] += time.perf_counter() - t0
            if soft is None:
                break
            bar.update()
    timer["propagation_s"] -= timer["features_s"]  # the feature stream runs inside the propagation generator
    return {"masks": masks, **timer}


def evaluate_davis(models: dict, data_dir: str | os.PathLike, out_dir: str | os.PathLike, cfg: DavisConfig,
                   progress: bool = True) -> dict:
    """Propagate the first-frame masks of every sequence with every model and score them.

    models: name -> Backbone (``dense_features``, ``mean``, ``std``; see vidssl.models). Writes
    ``out_dir/metrics.json`` (one block per model: ``J_mean``, ``F_mean``, ``JF_mean``, recalls, timings, overlay
    paths relative to ``out_dir`` and per sequence / per object results), ``out_dir/metrics.md`` and
    ``out_dir/overlays/<model>/<sequence>.png`` (``cfg.overlay_frames`` frames: prediction filled, ground truth
    outlined); with ``cfg.save_masks`` also the predicted palette PNGs in ``out_dir/masks/<model>/<sequence>/``
    (readable by the official DAVIS evaluator). A sequence that cannot be read is skipped with a warning and listed
    under ``"skipped"``; none left is an error. ``"weights"`` says per model the file it was loaded from
    (:func:`vidssl.eval.baselines.weights_record`), None for a module from code or a baseline. Each model runs in
    eval mode on ``cfg.device`` and is handed back in the mode and on the device it came with. Returns the
    metrics.json content.
    """
    from tqdm import tqdm

    from vidssl.progress import bars_on_stderr

    from vidssl.config import check_section, versions

    # built in code, a topk of 0 or a temperature of 0 would score 0.0 quietly
    check_section(cfg, "eval.davis", DavisConfig)
    check_models(models, ("dense_features", "mean", "std"), "evaluate_davis")

    out_dir = Path(out_dir)
    device = resolve_device(cfg.device, "eval.davis.device")
    if cfg.sequences:  # each sequence once; the layout checked first, as list_sequences does, rather than a
        check_layout(data_dir)  # "frames folder not found" per named sequence
        names = list(dict.fromkeys(cfg.sequences))
    else:
        names = list_sequences(data_dir, cfg.subset)
    results: dict[str, dict] = {name: {"sequences": {}, "features_s": 0.0, "propagation_s": 0.0, "frames": 0}
                                for name in models}
    slugs = _slugs(models)
    skipped: dict[str, str] = {}
    first_only = 0  # sequences skipped as masked in their first frame only
    unscored: dict[str, list[int]] = {}  # per sequence: objects that appear only after the first frame
    retired = False
    # one bar over the sequences (a DAVIS-2017 val run has 30) beside each sequence's bar over its frames
    with evaluation_mode(models, device), tqdm(names, desc="davis sequences", unit="sequence",
                                               disable=not bars_on_stderr(progress)) as sequences:
        for seq_name in sequences:
            try:
                seq = load_sequence(data_dir, seq_name)
                if len(seq) < 3:
                    raise DavisDataError(f"{Path(data_dir) / 'JPEGImages' / '480p' / seq_name}: {len(seq)} "
                                         "frame(s); scoring needs 3 (the first is given, the last is not scored)")
                size = working_size(*seq.masks[0].shape, cfg.max_side)
                if min(size) < MIN_SIDE:  # the backbones' dense features need 32 px a side
                    raise DavisDataError(
                        f"{Path(data_dir) / 'JPEGImages' / '480p' / seq_name}: frames of {seq.masks[0].shape[1]}x"
                        f"{seq.masks[0].shape[0]} px are fed at {size[1]}x{size[0]} (eval.davis.max_side="
                        f"{cfg.max_side}), under the {MIN_SIDE} px a side the backbones take; raise "
                        f"eval.davis.max_side (0: full size)")
            except DavisDataError as e:  # one bad sequence must not sink a long evaluation: report it, go on
                log.warning("davis: skipping sequence %s: %s", seq_name, e)
                skipped[seq_name] = str(e)
                first_only += isinstance(e, FirstFrameOnly)
                continue
            survives = _first_mask_through_the_grid(seq, size, cfg.norm_mask)
            if survives < 0.5:  # every model's masks pass the same grid: their J is capped near this
                shrunk = size != seq.masks[0].shape
                log.warning("davis: %s: fed at %dx%d, the first frame's mask itself comes back through the stride-8 "
                            "grid with J %.2f only, so every model's score is capped near it; %s", seq_name, size[1],
                            size[0], survives, f"raise eval.davis.max_side (now {cfg.max_side}; 0: full size)"
                            if shrunk else "its objects are too small for a stride-8 grid even at full size")
            later = sorted(set().union(*(np.unique(m).tolist() for m in seq.masks[1:])) - {0, *seq.object_ids})
            if later:  # not propagated (no first mask to start from) and not scored; the official evaluator
                # scores ids up to the first frame's largest and would count them as missed
                log.warning("davis: %s: object(s) %s appear only after the first frame; they are neither propagated "
                            "nor scored", seq_name, ", ".join(map(str, later)))
                unscored[seq_name] = later
            for model_name, model in models.items():
                try:
                    run = propagate_sequence(model, seq, cfg, progress, device)
                except BrokenFeatures as e:
                    raise VidsslError(f"{model_name} on {seq_name}: {e}") from None
                scores = jf.evaluate_sequence(seq.masks, run["masks"], seq.object_ids)
                block = results[model_name]
                block["sequences"][seq_name] = scores
                block["features_s"] += run["features_s"]
                block["propagation_s"] += run["propagation_s"]
                block["frames"] += len(seq) - 1
                slug = slugs[model_name]
                if not retired:  # this evaluation's first file: the earlier one's scores go (see retire_results)
                    retire_results(out_dir, figures=("overlays/*/*.png", f"{MASKS}/*/*/*.png"))
                    retired = True
                atomic_write_bytes(_inside(out_dir / "overlays" / slug, f"{seq_name}.png"),
                                   overlay_png(seq, run["masks"], cfg.overlay_frames, f"{model_name}  {seq_name}"))
                if cfg.save_masks:
                    for stem, mask in zip(seq.frame_names, run["masks"]):
                        atomic_write_bytes(_inside(out_dir / MASKS / slug, seq_name, f"{stem}.png"), palette_png(mask))
                log.info("davis %s %s: J&F %.3f (J %.3f, F %.3f)", model_name, seq_name, scores["JF_mean"],
                         scores["J_mean"], scores["F_mean"])
    names = [n for n in names if n not in skipped]
    if not names:
        if first_only and first_only == len(skipped):
            raise DavisDataError(f"{data_dir}: only the first frame of every sequence has a mask: DAVIS test-dev and "
                                 f"test-challenge have ground truth for the first frame only and are scored on the "
                                 f"DAVIS evaluation server; vidssl scores sets with full annotations: "
                                 f"download DAVIS-2017-trainval-480p.zip and pass its DAVIS folder")
        first_problem = next(iter(skipped.values()))
        raise DavisDataError(f"{data_dir}: no sequence could be evaluated; first problem: {first_problem}")
    models_out = {}
    for model_name, block in results.items():
        frames = max(block.pop("frames"), 1)
        models_out[model_name] = {**jf.aggregate(block["sequences"]),
                                  "features_s_per_frame": block.pop("features_s") / frames,
                                  "propagation_s_per_frame": block.pop("propagation_s") / frames,
                                  "overlays": {seq: f"overlays/{slugs[model_name]}/{seq}.png" for seq in names},
                                  "sequences": block["sequences"]}
    metrics = {"task": "davis_label_propagation", "data": str(Path(data_dir).resolve()), "sequences": names,
               "skipped": skipped, "unscored_objects": unscored,
               "protocol": {"bound_th": jf.BOUND_TH, "scored_frames": "all but the first and the last",
                            "mean_over": "objects", "objects": "those in the first frame's mask",
                            # published numbers (CRW, VFS, DINO) are of full-size frames: 0
                            "max_side": cfg.max_side},
               "config": asdict(cfg), "versions": versions(), "models": models_out,
               # per row, the file it was loaded from (path, sha256, its card's git_sha and steps), or None
               "weights": weights_record(models)}
    atomic_write_json(out_dir / "metrics.json", metrics)
    atomic_write_text(out_dir / "metrics.md", metrics_markdown(metrics))
    return metrics


# ----------------------------------------------------------------------------------------------------------------
# outputs


def metrics_markdown(metrics: dict) -> str:
    """A summary table (one row per model) and a per-sequence J&F table."""
    models = metrics["models"]
    lines = ["## DAVIS label propagation", "",
             f"{len(metrics['sequences'])} sequence(s) from `{metrics['data']}`; means over objects, frames 1..T-2; "
             "s/frame is wall-clock time, which on a shared machine moves with its load more than with the model.",
             "", "| model | J&F | J | F | J recall | F recall | J decay | F decay | s/frame (features + propagation) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, m in models.items():
        lines.append(f"| {name} | {m['JF_mean']:.3f} | {m['J_mean']:.3f} | {m['F_mean']:.3f} | "
                     f"{m['J_recall']:.3f} | {m['F_recall']:.3f} | {m['J_decay']:.3f} | {m['F_decay']:.3f} | "
                     f"{m['features_s_per_frame']:.3f} + {m['propagation_s_per_frame']:.3f} |")
    lines += ["", "| sequence | " + " | ".join(f"{n} J&F" for n in models) + " |",
              "|---|" + "---|" * len(models)]
    for seq in metrics["sequences"]:
        lines.append(f"| {seq} | " + " | ".join(f"{m['sequences'][seq]['JF_mean']:.3f}" for m in models.values())
                     + " |")
    for seq, ids in metrics["unscored_objects"].items():
        lines.append(f"\nNot scored in {seq}: object(s) {', '.join(map(str, ids))}, which appear only after the first "
                     "frame (neither propagated nor scored)")
    for seq, reason in metrics["skipped"].items():
        lines.append(f"\nSkipped {seq}: {reason}")
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

    im = Image.fromarray(mask.astype(np.uint8))
    im.putpalette(palette().flatten().tolist())  # L -> P, indices kept
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def overlay_png(seq: DavisSequence, pred: Sequence[np.ndarray], num_frames: int, title: str,
                max_side: int = 480) -> bytes:
    """PNG bytes: ``num_frames`` evenly spaced frames after the first, side by side; the prediction is blended
    in its palette colour, the ground-truth boundary drawn in white."""
    import cv2

    pal = palette()
    picks = np.unique(np.linspace(1, max(1, len(seq) - 2), num_frames).round().astype(int))  # scored frames
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
        # the file's name (frame 00012), as the warnings and saved masks name frames: a subsampled sequence's
        # position (frame 4) named another file
        name = seq.frame_names[t] if len(seq.frame_names) == len(seq) else str(t)
        cv2.putText(tile, f"frame {drawable(name)}", (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1,
                    cv2.LINE_AA)
        tiles.append(tile)
    strip = np.concatenate(tiles, 1)
    banner = np.zeros((24, strip.shape[1], 3), dtype=np.uint8)
    cv2.putText(banner, drawable(title), (6, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.concatenate([banner, strip], 0), cv2.COLOR_RGB2BGR))
    return buf.tobytes()


def _inside(folder: Path, *parts: str) -> Path:
    """``folder`` joined with ``parts``, refused unless it stays inside ``folder``: the last guard against a
    sequence name that climbs out ("../x", an absolute path), which would overwrite files elsewhere, input masks
    included. Lexical (no symlinks followed): an output folder linked to another disk is still inside."""
    path = folder.joinpath(*parts)
    top = os.path.abspath(folder)
    if os.path.commonpath([top, os.path.abspath(path)]) != top:
        raise VidsslError(f"{path}: outside the output folder {folder}; a sequence name must be a folder name "
                          f"under JPEGImages/480p (eval.davis.sequences, or the data's ImageSets list)")
    return path


def _slugs(names: Iterable[str]) -> dict[str, str]:
    """File-name-safe, distinct folder names for model names ("run/backbone (v2)" -> "run_backbone_v2")."""
    out: dict[str, str] = {}
    for name in names:
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "model"
        slug, i = base, 2
        while slug in out.values():
            slug, i = f"{base}-{i}", i + 1
        out[name] = slug
    return out
