"""`vidssl train`: Train the Siamese-triplet ranking network on mined pairs."""
from __future__ import annotations

import logging
import os

from vidssl.train_config import TRAIN_SECTIONS

NAME = "train"
HELP = "Train the Siamese-triplet ranking network on mined pairs"
READS = TRAIN_SECTIONS
SET_EXAMPLE = "train.lr=0.01"  # the --set example of its --help: a key it reads

log = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    parser.add_argument("pairs", metavar="PAIRS", help="pair dataset folder written by `vidssl mine`")
    parser.add_argument("--out", required=True, metavar="RUN",
                        help="run folder: checkpoint.pt, log.jsonl, tb/ (rerunning into it continues the run)")
    parser.add_argument("--resume", action="store_true", help="require an existing checkpoint in RUN and continue it")
    parser.add_argument("--budget-minutes", type=float, metavar="N",
                        help="stop cleanly after N minutes (overrides train.budget_minutes)")
    parser.add_argument("--allow-incomplete", action="store_true",
                        help="train on a pair dataset whose mining has videos pending (by default: an error)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="overrides train.device")


def run(args, cfg) -> int:
    import math

    from vidssl.config import refuse_foreign_config
    from vidssl.errors import ConfigError
    from vidssl.train import outcome_line, train

    # before the run folder and its lock file are made; named as the user typed it, not as the key it sets
    if args.budget_minutes is not None and not (args.budget_minutes > 0 and math.isfinite(args.budget_minutes)):
        raise ConfigError(f"--budget-minutes must be a number > 0, got {args.budget_minutes}")
    if args.device is not None:  # here, to be named as typed; train() resolves it again, as the key it sets
        from vidssl.device import resolve_device

        resolve_device(args.device, "train.device", flag="--device")

    refuse_foreign_config(args.out, NAME, outputs=("checkpoint.pt", "log.jsonl"))
    stats = train(args.pairs, args.out, cfg, budget_minutes=args.budget_minutes, device=args.device,
                  resume=args.resume, allow_incomplete=args.allow_incomplete, progress=not args.quiet)
    if stats.get("world_size", 1) > 1 and int(os.environ.get("RANK", "0")) != 0:
        return 0
    print(f"train: {outcome_line(stats)}")
    if stats["stopped"] == "budget" and stats.get("session_steps", 2) <= 1:  # each rerun would start up for one step
        log.warning("train: the budget ended after %d step(s) of this session (start-up included): give it more "
                    "minutes (--budget-minutes, or train.budget_minutes) to make progress", stats["session_steps"])
    return 0
