"""``RUN/report.html`` (self-contained: figures inlined, charts as inline SVG, no network) and ``RUN/summary.json``.

The report only reads what the stages left in the run directory, so it can be rebuilt at any time:
``pairs/dataset.json`` and ``pairs/pairs_grid.png`` (mining), ``train/log.jsonl`` (training curves),
``backbone.pt`` / ``model_card.json`` (export) and ``eval/<task>/metrics.json`` plus the PNGs beside them.
"""
from __future__ import annotations

import base64
import html
import json
import math
import re
from itertools import groupby
from pathlib import Path
from typing import Any, Iterator

from vidssl.errors import shell_arg
from vidssl.eval import MASKS, weights_row_name
from vidssl.io import atomic_write_text, json_object, json_text

CURVES = (  # (title, keys of a training log record, y label)
    ("Loss: total, and the ranking loss per mined triplet", ("loss", "loss_mean_triplet"), "loss"),
    ("Dense cycle loss (loss.cycle_weight)", ("cycle",), "-log p(return)"),
    ("Active triplets", ("active",), "fraction"),
    ("Distances D(a,p), D(a,n)", ("d_ap", "d_an"), "1 - cos"),
    ("Mean cosine of positives / negatives (and the collapse guard's running mean) / own backgrounds",
     ("pos_cos", "neg_cos", "neg_cos_ema", "bg_cos"), "cosine"),
    ("Embedding spread (collapse guard)", ("spread",), "per-dim std x sqrt(d)"),
    ("Learning rate", ("lr",), "lr"),
)
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")
# summary.json's train: the final stats (train/stats.json), or the last log record where they are not yet written
# (weights_sha256: the trained weights' digest, by which `vidssl compare` tells one training listed twice, a copied
# run folder, from two seeds)
TRAIN_SUMMARY_KEYS = ("step", "total_steps", "stopped", "loss", "cycle", "active", "pos_cos", "neg_cos", "spread",
                      "weights_sha256", "fit_history", "pinning_repeats")


WARNINGS = "warnings.json"  # RUN/warnings.json: what a pretrain run left out (vidssl.pipeline.run_warnings)
EVAL_FAILURES = "failed.json"  # RUN/eval/failed.json: {task: error} of the evaluations the last run could not do


# what in a run folder gives a report something to show (any one of them, or an eval/<task>/metrics.json)
REPORTED = ("pairs/dataset.json", "train/log.jsonl", "model_card.json")
# a stage's own --out folder, by the files the stage writes into it: (files, what it is, its place in a run folder)
STAGE_FOLDERS = (
    (("metrics.json",), "an evaluation's folder (`vidssl eval TASK --out`)", "eval/<task>"),
    (("manifest.jsonl", "dataset.json"), "a pair dataset (`vidssl mine --out`)", "pairs"),
    (("checkpoint.pt", "log.jsonl", "stats.json"), "a training run's folder (`vidssl train --out`)", "train"),
)
RUN_LAYOUT = ("report reads a run folder RUN laid out as pretrain lays it out: RUN/pairs/ (`vidssl mine VIDEOS --out "
              "RUN/pairs`), RUN/train/ (`vidssl train RUN/pairs --out RUN/train`), RUN/backbone.pt and "
              "RUN/model_card.json (`vidssl export RUN/train --out RUN/backbone.pt`), RUN/eval/<task>/ (`vidssl "
              "eval TASK --weights RUN/backbone.pt --data DATA --out RUN/eval/<task>`)")


def has_report(run: Path) -> bool:
    """Whether ``run`` holds any of REPORTED."""
    return any((run / part).is_file() for part in REPORTED) or any((run / "eval").glob("*/metrics.json"))


def stage_folder(folder: Path) -> tuple[str, str] | None:
    """(what it is, its place in a run folder) when ``folder`` is one stage's own --out folder, told by the files
    that stage writes there (:data:`STAGE_FOLDERS`), else None."""
    return next(((what, place) for files, what, place in STAGE_FOLDERS
                 if any((folder / name).is_file() for name in files)), None)


def run_above(folder: Path) -> Path | None:
    """The run folder above ``folder`` when it is a stage folder sitting in its place as pretrain lays a run out
    (RUN/train, RUN/pairs, RUN/pairs_held_out, RUN/eval/<task>), else None. Named as ``folder`` was given
    (``s0/train``: ``s0``); "." and "..", which have no parent to name, resolved."""
    found = stage_folder(folder)
    if found is None:
        return None
    here = folder if folder.name not in ("", "..") else folder.resolve()
    if found[1] == "eval/<task>":
        return here.parent.parent if here.parent.name == "eval" else None
    return here.parent if here.name == found[1] or found[1] == "pairs" and here.name == "pairs_held_out" else None


def holds_run(folder: Path, summary_alone: bool = True) -> bool:
    """Whether ``folder`` is a run folder to pass to `vidssl report` or `vidssl compare`: it holds something to
    report (:func:`has_report`), a summary.json (also one copied on its own, unless ``summary_alone`` is False) or a
    pretrain's stages/, and is no stage's own folder."""
    return stage_folder(folder) is None and (has_report(folder) or (folder / "stages").is_dir()
                                             or summary_alone and (folder / "summary.json").is_file())


def run_holding(path: Path) -> Path | None:
    """The run folder ``path`` lies in: the nearest folder above it that :func:`holds_run`, past the stage folders
    and the rest between (``s0/eval/davis/metrics.json``: ``s0``), named as ``path`` was given (relative stays
    relative); None where no folder above it is a run (a script in a scratch folder). Above the file's own folder a
    bare summary.json is no run: a stray one in the user's home claimed every file below it (and `vidssl report`
    would have written its report there)."""
    folder = path.parent
    while not holds_run(folder, summary_alone=folder == path.parent):
        up = folder.parent if folder.name not in ("", "..") else folder / ".."  # Path(".").parent is "."
        if up.resolve() == folder.resolve():  # the root
            return None
        folder = up
    return folder


def not_a_run_folder(run: Path, command: str | None = None) -> str | None:
    """Why ``run``, given as a run folder (`vidssl report`, `vidssl compare`), is none: a file of a run (its
    summary.json, backbone.pt, eval/davis/metrics.json: the run is the folder above it that is one; with
    ``command``, its line for that folder), a file in no run, or a folder that is not there; None for a folder."""
    if run.is_file():
        owner = run_holding(run)
        if owner is not None:
            example = f", e.g. `vidssl {command} {shell_arg(owner)}`" if command else ""
            return (f"{run} is a file; pass the run folder it belongs to ({shell_arg(owner)}): the --out of `vidssl "
                    f"pretrain`, or the folder the stages wrote into{example}")
        if stage_folder(run.parent) is not None:  # a stage's folder out of its place: what it is and the layout
            return f"{run} is a file, not a run folder; {not_a_run(run.parent)}"
        return (f"{run} is a file, not a run folder, and no folder above it is a run (none holds "
                f"{', '.join(REPORTED)}, eval/<task>/metrics.json, summary.json or stages/): pass a run folder (the "
                "--out of `vidssl pretrain`, or the folder the stages wrote into)")
    if not run.is_dir():
        return (f"{run}: no such folder; pass a run folder (the --out of `vidssl pretrain`, or the folder the stages "
                "wrote into)")
    return None


def not_a_run(run: Path) -> str:
    """Why ``run``, which holds none of REPORTED, has nothing to report, and what to pass instead: a stage's own
    folder (`vidssl report runs/real/train`) is named, with the run folder above it where it sits in its place."""
    found = stage_folder(run)
    if found is None:
        return (f"{run}: nothing to report (none of {', '.join(REPORTED)}, eval/<task>/metrics.json); {RUN_LAYOUT}, "
                "as the README's walkthrough shows")
    what, place = found
    up = run_above(run)
    if up is not None:
        one = "one task of a run" if place == "eval/<task>" else "one stage of a run"
        return f"{run} is {what}, {one}: pass the run folder, `vidssl report {shell_arg(up)}`"
    return (f"{run} is {what}, not a run folder; {RUN_LAYOUT}: move it to RUN/{place} of a run folder and pass "
            "RUN")


def read_failures(run: Path) -> dict[str, str]:
    """{task: error message} of the evaluations that failed in the run's last eval stage ({} when none did)."""
    try:
        failures = json.loads((run / "eval" / EVAL_FAILURES).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # torn, or not UTF-8 (UnicodeDecodeError is a ValueError, not a JSONDecodeError)
        return {}
    return {str(k): str(v) for k, v in failures.items()} if isinstance(failures, dict) else {}


_JSON_TYPES = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
               float: "a number", type(None): "null"}


def _expect(value: Any, kind: type, what: str) -> None:
    """Raise ValueError when ``value`` (``what`` of a file) is not a ``kind``: a hand edit or a torn copy that a
    ``.get`` or ``len`` on it would turn into a traceback."""
    if not isinstance(value, kind):
        raise ValueError(f"{what} is {_JSON_TYPES.get(type(value), type(value).__name__)}, not {_JSON_TYPES[kind]}")


def _check_dataset(ds: Any) -> None:
    """The parts of a mined ``dataset.json`` the report reads: an object, ``videos`` and ``videos.skipped`` objects,
    each reason a list of videos, ``tracks_rejected``, ``start_frames_rejected`` and ``config`` objects."""
    _expect(ds, dict, "the file")
    videos = ds.get("videos", {})
    _expect(videos, dict, '"videos"')
    _expect(videos.get("skipped", {}), dict, '"videos.skipped"')
    for reason, paths in videos.get("skipped", {}).items():
        _expect(paths, list, f'"videos.skipped.{reason}"')
    _expect(ds.get("tracks_rejected", {}), dict, '"tracks_rejected"')
    _expect(ds.get("start_frames_rejected", {}), dict, '"start_frames_rejected"')
    _expect(ds.get("config") or {}, dict, '"config"')
    _expect(videos.get("skipped_detail", {}), dict, '"videos.skipped_detail"')
    _expect(videos.get("partial", {}), dict, '"videos.partial"')
    _expect(videos.get("cut_short", {}), dict, '"videos.cut_short"')


def _check_warnings(warnings: Any) -> None:
    _expect(warnings, list, "the file")
    for warning in warnings:
        _expect(warning, str, "a warning")


def missing_metrics(run: Path) -> list[Path]:
    """The metrics.json of each task the run's completed evaluation lists (``stages/eval.json``) that is not
    there: deleted since, its numbers are nowhere else."""
    listed = json_object(run / "stages" / "eval.json").get("tasks")
    return [run / "eval" / task / "metrics.json" for task in (listed if isinstance(listed, list) else [])
            if isinstance(task, str) and not (run / "eval" / task / "metrics.json").exists()]


def read_metrics(path: Path, rows: bool = False) -> dict:
    """An evaluation's ``metrics.json``; OSError or ValueError (torn, or JSON that is not an object; with ``rows``,
    also an object that holds no model's metrics: ``{}``, ``{"models": []}``, which the report showed as an empty
    table) when it cannot be read, which the report and ``vidssl compare`` name rather than fail on."""
    result = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(result, dict):
        raise ValueError(f"a JSON {type(result).__name__}, not the object an evaluation writes")
    if rows and not model_metrics(result):  # every evaluation writes a row per model (or flow's per method) at least
        raise ValueError('holds no model\'s metrics (no "models" or "methods" with a row), not what an evaluation '
                         'writes')
    return result


def _read_json(path: Path, check, fix: str, damaged: list[str]) -> Any:
    """The JSON in ``path`` (None when there is no such file) if ``check`` (raises ValueError saying what is wrong)
    accepts it. A damaged file (torn, or of the wrong shape) reads as absent and is added to ``damaged`` with
    ``fix``, to be named in the report: as for a metrics.json, one damaged file must not cost the whole report."""
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
        check(value)
    except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        damaged.append(f"{path}: {e}; {fix}")
        return None
    return value


def _time_span(config: Any) -> list | None:
    """``config.time_range`` of a mined ``dataset.json`` when it is two numbers, else None."""
    span = config.get("time_range") if isinstance(config, dict) else None
    return span if isinstance(span, list) and len(span) == 2 and all(map(finite_number, span)) else None


def read_jsonl(path: Path) -> list[dict]:
    """The records (JSON objects) of a JSON-lines file; a torn last line (a killed writer), a line that is JSON
    but no object (a hand edit: `7` or a string failed the whole report) and bytes that are not UTF-8 (they failed
    the whole file) are ignored."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


def _per_column(values: list[tuple[float, float]], x0: float, x1: float, columns: int) -> list[tuple[float, float]]:
    """``values`` (in x order, x within ``x0..x1``) cut to the lowest and the highest point of each of ``columns``
    pixel columns, in x order: a line cannot show more, and a spike survives (a mean or every n-th point would
    hide it). 100k log records drew 100k points per curve, 14 MB of SVG. A series this short is drawn whole."""
    if len(values) <= 2 * columns:
        return values
    kept: list[tuple[float, float]] = []
    for _, group in groupby(values, key=lambda p: min(columns - 1, int((p[0] - x0) / (x1 - x0) * columns))):
        group = list(group)
        low, high = min(group, key=lambda p: p[1]), max(group, key=lambda p: p[1])
        kept += [low] if low is high else sorted((low, high))
    return kept


def svg_line_chart(series: dict[str, list[tuple[float, float]]], title: str, ylabel: str,
                   width: int = 420, height: int = 240) -> str:
    """An inline SVG line chart of ``{name: [(x, y), ...]}`` (each in x order) with axes ticks and a legend; a long
    series is drawn as the lowest and highest point of each pixel column."""
    points = [p for values in series.values() for p in values if math.isfinite(p[1])]
    if not points:
        return ""
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    y0, y1 = min(p[1] for p in points), max(p[1] for p in points)
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    left, right, top, bottom = 56, 10, 24, 34

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (width - left - right)

    def sy(y: float) -> float:
        return height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="11">',
             f'<text x="{width / 2}" y="14" text-anchor="middle" font-weight="bold">{html.escape(title)}</text>',
             f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="#333"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="#333"/>']
    for k in range(5):
        yv = y0 + (y1 - y0) * k / 4
        xv = x0 + (x1 - x0) * k / 4
        parts.append(f'<text x="{left - 4}" y="{sy(yv) + 4:.1f}" text-anchor="end">{yv:.3g}</text>')
        parts.append(f'<line x1="{left}" y1="{sy(yv):.1f}" x2="{width - right}" y2="{sy(yv):.1f}" stroke="#eee"/>')
        tick = round(xv) if x1 - x0 >= 4 else f"{xv:.4g}"  # steps: a quarter of 230 is no step 57.5
        parts.append(f'<text x="{sx(xv):.1f}" y="{height - bottom + 14}" text-anchor="middle">{tick}</text>')
    parts.append(f'<text x="{width / 2}" y="{height - 4}" text-anchor="middle">step</text>')
    parts.append(f'<text x="12" y="{height / 2}" transform="rotate(-90 12 {height / 2})" '
                 f'text-anchor="middle">{html.escape(ylabel)}</text>')
    for k, (name, values) in enumerate(series.items()):
        values = _per_column([p for p in values if math.isfinite(p[1])], x0, x1, width - left - right)
        pts = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in values)
        color = COLORS[k % len(COLORS)]
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{pts}"/>')
        if pts and " " not in pts:  # one point: a polyline of one point draws nothing
            x, y = pts.split(",")
            parts.append(f'<circle cx="{x}" cy="{y}" r="2.5" fill="{color}"/>')
        parts.append(f'<text x="{width - right - 4}" y="{top + 12 + 13 * k}" text-anchor="end" '
                     f'fill="{color}">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


LISTED = 10  # items of a long list shown; the rest collapsed (1,800 skipped videos were 71 KB of text per reason)
TABLE_LIMIT = 20  # a table with more rows or columns is collapsed (a Sintel release's per-pair EPE: 2,082 rows)


def _capped(items: list[str], where: str) -> tuple[str, str]:
    """``items`` (HTML) as the first :data:`LISTED` joined by "; ", and the rest in a collapsed ``<details>`` (""
    when none) that says how many and where (``where``: text) the whole list is kept; apart, as a ``<details>``
    cannot stand inside a ``<p>``."""
    more = items[LISTED:]
    return "; ".join(items[:LISTED]), (f"<details><summary>{len(more)} more ({html.escape(where)})</summary>"
                                       f"{'; '.join(more)}</details>" if more else "")


def _videos(count: int) -> str:
    return f"{count} video{'s' * (count != 1)}"


def _fitted_table(head: list[str], rows: list[list[str]]) -> str:
    """A table of ``head`` and ``rows`` (cells as HTML) that scrolls sideways when wider than the page, and a long
    or wide one collapsed under a line saying its size: a table in full that no reader takes in pushed the rest of
    the page out of sight."""
    table = (f"<div class='wide'><table><thead><tr>{''.join(f'<th>{c}</th>' for c in head)}</tr></thead><tbody>"
             + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
             + "</tbody></table></div>")
    if len(rows) <= TABLE_LIMIT and len(head) <= TABLE_LIMIT:
        return table
    return f"<details><summary>a table of {len(rows)} rows and {len(head)} columns</summary>{table}</details>"


MAX_FIGURE_WIDTH = 1100  # px: figures are shown at page width, so larger ones only bloat the file
MAX_FIGURES_PER_TASK = 12  # the rest are named, not inlined: many DAVIS sequences x models would bloat the page


def _img(path: Path, caption: str) -> str:
    """A figure inlined as a data URI; large PNGs are shrunk to page width and stored as JPEG (a full-resolution
    flow or DAVIS panel is several MB as PNG, which made reports of 15+ MB)."""
    import cv2
    import numpy as np

    try:
        raw = path.read_bytes()
    except OSError:  # a dangling link, no permission, a folder named *.png: named below like a damaged figure
        raw = b""
    mime, payload = "image/png", raw
    try:
        image = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR) if raw else None
    except cv2.error:
        image = None
    if image is None:  # a damaged figure is named, not shown as a broken image (an empty one raised here)
        return f"<p><b>unreadable figure</b> {html.escape(str(path))} ({html.escape(caption)}), left out.</p>"
    if image.shape[1] > MAX_FIGURE_WIDTH or len(raw) > 300_000:
        scale = min(1.0, MAX_FIGURE_WIDTH / image.shape[1])
        if scale < 1.0:
            image = cv2.resize(image, (MAX_FIGURE_WIDTH, max(1, round(image.shape[0] * scale))),
                               interpolation=cv2.INTER_AREA)
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
        if ok:
            mime, payload = "image/jpeg", jpeg.tobytes()
    data = base64.b64encode(payload).decode("ascii")
    return (f'<figure><img src="data:{mime};base64,{data}" alt="{html.escape(caption)}">'
            f'<figcaption>{html.escape(caption)}</figcaption></figure>')


# the per-task tables' columns whose direction is known: marked in their header (the headline says its own)
LOWER_IS_BETTER_COLUMNS = {"epe", "epe_noc", "epe_occ", "ae", "fl_all", "J_decay", "F_decay", "nonfinite_px"}
HIGHER_IS_BETTER_COLUMNS = {"acc_1px", "acc_3px", "acc_5px", "JF_mean", "J_mean", "F_mean", "J_recall", "F_recall",
                            "precision_at_1", "r_precision", "map_at_r", "nmi"}


def _column_header(column: str) -> str:
    if column in LOWER_IS_BETTER_COLUMNS:
        return f"{column} \u2193"
    if column in HIGHER_IS_BETTER_COLUMNS or column.startswith("R@"):
        return f"{column} \u2191"
    return column


def _table(rows: list[dict[str, Any]], columns: list[str], headers: dict[str, str] | None = None) -> str:
    def cell(v: Any) -> str:
        if v is None:  # undefined (written as null)
            return "-"
        if isinstance(v, float):
            return f"{v:.4f}"
        return html.escape(str(v))

    return _fitted_table([html.escape((headers or {}).get(c, c)) for c in columns],
                         [[cell(r.get(c, "")) for c in columns] for r in rows])


FLOW_FEATURE_METHOD = "match"  # flow's per-model row: zero-shot matching of the model's dense features


def degenerate(result: dict) -> str | None:
    """Why a task's numbers say nothing about the models (shown in the report, left out of the headline), or None.

    Retrieval over a single label (e.g. DAVIS instance retrieval on one single-object sequence) makes every
    neighbour relevant: every model scores 1 by construction. A set so easy that the baselines (raw pixels, random
    init) score a perfect MAP@R or J&F (held-out tails of two tracks, one per video: telling two scenes apart)
    cannot show weights doing better; judged by the baselines alone, so that seeds of one run are kept or left
    out together whatever their own scores.
    """
    if result.get("labels") == 1:
        return "only one label: every neighbour is relevant, so every model scores 1 by construction"
    baselines = [metrics for name, metrics in model_metrics(result).items() if is_baseline(name)]
    for key, name in (("map_at_r", "MAP@R"), ("JF_mean", "J&F")):
        values = [metrics.get(key) for metrics in baselines]
        if values and all(finite_number(v) and v >= 1.0 for v in values):
            size = f" ({result['labels']} labels)" if isinstance(result.get("labels"), int) else ""
            return (f"the baselines score a perfect {name}: the set{size} is too easy to show weights doing "
                    "better")
    return None


def uninformative_tasks(run: Path) -> list[tuple[str, str]]:
    """(task, why) for each evaluation in ``run/eval`` that says nothing about the models (:func:`degenerate`)."""
    found = []
    for path in sorted((run / "eval").glob("*/metrics.json")):
        try:
            why = degenerate(read_metrics(path))
        except (OSError, ValueError):  # named elsewhere as unreadable
            continue
        if why:
            found.append((path.parent.name, why))
    return found


def model_metrics(result: dict) -> dict[str, dict[str, Any]]:
    """A task's metrics per row: per model for retrieval and DAVIS (``models``), per method for flow
    (``methods.<name>.mean``, e.g. ``dis_medium``, ``match[<model>]``, ``transfer[<model>]``)."""
    if isinstance(result.get("methods"), dict):
        return {name: {**m["mean"], "s/pair": m.get("seconds_per_pair")} for name, m in result["methods"].items()
                if isinstance(m, dict) and isinstance(m.get("mean"), dict)}
    models = result.get("models")
    return {name: m for name, m in models.items() if isinstance(m, dict)} if isinstance(models, dict) else {}


HEADLINE_KEYS = (("JF_mean", "J&F"), ("map_at_r", "MAP@R"), ("epe", "EPE px"))  # the first a task has is its headline
LOWER_IS_BETTER_KEYS = ("epe",)


def headline_metric(result: dict) -> dict[str, Any] | None:
    """What a task's headline number is: ``{"metric": "J&F", "higher_is_better": True}``, or None."""
    present = {key for metrics in model_metrics(result).values() for key in metrics}
    for key, label in HEADLINE_KEYS:
        if key in present:
            return {"metric": label, "higher_is_better": key not in LOWER_IS_BETTER_KEYS}
    return None


def finite_number(value: Any) -> bool:
    """A number that counts in a headline, a mean or a win: not NaN or infinite (a diverged evaluation, or a hand
    edit; written as null in summary.json), nor a boolean (JSON true is no score of 1)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _whole_number(value: Any) -> bool:
    """A finite number equal to an integer (241, or 241.0)."""
    return finite_number(value) and value == int(value)


def is_baseline(row: str) -> bool:
    """A row every evaluation adds beside the weights evaluated (vidssl.eval.baselines.feature_models): raw pixels
    and the architectures at random init (``smallcnn (random init)``, ``smallcnn width=32 (random init)``)."""
    return row == "raw pixels" or row.endswith("(random init)")


def flow_references(result: dict) -> dict[str, float]:
    """A flow task's methods that learn nothing (zero flow, Farneback, DIS): their EPE, the scale a model's reads
    against (a model 2 px under zero flow is not near DIS)."""
    return {name: float(m["epe"]) for name, m in model_metrics(result).items()
            if "[" not in name and finite_number(m.get("epe"))}


def _headline_values(eval_results: dict[str, dict]) -> Iterator[tuple[str, str, Any]]:
    """(task, model, its headline value as its metrics.json holds it) for each model of each task that is not
    degenerate."""
    for task, result in eval_results.items():
        if degenerate(result):
            continue
        for name, metrics in model_metrics(result).items():
            if "methods" in result:
                prefix = FLOW_FEATURE_METHOD + "["
                if not (name.startswith(prefix) and name.endswith("]")):
                    continue
                name = name[len(prefix):-1]
            key = next((key for key, _ in HEADLINE_KEYS if key in metrics), None)
            if key is not None:
                yield task, name, metrics[key]


def headline_metrics(eval_results: dict[str, dict]) -> dict[str, dict[str, float]]:
    """Per task, per model, the one number a reader looks at first: DAVIS J&F, retrieval MAP@R (higher is
    better), flow EPE of matching the model's features (lower is better). Degenerate tasks are left out, and so is a
    model whose number is not a finite one (NaN would make every mean and comparison with it NaN or false; see
    :func:`not_finite_headlines`)."""
    out: dict[str, dict[str, float]] = {}
    for task, model, value in _headline_values(eval_results):
        if finite_number(value):
            out.setdefault(task, {})[model] = float(value)
    return out


def not_finite_headlines(eval_results: dict[str, dict]) -> dict[str, dict[str, float | None]]:
    """Per task, the models whose headline number is NaN or infinite (null, as metrics.json writes it): a diverged
    or broken model, which the report and summary.json name rather than leave out without a word."""
    out: dict[str, dict[str, float | None]] = {}
    for task, model, value in _headline_values(eval_results):
        if value is None or isinstance(value, float) and not math.isfinite(value):
            out.setdefault(task, {})[model] = value
    return out


def _metric_rows(result: dict) -> tuple[list[dict], list[str]]:
    rows, columns = [], ["model"]
    for model, metrics in model_metrics(result).items():
        row = {"model": model}
        for key, value in metrics.items():
            # None: a NaN metric as metrics.json writes it, shown as "-" (a column of them says it was not finite)
            if value is None or isinstance(value, (int, float)) and not isinstance(value, bool):
                row[key] = value
                if key not in columns:
                    columns.append(key)
            elif key == "recall_at_k" and isinstance(value, dict):
                for k, v in value.items():
                    row[f"R@{k}"] = v
                    if f"R@{k}" not in columns:
                        columns.append(f"R@{k}")
        rows.append(row)
    return rows, columns


def _task_size(result: dict) -> str:
    """What a task scored, in a few words: DAVIS's sequences (named when few), retrieval's queries and labels,
    flow's pairs."""
    sequences, pairs = result.get("sequences"), result.get("pairs")
    if isinstance(sequences, list):
        names = f": {', '.join(map(str, sequences))}" if 0 < len(sequences) <= 3 else ""
        return f"{len(sequences)} sequence{'s' * (len(sequences) != 1)}{names}"
    if finite_number(result.get("queries")) and finite_number(result.get("labels")):
        return f"{result['queries']} queries, {result['labels']} labels"
    if isinstance(pairs, list):
        return f"{len(pairs)} pair{'s' * (len(pairs) != 1)}"
    return ""


def _rows_legend(eval_results: dict[str, dict]) -> str:
    """What the rows that are not the user's weights are, for those present."""
    names = {name for result in eval_results.values() for name in model_metrics(result)}
    said = []
    if any(name == "raw pixels" or name.endswith("[raw pixels]") for name in names):
        said.append("<i>raw pixels</i>: Lab colour averaged over 8x8 cells (DAVIS, flow) or over a 16x16 grid "
                    "(retrieval), nothing learned")
    if any(name.rstrip("]").endswith("(random init)") for name in names):
        said.append("<i>(random init)</i>: the same architecture with its initial weights, untrained")
    if any(name.startswith(FLOW_FEATURE_METHOD + "[") for name in names):
        said.append(f"<i>{FLOW_FEATURE_METHOD}[model]</i>: flow from matching the model's dense features between the "
                    "frames; <i>transfer[model]</i>: a small flow decoder trained on synthetic motion over the frozen "
                    "features; the rest are classical methods")
    return f"<p>Rows: {'; '.join(said)}.</p>" if said else ""


def _headline_section(summary: dict, eval_results: dict[str, dict]) -> str:
    """The headline numbers, one row per task with its metric and direction, each model a column; a number that is
    not finite shows as NaN (not "-": that model was not evaluated there) and is said below the table."""
    broken = not_finite_headlines(eval_results)
    cells: dict[str, dict[str, Any]] = {task: {} for task in summary["headline_metric"]}
    for task, model, value in _headline_values(eval_results):  # in the tables' order
        if model in summary["headline"].get(task, {}):
            cells[task][model] = summary["headline"][task][model]
        elif model in broken.get(task, {}):
            cells[task][model] = _spelled(value)
    models = list(dict.fromkeys(m for row in cells.values() for m in row))
    rows = []
    for task, row in cells.items():
        what = summary["headline_metric"].get(task) or {}
        better = "higher" if what.get("higher_is_better", True) else "lower"
        size = _task_size(eval_results[task])
        rows.append({"task": f"{task} ({size})" if size else task,
                     "metric": f"{what.get('metric', '?')} ({better} is better)", **{m: row.get(m) for m in models}})
    notes = []
    for task, row in broken.items():
        path = Path(summary["run_dir"]) / "eval" / task / "metrics.json"
        for model, value in row.items():
            who = f"the trained backbone ({model})" if model == summary.get("trained_model") else model
            why = "a broken evaluation" if is_baseline(model) else "a diverged or broken model"
            notes.append(f"Not finite: {who} scored {_spelled(value)} on {task}: {path}; {why}.")
    for task, result in eval_results.items():
        refs = flow_references(result) if "methods" in result else {}
        if refs and task in cells:
            notes.append(f"{task}, methods that learn nothing (EPE px): "
                         + ", ".join(f"{name} {epe:.2f}" for name, epe in refs.items()))
    weights = (f"<p>Weights: <code>{html.escape(summary['weights'])}</code></p>" if summary.get("weights") else "")
    return ("<h2>Headline</h2>" + weights + _table(rows, ["task", "metric", *models]) + _rows_legend(eval_results)
            + "".join(f"<p>{html.escape(n)}</p>" for n in notes)
            + "<p>One run of one seed: runs of one config with other seeds can differ by several points; weigh "
              "settings over several seeds with <code>vidssl compare</code>.</p>")


def _spelled(value: float | None) -> str:
    """A headline number that is not finite, as the headline shows it: metrics.json writes NaN and infinity as
    null."""
    return "NaN" if value is None or math.isnan(value) else str(value)


def tabled_weights(eval_results: dict[str, dict]) -> set[str]:
    """The row names of the evaluation tables (task -> metrics.json) that are weights files, not baselines."""
    prefix, models = FLOW_FEATURE_METHOD + "[", set()
    for result in eval_results.values():
        for name in model_metrics(result):
            if "methods" not in result:
                models.add(name)
            elif name.startswith(prefix):  # flow's rows are methods: a model's is match[<model>]
                models.add(name[len(prefix):-1])
    return {name for name in models if not is_baseline(name)}


def _trained_row(run: Path, eval_results: dict[str, dict]) -> str:
    """The trained backbone's row name in the run's evaluation tables (``eval_results``: task -> metrics.json): as
    the evaluation named it (recorded in its stage marker; a run folder renamed since keeps the old name in its
    tables), else the one row of the tables that is not a baseline, else as it would be named now."""
    try:
        recorded = json.loads((run / "stages" / "eval.json").read_text(encoding="utf-8")).get("trained_model")
    except (OSError, ValueError, AttributeError):
        recorded = None
    if isinstance(recorded, str):
        return recorded
    # evaluated stage by stage or renamed since: named as its --weights was spelled (runs/real/backbone.pt, or
    # backbone.pt from inside the folder) in a folder of whatever name then, which the report cannot know.
    trained = tabled_weights(eval_results)
    if len(trained) == 1:
        return trained.pop()
    # several weights evaluated side by side (or none yet): the one named as this folder's backbone.pt would be
    candidates = [weights_row_name(run.resolve() / "backbone.pt"), "backbone"]
    return next((name for name in candidates if name in trained), candidates[0])


def _figure_pngs(folder: Path) -> list[Path]:
    """The figures an evaluation made in ``folder``: its PNGs, but for DAVIS's predicted masks
    (``eval.davis.save_masks``: a label map per frame, model and sequence, for the official scorer)."""
    return sorted(png for png in folder.rglob("*.png") if png.relative_to(folder).parts[0] != MASKS)


def _figures(pngs: list[Path], limit: int) -> list[Path]:
    """At most ``limit`` of ``pngs``, taken in turn from each folder (``overlays/<model>/``): sorted alone, the
    first dozen of 13 DAVIS sequences x 3 models were all raw pixels'."""
    groups: dict[Path, list[Path]] = {}
    for png in pngs:
        groups.setdefault(png.parent, []).append(png)
    chosen, depth = [], 0
    while len(chosen) < limit and any(depth < len(g) for g in groups.values()):
        chosen += [g[depth] for g in groups.values() if depth < len(g)]
        depth += 1
    return sorted(chosen[:limit])


def _stages_section(run: Path, markers: dict, switches: dict) -> str:
    """One line per stage of a pretrain run (``markers``: stage -> its completed marker or None): done (in how
    long), begun and not complete, switched off (``switches``: the config's pretrain section), or not run; a run cut
    short says so before its numbers do."""
    rows = []
    for stage, done in markers.items():
        if done is not None:
            seconds = done.get("seconds")
            status = "done" if not finite_number(seconds) else \
                f"done in {seconds:.0f} s" if seconds < 120 else f"done in {seconds / 60:.1f} min"
        elif (run / "stages" / f"{stage}.started.json").exists():
            status = "begun, not complete: rerun the same command to go on"
        elif switches.get(f"run_{stage}") is False:
            status = f"switched off (pretrain.run_{stage}: false)"
        else:
            status = "not run"
        rows.append({"stage": stage, "status": status})
    return "<h2>Stages</h2>" + _table(rows, ["stage", "status"])


def _not_made(run: Path) -> list[tuple[str, str]]:
    """(what, the command that makes it) for each part of a run made stage by stage that ``run`` does not hold, in
    the walkthrough's order: its pairs, training, exported weights, evaluations. A part whose file is there but
    damaged counts as there: it is named among the unreadable files, with its own fix."""

    def at(part: str) -> str:  # quoted for the shell: a run folder with a space is pasted as one argument
        return shell_arg(run / part)

    parts = (("mined pairs (pairs/)", f"vidssl mine VIDEOS --out {at('pairs')}", ("pairs/dataset.json",)),
             ("training (train/)", f"vidssl train {at('pairs')} --out {at('train')}",
              ("train/log.jsonl", "train/stats.json", "train/checkpoint.pt")),
             ("exported weights (backbone.pt, model_card.json)",
              f"vidssl export {at('train')} --out {at('backbone.pt')}", ("model_card.json", "backbone.pt")),
             ("evaluations (eval/<task>/)", f"vidssl eval TASK --weights {at('backbone.pt')} --data DATA --out "
              f"{at('eval')}/TASK", ()))
    made = {name for _, _, names in parts for name in names if (run / name).exists()}
    evaluated = any((run / "eval").glob("*/metrics.json"))
    return [(what, command) for what, command, names in parts
            if not (made & set(names) if names else evaluated)]


def _not_made_section(run: Path) -> str:
    """A run made stage by stage (no ``stages/``: nothing records which stages ran): the parts it does not hold,
    each with the command that makes it (a report of pairs alone said nothing of the rest); "" when it holds them
    all."""
    items = "".join(f"<li>{html.escape(what)}: <code>{html.escape(command)}</code></li>"
                    for what, command in _not_made(run))
    if not items:
        return ""
    return (f"<h2>Not in this run folder</h2><p>Made stage by stage (no stages/ folder: the README walkthrough's "
            f"second form); these parts are not here yet, each made by its command, then "
            f"<code>vidssl report {html.escape(shell_arg(run))}</code> again:</p><ul>{items}</ul>")


def _reach_line(result: dict, source: Path) -> str:
    """A flow evaluation's pairs that feature matching cannot express (see vidssl.eval.flow.metrics.window_reach),
    the first few named and the rest collapsed (``source``: the metrics.json that lists them all); empty when every
    pair is mostly in reach or the metrics.json records no reach."""
    reach = result.get("reach")
    pairs = reach.get("pairs") if isinstance(reach, dict) else None
    if not isinstance(pairs, dict):
        return ""
    short = [html.escape(f"{name} {r['in_reach_pct']:.0f}% (no such matcher scores under EPE {r['floor_epe']:.2f})")
             for name, r in pairs.items() if isinstance(r, dict) and finite_number(r.get("in_reach_pct"))
             and finite_number(r.get("floor_epe")) and r["in_reach_pct"] < 50]
    if not short:
        return ""
    shown, more = _capped(short, f"all {len(short)} in {source}")
    px = reach.get("px")  # a hand edit can make it anything: a number is shown, anything else is not (nor markup)
    window = f"up to +-{px:g} px per axis" if finite_number(px) else "only within its search window"
    return (f"<p><b>Out of reach:</b> feature matching expresses motion {window}; "
            f"pixels within it: {shown}{'; and more below' if more else ''}. Their match rows measure the shortfall "
            f"from that floor.</p>{more}")


def _data_line(result: dict) -> str:
    """What an evaluation scored: its data folder and size (retrieval's items, queries and labels, DAVIS's
    sequences, flow's pairs), and how many items it skipped; empty when its metrics.json records none of it."""
    data = result.get("data", result.get("data_dir"))
    sizes = [f"{result[key]} {key}" for key in ("items", "queries", "labels") if finite_number(result.get(key))]
    for key in ("sequences", "pairs"):  # lists of names
        if isinstance(result.get(key), list):
            sizes.append(f"{len(result[key])} {key}")
    skipped = result.get("skipped")
    if isinstance(skipped, dict) and skipped:
        sizes.append(f"{sum(len(v) if isinstance(v, list) else 1 for v in skipped.values())} skipped")
    if not isinstance(data, str) and not sizes:
        return ""
    where = f"<code>{html.escape(data)}</code>" if isinstance(data, str) else "data"
    return f"<p>Scored on {where}{html.escape(' (' + ', '.join(sizes) + ')' if sizes else '')}.</p>"


_INLINE = re.compile(r"\*\*(.+?)\*\*|`([^`]+)`")


def _inline(text: str) -> str:
    """**bold** and `code` of one markdown line as HTML, the rest escaped."""
    out, at = [], 0
    for m in _INLINE.finditer(text):
        out.append(html.escape(text[at:m.start()]))
        out.append(f"<b>{html.escape(m.group(1))}</b>" if m.group(1) is not None
                   else f"<code>{html.escape(m.group(2))}</code>")
        at = m.end()
    return "".join(out) + html.escape(text[at:])


def markdown_html(text: str, heading_level: int = 4) -> str:
    """The markdown the evaluations write (``metrics.md``: headings, paragraphs, pipe tables, bullet lists, **bold**
    and `code`) as HTML; headings start at ``<h{heading_level}>``. Not a general markdown reader."""
    blocks, lines = [], text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        if not line:
            i += 1
        elif line.startswith("#"):
            level = min(6, heading_level + len(line) - len(line.lstrip("#")) - 1)
            blocks.append(f"<h{level}>{_inline(line.lstrip('#').strip())}</h{level}>")
            i += 1
        elif line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                rows.append([cell.strip() for cell in lines[i].strip().strip("|").split("|")])
                i += 1
            body = [r for r in rows[1:] if not all(set(c) <= set(":-") and c for c in r)]
            blocks.append(_fitted_table([_inline(c) for c in rows[0]], [[_inline(c) for c in r] for r in body]))
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].strip().startswith("- "):
                items.append(f"<li>{_inline(lines[i].strip()[2:])}</li>")
                i += 1
            blocks.append(f"<ul>{''.join(items)}</ul>")
        else:
            para = []
            while i < len(lines) and lines[i].strip() and not lines[i].strip().startswith(("#", "|", "- ")):
                para.append(lines[i].strip())
                i += 1
            blocks.append(f"<p>{_inline(' '.join(para))}</p>")
    return "".join(blocks)


def _task_block(folder: Path, result: dict) -> str:
    """An evaluation's tables as the evaluation wrote them for people (``metrics.md``: its protocol, units, bold
    best values, flow's per-dataset and per-pair EPE), else built from ``metrics.json`` (a hand-made or older
    folder without one, or one older than its metrics.json: an evaluation killed between the two writes)."""
    try:
        if (folder / "metrics.md").stat().st_mtime_ns >= (folder / "metrics.json").stat().st_mtime_ns:
            return _data_line(result) + markdown_html((folder / "metrics.md").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        pass
    rows, columns = _metric_rows(result)
    headers = {c: _column_header(c) for c in columns}
    block = _data_line(result) + _table(rows, columns, headers)
    if any(headers[c] != c for c in columns):
        block += "<p>\u2191 higher is better, \u2193 lower is better.</p>"
    return block


def _code_line(parts: dict[str, Any]) -> str:
    """Which code made the run: one line when every part (``parts``: what -> its versions record) was made by the
    same vidssl at the same commit and uncommitted changes (installed, not a checkout: the same version), else a
    warning naming which part ran which."""
    spelled: dict[str, list[str]] = {}
    for part, record in parts.items():
        if not isinstance(record, dict):
            continue
        if isinstance(record.get("git_sha"), str):
            changes = record.get("git_diff_sha256")
            code = (f"vidssl {record.get('vidssl', '?')} at {record['git_sha']}"
                    + (f" (uncommitted changes {changes[:12]})" if isinstance(changes, str) else ""))
        elif isinstance(record.get("vidssl"), str):  # pip-installed: a newer version evaluating is no less a change
            code = f"vidssl {record['vidssl']}"
        else:
            continue
        spelled.setdefault(f"{code}, torch {record.get('torch', '?')}", []).append(part)
    if len(spelled) == 1:
        (code, _), = spelled.items()
        return f"<p>Code: {html.escape(code)}.</p>"
    if not spelled:
        return ""
    items = "".join(f"<li>{html.escape(code)}: {html.escape(', '.join(what))}</li>" for code, what in spelled.items())
    return (f"<div class='warn'><p><b>Made by different code:</b> the code changed while the run was made (another "
            f"commit, uncommitted changes or another installed version), so its parts may not match each other; "
            f"rerun the stages to make them with one code:</p><ul>{items}</ul>"
            f"</div>")


def _fitted_steps(run: Path, final: dict) -> str:
    """How the step count came about: the budget fit (``train.fit_budget``) under the ``train.steps`` cap, each fit
    that changed it, the minutes and the precision (from ``train/config.yaml`` and the final stats)."""
    from vidssl.config import recorded_config

    trained = (recorded_config(run / "train" / "config.yaml") or {}).get("train")
    if not isinstance(trained, dict):
        return ""
    parts = []
    # fitted only with a budget (train.py), which vidssl train without --budget-minutes has not
    if trained.get("fit_budget") and finite_number(trained.get("steps")) and finite_number(
            trained.get("budget_minutes")):
        # [step, steps] pairs as training writes them; a hand edit ("fit_history": 1, a pair of text) is left out
        history = final.get("fit_history")
        fits = [f for f in history if isinstance(f, list) and len(f) == 2 and all(map(_whole_number, f))] \
            if isinstance(history, list) else []
        planned = "; ".join(f"{int(total)} after step {int(at)}" for at, total in fits)
        parts.append(f"the count the time budget fitted (train.fit_budget; train.steps={trained['steps']} is the cap"
                     + (f"; planned {planned}" if planned else "") + ")")
        steps = final.get("total_steps")
        if final.get("pinning_repeats") is True and _whole_number(steps):
            parts.append(f"repeated bit for bit by --set train.steps={int(steps)} --set train.fit_budget=false")
        elif final.get("pinning_repeats") is False:
            parts.append("not repeated bit for bit by pinning train.steps: a fit after the warm-up, or one that "
                         "moved the warm-up or the main miner's start, or a stop short of the count, changed its "
                         "schedule")
    if finite_number(final.get("minutes")) and finite_number(trained.get("budget_minutes")):
        parts.append(f"{final['minutes']:.1f} of its {trained['budget_minutes']:.1f} minutes")
    sessions, all_minutes = final.get("sessions"), final.get("minutes_all_sessions")
    if _whole_number(sessions) and sessions > 1 and finite_number(all_minutes):  # resumed: the minutes above are
        # the last session's (0.6 of a run whose sessions trained 2.3)
        parts.append(f"the last of {int(sessions)} sessions; {all_minutes:.1f} minutes in all, each session up to "
                     "its last checkpoint")
    if isinstance(trained.get("precision"), str):
        parts.append(f"precision {trained['precision']}")
    return ", ".join(parts)


def _checkpoint_progress(path: Path) -> dict[str, Any]:
    """The steps a training checkpoint holds (``step``, ``total_steps``) and the TRAIN_SUMMARY_KEYS of its metrics
    that are finite numbers; {} where there is none or it cannot be read (torn, another tool's). Memory-mapped, so
    its tensors are not read: a large model's costs no more than a small one's."""
    if not path.is_file():
        return {}
    import torch

    try:
        saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # torch raises many kinds for a damaged file: the report goes on without it
        return {}
    if not isinstance(saved, dict) or not all(_whole_number(saved.get(k)) for k in ("step", "total_steps")):
        return {}
    metrics = saved.get("metrics") if isinstance(saved.get("metrics"), dict) else {}
    return {**{k: metrics[k] for k in TRAIN_SUMMARY_KEYS if finite_number(metrics.get(k))},
            "step": int(saved["step"]), "total_steps": int(saved["total_steps"])}


def build_report(run_dir: str | Path) -> Path:
    """Write ``report.html`` and ``summary.json`` into ``run_dir`` from what the stages left there."""
    # resolved: summary.json's paths and the report's load line hold from any folder, not only the one it ran in
    run = Path(run_dir).resolve()
    sections: list[str] = []
    summary: dict[str, Any] = {"run_dir": str(run)}

    damaged: list[str] = []  # files the report cannot read: named at its top
    warnings = _read_json(run / WARNINGS, _check_warnings, "rerun the same `vidssl pretrain` command to rewrite it",
                          damaged) or []
    # [] as pretrain writes it when there are none, also for a pretrain run (stages/) stopped before it wrote
    # warnings.json; no key where nothing was checked (a run made stage by stage) or a damaged file's are not known
    # to be none
    if ((run / WARNINGS).is_file() or (run / "stages").is_dir()) and not damaged:
        summary["warnings"] = warnings
    if warnings:
        items = "".join(f"<li>{html.escape(w)}</li>" for w in warnings)
        sections.append(f"<div class='warn'><h2>Warnings</h2><ul>{items}</ul></div>")

    def text(value: Any) -> str:  # a value of a hand-editable file, shown as text
        return html.escape(str(value))

    remerge = f"rewrite it from the mined videos: vidssl mine --merge --out {shell_arg(run / 'pairs')}"
    ds = _read_json(run / "pairs" / "dataset.json", _check_dataset, remerge, damaged)
    if ds is None and (run / "stages" / "mine.json").is_file() and not (run / "pairs" / "dataset.json").exists():
        # deleted after a mining that completed: the data section (and the warnings read from it) left in silence
        damaged.append(f"{run / 'pairs' / 'dataset.json'}: missing, though the mining stage completed; {remerge}")
    if ds is not None:
        videos = ds.get("videos", {})
        cut_short = videos.get("cut_short", {})
        summary["data"] = {"pairs": ds.get("pairs"), "videos_found": videos.get("found"),
                           "videos_mined": videos.get("mined"), "videos_cut_short": len(cut_short),
                           "videos_skipped": {k: len(v) for k, v in videos.get("skipped", {}).items()},
                           "tracks_rejected": ds.get("tracks_rejected", {}),
                           "start_frames_rejected": ds.get("start_frames_rejected", {})}
        details = videos.get("skipped_detail", {})  # why each one, the setting or the fix (mining since 0.1.0)

        def named(path: Any) -> str:
            detail = details.get(path) if isinstance(path, str) else None  # a hand edit: a list is no key
            return f"{path} ({detail})" if isinstance(detail, str) else str(path)

        full_list = f"the full list: {run / 'pairs' / 'dataset.json'}"
        skipped = "".join(f"<li>{text(reason)} ({_videos(len(paths))}): "
                          f"{''.join(_capped([text(named(path)) for path in paths], full_list))}</li>"
                          for reason, paths in videos.get("skipped", {}).items())
        # mined in part: mined, yet part of each never seen; or pending, yet trained on up to its cut
        in_part = {"mined only up to damage": videos.get("partial", {}), "cut short by the time budget": cut_short}
        for kind, notes_of in in_part.items():
            if notes_of:
                notes = [text(f"{path} ({note})") for path, note in notes_of.items()]
                skipped += f"<li>{kind} ({_videos(len(notes_of))}): {''.join(_capped(notes, full_list))}</li>"
        skipped = skipped or "<li>none</li>"
        kinds = ["Skipped videos", *(f"videos {kind}" for kind, notes_of in in_part.items() if notes_of)]
        listed = ", ".join(kinds[:-1]) + ", and " + kinds[-1] if len(kinds) > 1 else kinds[0]
        from tracking.video_miner import START_REJECTIONS, WINDOW_LOSSES

        rejects = _table([{"reason": k, "windows": v, "meaning": WINDOW_LOSSES.get(k, "")}
                          for k, v in sorted(ds.get("tracks_rejected", {}).items())], ["reason", "windows", "meaning"])
        starts = _table([{"reason": k, "start frames": v, "meaning": START_REJECTIONS.get(k, "")}
                         for k, v in sorted(ds.get("start_frames_rejected", {}).items())],
                        ["reason", "start frames", "meaning"])
        # what mining used (pairs/dataset.json), which under pretrain is the part of mine.time_range before the
        # held-out tail: config.yaml records the user's whole range
        mined_span = _time_span(ds.get("config"))
        span_text = f" from frames {mined_span[0]:.0%}-{mined_span[1]:.0%} of each video" \
            if mined_span is not None and mined_span != [0.0, 1.0] else ""
        sections.append(
            f"<h2>Data</h2><p>{text(videos.get('found', '?'))} videos found, {text(videos.get('mined', '?'))} mined"
            f"{f', {len(cut_short)} cut short by the time budget' if cut_short else ''}, "
            f"<b>{text(ds.get('pairs', '?'))}</b> positive pairs{html.escape(span_text)}.</p><p>{listed}:</p>"
            f"<ul>{skipped}</ul>"
            f"<p>Pair windows lost (a window: the {text(ds.get('track_length', '?'))} frames between a pair's "
            f"two patches, the paper's track), by reason:</p>{rejects}"
            f"<p>Start frames where no track began, by reason:</p>{starts}")
        mined_with = ds.get("config") if isinstance(ds.get("config"), dict) else {}
        layout = "first patch | last patch" + (" | the same-frame background (marked bg)"
                                               if mined_with.get("background_patches") else "")
        for grid in sorted((run / "pairs").glob("*.png")):
            sections.append(_img(grid, f"mined pairs ({grid.name}): {layout}"))
    ho = _read_json(run / "pairs_held_out" / "dataset.json", _check_dataset,
                    f"rewrite it from the mined videos: vidssl mine --merge --out {shell_arg(run / 'pairs_held_out')}",
                    damaged)
    if ho is not None:
        videos = ho.get("videos", {})
        skipped = {k: len(v) for k, v in videos.get("skipped", {}).items()}
        summary["held_out"] = {"pairs": ho.get("pairs"), "videos_found": videos.get("found"),
                               "videos_mined": videos.get("mined"), "videos_skipped": skipped}
        span = _time_span(ho.get("config"))
        if ds is not None and ho.get("videos_root") != ds.get("videos_root"):  # the demo's held-out clips
            part = "clips other than the training videos"
        elif span is not None:
            part = f"frames {span[0]:.0%}-{span[1]:.0%} of each video"
        else:
            part = "the end of each video"
        why = ", ".join(f"{n} {reason}" for reason, n in skipped.items())
        sections.append(
            f"<h3>Held out</h3><p>For instance retrieval across time, {html.escape(part)} were mined apart and never "
            f"trained on: <b>{text(ho.get('pairs', '?'))}</b> pairs from {text(videos.get('mined', '?'))} of "
            f"{text(videos.get('found', '?'))} videos{html.escape(f' (skipped: {why})') if why else ''}.</p>")

    log = read_jsonl(run / "train" / "log.jsonl")
    # one record per step, the last one written, in step order: a log joined by hand from two sessions (steps 10,
    # 20, 30, 20, 30, 40) drew its curves back over themselves; a step that is no number (a hand edit) is left out
    by_step = {r["step"]: r for r in log if finite_number(r.get("step"))
               and isinstance(r.get("loss"), (int, float)) and not isinstance(r["loss"], bool)}  # NaN: a divergence
    train_records = [by_step[step] for step in sorted(by_step)]
    last = train_records[-1] if train_records else {}
    # the final stats where the training wrote them for this log's end or later: the last log step (every
    # log_every steps) can be a few steps short of where it stopped, and a training stopped before its first log
    # step has only them
    final = json_object(run / "train" / "stats.json")  # unreadable: {}, and the log stands in
    # a step written as 241.0 (a float through some tool) is step 241: it discarded the whole file ("240 of ? steps")
    final.update({k: int(final[k]) for k in ("step", "total_steps") if _whole_number(final.get(k))})
    if not (_whole_number(final.get("step")) and final["step"] >= last.get("step", 0)):  # "step": true is no step
        final = {}
    # neither the final stats nor a log step (a training killed before its first log step): its last checkpoint
    saved = _checkpoint_progress(run / "train" / "checkpoint.pt") if not (final or last) else {}
    if final or last or saved:
        summary["train"] = {k: final.get(k, last.get(k, saved.get(k))) for k in TRAIN_SUMMARY_KEYS
                            if k in final or k in last or k in saved}
        charts = []
        for title, keys, ylabel in CURVES:
            series = {k: [(r["step"], float(r[k])) for r in train_records if finite_number(r.get(k))]
                      for k in keys}
            series = {k: v for k, v in series.items() if v}
            if series:
                charts.append(svg_line_chart(series, title, ylabel))
        train = summary["train"]
        fitted = _fitted_steps(run, final)
        state = (f"{text(train.get('step', '?'))} of {text(train.get('total_steps', '?'))} steps"
                 + (" at its last checkpoint (train/checkpoint.pt: no final stats or log step yet)" if saved else "")
                 + (f", {html.escape(fitted)}" if fitted else "")
                 + (f", stopped: {text(train['stopped'])}" if "stopped" in train else ""))
        curves = "<div class='charts'>" + "".join(charts) + "</div>" if charts else \
            "<p>No curve: the log holds no step yet (one every train.log_every steps).</p>"
        sections.append(f"<h2>Training</h2><p>{state}.</p>{curves}")

    card_path = run / "model_card.json"
    card = _read_json(card_path, lambda card: _expect(card, dict, "the file"),
                      f"export the weights again: vidssl export {shell_arg(run / 'train')} --out "
                      f"{shell_arg(run / 'backbone.pt')}", damaged)
    if card_path.is_file():  # a damaged card still says the export finished: the weights have their evaluation rows
        # the card's own weights file (also the card of backbone.pth, whose summary named a missing backbone.pt)
        listed = card.get("files") if card is not None else None
        named = [run / f for f in listed if isinstance(f, str) and not f.endswith(".safetensors")] \
            if isinstance(listed, list) else []
        summary["weights"] = str(next((f for f in named if f.is_file()), run / "backbone.pt"))
        summary["trained_model"] = None  # its row in every evaluation: below, from the tables
    if card is not None:
        weights = summary["weights"]
        summary["model_card"] = {k: card[k] for k in ("arch", "input_size") if k in card}
        training = card.get("training") if isinstance(card.get("training"), dict) else {}
        summary["model_card"].update({k: training[k] for k in ("steps", "total_steps", "complete") if k in training})
        sections.append(f"<h2>Exported backbone</h2><p><code>{html.escape(weights)}</code>: "
                        f"{text(card.get('arch'))}, {text(training.get('steps', '?'))} of "
                        f"{text(training.get('total_steps', '?'))} steps. Load it with <code>vidssl.load_backbone("
                        f"{html.escape(repr(weights))})</code>.</p><details><summary>model card "
                        f"(model_card.json)</summary><pre>{html.escape(json.dumps(card, indent=2))}</pre></details>")

    eval_results: dict[str, dict] = {}
    eval_sections: list[str] = []
    for metrics_path in sorted((run / "eval").glob("*/metrics.json")):
        task = metrics_path.parent.name
        try:
            result = read_metrics(metrics_path, rows=True)
        except (OSError, ValueError) as e:  # one damaged file must not cost the whole report (JSONDecodeError too)
            eval_sections.append(f"<h3>{html.escape(task)}</h3><p><b>unreadable</b> "
                                 f"{html.escape(str(metrics_path))}: {html.escape(str(e))}; rerun this evaluation "
                                 f"to rewrite it.</p>")
            continue
        eval_results[task] = result
        block = [f"<h3>{html.escape(task)}</h3>", _task_block(metrics_path.parent, result)]
        why = degenerate(result)
        if why:
            block.append(f"<p><b>Not informative:</b> {html.escape(why)} (left out of the headline).</p>")
        block.append(_reach_line(result, metrics_path))
        pngs = _figure_pngs(metrics_path.parent)
        shown = _figures(pngs, MAX_FIGURES_PER_TASK)
        for png in shown:
            block.append(_img(png, f"{task}: {png.relative_to(metrics_path.parent)}"))
        more = [png for png in pngs if png not in shown]
        if more:  # named while a reader can take the list in; hundreds are a count
            names = ": " + ", ".join(str(png.relative_to(metrics_path.parent)) for png in more) \
                if len(more) <= MAX_FIGURES_PER_TASK else ""
            block.append(f"<p>{len(more)} more figures in {html.escape(str(metrics_path.parent))}, not shown"
                         f"{html.escape(names)}.</p>")
        eval_sections.append("".join(block))
    for path in missing_metrics(run):
        eval_sections.append(f"<h3>{html.escape(path.parent.name)}</h3><p><b>missing</b> "
                             f"{html.escape(str(path))}: the same <code>vidssl pretrain</code> command evaluates "
                             f"it again (with its evaluation on and its data there).</p>")
    failures = read_failures(run)
    if failures:
        items = "".join(f"<li><b>{html.escape(t)}</b>: {html.escape(why)}</li>" for t, why in failures.items())
        eval_sections.append(f"<h3>Failed evaluations</h3><ul>{items}</ul><p>Fix the data and rerun the same "
                             f"<code>vidssl pretrain</code> command: finished tasks are kept.</p>")
        summary["eval_failed"] = failures
    if eval_sections:
        sections += ["<h2>Evaluation</h2>", *eval_sections]
    tabled = tabled_weights(eval_results)
    if "trained_model" in summary:
        summary["trained_model"] = _trained_row(run, eval_results)
    elif len(tabled) == 1:  # no export in RUN (stage by stage, weights written elsewhere):
        summary["trained_model"] = tabled.pop()  # the one weights file its tables hold
    resolved = run / "config.yaml"
    if not resolved.is_file() and (run / "train" / "config.yaml").is_file():  # made stage by stage: its training's
        resolved = run / "train" / "config.yaml"
    if resolved.is_file():  # what a script needs to reproduce the run: the config file, its seed, the code's versions
        import yaml

        summary["config"] = str(resolved)
        try:
            recorded = yaml.safe_load(resolved.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:  # a hand edit: the report still gets written
            damaged.append(f"{resolved}: unreadable ({str(e).splitlines()[0]}); rerun the stage that wrote it")
            recorded = None
        versions = recorded.get("versions") if isinstance(recorded, dict) else None
        # JSON values as they are; anything else as text: a YAML date there is no JSON, and failed summary.json
        # after report.html was written
        summary["versions"] = {str(k): v if v is None or isinstance(v, (str, int, float, bool)) else str(v)
                               for k, v in versions.items()} if isinstance(versions, dict) else None
        config = recorded.get("config") if isinstance(recorded, dict) else None
        seed = config.get("seed") if isinstance(config, dict) else None
        summary["seed"] = seed if isinstance(seed, int) and not isinstance(seed, bool) else None
    else:
        recorded = None
    top = 1 if warnings else 0  # what comes before the headline: the warnings, the files left unread, the stages
    if damaged:
        items = "".join(f"<li>{html.escape(why)}</li>" for why in damaged)
        sections.insert(top, f"<div class='warn'><h2>Unreadable files</h2><p>Left out of this report and of "
                             f"summary.json:</p><ul>{items}</ul></div>")
        top += 1
    markers = None
    if (run / "stages").is_dir():  # a pretrain run: a run cut short says so before its numbers do
        from vidssl.pipeline import STAGES, Stages

        # as the pipeline reads them: a marker that is no JSON object is not complete (the pipeline redoes it)
        markers = {stage: Stages(run).done(stage) for stage in STAGES}
        config = recorded.get("config") if isinstance(recorded, dict) else None
        switches = config.get("pretrain") if isinstance(config, dict) else None
        sections.insert(top, _stages_section(run, markers, switches if isinstance(switches, dict) else {}))
        top += 1
    elif not_made := _not_made_section(run):  # made stage by stage: what is not there yet, and its command
        sections.insert(top, not_made)
        top += 1
    # which code made each part: a checkout edited between the stages of a run made its parts with other code
    parts = {resolved.relative_to(run).as_posix(): recorded.get("versions") if isinstance(recorded, dict) else None}
    if card is not None:
        parts.update({"training": card.get("versions"), "export": card.get("exported_with")})
    parts.update({f"evaluation {task}": result.get("versions") for task, result in eval_results.items()})
    code = _code_line(parts)
    if code:
        sections.insert(top, code)
        top += 1
    summary["headline"] = headline_metrics(eval_results)  # {} without an evaluation: the keys are always there
    # apart from headline, which holds numbers only (a null there failed `vidssl pretrain`'s last lines)
    summary["headline_not_finite"] = {task: list(row) for task, row in not_finite_headlines(eval_results).items()}
    summary["headline_metric"] = {task: headline_metric(result) for task, result in eval_results.items()
                                  if task in summary["headline"] or task in summary["headline_not_finite"]}
    if eval_results:
        sections.insert(top, _headline_section(summary, eval_results))
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>vidssl report</title><style>"
            "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
            "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
            "text-align:right}th{background:#f4f4f4}td:first-child{text-align:left}"
            ".wide{overflow-x:auto}summary{cursor:pointer;color:#555}"
            "img{max-width:100%}figure{margin:1em 0}.charts svg{margin:4px}pre{background:#f8f8f8;padding:8px}"
            ".warn{background:#fff4e0;border:1px solid #e0a040;padding:0 1em}"
            "</style></head><body><h1>vidssl run: " + html.escape(run.resolve().name) + "</h1>"
            + "".join(sections) + "</body></html>")
    if markers is not None:  # what `vidssl pretrain` records of each stage, also when rebuilt by `vidssl report`
        from vidssl.pipeline import latest_training

        summary["stages"] = {stage: None if marker is None else {k: v for k, v in marker.items() if k != "config"}
                             for stage, marker in markers.items()}
        summary["stages"]["train"] = latest_training(run, summary["stages"]["train"])  # as the pipeline said it
    summary_text = json_text(summary) + "\n"  # before either file is written: one that cannot be is neither
    atomic_write_text(run / "report.html", page)
    atomic_write_text(run / "summary.json", summary_text)
    return run / "report.html"
