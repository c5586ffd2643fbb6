"""Where the benchmarks find their data, and --data of those that read videos (bench_decode.py, bench_mining.py)."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from vidssl.errors import VideoError
from vidssl.video import find_videos, open_video


def data_root() -> Path:
    """$VIDSSL_DATA, else ../shared/data beside the repository (the tests' default)."""
    return Path(os.environ.get("VIDSSL_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def open_clips(ap: argparse.ArgumentParser, data: Path) -> list[tuple[Path, int, int]]:
    """(path, height, width) of each video under ``data`` (a folder of them, or one). Each is opened here, before
    any work: one that cannot be is refused in one line, not a traceback after the table's header."""
    videos = find_videos(data) if data.exists() else []
    if not videos:
        ap.error(f"no videos under {data} (set --data or VIDSSL_DATA)")
    clips = []
    for path in videos:
        try:
            with open_video(path) as reader:
                clips.append((path, reader.height, reader.width))
        except VideoError as e:
            ap.error(f"--data: {e} (--data takes a video or a folder of videos)")
    return clips
