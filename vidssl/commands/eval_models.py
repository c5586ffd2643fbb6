"""Arguments and model rows shared by the `vidssl eval` tasks: the --weights files, then the baselines."""
from __future__ import annotations

import contextlib


def add_model_arguments(parser) -> None:
    parser.add_argument("--weights", metavar="FILE", nargs="+", action="extend", default=[],
                        help="exported backbone.pt file(s), or run folder(s) holding one, compared side by side "
                             "(repeatable)")
    from vidssl.train_config import ARCH_NAMES

    parser.add_argument("--arch", default=None, choices=ARCH_NAMES,
                        help="architecture of the random-init baseline: one row of it (default: one per "
                             "architecture and width among the --weights files, or config model.arch without any)")
    parser.add_argument("--device", metavar="DEVICE", default=None,
                        help="auto | cpu | cuda[:N]: overrides the task's config eval.TASK.device")


def with_device_flag(cfg, task: str, device: str | None):
    """``cfg`` with ``--device`` set as the key it overrides (``eval.<task>.device``), so OUT/config.yaml records it;
    a value the key does not take, or a GPU that is not there, is an error naming the flag as typed."""
    import dataclasses

    from vidssl.device import resolve_device
    from vidssl.errors import ConfigError
    from vidssl.eval.config import is_device_name

    if device is None:
        return cfg
    if not is_device_name(device):
        raise ConfigError(f"--device {device}: expected auto, cpu, cuda or cuda:N")
    resolve_device(device, f"eval.{task}.device", flag="--device")
    section = dataclasses.replace(getattr(cfg.eval, task), device=device)
    return dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, **{task: section}))


def models_from_args(args, cfg) -> dict:
    """Each --weights backbone, the same architecture at random init (seed cfg.seed) and raw pixels."""
    from vidssl.eval.baselines import feature_models

    from vidssl.train_config import WIDTH_ARCHS

    arch = args.arch or (None if args.weights else cfg.model.arch)
    # without weights files the row is the config's model: its model.width (the files say theirs)
    kwargs = {"width": cfg.model.width} if arch in WIDTH_ARCHS and not args.weights else {}
    return feature_models(args.weights, arch=arch, seed=cfg.seed, arch_kwargs=kwargs)


def check_out_writable(out, task: str) -> None:
    """Refuse an --out that cannot be written, or holds a config.yaml of the user's (``vidssl eval TASK`` writes its
    own there), before any model or data is loaded: the evaluation writes at its end, and failed there after all its
    work (minutes for flow, which trains decoders first). Creates nothing."""
    from vidssl.config import refuse_foreign_config

    check_out_folder(out)
    refuse_foreign_config(out, f"eval {task}", outputs=("metrics.json",))


def check_out_folder(out, flag: str = "--out", given=None) -> None:
    """Refuse an output folder ``out`` that cannot be made or written (a file, or under one; read-only; no
    permission), naming ``flag`` as typed, before any work: mkdir's "File exists" or a marker's "Not a directory"
    deep in the run said neither which argument nor what to do. ``given``: the argument as typed, where ``out`` is
    the folder it names (an image's). Creates nothing."""
    import os

    from vidssl.errors import UsageError

    existing = os.path.abspath(out)
    out = out if given is None else given
    if os.path.islink(existing) and not os.path.exists(existing):  # made at the end, where mkdir fails on it
        raise UsageError(f"{flag} {out}: a link to a missing folder ({os.readlink(existing)}); choose another {flag}")
    while not os.path.lexists(existing):  # the folders the command would make: writable where the nearest one is
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise UsageError(f"{flag} {out}: {existing} is a file, not a folder; choose another {flag}")
    try:
        read_only = bool(os.statvfs(existing).f_flag & os.ST_RDONLY)
    except OSError:  # cannot tell: writing says it
        read_only = False
    if read_only:  # said so, rather than "no permission" and a chmod that cannot help
        raise UsageError(f"{flag} {out}: {existing} is on a read-only file system; choose another {flag}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {out}: no permission to write in {existing}; choose another {flag} (or chmod u+wx "
                         f"{existing})")


@contextlib.contextmanager
def resolved_into_output(cfg, out):
    """Around an evaluation: ``OUT/config.yaml`` after it, once it has made OUT (one refused at its input checks,
    a missing --data, leaves no folder behind), finished or not; one that failed writes it only where no earlier
    evaluation's metrics.json stands (it failed before retiring them), which a config of this run's settings
    beside them would misstate."""
    from pathlib import Path

    from vidssl.config import write_resolved

    finished = False
    try:
        yield
        finished = True
    finally:
        if Path(out).is_dir() and (finished or not (Path(out) / "metrics.json").exists()):
            write_resolved(cfg, out)
