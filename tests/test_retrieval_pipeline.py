"""The retrieval benchmark end to end: evaluate_retrieval on each layout, its files, the CLI, and the real data."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from test_retrieval_data import _cub_release, make_davis, make_pairs, solid, write_rgb
from vidssl.errors import VidsslError
from vidssl.eval.baselines import PixelFeatures
from vidssl.eval.config import RetrievalConfig
from vidssl.eval.metrics import retrieval_metrics
from vidssl.eval.retrieval import _BORDER, _CAPTION, _TILE, evaluate_retrieval, extract_features
from vidssl.eval.retrieval_data import RetrievalDataError, load_retrieval_set

CFG = RetrievalConfig(image_size=32, num_workers=0, batch_size=4)
GREEN, RED, WHITE = (0, 200, 0), (230, 0, 0), (255, 255, 255)


def models():
    from vidssl.models import build_backbone

    torch.manual_seed(0)
    return {"smallcnn (random init)": build_backbone("smallcnn").eval(), "raw pixels": PixelFeatures().eval()}


def solid_rgb(png_path):
    """The one colour of a solid image as a [1, 1, 3] uint8 RGB array."""
    return cv2.cvtColor(cv2.imread(str(png_path)), cv2.COLOR_BGR2RGB)[:1, :1]


def border_colours(png_path, rows: int, cols: int) -> list[list[tuple]]:
    """Colour of the top-left border pixel of every tile: [row][0] the query, [row][1..] its neighbours."""
    grid = cv2.cvtColor(cv2.imread(str(png_path)), cv2.COLOR_BGR2RGB)
    side = _TILE + 2 * _BORDER
    assert grid.shape == (rows * (side + _CAPTION), side + 8 + (cols - 1) * side, 3)
    out = []
    for r in range(rows):
        y = r * (side + _CAPTION) + 1
        out.append([tuple(int(v) for v in grid[y, 1])] +
                   [tuple(int(v) for v in grid[y, side + 8 + c * side + 1]) for c in range(cols - 1)])
    return out


@pytest.fixture
def colour_classes(tmp_path):
    """4 classes x 2 images of one colour each (brightness varies a little), plus one undecodable file."""
    root = tmp_path / "colours"
    for name, colour in {"red": (220, 20, 20), "green": (20, 200, 20), "blue": (20, 20, 220),
                         "yellow": (230, 230, 10)}.items():
        for i, gain in enumerate((1.0, 0.9)):
            write_rgb(root / name / f"{i}.png", solid(tuple(int(c * gain) for c in colour)))
    (root / "red" / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    return root


def test_images_end_to_end(colour_classes, tmp_path):
    out = tmp_path / "eval"
    result = evaluate_retrieval(models(), colour_classes, out, CFG)
    assert (result["kind"], result["items"], result["queries"], result["labels"]) == ("images", 8, 8, 4)
    assert result["skipped"] == {"unreadable image": ["red/broken.jpg"]}
    pixels = result["models"]["raw pixels"]
    # the colours are the classes: each image's nearest neighbour is its twin, and the 4 clusters are exact
    assert pixels == {"precision_at_1": 1.0, "recall_at_k": {"1": 1.0, "2": 1.0, "4": 1.0, "8": 1.0},
                      "r_precision": 1.0, "map_at_r": 1.0, "nmi": 1.0, "num_queries": 8, "lone_queries": 0,
                      "feature_dim": PixelFeatures.out_dim,
                      "map_at_r_per_label": {"blue": 1.0, "green": 1.0, "red": 1.0, "yellow": 1.0}}
    cnn = result["models"]["smallcnn (random init)"]
    # against a loop over the 8 readable images, embedded one by one: each has one relevant item (its twin), so
    # MAP@R is P@1, the share whose nearest neighbour by cosine is of its own colour
    colours = sorted((png.parent.name, png) for png in colour_classes.rglob("*.png"))
    net = models()["smallcnn (random init)"]
    with torch.no_grad():
        feats = [net.embed(net.normalize(torch.from_numpy(solid_rgb(png)).float().div(255).permute(2, 0, 1)
                                         .unsqueeze(0).expand(1, 3, 32, 32)))[0] for _, png in colours]
    hits = 0
    for i, (label, _) in enumerate(colours):
        sims = [float(torch.cosine_similarity(feats[i], feats[j], 0)) if j != i else -2.0 for j in range(8)]
        hits += colours[max(range(8), key=sims.__getitem__)][0] == label
    assert cnn["precision_at_1"] == cnn["map_at_r"] == pytest.approx(hits / 8)
    assert set(cnn) == set(pixels) and cnn["feature_dim"] == net.out_dim
    assert json.loads((out / "metrics.json").read_text())["models"] == result["models"]
    table = (out / "metrics.md").read_text()
    assert "| raw pixels | **1.000** |" in table and "| smallcnn (random init) |" in table
    assert "1 item(s) skipped: unreadable image: 1" in table
    # one relevant image per query: rank 1 bordered green, ranks 2-5 red
    for name in ("raw_pixels", "smallcnn_random_init"):
        assert (out / f"grid_{name}.png").is_file()
    borders = border_colours(out / "grid_raw_pixels.png", rows=8, cols=6)
    assert borders == [[WHITE, GREEN, RED, RED, RED, RED]] * 8


def test_a_model_with_non_finite_embeddings_is_named(colour_classes, tmp_path):
    from vidssl.errors import VidsslError

    broken = build_nan_model()
    with pytest.raises(VidsslError, match=r"diverged: 8 of 8 embeddings .* hold NaN or infinity"):
        evaluate_retrieval({"diverged": broken}, colour_classes, tmp_path / "eval", CFG)


@pytest.mark.parametrize("image_size, warned", [(112, True), (227, False)])
def test_alexnet_evaluated_smaller_than_it_was_trained_is_warned(colour_classes, tmp_path, caplog, image_size,
                                                                   warned):
    """`vidssl eval retrieval --weights alexnet.pt` without the paper config read its fc6 at the default 112 px:
    a 2x2 pool5 grid (conv1 stride 4 and three 3x3 pools of stride 2: 112 -> 27 -> 13 -> 6 -> 2) upsampled to the
    6x6 fc6 was trained on (227 -> 56 -> 27 -> 13 -> 6), in silence."""
    import dataclasses
    import logging

    from vidssl.models import build_backbone

    alexnet = build_backbone("alexnet_wang2015", input_size=227).eval()
    with caplog.at_level(logging.WARNING, logger="vidssl"):
        evaluate_retrieval({"alexnet": alexnet, **models()}, colour_classes, tmp_path / "eval",
                           dataclasses.replace(CFG, image_size=image_size))
    message = ("alexnet: at 112 px its pool5 grid is 2x2, pooled up to the 6x6 that fc6 takes at its 227-px input "
               "size; evaluate at its size: --set eval.retrieval.image_size=227")
    assert (message in caplog.text) == warned
    assert "smallcnn" not in caplog.text and "raw pixels:" not in caplog.text


def build_nan_model():
    from vidssl.models import build_backbone

    model = build_backbone("smallcnn").eval()
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    return model


def test_tracks_end_to_end(tmp_path):
    pairs = tmp_path / "pairs"
    make_pairs(pairs, colours=True)
    result = evaluate_retrieval({"raw pixels": PixelFeatures()}, pairs, tmp_path / "eval", CFG)
    assert (result["kind"], result["queries"], result["references"], result["labels"]) == ("tracks", 7, 7, 3)
    assert "across time" in result["protocol"] and ">= 30 frames" in result["protocol"]
    assert result["min_gap"] == 30 and result["config"]["min_gap"] == 10  # the gap applied, beside the config's
    m = result["models"]["raw pixels"]
    # relevant items: the own track's patches >= 30 frames away. v0#0 frame 0 -> {30, 60}, 30 -> {0, 60},
    # 60 -> {0, 30}; v0#1 20 <-> 50; v1#0 30 <-> 60: no lone query. A track is one colour, so pixels are exact.
    assert (m["num_queries"], m["lone_queries"]) == (7, 0)
    assert m["map_at_r"] == pytest.approx(1.0) and m["precision_at_1"] == pytest.approx(1.0)
    assert m["map_at_r_per_label"] == {"v0#0": 1.0, "v0#1": 1.0, "v1#0": 1.0}  # named <video id>#<track>
    assert "Lowest MAP@R per label" not in (tmp_path / "eval" / "metrics.md").read_text()  # none stands out
    borders = border_colours(tmp_path / "eval" / "grid_raw_pixels.png", rows=7, cols=6)
    relevant = [2, 2, 2, 1, 1, 1, 1]
    for row, r in zip(borders, relevant):
        assert row[0] == WHITE and row[1:1 + r] == [GREEN] * r and GREEN not in row[1 + r:]


def test_davis_end_to_end_min_gap(tmp_path):
    make_davis(tmp_path / "davis")
    cfg = RetrievalConfig(image_size=32, num_workers=0, min_gap=3, min_object_pixels=10)
    result = evaluate_retrieval({"raw pixels": PixelFeatures()}, tmp_path / "davis", tmp_path / "eval", cfg)
    m = result["models"]["raw pixels"]
    # 5 frames, gap 3: frame 2 has no same-object crop >= 3 frames away -> 1 lone query per object and sequence
    assert (m["num_queries"], m["lone_queries"]) == (20, 4)
    assert m["precision_at_1"] == 1.0 and m["map_at_r"] == 1.0  # each object has its own colour
    # said where the table counts them, not only as a number in metrics.json
    assert "4 of the 20 queries have no other item of their label (within the protocol) and are not scored" in \
        (tmp_path / "eval" / "metrics.md").read_text()
    with pytest.raises(RetrievalDataError, match="no query has a relevant reference"):
        evaluate_retrieval({"raw pixels": PixelFeatures()}, tmp_path / "davis", tmp_path / "eval2",
                           RetrievalConfig(image_size=32, num_workers=0, min_gap=5, min_object_pixels=10))


@pytest.mark.parametrize("classes, line, labels", [
    ([101, 200], "CUB-200-2011 release, classes 101-200 (eval.retrieval.cub_classes; 3 images of other classes left "
                 "out).", 2),
    ([1, 200], "CUB-200-2011 release, classes 1-200 (eval.retrieval.cub_classes; 0 images of other classes left "
               "out).", 4),
])
def test_the_report_says_which_cub_classes_were_read(tmp_path, classes, line, labels):
    # classes 1-100 of the release left out, said only by metrics.json's config.cub_classes
    _cub_release(tmp_path / "CUB_200_2011", {1: 2, 100: 1, 101: 2, 150: 2})
    cfg = RetrievalConfig(image_size=32, num_workers=0, cub_classes=classes)
    result = evaluate_retrieval({"raw pixels": PixelFeatures()}, tmp_path / "CUB_200_2011", tmp_path / "eval", cfg,
                                progress=False)
    assert result["labels"] == labels and result["selection"] == line[:-1]
    table = (tmp_path / "eval" / "metrics.md").read_text()
    assert table.splitlines()[0].endswith(f"every image queries all the others. {line}")
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["selection"] == line[:-1]


def test_a_plain_image_folder_report_names_no_selection(colour_classes, tmp_path):
    result = evaluate_retrieval({"raw pixels": PixelFeatures()}, colour_classes, tmp_path / "eval", CFG,
                                progress=False)
    assert result["selection"] is None
    assert (tmp_path / "eval" / "metrics.md").read_text().splitlines()[0].endswith("queries all the others.")


def test_real_cub_subset(data_dir, tmp_path):
    from pytorch_metric_learning.distances import CosineSimilarity
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    from pytorch_metric_learning.utils.inference import CustomKNN

    root = data_dir / "retrieval" / "cub_subset"
    cfg = RetrievalConfig(image_size=64, num_workers=0)
    result = evaluate_retrieval({"raw pixels": PixelFeatures()}, root, tmp_path / "eval", cfg, progress=False)
    assert (result["items"], result["labels"], result["skipped"]) == (600, 30, {})
    m = result["models"]["raw pixels"]
    chance = 19 / 599
    assert m["precision_at_1"] > 3 * chance  # colour alone separates some species; shuffled labels would not
    assert m["recall_at_k"]["8"] > m["recall_at_k"]["1"]
    # the same features scored by pytorch-metric-learning
    data = load_retrieval_set(root, cfg)
    feats, ok = extract_features({"px": PixelFeatures()}, data.items, batch_size=100)
    assert ok.all()
    calc = AccuracyCalculator(include=("precision_at_1", "r_precision", "mean_average_precision_at_r"),
                              k="max_bin_count", knn_func=CustomKNN(CosineSimilarity()), device=torch.device("cpu"))
    expected = calc.get_accuracy(feats["px"], torch.from_numpy(data.labels))
    assert m["precision_at_1"] == pytest.approx(expected["precision_at_1"], abs=1e-9)
    assert m["r_precision"] == pytest.approx(expected["r_precision"], abs=1e-9)
    assert m["map_at_r"] == pytest.approx(expected["mean_average_precision_at_r"], abs=1e-9)


def test_real_davis_single_sequence(data_dir, tmp_path, caplog):
    import logging

    cfg = RetrievalConfig(image_size=32, num_workers=0)
    with caplog.at_level(logging.WARNING):
        result = evaluate_retrieval({"raw pixels": PixelFeatures()}, data_dir / "davis", tmp_path / "eval", cfg)
    assert "holds one label: every neighbour is relevant, so every metric is 1 by construction" in caplog.text
    assert (result["kind"], result["queries"], result["labels"]) == ("davis", 50, 1)
    # one object: every allowed crop is relevant; min_gap 10 leaves every frame some crop >= 10 frames away
    assert result["models"]["raw pixels"]["lone_queries"] == 0
    assert "every metric is 1 by construction" in (tmp_path / "eval" / "metrics.md").read_text()


def test_cli_with_exported_weights(colour_classes, tmp_path, capsys):
    from vidssl.cli import main
    from vidssl.export import save_backbone
    from vidssl.models import build_backbone

    torch.manual_seed(1)
    weights = tmp_path / "run" / "backbone.pt"
    save_backbone(build_backbone("smallcnn"), weights, safetensors=False)
    out = tmp_path / "eval"
    rc = main(["-q", "eval", "retrieval", "--weights", str(weights), "--data", str(colour_classes), "--out",
               str(out), "--set", "eval.retrieval.image_size=32", "--set", "eval.retrieval.num_workers=0"])
    assert rc == 0
    names = list(json.loads((out / "metrics.json").read_text())["models"])
    assert names == ["run/backbone", "smallcnn (random init)", "raw pixels"]
    assert (out / "config.yaml").is_file() and (out / "grid_run_backbone.png").is_file()
    assert "| raw pixels |" in capsys.readouterr().out

    rc = main(["eval", "retrieval", "--arch", "smallcnn", "--data", str(tmp_path / "missing"), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and len(err.splitlines()) == 1 and "missing: data folder not found" in err
    (tmp_path / "notes.txt").write_text("a file")  # it exists: "not found" misled
    rc = main(["eval", "retrieval", "--arch", "smallcnn", "--data", str(tmp_path / "notes.txt"), "--out", str(out)])
    assert rc != 0 and "notes.txt: a file, not a data folder" in capsys.readouterr().err


def export_twins(root):
    """Two different smallcnn exports whose rows take the same label, ``run/backbone``: a/run/backbone.pt and
    b/run/backbone.pt, each with a card naming its own git_sha and training steps."""
    from vidssl.export import save_backbone
    from vidssl.models import build_backbone

    paths = []
    for seed, folder in enumerate(("a", "b")):
        torch.manual_seed(seed)
        card = {"git_sha": f"sha-{folder}", "training": {"steps": 10 * (seed + 1), "total_steps": 20}}
        paths.append(save_backbone(build_backbone("smallcnn"), root / folder / "run" / "backbone.pt", card,
                                   safetensors=False))
    return paths


def assert_twins_recorded(weights: dict, paths) -> None:
    """``metrics.json``'s ``weights`` of an evaluation of :func:`export_twins`: each file's own path, digest and
    card fields on its own row, and nothing for the baselines."""
    import hashlib

    assert list(weights) == ["run/backbone", "run/backbone'", "smallcnn (random init)", "raw pixels"]
    for name, path, folder, steps in zip(weights, paths, "ab", (10, 20)):
        assert weights[name] == {"path": str(path.resolve()), "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                                 "card": str((path.parent / "model_card.json").resolve()), "git_sha": f"sha-{folder}",
                                 "steps": steps, "total_steps": 20}
    assert weights["run/backbone"]["sha256"] != weights["run/backbone'"]["sha256"]
    assert weights["smallcnn (random init)"] is None and weights["raw pixels"] is None


def test_cli_records_which_weights_files_were_scored(colour_classes, tmp_path, monkeypatch):
    from vidssl.cli import main
    from vidssl.eval import baselines

    paths = export_twins(tmp_path)
    hashed = []
    sha256 = baselines.file_sha256
    monkeypatch.setattr(baselines, "file_sha256", lambda path, *a: hashed.append(path) or sha256(path, *a))
    out = tmp_path / "eval"
    rc = main(["-q", "eval", "retrieval", "--weights", *map(str, paths), "--data", str(colour_classes), "--out",
               str(out), "--set", "eval.retrieval.image_size=32", "--set", "eval.retrieval.num_workers=0"])
    assert rc == 0
    assert_twins_recorded(json.loads((out / "metrics.json").read_text())["weights"], paths)
    assert len(hashed) == 2  # each file read for its digest once


def test_a_safetensors_given_twice_is_hashed_once_and_its_embedded_card_recorded(colour_classes, tmp_path,
                                                                                  monkeypatch):
    from vidssl.cli import main
    from vidssl.eval import baselines
    from vidssl.export import save_backbone
    from vidssl.models import build_backbone

    save_backbone(build_backbone("smallcnn"), tmp_path / "x" / "w.pt", {"git_sha": "abc"})
    (tmp_path / "x" / "w.model_card.json").unlink()  # the card inside the .safetensors is the one left
    weights = tmp_path / "x" / "w.safetensors"
    hashed = []
    sha256 = baselines.file_sha256
    monkeypatch.setattr(baselines, "file_sha256", lambda path, *a: hashed.append(path) or sha256(path, *a))
    out = tmp_path / "eval"
    assert main(["-q", "eval", "retrieval", "--weights", str(weights), str(weights), "--data", str(colour_classes),
                 "--out", str(out), "--set", "eval.retrieval.image_size=32"]) == 0
    recorded = json.loads((out / "metrics.json").read_text())["weights"]
    assert recorded["x/w"] == recorded["x/w'"] == {
        "path": str(weights.resolve()), "sha256": sha256(weights), "card": str(weights.resolve()), "git_sha": "abc",
        "steps": None, "total_steps": None}
    assert hashed == [weights]  # the file given twice is read for its digest once


def test_a_module_from_code_records_no_weights_file(colour_classes, tmp_path):
    result = evaluate_retrieval(models(), colour_classes, tmp_path / "eval", CFG)
    assert result["weights"] == {"smallcnn (random init)": None, "raw pixels": None}
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["weights"] == result["weights"]


def test_cli_mines_a_video_folder(tmp_path, capsys):
    from vidssl.cli import main
    from vidssl.demo import make_demo_videos

    make_demo_videos(tmp_path / "videos", num=2, frames=60)
    out = tmp_path / "eval"
    rc = main(["-q", "eval", "retrieval", "--arch", "smallcnn", "--data", str(tmp_path / "videos"), "--out", str(out),
               "--set", "eval.retrieval.image_size=32", "--set", "eval.retrieval.num_workers=0"])
    assert rc == 0, capsys.readouterr().err
    mined = json.loads((out / "pairs" / "dataset.json").read_text())
    result = json.loads((out / "metrics.json").read_text())
    assert result["kind"] == "tracks" and mined["pairs"] > 0
    records = map(json.loads, (out / "pairs" / "manifest.jsonl").read_text().splitlines())
    patches = {(r["video_id"], r["track_id"], r[end]) for r in records for end in ("start_frame", "end_frame")}
    assert result["queries"] == result["references"] == len(patches)  # each tracked frame once


def test_grid_captions_keep_their_end():
    """A track's caption cut to its first 16 characters was its video id alone: two tracks of one video, and their
    frames, looked the same in the grid."""
    from vidssl.eval.retrieval import _fit_caption

    assert _fit_caption("imageio_cockatoo-5df959ceff#1 t224") == "~f959ceff#1 t224"  # 16 characters
    assert _fit_caption("blackswan 3") == "blackswan 3"


def test_a_rerun_into_a_used_folder_keeps_the_old_scores_until_it_writes(colour_classes, tmp_path):
    """A rerun that fails before its first file (no query with a relevant reference) keeps the earlier metrics; one
    that gets to its first grid replaces them (a failure after that left the old scores beside new grids)."""
    out = tmp_path / "eval"
    evaluate_retrieval(models(), colour_classes, out, CFG)
    earlier = (out / "metrics.json").read_text()
    lone = tmp_path / "lone"
    for name, colour in {"red": (220, 20, 20), "blue": (20, 20, 220)}.items():  # one image per class
        write_rgb(lone / name / "0.png", solid(colour))
    with pytest.raises(RetrievalDataError, match="no query has a relevant reference"):
        evaluate_retrieval(models(), lone, out, CFG)
    assert (out / "metrics.json").read_text() == earlier and (out / "metrics.md").is_file()
    (out / "grid_raw_pixels.png").unlink()
    with pytest.raises(VidsslError, match="diverged"):  # pixels' grid written, then the broken model stops it
        evaluate_retrieval({"raw pixels": PixelFeatures().eval(), "diverged": build_nan_model()}, colour_classes,
                           out, CFG)
    assert (out / "grid_raw_pixels.png").is_file() and not (out / "metrics.json").exists()
    assert not (out / "metrics.md").exists()
    # a finished rerun of fewer models: the earlier models' grids go with their scores
    evaluate_retrieval(models(), colour_classes, out, CFG)
    assert {p.name for p in out.glob("grid_*.png")} == {"grid_raw_pixels.png", "grid_smallcnn_random_init.png"}
    evaluate_retrieval({"raw pixels": PixelFeatures().eval()}, colour_classes, out, CFG)
    assert {p.name for p in out.glob("grid_*.png")} == {"grid_raw_pixels.png"}


def test_davis_data_whose_every_sequence_is_unreadable_names_the_cause(tmp_path):
    """Every sequence skipped (its masks of another size): the error said no object was big enough in any mask, and
    the cause stood only in a warning above it."""
    import numpy as np
    from PIL import Image

    make_davis(tmp_path / "davis")
    for mask in (tmp_path / "davis" / "Annotations" / "480p").rglob("*.png"):
        im = Image.open(mask)
        small = im.resize((im.width // 2, im.height // 2), Image.NEAREST)
        small.save(mask)
        assert np.asarray(small).shape[1] == im.width // 2
    cfg = RetrievalConfig(image_size=32, num_workers=0, min_object_pixels=10)
    with pytest.raises(RetrievalDataError, match=r"no sequence could be read; first problem: \w+: .*mask"):
        evaluate_retrieval({"raw pixels": PixelFeatures()}, tmp_path / "davis", tmp_path / "eval", cfg)


def test_a_script_without_the_main_guard_is_told_to_add_it(tmp_path):
    """The features' loader workers start through forkserver, which imports the user's script again: unguarded,
    each worker ran the evaluation again at its import, died of multiprocessing's bootstrapping error, and the user
    saw only "DataLoader worker exited unexpectedly" (training's loader had the check, the evaluation's not)."""
    import subprocess
    import sys

    for i in range(4):
        write_rgb(tmp_path / f"{i}.png", solid((40 * i, 0, 0)))
    (tmp_path / "unguarded.py").write_text(
        "from pathlib import Path\n"
        "from vidssl.eval.baselines import PixelFeatures\n"
        "from vidssl.eval.retrieval import extract_features\n"
        "from vidssl.eval.retrieval_data import ImageFiles\n"
        f"items = ImageFiles(sorted(Path({str(tmp_path)!r}).glob('*.png')), 32)\n"
        "extract_features({'px': PixelFeatures()}, items, batch_size=2, num_workers=1, progress=False)\n")
    done = subprocess.run([sys.executable, str(tmp_path / "unguarded.py")], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode != 0
    assert "extract_features was called at the top level of a script that a worker process is importing" in done.stderr


class AffineProbe(torch.nn.Module):
    """A model whose features are the per-channel mean of exactly the input it is given, with a mean/std far from
    0/1, and a forward() that differs from embed(): extract_features must call embed(normalize_rgb(x, mean, std))."""

    mean = (0.5, 0.25, 0.0)
    std = (0.25, 0.5, 2.0)

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def embed(self, x):
        return x.mean(dim=(2, 3))

    def forward(self, x):  # not what retrieval is scored on
        return -self.embed(x)


def test_extract_features_feeds_embed_the_model_normalised_input():
    from vidssl.eval.retrieval import extract_features
    from vidssl.eval.retrieval_data import ImageArray

    images = np.zeros((3, 8, 8, 3), np.uint8)
    images[0], images[1], images[2] = (255, 0, 51), (0, 255, 102), (128, 64, 255)
    feats, ok = extract_features({"probe": AffineProbe()}, ImageArray(images), batch_size=2, progress=False)
    rgb = torch.tensor(images[:, 0, 0, :], dtype=torch.float32) / 255
    expected = (rgb - torch.tensor(AffineProbe.mean)) / torch.tensor(AffineProbe.std)  # hand-worked (x - m) / s
    assert ok.all()
    torch.testing.assert_close(feats["probe"], expected, rtol=0, atol=1e-6)


def test_ranking_depends_on_the_model_normalisation_end_to_end():
    """Greys ranked by cosine: centred by the model's mean 0.5, 0.6 and 0.9 point one way and 0.2 and 0.3 the other
    (cosine 1 within a label, -1 across), so every query's neighbour is of its label; uncentred, every grey is
    parallel to every other (cosine 1 each: a tie), which no longer ranks by label."""
    from vidssl.eval.retrieval import extract_features
    from vidssl.eval.retrieval_data import ImageArray

    class Centred(AffineProbe):
        mean = (0.5, 0.5, 0.5)
        std = (1.0, 1.0, 1.0)

    vals = [0.6, 0.9, 0.2, 0.3]  # labels: 0, 0, 1, 1
    images = np.stack([np.full((8, 8, 3), round(v * 255), np.uint8) for v in vals])
    feats, _ = extract_features({"c": Centred()}, ImageArray(images), progress=False)
    s = retrieval_metrics(feats["c"], [0, 0, 1, 1], with_nmi=False)
    assert s.precision_at_1 == 1.0 and s.map_at_r == 1.0


def test_two_tracks_of_one_video_at_the_same_frame_are_two_items(tmp_path):
    # tracks 0 and 1 of v0 both span frames 0-30: four patches, two per track; deduplicating on (video, frame)
    # alone would drop track 1's patches and leave its queries unscored
    from vidssl.eval.config import RetrievalConfig
    from vidssl.eval.retrieval_data import load_retrieval_set

    patches = make_pairs(tmp_path, recs=[("v0", 0, "a.npy", 0, 0), ("v0", 1, "a.npy", 1, 0)])
    data = load_retrieval_set(tmp_path, RetrievalConfig(image_size=32))
    assert [(data.label_names[int(l)], int(t)) for l, t in zip(data.labels, data.times)] == [
        ("v0#0", 0), ("v0#0", 30), ("v0#1", 0), ("v0#1", 30)]
    assert np.array_equal(data.items[2][0].permute(1, 2, 0).numpy(), patches[1, 0])


def test_metrics_table_bolds_the_highest_value_of_each_column():
    from vidssl.eval.retrieval import metrics_table

    def scores(v):
        return {"precision_at_1": v, "recall_at_k": {"1": v, "2": v, "4": v, "8": v}, "r_precision": v,
                "map_at_r": v, "nmi": v, "lone_queries": 0}

    payload = {"data": "/d", "kind": "images", "queries": 4, "references": 4, "labels": 2, "protocol": "p",
               "selection": None, "skipped": {}, "models": {"good": scores(0.75), "bad": scores(0.25)}}
    rows = {line.split("|")[1].strip(): line for line in metrics_table(payload).splitlines() if line.startswith("| ")}
    assert rows["good"].count("**0.750**") == 8 and "**" not in rows["bad"]


def test_per_label_scores_of_labels_sharing_a_name_are_kept_apart():
    from vidssl.eval.retrieval import _by_name

    assert _by_name({0: 0.5, 1: 1.0, 2: 0.25}, {0: "gull", 1: "gull", 2: "tern"}) == {
        "gull (0)": 0.5, "gull (1)": 1.0, "tern": 0.25}


def test_metrics_table_names_each_model_s_lowest_labels():
    from vidssl.eval.retrieval import metrics_table

    def scores(per_label):
        v = sum(per_label.values()) / len(per_label)
        return {"precision_at_1": v, "recall_at_k": {"1": v, "2": v, "4": v, "8": v}, "r_precision": v,
                "map_at_r": v, "nmi": v, "lone_queries": 0, "map_at_r_per_label": per_label}

    payload = {"data": "/d", "kind": "tracks", "queries": 40, "references": 40, "labels": 4, "protocol": "p",
               "selection": None, "skipped": {},
               "models": {"a": scores({"pool#1": 0.01, "bird#4": 1.0, "gym#0": 0.5, "arm#1": 0.75}),
                          "b": scores({"pool#1": 1.0, "bird#4": 1.0, "gym#0": 1.0, "arm#1": 1.0})}}
    lines = [line for line in metrics_table(payload).splitlines() if line.startswith("Lowest MAP@R per label")]
    # the three lowest of a, lowest first; b, all level, is not listed
    assert lines == ["Lowest MAP@R per label (all of them: `map_at_r_per_label` in metrics.json): "
                     "a: pool#1 0.01, gym#0 0.50, arm#1 0.75."]
