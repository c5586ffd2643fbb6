"""`vidssl show-pairs`: Draw a PNG grid of mined pairs (and tracked boxes) to judge pair quality."""
from __future__ import annotations

NAME = "show-pairs"
HELP = "Draw a PNG grid of mined pairs (and tracked boxes) to judge pair quality"


def add_arguments(parser) -> None:
    pass


def run(args, cfg) -> int:
    from vidssl.cli import NotBuiltYet

    raise NotBuiltYet("'vidssl show-pairs' is not built yet")
