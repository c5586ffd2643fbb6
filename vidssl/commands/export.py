"""`vidssl export`: Export backbone weights that load in one line (torchvision key names)."""
from __future__ import annotations

NAME = "export"
HELP = "Export backbone weights that load in one line (torchvision key names)"


def add_arguments(parser) -> None:
    pass


def run(args, cfg) -> int:
    from vidssl.cli import NotBuiltYet

    raise NotBuiltYet("'vidssl export' is not built yet")
