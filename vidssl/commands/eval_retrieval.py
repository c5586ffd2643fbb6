"""`vidssl eval retrieval`: Retrieval benchmark: Recall@K, MAP@R, R-precision, NMI against baselines."""
from __future__ import annotations

NAME = "retrieval"
HELP = "Retrieval benchmark: Recall@K, MAP@R, R-precision, NMI against baselines"


def add_arguments(parser) -> None:
    pass


def run(args, cfg) -> int:
    from vidssl.cli import NotBuiltYet

    raise NotBuiltYet("'vidssl eval retrieval' is not built yet")
