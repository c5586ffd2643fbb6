"""torchvision ResNets (weights=None) without the classifier; dense features from layer3 dilated to stride 8."""
from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from vidssl.models.base import Backbone


def _conv(m: nn.Conv2d, x: torch.Tensor, dilation: int) -> torch.Tensor:
    """``m`` at stride 1 with its 3x3 taps spread by ``dilation`` (1x1 convs unchanged)."""
    d = dilation if m.kernel_size[0] > 1 else 1
    pad = d * (m.kernel_size[0] // 2)
    return F.conv2d(x, m.weight, m.bias, stride=1, padding=pad, dilation=d)


def _block_at_stride1(block: nn.Module, x: torch.Tensor, dilation: int) -> torch.Tensor:
    """A BasicBlock or Bottleneck with its stride removed, as torchvision's replace_stride_with_dilation does,
    but on the same weights at call time, so one set of weights serves both the pooled and the dense view."""
    convs = [block.conv1, block.conv2] + ([block.conv3] if hasattr(block, "conv3") else [])
    bns = [block.bn1, block.bn2] + ([block.bn3] if hasattr(block, "bn3") else [])
    out = x
    for i, (conv, bn) in enumerate(zip(convs, bns)):
        out = bn(_conv(conv, out, dilation))
        if i < len(convs) - 1:
            out = F.relu(out)
    identity = x
    if block.downsample is not None:
        identity = block.downsample[1](_conv(block.downsample[0], x, 1))
    return F.relu(out + identity)


class ResNetBackbone(Backbone):
    """conv1 ... layer4 of ``torchvision.models.<arch>(weights=None)`` under the same names (fc omitted).

    embed: global average pool of layer4 (``out_dim`` 512 / 2048).
    dense_features: layer3 run at stride 1 on layer2's stride-8 map, its first block undilated and the others
    dilated by 2; ``dense_dim`` 256 / 1024. For resnet50 that is torchvision's replace_stride_with_dilation=[False,
    True, False] cut after layer3, on the same weights; torchvision refuses dilation in resnet18's BasicBlock, whose
    3x3 convs get the same treatment here (stride 1, dilation 2, padding 2).
    """

    _OUT = {"resnet18": (512, 256), "resnet50": (2048, 1024)}

    def __init__(self, arch: str, input_size: int = 64) -> None:
        super().__init__(input_size)
        import torchvision  # here, not at import: it pulls in torch._dynamo, 2 s of every command's start

        net = getattr(torchvision.models, arch)(weights=None)
        self.arch = arch
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.out_dim, self.dense_dim = self._OUT[arch]

    def _stem_to_layer2(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer2(self.layer1(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        self.check(x)
        x = self.layer4(self.layer3(self._stem_to_layer2(x)))
        return x.mean(dim=(2, 3))

    def dense_features(self, x: torch.Tensor) -> torch.Tensor:
        self.check(x)
        return self._dense_from_layer2(self._stem_to_layer2(x))

    def _dense_from_layer2(self, x: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.layer3):
            x = _block_at_stride1(block, x, dilation=1 if i == 0 else 2)
        return x

    def embed_and_dense(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.check(x)
        shared = self._stem_to_layer2(x)
        pooled = self.layer4(self.layer3(shared)).mean(dim=(2, 3))
        # layer3 runs twice; its BatchNorm running statistics are those of the strided pass alone (one update per
        # step, as embed() sees them), the dilated pass normalising by its own batch statistics while training
        with _running_stats_frozen(self.layer3):
            dense = self._dense_from_layer2(shared)
        return pooled, dense


@contextmanager
def _running_stats_frozen(module: nn.Module):
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    for m in norms:
        m.track_running_stats = False  # in training: batch statistics, buffers untouched; in eval: the buffers
    try:
        yield
    finally:
        for m in norms:
            m.track_running_stats = True


class ResNet18(ResNetBackbone):
    arch = "resnet18"

    def __init__(self, input_size: int = 64) -> None:
        super().__init__("resnet18", input_size)


class ResNet50(ResNetBackbone):
    arch = "resnet50"

    def __init__(self, input_size: int = 64) -> None:
        super().__init__("resnet50", input_size)
