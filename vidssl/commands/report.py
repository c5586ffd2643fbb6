"""`vidssl report`: (re)build RUN/report.html and RUN/summary.json from what the stages left in RUN, for a run made
stage by stage (`vidssl mine/train/export/eval` into one folder) or a pretrain run's report after a hand edit."""
from __future__ import annotations

NAME = "report"
HELP = "Build RUN/report.html and RUN/summary.json from a run folder's stages (made by pretrain or stage by stage)"


def add_arguments(parser) -> None:
    parser.add_argument("run", metavar="RUN",
                        help="a run folder: pairs/, train/, backbone.pt, eval/<task>/ (any of them)")


def run(args, cfg) -> int:
    from pathlib import Path

    from vidssl.errors import VidsslError, shell_arg
    from vidssl.io import run_lock
    from vidssl.report import build_report, has_report, not_a_run, not_a_run_folder

    run_dir = Path(args.run)
    if (problem := not_a_run_folder(run_dir, "report")) is not None:
        raise VidsslError(problem)
    if not has_report(run_dir):
        raise VidsslError(not_a_run(run_dir))
    # a pretrain writing into RUN holds it: its half-made stages are no report (and its own report follows); shared
    # with `vidssl eval` into RUN/eval/<task>, whose files are written whole (the report shows what is finished)
    advice = (f"wait for it to end (a pretrain writes its own report), then rerun `vidssl report "
              f"{shell_arg(run_dir)}` if you still need one")
    with run_lock(run_dir, shared=True, advice=advice):
        build_report(run_dir)
    # both as the folder was given (the page came back resolved: through a link, the link's target), for a shell
    print(f"report: {shell_arg(run_dir / 'report.html')}\nsummary: {shell_arg(run_dir / 'summary.json')}")
    return 0
