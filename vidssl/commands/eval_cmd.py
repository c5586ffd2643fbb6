"""`vidssl eval {retrieval,flow,davis}`: transfer evaluations of exported backbones."""
from __future__ import annotations

from vidssl.commands import eval_davis, eval_flow, eval_retrieval

NAME = "eval"
HELP = "Evaluate exported backbones: retrieval, optical flow, DAVIS label propagation"
TASKS = (eval_retrieval, eval_flow, eval_davis)


def add_arguments(parser) -> None:
    from vidssl.cli import add_config_arguments, add_verbosity_arguments

    sub = parser.add_subparsers(dest="task", metavar="TASK", required=True)
    for module in TASKS:
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        add_config_arguments(p)
        add_verbosity_arguments(p)
        p.set_defaults(_task=module)


def run(args, cfg) -> int:
    return args._task.run(args, cfg)
