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
    from vidssl.commands import check_out_folder
    from vidssl.config import refuse_foreign_config

    check_out_folder(out)
    refuse_foreign_config(out, f"eval {task}", outputs=("metrics.json",))


@contextlib.contextmanager
def resolved_into_output(cfg, out):
    """Around an evaluation: OUT held by its lock (``run_lock``: a second `vidssl eval` into the same OUT, whose
    metrics, figures and config.yaml would interleave with this one's, is refused naming this process; so is one
    into RUN/eval/<task> while a pretrain runs on RUN), and
    ``OUT/config.yaml`` after it, once it has made something there (one refused at its input checks, a missing
    --data, leaves no folder behind: those the lock made are removed), finished or not; one that failed writes it
    only where no earlier evaluation's metrics.json stands (it failed before retiring them), which a config of this
    run's settings beside them would misstate."""
    from pathlib import Path

    from vidssl.config import write_resolved
    from vidssl.io import run_lock

    out = Path(out)
    made_by_lock = []  # OUT and the folders above it that do not exist yet: the lock makes them
    for folder in (out, *out.parents):
        if folder.exists():
            break
        made_by_lock.append(folder)
    lock = out / ".vidssl.lock"
    run = out.parent.parent
    # into a pretrain run's RUN/eval/<task> (to rebuild one): shared with other tasks' evaluations and reports,
    # exclusive of the pretrain itself, which evaluates into the same folders and holds RUN while it runs
    in_run = run_lock(run, shared=True) if out.parent.name == "eval" and (run / "stages").is_dir() \
        else contextlib.nullcontext()
    with in_run, run_lock(out):
        finished = False
        try:
            yield
            finished = True
        finally:
            made = out.is_dir() and any(path != lock for path in out.iterdir())
            if made and (finished or not (out / "metrics.json").exists()):
                write_resolved(cfg, out)
            elif made_by_lock and not made:
                # refused at its input checks: the folders the lock made go, while it is still held (another
                # evaluation's lock taken in between would be on a file removed under it)
                lock.unlink(missing_ok=True)
                for folder in made_by_lock:  # deepest first; one another command wrote into meanwhile stays
                    with contextlib.suppress(OSError):
                        folder.rmdir()
