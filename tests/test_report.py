"""The report and summary.json from a hand-made run folder: every evaluation's table (flow's per method), the
headline per model (flow: EPE of matching each model's features), degenerate and failed evaluations said as such,
and `vidssl compare` finding the trained model's row whatever the run folder is called."""
from __future__ import annotations

import html
import json
import re
from html.parser import HTMLParser
from pathlib import Path

from test_io import strict_loads
from vidssl.cli import main
from vidssl.pipeline import Stages
from vidssl.report import build_report, degenerate, headline_metrics


def _flow(methods: dict[str, float]) -> dict:
    return {"pairs": ["a"], "skipped": {}, "metric_keys": ["epe"], "transfer": {}, "config": {"max_displacement": 4},
            "methods": {name: {"mean": {"epe": epe, "fl_all": 50.0}, "seconds_per_pair": 0.5,
                               "pairs": {"a": {"epe": epe}}} for name, epe in methods.items()}}


def _write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def make_run(run, trained: str, davis: float, flow: float):
    _write(run / "model_card.json", {"arch": "smallcnn", "input_size": 64})
    _write(run / "eval" / "davis" / "metrics.json", {"models": {
        trained: {"JF_mean": davis, "J_mean": davis, "F_mean": davis},
        "raw pixels": {"JF_mean": 0.5, "J_mean": 0.5, "F_mean": 0.5}}})
    _write(run / "eval" / "flow" / "metrics.json", _flow({"zero": 3.0, "dis_medium": 0.3, f"match[{trained}]": flow,
                                                           "match[raw pixels]": 7.0, f"transfer[{trained}]": 2.0}))
    _write(run / "eval" / "davis_instances" / "metrics.json", {"labels": 1, "models": {
        trained: {"map_at_r": 1.0}, "raw pixels": {"map_at_r": 1.0}}})


def test_report_tables_headline_and_what_is_not_a_result(tmp_path):
    run = tmp_path / "seed0"
    make_run(run, "seed0/backbone", davis=0.8, flow=2.5)
    (run / "eval" / "broken").mkdir()
    (run / "eval" / "broken" / "metrics.json").write_text('{"models": ')  # a torn hand edit
    (run / "eval" / "nulled").mkdir()
    (run / "eval" / "nulled" / "metrics.json").write_text("null")  # JSON, not an evaluation's: raised AttributeError
    (run / "eval" / "davis" / "empty.png").write_bytes(b"")  # a figure cut to nothing: raised cv2.error
    (run / "eval" / "davis" / "torn.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (run / "eval" / "davis" / "gone.png").symlink_to(run / "nowhere.png")  # raised FileNotFoundError: no report
    davis = json.loads((run / "eval" / "davis" / "metrics.json").read_text())
    davis["models"]["seed0/backbone"]["J_recall"] = None  # a NaN metric, as metrics.json writes it
    davis["models"]["raw pixels"]["J_recall"] = 0.25
    _write(run / "eval" / "davis" / "metrics.json", davis)
    _write(run / "eval" / "failed.json", {"cub": "retrieval/cub: no images"})
    # held-out tails of two tracks from two videos: every row perfect, pixels and random init too, which the report
    # and the last lines showed as a result (1.000 / 1.000 / 1.000). Judged by the baselines alone: a seed whose
    # weights miss by a hair (0.98) is left out as its perfect siblings are
    _write(run / "eval" / "tracks_held_out" / "metrics.json", {"labels": 2, "models": {
        "seed0/backbone": {"map_at_r": 0.98}, "raw pixels": {"map_at_r": 1.0}, "smallcnn (random init)": {
            "map_at_r": 1.0}}})
    build_report(run)
    summary = strict_loads((run / "summary.json").read_text())
    assert summary["trained_model"] == "seed0/backbone"
    # flow's headline is matching each model's features (lower is better); classical methods are not models
    assert summary["headline"] == {"davis": {"seed0/backbone": 0.8, "raw pixels": 0.5},
                                   "flow": {"seed0/backbone": 2.5, "raw pixels": 7.0}}
    assert summary["eval_failed"] == {"cub": "retrieval/cub: no images"}
    assert summary["headline_metric"] == {"davis": {"metric": "J&F", "higher_is_better": True},
                                          "flow": {"metric": "EPE px", "higher_is_better": False}}
    html = (run / "report.html").read_text()
    # the headline first: each task's metric and direction, and flow's methods that learn nothing beside it
    head = html[html.index("<h2>Headline</h2>"):html.index("<h2>Evaluation</h2>")]
    assert "<td>J&amp;F (higher is better)</td><td>0.8000</td><td>0.5000</td>" in head
    assert "<td>EPE px (lower is better)</td><td>2.5000</td><td>7.0000</td>" in head
    assert "methods that learn nothing (EPE px): zero 3.00, dis_medium 0.30" in head
    flow_table = html[html.index("<h3>flow</h3>"):].split("</table>")[0]
    for row in ("dis_medium", "match[seed0/backbone]", "transfer[seed0/backbone]"):
        assert f"<td>{row}</td>" in flow_table
    assert "<td>2.5000</td>" in flow_table and "config" not in flow_table and "max_displacement" not in flow_table
    assert "Not informative" in html and "by construction" in html  # davis_instances: one label
    assert "the baselines score a perfect MAP@R: the set (2 labels) is too easy to show weights doing better" in html
    assert "unreadable" in html and "broken" in html and "Failed evaluations" in html
    assert "nulled" in html and "a JSON NoneType, not the object an evaluation writes" in html
    assert html.count("<b>unreadable figure</b>") == 3 and "empty.png" in html and "torn.png" in html
    assert "gone.png" in html
    davis_table = html[html.index("<h3>davis</h3>"):].split("</table>")[0]  # a NaN shows as "-", not a blank
    assert "<th>J_recall ↑</th>" in davis_table and "<td>0.8000</td><td>-</td></tr>" in davis_table, davis_table


def test_a_task_is_degenerate_only_when_every_baseline_is_perfect():
    """One perfect baseline (raw pixels 1.0, random init 0.7) leaves room for weights to show: the task is kept."""
    for key in ("map_at_r", "JF_mean"):
        mixed = {"labels": 5, "models": {"run/backbone": {key: 0.9}, "raw pixels": {key: 1.0},
                                         "smallcnn (random init)": {key: 0.7}}}
        assert degenerate(mixed) is None
        assert headline_metrics({"task": mixed}) == {
            "task": {"run/backbone": 0.9, "raw pixels": 1.0, "smallcnn (random init)": 0.7}}
        perfect = {"labels": 5, "models": {"run/backbone": {key: 0.9}, "raw pixels": {key: 1.0},
                                           "smallcnn (random init)": {key: 1.0}}}
        assert "the baselines score a perfect" in degenerate(perfect) and headline_metrics({"task": perfect}) == {}


def test_compare_finds_the_trained_row_of_a_run_made_in_the_current_folder(tmp_path, capsys, monkeypatch):
    make_run(tmp_path / "a", "a/backbone", davis=0.8, flow=2.5)
    build_report(tmp_path / "a")
    # `vidssl pretrain --out .` names the trained row "backbone"; an older summary has no trained_model
    make_run(tmp_path / "b", "backbone", davis=0.6, flow=3.5)
    build_report(tmp_path / "b")
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["trained_model"] == "backbone"  # the name its tables hold (evaluated from inside b/)
    summary["weights"] = "backbone.pt"
    del summary["trained_model"]
    (tmp_path / "b" / "summary.json").write_text(json.dumps(summary))
    monkeypatch.chdir(tmp_path)
    assert main(["compare", "a", "b"]) == 0
    out = capsys.readouterr().out
    assert "| davis | 0.800 | 0.600 | 0.700 +- 0.141 (n=2) | 0.500, 2/2 |" in out
    assert "| flow (lower is better) | 2.500 | 3.500 | 3.000 +- 0.707 (n=2) | 7.000, 2/2 |" in out


def test_the_held_out_set_behind_retrieval_across_time_is_summarised(tmp_path):
    run = tmp_path / "run"
    make_run(run, "run/backbone", davis=0.8, flow=2.5)
    _write(run / "pairs_held_out" / "dataset.json", {
        "pairs": 43, "config": {"time_range": [0.8, 1.0]},
        "videos": {"found": 9, "mined": 6, "skipped": {"too_short": ["a.mp4", "b.mp4", "c.mp4"]}}})
    build_report(run)
    summary = strict_loads((run / "summary.json").read_text())
    assert summary["held_out"] == {"pairs": 43, "videos_found": 9, "videos_mined": 6,
                                   "videos_skipped": {"too_short": 3}}
    html = (run / "report.html").read_text()
    assert ("frames 80%-100% of each video were mined apart and never trained on: <b>43</b> pairs from 6 of 9 videos "
            "(skipped: 3 too_short)") in html
    # the training pairs' part, as mining used it (config.yaml keeps the user's whole mine.time_range)
    data = strict_loads((run / "pairs" / "dataset.json").read_text()) if (run / "pairs" / "dataset.json").is_file() \
        else {"pairs": 100, "videos": {"found": 9, "mined": 9, "skipped": {}}}
    _write(run / "pairs" / "dataset.json", {**data, "config": {"time_range": [0.0, 0.8]}})
    build_report(run)
    assert "positive pairs from frames 0%-80% of each video.</p>" in (run / "report.html").read_text()
    _write(run / "pairs" / "dataset.json", {**data, "config": {"time_range": [0.0, 1.0]}})
    build_report(run)
    assert "positive pairs.</p>" in (run / "report.html").read_text()


def test_a_damaged_training_dataset_does_not_make_the_held_out_tails_other_clips(tmp_path):
    run = tmp_path / "run"
    make_run(run, "run/backbone", davis=0.8, flow=2.5)
    _write(run / "pairs_held_out" / "dataset.json", {
        "pairs": 43, "config": {"time_range": [0.8, 1.0]}, "videos_root": "/videos",
        "videos": {"found": 9, "mined": 6, "skipped": {}}})
    (run / "pairs").mkdir()
    (run / "pairs" / "dataset.json").write_text('{"pairs": 4')  # torn: its videos_root is unknown, not different
    build_report(run)
    html = (run / "report.html").read_text()
    assert "frames 80%-100% of each video were mined apart" in html and "clips other than" not in html


def test_a_run_cut_short_says_which_stages_it_did_and_what_it_scored(tmp_path):
    """A training stopped at the budget before its first log step had no Training section and no summary train;
    the stages done or not were nowhere; an evaluation table did not say what data it scored; a metrics.json
    deleted after its evaluation completed made the task vanish without a word."""
    import yaml

    run = tmp_path / "run"
    make_run(run, "run/backbone", davis=0.8, flow=2.5)
    _write(run / "pairs" / "dataset.json", {"pairs": 12, "videos": {"found": 2, "mined": 2, "skipped": {}},
                                            "tracks_rejected": {"cut": 3},
                                            "start_frames_rejected": {"no_box": 7, "too_static": 2}})
    (run / "train").mkdir()
    (run / "train" / "log.jsonl").write_text("")
    _write(run / "train" / "stats.json", {"step": 7, "total_steps": 1200, "stopped": "budget", "loss": 0.9})
    _write(run / "stages" / "mine.json", {"pairs": 12, "seconds": 4.2, "config": {}})
    _write(run / "stages" / "train.json", {"step": 7, "seconds": 396.0, "config": {}})
    _write(run / "stages" / "export.started.json", {"config": {}})
    _write(run / "stages" / "eval.json", {"tasks": ["davis", "gone"], "seconds": 1.0, "config": {}})
    (run / "config.yaml").write_text(yaml.safe_dump({"config": {"pretrain": {"run_eval": False}}}))
    davis = json.loads((run / "eval" / "davis" / "metrics.json").read_text())
    _write(run / "eval" / "davis" / "metrics.json", {**davis, "data": "/data/davis", "sequences": ["a", "b"],
                                                     "skipped": {"c": "no first-frame object"}})
    build_report(run)
    summary = strict_loads((run / "summary.json").read_text())
    assert summary["train"] == {"step": 7, "total_steps": 1200, "stopped": "budget", "loss": 0.9}
    # the train stage as `vidssl pretrain` put it in summary.json: its marker under RUN/train/stats.json (a
    # training continued by hand); the report alone gave the marker's figures
    _write(run / "train" / "stats.json", {"step": 30, "total_steps": 1200, "stopped": "budget", "loss": 0.1})
    build_report(run)
    assert strict_loads((run / "summary.json").read_text())["stages"]["train"] == {
        "step": 30, "seconds": 396.0, "total_steps": 1200, "stopped": "budget", "loss": 0.1}
    _write(run / "train" / "stats.json", {"step": 7, "total_steps": 1200, "stopped": "budget", "loss": 0.9})
    build_report(run)
    summary = strict_loads((run / "summary.json").read_text())
    assert summary["data"]["start_frames_rejected"] == {"no_box": 7, "too_static": 2}
    html = (run / "report.html").read_text()
    assert "<h2>Training</h2><p>7 of 1200 steps, stopped: budget.</p><p>No curve" in html
    stages = html[html.index("<h2>Stages</h2>"):].split("</table>")[0]
    assert [row.split("<td>")[2].split("</td>")[0] for row in stages.split("<tr>")[2:]] == [
        "done in 4 s", "done in 6.6 min", "begun, not complete: rerun the same command to go on", "done in 1 s"]
    assert "<td>no_box</td><td>7</td>" in html and "<td>too_static</td><td>2</td>" in html
    assert "Scored on <code>/data/davis</code> (2 sequences, 1 skipped).</p>" in html
    assert f"<b>missing</b> {run / 'eval' / 'gone' / 'metrics.json'}: the same <code>vidssl pretrain</code>" in html
    assert html.index("<h2>Stages</h2>") < html.index("<h2>Headline</h2>")  # a run cut short says so first
    (run / "stages" / "export.started.json").unlink()
    (run / "stages" / "eval.json").unlink()
    build_report(run)
    stages = (run / "report.html").read_text().split("<h2>Stages</h2>")[1].split("</table>")[0]
    assert "<td>export</td><td>not run</td>" in stages
    assert "<td>eval</td><td>switched off (pretrain.run_eval: false)</td>" in stages
    # a hand edit that is no JSON object (or no UTF-8): redone by the pipeline, so not complete here either (the
    # pipeline's budget arithmetic and the report's reading of it crashed on a list)
    for damaged in (b"[1]", b"\xff\xfe"):
        (run / "stages" / "mine.json").write_bytes(damaged)
        build_report(run)
        assert "<td>mine</td><td>not run</td>" in (run / "report.html").read_text()
        assert strict_loads((run / "summary.json").read_text())["stages"]["mine"] is None
        assert Stages(run).spent_s({}) == 0.0


def test_summary_paths_hold_from_any_folder(tmp_path, monkeypatch):
    run = tmp_path / "run"
    make_run(run, "run/backbone", davis=0.8, flow=2.5)
    (run / "backbone.pt").write_bytes(b"")
    (run / "config.yaml").write_text("config: {}\n")
    monkeypatch.chdir(tmp_path)
    build_report("run")
    summary = strict_loads((run / "summary.json").read_text())
    assert (summary["run_dir"], summary["weights"], summary["config"]) == (
        str(run), str(run / "backbone.pt"), str(run / "config.yaml"))
    load = html.escape(f"vidssl.load_backbone({str(run / 'backbone.pt')!r})")
    assert load in (run / "report.html").read_text()


def test_a_renamed_run_keeps_the_row_its_evaluation_named(tmp_path):
    """A rerun after `mv runs/a runs/b` skips the evaluation (the weights are unchanged): the tables keep
    "a/backbone", and the report finds the trained row by the name the evaluation recorded."""
    make_run(tmp_path / "a", "a/backbone", davis=0.8, flow=2.5)
    _write(tmp_path / "a" / "stages" / "eval.json", {"tasks": ["davis"], "trained_model": "a/backbone"})
    (tmp_path / "a").rename(tmp_path / "b")
    build_report(tmp_path / "b")
    assert strict_loads((tmp_path / "b" / "summary.json").read_text())["trained_model"] == "a/backbone"
    # an older run, or one evaluated stage by stage: the one row that is not a baseline, not "b/backbone" (which
    # filed the trained backbone among the baselines)
    (tmp_path / "b" / "stages" / "eval.json").unlink()
    build_report(tmp_path / "b")
    assert strict_loads((tmp_path / "b" / "summary.json").read_text())["trained_model"] == "a/backbone"
    for task in ("davis", "davis_instances"):  # flow's rows are methods: the model is the one matched
        (tmp_path / "b" / "eval" / task / "metrics.json").unlink()
    build_report(tmp_path / "b")
    assert strict_loads((tmp_path / "b" / "summary.json").read_text())["trained_model"] == "a/backbone"


def test_the_figures_shown_cover_every_model_and_one_point_is_drawn(tmp_path):
    import numpy as np

    from tracking.show import save_png
    from vidssl.report import MAX_FIGURES_PER_TASK

    run = tmp_path / "run"
    make_run(run, "run/backbone", davis=0.8, flow=2.5)
    models = ("raw_pixels", "run_backbone", "smallcnn_random_init")
    for model in models:
        for k in range(13):
            save_png(run / "eval" / "davis" / "overlays" / model / f"seq{k:02d}.png", np.zeros((4, 4, 3), np.uint8))
            # eval.davis.save_masks: a label map per frame, which filled the figures (the masks/ folder sorts first)
            # and named thousands of files under them
            for frame in range(3):
                save_png(run / "eval" / "davis" / "masks" / model / f"seq{k:02d}" / f"{frame:05d}.png",
                         np.zeros((4, 4, 3), np.uint8))
    _write(run / "train" / "log.jsonl", {"step": 1, "loss": 0.4})
    build_report(run)
    html = (run / "report.html").read_text()
    captions = [part.split("</figcaption>")[0] for part in html.split("<figcaption>")[1:]]
    captions = [c for c in captions if c.startswith("davis:")]
    assert len(captions) == MAX_FIGURES_PER_TASK and "masks/" not in html
    assert all(sum(f"overlays/{m}/" in c for c in captions) == MAX_FIGURES_PER_TASK // 3 for m in models)
    more = html[html.index("more figures in"):].split("</p>")[0]
    # more than a reader takes in: counted, not named
    assert f">{3 * 13 - MAX_FIGURES_PER_TASK} more figures in" in html and more.endswith("not shown.")
    for model in models:  # fewer: every figure is either shown or named, none both
        for k in range(5, 13):
            (run / "eval" / "davis" / "overlays" / model / f"seq{k:02d}.png").unlink()
    build_report(run)
    html = (run / "report.html").read_text()
    captions = [part.split("</figcaption>")[0] for part in html.split("<figcaption>")[1:]]
    more = html[html.index(f"{3 * 5 - MAX_FIGURES_PER_TASK} more figures in"):].split("</p>")[0]
    for model in models:
        for k in range(5):
            name = f"overlays/{model}/seq{k:02d}.png"
            assert (name in more) != any(c == f"davis: {name}" for c in captions), name
    assert "<circle" in html  # a loss curve of one logged step


def test_the_demos_held_out_clips_are_not_called_the_end_of_the_training_videos(tmp_path):
    run = tmp_path / "run"
    make_run(run, "run/backbone", davis=0.8, flow=2.5)
    _write(run / "pairs" / "dataset.json", {"pairs": 200, "videos_root": str(run / "demo_videos"),
                                            "videos": {"found": 6, "mined": 6, "skipped": {}}})
    _write(run / "pairs_held_out" / "dataset.json", {
        "pairs": 40, "videos_root": str(run / "demo_held_out"), "config": {"time_range": [0.0, 1.0]},
        "videos": {"found": 3, "mined": 3, "skipped": {}}})
    build_report(run)
    html = (run / "report.html").read_text()
    assert "clips other than the training videos were mined apart" in html and "frames 0%-100%" not in html


def test_a_run_made_stage_by_stage_gets_its_report_and_compares(tmp_path, capsys):
    """`vidssl report RUN`: the walkthrough's stage-by-stage layout gets report.html and summary.json, which
    `vidssl compare` reads; a missing or empty folder is a one-line error."""
    run = tmp_path / "real"
    make_run(run, "real/backbone", davis=0.8, flow=2.5)
    assert main(["report", str(run)]) == 0
    assert f"report: {run / 'report.html'}" in capsys.readouterr().out
    summary = strict_loads((run / "summary.json").read_text())
    assert summary["trained_model"] == "real/backbone" and summary["headline"]["davis"]["real/backbone"] == 0.8
    assert main(["compare", str(run)]) == 0
    assert "| davis | 0.800 |" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "nosuch")]) == 1
    assert "nosuch: no such folder" in capsys.readouterr().err
    (run / "backbone.pt").write_bytes(b"weights")  # a file of the run, given for the run: was "no such folder"
    assert main(["report", str(run / "backbone.pt")]) == 1
    err = capsys.readouterr().err
    assert f"{run / 'backbone.pt'} is a file; pass the run folder it belongs to" in err
    assert f"e.g. `vidssl report {run}`" in err
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 1
    assert "empty: nothing to report" in capsys.readouterr().err


def test_a_run_made_stage_by_stage_has_its_training_s_config_seed_and_versions_in_its_summary(tmp_path):
    """summary.json's config and versions came from RUN/config.yaml, which only pretrain writes: a run made stage by
    stage had neither, and no seed, though RUN/train/config.yaml records all three."""
    import yaml

    run = tmp_path / "real"
    make_run(run, "real/backbone", davis=0.8, flow=2.5)
    versions = {"vidssl": "0.1.0", "git_sha": "abc123", "torch": "2.14.1"}
    (run / "train").mkdir(exist_ok=True)
    (run / "train" / "config.yaml").write_text(yaml.safe_dump({"config": {"seed": 7, "train": {"lr": 0.02}},
                                                               "versions": versions}))
    assert main(["report", str(run)]) == 0
    summary = strict_loads((run / "summary.json").read_text())
    assert summary["config"] == str(run / "train" / "config.yaml") and summary["versions"] == versions
    assert summary["seed"] == 7
    assert "Code: vidssl 0.1.0 at abc123, torch 2.14.1." in (run / "report.html").read_text()
    # a pretrain run's own config.yaml comes first
    (run / "config.yaml").write_text(yaml.safe_dump({"config": {"seed": 3}, "versions": versions}))
    assert main(["report", str(run)]) == 0
    summary = strict_loads((run / "summary.json").read_text())
    assert summary["config"] == str(run / "config.yaml") and summary["seed"] == 3


def test_report_of_one_stage_s_folder_says_what_it_is_and_what_to_pass(tmp_path, capsys, monkeypatch):
    """`vidssl report runs/real/train` (a `vidssl train --out` folder) said only "nothing to report ... the README's
    walkthrough shows the layout": a stage's own folder is named as such, with the run folder to pass where it sits
    in its place, else the layout report reads."""
    run = tmp_path / "real"
    make_run(run, "real/backbone", davis=0.8, flow=2.5)
    _write(run / "train" / "stats.json", {"step": 10})
    (run / "train" / "checkpoint.pt").write_bytes(b"")
    _write(run / "pairs" / "dataset.json", {})
    (run / "pairs" / "manifest.jsonl").write_text("")

    def error(folder) -> str:
        assert main(["report", str(folder)]) == 1
        return capsys.readouterr().err

    for folder, what, up in ((run / "train", "a training run's folder (`vidssl train --out`)", run),
                             (run / "pairs", "a pair dataset (`vidssl mine --out`)", run),
                             (run / "eval" / "davis", "an evaluation's folder (`vidssl eval TASK --out`)", run)):
        said = error(folder)
        assert f"{folder} is {what}, one " in said and f"pass the run folder, `vidssl report {up}`" in said
        assert main(["report", str(up)]) == 0  # what it says to pass is reported
        capsys.readouterr()
    monkeypatch.chdir(run / "train")  # "." has no parent to name: the folder it is
    assert f"pass the run folder, `vidssl report {run.resolve()}`" in error(".")
    # out of its place (`vidssl train --out runs/mytrain`): the layout report reads, not a parent that holds no run
    alone = tmp_path / "mytrain"
    alone.mkdir()
    (alone / "log.jsonl").write_text("")
    said = error(alone)
    assert f"{alone} is a training run's folder (`vidssl train --out`), not a run folder; report reads" in said
    assert "RUN/train/ (`vidssl train RUN/pairs --out RUN/train`)" in said and "move it to RUN/train" in said
    assert "vidssl report " + str(tmp_path) not in said


def test_report_of_the_current_folder_finds_the_row_the_tables_hold(tmp_path, capsys, monkeypatch):
    """Evaluated stage by stage with --weights runs/real/backbone.pt, the tables say real/backbone; `vidssl report .`
    from inside must not name the trained row "backbone" (compare would file it under the baselines)."""
    run = tmp_path / "real"
    make_run(run, "real/backbone", davis=0.8, flow=2.5)
    monkeypatch.chdir(run)
    assert main(["report", "."]) == 0
    assert strict_loads((run / "summary.json").read_text())["trained_model"] == "real/backbone"
    make_run(tmp_path / "b", "backbone", davis=0.6, flow=3.5)  # evaluated from inside with --weights backbone.pt
    monkeypatch.chdir(tmp_path)
    assert main(["report", "b"]) == 0
    assert strict_loads((tmp_path / "b" / "summary.json").read_text())["trained_model"] == "backbone"
    capsys.readouterr()
    assert main(["compare", "real", "b"]) == 0
    assert "| davis | 0.800 | 0.600 | 0.700 +- 0.141 (n=2) |" in capsys.readouterr().out
    # a pretrain run's stage records stay in a rebuilt summary
    _write(run / "stages" / "export.json", {"weights": "backbone.pt", "config": {"export.safetensors": True}})
    assert main(["report", str(run)]) == 0
    stages = strict_loads((run / "summary.json").read_text())["stages"]
    assert stages == {"mine": None, "train": None, "export": {"weights": "backbone.pt"}, "eval": None}


def test_a_headline_number_that_is_not_finite_is_left_out(tmp_path):
    """NaN or Infinity (a diverged evaluation) is no headline number: summary.json held null for it, and a mean over
    runs with it is NaN. The model's number is left out of its task's headline numbers, and named apart."""
    run = tmp_path / "run"
    make_run(run, "run/backbone", davis=0.8, flow=2.5)
    (run / "eval" / "davis" / "metrics.json").write_text(
        '{"models": {"run/backbone": {"JF_mean": NaN}, "raw pixels": {"JF_mean": 0.5}}}')
    _write(run / "eval" / "flow" / "metrics.json", _flow({"zero": 3.0, "match[run/backbone]": 2.5}))
    (run / "eval" / "flow" / "metrics.json").write_text(
        (run / "eval" / "flow" / "metrics.json").read_text().replace("3.0", "Infinity"))
    build_report(run)
    summary = strict_loads((run / "summary.json").read_text())
    assert summary["headline"] == {"davis": {"raw pixels": 0.5}, "flow": {"run/backbone": 2.5}}
    assert summary["headline_not_finite"] == {"davis": ["run/backbone"]}
    assert "methods that learn nothing" not in (run / "report.html").read_text()  # zero flow's EPE: Infinity


DAMAGED = {  # file in the run -> (content, what the report says is wrong with it)
    "warnings.json": ('["mining stopped", 3]', "a warning is a number, not a string"),
    "pairs/dataset.json": ('{"pairs": 3, "videos": null}', '"videos" is null, not an object'),
    "pairs_held_out/dataset.json": ('{"videos": {"skipped": {"too_short": 2}}}',
                                    '"videos.skipped.too_short" is a number, not a list'),
    "model_card.json": ('{"arch": "smallcnn", ', "Expecting property name"),
}


def test_damaged_files_are_named_in_the_report_not_a_traceback(tmp_path):
    """A torn or hand-edited warnings.json, dataset.json or model_card.json (or one with a null where an object
    belongs) is named at the top of the report with the way to rewrite it, as a damaged metrics.json is named in its
    section; the rest of the report is built."""

    run = tmp_path / "run"
    make_run(run, "run/backbone", davis=0.8, flow=2.5)
    for name, (content, _) in DAMAGED.items():
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text(content)
    assert main(["report", str(run)]) == 0
    page = (run / "report.html").read_text()
    top = page[page.index("<h2>Unreadable files</h2>"):page.index("<h2>Headline</h2>")]
    for name, (_, why) in DAMAGED.items():
        assert f"{run / name}: {html.escape(why)}" in top, name
    assert f"vidssl mine --merge --out {run / 'pairs_held_out'}" in top and f"vidssl export {run / 'train'}" in top
    summary = strict_loads((run / "summary.json").read_text())
    assert not {"warnings", "data", "held_out", "model_card"} & set(summary)
    # the card is damaged, not the export: the weights and their row are still the run's
    assert summary["trained_model"] == "run/backbone" and summary["headline"]["davis"]["run/backbone"] == 0.8


def test_a_deleted_dataset_json_of_a_completed_mining_is_named(tmp_path):
    """A pretrain run's pairs/dataset.json deleted since its mining completed: the data section, and the warnings
    read from it, vanished from the report without a word (a damaged one was named)."""
    run = tmp_path / "run"
    make_run(run, "run/backbone", davis=0.8, flow=2.5)
    (run / "pairs" / "dataset.json").unlink(missing_ok=True)
    build_report(run)
    assert "Unreadable files" not in (run / "report.html").read_text()  # no mining stage: nothing to miss
    _write(run / "stages" / "mine.json", {"seconds": 1.0})
    build_report(run)
    page = (run / "report.html").read_text()
    assert (f"{run / 'pairs' / 'dataset.json'}: missing, though the mining stage completed; rewrite it from the "
            f"mined videos: vidssl mine --merge --out {run / 'pairs'}") in page


def test_report_refuses_a_run_that_a_pretrain_is_writing(tmp_path, capsys):
    """A pretrain holds RUN/.vidssl.lock while its stages write: a report then would read half-made stages (and
    race it for summary.json)."""
    from vidssl.io import run_lock

    run = tmp_path / "run"
    make_run(run, "run/backbone", davis=0.8, flow=2.5)
    with run_lock(run):
        assert main(["report", str(run)]) == 1
    err = capsys.readouterr().err
    assert "is in use by another vidssl command" in err and f"then rerun `vidssl report {run}`" in err
    assert "--out" not in err  # report has no --out to choose
    assert not (run / "summary.json").exists()
    assert main(["report", str(run)]) == 0
    with run_lock(run, shared=True):  # a `vidssl eval` into RUN/eval/<task>: no reason to refuse
        assert main(["report", str(run)]) == 0


def test_a_hand_edited_config_or_log_is_named_not_a_traceback(tmp_path):
    """A config.yaml that is no YAML failed the whole report; a YAML date under versions failed summary.json after
    report.html was written (the two then disagreed); a log line that is JSON but no object failed the charts."""
    run = tmp_path / "run"
    make_run(run, "run/backbone", davis=0.8, flow=2.5)
    (run / "train").mkdir()
    (run / "train" / "log.jsonl").write_text('{"step": 5, "loss": 1.0}\n7\n"step and loss"\n'
                                             '{"step": 10, "loss": 0.5}\n')
    (run / "config.yaml").write_text("versions: [unclosed\n")
    build_report(run)
    summary = strict_loads((run / "summary.json").read_text())
    assert summary["train"]["step"] == 10 and summary["versions"] is None
    assert f"{run / 'config.yaml'}: unreadable" in (run / "report.html").read_text()
    (run / "config.yaml").write_text("versions:\n  built: 2024-01-02\n  torch: 2.14.1\n  sha: null\n")
    build_report(run)
    assert strict_loads((run / "summary.json").read_text())["versions"] == {
        "built": "2024-01-02", "torch": "2.14.1", "sha": None}  # a non-git install's SHA stays null


def test_the_summary_names_the_weights_file_the_card_lists(tmp_path):
    """model_card.json is also backbone.pth's card: the summary and the report's load line named a missing
    backbone.pt."""
    run = tmp_path / "run"
    make_run(run, "run/backbone", davis=0.8, flow=2.5)
    _write(run / "model_card.json", {"arch": "smallcnn", "input_size": 64, "files": ["backbone.pth"]})
    (run / "backbone.pth").write_bytes(b"weights")
    build_report(run)
    assert strict_loads((run / "summary.json").read_text())["weights"] == str(run / "backbone.pth")
    assert "backbone.pth" in (run / "report.html").read_text()


def test_a_log_of_repeated_or_hand_edited_steps_draws_each_step_once_in_order(tmp_path):
    """A log joined from two sessions (steps 10, 20, 30, then 20, 30, 40) drew its curve back over itself; a step
    that is no number failed the report with a TypeError, and a boolean loss was drawn as 1.0."""
    import re

    run = tmp_path / "run"
    make_run(run, "run/backbone", davis=0.8, flow=2.5)
    (run / "train").mkdir()
    lines = [{"step": 10, "loss": 4.0}, {"step": 20, "loss": 3.0}, {"step": 30, "loss": 2.0},
             {"step": 20, "loss": 3.5}, {"step": 30, "loss": 2.5}, {"step": 40, "loss": 1.0},
             {"step": "50", "loss": 0.5}, {"step": None, "loss": 0.5}, {"step": 45, "loss": True}]
    (run / "train" / "log.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    build_report(run)
    page = (run / "report.html").read_text()
    loss_chart = next(svg for svg in page.split("<svg")[1:] if "Loss: total" in svg)
    points = re.search(r'<polyline[^>]*points="([^"]*)"', loss_chart).group(1)  # the first series: the loss
    xs = [float(point.split(",")[0]) for point in points.split()]
    assert len(xs) == 4 and xs == sorted(xs)  # steps 10, 20, 30, 40: the later session's 20 and 30 kept
    assert strict_loads((run / "summary.json").read_text())["train"]["step"] == 40
    # the training's final stats, where they are for this log's end or later: it stopped at 44, between log steps
    (run / "train" / "stats.json").write_text(json.dumps({"step": 44, "total_steps": 44, "stopped": "done",
                                                           "loss": 1.0}))
    build_report(run)
    assert strict_loads((run / "summary.json").read_text())["train"] == {"step": 44, "total_steps": 44,
                                                                        "stopped": "done", "loss": 1.0}
    for stale in ('{"step": 30, "loss": 9.0}', "{torn", "[]"):  # an earlier session's, or unreadable: the log's
        (run / "train" / "stats.json").write_text(stale)
        build_report(run)
        assert strict_loads((run / "summary.json").read_text())["train"] == {"step": 40, "loss": 1.0}


def test_a_log_out_of_step_order_is_drawn_in_step_order_and_stats_at_its_last_step_are_kept(tmp_path):
    """A log whose steps come 20, 40, 10, 30 (two sessions' files joined in reverse, or a session resumed with
    another log_every) is drawn and summarised in step order; the final stats written at the log's last step (a
    training that ends on a log step) keep what only they hold: how many steps were planned and why it stopped."""
    import re

    run = tmp_path / "run"
    make_run(run, "run/backbone", davis=0.8, flow=2.5)
    (run / "train").mkdir()
    loss = {10: 4.0, 20: 3.0, 30: 2.0, 40: 1.0}  # falling with the step: drawn in step order, each point is lower
    (run / "train" / "log.jsonl").write_text("".join(json.dumps({"step": step, "loss": loss[step]}) + "\n"
                                                     for step in (20, 40, 10, 30)))
    build_report(run)
    loss_chart = next(svg for svg in (run / "report.html").read_text().split("<svg")[1:] if "Loss: total" in svg)
    points = [p.split(",") for p in re.search(r'<polyline[^>]*points="([^"]*)"', loss_chart).group(1).split()]
    xs, ys = [float(x) for x, _ in points], [float(y) for _, y in points]
    assert len(xs) == 4 and xs == sorted(xs) and ys == sorted(ys)  # SVG y grows downwards: the loss falls
    assert strict_loads((run / "summary.json").read_text())["train"] == {"step": 40, "loss": 1.0}  # the last step's
    _write(run / "train" / "stats.json", {"step": 40, "total_steps": 40, "stopped": "done", "loss": 1.0})
    build_report(run)
    assert strict_loads((run / "summary.json").read_text())["train"] == {"step": 40, "total_steps": 40,
                                                                        "stopped": "done", "loss": 1.0}
    assert "<p>40 of 40 steps, stopped: done.</p>" in (run / "report.html").read_text()


def test_files_that_are_not_utf8_are_read_around_and_the_current_folder_names_the_page(tmp_path, monkeypatch):
    """A failed.json or a log line holding bytes that are not UTF-8 raised UnicodeDecodeError (a ValueError, not a
    JSONDecodeError) through the whole report; `vidssl report .` titled the page "vidssl run: " (Path(".").name is
    empty); summary.json lost its "warnings": [] on a rebuild (a pretrain run's empty warnings.json; a run made stage
    by stage, with none, has no "warnings": nothing was checked)."""
    run = tmp_path / "real"
    make_run(run, "real/backbone", davis=0.8, flow=2.5)
    (run / "train").mkdir()
    (run / "train" / "log.jsonl").write_bytes(b'{"step": 5, "loss": 1.0}\n\xff\xfe\n{"step": 10, "loss": 0.5}\n')
    (run / "eval" / "failed.json").write_bytes(b"\xff{}")
    monkeypatch.chdir(run)
    assert main(["report", "."]) == 0
    summary = strict_loads((run / "summary.json").read_text())
    assert summary["train"]["step"] == 10 and "warnings" not in summary
    assert "<h1>vidssl run: real</h1>" in (run / "report.html").read_text()
    (run / "warnings.json").write_text("[]")  # as pretrain writes it when there are none
    assert main(["report", "."]) == 0
    assert strict_loads((run / "summary.json").read_text())["warnings"] == []


def test_per_task_table_headers_say_which_way_is_better(tmp_path):
    run = tmp_path / "run"
    make_run(run, "run/backbone", davis=0.8, flow=2.5)
    build_report(run)
    page = (run / "report.html").read_text(encoding="utf-8")
    assert "<th>epe \u2193</th>" in page and "<th>fl_all \u2193</th>" in page and "<th>s/pair</th>" in page
    assert "<th>JF_mean \u2191</th>" in page and "<th>map_at_r \u2191</th>" in page


def test_a_flow_pair_beyond_the_matching_window_is_said_in_the_report(tmp_path):
    """Sintel ambush_2 moves beyond the +-32 px feature matching expresses: its EPE says how far each model falls
    short of a floor none can pass, which the report said nowhere."""
    run = tmp_path / "run"
    make_run(run, "run/backbone", davis=0.8, flow=2.5)
    build_report(run)
    assert "Out of reach" not in (run / "report.html").read_text()  # no reach recorded (an earlier version's)
    flow = json.loads((run / "eval" / "flow" / "metrics.json").read_text())
    flow["reach"] = {"px": 32, "pairs": {"alley": {"in_reach_pct": 100.0, "floor_epe": 0.0},
                                         "ambush": {"in_reach_pct": 0.0, "floor_epe": 54.82}}}
    _write(run / "eval" / "flow" / "metrics.json", flow)
    build_report(run)
    page = (run / "report.html").read_text()
    assert "up to +-32 px per axis; pixels within it: ambush 0% (no such matcher scores under EPE 54.82)" in page
    assert "alley" not in page.split("Out of reach")[1].split("</p>")[0]


def test_the_evaluations_markdown_reads_as_html():
    from vidssl.report import markdown_html

    text = ("# Title with `code`\n\nRetrieval on `/data/x` (a **bold** word) <script>.\nSecond line.\n\n"
            "| model | MAP@R | s/pair |\n|---|---:|---|\n| a<b | **0.9** | 1 |\n\nSkipped:\n\n- p: why\n- q: `x`\n")
    assert markdown_html(text) == (
        "<h4>Title with <code>code</code></h4>"
        "<p>Retrieval on <code>/data/x</code> (a <b>bold</b> word) &lt;script&gt;. Second line.</p>"
        "<div class='wide'><table><thead><tr><th>model</th><th>MAP@R</th><th>s/pair</th></tr></thead>"
        "<tbody><tr><td>a&lt;b</td><td><b>0.9</b></td><td>1</td></tr></tbody></table></div>"
        "<p>Skipped:</p><ul><li>p: why</li><li>q: <code>x</code></li></ul>")
    assert markdown_html("## Sub\n", heading_level=3) == "<h4>Sub</h4>"


def test_each_task_shows_the_tables_its_evaluation_wrote_for_people(tmp_path):
    """The report rebuilt tables from metrics.json with raw keys (map_at_r, epe_noc), no units and no protocol,
    and left out flow's per-dataset EPE, where the one scorable pair's story is."""
    run = tmp_path / "run"
    make_run(run, "run/backbone", davis=0.8, flow=2.5)
    (run / "eval" / "flow" / "metrics.md").write_text(
        "# Optical flow: 1 pair\n\n| method | EPE | Fl-all % |\n|---|---|---|\n| zero | 3.00 | 50.0 |\n\n"
        "EPE per dataset (pooled over its pairs' pixels):\n\n| method | Sintel clean (1) |\n|---|---|\n"
        "| zero | 2.98 |\n")
    build_report(run)
    page = (run / "report.html").read_text()
    flow = page.split("<h3>flow</h3>")[1].split("<h3>")[0]
    assert "<h4>Optical flow: 1 pair</h4>" in flow and "<th>Sintel clean (1)</th>" in flow
    assert "Scored on data (1 pairs)." in flow  # what the evaluation's own text does not say: the data it scored
    assert "<td>2.98</td>" in flow and "epe \u2193" not in flow
    davis = page.split("<h3>davis</h3>")[1].split("<h3>")[0]  # no metrics.md: built from metrics.json
    assert "<th>JF_mean \u2191</th>" in davis
    # a metrics.md older than its metrics.json (an evaluation killed between the two writes) is not shown
    import os

    stamp = (run / "eval" / "flow" / "metrics.json").stat().st_mtime_ns
    os.utime(run / "eval" / "flow" / "metrics.md", ns=(stamp - 10**9, stamp - 10**9))
    build_report(run)
    flow = (run / "report.html").read_text().split("<h3>flow</h3>")[1].split("<h3>")[0]
    assert "Optical flow: 1 pair" not in flow and "epe \u2193" in flow


def test_rejections_are_explained_and_the_grid_caption_names_its_columns(tmp_path):
    import cv2
    import numpy as np

    from tracking.video_miner import START_REJECTIONS, WINDOW_LOSSES

    run = tmp_path / "run"
    make_run(run, "run/backbone", davis=0.8, flow=2.5)
    _write(run / "pairs" / "dataset.json", {
        "pairs": 12, "track_length": 30, "videos": {"found": 2, "mined": 2, "skipped": {}},
        "tracks_rejected": {"left_frame": 3, "made_up": 1}, "start_frames_rejected": {"busy": 2},
        "config": {"background_patches": True}})
    cv2.imwrite(str(run / "pairs" / "pairs_grid.png"), np.zeros((8, 8, 3), np.uint8))
    build_report(run)
    page = (run / "report.html").read_text()
    assert "Pair windows lost (a window: the 30 frames between a pair's two patches, the paper's track)" in page
    assert f"<td>left_frame</td><td>3</td><td>{html.escape(WINDOW_LOSSES['left_frame'])}</td>" in page
    assert "<td>made_up</td><td>1</td><td></td>" in page  # a reason of a newer version: counted, not explained
    # a hand edit whose skipped entry is a list is shown as text, not a crash (a list is no key of the details)
    _write(run / "pairs" / "dataset.json", {"pairs": 12, "videos": {"found": 2, "mined": 1,
                                                                    "skipped": {"too_short": [["a.mp4"]]}}})
    build_report(run)
    assert "too_short (1 video): [&#x27;a.mp4&#x27;]" in (run / "report.html").read_text()
    assert f"<td>busy</td><td>2</td><td>{html.escape(START_REJECTIONS['busy'])}</td>" in page
    assert "first patch | last patch | the same-frame background (marked bg)" in page
    # why each video gave nothing, and those mined only up to damage (dataset.json since they are kept there)
    _write(run / "pairs" / "dataset.json", {
        "pairs": 12, "videos": {"found": 3, "mined": 2, "skipped": {"too_short": ["a.mp4"]},
                                "skipped_detail": {"a.mp4": "16 frames; a track needs 32"},
                                "partial": {"b.mp4": "decoding stopped at frame 81 of 194"}}})
    build_report(run)
    page = (run / "report.html").read_text()
    assert ("<p>Skipped videos, and videos mined only up to damage:</p><ul><li>too_short (1 video): a.mp4 (16 frames; "
            "a track needs 32)</li><li>mined only up to damage (1 video): b.mp4 (decoding stopped at frame 81 of 194)"
            "</li></ul>") in page


def test_every_reason_mining_gives_is_explained():
    """Read from the code that books them: a new reason must get its meaning for the report."""
    import re
    from pathlib import Path

    import tracking
    from tracking.video_miner import START_REJECTIONS, WINDOW_LOSSES

    folder = Path(tracking.__file__).parent
    source = (folder / "track.py").read_text() + (folder / "video_miner.py").read_text()
    lost = {*re.findall(r'lost\.append\(\((?:\w+|Window\([^)]*\)), "(\w+)"\)\)', source),
            *re.findall(r'failure = (?:None if ok else )?"(\w+)"', source), *re.findall(r'\.close\("(\w+)"\)', source)}
    starts = {*re.findall(r'\breason = "(\w+)"', source), *re.findall(r'return "(\w+)"\n', source)}
    assert {"tracker_failure", "left_frame", "appearance", "frozen", "cut", "motion_left", "video_ended",
            "time_budget"} <= lost
    assert lost <= set(WINDOW_LOSSES)
    assert {"cut", "video_cap", "busy", "no_camera_fit", "too_static", "too_moving", "no_texture", "no_box"} <= starts
    assert starts <= set(START_REJECTIONS)


def test_the_headline_names_each_task_s_data_and_what_the_other_rows_are(tmp_path):
    run = tmp_path / "run"
    make_run(run, "run/backbone", davis=0.8, flow=2.5)
    davis = json.loads((run / "eval" / "davis" / "metrics.json").read_text())
    _write(run / "eval" / "davis" / "metrics.json", {**davis, "sequences": ["blackswan"]})
    build_report(run)
    headline = (run / "report.html").read_text().split("<h2>Headline</h2>")[1].split("<h2>")[0]
    assert "<td>davis (1 sequence: blackswan)</td>" in headline and "<td>flow (1 pair)</td>" in headline
    assert "<i>raw pixels</i>: Lab colour" in headline and "<i>match[model]</i>: flow from matching" in headline
    assert "(random init)" not in headline  # no such row in these tables
    assert "One run of one seed" in headline and "<code>vidssl compare</code>" in headline


def test_parts_of_a_run_made_by_different_code_are_said(tmp_path):
    """The walkthrough's run recorded a clean commit in config.yaml while its export and evaluations ran on an
    edited checkout: nothing said so."""
    import yaml

    run = tmp_path / "run"
    make_run(run, "run/backbone", davis=0.8, flow=2.5)
    clean = {"vidssl": "0.1.0", "git_sha": "abc", "git_diff_sha256": None, "torch": "2.14.1"}
    edited = {**clean, "git_sha": "abc-dirty", "git_diff_sha256": "f" * 64}
    (run / "config.yaml").write_text(yaml.safe_dump({"config": {}, "versions": clean}))
    _write(run / "model_card.json", {"arch": "smallcnn", "versions": clean, "exported_with": clean})
    for task in ("davis", "flow"):
        path = run / "eval" / task / "metrics.json"
        _write(path, {**json.loads(path.read_text()), "versions": clean})
    build_report(run)
    page = (run / "report.html").read_text()
    assert "<p>Code: vidssl 0.1.0 at abc, torch 2.14.1.</p>" in page and "different code" not in page
    path = run / "eval" / "flow" / "metrics.json"
    _write(path, {**json.loads(path.read_text()), "versions": edited})
    _write(run / "model_card.json", {"arch": "smallcnn", "versions": clean, "exported_with": edited})
    build_report(run)
    page = (run / "report.html").read_text()
    assert "<b>Made by different code:</b>" in page and "Code: vidssl" not in page
    assert ("<li>vidssl 0.1.0 at abc, torch 2.14.1: config.yaml, training, evaluation davis</li><li>vidssl 0.1.0 at "
            "abc-dirty (uncommitted changes ffffffffffff), torch 2.14.1: export, evaluation flow</li>") in page
    # another torch between the stages is other code too
    _write(run / "model_card.json", {"arch": "smallcnn", "versions": clean,
                                     "exported_with": {**clean, "torch": "2.15"}})
    _write(path, {**json.loads(path.read_text()), "versions": clean})
    build_report(run)
    assert "<li>vidssl 0.1.0 at abc, torch 2.15: export</li>" in (run / "report.html").read_text()
    # installed from a wheel, not a checkout (no git SHA): a newer version that evaluated was said by nothing
    installed = {**clean, "git_sha": None}
    (run / "config.yaml").write_text(yaml.safe_dump({"config": {}, "versions": installed}))
    _write(run / "model_card.json", {"arch": "smallcnn", "versions": installed, "exported_with": installed})
    _write(path, {**json.loads(path.read_text()), "versions": installed})
    davis = run / "eval" / "davis" / "metrics.json"
    _write(davis, {**json.loads(davis.read_text()), "versions": installed})
    build_report(run)
    assert "<p>Code: vidssl 0.1.0, torch 2.14.1.</p>" in (run / "report.html").read_text()
    _write(path, {**json.loads(path.read_text()), "versions": {**installed, "vidssl": "0.2.0"}})
    build_report(run)
    page = (run / "report.html").read_text()
    assert ("<li>vidssl 0.1.0, torch 2.14.1: config.yaml, training, export, evaluation davis</li><li>vidssl 0.2.0, "
            "torch 2.14.1: evaluation flow</li>") in page


def test_the_training_line_says_how_the_step_count_came_about(tmp_path):
    import yaml

    run = tmp_path / "run"
    make_run(run, "run/backbone", davis=0.8, flow=2.5)
    (run / "train").mkdir()
    (run / "train" / "log.jsonl").write_text("")
    (run / "train" / "config.yaml").write_text(yaml.safe_dump({"config": {"train": {
        "steps": 1200, "fit_budget": True, "precision": "bf16", "budget_minutes": 6.585}}}))
    _write(run / "train" / "stats.json", {"step": 355, "total_steps": 355, "stopped": "done", "minutes": 6.49,
                                          "fit_history": [[7, 357], [40, 355]]})
    build_report(run)
    assert ("<p>355 of 355 steps, the count the time budget fitted (train.fit_budget; train.steps=1200 is the cap; "
            "planned 357 after step 7; 355 after step 40), 6.5 of its 6.6 minutes, precision bf16, stopped: done.</p>"
            ) in (run / "report.html").read_text()
    for repeats, said in ((True, "planned 357 after step 7; 355 after step 40), repeated bit for bit by --set "
                                 "train.steps=355 --set train.fit_budget=false, 6.5 of its 6.6 minutes"),
                          (False, "355 after step 40), not repeated bit for bit by pinning train.steps: a fit after "
                                  "the warm-up, or one that moved the warm-up or the main miner's start, or a stop "
                                  "short of the count, changed its schedule, 6.5 of")):
        _write(run / "train" / "stats.json", {"step": 355, "total_steps": 355, "stopped": "done", "minutes": 6.49,
                                              "fit_history": [[7, 357], [40, 355]], "pinning_repeats": repeats})
        build_report(run)
        assert said in html.unescape((run / "report.html").read_text())
        summary = strict_loads((run / "summary.json").read_text())["train"]
        assert summary["pinning_repeats"] is repeats and summary["fit_history"] == [[7, 357], [40, 355]]
    # resumed: the minutes are the last session's, so what all of them took is said beside (0.6 of a 2.3-minute run)
    _write(run / "train" / "stats.json", {"step": 355, "total_steps": 355, "stopped": "done", "minutes": 0.6,
                                          "sessions": 3, "minutes_all_sessions": 2.3})
    build_report(run)
    assert ("the count the time budget fitted (train.fit_budget; train.steps=1200 is the cap), 0.6 of its 6.6 "
            "minutes, the last of 3 sessions; 2.3 minutes in all, each session up to its last checkpoint, precision "
            "bf16") in (run / "report.html").read_text()
    # without a budget (vidssl train without --budget-minutes) nothing was fitted, whatever train.fit_budget says
    (run / "train" / "config.yaml").write_text(yaml.safe_dump({"config": {"train": {
        "steps": 1200, "fit_budget": True, "precision": "fp32", "budget_minutes": None}}}))
    _write(run / "train" / "stats.json", {"step": 1200, "total_steps": 1200, "stopped": "done", "minutes": 30.0})
    build_report(run)
    assert "<p>1200 of 1200 steps, precision fp32, stopped: done.</p>" in (run / "report.html").read_text()


def _polyline(svg: str) -> list[tuple[str, str]]:
    import re

    return [tuple(p.split(",")) for p in re.search(r'<polyline[^>]*points="([^"]*)"', svg).group(1).split()]


def test_a_long_curve_is_drawn_as_each_pixel_column_s_lowest_and_highest_point():
    """100k log records drew 100k points into each 354-px-wide chart: 14 MB of SVG. A spike must survive."""
    import random

    from vidssl.report import svg_line_chart

    rnd = random.Random(0)
    values = [(float(step), 1.0 + 0.1 * rnd.random()) for step in range(50_000)]
    values[31_337] = (31_337.0, 50.0)  # one loss spike
    points = _polyline(svg_line_chart({"loss": values}, "loss", "loss"))
    columns, top, bottom = 420 - 56 - 10, 24, 240 - 34  # the chart's plot area, in px
    y0, y1 = min(y for _, y in values), 50.0

    def px(x: float, y: float) -> tuple[str, str]:
        return f"{56 + x / 49_999 * columns:.1f}", f"{bottom - (y - y0) / (y1 - y0) * (bottom - top):.1f}"

    assert len(points) <= 2 * columns and px(*values[31_337]) in points
    assert [float(x) for x, _ in points] == sorted(float(x) for x, _ in points)
    # naive reference: every column's lowest and highest value, and no other
    extremes: dict[int, list[float]] = {}
    for x, y in values:
        column = extremes.setdefault(min(columns - 1, int(x / 49_999 * columns)), [y, y])
        column[:] = [min(column[0], y), max(column[1], y)]
    assert {y for _, y in points} == {px(0, y)[1] for column in extremes.values() for y in column}
    short = [(float(step), float(step % 7)) for step in range(100)]  # fewer than two per column: drawn whole
    y0, y1 = 0.0, 6.0
    assert _polyline(svg_line_chart({"loss": short}, "loss", "loss")) == [
        (f"{56 + x / 99 * columns:.1f}", px(0, y)[1]) for x, y in short]


def test_long_lists_of_skipped_videos_show_ten_and_collapse_the_rest(tmp_path):
    """1,800 skipped videos were listed in full, each reason's line 71 KB, and 300 partial videos one line each."""
    run = tmp_path / "run"
    make_run(run, "run/backbone", davis=0.8, flow=2.5)
    paths = [f"v{k:02d}.mp4" for k in range(50)]
    partial = {f"p{k:02d}.mkv": f"decoding stopped at frame {k}" for k in range(12)}
    _write(run / "pairs" / "dataset.json", {"pairs": 9, "videos": {
        "found": 62, "mined": 12, "skipped": {"too_short": paths, "unreadable": ["bad.mp4"]},
        "skipped_detail": {p: f"why {p}" for p in paths}, "partial": partial}})
    build_report(run)
    page = (run / "report.html").read_text()
    listed = html.escape(f"the full list: {run / 'pairs' / 'dataset.json'}")
    shown, more = page.split("<li>too_short (50 videos): ")[1].split("</li>")[0].split("<details>")
    assert [p for p in paths if f"{p} (why {p})" in shown] == paths[:10]
    assert [p for p in paths if f"{p} (why {p})" in more] == paths[10:]
    assert more.startswith(f"<summary>40 more ({listed})</summary>") and more.endswith("</details>")
    assert "<li>unreadable (1 video): bad.mp4</li>" in page
    shown, more = page.split("<li>mined only up to damage (12 videos): ")[1].split("</li>")[0].split("<details>")
    assert [p for p in partial if p in shown] == list(partial)[:10] and [p for p in partial if p in more] == [
        "p10.mkv", "p11.mkv"]
    assert f"<summary>2 more ({listed})</summary>" in more


def test_a_trained_backbone_that_scored_nan_keeps_its_row_and_is_named(tmp_path):
    """A NaN headline (a diverged model) vanished from the headline without a word; all NaN left an empty table."""
    run = tmp_path / "run"
    make_run(run, "run/backbone", davis=0.8, flow=2.5)
    _write(run / "eval" / "davis" / "metrics.json", {"models": {  # NaN as metrics.json writes it
        "run/backbone": {"JF_mean": None}, "raw pixels": {"JF_mean": 0.5}}})
    build_report(run)
    summary = strict_loads((run / "summary.json").read_text())
    assert summary["headline"]["davis"] == {"raw pixels": 0.5}
    assert summary["headline_not_finite"] == {"davis": ["run/backbone"]}
    page = (run / "report.html").read_text()
    head = page[page.index("<h2>Headline</h2>"):page.index("<h2>Evaluation</h2>")]
    assert "<td>J&amp;F (higher is better)</td><td>NaN</td><td>0.5000</td>" in head  # "-" is: not evaluated
    path = run / "eval" / "davis" / "metrics.json"
    assert html.escape(f"Not finite: the trained backbone (run/backbone) scored NaN on davis: {path}; a diverged or "
                       "broken model.") in head
    _write(run / "eval" / "davis" / "metrics.json", {"models": {
        "run/backbone": {"JF_mean": None}, "raw pixels": {"JF_mean": None}}})
    _write(run / "eval" / "flow" / "metrics.json", _flow({"zero": 3.0, "match[run/backbone]": float("nan")}))
    build_report(run)
    summary = strict_loads((run / "summary.json").read_text())
    assert summary["headline"] == {}
    assert summary["headline_not_finite"] == {"davis": ["run/backbone", "raw pixels"], "flow": ["run/backbone"]}
    assert set(summary["headline_metric"]) == {"davis", "flow"}
    head = (run / "report.html").read_text().split("<h2>Headline</h2>")[1].split("</table>")[0]
    assert "<td>J&amp;F (higher is better)</td><td>NaN</td><td>NaN</td>" in head
    assert "<td>EPE px (lower is better)</td><td>NaN</td><td>-</td>" in head


def test_a_flow_evaluation_of_many_pairs_collapses_its_long_tables(tmp_path):
    """At Sintel's scale the per-pair EPE table (then a column per pair) ran off the page, the reach table had
    2,070 rows and "Out of reach" named 777 pairs; the mean table stays in sight."""
    import re

    run = tmp_path / "run"
    make_run(run, "run/backbone", davis=0.8, flow=2.5)
    pairs = [f"p{k:03d}" for k in range(300)]
    flow = _flow({"zero": 3.0, "match[run/backbone]": 2.5})
    flow["pairs"] = pairs
    flow["reach"] = {"px": 32, "pairs": {p: {"in_reach_pct": 10.0, "floor_epe": 40.0} for p in pairs}}
    _write(run / "eval" / "flow" / "metrics.json", flow)
    (run / "eval" / "flow" / "metrics.md").write_text(
        "# Optical flow: 300 pairs\n\n| method | EPE |\n|---|---|\n| zero | 3.00 |\n| match[run/backbone] | 2.50 |\n\n"
        "EPE per pair:\n\n| method | " + " | ".join(pairs) + " |\n" + "|---" * 301 + "|\n"
        + "".join(f"| {m} | " + " | ".join(["1.00"] * 300) + " |\n" for m in ("zero", "match[run/backbone]"))
        + "\nWithin reach:\n\n| pair | in reach % | floor EPE |\n|---|---|---|\n"
        + "".join(f"| {p} | 10.0 | 40.00 |\n" for p in pairs))
    build_report(run)
    page = (run / "report.html").read_text()
    section = page.split("<h3>flow</h3>")[1].split("<h3>")[0]
    in_sight = re.sub(r"<details>.*?</details>", "", section, flags=re.S)
    assert "<td>match[run/backbone]</td><td>2.50</td>" in in_sight  # the mean table
    for collapsed in ("<th>p000</th>", "<th>p299</th>", "<td>p150</td><td>10.0</td>", "p020 10%"):
        assert collapsed in section and collapsed not in in_sight, collapsed
    assert "<summary>a table of 2 rows and 301 columns</summary>" in section
    assert "<summary>a table of 300 rows and 3 columns</summary>" in section
    assert "Out of reach" in in_sight and "p009 10%" in in_sight
    assert html.escape(f"290 more (all 300 in {run / 'eval' / 'flow' / 'metrics.json'})") in section
    assert page.count("<table>") == page.count("<div class='wide'><table>") > 0  # every table scrolls sideways
    assert ".wide{overflow-x:auto}" in page


def test_the_report_is_made_without_torch(tmp_path):
    """report.py imported vidssl.eval.davis (and so torch: 500 MB, most of 4 s) for the name of one folder."""
    import subprocess
    import sys

    import numpy as np

    from tracking.show import save_png

    run = tmp_path / "run"
    make_run(run, "run/backbone", davis=0.8, flow=2.5)
    save_png(run / "eval" / "davis" / "overlays" / "run_backbone" / "a.png", np.zeros((4, 4, 3), np.uint8))
    _write(run / "pairs" / "dataset.json", {"pairs": 1, "videos": {"found": 1, "mined": 1, "skipped": {}}})
    _write(run / "train" / "log.jsonl", {"step": 1, "loss": 0.4})
    _write(run / "stages" / "eval.json", {"tasks": ["davis"]})
    (run / "config.yaml").write_text("config: {}\n")
    code = ("import sys; from vidssl.report import build_report; build_report(sys.argv[1]); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))")
    done = subprocess.run([sys.executable, "-c", code, str(run)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]" and "figcaption>davis: overlays/run_backbone/a.png" in (
        run / "report.html").read_text()


def test_final_stats_whose_step_is_a_float_are_read(tmp_path):
    """train/stats.json with "step": 241.0 was discarded whole: the report said the log's 240 "of ? steps"."""
    run = tmp_path / "run"
    make_run(run, "run/backbone", davis=0.8, flow=2.5)
    (run / "train").mkdir()
    (run / "train" / "log.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n"
                                                     for s in range(10, 250, 10)))
    _write(run / "train" / "stats.json", {"step": 241.0, "total_steps": 300.0, "stopped": "budget", "loss": 0.3})
    build_report(run)
    train = strict_loads((run / "summary.json").read_text())["train"]
    assert train == {"step": 241, "total_steps": 300, "stopped": "budget", "loss": 0.3}
    assert "<p>241 of 300 steps, stopped: budget.</p>" in (run / "report.html").read_text()
    _write(run / "train" / "stats.json", {"step": 240.5, "total_steps": 300, "loss": 0.3})  # no step: the log's
    build_report(run)
    assert strict_loads((run / "summary.json").read_text())["train"] == {"step": 240, "loss": 1.0}


# ----------------------------------------------------------------------------------------------------------------
# from a mutation review: each number under its own name, names as text, figures embedded


class _Page(HTMLParser):
    """Tags, text and <img> sources of a page, as a browser's parser sees them (an independent reference)."""

    def __init__(self):
        super().__init__()
        self.tags, self.text, self.srcs, self.tables = set(), [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        if tag == "img":
            self.srcs.append(dict(attrs)["src"])
        if tag == "table":
            self.tables.append([])
        if tag == "tr" and self.tables:
            self.tables[-1].append([])

    def handle_data(self, data):
        self.text.append(data)
        if self.tables and self.tables[-1] and self.lasttag in ("td", "th"):
            self.tables[-1][-1].append(data)


def _page(run: Path) -> _Page:
    page = _Page()
    page.feed((run / "report.html").read_text())
    return page


DATASET = {"pairs": 12, "track_length": 30,
           "videos": {"found": 5, "mined": 3,
                      "skipped": {"too_short": ["<script>a</script>.mp4"], "corrupt": ["c&d.mp4"]},
                      "partial": {"e<i>f.mp4": "decoding stopped at <b>81</b> & on"}},
           "tracks_rejected": {"cut": 3, "left_frame": 4}, "start_frames_rejected": {"no_box": 7}}


def test_the_data_summary_is_the_dataset_s_numbers_each_under_its_own_name(tmp_path):
    """Kills R01 (summary tracks_rejected read from start_frames_rejected), R03 (pairs shown = videos mined),
    R10 (found/mined swapped in the page), R11 (videos_found = mined), R15 (skip counts off)."""
    run = tmp_path / "run"
    _write(run / "pairs" / "dataset.json", DATASET)
    build_report(run)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["data"] == {"pairs": 12, "videos_found": 5, "videos_mined": 3, "videos_cut_short": 0,
                               "videos_skipped": {"too_short": 1, "corrupt": 1},
                               "tracks_rejected": {"cut": 3, "left_frame": 4},
                               "start_frames_rejected": {"no_box": 7}}
    text = " ".join("".join(_page(run).text).split())
    assert "5 videos found, 3 mined, 12 positive pairs." in text


def test_names_from_the_videos_folder_and_run_are_text_never_markup(tmp_path):
    """Kills R07 (a partly mined video's note unescaped), R08 (held-out skip reasons unescaped), R09 (a task's
    folder name unescaped), R16 (the run folder's name unescaped in <h1>); R14 is killed already."""
    run = tmp_path / "run<i>&"
    _write(run / "pairs" / "dataset.json", DATASET)
    _write(run / "pairs_held_out" / "dataset.json", {
        "pairs": 4, "config": {"time_range": [0.8, 1.0]},
        "videos": {"found": 2, "mined": 1, "skipped": {"<script>x</script>": ["a.mp4"]}}})
    _write(run / "eval" / "<em>task" / "metrics.json", {"models": {"w": {"map_at_r": 0.5}, "raw pixels": {
        "map_at_r": 0.4}}})
    build_report(run)
    page = _page(run)
    allowed = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "h4", "p", "b", "i", "ul", "li",
               "div", "table", "thead", "tbody", "tr", "th", "td", "details", "summary", "code", "pre", "figure",
               "img", "figcaption", "svg", "text", "line", "polyline", "circle"}
    assert page.tags <= allowed, page.tags - allowed  # no <script>, <em> from a name
    text = "".join(page.text)
    for name in ("<script>a</script>.mp4", "c&d.mp4", "e<i>f.mp4 (decoding stopped at <b>81</b> & on)",
                 "<script>x</script>", "<em>task", "vidssl run: run<i>&"):
        assert name in text, name
    assert "<i>" not in (run / "report.html").read_text().replace("<i>raw pixels</i>", "").replace(
        "<i>(random init)</i>", "")


def test_a_hand_edited_reach_window_is_text_never_markup(tmp_path):
    """flow's metrics.json "reach.px" went into the page as it was: a string there was live markup. A number is
    shown, anything else is not."""
    run = tmp_path / "run"
    flow = _flow({"zero": 3.0, "match[w]": 2.0, "match[raw pixels]": 7.0})
    out_of_reach = {"ambush": {"in_reach_pct": 0.0, "floor_epe": 54.82}}
    for px, window in (("<script>alert(1)</script>", "only within its search window"),
                       (None, "only within its search window"), (True, "only within its search window"),
                       (32.0, "up to +-32 px per axis"), (12.5, "up to +-12.5 px per axis")):
        _write(run / "eval" / "flow" / "metrics.json", {**flow, "reach": {"px": px, "pairs": out_of_reach}})
        build_report(run)
        page = _page(run)
        assert "script" not in page.tags, px
        text = " ".join("".join(page.text).split())
        assert f"Out of reach: feature matching expresses motion {window}; pixels within it: ambush 0%" in text, px


def test_the_held_out_summary_counts_the_held_out_dataset_not_the_training_one(tmp_path):
    """Kills R02 (held_out.pairs read from pairs/dataset.json when both exist: the existing test writes only the
    held-out file)."""
    run = tmp_path / "run"
    _write(run / "pairs" / "dataset.json", {**DATASET, "pairs": 100})
    _write(run / "pairs_held_out" / "dataset.json", {"pairs": 43, "config": {"time_range": [0.8, 1.0]},
                                                    "videos": {"found": 9, "mined": 6, "skipped": {}}})
    build_report(run)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["data"]["pairs"] == 100 and summary["held_out"]["pairs"] == 43
    assert "<b>43</b> pairs from 6 of 9 videos" in (run / "report.html").read_text()


def test_curves_are_drawn_against_the_step_not_the_row(tmp_path):
    """Kills R04 (x = the record's index): steps 10, 20, 40, 80 must sit at 0, 1/7, 3/7, 1 of the axis, and the
    axis ends at step 80."""
    run = tmp_path / "run"
    (run / "train").mkdir(parents=True)
    (run / "train" / "log.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1.0 / s}) + "\n"
                                                     for s in (10, 20, 40, 80)))
    build_report(run)
    chart = next(svg for svg in (run / "report.html").read_text().split("<svg")[1:] if "Loss: total" in svg)
    xs = [float(p.split(",")[0]) for p in re.search(r'<polyline[^>]*points="([^"]*)"', chart)[1].split()]
    fractions = [(x - xs[0]) / (xs[-1] - xs[0]) for x in xs]
    assert [round(f, 3) for f in fractions] == [0.0, round(1 / 7, 3), round(3 / 7, 3), 1.0]
    assert 'text-anchor="middle">80</text>' in chart and 'text-anchor="middle">10</text>' in chart


def test_each_table_cell_sits_under_its_own_column(tmp_path):
    """Kills R05 (headers of a table built from metrics.json in another order than its cells)."""
    run = tmp_path / "run"
    metrics = {"models": {"w": {"JF_mean": 0.8, "J_mean": 0.7, "F_mean": 0.9},
                          "raw pixels": {"JF_mean": 0.5, "J_mean": 0.4, "F_mean": 0.6}}}
    _write(run / "eval" / "davis" / "metrics.json", metrics)
    build_report(run)
    html = (run / "report.html").read_text()
    page = _Page()
    page.feed(html[html.index("<h3>davis</h3>"):])
    head, *rows = page.tables[0]
    names = [h.rstrip(" \u2191\u2193") for h in head]
    for row in rows:
        model = row[0]
        got = {name: float(cell) for name, cell in zip(names[1:], row[1:])}
        assert got == metrics["models"][model], (model, got)


def test_every_figure_is_embedded_so_the_page_opens_moved_and_offline(tmp_path):
    """Kills R06 (<img src> a path on disk; only the slow pretrain test looks for "data:image/" at all)."""
    import base64

    import cv2
    import numpy as np

    run = tmp_path / "run"
    _write(run / "pairs" / "dataset.json", DATASET)
    cv2.imwrite(str(run / "pairs" / "pairs_grid.png"), np.full((8, 8, 3), 200, np.uint8))
    _write(run / "eval" / "davis" / "metrics.json", {"models": {"w": {"JF_mean": 0.8}, "raw pixels": {
        "JF_mean": 0.5}}})
    cv2.imwrite(str(run / "eval" / "davis" / "overlay.png"), np.zeros((8, 8, 3), np.uint8))
    build_report(run)
    moved = tmp_path / "elsewhere.html"
    (run / "report.html").rename(moved)  # the page alone, its run deleted
    import shutil

    shutil.rmtree(run)
    page = _Page()
    page.feed(moved.read_text())
    assert len(page.srcs) == 2
    for src in page.srcs:
        head, payload = src.split(",", 1)
        assert head in ("data:image/png;base64", "data:image/jpeg;base64")
        assert cv2.imdecode(np.frombuffer(base64.b64decode(payload), np.uint8), cv2.IMREAD_COLOR).shape == (8, 8, 3)


def test_a_headline_is_the_metric_the_task_says_it_is(tmp_path):
    """Kills R13 (a model's headline number taken from the last of HEADLINE_KEYS it has, while headline_metric names
    the first): a retrieval-and-DAVIS style row holding both JF_mean and map_at_r."""
    run = tmp_path / "run"
    _write(run / "eval" / "t" / "metrics.json", {"models": {"w": {"JF_mean": 0.8, "map_at_r": 0.3},
                                                            "raw pixels": {"JF_mean": 0.5, "map_at_r": 0.2}}})
    build_report(run)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["headline_metric"]["t"]["metric"] == "J&F"
    assert summary["headline"]["t"] == {"w": 0.8, "raw pixels": 0.5}


# ----------------------------------------------------------------------------------------------------------------
# from a review: hand-edited values of the wrong kind, evaluations without a row, runs made stage by stage


def test_a_fit_history_or_step_of_the_wrong_kind_is_left_out_not_a_traceback(tmp_path):
    """train/stats.json with "fit_history": 1 (or true) was a TypeError traceback from `vidssl report`; "step": true
    passed for a step (a bool is an int) and the page said "True of 355 steps"."""
    import yaml

    run = tmp_path / "run"
    (run / "train").mkdir(parents=True)
    (run / "train" / "log.jsonl").write_text(json.dumps({"step": 10, "loss": 1.0}) + "\n")
    (run / "train" / "config.yaml").write_text(yaml.safe_dump({"config": {"train": {
        "steps": 1200, "fit_budget": True, "budget_minutes": 6.0}}}))
    stats = {"step": 355, "total_steps": 355, "stopped": "done"}
    fitted = "355 of 355 steps, the count the time budget fitted (train.fit_budget; train.steps=1200 is the cap"
    for history, planned in ((1, ""), (True, ""), ("7,357", ""), ({"7": 357}, ""), (None, ""),
                             ([[7, "357"], [7], {"at": 7}, 3, [True, 9], [40, 355]], "; planned 355 after step 40"),
                             ([[7.0, 357.0]], "; planned 357 after step 7")):
        _write(run / "train" / "stats.json", {**stats, "fit_history": history})
        build_report(run)
        assert f"<p>{fitted}{planned}), stopped: done.</p>" in (run / "report.html").read_text(), history
    _write(run / "train" / "stats.json", {**stats, "step": True})  # no step: the log's last record stands in
    build_report(run)
    assert strict_loads((run / "summary.json").read_text())["train"] == {"step": 10, "loss": 1.0}
    (run / "train" / "log.jsonl").write_text("")  # and without one, nothing is known of the training
    build_report(run)
    assert "train" not in strict_loads((run / "summary.json").read_text())


EMPTY_METRICS = {"empty": {}, "models_list": {"models": []}, "foreign": {"foo": 1}, "no_methods": {"methods": {}},
                 "no_rows": {"models": {"w": 0.5}, "labels": 3}}


def test_a_metrics_json_without_any_model_s_row_is_named_unreadable(tmp_path):
    """An eval/<task>/metrics.json that is a JSON object holding no model's metrics was shown as an empty table
    headed `model` alone; it is JSON that is not an evaluation's, named as such with the fix. Other readers
    (compare, the pipeline's reuse of a finished task) read it as before."""
    from vidssl.report import read_metrics, uninformative_tasks

    run = tmp_path / "run"
    make_run(run, "run/backbone", davis=0.8, flow=2.5)
    for task, content in EMPTY_METRICS.items():
        _write(run / "eval" / task / "metrics.json", content)
    build_report(run)
    html_text = (run / "report.html").read_text()
    page = _page(run)
    assert ["model"] not in [table[0] for table in page.tables if table]  # no table of a lone `model` header
    for task in EMPTY_METRICS:
        section = html_text.split(f"<h3>{task}</h3>")[1].split("<h3>")[0]
        path = run / "eval" / task / "metrics.json"
        assert section.startswith(f"<p><b>unreadable</b> {path}: holds no model&#x27;s metrics"), task
        assert "rerun this evaluation to rewrite it" in section and "<table" not in section, task
    summary = strict_loads((run / "summary.json").read_text())
    assert set(summary["headline"]) == {"davis", "flow"}  # the readable tasks are still reported
    assert read_metrics(run / "eval" / "empty" / "metrics.json") == {}  # as compare and the pipeline read it
    _write(run / "eval" / "one_label" / "metrics.json", {"labels": 1, "models": {}})
    assert ("one_label", "only one label: every neighbour is relevant, so every model scores 1 by construction") \
        in uninformative_tasks(run)  # the pipeline's warning on it stands


def test_a_run_made_stage_by_stage_is_told_what_it_lacks_and_the_command_that_makes_it(tmp_path, capsys):
    """A folder of mined pairs alone (no stages/, train/, eval/) got a report of its data and nothing on the rest;
    and summary.json said "warnings": [] though no warnings.json was there to say so."""
    from train_utils import synthetic_pairs

    run = tmp_path / "my run"
    synthetic_pairs(run / "pairs", num_videos=1, tracks_per_video=2, size=16)
    assert main(["report", str(run)]) == 0
    page = (run / "report.html").read_text()
    assert "<h2>Not in this run folder</h2>" in page
    listed = re.findall(r"<li>([^<]*): <code>([^<]*)</code></li>", page.split("<h2>Not in this run folder</h2>")[1])
    q = f"'{run}"  # the folder has a space: each path quoted for the shell
    assert [(html.unescape(what), html.unescape(command)) for what, command in listed] == [
        ("training (train/)", f"vidssl train {q}/pairs' --out {q}/train'"),
        ("exported weights (backbone.pt, model_card.json)", f"vidssl export {q}/train' --out {q}/backbone.pt'"),
        ("evaluations (eval/<task>/)", f"vidssl eval TASK --weights {q}/backbone.pt' --data DATA --out {q}/eval'/TASK")]
    assert "warnings" not in strict_loads((run / "summary.json").read_text())
    # each part made: named no more; with all of them, no section
    _write(run / "train" / "stats.json", {"step": 3, "total_steps": 3, "stopped": "done"})
    _write(run / "model_card.json", {"arch": "smallcnn", "input_size": 64})
    build_report(run)
    said = (run / "report.html").read_text().split("<h2>Not in this run folder</h2>")[1]
    assert "training" not in said and "exported" not in said and "evaluations (eval/&lt;task&gt;/)" in said
    _write(run / "eval" / "davis" / "metrics.json", {"models": {"w": {"JF_mean": 0.8}}})
    build_report(run)
    assert "Not in this run folder" not in (run / "report.html").read_text()
    # a pretrain run (stages/) has its stages table instead
    (run / "model_card.json").unlink()
    (run / "stages").mkdir()
    build_report(run)
    page = (run / "report.html").read_text()
    assert "Not in this run folder" not in page and "<h2>Stages</h2>" in page


def test_a_file_inside_a_stage_folder_names_the_run_and_a_file_in_no_run_names_none(tmp_path, capsys, monkeypatch):
    """`vidssl report s0/eval/davis/metrics.json` was told to pass s0/eval/davis, which is refused next as a stage
    folder: the run folder above the stage folders is named (as given: relative stays relative). A file in a folder
    that is no run (a script in a scratch folder) was told to pass `.`, which is no run either."""
    run = tmp_path / "s0"
    make_run(run, "s0/backbone", davis=0.8, flow=2.5)
    (run / "eval" / "davis" / "overlays").mkdir()
    (run / "eval" / "davis" / "overlays" / "a.png").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    for inside in ("s0/eval/davis/metrics.json", "s0/eval/davis/overlays/a.png", "s0/model_card.json"):
        assert main(["report", inside]) == 1
        err = capsys.readouterr().err
        assert f"{inside} is a file; pass the run folder it belongs to (s0)" in err and "`vidssl report s0`" in err
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "bg.sh").write_text("vidssl pretrain --out s1\n")
    monkeypatch.chdir(scratch)
    assert main(["report", "bg.sh"]) == 1
    err = capsys.readouterr().err
    assert "bg.sh is a file, not a run folder, and no folder above it is a run" in err
    assert "(.)" not in err and "vidssl report ." not in err
    # a stray summary.json higher up (the user's home) is no run holding the files below it: it was named, and
    # `vidssl report HOME` would have written a report there
    (tmp_path / "home" / "proj" / "data").mkdir(parents=True)
    (tmp_path / "home" / "summary.json").write_text("{}")
    (tmp_path / "home" / "proj" / "data" / "x.csv").write_text("hi\n")
    monkeypatch.chdir(tmp_path)
    assert main(["report", "home/proj/data/x.csv"]) == 1
    err = capsys.readouterr().err
    assert "x.csv is a file, not a run folder, and no folder above it is a run" in err, err
    (tmp_path / "home" / "proj" / "data" / "summary.json").write_text("{}")  # its own folder's: the run it is in
    assert main(["report", "home/proj/data/x.csv"]) == 1
    assert "pass the run folder it belongs to (home/proj/data)" in capsys.readouterr().err


def test_a_pretrain_run_stopped_in_training_has_its_warnings_and_its_checkpoint_s_steps(tmp_path):
    """A pretrain run killed during training (no warnings.json yet, an empty log, a checkpoint of step 3): its
    summary.json had no "warnings" (the README: [] for a pretrain run with none) and its report no Training
    section, though train/checkpoint.pt holds the steps done."""
    import torch

    run = tmp_path / "intr"
    _write(run / "stages" / "mine.json", {"pairs": 12, "seconds": 4.2, "config": {}})
    _write(run / "stages" / "train.started.json", {"config": {}})
    _write(run / "pairs" / "dataset.json", {"pairs": 12, "videos": {"found": 2, "mined": 2, "skipped": {}}})
    (run / "train").mkdir()
    (run / "train" / "log.jsonl").write_text("")
    torch.save({"format": 1, "step": 3, "total_steps": 200, "metrics": {"loss": 0.75, "lr": 0.1},
                "model": {"w": torch.zeros(4)}}, run / "train" / "checkpoint.pt")
    build_report(run)
    summary = strict_loads((run / "summary.json").read_text())
    assert summary["warnings"] == [] and summary["train"] == {"step": 3, "total_steps": 200, "loss": 0.75}
    assert "<h2>Training</h2><p>3 of 200 steps at its last checkpoint (train/checkpoint.pt" in \
        (run / "report.html").read_text()
    (run / "train" / "checkpoint.pt").write_bytes(b"torn")  # unreadable: no Training section, the report still
    build_report(run)
    assert "train" not in strict_loads((run / "summary.json").read_text())


def test_a_copied_run_made_stage_by_stage_is_one_training_in_compare(tmp_path, capsys):
    """A run made stage by stage records no stages/: its summary.json now keeps its training's weights digest
    (train/stats.json's weights_sha256), by which `vidssl compare` refuses its copy as one training twice."""
    import shutil

    run = tmp_path / "st"
    make_run(run, "st/backbone", davis=0.8, flow=2.5)
    _write(run / "train" / "stats.json", {"step": 10, "total_steps": 10, "stopped": "done",
                                          "weights_sha256": "c" * 64})
    shutil.copytree(run, tmp_path / "stcopy")
    for folder in (run, tmp_path / "stcopy"):
        assert main(["report", str(folder)]) == 0
    assert strict_loads((run / "summary.json").read_text())["train"]["weights_sha256"] == "c" * 64
    capsys.readouterr()
    assert main(["compare", str(run), str(tmp_path / "stcopy")]) == 1
    assert "hold the same trained weights (weights_sha256 cccccccccccc)" in capsys.readouterr().err
