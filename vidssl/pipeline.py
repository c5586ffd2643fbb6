"""``vidssl pretrain``: mine -> train -> export -> evaluate -> report, resumable stage by stage.

Each stage writes into the run directory and, when complete, a marker ``RUN/stages/<stage>.json`` (atomically,
last). A rerun of the same command skips completed stages; the stages themselves resume from their own state
(finished videos for mining, the rolling checkpoint for training), so an interruption at any moment loses at most
the work in flight.

Layout of a run directory::

    RUN/config.yaml            resolved config, versions, git SHA
    RUN/demo_videos/           the built-in clips (only when no --videos is given; + demo_videos_held_out/)
    RUN/pairs/                 the mined pair dataset (+ pairs_grid.png); RUN/pairs_held_out/ the held-out tracks
    RUN/stages/                <stage>.json when complete, <stage>.started.json while running
    RUN/train/                 checkpoint.pt, log.jsonl, TensorBoard events
    RUN/backbone.pt            exported weights (+ backbone.safetensors, model_card.json)
    RUN/eval/<task>/           metrics.json, metrics.md, figures
    RUN/report.html, RUN/summary.json
    RUN/pretrain.log           every session's messages, appended
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import logging.handlers
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from vidssl.config import Config, flat_config, settings_of_older_records, write_resolved
from vidssl.errors import ConfigError, VidsslError, one_line, shell_arg
from vidssl.io import (atomic_write_json, file_record, file_state, json_object, open_own_file, remove_temp_leftovers,
                       run_lock, same_file)
from vidssl.train_config import RESUMABLE_KEYS, TRAIN_SECTIONS, min_embed_side

log = logging.getLogger(__name__)


class EvalFailed(VidsslError):
    """Some evaluation tasks could not run (bad data); the others finished and the report lists both."""


@dataclass
class EvalSet:
    """One evaluation to run: ``task`` is retrieval, davis or flow; ``kind`` refines retrieval's layout."""

    task: str
    name: str
    path: Path
    kind: str = "auto"
    folder: str = ""  # RUN/eval/<folder>: unique among the run's evaluations (set by discover_eval_sets)


def discover_eval_sets(root: Path | None, held_out_pairs: Path | None) -> list[EvalSet]:
    """Evaluation data found under ``root`` (a $VIDSSL_DATA-style folder, or one dataset folder itself).

    Recognised: ``retrieval/<set>/`` (image folders, labels.csv or the CUB-200-2011 release folder), ``davis/`` (JPEGImages + Annotations),
    ``flow/`` (Sintel / Middlebury / KITTI pairs). ``held_out_pairs`` (tracks mined from video never trained on:
    held-out demo clips, or the held-out tail of the real videos) adds instance retrieval across time.
    """
    from vidssl.eval.retrieval_data import is_cub_release

    sets: list[EvalSet] = []
    if root is not None:
        root = Path(root)
        if not root.is_dir():
            raise VidsslError(f"--eval-data {root}: no such folder")
        retrieval = root / "retrieval"
        if (root / "JPEGImages").is_dir():
            sets += [EvalSet("davis", "davis", root), EvalSet("retrieval", "davis_instances", root, "davis")]
        elif retrieval.is_dir():
            for sub in sorted(p for p in retrieval.iterdir() if p.is_dir() and not p.name.startswith(".")):
                sets.append(EvalSet("retrieval", sub.name, sub, "images"))
        elif (root / "labels.csv").is_file() or is_cub_release(root):
            sets.append(EvalSet("retrieval", root.name, root, "images"))
        if (root / "davis" / "JPEGImages").is_dir():
            sets.append(EvalSet("retrieval", "davis_instances", root / "davis", "davis"))
            sets.append(EvalSet("davis", "davis", root / "davis"))
        if (root / "flow").is_dir():
            sets.append(EvalSet("flow", "flow", root / "flow"))
        if not sets and _holds_flow_pairs(root):  # a flow dataset itself (Sintel, Middlebury or KITTI layout)
            sets.append(EvalSet("flow", "flow", root))
    if held_out_pairs is not None and _pair_count(held_out_pairs) > 0:
        sets.append(EvalSet("retrieval", HELD_OUT_TASK, held_out_pairs, "tracks"))
    # davis and flow own eval/davis and eval/flow; a retrieval set that would share a folder (e.g. one named
    # retrieval/davis/) gets a prefixed one, so no task overwrites, or is resumed from, another's metrics
    taken = {es.task for es in sets if es.task != "retrieval"}
    for es in sets:
        if es.task != "retrieval":
            es.folder = es.task
            continue
        folder = es.name if es.name not in taken else f"retrieval_{es.name}"
        while folder in taken:
            folder += "_"
        es.folder = folder
        taken.add(folder)
    return sets


def _holds_flow_pairs(root: Path) -> bool:
    from vidssl.eval.flow.data import pairs_under

    return bool(pairs_under(root))


def data_fingerprint(folder: Path, others: frozenset[Path] = frozenset()) -> dict[str, Any]:
    """The files under an evaluation set's ``folder`` (hidden ones passed over, as its discovery does; and the
    folders of ``others``, sets of their own inside it: a DAVIS root holding flow/), as a fingerprint: their count
    and a hash of their sorted relative paths, sizes and mtime_ns. A stat per file and nothing read, so a rerun
    checks a dataset of thousands of images at once: a file added, removed, replaced or touched changes it (the data
    copied without its times too: evaluated again, which costs time, not numbers)."""
    import hashlib

    files, seen = [], set()
    for top, dirs, names in os.walk(folder, followlinks=True):  # a class folder may be a link, as the loaders take
        try:
            here = os.stat(top)
        except OSError:
            dirs[:] = []
            continue
        if (here.st_dev, here.st_ino) in seen:  # a link back up the tree: walked once
            dirs[:] = []
            continue
        seen.add((here.st_dev, here.st_ino))
        dirs[:] = [d for d in dirs if not d.startswith(".") and Path(top) / d not in others]
        for name in names:
            path = Path(top) / name
            state = None if name.startswith(".") else file_state(path)
            if state is not None:
                files.append((path.relative_to(folder).as_posix(), state["size"], state["mtime_ns"]))
    digest = hashlib.sha256(json.dumps(sorted(files)).encode("utf-8", "surrogateescape")).hexdigest()
    return {"files": len(files), "sha256": digest}


def eval_data_fingerprints(root: Path | None) -> dict[str, dict[str, Any]]:
    """Per evaluation set in the --eval-data folder ``root`` (by its RUN/eval folder), its path and its files'
    data_fingerprint; {} without one. The held-out tracks are not among them: they are the mine stage's output,
    whose change redoes every stage after it."""
    if root is None or not Path(root).is_dir():
        return {}
    sets = discover_eval_sets(Path(root), None)
    paths = frozenset(es.path for es in sets)
    prints: dict[Path, dict] = {}  # davis and davis_instances read the same folder
    for path in paths:
        prints[path] = data_fingerprint(path, frozenset(p for p in paths if p != path))
    return {es.folder: {"path": str(es.path), **prints[es.path]} for es in sets}


def changed_since(recorded: Any, fingerprint: dict | None) -> bool:
    """Whether an evaluation set's files differ from those its ``recorded`` fingerprint (a marker's) describes."""
    return isinstance(recorded, dict) and recorded.get("sha256") != (fingerprint or {}).get("sha256")


def _pair_count(pairs_dir: Path) -> int:
    """Pairs in a mined dataset (0 when there is none yet)."""
    try:
        return int(json.loads((pairs_dir / "dataset.json").read_text(encoding="utf-8"))["pairs"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


STAGES = ("mine", "train", "export", "eval")
NOTHING_EVALUATED = ("nothing was evaluated: there were no held-out pairs ({why}) and no evaluation data; give "
                     "--eval-data (CUB, DAVIS, Sintel folders){fix}")
HELD_OUT_TASK = "tracks_held_out"  # the evaluation on the pairs mined from the held-out tails (RUN/eval/<this>)

# what each stage's result depends on: config sections or keys (the inputs are added by pretrain). A completed stage
# is reused only while these are unchanged; knobs of speed, logging and budget may change between runs.
STAGE_KEYS = {
    "mine": ("video", "demo", "mine", "pretrain.held_out_tail", "pretrain.held_out_patch_context",
             "miner.background_negatives"),
    "train": TRAIN_SECTIONS,
    "export": ("export",),
    "eval": ("eval",),
}
_RERUNNABLE = RESUMABLE_KEYS | {"eval.retrieval.num_workers", "eval.retrieval.device",
                                "eval.retrieval.batch_size", "eval.retrieval.chunk_mb", "eval.davis.device",
                                "eval.davis.batch_size", "eval.flow.device"}
# of those, the keys that decide no number by themselves (`vidssl compare` lists the steps each run trained apart:
# with train.fit_budget, threads and devices decide them): not the budget
SPEED_KEYS = _RERUNNABLE - {"train.budget_minutes", "train.fit_budget"}
# a key of the mine stage that a completed mining ignores (nothing decodes the videos again), but an unfinished one
# must keep: the pair folder records it, and mining on with another backend is refused there. Not a speed key: the
# backends' scalers resize frames to the working size a little differently
_FREE_ONCE_MINED = "video.backend"
# mining keys that only one kind of run reads: the demo clips' settings on a --videos run; the held-out tail of the
# user's videos on a demo run (which holds out clips of its own), and their box size (demo.mine_box_fraction's)
UNUSED_BY = {True: ("pretrain.held_out_tail", "mine.box_fraction"), False: ("demo",)}
# keys no pretrain run reads (it warns of one set): its training gets pretrain.train_fraction of what mining leaves
# of pretrain.budget_minutes
NOT_READ_BY_PRETRAIN = ("train.budget_minutes",)


def stage_configs(cfg: Config, inputs: dict[str, dict[str, Any]], demo: bool = False) -> dict[str, dict[str, Any]]:
    """Per stage, the flat config keys its result depends on, plus its ``inputs`` (e.g. ``{"mine": {"--videos":
    path}}``): ``{"train": {"train.lr": 0.02, ...}, ...}``. ``demo``: the run mines the built-in demo clips."""
    flat = json.loads(json.dumps(flat_config(cfg)))  # as a marker reads back: tuples are lists

    def under(key: str, prefixes) -> bool:
        return any(key == p or key.startswith(p + ".") for p in prefixes)

    return {stage: {**{k: v for k, v in flat.items() if k not in _RERUNNABLE and under(k, prefixes)
                       and not under(k, UNUSED_BY[demo])},
                    **inputs.get(stage, {})}
            for stage, prefixes in STAGE_KEYS.items()}


def _marker(path: Path) -> dict | None:
    """A stage marker's JSON object, or None where there is none. One that is no JSON object (or no UTF-8) was
    edited by hand, markers being written atomically: None, so the stage is redone. A file that cannot be read (no
    permission, a storage error) is an error: the stage may be complete, and redoing it would discard its work."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):  # ValueError: JSONDecodeError and UnicodeDecodeError
        return None
    return value if isinstance(value, dict) and value else None


class Stages:
    """Markers of completed stages in ``RUN/stages``; a marker holds the stage's result."""

    def __init__(self, run_dir: Path):
        self.dir = run_dir / "stages"

    def done(self, stage: str) -> dict | None:
        return _marker(self.dir / f"{stage}.json")

    def started(self, stage: str) -> dict | None:
        """The record of a stage begun and not completed (its settings), or None."""
        return _marker(self.dir / f"{stage}.started.json")

    def start(self, stage: str, config: dict, made_from: Path | None = None, source: dict | None = None) -> bool:
        """Record the stage as begun with ``config`` from the file ``made_from`` (``source``: its file_record); an
        interrupted one resumed with the same config and input keeps its record (e.g. the evaluation tasks it
        finished). Resumed from another input (weights exported again by hand while the evaluation was
        interrupted), it begins again: its finished tasks were the old weights'. Returns whether it resumed."""
        record = self.started(stage)
        recorded_input = (record or {}).get("made_from")
        moved_on = (recorded_input is not None and made_from is not None and made_from.exists()
                    and not same_file(recorded_input, made_from))
        if moved_on:
            log.warning("[%s] %s changed since this stage began: begun again", stage, made_from)
        if record is None or record.get("config") != config or moved_on:
            atomic_write_json(self.dir / f"{stage}.started.json",
                              {"config": config, **({"made_from": source} if source is not None else {})})
            return False
        return True

    def _note(self, stage: str, **fields) -> None:
        """Add ``fields`` to a begun stage's record (what a resumed stage must know)."""
        atomic_write_json(self.dir / f"{stage}.started.json", {**(self.started(stage) or {}), **fields})

    def finish_part(self, stage: str, part: str, fingerprint: dict | None = None) -> None:
        """Note ``part`` of a begun stage as finished (an evaluation task), so a resumed stage reuses it, with the
        ``fingerprint`` of the data it read (see data_fingerprint), so one whose data changed since is not."""
        record = self.started(stage) or {}  # read once (parts_done, data and _note each read it)
        record["parts_done"] = sorted(set(record.get("parts_done", [])) | {part})
        if fingerprint is not None:
            data = record.get("data")
            record["data"] = {**(data if isinstance(data, dict) else {}), part: fingerprint}
        atomic_write_json(self.dir / f"{stage}.started.json", record)

    def data(self, stage: str) -> dict:
        """The fingerprints of the data the finished parts of a begun stage read (by part; see finish_part)."""
        data = (self.started(stage) or {}).get("data")
        return data if isinstance(data, dict) else {}

    def parts_done(self, stage: str) -> set[str]:
        return set((self.started(stage) or {}).get("parts_done", []))

    def note_outputs_cleared(self, stage: str) -> None:
        """Note that a begun stage removed what an earlier one (other weights) left, so resuming it keeps its own."""
        self._note(stage, outputs_cleared=True)

    def outputs_cleared(self, stage: str) -> bool:
        return bool((self.started(stage) or {}).get("outputs_cleared"))

    def clear(self, stage: str) -> None:
        """Forget ``stage``, complete or begun: its marker and its record."""
        for name in (f"{stage}.json", f"{stage}.started.json"):
            (self.dir / name).unlink(missing_ok=True)

    def reopen(self, stage: str, parts_done: list[str]) -> None:
        """Turn completed ``stage`` back into one begun with the same settings and input, ``parts_done`` finished
        and its outputs its own (an evaluation missing one task's numbers: the rest are kept, that one done).
        Its marker is a JSON object (what the caller read its parts from)."""
        done = self.done(stage)
        record = {"config": done.get("config"), "parts_done": sorted(parts_done), "outputs_cleared": True}
        for key in ("made_from", "data"):  # the data's fingerprints: of the parts kept, still what they read
            if key in done:
                record[key] = done[key]
        atomic_write_json(self.dir / f"{stage}.started.json", record)
        (self.dir / f"{stage}.json").unlink()

    def invalidate_after(self, stage: str) -> None:
        """Forget the stages after ``stage``: they were made from its previous output."""
        for later in STAGES[STAGES.index(stage) + 1:]:
            self.clear(later)

    def mark(self, stage: str, result: dict) -> None:
        atomic_write_json(self.dir / f"{stage}.json", result)
        (self.dir / f"{stage}.started.json").unlink(missing_ok=True)

    def spent_s(self, enabled: dict[str, bool]) -> float:
        """Seconds the completed stages that this run keeps took, so a rerun continues with what is left of the
        budget (the partial time of an interrupted stage is not recorded; its own state, e.g. the fitted training
        steps, bounds it). Kept: the stages up to the first switched-on one that is not complete, which runs and
        redoes those after it (their seconds are spent again); a switched-off stage runs nothing."""
        spent = 0.0
        for name in STAGES:
            done = self.done(name)
            if done is None and enabled.get(name, True):
                break
            spent += float((done or {}).get("seconds", 0.0))
        return spent


REDONE_WHEN_CHANGED = ("eval",)  # nothing is built on the evaluation: other settings simply evaluate again


def left_state(run: Path, stage: str) -> bool:
    """Whether a begun stage left work behind that a rerun would continue: finished videos (mining), a checkpoint
    (training)."""
    if stage == "mine":
        # videos that gave training pairs: a mining whose every video was skipped (and which then says to relax
        # mine.* thresholds) left nothing worth keeping, so the advised settings redo it; nor did one whose pairs
        # are all held-out tails' (mined after the training part: with these settings it can never complete)
        return any(_marker_has_pairs(marker) for marker in (run / "pairs" / "done").glob("*.json"))
    if stage == "train":
        return (run / "train" / "checkpoint.pt").is_file()
    return False  # export writes atomically at its end; the evaluation is redone anyway (REDONE_WHEN_CHANGED)


def _marker_has_pairs(marker: Path) -> bool:
    try:
        return bool(json.loads(marker.read_text(encoding="utf-8")).get("pairs"))
    except (OSError, ValueError, AttributeError):
        return True  # unreadable: kept, as a marker is (the settings check then refuses to reuse it)


def check_stage_settings(stages: Stages, configs: dict[str, dict[str, Any]], run: Path) -> list[str]:
    """A stage completed, or started and left work behind, with other settings than this command's is an error: its
    results, whole or partial, would be reused under a config.yaml that no longer describes them. Returns the stages
    to do again from scratch instead: the evaluation (see REDONE_WHEN_CHANGED), and a stage begun with other
    settings that left nothing (e.g. training that stopped on a config error before its first checkpoint)."""
    defaults = settings_of_older_records()
    redo, refused = [], []
    for stage in STAGES:
        done = stages.done(stage)
        record, how = (done, "completed") if done is not None else (stages.started(stage), "started")
        if record is None or "config" not in record:  # not run yet, or a marker from before settings were recorded
            continue
        # the keys this stage depends on now: one a later version added is compared with its default (an older
        # run did what the default does), and one recorded that no longer counts (a demo key on a --videos run,
        # a key since removed) is left out
        was = {**{k: v for k, v in defaults.items() if k in configs[stage]}, **record["config"]}
        now = configs[stage]
        changed = sorted(k for k in now if was.get(k) != now.get(k))
        if stage == "mine" and done is not None:
            changed = [k for k in changed if k != _FREE_ONCE_MINED]
        if stage == "train" and done is None:
            # an unfinished training is checked by the trainer against its checkpoint, with precision resolved
            # (auto picks by the hardware): its advice for a run moved to other hardware, --set
            # train.precision=<the checkpoint's>, must not be refused here. Nor a key a later version added: the
            # trainer lets the remaining steps run with it and says so (the steps so far did what that version did)
            changed = [k for k in changed if k != "train.precision" and k in record["config"]]
        if not changed:
            continue
        detail = ", ".join(f"{k}: {was.get(k)!r} -> {now.get(k)!r}" for k in changed[:5])
        if len(changed) > 5:
            detail += f", and {len(changed) - 5} more"
        if stage in REDONE_WHEN_CHANGED or (done is None and not left_state(run, stage)):
            redo.append((stage, f"[{stage}] {how} with other settings ({detail}): done again"))
            continue
        refused.append(f"its {stage} stage was {how} with other settings ({detail})")
    if refused:  # every stage at once: one per attempt cost a run each
        raise ConfigError(f"{run}: {'; '.join(refused)}; rerun with the same settings to reuse or continue what "
                          f"it did, or choose a new --out for these")
    for _, said in redo:  # only now: refused, the command redoes nothing
        log.info("%s", said)
    return [stage for stage, _ in redo]


def forget(run: Path, stages: Stages, stage: str) -> None:
    """Remove a stage's outputs, then its marker and record, to do it again from scratch (see
    check_stage_settings). In that order: killed part way, the marker is still there and the rerun forgets it
    again (markers first left outputs of other settings, which the new mining then refused as a mismatch)."""
    import shutil

    outputs = {"mine": ("pairs", "pairs_held_out"), "eval": ("eval",)}.get(stage, ())
    for folder in outputs:  # mining's hold no finished video here; evaluations are recomputed from the weights
        shutil.rmtree(run / folder, ignore_errors=True)
    stages.clear(stage)


def stage_switches(cfg: Config) -> dict[str, bool]:
    """Whether each stage runs (``pretrain.run_*``)."""
    p = cfg.pretrain
    return {"mine": p.run_mine, "train": p.run_train, "export": p.run_export, "eval": p.run_eval}


# the file each stage's result is made from, in RUN (see _run_stage)
MADE_FROM = {"train": "pairs/manifest.jsonl", "export": "train/checkpoint.pt", "eval": "backbone.pt"}
# the command that makes that file by hand, for a stage switched off (see _refuse_switched_off_inputs)
MADE_BY = {"train": "vidssl mine VIDEOS --out RUN/pairs", "export": "vidssl train RUN/pairs --out RUN/train",
           "eval": "vidssl export RUN/train --out RUN/backbone.pt"}


def _refuse_switched_off_inputs(cfg: Config, run: Path) -> None:
    """A stage switched off (``pretrain.run_*: false``) whose result the next, switched-on stage reads, and which
    RUN does not hold, unless that stage is complete: refused before any work. The next stage failed on it after
    the demo clips or minutes of the stages before, saying to run a stage command, not that the switch was off."""
    switches, stages = stage_switches(cfg), Stages(run)
    order = list(switches)
    for before, after in zip(order, order[1:]):
        if switches[before] or not switches[after]:
            continue
        needed = run / MADE_FROM[after]
        # a completed stage is skipped, its input not read: a finished run whose pairs or checkpoint were deleted
        # to free the disk reruns with the stages before it switched off
        if not needed.is_file() and stages.done(after) is None:
            raise ConfigError(f"pretrain.run_{before} is false and {needed} does not exist, which the {after} stage "
                              f"reads: set pretrain.run_{before}=true, or make it first "
                              f"({MADE_BY[after].replace('RUN', shell_arg(run))})")


def _input_changed(stages: Stages, name: str, made_from: Path) -> bool:
    """Whether completed stage ``name`` was made from another file than ``made_from`` is now (a missing file, moved
    away, is no change)."""
    recorded = (stages.done(name) or {}).get("made_from")
    # a copied run folder (cp -r, scp, an archive) has new times: its content sample decides
    return recorded is not None and made_from.exists() and not same_file(recorded, made_from)


def forget_changed_inputs(run: Path, stages: Stages, enabled: dict[str, bool], eval_data: Path | None = None) -> None:
    """Forget the completed stages whose input file changed or whose exported weights are gone (and the stages after
    them), as _run_stage would when it reaches them, and reopen an evaluation whose metrics.json files are not all
    there or whose evaluation sets in ``eval_data`` changed (see eval_data_changes): done first, so that the budget
    does not count their recorded time as spent. A stage switched off (``enabled``: pretrain.run_*) is left as it
    is, as _run_stage leaves it."""
    for name, relative in MADE_FROM.items():
        if enabled[name] and _input_changed(stages, name, run / relative):
            log.warning("[%s] %s changed since this stage completed: done again", name, run / relative)
            stages.clear(name)
            stages.invalidate_after(name)
    if enabled["export"] and stages.done("export") is not None:
        _forget_a_lost_export(run, stages)
    from vidssl.report import missing_metrics

    if not enabled["eval"] or stages.done("eval") is None:
        return
    gone = missing_metrics(run)
    if gone:  # deleted by hand: its numbers are nowhere else; the other tasks' are kept
        log.warning("[eval] %s gone since the evaluation completed: that task is done again",
                    ", ".join(map(str, gone)))
    changed = eval_data_changes(run, stages.done("eval"), eval_data)
    if gone or changed:
        kept = [task for task in stages.done("eval").get("tasks", [])
                if isinstance(task, str) and run / "eval" / task / "metrics.json" not in gone and task not in changed]
        stages.reopen("eval", kept)


def _forget_a_lost_export(run: Path, stages: Stages) -> None:
    """A completed export whose weights were deleted since: exported again from the training's checkpoint, and
    evaluated again (every stage said "already complete" and the summary and report named a file not there); with
    the checkpoint gone too, an error naming both."""
    weights = run / "backbone.pt"
    files = [weights] + ([weights.with_suffix(".safetensors")]
                         if (stages.done("export").get("config") or {}).get("export.safetensors") is True else [])
    gone = [path for path in files if not path.is_file()]
    if not gone:
        return
    checkpoint = run / MADE_FROM["export"]
    if not checkpoint.is_file():
        raise VidsslError(f"{' and '.join(map(str, gone))} and {checkpoint}, the training checkpoint they were "
                          f"exported from, are gone: this run's weights can no longer be made; rerun into a new --out, "
                          f"or, with that checkpoint elsewhere, `vidssl export THAT_TRAIN_FOLDER --out {shell_arg(weights)}`")
    log.warning("[export] %s gone since this stage completed: exported again from %s, and evaluated again",
                " and ".join(map(str, gone)), checkpoint)
    stages.clear("export")
    stages.invalidate_after("export")


def eval_data_changes(run: Path, marker: dict, eval_data: Path | None) -> list[str]:
    """The evaluation sets (their RUN/eval folders) in ``eval_data`` that completed evaluation ``marker`` did not
    evaluate (new) or whose files changed since (see data_fingerprint), each said; a set it evaluated that is gone is
    warned of, its results kept. [] for a marker of an earlier version, which recorded no fingerprints (nothing
    to compare: unchanged), and where the folder is gone (eval_data_by_default says so)."""
    recorded = marker.get("data")
    if not isinstance(recorded, dict) or eval_data is None or not Path(eval_data).is_dir():
        return []
    now = eval_data_fingerprints(Path(eval_data))
    changed = []
    for folder, fingerprint in now.items():
        was = recorded.get(folder)
        if not isinstance(was, dict):
            log.info("[eval] new evaluation set %s: evaluated", fingerprint["path"])
        elif changed_since(was, fingerprint):
            log.info("[eval] %s: its files changed since it was evaluated: evaluated again", fingerprint["path"])
        else:
            continue
        changed.append(folder)
    for folder in sorted(set(recorded) - set(now)):
        was = recorded[folder] if isinstance(recorded[folder], dict) else {}
        log.warning("[eval] %s, evaluated by this run, is gone from %s: its results in %s are kept",
                    was.get("path", folder), eval_data, run / "eval" / folder)
    return changed


def _run_stage(stages: Stages, name: str, enabled: bool, fn: Callable[[], dict],
               config: dict[str, Any], made_from: Path | None = None,
               on_start: Callable[[], None] | None = None) -> dict | None:
    """Run stage ``name`` unless complete. ``made_from``: the file its result was made from (the pairs a training
    read, the checkpoint an export cut, the weights an evaluation read): changed since (pairs mined again into
    RUN/pairs, training continued with `vidssl train`, weights exported again by hand), the stage is done again,
    and the stages after it (a training whose checkpoint holds other pairs then says so: a new --out)."""
    if not enabled:
        log.info("[%s] disabled in config (pretrain.run_%s: false)", name, name)
        return None
    previous = stages.done(name)
    if previous is not None and made_from is not None and _input_changed(stages, name, made_from):
        log.warning("[%s] %s changed since this stage completed: done again", name, made_from)
        stages.clear(name)
        previous = None
    if previous is not None:
        log.info("[%s] already complete, skipped", name)
        previous.pop("config", None)
        return previous
    if on_start is not None:
        on_start()
    run = stages.dir.parent
    for stale in ("summary.json", "report.html"):  # the run as it was: killed now, they stood beside a config.yaml
        (run / stale).unlink(missing_ok=True)  # of other settings; the report stage makes them anew
    start = time.monotonic()
    stages.invalidate_after(name)
    # the input as the stage found it: one changed while it ran (weights exported again by hand during the
    # evaluation) is a change the next rerun sees
    source = file_record(made_from) if made_from is not None else None
    resumed = stages.start(name, config, made_from, source)  # same settings and input: it goes on
    # "resumed" only with work to go on from: a training killed before its first checkpoint starts at step 0, an
    # export always starts over (it writes at its end), a mining goes on from any finished video, an evaluation
    # from a finished task or a flow decoder's checkpoint (killed before either, it was said to resume)
    if name == "mine":
        kept = resumed and any((run / "pairs" / "done").glob("*.json"))
    elif name == "eval":
        kept = resumed and bool((stages.started("eval") or {}).get("parts_done")
                                or any((run / "eval").glob("*/transfer/*.pt")))
    else:
        kept = resumed and name == "train" and left_state(run, "train")
    log.info("[%s] ...%s", name, " (resumed: an earlier run began it)" if kept else
             " (begun by an earlier run, which left nothing to go on from)" if resumed else "")
    result = {**fn(), "seconds": round(time.monotonic() - start, 1)}
    if made_from is not None and "made_from" not in result:
        result["made_from"] = source if source is not None else file_record(made_from)
    stages.mark(name, {**result, "config": config})
    return result


def _trained_name_kept(run: Path, finished: list[str]) -> str | None:
    """The row name the ``finished`` tasks table the trained backbone under, for the tasks evaluated now; None where
    they name none (or several). In a run folder copied or renamed with its evaluation unfinished it is not the name
    RUN/backbone.pt has now (``<folder>/backbone``), and the report and `vidssl compare` read one name per run (the
    copy's new tasks had ``T1/backbone`` beside the finished ones' ``CB/backbone``, which then read as a
    baseline)."""
    from vidssl.report import read_metrics, tabled_weights

    earlier = {}
    for task in finished:
        with contextlib.suppress(OSError, ValueError):
            earlier[task] = read_metrics(run / "eval" / task / "metrics.json", rows=True)
    tabled = tabled_weights(earlier)
    return tabled.pop() if len(tabled) == 1 else None


def _clear_unfinished(out: Path) -> None:
    """Before a task is evaluated: empty its ``RUN/eval/<task>`` where it holds no results (a killed evaluation's
    figures, overlays of a sequence since removed from the data, stood beside the new ones, shown by the report), and
    remove its half-written temp files in any case (they stayed for good). The flow decoders' checkpoints
    (``transfer/``) stay, to resume from; only their temp files go (the run's lock is held: no live writer's)."""
    import shutil

    if not out.is_dir() or out.is_symlink():  # a linked folder is someone else's
        return
    remove_temp_leftovers(out / "transfer")
    if (out / "metrics.json").is_file():
        # results (evaluated again as its data changed): they stand until the new evaluation replaces them
        # (retire_results, at its first file), so that one failing on the changed data loses nothing
        remove_temp_leftovers(out)
        return
    for entry in out.iterdir():
        if entry.name == "transfer" and entry.is_dir() and not entry.is_symlink():
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _writing_failed(error: OSError, run: Path) -> bool:
    """Whether ``error`` came from writing the evaluation's outputs (a full disk, a read-only or unwritable
    RUN/eval) rather than from reading its data (which may lie in RUN too: the held-out pairs)."""
    import errno

    if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
        return True
    return (error.filename is not None
            and Path(os.fsdecode(error.filename)).resolve().is_relative_to((run / "eval").resolve()))


def nothing_evaluated(run: Path, cfg: Config, demo: bool = False) -> str:
    """The warning for a run with nothing to evaluate, its advice by why the held-out mining gave no pair (read from
    RUN/pairs_held_out/dataset.json): a larger budget does not lengthen a tail too short to hold a track. ``demo``:
    the run mined the demo clips (its held-out clips are clips of their own, not tails)."""
    p = cfg.pretrain
    videos = json_object(run / "pairs_held_out" / "dataset.json").get("videos")
    videos = videos if isinstance(videos, dict) else {}
    skipped = videos.get("skipped") if isinstance(videos.get("skipped"), dict) else {}
    if p.held_out_tail == 0 and not demo:
        why, fix = "pretrain.held_out_tail is 0", ", or a pretrain.held_out_tail above 0"
    elif videos.get("pending"):
        why, fix = "tails not mined within the budget", ", or a larger --budget-minutes"
    elif set(skipped) == {"too_short"} and not demo:
        split, end = held_out_part(cfg)
        frames = _frames_holding_a_tail_track(split, end, cfg.mine.track_length)
        why = (f"every tail was too short to hold a track: one needs mine.track_length + 1 = "
               f"{cfg.mine.track_length + 1} frames")
        fix = (f", videos of at least {frames} frames (the last {p.held_out_tail:.0%} is held out), or a larger "
               f"pretrain.held_out_tail")
    else:
        shown = ", ".join(f"{len(v) if isinstance(v, list) else v} {k}" for k, v in skipped.items()) or "none skipped"
        # the reasons are in the file: a rerun (or the held-out pass, which repeats no skip of the whole file that
        # the training part's said) printed no skip line to point "above" at
        why = f"the tails' mining gave none: {shown}; each one's reason in {run / 'pairs_held_out' / 'dataset.json'}"
        fix = ", or longer videos with moving objects"
    return NOTHING_EVALUATED.format(why=why, fix=fix)


# skip reasons about the file, whatever part of it is mined (not too_short, no_motion, ...: its frames in one part)
WHOLE_FILE_REASONS = ("empty", "not_a_video", "unreadable", "duplicate", "too_small", "corrupt", "error")


def said_of_the_whole_file(training: dict) -> Callable[[dict], bool]:
    """Whether a held-out tail's skip (a mine_folder result: video, reason, detail) repeats what the training
    part's mining (``training``: its summary) recorded of the same video: a reason of the whole file with the same
    detail (a zero-byte file, a duplicate). Every bad file was reported twice, once per part; a skip that depends on
    the part (too_short, no_motion; corrupt past the damage: "too few frames left") differs, and is still told."""
    videos = training.get("videos") if isinstance(training.get("videos"), dict) else {}
    details = videos.get("skipped_detail") or {}
    reasons = {name: reason for reason, names in (videos.get("skipped") or {}).items() for name in names}

    def said(result: dict) -> bool:
        name = result["video"]
        return (result["reason"] in WHOLE_FILE_REASONS and reasons.get(name) == result["reason"]
                and details.get(name) == result["detail"])

    return said


def held_out_part(cfg: Config) -> tuple[float, float]:
    """The part of every video a --videos run holds out, as fractions of its length: the last
    pretrain.held_out_tail of mine.time_range (its start is where the trained part ends)."""
    first, end = cfg.mine.time_range
    return round(first + (end - first) * (1.0 - cfg.pretrain.held_out_tail), 6), end


def _frames_holding_a_tail_track(split: float, end: float, track_length: int) -> int:
    """The fewest frames of a video whose part [split, end) (fractions, rounded to frames as mining rounds them)
    holds a track: track_length + 1 frames, the frame before lending the first start its motion."""
    from tracking import MineConfig
    from tracking.video_miner import frame_range

    mined = dataclasses.replace(MineConfig(), time_range=[split, end])
    n = track_length + 1
    while frame_range(n, mined)[1] - frame_range(n, mined)[0] < track_length + 1:
        n += 1
    return n


def _log_warnings(warnings: list[str]) -> None:
    for text in warnings:  # logged last, so they come before the command's last lines
        log.warning("warning: %s", text)


FEW_STEPS = 100  # fewer training steps than this: the weights have hardly moved from their random init


def latest_training(run: Path, recorded: dict | None) -> dict | None:
    """The train stage's figures (``recorded``: its marker, or what it just returned) with those of
    ``RUN/train/stats.json`` on top: a training continued by hand (`vidssl train` into RUN/train, which makes the
    export and evaluation run again) wrote its own there, and the marker's kept warning of its first 30 steps."""
    if recorded is None:
        return None
    stats = json_object(run / "train" / "stats.json")
    return {**recorded, **{k: v for k, v in stats.items() if isinstance(v, (int, float, str))}}


def run_warnings(run: Path, videos: Path | None, train_stats: dict | None) -> list[str]:
    """What a finished pretrain run did not do that its user would assume it did: videos not mined, videos added
    to the folder since, training cut short by the budget (more than 1% of its steps, and at least 3, short: a
    refit that ends a step or two early has run its schedule). Read from the run folder, so a rerun repeats them."""
    out = []
    for folder, what in (("pairs", "training"), ("pairs_held_out", "held-out")):
        ds = json_object(run / folder / "dataset.json")  # damaged: the report names it; no warning from it here
        videos_of = ds.get("videos") if isinstance(ds.get("videos"), dict) else {}
        if ds and not ds.get("complete", True) and {"pending", "found"} <= set(videos_of):
            pending, found = videos_of["pending"], videos_of["found"]
            cut = len(videos_of["cut_short"]) if isinstance(videos_of.get("cut_short"), dict) else 0
            not_started = pending - cut
            if cut:  # pending, yet mined up to the cut: their pairs until then are in
                state = (f"{cut} of {found} video(s) cut short, with the pairs mined before the cut"
                         + (f", and {not_started} not mined" if not_started else ""))
            else:
                state = f"{pending} of {found} videos not mined"
            if what == "training":
                effect = ("this run trained without them" if not cut else "this run trained without those not mined"
                          if not_started else "this run trained on what was mined before the cut")
            else:
                effect = ("instance retrieval across time is not evaluated" if pending == found and not cut
                          else "instance retrieval across time covers only what was mined")
            out.append(f"{what} mining stopped at its share of the budget with {state}: {effect}. Rerunning into "
                       f"{run} keeps its finished stages; to use every video, run into a new --out with a larger "
                       f"--budget-minutes (or pretrain.mine_fraction)")
    listing = run / "pairs" / "videos.json"
    if videos is not None and videos.exists() and listing.is_file():
        from vidssl.video import find_videos

        base = videos if videos.is_dir() else videos.parent  # as mine_folder lists them
        entries = json_object(listing).get("videos")
        whole = isinstance(entries, list) and all(isinstance(v, dict) and "video" in v for v in entries)
        mined = {v["video"] for v in entries} if whole else set()
        # quiet: a link's "the same file as" was said when the folder was mined, not again by each rerun
        added = [rel for rel in (p.relative_to(base).as_posix() for p in find_videos(videos, quiet=True))
                 if rel not in mined] if whole else []
        added = _not_copies(base, added, entries if whole else [])
        if added:
            out.append(f"{len(added)} video(s) in {videos} are not in this run, added after it was mined (e.g. "
                       f"{added[0]}); a new --out includes them")
        changed, gone = _videos_since_mined(run / "pairs", base, entries if whole else [])
        if changed:
            out.append(f"{len(changed)} video(s) in {videos} are not the files this run mined (e.g. {changed[0]}: "
                       f"changed since it was mined); a new --out includes them as they are now")
        if gone:
            out.append(f"{len(gone)} video(s) this run mined are no longer in {videos} (e.g. {gone[0]}: gone since it "
                       f"was mined); a new --out mines the folder as it is now")
    few = (": too few for the weights to have learned much (the default 9-minute budget fits 120-800 on 2 CPU "
           "cores, by the CPU)")
    cut = train_stats and train_stats.get("stopped") == "budget" and train_stats["step"] < train_stats["total_steps"]
    if cut and train_stats["step"] >= FEW_STEPS:  # a refit a few steps short (349 of 352) is a finished schedule
        cut = train_stats["total_steps"] - train_stats["step"] > max(3, train_stats["total_steps"] // 100)
    if cut:
        step, total = train_stats["step"], train_stats["total_steps"]
        why = few if step < FEW_STEPS else ", before the learning rate had annealed"
        out.append(f"training stopped at the budget after {step} of its {total} steps{why}; for a trained backbone, "
                   f"run into a new --out with a larger --budget-minutes")
    elif train_stats and train_stats.get("step", FEW_STEPS) < FEW_STEPS:
        # a budget fitted to a short schedule (train.fit_budget) ends it annealed, but no better trained
        out.append(f"training ran {train_stats['step']} steps{few}; for a trained backbone, run into a new --out "
                   f"with a larger --budget-minutes (or more train.steps)")
    return out


def _not_copies(base: Path, added: list[str], entries: list[dict]) -> list[str]:
    """Of the videos ``added`` to the folder ``base`` since it was mined, those that are not byte-identical copies
    of a listed one (``entries``: videos.json's), which a new --out skips as duplicate (they add no video): told
    apart as the duplicate check's first steps do, by size (the listing's ``bytes``) and then the content sample of
    both files (first and last MiB), read only where the sizes agree."""
    from vidssl.io import content_sample

    by_size: dict[int, list[str]] = {}
    for entry in entries:
        if isinstance(entry.get("bytes"), int) and entry["bytes"] > 0 and isinstance(entry["video"], str):
            by_size.setdefault(entry["bytes"], []).append(entry["video"])
    samples: dict[str, str | None] = {}  # a listed video's sample, read once

    def sample_of(name: str) -> str | None:
        if name not in samples:
            samples[name] = content_sample(base / name)
        return samples[name]

    kept = []
    for rel in added:
        try:
            size = (base / rel).stat().st_size
        except OSError:
            size = 0
        twins = by_size.get(size, []) if size > 0 else []
        sample = content_sample(base / rel) if twins else None
        if sample is None or not any(sample_of(name) == sample for name in twins):
            kept.append(rel)
    return kept


def _videos_since_mined(pairs: Path, base: Path, entries: list[dict]) -> tuple[list[str], list[str]]:
    """(changed, gone): the videos of the pair dataset ``pairs`` (``entries``: its videos.json's) that mining
    finished (a done-marker whose shards are whole) and whose file under ``base`` is another one now (also a skipped
    one: mined anew, it may give pairs), or, for one mined into pairs, is gone. Compared as `vidssl mine` does
    (tracking.dataset.done_marker: size and time, else a content sample), which would mine the changed ones again;
    a pretrain rerun whose mining is complete mines nothing."""
    from tracking.dataset import done_marker, source_state, video_id

    changed, gone = [], []
    for entry in entries:
        name = entry["video"]
        if not isinstance(name, str):
            continue
        vid = entry.get("video_id") if isinstance(entry.get("video_id"), str) else video_id(name)
        source = source_state(base / name)
        marker = done_marker(pairs, vid, source, base / name)  # no source (the file gone): the marker as it is
        if marker is not None:
            if source is None and marker.get("status") == "mined":
                gone.append(name)
        elif source is not None and done_marker(pairs, vid) is not None:  # finished, with another file: read
            # again only then (a marker holds every pair's boxes: one read per video on a rerun)
            changed.append(name)
    return changed, gone


def evaluation_warnings(run: Path, tasks: set[str] | None = None) -> list[str]:
    """One warning per finished evaluation in ``RUN/eval`` (of ``tasks`` only, where given) that cannot tell the
    models apart (e.g. held-out tails holding a single track, where every model scores 1): a headline without it
    reads as if it had been measured."""
    from vidssl.report import uninformative_tasks

    tails = "videos whose held-out tails (pretrain.held_out_tail) hold more tracks, several in one video"
    # "give --eval-data" only to a run that had none: one that evaluated CUB, DAVIS or Sintel was given it, and so
    # was one whose evaluation recorded the folder, though every task of it failed
    had_data = bool(_recorded_eval_data(Stages(run))) or any(path.parent.name != HELD_OUT_TASK
                                                             for path in (run / "eval").glob("*/metrics.json"))
    fixes = {HELD_OUT_TASK: f"use {tails}" if had_data
             else f"give --eval-data (CUB, DAVIS, Sintel folders), or {tails}"}
    # a task of --eval-data: its folder is what cannot tell them apart (blackswan holds one object)
    other = "evaluate on data with more labels (for DAVIS instance retrieval: more sequences or objects)"
    return [f"{task} says nothing about the weights ({why}); {fixes.get(task, other)}"
            for task, why in uninformative_tasks(run) if tasks is None or task in tasks]


def _recorded_eval_data(stages: Stages) -> str | None:
    """The ``--eval-data`` folder the run's eval stage (completed, else begun) recorded; None without one."""
    record = stages.done("eval") or stages.started("eval") or {}
    return (record.get("config") or {}).get("--eval-data") or None


def eval_data_by_default(run: Path) -> Path | None:
    """The evaluation data of a pretrain without --eval-data: ``$VIDSSL_DATA``; where it is not set, what the run's
    eval stage (completed or begun) recorded, while that folder exists. The same command rerun in a shell without
    the variable took "no data" for a change and deleted the finished evaluations. A recorded folder that is gone
    (an unmounted disk) keeps a finished evaluation as it is, rather than deleting it as made with other settings."""
    env = default_eval_root()
    if env is not None:
        return env
    stages = Stages(run)
    path = _recorded_eval_data(stages)
    if not path:
        return None
    if Path(path).is_dir():
        log.info("--eval-data not given and $VIDSSL_DATA not set: evaluating %s, as this run did", path)
        return Path(path)
    if stages.done("eval") is not None:
        log.warning("%s, the evaluation data this run evaluated, is gone: its finished evaluations are kept (pass "
                    "--eval-data, or set $VIDSSL_DATA, to evaluate on other data)", path)
        return Path(path)
    log.warning("%s, the evaluation data this run began to evaluate, is gone: evaluating without it (pass "
                "--eval-data, or set $VIDSSL_DATA, for other data)", path)
    return None


def default_eval_root() -> Path | None:
    """``$VIDSSL_DATA`` (None where unset or empty). Set to a missing folder, it is an error: taken for "no data",
    a rerun deleted its run's finished evaluations as made with other settings."""
    env = os.environ.get("VIDSSL_DATA")
    if not env:
        return None
    if not Path(env).is_dir():
        raise VidsslError(f"$VIDSSL_DATA={env}: no such folder; point it at the evaluation data (retrieval/, "
                          f"davis/, flow/), or unset it to evaluate on held-out tracks only")
    if not discover_eval_sets(Path(env), None):
        log.warning("$VIDSSL_DATA=%s holds no evaluation data (retrieval/<set>/, davis/, flow/): evaluating on "
                    "held-out tracks only", env)
    return Path(env)


def demo_mining(cfg: Config):
    """The mine section the demo clips are mined with: demo.mine_box_fraction (their objects' size) as the box size.
    The run's config.yaml keeps the user's mine.box_fraction, which a --videos run given that file reads."""
    return dataclasses.replace(cfg.mine, box_fraction=cfg.demo.mine_box_fraction)


def _check_demo_mining(cfg: Config) -> None:
    """The demo's mining settings, before any clip is written: demo.mine_box_fraction stands in for mine.box_fraction,
    whose checks ran on the real-video value, and a box under mine.min_box_px on the demo frames would skip every
    clip (too_small) after minutes of work."""
    from tracking import MineConfig
    from vidssl.config import check_section
    from vidssl.video import resized_shape

    d, m = cfg.demo, demo_mining(cfg)
    least = m.track_length + 2
    if cfg.pretrain.run_mine and d.frames < least:
        # demo-videos alone may write shorter clips; mined, they would give no pair and fail only after minutes
        raise ConfigError(f"config key 'demo.frames': the demo clips are mined, which needs >= mine.track_length + 2 "
                          f"= {least} frames, got {d.frames}")
    try:
        check_section(m, "mine", MineConfig)
    except ConfigError as e:
        raise ConfigError(f"demo.mine_box_fraction={d.mine_box_fraction} (the demo's mine.box_fraction): "
                          f"{e}") from None
    short = min(resized_shape(d.height, d.width, m.working_side))
    if not m.box_fits(short):  # m.box_fraction is the demo's here
        raise ConfigError(f"the demo's boxes would be {d.mine_box_fraction} x {short} px = "
                          f"{d.mine_box_fraction * short:.0f} px, under mine.min_box_px={m.min_box_px}, and every "
                          f"demo clip would be skipped: raise demo.width/demo.height or demo.mine_box_fraction, or "
                          f"lower mine.min_box_px")


def pretrain(cfg: Config, run_dir: str | Path, videos: str | Path | None = None, eval_data: str | Path | None = None,
             budget_minutes: float | None = None, progress: bool = True) -> dict[str, Any]:
    """Run every stage into ``run_dir``; returns the summary (also in ``RUN/summary.json``). Settings are checked
    against the stages done before (see check_stage_settings) before anything in the run folder changes."""
    # what the checks say before RUN may be written to, kept for RUN/pretrain.log once it may (without a target
    # it never flushes, whatever its size)
    from vidssl.lifeline import refuse_reimport

    refuse_reimport("vidssl.pipeline.pretrain")  # mining's spawned workers and the loaders' would run it again
    held = logging.handlers.MemoryHandler(capacity=1000, flushLevel=logging.CRITICAL + 1)
    for name in LOGGERS:
        logging.getLogger(name).addHandler(held)
    try:
        return _checked_pretrain(cfg, run_dir, videos, eval_data, budget_minutes, progress, held)
    finally:
        for name in LOGGERS:
            logging.getLogger(name).removeHandler(held)


def _checked_pretrain(cfg: Config, run_dir: str | Path, videos, eval_data, budget_minutes: float | None,
                      progress: bool, held: logging.handlers.MemoryHandler) -> dict[str, Any]:
    # absolute: the paths the stages record (stats.json's checkpoint, the export marker's weights, into
    # summary.json's stages) hold from any folder, as summary.json's own do
    run = Path(run_dir).absolute()
    if budget_minutes is not None:
        cfg = dataclasses.replace(cfg, pretrain=dataclasses.replace(cfg.pretrain, budget_minutes=budget_minutes))
    from vidssl.device import world_size

    if world_size() > 1:
        # every rank would run every stage into RUN: the second met the first's lock, "in use by another command"
        raise VidsslError("vidssl pretrain runs as one process, not under torchrun; to scale, mine with `vidssl "
                          "mine VIDEOS --out PAIRS --shard I/N` and train with `torchrun ... -m vidssl train PAIRS "
                          "--out RUN` (README: Scaling up), then `vidssl export` and `vidssl eval`")
    p = cfg.pretrain
    # set, and silently not read (one of NOT_READ_BY_PRETRAIN)
    unread = ("training gets pretrain.train_fraction of what mining leaves of pretrain.budget_minutes "
              "(--budget-minutes)")
    if cfg.train.budget_minutes is None:  # a config written for `vidssl train` to run its steps (paper_alexnet.yaml)
        log.info("train.budget_minutes: null (train.steps, whatever the time) is for vidssl train; under vidssl "
                 "pretrain %s", unread)
    elif cfg.train.budget_minutes != type(cfg.train)().budget_minutes:
        log.warning("train.budget_minutes=%s is not read by vidssl pretrain: %s", cfg.train.budget_minutes, unread)
    if not (math.isfinite(p.budget_minutes) and p.budget_minutes > 0):  # --budget-minutes skips the config loader
        raise ConfigError(f"the budget must be a positive number of minutes (--budget-minutes or "
                          f"pretrain.budget_minutes), got {p.budget_minutes!r}")
    # devices before minutes of mining and training: a GPU that is not there fails now, naming its key
    from vidssl.device import check_precision, resolve_device

    if p.run_train:
        check_precision(cfg.train.precision, resolve_device(cfg.train.device, "train.device"))
    if p.run_eval:
        for section in ("retrieval", "davis", "flow"):
            resolve_device(getattr(cfg.eval, section).device, f"eval.{section}.device")
        smallest = min_embed_side(cfg.model.arch)  # the model evaluated is the config's (any arch, for eval alone)
        if cfg.eval.retrieval.image_size < smallest:
            raise ConfigError(f"config key 'eval.retrieval.image_size': {cfg.model.arch} takes inputs of at least "
                              f"{smallest} pixels, got {cfg.eval.retrieval.image_size}")
    demo = videos is None
    _refuse_switched_off_inputs(cfg, run)
    if demo:
        # the default, or the demo's own value, which an earlier version's demo runs recorded in their config.yaml
        # (--config RUN/config.yaml)
        if cfg.mine.box_fraction not in (type(cfg.mine)().box_fraction, cfg.demo.mine_box_fraction):
            raise ConfigError(f"mine.box_fraction={cfg.mine.box_fraction} has no effect on the demo videos: they are "
                              f"mined with demo.mine_box_fraction ({cfg.demo.mine_box_fraction}, their objects' size); "
                              f"set that key instead")
        _check_demo_mining(cfg)
    from vidssl.video import VIDEO_EXTENSIONS, check_named_video, find_videos, refuse_out_among_videos

    # before RUN is made (a missing path: find_videos says so); a rerun whose mining is done needs no videos
    if not demo:
        refuse_out_among_videos(run, videos, "the run (pairs, checkpoints, weights, report)")
    if not demo and p.run_mine and Stages(run).done("mine") is None:
        if Path(videos).exists() and not Path(videos).is_dir():  # one file: what it is, now (a text file was
            # found out after RUN was made; a FIFO is no folder either)
            check_named_video(videos, cfg.video.backend)
        elif not find_videos(Path(videos)):
            raise VidsslError(f"--videos {videos}: no video file in it (looked for {' '.join(VIDEO_EXTENSIONS)}, "
                              "recursively)")
    if eval_data is not None:  # a user-given folder: checked now, not after mining and training
        given = Path(eval_data)
        if not given.is_dir():
            raise VidsslError(f"--eval-data {given}: no such folder")
        if not discover_eval_sets(given, None):
            raise VidsslError(f"--eval-data {given}: no evaluation data found; expected retrieval/<set>/ (image "
                              f"folders or labels.csv), davis/ (or JPEGImages/ and Annotations/), flow/ (or a "
                              f"folder of flow pairs), or labels.csv")
    elif stage_switches(cfg)["eval"]:  # a run that evaluates nothing has no use for $VIDSSL_DATA, nor its check
        eval_data = eval_data_by_default(run)
    if cfg.eval.flow.pairs and eval_data is not None and stage_switches(cfg)["eval"]:
        # a pattern that matches no pair: refused now, not after training, when fixing it would redo every evaluation
        from vidssl.eval.flow.data import find_pairs, select_pairs

        for es in discover_eval_sets(Path(eval_data), None):
            if es.task == "flow":
                select_pairs(find_pairs(es.path), cfg.eval.flow.pairs, es.path)
    configs = stage_configs(cfg, {"mine": {"--videos": None if demo else str(Path(videos).resolve())},
                                  "eval": {"--eval-data": str(Path(eval_data).resolve()) if eval_data else None}},
                            demo)
    stages = Stages(run)
    with run_lock(run):
        # under the lock (another command finishing stages meanwhile would be reused unchecked), before anything in
        # RUN is rewritten
        redo = check_stage_settings(stages, configs, run)
        # a stage switched off (pretrain.run_*: false) is not run again, so its results are kept, not forgotten
        redo = [stage for stage in redo if stage_switches(cfg)[stage]]
        for stage in redo:
            forget(run, stages, stage)
        with _logged_to(run / LOG, held):
            return _pretrain(cfg, run, stages, configs, videos, demo, eval_data, progress)


LOG = "pretrain.log"  # RUN/pretrain.log: the messages of every pretrain session into RUN, appended
LOGGERS = ("vidssl", "tracking")  # the packages whose messages it keeps


@contextlib.contextmanager
def _logged_to(path: Path, held: logging.handlers.MemoryHandler):
    """Also append vidssl's and tracking's log messages (at the level the command line set) to ``path``: under a
    line with the session's start, those ``held`` kept from before (the checks made before RUN's lock, e.g. the
    videos passed over), then the session's, and what stopped it if it failed. The console scrolls away, the run
    folder keeps what each stage said (the budget fits, the skipped videos, the stage times)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # not through a link: a run folder from elsewhere whose log links to ~/.bashrc had lines appended there
    fd = open_own_file(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, "its log")
    handler = logging.StreamHandler(os.fdopen(fd, "a", encoding="utf-8"))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"))
    loggers = [logging.getLogger(name) for name in LOGGERS]
    handler.stream.write(f"=== vidssl pretrain, {time.strftime('%Y-%m-%d %H:%M:%S')}, pid {os.getpid()}\n")
    for logger in loggers:
        logger.removeHandler(held)
        logger.addHandler(handler)
    held.setTarget(handler)
    held.flush()
    try:
        yield
    except BaseException as e:  # the error the command line prints, kept beside the messages that led to it
        said = "Ctrl-C or SIGTERM" if isinstance(e, KeyboardInterrupt) else one_line(e)  # the CLI's stop is one
        handler.stream.write(f"=== stopped: {type(e).__name__}: {said}\n")
        raise
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
        handler.close()
        handler.stream.close()  # a StreamHandler leaves its stream open


def _pretrain(cfg: Config, run: Path, stages: Stages, configs: dict, videos, demo: bool, eval_data,
              progress: bool) -> dict[str, Any]:
    import tracking
    from vidssl.demo import make_demo_videos, make_held_out_demo_videos
    from vidssl.eval import weights_row_name
    from vidssl.eval.baselines import feature_models
    from vidssl.export import ExportPathError, ModelFileError, export_backbone
    from vidssl.report import EVAL_FAILURES, WARNINGS, build_report, read_metrics
    from vidssl.train import outcome_line, train

    p = cfg.pretrain
    run.mkdir(parents=True, exist_ok=True)
    # the exported weights (a ResNet-50's are 100 MB), the report, summary.json: a killed writer's temp file (RUN's
    # lock is held, so no live writer's)
    remove_temp_leftovers(run)
    remove_temp_leftovers(run / "stages")  # a marker half written
    # RUN/config.yaml describes what made the run's results: written when a stage runs (and for a new run), not on a
    # rerun that only finds its stages complete (its budget, threads or code version would replace the ones that
    # made the weights)
    resolved: list[bool] = []

    def record_config() -> None:
        if not resolved:
            write_resolved(cfg, run)
            resolved.append(True)

    if not (run / "config.yaml").is_file():
        record_config()
    # before the budget is counted: their recorded time is spent again
    forget_changed_inputs(run, stages, stage_switches(cfg), Path(eval_data) if eval_data else None)
    spent = stages.spent_s(stage_switches(cfg))
    if spent:
        # not "X of the budget": evaluations the budget does not bound (DAVIS) can take more than it
        log.info("%.1f minutes went to stages completed earlier (budget: %.1f minutes)", spent / 60, p.budget_minutes)
    deadline = time.monotonic() + 60 * p.budget_minutes - spent
    held_out_videos: Path | None = None
    train_mine, held_out_mine = cfg.mine, cfg.mine
    if demo:
        d = cfg.demo
        videos = run / "demo_videos"
        held_out_videos = run / "demo_videos_held_out"
        for folder in (videos, held_out_videos):  # a clip being written when a run was killed (RUN's lock is held)
            remove_temp_leftovers(folder)
        # the run's own folders: a clip file without a record there is a leftover of the run's, not the user's
        make_demo_videos(videos, d.num, d.seed, d.frames, d.width, d.height, d.fps, owned=True)
        # clips from another seed, never trained on: the track-retrieval evaluation of the demo run
        make_held_out_demo_videos(held_out_videos, d.num, d.seed, d.frames, d.width, d.height, d.fps, owned=True)
        train_mine = held_out_mine = demo_mining(cfg)
    elif p.held_out_tail > 0:
        # the end of every video is held out: trained on up to it, evaluated on tracks after it (across time)
        # within mine.time_range (all of each video by default): its last held_out_tail is the held-out part
        held_out_videos = Path(videos)
        split, end = held_out_part(cfg)
        train_mine = dataclasses.replace(cfg.mine, time_range=[cfg.mine.time_range[0], split])
        held_out_mine = dataclasses.replace(cfg.mine, time_range=[split, end])
    # the test set stays one whatever the training pairs' view (mine.patch_context): compared on their own tails, a
    # wider view changed the tails too, and pixels scored 0.914 on the boxes against 0.968 on windows 1.6x wider
    held_out_mine = dataclasses.replace(held_out_mine, patch_context=p.held_out_patch_context)
    if cfg.miner.background_negatives:  # training on same-frame backgrounds needs them mined
        train_mine = dataclasses.replace(train_mine, background_patches=True)
    videos = Path(videos)

    def remaining_s() -> float:
        return max(0.0, deadline - time.monotonic())

    def mine() -> dict:
        mine_start, mine_budget = time.monotonic(), remaining_s() * p.mine_fraction
        # the training part of the user's videos is named as such: its skips quote the time range held_out_tail
        # set (too_short: "16 in mine.time_range=[0.0, 0.8]"), which the user never wrote
        part = (None if demo or held_out_videos is None else
                f"training part (the first {1 - p.held_out_tail:.0%}: pretrain.held_out_tail)")
        def record_settings(mine, folder: Path):
            # the settings a folder was mined with, as `vidssl mine` records them: `--config` of that file mines a
            # video left pending (cut short by the budget) with them; the run's config.yaml has the user's time_range
            return lambda: write_resolved(dataclasses.replace(cfg, mine=mine), folder)

        summary = tracking.mine_folder(videos, run / "pairs", train_mine, video_backend=cfg.video.backend,
                                       workers=p.mine_workers, progress=progress, label=part,
                                       time_budget_s=mine_budget,
                                       on_prepared=record_settings(train_mine, run / "pairs"))
        if held_out_videos is not None:
            # the held-out tails share the mining budget: each one decodes its video from the start
            held = tracking.mine_folder(held_out_videos, run / "pairs_held_out", held_out_mine,
                                        video_backend=cfg.video.backend, workers=p.mine_workers,
                                        progress=progress, label="held-out clips" if demo else (
                                            f"held-out tails (the last {p.held_out_tail:.0%}: "
                                            "pretrain.held_out_tail)"),
                                        time_budget_s=max(0.0, mine_budget - (time.monotonic() - mine_start)),
                                        already_said=None if demo else said_of_the_whole_file(summary),
                                        on_prepared=record_settings(held_out_mine, run / "pairs_held_out"))
            if not held.get("pairs") and summary.get("pairs"):  # no pair at all: the error below says why
                log.warning("no held-out tracks in %s (see %s): instance retrieval across time is not evaluated",
                            held_out_videos, run / "pairs_held_out" / "dataset.json")
        if not summary.get("pairs") and not summary.get("complete", True):
            raise VidsslError(f"mining {videos} ran out of its budget ({p.mine_fraction:.0%} of the run's) with "
                              f"{summary['videos'].get('pending', '?')} video(s) pending and no pair yet; give the run "
                              f"more time (--budget-minutes) or raise pretrain.mine_fraction, then rerun")
        if not summary.get("pairs") and not summary["videos"]["mined"]:
            reasons = ", ".join(f"{len(v)} {k}" for k, v in summary["videos"]["skipped"].items())
            raise VidsslError(f"no video in {videos} could be mined ({summary['videos']['found']} found: {reasons}; "
                              f"each one's reason in {run / 'pairs' / 'dataset.json'}, the reasons explained in the "
                              "README, Tracking stage, \"Bad input\")")
        if not summary.get("pairs"):
            raise VidsslError(f"mining {videos} produced no pairs (see {run / 'pairs' / 'dataset.json'}); "
                              "check the videos have moving objects, or relax mine.* thresholds")
        from tracking.show import pair_grid, save_png

        v = summary["videos"]  # what `vidssl mine` prints last: a first run's user learnt the count from an error
        cut = len(v.get("cut_short") or {})  # pending, yet with pairs
        log.info("[mine] %d pairs from %d of %d video(s)%s (%d skipped%s; each one's reason in %s)", summary["pairs"],
                 v["mined"], v["found"], f" and part of {cut} cut short by the budget" if cut else "",
                 sum(len(names) for names in v["skipped"].values()),
                 f", {v['pending']} pending" if v.get("pending") else "", run / "pairs" / "dataset.json")
        save_png(run / "pairs" / "pairs_grid.png", pair_grid(run / "pairs", n=48, seed=cfg.seed))
        return {"pairs": summary["pairs"], "videos_mined": summary["videos"]["mined"]}

    def train_stage() -> dict:
        # training takes its share of what is left, keeping the rest for evaluation
        # (at least a second: a budget spent by mining still trains a step, exported with run_warnings' warning,
        # rather than failing on a non-positive train.budget_minutes)
        minutes = max(remaining_s() * p.train_fraction / 60, 1 / 60)
        # mining may have stopped at its share of the budget with videos pending: train on what it found
        stats = train(run / "pairs", run / "train", cfg, budget_minutes=minutes, allow_incomplete=True,
                      progress=progress)
        log.info("[train] %s", outcome_line(stats))  # into pretrain.log too: a bar on the terminal leaves nothing there
        return {k: v for k, v in stats.items() if isinstance(v, (int, float, str))}

    def export_stage() -> dict:
        import shutil

        # earlier weights' evaluations: with the evaluation switched off, the report showed their numbers as these
        shutil.rmtree(run / "eval", ignore_errors=True)
        try:
            path = export_backbone(run / "train", run / "backbone.pt", safetensors=cfg.export.safetensors)
        except ExportPathError as e:  # a file left in RUN (backbone.pth), not an argument of this command: exit 1
            raise ModelFileError(str(e)) from None
        return {"weights": str(path)}

    def eval_stage() -> dict:
        from vidssl.eval.davis import evaluate_davis
        from vidssl.eval.flow import evaluate_flow
        from vidssl.eval.retrieval import evaluate_retrieval

        import shutil

        models = feature_models([run / "backbone.pt"], seed=cfg.seed)
        held_out = run / "pairs_held_out" if held_out_videos is not None else None
        results, failures = {}, {}
        finished = stages.parts_done("eval")  # tasks an interrupted evaluation of these weights completed
        named_now = weights_row_name(run / "backbone.pt")
        trained = _trained_name_kept(run, finished) or named_now
        models = {trained if name == named_now else name: model for name, model in models.items()}
        if not finished and not stages.outputs_cleared("eval"):
            # earlier weights' results: a task that now fails, or whose data is gone, kept showing their numbers.
            # Once per evaluation of these weights: resumed (tasks finished, or the note made), it keeps its own
            # (a flow transfer checkpoint)
            shutil.rmtree(run / "eval", ignore_errors=True)
            stages.note_outputs_cleared("eval")
        root = Path(eval_data) if eval_data else None
        if root is not None and not root.is_dir():
            # the folder the run recorded, gone (a given --eval-data and $VIDSSL_DATA are checked up front): kept as
            # the setting, so the finished evaluations stood, but these must go on without it
            log.warning("[eval] %s, the evaluation data this run recorded, is gone: evaluating without it", root)
            root = None
        # the data as the stage found it, recorded for the next rerun to compare (see eval_data_changes)
        data, recorded = eval_data_fingerprints(root), stages.data("eval")
        for es in discover_eval_sets(root, held_out):
            out = run / "eval" / es.folder
            if out.name in finished:
                if changed_since(recorded.get(out.name), data.get(out.name)):
                    # changed after this evaluation finished it, before it was interrupted
                    log.info("[eval] %s: its files changed since it was evaluated: evaluated again", es.path)
                else:
                    try:
                        # an object without any model's row ({}: a hand edit) is no result either
                        results[out.name] = read_metrics(out / "metrics.json", rows=True)
                        continue
                    except (OSError, ValueError):  # gone or edited by hand since: evaluated again
                        pass
            log.info("[eval] %s on %s", es.task, es.path)
            _clear_unfinished(out)
            try:
                if es.task == "retrieval":
                    results[out.name] = evaluate_retrieval(models, es.path, out, cfg.eval.retrieval,
                                                           kind=es.kind, davis_subset=cfg.eval.davis.subset,
                                                           progress=progress)
                elif es.task == "davis":
                    results[out.name] = evaluate_davis(models, es.path, out, cfg.eval.davis, progress=progress)
                else:
                    results[out.name] = evaluate_flow(models, es.path, out, cfg.eval.flow, seed=cfg.seed,
                                                      # its own budget, or half of what the run has left
                                                      budget_minutes=min(cfg.eval.flow.budget_minutes,
                                                                         max(0.5, remaining_s() / 60 / 2)),
                                                      progress=progress)
            except (VidsslError, OSError) as e:  # bad evaluation data: say why, do the other tasks
                if isinstance(e, OSError) and _writing_failed(e, run):
                    raise  # the run folder's storage, not the data: no other task would fare better
                said = one_line(e)  # a loader worker's error came wrapped in torch's traceback
                log.error("[eval] %s on %s failed: %s", es.task, es.path, said)
                failures[out.name] = said if said.startswith(str(es.path)) else f"{es.path}: {said}"  # named once
                continue
            stages.finish_part("eval", out.name, data.get(out.name))
        for name in sorted(finished - set(results) - set(failures)):
            # a set evaluated, then gone from the data (eval_data_changes said so): its results are kept, as they
            # are while nothing else is evaluated again
            with contextlib.suppress(OSError, ValueError):
                results[name] = read_metrics(run / "eval" / name / "metrics.json")
                if name in recorded:
                    data[name] = recorded[name]
        (run / "eval" / EVAL_FAILURES).unlink(missing_ok=True)  # an empty one in a clean run read as an alarm
        if failures:
            atomic_write_json(run / "eval" / EVAL_FAILURES, failures)
            if p.run_report:
                build_report(run)  # the finished tasks' numbers and the failures, before stopping
            raise EvalFailed(f"{len(failures)} evaluation(s) failed ({'; '.join(failures.values())}); fix the "
                             f"data and rerun the same command: the {len(results)} finished ones are kept")
        # the row the trained backbone has in every table, as named now: the report finds it by this name, also
        # after the run folder is renamed (a rerun then skips this stage and the tables keep the old name)
        return {"tasks": sorted(results), "trained_model": trained,
                "data": {name: fingerprint for name, fingerprint in data.items() if name in results}}

    results = {
        "mine": _run_stage(stages, "mine", p.run_mine, mine, configs["mine"], on_start=record_config),
        "train": _run_stage(stages, "train", p.run_train, train_stage, configs["train"],
                            made_from=run / MADE_FROM["train"], on_start=record_config),
        "export": _run_stage(stages, "export", p.run_export, export_stage, configs["export"],
                             made_from=run / MADE_FROM["export"], on_start=record_config),
    }
    results["train"] = latest_training(run, results["train"])
    # written before the evaluation: a failed one builds the report (with them) and stops the command
    warnings = run_warnings(run, None if demo else videos, results.get("train"))
    atomic_write_json(run / WARNINGS, warnings)
    try:
        results["eval"] = _run_stage(stages, "eval", p.run_eval, eval_stage, configs["eval"],
                                     made_from=run / MADE_FROM["eval"], on_start=record_config)
    except EvalFailed:
        _log_warnings(warnings)
        raise
    if results["eval"] is not None:  # switched off, RUN/eval holds an earlier evaluation's, not these weights'
        warnings += evaluation_warnings(run)
        if not results["eval"].get("tasks"):  # it finished without a word, and compare asked to finish the run
            warnings.append(nothing_evaluated(run, cfg, demo))
        atomic_write_json(run / WARNINGS, warnings)
    _log_warnings(warnings)
    if not p.run_report:  # a summary.json an earlier run left may hold the numbers of earlier weights: not read
        return {"stages": results, "warnings": warnings}
    build_report(run)  # its summary.json holds the stages and warnings as they are recorded in RUN
    return json_object(run / "summary.json")
