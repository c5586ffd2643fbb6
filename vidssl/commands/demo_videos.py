"""`vidssl demo-videos OUT`: write synthetic clips with known object trajectories (and their ground truth)."""
from __future__ import annotations

NAME = "demo-videos"
HELP = "Write built-in demo clips (known object trajectories, ground-truth boxes as JSON)"
READS = ("demo",)
SET_EXAMPLE = "demo.frames=60"  # the --set example of its --help: a key it reads


def add_arguments(parser) -> None:
    parser.add_argument("out", metavar="OUT", nargs="?", help="output folder (or --out OUT)")
    # --out as every other command takes its output folder: `demo-videos --out V` was "unrecognized arguments"
    parser.add_argument("--out", dest="out_flag", metavar="OUT", default=None, help="the output folder, as OUT")
    parser.add_argument("--num", type=int, default=None, help="number of clips (default: config demo.num)")
    parser.add_argument("--seed", type=int, default=None, help="generator seed (default: config demo.seed)")


def run(args, cfg) -> int:
    import dataclasses

    from vidssl.config import refuse_foreign_config, write_resolved
    from vidssl.demo import make_demo_videos
    from vidssl.errors import ConfigError, UsageError, VidsslError, shell_arg

    if (args.out is None) == (args.out_flag is None):
        raise UsageError("give the output folder once: vidssl demo-videos OUT (or --out OUT)" if args.out is None
                         else f"two output folders ({args.out} and --out {args.out_flag}): give one")
    args.out = args.out if args.out is not None else args.out_flag
    flags = {k: v for k, v in (("num", args.num), ("seed", args.seed)) if v is not None}
    # --num and --seed bypass the checks the config file's values had (demo.seed's is cross-section): each checked
    # alone against the loaded (valid) config, so an error is the flag's and names it as typed
    for flag, value in flags.items():
        try:
            dataclasses.replace(cfg, demo=dataclasses.replace(cfg.demo, **{flag: value})).validate()
        except ConfigError as e:
            raise ConfigError(f"--{flag} {value}: {e}") from None
    demo = dataclasses.replace(cfg.demo, **flags)
    cfg = dataclasses.replace(cfg, demo=demo)
    cfg.validate()  # both together
    # no `outputs`: a demo folder is often the user's own (its clips beside theirs), where a config.yaml edited by
    # hand is theirs; the strict text check alone decides
    refuse_foreign_config(args.out, NAME)  # before any clip is written
    try:
        paths = make_demo_videos(args.out, demo.num, demo.seed, demo.frames, demo.width, demo.height, demo.fps)
    except ValueError as e:
        raise VidsslError(str(e)) from None
    write_resolved(cfg, args.out)
    print(f"wrote {len(paths)} demo clip{'s' * (len(paths) != 1)} with ground-truth JSON to {args.out}")
    # mine's default box (mine.box_fraction) is sized for real video, too large for the demo's discs: the default
    # clips gave 108 pairs at it, 204 at demo.mine_box_fraction
    config = f" --config {shell_arg(args.config)}" if args.config else ""
    print(f"mine them at the box size `vidssl pretrain` mines them at (demo.mine_box_fraction): vidssl mine "
          f"{shell_arg(args.out)} --out PAIRS{config} --set mine.box_fraction={demo.mine_box_fraction!r}")
    return 0
