"""`vidssl pretrain`: One command: mine -> train -> export -> evaluate -> report."""
from __future__ import annotations

NAME = "pretrain"
HELP = "One command: mine -> train -> export -> evaluate -> report"


def add_arguments(parser) -> None:
    pass


def run(args, cfg) -> int:
    from vidssl.cli import NotBuiltYet

    raise NotBuiltYet("'vidssl pretrain' is not built yet")
