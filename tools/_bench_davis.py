"""DAVIS label propagation speed (called by tools/bench_eval.py; runs alone too: python tools/_bench_davis.py).

- propagation: seconds per target frame with a full context (first frame + 20 previous, top-10, radius 12) on
  random unit features, for the tiled implementation of vidssl.eval.davis, the same with one tile (full N x N
  affinity per context frame, the plain matrix-product form), and a per-cell loop (numpy, timed on a sample of
  cells and extrapolated); the three advance in turn, frame by frame, in one loop, and each keeps its fastest of
  the frames after the context fills (timed one after another, load from another job fell on one side: the tiled
  path read 3.6x slower than one tile, alternated 1.6x faster);
- end to end on $VIDSSL_DATA/davis/blackswan (when present): features + propagation seconds per frame for raw
  pixels and a random-init smallcnn at the default 480-px input.
"""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from _bench_videos import data_root
from vidssl.eval.config import DavisConfig
from vidssl.eval.davis import propagate

CONTEXT = 20
TIMED = 5  # target frames timed once the context is full (the stream holds CONTEXT + 1 + TIMED frames)
CELLS = 60  # query cells the per-cell loop times per target frame


def _alternate(feats: list[torch.Tensor], first: torch.Tensor, cfg: DavisConfig,
               tiles: dict[str, int]) -> dict[str, float]:
    """Fastest seconds per target frame with a full context, for each of ``tiles`` (name -> tile size) and for the
    per-cell loop ("loop"). The streams advance in turn within one loop over the frames, the order rotating frame
    to frame, so a burst of load from another job falls on every side alike rather than on whichever ran second;
    the loop, which needs no stream, runs in the same turn once the context is full."""
    streams = {name: propagate(feats, first, cfg, tile=tile) for name, tile in tiles.items()}
    times: dict[str, list[float]] = {name: [] for name in (*tiles, "loop")}
    for t in range(1, len(feats)):
        sides = list(times) if t > CONTEXT else list(streams)  # before the context fills: streams only, untimed
        turn = t % len(sides)
        for name in sides[turn:] + sides[:turn]:
            if name == "loop":
                times[name].append(_per_cell_loop(feats, first, t, cfg, CELLS))
                continue
            start = time.perf_counter()
            next(streams[name])
            if t > CONTEXT:
                times[name].append(time.perf_counter() - start)
    return {name: min(seconds) for name, seconds in times.items()}


def _per_cell_loop(feats: list[torch.Tensor], first: torch.Tensor, t: int, cfg: DavisConfig, cells: int) -> float:
    """Seconds per frame of a Python loop over target frame ``t``'s query cells (each: dot products with every cell
    of the first frame and of the ``CONTEXT`` previous ones, radius mask, top-k, softmax vote), timed on ``cells``
    cells and scaled to the grid; building the key arrays is not timed."""
    c, h, w = feats[0].shape
    keys = [f.reshape(c, -1).t().numpy() for f in [feats[0], *feats[t - CONTEXT:t]]]  # (N, C) each
    labels = np.concatenate([first.reshape(first.shape[0], -1).t().numpy()] * len(keys))  # (M * N, L)
    query = feats[t].reshape(c, -1).t().numpy()
    yy, xx = np.divmod(np.arange(h * w), w)
    start = time.perf_counter()
    for q in np.linspace(0, h * w - 1, cells).astype(int):
        near = np.hypot(yy - yy[q], xx - xx[q]) <= cfg.radius
        scores = np.concatenate([k @ query[q] if i == 0 else np.where(near, k @ query[q], -np.inf)
                                 for i, k in enumerate(keys)])
        top = np.argpartition(-scores, cfg.topk)[:cfg.topk]
        weight = np.exp((scores[top] - scores[top].max()) / cfg.temperature)
        _ = (labels[top] * (weight / weight.sum())[:, None]).sum(0)
    return (time.perf_counter() - start) / cells * h * w


def bench_propagation() -> None:
    cfg = DavisConfig()
    print(f"Propagation, one target frame with a full context (1 + {CONTEXT} frames, top-{cfg.topk}, radius "
          f"{cfg.radius}); {torch.get_num_threads()} torch threads; tiled, one tile and the per-cell loop (on {CELLS} "
          f"cells a frame) in turn, frame by frame, in one loop; each the best of the {TIMED} frames after the "
          f"context fills\n")
    print("| input | grid | dim | tiled s/frame | one N x N tile s/frame | x | per-cell loop s/frame | x |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    gen = torch.Generator().manual_seed(0)
    for (height, width), dim in (((272, 480), 3), ((272, 480), 256), ((480, 854), 256)):
        h, w = -(-height // 8), -(-width // 8)
        feats = [F.normalize(torch.randn(dim, h, w, generator=gen), dim=0) for _ in range(CONTEXT + 1 + TIMED)]
        first = torch.softmax(torch.randn(2, h, w, generator=gen), 0)
        with torch.inference_mode():
            best = _alternate(feats, first, cfg, {"tiled": 8, "whole": max(h, w)})
        tiled, whole, loop = best["tiled"], best["whole"], best["loop"]
        print(f"| {width}x{height} | {w}x{h} | {dim} | {tiled:.3f} | {whole:.3f} | {whole / tiled:.1f} | "
              f"{loop:.1f} | {loop / tiled:.0f} |", flush=True)


def bench_blackswan(frames: int = 25) -> None:
    from vidssl.eval.baselines import PixelFeatures
    from vidssl.eval.davis import propagate_sequence
    from vidssl.eval.davis_data import load_sequence
    from vidssl.models import build_backbone

    root = data_root() / "davis"
    if not (root / "JPEGImages").is_dir():
        print(f"\n(no DAVIS data at {root}: end-to-end timing skipped)")
        return
    seq = load_sequence(root, "blackswan")
    seq.frames, seq.masks = seq.frames[:frames], seq.masks[:frames]
    frames = len(seq.frames)  # a shorter sequence: what it has
    cfg = DavisConfig()
    print(f"\nEnd to end on blackswan, first {frames} frames, 854x480 -> {cfg.max_side}-px input, default config\n")
    print("| model | features s/frame | propagation s/frame (incl. upsampling) |")
    print("|---|---:|---:|")
    torch.manual_seed(0)
    for name, model in (("raw pixels", PixelFeatures().eval()), ("smallcnn (random init)",
                                                                 build_backbone("smallcnn").eval())):
        propagate_sequence(model, seq, cfg, progress=False)  # untimed: allocator and oneDNN warm-up, per model
        run = propagate_sequence(model, seq, cfg, progress=False)
        # features are extracted for every frame, the first included; propagation runs on the others
        print(f"| {name} | {run['features_s'] / frames:.3f} | {run['propagation_s'] / (frames - 1):.3f} |",
              flush=True)


def main() -> None:
    bench_propagation()
    bench_blackswan()


if __name__ == "__main__":
    import argparse

    # no options: --help says what it measures, and a stray argument is refused rather than ignored
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    main()
