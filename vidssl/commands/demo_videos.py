"""`vidssl demo-videos OUT`: write synthetic clips with known object trajectories (and their ground truth)."""
from __future__ import annotations

NAME = "demo-videos"
HELP = "Write built-in demo clips (known object trajectories, ground-truth boxes as JSON)"
READS = ("demo",)


def add_arguments(parser) -> None:
    parser.add_argument("out", metavar="OUT", help="output folder")
    parser.add_argument("--num", type=int, default=None, help="number of clips (default: config demo.num)")
    parser.add_argument("--seed", type=int, default=None, help="generator seed (default: config demo.seed)")


def run(args, cfg) -> int:
    import dataclasses

    from vidssl.config import write_resolved
    from vidssl.demo import make_demo_videos
    from vidssl.errors import VidsslError

    demo = dataclasses.replace(cfg.demo, **{k: v for k, v in (("num", args.num), ("seed", args.seed))
                                            if v is not None})
    cfg = dataclasses.replace(cfg, demo=demo)
    cfg.validate()  # --num and --seed bypass the checks the config file's values had (demo.seed's is cross-section)
    try:
        paths = make_demo_videos(args.out, demo.num, demo.seed, demo.frames, demo.width, demo.height, demo.fps)
    except ValueError as e:
        raise VidsslError(str(e)) from None
    write_resolved(cfg, args.out)
    print(f"wrote {len(paths)} demo clips with ground-truth JSON to {args.out}")
    return 0
