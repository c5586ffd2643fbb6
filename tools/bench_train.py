"""Training throughput: the real step fed by the real loader (shards on disk, DataLoader workers) against the same
step fed from tensors already in memory, and pairs/s per backbone and patch size. Ratios are measured in one run.

    python tools/bench_train.py                       # synthetic shards (96 px, like `vidssl mine`) in a temp dir
    python tools/bench_train.py --pairs PAIRS --archs smallcnn resnet18 --sizes 64 96 --steps 20

Prints a Markdown table: pairs/s (one pair = an anchor-positive pair with its K mined negatives; the forward pass
covers 2P patches), triplets/s (mined), and loader/in-memory ratio (target >= 0.9).
"""
from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # for the synthetic pair writer


def _synthetic(root: Path, pairs: int, size: int) -> Path:
    from train_utils import write_pairs

    rng = np.random.default_rng(0)
    patches = rng.integers(0, 256, size=(pairs, 2, size, size, 3), dtype=np.uint8)
    videos = [f"v{i % 9}" for i in range(pairs)]
    return write_pairs(root, patches, videos, list(range(pairs)), shard_rows=512)


def _time_steps(stepper, batches, steps: int, warmup: int) -> tuple[float, int]:
    """Seconds for ``steps`` steps after ``warmup`` untimed ones, and the triplets mined in them."""
    it = iter(batches)
    for s in range(warmup):
        stepper(*next(it), s)
    t0, triplets = time.perf_counter(), 0
    for s in range(warmup, warmup + steps):
        triplets += len(stepper(*next(it), s).triplets)
    return time.perf_counter() - t0, triplets


def bench(pairs_dir: Path, arch: str, size: int, steps: int, warmup: int, batch_pairs: int, workers: int,
          precision: str) -> dict:
    from vidssl.config import load_config
    from vidssl.data import PairBatchSampler, PairPatches, make_loader, open_pairs, to_input
    from vidssl.train import TrainStep, build_model

    cfg = load_config(None, [f"model.arch={arch}", f"data.patch_size={size}", f"train.batch_pairs={batch_pairs}",
                             f"data.num_workers={workers}", f"train.precision={precision}"])
    pairs = open_pairs(pairs_dir)
    dev = torch.device("cpu")
    codes = torch.from_numpy(pairs.video).long()
    total = warmup + steps

    def loader_batches():
        sampler = PairBatchSampler(pairs.video, pairs.track, batch_pairs, cfg.seed, steps=total)
        for patches, index in make_loader(PairPatches(pairs, cfg.data), sampler, cfg.data, pin_memory=False):
            yield to_input(patches, (0.5,) * 3, (0.25,) * 3, dev, False), codes[index]

    # in memory: the same batches, loaded and augmented beforehand; only the tensor conversion stays in the loop
    cfg_mem = load_config(None, [f"data.patch_size={size}", "data.num_workers=0"])
    sampler = PairBatchSampler(pairs.video, pairs.track, batch_pairs, cfg.seed, steps=total)
    cached = list(make_loader(PairPatches(pairs, cfg_mem.data), sampler, cfg_mem.data, pin_memory=False))
    memory = ((to_input(p, (0.5,) * 3, (0.25,) * 3, dev, False), codes[i]) for p, i in cached)

    out = {}
    for name, batches in (("memory", memory), ("loader", loader_batches())):
        model = build_model(cfg).to(dev).train()
        stepper = TrainStep(model, cfg, dev, total)
        seconds, triplets = _time_steps(stepper, batches, steps, warmup)
        out[name] = (steps * batch_pairs / seconds, triplets / seconds)
    return {"arch": arch, "size": size, "pairs_per_s": out["loader"][0], "triplets_per_s": out["loader"][1],
            "memory_pairs_per_s": out["memory"][0], "ratio": out["loader"][0] / out["memory"][0]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=Path, help="a pair dataset (default: synthetic shards in a temp dir)")
    ap.add_argument("--archs", nargs="+", default=["smallcnn", "alexnet_wang2015", "resnet18"])
    ap.add_argument("--sizes", nargs="+", type=int, default=[64])
    ap.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (worker start-up, allocator)")
    ap.add_argument("--batch-pairs", type=int, default=64)
    ap.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: data.num_workers)")
    ap.add_argument("--precision", default="bf16", choices=("bf16", "fp32"))
    args = ap.parse_args(argv)
    from vidssl.config import load_config

    workers = load_config().data.num_workers if args.workers is None else args.workers
    with tempfile.TemporaryDirectory() as tmp:
        pairs = args.pairs or _synthetic(Path(tmp) / "pairs", 2048, 96)
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {workers} loader workers, "
              f"{args.precision}, P = {args.batch_pairs}, {args.steps} timed steps; pairs: {pairs}")
        print("| arch | patch | pairs/s (loader) | triplets/s | pairs/s (in memory) | loader / memory |")
        print("|---|---|---|---|---|---|")
        for arch, size in itertools.product(args.archs, args.sizes):
            r = bench(pairs, arch, size, args.steps, args.warmup, args.batch_pairs, workers, args.precision)
            print(f"| {arch} | {size} | {r['pairs_per_s']:.1f} | {r['triplets_per_s']:.1f} | "
                  f"{r['memory_pairs_per_s']:.1f} | {r['ratio']:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
