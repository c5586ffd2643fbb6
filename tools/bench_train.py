"""Training throughput: the real step fed by the real loader (shards on disk, DataLoader workers) against the same
step fed from tensors already in memory, and pairs/s per backbone and patch size. Ratios are measured in one run.

    python tools/bench_train.py                       # synthetic shards (96 px, like `vidssl mine`) in a temp dir
    python tools/bench_train.py --pairs PAIRS --archs smallcnn resnet18 --sizes 64 96 --steps 20

Prints a Markdown table: pairs/s (one pair = an anchor-positive pair with its K mined negatives; the forward pass
covers 2P patches, 3P with backgrounds, plus 2P rolled copies with the cycle loss), triplets/s (every triplet the loss
took: the mined ones plus, with backgrounds, each pair's triplet with its own background, P a step), and
loader/in-memory ratio (target >= 0.9).
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

SYNTHETIC_PAIRS = 2048  # pairs written when --pairs is not given


def _synthetic(root: Path, pairs: int, size: int) -> Path:
    from vidssl.data import write_pair_dataset

    rng = np.random.default_rng(0)
    # first, last and same-frame background patch, as `vidssl mine` stores them: the default step trains on all three
    patches = rng.integers(0, 256, size=(pairs, 3, size, size, 3), dtype=np.uint8)
    videos = [f"v{i % 9}" for i in range(pairs)]
    return write_pair_dataset(root, patches, videos, list(range(pairs)), shard_rows=512)


def bench(pairs_dir: Path, arch: str, size: int, steps: int, warmup: int, batch_pairs: int, workers: int,
          precision: str, rounds: int) -> dict:
    """Alternate ``rounds`` chunks of steps fed by the loader and from memory (so drifting load on a shared machine
    hits both alike) and sum the time of each. Both feeds time the same step indices (see _alternate).

    Every loader chunk starts a fresh loader and runs its first ``workers x data.prefetch`` steps untimed: those
    batches were prepared while the workers started, and a loader kept alive between chunks would prepare the next
    chunk's batches during the in-memory chunk (and slow that chunk with its work), both of which pull the ratio
    towards 1. No loader is alive while in-memory steps are timed. Its sampler holds ``workers x data.prefetch``
    batches more than the chunk takes: the loader asks for a new batch as each is taken, so with exactly as many as
    the chunk takes its workers had prepared them all by the end of the untimed steps and sat idle through the
    timed ones (which then measured an in-memory step). The extra batches keep them working, as in training."""
    from vidssl.config import load_config
    from vidssl.data import PairBatchSampler, PairPatches, make_loader, open_pairs, to_input
    from vidssl.train import runtime_settings

    pairs = open_pairs(pairs_dir)
    background = str(pairs.has_background).lower()  # the default trains on backgrounds where the pairs hold them
    cfg = load_config(None, [f"model.arch={arch}", f"data.patch_size={size}", f"train.batch_pairs={batch_pairs}",
                             f"data.num_workers={workers}", f"train.precision={precision}",
                             f"miner.background_negatives={background}", f"loss.cycle_background={background}"])
    bg = cfg.miner.background_negatives
    dev = torch.device("cpu")
    codes = torch.from_numpy(pairs.video).long()
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    queued = workers * cfg.data.prefetch  # batches a fresh loader has ready before the step waits on it

    def loader_feed(chunk: int):
        """A fresh loader: ``queued`` untimed batches, the timed ones, and ``queued`` more it is still preparing
        when the chunk ends (never taken); its workers end with the chunk."""
        count = warmup if chunk < 0 else queued + steps + queued
        sampler = PairBatchSampler(pairs.video, pairs.track, batch_pairs, cfg.seed + chunk + 1, steps=count)
        for patches, index in make_loader(PairPatches(pairs, cfg.data, bg), sampler, cfg.data, pin_memory=False):
            yield to_input(patches, mean, std, dev, cfg.train.channels_last), codes[index]

    # in memory: batches loaded and augmented beforehand; only the tensor conversion stays in the loop
    cfg_mem = load_config(None, [f"data.patch_size={size}", "data.num_workers=0"])
    sampler = PairBatchSampler(pairs.video, pairs.track, batch_pairs, cfg.seed, steps=warmup + steps * rounds)
    cached = list(make_loader(PairPatches(pairs, cfg_mem.data, bg), sampler, cfg_mem.data, pin_memory=False))

    def memory_feed(chunk: int):
        first = 0 if chunk < 0 else warmup + chunk * steps
        for patches, index in cached[first:]:
            yield to_input(patches, mean, std, dev, cfg.train.channels_last), codes[index]

    with runtime_settings(cfg, dev):  # the threads and determinism train() runs with
        return _alternate(cfg, dev, arch, size, {"memory": (memory_feed, 0), "loader": (loader_feed, queued)},
                          steps, warmup, rounds, batch_pairs)


def _alternate(cfg, dev, arch, size, feeds, steps, warmup, rounds, batch_pairs) -> dict:
    """``feeds``: name -> (chunk -> batch iterator (chunk -1: the warm-up), untimed lead-in steps per chunk).

    Each round spans the longest lead plus ``steps`` step indices, and every feed times the last ``steps`` of them,
    its lead (if any) taking the indices just before: the miner's phase (random, then hard from
    ``miner.hard_start`` of the steps) and the cycle loss's roll depend on the step index, so feeds timed at
    different indices would time different work."""
    from vidssl.train import TrainStep, build_model

    span = max(lead for _, lead in feeds.values()) + steps
    total = warmup + span * rounds
    steppers, seconds, triplets = {}, {"memory": 0.0, "loader": 0.0}, {"memory": 0, "loader": 0}
    for name, (feed, _) in feeds.items():
        model = build_model(cfg).to(dev, memory_format=torch.channels_last).train()
        steppers[name] = TrainStep(model, cfg, dev, total)
        batches = feed(-1)
        for s in range(warmup):  # worker start-up, allocator, oneDNN kernel selection
            steppers[name](*next(batches), s)
        del batches  # its workers end here
    for r in range(rounds):
        timed = warmup + r * span + span - steps  # the first timed step index of this round, the same for every feed
        # which feed goes first alternates, as in fill_cost: with --warmup 0 the first steps' one-time costs (oneDNN
        # kernel selection, the allocator) fell on the in-memory feed, which always went first
        for name, (feed, lead) in list(feeds.items())[::1 if r % 2 == 0 else -1]:
            batches = feed(r)
            for s in range(timed - lead, timed):
                steppers[name](*next(batches), s)
            t0 = time.perf_counter()
            for s in range(timed, timed + steps):
                triplets[name] += len(steppers[name](*next(batches), s).triplets)
            seconds[name] += time.perf_counter() - t0
            del batches
    n = steps * rounds * batch_pairs
    return {"arch": arch, "size": size, "pairs_per_s": n / seconds["loader"],
            "triplets_per_s": triplets["loader"] / seconds["loader"], "memory_pairs_per_s": n / seconds["memory"],
            "ratio": seconds["memory"] / seconds["loader"]}


def fill_cost(arch: str, size: int, steps: int, warmup: int, rounds: int, batch_pairs: int, precision: str) -> float:
    """Seconds per in-memory step with torch's NaN fill of fresh tensors (what deterministic mode does by default)
    over seconds without it (what ``vidssl train`` runs with): the two alternate in rounds, on one fixed batch."""
    import torch.utils.deterministic as det

    from vidssl.config import load_config
    from vidssl.train import TrainStep, build_model, runtime_settings

    cfg = load_config(None, [f"model.arch={arch}", f"data.patch_size={size}", f"train.batch_pairs={batch_pairs}",
                             f"train.precision={precision}"])
    dev = torch.device("cpu")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3 * batch_pairs, 3, size, size, generator=g).contiguous(memory_format=torch.channels_last)
    groups = torch.arange(batch_pairs) % 9
    seconds = {True: 0.0, False: 0.0}
    with runtime_settings(cfg, dev):
        steppers = {}
        for fill in seconds:
            det.fill_uninitialized_memory = fill
            steppers[fill] = TrainStep(build_model(cfg).to(dev, memory_format=torch.channels_last).train(), cfg,
                                       dev, warmup + rounds * steps)
            for s in range(warmup):
                steppers[fill](x, groups, s)
        for r in range(rounds):
            # which side goes first alternates: with --warmup 0 the first step's one-time costs fell on the fill side
            for fill in (True, False) if r % 2 == 0 else (False, True):
                det.fill_uninitialized_memory = fill
                t0 = time.perf_counter()
                for s in range(steps):
                    steppers[fill](x, groups, warmup + r * steps + s)
                seconds[fill] += time.perf_counter() - t0
    return seconds[True] / seconds[False]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=Path, help="a pair dataset (default: synthetic shards in a temp dir)")
    ap.add_argument("--archs", nargs="+", default=["smallcnn", "alexnet_wang2015", "resnet18"])
    ap.add_argument("--sizes", nargs="+", type=int, default=[64],
                    help="network input sides (default 64, which every default arch takes; vidssl train's default "
                         "data.patch_size is 48, below alexnet_wang2015's smallest)")
    ap.add_argument("--steps", type=int, default=4, help="timed steps per round and feed")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of loader-fed and in-memory steps")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (worker start-up, allocator)")
    ap.add_argument("--batch-pairs", type=int, default=64)
    ap.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: data.num_workers)")
    ap.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"))
    ap.add_argument("--fill-uninitialized", action="store_true",
                    help="instead: the in-memory step with deterministic mode's NaN fill of fresh tensors over the "
                         "step without it (vidssl train turns the fill off)")
    args = ap.parse_args(argv)
    for name in ("steps", "rounds", "batch_pairs"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.warmup < 0 or (args.workers is not None and args.workers < 0):
        ap.error("--warmup and --workers must be >= 0")
    if args.fill_uninitialized and (args.pairs is not None or args.workers is not None):
        ap.error("--fill-uninitialized times the in-memory step on a fixed random batch: --pairs and --workers do "
                 "not apply")
    from vidssl.config import load_config
    from vidssl.data import open_pairs
    from vidssl.errors import ConfigError, VidsslError
    from vidssl.train import resolve_precision

    for arch, size in itertools.product(args.archs, args.sizes):  # before minutes of shard writing and steps
        try:
            load_config(None, [f"model.arch={arch}", f"data.patch_size={size}",
                               f"train.batch_pairs={args.batch_pairs}"])
        except ConfigError as e:
            ap.error(f"--archs {arch} --sizes {size}: {e}")

    precision = resolve_precision(args.precision, torch.device("cpu"))
    if args.fill_uninitialized:  # random tensors: no pairs to check
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {precision}, P = {args.batch_pairs}, "
              f"{args.warmup} warm-up steps, then {args.rounds} x {args.steps} timed steps each")
        print("| arch | patch | step with fill / without |")
        print("|---|---|---|")
        for arch, size in itertools.product(args.archs, args.sizes):
            ratio = fill_cost(arch, size, args.steps, args.warmup, args.rounds, args.batch_pairs, precision)
            print(f"| {arch} | {size} | {ratio:.3f} |", flush=True)
        return 0
    if args.pairs is not None and not (args.pairs / "manifest.jsonl").is_file():
        ap.error(f"--pairs {args.pairs}: not a pair dataset (no manifest.jsonl); make one with `vidssl mine`")
    try:
        count = SYNTHETIC_PAIRS if args.pairs is None else len(open_pairs(args.pairs))
    except VidsslError as e:
        ap.error(f"--pairs {args.pairs}: {e}")
    if args.batch_pairs > count:  # the sampler refuses it too, but only after the synthetic shards are written
        ap.error(f"--batch-pairs {args.batch_pairs}: more than the {count} pairs of "
                 f"{args.pairs or 'the synthetic set'}; use at most {count}")
    defaults = load_config()
    workers = defaults.data.num_workers if args.workers is None else args.workers
    with tempfile.TemporaryDirectory() as tmp:
        pairs = args.pairs or _synthetic(Path(tmp) / "pairs", SYNTHETIC_PAIRS, 96)
        has_background = open_pairs(pairs).has_background
        backgrounds = "on" if has_background else "off (the pairs hold none)"
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {workers} loader workers, "
              f"{precision} (--precision {args.precision}), P = {args.batch_pairs}, {args.warmup} warm-up steps, then "
              f"{args.rounds} x {args.steps} timed steps per feed, each loader round after "
              f"{workers * defaults.data.prefetch} untimed ones (workers x data.prefetch); background negatives and "
              f"walks {backgrounds}; pairs: {pairs}")
        triplets = "mined + background" if has_background else "mined"
        print(f"| arch | patch | pairs/s (loader) | triplets/s ({triplets}) | pairs/s (in memory) | loader / memory |")
        print("|---|---|---|---|---|---|")
        for arch, size in itertools.product(args.archs, args.sizes):
            r = bench(pairs, arch, size, args.steps, args.warmup, args.batch_pairs, workers, args.precision,
                      args.rounds)
            print(f"| {arch} | {size} | {r['pairs_per_s']:.1f} | {r['triplets_per_s']:.1f} | "
                  f"{r['memory_pairs_per_s']:.1f} | {r['ratio']:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
