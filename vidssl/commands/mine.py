"""`vidssl mine`: Mine positive patch pairs from a folder of videos (tracking stage)."""
from __future__ import annotations

import logging
import os

from vidssl.errors import UsageError

log = logging.getLogger(__name__)

NAME = "mine"
HELP = "Mine positive patch pairs from a folder of videos (tracking stage)"
READS = ("mine", "video")  # mining draws no random numbers: the seed is not read


def add_arguments(parser) -> None:
    parser.add_argument("videos", metavar="VIDEOS", nargs="?",
                        help="folder of videos (searched recursively) or one video file")
    parser.add_argument("--out", metavar="PAIRS", required=True, help="pair dataset directory (created; resumed)")
    parser.add_argument("--workers", type=int, default=1, help="videos mined in parallel processes (default 1)")
    parser.add_argument("--shard", metavar="I/N", default=None,
                        help="mine only shard I of N of the videos (default: RANK/WORLD_SIZE when set, else all)")
    parser.add_argument("--merge", action="store_true",
                        help="rebuild manifest.jsonl and dataset.json from the finished videos (alone: merge only)")
    parser.add_argument("--strict", action="store_true", help="fail the run on the first video that must be skipped")


def parse_shard(text: str | None, env: dict) -> tuple[int, int]:
    """``"I/N"``, else ``RANK``/``WORLD_SIZE`` from ``env`` (torchrun), else (0, 1)."""
    source = "--shard"
    if text is None and "RANK" in env and "WORLD_SIZE" in env:
        text, source = f"{env['RANK']}/{env['WORLD_SIZE']}", "RANK/WORLD_SIZE (from the environment)"
    if text is None:
        return 0, 1
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise UsageError(f"bad shard {text!r} in {source}: expected I/N, e.g. --shard 0/4") from None
    if not 0 <= index < count:
        raise UsageError(f"bad shard {text!r} in {source}: expected I/N with 0 <= I < N")
    return index, count


def run(args, cfg) -> int:
    from tracking import format_summary, merge, mine_folder
    from vidssl.config import write_resolved

    if args.videos is None:
        if not args.merge:
            raise UsageError("give the VIDEOS folder to mine (or --merge alone to merge a mined directory)")
        print(format_summary(merge(args.out)))
        return 0
    summary = mine_folder(args.videos, args.out, cfg.mine, video_backend=cfg.video.backend, workers=args.workers,
                          shard=parse_shard(args.shard, dict(os.environ)), strict=args.strict,
                          progress=not args.quiet)
    write_resolved(cfg, args.out)
    print(format_summary(summary))
    print(f"wrote {args.out}/manifest.jsonl and dataset.json")
    if summary["complete"] and summary["pairs"] == 0:
        # exit status 1, as `vidssl pretrain` in the same case: a script's `mine && train` stops here
        skipped = summary["videos"]["skipped"]
        hint = ("; for no_motion, --set mine.min_moving_fraction=0.05 lets start frames with fewer moving points "
                "through" if skipped.get("no_motion") else "")
        if skipped.get("no_tracks"):  # trackers ran on moving objects: the skip names the checks that ended them
            hint += "; for no_tracks, each skip above names the settings behind its rejected tracks"
        log.error("no pair was mined: every video was skipped or gave none (the reasons are above and in "
                  "dataset.json), and training needs pairs. Add videos with moving objects" + hint)
        return 1
    return 0
