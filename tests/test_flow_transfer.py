"""The FlowNetC-style transfer: it learns on synthetic pairs, resumes after a kill, and never touches the caller's
backbone."""
from __future__ import annotations

import dataclasses

import pytest
import torch

import vidssl.eval.flow.transfer as transfer
from vidssl.eval.config import FlowConfig
from vidssl.eval.flow.transfer import train_transfer
from vidssl.models import build_backbone

TINY = dataclasses.replace(FlowConfig(), synthetic_size=[64, 64], batch_size=4, max_motion=12.0, num_shapes=[1, 3],
                           max_displacement=3, checkpoint_seconds=1e-6)


def _backbone():
    torch.manual_seed(0)
    return build_backbone("smallcnn", width=4).eval()


def _head(net):
    return {k: v.clone() for k, v in net.state_dict().items() if not k.startswith("backbone.")}


def test_decoder_learns_on_synthetic_pairs_quickly():
    backbone = _backbone()
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    net, info = train_transfer(backbone, dataclasses.replace(TINY, steps=20), budget_s=120, progress=False)
    assert torch.equal(torch.rand(3), expected)  # the caller's generator is left alone
    assert info["steps"] == 20 and not net.training
    # the zero-initialised last layer makes step 0 the zero-shot soft-argmax; training must improve on it
    # (7.61 -> 6.85 px in 20 steps with this seed; 6.76 after 40)
    assert info["synthetic_epe_end"] < 0.95 * info["synthetic_epe_start"], info
    curve = info["loss_curve"]  # training EPE over ten shares of the steps
    assert len(curve) == 10 and curve[-1] < curve[0]


@pytest.mark.slow
def test_decoder_learns_real_motion_not_just_to_damp_its_input():
    # better than predicting no motion at all, on the fixed validation pairs: the decoder has learnt flow from
    # random-init features, not only to shrink a noisy zero-shot estimate towards zero; and better than where it
    # started (the zero-shot match, already at about 0.90 of zero flow's EPE here, under the 0.93 alone: a decoder
    # that learnt nothing passed)
    cfg = dataclasses.replace(FlowConfig(), synthetic_size=[96, 128], batch_size=8, max_motion=16.0, num_shapes=[2, 5],
                              max_displacement=3, steps=50)
    torch.manual_seed(0)
    _, info = train_transfer(build_backbone("smallcnn", width=16).eval(), cfg, budget_s=600, progress=False)
    validation = transfer.synthetic_pairs(transfer._VAL_PAIRS, 96, 128,
                                          torch.Generator().manual_seed(transfer._VAL_SEED), 16.0, (2, 5))
    zero_flow_epe = float(validation.flow.norm(dim=1).mean())
    assert info["synthetic_epe_end"] < 0.93 * zero_flow_epe, (info, zero_flow_epe)
    assert info["synthetic_epe_end"] < 0.975 * info["synthetic_epe_start"], info  # 0.955 on this project's CPUs


def test_budget_bounds_training_time():
    _, info = train_transfer(_backbone(), dataclasses.replace(TINY, steps=10_000), budget_s=1.0, progress=False)
    assert 1 <= info["steps"] < 10_000 and info["train_seconds"] < 10


def test_the_validation_pairs_leave_no_trace_in_the_decoders_batchnorm():
    """The first validation pass ran while the new decoder was in train mode: its BatchNorm layers took the fixed
    validation batch into their running statistics, which the final validation then read."""
    net, info = train_transfer(_backbone(), dataclasses.replace(TINY, steps=0), budget_s=60.0, progress=False)
    norms = [m for name, m in net.named_modules() if isinstance(m, torch.nn.BatchNorm2d) and not
             name.startswith("backbone.")]
    assert norms and info["steps"] == 0
    assert all(int(m.num_batches_tracked) == 0 and float(m.running_mean.abs().sum()) == 0 for m in norms)
    assert info["synthetic_epe_start"] == info["synthetic_epe_end"]  # untrained: the same pass twice


def test_the_callers_generators_are_left_as_they_were(monkeypatch):
    """torch.manual_seed also reseeds every GPU's generator; only the CPU's is restored afterwards."""
    backbone, seeded_everything = _backbone(), []
    monkeypatch.setattr(torch, "manual_seed", lambda seed: seeded_everything.append(seed))
    before = torch.random.get_rng_state()
    train_transfer(backbone, dataclasses.replace(TINY, steps=1), budget_s=60.0, progress=False)
    from vidssl.eval.baselines import feature_models

    feature_models([], arch="smallcnn", seed=5)
    assert seeded_everything == [] and torch.equal(torch.random.get_rng_state(), before)


def test_a_killed_run_resumes_to_the_same_weights(tmp_path, monkeypatch, caplog):
    cfg = dataclasses.replace(TINY, steps=5)
    reference, _ = train_transfer(_backbone(), cfg, budget_s=1e6, progress=False)

    real = transfer.synthetic_pairs
    steps_run, kill_at = [], [4]

    def dies_at_step_4(batch, *args, **kwargs):
        if batch == cfg.batch_size:  # a training batch (the validation batch is larger)
            steps_run.append(1)
            if len(steps_run) in kill_at:
                raise KeyboardInterrupt  # as a kill between two checkpoints
        return real(batch, *args, **kwargs)

    checkpoint = tmp_path / "transfer" / "model.pt"
    monkeypatch.setattr(transfer, "synthetic_pairs", dies_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        train_transfer(_backbone(), cfg, budget_s=1e6, checkpoint=checkpoint, progress=False)
    assert torch.load(checkpoint, weights_only=True)["state"]["step"] == 3
    assert [p.name for p in checkpoint.parent.iterdir()] == ["model.pt"]  # no temp file left behind

    steps_run.clear()
    kill_at.clear()
    # resumed under another budget (pretrain's share of what its rerun has left differs by the seconds it skipped):
    # the run continues under the one it began with, which its learning rate's cosine follows (a fingerprint of the
    # budget had made pretrain's reruns start over)
    with caplog.at_level("INFO", logger="vidssl.eval.flow.transfer"):
        resumed, info = train_transfer(_backbone(), cfg, budget_s=2e6, checkpoint=checkpoint, progress=False)
    assert info["steps"] == 5 and len(steps_run) == 2
    said = [r for r in caplog.records if "continuing under the budget it began with" in r.getMessage()]
    assert [r.levelname for r in said] == ["INFO"]  # a larger budget given: it trains no longer than asked
    assert torch.load(checkpoint, weights_only=True)["state"]["budget_s"] == 1e6
    for key, value in _head(reference).items():
        assert torch.allclose(_head(resumed)[key].float(), value.float(), atol=1e-5), key
    # a much smaller budget given (a rerun meant to end quickly) trains under the first one's: said with the fix
    caplog.clear()
    with caplog.at_level("INFO", logger="vidssl.eval.flow.transfer"):
        train_transfer(_backbone(), cfg, budget_s=10.0, checkpoint=checkpoint, progress=False)
    said = [r for r in caplog.records if "continuing under the budget it began with" in r.getMessage()]
    assert [r.levelname for r in said] == ["INFO"] and f"delete {checkpoint}" in said[0].getMessage()
    # a finished run is reused as it is, its checkpoint not written again (a window for a kill to leave a temp file
    # in, at every rerun); another seed is another run and starts over
    steps_run.clear()
    written = checkpoint.stat().st_mtime_ns
    monkeypatch.setattr(transfer, "atomic_write_bytes", lambda *a: pytest.fail("a finished decoder was saved again"))
    train_transfer(_backbone(), cfg, budget_s=1e6, checkpoint=checkpoint, progress=False)
    assert len(steps_run) == 0 and checkpoint.stat().st_mtime_ns == written
    monkeypatch.undo()
    monkeypatch.setattr(transfer, "synthetic_pairs", dies_at_step_4)
    train_transfer(_backbone(), cfg, budget_s=1e6, seed=1, checkpoint=checkpoint, progress=False)
    assert len(steps_run) == 5


def test_a_checkpoint_with_other_decoder_layers_starts_over_not_half_loaded(tmp_path, monkeypatch):
    """A checkpoint of a version whose decoder had other layers: resuming would fill the missing ones with fresh
    random weights and go on as if trained."""
    cfg = dataclasses.replace(TINY, steps=3)
    real, steps_run = transfer.synthetic_pairs, []

    def counted(batch, *args, **kwargs):
        steps_run.append(batch == cfg.batch_size)  # a training batch (the validation batch is larger)
        return real(batch, *args, **kwargs)

    monkeypatch.setattr(transfer, "synthetic_pairs", counted)
    checkpoint = tmp_path / "model.pt"
    train_transfer(_backbone(), cfg, budget_s=1e6, checkpoint=checkpoint, progress=False)
    saved = torch.load(checkpoint, weights_only=True)
    dropped = [k for k in saved["net"] if not k.startswith("backbone.")][:2]
    for key in dropped:
        del saved["net"][key]
    torch.save(saved, checkpoint)
    steps_run.clear()
    _, info = train_transfer(_backbone(), cfg, budget_s=1e6, checkpoint=checkpoint, progress=False)
    assert info["steps"] == 3 and sum(steps_run) == 3  # trained again: the finished run in the file was not reused
    assert set(dropped) <= set(torch.load(checkpoint, weights_only=True)["net"])
    # the same layer names with other shapes (a wider decoder): started over too, not a load error
    saved = torch.load(checkpoint, weights_only=True)
    key = next(k for k, v in saved["net"].items() if not k.startswith("backbone.") and v.dim() == 4)
    saved["net"][key] = torch.cat([saved["net"][key]] * 2)
    torch.save(saved, checkpoint)
    steps_run.clear()
    _, info = train_transfer(_backbone(), cfg, budget_s=1e6, checkpoint=checkpoint, progress=False)
    assert info["steps"] == 3 and sum(steps_run) == 3
    # a damaged file (a disk that filled) or not a checkpoint at all: started over, not a traceback
    for damaged in (checkpoint.read_bytes()[:1000], b"not a checkpoint"):
        checkpoint.write_bytes(damaged)
        steps_run.clear()
        _, info = train_transfer(_backbone(), cfg, budget_s=1e6, checkpoint=checkpoint, progress=False)
        assert info["steps"] == 3 and sum(steps_run) == 3
    torch.save([1, 2], checkpoint)
    steps_run.clear()
    _, info = train_transfer(_backbone(), cfg, budget_s=1e6, checkpoint=checkpoint, progress=False)
    assert info["steps"] == 3 and sum(steps_run) == 3


def test_finetuning_works_on_a_copy_of_the_backbone():
    backbone = _backbone()
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    net, _ = train_transfer(backbone, dataclasses.replace(TINY, steps=3, finetune=True, backbone_lr=1e-2),
                            budget_s=60, progress=False)
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, before[key]), key
    changed = [k for k, v in net.backbone.state_dict().items() if "weight" in k and not torch.equal(v, before[k])]
    assert changed


def test_an_untrained_decoder_is_exactly_the_zero_shot_match():
    """The decoder's last layer starts at zero, so before any step the network is method 3 (match_flow), which
    every step is then measured against; a random last layer would start elsewhere. Raw pixels too: their cells
    are centred on their 8x8 blocks (cell_offset 3.5), where the upsampled flow must be placed as method 3 places it."""
    from vidssl.eval.baselines import PixelFeatures
    from vidssl.eval.flow.methods import match_flow

    batch = transfer.synthetic_pairs(2, 48, 64, torch.Generator().manual_seed(1), 8.0, (1, 2))
    for backbone in (_backbone(), PixelFeatures().eval()):
        torch.manual_seed(5)
        net = transfer.CorrFlowNet(backbone, max_displacement=2, temperature=0.05).eval()
        with torch.no_grad():
            flow = net(batch.image1, batch.image2)
            zero_shot = match_flow(backbone, batch.image1, batch.image2, 2, 0.05)
        assert float(zero_shot.abs().max()) > 0.1  # the comparison is not of two zero fields
        assert torch.allclose(flow, zero_shot, atol=1e-5), type(backbone).__name__


class _Stop(Exception):
    pass


def test_each_training_step_draws_its_data_from_the_seed_too(monkeypatch):
    """Step i's synthetic batch was seeded by i alone: every seed trained on the very same data."""
    real, first = transfer.synthetic_pairs, []
    small = dataclasses.replace(TINY, steps=1, batch_size=2, synthetic_size=[32, 32])

    def first_training_batch(batch, *args, **kwargs):
        first.append(real(batch, *args, **kwargs).image1)
        raise _Stop

    monkeypatch.setattr(transfer, "synthetic_epe", lambda *args: 0.0)  # no validation pass: training batches only
    monkeypatch.setattr(transfer, "synthetic_pairs", first_training_batch)
    for seed in (0, 1):
        with pytest.raises(_Stop):
            train_transfer(_backbone(), small, budget_s=60.0, seed=seed, progress=False)
    assert len(first) == 2 and first[0].shape == first[1].shape == (2, 3, 32, 32)
    assert float((first[0] - first[1]).abs().mean()) > 0.01


# every FlowConfig key that changes what transfer training computes, with a value other than the one the test below
# trains at (written out here, not read from the code's list, which is what is checked)
_OTHER_TRAINING_VALUES = {"max_displacement": 2, "temperature": 0.05, "steps": 2, "finetune": True, "lr": 0.01,
                          "backbone_lr": 1e-3, "batch_size": 3, "synthetic_size": [64, 48], "max_motion": 6.0,
                          "num_shapes": [1, 2]}


def test_a_checkpoint_trained_under_other_settings_starts_over(tmp_path, monkeypatch):
    """A checkpoint of a run under another max_motion (or any other training key) resumed as if it were this run's:
    a finished run was reused as it was, trained on other data."""
    cfg = dataclasses.replace(TINY, steps=1, batch_size=2, synthetic_size=[32, 32])
    backbone, checkpoint = _backbone(), tmp_path / "model.pt"
    train_transfer(backbone, cfg, budget_s=1e6, checkpoint=checkpoint, progress=False)
    saved = torch.load(checkpoint, weights_only=True)["net"]
    trained = saved[[k for k in saved if k.startswith("decoder.") and k.endswith(".weight")][-1]]  # the last layer
    assert float(trained.abs().max()) > 0
    resumed = []

    def first_validation(net, *args):  # the first validation pass shows which weights the run starts from
        resumed.append(torch.equal(net.decoder[-1].weight.detach().cpu(), trained))
        raise _Stop

    monkeypatch.setattr(transfer, "synthetic_epe", first_validation)
    with pytest.raises(_Stop):
        train_transfer(backbone, cfg, budget_s=1e6, checkpoint=checkpoint, progress=False)
    assert resumed == [True]  # the same settings: the finished run is reused
    for key, value in _OTHER_TRAINING_VALUES.items():
        assert getattr(cfg, key) != value, key
        resumed.clear()
        with pytest.raises(_Stop):
            train_transfer(backbone, dataclasses.replace(cfg, **{key: value}), budget_s=1e6, checkpoint=checkpoint,
                           progress=False)
        assert resumed == [False], key  # started from the untrained decoder
    assert set(transfer._TRAINING_KEYS) == set(_OTHER_TRAINING_VALUES)  # a new training key is tested here too
