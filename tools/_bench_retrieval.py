"""Retrieval benchmark throughput (called by tools/bench_eval.py; runs alone too: python tools/_bench_retrieval.py).

- extraction: images/s through the DataLoader + backbone, against decoding alone, on the CUB subset of
  $VIDSSL_DATA (or 600 synthetic JPEGs when it is absent); each model's passes alternate with decode-only passes,
  ROUNDS of each, the fastest of each side kept (one decode-only pass timed before every model row let load from
  another job fall on one side: two models read faster than decoding alone);
- kNN: queries/s of the chunked metric pass (top-k + every per-query metric) on random 128-d embeddings, against
  one unchunked matmul + top-k where that fits in memory (each the best of REPEATS after a warm-up, as in the flow
  section), and the cost of the k-means behind NMI.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from _bench_timing import alternating_best, best_seconds
from _bench_videos import data_root
from vidssl.eval.baselines import PixelFeatures
from vidssl.eval.config import RetrievalConfig
from vidssl.eval.metrics import kmeans, retrieval_metrics
from vidssl.eval.retrieval import extract_features
from vidssl.eval.retrieval_data import load_retrieval_set
from vidssl.models import build_backbone

REPEATS = 3  # timed kNN passes per row, the fastest kept
ROUNDS = 3  # extraction: timed passes of each side (model, decode-only) per row, alternating, the fastest kept


def _images_dir(tmp: Path) -> Path:
    data = data_root() / "retrieval" / "cub_subset"
    if data.is_dir():
        return data
    rng = np.random.default_rng(0)
    for i in range(600):
        img = cv2.GaussianBlur(rng.integers(0, 256, (227, 227, 3), dtype=np.uint8), (0, 0), 3)
        path = tmp / f"c{i % 30:02d}" / f"{i:04d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), img)
    return tmp


def bench_extraction(root: Path) -> None:
    """Images/s of whole extraction passes, as `vidssl eval retrieval` makes them: each pass starts its loader's
    workers (about a second with 2), a fixed cost that weighs most on the fastest row, decode-only; it is in every
    pass, model and decode-only alike. Each model row alternates its passes with decode-only passes and divides
    by those: a ratio of passes timed in the same minute."""
    cfg = RetrievalConfig()
    print(f"Feature extraction on {root}: {cfg.image_size} px, batch {cfg.batch_size}, "
          f"{torch.get_num_threads()} torch threads; every pass starts its loader's workers; each row the fastest "
          f"of {ROUNDS} passes, a model's alternating with {ROUNDS} decode-only passes, its ratio taken against "
          "those\n")
    print("| workers | model | images/s | decode-only images/s (alternated) | x decode-only |")
    print("|---:|---|---:|---:|---:|")
    data = load_retrieval_set(root, cfg)
    n = len(data.labels)
    extract_features({}, data.items, cfg.batch_size, 0, progress=False)  # warm the file cache and the decoder
    for workers in (0, cfg.num_workers):
        def run(models: dict, workers: int = workers) -> None:
            extract_features(models, data.items, cfg.batch_size, workers, progress=False)

        decode = n / alternating_best([lambda: run({})], ROUNDS)[0]
        print(f"| {workers} | decode only | {decode:.0f} | - | 1.00 |", flush=True)
        if workers == 0:
            continue
        for name, model in (("raw pixels", PixelFeatures()), ("smallcnn", build_backbone("smallcnn")),
                            ("resnet18", build_backbone("resnet18"))):
            run({name: model.eval()})  # untimed: oneDNN's kernel selection for this model's shapes
            seconds, decode_seconds = alternating_best([lambda: run({name: model}), lambda: run({})], ROUNDS)
            rate, decode = n / seconds, n / decode_seconds
            print(f"| {workers} | {name} | {rate:.0f} | {decode:.0f} | {rate / decode:.2f} |", flush=True)


def bench_knn(sizes: tuple[int, ...] = (10_000, 50_000)) -> None:
    print(f"\nkNN + metrics on random 128-d embeddings, 1000 labels (query set = reference set); best of {REPEATS} "
          "after a warm-up\n")
    print("| N | pass | queries/s | x unchunked top-k |")
    print("|---:|---|---:|---:|")
    g = torch.Generator().manual_seed(0)
    for n in sizes:
        x = torch.randn(n, 128, generator=g)
        labels = torch.randint(0, 1000, (n,), generator=g)
        base = None
        if n * n * 4 < 2**30:  # the N x N matrix fits in 1 GiB: time the naive pass for reference
            xn = torch.nn.functional.normalize(x, dim=1)
            base = n / best_seconds(lambda: torch.topk(xn @ xn.T, 64, dim=1), REPEATS)
            print(f"| {n} | unchunked matmul + top-64 | {base:.0f} | 1.00 |", flush=True)
        for chunk_mb in (64, 256):
            rate = n / best_seconds(lambda: retrieval_metrics(x, labels, with_nmi=False, chunk_mb=chunk_mb), REPEATS)
            ratio = f"{rate / base:.2f}" if base else "-"
            print(f"| {n} | metrics, chunk {chunk_mb} MB | {rate:.0f} | {ratio} |", flush=True)
    x = torch.nn.functional.normalize(torch.randn(10_000, 128, generator=g), dim=1)
    start = time.perf_counter()
    kmeans(x, 100, seed=0, iters=100)
    print(f"\nk-means (NMI), 10,000 x 128, k = 100, <= 100 iterations: {time.perf_counter() - start:.1f} s")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        bench_extraction(_images_dir(Path(tmp)))
    bench_knn()


if __name__ == "__main__":
    import argparse

    # no options: --help says what it measures, and a stray argument is refused rather than ignored
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    main()
