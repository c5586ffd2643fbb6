"""`vidssl train`: Train the Siamese-triplet ranking network on mined pairs."""
from __future__ import annotations

NAME = "train"
HELP = "Train the Siamese-triplet ranking network on mined pairs"


def add_arguments(parser) -> None:
    pass


def run(args, cfg) -> int:
    from vidssl.cli import NotBuiltYet

    raise NotBuiltYet("'vidssl train' is not built yet")
