"""`vidssl pretrain`: mine -> train -> export -> evaluate -> report, in one resumable command."""
from __future__ import annotations

from vidssl.errors import shell_arg

NAME = "pretrain"
HELP = "One command: mine -> train -> export -> evaluate -> report (demo videos when no --videos)"
SET_EXAMPLE = "train.lr=0.01"  # the --set example of its --help: a key it reads
DEMO_OUT = "runs/demo"  # `vidssl pretrain` with no arguments: the quick start


def add_arguments(parser) -> None:
    parser.add_argument("--videos", metavar="DIR", help="folder of videos (default: generate the built-in demo videos)")
    parser.add_argument("--out", metavar="RUN",
                        help=f"run directory (rerun the same command to resume); default {DEMO_OUT} for the demo "
                             f"videos, required with --videos")
    parser.add_argument("--budget-minutes", type=float, default=None, metavar="N",
                        help="wall-clock budget, split between mining, training and the flow decoder; retrieval "
                             "and DAVIS evaluations run to their end beyond it (default: config "
                             "pretrain.budget_minutes)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"),
                        help="overrides train.device and eval.retrieval/flow/davis.device")
    parser.add_argument("--eval-data", metavar="DIR",
                        help="evaluation data: a $VIDSSL_DATA-style folder (retrieval/, davis/, flow/) or one dataset "
                             "(default: $VIDSSL_DATA when set)")


def run(args, cfg) -> int:
    from pathlib import Path

    from vidssl.commands import check_out_folder
    from vidssl.config import refuse_foreign_config
    from vidssl.errors import UsageError
    from vidssl.pipeline import EvalFailed, pretrain

    if args.out is None:
        if args.videos is not None:  # a folder of one's own videos deserves a run folder named for it
            raise UsageError("--out RUN is required with --videos: the folder the run's stages, weights and report go "
                             f"into (without --videos, the demo run goes into {DEMO_OUT})")
        args.out = DEMO_OUT

    if args.device is not None:  # the keys it sets, so RUN/config.yaml records it; a missing GPU named as typed
        from vidssl.device import resolve_device

        resolve_device(args.device, "train.device", flag="--device")
        cfg = with_devices(cfg, args.device)
    run_dir = Path(args.out)
    check_out_folder(run_dir)
    refuse_foreign_config(run_dir, NAME, outputs=("stages",))
    try:
        summary = pretrain(cfg, args.out, videos=args.videos, eval_data=args.eval_data,
                           budget_minutes=args.budget_minutes, progress=not args.quiet)
    except EvalFailed:  # the report (finished tasks, the failures) and the weights exist: said above the error
        _print_where(run_dir, cfg)
        raise
    _print_where(run_dir, cfg)
    metrics = summary.get("headline_metric", {})
    if metrics:  # what the numbers below are, and which way is better
        print("metrics: " + "; ".join(f"{task} {m['metric']} ({'higher' if m['higher_is_better'] else 'lower'} is "
                                      f"better)" for task, m in metrics.items() if m))
    for line in headline_lines(summary):
        print(line)
    return 0


def headline_lines(summary: dict) -> list[str]:
    """``"<task>: <model>: 0.871, ..."`` per task of a run's summary.json; a model whose number is not finite (NaN:
    it diverged) is named as such, not left out."""
    headline, not_finite = summary.get("headline", {}), summary.get("headline_not_finite", {})
    lines = []
    # in the evaluations' order (headline_metric's), a task whose every number is not finite among the others
    for task in dict.fromkeys([*summary.get("headline_metric", {}), *headline, *not_finite]):
        cells = [f"{model}: {value:.3f}" for model, value in headline.get(task, {}).items()]
        cells += [f"{model}: not finite" for model in not_finite.get(task, [])]
        if cells:
            lines.append(f"{task}: {', '.join(cells)}")
    return lines


def _print_where(run_dir, cfg) -> None:
    """The report's and the weights' paths, quoted for a shell (a name with spaces stays one)."""
    print()
    if not cfg.pretrain.run_report:
        print(f"report:  off (pretrain.run_report: false); `vidssl report {shell_arg(run_dir)}` writes it "
              "and summary.json")
    elif (run_dir / "report.html").is_file():
        print(f"report:  {shell_arg(run_dir / 'report.html')}")
    if (run_dir / "backbone.pt").is_file():
        weights = run_dir / "backbone.pt"
        print(f"weights: {shell_arg(weights)}  (load with: vidssl.load_backbone({str(weights)!r}))")


def with_devices(cfg, device: str):
    """``cfg`` with training and every evaluation on ``device``."""
    import dataclasses

    tasks = {f.name: dataclasses.replace(getattr(cfg.eval, f.name), device=device)
             for f in dataclasses.fields(cfg.eval)}
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, device=device),
                               eval=dataclasses.replace(cfg.eval, **tasks))
