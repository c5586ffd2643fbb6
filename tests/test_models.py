"""Backbone API (contract 2): shapes, stride-8 dense features, torchvision key names, and the embedding model."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torchvision

import vidssl
from vidssl.export import save_backbone
from vidssl.models import ARCHS, EmbeddingNet, build_backbone
from vidssl.models.base import input_bound


@pytest.mark.parametrize("arch", list(ARCHS))
def test_feature_shapes_at_any_size(arch):
    torch.manual_seed(0)
    b = build_backbone(arch, input_size=64).eval()
    assert b.arch == arch and b.dense_stride == 8 and len(b.mean) == 3 and len(b.std) == 3
    with torch.no_grad():
        for h, w in [(32, 32), (33, 47), (64, 64), (71, 100)]:
            d = b.dense_features(torch.randn(2, 3, h, w))
            assert d.shape == (2, b.dense_dim, math.ceil(h / 8), math.ceil(w / 8))
            assert torch.isfinite(d).all()
        assert b.embed(torch.randn(3, 3, 64, 64)).shape == (3, b.out_dim)
        assert b(torch.randn(1, 3, 80, 64)).shape == (1, b.out_dim)


def test_smallcnn_cell_is_centred_on_8i_with_a_59_px_receptive_field():
    """What base.py documents and the evaluations rely on, measured: the input pixels a dense cell's value depends
    on (its gradient) are the rows and columns 8i - 29 .. 8i + 29 (a map shifted by a cell kept its shape)."""
    torch.manual_seed(0)
    b = build_backbone("smallcnn", width=4).double().eval()
    x = torch.randn(1, 3, 160, 160, dtype=torch.float64, requires_grad=True)
    for i, j in ((10, 10), (6, 13)):
        b.dense_features(x)[0, :, i, j].sum().backward()
        hit = x.grad[0].abs().sum(0) > 0
        rows, cols = torch.nonzero(hit.any(1)).flatten(), torch.nonzero(hit.any(0)).flatten()
        assert (rows.min().item(), rows.max().item()) == (8 * i - 29, 8 * i + 29)
        assert (cols.min().item(), cols.max().item()) == (8 * j - 29, 8 * j + 29)
        x.grad = None


def test_smallcnn_features_are_signed():
    """The last conv-BN has no ReLU (signed features: sharper cosine affinities for DAVIS); a ReLU would make every
    dense value and every pooled embedding value >= 0."""
    torch.manual_seed(0)
    b = build_backbone("smallcnn", width=4).eval()
    assert isinstance(b.features[-1], torch.nn.BatchNorm2d)
    with torch.no_grad():
        embedding, dense = b.embed_and_dense(torch.randn(4, 3, 64, 64))
    assert 0.2 < (dense < 0).float().mean().item() < 0.8
    assert (embedding < 0).any() and (b.embed(torch.randn(4, 3, 64, 64)) < 0).any()


def test_bad_input_is_a_clear_error():
    b = build_backbone("smallcnn")
    with pytest.raises(ValueError, match="smaller than 32"):
        b.dense_features(torch.randn(1, 3, 16, 64))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        b.embed(torch.randn(3, 64, 64))
    with pytest.raises(ValueError, match="unknown arch 'vgg'"):
        build_backbone("vgg")


@pytest.mark.parametrize("arch", list(ARCHS) + ["pixels"])
def test_inputs_a_user_passes_by_mistake_are_named_with_the_fix(arch):
    """uint8 frames (read_image, cv2) made inf out of normalize (mean and std cast to uint8 are 0) and NaN features;
    a float64 batch failed deep in a conv; a channels-last batch failed as a broadcast."""
    from vidssl.eval.baselines import PixelFeatures

    b = PixelFeatures() if arch == "pixels" else build_backbone(arch, input_size=64).eval()
    frames = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"got torch.uint8: convert with x.float\(\) / 255"):
        b.normalize(frames)
    with pytest.raises(ValueError, match=r"channels last\? x.permute\(0, 3, 1, 2\)"):
        b.normalize(frames.permute(0, 2, 3, 1).float() / 255)
    grey = r"\[B, 3, H, W\] RGB batch, got shape \(2, 1, 64, 64\) \(grey\? x.expand\(-1, 3, -1, -1\)\)"
    with pytest.raises(ValueError, match=grey):
        b.normalize(frames[:, :1].float() / 255)  # grey would broadcast to three channels
    with pytest.raises(ValueError, match=r"input values reach 2\d\d, but RGB in \[0, 1\] is expected: divide"):
        b.normalize(frames.float())  # 0-255 floats gave finite, meaningless features
    # [-1, 1] images, or a batch normalised twice, were taken quietly; a numpy array of the right shape was told
    # "expected [B, 3, H, W], got (2, 3, 64, 64)"; one image got no hint
    with pytest.raises(ValueError, match=r"go down to -1, but RGB in \[0, 1\] is expected: \[-1, 1\] images take"):
        b.normalize(frames.float() / 127.5 - 1)
    with pytest.raises(ValueError, match=r"got numpy.ndarray: torch.from_numpy\(x\)"):
        b.normalize((frames.float() / 255).numpy())
    with pytest.raises(ValueError, match=r"got shape \(3, 64, 64\) \(one image\? x.unsqueeze\(0\)\)"):
        b.normalize(frames[0].float() / 255)
    x = b.normalize(frames.float() / 255)
    # the documented arithmetic, per channel
    expected = (frames.float() / 255 - torch.tensor(b.mean).view(1, 3, 1, 1)) / torch.tensor(b.std).view(1, 3, 1, 1)
    assert torch.allclose(x, expected) and torch.isfinite(b.embed(x)).all()
    if arch != "pixels":
        with pytest.raises(ValueError, match=r"input is torch.float64 but the weights are torch.float32"):
            b.embed(x.double())
        with pytest.raises(ValueError, match=r"got torch.uint8"):
            b.dense_features(frames)
        with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast casts input and weights itself
            assert b.embed(x.bfloat16()).shape == (2, b.out_dim)
        # 0-255 images straight into embed() gave finite, meaningless features; normalised RGB at the extremes
        # normalize() accepts ([-0.5, 1.5], a resize's overshoot) stays within (1.5 - 0.406) / 0.225 = 4.86
        for feature in (b.embed, b.dense_features):
            with pytest.raises(ValueError, match=r"input values reach 2\d\d, over twice the \+-4.9 normalised RGB "
                                                 r"reaches: 0-255 images take model.normalize\(x / 255\)"):
                feature(frames.float())
        extremes = torch.full((2, 3, 64, 64), 1.5)
        extremes[1] = -0.5
        assert torch.isfinite(b.embed(b.normalize(extremes))).all()
        with_nan = frames.float()
        with_nan[0, 0, 0, 0] = float("nan")  # NaN made aminmax NaN, which no comparison catches
        with pytest.raises(ValueError, match=r"input values reach 2\d\d"):
            b.embed(with_nan)
        # shapes only, on meta tensors (how export builds a model without filling it): no values to read
        on_meta = build_backbone(arch, input_size=64).to_empty(device="meta").eval()
        assert on_meta.embed(torch.empty(2, 3, 64, 64, device="meta")).shape == (2, b.out_dim)
        with pytest.raises(ValueError, match=r"input is on meta but the weights are on cpu: move it with x.to\('cpu'\)"):
            b.embed(x.to("meta"))


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_resnet_matches_torchvision(arch):
    """Key names are torchvision's (only fc missing) and embed is torchvision's pooled feature."""
    b = build_backbone(arch).eval()
    tv = getattr(torchvision.models, arch)(weights=None).eval()
    result = tv.load_state_dict(b.state_dict(), strict=False)
    assert set(result.missing_keys) == {"fc.weight", "fc.bias"} and not result.unexpected_keys
    tv.fc = torch.nn.Identity()
    x = torch.randn(2, 3, 72, 64, generator=torch.Generator().manual_seed(0))  # not what earlier tests left
    with torch.no_grad():
        torch.testing.assert_close(b.embed(x), tv(x), rtol=1e-5, atol=1e-5)


def _dilated_layer3_reference(layer3: torch.nn.Module) -> torch.nn.Module:
    """layer3 rebuilt with modules at stride 1, first block undilated, later 3x3 convs dilated by 2 (independent of
    the functional implementation in vidssl.models.resnet)."""
    ref = copy.deepcopy(layer3)
    for i, block in enumerate(ref):
        d = 1 if i == 0 else 2
        for m in block.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.stride = (1, 1)
                if m.kernel_size == (3, 3):
                    m.dilation, m.padding = (d, d), (d, d)
    return ref


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_resnet_dense_is_dilated_layer3(arch):
    b = build_backbone(arch).eval()
    ref3 = _dilated_layer3_reference(b.layer3)
    x = torch.randn(1, 3, 70, 90)
    with torch.no_grad():
        stem = b.layer2(b.layer1(b.maxpool(b.relu(b.bn1(b.conv1(x))))))
        torch.testing.assert_close(b.dense_features(x), ref3(stem), rtol=1e-5, atol=1e-5)
    if arch == "resnet50":  # torchvision can dilate Bottleneck blocks itself: a second, official reference
        tv = torchvision.models.resnet50(weights=None, replace_stride_with_dilation=[False, True, False]).eval()
        tv.load_state_dict(b.state_dict(), strict=False)
        with torch.no_grad():
            ref = tv.layer3(tv.layer2(tv.layer1(tv.maxpool(tv.relu(tv.bn1(tv.conv1(x)))))))
        torch.testing.assert_close(b.dense_features(x), ref, rtol=1e-5, atol=1e-5)


def test_alexnet_is_the_paper_network_with_torchvision_names():
    b = build_backbone("alexnet_wang2015", input_size=227).eval()
    assert b.grid == 6 and b.classifier[1].in_features == 256 * 36  # pool5 6x6 at the paper's 227 px
    assert b.classifier[1].out_features == 4096 and b.out_dim == b.classifier[4].out_features == 1024
    tv = torchvision.models.alexnet(weights=None).eval()
    tv.features.load_state_dict(b.features.state_dict())  # same conv1-5 names and shapes as torchvision
    x = torch.randn(1, 3, 227, 227)
    with torch.no_grad():
        torch.testing.assert_close(b.features(x), tv.features(x))
        fc7 = b.classifier[4](torch.relu(b.classifier[1](tv.features(x).flatten(1))))
        torch.testing.assert_close(b.embed(x), torch.relu(fc7))  # relu7 before the L2 norm, as released
        signed = build_backbone("alexnet_wang2015", input_size=227, fc7_relu=False).eval()
        signed.load_state_dict(b.state_dict())  # the option adds no parameter
        torch.testing.assert_close(signed.embed(x), fc7)
    assert (fc7 < 0).any()  # so the ReLU above was not a no-op
    assert build_backbone("alexnet_wang2015", input_size=64).classifier[1].in_features == 256  # pool5 1x1
    # the released training net has no dropout: in train mode two passes agree (BatchNorm-free, so exactly)
    b.train()
    with torch.no_grad():
        torch.testing.assert_close(b.embed(x), b.embed(x))


def test_alexnet_dense_features_reference():
    """Dense view = the same weights with conv1 centred (pad 5), pool1 padded, pool2 at stride 1, conv3-5 dilated."""
    b = build_backbone("alexnet_wang2015", input_size=64).eval()
    f = copy.deepcopy(b.features)
    f[0].padding = (5, 5)
    f[2].padding = 1
    f[5].stride, f[5].padding = 1, 1
    for i in (6, 8, 10):
        f[i].dilation, f[i].padding = (2, 2), (2, 2)
    ref = torch.nn.Sequential(*list(f)[:12])  # up to conv5's ReLU (no pool5)
    x = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        torch.testing.assert_close(b.dense_features(x), ref(x))


def test_embedding_net_one_forward_unit_vectors():
    torch.manual_seed(0)
    net = EmbeddingNet(build_backbone("smallcnn", width=8), embed_dim=16)
    x = torch.randn(6, 3, 32, 32)
    z = net(x)
    assert z.shape == (6, 16) and z.dtype == torch.float32
    torch.testing.assert_close(z.norm(dim=1), torch.ones(6))
    net.eval()
    with torch.no_grad():  # shared weights by construction: a row's embedding does not depend on its batch mates
        torch.testing.assert_close(net(x)[2:3], net(x[2:3]), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="identity"):
        EmbeddingNet(build_backbone("smallcnn", width=8), embed_dim=16, head="identity")
    assert EmbeddingNet(build_backbone("smallcnn", width=8), embed_dim=64, head="identity")(x).shape == (6, 64)


@pytest.mark.parametrize("arch", list(ARCHS))
def test_embed_and_dense_is_both_views_in_one_pass(arch):
    torch.manual_seed(0)
    b = build_backbone(arch, input_size=64).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        pooled, dense = b.embed_and_dense(x)
        torch.testing.assert_close(pooled, b.embed(x))
        torch.testing.assert_close(dense, b.dense_features(x))
    net = EmbeddingNet(b, embed_dim=16).eval()
    with torch.no_grad():
        emb, maps = net(x, dense=True)
        torch.testing.assert_close(emb, net(x))
        torch.testing.assert_close(maps, b.dense_features(x))


def test_resnet_training_pass_updates_batchnorm_statistics_once():
    """The dense view runs layer3 a second time (dilated); only the strided pass feeds the running statistics,
    so after a training step they are exactly what embed() alone would have left."""
    torch.manual_seed(0)
    both = build_backbone("resnet18", input_size=64).train()
    alone = copy.deepcopy(both)
    x = torch.randn(4, 3, 64, 64)
    _, dense = both.embed_and_dense(x)
    alone.embed(x)
    for (name, a), b in zip(both.state_dict().items(), alone.state_dict().values()):
        if "running" in name or "num_batches" in name:
            assert torch.equal(a, b), name
    # the dilated pass still trains on its own batch statistics (not the running ones)
    torch.testing.assert_close(dense, both.train().dense_features(x))
    assert all(m.track_running_stats for m in both.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_the_torch_free_config_lists_agree_with_the_models():
    """train_config names the archs (and which take model.width) without importing torch; they must not drift."""
    import inspect

    from vidssl.train_config import ARCH_NAMES, WIDTH_ARCHS

    assert ARCH_NAMES == tuple(ARCHS)
    assert WIDTH_ARCHS == tuple(a for a, cls in ARCHS.items() if "width" in cls.model_config_keys)
    for arch, cls in ARCHS.items():  # every key the model section passes is a constructor argument
        assert set(cls.model_config_keys) <= set(inspect.signature(cls).parameters), arch


def test_model_width_reaches_smallcnn_and_is_refused_elsewhere():
    from vidssl.config import load_config
    from vidssl.errors import ConfigError
    from vidssl.train import build_model

    assert build_model(load_config(None, ["model.width=8"])).backbone.dense_dim == 64
    with pytest.raises(ConfigError, match="'model.width' applies to smallcnn only, not to model.arch 'resnet18'"):
        load_config(None, ["model.arch=resnet18", "model.width=999"])
    load_config(None, ["model.arch=resnet18"])  # the default width is no request


def test_build_model_leaves_the_callers_generator_alone():
    from vidssl.config import load_config
    from vidssl.train import build_model

    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    first = build_model(load_config(None, ["model.width=8"]))
    assert torch.equal(torch.rand(3), expected)
    second = build_model(load_config(None, ["model.width=8"]))  # and the init is a function of cfg.seed alone
    assert all(torch.equal(v, second.state_dict()[k]) for k, v in first.state_dict().items())


def test_a_0_255_batch_holding_a_nan_is_still_refused():
    """NaN made the batch's max NaN, which no comparison with 1.5 catches: the 0-255 batch passed."""
    from vidssl.models.base import normalize_rgb

    x = torch.rand(1, 3, 8, 8) * 255
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="divide 0-255 images by 255"):
        normalize_rgb(x, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


# from a mutation review of the models

RECEPTIVE_FIELD = {"smallcnn": 59, "alexnet_wang2015": 163, "resnet18": 195, "resnet50": 267}  # README, base.py


@pytest.mark.parametrize("arch", list(ARCHS))
def test_every_arch_cell_is_centred_on_stride_i_plus_offset_with_its_documented_receptive_field(arch):
    """README: "Cell (i, j) is centred on input pixel (8i, 8j) (receptive fields: smallcnn 59 px, alexnet_wang2015
    163, resnet18 195, resnet50 267)"; flow places vectors by the card's cell_offset. Only smallcnn was measured;
    alexnet's and resnet's dense views were checked only against references that copy the implementation's
    paddings. Kills: an AlexNet conv1 padded asymmetrically (one pixel shift, same shape), a ResNet/AlexNet
    dilation dropped in the implementation *and* its mirror reference, a wrong cell_offset class attribute, a
    stride-2 moved inside smallcnn. The gradient's support is the receptive field (float64, so no value is lost)."""
    torch.manual_seed(0)
    b = build_backbone(arch, input_size=64).double().eval()
    rf = RECEPTIVE_FIELD[arch]
    half = (rf - 1) // 2
    side = 8 * (half // 8 + 3) * 2  # room for a full field around two cells near the middle
    x = torch.randn(1, 3, side, side, dtype=torch.float64, requires_grad=True)
    dense = b.dense_features(x)
    s, off = b.dense_stride, b.cell_offset
    assert s == 8 and off == 0
    for i, j in ((side // 16, side // 16), (side // 16 + 1, side // 16 - 1)):
        (grad,) = torch.autograd.grad(dense[0, :, i, j].sum(), x, retain_graph=True)
        hit = grad[0].abs().sum(0) > 0
        rows, cols = torch.nonzero(hit.any(1)).flatten(), torch.nonzero(hit.any(0)).flatten()
        assert (rows.min().item(), rows.max().item()) == (s * i + off - half, s * i + off + half), arch
        assert (cols.min().item(), cols.max().item()) == (s * j + off - half, s * j + off + half), arch


def test_alexnet_embed_refuses_inputs_below_63_px_by_name():
    """pool5 of a 62-px input has no cell: embed() said "smaller than 63 pixels", a check that no test read.
    Kills: alexnet.py:66 ``self.check(x, self.min_embed_side)`` -> ``self.check(x)`` (torch's RuntimeError
    "Output size is too small" from max_pool2d instead). 63 px is the smallest with a pool5 cell, by hand:
    (63 + 4 - 11) // 4 + 1 = 15 -> 7 -> 3 -> 1; 62 -> 14 -> 6 -> 2 -> 0."""
    b = build_backbone("alexnet_wang2015", input_size=64).eval()
    with torch.no_grad():
        assert b.embed(torch.randn(1, 3, 63, 63)).shape == (1, 1024)
        with pytest.raises(ValueError, match=r"smaller than 63 pixels on a side"):
            b.embed(torch.randn(1, 3, 62, 200))
        assert b.dense_features(torch.randn(1, 3, 32, 32)).shape == (1, 256, 4, 4)  # the dense view takes 32


def test_alexnet_embed_of_a_larger_input_averages_pool5_to_the_fc6_grid():
    """Kills: alexnet.py:57 AdaptiveAvgPool2d -> AdaptiveMaxPool2d (every test fed inputs whose pool5 already had
    fc6's grid, or a smaller one pooled *up*, where avg and max agree). Reference: the mean of pool5 by hand."""
    torch.manual_seed(0)
    b = build_backbone("alexnet_wang2015", input_size=64).eval()  # fc6 takes a 1x1 grid
    x = torch.randn(2, 3, 128, 128)  # pool5 3x3
    with torch.no_grad():
        pool5 = b.features(x)
        assert pool5.shape[-2:] == (3, 3)
        torch.testing.assert_close(b.embed(x), b.classifier(pool5.mean(dim=(2, 3))))


@pytest.mark.parametrize("arch", list(ARCHS))
def test_every_arch_normalises_with_torchvision_imagenet_statistics_in_rgb_order(arch):
    """README: normalize applies "ImageNet's, for every architecture". Kills: a class-level mean/std override in
    BGR order on alexnet or smallcnn (mean and std both reversed: the +-4.9 bound in the error-message test is
    unchanged, so it survived; only resnet18's card is checked, in a slow test_export fixture). The reference is
    torchvision's own ImageNet preset, not vidssl's constants."""
    preset = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.transforms()
    b = build_backbone(arch, input_size=64)
    assert list(b.mean) == list(preset.mean) and list(b.std) == list(preset.std)
    red = torch.zeros(1, 3, 32, 32)
    red[:, 0] = 1.0
    torch.testing.assert_close(b.normalize(red)[0, :, 0, 0],
                               torch.tensor([(1 - 0.485) / 0.229, -0.456 / 0.224, -0.406 / 0.225]))


def test_the_embedding_is_float32_under_bf16_autocast_in_both_forwards():
    """EmbeddingNet.forward promises float32 unit vectors; under the trainer's bf16 autocast the head's Linear
    returns bf16. Only fp32 was tested, so dropping ``.float()`` from the dense=True branch (embedding.py:48,
    the branch every default training step takes, the cycle loss being on) survived: the miner and ranking loss
    would then work on 8-bit-mantissa cosines."""
    torch.manual_seed(0)
    net = EmbeddingNet(build_backbone("smallcnn", width=4), embed_dim=16).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        plain = net(x)
        emb, maps = net(x, dense=True)
    assert plain.dtype == emb.dtype == torch.float32
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(4))


def test_mlp_head_is_linear_bn_relu_linear():
    """configs/gpu_resnet50.yaml trains with head: mlp and no test looked inside it. Kills: embedding.py:15
    BatchNorm1d or ReLU dropped (the head then collapses to one linear map)."""
    torch.manual_seed(0)
    net = EmbeddingNet(build_backbone("smallcnn", width=4), embed_dim=8, head="mlp")
    kinds = [type(m) for m in net.head]
    assert kinds == [torch.nn.Linear, torch.nn.BatchNorm1d, torch.nn.ReLU, torch.nn.Linear]
    assert (net.head[0].in_features, net.head[0].out_features, net.head[3].out_features) == (32, 32, 8)
    net.eval()
    with torch.no_grad():  # not linear: f(2p) != 2 f(p) before the L2 norm
        p = torch.randn(3, 32)
        assert not torch.allclose(net.head(2 * p) - net.head[3].bias, 2 * (net.head(p) - net.head[3].bias))


def test_embed_refuses_exactly_past_twice_the_normalised_bound():
    """README: "values beyond twice the largest normalize() passes on (+-4.9 ...: an error past +-9.7)". Kills:
    base.py:141 ``2 * bound`` -> ``3 * bound`` (the 0-255 test values, ~1100, are past either)."""
    b = build_backbone("smallcnn", width=4).eval()
    limit = 2 * input_bound(b.mean, b.std)
    assert round(limit, 1) == 9.7  # (1.5 - 0.406) / 0.225 = 4.862, twice it
    with torch.no_grad():
        b.embed(torch.full((1, 3, 32, 32), limit - 0.01))
        with pytest.raises(ValueError, match="over twice"):
            b.embed(torch.full((1, 3, 32, 32), limit + 0.01))
        with pytest.raises(ValueError, match="over twice"):
            b.embed(torch.full((1, 3, 32, 32), -limit - 0.01))


def test_alexnet_options_survive_export_and_load(tmp_path):
    """spec() is what the card rebuilds from; fc7_relu adds no parameter, so a strict load cannot notice it lost.
    Kills: alexnet.py:89 ``"fc7_relu"`` (or fc6_dim) left out of spec() -- a signed-fc7 AlexNet reloads with a
    ReLU and embeds differently, silently."""
    torch.manual_seed(0)
    b = build_backbone("alexnet_wang2015", input_size=64, fc6_dim=256, fc7_relu=False).eval()
    save_backbone(b, tmp_path / "a.pt", safetensors=False)
    loaded = vidssl.load_backbone(tmp_path / "a.pt")
    assert loaded.spec() == b.spec()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert (b.embed(x) < 0).any()
        assert torch.equal(loaded.embed(x), b.embed(x))
