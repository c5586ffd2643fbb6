"""`vidssl eval davis`: DAVIS label propagation: J, F and J&F against baselines."""
from __future__ import annotations

NAME = "davis"
HELP = "DAVIS label propagation: J, F and J&F against baselines"


def add_arguments(parser) -> None:
    pass


def run(args, cfg) -> int:
    from vidssl.cli import NotBuiltYet

    raise NotBuiltYet("'vidssl eval davis' is not built yet")
