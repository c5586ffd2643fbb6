"""`vidssl compare`: Several pretrain runs side by side (e.g. seeds of one config): each evaluation's headline
number, mean +- sd, and the runs that beat each baseline."""
from __future__ import annotations

NAME = "compare"
HELP = "Several pretrain runs side by side (e.g. seeds of one config): headline numbers, mean +- sd, wins"


def add_arguments(parser) -> None:
    parser.add_argument("runs", metavar="RUN", nargs="+",
                        help="run folders (vidssl pretrain's, or made stage by stage and reported with vidssl report)")
    parser.add_argument("--out", metavar="FILE", help="also write the table here (markdown)")


def run(args, cfg) -> int:
    from pathlib import Path

    from vidssl.compare import compare_markdown
    from vidssl.errors import UsageError
    from vidssl.io import atomic_write_text

    if args.out and Path(args.out).is_dir():  # said before the table, not after it
        raise UsageError(f"--out {args.out} is a folder; name the markdown file to write, e.g. {args.out}/compare.md")
    table = compare_markdown(args.runs)
    print(table, end="")
    if args.out:
        atomic_write_text(args.out, table)
    return 0
