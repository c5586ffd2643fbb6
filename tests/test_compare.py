"""`vidssl compare`: several runs' headline numbers, mean +- sd and wins against each baseline, on hand-made
summaries with known answers."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

from vidssl.cli import main
from vidssl.compare import mean_sd, read_runs, wins


def _run(root, name, davis, pixels, random_init, flow=None, flow_pixels=None):
    run = root / name
    run.mkdir()
    headline = {"davis": {f"{name}/backbone": davis, "raw pixels": pixels, "smallcnn (random init)": random_init}}
    if flow is not None:
        headline["flow"] = {f"{name}/backbone": flow, "raw pixels": flow_pixels}
    (run / "summary.json").write_text(json.dumps({"weights": str(run / "backbone.pt"), "headline": headline}))
    return run


def _metrics(run, task, models):
    (run / "eval" / task).mkdir(parents=True, exist_ok=True)
    (run / "eval" / task / "metrics.json").write_text(json.dumps({"models": models}))


def _run_folder(root, name, davis, pixels, random_init):
    """A run folder (its numbers in eval/, not only in its summary, which beside eval/ is no stand-in)."""
    run = _run(root, name, davis, pixels, random_init)
    _metrics(run, "davis", {f"{name}/backbone": {"JF_mean": davis}, "raw pixels": {"JF_mean": pixels},
                            "smallcnn (random init)": {"JF_mean": random_init}})
    return run


def test_mean_spread_and_wins_per_task(tmp_path, capsys):
    runs = [_run(tmp_path, "seed0", 0.90, 0.85, 0.60, flow=2.0, flow_pixels=2.5),
            _run(tmp_path, "seed1", 0.80, 0.85, 0.70, flow=3.0, flow_pixels=2.5),
            _run(tmp_path, "seed2", 0.85, 0.85, 0.65)]  # no flow evaluation in this run
    rows = {row.task: row for row in read_runs(runs)[0]}
    assert rows["davis"].trained == [0.90, 0.80, 0.85] and rows["flow"].trained == [2.0, 3.0, None]
    mean, sd, n = mean_sd(rows["davis"].trained)
    assert n == 3 and math.isclose(mean, 0.85) and math.isclose(sd, 0.05)  # sqrt((0.05^2 + 0.05^2 + 0) / 2)
    assert wins(rows["davis"], "raw pixels") == (1, 3)  # a tie is not a win
    assert wins(rows["davis"], "smallcnn (random init)") == (3, 3)
    assert wins(rows["flow"], "raw pixels") == (1, 2)  # EPE: lower wins; the run without flow is left out
    mean, sd, n = mean_sd(rows["flow"].trained)
    assert (n, mean) == (2, 2.5) and math.isclose(sd, math.sqrt(0.5))

    out = tmp_path / "table.md"
    assert main(["compare", *map(str, runs), "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert table == out.read_text()
    davis = next(line for line in table.splitlines() if line.startswith("| davis "))
    assert davis == ("| davis | 0.900 | 0.800 | 0.850 | 0.850 +- 0.050 (n=3) | 0.850, 1/3 | 0.650, 3/3 |")
    assert "| flow (lower is better) | 2.000 | 3.000 | - | 2.500 +- 0.707 (n=2) | 2.500, 1/2 | - |" in table


def test_a_folder_without_a_summary_is_a_clear_error(tmp_path, capsys):
    assert main(["compare", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path}: no summary.json" in err and "vidssl pretrain" in err
    (tmp_path / "summary.json").write_text("[1, 2]")  # JSON, but not a summary: one line, not an AttributeError
    assert main(["compare", str(tmp_path)]) == 1
    assert "summary.json: not a run summary (a JSON list)" in capsys.readouterr().err


def test_headlines_are_read_from_the_runs_metrics_not_a_stale_summary(tmp_path, capsys):
    """A run made stage by stage has eval/ but no stages/: its summary is as stale for a task whose metrics are gone
    (eval/davis deleted) as a pretrain run's; only a summary with no eval/ beside it is read as it is."""
    run = _run(tmp_path, "old", 0.90, 0.85, 0.60)
    summary = json.loads((run / "summary.json").read_text())
    summary["headline"]["davis_instances"] = {"old/backbone": 1.0, "raw pixels": 1.0}  # degenerate, older version
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "eval" / "davis_instances").mkdir(parents=True)
    (run / "eval" / "davis_instances" / "metrics.json").write_text(json.dumps(
        {"labels": 1, "models": {"old/backbone": {"map_at_r": 1.0}, "raw pixels": {"map_at_r": 1.0}}}))
    (run / "eval" / "flow").mkdir()
    (run / "eval" / "flow" / "metrics.json").write_text(json.dumps({"methods": {
        "match[old/backbone]": {"mean": {"epe": 2.5}}, "match[raw pixels]": {"mean": {"epe": 7.0}},
        "dis_medium": {"mean": {"epe": 0.3}}}}))
    rows = {row.task: row for row in read_runs([run])[0]}
    assert set(rows) == {"flow"}  # davis: only in the stale summary; davis_instances: degenerate; flow recomputed
    assert rows["flow"].trained == [2.5] and rows["flow"].baselines == {"raw pixels": [7.0]}
    assert main(["compare", str(run)]) == 0
    out = capsys.readouterr().out
    assert "| flow (lower is better) | 2.500 | 2.500 (n=1) | 7.000, 1/1 |" in out and "| davis " not in out


def test_a_run_given_twice_and_an_out_folder_are_errors(tmp_path, capsys):
    run = _run(tmp_path, "a", 0.9, 0.85, 0.6)
    assert main(["compare", str(run), f"{run}/"]) == 1  # as typed: the slash is what tells them apart
    assert f"'{run}/' and '{run}' are the same run; each run counts once" in capsys.readouterr().err
    assert main(["compare", str(run), "--out", str(tmp_path)]) == 2  # an argument mistake, as argparse's
    captured = capsys.readouterr()
    assert "is a folder" in captured.err and captured.out == ""  # refused before the table is printed


def test_runs_that_differ_beyond_their_seed_are_named_under_the_table(tmp_path, capsys):
    import yaml

    def setup(run, seed, box, videos):
        config = {"seed": seed, "mine": {"box_fraction": box, "track_length": 30}}
        (run / "config.yaml").write_text(yaml.safe_dump({"config": config, "versions": {"git_sha": str(seed)}}))
        (run / "pairs").mkdir()
        (run / "pairs" / "dataset.json").write_text(json.dumps({"videos_root": videos}))
        headline = json.loads((run / "summary.json").read_text())["headline"]["davis"]
        models = {name: {"JF_mean": value} for name, value in headline.items()}
        for task, data in (("davis", "/data/davis"), ("tracks_held_out", str(run / "pairs_held_out"))):
            (run / "eval" / task).mkdir(parents=True)
            (run / "eval" / task / "metrics.json").write_text(json.dumps({"data": data, "models": models}))
        return run

    seeds = [setup(_run(tmp_path, f"seed{s}", 0.9, 0.85, 0.6), s, 0.5, "/videos") for s in (0, 1)]
    assert main(["compare", *map(str, seeds)]) == 0
    assert "differ" not in capsys.readouterr().out  # seeds of one config on one data set (versions aside)

    other = setup(_run(tmp_path, "other", 0.8, 0.85, 0.6), 2, 0.33, "/demo")
    assert main(["compare", *map(str, seeds), str(other)]) == 0
    out = capsys.readouterr().out
    assert "**These runs differ beyond their seed**" in out
    notes = [line for line in out.splitlines() if line.startswith("- ")]
    assert notes == ["- mine.box_fraction: 0.5 / 0.5 / 0.33", "- videos: /videos / /videos / /demo"]


def test_demo_runs_made_with_other_seeds_do_not_differ_by_their_own_clip_folders(tmp_path, capsys):
    import yaml

    runs = []
    for seed in (0, 1):
        run = _run_folder(tmp_path, f"demo{seed}", 0.9, 0.85, 0.6)
        (run / "config.yaml").write_text(yaml.safe_dump({"config": {"seed": seed, "demo": {"seed": 0}}}))
        (run / "pairs").mkdir()
        (run / "pairs" / "dataset.json").write_text(json.dumps({"videos_root": str(run / "demo_videos")}))
        runs.append(run)
    assert main(["compare", *map(str, runs)]) == 0
    assert "differ" not in capsys.readouterr().out
    # moved or copied elsewhere since: its clips' folder is no longer inside it; its mining marker says demo
    moved = tmp_path / "elsewhere"
    runs[1].rename(moved)
    (moved / "stages").mkdir()
    (moved / "stages" / "mine.json").write_text(json.dumps({"pairs": 1, "config": {"--videos": None}}))
    assert main(["compare", str(runs[0]), str(moved)]) == 0
    assert "differ" not in capsys.readouterr().out




def test_a_run_folders_numbers_are_its_metrics_and_the_direction_is_the_metrics(tmp_path, capsys):
    """A summary is stale for a task whose metrics are gone (new weights' evaluation begun and killed); a task is
    lower-is-better by its metric (EPE), not its name: a retrieval set in a folder named flow is a score."""
    run = _run(tmp_path, "r|1", 0.9, 0.85, 0.6)
    _metrics(run, "flow", {"r|1/backbone": {"map_at_r": 0.9}, "raw pixels": {"map_at_r": 0.5}})
    rows = {row.task: row for row in read_runs([run])[0]}
    assert set(rows) == {"flow"}  # davis: only in the (stale) summary
    assert not rows["flow"].lower_is_better and wins(rows["flow"], "raw pixels") == (1, 1)
    assert main(["compare", str(run)]) == 0
    table = capsys.readouterr().out
    assert "| task | r\\|1 |" in table and "| flow | 0.900 |" in table  # a | in a name is escaped
    (run / "eval" / "flow" / "metrics.json").write_text("{torn")  # unreadable: the summary stands in
    summary = json.loads((run / "summary.json").read_text())
    summary["headline"]["flow"] = {"r|1/backbone": 2.0, "raw pixels": 3.0}
    summary["headline_metric"] = {"flow": {"metric": "EPE px", "higher_is_better": False}}
    (run / "summary.json").write_text(json.dumps(summary))
    rows = {row.task: row for row in read_runs([run])[0]}
    assert set(rows) == {"flow"} and rows["flow"].lower_is_better and wins(rows["flow"], "raw pixels") == (1, 1)
    (run / "eval" / "flow" / "metrics.json").unlink()
    assert main(["compare", str(run)]) == 1
    assert "no evaluation results in" in capsys.readouterr().err
    # a pretrain deletes eval/ before it evaluates new weights: killed then, the run has no number yet, and its
    # summary (the old weights') does not stand in
    shutil.rmtree(run / "eval")
    (run / "stages").mkdir(exist_ok=True)
    assert main(["compare", str(run)]) == 1
    assert "no evaluation results in" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "nosuch")]) == 1
    assert "nosuch: no such folder" in capsys.readouterr().err


def test_speed_keys_and_keys_added_later_are_not_differences(tmp_path, capsys):
    import yaml

    from vidssl.config import Config

    runs = []
    for seed, config in ((0, {"train": {"threads": 2}, "data": {"num_workers": 0}}),
                         (1, {"train": {"threads": 4}, "model": {"width": Config().model.width}})):
        run = _run_folder(tmp_path, f"s{seed}", 0.9, 0.85, 0.6)
        (run / "config.yaml").write_text(yaml.safe_dump({"config": {"seed": seed, **config}}))
        runs.append(run)
    assert main(["compare", *map(str, runs)]) == 0
    assert "differ" not in capsys.readouterr().out
    # with train.fit_budget the machine's speed (threads, device) decides the steps: their range is said, but is no
    # difference of setting
    for run, steps in zip(runs, (143, 136)):
        (run / "model_card.json").write_text(json.dumps({"training": {"steps": steps, "total_steps": steps}}))
    assert main(["compare", *map(str, runs)]) == 0
    out = capsys.readouterr().out
    assert "\ntrained steps: 136-143 (train.fit_budget fitted" in out and "differ" not in out
    # the budget decides the steps: a difference (a pretrain run's, pretrain.budget_minutes: it reads no train's)
    (runs[1] / "config.yaml").write_text(yaml.safe_dump({"config": {"seed": 1, "pretrain": {"budget_minutes": 1}}}))
    assert main(["compare", *map(str, runs)]) == 0
    assert "- pretrain.budget_minutes: " in capsys.readouterr().out


def _yaml(path, config):
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"config": config, "versions": {}}))


def test_a_run_made_stage_by_stage_is_held_to_its_training_and_mining_configs(tmp_path, capsys):
    """No RUN/config.yaml: the training's config (RUN/train/config.yaml, or the model card's copy) and the mining's
    mine section (RUN/pairs/config.yaml; the train command's is whatever it was given)."""
    a, b = _run_folder(tmp_path, "a", 0.9, 0.85, 0.6), _run_folder(tmp_path, "b", 0.8, 0.85, 0.6)
    _yaml(a / "train" / "config.yaml", {"seed": 0, "train": {"lr": 0.02}, "mine": {"time_range": [0.0, 1.0]}})
    _yaml(a / "pairs" / "config.yaml", {"seed": 0, "mine": {"time_range": [0.0, 0.8]}})
    (b / "model_card.json").write_text(json.dumps({"config": {"seed": 1, "train": {"lr": 0.05},
                                                              "mine": {"time_range": [0.0, 0.8]}}}))
    _yaml(b / "pairs" / "config.yaml", {"seed": 1, "mine": {"time_range": [0.0, 1.0]}})
    assert main(["compare", str(a), str(b)]) == 0
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("- ")]
    assert notes == ["- mine.time_range: [0.0, 0.8] / [0.0, 1.0]", "- train.lr: 0.02 / 0.05"]


def test_evaluation_data_are_compared_resolved(tmp_path, capsys, monkeypatch):
    """An evaluation records its data resolved: `data` typed in two folders is two data sets, and `data` typed
    where it lies is the same as its absolute path. An older run's relative path is told apart from any other run's,
    unless two pretrain runs found it under the same --eval-data (their markers record it resolved)."""
    import cv2
    import numpy as np

    from vidssl.eval.baselines import PixelFeatures
    from vidssl.eval.config import RetrievalConfig
    from vidssl.eval.retrieval import evaluate_retrieval

    for place in ("x", "y"):
        for label, colour in (("red", (0, 0, 220)), ("blue", (220, 0, 0))):
            (tmp_path / place / "data" / label).mkdir(parents=True)
            for i in range(2):
                cv2.imwrite(str(tmp_path / place / "data" / label / f"{i}.png"), np.full((32, 32, 3), colour, np.uint8))
    runs = [_run(tmp_path, name, 0.9, 0.85, 0.6) for name in ("rx", "ry", "rabs")]
    for run, cwd, data in ((runs[0], "x", "data"), (runs[1], "y", "data"), (runs[2], "x", tmp_path / "x" / "data")):
        monkeypatch.chdir(tmp_path / cwd)
        evaluate_retrieval({f"{run.name}/backbone": PixelFeatures()}, data, run / "eval" / "colours",
                           RetrievalConfig(image_size=32, num_workers=0, batch_size=4), progress=False)
    monkeypatch.chdir(tmp_path)
    recorded = json.loads((runs[0] / "eval" / "colours" / "metrics.json").read_text())["data"]
    assert recorded == str(tmp_path / "x" / "data")
    assert main(["compare", "rx", "rabs"]) == 0
    assert "differ" not in capsys.readouterr().out
    assert main(["compare", "rx", "ry"]) == 0
    assert f"- eval data (colours): {tmp_path / 'x' / 'data'} / {tmp_path / 'y' / 'data'}" in capsys.readouterr().out

    old = [_run(tmp_path, f"old{k}", 0.9, 0.85, 0.6) for k in range(2)]
    for run in old:
        (run / "eval" / "davis").mkdir(parents=True)
        (run / "eval" / "davis" / "metrics.json").write_text(json.dumps(
            {"data": "data/davis", "models": {f"{run.name}/backbone": {"JF_mean": 0.9}}}))
    assert main(["compare", "old0", "old1"]) == 0
    assert ("- eval data (davis): data/davis, relative to the folder old0 was evaluated from / data/davis, relative "
            "to the folder old1 was evaluated from") in capsys.readouterr().out
    for run in old:
        (run / "stages").mkdir()
        (run / "stages" / "eval.json").write_text(json.dumps({"config": {"--eval-data": "/abs/data"}}))
    assert main(["compare", "old0", "old1"]) == 0
    assert "differ" not in capsys.readouterr().out


def test_only_finite_numbers_count(tmp_path, capsys):
    """NaN or Infinity in a metrics.json (a diverged evaluation) would make the mean NaN and every win false: a
    baseline without a finite number counts as a run without the number; a trained one shows, and is beaten."""
    runs = []
    for name, trained, pixels in (("n0", "NaN", "0.5"), ("n1", "0.8", "Infinity"), ("n2", "0.6", "0.7")):
        run = _run(tmp_path, name, 0.9, 0.85, 0.6)
        (run / "eval" / "davis").mkdir(parents=True)
        (run / "eval" / "davis" / "metrics.json").write_text(
            f'{{"models": {{"{name}/backbone": {{"JF_mean": {trained}}}, "raw pixels": {{"JF_mean": {pixels}}}}}}}')
        runs.append(run)
    assert main(["compare", *map(str, runs)]) == 0
    # mean of 0.8 and 0.6, sd sqrt(0.02); pixels' mean over the runs of the trained mean where it has a number: n2's
    # 0.7; n0's NaN loses to pixels' 0.5, and n2 loses
    assert "| davis | NaN | 0.800 | 0.600 | 0.700 +- 0.141 (n=2) | 0.700 (n=1), 0/2 |" in capsys.readouterr().out
    rows, _ = read_runs(runs)
    assert math.isnan(rows[0].trained[0]) and rows[0].trained[1:] == [0.8, 0.6]
    assert rows[0].baselines == {"raw pixels": [0.5, None, 0.7]}


def test_summary_stand_ins_are_finite_numbers(tmp_path, capsys):
    """A summary copied alone (no eval/ beside it) is read as it is, but a string, a boolean or a NaN in it is no
    number: "0.9" raised a TypeError, true showed as 1.000."""
    run = tmp_path / "alone"
    run.mkdir()
    (run / "summary.json").write_text('{"trained_model": "alone/backbone", "headline": {"davis": {"alone/backbone": '
                                      '0.9, "raw pixels": true, "smallcnn (random init)": "0.6", "other": NaN}}}')
    assert main(["compare", str(run)]) == 0
    out = capsys.readouterr().out
    assert "| davis | 0.900 | 0.900 (n=1) |" in out and "raw pixels" not in out and "random init" not in out


def test_an_unreadable_metrics_json_is_named_and_the_summary_stands_in(tmp_path, capsys):
    """A metrics.json holding null is as unreadable as a torn one (it raised an error naming no file): the summary's
    number stands in, and a note under the table names each unreadable file, also one nothing stands in for."""
    run = _run(tmp_path, "u", 0.9, 0.85, 0.6, flow=2.0, flow_pixels=2.5)
    _metrics(run, "flow", {})
    (run / "eval" / "flow" / "metrics.json").write_text("null")
    _metrics(run, "cub", {})
    (run / "eval" / "cub" / "metrics.json").write_text('{"models": ')
    assert main(["compare", str(run)]) == 0
    out = capsys.readouterr().out
    assert "| flow (lower is better) | 2.000 | 2.000 (n=1) | 2.500, 1/1 |" in out
    assert (f"- {run / 'eval' / 'flow' / 'metrics.json'}: unreadable (a JSON NoneType, not the object an evaluation "
            "writes); summary.json stands in for it; rerun that evaluation to rewrite it") in out
    assert f"- {run / 'eval' / 'cub' / 'metrics.json'}: unreadable (Expecting value" in out
    assert "summary.json has no number for it; rerun that evaluation to rewrite it" in out
    _metrics(run, "davis", {})  # an object with no row: the same
    assert main(["compare", str(run)]) == 0
    out = capsys.readouterr().out
    assert "| davis | 0.900 | 0.900 (n=1) |" in out  # summary.json's number stands in
    assert (f"- {run / 'eval' / 'davis' / 'metrics.json'}: unreadable (holds no model's metrics" in out
            and out.count("summary.json stands in for it") == 2)
    (run / "eval" / "davis" / "metrics.json").unlink()
    (run / "eval" / "davis").rmdir()
    rows, notes = read_runs([run])
    assert [row.task for row in rows] == ["flow"] and rows[0].trained == [2.0] and rows[0].lower_is_better
    assert len(notes) == 2
    # one its completed evaluation lists, deleted since: its row read "-" without a word
    (run / "stages").mkdir()
    (run / "stages" / "eval.json").write_text(json.dumps({"tasks": ["cub", "davis", "flow"], "config": {}}))
    assert main(["compare", str(run)]) == 0
    assert (f"- {run / 'eval' / 'davis' / 'metrics.json'}: missing, though its evaluation completed; the same "
            "`vidssl pretrain` command evaluates it again") in capsys.readouterr().out


def test_keys_a_run_does_not_read_are_no_differences(tmp_path, capsys):
    """demo.* on --videos runs, pretrain.held_out_tail on demo runs, pretrain.mine_workers (a worker count) on any;
    an old demo run's marker lacks --videos and its videos_root names where it was made: still the demo clips."""
    def run(name, videos, config, videos_root=None):
        folder = _run(tmp_path, name, 0.9, 0.85, 0.6)
        _yaml(folder / "config.yaml", config)
        (folder / "stages").mkdir()
        marker = {} if videos_root else {"--videos": videos}  # an old marker: no --videos
        (folder / "stages" / "mine.json").write_text(json.dumps({"config": marker}))
        _metrics(folder, "davis", {f"{name}/backbone": {"JF_mean": 0.9}})
        if videos_root:
            (folder / "pairs").mkdir()
            (folder / "pairs" / "dataset.json").write_text(json.dumps({"videos_root": videos_root}))
        return str(folder)

    real = [run("v0", "/videos", {"demo": {"num": 6}, "pretrain": {"mine_workers": 2}}),
            run("v1", "/videos", {"demo": {"num": 9}, "pretrain": {"mine_workers": 4}})]
    assert main(["compare", *real]) == 0
    assert "differ" not in capsys.readouterr().out
    demo = [run("d0", None, {"pretrain": {"held_out_tail": 0.2}}),
            run("d1", None, {"pretrain": {"held_out_tail": 0.3}}, videos_root="/old/place/d1/demo_videos")]
    assert main(["compare", *demo]) == 0
    assert "differ" not in capsys.readouterr().out
    assert main(["compare", real[1], demo[1]]) == 0
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("- ")]
    assert notes == ["- videos: /videos / the built-in demo videos"]  # not demo.num, nor held_out_tail


def test_runs_of_one_name_in_two_folders_get_columns_of_their_own(tmp_path, capsys):
    for parent in ("A", "B"):
        (tmp_path / parent).mkdir()
        _run(tmp_path / parent, "s0", 0.9 if parent == "A" else 0.8, 0.85, 0.6)
    _run(tmp_path, "s1", 0.7, 0.85, 0.6)
    assert main(["compare", *(str(tmp_path / p) for p in ("A/s0", "B/s0", "s1"))]) == 0
    assert "| task | A/s0 | B/s0 | s1 | trained mean +- sd |" in capsys.readouterr().out


def test_a_summary_shared_with_its_weights_card_and_config_is_read_as_it_is(tmp_path, capsys):
    """backbone.pt, model_card.json and config.yaml are what a summary is shared with: beside them alone it is read
    as it is (they made compare refuse it as an unfinished run); beside stages/ it is a run's, and the error says
    why its numbers were not taken."""
    shared = _run(tmp_path, "shared", 0.9, 0.85, 0.6)
    for name in ("backbone.pt", "model_card.json", "config.yaml"):
        (shared / name).write_text("{}")
    rows, _ = read_runs([shared])
    assert [row.task for row in rows] == ["davis"] and rows[0].trained == [0.9]
    assert rows[0].baselines == {"raw pixels": [0.85], "smallcnn (random init)": [0.6]}
    (shared / "stages").mkdir()
    assert main(["compare", str(shared)]) == 1
    assert "a summary.json beside stages/ is a run's, whose numbers are its eval/*/metrics.json" in \
        capsys.readouterr().err


def test_a_torn_metrics_json_is_no_difference_in_evaluation_data(tmp_path, capsys):
    """A seed whose davis/metrics.json was torn lacked the "eval data (davis)" key and was listed as evaluated on
    other data ("- / /data/davis"), beside the note that already names the file."""
    runs = []
    for name, davis in (("s0", 0.8), ("s1", 0.7)):
        run = _run(tmp_path, name, davis, 0.75, 0.6)
        _metrics(run, "davis", {f"{name}/backbone": {"JF_mean": davis}, "raw pixels": {"JF_mean": 0.75}})
        metrics = json.loads((run / "eval" / "davis" / "metrics.json").read_text())
        (run / "eval" / "davis" / "metrics.json").write_text(json.dumps({**metrics, "data": "/data/davis"}))
        runs.append(run)
    (runs[1] / "eval" / "davis" / "metrics.json").write_text('{"models": ')
    assert main(["compare", *map(str, runs)]) == 0
    out = capsys.readouterr().out
    assert f"- {runs[1] / 'eval' / 'davis' / 'metrics.json'}: unreadable" in out
    assert "eval data" not in out and "differ beyond their seed" not in out


def test_a_summary_that_is_not_utf8_is_a_one_line_error(tmp_path, capsys):
    run = _run(tmp_path, "s0", 0.8, 0.75, 0.6)
    (run / "summary.json").write_bytes(b"\xff{}")
    assert main(["compare", str(run)]) == 1
    err = capsys.readouterr().err
    assert f"{run}/summary.json: unreadable" in err and f"vidssl report {run}" in err and "Traceback" not in err


def _one_label_run(root, name, tasks=("tracks_held_out",)):
    """A run whose every evaluation retrieved among one label (every model scores 1: left out of the headline)."""
    run = root / name
    for task in tasks:
        _metrics(run, task, {f"{name}/backbone": {"map_at_r": 1.0}, "raw pixels": {"map_at_r": 1.0}})
        metrics = json.loads((run / "eval" / task / "metrics.json").read_text())
        (run / "eval" / task / "metrics.json").write_text(json.dumps({"labels": 1, **metrics}))
    (run / "summary.json").write_text(json.dumps({"weights": str(run / "backbone.pt"), "headline": {},
                                                  "trained_model": f"{name}/backbone"}))
    return run


def test_runs_whose_only_evaluations_say_nothing_are_told_so(tmp_path, capsys):
    """A run on short clips whose held-out tails hold one track (every model scores 1 there, left out of the
    headline) was told to "finish the runs", which were finished."""
    runs = [_one_label_run(tmp_path, name) for name in ("s0", "s1")]
    assert main(["compare", *map(str, runs)]) == 1
    err = capsys.readouterr().err
    assert "no informative evaluation results" in err and "finish the runs" not in err
    assert f"{runs[0]}: tracks_held_out says nothing about the weights (only one label" in err
    assert err.count("give --eval-data") == 2  # neither run had evaluation data


def test_runs_given_eval_data_are_not_told_to_give_it(tmp_path, capsys):
    """Runs that evaluated DAVIS with one object (instance retrieval of one label) and held-out tails of one track:
    told "give --eval-data", which they had been given."""
    runs = [_one_label_run(tmp_path, name, ("tracks_held_out", "davis_instances")) for name in ("s0", "s1")]
    assert main(["compare", *map(str, runs)]) == 1
    err = capsys.readouterr().err
    assert "no informative evaluation results" in err and "--eval-data" not in err
    assert f"{runs[1]}: davis_instances says nothing about the weights (only one label" in err
    assert "more sequences or objects" in err and "held-out tails (pretrain.held_out_tail) hold more tracks" in err


def test_runs_that_finished_evaluating_nothing_are_not_told_to_finish(tmp_path, capsys):
    """A --videos run whose held-out tails gave no pair and that had no --eval-data completed its eval stage with
    no task; compare asked to finish it."""
    runs = []
    for name in ("v0", "v1"):
        run = tmp_path / name
        (run / "stages").mkdir(parents=True)
        (run / "stages" / "eval.json").write_text(json.dumps({"tasks": [], "trained_model": f"{name}/backbone"}))
        (run / "summary.json").write_text(json.dumps({"weights": str(run / "backbone.pt"), "headline": {},
                                                      "trained_model": f"{name}/backbone"}))
        runs.append(run)
    assert main(["compare", *map(str, runs)]) == 1
    err = capsys.readouterr().err
    assert f"{runs[0]}, {runs[1]}: finished, but evaluated nothing" in err and "finish the runs" not in err
    (runs[1] / "stages" / "eval.json").unlink()  # one unfinished: it is still asked to be finished
    assert main(["compare", *map(str, runs)]) == 1
    assert "finish the runs" in capsys.readouterr().err


def test_a_pretrain_run_and_one_made_stage_by_stage_compare_by_what_their_stages_ran(tmp_path, capsys):
    """A pretrain run records train.precision: auto in RUN/config.yaml, its training the fp32 auto chose; it read
    pretrain.budget_minutes, which a run made stage by stage never does; and it trained on the first 80% of each
    video while RUN/config.yaml keeps the user's whole mine.time_range. Compared with a run made stage by stage on all
    of each video, `train.precision: fp32 / auto` and `pretrain.budget_minutes` were listed and the range was not."""
    pre, stage = _run_folder(tmp_path, "pre", 0.9, 0.85, 0.6), _run_folder(tmp_path, "stage", 0.8, 0.85, 0.6)
    _yaml(pre / "config.yaml", {"seed": 0, "train": {"precision": "auto"}, "pretrain": {"budget_minutes": 2.0},
                                "mine": {"time_range": [0.0, 1.0]}})
    _yaml(pre / "train" / "config.yaml", {"seed": 0, "train": {"precision": "fp32"}})
    # as pretrain leaves it: the mining's own record, pairs/mine.json (pretrain writes no pairs/config.yaml)
    (pre / "pairs").mkdir()
    (pre / "pairs" / "mine.json").write_text(json.dumps({"config": {"time_range": [0.0, 0.8]}, "seed": 0,
                                                         "video_backend": "auto"}))
    _yaml(stage / "train" / "config.yaml", {"seed": 0, "train": {"precision": "fp32"}})
    _yaml(stage / "pairs" / "config.yaml", {"seed": 0, "mine": {"time_range": [0.0, 1.0]}})
    assert main(["compare", str(pre), str(stage)]) == 0
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("- ")]
    assert notes == ["- mine.time_range: [0.0, 0.8] / [0.0, 1.0]"]


def test_a_torn_config_or_model_card_is_named_and_no_difference(tmp_path, capsys):
    """A seed whose config.yaml was torn was listed as differing in every config key ("video.backend: auto / -",
    "... and 115 more"), and the file was never named; a torn model_card.json likewise in its trained steps."""
    import yaml

    from vidssl.config import Config, to_dict

    runs = []
    for seed in (0, 1):
        run = _run_folder(tmp_path, f"s{seed}", 0.8 + seed / 100, 0.75, 0.6)
        (run / "config.yaml").write_text(yaml.safe_dump({"config": {**to_dict(Config()), "seed": seed}}))
        (run / "model_card.json").write_text(json.dumps({"training": {"steps": 619, "total_steps": 619}}))
        runs.append(run)
    assert main(["compare", *map(str, runs)]) == 0
    assert "differ beyond their seed" not in capsys.readouterr().out
    text = (runs[1] / "config.yaml").read_text()
    # torn, or emptied (YAML reads an empty file as null: it was taken for a config of no keys), and a card torn or
    # holding no object
    for config, card in ((text[: len(text) // 2] + "\n  : [", '{"training": '), ("", "7")):
        (runs[1] / "config.yaml").write_text(config)
        (runs[1] / "model_card.json").write_text(card)
        assert main(["compare", *map(str, runs)]) == 0
        out = capsys.readouterr().out
        for torn in ("config.yaml", "model_card.json"):
            assert f"- {runs[1] / torn}: unreadable; what {runs[1]} was made with is not compared" in out, config
        assert "differ beyond their seed" not in out, config
    # a card written by hand (no config, no training record) beside no config.yaml is no damage: not named
    (runs[1] / "config.yaml").unlink()
    (runs[1] / "model_card.json").write_text(json.dumps({"arch": "smallcnn"}))
    assert main(["compare", *map(str, runs)]) == 0
    assert "unreadable" not in capsys.readouterr().out


def test_a_run_made_stage_by_stage_with_its_weights_exported_elsewhere_compares(tmp_path, capsys):
    """Its report wrote a headline with the trained row but no trained_model (no RUN/model_card.json), and compare
    refused it advising `vidssl pretrain`. The row is the one weights file its tables hold."""
    runs = []
    for seed in (0, 1):
        run = tmp_path / f"s{seed}"
        _metrics(run, "davis", {f"weights/s{seed}": {"JF_mean": 0.5 + seed / 10}, "raw pixels": {"JF_mean": 0.4}})
        assert main(["-q", "report", str(run)]) == 0
        assert json.loads((run / "summary.json").read_text())["trained_model"] == f"weights/s{seed}"
        runs.append(run)
    capsys.readouterr()
    assert main(["compare", *map(str, runs)]) == 0
    assert "| davis | 0.500 | 0.600 | 0.550 +- 0.071 (n=2) | 0.400, 2/2 |" in capsys.readouterr().out
    # two weights side by side and no card: which is the run's own cannot be told; the error says what to do
    _metrics(runs[1], "davis", {"weights/s1": {"JF_mean": 0.6}, "weights/other": {"JF_mean": 0.3},
                                "raw pixels": {"JF_mean": 0.4}})
    assert main(["-q", "report", str(runs[1])]) == 0
    assert main(["compare", *map(str, runs)]) == 0  # left out, named under the table: the other run compares
    out = capsys.readouterr().out
    assert "| task | s0 | trained mean +- sd |" in out
    assert "names no trained model" in out and f"vidssl export {runs[1]}/train --out {runs[1]}/backbone.pt" in out
    assert main(["compare", str(runs[1])]) == 1  # none left: the error says what to do
    err = capsys.readouterr().err
    assert "no run to compare" in err and f"vidssl export {runs[1]}/train --out {runs[1]}/backbone.pt" in err


def test_runs_trained_by_different_code_are_told_so(tmp_path, capsys):
    """`vidssl compare` held runs of several commits to be one config's seeds: the code was never compared."""
    runs = [_run_folder(tmp_path, f"s{i}", 0.9, 0.85, 0.6) for i in range(3)]

    def card(run, *shas):
        sessions = [{"start_step": 10 * i, "git_sha": sha} for i, sha in enumerate(shas)]
        (run / "model_card.json").write_text(json.dumps({"git_sha": shas[-1], "training": {"sessions": sessions}}))

    card(runs[0], "a" * 40)
    card(runs[1], "a" * 40)
    assert main(["compare", *map(str, runs)]) == 0
    assert "Trained by different code" not in capsys.readouterr().out  # one commit, a run without a card
    card(runs[2], "a" * 40, "b" * 40 + "-dirty")  # resumed under other code
    assert main(["compare", *map(str, runs)]) == 0
    out = capsys.readouterr().out
    assert f": {'a' * 12} / {'a' * 12} / {'a' * 12}+{'b' * 12}-dirty" in out


def test_a_trained_number_that_is_not_finite_shows_and_is_beaten(tmp_path, capsys):
    """A diverged seed (its J&F NaN, written null; or infinite) showed as "-", dropped out of the mean and of the
    win count (1/2 of 4 runs) while the baselines' means stayed over all runs: the config looked better for it."""
    import statistics

    trained, pixels = ["0.9", "null", "0.8", "Infinity"], [0.5, 0.6, 0.85, 0.5]
    runs = []
    for i, (t, p) in enumerate(zip(trained, pixels)):
        run = _run(tmp_path, f"s{i}", 0.9, 0.85, 0.6)
        (run / "eval" / "davis").mkdir(parents=True)
        (run / "eval" / "davis" / "metrics.json").write_text(
            f'{{"models": {{"s{i}/backbone": {{"JF_mean": {t}}}, "raw pixels": {{"JF_mean": {p}}}}}}}')
        runs.append(run)
    assert main(["compare", *map(str, runs)]) == 0
    out = capsys.readouterr().out
    # the trained mean is over s0 and s2, and so is pixels'; only s0 beats pixels, of all four runs
    mean, sd, b_mean = statistics.mean([0.9, 0.8]), statistics.stdev([0.9, 0.8]), statistics.mean([0.5, 0.85])
    assert f"| davis | 0.900 | NaN | 0.800 | inf | {mean:.3f} +- {sd:.3f} (n=2) | {b_mean:.3f}, 1/4 |" in out
    assert f"- {runs[1]}: davis\n- {runs[3]}: davis\n" in out
    assert wins(read_runs(runs)[0][0], "raw pixels") == (1, 4)


def test_runs_without_a_readable_summary_are_left_out_and_named(tmp_path, capsys):
    """One run still training (no summary.json yet) or with a torn one stopped the whole comparison."""
    done = _run_folder(tmp_path, "s0", 0.9, 0.85, 0.6)
    training = tmp_path / "s1"
    (training / "train").mkdir(parents=True)
    torn = _run_folder(tmp_path, "s2", 0.8, 0.85, 0.6)
    (torn / "summary.json").write_text('{"weights": ')
    assert main(["compare", str(done), str(training), str(torn)]) == 0
    out = capsys.readouterr().out
    assert "| task | s0 | trained mean +- sd |" in out and "| davis | 0.900 | 0.900 (n=1) | 0.850, 1/1 |" in out
    assert f"- {training}: no summary.json (not finished?); finish it with the same `vidssl pretrain`" in out
    assert f"- {torn}/summary.json: unreadable (" in out
    (done / "summary.json").unlink()  # none left: an error naming each
    assert main(["compare", str(done), str(training), str(torn)]) == 1
    err = capsys.readouterr().err
    assert f"{done}: no summary.json" in err and f"{training}: no summary.json" in err and f"{torn}/summary.json" in err


def test_differences_of_many_runs_are_grouped_by_value(tmp_path, capsys):
    """Over 20 runs, "train.lr: 0.11 / 0.12 / ... / 0.02" had to be counted to tell whose value was whose."""
    runs = []
    for i, lr in enumerate((0.02, 0.02, 0.05, 0.02, 0.1)):
        run = _run_folder(tmp_path, f"s{i}", 0.9, 0.85, 0.6)
        _yaml(run / "config.yaml", {"seed": i, "train": {"lr": lr}})
        sha = "a" * 40 if i < 4 else "b" * 40
        (run / "model_card.json").write_text(json.dumps({"training": {"sessions": [{"git_sha": sha}]}}))
        runs.append(run)
    assert main(["compare", *map(str, runs)]) == 0
    out = capsys.readouterr().out
    assert "**These runs differ beyond their seed**, so the spread" in out  # not "(columns in the order above)"
    assert "- train.lr: 0.02 (s0, s1, s3); 0.05 (s2); 0.1 (s4)\n" in out
    assert f"would): {'a' * 12} (s0, s1, s2, s3); {'b' * 12} (s4)\n" in out


def test_steps_fitted_to_a_budget_are_no_difference_beyond_the_seed(tmp_path, capsys):
    """With train.fit_budget every seed trains its own count (10000, 9963): that alone listed the runs as differing
    beyond their seed. Without it, steps apart are a setting apart."""
    runs = [_run_folder(tmp_path, f"s{i}", 0.9, 0.85, 0.6) for i in range(3)]
    for i, (run, steps) in enumerate(zip(runs, (10000, 9963, 9990))):
        _yaml(run / "config.yaml", {"seed": i, "train": {"steps": 10000, "fit_budget": True}})
        (run / "model_card.json").write_text(json.dumps({"training": {"steps": steps, "total_steps": 10000}}))
    assert main(["compare", *map(str, runs)]) == 0
    out = capsys.readouterr().out
    assert "differ beyond their seed" not in out and "\ntrained steps: 9963-10000 (train.fit_budget fitted" in out
    for i, (run, steps) in enumerate(zip(runs, (10000, 9963, 9990))):
        _yaml(run / "config.yaml", {"seed": i, "train": {"steps": steps, "fit_budget": False}})
    assert main(["compare", *map(str, runs)]) == 0
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("- ")]
    assert notes == ["- train.steps: 10000 / 9963 / 9990",
                     "- trained steps: 10000 of 10000 / 9963 of 10000 / 9990 of 10000"]


def test_the_commands_a_message_gives_quote_the_run_s_path(tmp_path):
    """`vidssl report RUN` in a message, pasted into a shell: a run folder with a space became two arguments (and a
    downloaded one named with `;` or `$(...)` would have run code)."""
    import shlex

    import pytest

    from vidssl.compare import readable_runs
    from vidssl.errors import VidsslError

    run = tmp_path / "seed 0; echo $(id)"
    (run / "train").mkdir(parents=True)
    (run / "train" / "log.jsonl").write_text("")  # something to report: an empty folder is told it holds no run
    with pytest.raises(VidsslError) as caught:
        readable_runs([run])
    command = str(caught.value).split("write it for a run made stage by stage: ")[1]  # the message's end
    assert shlex.split(command) == ["vidssl", "report", str(run)]


def test_a_config_value_of_nested_yaml_aliases_is_shown_short(tmp_path, capsys):
    """A run's config.yaml from elsewhere holding six levels of YAML aliases (a few hundred bytes): compare printed
    the value in full, megabytes of output (10**9 leaves at nine levels: out of memory)."""
    import yaml

    runs = []
    for seed, value in ((0, "0.5"), (1, None)):
        run = _run(tmp_path, f"seed{seed}", 0.9, 0.85, 0.6)
        if value is None:  # the crafted one
            levels = ["&a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
            levels += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 7)]
            text = "config:\n  seed: 1\n  mine:\n    box_fraction: [" + ", ".join(levels) + "]\n"
            (run / "config.yaml").write_text(text)
            assert len(text) < 1000
        else:
            (run / "config.yaml").write_text(yaml.safe_dump({"config": {"seed": seed, "mine": {"box_fraction": 0.5}}}))
        runs.append(run)
    assert main(["compare", *map(str, runs)]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("- mine.box_fraction: "))
    assert line.startswith("- mine.box_fraction: 0.5 / [[1, 1, 1") and len(line) < 1000


def test_a_summary_standing_in_names_its_diverged_backbone(tmp_path, capsys):
    """A summary without its run folder stands in for its metrics: its headline holds numbers only, so a trained
    backbone that scored NaN (listed in headline_not_finite) read as not evaluated, and dropped out of the count of
    runs it is beaten in, as it did before the metrics.json path kept it."""
    good = _run(tmp_path, "s0", 0.9, 0.5, 0.4)
    bad = _run(tmp_path, "s1", 0.9, 0.5, 0.4)
    summary = json.loads((bad / "summary.json").read_text())
    del summary["headline"]["davis"]["s1/backbone"]
    summary["headline_not_finite"] = {"davis": ["s1/backbone"], "tracks": ["s1/backbone"]}
    (bad / "summary.json").write_text(json.dumps(summary))
    rows = {row.task: row for row in read_runs([good, bad])[0]}
    assert rows["davis"].trained[0] == 0.9 and math.isnan(rows["davis"].trained[1])
    assert wins(rows["davis"], "raw pixels") == (1, 2)  # the diverged seed is beaten, not left out
    assert math.isnan(rows["tracks"].trained[1])  # a task where every number it has is not finite


def test_a_run_reported_before_its_export_is_left_out_not_the_end_of_the_comparison(tmp_path, capsys):
    """A run made stage by stage, mined and trained, then `vidssl report` before its export: its summary.json names
    no trained model, and `vidssl compare` of it with two finished seeds failed with no table at all."""
    done = [_run_folder(tmp_path, f"s{i}", davis, 0.85, 0.6) for i, davis in enumerate((0.9, 0.8))]
    staged = tmp_path / "staged"
    (staged / "pairs").mkdir(parents=True)
    (staged / "pairs" / "dataset.json").write_text(json.dumps({"pairs": 3, "videos": {"found": 1, "mined": 1}}))
    (staged / "train").mkdir()
    (staged / "train" / "stats.json").write_text(json.dumps({"step": 10, "total_steps": 10, "stopped": "done"}))
    assert main(["-q", "report", str(staged)]) == 0
    capsys.readouterr()
    assert main(["compare", *map(str, done), str(staged)]) == 0
    out = capsys.readouterr().out
    # by hand: mean 0.85, sd sqrt((0.05^2 + 0.05^2) / 1) = 0.0707; pixels' 0.85 beaten in s0 only (a tie is no win)
    assert "| task | s0 | s1 | trained mean +- sd |" in out
    assert "| davis | 0.900 | 0.800 | 0.850 +- 0.071 (n=2) | 0.850, 1/2 | 0.600, 2/2 |" in out
    left_out = out.split("**Left out**")[1].splitlines()[1]
    assert left_out.startswith(f"- {staged}/summary.json names no trained model")
    assert f"vidssl export {staged}/train --out {staged}/backbone.pt" in left_out
    # a summary edited by hand, its "weights" no path: a TypeError ended the whole comparison
    (staged / "summary.json").write_text(json.dumps({"weights": 5}))
    assert main(["compare", *map(str, done), str(staged)]) == 0
    left_out = capsys.readouterr().out.split("**Left out**")[1].splitlines()[1]
    assert left_out == (f"- {staged}/summary.json: its \"weights\" is int 5, not a path; rewrite the summary: "
                        f"vidssl report {staged}")


def test_a_missing_evaluation_is_no_difference_in_evaluation_data(tmp_path, capsys):
    """A seed whose flow metrics.json is gone (its evaluation completed) and one never evaluated on flow were said
    to "differ beyond their seed" in "eval data (flow): /data/sintel / - / -": they have no flow number to differ
    in. Two flow data sets that are both read still differ."""
    def seed(name, davis, flow_data=None):
        run = _run_folder(tmp_path, name, davis, 0.85, 0.6)
        davis_metrics = json.loads((run / "eval" / "davis" / "metrics.json").read_text())
        (run / "eval" / "davis" / "metrics.json").write_text(json.dumps({**davis_metrics, "data": "/data/davis"}))
        if flow_data is not None:
            (run / "eval" / "flow").mkdir()
            (run / "eval" / "flow" / "metrics.json").write_text(json.dumps({"data": flow_data, "methods": {
                f"match[{name}/backbone]": {"mean": {"epe": 2.0}}, "match[raw pixels]": {"mean": {"epe": 3.0}}}}))
        return run

    runs = [seed("s0", 0.9, "/data/sintel"), seed("s1", 0.8), seed("s2", 0.85)]
    (runs[1] / "stages").mkdir()  # its evaluation completed on both; flow's metrics.json is gone since
    (runs[1] / "stages" / "eval.json").write_text(json.dumps({"tasks": ["davis", "flow"], "config": {}}))
    assert main(["compare", *map(str, runs)]) == 0
    out = capsys.readouterr().out
    assert "| flow (lower is better) | 2.000 | - | - | 2.000 (n=1) | 3.000, 1/1 | - |" in out
    assert f"- {runs[1] / 'eval' / 'flow' / 'metrics.json'}: missing, though its evaluation completed" in out
    assert "differ" not in out and "eval data" not in out
    shutil.rmtree(runs[2])
    runs[2] = seed("s2", 0.85, "/data/other")  # evaluated on other flow data: a difference, s1's still "-"
    assert main(["compare", *map(str, runs)]) == 0
    out = capsys.readouterr().out
    assert "**These runs differ beyond their seed**" in out
    assert [line for line in out.splitlines() if line.startswith("- eval data")] == [
        "- eval data (flow): /data/sintel / - / /data/other"]


def test_a_file_of_a_run_is_told_to_be_its_folder(tmp_path, capsys):
    """`vidssl compare a/summary.json b/summary.json` said "no such folder" for files that are there."""
    runs = [_run(tmp_path, f"s{i}", 0.9, 0.85, 0.6) for i in range(2)]
    assert main(["compare", str(runs[0] / "summary.json"), str(runs[1] / "summary.json")]) == 1
    err = capsys.readouterr().err
    assert f"{runs[0] / 'summary.json'} is a file; pass the run folder it belongs to ({runs[0]})" in err
    assert "no such folder" not in err


def test_a_run_given_twice_through_a_link_counts_once(tmp_path, capsys):
    run = _run(tmp_path, "s0", 0.9, 0.85, 0.6)
    (tmp_path / "latest").symlink_to(run, target_is_directory=True)
    assert main(["compare", str(run), str(tmp_path / "latest")]) == 1
    assert f"'{tmp_path / 'latest'}' and '{run}' are the same run; each run counts once" in capsys.readouterr().err


def test_baselines_are_collected_from_every_run(tmp_path, capsys):
    """A baseline only a later run has (run a's random init is a smallcnn, run b's a resnet18) gets its column."""
    runs = []
    for name, arch in (("a", "smallcnn"), ("b", "resnet18")):
        run = tmp_path / name
        _metrics(run, "davis", {f"{name}/backbone": {"JF_mean": 0.6}, f"{arch} (random init)": {"JF_mean": 0.4}})
        (run / "summary.json").write_text(json.dumps({"trained_model": f"{name}/backbone", "headline": {}}))
        runs.append(run)
    rows, _ = read_runs(runs)
    assert rows[0].baselines == {"smallcnn (random init)": [0.4, None], "resnet18 (random init)": [None, 0.4]}
    assert main(["compare", *map(str, runs)]) == 0
    # each baseline: its one run's 0.4 (n=1 of the trained mean's 2), beaten there by 0.6
    assert ("| davis | 0.600 | 0.600 | 0.600 +- 0.000 (n=2) | 0.400 (n=1), 1/1 | 0.400 (n=1), 1/1 |"
            in capsys.readouterr().out)


def test_a_task_that_is_a_score_in_one_run_and_an_error_in_another_is_refused(tmp_path, capsys):
    runs = []
    for name, metric in (("a", "map_at_r"), ("b", "epe")):
        run = tmp_path / name
        if metric == "epe":
            (run / "eval" / "flow").mkdir(parents=True)
            (run / "eval" / "flow" / "metrics.json").write_text(json.dumps({"methods": {
                f"match[{name}/backbone]": {"mean": {"epe": 2.0}}, "match[raw pixels]": {"mean": {"epe": 3.0}}}}))
        else:
            _metrics(run, "flow", {f"{name}/backbone": {"map_at_r": 0.9}, "raw pixels": {"map_at_r": 0.5}})
        (run / "summary.json").write_text(json.dumps({"trained_model": f"{name}/backbone", "headline": {}}))
        runs.append(run)
    assert main(["compare", *map(str, runs)]) == 1
    assert "task flow: a score in some runs and an error in others" in capsys.readouterr().err


def test_a_tie_is_no_win_where_lower_is_better_and_a_missing_task_is_not_a_divergence(tmp_path, capsys):
    run = tmp_path / "c"
    (run / "eval" / "flow").mkdir(parents=True)
    (run / "eval" / "flow" / "metrics.json").write_text(json.dumps({"methods": {
        "match[c/backbone]": {"mean": {"epe": 2.0}}, "match[raw pixels]": {"mean": {"epe": 2.0}}}}))
    (run / "summary.json").write_text(json.dumps({"trained_model": "c/backbone", "headline": {}}))
    rows, _ = read_runs([run])
    assert rows[0].lower_is_better and wins(rows[0], "raw pixels") == (0, 1)  # EPE 2.0 vs 2.0: no better
    other = _run_folder(tmp_path, "d", 0.9, 0.85, 0.6)  # no flow evaluation; c has no davis
    assert main(["compare", str(run), str(other)]) == 0
    out = capsys.readouterr().out
    assert "| flow (lower is better) | 2.000 | - | 2.000 (n=1) | 2.000, 0/1 | - |" in out
    assert "not finite" not in out  # the "-" of a task a run lacks is no diverged number


def test_a_key_pretrain_does_not_read_is_no_difference_of_pretrain_runs(tmp_path, capsys):
    """Three pretrain seeds apart only in train.budget_minutes (1.0 / 5.0 / 5.0), which pretrain does not read (its
    training gets pretrain.train_fraction of what mining leaves of pretrain.budget_minutes), were listed as
    differing; runs made stage by stage read it: there it is a difference."""
    pre = []
    for seed, minutes in enumerate((1.0, 5.0, 5.0)):
        run = _run_folder(tmp_path, f"p{seed}", 0.9 - seed / 100, 0.85, 0.6)
        _yaml(run / "config.yaml", {"seed": seed, "train": {"budget_minutes": minutes}})
        _yaml(run / "train" / "config.yaml", {"seed": seed, "train": {"budget_minutes": 2.0 + seed}})  # its share
        pre.append(str(run))
    assert main(["compare", *pre]) == 0
    assert "differ" not in capsys.readouterr().out
    stage = []
    for seed, minutes in enumerate((1.0, 5.0)):
        run = _run_folder(tmp_path, f"t{seed}", 0.8, 0.85, 0.6)
        _yaml(run / "train" / "config.yaml", {"seed": seed, "train": {"budget_minutes": minutes}})
        stage.append(str(run))
    assert main(["compare", *stage]) == 0
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("- ")]
    assert notes == ["- train.budget_minutes: 1.0 / 5.0"]
    assert main(["compare", pre[0], stage[1]]) == 0  # 1.0 unread beside 5.0 read: no difference either
    assert "differ" not in capsys.readouterr().out


def test_a_run_with_no_number_among_several_is_told_why(tmp_path, capsys):
    """A run whose only evaluation, its held-out tails of one track, says nothing had a column of `-` and not a word
    under the table (one run alone is told so in its error); so had one that evaluated nothing, and a run whose
    held-out tails said nothing where another's tell the models apart (a `-` in that row)."""
    ok, part = _run_folder(tmp_path, "ok", 0.9, 0.85, 0.6), _run_folder(tmp_path, "part", 0.8, 0.85, 0.6)
    _metrics(ok, "tracks_held_out", {"ok/backbone": {"map_at_r": 0.7}, "raw pixels": {"map_at_r": 0.5}})
    one = tmp_path / "one"
    for run in (part, one):
        (run / "eval" / "tracks_held_out").mkdir(parents=True)
        (run / "eval" / "tracks_held_out" / "metrics.json").write_text(json.dumps(
            {"labels": 1, "models": {f"{run.name}/backbone": {"map_at_r": 1.0}, "raw pixels": {"map_at_r": 1.0}}}))
    none = tmp_path / "none"
    (none / "stages").mkdir(parents=True)
    (none / "stages" / "eval.json").write_text(json.dumps({"tasks": [], "trained_model": "none/backbone"}))
    for run in (one, none):
        (run / "summary.json").write_text(json.dumps({"weights": str(run / "backbone.pt"), "headline": {},
                                                      "trained_model": f"{run.name}/backbone"}))
    assert main(["compare", *map(str, (ok, part, one, none))]) == 0
    out = capsys.readouterr().out
    assert "| davis | 0.900 | 0.800 | - | - | 0.850 +- 0.071 (n=2) |" in out
    assert "| tracks_held_out | 0.700 | - | - | - | 0.700 (n=1) |" in out
    section = out.split("**Shown as `-`** (no number that tells the models apart):\n")[1].split("\n\n")[0]
    one_track = "only one label: every neighbour is relevant, so every model scores 1 by construction"
    tails = "videos whose held-out tails (pretrain.held_out_tail) hold more tracks, several in one video"
    assert section.splitlines() == [
        # it evaluated DAVIS: it was given --eval-data
        f"- {part}: tracks_held_out says nothing about the weights ({one_track}); use {tails}",
        f"- {one}: tracks_held_out says nothing about the weights ({one_track}); give --eval-data (CUB, DAVIS, "
        f"Sintel folders), or {tails}",
        f"- {none}: finished, but evaluated nothing (no held-out pairs and no evaluation data); give --eval-data "
        "(CUB, DAVIS, Sintel folders)"]
    assert main(["compare", str(ok), str(part)]) == 0 and "Shown as" in capsys.readouterr().out
    assert main(["compare", str(ok)]) == 0 and "Shown as" not in capsys.readouterr().out  # nothing to explain
    bare = tmp_path / "bare"  # not evaluated (its evaluation switched off), or not yet
    (bare / "stages").mkdir(parents=True)
    (bare / "summary.json").write_text(json.dumps({"weights": str(bare / "backbone.pt"), "headline": {}}))
    assert main(["compare", str(ok), str(bare)]) == 0
    assert (f"\n- {bare}: no evaluation results (RUN/eval/*/metrics.json); evaluate it (the same `vidssl pretrain` "
            "command with its evaluation on, or `vidssl eval` into RUN/eval/<task>)\n") in capsys.readouterr().out
    # its completed evaluation's metrics.json deleted: named once, among the unreadable results
    (bare / "stages" / "eval.json").write_text(json.dumps({"tasks": ["davis"], "trained_model": "bare/backbone"}))
    assert main(["compare", str(ok), str(bare)]) == 0
    out = capsys.readouterr().out
    assert "Shown as" not in out and f"{bare}/eval/davis/metrics.json: missing" in out


def test_a_run_whose_eval_data_tasks_all_failed_is_not_told_to_give_eval_data(tmp_path, capsys):
    """Every --eval-data task failed (eval_failures.json, no metrics.json): the run was told "give --eval-data",
    which it had been given; and a metrics.json read as unreadable went unmentioned in that error."""
    run = _one_label_run(tmp_path, "s0")
    (run / "stages").mkdir()
    (run / "stages" / "eval.json").write_text(json.dumps({"config": {"--eval-data": str(tmp_path / "data")}}))
    _metrics(run, "davis", {})  # no model's row: unreadable
    assert main(["compare", str(run)]) == 1
    err = capsys.readouterr().err
    assert f"{run}: tracks_held_out says nothing about the weights (only one label" in err
    assert "give --eval-data" not in err and "use videos whose held-out tails" in err
    assert f"{run / 'eval' / 'davis' / 'metrics.json'}: unreadable (holds no model's metrics" in err


def test_a_run_made_stage_by_stage_is_held_to_the_settings_its_evaluations_ran_with(tmp_path, capsys):
    """`vidssl eval davis ... --out st/eval/davis --set eval.davis.max_side=160` into a run made stage by stage was
    listed as 480, the value its training's config (train/config.yaml) holds: each evaluation's own record
    (eval/<task>/config.yaml, else its metrics.json's "config") says what it ran with, and a task the run never
    evaluated (flow here, whose keys its training's config also holds) is no difference."""
    runs = [_run_folder(tmp_path, name, 0.8, 0.85, 0.6) for name in ("pre480", "pre160", "st", "st_old")]
    _yaml(runs[0] / "config.yaml", {"seed": 0, "eval": {"davis": {"max_side": 480}}})
    _yaml(runs[1] / "config.yaml", {"seed": 1, "eval": {"davis": {"max_side": 160}}})
    for run in runs[2:]:  # the train command saw the default eval settings, and a flow key never evaluated
        _yaml(run / "train" / "config.yaml", {"seed": 2, "eval": {"davis": {"max_side": 480}, "flow": {"lr": 0.5}}})
        metrics = json.loads((run / "eval" / "davis" / "metrics.json").read_text())
        metrics["config"] = {"max_side": 160, "topk": 10}  # the davis section, as `vidssl eval davis` records it
        (run / "eval" / "davis" / "metrics.json").write_text(json.dumps(metrics))
    _yaml(runs[2] / "eval" / "davis" / "config.yaml", {"seed": 2, "eval": {"davis": {"max_side": 160},
                                                                           "flow": {"lr": 0.9}}})
    # runs[3]: no config.yaml beside its metrics (an older evaluation): its metrics.json's "config" tells
    assert main(["compare", *map(str, runs)]) == 0
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("- ")]
    assert notes == ["- eval.davis.max_side: 480 (pre480); 160 (pre160, st, st_old)"]
    assert main(["compare", str(runs[2]), str(runs[3])]) == 0  # 160 each; flow set apart in records, never run
    assert "differ beyond their seed" not in capsys.readouterr().out


def test_pretrain_runs_differ_only_in_settings_of_the_evaluations_they_ran(tmp_path, capsys):
    """Pretrain evaluates DAVIS and flow only where it finds their data: two seeds evaluated on their held-out tracks
    alone, apart in eval.davis.topk and eval.flow.steps, were listed as differing in both. Retrieval's own keys (and
    eval.davis.subset, which retrieval reads) still differ; runs whose evaluations record no section keep them all."""
    runs = []
    for seed, (topk, steps, min_gap, subset) in enumerate([(10, 100, 30, "val"), (5, 200, 30, "val"),
                                                          (5, 200, 60, "train")]):
        run = tmp_path / f"p{seed}"
        (run / "eval" / "tracks_held_out").mkdir(parents=True)
        (run / "eval" / "tracks_held_out" / "metrics.json").write_text(json.dumps({
            "models": {f"p{seed}/backbone": {"map_at_r": 0.9}, "raw pixels": {"map_at_r": 0.3}},
            "config": {"min_gap": min_gap, "kmeans_iters": 20}}))  # the retrieval section, as retrieval records it
        (run / "summary.json").write_text(json.dumps({"weights": str(run / "backbone.pt"), "headline": {}}))
        evals = {"davis": {"topk": topk, "subset": subset}, "flow": {"steps": steps}, "retrieval": {"min_gap": min_gap}}
        _yaml(run / "config.yaml", {"seed": seed, "eval": evals})
        runs.append(str(run))
    assert main(["compare", runs[0], runs[1]]) == 0
    assert "differ beyond their seed" not in capsys.readouterr().out
    assert main(["compare", runs[1], runs[2]]) == 0
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("- ")]
    assert notes == ["- eval.retrieval.min_gap: 30 / 60", "- eval.davis.subset: val / train"]
    for seed in (0, 1):  # older records, without the section they ran with
        (Path(runs[seed]) / "eval" / "tracks_held_out" / "metrics.json").write_text(json.dumps({
            "models": {f"p{seed}/backbone": {"map_at_r": 0.9}, "raw pixels": {"map_at_r": 0.3}}}))
    assert main(["compare", runs[0], runs[1]]) == 0
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("- ")]
    assert sorted(notes) == ["- eval.davis.topk: 10 / 5", "- eval.flow.steps: 100 / 200"]


def test_a_stage_folder_or_a_folder_of_no_run_is_told_the_run_folder_to_pass(tmp_path, capsys):
    """`vidssl compare s0 other/train empty` left the two out advising `vidssl report other/train` (which refuses a
    stage folder) and `vidssl report empty` (nothing to report): the run folder is named, `vidssl report` offered
    only where it has something to report; a stage folder of a run given beside it is that run twice."""
    s0 = _run_folder(tmp_path, "s0", 0.9, 0.85, 0.6)
    other = _run_folder(tmp_path, "other", 0.8, 0.85, 0.6)
    (other / "train").mkdir()
    (other / "train" / "log.jsonl").write_text("")
    unreported = tmp_path / "unreported"  # made stage by stage, no summary yet
    (unreported / "pairs").mkdir(parents=True)
    (unreported / "pairs" / "manifest.jsonl").write_text("")
    (unreported / "pairs" / "dataset.json").write_text("{}")
    empty = tmp_path / "empty"
    empty.mkdir()
    given = [s0, other / "train", other / "eval" / "davis", unreported / "pairs", empty]
    assert main(["compare", *map(str, given)]) == 0
    out = capsys.readouterr().out
    notes = out.split("**Left out**")[1]
    assert (f"- {other / 'train'} is a training run's folder (`vidssl train --out`), one stage of the run folder "
            f"{other}: pass the run folder, {other}\n") in notes
    assert f"- {other / 'eval' / 'davis'} is an evaluation's folder (`vidssl eval TASK --out`), one task of the run " \
           f"folder {other}: pass the run folder, {other}\n" in notes
    assert f"one stage of the run folder {unreported}: pass the run folder, {unreported} ({unreported}: no " \
           f"summary.json" in notes and f"vidssl report {unreported})" in notes
    assert f"- {empty}: no summary.json, and no run in it" in notes
    assert "vidssl report " + str(empty) not in notes and "vidssl report " + str(other / "train") not in notes
    for stage in (s0 / "eval" / "davis", other / "train"):  # beside its own run: the same run twice
        run = stage.parent.parent if stage.parent.name == "eval" else stage.parent
        assert main(["compare", str(stage), str(run)]) == 1
        assert f"'{stage}' is a stage folder of '{run}', also given" in capsys.readouterr().err


def test_one_training_copied_counts_once_not_as_a_second_seed(tmp_path, capsys):
    """`cp -r s1 s1copy; vidssl compare s1 s1copy` gave n=2 and sd 0: runs whose summaries record the same trained
    weights (a pretrain run's stages.train, a run made stage by stage's train) are refused as a run given twice."""
    runs = [_run_folder(tmp_path, name, 0.8, 0.85, 0.6) for name in ("s1", "s1copy", "s2")]
    for run, digest in zip(runs, ("a" * 64, "a" * 64, "b" * 64)):
        summary = json.loads((run / "summary.json").read_text())
        summary["stages"] = {"train": {"step": 10, "weights_sha256": digest}}
        (run / "summary.json").write_text(json.dumps(summary))
    assert main(["compare", *map(str, runs)]) == 1
    err = capsys.readouterr().err
    assert f"'{runs[1]}' and '{runs[0]}' hold the same trained weights (weights_sha256 aaaaaaaaaaaa)" in err
    assert main(["compare", str(runs[0]), str(runs[2])]) == 0  # two trainings: compared
    assert "0.800 +- 0.000 (n=2)" in capsys.readouterr().out
    # one training evaluated two ways (training on the CPU is deterministic: a rerun with another eval setting, or a
    # copy rerun with another --eval-data): compared, the shared training said under the table (it was refused as
    # "a run folder copied or moved")
    for run, side in ((runs[0], 480), (runs[1], 160)):
        (run / "config.yaml").write_text(f"config:\n  eval:\n    davis:\n      max_side: {side}\n")  # as recorded
    assert main(["compare", str(runs[0]), str(runs[1])]) == 0
    table = capsys.readouterr().out
    assert (f"- {runs[0]} and {runs[1]} hold the same trained weights (weights_sha256 aaaaaaaaaaaa), evaluated "
            "otherwise: the spread between them is their evaluations', not a seed's") in table
    assert "eval.davis.max_side: 480 / 160" in table
    for run in runs[:2]:
        (run / "config.yaml").unlink()
    for run in runs:  # made stage by stage: `vidssl report` records its training's digest under "train"
        summary = json.loads((run / "summary.json").read_text())
        summary["train"] = summary.pop("stages")["train"]
        (run / "summary.json").write_text(json.dumps(summary))
    assert main(["compare", str(runs[0]), str(runs[1])]) == 1
    assert "hold the same trained weights" in capsys.readouterr().err


def test_runs_trained_on_pairs_mined_otherwise_elsewhere_differ(tmp_path, capsys):
    """Runs made stage by stage on pairs outside them (no RUN/pairs/config.yaml) were compared by their train
    commands' mine sections, both the defaults: runs on pairs mined with mine.box_fraction 0.5 and 0.33 were listed
    as seeds of one setup. Their trainings' records (train/stats.json, else the model card) tell them apart, and
    pairs of other videos differ in their manifest's digest; older runs, which record neither, have their mining
    unknown (no difference)."""
    from train_utils import synthetic_pairs
    from vidssl.config import load_config
    from vidssl.export import export_backbone
    from vidssl.train import train

    tiny = load_config(None, ["data.patch_size=32", "data.num_workers=0", "model.width=8", "model.embed_dim=16",
                              "train.batch_pairs=8", "train.steps=2", "train.budget_minutes=null",
                              "train.image_every=0", "train.threads=1", "train.warmup_steps=0",
                              "miner.background_negatives=false", "loss.cycle_background=false"])

    def made_stage_by_stage(name, box, num_videos=3):
        pairs = synthetic_pairs(tmp_path / f"pairs_{name}", num_videos=num_videos, tracks_per_video=8,
                                mined_with={"box_fraction": box})
        run = _run_folder(tmp_path, name, 0.8, 0.85, 0.6)
        train(pairs, run / "train", tiny, progress=False)
        export_backbone(run / "train", run / "backbone.pt")
        return run

    def differences(*runs):
        assert main(["compare", *map(str, runs)]) == 0
        return [line for line in capsys.readouterr().out.splitlines() if line.startswith("- ")]

    a, b, c = made_stage_by_stage("a", 0.5), made_stage_by_stage("b", 0.33), made_stage_by_stage("c", 0.5, 4)
    assert differences(a, b) == ["- mine.box_fraction: 0.5 / 0.33"]
    digests = [json.loads((run / "model_card.json").read_text())["training"]["mining"]["manifest_sha256"][:12]
               for run in (a, c)]
    assert digests[0] != digests[1] and differences(a, c) == [f"- pairs (manifest_sha256): {' / '.join(digests)}"]
    for run in (a, b):  # the weights and their card alone: the card's record
        shutil.rmtree(run / "train")
    assert differences(a, b) == ["- mine.box_fraction: 0.5 / 0.33"]
    for run in (a, b):  # cards of an earlier version: the train commands' mine sections, and no digest
        card = json.loads((run / "model_card.json").read_text())
        del card["training"]["mining"]
        (run / "model_card.json").write_text(json.dumps(card))
    assert differences(a, b) == [] and differences(a, c) == []
    card = json.loads((a / "model_card.json").read_text())  # its train command was given another mine section,
    card["config"]["mine"]["box_fraction"] = 0.33  # which says nothing of the pairs: unknown, not different
    (a / "model_card.json").write_text(json.dumps(card))
    assert differences(a, c) == []
