"""`vidssl mine`: Mine positive patch pairs from a folder of videos (tracking stage)."""
from __future__ import annotations

NAME = "mine"
HELP = "Mine positive patch pairs from a folder of videos (tracking stage)"


def add_arguments(parser) -> None:
    pass


def run(args, cfg) -> int:
    from vidssl.cli import NotBuiltYet

    raise NotBuiltYet("'vidssl mine' is not built yet")
