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

from vidssl.errors import VidsslError
from vidssl.eval import weights_row_name

LOWER_IS_BETTER = ("flow",)  # tasks whose headline is an error (EPE); the others are scores


@dataclass
class TaskRow:
    """One evaluation task across runs: the trained backbone's number per run (None where the run lacks the task)
    and each baseline's numbers, in run order."""

    task: str
    trained: list[float | None]
    baselines: dict[str, list[float | None]] = field(default_factory=dict)

    @property
    def lower_is_better(self) -> bool:
        return self.task in LOWER_IS_BETTER


def _trained_name(summary: dict, run: Path) -> str:
    """The trained model's row name in the run's evaluations (recorded by the report; derived for older runs)."""
    if isinstance(summary.get("trained_model"), str):
        return summary["trained_model"]
    weights = summary.get("weights")
    if not weights:
        raise VidsslError(f"{run}/summary.json names no exported weights; finish the run with `vidssl pretrain`")
    return weights_row_name(weights)


def run_headline(run: Path, summary: dict) -> dict[str, dict[str, float]]:
    """The run's headline numbers, recomputed from its ``eval/*/metrics.json`` with the current rules (a summary
    written by an older version may lack flow or hold a degenerate task); the summary's own when there are none."""
    from vidssl.report import headline_metrics

    results = {}
    for path in sorted((run / "eval").glob("*/metrics.json")):
        try:
            results[path.parent.name] = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # the report names an unreadable file; the summary's number stands in for it below
    headline = dict(summary.get("headline", {}))
    if results:
        fresh = headline_metrics(results)
        headline = {task: row for task, row in headline.items() if task not in results}  # tasks still on disk...
        headline.update(fresh)  # ...are read from it
    return headline


def read_runs(runs: list[str | Path]) -> list[TaskRow]:
    """The headline numbers of ``runs`` (folders made by ``vidssl pretrain``), one row per task in first-seen
    order. Baselines are matched by name across runs ("raw pixels", "<arch> (random init)")."""
    seen: dict[Path, Path] = {}
    for run in map(Path, runs):
        if run.resolve() in seen:
            raise VidsslError(f"{run} is given twice (as {seen[run.resolve()]}); each run counts once")
        seen[run.resolve()] = run
    tables = []
    for run in map(Path, runs):
        try:
            summary = json.loads((run / "summary.json").read_text())
        except FileNotFoundError:
            raise VidsslError(f"{run}: no summary.json; is it a `vidssl pretrain` run folder? (rerun the same "
                              f"pretrain command to finish it)") from None
        except (OSError, json.JSONDecodeError) as e:
            raise VidsslError(f"{run}/summary.json: unreadable ({e}); rebuild it by rerunning the pretrain command")
        if not isinstance(summary, dict):
            raise VidsslError(f"{run}/summary.json: not a pretrain summary (a JSON {type(summary).__name__}); "
                              "rebuild it by rerunning the pretrain command")
        tables.append((_trained_name(summary, run), run_headline(run, summary)))
    tasks = list(dict.fromkeys(task for _, headline in tables for task in headline))
    rows = []
    for task in tasks:
        row = TaskRow(task, [headline.get(task, {}).get(name) for name, headline in tables])
        for name, headline in tables:
            for model in headline.get(task, {}):
                if model != name:
                    row.baselines.setdefault(model, [])
        for model in row.baselines:
            row.baselines[model] = [headline.get(task, {}).get(model) for _, headline in tables]
        rows.append(row)
    return rows


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


def _setup(run: Path) -> dict[str, object]:
    """What a run was made of beyond its seed: its resolved config (``config.*``, the seed left out), the videos it
    mined and each evaluation's data (the held-out tracks are the run's own and come from its videos)."""
    import yaml

    from vidssl.config import flat_dict

    setup: dict[str, object] = {}
    try:
        config = yaml.safe_load((run / "config.yaml").read_text())["config"]
        setup.update({k: v for k, v in flat_dict(config).items() if k != "seed"})
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        pass  # an older or hand-made run: nothing to hold it to
    try:
        videos = Path(json.loads((run / "pairs" / "dataset.json").read_text())["videos_root"])
        # a demo run's clips are made into its own folder: the same clips (demo.* decides them) at another path
        setup["videos"] = "the built-in demo videos" if videos.resolve().is_relative_to(run.resolve()) \
            else str(videos)
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        pass
    for path in sorted((run / "eval").glob("*/metrics.json")):
        if path.parent.name == "tracks_held_out":
            continue
        try:
            metrics = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        data = metrics.get("data", metrics.get("data_dir"))
        if isinstance(data, str):
            setup[f"eval data ({path.parent.name})"] = data
    return setup


def run_differences(runs: list[str | Path]) -> list[str]:
    """``"key: value / value / ..."`` for everything the runs differ in beyond their seed (see :func:`_setup`);
    a key a run lacks shows as ``-``. Empty for seeds of one config on one data set."""
    setups = [_setup(Path(run)) for run in runs]
    keys = list(dict.fromkeys(k for setup in setups for k in setup))
    missing = object()
    lines = []
    for key in keys:
        values = [setup.get(key, missing) for setup in setups]
        if any(v != values[0] for v in values):
            lines.append(f"{key}: " + " / ".join("-" if v is missing else str(v) for v in values))
    return lines


def compare_markdown(runs: list[str | Path]) -> str:
    """A markdown table: per task, each run's trained number, their mean +- sd, and per baseline its mean and
    the runs the trained backbone beats it in."""
    names = [Path(r).name for r in runs]
    rows = read_runs(runs)
    baselines = list(dict.fromkeys(b for row in rows for b in row.baselines))
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    head = ["task", *names, "trained mean +- sd"] + [f"{b}: mean, beaten in" for b in baselines]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
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
        lines.append("| " + " | ".join(cells) + " |")
    differences = run_differences(runs)
    if differences:
        # a spread over other configs or data is not a seed spread, and a baseline's mean over data sets is no one's
        shown = differences[:10] + ([f"... and {len(differences) - 10} more"] if len(differences) > 10 else [])
        lines += ["", "**These runs differ beyond their seed** (columns in the order above), so the spread is not "
                      "a seed spread:", *(f"- {line}" for line in shown)]
    return "\n".join(lines) + "\n"
