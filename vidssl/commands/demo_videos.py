"""`vidssl demo-videos OUT`: write synthetic clips with known object trajectories (and their ground truth)."""
from __future__ import annotations

NAME = "demo-videos"
HELP = "Write built-in demo clips (known object trajectories, ground-truth boxes as JSON)"


def add_arguments(parser) -> None:
    parser.add_argument("out", metavar="OUT", help="output folder")
    parser.add_argument("--num", type=int, default=None, help="number of clips (default: config demo.num)")
    parser.add_argument("--seed", type=int, default=None, help="generator seed (default: config demo.seed)")


def run(args, cfg) -> int:
    from vidssl.cli import NotBuiltYet

    raise NotBuiltYet("'vidssl demo-videos' is not built yet")
