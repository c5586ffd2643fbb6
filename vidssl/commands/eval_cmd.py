"""`vidssl eval {retrieval,flow,davis}`: transfer evaluations of exported backbones."""
from __future__ import annotations

NAME = "eval"
HELP = "Evaluate exported backbones: retrieval, optical flow, DAVIS label propagation"


def add_arguments(parser) -> None:
    pass


def run(args, cfg) -> int:
    from vidssl.cli import NotBuiltYet

    raise NotBuiltYet("'vidssl eval' is not built yet")
