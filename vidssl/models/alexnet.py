"""AlexNet as in Wang & Gupta (2015): conv1-5, fc6 4096, fc7 1024, with torchvision's key names.

Departures from the authors' released Caffe net (``rank_alexnet/imagenet_train.prototxt``), for the key names:
torchvision's conv widths (64, 192, 384, 256, 256) without grouped convolutions or LRN, where CaffeNet has
(96, 256, 384, 384, 256), groups of 2 in conv2/4/5 and LRN after conv1/2; torchvision's ``features.*`` then load
strictly. As released: ReLU after fc7 (the embedding is non-negative before its L2 norm, so 1 - cos lies in [0, 1],
which the margin of 0.5 is measured against) and no dropout in training. Inputs are normalised as for every vidssl
backbone (RGB in [0, 1], ImageNet's mean and std), where Caffe subtracted a mean image from BGR pixels in 0-255 and
divided by nothing: the first layer sees inputs about 60 times smaller, which, with no BatchNorm here, changes the
effective scale of its initialisation and learning rate.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vidssl.models.base import Backbone

# indices of the layers in `features`, as in torchvision.models.alexnet (so the state dict keys match it)
_CONV1, _POOL1, _CONV2, _POOL2, _CONV3, _CONV4, _CONV5 = 0, 2, 3, 5, 6, 8, 10


def _pool5_side(size: int) -> int:
    """Spatial side after pool5 for an input of side ``size`` (227 -> 6, as in the paper; 64 -> 1)."""
    side = (size + 2 * 2 - 11) // 4 + 1  # conv1
    for _ in range(3):  # pool1, pool2, pool5 (3x3, stride 2); conv2-5 keep the size
        side = (side - 3) // 2 + 1
    if side < 1:
        raise ValueError(f"alexnet_wang2015 needs patches of at least 63 pixels, got {size}")
    return side


class AlexNetWang2015(Backbone):
    """conv1-5 (torchvision AlexNet widths), fc6 4096 and fc7 1024 (the paper's embedding), ReLU after each;
    ``dropout`` before fc6 and fc7 (0: none, as released), ``fc7_relu`` False leaves the embedding signed.

    The pool5 grid is sized for ``input_size`` (6x6 at 227 px as in the paper) and fc6 takes 256 x grid^2 inputs;
    other input sizes are adaptively pooled to that grid. embed returns fc7 (``out_dim`` 1024).

    dense_features: conv5 at stride 8, the same weights run with conv1 padded to 5 (centred, ceil(H/4)),
    pool1 padded (ceil), pool2 at stride 1 and conv3-5 dilated by 2 to keep their receptive field.
    """

    arch = "alexnet_wang2015"
    dense_dim = 256
    min_embed_side = 63  # pool5 needs one cell
    older_records = {"fc7_relu": False}  # exports and checkpoints before fc7's ReLU (git 5a64417) embed signed

    def __init__(self, input_size: int = 227, fc6_dim: int = 4096, fc7_dim: int = 1024, dropout: float = 0.0,
                 fc7_relu: bool = True):
        super().__init__(input_size)
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        )
        self.grid = _pool5_side(input_size)
        self.avgpool = nn.AdaptiveAvgPool2d(self.grid)
        self.classifier = nn.Sequential(  # indices 1 and 4 as torchvision's fc6 and fc7
            nn.Dropout(dropout), nn.Linear(256 * self.grid ** 2, fc6_dim), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(fc6_dim, fc7_dim), *([nn.ReLU()] if fc7_relu else []),
        )
        self.out_dim = fc7_dim
        self.fc6_dim, self.dropout, self.fc7_relu = fc6_dim, dropout, fc7_relu

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        self.check(x, self.min_embed_side)
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    def embed_size_note(self, side: int) -> str | None:
        grid = _pool5_side(side)
        if grid >= self.grid:
            return None
        return (f"at {side} px its pool5 grid is {grid}x{grid}, pooled up to the {self.grid}x{self.grid} that fc6 "
                f"takes at its {self.input_size}-px input size")

    def dense_features(self, x: torch.Tensor) -> torch.Tensor:
        self.check(x)
        f = self.features
        x = F.relu(F.conv2d(x, f[_CONV1].weight, f[_CONV1].bias, stride=4, padding=5))
        x = F.max_pool2d(x, 3, 2, padding=1)
        x = F.relu(f[_CONV2](x))
        x = F.max_pool2d(x, 3, 1, padding=1)
        for i in (_CONV3, _CONV4, _CONV5):
            x = F.relu(F.conv2d(x, f[i].weight, f[i].bias, padding=2, dilation=2))
        return x

    def spec(self) -> dict:
        return {**super().spec(), "fc6_dim": self.fc6_dim, "fc7_dim": self.out_dim, "dropout": self.dropout,
                "fc7_relu": self.fc7_relu}
