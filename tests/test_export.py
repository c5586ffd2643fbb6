"""Export: torchvision key names (the exact missing-key set), safetensors, model card, one-line loading, errors."""
from __future__ import annotations

import json
import math
import os
import stat
from importlib import metadata

import pytest
import torch
import torchvision
from safetensors.torch import load_file

import vidssl
from train_utils import synthetic_pairs
from vidssl.cli import main
from vidssl.config import git_sha, load_config
from vidssl.export import ModelFileError, export_backbone, save_backbone
from vidssl.models import build_backbone
from vidssl.train import train

TINY = ["data.patch_size=32", "data.num_workers=0", "model.embed_dim=16", "train.batch_pairs=8", "train.steps=2",
        "train.budget_minutes=null", "train.image_every=0", "train.threads=1", "train.warmup_steps=0",
        # the synthetic pairs have no background patches
        "miner.background_negatives=false", "loss.cycle_background=false"]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return synthetic_pairs(tmp_path_factory.mktemp("pairs") / "pairs", num_videos=3, tracks_per_video=8, size=40)


@pytest.fixture(scope="module")
def resnet18_run(pairs, tmp_path_factory):
    run = tmp_path_factory.mktemp("run") / "run"
    train(pairs, run, load_config(None, TINY + ["model.arch=resnet18"]), progress=False)
    return run


def test_resnet18_export_loads_into_torchvision_missing_exactly_fc(resnet18_run, tmp_path):
    out = export_backbone(resnet18_run, tmp_path / "backbone.pt")
    state = torch.load(out, weights_only=True)
    assert not any(k.startswith(("module.", "backbone.", "head.")) for k in state)
    result = torchvision.models.resnet18().load_state_dict(state, strict=False)
    assert set(result.missing_keys) == {"fc.weight", "fc.bias"}
    assert result.unexpected_keys == []
    st = load_file(str(tmp_path / "backbone.safetensors"))
    assert st.keys() == state.keys() and all(torch.equal(st[k], state[k]) for k in state)


def test_model_card_and_one_line_load(resnet18_run, tmp_path):
    out = export_backbone(resnet18_run, tmp_path / "w" / "backbone.pt")
    card = json.loads((tmp_path / "w" / "model_card.json").read_text())
    assert card["arch"] == "resnet18" and card["input_size"] == 32 and card["dense_stride"] == 8
    assert card["cell_offset"] == 0  # where a dense cell is centred (the flow evaluation places vectors by it)
    assert card["mean"] == [0.485, 0.456, 0.406] and card["std"] == [0.229, 0.224, 0.225]
    assert card["training"]["steps"] == 2 and card["training"]["complete"] is True
    assert card["training"]["data"]["pairs"] == 24 and card["config"]["model"]["arch"] == "resnet18"
    assert card["files"] == ["backbone.pt", "backbone.safetensors"]
    umask = os.umask(0)
    os.umask(umask)
    for name in ("backbone.pt", "backbone.safetensors", "model_card.json"):  # readable by whom the umask allows
        assert stat.S_IMODE((tmp_path / "w" / name).stat().st_mode) == 0o666 & ~umask, name
    sessions = torch.load(resnet18_run / "checkpoint.pt", weights_only=True)["sessions"]
    assert card["training"]["sessions"] == sessions and card["git_sha"] == sessions[-1]["git_sha"]
    assert card["versions"]["torch"] == metadata.version("torch") and card["exported_with"]["git_sha"] == git_sha()
    # the versions are the code's; the machine's settings stay in the sessions, and the schedule's fits come along
    assert "settings" not in card["versions"] and "settings" in card["training"]["sessions"][-1]
    assert card["training"]["fit_history"] == torch.load(resnet18_run / "checkpoint.pt",
                                                         weights_only=True)["fit_history"]
    ckpt = torch.load(resnet18_run / "checkpoint.pt", weights_only=True)["model"]
    for path in (out, tmp_path / "w" / "backbone.safetensors"):
        model = vidssl.load_backbone(path)
        assert not model.training
        assert torch.equal(model.state_dict()["layer1.0.conv1.weight"], ckpt["backbone.layer1.0.conv1.weight"])
        x = torch.randn(1, 3, 40, 48)
        with torch.no_grad():
            assert model.dense_features(model.normalize(x.clamp(0, 1))).shape == (1, 256, 5, 6)


def _card_of(ckpt: dict, tmp_path) -> dict:
    """The model card ``export_backbone`` writes for a run whose checkpoint is ``ckpt``."""
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    torch.save(ckpt, run / "checkpoint.pt")
    export_backbone(run, tmp_path / "backbone.pt")
    return json.loads((tmp_path / "model_card.json").read_text())


def test_the_card_names_the_code_that_trained_the_weights_not_the_exporting_code(resnet18_run, tmp_path):
    ckpt = torch.load(resnet18_run / "checkpoint.pt", weights_only=True)
    ckpt["sessions"][-1]["git_sha"] = "trained-at"
    card = _card_of(ckpt, tmp_path)
    assert card["git_sha"] == card["versions"]["git_sha"] == "trained-at"
    assert card["exported_with"]["git_sha"] == git_sha()
    del ckpt["sessions"]  # a checkpoint of an earlier version: the training code is unknown, not the exporter's
    card = _card_of(ckpt, tmp_path)
    assert card["git_sha"] is None and card["training"]["sessions"] == []


def test_the_card_records_how_the_pairs_were_mined(tmp_path):
    """The card's config holds the train command's mine section (defaults): from the weights and card alone the
    pairs, mined here with mine.box_fraction=0.33, were mined again with 0.5. Its training section now records the
    pairs' own settings and manifest digest; a checkpoint of an earlier version exports without them."""
    pairs = synthetic_pairs(tmp_path / "pairs", num_videos=3, tracks_per_video=8, mined_with={"box_fraction": 0.33})
    meta = json.loads((pairs / "dataset.json").read_text())
    train(pairs, tmp_path / "train", load_config(None, TINY), progress=False)
    export_backbone(tmp_path / "train", tmp_path / "out" / "backbone.pt")
    card = json.loads((tmp_path / "out" / "model_card.json").read_text())
    assert card["training"]["mining"] == {"mine": meta["config"], "video": {"backend": "auto"},
                                          "manifest_sha256": meta["manifest_sha256"], "videos_root": "/videos"}
    assert card["training"]["mining"]["mine"]["box_fraction"] == 0.33 and card["config"]["mine"]["box_fraction"] == 0.5
    ckpt = torch.load(tmp_path / "train" / "checkpoint.pt", weights_only=True)
    del ckpt["mining"]
    assert "mining" not in _card_of(ckpt, tmp_path)["training"]


def test_a_resumed_run_s_card_names_the_code_of_its_last_session(resnet18_run, tmp_path):
    # the weights hold every session's steps, but the last one's code wrote them: not the first session's
    ckpt = torch.load(resnet18_run / "checkpoint.pt", weights_only=True)
    (only,) = ckpt["sessions"]
    ckpt["sessions"] = [{**only, "git_sha": "first-session", "torch": "0.0-first"},
                        {**only, "start_step": 1, "git_sha": "last-session"}]
    card = _card_of(ckpt, tmp_path)
    assert card["git_sha"] == card["versions"]["git_sha"] == "last-session"
    assert card["versions"]["torch"] == only["torch"] and card["training"]["sessions"] == ckpt["sessions"]


@pytest.mark.parametrize("arch", ["smallcnn", "alexnet_wang2015", "resnet50"])
def test_every_arch_round_trips(arch, tmp_path):
    torch.manual_seed(0)
    b = build_backbone(arch, input_size=64).eval()
    save_backbone(b, tmp_path / "b.pt")
    torch.manual_seed(1)
    loaded = vidssl.load_backbone(tmp_path / "b.pt")
    drawn_after_load = torch.rand(4)
    torch.manual_seed(1)
    assert torch.equal(drawn_after_load, torch.rand(4))  # loading draws nothing from the caller's generator
    assert {t.dtype for t in loaded.state_dict().values()} == {t.dtype for t in b.state_dict().values()}
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded.embed(x), b.embed(x))
    # a file of half-precision weights loads into the backbone's own dtypes, as a copy into built ones did
    save_backbone(b.half(), tmp_path / "h.pt", safetensors=False)
    half = vidssl.load_backbone(tmp_path / "h.pt")
    assert all(t.dtype != torch.float16 for t in half.state_dict().values())


def test_the_card_s_dimensions_are_those_of_the_loaded_model_s_outputs(tmp_path):
    """out_dim and dense_dim as measured on the loaded model's embed and dense_features outputs (resnet18: 512 and
    256, so a swap shows), not as the card code reads them off the backbone."""
    save_backbone(build_backbone("resnet18", input_size=32), tmp_path / "r.pt", safetensors=False)
    card = json.loads((tmp_path / "r.model_card.json").read_text())
    loaded = vidssl.load_backbone(tmp_path / "r.pt")
    with torch.no_grad():
        x = torch.rand(1, 3, 32, 40)
        embedding, dense = loaded.embed(x), loaded.dense_features(x)
    assert (card["out_dim"], card["dense_dim"]) == (embedding.shape[1], dense.shape[1]) == (512, 256)


def test_load_backbone_puts_the_weights_on_map_location(tmp_path):
    """map_location is honoured: the meta device (no numbers, on any machine) stands in for a GPU here."""
    save_backbone(build_backbone("smallcnn", width=4), tmp_path / "b.pt", safetensors=False)
    loaded = vidssl.load_backbone(tmp_path / "b.pt", map_location="meta")
    tensors = [*loaded.parameters(), *loaded.buffers()]
    assert tensors and all(t.device.type == "meta" for t in tensors)
    assert all(t.device.type == "cpu" for t in vidssl.load_backbone(tmp_path / "b.pt").parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_backbone_on_the_gpu_is_saved_as_cpu_tensors(tmp_path):
    """A file loads on a machine without a GPU (torch.load restores each tensor's saved device)."""
    save_backbone(build_backbone("smallcnn", width=4).cuda(), tmp_path / "b.pt", safetensors=False)
    state = torch.load(tmp_path / "b.pt", weights_only=True)  # no map_location: each tensor where it was saved
    assert state and all(v.device.type == "cpu" for v in state.values())


def _hand_made_checkpoint(run, backbone, extra: dict | None = None) -> None:
    """``run/checkpoint.pt`` holding what export_backbone reads of a `vidssl train` checkpoint (its backbone
    under "backbone." as the training model's state dict names it), plus ``extra`` model tensors."""
    from vidssl.train import CHECKPOINT, CHECKPOINT_FORMAT

    run.mkdir()
    model = {f"backbone.{k}": v for k, v in backbone.state_dict().items()}
    model["head.weight"] = torch.zeros(4, backbone.out_dim)  # the projection head: not exported
    torch.save({"format": CHECKPOINT_FORMAT, "model": {**model, **(extra or {})}, "backbone": backbone.spec(),
                "step": 2, "total_steps": 2, "pairs": {}, "embed_dim": 4, "head": "linear", "world_size": 1,
                "metrics": {}, "config": {}}, run / CHECKPOINT)


def test_records_older_than_an_argument_rebuild_the_network_they_trained(tmp_path):
    """An AlexNet card or checkpoint written before fc7's ReLU (git 5a64417) records no ``fc7_relu``: it loaded
    strictly and silently into today's network, whose embeddings then differed (cosine 0.71 to the trained ones).
    It must rebuild the signed fc7 it trained, as a net built with fc7_relu=False computes."""
    import json

    torch.manual_seed(0)
    old = build_backbone("alexnet_wang2015", input_size=64, fc6_dim=256, fc7_relu=False).eval()
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        trained = old.embed(x)
    assert (trained < 0).any()  # a ReLU'd rebuild cannot match
    save_backbone(old, tmp_path / "old.pt", safetensors=False)
    card_file = tmp_path / "old.model_card.json"
    card = json.loads(card_file.read_text())
    del card["build_kwargs"]["fc7_relu"]  # as the version before the argument wrote it
    card_file.write_text(json.dumps(card))
    with torch.no_grad():
        assert torch.equal(vidssl.load_backbone(tmp_path / "old.pt").embed(x), trained)
    _hand_made_checkpoint(tmp_path / "run", old)
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    del ckpt["backbone"]["fc7_relu"]
    torch.save(ckpt, tmp_path / "run" / "checkpoint.pt")
    exported = vidssl.load_backbone(export_backbone(tmp_path / "run", tmp_path / "exported.pt"))
    assert exported.spec()["fc7_relu"] is False  # and the new card says so: the next load needs no inference
    with torch.no_grad():
        assert torch.equal(exported.embed(x), trained)
    # a card written by hand, as the no-card error advises ({"arch": ...}, perhaps with some build_kwargs), is no
    # record of an older network: today's defaults (it built the signed fc7, cosine 0.70 to today's own features)
    today = build_backbone("alexnet_wang2015", input_size=64, fc6_dim=256).eval()
    torch.save(today.state_dict(), tmp_path / "mine.pt")
    hand_made = {"arch": "alexnet_wang2015", "build_kwargs": {"input_size": 64, "fc6_dim": 256}}
    (tmp_path / "mine.model_card.json").write_text(json.dumps(hand_made))
    loaded = vidssl.load_backbone(tmp_path / "mine.pt")
    assert loaded.spec()["fc7_relu"] is True
    with torch.no_grad():
        assert torch.equal(loaded.embed(x), today.embed(x))
    (tmp_path / "mine.model_card.json").write_text(json.dumps({"arch": "alexnet_wang2015"}))
    today = build_backbone("alexnet_wang2015").eval()
    torch.save(today.state_dict(), tmp_path / "mine.pt")
    assert vidssl.load_backbone(tmp_path / "mine.pt").spec()["fc7_relu"] is True


def test_export_refuses_a_checkpoint_whose_backbone_holds_a_tensor_the_architecture_lacks(tmp_path):
    """Strict, as loading is: a backbone tensor the recorded architecture has no place for (a checkpoint edited, or
    of an architecture that differed) is named, not dropped from the export without a word."""
    b = build_backbone("smallcnn", width=4)
    _hand_made_checkpoint(tmp_path / "good", b)
    assert export_backbone(tmp_path / "good", tmp_path / "good.pt").is_file()  # the checkpoint is otherwise fine
    _hand_made_checkpoint(tmp_path / "run", b, {"backbone.extra": torch.zeros(3)})
    with pytest.raises(ModelFileError, match=r"checkpoint\.pt: its backbone does not fit the smallcnn it records: "
                                             r"1 unexpected keys \(e\.g\. \['extra'\]\)"):
        export_backbone(tmp_path / "run", tmp_path / "b.pt")
    assert not (tmp_path / "b.pt").exists()
    _hand_made_checkpoint(tmp_path / "shape", b, {"backbone.features.0.weight": torch.zeros(1, 2, 3)})
    with pytest.raises(ModelFileError, match=r"does not fit the smallcnn it records: size mismatch for "
                                             r"features\.0\.weight: .*; export it with the vidssl version"):
        export_backbone(tmp_path / "shape", tmp_path / "b.pt")
    # three tensors of another shape: torch names each on a line of its own, the message the first and the count
    wrong = {f"backbone.{k}": torch.zeros(7) for k in ("features.0.weight", "features.1.weight", "features.1.bias")}
    _hand_made_checkpoint(tmp_path / "shapes", b, wrong)
    with pytest.raises(ModelFileError, match=r"size mismatch for features\.0\.weight: .* \(and 2 more\); export"):
        export_backbone(tmp_path / "shapes", tmp_path / "b.pt")
    # a value that is no tensor ended in an AttributeError traceback
    _hand_made_checkpoint(tmp_path / "int", b, {"backbone.features.0.weight": 3})
    with pytest.raises(ModelFileError, match=r"does not fit the smallcnn it records: 1 values that are no tensor "
                                             r"\(e\.g\. \['features\.0\.weight'\]\)"):
        export_backbone(tmp_path / "int", tmp_path / "b.pt")
    assert not (tmp_path / "b.pt").exists()


def test_random_init_baseline_has_the_trained_backbones_shape(tmp_path):
    """The evaluation's "same architecture at random init" row is built like the weights file: a width-8 smallcnn
    at 48 px gets a width-8, 48-px random twin (not the width-32 default), with different values."""
    from vidssl.eval.baselines import feature_models

    save_backbone(build_backbone("smallcnn", width=8, input_size=48), tmp_path / "b.pt")
    for arch in (None, "smallcnn"):
        trained, random_init, pixels = feature_models([tmp_path / "b.pt"], arch=arch).values()
        assert random_init.spec() == {"arch": "smallcnn", "input_size": 48, "width": 8}
        shapes = {k: v.shape for k, v in random_init.state_dict().items()}
        assert shapes == {k: v.shape for k, v in trained.state_dict().items()}
        assert not torch.equal(random_init.features[0].weight, trained.features[0].weight)


def test_weights_of_several_architectures_get_a_random_init_row_each(tmp_path):
    """`--weights a.pt --weights b.pt` of two architectures: one table, each trained model beside its own random
    init (the inferred architecture of the first file used to be taken for an --arch the second contradicted)."""
    from vidssl.errors import VidsslError
    from vidssl.eval.baselines import feature_models

    (tmp_path / "s").mkdir()
    (tmp_path / "r").mkdir()
    (tmp_path / "w").mkdir()
    save_backbone(build_backbone("smallcnn", width=8, input_size=48), tmp_path / "s" / "backbone.pt")
    save_backbone(build_backbone("resnet18", input_size=64), tmp_path / "r" / "backbone.pt")
    save_backbone(build_backbone("smallcnn", width=16, input_size=48), tmp_path / "w" / "backbone.pt")
    models = feature_models([tmp_path / "s", tmp_path / "r", tmp_path / "s" / "backbone.pt"])
    assert list(models) == ["s/backbone", "r/backbone", "s/backbone'", "smallcnn (random init)",
                            "resnet18 (random init)", "raw pixels"]
    assert models["smallcnn (random init)"].spec() == {"arch": "smallcnn", "input_size": 48, "width": 8}
    assert models["resnet18 (random init)"].spec() == {"arch": "resnet18", "input_size": 64}
    # two widths of one architecture: the rows say which is which
    names = list(feature_models([tmp_path / "s", tmp_path / "w"]))
    assert names[2:4] == ["smallcnn input_size=48 width=8 (random init)",
                          "smallcnn input_size=48 width=16 (random init)"]
    with pytest.raises(VidsslError, match="holds a resnet18 backbone but --arch is smallcnn"):
        feature_models([tmp_path / "s", tmp_path / "r"], arch="smallcnn")


def test_resnet50_export_missing_exactly_fc(tmp_path):
    save_backbone(build_backbone("resnet50"), tmp_path / "r50.pt", safetensors=False)
    result = torchvision.models.resnet50().load_state_dict(torch.load(tmp_path / "r50.pt", weights_only=True),
                                                          strict=False)
    assert set(result.missing_keys) == {"fc.weight", "fc.bias"} and result.unexpected_keys == []
    assert not (tmp_path / "r50.safetensors").exists()


def test_alexnet_export_conv_layers_load_into_torchvision_alexnet(tmp_path):
    save_backbone(build_backbone("alexnet_wang2015", input_size=227), tmp_path / "a.pt", safetensors=False)
    state = torch.load(tmp_path / "a.pt", weights_only=True)
    features = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    tv = torchvision.models.alexnet()
    tv.features.load_state_dict(features, strict=True)
    assert torch.equal(tv.features[0].weight, state["features.0.weight"])
    assert state["classifier.4.weight"].shape == (1024, 4096)  # the paper's fc7, not torchvision's 4096


def test_corrupt_and_wrong_files_are_clear_errors(tmp_path):
    save_backbone(build_backbone("smallcnn", width=8), tmp_path / "b.pt")
    good = (tmp_path / "b.pt").read_bytes()
    (tmp_path / "b.pt").write_bytes(good[: len(good) // 2])
    with pytest.raises(ModelFileError, match=r"b\.pt: not a readable weights file"):
        vidssl.load_backbone(tmp_path / "b.pt")
    (tmp_path / "b.pt").write_bytes(good)
    card_file = tmp_path / "b.model_card.json"
    card = json.loads(card_file.read_text())
    card_file.write_text(json.dumps({**card, "arch": "resnet18", "build_kwargs": {}}))
    with pytest.raises(ModelFileError, match=r"weights do not fit arch 'resnet18': \d+ missing keys"):
        vidssl.load_backbone(tmp_path / "b.pt")
    card_file.write_text(json.dumps({**card, "build_kwargs": {"width": 16}}))
    with pytest.raises(ModelFileError, match=r"e.g. features.0.weight is \[8, 3, 3, 3\] in the file but \[16, 3"):
        vidssl.load_backbone(tmp_path / "b.pt")
    card_file.write_text(json.dumps({**card, "arch": "vgg"}))
    with pytest.raises(ModelFileError, match="'arch' must be one of"):
        vidssl.load_backbone(tmp_path / "b.pt")
    # written by hand or another version: an AttributeError and a TypeError from the constructor before
    card_file.write_text(json.dumps(["smallcnn"]))
    with pytest.raises(ModelFileError, match=r"b\.model_card\.json: a model card is a JSON object, got a list"):
        vidssl.load_backbone(tmp_path / "b.pt")
    card_file.write_text(json.dumps({**card, "build_kwargs": {"width": 8, "depth": 3}}))
    with pytest.raises(ModelFileError, match=r"b\.model_card\.json: its build_kwargs .* do not build a smallcnn"):
        vidssl.load_backbone(tmp_path / "b.pt")
    card_file.write_text(json.dumps({**card, "build_kwargs": [8]}))
    with pytest.raises(ModelFileError, match=r"'build_kwargs' must be an object"):
        vidssl.load_backbone(tmp_path / "b.pt")
    card_file.unlink()
    with pytest.raises(ModelFileError, match=r"no model card \(b.model_card.json\) beside it"):
        vidssl.load_backbone(tmp_path / "b.pt")
    torch.save({"not": "tensors"}, tmp_path / "other.pt")
    with pytest.raises(ModelFileError, match="expected a state dict of tensors"):
        vidssl.load_backbone(tmp_path / "other.pt", arch="smallcnn")
    with pytest.raises(ModelFileError, match="no checkpoint.pt; train first"):
        export_backbone(tmp_path, tmp_path / "x.pt")


def test_cli_train_then_export(pairs, tmp_path, capsys):
    run, out = tmp_path / "run", tmp_path / "exp" / "backbone.pt"
    sets = [a for s in TINY + ["model.width=8"] for a in ("--set", s)]
    assert main(["-q", "train", str(pairs), "--out", str(run), *sets]) == 0
    assert "train: finished: step 2/2" in capsys.readouterr().out
    assert main(["export", str(run), "--out", str(out)]) == 0
    assert "export: smallcnn backbone after 2/2 steps" in capsys.readouterr().out
    assert out.is_file() and (out.parent / "backbone.safetensors").is_file()
    assert main(["export", str(tmp_path / "nowhere"), "--out", str(out)]) == 1
    assert "no checkpoint.pt" in capsys.readouterr().err
    # a `vidssl pretrain` run folder: its training is in RUN/train (the error sent users to train into RUN itself)
    (tmp_path / "pretrain_run").mkdir()
    run.rename(tmp_path / "pretrain_run" / "train")
    assert main(["export", str(tmp_path / "pretrain_run"), "--out", str(tmp_path / "again.pt")]) == 0
    assert torch.equal(torch.load(tmp_path / "again.pt", weights_only=True)["features.0.weight"],
                       torch.load(out, weights_only=True)["features.0.weight"])
    capsys.readouterr()
    # an unfinished run: the advice names the command that continues it, which for a pretrain folder is pretrain
    ckpt_path = tmp_path / "pretrain_run" / "train" / "checkpoint.pt"
    ckpt = torch.load(ckpt_path, weights_only=True)
    ckpt["total_steps"] = 5
    torch.save(ckpt, ckpt_path)
    assert main(["export", str(tmp_path / "pretrain_run"), "--out", str(tmp_path / "part.pt")]) == 0
    assert "after 2/5 steps (run incomplete: its training was interrupted: rerun the same `vidssl pretrain`" in \
        capsys.readouterr().out
    assert main(["export", str(tmp_path / "pretrain_run" / "train"), "--out", str(tmp_path / "part.pt")]) == 0
    assert "after 2/5 steps (run incomplete: rerun the same `vidssl train` into it" in capsys.readouterr().out
    # a train stage pretrain completed at its budget is final there: a rerun would skip it, so a new --out it is
    from vidssl.pipeline import Stages
    Stages(tmp_path / "pretrain_run").mark("train", {"step": 2, "total_steps": 5, "stopped": "budget"})
    assert main(["export", str(tmp_path / "pretrain_run"), "--out", str(tmp_path / "part.pt")]) == 0
    assert "stopped its training at the budget; for the whole schedule, run it into a new --out with a larger " \
        "--budget-minutes" in capsys.readouterr().out


def test_files_of_a_newer_format_ask_for_an_upgrade(pairs, tmp_path):
    """A card or checkpoint a newer vidssl wrote (format .../2) was read as this version's: a new constructor
    argument came out as "re-export with `vidssl export`", a new checkpoint as "not a checkpoint vidssl wrote"."""
    from safetensors.torch import save_file

    save_backbone(build_backbone("smallcnn", width=8), tmp_path / "b.pt")
    card = json.loads((tmp_path / "b.model_card.json").read_text())
    assert card["format"] == "vidssl-backbone/1"
    (tmp_path / "b.model_card.json").write_text(json.dumps({**card, "format": "vidssl-backbone/2",
                                                            "build_kwargs": {**card["build_kwargs"], "norm": "ln"}}))
    upgrade = r"written by a newer vidssl \(format {}; this one reads {}\): upgrade vidssl"
    with pytest.raises(ModelFileError, match=upgrade.format("vidssl-backbone/2", "vidssl-backbone/1")):
        vidssl.load_backbone(tmp_path / "b.pt")
    # the card a .safetensors carries
    state = load_file(tmp_path / "b.safetensors")
    meta = {"format": "pt", "model_card": json.dumps({**card, "format": "vidssl-backbone/3"})}
    (tmp_path / "b.model_card.json").unlink()
    save_file(state, tmp_path / "alone.safetensors", metadata=meta)
    with pytest.raises(ModelFileError, match=upgrade.format("vidssl-backbone/3", "vidssl-backbone/1")):
        vidssl.load_backbone(tmp_path / "alone.safetensors")
    # a training checkpoint: export and resume say the same
    run = tmp_path / "run"
    train(pairs, run, load_config(None, TINY), progress=False)
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    torch.save({**ckpt, "format": "vidssl-train/2"}, run / "checkpoint.pt")
    with pytest.raises(ModelFileError, match=upgrade.format("vidssl-train/2", "vidssl-train/1")):
        export_backbone(run, tmp_path / "x.pt")
    with pytest.raises(vidssl.errors.VidsslError, match=upgrade.format("vidssl-train/2", "vidssl-train/1")):
        train(pairs, run, load_config(None, TINY), progress=False)
    # other formats stay what they were: not vidssl's
    torch.save({**ckpt, "format": "lightning/2"}, run / "checkpoint.pt")
    with pytest.raises(ModelFileError, match="not a checkpoint `vidssl train` wrote"):
        export_backbone(run, tmp_path / "x.pt")


def test_a_budget_spent_before_the_first_logged_step_prints_no_nan_metrics(pairs, tmp_path, capsys, monkeypatch):
    """A stop before any log step has no metrics in stats.json: the last line read "loss nan, cos(a,p) nan"."""
    import vidssl.train as trainer

    def stopped_early(*args, **kwargs):
        return {"step": 1, "total_steps": 50, "minutes": 0.1, "stopped": "budget", "checkpoint": "RUN/checkpoint.pt",
                "world_size": 1}

    monkeypatch.setattr(trainer, "train", stopped_early)
    assert main(["train", str(pairs), "--out", str(tmp_path / "run")]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == (
        "train: stopped at the time budget (rerun to continue): step 1/50 in 0.1 min; checkpoint RUN/checkpoint.pt")
    # resumed: this session's minutes and all the sessions' (2 min over 3)
    monkeypatch.setattr(trainer, "train", lambda *a, **k: {**stopped_early(), "step": 50, "stopped": "done",
                                                           "sessions": 3, "minutes_all_sessions": 2.0})
    assert main(["train", str(pairs), "--out", str(tmp_path / "run")]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == (
        "train: finished: step 50/50 in 0.1 min (this session; 2.0 min over 3 sessions); checkpoint RUN/checkpoint.pt")


def test_two_exports_in_one_folder_keep_their_own_cards(tmp_path):
    """backbone.pt keeps model_card.json (the documented name); any other X.pt gets X.model_card.json, so a second
    export into the folder (another width) leaves the first loadable."""
    save_backbone(build_backbone("smallcnn", width=8), tmp_path / "backbone.pt")
    save_backbone(build_backbone("smallcnn", width=16), tmp_path / "other.pt")
    assert json.loads((tmp_path / "model_card.json").read_text())["files"] == ["backbone.pt", "backbone.safetensors"]
    assert json.loads((tmp_path / "other.model_card.json").read_text())["build_kwargs"]["width"] == 16
    for name, width in (("backbone.pt", 8), ("backbone.safetensors", 8), ("other.pt", 16),
                        ("other.safetensors", 16)):
        assert vidssl.load_backbone(tmp_path / name).spec()["width"] == width, name


def test_an_export_without_safetensors_removes_an_earlier_exports_copy(tmp_path):
    """X.safetensors of an earlier export of X.pt stayed, and loaded with the new card: the old weights."""
    save_backbone(build_backbone("smallcnn", width=8), tmp_path / "backbone.pt")
    assert (tmp_path / "backbone.safetensors").is_file()
    save_backbone(build_backbone("smallcnn", width=16), tmp_path / "backbone.pt", safetensors=False)
    assert not (tmp_path / "backbone.safetensors").exists()
    assert json.loads((tmp_path / "model_card.json").read_text())["files"] == ["backbone.pt"]
    assert vidssl.load_backbone(tmp_path / "backbone.pt").spec()["width"] == 16


def test_exports_with_the_earlier_shared_card_still_load(tmp_path):
    """Earlier versions wrote model_card.json beside any X.pt: used when it lists the file; a card another export
    replaced is named as such instead of a shape mismatch."""
    save_backbone(build_backbone("smallcnn", width=8), tmp_path / "b.pt")
    (tmp_path / "b.model_card.json").rename(tmp_path / "model_card.json")
    assert vidssl.load_backbone(tmp_path / "b.pt").spec()["width"] == 8
    save_backbone(build_backbone("smallcnn", width=16), tmp_path / "old" / "backbone.pt")
    card = json.loads((tmp_path / "old" / "model_card.json").read_text())
    (tmp_path / "old" / "model_card.json").write_text(json.dumps({**card, "files": ["other.pt"]}))
    (tmp_path / "old" / "other.pt").write_bytes(b"")  # the export that replaced the card wrote it
    with pytest.raises(ModelFileError, match=r"model_card.json describes other.pt, not backbone.pt"):
        vidssl.load_backbone(tmp_path / "old" / "backbone.pt")


def test_weights_path_errors_and_run_folders(tmp_path, capsys):
    from vidssl.eval.baselines import feature_models

    with pytest.raises(ModelFileError, match=r"nope.pt: no such file$"):
        vidssl.load_backbone(tmp_path / "nope.pt")
    run = tmp_path / "run"
    save_backbone(build_backbone("smallcnn", width=8), run / "backbone.pt")
    assert vidssl.load_backbone(run).spec()["width"] == 8  # a run folder stands for RUN/backbone.pt
    assert list(feature_models([run])) == ["run/backbone", "smallcnn (random init)", "raw pixels"]
    (tmp_path / "train_run").mkdir()
    (tmp_path / "train_run" / "checkpoint.pt").write_bytes(b"")
    with pytest.raises(ModelFileError, match=r"a folder without backbone.pt; export it first: vidssl export"):
        vidssl.load_backbone(tmp_path / "train_run")
    (tmp_path / "pretrain_run" / "train").mkdir(parents=True)  # a `vidssl pretrain` folder before its export
    (tmp_path / "pretrain_run" / "train" / "checkpoint.pt").write_bytes(b"")
    with pytest.raises(ModelFileError, match=r"export it first: vidssl export .*pretrain_run --out"):
        vidssl.load_backbone(tmp_path / "pretrain_run")
    code = main(["eval", "retrieval", "--weights", str(tmp_path / "nope.pt"), "--data", str(tmp_path),
                 "--out", str(tmp_path / "ev")])
    err = capsys.readouterr().err
    assert code == 1 and "nope.pt: no such file" in err and "arch=" not in err


def test_the_readme_loading_snippets_run_as_written(tmp_path):
    """The two code blocks of README's "Loading the weights in your code", executed verbatim (RUN -> a folder
    holding a smallcnn export, then a resnet18 one; `images` is the user's batch)."""
    import re
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("## Loading the weights in your code", 1)[1].split("\n## ", 1)[0]
    any_arch, resnet = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    save_backbone(build_backbone("smallcnn", width=8), tmp_path / "small" / "backbone.pt")
    scope = {"images": torch.rand(2, 3, 40, 56)}
    exec(any_arch.replace("RUN/", f"{tmp_path / 'small'}/"), scope)
    assert scope["features"].shape == (2, 64) and scope["dense"].shape == (2, 64, 5, 7)
    save_backbone(build_backbone("resnet18"), tmp_path / "r18" / "backbone.pt")
    exec(resnet.replace("RUN/", f"{tmp_path / 'r18'}/"), {})


@pytest.mark.slow
def test_the_readme_from_python_script_runs_as_written(tmp_path, capsys):
    """README's "From Python": demo clips -> mining -> training -> export -> loading -> evaluation, executed verbatim
    with OUT -> a temporary folder."""
    import re
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("## From Python", 1)[1].split("\n## ", 1)[0]
    (script,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    exec(script.replace("OUT/", f"{tmp_path}/"), {"__name__": "__main__"})
    map_at_r = float(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0.0 < map_at_r <= 1.0
    assert (tmp_path / "backbone.pt").is_file() and (tmp_path / "eval" / "metrics.json").is_file()
    assert json.loads((tmp_path / "train" / "stats.json").read_text())["step"] == 10


def test_save_backbone_refuses_the_training_model_before_writing(tmp_path):
    """Given the whole EmbeddingNet it wrote backbone.pt (head keys, no card) and only then failed."""
    from vidssl.models import EmbeddingNet

    net = EmbeddingNet(build_backbone("smallcnn", width=8), embed_dim=16)
    with pytest.raises(TypeError, match=r"got EmbeddingNet \(the training model: pass its .backbone\)"):
        save_backbone(net, tmp_path / "backbone.pt")
    assert list(tmp_path.iterdir()) == []
    save_backbone(net.backbone, tmp_path / "backbone.pt")
    assert vidssl.load_backbone(tmp_path / "backbone.pt").arch == "smallcnn"


def test_a_safetensors_file_alone_carries_its_card(tmp_path):
    backbone = build_backbone("smallcnn", width=8).eval()
    save_backbone(backbone, tmp_path / "b.pt")
    (tmp_path / "lone").mkdir()
    (tmp_path / "b.safetensors").rename(tmp_path / "lone" / "b.safetensors")
    loaded = vidssl.load_backbone(tmp_path / "lone" / "b.safetensors")  # no card beside it
    assert loaded.spec() == backbone.spec() and loaded.spec()["width"] == 8  # not the default width
    x = torch.rand(2, 3, 64, 64)
    assert torch.equal(loaded.embed(loaded.normalize(x)), backbone.embed(backbone.normalize(x)))
    (tmp_path / "b.model_card.json").unlink()
    with pytest.raises(ModelFileError, match="no model card"):  # a .pt has no room for one
        vidssl.load_backbone(tmp_path / "b.pt")
    # copied into a project without its card, the advice was to write {"arch": "resnet18"}, wrong for a smallcnn
    with pytest.raises(ModelFileError, match=r"Copied from a run\? Copy its card along as b.model_card.json: the card "
                                             r"beside the file it was exported as, model_card.json for a backbone.pt "
                                             r"\(a run's\), <name>.model_card.json for <name>.pt; or take the "
                                             r".safetensors file"):
        vidssl.load_backbone(tmp_path / "b.pt")


def test_a_torchvision_classifier_state_dict_loads_without_its_head(tmp_path):
    """An ImageNet-style baseline of the user's own: torchvision's resnet18 state_dict, saved as is."""
    classifier = torchvision.models.resnet18().eval()
    torch.save(classifier.state_dict(), tmp_path / "tv.pt")
    with pytest.raises(ModelFileError, match=r"Its keys are resnet18's: load_backbone\(path, arch='resnet18'\) .*"
                                             r"write the card: echo '\{\"arch\": \"resnet18\"\}' > "):
        vidssl.load_backbone(tmp_path / "tv.pt")
    loaded = vidssl.load_backbone(tmp_path / "tv.pt", arch="resnet18")
    classifier.fc = torch.nn.Identity()
    x = torch.rand(2, 3, 64, 64)
    assert torch.allclose(loaded.embed(loaded.normalize(x)), classifier(loaded.normalize(x)), atol=1e-5)
    (tmp_path / "tv.model_card.json").write_text('{"arch": "resnet18"}')  # the card the message suggests
    assert vidssl.load_backbone(tmp_path / "tv.pt").arch == "resnet18"
    state = torchvision.models.resnet18().state_dict()
    state["extra.weight"] = torch.zeros(1)  # anything beyond exactly the head is still refused
    torch.save(state, tmp_path / "tv.pt")
    with pytest.raises(ModelFileError, match=r"3 unexpected"):
        vidssl.load_backbone(tmp_path / "tv.pt")
    del state["extra.weight"], state["fc.bias"]  # part of the head: not a classifier's state dict, refused too
    torch.save(state, tmp_path / "tv.pt")
    with pytest.raises(ModelFileError, match=r"1 unexpected keys \(e\.g\. \['fc\.weight'\]\)"):
        vidssl.load_backbone(tmp_path / "tv.pt")


def test_export_refuses_what_it_cannot_export_or_write_in_one_line(tmp_path, capsys):
    """Another tool's checkpoint.pt (a common name), a damaged one, a weights file given as RUN, --out naming a
    folder or the .safetensors copy: one line naming the file and the fix, no traceback, nothing written."""
    run = tmp_path / "foreign"
    run.mkdir()
    torch.save({"state_dict": {}}, run / "checkpoint.pt")
    assert main(["export", str(run), "--out", str(tmp_path / "a.pt")]) == 1
    err = capsys.readouterr().err
    assert "checkpoint.pt: not a checkpoint `vidssl train` wrote" in err and "Traceback" not in err
    (tmp_path / "damaged").mkdir()
    (tmp_path / "damaged" / "checkpoint.pt").write_bytes(b"PK\x03\x04 cut short")
    assert main(["export", str(tmp_path / "damaged"), "--out", str(tmp_path / "a.pt")]) == 1
    err = capsys.readouterr().err
    assert "unreadable checkpoint" in err and "export the run folder of a vidssl training" in err
    assert "choose another --out" not in err  # the advice of a training resume, not of an export
    weights = tmp_path / "w.pt"
    save_backbone(build_backbone("smallcnn", width=8), weights)
    # argument mistakes exit 2, like argparse's own and `compare --out FOLDER` (they exited 1, a failed run's code)
    assert main(["export", str(weights), "--out", str(tmp_path / "b.pt")]) == 2
    assert "w.pt is a file; pass the training run folder" in capsys.readouterr().err
    (tmp_path / "outdir").mkdir()
    assert main(["export", str(tmp_path / "damaged"), "--out", str(tmp_path / "outdir")]) == 2
    assert "outdir is a folder; name the weights file" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "damaged"), "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "x.safetensors: name the .pt file" in capsys.readouterr().err
    with pytest.raises(ModelFileError, match=r"outdir is a folder; name the weights file, e.g. .*outdir/backbone.pt"):
        save_backbone(build_backbone("smallcnn", width=8), tmp_path / "outdir")
    with pytest.raises(ModelFileError, match=r"x.safetensors: name the .pt file \(e.g. .*x.pt\)"):
        save_backbone(build_backbone("smallcnn", width=8), tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists() and not list((tmp_path / "outdir").iterdir())


def test_exports_named_alike_with_other_suffixes_do_not_take_each_others_card(tmp_path):
    """X.pt and X.pth share X.model_card.json and X.safetensors: the second export is refused before writing, and a
    card that describes the other one is named as such instead of loading with the wrong architecture."""
    save_backbone(build_backbone("smallcnn", width=8), tmp_path / "foo.pth")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(ModelFileError, match=r"foo.model_card.json and foo.safetensors there belong to foo.pth"):
        save_backbone(build_backbone("smallcnn", width=16), tmp_path / "foo.pt")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # nothing written
    save_backbone(build_backbone("smallcnn", width=16), tmp_path / "bar.pt")  # another name is fine
    # a card replaced the old way (or by hand): named, not loaded with the other file's architecture
    (tmp_path / "foo.pth").rename(tmp_path / "foo.pt.bak")
    save_backbone(build_backbone("smallcnn", width=16), tmp_path / "foo.pt")  # foo.pth gone: the name is free
    (tmp_path / "foo.pt.bak").rename(tmp_path / "foo.pth")
    with pytest.raises(ModelFileError, match=r"foo.model_card.json describes foo.pt, foo.safetensors, not foo.pth"):
        vidssl.load_backbone(tmp_path / "foo.pth")
    # a card renamed with its weights still loads them
    for suffix in (".pt", ".safetensors"):
        (tmp_path / f"bar{suffix}").rename(tmp_path / f"baz{suffix}")
    (tmp_path / "bar.model_card.json").rename(tmp_path / "baz.model_card.json")
    assert vidssl.load_backbone(tmp_path / "baz.pt").spec()["width"] == 16


def test_weights_renamed_to_another_suffix_still_load_with_their_card(tmp_path):
    save_backbone(build_backbone("smallcnn", width=8), tmp_path / "foo.pt")
    (tmp_path / "foo.pt").rename(tmp_path / "foo.pth")  # the card lists foo.pt, which is gone: it is foo.pth's
    assert vidssl.load_backbone(tmp_path / "foo.pth").spec()["width"] == 8
    # the default name too, whose card is model_card.json (a name earlier versions gave every export's card)
    save_backbone(build_backbone("smallcnn", width=16), tmp_path / "backbone.pt")
    (tmp_path / "backbone.pt").rename(tmp_path / "backbone.pth")
    assert vidssl.load_backbone(tmp_path / "backbone.pth").spec()["width"] == 16


def test_an_export_over_another_is_never_half_mixed(tmp_path, monkeypatch):
    """The weights, the .safetensors and the card were each replaced atomically but not together: a kill between
    them left the new weights beside the previous export's card (and .safetensors, which then loaded the old
    weights). Now a failure while writing keeps the previous export whole, and one while renaming leaves no card."""
    import os as os_module

    out = tmp_path / "foo.pt"
    save_backbone(build_backbone("smallcnn", width=8), out)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:  # the .safetensors cannot be written: nothing of the new export lands
        m.setattr("safetensors.torch.save", full_disk)
        with pytest.raises(OSError):
            save_backbone(build_backbone("smallcnn", width=16), out)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    real_replace, renamed = os_module.replace, []

    def killed_after_the_weights(src, dst):  # the process dies once the weights have their name
        if renamed:
            raise KeyboardInterrupt
        real_replace(src, dst)
        renamed.append(dst)

    with monkeypatch.context() as m:
        m.setattr(os_module, "replace", killed_after_the_weights)
        with pytest.raises(KeyboardInterrupt):
            save_backbone(build_backbone("smallcnn", width=16), out)
    assert [os_module.path.basename(p) for p in renamed] == ["foo.pt"]
    assert not (tmp_path / "foo.model_card.json").exists()  # the previous card is gone with it
    with pytest.raises(ModelFileError, match="no model card"):
        vidssl.load_backbone(out)
    assert vidssl.load_backbone(tmp_path / "foo.safetensors").spec()["width"] == 8  # the old pair, whole
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    save_backbone(build_backbone("smallcnn", width=16), out)  # exported again: whole
    assert vidssl.load_backbone(out).spec()["width"] == vidssl.load_backbone(tmp_path / "foo.safetensors").spec()[
        "width"] == 16


def test_weights_saved_before_batchnorm_counted_batches_load(tmp_path):
    """torchvision's first ImageNet files have no num_batches_tracked (102 keys for resnet18): torch's strict load
    takes them, and so must load_backbone, as the baseline the error message above tells users to make."""
    classifier = torchvision.models.resnet18().eval()
    old = {k: v for k, v in classifier.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert len(old) == 102
    torchvision.models.resnet18().load_state_dict(old, strict=True)  # what torch itself accepts
    torch.save(old, tmp_path / "old.pt")
    loaded = vidssl.load_backbone(tmp_path / "old.pt", arch="resnet18")
    classifier.fc = torch.nn.Identity()
    x = torch.rand(2, 3, 64, 64)
    assert torch.allclose(loaded.embed(loaded.normalize(x)), classifier(loaded.normalize(x)), atol=1e-5)
    del old["layer1.0.bn1.weight"]  # a missing key of substance is still refused
    torch.save(old, tmp_path / "old.pt")
    with pytest.raises(ModelFileError, match=r"1 missing keys \(e.g. \['layer1.0.bn1.weight'\]\)"):
        vidssl.load_backbone(tmp_path / "old.pt", arch="resnet18")


def test_weights_that_do_not_fit_say_what_they_most_likely_are(pairs, tmp_path):
    """The key-mismatch hint asked whether "the model card beside it" was another export's, also with no card at
    all, for a wrapper's prefixed keys and for a training checkpoint given as weights."""
    b = build_backbone("smallcnn")
    torch.save({f"module.{k}": v for k, v in b.state_dict().items()}, tmp_path / "ddp.pt")  # DDP's wrapper
    with pytest.raises(ModelFileError, match=r"every key starts with 'module\.' .*drop the prefix"):
        vidssl.load_backbone(tmp_path / "ddp.pt", arch="smallcnn")
    torch.save(torchvision.models.alexnet().state_dict(), tmp_path / "tv_alexnet.pt")  # another model, no card
    with pytest.raises(ModelFileError, match=r"do not fit arch 'alexnet_wang2015': .*without a model card it was "
                                             r"built as a default alexnet_wang2015") as refused:
        vidssl.load_backbone(tmp_path / "tv_alexnet.pt", arch="alexnet_wang2015")
    assert "missing keys" not in str(refused.value) and "model card beside" not in str(refused.value)
    assert "unexpected keys" in str(refused.value)  # the paper's fc7 is classifier.4 too: only extras differ
    save_backbone(b, tmp_path / "b.pt", safetensors=False)
    torch.save(torchvision.models.alexnet().state_dict(), tmp_path / "b.pt")  # a card of another file's weights
    with pytest.raises(ModelFileError, match=r"is b\.model_card\.json from another export\?"):
        vidssl.load_backbone(tmp_path / "b.pt")
    run = tmp_path / "run"
    train(pairs, run, load_config(None, TINY), progress=False)
    with pytest.raises(ModelFileError, match=r"checkpoint\.pt: a `vidssl train` checkpoint, not exported weights; "
                                             r"`vidssl export RUN --out FILE`"):
        vidssl.load_backbone(run / "checkpoint.pt", arch="smallcnn")


def test_the_embedded_card_is_strict_json(tmp_path):
    # a metric of a step that mined nothing is NaN: the card file says null, and so must the card inside the
    # .safetensors, which readers other than Python's json (JavaScript, Rust, the hub) parse
    from safetensors import safe_open

    save_backbone(build_backbone("smallcnn", width=8), tmp_path / "b.pt", card={"final_metrics": {"d_an": math.nan}})
    with safe_open(str(tmp_path / "b.safetensors"), "pt") as f:
        text = f.metadata()["model_card"]
        # transformers' loader refuses a file whose "format" is not one of pt / tf / flax / mlx
        assert f.metadata()["format"] == "pt" and f.metadata()["vidssl_format"] == "vidssl-backbone/1"

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    embedded = json.loads(text, parse_constant=refuse)
    assert embedded["final_metrics"]["d_an"] is None
    assert embedded == json.loads((tmp_path / "b.model_card.json").read_text())


def test_files_that_are_not_weights_say_what_they_are(tmp_path):
    save_backbone(build_backbone("smallcnn", width=8), tmp_path / "b.pt")
    # a safetensors file under .pt: name the suffix it needs
    (tmp_path / "b.safetensors").rename(tmp_path / "st.pt")
    with pytest.raises(ModelFileError, match=r"st\.pt: a safetensors file under another suffix; rename it to "
                                             r"st\.safetensors"):
        vidssl.load_backbone(tmp_path / "st.pt", arch="smallcnn")
    # a whole pickled model: never torch's advice to load it with weights_only=False, which runs its code
    torch.save(build_backbone("smallcnn", width=8), tmp_path / "module.pt")
    with pytest.raises(ModelFileError, match=r"a whole pickled model\?.*torch.save\(model.state_dict\(\), FILE\)") as e:
        vidssl.load_backbone(tmp_path / "module.pt", arch="smallcnn")
    assert "weights_only" not in str(e.value)
    # without a card, weights of another width: say how to give the card that builds them
    (tmp_path / "b.model_card.json").unlink()
    (tmp_path / "b.safetensors").unlink(missing_ok=True)
    with pytest.raises(ModelFileError, match=r"without a model card the backbone is built with its default "
                                             r"arguments: give the ones the weights were trained with, load_backbone"
                                             r"\(path, arch='smallcnn', build_kwargs=\{'input_size': ..., 'width': "
                                             r"...\}\) in Python, or "
                                             r"write the card .*b\.model_card\.json"):
        vidssl.load_backbone(tmp_path / "b.pt", arch="smallcnn")
    # another architecture's weights beside a card: name it
    save_backbone(build_backbone("resnet18"), tmp_path / "r.pt")
    torch.save(build_backbone("resnet50").state_dict(), tmp_path / "r.pt")
    with pytest.raises(ModelFileError, match=r"these are resnet50 weights: fix arch in .*r\.model_card\.json"):
        vidssl.load_backbone(tmp_path / "r.pt")


def test_a_card_listing_no_files_does_not_speak_for_every_file_of_its_folder(tmp_path):
    """The card the error message suggests for a torchvision backbone.pt lists no files: a .safetensors beside it
    took it over its own embedded card, and another file was refused the arch it was asked to load as."""
    torch.save(build_backbone("resnet18").state_dict(), tmp_path / "backbone.pt")
    (tmp_path / "model_card.json").write_text('{"arch": "resnet18"}')
    save_backbone(build_backbone("smallcnn", width=8), tmp_path / "mine.pt")
    for name in ("mine.pt", "mine.model_card.json"):  # the .safetensors alone, with its embedded card
        (tmp_path / name).unlink()
    torch.save(build_backbone("smallcnn").state_dict(), tmp_path / "other.pt")  # no card of its own
    assert vidssl.load_backbone(tmp_path / "backbone.pt").arch == "resnet18"
    assert vidssl.load_backbone(tmp_path / "mine.safetensors").spec()["width"] == 8
    assert vidssl.load_backbone(tmp_path / "other.pt", arch="smallcnn").arch == "smallcnn"
    with pytest.raises(ModelFileError, match="weights do not fit arch 'resnet18'"):  # no arch given: the card's
        vidssl.load_backbone(tmp_path / "other.pt")


def test_without_arch_a_file_that_does_not_load_says_what_it_is(pairs, tmp_path):
    """Called plainly (no arch=), every unloadable file got the same "no model card" error, with the advice to
    write a resnet18 card, also beside a training checkpoint (a file into the run folder, then the real error)."""
    run = tmp_path / "run"
    train(pairs, run, load_config(None, TINY), progress=False)
    with pytest.raises(ModelFileError, match=r"a `vidssl train` checkpoint, not exported weights") as refused:
        vidssl.load_backbone(run / "checkpoint.pt")
    assert not (run / "checkpoint.model_card.json").exists() and "echo" not in str(refused.value)
    torch.save(build_backbone("smallcnn", width=8), tmp_path / "module.pt")
    with pytest.raises(ModelFileError, match=r"a whole pickled model\?"):
        vidssl.load_backbone(tmp_path / "module.pt")
    save_backbone(build_backbone("smallcnn", width=8), tmp_path / "b.pt")
    (tmp_path / "b.safetensors").rename(tmp_path / "st.pt")
    with pytest.raises(ModelFileError, match=r"a safetensors file under another suffix"):
        vidssl.load_backbone(tmp_path / "st.pt")
    # weights of a vidssl architecture without their card: named, with the Python call that loads them
    (tmp_path / "b.model_card.json").unlink()
    with pytest.raises(ModelFileError, match=r"Its keys are smallcnn's: load_backbone\(path, arch='smallcnn'\)"
                                             r".*echo '\{\"arch\": \"smallcnn\"\}'") as refused:
        vidssl.load_backbone(tmp_path / "b.pt")
    assert "resnet18" not in str(refused.value)
    # ... of non-default settings: given in Python, they load; beside a card they are refused
    trained = build_backbone("smallcnn", width=8).eval()
    torch.save(trained.state_dict(), tmp_path / "b.pt")
    loaded = vidssl.load_backbone(tmp_path / "b.pt", arch="smallcnn", build_kwargs={"width": 8})
    x = torch.rand(2, 3, 40, 40)
    assert torch.equal(loaded.embed(loaded.normalize(x)), trained.embed(trained.normalize(x)))
    with pytest.raises(ModelFileError, match=r"do not build a smallcnn"):
        vidssl.load_backbone(tmp_path / "b.pt", arch="smallcnn", build_kwargs={"depth": 3})
    with pytest.raises(ModelFileError, match=r"do not fit arch 'smallcnn' with the given build_kwargs' settings: "
                                             r".* built with the arguments given"):  # not "its default settings"
        vidssl.load_backbone(tmp_path / "b.pt", arch="smallcnn", build_kwargs={"width": 16})
    with pytest.raises(ModelFileError, match=r"are for weights without a model card"):
        vidssl.load_backbone(tmp_path / "b.pt", build_kwargs={"width": 8})  # no arch to give them to
    save_backbone(trained, tmp_path / "c.pt")
    with pytest.raises(ModelFileError, match=r"c\.pt: build arguments \{'width': 8\} .*its card says how"):
        vidssl.load_backbone(tmp_path / "c.pt", arch="smallcnn", build_kwargs={"width": 8})


def test_the_shape_hint_names_the_settings_of_the_arch_at_hand(tmp_path):
    """An AlexNet trained at 64 px loaded without its card was told to write {"build_kwargs": {"width": ...}}, a
    setting AlexNet does not have; its grid (input_size) is what differs."""
    alexnet = build_backbone("alexnet_wang2015", input_size=64).eval()
    torch.save(alexnet.state_dict(), tmp_path / "a.pt")
    with pytest.raises(ModelFileError, match=r"classifier\.1\.weight is \[4096, 256\]") as refused:
        vidssl.load_backbone(tmp_path / "a.pt", arch="alexnet_wang2015")
    message = str(refused.value)
    assert "width" not in message and "arch='alexnet_wang2015', build_kwargs={'input_size': ..." in message
    # the fix it names
    loaded = vidssl.load_backbone(tmp_path / "a.pt", arch="alexnet_wang2015", build_kwargs={"input_size": 64})
    x = torch.rand(2, 3, 64, 64)
    assert torch.equal(loaded.embed(loaded.normalize(x)), alexnet.embed(alexnet.normalize(x)))


def test_weights_renamed_without_their_card_say_which_card_to_rename(tmp_path):
    (tmp_path / "run").mkdir()
    save_backbone(build_backbone("smallcnn", width=8), tmp_path / "run" / "backbone.pt")
    (tmp_path / "run" / "backbone.pt").rename(tmp_path / "run" / "r18_vidssl.pt")
    (tmp_path / "run" / "backbone.safetensors").unlink()
    with pytest.raises(ModelFileError, match=r"model_card\.json here describes backbone\.pt, backbone\.safetensors, "
                                             r"gone: if this file was renamed from it, rename the card to "
                                             r"r18_vidssl\.model_card\.json"):
        vidssl.load_backbone(tmp_path / "run" / "r18_vidssl.pt")
    (tmp_path / "run" / "model_card.json").rename(tmp_path / "run" / "r18_vidssl.model_card.json")
    assert vidssl.load_backbone(tmp_path / "run" / "r18_vidssl.pt").spec()["width"] == 8


@pytest.mark.parametrize("theirs", ["notes.md", "notes.safetensors", "notes.model_card.json"])
def test_an_export_never_replaces_a_file_that_is_no_export(tmp_path, theirs):
    """`vidssl export RUN --out notes.md` (a typo, or a name taken) replaced the user's notes with a torch zip, and
    the .safetensors copy and card beside the name are replaced too: each is refused, before anything is written,
    where it holds what no export writes. An earlier export, also one killed before its card, is written again."""
    from vidssl.export import ExportPathError, card_path

    backbone = build_backbone("smallcnn", width=8)
    (tmp_path / theirs).write_text("my notes\n")
    out = tmp_path / "notes.md"
    with pytest.raises(ExportPathError) as refused:
        save_backbone(backbone, out)
    what = {"md": "a weights file", "safetensors": "the safetensors copy of an export",
            "json": "a model card"}[theirs.split(".")[-1]]
    assert str(refused.value) == (f"--out {out}: {tmp_path / theirs} exists and is not {what} that an export would "
                                  f"replace; nothing was written: choose another --out, or move {theirs} away first")
    assert sorted(p.name for p in tmp_path.iterdir()) == [theirs] and (tmp_path / theirs).read_text() == "my notes\n"
    (tmp_path / theirs).unlink()
    save_backbone(backbone, out)
    card_path(out).unlink()  # a kill between the weights and the card
    save_backbone(build_backbone("smallcnn", width=16), out)
    assert vidssl.load_backbone(out).spec()["width"] == 16


def test_an_export_never_replaces_another_models_safetensors_file(tmp_path):
    """A safetensors file of another model (a Hugging Face download, model.safetensors) beside `--out model.pt`
    is a safetensors file, but not an export's copy: its metadata names no architecture, as every export's does."""
    from safetensors.torch import save_file

    from vidssl.export import ExportPathError

    theirs = tmp_path / "model.safetensors"
    save_file({"w": torch.ones(2)}, str(theirs), metadata={"format": "pt"})
    before = theirs.read_bytes()
    with pytest.raises(ExportPathError, match="model.safetensors exists and is not the safetensors copy of an export"):
        save_backbone(build_backbone("smallcnn", width=8), tmp_path / "model.pt")
    assert theirs.read_bytes() == before and not (tmp_path / "model.pt").exists()

