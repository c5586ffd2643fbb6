"""`vidssl compare`: several runs' headline numbers, mean +- sd and wins against each baseline, on hand-made
summaries with known answers."""
from __future__ import annotations

import json
import math

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


def test_mean_spread_and_wins_per_task(tmp_path, capsys):
    runs = [_run(tmp_path, "seed0", 0.90, 0.85, 0.60, flow=2.0, flow_pixels=2.5),
            _run(tmp_path, "seed1", 0.80, 0.85, 0.70, flow=3.0, flow_pixels=2.5),
            _run(tmp_path, "seed2", 0.85, 0.85, 0.65)]  # no flow evaluation in this run
    rows = {row.task: row for row in read_runs(runs)}
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
    rows = {row.task: row for row in read_runs([run])}
    assert set(rows) == {"davis", "flow"}  # davis (no metrics on disk) from the summary; flow recomputed
    assert rows["flow"].trained == [2.5] and rows["flow"].baselines == {"raw pixels": [7.0]}
    assert main(["compare", str(run)]) == 0
    assert "| davis | 0.900 | 0.900 (n=1) |" in capsys.readouterr().out  # one run: no spread to show


def test_a_run_given_twice_and_an_out_folder_are_errors(tmp_path, capsys):
    run = _run(tmp_path, "a", 0.9, 0.85, 0.6)
    assert main(["compare", str(run), str(tmp_path / "." / "a")]) == 1
    assert "is given twice" in capsys.readouterr().err
    assert main(["compare", str(run), "--out", str(tmp_path)]) == 1
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
        run = _run(tmp_path, f"demo{seed}", 0.9, 0.85, 0.6)
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
    (moved / "eval" / "davis").mkdir(parents=True)  # a run folder's numbers are its metrics'
    (moved / "eval" / "davis" / "metrics.json").write_text(json.dumps({"models": {
        "demo1/backbone": {"JF_mean": 0.9}, "raw pixels": {"JF_mean": 0.85}}}))
    assert main(["compare", str(runs[0]), str(moved)]) == 0
    assert "differ" not in capsys.readouterr().out


def _metrics(run, task, models):
    (run / "eval" / task).mkdir(parents=True, exist_ok=True)
    (run / "eval" / task / "metrics.json").write_text(json.dumps({"models": models}))


def test_a_run_folders_numbers_are_its_metrics_and_the_direction_is_the_metrics(tmp_path, capsys):
    """A summary is stale for a task whose metrics are gone (new weights' evaluation begun and killed); a task is
    lower-is-better by its metric (EPE), not its name: a retrieval set in a folder named flow is a score."""
    run = _run(tmp_path, "r|1", 0.9, 0.85, 0.6)
    (run / "stages").mkdir()  # a pretrain run folder, not a summary copied alone
    _metrics(run, "flow", {"r|1/backbone": {"map_at_r": 0.9}, "raw pixels": {"map_at_r": 0.5}})
    rows = {row.task: row for row in read_runs([run])}
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
    rows = {row.task: row for row in read_runs([run])}
    assert set(rows) == {"flow"} and rows["flow"].lower_is_better and wins(rows["flow"], "raw pixels") == (1, 1)
    (run / "eval" / "flow" / "metrics.json").unlink()
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
        run = _run(tmp_path, f"s{seed}", 0.9, 0.85, 0.6)
        (run / "config.yaml").write_text(yaml.safe_dump({"config": {"seed": seed, **config}}))
        runs.append(run)
    assert main(["compare", *map(str, runs)]) == 0
    assert "differ" not in capsys.readouterr().out
    # with train.fit_budget the machine's speed (threads, device) decides the steps: those differences are listed
    for run, steps in zip(runs, (143, 136)):
        (run / "model_card.json").write_text(json.dumps({"training": {"steps": steps, "total_steps": steps}}))
    assert main(["compare", *map(str, runs)]) == 0
    assert "- trained steps: 143 of 143 / 136 of 136" in capsys.readouterr().out
    (runs[1] / "config.yaml").write_text(yaml.safe_dump({"config": {"seed": 1, "train": {"budget_minutes": 1}}}))
    assert main(["compare", *map(str, runs)]) == 0
    assert "- train.budget_minutes: " in capsys.readouterr().out  # the budget decides the steps: a difference
