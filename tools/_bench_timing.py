"""Best-of-N timing after a warm-up: the flow section's rows (tools/_bench_flow.py) and retrieval's kNN rows
(tools/_bench_retrieval.py); retrieval's feature extraction times single passes that include starting the loader's
workers, as `vidssl eval retrieval` runs, and DAVIS its own per-frame minimum."""
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
