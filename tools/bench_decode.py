"""Decode throughput of each video backend on the shared clips: frames/s, median of several runs.

    python tools/bench_decode.py [--data $VIDSSL_DATA/videos] [--runs 3] [--max-side N]

Decodes every frame to RGB uint8 (the streaming iterator the pipeline uses), one process.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from vidssl.video import available_backends, find_videos, open_video


def decode_fps(path: Path, backend: str, max_side: int | None) -> float:
    reader = open_video(path, backend)
    start = time.perf_counter()
    n = sum(1 for _ in reader.frames(max_side=max_side))
    return n / (time.perf_counter() - start)


def main() -> None:
    default = Path(os.environ.get("VIDSSL_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "videos"
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=default)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--max-side", type=int, default=None, help="resize at decode time (default: source size)")
    args = ap.parse_args()
    backends = available_backends()
    print("| clip | size | frames | " + " | ".join(f"{b} f/s" for b in backends) + " |")
    print("|---|---|---|" + "---|" * len(backends))
    for path in find_videos(args.data):
        reader = open_video(path, "pyav")
        cells = []
        for backend in backends:
            runs = [decode_fps(path, backend, args.max_side) for _ in range(args.runs)]
            cells.append(f"{statistics.median(runs):.0f}")
        print(f"| {path.name} | {reader.width}x{reader.height} | {reader.num_frames} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
