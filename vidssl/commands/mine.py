"""`vidssl mine`: Mine positive patch pairs from a folder of videos (tracking stage)."""
from __future__ import annotations

import logging
import os

from vidssl.errors import UsageError

log = logging.getLogger(__name__)

NAME = "mine"
HELP = "Mine positive patch pairs from a folder of videos (tracking stage)"
READS = ("mine", "video")  # mining draws no random numbers: the seed is not read
SET_EXAMPLE = "mine.box_fraction=0.33"  # the --set example of its --help: a key it reads


def add_arguments(parser) -> None:
    parser.add_argument("videos", metavar="VIDEOS", nargs="?",
                        help="folder of videos (searched recursively) or one video file")
    parser.add_argument("--out", metavar="PAIRS", required=True, help="pair dataset directory (created; resumed)")
    parser.add_argument("--workers", type=int, default=1, help="videos mined in parallel processes (default 1)")
    parser.add_argument("--shard", metavar="I/N", default=None,
                        help="mine only shard I of N of the videos (default: RANK/WORLD_SIZE under torchrun, "
                             "which takes no --shard; else all)")
    parser.add_argument("--merge", action="store_true",
                        help="rebuild manifest.jsonl and dataset.json from the finished videos (alone: merge only)")
    parser.add_argument("--strict", action="store_true", help="fail the run on the first video that must be skipped")


def parse_shard(text: str | None, env: dict) -> tuple[int, int]:
    """``"I/N"``, else ``RANK``/``WORLD_SIZE`` from ``env`` (torchrun), else (0, 1)."""
    source = "--shard"
    if text is not None and env.get("WORLD_SIZE", "1").strip() not in ("", "1") and "RANK" in env:
        # every process of the job was given the same flag: all but one were refused the shard's lock, and torchrun
        # then stopped the job, whose "rerun the same command" did the same again
        raise UsageError(f"--shard {text} under torchrun (WORLD_SIZE={env['WORLD_SIZE']}): each of its processes "
                         "would mine that same shard; drop --shard (each process then mines shard RANK/WORLD_SIZE), "
                         "or run one `vidssl mine --shard I/N` per machine without torchrun (unset RANK and "
                         "WORLD_SIZE where they are not torchrun's)")
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
    from vidssl.config import refuse_foreign_config, write_resolved

    if args.videos is None:
        if not args.merge:
            raise UsageError("give the VIDEOS folder to mine (or --merge alone to merge a mined directory)")
        summary = merge(args.out)
        _warn_kept(summary, args.out)
        print(format_summary(summary, args.out))
        print(f"wrote {args.out}/manifest.jsonl and dataset.json")
        return 0  # a merge gathers what the shards mined; a mining's own run says when none gave a pair
    refuse_foreign_config(args.out, NAME, outputs=("dataset.json", "manifest.jsonl"))  # before any video is read
    # config.yaml before any video: written after them, a --strict skip (or Ctrl-C) left a folder with a
    # dataset.json and no record of the settings; written before OUT is accepted, a refused rerun (other settings)
    # would overwrite the record of the mined ones
    summary = mine_folder(args.videos, args.out, cfg.mine, video_backend=cfg.video.backend, workers=args.workers,
                          shard=parse_shard(args.shard, dict(os.environ)), strict=args.strict,
                          progress=not args.quiet, on_prepared=lambda: write_resolved(cfg, args.out))
    _warn_kept(summary, args.out)
    print(format_summary(summary, args.out))
    print(f"wrote {args.out}/manifest.jsonl and dataset.json")
    if summary["complete"] and summary["pairs"] == 0:
        # exit status 1, as `vidssl pretrain` in the same case: a script's `mine && train` stops here
        log.error("no pair was mined: every video was skipped or gave none (the reasons are above and in "
                  "dataset.json), and training needs pairs. " + no_pair_hint(summary["videos"]["skipped"]))
        return 1
    return 0


# reasons a file is skipped for before anything in it is judged: the file is what to fix, no setting helps
FILE_REASONS = ("empty", "corrupt", "not_a_video", "unreadable")
# reasons about what the frames show: other videos, or the setting each skip names
MOTION_REASONS = ("no_motion", "all_motion", "cuts", "no_start", "no_tracks")


def no_pair_hint(skipped: dict[str, list[str]]) -> str:
    """What to do when no pair was mined, by the skip reasons present: "add videos with moving objects" was said
    of folders whose every video was too small, too short or no video at all."""
    hints = []
    if any(skipped.get(reason) for reason in MOTION_REASONS):
        hints.append("add videos with moving objects")
    if skipped.get("no_motion"):
        hints.append("for no_motion, --set mine.min_moving_fraction=0.05 lets start frames with fewer moving "
                     "points through")
    if skipped.get("no_tracks"):  # trackers ran on moving objects: the skip names the checks that ended them
        hints.append("for no_tracks, each skip above names the settings behind its rejected tracks")
    if skipped.get("too_small"):  # boxes are judged at working size: working_side enlarges them too
        hints.append("for too_small, a larger box at working size: raise mine.box_fraction (or mine.working_side "
                     "where the skip says the video was analysed shrunk), or lower mine.min_box_px")
    if skipped.get("too_short"):
        hints.append("for too_short, a smaller mine.track_length (each skip above says how many frames a track "
                     "needs), or longer videos")
    damaged = [reason for reason in FILE_REASONS if skipped.get(reason)]
    if damaged:
        hints.append(f"for {', '.join(damaged)}, the files themselves: each skip above says what is wrong with its "
                     "file and how to fix it (copy it again, chmod +r, convert it)")
    if skipped.get("error"):  # not the file's fault as far as anyone knows: an exception, or a crashed process
        hints.append("for error, each skip above gives the exception or the crash; please report it with the video")
    if not hints:  # duplicates alone, or a reason added later
        hints.append("each skip above says why its video gave none")
    text = "; ".join(hints)
    return text[0].upper() + text[1:]


def _warn_kept(summary: dict, out: str) -> None:
    from tracking.runner import kept_notice

    notice = kept_notice(summary, out)
    if notice:  # on stderr with the skips, not among the results on stdout
        log.warning("%s", notice)
