"""Several runs side by side (``vidssl compare``): each evaluation's headline number per run, the trained
backbones' mean and spread, and how many runs beat each baseline. Reads ``RUN/summary.json`` and recomputes each
headline from ``RUN/eval/*/metrics.json`` where present (a summary written by an older version may be stale).

Made for what one run cannot say: with ~800 training steps the seed alone moves DAVIS J&F by several points
(README: the acceptance target), so a claim about a config is a claim about several seeds of it. Runs that differ
in more than their seed (config, videos, evaluation data) are still tabled, with what differs listed under it.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from vidssl.config import recorded_config, shown
from vidssl.errors import VidsslError, shell_arg
from vidssl.eval import weights_row_name
from vidssl.io import json_object

@dataclass
class TaskRow:
    """One evaluation task across runs: the trained backbone's number per run (None where the run lacks the task;
    NaN or infinite where it diverged) and each baseline's (finite) numbers, in run order. ``lower_is_better``: the
    headline is an error (flow EPE), decided by the metric, not the task's name (a retrieval set in a folder named
    ``flow`` is still a score)."""

    task: str
    trained: list[float | None]
    baselines: dict[str, list[float | None]] = field(default_factory=dict)
    lower_is_better: bool = False


def _trained_name(summary: dict, run: Path) -> str:
    """The trained model's row name in the run's evaluations (recorded by the report; derived for older runs)."""
    if isinstance(summary.get("trained_model"), str):
        return summary["trained_model"]
    weights = summary.get("weights")
    if not weights:
        raise VidsslError(f"{run}/summary.json names no trained model (no {run}/model_card.json, and its evaluation "
                          "tables hold no single weights file beside the baselines): finish a pretrain run with the "
                          f"same command; for a run made stage by stage, export into it (vidssl export "
                          f"{shell_arg(run / 'train')} --out {shell_arg(run / 'backbone.pt')}), evaluate that, then "
                          f"rewrite the summary: vidssl report {shell_arg(run)}")
    if not isinstance(weights, str):  # a summary edited by hand: a TypeError ended the whole comparison
        raise VidsslError(f"{run}/summary.json: its \"weights\" is {type(weights).__name__} {weights!r:.60}, not a "
                          f"path; rewrite the summary: vidssl report {shell_arg(run)}")
    return weights_row_name(weights)


# what a run folder holds beside its summary. A pretrain deletes eval/ before evaluating new weights (and when the
# evaluation's settings change), so eval/ alone does not tell a run folder from a summary copied on its own. The
# weights, their card and the config are not among them: they are what a summary is shared with
RUN_PARTS = ("eval", "stages", "train", "pairs")


def run_headline(run: Path, summary: dict, trained: str | None = None
                 ) -> tuple[dict[str, dict[str, float]], dict[str, bool], list[str]]:
    """The run's headline numbers per task and model, recomputed from its ``eval/*/metrics.json`` with the current
    rules (a summary written by an older version may lack flow or hold a degenerate task), per task whether lower is
    better, and a note naming each metrics.json that could not be read. The summary's number stands in for a task
    whose metrics.json is there but unreadable (torn, or JSON that is not an object), and for every task of a summary
    without its run (none of :data:`RUN_PARTS` beside it: a summary copied on its own, or with the weights and their
    card). In a run folder, a task whose
    metrics are
    gone (new weights' evaluation begun and killed, or eval/<task> deleted) has no number: the summary's is stale.
    Only finite numbers count: a NaN would make the mean NaN and every comparison with it false; but the
    ``trained`` model's number that is not finite is kept as it is (NaN, inf): a diverged seed is a seed of the
    config, which would look better without it."""
    from vidssl.report import (finite_number, headline_metric, headline_metrics, missing_metrics,
                               not_finite_headlines, read_metrics)

    results, unreadable = {}, {}
    for path in sorted((run / "eval").glob("*/metrics.json")):
        try:
            results[path.parent.name] = read_metrics(path, rows=True)  # {}: no number, as in the report
        except (OSError, ValueError) as e:
            unreadable[path.parent.name] = f"{path}: unreadable ({e})"
    headline = headline_metrics(results)
    for task, models in not_finite_headlines(results).items():
        if trained in models:  # null in metrics.json: NaN
            headline.setdefault(task, {})[trained] = math.nan if models[trained] is None else models[trained]
    lower = {task: not (headline_metric(results[task]) or {}).get("higher_is_better", True) for task in headline}
    recorded, directions = summary.get("headline"), summary.get("headline_metric")
    recorded = recorded if isinstance(recorded, dict) else {}
    alone = not any((run / part).exists() for part in RUN_PARTS)
    diverged = summary.get("headline_not_finite")  # {task: [model, ...]}: numbers summary.json cannot hold
    diverged = diverged if isinstance(diverged, dict) else {}
    stood_for = [t for t in dict.fromkeys([*recorded, *diverged]) if alone or t in unreadable]
    for task in stood_for:
        values = recorded.get(task)
        numbers = {model: float(v) for model, v in values.items() if finite_number(v)} \
            if isinstance(values, dict) else {}
        if trained is not None and isinstance(diverged.get(task), list) and trained in diverged[task]:
            numbers[trained] = math.nan  # its metrics.json held null or infinity: a diverged seed, not a missing one
        if numbers:
            headline[task] = numbers
            direction = directions.get(task) if isinstance(directions, dict) else None
            # older summaries say nothing: their only error headline was flow's
            lower[task] = direction.get("higher_is_better") is False if isinstance(direction, dict) else task == "flow"
    stood_in = {True: "summary.json stands in for it", False: "summary.json has no number for it"}
    notes = [f"{why}; {stood_in[task in headline]}; rerun that evaluation to rewrite it"
             for task, why in unreadable.items()]
    notes += [f"{path}: missing, though its evaluation completed; the same `vidssl pretrain` command evaluates "
              "it again (with its evaluation on and its data there)" for path in missing_metrics(run)]
    return headline, lower, notes


def _check_runs(runs: list[str | Path]) -> list[Path]:
    """``runs`` as paths; an error for a run given twice (also as one of its stage folders beside it: ``s0`` and
    ``s0/train``), a file of a run (its summary.json, backbone.pt) or a folder that is not there (a mistyped
    path)."""
    seen: dict[Path, str] = {}
    for given in runs:  # as typed: Path("run a/") prints as "run a", and the message read "run a ... (as run a)"
        resolved = Path(given).resolve()
        if resolved in seen:
            raise VidsslError(f"{str(given)!r} and {seen[resolved]!r} are the same run; each run counts once")
        seen[resolved] = str(given)
    from vidssl.report import not_a_run_folder, run_above

    for run in map(Path, runs):
        if (problem := not_a_run_folder(run)) is not None:  # RUN/summary.json too: a file that is there
            raise VidsslError(problem)
    for run in map(Path, runs):
        up = run_above(run)
        if up is not None and up.resolve() in seen:
            raise VidsslError(f"{str(run)!r} is a stage folder of {seen[up.resolve()]!r}, also given: the same run; "
                              f"each run counts once (leave out {str(run)!r})")
    return list(map(Path, runs))


def _no_summary(run: Path) -> str:
    """Why ``run``, a folder without a summary.json, has none and what to do, as `vidssl report` diagnoses a folder:
    one stage's own folder names its run folder (``s0/train``: ``s0``), a folder that holds no run (an empty one, a
    data folder) is said to be none, and `vidssl report RUN` is suggested only where RUN holds something to report.
    A pretrain run not finished is told to finish."""
    from vidssl.report import REPORTED, has_report, holds_run, not_a_run, run_above, stage_folder

    found = stage_folder(run)
    if found is not None:
        up = run_above(run)
        if up is None:  # a stage's --out folder out of any run (`vidssl train --out mytrain`)
            return f"{run}: no summary.json; {not_a_run(run)}"
        one = f"{run} is {found[0]}, one {'task' if found[1] == 'eval/<task>' else 'stage'} of the run folder {up}"
        if not holds_run(up):
            return f"{one}, which holds no run to compare yet; {_no_summary(up)}"
        summary = "" if (up / "summary.json").is_file() else f" ({_no_summary(up)})"
        return f"{one}: pass the run folder, {shell_arg(up)}{summary}"
    if has_report(run):
        return (f"{run}: no summary.json (not finished?); finish it with the same `vidssl pretrain` command, or "
                f"write it for a run made stage by stage: vidssl report {shell_arg(run)}")
    if any((run / part).is_dir() for part in RUN_PARTS):  # begun: nothing in it to report yet
        return (f"{run}: no summary.json (not finished?); finish it with the same `vidssl pretrain` command (made "
                "stage by stage: its stages, then its report; it holds nothing to report yet)")
    return (f"{run}: no summary.json, and no run in it (none of {', '.join(REPORTED)}, eval/<task>/metrics.json or "
            "stages/): pass a run folder (the --out of `vidssl pretrain`, or a folder the stages wrote into, "
            "reported with `vidssl report RUN`)")


def _summary(run: Path) -> dict:
    """The run's summary.json; an error saying why it cannot be read and how to write it."""
    try:
        summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise VidsslError(_no_summary(run)) from None
    except (OSError, ValueError) as e:  # torn, or not UTF-8 (a UnicodeDecodeError)
        raise VidsslError(f"{run}/summary.json: unreadable ({e}); rebuild it: vidssl report {shell_arg(run)}")
    if not isinstance(summary, dict):
        raise VidsslError(f"{run}/summary.json: not a run summary (a JSON {type(summary).__name__}); "
                          f"rebuild it: vidssl report {shell_arg(run)}")
    return summary


def readable_runs(runs: list[str | Path]) -> tuple[dict[Path, dict], list[str]]:
    """The runs whose summary.json can be read and names their trained model, with it, and a note naming each other
    run and why: one run of many still training (no summary.json yet), with a torn one, or made stage by stage and
    reported before its export (no trained model yet) leaves the others to compare. An error when none is left."""
    kept, left_out = {}, []
    for run in _check_runs(runs):
        try:
            summary = _summary(run)
            _trained_name(summary, run)  # read_runs needs it: one unfinished run stopped the whole comparison
            kept[run] = summary
        except VidsslError as e:
            left_out.append(str(e))
    if not kept:
        raise VidsslError("no run to compare: " + "; ".join(left_out))
    return kept, left_out


def _trained_weights(summary: dict) -> str | None:
    """The digest of the run's trained weights as its summary records it: its train stage's (a pretrain run's
    ``stages.train``), else its training's final stats (``train``: a run made stage by stage); None when neither."""
    stages = summary.get("stages") if isinstance(summary.get("stages"), dict) else {}
    for record in (stages.get("train"), summary.get("train")):
        if isinstance(record, dict) and isinstance(record.get("weights_sha256"), str):
            return record["weights_sha256"]
    return None


def _refuse_one_training_twice(summaries: dict[Path, dict]) -> list[str]:
    """An error for two runs whose summaries record the same trained weights and that differ in nothing
    (:func:`_setup`): one training copied or moved (``cp -r s1 s1copy``), which counted as a second seed with a spread
    of 0, as a run given twice would. Runs of one training evaluated otherwise (another eval setting or --eval-data:
    training on the CPU is deterministic) are kept, each such pair in the notes returned: their spread is the
    evaluations', not a seed's."""
    seen: dict[str, Path] = {}
    notes = []
    for run, summary in summaries.items():
        digest = _trained_weights(summary)
        if digest is None:
            continue
        if digest in seen:
            other = seen[digest]
            if _setup(run) == _setup(other):
                raise VidsslError(f"{str(run)!r} and {str(other)!r} hold the same trained weights (weights_sha256 "
                                  f"{digest[:12]}) and differ in no setting: one training listed twice (a run folder "
                                  "copied or moved, or a run repeated with the same seed and settings); each "
                                  "training counts once: leave one out")
            notes.append(f"{other} and {run} hold the same trained weights (weights_sha256 {digest[:12]}), evaluated "
                         "otherwise: the spread between them is their evaluations', not a seed's")
            continue
        seen[digest] = run
    return notes


def read_runs(runs: list[str | Path], summaries: dict[Path, dict] | None = None) -> tuple[list[TaskRow], list[str]]:
    """The headline numbers of ``runs`` (folders made by ``vidssl pretrain``), one row per task in first-seen
    order, and a note naming each metrics.json that could not be read. Baselines are matched by name across runs
    ("raw pixels", "<arch> (random init)"). Each run's summary.json must be readable (see :func:`readable_runs`,
    whose ``summaries`` it takes instead of reading them again)."""
    if summaries is None:
        summaries = {run: _summary(run) for run in _check_runs(runs)}
        _refuse_one_training_twice(summaries)
    tables, notes = [], []
    for run, summary in summaries.items():
        name = _trained_name(summary, run)
        headline, lower, unreadable = run_headline(run, summary, name)
        tables.append((name, headline, lower))
        notes += unreadable
    tasks = list(dict.fromkeys(task for _, headline, _ in tables for task in headline))
    if not tasks:
        from vidssl.pipeline import evaluation_warnings

        # evaluated, but nothing that tells models apart: "finish the runs" misled; each run is told what helps it
        # ("give --eval-data" only where it had none)
        uninformative = [f"{run}: {warning}" for run in map(Path, runs) for warning in evaluation_warnings(run)]
        if uninformative:
            raise VidsslError(f"no informative evaluation results in {', '.join(map(str, runs))}: "
                              + "; ".join(uninformative) + "".join(f"; {note}" for note in notes))
        empty = [str(run) for run in runs if _evaluated_nothing(Path(run))]
        if len(empty) == len(runs):  # finished: "finish the runs" misled
            raise VidsslError(f"{', '.join(empty)}: {EVALUATED_NOTHING} to compare them")
        parts = sorted({f"{part}/" for run in map(Path, runs) for part in RUN_PARTS if (run / part).exists()})
        ignored = (f"; a summary.json beside {', '.join(parts)} is a run's, whose numbers are its eval/*/metrics.json"
                   if parts else "")
        raise VidsslError(f"no evaluation results in {', '.join(map(str, runs))} (RUN/eval/*/metrics.json); finish "
                          "the runs (the same pretrain commands, or `vidssl eval` into RUN/eval/<task>)"
                          + ignored + "".join(f"; {note}" for note in notes))
    rows = []
    for task in tasks:
        directions = {lower[task] for _, headline, lower in tables if task in headline}
        if len(directions) > 1:
            raise VidsslError(f"task {task}: a score in some runs and an error in others (different evaluation data "
                              "under one name); compare runs evaluated on the same data")
        row = TaskRow(task, [headline.get(task, {}).get(name) for name, headline, _ in tables],
                      lower_is_better=directions.pop())
        for name, headline, _ in tables:
            for model in headline.get(task, {}):
                if model != name:
                    row.baselines.setdefault(model, [])
        for model in row.baselines:
            row.baselines[model] = [headline.get(task, {}).get(model) for _, headline, _ in tables]
        rows.append(row)
    return rows, notes


def mean_sd(values: list[float | None]) -> tuple[float, float, int]:
    """Mean and sample standard deviation (n - 1; 0 for one value) of the finite values, and their count."""
    xs = [v for v in values if v is not None and math.isfinite(v)]
    if not xs:
        return math.nan, math.nan, 0
    mean = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
    return mean, sd, len(xs)


def wins(row: TaskRow, baseline: str) -> tuple[int, int]:
    """(runs whose trained backbone beats ``baseline`` in that same run, runs with both numbers). A trained number
    that is not finite (NaN: the seed diverged) is beaten: left out, the config would look better for it."""
    pairs = [(t, b) for t, b in zip(row.trained, row.baselines[baseline]) if t is not None and b is not None]
    better = sum(math.isfinite(t) and ((t < b) if row.lower_is_better else (t > b)) for t, b in pairs)
    return better, len(pairs)


def baseline_mean(row: TaskRow, baseline: str) -> tuple[float, int]:
    """The mean of ``baseline`` over the runs the trained mean is over (those with a finite trained number), and
    their count: over other runs (a diverged seed's, or one without the trained number) it would be no match for
    the trained mean."""
    mean, _, n = mean_sd([b if t is not None and math.isfinite(t) else None
                          for t, b in zip(row.trained, row.baselines[baseline])])
    return mean, n


class Steps(NamedTuple):
    """The steps a run trained, of the schedule's (a model card's ``training``)."""

    steps: object
    total: object

    def __str__(self) -> str:
        return f"{self.steps} of {self.total}"


DEMO_VIDEOS = "the built-in demo videos"
NOT_READ = "not read"  # a config key the run's kind does not read (see _setup): like any value to the others
# a run whose evaluation completed with no task: what it is, and what helps
EVALUATED_NOTHING = ("finished, but evaluated nothing (no held-out pairs and no evaluation data); give --eval-data "
                     "(CUB, DAVIS, Sintel folders)")


def _run_config(run: Path) -> dict | None:
    """The config a run was made with: ``RUN/config.yaml`` (pretrain's). A run made stage by stage has none: its
    training's (``RUN/train/config.yaml``, or the copy in the model card), whose mine and video sections are only
    what the train command was given, so those come from mining's (``RUN/pairs/config.yaml``; for pairs mined
    elsewhere, the training's record of them, :func:`_training_mining`); its eval section, too, is only the train
    command's: :func:`_setup` takes each evaluation's from its own record."""
    if (run / "config.yaml").exists():
        config = recorded_config(run / "config.yaml")
        if config is None:
            return None
        # what the stages ran: the precision auto resolved to (train/config.yaml records it, as a run made stage
        # by stage does), and the mining as done (pairs/mine.json: pretrain's part of each video, before the
        # held-out tail), so that a pretrain run and one made stage by stage compare key for key
        trained = (recorded_config(run / "train" / "config.yaml") or {}).get("train")
        precision = trained.get("precision") if isinstance(trained, dict) else None
        if precision is not None and isinstance(config.get("train"), dict):
            config = {**config, "train": {**config["train"], "precision": precision}}
        try:  # the mining's own record (pretrain writes no pairs/config.yaml)
            mined = json.loads((run / "pairs" / "mine.json").read_text(encoding="utf-8"))["config"]
        except (OSError, ValueError, KeyError, TypeError):
            mined = None
        return {**config, "mine": mined} if isinstance(mined, dict) else config
    config = recorded_config(run / "train" / "config.yaml")
    if config is None:
        try:
            config = json.loads((run / "model_card.json").read_text(encoding="utf-8"))["config"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not isinstance(config, dict):
            return None
    # without either (trained by an earlier version on pairs elsewhere): unknown, see _setup
    mined = recorded_config(run / "pairs" / "config.yaml") or _training_mining(run)
    sections = {section: mined[section] for section in ("mine", "video") if isinstance(mined.get(section), dict)}
    return {**config, **sections}


def _training_mining(run: Path) -> dict:
    """How the pairs a run made stage by stage trained on were mined, as its training recorded it (``mining``:
    the mine and video sections and the manifest's digest, from PAIRS/dataset.json): ``RUN/train/stats.json``'s,
    else its model card's ``training``; {} from a training of an earlier version, which recorded none."""
    card = json_object(run / "model_card.json").get("training")
    for record in (json_object(run / "train" / "stats.json").get("mining"),
                   card.get("mining") if isinstance(card, dict) else None):
        if isinstance(record, dict):
            return record
    return {}


def _pairs_manifest(run: Path) -> str:
    """The digest of the manifest of the pairs the run trained on (its first 12 hex digits): its training's record
    of it, else ``RUN/pairs/dataset.json``'s. Pairs of other videos with the same settings differ in nothing else.
    :data:`NOT_READ` where neither records one (mined and trained by earlier versions): unknown, not different."""
    for record in (_training_mining(run), json_object(run / "pairs" / "dataset.json")):
        digest = record.get("manifest_sha256")
        if isinstance(digest, str) and digest:
            return digest[:12]
    return NOT_READ


def _torn(path: Path) -> bool:
    """Whether ``path`` is there but is not what vidssl writes there (a torn copy, an emptied file, a hand edit gone
    wrong): a config.yaml holding a ``config`` mapping, a model card holding a JSON object."""
    if not path.exists():
        return False
    if path.suffix != ".json":
        return recorded_config(path) is None
    try:
        return not isinstance(json.loads(path.read_text(encoding="utf-8")), dict)
    except (OSError, ValueError):  # ValueError: not UTF-8, or not JSON
        return True


def _evaluated_nothing(run: Path) -> bool:
    """Whether ``run``'s evaluation stage completed with no task (its stage marker's ``tasks`` empty)."""
    return json_object(run / "stages" / "eval.json").get("tasks") == []


def _unreadable_config(run: Path) -> Path | None:
    """The file a run's config would be read from (see :func:`_run_config`) when none could be read and that one
    is torn, else None (a card written by hand, with no config in it, is no damage)."""
    if _run_config(run) is not None:
        return None
    return next((path for path in (run / "config.yaml", run / "train" / "config.yaml", run / "model_card.json")
                 if _torn(path)), None)


def _unreadable_records(run: Path) -> list[Path]:
    """The run's torn config and model card: what it was made with and trained for is not compared."""
    torn = [path for path in (_unreadable_config(run),) if path is not None]
    card = run / "model_card.json"
    if _torn(card) and card not in torn:
        torn.append(card)
    return torn


def _videos(run: Path) -> str | None:
    """The videos the run mined (their folder, resolved, as mining records it), or :data:`DEMO_VIDEOS`: the demo
    clips are made into each run's own folder (demo.* decides them), also a run moved since; None when unknown."""
    try:
        videos = json.loads((run / "stages" / "mine.json").read_text(encoding="utf-8"))["config"]["--videos"]
    except (OSError, ValueError, KeyError, TypeError):
        try:  # made stage by stage, or a mining marker from before it recorded --videos
            videos = json.loads((run / "pairs" / "dataset.json").read_text(encoding="utf-8"))["videos_root"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not isinstance(videos, str):
            return None
        # a pretrain without --videos mines the clips it made in RUN/demo_videos, wherever RUN was then
        videos = None if Path(videos).name == "demo_videos" else videos
    return DEMO_VIDEOS if videos is None else str(videos)


def _eval_data(run: Path, recorded: str) -> str:
    """An evaluation's data, to compare across runs: the path its metrics.json records, which evaluations resolve.
    An older evaluation recorded the path as typed, relative to a folder nobody recorded: two pretrain runs that
    found it under the same --eval-data (their markers record it resolved) have the same data; otherwise it is told
    apart from every other run's, as one relative path typed in two folders may name two data sets."""
    if Path(recorded).is_absolute():
        return recorded
    try:
        root = json.loads((run / "stages" / "eval.json").read_text(encoding="utf-8"))["config"]["--eval-data"]
    except (OSError, ValueError, KeyError, TypeError):
        root = None
    if isinstance(root, str):
        return f"{recorded}, found under --eval-data {root}"
    return f"{recorded}, relative to the folder {run} was evaluated from"


def _under(key: str, prefixes) -> bool:
    """Whether the config ``key`` is one of ``prefixes`` or in a section of them (``eval.davis``)."""
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def _eval_reads() -> dict[str, tuple[str, ...]]:
    """Per eval section, the eval keys its evaluation reads (its command's READS): retrieval's also
    ``eval.davis.subset``."""
    from vidssl.commands import eval_davis, eval_flow, eval_retrieval

    return {module.NAME: tuple(k for k in module.READS if k.startswith("eval."))
            for module in (eval_davis, eval_flow, eval_retrieval)}


def _eval_section(recorded: object) -> str | None:
    """The eval section an evaluation's metrics.json ``config`` holds (its keys all that section's), or None."""
    from vidssl.config import Config, to_dict

    if not isinstance(recorded, dict) or not recorded:
        return None
    sections = to_dict(Config())["eval"]
    return next((name for name, keys in sections.items() if isinstance(keys, dict) and set(recorded) <= set(keys)),
                None)


def _sections_read_by_pretrain(run: Path) -> tuple[str, ...] | None:
    """The eval keys a pretrain run's evaluations read (as ``eval.davis``): pretrain evaluates DAVIS and flow only
    where it found their data, and two runs without DAVIS apart in ``eval.davis.topk`` were listed as differing.
    None where an evaluation's section cannot be told (a metrics.json unreadable, or with no config): all are read."""
    from vidssl.report import read_metrics

    reads = _eval_reads()
    read: list[str] = []
    for path in sorted((run / "eval").glob("*/metrics.json")):
        try:
            section = _eval_section(read_metrics(path).get("config"))
        except (OSError, ValueError):
            return None
        if section is None:
            return None
        read += reads.get(section, (f"eval.{section}",))
    return tuple(read)


def _evaluation_settings(run: Path) -> tuple[dict[str, object], tuple[str, ...]]:
    """A run made stage by stage: the eval settings its evaluations ran with (flat keys), each from that
    evaluation's own record, ``RUN/eval/<task>/config.yaml`` (else its metrics.json's ``config``, its section
    alone), and the keys they read (sections, as ``eval.davis``). Its training's config holds only the eval section
    `vidssl train` was given; a task never evaluated reads none, and one whose record cannot be read has settings
    unknown, not different. Evaluations of one section with other values (two retrieval sets) give the key every
    value, with its task."""
    from vidssl.config import flat_dict
    from vidssl.report import read_metrics

    reads = _eval_reads()
    values: dict[str, dict[str, object]] = {}  # key -> {task: value}
    read: list[str] = []
    for path in sorted((run / "eval").glob("*/metrics.json")):
        try:
            recorded_section = read_metrics(path).get("config")
        except (OSError, ValueError):  # named under the table by read_runs
            continue
        section = _eval_section(recorded_section)
        if section is None:
            continue
        task = path.parent.name
        recorded = recorded_config(path.parent / "config.yaml")
        if recorded is not None:
            keys = reads.get(section, (f"eval.{section}",))
            settings = {k: v for k, v in flat_dict(recorded).items() if _under(k, keys)}
        else:  # no config.yaml (moved, or an older evaluation): the section its metrics.json records
            keys = (f"eval.{section}",)
            settings = flat_dict({"eval": {section: recorded_section}})
        read += keys
        for key, value in json.loads(json.dumps(settings)).items():
            values.setdefault(key, {})[task] = value
    merged = {key: next(iter(by_task.values())) if len({json.dumps(v) for v in by_task.values()}) == 1
              else "; ".join(f"{shown(v)} ({task})" for task, v in by_task.items()) for key, by_task in values.items()}
    return merged, tuple(dict.fromkeys(read))


def _setup(run: Path) -> dict[str, object]:
    """What a run was made of beyond its seed: its resolved config (``config.*``, the seed left out; see
    :func:`_run_config`), the videos it mined, the pairs it trained on (their manifest's digest), the steps it
    trained and each evaluation's data (the held-out tracks are the run's own and come from its videos)."""
    from vidssl.config import Config, flat_config, flat_dict, settings_of_older_records
    from vidssl.pipeline import HELD_OUT_TASK, NOT_READ_BY_PRETRAIN, SPEED_KEYS, UNUSED_BY
    from vidssl.report import read_metrics

    setup: dict[str, object] = {}
    videos = _videos(run)
    config = _run_config(run)
    if config is not None:
        # a key a later version added counts as its default (what an older run did); keys of speed and logging
        # (threads, workers, devices' batch sizes) decide no number: pretrain.mine_workers is no stage's key, so
        # not among SPEED_KEYS, but mines the same pairs with any number of processes
        defaults = settings_of_older_records()
        flat = {**defaults, **flat_dict(config)}
        unread = UNUSED_BY[videos == DEMO_VIDEOS] if videos is not None else ()
        if not (run / "config.yaml").exists():  # made stage by stage: no pretrain.* setting applied to it
            # nor the eval section its training's config holds: each evaluation's own record says what it ran with
            evaluated, read = _evaluation_settings(run)
            flat.update({k: v for k, v in defaults.items() if k.startswith("eval.")})
            flat.update(evaluated)
            unread = (*unread, "pretrain", *(k for k in flat if k.startswith("eval.") and not _under(k, read)))
            if recorded_config(run / "pairs" / "config.yaml") is None and not _training_mining(run):
                # pairs mined elsewhere by an earlier version: the train command's mine section says nothing of them
                unread = (*unread, "mine", "video")
        else:  # a pretrain run: two seeds apart only in such an unread default were listed as differing
            read = _sections_read_by_pretrain(run)
            unread = (*unread, *NOT_READ_BY_PRETRAIN,
                      *(k for k in flat if read is not None and k.startswith("eval.") and not _under(k, read)))
        setup.update({k: NOT_READ if _under(k, unread) else v
                      for k, v in flat.items() if k not in {"seed", "pretrain.mine_workers", *SPEED_KEYS}})
    elif _unreadable_config(run) is not None:  # there but torn: its settings are unknown, not different
        setup.update({k: NOT_READ for k in flat_config(Config())})
    if videos is not None:
        setup["videos"] = videos
    setup["pairs (manifest_sha256)"] = _pairs_manifest(run)
    try:  # the steps trained: with train.fit_budget, the machine's speed (threads, device) decides them
        training = json.loads((run / "model_card.json").read_text(encoding="utf-8"))["training"]
        setup["trained steps"] = Steps(training["steps"], training["total_steps"])
    except (OSError, ValueError, KeyError, TypeError):
        if _torn(run / "model_card.json"):  # unknown, not different
            setup["trained steps"] = NOT_READ
    for path in sorted((run / "eval").glob("*/metrics.json")):
        if path.parent.name == HELD_OUT_TASK:
            continue
        try:
            metrics = read_metrics(path)
        except (OSError, ValueError):  # named under the table by read_runs; its data are unknown, not different
            setup[f"eval data ({path.parent.name})"] = NOT_READ
            continue
        data = metrics.get("data", metrics.get("data_dir"))
        if isinstance(data, str):
            setup[f"eval data ({path.parent.name})"] = _eval_data(run, data)
    return setup


def _fitted(setup: dict[str, object]) -> bool | None:
    """Whether train.fit_budget fitted the run's steps to a time budget (pretrain always gives training one; a run
    made stage by stage has one unless train.budget_minutes is null): its step count is then its machine's speed's,
    not a setting. None when its config is there but torn (unknown, not different)."""
    fit = setup.get("train.fit_budget")
    if fit == NOT_READ:
        return None
    pretrain = setup.get("pretrain.budget_minutes", NOT_READ) != NOT_READ
    return fit is True and (pretrain or setup.get("train.budget_minutes") is not None)


BY_POSITION = 3  # runs up to which values are listed by position (see by_run)


def listed_by_position(runs: int) -> bool:
    """Whether the values of ``runs`` runs are listed by position (in the columns' order), not grouped by value."""
    return runs <= BY_POSITION


def by_run(values: list[str], names: list[str]) -> str:
    """One value per run on one line: by position for up to three runs (``0.5 / 0.5 / 0.33``, in the columns'
    order), else grouped by value with the runs that hold it (``0.02 (s0, s1); 0.11 (s2)``): twenty values by
    position have to be counted to tell whose is whose."""
    if listed_by_position(len(values)):
        return " / ".join(values)
    groups: dict[str, list[str]] = {}
    for name, value in zip(names, values):
        groups.setdefault(value, []).append(name)
    return "; ".join(f"{value} ({', '.join(group)})" for value, group in groups.items())


def run_differences(runs: list[str | Path], names: list[str]) -> tuple[list[str], str | None]:
    """``"key: value / value / ..."`` (see :func:`by_run`; ``names``: the runs' columns) for everything the runs
    differ in beyond their seed (see :func:`_setup`); a key a run lacks shows as ``-`` (but a run lacking an
    evaluation is no difference in its data), and a key a run does not read (``not read``) is no difference. Empty
    for seeds of one config on one data set. And the range of steps trained when train.fit_budget fitted every
    run's to its budget (``"trained steps: 9963-10000"``), which is no difference of setting, else None."""
    from vidssl.report import finite_number

    setups = [_setup(Path(run)) for run in runs]
    # fitted in every run whose config is known (and some are): steps apart are speeds apart, not settings apart
    known = [_fitted(setup) for setup in setups]
    fitted = False not in known and True in known
    keys = list(dict.fromkeys(k for setup in setups for k in setup))
    missing = object()
    lines, steps = [], None
    for key in keys:
        values = [setup.get(key, missing) for setup in setups]
        # a run without the evaluation (never run on that task, or its metrics.json gone: named under the table)
        # has no number in that row: its data differ from no one's (its "-" shows where the others' differ)
        unknown = (NOT_READ, missing) if key.startswith("eval data (") else (NOT_READ,)
        read = [v for v in values if v not in unknown]
        if not any(v != read[0] for v in read):
            continue
        trained = [v.steps for v in read if isinstance(v, Steps)]
        if key == "trained steps" and fitted and len(trained) == len(read) and all(map(finite_number, trained)):
            low, high = min(trained), max(trained)
            steps = f"trained steps: {low}-{high}" if low != high else f"trained steps: {low}"
            continue
        # a run's config.yaml from elsewhere may nest YAML aliases: its value in full was megabytes of output
        lines.append(f"{key}: " + by_run(["-" if v is missing else str(v) if isinstance(v, (str, int, float, Steps))
                                          else shown(v) for v in values], names))
    return lines, steps


def column_names(runs: list[str | Path]) -> list[str]:
    """Each run's shortest path suffix that no other run's resolved path ends in: ``s0`` and ``s1``, but ``A/s0``
    and ``B/s0`` (one column header for both would hide which number is whose). ``.`` names the folder."""
    paths = [Path(run).resolve().parts for run in runs]
    names = []
    for parts in paths:
        k = next(k for k in range(1, len(parts) + 1)
                 if sum(other[-k:] == parts[-k:] for other in paths) == 1)  # itself only
        names.append(str(Path(*parts[-k:])))
    return names


def compare_markdown(runs: list[str | Path]) -> str:
    """A markdown table: per task, each run's trained number, their mean +- sd, and per baseline its mean (over
    the same runs) and the runs the trained backbone beats it in; under it, the runs left out (no readable
    summary.json, or none naming a trained model), the metrics.json files that could not be read, the trained
    numbers that are not finite and what the runs differ in beyond their seed."""
    summaries, left_out = readable_runs(runs)  # refuses a run given twice, which no suffix tells apart
    shared = _refuse_one_training_twice(summaries)
    runs = list(summaries)
    rows, unreadable = read_runs(runs, summaries)
    names = column_names(runs)
    baselines = list(dict.fromkeys(b for row in rows for b in row.baselines))
    fmt = lambda v: "-" if v is None else "NaN" if math.isnan(v) else f"{v:.3f}"  # noqa: E731  (inf shows as inf)
    head = ["task", *names, "trained mean +- sd"] + [f"{b}: mean, beaten in" for b in baselines]
    cell = lambda text: str(text).replace("|", "\\|")  # noqa: E731  (a `|` in a name would split its cell)
    lines = ["| " + " | ".join(map(cell, head)) + " |", "|" + "---|" * len(head)]
    for row in rows:
        mean, sd, n = mean_sd(row.trained)
        spread = f"{mean:.3f} +- {sd:.3f}" if n > 1 else f"{mean:.3f}" if n else "-"  # one run has no spread
        cells = [row.task + (" (lower is better)" if row.lower_is_better else ""), *map(fmt, row.trained),
                 f"{spread} (n={n})"]
        for b in baselines:
            if b not in row.baselines:
                cells.append("-")
                continue
            b_mean, b_n = baseline_mean(row, b)
            better, both = wins(row, b)
            # n only where the baseline lacks a number in a run the trained mean is over
            b_text = "-" if not b_n else f"{b_mean:.3f}" + (f" (n={b_n})" if b_n != n else "")
            cells.append(f"{b_text}, {better}/{both}")
        lines.append("| " + " | ".join(map(cell, cells)) + " |")
    if left_out:
        lines += ["", "**Left out** (no readable summary.json, or no trained model in it):",
                  *(f"- {note}" for note in left_out)]
    if shared:
        lines += ["", "**One training in several columns:**", *(f"- {note}" for note in shared)]
    if blanks := _why_blank(runs, rows):
        lines += ["", "**Shown as `-`** (no number that tells the models apart):", *(f"- {note}" for note in blanks)]
    unreadable += [f"{path}: unreadable; what {run} was made with is not compared with the other runs' (rerun its "
                   "command to rewrite it)" for run in map(Path, runs) for path in _unreadable_records(run)]
    if unreadable:
        lines += ["", "**Unreadable results:**", *(f"- {note}" for note in unreadable)]
    not_finite = [f"{run}: {row.task}" for row in rows for run, t in zip(runs, row.trained)
                  if t is not None and not math.isfinite(t)]
    if not_finite:
        lines += ["", "**Trained numbers that are not finite** (diverged in training or evaluation): counted as "
                      "beaten by every baseline, and left out of the trained mean and of the baselines' means:",
                  *(f"- {note}" for note in not_finite)]
    in_order = listed_by_position(len(runs))
    differences, steps = run_differences(runs, names)
    if differences:
        # a spread over other configs or data is not a seed spread, and a baseline's mean over data sets is no one's
        shown = differences[:10] + ([f"... and {len(differences) - 10} more"] if len(differences) > 10 else [])
        lines += ["", "**These runs differ beyond their seed**"
                      + (" (columns in the order above)" if in_order else "") + ", so the spread is not a seed spread:",
                  *(f"- {line}" for line in shown)]
    if steps:
        lines += ["", f"{steps} (train.fit_budget fitted each run's schedule to its time budget at its machine's "
                      "speed: not a setting)"]
    code = [training_code(Path(run)) for run in runs]
    if len({c for c in code if c is not None}) > 1:  # not a difference of the setup: most commits move no number
        lines += ["", "Trained by different code (each run's training sessions' git SHAs"
                      + (", in the order above" if in_order else "")
                      + "; a commit that changes training moves the numbers as another seed would): "
                  + by_run([c or "unknown" for c in code], names)]
    return "\n".join(lines) + "\n"


def _why_blank(runs: list[Path], rows: list[TaskRow]) -> list[str]:
    """Why runs show ``-``: each evaluation that says nothing about the weights (left out of the headline, e.g.
    held-out tails of one track) in a row of the table, and every one of a run with no number at all; for such a
    run without one, that it evaluated nothing or has no results (a metrics.json gone or torn is named among the
    unreadable results). A run of several whose only task was left out got an all-`-` column and not a word, while
    one run alone is told so in its error."""
    from vidssl.pipeline import evaluation_warnings
    from vidssl.report import missing_metrics

    tasks = {row.task for row in rows}
    notes = []
    for i, run in enumerate(map(Path, runs)):
        blank = all(row.trained[i] is None for row in rows)
        said = [f"{run}: {warning}" for warning in evaluation_warnings(run, None if blank else tasks)]
        if blank and not said:
            if _evaluated_nothing(run):
                said = [f"{run}: {EVALUATED_NOTHING}"]
            elif not missing_metrics(run) and not any((run / "eval").glob("*/metrics.json")):
                said = [f"{run}: no evaluation results (RUN/eval/*/metrics.json); evaluate it (the same `vidssl "
                        "pretrain` command with its evaluation on, or `vidssl eval` into RUN/eval/<task>)"]
        notes += said
    return notes


def _short_sha(sha: str) -> str:
    return sha[:12] + ("-dirty" if sha.endswith("-dirty") else "")


def training_code(run: Path) -> str | None:
    """The git SHA(s) of the code that trained a run's weights (its model card's sessions, joined by "+" when it
    was resumed under other code); None without a readable card or SHA."""
    try:
        card = json.loads((run / "model_card.json").read_text(encoding="utf-8"))
        sessions = card.get("training", {}).get("sessions") or [{"git_sha": card.get("git_sha")}]
        shas = list(dict.fromkeys(_short_sha(str(s["git_sha"])) for s in sessions if s.get("git_sha")))
    except (OSError, ValueError, AttributeError, TypeError):
        return None
    return "+".join(shas) or None
