"""The timing rule of the evaluation sections (tools/_bench_flow.py, tools/_bench_retrieval.py)."""
from __future__ import annotations

import time

import torch


def best_seconds(fn, repeats: int) -> float:
    """Fastest of ``repeats`` timed calls after a warm-up (allocator, OpenCV, oneDNN): on a shared machine the
    minimum is the run least disturbed by other processes."""
    sync = torch.cuda.synchronize if torch.cuda.is_initialized() else (lambda: None)  # --device cuda: kernels end
    fn()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return min(times)
