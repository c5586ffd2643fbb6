"""`vidssl eval flow`: optical-flow transfer of exported backbones against classical methods and ground truth."""
from __future__ import annotations

from vidssl.commands.eval_models import (add_model_arguments, check_out_writable, models_from_args,
                                         resolved_into_output, with_device_flag)

NAME = "flow"
HELP = "Optical-flow transfer: correlation-layer flow against ground truth and classical baselines"
READS = ("seed", "model.arch", "model.width", "eval.flow")  # model: the random-init row's, without --weights
SET_EXAMPLE = "eval.flow.figures=false"  # the --set example of its --help: a key it reads


def add_arguments(parser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--data", metavar="DIR", required=True,
                        help="folder of pairs with ground truth: Middlebury, Sintel or KITTI layout "
                             "(e.g. $VIDSSL_DATA/flow)")
    parser.add_argument("--out", metavar="EVAL", required=True,
                        help="output folder: metrics.json, metrics.md, pairs/<pair>.png, transfer/<model>.pt")
    parser.add_argument("--budget-minutes", type=float, default=None, metavar="N",
                        help="wall-clock minutes of transfer-decoder training, all models together "
                             "(default: config eval.flow.budget_minutes)")
    parser.add_argument("--no-transfer", action="store_true",
                        help="skip the FlowNetC-style transfer (method 4): classical and zero-shot rows only")


def run(args, cfg) -> int:
    import dataclasses
    import math
    from pathlib import Path

    from vidssl.errors import ConfigError
    from vidssl.eval.flow import evaluate_flow

    if args.budget_minutes is not None and not (args.budget_minutes >= 0 and math.isfinite(args.budget_minutes)):
        raise ConfigError(f"--budget-minutes must be a number >= 0, got {args.budget_minutes}")
    # the flags are recorded as the config keys they set: OUT/config.yaml says what this evaluation ran under
    budget = cfg.eval.flow.budget_minutes if args.budget_minutes is None else args.budget_minutes
    flow_cfg = dataclasses.replace(cfg.eval.flow, transfer=cfg.eval.flow.transfer and not args.no_transfer,
                                   budget_minutes=budget)
    cfg = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, flow=flow_cfg))
    cfg = with_device_flag(cfg, NAME, args.device)
    check_out_writable(args.out, NAME)  # before the models and data: a failed write came after all the work
    models = models_from_args(args, cfg)
    out = Path(args.out)
    with resolved_into_output(cfg, out):
        result = evaluate_flow(models, args.data, out, flow_cfg, seed=cfg.seed, progress=not args.quiet)
    print((out / "metrics.md").read_text(encoding="utf-8"), end="")
    figures = f" and {len(result['figures'])} figure(s) in {out / 'pairs'}" if flow_cfg.figures else ""
    print(f"wrote {out / 'metrics.json'}, {out / 'metrics.md'}{figures}")
    return 0
