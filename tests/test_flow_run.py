"""The benchmark end to end on a small dataset with exact ground truth: metrics.json, metrics.md, figures, CLI."""
from __future__ import annotations

import dataclasses
import json

import cv2
import numpy as np
import pytest
import torch

from vidssl.cli import main
from vidssl.eval.baselines import PixelFeatures
from vidssl.eval.config import FlowConfig
from vidssl.eval.flow import evaluate_flow
from vidssl.eval.flow.io import write_flo, write_kitti_flow
from vidssl.eval.flow.synthetic import synthetic_pairs
from vidssl.models import build_backbone

CFG = dataclasses.replace(FlowConfig(), classical=["zero", "dis_ultrafast"], steps=3, batch_size=2,
                          synthetic_size=[64, 64], num_shapes=[1, 2], max_displacement=2, max_motion=8.0)


def _png(path, rgb: np.ndarray, grey: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if grey else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Middlebury (grey frames), KITTI (with flow_noc) and a Middlebury pair whose .flo is truncated.
    Returns the folder and each readable pair's ground truth with its valid mask."""
    root = tmp_path_factory.mktemp("flowdata")
    batch = synthetic_pairs(2, 48, 72, torch.Generator().manual_seed(3), max_motion=6.0, num_shapes=(1, 2))
    frames = [(x.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8) for x in (batch.image1, batch.image2)]
    flows = batch.flow.permute(0, 2, 3, 1).numpy()
    _png(root / "other-data" / "Synth" / "frame10.png", frames[0][0], grey=True)
    _png(root / "other-data" / "Synth" / "frame11.png", frames[1][0], grey=True)
    write_flo(root / "other-gt-flow" / "Synth" / "flow10.flo", flows[0])
    _png(root / "training" / "image_2" / "000000_10.png", frames[0][1])
    _png(root / "training" / "image_2" / "000000_11.png", frames[1][1])
    valid = np.ones((48, 72), bool)
    valid[:4] = False
    write_kitti_flow(root / "training" / "flow_occ" / "000000_10.png", flows[1], valid)
    write_kitti_flow(root / "training" / "flow_noc" / "000000_10.png", flows[1], valid & ~batch.occluded[1].numpy())
    _png(root / "other-data" / "Broken" / "frame10.png", frames[0][0])
    _png(root / "other-data" / "Broken" / "frame11.png", frames[1][0])
    write_flo(root / "other-gt-flow" / "Broken" / "flow10.flo", flows[0])
    broken = root / "other-gt-flow" / "Broken" / "flow10.flo"
    broken.write_bytes(broken.read_bytes()[:-100])
    truth = {"other-data/Synth/frame10": (flows[0], np.ones((48, 72), bool)),
             "training/image_2/000000_10": (np.round(flows[1] * 64) / 64, valid)}
    return root, truth


def test_evaluate_flow_writes_metrics_table_and_figures(dataset, tmp_path):
    root, truth = dataset
    torch.manual_seed(0)
    models = {"tiny": build_backbone("smallcnn", width=4).eval(), "raw pixels": PixelFeatures().eval()}
    out = tmp_path / "eval"
    result = evaluate_flow(models, root, out, CFG, budget_minutes=1.0, progress=False)

    saved = json.loads((out / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(result))
    assert list(saved["methods"]) == ["zero", "dis_ultrafast", "match[tiny]", "match[raw pixels]", "transfer[tiny]"]
    assert saved["pairs"] == ["other-data/Synth/frame10", "training/image_2/000000_10"]
    assert list(saved["skipped"]) == ["other-data/Broken/frame10"]
    assert "truncated" in saved["skipped"]["other-data/Broken/frame10"]
    for name, method in saved["methods"].items():
        for pair in saved["pairs"]:
            assert {"epe", "ae", "fl_all", "acc_1px", "acc_3px", "acc_5px", "seconds"} <= set(method["pairs"][pair])
        scored = [method["pairs"][p] for p in saved["pairs"]]  # pooled over the pairs' pixels
        assert method["mean"]["epe"] == pytest.approx(sum(m["epe"] * m["valid_px"] for m in scored)
                                                      / sum(m["valid_px"] for m in scored))
    # zero flow's EPE is the mean ground-truth magnitude over valid pixels, computed here independently
    for pair, (flow, valid) in truth.items():
        expected = float(np.sqrt((flow.astype(np.float64) ** 2).sum(-1))[valid].mean())
        assert saved["methods"]["zero"]["pairs"][pair]["epe"] == pytest.approx(expected, abs=1e-4)
        # the feature methods' window: +-2 cells of 8 px; a loop over the valid pixels
        inside = [abs(u) <= 16 and abs(v) <= 16 for (u, v), ok in zip(flow.reshape(-1, 2), valid.reshape(-1)) if ok]
        assert saved["reach"]["px"] == 16
        assert saved["reach"]["pairs"][pair]["in_reach_pct"] == pytest.approx(100 * sum(inside) / len(inside))
    # each benchmark on its own too (one pair each here): zero flow's EPE is that pair's mean magnitude
    assert saved["datasets"] == {"Middlebury": ["other-data/Synth/frame10"], "KITTI": ["training/image_2/000000_10"]}
    for dataset_name, (pair,) in saved["datasets"].items():
        flow, valid = truth[pair]
        expected = float(np.sqrt((flow.astype(np.float64) ** 2).sum(-1))[valid].mean())
        assert saved["methods"]["zero"]["datasets"][dataset_name]["epe"] == pytest.approx(expected, abs=1e-4)
    for method in saved["methods"].values():  # the first pair's call pays each method's start-up
        assert method["seconds_per_pair"] == method["pairs"]["training/image_2/000000_10"]["seconds"]
    magnitudes = np.concatenate([np.sqrt((flow.astype(np.float64) ** 2).sum(-1))[valid]
                                 for flow, valid in truth.values()])
    assert saved["methods"]["zero"]["mean"]["epe"] == pytest.approx(float(magnitudes.mean()), abs=1e-4)
    kitti = saved["methods"]["zero"]["pairs"]["training/image_2/000000_10"]
    assert kitti["epe_noc"] is not None and kitti["valid_px"] == 44 * 72
    assert saved["methods"]["zero"]["pairs"]["other-data/Synth/frame10"]["epe_noc"] is None  # Middlebury: no mask
    assert saved["transfer"]["tiny"]["steps"] == 3 and (out / "transfer" / "tiny.pt").is_file()
    # the budget given (pretrain gives what its run has left), not only the config's, which it overrode
    assert saved["budget_minutes"] == 1.0 and saved["config"]["budget_minutes"] == CFG.budget_minutes != 1.0

    table = (out / "metrics.md").read_text()
    assert "| method | EPE | EPE noc | EPE occ | AE (deg) | Fl-all % | <1px % | <3px % | <5px % | s/pair |" in table
    for name in saved["methods"]:
        assert f"| {name} |" in table
    assert "other-data/Broken/frame10" in table
    assert "| method | Middlebury (1) | KITTI (1) |" in table
    for pair in ("other-data_Synth_frame10", "training_image_2_000000_10"):
        figure = cv2.imread(str(out / "pairs" / f"{pair}.png"))
        assert figure is not None and figure.shape[1] == 3 * 512  # frame, GT, 5 methods: 3 rows of 3 panels
    assert not list(out.rglob(".tmp-*"))


def test_cli_runs_the_benchmark_and_reports_user_errors(dataset, tmp_path, capsys):
    root, _ = dataset
    out = tmp_path / "cli"
    code = main(["-q", "eval", "flow", "--data", str(root), "--out", str(out), "--arch", "smallcnn", "--no-transfer",
                 "--set", "eval.flow.classical=[zero]", "--set", "eval.flow.figures=false"])
    assert code == 0
    saved = json.loads((out / "metrics.json").read_text())
    assert list(saved["methods"]) == ["zero", "match[smallcnn (random init)]", "match[raw pixels]"]
    assert saved["transfer"] == {} and not (out / "pairs").exists()
    assert (out / "config.yaml").is_file()
    assert "| match[raw pixels] |" in capsys.readouterr().out

    assert main(["eval", "flow", "--data", str(tmp_path / "nothing"), "--out", str(out), "--arch", "smallcnn"]) == 1
    assert "flow data folder not found" in capsys.readouterr().err
    code = main(["eval", "flow", "--data", str(root), "--out", str(out), "--arch", "smallcnn",
                 "--set", "eval.flow.classical=[zero,lucas_kanade]"])
    assert code == 2 and "lucas_kanade" in capsys.readouterr().err


def test_cli_records_which_weights_files_were_scored(dataset, tmp_path):
    from test_retrieval_pipeline import assert_twins_recorded, export_twins

    root, _ = dataset
    paths = export_twins(tmp_path)
    out = tmp_path / "cli"
    assert main(["-q", "eval", "flow", "--weights", *map(str, paths), "--data", str(root), "--out", str(out),
                 "--no-transfer", "--set", "eval.flow.classical=[zero]", "--set", "eval.flow.figures=false"]) == 0
    saved = json.loads((out / "metrics.json").read_text())
    assert "match[run/backbone']" in saved["methods"]  # the rows the weights are recorded for, by model name
    assert_twins_recorded(saved["weights"], paths)


def test_a_module_from_code_records_no_weights_file(dataset, tmp_path):
    root, _ = dataset
    models = {"tiny": build_backbone("smallcnn", width=4).eval(), "raw pixels": PixelFeatures().eval()}
    cfg = dataclasses.replace(CFG, classical=["zero"], transfer=False, figures=False)
    result = evaluate_flow(models, root, tmp_path / "eval", cfg, progress=False)
    assert result["weights"] == {"tiny": None, "raw pixels": None}


def test_data_with_no_readable_pair_fails_before_any_transfer_training(dataset, tmp_path, monkeypatch):
    """The transfer decoders trained for their whole budget (and wrote OUT/transfer) before the first pair was
    read; a folder of broken pairs then failed minutes later and left OUT behind."""
    import shutil

    from vidssl.errors import VidsslError
    from vidssl.eval.flow import run as flow_run

    root, _ = dataset
    broken = tmp_path / "broken"
    shutil.copytree(root / "other-data" / "Broken", broken / "other-data" / "Broken")
    shutil.copytree(root / "other-gt-flow" / "Broken", broken / "other-gt-flow" / "Broken")

    def no_training(*args, **kwargs):
        raise AssertionError("transfer training started")

    monkeypatch.setattr(flow_run, "train_transfer", no_training)
    models = {"tiny": build_backbone("smallcnn", width=4).eval()}
    with pytest.raises(VidsslError, match="no flow pair under .* could be read: .*truncated"):
        evaluate_flow(models, broken, tmp_path / "eval", CFG, budget_minutes=1.0, progress=False)
    assert not (tmp_path / "eval").exists()


def test_frames_under_the_backbones_smallest_side_are_a_skipped_pair_not_a_traceback(dataset, tmp_path):
    """A 24x24 pair reached the first feature method and stopped the evaluation with a ValueError traceback."""
    import shutil

    root, truth = dataset
    data = tmp_path / "data"
    shutil.copytree(root / "other-data" / "Synth", data / "other-data" / "Synth")
    shutil.copytree(root / "other-gt-flow" / "Synth", data / "other-gt-flow" / "Synth")
    tiny = synthetic_pairs(1, 24, 24, torch.Generator().manual_seed(0), max_motion=2.0, num_shapes=(1, 1))
    for name, image in (("frame10.png", tiny.image1[0]), ("frame11.png", tiny.image2[0])):
        _png(data / "other-data" / "Tiny" / name, (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    write_flo(data / "other-gt-flow" / "Tiny" / "flow10.flo", tiny.flow[0].permute(1, 2, 0).numpy())
    models = {"tiny": build_backbone("smallcnn", width=4).eval()}
    saved = evaluate_flow(models, data, tmp_path / "eval", dataclasses.replace(CFG, transfer=False), progress=False)
    assert saved["pairs"] == ["other-data/Synth/frame10"]
    assert saved["skipped"] == {"other-data/Tiny/frame10": f"{data / 'other-data' / 'Tiny' / 'frame10.png'}: frames "
                                                           "are 24x24 px, under the 32 px a side the backbones take"}
    # a rerun into a folder of an evaluation of more pairs: their figures go with its scores
    figures = tmp_path / "figures"
    evaluate_flow(models, root, figures, dataclasses.replace(CFG, transfer=False), progress=False)
    assert {p.name for p in (figures / "pairs").iterdir()} == {"other-data_Synth_frame10.png",
                                                                "training_image_2_000000_10.png"}
    evaluate_flow(models, data, figures, dataclasses.replace(CFG, transfer=False), progress=False)
    assert {p.name for p in (figures / "pairs").iterdir()} == {"other-data_Synth_frame10.png"}


def test_metrics_md_gives_each_pair_a_row():
    """The per-pair EPE table had a column per pair: 2,082 columns on a Sintel release."""
    from vidssl.eval.flow.metrics import METRIC_KEYS
    from vidssl.eval.flow.run import markdown_table

    pairs = ["a/frame_0001", "a/frame_0002", "b/frame_0001"]
    epe = {"zero": [1.0, 2.0, 3.0], "dis_fast": [0.25, 0.5, 0.75]}
    methods = {name: {"mean": dict.fromkeys(METRIC_KEYS, 1.0), "seconds_per_pair": 0.1, "datasets": {},
                      "pairs": {p: {"epe": e} for p, e in zip(pairs, values)}} for name, values in epe.items()}
    summary = {"pairs": pairs, "datasets": {"Sintel": pairs}, "methods": methods, "reach": None, "transfer": {},
               "skipped": {}, "figures": pairs}
    table = markdown_table(summary).split("EPE per pair:\n\n")[1].split("\n\n")[0].splitlines()
    assert table == ["| pair | zero | dis_fast |", "|---|---|---|", "| a/frame_0001 | 1.00 | 0.25 |",
                     "| a/frame_0002 | 2.00 | 0.50 |", "| b/frame_0001 | 3.00 | 0.75 |"]
    assert "Figures" not in markdown_table(summary)  # every pair has its figure: nothing to say


def test_figures_are_spread_over_the_pairs_first_and_last_included():
    """Capped figures taken from the first pairs would show one Sintel sequence of one pass."""
    from vidssl.eval.flow.run import spread

    assert spread(5, 3) == {0, 2, 4} and spread(7, 4) == {0, 2, 4, 6} and spread(3, 50) == {0, 1, 2}
    assert spread(1, 50) == {0} and spread(0, 50) == set()
    shown = sorted(spread(2082, 50))
    gaps = np.diff(shown)
    assert len(shown) == 50 and shown[0] == 0 and shown[-1] == 2081 and gaps.min() >= 42 and gaps.max() <= 43


def test_pairs_key_chooses_the_pairs_and_figures_are_capped(dataset, tmp_path, monkeypatch, caplog):
    """A Sintel release (2,082 pairs) was evaluated whole, without a word, with a PNG per pair."""
    import logging

    from vidssl.errors import ConfigError
    from vidssl.eval.flow import run as flow_run

    root, _ = dataset
    cfg = dataclasses.replace(CFG, classical=["zero"], transfer=False)
    monkeypatch.setattr(flow_run, "MAX_FIGURES", 1)
    monkeypatch.setattr(flow_run, "MANY_PAIRS", 2)
    out = tmp_path / "all"
    with caplog.at_level(logging.INFO, logger="vidssl.eval.flow.run"):
        saved = evaluate_flow({}, root, out, cfg, progress=False)
    assert "flow: 3 pair(s) under" in caplog.text  # Broken is found, then skipped
    assert "eval.flow.pairs=['other-data/Broken/*']" in caplog.text  # more than MANY_PAIRS: the key, an example
    assert saved["pairs"] == ["other-data/Synth/frame10", "training/image_2/000000_10"]
    assert saved["figures"] == ["other-data/Synth/frame10"]
    assert [p.name for p in (out / "pairs").iterdir()] == ["other-data_Synth_frame10.png"]
    assert "Figures (pairs/): 1 of the 2 pairs, at most 1 spread evenly" in (out / "metrics.md").read_text()

    chosen = evaluate_flow({}, root, tmp_path / "kitti", dataclasses.replace(cfg, pairs=["training/*"]),
                           progress=False)
    assert chosen["pairs"] == ["training/image_2/000000_10"] and chosen["skipped"] == {}  # Broken not even read
    assert chosen["figures"] == ["training/image_2/000000_10"] and chosen["config"]["pairs"] == ["training/*"]
    with pytest.raises(ConfigError, match=r"'KITTI/\*' matches none of the 3 pairs .* e\.g\. other-data/Broken"):
        evaluate_flow({}, root, tmp_path / "none", dataclasses.replace(cfg, pairs=["KITTI/*"]), progress=False)
    assert not (tmp_path / "none").exists()


def test_the_transfer_budget_is_shared_and_the_seed_passed_on(dataset, tmp_path, monkeypatch):
    """Each model with weights trained for the whole budget (two models took twice the minutes asked), and the run's
    seed never reached the decoders' training."""
    from vidssl.eval.flow import run as flow_run

    class NoMotion(torch.nn.Module):
        def forward(self, image1, image2):
            return torch.zeros(image1.shape[0], 2, *image1.shape[-2:])

    asked = []

    def recorded(model, cfg, budget_s, seed, *args, **kwargs):
        asked.append((budget_s, seed))
        return NoMotion(), {"steps": 0, "train_seconds": 0.0, "synthetic_epe_start": 1.0, "synthetic_epe_end": 1.0}

    monkeypatch.setattr(flow_run, "train_transfer", recorded)
    root, _ = dataset
    torch.manual_seed(0)
    models = {"a": build_backbone("smallcnn", width=4), "b": build_backbone("smallcnn", width=4),
              "raw pixels": PixelFeatures()}  # no weights: no transfer, no share of the budget
    cfg = dataclasses.replace(CFG, classical=["zero"], figures=False, pairs=["training/*"])
    saved = evaluate_flow(models, root, tmp_path / "eval", cfg, budget_minutes=0.5, seed=7, progress=False)
    assert [name for name in saved["methods"] if name.startswith("transfer")] == ["transfer[a]", "transfer[b]"]
    assert asked == [(15.0, 7), (15.0, 7)]  # 0.5 minutes = 30 s, half each


def test_match_rows_use_the_configured_window_and_temperature(dataset, tmp_path):
    """The match rows ran at fixed settings whatever eval.flow.max_displacement / temperature said: each row must be
    FeatureMatchFlow at the configured ones, called here directly on the pair (neither is the default, 4 / 0.02)."""
    from vidssl.eval.flow.data import find_pairs, load_pair
    from vidssl.eval.flow.methods import FeatureMatchFlow
    from vidssl.eval.flow.metrics import flow_metrics

    root, _ = dataset
    name = "training/image_2/000000_10"
    pair = load_pair(next(p for p in find_pairs(root) if p.name == name))
    epe = []
    for max_displacement, temperature in ((1, 0.05), (2, 0.3)):
        cfg = dataclasses.replace(CFG, classical=["zero"], transfer=False, figures=False, pairs=[name],
                                  max_displacement=max_displacement, temperature=temperature)
        saved = evaluate_flow({"raw": PixelFeatures()}, root, tmp_path / "eval", cfg, progress=False)
        flow = FeatureMatchFlow(PixelFeatures(), max_displacement, temperature)(pair.image1, pair.image2)
        expected = flow_metrics(flow, pair.flow, pair.valid, pair.occluded)
        row = saved["methods"]["match[raw]"]["pairs"][name]
        assert row["epe"] == pytest.approx(expected["epe"], rel=1e-6)
        assert row["epe_noc"] == pytest.approx(expected["epe_noc"], rel=1e-6)
        epe.append(row["epe"])
    assert epe[0] != pytest.approx(epe[1], rel=1e-3)  # the settings matter on this pair
