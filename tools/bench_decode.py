"""Decode throughput of each video backend on the shared clips: frames/s, median of several runs.

    python tools/bench_decode.py [--data $VIDSSL_DATA/videos] [--runs 3] [--max-side N]

Opens each clip and decodes every frame to RGB uint8 (the streaming iterator the pipeline uses), one process: first
one untimed decode per backend, then ``--runs`` runs that each decode once with every backend, the first backend of a
run moving one along each run. The size column is the decoded size (``--max-side`` applied), the frames column the
count decoded (two counts where backends disagree); a backend that cannot decode a clip gets "-" and the reason.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from _bench_videos import data_root, open_clips
from vidssl.config import versions
from vidssl.errors import VideoError
from vidssl.video import available_backends, open_video, resized_shape


def decode_fps(path: Path, backend: str, max_side: int | None) -> tuple[int, float]:
    """(frames decoded, frames/s), the opening of the file timed too: decord's reader decodes while it opens, the
    other backends when iterated, so timing the iteration alone would favour decord. decord's opening also holds
    what open_video checks before using it (PyAV opens the file to vet it; an MP4's packets are read once for an edit
    list), 20-40% of decord's time on the shortest clips: `auto` does those checks whichever backend reads."""
    start = time.perf_counter()
    with open_video(path, backend) as reader:
        n = sum(1 for _ in reader.frames(max_side=max_side))
    return n, n / (time.perf_counter() - start)


def timed_runs(path: Path, backends: list[str], runs: int, max_side: int | None):
    """({backend: [frames/s of each run]}, the frame counts decoded, {backend: why it failed}). Runs, not backends,
    are the outer loop, so load drifting during a clip falls on every backend alike; within a run the backends take
    turns being first (decoding right after another backend read the file); run 0 is untimed (file cache, decoder
    set-up)."""
    rates = {b: [] for b in backends}
    counts, failed = set(), {}
    for run in range(runs + 1):
        k = run % len(backends)
        for backend in backends[k:] + backends[:k]:
            if backend in failed:
                continue
            try:
                n, fps = decode_fps(path, backend, max_side)
            except VideoError as e:  # a clip `auto` opens that one backend cannot: a row, not a crash
                failed[backend] = e.reason
                continue
            counts.add(n)
            if run:
                rates[backend].append(fps)
    return rates, counts, failed


def main() -> None:
    default = data_root() / "videos"
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=default)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--max-side", type=int, default=None, help="resize at decode time (default: source size)")
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    if args.max_side is not None and args.max_side < 0:
        ap.error(f"--max-side must be a positive number of pixels (or 0: no limit), got {args.max_side}")
    clips = open_clips(ap, args.data)
    backends = available_backends()
    version = versions()
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
          + ", ".join(f"{b} {version[b]}" for b in backends)
          + f"; median of --runs {args.runs} after one untimed decode per backend; "
            f"--max-side {args.max_side or 'none (source size)'}")
    print("| clip | decoded size | frames | " + " | ".join(f"{b} f/s" for b in backends) + " |")
    print("|---|---|---|" + "---|" * len(backends))
    for path, height, width in clips:
        h, w = resized_shape(height, width, args.max_side)
        rates, counts, failed = timed_runs(path, backends, args.runs, args.max_side)
        cells = ["-" if b in failed else f"{statistics.median(rates[b]):.0f}" for b in backends]
        frames = "/".join(str(n) for n in sorted(counts))  # several counts: the backends disagree on this clip
        why = "; ".join(f"{b} failed: {reason}" for b, reason in failed.items())
        print(f"| {path.name} | {w}x{h} | {frames} | " + " | ".join(cells) + " |" + (f"  ({why})" if why else ""))


if __name__ == "__main__":
    main()
