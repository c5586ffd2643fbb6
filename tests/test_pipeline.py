"""`vidssl pretrain` end to end on tiny demo data, stage skipping on rerun, the report, and the loader-after-OpenCV
deadlock that the pipeline once hit."""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
from importlib import metadata

import pytest

from conftest import data_root
from video_utils import write_audio_only
from test_io import strict_loads
from tracking.config import MineConfig
from vidssl.cli import main
from vidssl.config import load_config
from vidssl.errors import ConfigError, VidsslError

TINY = ["--set", "demo.num=6", "--set", "demo.frames=70", "--set", "train.batch_pairs=16",
        "--set", "train.steps=30", "--set", "train.log_every=5", "--set", "train.image_every=0",
        "--set", "data.num_workers=1", "--set", "eval.retrieval.image_size=64"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("pretrain") / "run"
    # no --eval-data and no VIDSSL_DATA: the demo run evaluates on tracks from held-out demo clips
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("VIDSSL_DATA", raising=False)
        assert main(["-q", "pretrain", "--out", str(run), "--budget-minutes", "4", *TINY]) == 0
    return run


@pytest.mark.slow
def test_an_evaluation_that_cannot_tell_models_apart_is_a_warning_of_the_run(run_dir, tmp_path, monkeypatch, caplog):
    """Held-out tails holding one track: every model scores 1 there, so the task is left out of the headline. That
    was printed once by the command, but not kept in warnings.json, summary.json or the report's warnings."""

    monkeypatch.delenv("VIDSSL_DATA", raising=False)
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    path = run / "eval" / "tracks_held_out" / "metrics.json"
    result = json.loads(path.read_text())
    assert result["labels"] > 1 and not any("says nothing" in w for w in json.loads((run / "warnings.json").read_text()))
    path.write_text(json.dumps({**result, "labels": 1}))  # as a run whose tails held a single track
    with caplog.at_level(logging.WARNING):
        assert main(["-q", "pretrain", "--out", str(run), "--budget-minutes", "4", *TINY]) == 0  # every stage done
    said = [r.getMessage() for r in caplog.records if "says nothing about the weights" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("warning: tracks_held_out says nothing about the weights (only "
                                                 "one label") and "--eval-data" in said[0]
    warnings = json.loads((run / "warnings.json").read_text())
    assert said[0] == f"warning: {warnings[-1]}" and json.loads((run / "summary.json").read_text())["warnings"] == warnings
    assert "tracks_held_out says nothing about the weights" in (run / "report.html").read_text()


@pytest.mark.slow
def test_pretrain_writes_every_stage_and_a_self_contained_report(run_dir):
    for stage in ("mine", "train", "export", "eval"):
        assert (run_dir / "stages" / f"{stage}.json").is_file(), stage
    assert (run_dir / "backbone.pt").is_file() and (run_dir / "model_card.json").is_file()
    metrics = json.loads((run_dir / "eval" / "tracks_held_out" / "metrics.json").read_text())
    assert set(metrics["models"]) == {"run/backbone", "smallcnn (random init)", "raw pixels"}
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["data"]["pairs"] > 0 and summary["train"]["step"] == 30
    assert set(summary["headline"]["tracks_held_out"]) == set(metrics["models"])
    assert summary["headline_metric"]["tracks_held_out"] == {"metric": "MAP@R", "higher_is_better": True}
    assert summary["model_card"]["steps"] == 30 and summary["model_card"]["complete"] is True
    # what reproduces the run, for a script reading summary.json alone
    assert summary["config"].endswith("config.yaml") and summary["versions"]["torch"] == metadata.version("torch")
    assert "git_sha" in summary["versions"]
    # every JSON file of the run is strict JSON (no NaN / Infinity), as browsers and jq read it
    for path in [*run_dir.rglob("*.json"), *run_dir.rglob("*.jsonl")]:
        for text in path.read_text().splitlines() if path.suffix == ".jsonl" else [path.read_text()]:
            strict_loads(text)
    html = (run_dir / "report.html").read_text()
    assert "<svg" in html and "data:image/" in html
    card = json.loads((run_dir / "model_card.json").read_text())
    assert json.dumps(card, indent=2).splitlines()[-2].strip() in html.replace("&quot;", '"')  # the whole card
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "") and "https://" not in html
    # the backbone loads in one line in user code
    import vidssl

    model = vidssl.load_backbone(run_dir / "backbone.pt")
    assert model.arch == "smallcnn" and not model.training


@pytest.mark.slow
def test_rerun_skips_completed_stages_and_redoes_a_missing_one(run_dir, caplog, monkeypatch):
    monkeypatch.delenv("VIDSSL_DATA", raising=False)  # evaluate on the held-out demo tracks only, as the first run
    before = {p.name: p.stat().st_mtime_ns for p in (run_dir / "stages").iterdir()}
    (run_dir / "stages" / "eval.json").unlink()
    # a clip being written when the run was killed: removed on the rerun, which holds RUN's lock
    leftover = run_dir / "demo_videos" / ".tmp-clip_00.mp4.k1ll3d"
    leftover.write_bytes(b"half a clip")
    half_export = run_dir / ".tmp-backbone.pt.k1ll3d"  # so is an export's
    half_export.write_bytes(b"half the weights")
    caplog.set_level(logging.INFO, logger="vidssl.pipeline")
    assert main(["pretrain", "--out", str(run_dir), "--budget-minutes", "4", *TINY]) == 0
    assert not leftover.exists() and not half_export.exists()
    for stage in ("mine", "train", "export"):
        assert f"[{stage}] already complete, skipped" in caplog.text
    # the budget continues: the completed stages' recorded seconds are spent
    spent = sum(json.loads((run_dir / "stages" / f"{stage}.json").read_text())["seconds"]
                for stage in ("mine", "train", "export"))
    assert f"{spent / 60:.1f} minutes went to stages completed earlier (budget: 4.0 minutes)" in caplog.text
    after = {p.name: p.stat().st_mtime_ns for p in (run_dir / "stages").iterdir()}
    assert all(after[k] == before[k] for k in ("mine.json", "train.json", "export.json"))
    assert (run_dir / "stages" / "eval.json").is_file()


@pytest.mark.slow
def test_a_rerun_that_redoes_nothing_keeps_the_config_that_made_the_run(run_dir, monkeypatch):
    """Every rerun rewrote RUN/config.yaml: its budget (and code version) then described the rerun, not what made
    the weights, and `vidssl compare` listed the budget as a difference between seeds."""
    monkeypatch.delenv("VIDSSL_DATA", raising=False)
    before = (run_dir / "config.yaml").read_bytes()
    assert main(["-q", "pretrain", "--out", str(run_dir), "--budget-minutes", "5", *TINY]) == 0
    assert (run_dir / "config.yaml").read_bytes() == before
    assert "budget_minutes: 4" in before.decode()


@pytest.mark.slow
def test_quiet_reaches_every_evaluation(run_dir, monkeypatch, tmp_path):
    """-q reached the flow evaluation only: retrieval and DAVIS drew their progress bars on a terminal."""
    import vidssl.eval.retrieval as retrieval

    monkeypatch.delenv("VIDSSL_DATA", raising=False)
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    shutil.rmtree(run / "eval")
    (run / "stages" / "eval.json").unlink()
    asked, evaluate = [], retrieval.evaluate_retrieval

    def spy(*args, **kwargs):
        asked.append(kwargs.get("progress"))
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(retrieval, "evaluate_retrieval", spy)
    assert main(["-q", "pretrain", "--out", str(run), "--budget-minutes", "4", *TINY]) == 0
    assert asked == [False]


@pytest.mark.slow
def test_without_the_report_no_earlier_summary_is_printed_as_the_result(run_dir, monkeypatch, capsys, tmp_path):
    """With pretrain.run_report false the command printed the headline of whatever summary.json an earlier run
    left, which after an evaluation of new weights were the old weights' numbers."""
    monkeypatch.delenv("VIDSSL_DATA", raising=False)
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    summary = json.loads((run / "summary.json").read_text())
    summary["headline"] = {"tracks_held_out": {"stale/backbone": 0.123456}}
    (run / "summary.json").write_text(json.dumps(summary))
    capsys.readouterr()
    assert main(["-q", "pretrain", "--out", str(run), "--budget-minutes", "4", *TINY,
                 "--set", "pretrain.run_report=false"]) == 0
    out = capsys.readouterr().out
    assert "0.123" not in out and "report:  off (pretrain.run_report: false)" in out
    assert json.loads((run / "summary.json").read_text()) == summary  # not rewritten either


@pytest.mark.slow
def test_the_last_lines_paste_into_a_shell_and_into_python(run_dir, monkeypatch, capsys, tmp_path):
    """A run folder named with a space printed `report:  my run/report.html`, which a shell splits in two; with a
    quote, the load call `vidssl.load_backbone('my run's/backbone.pt')` was no Python."""
    import shlex

    monkeypatch.delenv("VIDSSL_DATA", raising=False)
    run = tmp_path / "my run's"
    shutil.copytree(run_dir, run)
    capsys.readouterr()
    assert main(["-q", "pretrain", "--out", str(run), "--budget-minutes", "4", *TINY]) == 0  # every stage done
    lines = capsys.readouterr().out.splitlines()
    report = next(line for line in lines if line.startswith("report:  "))
    assert shlex.split(report[len("report:  "):]) == [str(run / "report.html")]
    weights = next(line for line in lines if line.startswith("weights: "))
    assert shlex.split(weights[len("weights: "):].split("  (")[0]) == [str(run / "backbone.pt")]
    assert f"(load with: vidssl.load_backbone({str(run / 'backbone.pt')!r}))" in weights


@pytest.mark.slow
def test_rerun_with_other_settings_is_refused_before_anything_changes(run_dir, monkeypatch, capsys, tmp_path, caplog):
    monkeypatch.delenv("VIDSSL_DATA", raising=False)
    config_yaml = (run_dir / "config.yaml").read_bytes()
    clips = {p: p.stat().st_mtime_ns for p in (run_dir / "demo_videos").iterdir()}
    markers = {p: p.read_bytes() for p in (run_dir / "stages").iterdir()}
    base = ["pretrain", "--out", str(run_dir), "--budget-minutes", "4", *TINY]
    for extra, stage, change in [
        (["--set", "train.lr=0.1"], "train", "train.lr: 0.02 -> 0.1"),  # the weights would be the old lr's
        (["--set", "mine.min_box_px=40"], "mine", "mine.min_box_px: 32 -> 40"),
        (["--set", "demo.num=4"], "mine", "demo.num: 6 -> 4"),  # the clips would be rewritten under the pairs
    ]:
        assert main(base + extra) == 2, extra
        err = capsys.readouterr().err
        assert f"its {stage} stage was completed with other settings ({change})" in err, err
        assert "choose a new --out" in err
    # keys of two stages changed at once: both named in one refusal (the second was found only on the next try)
    caplog.set_level(logging.INFO, logger="vidssl.pipeline")
    caplog.clear()
    assert main(base + ["--set", "train.lr=0.1", "--set", "mine.min_box_px=40", "--set",
                        "eval.retrieval.grid_queries=3"]) == 2
    err = capsys.readouterr().err
    assert ("its mine stage was completed with other settings (mine.min_box_px: 32 -> 40); its train stage was "
            "completed with other settings (train.lr: 0.02 -> 0.1); rerun with the same settings to reuse") in err
    assert "done again" not in caplog.text  # the evaluation's change: not announced as redone by a refused command
    assert (run_dir / "config.yaml").read_bytes() == config_yaml
    assert {p: p.stat().st_mtime_ns for p in (run_dir / "demo_videos").iterdir()} == clips
    assert {p: p.read_bytes() for p in (run_dir / "stages").iterdir()} == markers
    # bad evaluation data, a non-positive budget, a key the demo does not read: refused before anything changes
    for extra, code, message in [
        (["--eval-data", str(tmp_path / "nowhere")], 1, "no such folder"),
        (["--eval-data", str(tmp_path)], 1, "no evaluation data found"),  # an empty folder is not silently skipped
        (["--set", "pretrain.budget_minutes=0"], 2, "config key 'pretrain.budget_minutes': must be > 0"),
        (["--budget-minutes", "inf"], 2, "the budget must be a positive number of minutes"),  # not a loaded key
        (["--set", "mine.box_fraction=0.4"], 2, "set that key instead"),
        # a flow pattern matching no pair: found out after training, fixing it redid every finished evaluation
        (["--eval-data", str(data_root()), "--set", "eval.flow.pairs=['no_such_pair/*']"], 2,
         "'eval.flow.pairs': 'no_such_pair/*' matches none of the 2 pairs"),
    ]:
        argv = [a for a in base if a not in ("--budget-minutes", "4")] if "budget" in extra[1] else base
        assert main(argv + extra) == code, extra
        assert message in capsys.readouterr().err
    assert {p: p.read_bytes() for p in (run_dir / "stages").iterdir()} == markers
    # speed and logging knobs may change: every stage is reused
    assert main(base + ["--set", "data.num_workers=0", "--set", "train.log_every=7"]) == 0
    # the run's own config.yaml reproduces it, and keeps the user's mine.box_fraction: the same file given to a
    # --videos run mines at the default box size, not at the demo's (it recorded the demo's once)
    assert main(base + ["--config", str(run_dir / "config.yaml")]) == 0
    recorded = load_config(run_dir / "config.yaml")
    assert recorded.mine.box_fraction == MineConfig().box_fraction != recorded.demo.mine_box_fraction
    assert not list((run_dir / "stages").glob("*.started.json"))  # a completed stage leaves only its marker


@pytest.mark.slow
def test_redoing_a_stage_redoes_the_stages_built_on_it(run_dir, monkeypatch, caplog):
    monkeypatch.delenv("VIDSSL_DATA", raising=False)
    base = ["pretrain", "--out", str(run_dir), "--budget-minutes", "4", *TINY]
    stages, metrics = run_dir / "stages", run_dir / "eval" / "tracks_held_out" / "metrics.json"
    caplog.set_level(logging.INFO, logger="vidssl.pipeline")
    # an evaluation interrupted after finishing its task: resumed, that task is reused
    settings = json.loads((stages / "eval.json").read_text())["config"]
    (stages / "eval.json").unlink()
    (stages / "eval.started.json").write_text(json.dumps({"config": settings, "parts_done": ["tracks_held_out"]}))
    before = metrics.stat().st_mtime_ns
    assert main(base) == 0
    assert "[eval] ..." in caplog.text and "[eval] retrieval on" not in caplog.text
    assert "[eval] ... (resumed: an earlier run began it)" in caplog.text
    assert metrics.stat().st_mtime_ns == before and (stages / "eval.json").is_file()
    # a finished task whose metrics.json was torn since (a hand edit): evaluated again, not a traceback
    for edited in ("{torn", "{}"):  # torn, or an object holding no model's row: no result to keep
        (stages / "eval.json").unlink(missing_ok=True)
        (stages / "eval.started.json").write_text(json.dumps({"config": settings, "parts_done": ["tracks_held_out"]}))
        metrics.write_text(edited)
        caplog.clear()
        assert main(base) == 0
        assert "[eval] retrieval on" in caplog.text, edited
        assert all("map_at_r" in m for m in json.loads(metrics.read_text())["models"].values())
    # the export redone (its marker gone): the evaluation made from the previous export is redone too
    (stages / "export.json").unlink()
    caplog.clear()
    assert main(base) == 0
    assert "[export] ..." in caplog.text and "[eval] retrieval on" in caplog.text
    assert "(resumed:" not in caplog.text  # begun afresh: the evaluation's record went with the old export
    assert metrics.stat().st_mtime_ns != before
    assert (stages / "eval.json").is_file() and not list(stages.glob("*.started.json"))
    # redone with the evaluation switched off: the earlier weights' evaluations go with them (the report showed
    # their numbers as the new weights'); the evaluation's recorded seconds are not counted as spent
    (stages / "export.json").unlink()
    caplog.clear()
    assert main([*base, "--set", "pretrain.run_eval=false"]) == 0
    assert "[export] ..." in caplog.text and not (run_dir / "eval").exists()
    assert "went to stages completed earlier" in caplog.text
    assert main(base) == 0  # evaluated again, for the tests after this one
    assert metrics.is_file()
    # a task's metrics.json deleted after its evaluation completed: its numbers are nowhere else, so the same
    # command evaluates again (it vanished from the report and compare without a word)
    metrics.unlink()
    caplog.clear()
    assert main(base) == 0
    assert f"[eval] {metrics} gone since the evaluation completed: that task is done again" in caplog.text
    assert "[export] already complete" in caplog.text and metrics.is_file()


@pytest.mark.slow
def test_other_evaluation_settings_evaluate_again(run_dir, tmp_path, monkeypatch, caplog):
    """Nothing is built on the evaluation, so other evaluation settings (another --eval-data, VIDSSL_DATA set after
    the quick start, an eval.* key) redo it from the same weights instead of asking for a new run."""
    import shutil

    monkeypatch.delenv("VIDSSL_DATA", raising=False)
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    before = {stage: (run / "stages" / f"{stage}.json").read_bytes() for stage in ("mine", "train", "export")}
    (run / "eval" / "stale").mkdir()  # an earlier evaluation's task: must not survive into the new report
    caplog.set_level(logging.INFO, logger="vidssl.pipeline")
    command = ["pretrain", "--out", str(run), "--budget-minutes", "4", *TINY, "--set", "eval.retrieval.grid_queries=3"]
    assert main(command) == 0
    assert "[eval] completed with other settings (eval.retrieval.grid_queries: 8 -> 3): done again" in caplog.text
    assert {stage: (run / "stages" / f"{stage}.json").read_bytes() for stage in before} == before
    assert json.loads((run / "stages" / "eval.json").read_text())["config"]["eval.retrieval.grid_queries"] == 3
    assert "grid_queries: 3" in (run / "config.yaml").read_text() and not (run / "eval" / "stale").exists()
    # evaluation switched off: other eval settings no longer delete the evaluation it will not redo
    metrics = sorted(p.relative_to(run) for p in (run / "eval").rglob("metrics.json"))
    assert metrics and main([*command[:-1], "eval.retrieval.grid_queries=5", "--set", "pretrain.run_eval=false"]) == 0
    assert sorted(p.relative_to(run) for p in (run / "eval").rglob("metrics.json")) == metrics
    assert json.loads((run / "stages" / "eval.json").read_text())["config"]["eval.retrieval.grid_queries"] == 3


@pytest.mark.slow
def test_evaluation_data_changed_in_place_is_evaluated_again_set_by_set(run_dir, tmp_path, monkeypatch, caplog):
    """Only the --eval-data path was recorded: classes added to a set and a new set beside it, as the "too easy,
    evaluate on data with more labels" warning advises, were never evaluated ("[eval] already complete, skipped")."""
    from test_retrieval_data import solid, write_rgb

    monkeypatch.delenv("VIDSSL_DATA", raising=False)
    run, data = tmp_path / "run", tmp_path / "data"
    shutil.copytree(run_dir, run)

    def add_classes(folder, first, last):
        for c in range(first, last):
            for i in range(2):
                write_rgb(folder / f"class{c}" / f"{i}.png", solid((30 * c, 200 - 20 * c, 60 + 10 * i)))

    add_classes(data / "retrieval" / "toy", 0, 3)
    command = ["pretrain", "--out", str(run), "--budget-minutes", "4", *TINY, "--eval-data", str(data)]
    caplog.set_level(logging.INFO, logger="vidssl.pipeline")
    assert main(command) == 0
    metrics = run / "eval" / "toy" / "metrics.json"
    held_out = run / "eval" / "tracks_held_out" / "metrics.json"
    assert json.loads(metrics.read_text())["labels"] == 3
    kept = [held_out] + [run / "stages" / f"{stage}.json" for stage in ("mine", "train", "export")]
    before = {path: path.stat().st_mtime_ns for path in kept}
    add_classes(data / "retrieval" / "toy", 3, 8)
    add_classes(data / "retrieval" / "toy2", 0, 3)
    caplog.clear()
    assert main(command) == 0
    toy = data / "retrieval" / "toy"
    assert f"[eval] {toy}: its files changed since it was evaluated: evaluated again" in caplog.text
    assert f"[eval] new evaluation set {data / 'retrieval' / 'toy2'}: evaluated" in caplog.text
    assert "[eval] already complete, skipped" not in caplog.text
    assert json.loads(metrics.read_text())["labels"] == 8 and (run / "eval" / "toy2" / "metrics.json").is_file()
    assert {path: path.stat().st_mtime_ns for path in kept} == before  # the held-out tracks, the other stages
    assert json.loads((run / "stages" / "eval.json").read_text())["tasks"] == ["toy", "toy2", "tracks_held_out"]
    assert {"toy", "toy2"} <= set(json.loads((run / "summary.json").read_text())["headline"])
    caplog.clear()
    assert main(command) == 0  # nothing changed since
    assert "[eval] already complete, skipped" in caplog.text and "changed since" not in caplog.text
    # a set gone from the data: its results are kept and said to be, nothing is evaluated again
    shutil.rmtree(data / "retrieval" / "toy2")
    caplog.clear()
    assert main(command) == 0
    assert (f"[eval] {data / 'retrieval' / 'toy2'}, evaluated by this run, is gone from {data}: its results in "
            f"{run / 'eval' / 'toy2'} are kept") in caplog.text
    assert "[eval] already complete, skipped" in caplog.text
    # changed after an interrupted evaluation had finished it: not reused from that evaluation either
    marker = json.loads((run / "stages" / "eval.json").read_text())
    (run / "stages" / "eval.started.json").write_text(json.dumps(
        {"config": marker["config"], "made_from": marker["made_from"], "parts_done": ["toy", "tracks_held_out"],
         "outputs_cleared": True, "data": {"toy": marker["data"]["toy"]}}))
    (run / "stages" / "eval.json").unlink()
    add_classes(data / "retrieval" / "toy", 8, 9)
    # what a killed evaluation of it left: a figure of a model no longer evaluated, temp files half written
    stale = [run / "eval" / "toy" / "grid_gone_model.png", run / "eval" / "toy" / ".tmp-metrics.json.1@0badc0de.x",
             run / "stages" / ".tmp-eval.json.1@0badc0de.y"]
    for path in stale:
        path.write_bytes(b"half")
    caplog.clear()
    assert main(command) == 0
    assert f"[eval] {data / 'retrieval' / 'toy'}: its files changed since it was evaluated" in caplog.text
    assert json.loads(metrics.read_text())["labels"] == 9
    assert not [path for path in stale if path.exists()] and list((run / "eval" / "toy").glob("grid_*.png"))
    # the run folder copied, its evaluation unfinished, a task evaluated again: that task keeps the name the finished
    # ones table the trained backbone under (it was "copy/backbone" beside "run/backbone", read as a baseline)
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    (copy / "stages" / "eval.started.json").write_text(json.dumps(
        {**json.loads((run / "stages" / "eval.json").read_text()), "parts_done": ["tracks_held_out"]}))
    (copy / "stages" / "eval.json").unlink()
    (copy / "eval" / "toy" / "metrics.json").unlink()
    caplog.clear()
    assert main([*command[:2], str(copy), *command[3:]]) == 0
    assert f"[eval] retrieval on {data / 'retrieval' / 'toy'}" in caplog.text
    assert "run/backbone" in json.loads((copy / "eval" / "toy" / "metrics.json").read_text())["models"]
    summary = json.loads((copy / "summary.json").read_text())
    assert summary["trained_model"] == "run/backbone" and "run/backbone" in summary["headline"]["toy"]
    # changed again, and now failing: the results it had stand (a failure loses nothing), and stay once the set is
    # gone from the data
    shutil.move(str(data / "retrieval" / "toy"), str(tmp_path / "toy_away"))
    (data / "retrieval" / "toy" / "class0").mkdir(parents=True)  # a class folder without images: no images found
    assert main(command) == 1
    assert json.loads(metrics.read_text())["labels"] == 9
    (data / "retrieval" / "toy" / "class0").rmdir()
    (data / "retrieval" / "toy").rmdir()
    add_classes(data / "retrieval" / "toy3", 0, 3)  # the data folder holds some set
    assert main(command) == 0
    assert "toy" in json.loads((run / "summary.json").read_text())["headline"]
    assert "[eval] retrieval on" not in caplog.text.replace(f"[eval] retrieval on {data / 'retrieval' / 'toy'}", "")


@pytest.mark.slow
def test_deleted_weights_are_exported_and_evaluated_again(run_dir, tmp_path, monkeypatch, caplog):
    """A rerun found every stage complete with RUN/backbone.pt deleted: summary.json and the report named a file
    that was not there."""
    from vidssl.io import file_record

    monkeypatch.delenv("VIDSSL_DATA", raising=False)
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    (run / "backbone.pt").unlink()
    with caplog.at_level(logging.INFO, logger="vidssl.pipeline"):
        assert main(["-q", "pretrain", "--out", str(run), "--budget-minutes", "4", *TINY]) == 0
    assert f"[export] {run / 'backbone.pt'} gone since this stage completed: exported again" in caplog.text
    assert "[eval] already complete, skipped" not in caplog.text
    summary = json.loads((run / "summary.json").read_text())
    assert summary["weights"] == str(run / "backbone.pt") and (run / "backbone.pt").is_file()
    assert summary["stages"]["eval"]["made_from"] == file_record(run / "backbone.pt")  # the new weights' evaluation


def test_an_evaluation_missing_one_task_s_numbers_does_that_task_alone_again(tmp_path):
    """Its marker cleared, the evaluation began afresh: it deleted RUN/eval and redid every task (DAVIS, the flow
    decoders) for one deleted metrics.json, and lost them all where the recorded evaluation data was gone."""
    from vidssl.pipeline import Stages, forget_changed_inputs

    run = tmp_path / "run"
    stages = Stages(run)
    for task in ("davis", "flow"):
        (run / "eval" / task).mkdir(parents=True)
        (run / "eval" / task / "metrics.json").write_text("{}")
    (run / "stages").mkdir()
    made_from = {"size": 5, "mtime_ns": 7}
    marker = {"tasks": ["davis", "flow"], "seconds": 80.0, "config": {"eval.davis.topk": 10}, "made_from": made_from}
    (run / "stages" / "eval.json").write_text(json.dumps(marker))
    enabled = {"mine": True, "train": True, "export": True, "eval": True}
    forget_changed_inputs(run, stages, enabled)
    assert stages.done("eval") == marker  # all there: complete
    (run / "eval" / "flow" / "metrics.json").unlink()
    forget_changed_inputs(run, stages, {**enabled, "eval": False})
    assert stages.done("eval") == marker  # switched off: left as it is
    forget_changed_inputs(run, stages, enabled)
    assert stages.done("eval") is None
    assert stages.started("eval") == {"config": marker["config"], "parts_done": ["davis"], "outputs_cleared": True,
                                      "made_from": made_from}
    assert stages.parts_done("eval") == {"davis"} and stages.outputs_cleared("eval")
    assert (run / "eval" / "davis" / "metrics.json").is_file()


def test_a_set_holding_another_set_s_folder_is_fingerprinted_without_it(tmp_path):
    """--eval-data a DAVIS folder that also holds flow/: the DAVIS set's fingerprint covered flow's files, so a pair
    added to flow/ evaluated DAVIS, the slowest task, again as well."""
    from vidssl.pipeline import eval_data_fingerprints

    for name in ("JPEGImages/480p/s/00000.jpg", "Annotations/480p/s/00000.png", "flow/a.flo"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(name.encode())
    before = eval_data_fingerprints(tmp_path)
    assert set(before) == {"davis", "davis_instances", "flow"} and before["davis"]["files"] == 2
    (tmp_path / "flow" / "b.flo").write_bytes(b"a pair added")
    after = eval_data_fingerprints(tmp_path)
    assert [task for task in before if before[task] != after[task]] == ["flow"]


def test_an_evaluation_set_changed_or_added_is_evaluated_again_alone(tmp_path, caplog):
    """The eval marker recorded the --eval-data path only: files added, replaced or removed there, or a new set
    beside the others, left the finished evaluation as it was. Its sets' fingerprints are compared now."""
    from vidssl.pipeline import Stages, eval_data_fingerprints, forget_changed_inputs

    data, run = tmp_path / "data", tmp_path / "run"
    for name in ("toy/a/0.png", "toy/b/0.png", "other/a/0.png", "other/b/0.png"):
        (data / "retrieval" / name).parent.mkdir(parents=True, exist_ok=True)
        (data / "retrieval" / name).write_bytes(b"image " + name.encode())
    tasks = ["other", "toy", "tracks_held_out"]
    for task in tasks:
        (run / "eval" / task).mkdir(parents=True)
        (run / "eval" / task / "metrics.json").write_text("{}")
    stages = Stages(run)
    stages.dir.mkdir()
    marker = {"tasks": tasks, "seconds": 9.0, "config": {"--eval-data": str(data)},
              "made_from": {"size": 5, "mtime_ns": 7}, "data": eval_data_fingerprints(data)}
    assert set(marker["data"]) == {"toy", "other"}  # the held-out tracks are the mine stage's
    enabled = {"mine": True, "train": True, "export": True, "eval": True}

    def rerun() -> dict | None:
        (run / "stages" / "eval.started.json").unlink(missing_ok=True)
        (run / "stages" / "eval.json").write_text(json.dumps(marker))
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="vidssl.pipeline"):
            forget_changed_inputs(run, stages, enabled, data)
        return stages.started("eval")

    toy = data / "retrieval" / "toy"
    (toy / ".DS_Store").write_bytes(b"hidden: not read as data")
    assert rerun() is None and stages.done("eval") == marker and caplog.text == ""  # unchanged
    for change in (lambda: (toy / "c").mkdir() or (toy / "c" / "0.png").write_bytes(b"a class added"),
                   lambda: (toy / "a" / "0.png").write_bytes(b"image replaced"),
                   lambda: os.utime(toy / "b" / "0.png", ns=(1, 1)),  # the same size: its time tells
                   lambda: (toy / "b" / "0.png").unlink()):
        change()
        record = rerun()
        assert stages.done("eval") is None and record["parts_done"] == ["other", "tracks_held_out"]
        assert record["data"] == marker["data"] and record["made_from"] == marker["made_from"]
        assert f"[eval] {toy}: its files changed since it was evaluated: evaluated again" in caplog.text
        marker["data"] = eval_data_fingerprints(data)  # as the evaluation records it
    (data / "retrieval" / "new" / "a").mkdir(parents=True)
    (data / "retrieval" / "new" / "a" / "0.png").write_bytes(b"a new set")
    assert rerun()["parts_done"] == tasks  # the new set is evaluated, the others kept
    assert f"[eval] new evaluation set {data / 'retrieval' / 'new'}: evaluated" in caplog.text
    shutil.rmtree(data / "retrieval" / "new")
    shutil.rmtree(data / "retrieval" / "other")  # gone: its results are kept and said to be
    assert rerun() is None and stages.done("eval") == marker
    assert (f"[eval] {data / 'retrieval' / 'other'}, evaluated by this run, is gone from {data}: its results in "
            f"{run / 'eval' / 'other'} are kept") in caplog.text
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    older = {k: v for k, v in marker.items() if k != "data"}  # an earlier version's marker: nothing to compare
    marker = older
    (toy / "a" / "0.png").write_bytes(b"replaced again")
    assert rerun() is None and stages.done("eval") == older and caplog.text == ""
    marker = {**older, "data": eval_data_fingerprints(data)}
    (toy / "a" / "0.png").write_bytes(b"and again")
    enabled["eval"] = False  # switched off: left as it is
    assert rerun() is None and stages.done("eval") == marker
    enabled["eval"] = True
    forget_changed_inputs(run, stages, enabled, tmp_path / "unmounted")  # the data gone: kept, as it was
    assert stages.done("eval") == marker


def test_an_evaluation_set_s_fingerprint_is_its_files_as_stat_sees_them(tmp_path):
    from vidssl.pipeline import data_fingerprint

    folder = tmp_path / "set"
    (folder / "a").mkdir(parents=True)
    (folder / "a" / "0.png").write_bytes(b"12345")
    os.utime(folder / "a" / "0.png", ns=(10**18, 10**18))
    (folder / "a" / "up").symlink_to(folder)  # a link back up the tree: walked once, no endless walk
    (folder / ".cache").mkdir()
    (folder / ".cache" / "x").write_bytes(b"hidden")
    import hashlib

    listing = [["a/0.png", 5, 10**18]]  # what it hashes, by hand: the relative path, size and mtime_ns
    assert data_fingerprint(folder) == {"files": 1, "sha256": hashlib.sha256(json.dumps(listing).encode()).hexdigest()}


def test_deleted_weights_are_exported_again_while_the_checkpoint_is_there(tmp_path, caplog):
    """A missing file was no change: with RUN/backbone.pt (or its .safetensors) deleted, every stage said "already
    complete" and the summary and report named weights that were not there."""
    from vidssl.errors import VidsslError
    from vidssl.io import file_record
    from vidssl.pipeline import MADE_FROM, Stages, forget_changed_inputs

    stages = Stages(tmp_path)
    stages.dir.mkdir()
    enabled = {"mine": True, "train": True, "export": True, "eval": True}
    weights, safetensors = tmp_path / "backbone.pt", tmp_path / "backbone.safetensors"

    def exported(**config) -> None:
        for name in ("train/checkpoint.pt", "backbone.pt", "backbone.safetensors"):
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_bytes(b"made")
        for name in ("export", "eval"):
            stages.mark(name, {"seconds": 1.0, "made_from": file_record(tmp_path / MADE_FROM[name]),
                               "config": config})

    for gone, config in ((weights, {"export.safetensors": True}), (safetensors, {"export.safetensors": True}),
                         (weights, {"export.safetensors": False})):
        exported(**config)
        forget_changed_inputs(tmp_path, stages, enabled)
        assert stages.done("export") is not None and stages.done("eval") is not None  # all there: kept
        gone.unlink()
        forget_changed_inputs(tmp_path, stages, {**enabled, "export": False})  # switched off: left as it is
        assert stages.done("export") is not None
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="vidssl.pipeline"):
            forget_changed_inputs(tmp_path, stages, enabled)
        assert stages.done("export") is None and stages.done("eval") is None
        assert (f"[export] {gone} gone since this stage completed: exported again from "
                f"{tmp_path / 'train' / 'checkpoint.pt'}, and evaluated again") in caplog.text
    exported(**{"export.safetensors": False})
    safetensors.unlink()  # not made by that export: no matter
    forget_changed_inputs(tmp_path, stages, enabled)
    assert stages.done("export") is not None
    weights.unlink()
    (tmp_path / "train" / "checkpoint.pt").unlink()
    with pytest.raises(VidsslError, match=rf"{weights} and {tmp_path / 'train' / 'checkpoint.pt'}, the training "
                                          r"checkpoint they were exported from, are gone: .* rerun into a new --out, "
                                          r"or, with that checkpoint elsewhere, `vidssl export "):
        forget_changed_inputs(tmp_path, stages, enabled)


def test_a_stage_begun_with_other_settings_that_left_nothing_is_done_again(tmp_path):
    from vidssl.pipeline import Stages, check_stage_settings

    stages = Stages(tmp_path)
    stages.dir.mkdir()
    stages.start("train", {"train.batch_pairs": 64})  # stopped on "fewer pairs than a batch": no checkpoint
    assert check_stage_settings(stages, {s: {} for s in ("mine", "export", "eval")} | {"train": {
        "train.batch_pairs": 16}}, tmp_path) == ["train"]
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "checkpoint.pt").write_bytes(b"")  # a checkpoint: the begun run would be continued
    with pytest.raises(ConfigError, match=r"train stage was started with other settings \(train.batch_pairs: 64 -> 16"):
        check_stage_settings(stages, {s: {} for s in ("mine", "export", "eval")} | {"train": {
            "train.batch_pairs": 16}}, tmp_path)
    # a key a later version added, not at its default: the trainer continues with it and warns (its checkpoint
    # does not record what the steps so far did); refusing it here contradicted that
    assert check_stage_settings(stages, {s: {} for s in ("mine", "export", "eval")} | {"train": {
        "train.batch_pairs": 64, "loss.cycle_weight": 0.5}}, tmp_path) == []
    stages.mark("train", {"seconds": 1.0, "config": {"train.batch_pairs": 64}})  # a completed one: still compared
    with pytest.raises(ConfigError, match=r"train stage was completed with other settings \(loss.cycle_weight: "):
        check_stage_settings(stages, {s: {} for s in ("mine", "export", "eval")} | {"train": {
            "train.batch_pairs": 64, "loss.cycle_weight": 0.5}}, tmp_path)


def test_a_second_command_into_the_same_folder_is_refused(tmp_path):
    from vidssl.errors import VidsslError
    from vidssl.io import run_lock

    with run_lock(tmp_path):
        code = ("import sys; from vidssl.io import run_lock\n"
                "try:\n    run_lock(sys.argv[1]).__enter__()\nexcept Exception as e:\n    print(e); sys.exit(3)")
        out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
        assert out.returncode == 3 and f"in use by another vidssl command (pid {os.getpid()})" in out.stdout
    with run_lock(tmp_path):  # released when the holder is done
        pass
    # a holder killed with kill -9 leaves no stale lock: the kernel drops a flock with its process
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from vidssl.io import run_lock\n"
                               "with run_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(60)",
                               str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(VidsslError, match=f"pid {holder.pid}"):
            run_lock(tmp_path).__enter__()
    finally:
        holder.kill()
        holder.wait()
    with run_lock(tmp_path):
        pass


@pytest.mark.slow
def test_a_failing_evaluation_keeps_the_others_and_the_report(run_dir, tmp_path, monkeypatch, capsys, caplog):
    import shutil

    import numpy as np
    from test_davis_data import two_objects, write_sequence

    monkeypatch.delenv("VIDSSL_DATA", raising=False)
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    (run / "stages" / "eval.json").unlink()  # evaluate these weights again, on other data
    # what an evaluation of earlier weights left: a task the new data lacks, and one that now fails
    shutil.copytree(run / "eval" / "tracks_held_out", run / "eval" / "gone_task")
    shutil.copytree(run / "eval" / "tracks_held_out", run / "eval" / "davis")
    (run / "warnings.json").unlink()
    masks = two_objects(frames=13)  # crops 10+ frames apart exist: instance retrieval has queries
    masks[0][:] = 0  # no object in the first frame: label propagation cannot start
    write_sequence(tmp_path / "data" / "davis", "late", masks)
    command = ["pretrain", "--out", str(run), "--eval-data", str(tmp_path / "data"), "--budget-minutes", "4", *TINY]
    with caplog.at_level(logging.WARNING):
        assert main(command) == 1
    out, err = capsys.readouterr()
    assert "1 evaluation(s) failed" in err
    # where the report of the finished tasks and the weights are, above the error (only the error was printed)
    assert out.strip().splitlines()[-2:] == [
        f"report:  {run / 'report.html'}",
        f"weights: {run / 'backbone.pt'}  (load with: vidssl.load_backbone({str(run / 'backbone.pt')!r}))"]
    failed = json.loads((run / "eval" / "failed.json").read_text())
    assert list(failed) == ["davis"] and "first-frame mask has no object" in failed["davis"]
    data = tmp_path / "data" / "davis"
    assert failed["davis"].startswith(f"{data}: no sequence") and not failed["davis"].startswith(f"{data}: {data}")
    assert not (run / "eval" / "gone_task").exists() and not (run / "eval" / "davis").exists()
    # the run's warnings (30 steps: hardly trained) are said, and in the report built before stopping
    warnings = json.loads((run / "warnings.json").read_text())
    assert any("steps" in w for w in warnings) and all(f"warning: {w}" in caplog.text for w in warnings)
    assert "<h2>Warnings</h2>" in (run / "report.html").read_text()
    assert not (run / "stages" / "eval.json").exists()  # not complete: the rerun retries what failed
    held_out = run / "eval" / "tracks_held_out" / "metrics.json"
    assert held_out.is_file() and (run / "eval" / "davis_instances" / "metrics.json").is_file()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["eval_failed"] == failed and "tracks_held_out" in summary["headline"]
    assert "Failed evaluations" in (run / "report.html").read_text()
    # the data fixed, the same command evaluates only what failed, and clears nothing of these weights' evaluation
    # but the failed task's figures (an unfinished task's state, a flow transfer checkpoint, is resumed)
    masks[0] = masks[1].copy()
    write_sequence(tmp_path / "data" / "davis", "late", masks)
    before = held_out.stat().st_mtime_ns
    (run / "eval" / "davis" / "transfer").mkdir(parents=True, exist_ok=True)
    (run / "eval" / "davis" / "transfer" / "state.pt").write_bytes(b"resumable")
    (run / "eval" / "davis" / "old_figure.png").write_bytes(b"of the failed attempt")
    assert main(command) == 0
    assert (run / "eval" / "davis" / "transfer" / "state.pt").read_bytes() == b"resumable"
    assert not (run / "eval" / "davis" / "old_figure.png").exists()
    assert not (run / "eval" / "failed.json").exists()  # the fixed run has none left (an empty one read as an alarm)
    assert held_out.stat().st_mtime_ns == before and (run / "eval" / "davis" / "metrics.json").is_file()
    assert "eval_failed" not in json.loads((run / "summary.json").read_text())
    assert np.isfinite(json.loads((run / "summary.json").read_text())["headline"]["davis"]["run/backbone"])


@pytest.mark.slow
def test_the_export_and_flow_budget_keys_reach_their_stages(run_dir, tmp_path, monkeypatch):
    """export.safetensors=false still wrote the .safetensors file, and eval.flow.budget_minutes gave way to half of
    the run's remaining budget, while config.yaml recorded both."""
    import shutil

    from vidssl.eval import flow

    monkeypatch.delenv("VIDSSL_DATA", raising=False)
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    for name in ("stages/export.json", "stages/eval.json", "backbone.pt", "backbone.safetensors"):
        (run / name).unlink()
    budgets = []
    monkeypatch.setattr(flow, "evaluate_flow", lambda *a, **k: budgets.append(k["budget_minutes"]) or {})
    (tmp_path / "data" / "flow").mkdir(parents=True)
    monkeypatch.setattr("vidssl.pipeline.discover_eval_sets", lambda given, held_out: [
        type("Set", (), {"task": "flow", "path": tmp_path / "data" / "flow", "folder": "flow", "kind": None})()])
    assert main(["-q", "pretrain", "--out", str(run), "--budget-minutes", "4", *TINY, "--set",
                 "export.safetensors=false", "--set", "eval.flow.budget_minutes=0.01"]) == 0
    assert (run / "backbone.pt").is_file() and not (run / "backbone.safetensors").exists()
    assert budgets == [0.01]
    # a larger eval.flow.budget_minutes gives way to half of what the run has left, and that to half a minute
    spent = sum(json.loads((run / "stages" / f"{stage}.json").read_text())["seconds"]
                for stage in ("mine", "train", "export"))
    for minutes, expected in ((4, (240 - spent) / 120), (spent / 60 + 0.2, 0.5)):
        (run / "stages" / "eval.json").unlink()
        assert main(["-q", "pretrain", "--out", str(run), "--budget-minutes", str(minutes), *TINY, "--set",
                     "export.safetensors=false", "--set", "eval.flow.budget_minutes=1000"]) == 0
        assert expected - 0.05 < budgets[-1] <= expected, (minutes, spent, budgets)


def test_loader_workers_survive_a_parent_that_used_opencv_threads(tmp_path):
    """A DataLoader worker forked after OpenCV's thread pool ran deadlocked in cv2.setNumThreads; the loader must
    produce a batch within a minute however the parent used OpenCV."""
    code = r"""
import sys, numpy as np, cv2, torch
sys.path.insert(0, sys.argv[2])
from pathlib import Path
from train_utils import synthetic_pairs
cv2.setNumThreads(2)
big = np.random.default_rng(0).integers(0, 255, (2000, 2000, 3), np.uint8)
for _ in range(5):
    cv2.resize(big, (1500, 1500)); cv2.GaussianBlur(big, (9, 9), 3)
from vidssl.config import load_config
from vidssl.data import PairPatches, PairBatchSampler, make_loader, open_pairs
pairs = open_pairs(synthetic_pairs(Path(sys.argv[1])))
cfg = load_config(overrides=["data.num_workers=1", "data.patch_size=32"])
ds = PairPatches(pairs, cfg.data)
sampler = PairBatchSampler(pairs.video, pairs.track, 4, 0, steps=1)
batch = next(iter(make_loader(ds, sampler, cfg.data, pin_memory=False)))
print("ok", tuple(batch[0].shape))
"""
    from pathlib import Path

    tests_dir = Path(__file__).parent
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "pairs"), str(tests_dir)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("ok")


def test_real_video_runs_hold_out_the_end_of_every_video(tmp_path):
    from vidssl.demo import make_demo_videos

    make_demo_videos(tmp_path / "videos", num=3, seed=5, frames=100)
    run = tmp_path / "run"
    only_mining = ["--set", "pretrain.run_train=false", "--set", "pretrain.run_export=false", "--set",
                   "pretrain.run_eval=false", "--set", "pretrain.run_report=false", "--set", "mine.box_fraction=0.33",
                   "--set", "pretrain.held_out_tail=0.4"]
    assert main(["-q", "pretrain", "--videos", str(tmp_path / "videos"), "--out", str(run), *only_mining]) == 0

    def records(folder):
        return [json.loads(line) for line in (run / folder / "manifest.jsonl").read_text().splitlines()]

    train, held_out = records("pairs"), records("pairs_held_out")
    assert train and held_out
    # 100 frames, the last 40% held out: training pairs lie in frames 0-59, held-out tracks in 60-99
    assert max(r["end_frame"] for r in train) <= 59 and min(r["start_frame"] for r in held_out) >= 60
    assert {r["video"] for r in held_out} <= {p.name for p in (tmp_path / "videos").glob("*.mp4")}
    # mine.time_range narrows what pretrain uses (it was ignored): the tail held out is of that part
    run = tmp_path / "run_part"
    assert main(["-q", "pretrain", "--videos", str(tmp_path / "videos"), "--out", str(run), *only_mining,
                 "--set", "mine.time_range=[0.1, 1.0]"]) == 0
    train, held_out = records("pairs"), records("pairs_held_out")
    assert train and held_out  # frames 10-63 trained on, 64-99 held out
    assert min(r["start_frame"] for r in train) >= 10 and max(r["end_frame"] for r in train) <= 63
    assert min(r["start_frame"] for r in held_out) >= 64
    # the videos are checked before a run folder is made, not on a rerun whose mining is done: that needs none
    shutil.rmtree(tmp_path / "videos")
    assert main(["-q", "pretrain", "--videos", str(tmp_path / "videos"), "--out", str(run), *only_mining,
                 "--set", "mine.time_range=[0.1, 1.0]"]) == 0


def test_held_out_tracks_are_cut_at_the_box_whatever_the_training_view(tmp_path):
    """With mine.patch_context 1.5 the training pairs show the wider window and the held-out tails still the
    tracked box (pretrain.held_out_patch_context 1): one test set for every training view. Checked against crops
    of the decoded frames, the box as recorded and the window about it."""
    import cv2
    import numpy as np

    from vidssl.demo import make_demo_videos
    from vidssl.video import open_video

    make_demo_videos(tmp_path / "videos", num=2, seed=5, frames=100)
    only_mining = ["--set", "pretrain.run_train=false", "--set", "pretrain.run_export=false", "--set",
                   "pretrain.run_eval=false", "--set", "pretrain.run_report=false", "--set", "mine.box_fraction=0.33",
                   "--set", "pretrain.held_out_tail=0.4", "--set", "mine.patch_context=1.5"]

    def cuts_of(folder) -> dict[float, int]:
        """How many of ``folder``'s stored first / last patches match a crop at each context, 1 and 1.5."""
        found = {1.0: 0, 1.5: 0}
        for line in (folder / "manifest.jsonl").read_text().splitlines()[:4]:
            rec = json.loads(line)
            stored = np.load(folder / rec["shard"], mmap_mode="r")[rec["offset"]]
            with open_video(tmp_path / "videos" / rec["video"]) as reader:
                frames = reader.get_batch([rec["start_frame"], rec["end_frame"]])
                width, height = reader.width, reader.height
            for k, (frame, (x, y, w, h)) in enumerate(zip(frames, (rec["box_start"], rec["box_end"]))):
                for context in found:  # the window about the box's centre, moved into the 320 x 240 frame
                    side = w * context
                    left = min(max(x + w / 2 - side / 2, 0.0), width - side)
                    top = min(max(y + h / 2 - side / 2, 0.0), height - side)
                    x0, y0, s = int(round(left)), int(round(top)), int(round(side))
                    want = cv2.resize(frame[y0:y0 + s, x0:x0 + s], stored.shape[1:3],
                                      interpolation=cv2.INTER_AREA if s > stored.shape[1] else cv2.INTER_LINEAR)
                    found[context] += int(np.abs(stored[k].astype(int) - want.astype(int)).mean() < 4)
        return found

    run = tmp_path / "run"
    assert main(["-q", "pretrain", "--videos", str(tmp_path / "videos"), "--out", str(run), *only_mining]) == 0
    train, held = cuts_of(run / "pairs"), cuts_of(run / "pairs_held_out")
    assert train[1.5] >= 4 and train[1.0] == 0, train
    assert held[1.0] >= 4 and held[1.5] == 0, held
    assert json.loads((run / "pairs_held_out" / "mine.json").read_text())["config"]["patch_context"] == 1.0
    # the key sets it: the tails cut as the training pairs are (a new run: the mine stage's settings differ)
    run = tmp_path / "run_wide"
    assert main(["-q", "pretrain", "--videos", str(tmp_path / "videos"), "--out", str(run), *only_mining,
                 "--set", "pretrain.held_out_patch_context=1.5"]) == 0
    held = cuts_of(run / "pairs_held_out")
    assert held[1.5] >= 4 and held[1.0] == 0, held


def test_a_messy_folder_s_bad_files_are_told_once_not_again_for_the_held_out_tails(tmp_path, caplog, monkeypatch):
    """Every bad file was reported twice, by the training part's mining and by the held-out tails' with the same
    reason (zero-byte, not a video, no index, a duplicate), and a link's "the same file as" four times a run (each
    listing of the folder) and once more on every rerun, whose mining was done. The tails still tell a skip of
    their own part (too_short: 20 frames held out of 100)."""
    from vidssl.demo import make_demo_videos

    videos = tmp_path / "videos"
    make_demo_videos(videos, num=1, seed=5, frames=100)
    (videos / "zero.mp4").write_bytes(b"")
    (videos / "notes.mp4").write_text("this is just text\n" * 50)
    # an MP4 cut short before its index: refused before any frame is decoded
    (videos / "noindex.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + b"\x00\x00\x00\x10mdat"
                                         + bytes(8))
    shutil.copyfile(videos / "clip_00.mp4", videos / "copy.mp4")  # a duplicate of clip_00.mp4
    os.symlink("clip_00.mp4", videos / "link.mp4")  # the same file: listed once
    run = tmp_path / "run"
    only_mining = ["--set", "pretrain.run_train=false", "--set", "pretrain.run_export=false", "--set",
                   "pretrain.run_eval=false", "--set", "pretrain.run_report=false", "--set", "mine.box_fraction=0.33",
                   "--set", "pretrain.mine_workers=1"]
    caplog.set_level(logging.INFO)
    assert main(["pretrain", "--videos", str(videos), "--out", str(run), *only_mining]) == 0
    skips = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and ": skipped (" in r.getMessage()]
    # "<part> (the first 80%: pretrain.held_out_tail): <video>: skipped (<reason>: <detail>)"
    training = sorted(line.split("held_out_tail): ")[1].split(": ")[0] for line in skips
                      if line.startswith("training part"))
    tails = [line.split("held_out_tail): ")[1] for line in skips if line.startswith("held-out tails")]
    assert training == ["copy.mp4", "noindex.mp4", "notes.mp4", "zero.mp4"], skips
    assert len(tails) == 1 and tails[0].startswith("clip_00.mp4: skipped (too_short: 100 frames (20 in"), skips
    # the tails' dataset records every skip all the same, the whole-file ones included
    held_out = json.loads((run / "pairs_held_out" / "dataset.json").read_text())["videos"]["skipped"]
    assert held_out == {"corrupt": ["noindex.mp4"], "duplicate": ["copy.mp4"], "empty": ["zero.mp4"],
                        "not_a_video": ["notes.mp4"], "too_short": ["clip_00.mp4"]}
    same = [r for r in caplog.records if "link.mp4: the same file as" in r.getMessage() and r.levelno >= logging.INFO]
    assert len(same) == 1, [r.getMessage() for r in same]
    caplog.clear()
    monkeypatch.setattr("vidssl.video._told_same_file", set())  # a rerun is a new process: nothing said yet
    assert main(["pretrain", "--videos", str(videos), "--out", str(run), *only_mining]) == 0  # mining done
    assert "[mine] already complete, skipped" in caplog.text
    assert not [r for r in caplog.records if "the same file as" in r.getMessage() and r.levelno >= logging.INFO]


def test_eval_sets_of_a_single_davis_folder_keep_the_held_out_tracks(tmp_path):
    from vidssl.pipeline import discover_eval_sets

    (tmp_path / "davis" / "JPEGImages").mkdir(parents=True)
    (tmp_path / "held_out").mkdir()
    (tmp_path / "held_out" / "dataset.json").write_text(json.dumps({"pairs": 3}))
    sets = discover_eval_sets(tmp_path / "davis", tmp_path / "held_out")
    assert [(s.task, s.name) for s in sets] == [("davis", "davis"), ("retrieval", "davis_instances"),
                                                ("retrieval", "tracks_held_out")]
    assert [s.name for s in discover_eval_sets(None, tmp_path / "missing")] == []
    # videos whose held-out tails are all shorter than a track: nothing to evaluate, not an error
    (tmp_path / "held_out" / "dataset.json").write_text(json.dumps({"pairs": 0}))
    assert [s.name for s in discover_eval_sets(None, tmp_path / "held_out")] == []


def test_eval_folders_are_unique_whatever_the_retrieval_sets_are_called(tmp_path):
    from vidssl.pipeline import discover_eval_sets

    for sub in ("retrieval/davis", "retrieval/flow", "retrieval/retrieval_flow", "retrieval/cub", "davis/JPEGImages",
                "flow"):
        (tmp_path / sub).mkdir(parents=True)
    sets = discover_eval_sets(tmp_path, None)
    folders = {(s.task, s.name): s.folder for s in sets}
    assert folders == {("retrieval", "cub"): "cub", ("retrieval", "davis"): "retrieval_davis",
                       ("retrieval", "flow"): "retrieval_flow", ("retrieval", "retrieval_flow"): "retrieval_retrieval_flow",
                       ("retrieval", "davis_instances"): "davis_instances", ("davis", "davis"): "davis",
                       ("flow", "flow"): "flow"}


def test_a_flow_dataset_given_alone_is_evaluated(data_dir):
    from vidssl.pipeline import discover_eval_sets

    sets = discover_eval_sets(data_dir / "flow", None)
    assert [(s.task, s.folder, s.path) for s in sets] == [("flow", "flow", data_dir / "flow")]
    assert discover_eval_sets(data_dir / "videos", None) == []  # videos are not evaluation data


def test_a_cub_release_folder_given_alone_is_a_retrieval_set(tmp_path):
    from vidssl.pipeline import discover_eval_sets

    cub = tmp_path / "CUB_200_2011"
    (cub / "images").mkdir(parents=True)
    (cub / "images.txt").write_text("")
    sets = discover_eval_sets(cub, None)
    assert [(s.task, s.name, s.path, s.kind) for s in sets] == [("retrieval", "CUB_200_2011", cub, "images")]


def test_a_budget_too_small_for_the_videos_is_said_not_hidden(tmp_path, caplog, monkeypatch):
    """Mining that stops at its budget leaves videos out of the run; the held-out tails share that budget (they
    were mined without one: a run of long videos took 6x its budget), and the user is told, at the end and in
    the report."""
    from vidssl.demo import make_demo_videos

    make_demo_videos(tmp_path / "videos", num=3, seed=5, frames=100)
    run = tmp_path / "run"
    no_training = ["--set", "pretrain.run_train=false", "--set", "pretrain.run_export=false", "--set",
                   "pretrain.run_eval=false", "--set", "mine.box_fraction=0.33", "--set", "pretrain.mine_workers=1"]
    # 60 ms in all, 18 ms for mining: the first video starts and is cut short after its first pair (a video takes
    # longer: it was mined to its end, which with a long video overran the budget by hours), nothing after it
    assert main(["-q", "pretrain", "--videos", str(tmp_path / "videos"), "--out", str(run), "--budget-minutes",
                 "0.001", *no_training]) == 0
    train_set = json.loads((run / "pairs" / "dataset.json").read_text())
    held_out = json.loads((run / "pairs_held_out" / "dataset.json").read_text())
    assert train_set["videos"]["mined"] == 0 and train_set["videos"]["pending"] == 3
    (first, detail), = train_set["videos"]["cut_short"].items()
    marker = json.loads(next((run / "pairs" / "done").glob("*.json")).read_text())
    cut_at = marker["budget_cut"]["at_frame"]
    assert first == "clip_00.mp4"
    assert detail == (f"cut short by the time budget at frame {cut_at} of 100 (mining its frames 0-80), with "
                      f"{train_set['pairs']} pair(s) from the frames before it")
    ends = [json.loads(line)["end_frame"] for line in (run / "pairs" / "manifest.jsonl").read_text().splitlines()]
    assert train_set["pairs"] == len(ends) >= 1 and max(ends) < cut_at < 80
    assert held_out["videos"]["pending"] == 3  # its budget was spent by the training pass
    logged = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    said = [line for line in logged if line.startswith("warning: ")]
    assert said[0].startswith("warning: training mining stopped at its share of the budget with 1 of 3 video(s) cut "
                              "short, with the pairs mined before the cut, and 2 not mined: this run trained without "
                              "those not mined. Rerunning")
    assert said[1].startswith("warning: held-out mining stopped at its share of the budget with 3 of 3 videos not "
                              "mined: instance retrieval across time is not evaluated")
    warnings = json.loads((run / "warnings.json").read_text())
    assert len(warnings) == 2 and json.loads((run / "summary.json").read_text())["warnings"] == warnings
    assert json.loads((run / "summary.json").read_text())["data"]["videos_cut_short"] == 1
    # the folder records the settings it was mined with (pretrain's time_range): `vidssl mine` with them mines the
    # cut video whole, as the README says
    finished = tmp_path / "finished"
    shutil.copytree(run, finished)
    assert main(["-q", "mine", str(tmp_path / "videos"), "--out", str(finished / "pairs"), "--config",
                 str(finished / "pairs" / "config.yaml")]) == 0
    whole = json.loads((finished / "pairs" / "dataset.json").read_text())
    assert whole["complete"] and "cut_short" not in whole["videos"] and whole["pairs"] > train_set["pairs"]
    report = (run / "report.html").read_text()
    assert "videos not mined" in report and "<li>none</li>" not in report
    assert "<li>cut short by the time budget (1 video): clip_00.mp4 (cut short by the time budget at frame" in report
    # training and export switched on in the same run: mining spent the whole budget, yet training takes its
    # step (it was refused as train.budget_minutes 0, a key the user never set) and the run says how short it fell
    tiny_training = ["--set", "miner.same_video_negatives=true", "--set", "train.batch_pairs=2", "--set",
                     "model.width=8", "--set", "data.num_workers=0", "--set", "train.threads=1", "--set",
                     "train.fit_budget=false"]  # the 1200 steps, not what fits a second
    caplog.clear()
    assert main(["-q", "pretrain", "--videos", str(tmp_path / "videos"), "--out", str(run), "--budget-minutes",
                 "0.001", *no_training, "--set", "pretrain.run_train=true", "--set", "pretrain.run_export=true",
                 *tiny_training]) == 0
    trained = json.loads((run / "stages" / "train.json").read_text())
    assert trained["stopped"] == "budget" and 1 <= trained["step"] < trained["total_steps"]
    assert (run / "backbone.pt").is_file()
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("warning: training stopped")]
    assert said and f"after {trained['step']} of its {trained['total_steps']} steps: too few" in said[0]
    # and evaluated: the held-out tails gave no pair and there is no --eval-data, so nothing was evaluated; the run
    # finished without a word of it (and compare asked to finish it)
    monkeypatch.delenv("VIDSSL_DATA", raising=False)
    caplog.clear()
    assert main(["-q", "pretrain", "--videos", str(tmp_path / "videos"), "--out", str(run), "--budget-minutes",
                 "0.001", *no_training, "--set", "pretrain.run_train=true", "--set", "pretrain.run_export=true",
                 "--set", "pretrain.run_eval=true", *tiny_training]) == 0
    assert json.loads((run / "stages" / "eval.json").read_text())["tasks"] == []
    assert "warning: nothing was evaluated: there were no held-out pairs (tails not mined within the budget" in \
        caplog.text
    assert any(w.startswith("nothing was evaluated") for w in json.loads((run / "warnings.json").read_text()))


def test_train_budget_minutes_set_for_pretrain_is_said_to_be_unread(tmp_path, caplog, monkeypatch):
    """pretrain gives training its share of pretrain.budget_minutes: --set train.budget_minutes=X was ignored in
    silence (and recorded in RUN/config.yaml as if it had counted)."""
    monkeypatch.delenv("VIDSSL_DATA", raising=False)
    off = [a for stage in ("mine", "train", "export", "eval", "report")
           for a in ("--set", f"pretrain.run_{stage}=false")]
    for value, said in (("2", True), ("5.0", False)):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert main(["-q", "pretrain", "--out", str(tmp_path / f"run{value}"), "--set",
                         f"train.budget_minutes={value}", *off]) == 0
        assert ("train.budget_minutes=2.0 is not read by vidssl pretrain: training gets pretrain.train_fraction" in
                caplog.text) == said
    # null, as configs/paper_alexnet.yaml has it for `vidssl train`: no warning blaming a setting the user never made
    # (it read "train.budget_minutes=None", Python's word), an info line in YAML's
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert main(["-q", "pretrain", "--out", str(tmp_path / "paper"), "--config", "configs/paper_alexnet.yaml",
                     *off]) == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "budget_minutes" in r.getMessage()]
    assert "train.budget_minutes: null (train.steps, whatever the time) is for vidssl train; under vidssl pretrain " \
           "training gets pretrain.train_fraction" in caplog.text


def test_a_stage_says_resumed_only_with_work_to_go_on_from(tmp_path, caplog):
    """A training killed before its first checkpoint starts again at step 0: the log said "(resumed: an earlier run
    began it)" all the same."""
    from vidssl.pipeline import Stages, _run_stage

    run = tmp_path / "run"
    stages = Stages(run)
    caplog.set_level(logging.INFO, logger="vidssl.pipeline")
    said = []
    for checkpoint in (False, True):
        (run / "stages").mkdir(parents=True, exist_ok=True)
        (run / "stages" / "train.started.json").write_text(json.dumps({"config": {"train.lr": 0.02}}))
        if checkpoint:
            (run / "train").mkdir()
            (run / "train" / "checkpoint.pt").write_bytes(b"state")
        caplog.clear()
        _run_stage(stages, "train", True, lambda: {}, {"train.lr": 0.02})
        said.append(next(r.getMessage() for r in caplog.records if r.getMessage().startswith("[train] ...")))
        if not checkpoint:
            (run / "stages" / "train.json").unlink()
    assert said == ["[train] ... (begun by an earlier run, which left nothing to go on from)",
                    "[train] ... (resumed: an earlier run began it)"]
    # a stage that runs makes the last report and summary stale: they go (a kill then left them beside a config of
    # other settings); one found complete keeps them
    for stale in ("summary.json", "report.html"):
        (run / stale).write_text("earlier")
    _run_stage(stages, "train", True, lambda: {}, {"train.lr": 0.02})
    assert (run / "summary.json").is_file() and (run / "report.html").is_file()  # complete: skipped
    _run_stage(stages, "export", True, lambda: {}, {})
    assert not (run / "summary.json").exists() and not (run / "report.html").exists()
    # an evaluation: resumed only after a finished task or with a flow decoder's checkpoint (killed before either,
    # it was said to resume)
    said = []
    for left in ("nothing", "a task", "a decoder"):
        record = {"config": {"eval.davis.topk": 10}, "parts_done": ["davis"] if left == "a task" else []}
        (run / "stages" / "eval.started.json").write_text(json.dumps(record))
        if left == "a decoder":
            (run / "eval" / "flow" / "transfer").mkdir(parents=True)
            (run / "eval" / "flow" / "transfer" / "run_backbone.pt").write_bytes(b"state")
        caplog.clear()
        _run_stage(stages, "eval", True, lambda: {}, {"eval.davis.topk": 10})
        said.append(next(r.getMessage() for r in caplog.records if r.getMessage().startswith("[eval] ...")))
        (run / "stages" / "eval.json").unlink()
    assert said == ["[eval] ... (begun by an earlier run, which left nothing to go on from)",
                    "[eval] ... (resumed: an earlier run began it)", "[eval] ... (resumed: an earlier run began it)"]


def test_warnings_for_videos_added_since_mining_and_training_cut_short(tmp_path):
    from vidssl.pipeline import run_warnings

    videos = tmp_path / "videos"
    (videos / "sub").mkdir(parents=True)
    for rel in ("a.mp4", "sub/b.mp4", "sub/new.mp4"):
        (videos / rel).write_bytes(b"\x00video")
    (tmp_path / "run" / "pairs").mkdir(parents=True)
    (tmp_path / "run" / "pairs" / "videos.json").write_text(json.dumps(
        {"root": str(videos), "videos": [{"video": "a.mp4"}, {"video": "sub/b.mp4"}]}))
    done = {"stopped": "done", "step": 790, "total_steps": 790}
    assert run_warnings(tmp_path / "run", videos, done) == [
        f"1 video(s) in {videos} are not in this run, added after it was mined (e.g. sub/new.mp4); a new --out "
        f"includes them"]
    (videos / "sub" / "new.mp4").unlink()
    assert run_warnings(tmp_path / "run", videos, done) == []
    assert run_warnings(tmp_path / "run", tmp_path / "moved_away", done) == []  # no folder to compare with
    barely = run_warnings(tmp_path / "run", videos, {"stopped": "budget", "step": 2, "total_steps": 1200})
    assert barely == ["training stopped at the budget after 2 of its 1200 steps: too few for the weights to have "
                      "learned much (the default 9-minute budget fits 120-800 on 2 CPU cores, by the CPU); for "
                      "a trained backbone, run into a new --out with a larger --budget-minutes"]
    fitted = run_warnings(tmp_path / "run", videos, {"stopped": "done", "step": 22, "total_steps": 22})
    assert fitted == ["training ran 22 steps: too few for the weights to have learned much (the default 9-minute "
                      "budget fits 120-800 on 2 CPU cores, by the CPU); for a trained backbone, run into a new "
                      "--out with a larger --budget-minutes (or more train.steps)"]
    assert run_warnings(tmp_path / "run", videos, {"stopped": "done", "step": 100, "total_steps": 100}) == []
    late = run_warnings(tmp_path / "run", videos, {"stopped": "budget", "step": 700, "total_steps": 790})
    assert late and "700 of its 790 steps, before the learning rate had annealed" in late[0]
    # a budget refit that ends a few steps short has run its schedule (349 of 352); 1% short or more has not, on any
    # schedule (the step schedule's lr is at its floor from 75% of the steps on)
    for step, total, warned in ((349, 352, False), (990, 1000, False), (989, 1000, True), (760, 1000, True)):
        said = run_warnings(tmp_path / "run", videos, {"stopped": "budget", "step": step, "total_steps": total})
        assert bool(said) == warned, (step, total)
    # damaged pair files (a disk that filled): no warning from them, and no traceback (the report names them)
    (videos / "sub" / "new.mp4").write_bytes(b"\x00video")
    listing = tmp_path / "run" / "pairs" / "videos.json"
    for damaged in ('{"root": "x", "vid', "[]", '{"videos": {"a": 1}}', '{"videos": ["a.mp4"]}'):
        listing.write_text(damaged)
        for summary in ('{"complete": false', '{"complete": false, "videos": [1]}', "[]"):
            (tmp_path / "run" / "pairs" / "dataset.json").write_text(summary)
            assert run_warnings(tmp_path / "run", videos, done) == []


def test_a_copy_of_a_mined_video_added_since_is_not_warned_of_as_a_new_video(tmp_path):
    """A byte-identical copy of a mined video, added to the folder after the run mined it, was counted among the
    videos "a new --out includes", which skips it as a duplicate; a new video of the same size is still counted."""
    from vidssl.pipeline import run_warnings

    videos, pairs = tmp_path / "videos", tmp_path / "run" / "pairs"
    videos.mkdir()
    pairs.mkdir(parents=True)
    clip = bytes(range(256)) * 9000  # over 2 MiB: the content sample reads its first and last MiB
    (videos / "a.mp4").write_bytes(clip)
    (pairs / "videos.json").write_text(json.dumps(
        {"root": str(videos), "videos": [{"video": "a.mp4", "bytes": len(clip)}]}))
    done = {"stopped": "done", "step": 790, "total_steps": 790}
    shutil.copyfile(videos / "a.mp4", videos / "a copy.mp4")
    assert run_warnings(tmp_path / "run", videos, done) == []
    (videos / "new.mp4").write_bytes(clip[:-1] + b"x")  # the same size, another video
    assert run_warnings(tmp_path / "run", videos, done) == [
        f"1 video(s) in {videos} are not in this run, added after it was mined (e.g. new.mp4); a new --out "
        f"includes them"]


def test_videos_replaced_or_removed_since_mining_are_warned(tmp_path):
    """Only videos added to --videos were warned of: one replaced under its name, or deleted, passed in silence,
    while `vidssl mine` (its done-markers record each file's state) mines a replaced one again."""
    from tracking.dataset import source_state, video_id, write_video
    from vidssl.io import content_sample
    from vidssl.pipeline import run_warnings

    videos, pairs = tmp_path / "videos", tmp_path / "run" / "pairs"
    listed = []
    for name, status in (("a.mp4", "mined"), ("b.mp4", "mined"), ("sub/c.mp4", "mined"), ("d.mp4", "skipped"),
                         ("e.mp4", None)):  # e: not mined yet (the budget ran out)
        (videos / name).parent.mkdir(parents=True, exist_ok=True)
        (videos / name).write_bytes(f"video {name}".encode())
        entry = {"video": name, "video_id": video_id(name)}
        listed.append(entry)
        if status is not None:  # the done-marker mining writes, with the file's state and sample
            write_video(pairs, entry, None, None, {"status": status, "source": source_state(videos / name),
                                                   "source_sample": content_sample(videos / name), "pairs": []})
    (pairs / "videos.json").write_text(json.dumps({"root": str(videos), "videos": listed}))
    done = {"stopped": "done", "step": 790, "total_steps": 790}
    assert run_warnings(tmp_path / "run", videos, done) == []
    os.utime(videos / "a.mp4", ns=(10**18, 10**18))  # a copy (new time, the same bytes): the same video
    (videos / "e.mp4").write_bytes(b"e, replaced")
    assert run_warnings(tmp_path / "run", videos, done) == []
    (videos / "b.mp4").write_bytes(b"video b.mp5")  # the same size: its content sample tells
    os.utime(videos / "b.mp4", ns=(10**18, 10**18))
    (videos / "d.mp4").write_bytes(b"d, complete now")  # skipped as it was: mined anew, it may give pairs
    (videos / "sub" / "c.mp4").unlink()
    assert run_warnings(tmp_path / "run", videos, done) == [
        f"2 video(s) in {videos} are not the files this run mined (e.g. b.mp4: changed since it was mined); a new "
        f"--out includes them as they are now",
        f"1 video(s) this run mined are no longer in {videos} (e.g. sub/c.mp4: gone since it was mined); a new --out "
        f"mines the folder as it is now"]
    (videos / "d.mp4").unlink()  # a skipped video gone: the run is what it was
    assert len(run_warnings(tmp_path / "run", videos, done)) == 2


def test_pretrain_under_torchrun_says_which_commands_scale(tmp_path, capsys, monkeypatch):
    """Every rank ran every stage into RUN: the second met the first's lock ("in use by another command")."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert main(["-q", "pretrain", "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert "vidssl pretrain runs as one process, not under torchrun" in err and "--shard I/N" in err
    assert not (tmp_path / "run").exists()


def test_an_evaluation_the_trained_model_cannot_take_is_refused_before_mining(tmp_path, capsys):
    import torch

    assert main(["-q", "pretrain", "--out", str(tmp_path / "run"), "--set", "model.arch=alexnet_wang2015",
                 "--set", "data.patch_size=64", "--set", "eval.retrieval.image_size=48"]) == 2
    assert "'eval.retrieval.image_size': alexnet_wang2015 takes inputs of at least 63 pixels, got 48" in \
        capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["-q", "pretrain", "--out", str(tmp_path / "run"), "--set", "eval.flow.device=cuda:1"]) == 2
        assert "config key 'eval.flow.device' is 'cuda:1' but torch sees no CUDA device" in capsys.readouterr().err
        # the fix named is a setting pretrain takes (it has no --device flag)
        assert main(["-q", "pretrain", "--out", str(tmp_path / "run"), "--set", "train.device=cuda"]) == 2
        assert "'train.device' is 'cuda' but torch sees no CUDA device; use cpu or auto (--set train.device=cpu)" \
            in capsys.readouterr().err
        # fp16 on the CPU the default device resolves to: said before mining, not after pretrain.mine_fraction of
        # the budget spent on it
        assert main(["-q", "pretrain", "--out", str(tmp_path / "run"), "--set", "train.precision=fp16"]) == 2
        assert "train.precision 'fp16' needs CUDA; use auto, bf16 or fp32 on the CPU" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_missing_inputs_are_refused_before_the_run_folder_is_made(tmp_path, capsys):
    (tmp_path / "no_videos").mkdir()
    (tmp_path / "no_videos" / "notes.txt").write_text("x")
    # one file given as --videos that is no video: said before RUN is made (it was made, then mining failed)
    for videos, said in ((tmp_path / "missing", "missing: no such file or folder"),
                         (tmp_path / "no_videos", "no_videos: no video file in it"),
                         (tmp_path / "no_videos" / "notes.txt", "notes.txt: is a text file, not a video"),
                         # opened: it made RUN and mined nothing, its one file skipped twice (training part, tails)
                         (write_audio_only(tmp_path / "voice.mp4"), "voice.mp4: has no video stream")):
        assert main(["-q", "pretrain", "--videos", str(videos), "--out", str(tmp_path / "run")]) == 1
        assert said in capsys.readouterr().err and not (tmp_path / "run").exists()
    assert main(["-q", "train", str(tmp_path / "missing"), "--out", str(tmp_path / "train_run")]) == 1
    assert "pair dataset folder not found" in capsys.readouterr().err and not (tmp_path / "train_run").exists()


@pytest.mark.slow
def test_a_gone_recorded_evaluation_folder_does_not_stop_an_evaluation_that_runs_again(run_dir, tmp_path,
                                                                                       monkeypatch, caplog):
    """The folder a finished evaluation recorded is gone and new weights are exported: the evaluation runs again,
    and read the missing folder as a given --eval-data ("no such folder", after eval/ was removed); it goes on
    without it."""
    monkeypatch.delenv("VIDSSL_DATA", raising=False)
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    marker = json.loads((run / "stages" / "eval.json").read_text())
    marker["config"]["--eval-data"] = str(tmp_path / "unmounted")
    (run / "stages" / "eval.json").write_text(json.dumps(marker))
    (run / "stages" / "export.json").unlink()  # the export redone: new weights, evaluated again
    with caplog.at_level(logging.WARNING, logger="vidssl.pipeline"):
        assert main(["-q", "pretrain", "--out", str(run), "--budget-minutes", "4", *TINY]) == 0
    assert "the evaluation data this run recorded, is gone: evaluating without it" in caplog.text
    assert (run / "eval" / "tracks_held_out" / "metrics.json").is_file()


def test_a_run_that_evaluates_nothing_does_not_check_vidssl_data(tmp_path, monkeypatch):
    """$VIDSSL_DATA pointing at an unmounted disk refused runs that evaluate nothing."""
    monkeypatch.setenv("VIDSSL_DATA", str(tmp_path / "unmounted"))
    off = [f"--set=pretrain.run_{stage}=false" for stage in ("mine", "train", "export", "eval", "report")]
    assert main(["-q", "pretrain", "--out", str(tmp_path / "run"), *TINY, *off]) == 0


def test_pretrain_with_no_arguments_runs_the_demo_into_runs_demo(tmp_path, capsys, monkeypatch):
    """The quick start is `vidssl pretrain`, nothing more (--out was required); with --videos a run folder must be
    named."""
    import vidssl.pipeline

    made = []
    monkeypatch.setattr(vidssl.pipeline, "pretrain", lambda cfg, run, **kw: made.append((str(run), kw["videos"])) or {})
    monkeypatch.chdir(tmp_path)
    assert main(["-q", "pretrain"]) == 0
    assert made == [("runs/demo", None)]
    assert main(["-q", "pretrain", "--videos", str(tmp_path)]) == 2
    assert "--out RUN is required with --videos" in capsys.readouterr().err and len(made) == 1


def test_a_folder_of_unusable_videos_says_so_not_to_relax_thresholds(tmp_path, capsys):
    (tmp_path / "videos").mkdir()
    for name in ("notes.mp4", "empty.mov"):
        (tmp_path / "videos" / name).write_bytes(b"not a video\n" if name == "notes.mp4" else b"")
    assert main(["-q", "pretrain", "--videos", str(tmp_path / "videos"), "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert "no video in" in err and "could be mined (2 found: 1 empty, 1 not_a_video;" in err
    assert "thresholds" not in err


def test_a_mining_that_gave_no_pair_reruns_with_the_settings_it_advises(tmp_path, demo_dir, capsys):
    """Every video skipped (a still clip, no_motion): the rerun with other mine.* settings (what the error and the
    README's reasons point to) into the same --out was refused ("its mine stage was started with other settings"):
    the skipped videos' markers counted as work to keep, and the folder could never be used again."""
    (tmp_path / "videos").mkdir()
    shutil.copy(demo_dir / "clip_03.mp4", tmp_path / "videos" / "still.mp4")  # the demo's static clip
    command = ["-q", "pretrain", "--videos", str(tmp_path / "videos"), "--out", str(tmp_path / "run")]
    assert main(command) == 1
    assert "could be mined (1 found: 1 no_motion" in capsys.readouterr().err
    assert main([*command, "--set", "mine.move_threshold=0.3"]) == 1  # mined again: still no pair, said so
    err = capsys.readouterr().err
    assert "other settings" not in err and "could be mined (1 found: 1 no_motion" in err


def test_the_stage_check_compares_what_the_stage_reads_now(tmp_path):
    """A recorded key that no longer counts (a demo key on a --videos run) is not a change; a key a later version
    added is compared with its default; an unfinished training leaves train.precision to the trainer, whose advice
    for a run moved to other hardware (--set train.precision=<the checkpoint's>) was refused here."""
    from vidssl.pipeline import Stages, check_stage_settings, stage_configs

    cfg = load_config(None, [])
    videos_run = stage_configs(cfg, {"mine": {"--videos": "/v"}}, demo=False)
    demo_run = stage_configs(cfg, {"mine": {"--videos": None}}, demo=True)
    assert "demo.num" not in videos_run["mine"] and "pretrain.held_out_tail" in videos_run["mine"]
    assert "demo.num" in demo_run["mine"] and "pretrain.held_out_tail" not in demo_run["mine"]
    assert "eval.davis.device" not in videos_run["eval"] and "eval.davis.topk" in videos_run["eval"]
    stages = Stages(tmp_path)
    stages.dir.mkdir()
    older = {k: v for k, v in videos_run["mine"].items() if k != "mine.track_step"}  # a key added since
    # and one a --videos run does not read, and the seed, which earlier versions keyed the mining on (it draws nothing
    # there): another seed trains anew on the same pairs
    stages.mark("mine", {"config": {**older, "demo.num": 3, "seed": 5}})
    same = {s: {} for s in ("train", "export", "eval")}
    assert "seed" not in videos_run["mine"] and "seed" in videos_run["train"]
    assert check_stage_settings(stages, {**same, "mine": videos_run["mine"]}, tmp_path) == []
    changed = dict(videos_run["mine"], **{"mine.track_step": 1})
    with pytest.raises(ConfigError, match=r"mine stage was completed with other settings \(mine.track_step: 2 -> 1"):
        check_stage_settings(stages, {**same, "mine": changed}, tmp_path)
    # precision: an unfinished training with a checkpoint continues; a finished one is another run
    stages.start("train", {"train.precision": "auto", "train.lr": 0.02})
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "checkpoint.pt").write_bytes(b"")
    moved = {"mine": videos_run["mine"], "export": {}, "eval": {}, "train": {"train.precision": "fp32",
                                                                             "train.lr": 0.02}}
    assert check_stage_settings(stages, moved, tmp_path) == []
    stages.mark("train", {"config": {"train.precision": "auto", "train.lr": 0.02}})
    with pytest.raises(ConfigError, match=r"train stage was completed with other settings \(train.precision"):
        check_stage_settings(stages, moved, tmp_path)


def test_the_video_backend_may_change_once_mining_is_done_not_while_it_is_unfinished(tmp_path):
    """video.backend was a speed key everywhere, but the pair folder refuses to continue a mining under another one
    (DatasetMismatch): the pipeline now says so up front, naming the key, and lets a finished mining be."""
    from vidssl.pipeline import Stages, check_stage_settings, stage_configs

    mined = stage_configs(load_config(None, []), {"mine": {"--videos": "/v"}})
    other = stage_configs(load_config(None, ["video.backend=pyav"]), {"mine": {"--videos": "/v"}})
    stages = Stages(tmp_path)
    stages.dir.mkdir()
    stages.start("mine", mined["mine"])
    (tmp_path / "pairs" / "done").mkdir(parents=True)
    (tmp_path / "pairs" / "done" / "clip-1.json").write_text(json.dumps({"pairs": [{"shard": "s.npy"}]}))
    with pytest.raises(ConfigError, match=r"mine stage was started with other settings \(video.backend: 'auto' -> "
                                          r"'pyav'\)"):
        check_stage_settings(stages, other, tmp_path)
    stages.mark("mine", {"config": mined["mine"]})
    assert check_stage_settings(stages, other, tmp_path) == []


def test_without_vidssl_data_a_rerun_evaluates_what_the_run_evaluated(tmp_path, monkeypatch):
    from vidssl.pipeline import Stages, eval_data_by_default

    data, other = tmp_path / "data", tmp_path / "other"
    data.mkdir()
    other.mkdir()
    run = tmp_path / "run"
    monkeypatch.delenv("VIDSSL_DATA", raising=False)
    assert eval_data_by_default(run) is None  # a new run: no data
    stages = Stages(run)
    stages.dir.mkdir(parents=True)
    stages.mark("eval", {"config": {"--eval-data": str(data)}})
    assert eval_data_by_default(run) == data  # was None: the finished evaluations were deleted and redone
    monkeypatch.setenv("VIDSSL_DATA", str(other))
    assert eval_data_by_default(run) == other  # the variable set: it is the user's choice
    monkeypatch.delenv("VIDSSL_DATA")
    data.rmdir()
    assert eval_data_by_default(run) == data  # the recorded folder is gone: its finished evaluation is kept


def test_a_stage_whose_input_file_changed_is_done_again(tmp_path, caplog):
    """A training continued with `vidssl train` into RUN/train (or weights exported again by hand) kept the
    stale backbone.pt and evaluation: export and eval record the file they were made from."""
    from vidssl.pipeline import Stages, _run_stage

    stages = Stages(tmp_path)
    stages.dir.mkdir()
    checkpoint = tmp_path / "checkpoint.pt"
    checkpoint.write_bytes(b"step 100")
    calls = []

    def export():
        calls.append("export")
        return {"weights": "backbone.pt"}

    first = _run_stage(stages, "export", True, export, {}, made_from=checkpoint)
    assert calls == ["export"] and first["made_from"]["size"] == 8
    stages.mark("eval", {"config": {}})  # an evaluation of that export
    assert _run_stage(stages, "export", True, export, {}, made_from=checkpoint)["weights"] == "backbone.pt"
    assert calls == ["export"]  # unchanged: skipped
    checkpoint.write_bytes(b"step 200, continued")
    with caplog.at_level(logging.WARNING, logger="vidssl.pipeline"):
        _run_stage(stages, "export", True, export, {}, made_from=checkpoint)
    assert calls == ["export", "export"] and "checkpoint.pt changed since this stage completed" in caplog.text
    assert stages.done("eval") is None  # the evaluation of the old weights is forgotten with them
    assert stages.done("export")["made_from"]["size"] == len(b"step 200, continued")
    # the run folder copied (cp -r, scp, an archive unpacked): the same bytes with new times are the same file
    os.utime(checkpoint, ns=(10**18, 10**18))
    _run_stage(stages, "export", True, export, {}, made_from=checkpoint)
    assert calls == ["export", "export"]
    checkpoint.write_bytes(b"step 300, continued")  # the same size, other bytes: changed
    os.utime(checkpoint, ns=(10**18, 10**18))
    _run_stage(stages, "export", True, export, {}, made_from=checkpoint)
    assert calls == ["export", "export", "export"]
    checkpoint.unlink()  # gone (moved away): nothing to compare, the export stands
    _run_stage(stages, "export", True, export, {}, made_from=checkpoint)
    assert calls == ["export", "export", "export"]


def test_an_interrupted_evaluation_of_weights_since_replaced_begins_again(tmp_path):
    """Only a completed stage's input was compared: an evaluation interrupted after some tasks, then weights
    exported again by hand, reused those tasks (the old weights' numbers) beside the new weights' others."""
    import os

    from vidssl.pipeline import Stages, _run_stage

    stages, weights = Stages(tmp_path), tmp_path / "backbone.pt"
    stages.dir.mkdir()
    weights.write_bytes(b"old weights")
    seen = []

    def interrupted():
        seen.append(stages.parts_done("eval"))
        stages.finish_part("eval", "tracks_held_out")
        raise KeyboardInterrupt

    def evaluation():
        seen.append(stages.parts_done("eval"))
        return {}

    with pytest.raises(KeyboardInterrupt):
        _run_stage(stages, "eval", True, interrupted, {"eval.x": 1}, made_from=weights)
    os.utime(weights, ns=(1, 1))  # the same weights, copied (a new time): the finished task is kept
    _run_stage(stages, "eval", True, evaluation, {"eval.x": 1}, made_from=weights)
    assert seen == [set(), {"tracks_held_out"}]
    stages.clear("eval")
    with pytest.raises(KeyboardInterrupt):
        _run_stage(stages, "eval", True, interrupted, {"eval.x": 1}, made_from=weights)
    weights.write_bytes(b"new weights, exported by hand")
    _run_stage(stages, "eval", True, evaluation, {"eval.x": 1}, made_from=weights)
    assert seen[-1] == set()  # begun again: nothing of the old weights reused
    assert stages.done("eval")["made_from"]["size"] == len(b"new weights, exported by hand")


def test_stages_whose_input_changed_are_forgotten_before_the_budget_is_counted(tmp_path):
    """Their recorded seconds were taken off the budget, and then the same stages spent it again: a training
    continued by hand left the redone evaluation (and its flow decoder) a fraction of its time."""
    from vidssl.io import file_record
    from vidssl.pipeline import MADE_FROM, Stages, forget_changed_inputs

    stages = Stages(tmp_path)
    stages.dir.mkdir()
    for name in ("pairs/manifest.jsonl", "train/checkpoint.pt", "backbone.pt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"made")
    stages.mark("mine", {"seconds": 10.0})
    for name, seconds in (("train", 300.0), ("export", 2.0), ("eval", 100.0)):
        stages.mark(name, {"seconds": seconds, "made_from": file_record(tmp_path / MADE_FROM[name])})
    everything = {"mine": True, "train": True, "export": True, "eval": True}
    forget_changed_inputs(tmp_path, stages, everything)
    assert stages.spent_s(everything) == 412.0  # unchanged: all kept
    (tmp_path / "train" / "checkpoint.pt").write_bytes(b"continued")  # `vidssl train` continued it
    forget_changed_inputs(tmp_path, stages, {**everything, "export": False})  # switched off: left as it is
    assert stages.spent_s({**everything, "export": False}) == 412.0
    forget_changed_inputs(tmp_path, stages, everything)
    assert stages.spent_s(everything) == 310.0 and stages.done("export") is None and stages.done("eval") is None


def test_the_budget_counts_only_the_stages_a_rerun_keeps(tmp_path):
    """A stage not complete runs and redoes those after it: their recorded seconds are spent again, so they are
    not taken off the budget first (a lost export marker took the evaluation's minutes twice). A stage switched
    off runs nothing, so the stages after it are kept."""
    from vidssl.pipeline import Stages

    stages = Stages(tmp_path)
    stages.dir.mkdir()
    for name, seconds in (("mine", 10.0), ("train", 300.0), ("eval", 100.0)):  # export's marker is gone
        stages.mark(name, {"seconds": seconds})
    everything = {"mine": True, "train": True, "export": True, "eval": True}
    assert stages.spent_s(everything) == 310.0  # mine + train; export runs, and eval after it
    assert stages.spent_s({**everything, "export": False}) == 410.0  # nothing runs before eval: kept
    assert stages.spent_s({**everything, "train": False}) == 310.0  # a switched-off stage's time still counts
    stages.clear("mine")
    assert stages.spent_s(everything) == 0.0


def test_the_budget_is_split_between_mining_its_held_out_tails_and_training(tmp_path, monkeypatch):
    """README, The one command: mining may take pretrain.mine_fraction of the budget, the held-out tails included
    (they get what the training part's pass left of that share, not the share again), training train_fraction of
    what mining left, evaluation the rest. Checked on a fake clock that the fake stages advance."""
    import types

    import tracking
    import tracking.show
    import vidssl.pipeline as pipeline
    import vidssl.train

    now = [1000.0]
    clock = {name: getattr(pipeline.time, name) for name in dir(pipeline.time) if not name.startswith("_")}
    monkeypatch.setattr(pipeline, "time", types.SimpleNamespace(**{**clock, "monotonic": lambda: now[0]}))
    given = []

    def mine_folder(videos, out, cfg, time_budget_s, **kwargs):
        given.append(time_budget_s)
        now[0] += 100.0 if len(given) == 1 else 30.0  # the training part's pass, then the held-out tails'
        return {"pairs": 5, "complete": True, "videos": {"found": 1, "mined": 1, "skipped": {}}}

    def train(pairs, out, cfg, budget_minutes, **kwargs):
        given.append(budget_minutes)
        return dict(TRAINED)

    monkeypatch.setattr(tracking, "mine_folder", mine_folder)
    monkeypatch.setattr(tracking.show, "pair_grid", lambda *a, **k: None)
    monkeypatch.setattr(tracking.show, "save_png", lambda *a, **k: None)
    monkeypatch.setattr(vidssl.train, "train", train)
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "clip.mp4").write_bytes(b"never decoded: mining is faked")
    cfg = load_config(None, ["pretrain.mine_fraction=0.4", "pretrain.train_fraction=0.6", "pretrain.run_export=false",
                             "pretrain.run_eval=false", "pretrain.run_report=false"])
    pipeline.pretrain(cfg, tmp_path / "run", videos=tmp_path / "videos", budget_minutes=10, progress=False)
    mining = 0.4 * 600  # seconds
    assert given == pytest.approx([mining, mining - 100, 0.6 * (600 - 100 - 30) / 60])


def test_a_stage_records_its_input_as_it_found_it(tmp_path):
    """Weights exported again by hand while the evaluation ran: recorded after the stage, the new file looked like
    the evaluated one and the stage was never redone."""
    from vidssl.pipeline import Stages, _input_changed, _run_stage

    stages = Stages(tmp_path)
    stages.dir.mkdir()
    weights = tmp_path / "backbone.pt"
    weights.write_bytes(b"weights of step 100")

    def evaluate_while_weights_change():
        weights.write_bytes(b"weights of step 200, exported meanwhile")
        return {"tasks": []}

    result = _run_stage(stages, "eval", True, evaluate_while_weights_change, {}, made_from=weights)
    assert result["made_from"]["size"] == len(b"weights of step 100")
    assert _input_changed(stages, "eval", weights)


def test_a_forget_killed_part_way_keeps_the_marker_so_the_rerun_forgets_again(tmp_path, monkeypatch):
    """The marker went first: killed before the folders were removed, the rerun found no record and mined into the
    old settings' pairs/, which tracking refused as a mismatch."""
    import shutil as shutil_module

    from vidssl.pipeline import Stages, forget

    stages = Stages(tmp_path)
    stages.dir.mkdir()
    (tmp_path / "pairs" / "done").mkdir(parents=True)
    stages.start("mine", {"mine.move_threshold": 0.5})

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(shutil_module, "rmtree", killed)
    with pytest.raises(KeyboardInterrupt):
        forget(tmp_path, stages, "mine")
    assert stages.started("mine") is not None
    monkeypatch.undo()
    forget(tmp_path, stages, "mine")
    assert stages.started("mine") is None and not (tmp_path / "pairs").exists()


def test_a_mining_with_only_held_out_pairs_is_redone_with_other_settings(tmp_path):
    """Held-out tails are mined after the training part: pairs there alone mean the stage can never complete with
    its settings, so the relaxed settings its error advises must not be refused as a change."""
    from vidssl.pipeline import left_state

    for folder, pairs in (("pairs", 0), ("pairs_held_out", 7)):
        (tmp_path / folder / "done").mkdir(parents=True)
        (tmp_path / folder / "done" / "clip.json").write_text(json.dumps({"pairs": pairs}))
    assert not left_state(tmp_path, "mine")
    (tmp_path / "pairs" / "done" / "clip.json").write_text(json.dumps({"pairs": 3}))
    assert left_state(tmp_path, "mine")


def test_a_mining_begun_with_other_settings_that_left_any_pairs_or_an_unreadable_marker_is_refused(tmp_path):
    """Redone, its pairs/ is deleted: a mining whose videos gave pairs (beside others skipped) is work a rerun with
    its settings continues, and a marker that cannot be read may be one of them. Only a mining that left no pair at
    all is redone with other settings."""
    from vidssl.pipeline import Stages, check_stage_settings

    stages = Stages(tmp_path)
    stages.dir.mkdir()
    stages.start("mine", {"mine.move_threshold": 0.5})
    done = tmp_path / "pairs" / "done"
    done.mkdir(parents=True)
    (done / "skipped.json").write_text(json.dumps({"status": "skipped", "pairs": []}))
    relaxed = {s: {} for s in ("train", "export", "eval")} | {"mine": {"mine.move_threshold": 0.3}}
    assert check_stage_settings(stages, relaxed, tmp_path) == ["mine"]  # every video skipped: nothing to keep
    for marker in ('{"status": "mined", "pairs": [{"shard": "shards/clip-0123456789.npy"}]}', '{"status": "mi'):
        (done / "clip.json").write_text(marker)
        with pytest.raises(ConfigError, match=r"mine stage was started with other settings \(mine.move_threshold"):
            check_stage_settings(stages, relaxed, tmp_path)
    assert (done / "skipped.json").exists()


def test_redoing_the_evaluation_keeps_the_training_and_the_weights(tmp_path):
    """Other evaluation settings evaluate again from the weights: forgetting the evaluation must not touch what it
    evaluated (hours of training), nor the other stages' markers."""
    from vidssl.pipeline import STAGES, Stages, check_stage_settings, forget

    stages = Stages(tmp_path)
    stages.dir.mkdir()
    for stage in STAGES:
        stages.mark(stage, {"seconds": 1.0, "config": {"eval.davis.topk": 7} if stage == "eval" else {}})
    outputs = [tmp_path / "train" / "checkpoint.pt", tmp_path / "backbone.pt", tmp_path / "pairs" / "manifest.jsonl"]
    for path in (*outputs, tmp_path / "eval" / "davis" / "metrics.json"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"weights")
    redo = check_stage_settings(stages, {s: {} for s in STAGES} | {"eval": {"eval.davis.topk": 5}}, tmp_path)
    assert redo == ["eval"]
    for stage in redo:  # as pretrain does
        forget(tmp_path, stages, stage)
    assert [p.read_bytes() for p in outputs] == [b"weights"] * len(outputs) and not (tmp_path / "eval").exists()
    assert [stage for stage in STAGES if stages.done(stage) is not None] == ["mine", "train", "export"]


def test_a_stage_done_again_forgets_the_stages_after_it_not_itself_or_those_before(tmp_path):
    """invalidate_after runs as a stage begins, before it resumes the record of a run killed part way: clearing the
    stage itself too would lose that record (an evaluation's finished tasks, then evaluated again), and the stages
    before it are what it is made from."""
    from vidssl.pipeline import STAGES, Stages

    stages = Stages(tmp_path)
    stages.dir.mkdir()
    for stage in STAGES:
        stages.mark(stage, {"seconds": 1.0})
    stages.invalidate_after("train")
    assert [stage for stage in STAGES if stages.done(stage) is not None] == ["mine", "train"]
    stages.start("export", {})
    stages.invalidate_after("export")
    assert stages.started("export") is not None


def test_vidssl_data_set_to_a_missing_folder_is_an_error_and_a_gone_recorded_folder_keeps_the_results(
        tmp_path, monkeypatch, caplog):
    """Both were taken for "no evaluation data": a rerun deleted the run's finished evaluations as made with
    other settings (an unmounted disk, a typo in the variable)."""
    from vidssl.errors import VidsslError
    from vidssl.pipeline import Stages, eval_data_by_default

    run = tmp_path / "run"
    monkeypatch.setenv("VIDSSL_DATA", str(tmp_path / "unmounted"))
    with pytest.raises(VidsslError, match=r"\$VIDSSL_DATA=.*unmounted: no such folder; point it at"):
        eval_data_by_default(run)
    monkeypatch.delenv("VIDSSL_DATA")
    stages = Stages(run)
    stages.dir.mkdir(parents=True)
    stages.start("eval", {"--eval-data": str(tmp_path / "unmounted")})
    with caplog.at_level(logging.WARNING, logger="vidssl.pipeline"):
        assert eval_data_by_default(run) is None  # begun, not finished: evaluated without it, and said
    assert "the evaluation data this run began to evaluate, is gone" in caplog.text
    stages.mark("eval", {"config": {"--eval-data": str(tmp_path / "unmounted")}})
    assert eval_data_by_default(run) == tmp_path / "unmounted"  # finished: kept as it is


@pytest.mark.slow
def test_each_stage_records_the_file_it_was_made_from(run_dir):
    from vidssl.io import file_record

    made_from = {stage: json.loads((run_dir / "stages" / f"{stage}.json").read_text()).get("made_from")
                 for stage in ("train", "export", "eval")}
    assert made_from == {"train": file_record(run_dir / "pairs" / "manifest.jsonl"),
                         "export": file_record(run_dir / "train" / "checkpoint.pt"),
                         "eval": file_record(run_dir / "backbone.pt")}
    assert all(made_from.values())


def test_training_continued_by_hand_is_what_the_warnings_and_summary_describe(tmp_path):
    """The train stage's marker kept the pretrain's own 30 steps: after `vidssl train` continued RUN/train to 500,
    the run still warned of too few steps and its summary said 30, while the model card said 500."""
    from vidssl.pipeline import latest_training, run_warnings

    marker = {"step": 30, "total_steps": 30, "stopped": "done", "seconds": 12.0}
    assert any("training ran 30 steps" in w for w in run_warnings(tmp_path, None, latest_training(tmp_path, marker)))
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "stats.json").write_text('{"step": 500, "total_steps": 500, "stopped": "done", '
                                                   '"loss": 0.4, "config": {"seed": 0}}')
    figures = latest_training(tmp_path, marker)
    assert figures == {"step": 500, "total_steps": 500, "stopped": "done", "seconds": 12.0, "loss": 0.4}
    assert run_warnings(tmp_path, None, figures) == []
    (tmp_path / "train" / "stats.json").write_text('{"step": 5')  # torn: the marker's figures stand
    assert latest_training(tmp_path, marker) == marker
    assert latest_training(tmp_path, None) is None  # training switched off


def test_an_uninformative_evaluation_of_eval_data_is_told_a_fix_for_its_data(tmp_path):
    """DAVIS instance retrieval on blackswan (one object) was told to "give --eval-data" (given: it is that data)
    or to mine held-out tails with more tracks (which it does not read)."""
    from vidssl.pipeline import evaluation_warnings

    for task in ("davis_instances", "tracks_held_out"):
        (tmp_path / "eval" / task).mkdir(parents=True)
        (tmp_path / "eval" / task / "metrics.json").write_text(json.dumps({"labels": 1, "models": {}}))
    davis, held_out = evaluation_warnings(tmp_path)
    assert davis.startswith("davis_instances says nothing about the weights (only one label")
    assert davis.endswith("evaluate on data with more labels (for DAVIS instance retrieval: more sequences or "
                          "objects)")
    assert held_out.startswith("tracks_held_out says nothing") and "pretrain.held_out_tail" in held_out


def test_an_evaluation_that_cannot_write_is_not_blamed_on_its_data(tmp_path):
    """An OSError in an evaluation was taken for bad evaluation data ("fix the data"), also a full disk or an
    unwritable run folder, which no other task would survive either: those stop the run."""
    import errno

    from vidssl.pipeline import _writing_failed

    run, data = tmp_path / "run", tmp_path / "data"
    assert _writing_failed(OSError(errno.ENOSPC, "No space left on device"), run)
    assert _writing_failed(OSError(errno.EROFS, "Read-only file system"), run)
    assert _writing_failed(PermissionError(errno.EACCES, "Permission denied", str(run / "eval" / "davis" / "x.png")),
                           run)
    assert not _writing_failed(PermissionError(errno.EACCES, "Permission denied", str(data / "a.jpg")), run)
    assert not _writing_failed(OSError(errno.EIO, "Input/output error"), run)  # reading a damaged file
    # the held-out pairs are the run's own evaluation data: a shard lost there fails that task, not the run
    shard = str(run / "pairs_held_out" / "shards" / "v.npy")
    assert not _writing_failed(FileNotFoundError(errno.ENOENT, "No such file or directory", shard), run)


def test_nothing_evaluated_says_why_and_the_fix_that_helps(tmp_path):
    """The warning gave the same three fixes whatever the cause, a larger budget for tails too short to hold a
    track, which no budget lengthens."""
    from vidssl.pipeline import nothing_evaluated

    def said(videos: dict, *overrides) -> str:
        (tmp_path / "pairs_held_out").mkdir(exist_ok=True)
        (tmp_path / "pairs_held_out" / "dataset.json").write_text(json.dumps({"videos": videos}))
        return nothing_evaluated(tmp_path, load_config(None, list(overrides)))

    from tracking import MineConfig
    from tracking.video_miner import frame_range

    def fewest(split: float, end: float) -> int:  # by mining's own rounding: a part of 31 frames holds a track
        part = MineConfig(time_range=[split, end])
        return next(n for n in range(31, 1000) if frame_range(n, part)[1] - frame_range(n, part)[0] >= 31)

    short = said({"found": 3, "mined": 0, "pending": 0, "skipped": {"too_short": ["a.mp4", "b.mp4", "c.mp4"]}})
    assert "one needs mine.track_length + 1 = 31 frames" in short and "--budget-minutes" not in short
    assert f"videos of at least {fewest(0.8, 1.0)} frames" in short and fewest(0.8, 1.0) == 153  # not 31 / 0.2
    # the held-out share of a time range: the last 25% of frames 20-100%
    assert f"at least {fewest(0.8, 1.0)} frames" in said({"skipped": {"too_short": ["a.mp4"]}},
                                                          "pretrain.held_out_tail=0.25", "mine.time_range=[0.2, 1.0]")
    assert "a larger --budget-minutes" in said({"pending": 2, "skipped": {}})
    assert "pretrain.held_out_tail is 0" in said({}, "pretrain.held_out_tail=0")
    other = said({"skipped": {"no_motion": ["a.mp4"], "too_short": ["b.mp4"]}})
    assert "the tails' mining gave none: 1 no_motion, 1 too_short" in other
    # where the reasons are: a rerun prints no skip line for "see above" to point at (nor does the tails' mining
    # repeat the training part's skips of the whole file)
    assert f"1 too_short; each one's reason in {tmp_path / 'pairs_held_out' / 'dataset.json'})" in other
    assert "see above" not in other
    # a demo run holds out clips of its own: neither the tail's length nor held_out_tail is the matter there
    demo = nothing_evaluated(tmp_path, load_config(None, ["pretrain.held_out_tail=0"]), demo=True)
    assert "held_out_tail" not in demo.split("; give")[0] and "at least" not in demo


def test_every_session_s_messages_and_the_error_that_stopped_it_are_kept_in_pretrain_log(tmp_path, monkeypatch):
    """The console scrolls away: the budget fits, skipped videos and the final error lived only there."""
    import vidssl.pipeline as pipeline

    def fails(*args, **kwargs):
        logging.getLogger("vidssl.train").warning("a stage's message")
        logging.getLogger("tracking.runner").warning("mining's message")
        raise ConfigError("the error that stopped the run")

    monkeypatch.setattr(pipeline, "_pretrain", fails)
    run = tmp_path / "run"
    # a check made before the run folder may be written to warns too: kept, and written once it may
    cfg = load_config(overrides=["train.budget_minutes=3"])
    for _ in range(2):
        with pytest.raises(ConfigError):
            pipeline.pretrain(cfg, run, budget_minutes=1)
    lines = (run / pipeline.LOG).read_text().splitlines()
    assert len(lines) == 10 and [line.startswith("=== vidssl pretrain, ") for line in lines] == [
        True, False, False, False, False] * 2
    assert lines[1].endswith("WARNING vidssl.pipeline: train.budget_minutes=3.0 is not read by vidssl pretrain: "
                             "training gets pretrain.train_fraction of what mining leaves of pretrain.budget_minutes "
                             "(--budget-minutes)")
    assert lines[2].endswith("WARNING vidssl.train: a stage's message")
    assert lines[3].endswith("WARNING tracking.runner: mining's message")
    assert lines[4] == "=== stopped: ConfigError: the error that stopped the run"
    assert [line[19:] for line in lines[6:]] == [line[19:] for line in lines[1:5]]  # the second session, the same
    # the handler is gone once pretrain returns: a later message of the same process is not appended
    logging.getLogger("vidssl.train").warning("after the run")
    assert "after the run" not in (run / pipeline.LOG).read_text()


def test_a_pretrain_log_that_is_a_symbolic_link_is_refused_not_written_through(tmp_path, monkeypatch):
    """A run folder from elsewhere whose pretrain.log links to the user's ~/.bashrc: the rerun the README gives to
    continue a run appended its session lines there (video names, which that folder's maker chose, among them)."""
    import vidssl.pipeline as pipeline

    monkeypatch.setattr(pipeline, "_pretrain", lambda *args: {})
    victim = tmp_path / "bashrc"
    victim.write_text("export PATH=...\n")
    run = tmp_path / "run"
    run.mkdir()
    (run / pipeline.LOG).symlink_to(victim)
    with pytest.raises(VidsslError, match=f"{run / pipeline.LOG} is a symbolic link; vidssl writes its log itself: "
                                          "remove the link"):
        pipeline.pretrain(load_config(), run, budget_minutes=1)
    assert victim.read_text() == "export PATH=...\n"
    (run / pipeline.LOG).unlink()
    pipeline.pretrain(load_config(), run, budget_minutes=1)  # its own log file: written as before
    assert (run / pipeline.LOG).read_text().startswith("=== vidssl pretrain, ")


def test_the_paths_the_stages_record_hold_from_any_folder(tmp_path, monkeypatch):
    """summary.json's stages held the checkpoint and weights relative to the folder pretrain ran in (--out
    runs/x): the stages are handed the run folder as an absolute path."""
    import vidssl.pipeline as pipeline

    given = []
    monkeypatch.setattr(pipeline, "_pretrain", lambda cfg, run, *args: given.append(run) or {})
    monkeypatch.chdir(tmp_path)
    pipeline.pretrain(load_config(), "runs/x", budget_minutes=1)
    assert given == [tmp_path / "runs" / "x"] and given[0].is_absolute()


# what a finished training returns (the keys the pipeline reads), for fakes of it
TRAINED = {"step": 30, "total_steps": 30, "minutes": 0.5, "stopped": "done", "checkpoint": "RUN/train/checkpoint.pt",
           "loss": 0.25, "pos_cos": 0.9, "neg_cos": 0.125, "world_size": 1}


def _fake_stages(monkeypatch, now, given):
    """The pipeline's mining and training faked on a fake clock (as in
    test_the_budget_is_split_between_mining_its_held_out_tails_and_training)."""
    import types

    import tracking
    import tracking.show
    import vidssl.pipeline as pipeline
    import vidssl.train

    clock = {name: getattr(pipeline.time, name) for name in dir(pipeline.time) if not name.startswith("_")}
    monkeypatch.setattr(pipeline, "time", types.SimpleNamespace(**{**clock, "monotonic": lambda: now[0]}))

    def mine_folder(videos, out, cfg, time_budget_s, **kwargs):
        given.append(("mine", time_budget_s))
        now[0] += 100.0
        return {"pairs": 5, "complete": True, "videos": {"found": 1, "mined": 1, "skipped": {}}}

    def train(pairs, out, cfg, budget_minutes, **kwargs):
        given.append(("train", budget_minutes))
        return dict(TRAINED)

    monkeypatch.setattr(tracking, "mine_folder", mine_folder)
    monkeypatch.setattr(tracking.show, "pair_grid", lambda *a, **k: None)
    monkeypatch.setattr(tracking.show, "save_png", lambda *a, **k: None)
    monkeypatch.setattr(vidssl.train, "train", train)
    return pipeline


def test_a_rerun_trains_on_what_the_completed_stages_left_of_the_budget(tmp_path, monkeypatch, caplog):
    """Kills M25 (pipeline.py _pretrain: `deadline = time.monotonic() + 60 * p.budget_minutes`, the seconds of the
    stages completed earlier not taken off): README "a rerun continues with what the completed stages left of it".
    spent_s is tested alone; nothing tested that the deadline uses it."""
    now, given = [1000.0], []
    pipeline = _fake_stages(monkeypatch, now, given)
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "clip.mp4").write_bytes(b"never decoded: mining is faked")
    off = ["pretrain.held_out_tail=0", "pretrain.train_fraction=0.5", "pretrain.run_export=false",
           "pretrain.run_eval=false", "pretrain.run_report=false"]
    run = tmp_path / "run"
    pipeline.pretrain(load_config(None, off + ["pretrain.run_train=false"]), run, videos=tmp_path / "videos",
                      budget_minutes=10, progress=False)
    assert given == [("mine", pytest.approx(0.3 * 600))]  # mining: 100 s on the fake clock, recorded
    pipeline.pretrain(load_config(None, off), run, videos=tmp_path / "videos", budget_minutes=10, progress=False)
    assert given[1:] == [("train", pytest.approx(0.5 * (600 - 100) / 60))]  # not 0.5 * 600 s: mining spent 100
    # how training went is in the run's log, whatever the terminal showed (a bar there leaves nothing in the file)
    assert not re.search(r"\[train\] finished", (run / pipeline.LOG).read_text())  # the level the caller set
    caplog.set_level(logging.INFO, logger="vidssl.pipeline")
    (run / "stages" / "train.json").unlink()
    pipeline.pretrain(load_config(None, off), run, videos=tmp_path / "videos", budget_minutes=10, progress=False)
    assert re.search(r" INFO vidssl.pipeline: \[train\] finished: step 30/30 in 0.5 min; loss 0.2500, cos\(a,p\) "
                     r"0.90, cos\(a,neg\) 0.12; checkpoint RUN/train/checkpoint.pt$", (run / pipeline.LOG).read_text(),
                     re.M)


def test_run_config_yaml_is_written_and_rewritten_when_a_stage_runs(tmp_path, monkeypatch):
    """Kills M29 (pipeline.py record_config never writes): no fast test read RUN/config.yaml after a pretrain."""
    from vidssl.config import recorded_config

    now, given = [1000.0], []
    pipeline = _fake_stages(monkeypatch, now, given)
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "clip.mp4").write_bytes(b"never decoded: mining is faked")
    off = ["pretrain.held_out_tail=0", "pretrain.run_export=false", "pretrain.run_eval=false",
           "pretrain.run_report=false"]
    run = tmp_path / "run"
    pipeline.pretrain(load_config(None, off + ["pretrain.run_train=false"]), run, videos=tmp_path / "videos",
                      budget_minutes=10, progress=False)
    written = recorded_config(run / "config.yaml")
    assert written["pretrain"]["budget_minutes"] == 10 and written["pretrain"]["run_train"] is False
    pipeline.pretrain(load_config(None, off), run, videos=tmp_path / "videos", budget_minutes=7, progress=False)
    assert recorded_config(run / "config.yaml")["pretrain"]["budget_minutes"] == 7  # training ran: rewritten


def test_an_export_key_changed_after_the_export_completed_is_refused(tmp_path):
    """Kills M11 (pipeline.py STAGE_KEYS: `"export": ()`): a rerun with --set export.safetensors=false then kept
    the completed export (and its backbone.safetensors) under a config.yaml saying false. Only the slow end-to-end
    tests ran a changed export key."""
    from vidssl.pipeline import Stages, check_stage_settings, stage_configs

    stages = Stages(tmp_path)
    stages.dir.mkdir()
    before = stage_configs(load_config(), {}, demo=True)
    assert before["export"] == {"export.safetensors": True}
    stages.mark("export", {"weights": str(tmp_path / "backbone.pt"), "config": before["export"]})
    after = stage_configs(load_config(None, ["export.safetensors=false"]), {}, demo=True)
    with pytest.raises(ConfigError, match=r"its export stage was completed with other settings "
                                          r"\(export.safetensors: True -> False\)"):
        check_stage_settings(stages, after, tmp_path)
    assert check_stage_settings(stages, before, tmp_path) == []  # the same settings: reused


def test_an_evaluation_recorded_before_max_tracks_counts_as_every_track(tmp_path, caplog):
    """A key added later counts as its default (what an older run did), but eval.retrieval.max_tracks' default is
    not what runs before it did: they evaluated every track (0). Read as 1000, an old run's all-track metrics were
    kept under a config saying 1000, and compare showed no difference."""
    from vidssl.pipeline import Stages, check_stage_settings, stage_configs

    stages = Stages(tmp_path)
    stages.dir.mkdir()
    now = stage_configs(load_config(), {}, demo=True)
    older = {k: v for k, v in now["eval"].items() if k != "eval.retrieval.max_tracks"}
    assert len(older) == len(now["eval"]) - 1
    stages.mark("eval", {"config": older})
    caplog.set_level(logging.INFO, logger="vidssl.pipeline")
    assert check_stage_settings(stages, now, tmp_path) == ["eval"]
    assert "[eval] completed with other settings (eval.retrieval.max_tracks: 0 -> 1000): done again" in caplog.text
    every = stage_configs(load_config(None, ["eval.retrieval.max_tracks=0"]), {}, demo=True)
    assert check_stage_settings(stages, every, tmp_path) == []  # the same as it ran: kept


@pytest.mark.parametrize("stage, key, then, now", [
    ("mine", "mine.patch_context", "1.0", "2.0"),  # before the key, the patch was the tracked box
    ("train", "data.box_view", "0.0", "0.5"),  # before the key, every patch was cropped from its whole window
])
def test_a_run_recorded_before_the_wider_view_counts_as_the_box(tmp_path, stage, key, then, now):
    """Runs before mine.patch_context and data.box_view cut and trained the tracked box; their defaults now differ
    (2.0 and 0.5). An older run's pairs or weights are not passed off as the new default's: refused, naming the
    key as it ran; the settings it ran with reuse them."""
    from vidssl.pipeline import Stages, check_stage_settings, stage_configs

    stages = Stages(tmp_path)
    stages.dir.mkdir()
    current = stage_configs(load_config(), {}, demo=True)
    assert current[stage][key] == float(now)
    stages.mark(stage, {"config": {k: v for k, v in current[stage].items() if k != key}})
    with pytest.raises(ConfigError, match=rf"its {stage} stage was completed with other settings "
                                          rf"\({re.escape(key)}: {then} -> {now}\)"):
        check_stage_settings(stages, current, tmp_path)
    as_it_ran = stage_configs(load_config(None, [f"{key}={then}"]), {}, demo=True)
    assert check_stage_settings(stages, as_it_ran, tmp_path) == []


@pytest.mark.parametrize("off, needed, reader, make", [
    ("mine", "pairs/manifest.jsonl", "train", "vidssl mine VIDEOS --out RUN/pairs"),
    ("train", "train/checkpoint.pt", "export", "vidssl train RUN/pairs --out RUN/train"),
    ("export", "backbone.pt", "eval", "vidssl export RUN/train --out RUN/backbone.pt"),
])
def test_a_stage_switched_off_without_its_result_is_refused_before_any_work(tmp_path, off, needed, reader, make):
    """pretrain.run_mine=false on a fresh RUN wrote the demo clips, then failed in training with "make it with
    vidssl mine", not naming the switch; the same for train and export. Refused first, naming both."""
    from vidssl.pipeline import pretrain

    run = tmp_path / "run"
    with pytest.raises(ConfigError) as refused:
        pretrain(load_config(None, [f"pretrain.run_{off}=false"]), run, progress=False)
    assert str(refused.value) == (f"pretrain.run_{off} is false and {run / needed} does not exist, which the "
                                  f"{reader} stage reads: set "
                                  f"pretrain.run_{off}=true, or make it first ({make.replace('RUN', str(run))})")
    assert not run.exists()


def test_held_out_tails_that_say_nothing_are_told_eval_data_only_without_any(tmp_path):
    """A run that evaluated cub_subset, davis and flow was told to "give --eval-data" for its held-out tails of one
    track: the clause is for a run with no evaluation data besides its own held-out tails."""
    from vidssl.pipeline import evaluation_warnings

    (tmp_path / "eval" / "tracks_held_out").mkdir(parents=True)
    (tmp_path / "eval" / "tracks_held_out" / "metrics.json").write_text(json.dumps({"labels": 1, "models": {}}))
    why = ("tracks_held_out says nothing about the weights (only one label: every neighbour is relevant, so every "
           "model scores 1 by construction); ")
    tails = "videos whose held-out tails (pretrain.held_out_tail) hold more tracks, several in one video"
    assert evaluation_warnings(tmp_path) == [f"{why}give --eval-data (CUB, DAVIS, Sintel folders), or {tails}"]
    for task in ("cub_subset", "davis", "flow"):  # informative: no warning of their own
        (tmp_path / "eval" / task).mkdir()
        (tmp_path / "eval" / task / "metrics.json").write_text(json.dumps({"models": {"a": {"map_at_r": 0.5}}}))
    assert evaluation_warnings(tmp_path) == [f"{why}use {tails}"]
    assert evaluation_warnings(tmp_path, {"davis"}) == []  # only the tasks asked about


def test_a_completed_stage_whose_input_was_deleted_reruns_with_the_stage_before_switched_off(tmp_path):
    """A finished run whose pairs (or checkpoint) were deleted to free the disk reran with pretrain.run_mine=false:
    its training is complete and skipped, its input never read. The refusal above is for a stage still to run."""
    from vidssl.pipeline import Stages, _refuse_switched_off_inputs

    run = tmp_path / "run"
    cfg = load_config(None, ["pretrain.run_mine=false"])
    with pytest.raises(ConfigError, match="pretrain.run_mine is false"):
        _refuse_switched_off_inputs(cfg, run)
    stages = Stages(run)
    stages.dir.mkdir(parents=True)
    stages.mark("train", {"config": {}})
    _refuse_switched_off_inputs(cfg, run)  # no error: training is complete



def test_an_unfinished_task_s_folder_is_emptied_but_the_flow_decoders_kept(tmp_path):
    """A killed DAVIS evaluation's overlays of a sequence since removed from the data stood beside the new ones (the
    report showed them); its temp files stayed for good. The flow decoders' checkpoints are what a rerun resumes."""
    from vidssl.pipeline import _clear_unfinished

    out = tmp_path / "run" / "eval" / "flow"
    for name in ("overlays/m/gone.png", "pairs/a.png", ".tmp-metrics.md.7@0badc0de.z", "transfer/run_backbone.pt",
                 "transfer/.tmp-run_backbone.pt.7@0badc0de.q"):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(b"x")
    mine = tmp_path / "mine"  # a linked task folder is someone else's: left alone
    (mine / "keep.png").parent.mkdir()
    (mine / "keep.png").write_bytes(b"x")
    (tmp_path / "run" / "eval" / "davis").symlink_to(mine)
    _clear_unfinished(out)
    _clear_unfinished(tmp_path / "run" / "eval" / "davis")
    _clear_unfinished(tmp_path / "run" / "eval" / "never_made")
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == ["transfer", "transfer/run_backbone.pt"]
    assert (mine / "keep.png").is_file()
    # a task with results (evaluated again as its data changed): they stand, its temp files go
    for name in ("metrics.json", "grid_m.png", ".tmp-metrics.md.7@0badc0de.z", "transfer/.tmp-m.pt.7@0badc0de.q"):
        (out / name).write_bytes(b"x")
    _clear_unfinished(out)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == ["grid_m.png", "metrics.json", "transfer",
                                                                       "transfer/run_backbone.pt"]
