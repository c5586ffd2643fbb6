"""`vidssl eval davis`: DAVIS label propagation (J, F, J&F) of exported backbones against baselines."""
from __future__ import annotations

from vidssl.commands.eval_models import (add_model_arguments, check_out_writable, models_from_args,
                                         resolved_into_output, with_device_flag)

NAME = "davis"
HELP = "DAVIS label propagation: J, F and J&F against baselines"
READS = ("seed", "model.arch", "model.width", "eval.davis")  # model: the random-init row's, without --weights
SET_EXAMPLE = "eval.davis.topk=5"  # the --set example of its --help: a key it reads


def add_arguments(parser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--data", metavar="DIR", required=True,
                        help="DAVIS-layout folder with JPEGImages/480p and Annotations/480p (e.g. $VIDSSL_DATA/davis)")
    parser.add_argument("--out", metavar="EVAL", required=True,
                        help="output folder: metrics.json, metrics.md, overlays/<model>/<sequence>.png")


def run(args, cfg) -> int:
    from pathlib import Path

    from vidssl.eval.davis import evaluate_davis

    cfg = with_device_flag(cfg, NAME, args.device)
    check_out_writable(args.out, NAME)  # before the models and data: a failed write came after all the work
    models = models_from_args(args, cfg)
    out = Path(args.out)
    with resolved_into_output(cfg, out):
        evaluate_davis(models, args.data, out, cfg.eval.davis, progress=not args.quiet)
    print((out / "metrics.md").read_text(encoding="utf-8"), end="")
    print(f"wrote {out / 'metrics.json'}, {out / 'metrics.md'} and overlays in {out / 'overlays'}")
    return 0
