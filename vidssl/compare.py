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

from vidssl.config import recorded_config
from vidssl.errors import VidsslError
from vidssl.eval import weights_row_name
from vidssl.io import json_object

@dataclass
class TaskRow:
    """One evaluation task across runs: the trained backbone's number per run (None where the run lacks the task)
    and each baseline's numbers, in run order. ``lower_is_better``: the headline is an error (flow EPE), decided by
    the metric, not the task's name (a retrieval set in a folder named ``flow`` is still a score)."""

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
                          f"same command; for a run made stage by stage, export into it (vidssl export {run}/train "
                          f"--out {run}/backbone.pt), evaluate that, then rewrite the summary: vidssl report {run}")
    return weights_row_name(weights)


# what a run folder holds beside its summary. A pretrain deletes eval/ before evaluating new weights (and when the
# evaluation's settings change), so eval/ alone does not tell a run folder from a summary copied on its own. The
# weights, their card and the config are not among them: they are what a summary is shared with
RUN_PARTS = ("eval", "stages", "train", "pairs")


def run_headline(run: Path, summary: dict) -> tuple[dict[str, dict[str, float]], dict[str, bool], list[str]]:
    """The run's headline numbers per task and model, recomputed from its ``eval/*/metrics.json`` with the current
    rules (a summary written by an older version may lack flow or hold a degenerate task), per task whether lower is
    better, and a note naming each metrics.json that could not be read. The summary's number stands in for a task
    whose metrics.json is there but unreadable (torn, or JSON that is not an object), and for every task of a summary
    without its run (none of :data:`RUN_PARTS` beside it: a summary copied on its own, or with the weights and their
    card). In a run folder, a task whose
    metrics are
    gone (new weights' evaluation begun and killed, or eval/<task> deleted) has no number: the summary's is stale.
    Only finite numbers count: a NaN would make the mean NaN and every comparison with it false."""
    from vidssl.report import finite_number, headline_metric, headline_metrics, missing_metrics, read_metrics

    results, unreadable = {}, {}
    for path in sorted((run / "eval").glob("*/metrics.json")):
        try:
            results[path.parent.name] = read_metrics(path)
        except (OSError, ValueError) as e:
            unreadable[path.parent.name] = f"{path}: unreadable ({e})"
    headline = headline_metrics(results)
    lower = {task: not (headline_metric(results[task]) or {}).get("higher_is_better", True) for task in headline}
    recorded, directions = summary.get("headline"), summary.get("headline_metric")
    recorded = recorded if isinstance(recorded, dict) else {}
    alone = not any((run / part).exists() for part in RUN_PARTS)
    stand_ins = recorded if alone else {t: recorded[t] for t in unreadable if t in recorded}
    for task, values in stand_ins.items():
        numbers = {model: float(v) for model, v in values.items() if finite_number(v)} \
            if isinstance(values, dict) else {}
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


def read_runs(runs: list[str | Path]) -> tuple[list[TaskRow], list[str]]:
    """The headline numbers of ``runs`` (folders made by ``vidssl pretrain``), one row per task in first-seen
    order, and a note naming each metrics.json that could not be read. Baselines are matched by name across runs
    ("raw pixels", "<arch> (random init)")."""
    seen: dict[Path, Path] = {}
    for run in map(Path, runs):
        if run.resolve() in seen:
            raise VidsslError(f"{run} is given twice (as {seen[run.resolve()]}); each run counts once")
        seen[run.resolve()] = run
    tables, notes = [], []
    for run in map(Path, runs):
        if not run.is_dir():
            raise VidsslError(f"{run}: no such folder; pass run folders (the --out of `vidssl pretrain`, or a folder "
                              "made stage by stage)")
        try:
            summary = json.loads((run / "summary.json").read_text())
        except FileNotFoundError:
            raise VidsslError(f"{run}: no summary.json; finish a `vidssl pretrain` run with the same command, or "
                              f"write it for a run made stage by stage: vidssl report {run}") from None
        except (OSError, ValueError) as e:  # torn, or not UTF-8 (a UnicodeDecodeError)
            raise VidsslError(f"{run}/summary.json: unreadable ({e}); rebuild it: vidssl report {run}")
        if not isinstance(summary, dict):
            raise VidsslError(f"{run}/summary.json: not a run summary (a JSON {type(summary).__name__}); "
                              f"rebuild it: vidssl report {run}")
        headline, lower, unreadable = run_headline(run, summary)
        tables.append((_trained_name(summary, run), headline, lower))
        notes += unreadable
    tasks = list(dict.fromkeys(task for _, headline, _ in tables for task in headline))
    if not tasks:
        from vidssl.report import uninformative_tasks

        uninformative = [f"{task} in {run}: {why}" for run in runs for task, why in uninformative_tasks(Path(run))]
        if uninformative:  # evaluated, but nothing that tells models apart: "finish the runs" misled
            raise VidsslError(f"no informative evaluation results in {', '.join(map(str, runs))}: "
                              + "; ".join(uninformative) + ". Evaluate on data that can tell the models apart: "
                              "--eval-data (CUB, DAVIS, Sintel folders), or videos whose held-out tails "
                              "(pretrain.held_out_tail) hold several tracks")
        empty = [str(run) for run in runs if _evaluated_nothing(Path(run))]
        if len(empty) == len(runs):  # finished: "finish the runs" misled
            raise VidsslError(f"{', '.join(empty)}: finished, but evaluated nothing (no held-out pairs and no "
                              "evaluation data); give --eval-data (CUB, DAVIS, Sintel folders) to compare them")
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
    """Mean and sample standard deviation (n - 1; 0 for one value) of the present values, and their count."""
    xs = [v for v in values if v is not None]
    if not xs:
        return math.nan, math.nan, 0
    mean = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
    return mean, sd, len(xs)


def wins(row: TaskRow, baseline: str) -> tuple[int, int]:
    """(runs whose trained backbone beats ``baseline`` in that same run, runs with both numbers)."""
    pairs = [(t, b) for t, b in zip(row.trained, row.baselines[baseline]) if t is not None and b is not None]
    better = sum((t < b) if row.lower_is_better else (t > b) for t, b in pairs)
    return better, len(pairs)


DEMO_VIDEOS = "the built-in demo videos"
NOT_READ = "not read"  # a config key the run's kind does not read (see _setup): like any value to the others


def _run_config(run: Path) -> dict | None:
    """The config a run was made with: ``RUN/config.yaml`` (pretrain's). A run made stage by stage has none: its
    training's (``RUN/train/config.yaml``, or the copy in the model card), whose mine and video sections are only
    what the train command was given, so those come from mining's (``RUN/pairs/config.yaml``)."""
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
            mined = json.loads((run / "pairs" / "mine.json").read_text())["config"]
        except (OSError, ValueError, KeyError, TypeError):
            mined = None
        return {**config, "mine": mined} if isinstance(mined, dict) else config
    config = recorded_config(run / "train" / "config.yaml")
    if config is None:
        try:
            config = json.loads((run / "model_card.json").read_text())["config"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not isinstance(config, dict):
            return None
    mined = recorded_config(run / "pairs" / "config.yaml") or {}
    return {**config, **{section: mined[section] for section in ("mine", "video") if section in mined}}


def _torn(path: Path) -> bool:
    """Whether ``path`` is there but is not what vidssl writes there (a torn copy, an emptied file, a hand edit gone
    wrong): a config.yaml holding a ``config`` mapping, a model card holding a JSON object."""
    if not path.exists():
        return False
    if path.suffix != ".json":
        return recorded_config(path) is None
    try:
        return not isinstance(json.loads(path.read_text()), dict)
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
        videos = json.loads((run / "stages" / "mine.json").read_text())["config"]["--videos"]
    except (OSError, ValueError, KeyError, TypeError):
        try:  # made stage by stage, or a mining marker from before it recorded --videos
            videos = json.loads((run / "pairs" / "dataset.json").read_text())["videos_root"]
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
        root = json.loads((run / "stages" / "eval.json").read_text())["config"]["--eval-data"]
    except (OSError, ValueError, KeyError, TypeError):
        root = None
    if isinstance(root, str):
        return f"{recorded}, found under --eval-data {root}"
    return f"{recorded}, relative to the folder {run} was evaluated from"


def _setup(run: Path) -> dict[str, object]:
    """What a run was made of beyond its seed: its resolved config (``config.*``, the seed left out; see
    :func:`_run_config`), the videos it mined, the steps it trained and each evaluation's data (the held-out tracks
    are the run's own and come from its videos)."""
    from vidssl.config import Config, flat_config, flat_dict
    from vidssl.pipeline import HELD_OUT_TASK, SPEED_KEYS, UNUSED_BY
    from vidssl.report import read_metrics

    setup: dict[str, object] = {}
    videos = _videos(run)
    config = _run_config(run)
    if config is not None:
        # a key a later version added counts as its default (what an older run did); keys of speed and logging
        # (threads, workers, devices' batch sizes) decide no number: pretrain.mine_workers is no stage's key, so
        # not among SPEED_KEYS, but mines the same pairs with any number of processes
        flat = {**json.loads(json.dumps(flat_config(Config()))), **flat_dict(config)}
        unread = UNUSED_BY[videos == DEMO_VIDEOS] if videos is not None else ()
        if not (run / "config.yaml").exists():  # made stage by stage: no pretrain.* setting applied to it
            unread = (*unread, "pretrain")
        setup.update({k: NOT_READ if any(k == u or k.startswith(u + ".") for u in unread) else v
                      for k, v in flat.items() if k not in {"seed", "pretrain.mine_workers", *SPEED_KEYS}})
    elif _unreadable_config(run) is not None:  # there but torn: its settings are unknown, not different
        setup.update({k: NOT_READ for k in flat_config(Config())})
    if videos is not None:
        setup["videos"] = videos
    try:  # the steps trained: with train.fit_budget, the machine's speed (threads, device) decides them
        training = json.loads((run / "model_card.json").read_text())["training"]
        setup["trained steps"] = f"{training['steps']} of {training['total_steps']}"
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


def run_differences(runs: list[str | Path]) -> list[str]:
    """``"key: value / value / ..."`` for everything the runs differ in beyond their seed (see :func:`_setup`);
    a key a run lacks shows as ``-``, and a key a run does not read (``not read``) is no difference. Empty for seeds
    of one config on one data set."""
    setups = [_setup(Path(run)) for run in runs]
    keys = list(dict.fromkeys(k for setup in setups for k in setup))
    missing = object()
    lines = []
    for key in keys:
        values = [setup.get(key, missing) for setup in setups]
        read = [v for v in values if v != NOT_READ]
        if any(v != read[0] for v in read):
            lines.append(f"{key}: " + " / ".join("-" if v is missing else str(v) for v in values))
    return lines


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
    """A markdown table: per task, each run's trained number, their mean +- sd, and per baseline its mean and
    the runs the trained backbone beats it in; under it, the metrics.json files that could not be read and what
    the runs differ in beyond their seed."""
    rows, unreadable = read_runs(runs)
    names = column_names(runs)  # after read_runs: it refuses a run given twice, which no suffix tells apart
    baselines = list(dict.fromkeys(b for row in rows for b in row.baselines))
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
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
            b_mean, _, _ = mean_sd(row.baselines[b])
            better, both = wins(row, b)
            cells.append(f"{b_mean:.3f}, {better}/{both}")
        lines.append("| " + " | ".join(map(cell, cells)) + " |")
    unreadable += [f"{path}: unreadable; what {run} was made with is not compared with the other runs' (rerun its "
                   "command to rewrite it)" for run in map(Path, runs) for path in _unreadable_records(run)]
    if unreadable:
        lines += ["", "**Unreadable results:**", *(f"- {note}" for note in unreadable)]
    differences = run_differences(runs)
    if differences:
        # a spread over other configs or data is not a seed spread, and a baseline's mean over data sets is no one's
        shown = differences[:10] + ([f"... and {len(differences) - 10} more"] if len(differences) > 10 else [])
        lines += ["", "**These runs differ beyond their seed** (columns in the order above), so the spread is not "
                      "a seed spread:", *(f"- {line}" for line in shown)]
    code = [training_code(Path(run)) for run in runs]
    if len({c for c in code if c is not None}) > 1:  # not a difference of the setup: most commits move no number
        lines += ["", "Trained by different code (each run's training sessions' git SHAs, in the order above; a "
                      "commit that changes training moves the numbers as another seed would): "
                  + " / ".join(c or "unknown" for c in code)]
    return "\n".join(lines) + "\n"


def _short_sha(sha: str) -> str:
    return sha[:12] + ("-dirty" if sha.endswith("-dirty") else "")


def training_code(run: Path) -> str | None:
    """The git SHA(s) of the code that trained a run's weights (its model card's sessions, joined by "+" when it
    was resumed under other code); None without a readable card or SHA."""
    try:
        card = json.loads((run / "model_card.json").read_text())
        sessions = card.get("training", {}).get("sessions") or [{"git_sha": card.get("git_sha")}]
        shas = list(dict.fromkeys(_short_sha(str(s["git_sha"])) for s in sessions if s.get("git_sha")))
    except (OSError, ValueError, AttributeError, TypeError):
        return None
    return "+".join(shas) or None
