"""Best-of-N timing: after a warm-up for the flow section's rows (tools/_bench_flow.py) and retrieval's kNN rows
(tools/_bench_retrieval.py); in turns, for the sides of a ratio (retrieval's feature extraction, whose passes include
starting the loader's workers, as `vidssl eval retrieval` runs). DAVIS alternates its streams frame by frame itself."""
from __future__ import annotations

import time

import torch


def best_seconds(fn, repeats: int, device: torch.device | None = None) -> float:
    """Fastest of ``repeats`` timed calls after a warm-up (allocator, OpenCV, oneDNN): on a shared machine the
    minimum is the run least disturbed by other processes. On a CUDA ``device`` each call's kernels end inside its
    timer (that device's: a bare synchronize waits on the current one, cuda:0, not cuda:1)."""
    on_gpu = device is not None and device.type == "cuda"
    sync = (lambda: torch.cuda.synchronize(device)) if on_gpu else (lambda: None)
    fn()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return min(times)


def alternating_best(passes: list, rounds: int) -> list[float]:
    """Fastest seconds of each of ``passes`` over ``rounds`` rounds in which they take turns, the first of a round
    rotating: load from another job falls on every side alike (timed one side after the other, a burst fell on one,
    and two models read faster than decoding alone)."""
    times: list[list[float]] = [[] for _ in passes]
    for r in range(rounds):
        for i in [(r + j) % len(passes) for j in range(len(passes))]:
            start = time.perf_counter()
            passes[i]()
            times[i].append(time.perf_counter() - start)
    return [min(t) for t in times]
