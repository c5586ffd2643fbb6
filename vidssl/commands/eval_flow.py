"""`vidssl eval flow`: Optical-flow transfer: correlation-layer flow against ground truth and classical baselines."""
from __future__ import annotations

NAME = "flow"
HELP = "Optical-flow transfer: correlation-layer flow against ground truth and classical baselines"


def add_arguments(parser) -> None:
    pass


def run(args, cfg) -> int:
    from vidssl.cli import NotBuiltYet

    raise NotBuiltYet("'vidssl eval flow' is not built yet")
