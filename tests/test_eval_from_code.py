"""The evaluations called from a user's code, e.g. as a hook in their training loop: a model comes back in the
mode it was given in, with its BatchNorm statistics untouched, and scores as it does in eval mode; a config section
built in code is checked like a loaded one (a topk of 0 scored J&F 0.0 without a word)."""
from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from test_davis_eval import write_moving_squares
from test_flow_run import CFG as FLOW_CFG
from test_flow_run import dataset  # noqa: F401 (a fixture)
from test_retrieval_pipeline import CFG as RETRIEVAL_CFG
from test_retrieval_pipeline import colour_classes  # noqa: F401 (a fixture)
from vidssl.errors import ConfigError
from vidssl.eval.config import DavisConfig, FlowConfig, RetrievalConfig
from vidssl.eval.davis import evaluate_davis
from vidssl.eval.flow import evaluate_flow
from vidssl.eval.retrieval import evaluate_retrieval
from vidssl.models import build_backbone


def training_model():
    """A smallcnn (BatchNorm layers) in train mode, with running statistics that are not the init's."""
    torch.manual_seed(0)
    model = build_backbone("smallcnn", width=4)
    with torch.no_grad():
        model.dense_features(torch.rand(4, 3, 64, 64) * 3)  # train mode: moves the running statistics
    return model.train()


def assert_handed_back(model, before):
    assert model.training and all(m.training for m in model.modules())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BatchNorm statistics included


def test_davis_scores_a_training_model_as_in_eval_mode_and_hands_it_back(tmp_path):
    write_moving_squares(tmp_path / "davis")
    cfg = DavisConfig(sequences=["squares"], overlay_frames=1)
    model = training_model()
    before = copy.deepcopy(model.state_dict())
    reference = copy.deepcopy(model).eval()  # what the documented protocol scores
    got = evaluate_davis({"m": model}, tmp_path / "davis", tmp_path / "a", cfg, progress=False)["models"]["m"]
    want = evaluate_davis({"m": reference}, tmp_path / "davis", tmp_path / "b", cfg, progress=False)["models"]["m"]
    assert got["JF_mean"] == want["JF_mean"] and got["sequences"] == want["sequences"]
    assert_handed_back(model, before)


def test_retrieval_hands_a_training_model_back(colour_classes, tmp_path):  # noqa: F811
    model = training_model()
    before = copy.deepcopy(model.state_dict())
    reference = copy.deepcopy(model).eval()
    got = evaluate_retrieval({"m": model}, colour_classes, tmp_path / "a", RETRIEVAL_CFG)["models"]["m"]
    want = evaluate_retrieval({"m": reference}, colour_classes, tmp_path / "b", RETRIEVAL_CFG)["models"]["m"]
    assert got == want
    assert_handed_back(model, before)


def test_an_embed_that_keeps_the_pooled_dims_is_named_at_once(colour_classes, tmp_path):  # noqa: F811
    """A backbone of one's own whose embed() keeps [B, D, 1, 1] (a mean with keepdim) failed deep in the metrics
    ("Expected size for first two dimensions of batch2 tensor ..."); DAVIS named its Backbone contract already."""
    class KeepDim(torch.nn.Module):
        mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)

        def __init__(self):
            super().__init__()
            self.inner = training_model()

        def embed(self, x):
            return self.inner.dense_features(x).mean(dim=(2, 3), keepdim=True)

    with pytest.raises(ValueError, match=r"^kept: embed\(\) gave \[\d+, 32, 1, 1\] for a batch of \d+ images; the "
                                         r"Backbone contract is \[B, out_dim\] \(flatten a pooled"):
        evaluate_retrieval({"kept": KeepDim()}, colour_classes, tmp_path / "out", RETRIEVAL_CFG, progress=False)


def test_a_model_moved_for_feature_extraction_comes_back_trainable(colour_classes):  # noqa: F811
    """Moved to the evaluation's device and back inside inference mode, every parameter came back an inference
    tensor and the next training step failed ("Inference tensors cannot be saved for backward"). "cpu:0" is another
    device than "cpu" to the move, as a GPU would be."""
    from vidssl.eval.retrieval import extract_features
    from vidssl.eval.retrieval_data import load_retrieval_set

    model = training_model()
    items = load_retrieval_set(colour_classes, RETRIEVAL_CFG, "auto", "val").items
    extract_features({"m": model}, items, batch_size=4, device="cpu:0", progress=False)
    assert not any(t.is_inference() for t in [*model.parameters(), *model.buffers()])
    model.embed(torch.rand(2, 3, 32, 32)).sum().backward()  # a training step's forward and backward
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_flow_hands_a_training_model_back(dataset, tmp_path):  # noqa: F811
    root, _ = dataset
    cfg = dataclasses.replace(FLOW_CFG, transfer=False, figures=False)
    model = training_model()
    before = copy.deepcopy(model.state_dict())
    reference = copy.deepcopy(model).eval()
    got = evaluate_flow({"m": model}, root, tmp_path / "a", cfg, progress=False)["methods"]["match[m]"]["mean"]
    want = evaluate_flow({"m": reference}, root, tmp_path / "b", cfg, progress=False)["methods"]["match[m]"]["mean"]
    assert got == want
    assert_handed_back(model, before)


@pytest.mark.parametrize("section, key, evaluate", [
    (DavisConfig(topk=0), "eval.davis.topk", evaluate_davis),
    (DavisConfig(temperature=0.0), "eval.davis.temperature", evaluate_davis),
    (DavisConfig(sequences="blackswan"), "eval.davis.sequences", evaluate_davis),  # was read letter by letter
    (RetrievalConfig(image_size=8), "eval.retrieval.image_size", evaluate_retrieval),
    (FlowConfig(max_displacement=0), "eval.flow.max_displacement", evaluate_flow),
    (FlowConfig(temperature=float("nan")), "eval.flow.temperature", evaluate_flow),
])
def test_a_config_section_built_in_code_is_checked_before_any_work(tmp_path, section, key, evaluate):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        evaluate({}, tmp_path / "no data", tmp_path / "out", section)
    assert not (tmp_path / "out").exists()


class NoStats(torch.nn.Module):
    """A model of one's own with the feature methods but no input statistics."""

    def embed(self, x):
        return x.mean(dim=(2, 3))

    def dense_features(self, x):
        return x[:, :, ::8, ::8]


@pytest.mark.parametrize("evaluate, section", [(evaluate_davis, DavisConfig()), (evaluate_retrieval, RetrievalConfig()),
                                               (evaluate_flow, FlowConfig())])
def test_wrong_models_or_config_objects_are_named_before_any_work(tmp_path, evaluate, section):
    """A whole Config, a bare model, a model without the contract's attributes or a training wrapper failed as
    AttributeErrors or "object is not iterable" from deep inside (or, with another section, after its checks
    passed under the wrong name)."""
    from vidssl.config import Config
    from vidssl.train import build_model

    data, out = tmp_path / "no data", tmp_path / "out"
    with pytest.raises(TypeError, match=r"expected the eval\.\w+ section, a \w+Config .cfg\.eval\.\w+ of a "
                                        r"Config., got Config"):
        evaluate({}, data, out, Config())
    model = build_backbone("smallcnn", width=4)
    with pytest.raises(TypeError, match=r"takes a dict of row name -> model, e.g. \{'mine': model\}, got SmallCNN"):
        evaluate(model, data, out, section)
    with pytest.raises(TypeError, match=r"model 'own' \(NoStats\) lacks mean, std(, dense_stride, dense_dim)? of the backbone "
                                        r"contract it needs .*IMAGENET_MEAN"):
        evaluate({"own": NoStats()}, data, out, section)
    net = build_model(Config())  # the training model: backbone + head
    with pytest.raises(TypeError, match=r"model 'net' \(EmbeddingNet\) lacks .*: pass its \.backbone"):
        evaluate({"net": net}, data, out, section)
    assert not out.exists()


def test_retrieval_leaves_the_caller_s_random_stream_alone(colour_classes, tmp_path):  # noqa: F811
    """The feature loader drew its base seed from the global torch generator, so a training loop with a retrieval
    hook followed another random stream than one without."""
    model = training_model().eval()
    for workers in (0, 1):
        torch.manual_seed(5)
        evaluate_retrieval({"m": model}, colour_classes, tmp_path / f"w{workers}",
                           dataclasses.replace(RETRIEVAL_CFG, num_workers=workers))
        drawn = torch.rand(3)
        torch.manual_seed(5)
        assert torch.equal(drawn, torch.rand(3))


def test_crops_held_in_memory_are_read_without_workers(monkeypatch):
    """DAVIS crops are one in-memory array: each fork-server worker got a copy of it all to index."""
    import numpy as np

    import vidssl.eval.retrieval as retrieval
    from vidssl.eval.retrieval_data import ImageArray

    workers, loader = [], retrieval.DataLoader
    monkeypatch.setattr(retrieval, "DataLoader", lambda *a, **k: workers.append(k["num_workers"]) or loader(*a, **k))
    items = ImageArray(np.zeros((3, 32, 32, 3), np.uint8))
    feats, ok = retrieval.extract_features({"m": build_backbone("smallcnn", width=4)}, items, num_workers=2,
                                           progress=False)
    assert workers == [0] and feats["m"].shape[0] == 3 and ok.all()


def test_evaluation_mode_gives_back_each_submodules_mode_whatever_happens():
    """A model training with frozen BatchNorm got its BatchNorm back in train mode; one model under two names came
    back in eval mode; a failure part way left the models switched."""
    from vidssl.eval.frozen import evaluation_mode

    model = training_model()
    frozen = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)][:2]
    for m in frozen:
        m.eval()
    modes = {name: m.training for name, m in model.named_modules()}
    assert not all(modes.values()) and any(modes.values())
    other = training_model()
    with pytest.raises(RuntimeError, match="mid-evaluation"):
        with evaluation_mode({"a": model, "b": model, "c": other}, "cpu"):
            assert not any(m.training for m in model.modules()) and not other.training
            raise RuntimeError("mid-evaluation")
    assert {name: m.training for name, m in model.named_modules()} == modes and other.training
