"""Decode throughput of each video backend on the shared clips: frames/s, median of several runs.

    python tools/bench_decode.py [--data $VIDSSL_DATA/videos] [--runs 3] [--max-side N]

Opens each clip and decodes every frame to RGB uint8 (the streaming iterator the pipeline uses), one process; the
frames column is the count decoded (two counts where backends disagree).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from vidssl.video import available_backends, find_videos, open_video


def decode_fps(path: Path, backend: str, max_side: int | None) -> tuple[int, float]:
    """(frames decoded, frames/s), the opening of the file timed too: decord's reader decodes while it opens, the
    other backends when iterated, so timing the iteration alone would favour decord. decord's opening also holds
    what open_video checks before using it (PyAV opens the file to vet it; an MP4's packets are read once for an edit
    list), 20-40% of decord's time on the shortest clips: `auto` does those checks whichever backend reads."""
    start = time.perf_counter()
    with open_video(path, backend) as reader:
        n = sum(1 for _ in reader.frames(max_side=max_side))
    return n, n / (time.perf_counter() - start)


def main() -> None:
    default = Path(os.environ.get("VIDSSL_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "videos"
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=default)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--max-side", type=int, default=None, help="resize at decode time (default: source size)")
    args = ap.parse_args()
    backends = available_backends()
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    if args.max_side is not None and args.max_side < 0:
        ap.error(f"--max-side must be a positive number of pixels (or 0: no limit), got {args.max_side}")
    if not args.data.exists() or not find_videos(args.data):  # a folder of videos, or one video
        ap.error(f"no videos under {args.data} (set --data or VIDSSL_DATA)")
    print("| clip | size | frames | " + " | ".join(f"{b} f/s" for b in backends) + " |")
    print("|---|---|---|" + "---|" * len(backends))
    for path in find_videos(args.data):
        with open_video(path) as reader:
            size = f"{reader.width}x{reader.height}"
        cells, counts = [], set()
        for backend in backends:
            runs = [decode_fps(path, backend, args.max_side) for _ in range(args.runs)]
            counts.update(n for n, _ in runs)
            cells.append(f"{statistics.median(fps for _, fps in runs):.0f}")
        frames = "/".join(str(n) for n in sorted(counts))  # several counts: the backends disagree on this clip
        print(f"| {path.name} | {size} | {frames} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
