"""Arguments and model rows shared by the `vidssl eval` tasks: the --weights files, then the baselines."""
from __future__ import annotations


def add_model_arguments(parser) -> None:
    parser.add_argument("--weights", metavar="FILE", nargs="+", action="extend", default=[],
                        help="exported backbone.pt file(s), or run folder(s) holding one, compared side by side "
                             "(repeatable)")
    parser.add_argument("--arch", default=None,
                        help="architecture of the random-init baseline: one row of it (default: one per "
                             "architecture and width among the --weights files, or config model.arch without any)")


def models_from_args(args, cfg) -> dict:
    """Each --weights backbone, the same architecture at random init (seed cfg.seed) and raw pixels."""
    from vidssl.eval.baselines import feature_models

    arch = args.arch or (None if args.weights else cfg.model.arch)
    return feature_models(args.weights, arch=arch, seed=cfg.seed)


def write_resolved_into_output(cfg, out) -> None:
    """``OUT/config.yaml``, once the evaluation has made OUT: one refused at its input checks (a missing --data)
    leaves no folder behind. Called after the evaluation, finished or not."""
    from pathlib import Path

    from vidssl.config import write_resolved

    if Path(out).is_dir():
        write_resolved(cfg, out)
