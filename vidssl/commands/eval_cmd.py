"""`vidssl eval {retrieval,flow,davis}`: transfer evaluations of exported backbones."""
from __future__ import annotations

from vidssl.commands import eval_davis, eval_flow, eval_retrieval

NAME = "eval"
HELP = "Evaluate exported backbones: retrieval, optical flow, DAVIS label propagation"
TASKS = (eval_retrieval, eval_flow, eval_davis)


def add_arguments(parser) -> None:
    import argparse

    from vidssl.cli import add_config_arguments, add_verbosity_arguments

    # given before the task, argparse read the file name as the task ("invalid choice: 'f.yaml'"): taken here to say
    # where they go
    parser.add_argument("--config", dest="config_before_task", help=argparse.SUPPRESS)
    parser.add_argument("--set", dest="set_before_task", action="append", default=[], help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="task", metavar="TASK", required=True)
    for module in TASKS:
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP, allow_abbrev=False)
        module.add_arguments(p)
        add_config_arguments(p, module.SET_EXAMPLE)
        add_verbosity_arguments(p)
        p.set_defaults(_task=module, _parser=p)


def run(args, cfg) -> int:
    from vidssl.errors import UsageError

    if args.config_before_task is not None or args.set_before_task:
        raise UsageError(f"--config and --set go after the task: vidssl eval {args.task} --config FILE --set "
                         "KEY=VALUE ...")
    return args._task.run(args, cfg)
