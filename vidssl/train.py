"""Training the Siamese-triplet ranking network on mined pairs.

``train(pairs_dir, run_dir, cfg)`` runs (or continues) one run in ``run_dir``:
``checkpoint.pt`` (rolling, atomic: model, optimizer, scaler, miner guard, step, fitted step count, config),
``log.jsonl`` (one JSON object per logged step), ``tb/`` (TensorBoard scalars and hardest-triplet grids),
``config.yaml`` and ``stats.json``; the checkpoint and ``stats.json`` also hold ``mining``, how the pairs were mined
(``PairSet.mining``: config.yaml holds the train command's own mine section, not theirs). Rerunning into the same
``run_dir`` continues from the checkpoint; on CPU with ``train.deterministic`` the continued run ends with exactly
the weights of an uninterrupted one, because every random draw after the start is a function of (seed, step):
augmentation (and its pair's slot), mining and dropout (``_seed_step``) also of the process, the cycle's roll not
(every rank rolls alike).

Under ``torchrun`` each process trains on its own share of the batches (DDP: gloo on CPU, NCCL on CUDA); only
rank 0 writes. The function takes the whole :class:`~vidssl.config.Config` and reads its ``seed``, ``data``,
``model``, ``loss``, ``miner`` and ``train`` sections.
"""
from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import math
import os
import re
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Collection, Iterable, Iterator

import numpy as np
import torch
import torch.utils.deterministic  # runtime_settings turns its fill of fresh tensors off
import torch.distributed as dist
import torch.nn.functional as F

from vidssl.config import Config, flat_config, to_dict, versions, write_resolved
from vidssl.data import (BATCH_PLAN, PairBatchSampler, PairPatches, batches_per_epoch, make_loader, open_pairs,
                         require_pairs_folder, to_input, too_few_batches, too_few_pairs)
from vidssl.device import check_precision, local_rank, resolve_device, world_size
from vidssl.errors import ConfigError, UsageError, VidsslError, shell_arg
from vidssl.io import (atomic_write_bytes, atomic_write_json, atomic_write_text, error_naming, json_object,
                       json_text, newer_format, newer_format_error, remove_temp_leftovers, run_lock, torch_bytes)
from vidssl.lifeline import exit_with_launcher, refuse_reimport
from vidssl.losses import Triplets, build_loss, build_reducer, dense_cycle_loss
from vidssl.miners import MiningSchedule, Scores, main_miner_start
from vidssl.models import ARCHS, EmbeddingNet, build_backbone, recorded_kwargs
from vidssl.seeds import Stream, step_generator, step_seed
from vidssl.train_config import PRECISION_NAMES, RANK_LOCAL_KEYS, RESUMABLE_KEYS, TRAIN_SECTIONS, TrainConfig

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = "vidssl-train/1"
FP16_SKIPS_IN_A_ROW = 30  # the scale has then fallen 2^30-fold, from 65536 to 6e-5: no scale keeps it finite
_FIT_MARGIN = 0.97  # share of the measured time left that the fitted steps may fill
_FIT_AFTER = 6  # steps timed before fitting the step count to the budget (the first one includes worker start-up)
_GROW_BY = 1.1  # a refit lengthens the schedule only by more than this factor (noise in the speed does not)
_PROGRESS_EVERY_S = 60.0  # with no progress bar (output to a file, a batch job's log): a line this often


class TrainingDiverged(VidsslError):
    """The loss or the gradients became non-finite; the last good checkpoint is kept."""


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device_kind: str, timeout_minutes: float | None = None) -> Dist:
    world = world_size()
    if "TORCHELASTIC_RUN_ID" in os.environ:
        # torchrun killed with -9 (or by the OOM killer) tears nothing down: its ranks, orphaned, trained on and held
        # the run folder's lock against the rerun (with --nproc_per_node=1 too)
        exit_with_launcher()
    if world == 1:
        return Dist()
    unset = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if unset and not dist.is_initialized():  # torch's env:// rendezvous said it in a 30-line ValueError traceback
        raise VidsslError(f"WORLD_SIZE={world} is set but {', '.join(unset)} {'is' if len(unset) == 1 else 'are'} "
                          "not: launch with torchrun, which sets them all, or unset WORLD_SIZE to train as one "
                          "process")
    rank_on_node = local_rank(device_kind)
    if not dist.is_initialized():
        timeout = None if timeout_minutes is None else datetime.timedelta(minutes=timeout_minutes)
        if device_kind == "cuda":
            # the GPU bound before the group, and named to it: NCCL then builds its communicator on this rank's
            # GPU, never on cuda:0 for every rank
            device = torch.device("cuda", rank_on_node)
            torch.cuda.set_device(device)
            dist.init_process_group("nccl", timeout=timeout, device_id=device)
        else:
            dist.init_process_group("gloo", timeout=timeout)
    return Dist(dist.get_rank(), dist.get_world_size(), rank_on_node)


def _any_rank_each(flags: tuple[bool, ...], d: Dist, device: torch.device) -> tuple[bool, ...]:
    """:func:`_any_rank` of several flags in one collective."""
    if d.world == 1:
        return tuple(flags)
    t = torch.tensor([float(flag) for flag in flags], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return tuple(bool(v > 0) for v in t.tolist())


def _any_rank(flag: bool, d: Dist, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on any (every rank must take the same branch around collectives)."""
    return _any_rank_each((flag,), d, device)[0]


def _check_ranks_agree(d: Dist, device: torch.device, run_dir: Path, pairs_dir: Path, start: int, total: int,
                       fingerprint: str, precision: str, cfg: Config) -> None:
    """Raise on every rank unless all resume from the same step of the same schedule on the same pairs, with the
    same config. Each rank reads RUN and PAIRS itself; where they are not one shared folder (a node's local disk) a
    rank without the checkpoint started from step 0 beside one resuming, their collectives paired up wrongly without
    an error, rank 0 wrote a "done" checkpoint of mixed weights, and the job hung at its final barrier. Each rank
    also reads --config and --set itself: a node with another config file trained on with its own learning rate and
    batches, and the ranks' weights drifted apart."""
    if d.world == 1:
        return
    digest = int(hashlib.sha256(fingerprint.encode()).hexdigest()[:15], 16)  # fits an int64
    settings = {k: v for k, v in _flat_config(cfg).items() if k not in RANK_LOCAL_KEYS}  # threads may differ
    config_digest = int(hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:15],
                        16)
    mine = torch.tensor([start, total, digest, PRECISION_NAMES.index(precision), config_digest], dtype=torch.int64,
                        device=device)
    every = [torch.empty_like(mine) for _ in range(d.world)]
    dist.all_gather(every, mine)
    rows = [t.tolist() for t in every]
    if any(row[3] != rows[0][3] for row in rows):  # train.precision auto on nodes of different CPUs or GPUs
        seen = ", ".join(f"rank {r}: {PRECISION_NAMES[row[3]]}" for r, row in enumerate(rows))
        raise ConfigError(f"the processes would train in different precisions ({seen}): train.precision auto chose "
                          f"by each one's hardware; set it for all, e.g. --set train.precision=fp32")
    if any(row[4] != rows[0][4] for row in rows):
        every_settings: list = [None] * d.world
        dist.all_gather_object(every_settings, settings)
        differ = sorted({k for other in every_settings for k in set(other) | set(settings)
                         if other.get(k) != every_settings[0].get(k)})
        shown = "; ".join(f"{k}: " + ", ".join(f"rank {r} {other.get(k)!r}" for r, other in enumerate(every_settings))
                          for k in differ[:3])
        raise ConfigError(f"the processes run different configs ({shown}{', ...' if len(differ) > 3 else ''}): "
                          f"every rank reads --config and --set itself; give them all the same")
    rows = [row[:3] for row in rows]
    if any(row != rows[0] for row in rows):
        seen = "; ".join(f"rank {r}: step {row[0]} of {row[1]}, pairs {row[2]:x}" for r, row in enumerate(rows))
        raise VidsslError(f"the processes do not see the same run: {seen}. Every rank reads {run_dir} and "
                          f"{pairs_dir} itself (only rank 0 writes): put both on storage every node shares")


def _mean_over_ranks(values: dict[str, float], d: Dist, device: torch.device) -> dict[str, float]:
    """Each value's mean over the processes that have it finite (NaN where none has): one all-reduce."""
    if d.world == 1 or not values:
        return values
    x = torch.tensor([float(v) for v in values.values()], dtype=torch.float64, device=device)
    finite = torch.isfinite(x)
    t = torch.stack([torch.where(finite, x, torch.zeros_like(x)), finite.double()])
    dist.all_reduce(t)
    means = torch.where(t[1] > 0, t[0] / t[1].clamp(min=1), torch.full_like(x, math.nan))
    return dict(zip(values, means.tolist()))


def _min_over_ranks(value: int, d: Dist, device: torch.device) -> int:
    if d.world == 1:
        return value
    t = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX). Without it oneDNN emulates bf16, and the
    smallcnn training step ran 13x slower than in fp32 on an AVX2 EPYC (tools/bench_train.py --precision)."""
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(probe is not None and probe() for probe in probes)


def resolve_precision(name: str, dev: torch.device) -> str:
    """``train.precision`` as run on ``dev``: "auto" becomes bf16 where the hardware computes it, else fp32."""
    if name != "auto":
        return name
    if dev.type == "cuda":
        # without including_emulation=False a V100 or T4 (compute capability < 8) says yes: it can hold bf16
        # tensors, and emulates the arithmetic slowly
        return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp32"
    return "bf16" if dev.type == "cpu" and cpu_has_bf16() else "fp32"


def warmup_length(total: int, cfg: TrainConfig) -> int:
    """The warm-up's steps in a schedule of ``total``: ``train.warmup_steps``, at most a fifth of the schedule (a
    budget that fitted fewer steps than the warm-up ended the run still warming up, its lr never annealed)."""
    return min(cfg.warmup_steps, total // 5)


def lr_factor(step: int, total: int, cfg: TrainConfig) -> float:
    """Multiplier of ``cfg.lr`` at ``step`` of ``total``: linear warm-up (:func:`warmup_length`), then cosine to 0
    or the step schedule."""
    warmup = warmup_length(total, cfg)
    if step < warmup:
        return (step + 1) / warmup
    if cfg.schedule == "cosine":
        span = max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / span)))
    return cfg.gamma ** sum(step >= m * total for m in cfg.milestones)


def pinning_repeats(first_plan: int, fit_history: list, steps: int, stopped: str, cfg: TrainConfig,
                    hard_start: float) -> bool:
    """Whether ``train.steps=<steps>`` with ``train.fit_budget=false`` repeats this fitted run's schedule: at every
    step, the learning rate and the miner's phase the run had (``first_plan`` steps until the first fit, then each
    fit's count from its step on) are those of a schedule of ``steps`` from the start. A fit after the warm-up moved
    the cosine from then on; one that changed the warm-up's length or the main miner's start moved earlier steps."""
    if stopped != "done":  # a budget stop short of the count: a pinned run would go on to it
        return False
    segments, at, total = [], 0, first_plan  # (first step, end, the count they ran under)
    for fit_at, fit_steps in fit_history:
        segments.append((at, fit_at, total))
        at, total = fit_at, fit_steps
    if total != steps:
        return False
    main_from = main_miner_start(hard_start, steps)
    return all(lr_factor(s, count, cfg) == lr_factor(s, steps, cfg)
               and (s < main_miner_start(hard_start, count)) == (s < main_from)
               for begin, end, count in segments for s in range(begin, end))


def _session_settings(cfg: Config, dev: torch.device) -> dict:
    """What one session ran with of the settings a resume may change (RESUMABLE_KEYS), as used: the device resolved
    (with its GPU's name) and torch's CPU threads counted, since both can move the last bits of the weights."""
    used = {k: v for k, v in _flat_config(cfg).items() if k in RESUMABLE_KEYS}
    used["train.device"] = str(dev) + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else "")
    used["train.threads"] = torch.get_num_threads()
    used["cpu"] = _cpu_name()
    return used


def _cpu_name() -> str | None:
    """The CPU's model name (Linux), which decides bf16 and the kernels' last bits; None where unknown."""
    try:
        with open("/proc/cpuinfo") as fh:
            return next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), None)
    except OSError:
        return None


def _flat_config(cfg: Config) -> dict:
    """The keys a training run depends on (a resumed run must match them, but for RESUMABLE_KEYS)."""
    return {k: v for k, v in flat_config(cfg).items() if k.split(".")[0] in TRAIN_SECTIONS}


def _check_same_run(saved: dict, cfg: Config, fingerprint: tuple[str, ...], run_dir: Path, world: int,
                    main: bool = True, skipped: dict[str, str] | None = None,
                    listed: Collection[str] | None = None) -> None:
    """``fingerprint``: the pairs' fingerprints a checkpoint may hold (now's, and earlier versions'); ``main``:
    whether this process says the warnings (rank 0); ``skipped``: the shards open_pairs skips now (shard -> why),
    named in the refusal when they differ from those the checkpoint's run skipped; ``listed``: the shards the
    manifest names now (one skipped then and named no more was mined again)."""
    if saved.get("format") != CHECKPOINT_FORMAT:
        raise VidsslError(f"{run_dir / CHECKPOINT}: not a vidssl training checkpoint; choose another --out")
    if saved["step"] < saved["total_steps"] and saved.get("world_size", 1) != world:
        # the global batch and the split of batches over processes both depend on the process count
        raise ConfigError(f"{run_dir} was trained by {saved.get('world_size', 1)} process(es), this is {world}; "
                          f"resume it with the same number (torchrun --nproc_per_node ...) or choose a new --out")
    if saved["pairs_fingerprint"] not in fingerprint:
        changed, remined = _skipped_change(saved, skipped, listed)
        if changed:
            # a video mined again has other pairs: no state to restore
            fix = "choose a new --out to train on these" if remined else ("restore the state it trained on, or choose "
                                                                          "a new --out")
            raise ConfigError(f"{run_dir} was trained on other pairs (dataset fingerprint "
                              f"{saved['pairs_fingerprint']}, now {fingerprint[0]}): {changed}: {fix}")
        raise ConfigError(f"{run_dir} was trained on other pairs (dataset fingerprint {saved['pairs_fingerprint']}, "
                          f"now {fingerprint[0]}); choose a new --out to train on these")
    now = _flat_config(cfg)
    was = dict(saved["flat_config"])
    if was.get("train.steps") and was.get("train.epochs"):
        # recorded by a version that took both (epochs ignored beside steps, as now refused): what it trained is the
        # steps, so the config that now says them alone continues it
        was["train.epochs"] = 0.0
    # keys a later version added: what the run did so far is not on record (a key's first default need not be what
    # the code before it did), so their settings can be neither checked nor refused, only said
    unrecorded = sorted(k for k in now if k not in was and k not in RESUMABLE_KEYS)
    if unrecorded and saved["step"] < saved["total_steps"] and main:
        shown = ", ".join(f"{k}={now[k]!r}" for k in unrecorded[:5]) + (", ..." if len(unrecorded) > 5 else "")
        log.warning("%s was started by an earlier vidssl, whose checkpoint does not record %d setting(s) of this "
                    "one: the remaining steps run with %s, the steps so far with what that version did",
                    run_dir, len(unrecorded), shown)
    changed = sorted(k for k, v in was.items() if k not in RESUMABLE_KEYS and now.get(k) != v)
    if changed:
        detail = ", ".join(f"{k}: {was[k]!r} -> {now.get(k)!r}" for k in changed[:5])
        hint = ""
        if "train.precision" in changed:  # auto chooses by the hardware: a run moved to other hardware lands here
            hint = (f" (train.precision auto computes in what this hardware runs natively; --set "
                    f"train.precision={saved['flat_config']['train.precision']} continues the run as it was)")
        raise ConfigError(f"{run_dir} holds a run with another config ({detail}){hint}; continue it with the same "
                          f"config or choose a new --out")


def _skipped_change(saved: dict, skipped: dict[str, str] | None,
                    listed: Collection[str] | None = None) -> tuple[str, bool]:
    """The shards skipped when the checkpoint's run started and not now, or now and not then, in words ("" when the
    same, or when the checkpoint predates the record: its "pairs" summary's skipped_shards), and whether one of
    them is named by the manifest no more (``listed``: its shards now): its video was mined again, into another."""
    was = (saved.get("pairs") or {}).get("skipped_shards") if isinstance(saved.get("pairs"), dict) else None
    if not isinstance(was, dict) or skipped is None:
        return "", False
    gone = {name for name in was if listed is not None and name not in listed and name not in skipped}
    said = [f"{name} was skipped ({why}) when this run started and its video has been mined again since"
            if name in gone else f"{name} was skipped ({why}) when this run started and is readable now"
            for name, why in sorted(was.items()) if name not in skipped]
    said += [f"{name} is skipped now ({why}) and was read when this run started"
             for name, why in sorted(skipped.items()) if name not in was]
    return "; ".join(said[:3]) + (f"; ... (+{len(said) - 3} more)" if len(said) > 3 else ""), bool(gone)


def _check_same_network(saved: dict, spec: dict, run_dir: Path) -> None:
    """Refuse to resume a checkpoint whose backbone this version would build with another forward (an
    argument added since, whose default differs from what the record implies: ``Backbone.older_records``)."""
    recorded = saved.get("backbone")
    if not recorded:  # checkpoints of the first versions record none; their config decided the network
        return
    was = {"arch": recorded["arch"], **recorded_kwargs(recorded["arch"], {k: v for k, v in recorded.items()
                                                                           if k != "arch"})}
    changed = sorted(k for k in set(was) | set(spec) if was.get(k) != spec.get(k))
    if changed:
        detail = ", ".join(f"{k}: {was.get(k)!r} -> {spec.get(k)!r}" for k in changed)
        raise ConfigError(f"{run_dir / CHECKPOINT}: this vidssl builds its {was['arch']} otherwise "
                          f"({detail}): its remaining steps would train another network; finish it with the vidssl "
                          "version that started it, export it as it is (`vidssl export` rebuilds the network it "
                          "records), or choose a new --out")


def load_checkpoint(path: Path, advice: str = "delete it to start over, or choose another --out",
                    error: type[VidsslError] = VidsslError) -> dict:
    """The checkpoint at ``path``; a file torch cannot read is an ``error`` ending with ``advice``, and one a newer
    vidssl wrote (its ``format``) one asking for an upgrade, before any of its fields is read as this version's."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as e:  # a folder, no permission, a storage error: the file may be whole, so never "delete it"
        raise error(f"{path}: cannot be read ({e.strerror or type(e).__name__}); fix that and run again (nothing "
                    "was changed)") from None
    except Exception as e:  # a checkpoint is written atomically, so this is a foreign or damaged file
        raise error(f"{path}: unreadable checkpoint ({_load_failure(path, e)}); {advice}") from None
    if isinstance(saved, dict) and newer_format(saved.get("format"), CHECKPOINT_FORMAT):
        raise error(newer_format_error(path, saved["format"], CHECKPOINT_FORMAT))
    return saved


def _load_failure(path: Path, e: Exception) -> str:
    """torch.load's error in one line. Not its whole text: for a file of pickled objects it goes on for lines, with
    terminal colour codes, to advise weights_only=False, which runs whatever code the file holds."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(2)
    except OSError:  # gone or unreadable since torch read it: torch's own words
        head = b"PK"
    if not head:
        return "empty"
    if head != b"PK" and head[:1] != b"\x80":  # torch.save's zip format, or its legacy one (a pickle)
        return "not a torch file: damaged, or of another format"
    if type(e).__name__ == "UnpicklingError":  # the one whose text advises weights_only=False
        return "it holds objects other than tensors (another tool's file?), not loaded as they could run code"
    text = re.sub(r"\x1b\[[0-9;]*m|^\[enforce fail at [^]]*\] \.? ?", "", str(e).strip())  # colours, C++ location
    lines = text.strip().splitlines()
    first = lines[0].split(". ")[0][:200] if lines else ""  # torch's first sentence says what failed
    return f"{type(e).__name__}: {first}".rstrip(": ")


# TensorBoard's sections, by log.jsonl key (anything else under train/): one flat train/ of 19 curves in
# alphabetical order mixed the loss, the collapse signals, the schedule and the throughput
TENSORBOARD_GROUPS = {
    **dict.fromkeys(("loss", "loss_mean_triplet", "cycle", "active", "triplets"), "loss"),
    **dict.fromkeys(("pos_cos", "neg_cos", "neg_cos_ema", "bg_cos", "d_ap", "d_an", "spread"), "embedding"),
    **dict.fromkeys(("lr", "guarded", "epoch", "grad_norm"), "optimisation"),
    **dict.fromkeys(("triplets_per_s", "pairs_per_s", "minutes", "minutes_all_sessions"), "speed"),
}


class RunLog:
    """log.jsonl and TensorBoard, on rank 0 only. On resume, entries after the resumed step are dropped."""

    def __init__(self, run_dir: Path, start_step: int, enabled: bool) -> None:
        self.enabled = enabled
        self.writer = None
        self.failed = False
        if not enabled:
            return
        self.path = run_dir / "log.jsonl"
        kept = []
        if self.path.exists():  # a killed run may have logged past its last checkpoint, or half a line
            dropped = 0
            for line in self.path.read_text(errors="replace").splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                step = rec.get("step") if isinstance(rec, dict) else None
                if not isinstance(step, (int, float)) or isinstance(step, bool):  # a hand edit, joined logs
                    dropped += 1
                elif step <= start_step:  # the checkpoint at a step is written after its log line
                    kept.append(line)
            if dropped:
                log.warning("%s: dropped %d line(s) that are no training record (a JSON object with a numeric "
                            "step)", self.path, dropped)
        atomic_write_text(self.path, "".join(k + "\n" for k in kept))
        self.fh = open(self.path, "a", encoding="utf-8")
        from torch.utils.tensorboard import SummaryWriter

        # as log.jsonl above: a session killed before its first checkpoint leaves events a fresh start replaces
        self.writer = SummaryWriter(str(run_dir / "tb"), purge_step=start_step + 1)

    def scalars(self, step: int, values: dict) -> None:
        if not self.enabled:
            return
        try:
            self.fh.write(json_text({"step": step, **values}) + "\n")
            self.fh.flush()
        except OSError as e:  # a full disk's write error names no file
            self.failed = True
            raise error_naming(e, self.path) from e
        for k, v in values.items():
            if isinstance(v, (int, float)):
                self.writer.add_scalar(f"{TENSORBOARD_GROUPS.get(k, 'train')}/{k}", v, step)

    def image(self, step: int, tag: str, grid: torch.Tensor) -> None:
        if self.enabled:
            self.writer.add_image(tag, grid, step)

    def close(self) -> None:
        if not self.enabled:
            return
        try:
            self.fh.close()
        except OSError as e:
            # after a failed write the close flushes the same buffer again: the error the caller is reporting
            if not self.failed:
                raise error_naming(e, self.path) from e
        finally:
            self.writer.close()


def hardest_triplet_grid(x: torch.Tensor, values: torch.Tensor, t, mean, std, rows: int = 8) -> torch.Tensor:
    """[2P or 3P, 3, S, S] normalised input, [T] losses -> [3, H, W] grid in [0, 1]: one row (a, p, n) per
    anchor, its hardest triplet, the ``rows`` hardest anchors by loss (a hard miner's K negatives share an anchor:
    rows of one anchor had filled half the grid)."""
    from torchvision.utils import make_grid

    by_loss = values.detach().float().argsort(descending=True)
    picked, seen = [], set()
    for k, anchor in zip(by_loss.tolist(), t.a[by_loss].tolist()):
        if anchor not in seen:
            seen.add(anchor)
            picked.append(k)
            if len(picked) == rows:
                break
    order = torch.tensor(picked, dtype=torch.long, device=t.a.device)
    m = torch.tensor(mean, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, 3, 1, 1)
    images = torch.stack([x[t.a[order]], x[t.p[order]], x[t.n[order]]], dim=1).flatten(0, 1).float()
    return make_grid((images * s + m).clamp(0, 1).cpu(), nrow=3, padding=2)


@torch.no_grad()
def batch_stats(emb: torch.Tensor, values: torch.Tensor, scores, t) -> dict:
    """Collapse signals and loss statistics of one step (floats). ``emb``: [2P, D], or [3P, D] with the pairs'
    backgrounds (then ``bg_cos``: mean cosine between each anchor and its own background)."""
    P = scores.d_ap.numel()
    e = emb.detach().float()
    pos_cos = F.cosine_similarity(e[:P], e[P:2 * P], dim=1).mean()
    mined = t.n < 2 * P  # backgrounds are not in the candidate table
    extra = {"bg_cos": float(F.cosine_similarity(e[:P], e[2 * P:], dim=1).mean())} if e.shape[0] == 3 * P else {}
    # per-dimension spread of the unit embeddings, scaled so isotropic vectors give ~1 and a collapse gives 0
    spread = e.std(dim=0).mean() * math.sqrt(e.shape[1])
    sel = len(t) > 0
    return {
        "loss_mean_triplet": float(values.detach().mean()) if sel else 0.0,
        "active": float((values.detach() > 0).float().mean()) if sel else 0.0,
        "d_ap": float(scores.d_ap.mean()),
        "d_an": float(scores.d_an[t.a[mined], t.n[mined]].mean()) if bool(mined.any()) else float("nan"),
        "pos_cos": float(pos_cos),
        "spread": float(spread),
        "triplets": len(t),
        **extra,
    }


def flat_patch_share(x: torch.Tensor) -> float:
    """[B, 3, S, S] normalised input -> the share of its patches that are a single flat colour (black frames, a
    padded border, a stuck decoder): embeddings that collapse on those are the data's doing, not the optimiser's."""
    # 1e-3 in normalised units is under a tenth of a grey level: noise and compression artefacts are above it
    spread = x.detach().float().flatten(2).std(dim=2).amax(dim=1)  # per channel: normalising offsets each its own
    return float((spread < 1e-3).float().mean())


def _collapse_advice(flat_share: float, pairs_dir: Path) -> str:
    if flat_share >= 0.25:
        return (f"{flat_share:.0%} of this batch's patches are a single flat colour (black frames? padding?), where a "
                f"lower learning rate will not help: look at the pairs with `vidssl show-pairs {shell_arg(pairs_dir)}`")
    return "a run that stays here wants a lower train.lr"


def _warn_unranked(unranked: int, steps: int, cfg: Config) -> None:
    """Most steps with no triplet over the margin and no cycle loss: those steps trained nothing (the paper's
    setting on a few videos, whose tracks the network tells apart after a couple of hundred steps)."""
    if cfg.loss.cycle_weight == 0 and steps >= 20 and unranked >= steps / 2:
        log.warning("train: %d of this session's %d steps had no triplet violating loss.margin=%g, and with "
                    "loss.cycle_weight=0 they trained nothing: the tracks are told apart already. More videos (more "
                    "distinct tracks), miner.same_video_negatives=true or the dense cycle loss (loss.cycle_weight=0.2, "
                    "the default) give training more to learn", unranked, steps, cfg.loss.margin)


def _seed_step(seed: int, step: int, d: Dist) -> None:
    """Seed torch's global generator (dropout, the only model randomness) from (seed, global batch): every process
    draws its own masks, and a resumed run draws exactly what an uninterrupted one would, whatever came before."""
    torch.manual_seed(step_seed(Stream.DROPOUT, seed, step, d.rank))


def _save_checkpoint(path: Path, payload: dict) -> None:
    # serialised first: torch.save into the file said a full disk or `ulimit -f` as "unexpected pos", naming no file
    atomic_write_bytes(path, torch_bytes(payload))


def build_model(cfg: Config) -> EmbeddingNet:
    """The training model, randomly initialised from ``cfg.seed`` (the caller's torch generator is left as it was)."""
    cfg.validate()  # a config built in code: a bad arch name is a ConfigError naming the key, not a KeyError
    kwargs = {"input_size": cfg.data.patch_size}
    kwargs.update({key: getattr(cfg.model, key) for key in ARCHS[cfg.model.arch].model_config_keys})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return EmbeddingNet(build_backbone(cfg.model.arch, **kwargs), cfg.model.embed_dim, cfg.model.head)


@dataclass
class StepOutput:
    loss: torch.Tensor  # scalar, the reduced loss
    emb: torch.Tensor  # [2P or 3P, embed_dim] unit embeddings (anchors, positives[, backgrounds])
    values: torch.Tensor  # [T] per-triplet losses
    triplets: Triplets
    scores: Scores
    phase: str  # the miner used: warmup | main | guard
    grad_norm: torch.Tensor
    diverged: str | None  # "loss", "embeddings" or "gradient" when non-finite (on any rank): nothing was updated
    cycle: torch.Tensor | None = None  # the dense cycle loss (before its weight), when loss.cycle_weight > 0
    ranked: bool = True  # whether any triplet violated the margin (the ranking loss had something to learn)


def cycle_shift(seed: int, step: int, h: int, w: int) -> tuple[int, int]:
    """The roll (dy, dx) in cells of the cycle loss at ``step``: along one axis, by 1 to half the map, either way;
    a function of (seed, step), so a resumed run draws the same."""
    g = step_generator(Stream.CYCLE_ROLL, seed, step)
    axis = int(torch.randint(2, (1,), generator=g))
    size = (h, w)[axis]
    magnitude = int(torch.randint(1, max(2, size // 2 + 1), (1,), generator=g))
    sign = 1 if float(torch.rand(1, generator=g)) < 0.5 else -1
    return (sign * magnitude, 0) if axis == 0 else (0, sign * magnitude)


class TrainStep:
    """One optimisation step, shared by :func:`train` and ``tools/bench_train.py``: one forward pass over the 2P
    patches (3P with the pairs' backgrounds; negatives are other pairs' rows) plus, with the cycle loss, the 2P
    rolled copies; mining under no_grad, the loss, backward and SGD."""

    def __init__(self, model: EmbeddingNet, cfg: Config, device: torch.device, total_steps: int,
                 d: Dist | None = None) -> None:
        tc = cfg.train
        d = d or Dist()
        self.model, self.device, self.d = model, device, d
        self.net = model
        if d.world > 1:
            self.net = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None)
        self.optimizer = torch.optim.SGD(model.parameters(), lr=tc.lr, momentum=tc.momentum,
                                         weight_decay=tc.weight_decay)
        self.precision = resolve_precision(tc.precision, device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")
        self.loss_fn, self.reducer = build_loss(cfg.loss), build_reducer(cfg.loss)
        self.schedule = MiningSchedule(cfg.miner, self.loss_fn, total_steps, cfg.seed,
                                       average=lambda v: _mean_over_ranks({"v": v}, d, device)["v"],
                                       rank=d.rank, world=d.world)
        # what the miner can return at most, plus each pair's own background
        self.capacity = tc.batch_pairs * (cfg.miner.negatives_per_pair + int(cfg.miner.background_negatives))
        self.amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        self.cycle_weight, self.cycle_temperature = cfg.loss.cycle_weight, cfg.loss.cycle_temperature
        self.cycle_background = cfg.loss.cycle_background
        self.rows_per_pair = 3 if cfg.miner.background_negatives else 2
        cfg.validate()  # the cross-section rules, for configs built in code rather than loaded
        self.seed = cfg.seed
        self.channels_last = tc.channels_last
        self.check_grad = self.precision != "fp16"  # with fp16 the grad scaler skips non-finite steps itself
        self.skipped_in_a_row = 0  # fp16 steps the scaler skipped since the last one it took

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def __call__(self, x: torch.Tensor, groups: torch.Tensor, step: int) -> StepOutput:
        """x: [2P, 3, S, S] normalised (anchors, then positives; [3P, ...] with the pairs' backgrounds last);
        groups: [P] codes, negatives come from other groups (vidssl.miners.candidate_mask)."""
        autocast = torch.autocast(self.device.type, dtype=self.amp) if self.amp else nullcontext()
        P, n = groups.numel(), x.shape[0]
        if x.dim() != 4 or n != self.rows_per_pair * P:
            # a 2P batch under background negatives split into four maps, and the cycle walked into its own target
            k = self.rows_per_pair
            rows = "anchors, positives, backgrounds" if k == 3 else "anchors, positives"
            raise ValueError(f"x must be [{k}P, 3, S, S] ({rows}; miner.background_negatives={k == 3}): "
                             f"[{k * P}, 3, S, S] for {P} group codes, got {list(x.shape)}")
        if self.cycle_weight:
            shift = cycle_shift(self.seed, step, x.shape[-2] // 8, x.shape[-1] // 8)
            rolled = torch.roll(x[:2 * P], (8 * shift[0], 8 * shift[1]), dims=(2, 3))  # anchors, positives: moved
            both = torch.cat([x, rolled])  # roll and cat return the contiguous layout: keep the model's
            if self.channels_last:
                both = both.contiguous(memory_format=torch.channels_last)
            with autocast:
                emb, maps = self.net(both, dense=True)
            emb = emb[:n]
        else:
            with autocast:
                emb, maps = self.net(x), None
        triplets, scores, phase = self.schedule.mine(emb, groups, step)
        values = self.loss_fn.per_triplet(emb, triplets)
        loss = self.reducer(values, triplets, self.capacity)
        cycle = None
        if maps is not None:
            # split, not slices: each slice's backward writes a zero-filled copy of the whole map
            parts = maps.split(P)  # anchors, positives[, backgrounds], rolled anchors, rolled positives
            a, b, a_rolled, b_rolled = parts[0], parts[1], parts[-2], parts[-1]
            bg = parts[2] if self.cycle_background else None
            cycle = 0.5 * (dense_cycle_loss(a, b, a_rolled, shift, self.cycle_temperature, bg)
                           + dense_cycle_loss(b, a, b_rolled, shift, self.cycle_temperature, bg))
            loss = loss + self.cycle_weight * cycle
        out = StepOutput(loss, emb, values, triplets, scores, phase, torch.zeros(()), None, cycle)
        # NaN embeddings can leave the loss finite: the miners pick no NaN candidate, and no triplet gives 0
        loss_finite, emb_finite, out.ranked = torch.stack([torch.isfinite(loss), torch.isfinite(emb).all(),
                                                           (values.detach() > 0).any()]).tolist()  # 1 sync
        broken = None if loss_finite and emb_finite else "loss" if not loss_finite else "embeddings"
        if _any_rank(broken is not None, self.d, self.device):
            out.diverged = broken or "loss or embeddings on another rank"
            return out
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        out.grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), float("inf"))
        if self.check_grad and _any_rank(not torch.isfinite(out.grad_norm).item(), self.d, self.device):
            out.diverged = "gradient"
            return out
        scale = self.scaler.get_scale() if self.scaler.is_enabled() else None
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if scale is not None:
            # a skipped step halves the scale; gradients that overflow at every scale (a diverged run whose loss
            # is still finite) would otherwise be skipped to the end of the run, which then ends "done", untrained
            self.skipped_in_a_row = self.skipped_in_a_row + 1 if self.scaler.get_scale() < scale else 0
            if self.skipped_in_a_row >= FP16_SKIPS_IN_A_ROW:
                out.diverged = f"gradient (fp16: {self.skipped_in_a_row} steps in a row overflowed, none taken)"
        return out


class StopAtStepEnd:
    """Ctrl-C or SIGTERM while training: the step in flight finishes and is checkpointed, then the signal takes its
    course (Ctrl-C's KeyboardInterrupt, or the command's own SIGTERM handler). Raised mid-step, an interruption left
    the last periodic checkpoint (up to ``train.checkpoint_minutes`` of training lost), and a checkpoint written there
    would hold a half-applied update. A second Ctrl-C stops at once; a second SIGTERM does not. Signals are only handled in the main thread:
    elsewhere this does nothing."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict = {}

    def install(self) -> None:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(signum) is signal.SIG_IGN:
                    # ignored by whoever started it (`vidssl train ... &` in a script: the Ctrl-C is for the
                    # foreground job), as Python and mining leave it; taken over, it stopped the training
                    continue
                self._previous[signum] = signal.getsignal(signum)
                signal.signal(signum, self._handle)

    def _handle(self, signum, frame) -> None:
        import signal

        if self.signum is not None:
            if signum == signal.SIGINT:  # Ctrl-C again: the user means now
                raise KeyboardInterrupt
            # a SIGTERM again is a job's signal relayed (Slurm's to every process, then torchrun's to its ranks),
            # no request to hurry: stopping at once lost the step in flight and its checkpoint; SIGKILL still stops
            return
        self.signum = signum
        log.warning("train: stopping after this step, once its checkpoint is written (again to stop at once)")

    def restore(self) -> None:
        import signal

        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def stop(self) -> None:
        """Restore the handlers and deliver the signal to them (this rank's, or a KeyboardInterrupt where only
        another rank was signalled)."""
        import signal

        self.restore()
        if self.signum is None:
            raise KeyboardInterrupt
        signal.raise_signal(self.signum)
        raise KeyboardInterrupt  # a handler that returned (SIG_IGN set by the caller): stop all the same


def _batches(loader: Iterable, stopping: StopAtStepEnd, d: Dist) -> Iterator:
    """``loader``'s batches, ending early where its workers died while this process is stopping: a SIGTERM sent to
    every process of a job (Slurm's scancel or time limit, ``kill -- -PGID``) ends the workers too, and a fetch
    waiting on them failed ("worker exited unexpectedly") before the finished steps were checkpointed. A step in
    flight is not cut short by their death: the workers are the fork server's children, so torch's SIGCHLD check
    never fires in this process, and their death shows only at the next fetch, which a signalled step never makes.
    One process only: under DDP a rank leaving the loop early would meet the others' collectives out of step."""
    batches = iter(loader)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except RuntimeError as e:
            if stopping.signum is None or d.world > 1 or "DataLoader worker" not in str(e):
                raise
            log.info("train: the loader's workers ended with the signal; checkpointing the steps done")
            return
        yield batch


def train(pairs_dir: str | os.PathLike, run_dir: str | os.PathLike, cfg: Config, *,
          budget_minutes: float | None = None, device: str | None = None, resume: bool = False,
          allow_incomplete: bool = False, progress: bool = True) -> dict:
    """Train (or continue) the run in ``run_dir`` on the pairs in ``pairs_dir``; returns the final stats.

    ``budget_minutes`` and ``device`` override ``cfg.train``'s, and are checked and recorded as its values (so
    ``device`` is "auto", "cpu" or "cuda"; each process takes the GPU of its LOCAL_RANK, 0 outside torchrun).
    ``resume=True`` requires an existing checkpoint (without it, an existing checkpoint is continued all the same).
    A pair dataset whose mining is not complete (videos pending: shards still running) is refused unless
    ``allow_incomplete``. Raises :class:`TrainingDiverged` on a non-finite loss, keeping the last good checkpoint.
    """
    refuse_reimport("vidssl.train.train")  # before the run folder's lock, which the first training holds
    t0 = time.monotonic()
    if not isinstance(cfg.train, TrainConfig):  # a mapping: replace() below would fail on it with a TypeError
        cfg.validate()  # which names the section and the fix
    require_pairs_folder(pairs_dir)  # before the run folder (and its lock file) is made
    if (Path(run_dir) / "manifest.jsonl").is_file():  # its config.yaml, the mining record, would be overwritten
        same = Path(run_dir).resolve() == Path(pairs_dir).resolve()
        raise UsageError(f"--out {run_dir} is {'the pair dataset itself' if same else 'a pair dataset'}: the run's "
                         "config.yaml would replace the one its pairs were mined with, and checkpoints land among "
                         "the shards; choose another folder for the run")
    overrides = {key: value for key, value in (("budget_minutes", budget_minutes), ("device", device))
                 if value is not None}
    # the run folder's config.yaml records what the run ran under, command-line overrides included
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **overrides))
    cfg.validate()  # the overrides and a config built in code, before the run folder (and its lock file) is made
    tc = cfg.train
    dev = resolve_device(tc.device, "train.device")
    owns_group = world_size() > 1 and not dist.is_initialized()
    d = _init_distributed(dev.type, tc.dist_timeout_minutes)
    if dev.type == "cuda":
        dev = torch.device("cuda", d.local_rank)
        torch.cuda.set_device(dev)
    check_precision(tc.precision, dev)
    # the run folder records the precision the run computes in: a resume on hardware that would choose another
    # is refused by the config check rather than silently continued in it
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(tc, precision=resolve_precision(tc.precision, dev)))
    tc = cfg.train
    # one writer per run folder; one voice per run
    with run_lock(run_dir) if d.main else nullcontext(), runtime_settings(cfg, dev), _rank_0_says_it(d):
        stats = _train(Path(pairs_dir), Path(run_dir), cfg, dev, d, resume, allow_incomplete, progress, t0)
    if d.world > 1:
        # every rank returns once rank 0's final checkpoint and stats.json are written (a caller's group too:
        # its next step, e.g. an export on each rank, reads them)
        dist.barrier()
    if owns_group:
        # a gloo group left to process exit intermittently aborted a rank ("terminate called without an active
        # exception"); on an error the process exits and torchrun tears the group down
        dist.destroy_process_group()
    return stats


@contextmanager
def _rank_0_says_it(d: Dist) -> Iterator[None]:
    """The other ranks of a DDP run log errors only (each warning came once per rank), unless debug logging is on
    (``-v``); `vidssl train` does the same from its start, this covers a caller's own script under torchrun."""
    package_log = logging.getLogger("vidssl")
    saved = package_log.level
    if not d.main and not package_log.isEnabledFor(logging.DEBUG):
        package_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        package_log.setLevel(saved)


@contextmanager
def runtime_settings(cfg: Config, dev: torch.device) -> Iterator[None]:
    """Threads, determinism and torch's global generator (seeded every step for dropout) for a run, restored
    afterwards (the caller may evaluate next, or draw random numbers it seeded before).

    With ``data.num_workers`` 0 the augmentation runs in this process, between torch's parallel regions; OpenCV's
    own thread pool then contends with torch's threads (loader-fed steps 0.78x the in-memory speed on 2 cores,
    0.95x with OpenCV single-threaded; tools/bench_train.py), so it is set to one thread for the run.
    """
    import cv2

    tc = cfg.train
    saved = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(), torch.backends.cudnn.benchmark,
             cv2.getNumThreads(), os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
             torch.utils.deterministic.fill_uninitialized_memory)
    if tc.threads:
        torch.set_num_threads(tc.threads)
    if tc.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it for deterministic GEMMs
        torch.use_deterministic_algorithms(True, warn_only=True)  # ops without a deterministic kernel still run
        # deterministic mode also NaN-fills every fresh tensor, a guard against ops that read memory they never
        # wrote; the step has none (results are bit-identical without it) and the fills cost 7-9% of a CPU step
        # (tools/bench_train.py --fill-uninitialized compares)
        torch.utils.deterministic.fill_uninitialized_memory = False
        torch.backends.cudnn.benchmark = False
    elif dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if cfg.data.num_workers == 0:
        cv2.setNumThreads(1)
    try:
        # torch.manual_seed reseeds every GPU's generator, not only the run's
        gpus = list(range(torch.cuda.device_count())) if dev.type == "cuda" else []
        with torch.random.fork_rng(devices=gpus):
            yield
    finally:
        torch.set_num_threads(saved[0])
        torch.use_deterministic_algorithms(saved[1], warn_only=saved[2])
        torch.backends.cudnn.benchmark = saved[3]
        cv2.setNumThreads(saved[4])
        if saved[5] is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        torch.utils.deterministic.fill_uninitialized_memory = saved[6]


def _too_small(pairs, cfg: Config, world: int) -> str | None:
    """What makes ``pairs`` (a PairSet) too small to train on with ``cfg``, all at once (fixing one to meet the next
    on the following run costs the user a run each), each with its fix, or None. Where shards were skipped, the one
    fix said is to restore them where that is enough (neither a setting nor more videos bring their pairs back);
    a problem the whole manifest would have too keeps its own fix beside it."""
    tc = cfg.train
    problems: list[tuple[str, str, bool]] = []  # (what, fix, whether the skipped shards' pairs would cure it)
    tracks = int(np.unique(pairs.track).size)
    all_videos, all_pairs = max(pairs.num_videos, pairs.manifest_videos), max(len(pairs), pairs.manifest_pairs)
    if pairs.num_videos < 2 and not cfg.miner.same_video_negatives:
        # the flag is advised only where it helps: with one track as well, following it met the next error
        fix = ("mine more videos or set miner.same_video_negatives=true" if tracks >= 2 else
               "mine more videos (its pairs come from one track too, so miner.same_video_negatives cannot help)")
        problems.append(("all pairs come from one video, so there is no negative from another video", fix,
                         all_videos >= 2))
    if cfg.miner.same_video_negatives and tracks < 2:
        problems.append(("all pairs come from one track, so there is no negative from another track",
                         "mine more videos (or a video with more than one moving object)", all_videos >= 2))
    if len(pairs) < tc.batch_pairs:
        problems.append((*too_few_pairs(len(pairs), tc.batch_pairs).split("; ", 1), all_pairs >= tc.batch_pairs))
    elif len(pairs) // tc.batch_pairs < world:  # before config.yaml says a run of these settings is in RUN
        problems.append((*too_few_batches(len(pairs), tc.batch_pairs, world).split("; ", 1),
                         all_pairs // tc.batch_pairs >= world))
    if not problems:
        return None
    if pairs.skipped:
        said = "; and ".join(what if cured else f"{what}; {fix}" for what, fix, cured in problems)
        return f"{said}; {'' if all(c for *_, c in problems) else 'and '}{pairs.skipped_advice()}"
    return "; and ".join(f"{what}; {fix}" for what, fix, _ in problems)


def _train(pairs_dir: Path, run_dir: Path, cfg: Config, dev: torch.device, d: Dist, resume: bool,
           allow_incomplete: bool, progress: bool, t0: float) -> dict:
    tc = cfg.train
    budget = tc.budget_minutes

    ckpt_path = run_dir / CHECKPOINT
    pairs = open_pairs(pairs_dir)
    if pairs.pending_videos and not allow_incomplete:
        raise VidsslError(f"{pairs_dir}: mining is not complete ({pairs.pending_videos} video(s) pending, "
                          f"{len(pairs)} pairs so far): wait for the other shards or rerun the same `vidssl mine` to "
                          "finish it, then train; --allow-incomplete trains on the pairs mined so far")
    problems = _too_small(pairs, cfg, d.world)
    if problems:
        raise VidsslError(f"{pairs_dir}: {problems}")
    candidates, k = 2 * (tc.batch_pairs - 1), cfg.miner.negatives_per_pair
    if cfg.loss.reducer == "fixed" and candidates < k and d.main:  # its divisor counts K slots a pair cannot fill
        log.warning("train.batch_pairs=%d leaves each pair %d candidate negatives, fewer than "
                    "miner.negatives_per_pair=%d: the fixed reducer divides by slots that stay empty, so the loss "
                    "is scaled down for good; raise train.batch_pairs or lower miner.negatives_per_pair",
                    tc.batch_pairs, candidates, k)
    if pairs.patch_size < cfg.data.patch_size and d.main:  # allowed (a quick try of a config), but never silent
        # crops take data.crop_min of the stored side at least: stored at this size, none is upscaled
        needed = math.ceil(cfg.data.patch_size / cfg.data.crop_min - 1e-9)
        log.warning("%s: the pairs are stored at %d px and data.patch_size is %d: every patch is upscaled %.1fx or "
                    "more, so the network sees blurred images; mine at >= %d px (--set mine.patch_size=%d: crops "
                    "of data.crop_min=%g of it are %d px) for this config", pairs_dir, pairs.patch_size,
                    cfg.data.patch_size, cfg.data.patch_size / pairs.patch_size, needed, needed, cfg.data.crop_min,
                    int(needed * cfg.data.crop_min))
    saved = None
    if ckpt_path.exists():
        saved = load_checkpoint(ckpt_path)
        _check_same_run(saved, cfg, (pairs.fingerprint, pairs.legacy_fingerprint), run_dir, d.world, d.main,
                        pairs.skipped, pairs.shards)
        if saved.get("batch_plan", 1) != BATCH_PLAN and saved["step"] < saved["total_steps"] and d.main:
            log.warning("%s was started by an earlier vidssl, whose batches or per-step random draws were made "
                        "otherwise: its remaining steps train on this version's, so its weights will not equal an "
                        "uninterrupted run's (of either version)", run_dir)
    elif resume:
        raise VidsslError(f"--resume: no {CHECKPOINT} in {run_dir}; drop --resume to start a new run there")

    model = build_model(cfg).to(dev)
    if saved is not None and saved["step"] < saved["total_steps"]:
        _check_same_network(saved, model.backbone.spec(), run_dir)
    channels_last = tc.channels_last
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    per_epoch = batches_per_epoch(len(pairs), tc.batch_pairs, d.world)
    total = tc.steps or max(1, math.ceil(tc.epochs * per_epoch / d.world))
    first_plan = total  # the count the run started under (a resume is under the same config), before any fit
    start, fitted = 0, False
    # seconds the sessions before this one trained up to their last checkpoint (what the weights cost; a killed
    # session's time after it was lost with its steps); None from a checkpoint that predates the record
    earlier_seconds = 0.0 if saved is None else saved.get("trained_seconds")
    # the first session's record: a resume is on the same pairs (their fingerprint holds the mining settings); a
    # checkpoint that predates the record gets the pairs' now
    mining = saved["mining"] if saved is not None and isinstance(saved.get("mining"), dict) else pairs.mining
    if saved is not None:
        start, total, fitted = saved["step"], saved["total_steps"], saved["fitted"]
        if start < total and d.main:
            log.info("train: resuming %s at step %d of %d (its checkpoint)", run_dir, start, total)
    _check_ranks_agree(d, dev, run_dir, pairs_dir, start, total, pairs.fingerprint, tc.precision, cfg)
    if saved is not None:
        model.load_state_dict(saved["model"])
        if start >= total:
            if d.main:
                log.info("train: %s is already complete (%d steps)", run_dir, total)
            stats = {**saved["metrics"], "step": start, "total_steps": total, "stopped": "done", "minutes": 0.0,
                     **_all_sessions(earlier_seconds, 0.0, len(saved.get("sessions", []))),
                     "checkpoint": str(ckpt_path), "pairs": len(pairs), "world_size": d.world,
                     "weights_sha256": parameter_digest(model), "fit_history": saved.get("fit_history", []),
                     "pinning_repeats": pinning_repeats(first_plan, saved.get("fit_history", []), start, "done", tc,
                                                        cfg.miner.hard_start),
                     "mining": mining}
            if d.main and not _stats_say_done(run_dir / "stats.json", start, total):
                # killed between its final checkpoint and stats.json: every rerun returned here without writing it,
                # leaving none or an earlier session's (a budget stop) for the pipeline and the export to read
                atomic_write_json(run_dir / "stats.json", stats)
            return stats
    stepper = TrainStep(model, cfg, dev, total, d)
    optimizer, scaler, schedule = stepper.optimizer, stepper.scaler, stepper.schedule
    if saved is not None:
        optimizer.load_state_dict(saved["optimizer"])
        scaler.load_state_dict(saved["scaler"])
        # the scaler's skips in a row so far count toward the divergence stop, as in an uninterrupted run
        stepper.skipped_in_a_row = saved.get("fp16_skipped_in_a_row", 0)
        schedule.load_state_dict(saved["miner"])
    fit = budget is not None and tc.fit_budget and not fitted

    # the code and libraries of every session that trained this run: a resume under newer code is on record
    sessions = [*(saved.get("sessions", []) if saved is not None else []),
                {"start_step": start, **versions(), "settings": _session_settings(cfg, dev)}]
    # [step, steps] of every budget fit that changed the count (the lr's cosine and the miner's phases followed the
    # count of then), so a fitted run says what its schedule was: train.steps=N with fit_budget=false repeats it when
    # no entry lies past the warm-up (before, neither depended on the count)
    fit_history: list[list[int]] = [list(f) for f in saved.get("fit_history", [])] if saved is not None else []
    if d.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        remove_temp_leftovers(run_dir)  # a checkpoint half written when a session was killed (under the run lock)
        write_resolved(cfg, run_dir, sessions=sessions)
    mean, std = model.backbone.mean, model.backbone.std
    mean_on_device, std_on_device = (torch.tensor(v, dtype=torch.float32, device=dev) for v in (mean, std))
    sampler = PairBatchSampler(pairs.video, pairs.track, tc.batch_pairs, cfg.seed, steps=total, start_step=start,
                               rank=d.rank, world=d.world)
    loader = make_loader(PairPatches(pairs, cfg.data, background=cfg.miner.background_negatives), sampler, cfg.data,
                         pin_memory=dev.type == "cuda", seed=cfg.seed)
    # negatives come from other videos, or with same_video_negatives from other tracks (never the anchor's own)
    group_codes = torch.from_numpy(pairs.track if cfg.miner.same_video_negatives else pairs.video).long()
    runlog = RunLog(run_dir, start, d.main)

    def checkpoint(step: int, metrics: dict) -> None:
        # a finite loss does not make a finite model: BatchNorm's running statistics overflow in a forward pass
        # whose batch statistics (what training uses) are still finite, and the evaluation reads them
        broken = non_finite_state(model)
        if _any_rank(bool(broken), d, dev):
            raise TrainingDiverged(_diverged_message(f"model state ({', '.join(broken[:3]) or 'on another rank'})",
                                                     step, last_ckpt, ckpt_path))
        if not d.main:
            return
        _save_checkpoint(ckpt_path, {
            "format": CHECKPOINT_FORMAT, "step": step, "total_steps": total, "fitted": fitted,
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
            "fp16_skipped_in_a_row": stepper.skipped_in_a_row, "miner": schedule.state_dict(), "config": to_dict(cfg),
            "flat_config": _flat_config(cfg), "pairs_fingerprint": pairs.fingerprint, "pairs": pairs.summary(),
            "backbone": model.backbone.spec(), "embed_dim": cfg.model.embed_dim, "head": cfg.model.head,
            "world_size": d.world, "metrics": metrics, "sessions": sessions, "batch_plan": BATCH_PLAN,
            "fit_history": fit_history, "mining": mining,
            "trained_seconds": None if earlier_seconds is None else earlier_seconds + time.monotonic() - t0,
        })

    from tqdm import tqdm

    from vidssl.progress import bars_on_stderr

    bar = tqdm(total=total, initial=start, desc="train", unit="step", dynamic_ncols=True,
               disable=not (d.main and bars_on_stderr(progress)))

    def set_total(steps: int, at: int) -> None:
        """A budget fit: the schedule (lr, miner phases) now ends at ``steps``, as of step ``at``."""
        nonlocal total
        if steps != total:  # a fit that keeps the count changes nothing
            fit_history.append([at, steps])
        total = steps
        schedule.set_total(steps)
        bar.total = steps
    model.train()
    step, stopped = start, "done"
    metrics = dict(saved["metrics"]) if saved is not None else {}  # kept if this run stops before it logs
    last_ckpt = start if saved is not None else None
    last_ckpt_t = time.monotonic()  # when the last checkpoint was written, or this session started
    window_t, window_steps, window_triplets = time.monotonic(), 0, 0
    session_t = said_t = time.monotonic()  # for the progress lines a log file gets instead of the bar
    # (time, step) the speed is measured from: the end of this process's first step, then of the latest fit (a slow
    # start is not held against the steps after it)
    speed_from = None
    fit_again = False  # the first fit of a new run is made again at the end of the warm-up
    planned = total  # the step count before any fit: a fit never goes beyond it
    unranked_steps = 0  # steps of this session on which no triplet violated the margin
    guarding, guard_entries = False, 0  # whether the collapse guard held the miner back at the last step; how often
    # it began to this session
    stopping = StopAtStepEnd()
    stopping.install()
    try:
        for patches, index in _batches(loader, stopping, d):
            _seed_step(cfg.seed, step, d)
            x = to_input(patches, mean_on_device, std_on_device, dev, channels_last)
            groups = group_codes[index].to(dev)
            lr = tc.lr * lr_factor(step, total, tc)
            stepper.set_lr(lr)
            out = stepper(x, groups, step)
            if out.diverged:  # step counts from 0 here; the logs and checkpoints count steps done
                raise TrainingDiverged(_diverged_message(out.diverged, step + 1, last_ckpt, ckpt_path))
            step += 1
            bar.update(1)
            if (out.phase == "guard") != guarding and d.main:  # the phase is the same on every rank
                if not guarding:  # a sign of collapse, shown only as a phase in log.jsonl before; a warning the
                    # first time, then info lines (a mean hovering at the bar would repeat it every few steps)
                    guard_entries += 1
                    say = log.warning if guard_entries == 1 else log.info
                    say("train: step %d: the negatives' running mean cosine %.2f is above miner.guard_neg_cos=%g "
                        "(the embeddings are collapsing): mining backs off to miner.warmup (%s) until it falls; %s",
                        step, schedule.neg_cos_ema, cfg.miner.guard_neg_cos, cfg.miner.warmup,
                        _collapse_advice(flat_patch_share(x), pairs_dir))
                else:
                    log.info("train: step %d: the negatives' running mean cosine %.2f is back under "
                             "miner.guard_neg_cos: mining with miner.main (%s) again", step, schedule.neg_cos_ema,
                             cfg.miner.main)
            guarding = out.phase == "guard"
            unranked_steps += not out.ranked
            window_steps += 1
            window_triplets += len(out.triplets)

            if budget is not None and step - start == 1:
                speed_from = (time.monotonic(), step)
            if fit and step - start == _FIT_AFTER + 1:
                fits, per_step, left = _budget_fit(step, speed_from, budget, t0)
                # a budget spent before the fit stops the run below as "budget", unfitted: a rerun with more time
                # fits then (a fit to the steps done would end it "done" at the warm-up's learning rate)
                if not _any_rank(left <= 0, d, dev):
                    set_total(_min_over_ranks(min(total, fits), d, dev), step)
                    fitted, fit = True, False
                    if d.main:
                        # 0.25 minutes read "0.2-minute" at one decimal
                        log.info("train: fitted %d steps to the %s-minute budget (%.2f s/step)", total,
                                 f"{budget:.1f}" if budget >= 1 else f"{budget:.2g}", per_step)
                    # fitted again only where the warm-up keeps its length (a schedule under 5x the warm-up's
                    # steps has a warm-up of a fifth of it, which a longer count would lengthen: the lr would fall
                    # back into it)
                    speed_from = (time.monotonic(), step)
                    fit_again = start == 0 and step < tc.warmup_steps == warmup_length(total, tc)
            elif fit_again and step == tc.warmup_steps:
                # the first fit underestimated a 2-core CPU's speed by about 20% (the loader filling its queue slows
                # the first ten steps); so far the lr was the warm-up's and the miner the first phase's, neither
                # depended on the count, so it may still grow
                fits, per_step, _ = _budget_fit(step, speed_from, budget, t0)
                refit = _min_over_ranks(min(planned, fits), d, dev)
                fit_again = False
                if min(schedule.hard_from, schedule.hard_start_step(refit)) >= step:
                    speed_from = (time.monotonic(), step)
                    set_total(refit, step)
                    if d.main:
                        log.info("train: fitted %d steps at the end of the warm-up (%.2f s/step)", total, per_step)
            elif (budget is not None and fitted and tc.fit_budget and step % tc.log_every == 0
                  and step - speed_from[1] >= _FIT_AFTER and step < total):  # (fitted: maybe in an earlier session)
                # the speed changed since the fit. Fell (a shared machine, a slower phase): shorten the schedule
                # again, so the run still ends annealed instead of at the budget stop with the learning rate half
                # way down
                fits, per_step, left = _budget_fit(step, speed_from, budget, t0)
                overrun = step + left / per_step < total  # only a projected overrun refits, not the margin
                if _any_rank(overrun, d, dev):
                    set_total(_min_over_ranks(min(total, fits), d, dev), step)  # shorter: the hard phase moves earlier
                    if d.main:
                        log.info("train: refitted to %d steps (now %.2f s/step)", total, per_step)
                elif step < schedule.hard_from:
                    # the speed rose since the fit (a slow start: the first ~90 steps of the quick start ran 25%
                    # slower, and it ended with a quarter of its budget unused): while the miner is in its first
                    # phase and the warm-up keeps its length, the schedule may grow back toward the planned steps;
                    # the lr's cosine stretches (a few % up at that step)
                    longer = _min_over_ranks(min(planned, fits), d, dev)
                    if (longer > total * _GROW_BY and schedule.hard_start_step(longer) > step
                            and warmup_length(longer, tc) == warmup_length(total, tc)):
                        speed_from = (time.monotonic(), step)
                        set_total(longer, step)
                        if d.main:
                            log.info("train: refitted to %d steps (faster now: %.2f s/step)", total, per_step)

            if step % tc.log_every == 0 or step == total:
                now = time.monotonic()
                seconds = max(now - window_t, 1e-9)
                # NaN before the first mined negative, as batch_stats has it (the mean over ranks takes floats).
                # neg_cos is this batch's, as pos_cos and bg_cos beside it in the report; the guard reads the mean
                ema = math.nan if schedule.neg_cos_ema is None else schedule.neg_cos_ema
                local = {"loss": out.loss.item(), "neg_cos": schedule.neg_cos, "neg_cos_ema": ema,
                         **batch_stats(out.emb, out.values, out.scores, out.triplets),
                         "grad_norm": float(out.grad_norm),
                         **({"cycle": out.cycle.item()} if out.cycle is not None else {}),
                         "triplets_per_s": window_triplets / seconds,
                         "pairs_per_s": window_steps * tc.batch_pairs / seconds}
                metrics = _mean_over_ranks(local, d, dev)  # every process's batch, not rank 0's alone
                for key in ("triplets_per_s", "pairs_per_s"):  # throughput of the whole run
                    metrics[key] *= d.world
                metrics.update({"lr": lr, "phase": out.phase, "guarded": float(out.phase == "guard"),
                                "epoch": step * d.world / per_epoch,
                                "minutes": (now - t0) / 60})
                if saved is not None:  # resumed: "minutes" began again at 0
                    metrics.update(_minutes_all_sessions(earlier_seconds, now - t0))
                runlog.scalars(step, metrics)
                bar.set_postfix(loss=f"{metrics['loss']:.3f}", pos_cos=f"{metrics['pos_cos']:.2f}", phase=out.phase)
                if bar.disable and d.main and now - said_t >= _PROGRESS_EVERY_S:  # output to a file (a batch job)
                    left = (total - step) * (now - session_t) / max(step - start, 1)
                    log.info("train: step %d of %d, loss %.3f, about %.1f min left", step, total, metrics["loss"],
                             left / 60)
                    said_t = now
                window_t, window_steps, window_triplets = now, 0, 0
            now = time.monotonic()
            out_of_time = budget is not None and now - t0 > budget * 60
            # by time too: at 50 steps of 3 s (a CPU), Ctrl-C lost up to 2.5 minutes of training
            overdue = bool(tc.checkpoint_minutes) and now - last_ckpt_t >= tc.checkpoint_minutes * 60
            out_of_time, overdue, signalled = _any_rank_each((out_of_time, overdue, stopping.signum is not None), d,
                                                             dev)  # rank 0's clock is not theirs
            # and at a session's last step: a budget-fitted run of fewer than image_every steps (the quick start on
            # an AVX2 CPU fitted 120-167) had no image at all
            last = step >= total or out_of_time or signalled
            if d.main and tc.image_every and (step % tc.image_every == 0 or last) and len(out.triplets):  # rank 0's
                runlog.image(step, "hardest_triplets", hardest_triplet_grid(x, out.values, out.triplets, mean, std))
            if signalled:  # Ctrl-C or SIGTERM during the step: it is kept
                if last_ckpt != step:
                    checkpoint(step, metrics)
                stopping.stop()
            if out_of_time and step < total:
                stopped = "budget"
                break
            if (step % tc.checkpoint_every == 0 or overdue) and step < total:
                checkpoint(step, metrics)
                last_ckpt, last_ckpt_t = step, time.monotonic()
            if step >= total:
                break
        checkpoint(step, metrics)
    except BaseException:
        stopping.restore()
        raise
    finally:
        bar.close()
        runlog.close()
    try:  # still held: a signal now (a job's SIGTERM relayed once more) must not cost the finished run its record
        stats = {**metrics, "step": step, "total_steps": total, "stopped": stopped,
                 "minutes": (time.monotonic() - t0) / 60, "checkpoint": str(ckpt_path), "pairs": len(pairs),
                 **_all_sessions(earlier_seconds, time.monotonic() - t0, len(sessions)),
                 "world_size": d.world, "weights_sha256": parameter_digest(model), "fit_history": fit_history,
                 "pinning_repeats": pinning_repeats(first_plan, fit_history, step, stopped, tc, cfg.miner.hard_start),
                 "mining": mining}
        if d.main:
            atomic_write_json(run_dir / "stats.json", stats)
    finally:
        stopping.restore()
    if d.main:
        _warn_unranked(unranked_steps, step - start, cfg)
    if stopping.signum is not None:
        # it came during the last checkpoint or stats.json: delivered now, not swallowed, but after stats.json, so
        # that the finished training is recorded as finished (it was reported as interrupted, with no stats.json)
        stopping.stop()
    return {**stats, "session_steps": step - start}  # the caller's to judge (vidssl train: a one-step budget)


def outcome_line(stats: dict) -> str:
    """"finished: step N/M in T min; loss L, cos(a,p) P, cos(a,neg) Q; checkpoint FILE" from what :func:`train`
    returns: `vidssl train` prints it, pretrain logs it (its log file had nothing of how training went)."""
    state = "finished" if stats["stopped"] == "done" else "stopped at the time budget (rerun to continue)"
    # a budget spent before the first logged step has no metrics yet: none shown, rather than "loss nan"
    neg_cos = float("nan") if stats.get("neg_cos") is None else stats["neg_cos"]  # None: no negative mined yet
    metrics = (f"loss {stats['loss']:.4f}, cos(a,p) {stats.get('pos_cos', float('nan')):.2f}, "
               f"cos(a,neg) {neg_cos:.2f}; " if "loss" in stats else "")
    # a resumed run: this session's minutes, and what all the sessions whose steps it holds took
    resumed = (f" (this session; {stats['minutes_all_sessions']:.1f} min over {stats['sessions']} sessions)"
               if stats.get("sessions", 1) > 1 and "minutes_all_sessions" in stats else "")
    return (f"{state}: step {stats['step']}/{stats['total_steps']} in {stats['minutes']:.1f} min{resumed}; "
            f"{metrics}checkpoint {stats['checkpoint']}")


def _all_sessions(earlier_seconds: float | None, seconds: float, sessions: int) -> dict:
    """``stats.json``'s record of a resumed run's whole training: ``sessions`` (those whose steps the weights hold)
    and ``minutes_all_sessions`` (theirs up to their last checkpoint, with this one's ``seconds``; left out where a
    checkpoint predates the record). ``minutes`` alone was the last session's: 0.6 of a run that trained 2.3."""
    return {"sessions": sessions, **_minutes_all_sessions(earlier_seconds, seconds)}


def _minutes_all_sessions(earlier_seconds: float | None, seconds: float) -> dict:
    """``{"minutes_all_sessions": ...}``: the earlier sessions' training time with this one's ``seconds``; empty
    where a checkpoint predates the record (``earlier_seconds`` None)."""
    return {} if earlier_seconds is None else {"minutes_all_sessions": (earlier_seconds + seconds) / 60}


def _budget_fit(step: int, speed_from: tuple[float, int], budget: float, t0: float) -> tuple[int, float, float]:
    """(the step count that fits the budget at the speed measured since ``speed_from`` = (time, step), the seconds
    per step, the seconds of budget left); the count is at least one more step."""
    per_step = (time.monotonic() - speed_from[0]) / (step - speed_from[1])
    left = budget * 60 - (time.monotonic() - t0)
    return step + max(1, int(_FIT_MARGIN * left / per_step)), per_step, left


def _stats_say_done(path: Path, step: int, total: int) -> bool:
    """Whether ``path`` (a run's stats.json) records the run as finished at ``step`` of ``total`` steps."""
    stats = json_object(path)
    return (stats.get("step"), stats.get("total_steps"), stats.get("stopped")) == (step, total, "done")


def parameter_digest(model: torch.nn.Module) -> str:
    """SHA-256 of every parameter's bytes, in name order: equal on all ranks of a healthy DDP run (buffers such as
    BatchNorm statistics are per rank and left out)."""
    h = hashlib.sha256()
    for name, p in sorted(model.named_parameters()):
        h.update(name.encode())
        dense = p.detach().cpu().clone(memory_format=torch.contiguous_format)  # channels_last strides differ
        h.update(dense.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def non_finite_state(model: torch.nn.Module) -> list[str]:
    """Names of the parameters and buffers of ``model`` holding NaN or infinity (BatchNorm's running statistics
    included)."""
    return [name for name, t in [*model.named_parameters(), *model.named_buffers()]
            if t.is_floating_point() and not bool(torch.isfinite(t).all())]


def _diverged_message(what: str, step: int, last_ckpt: int | None, ckpt_path: Path) -> str:
    kept = (f"the last good checkpoint (step {last_ckpt}) is kept in {ckpt_path}" if last_ckpt is not None
            else "no checkpoint had been written yet")
    return (f"non-finite {what} at step {step}: stopped; {kept}. Lower train.lr, raise train.warmup_steps, "
            f"or use train.precision=fp32: a new config, so into a new --out (a run continues only with its own)")
