"""Backbones by name and the Siamese-triplet embedding model.

``build_backbone(arch, **kwargs)`` returns a randomly initialised :class:`Backbone` (the caller seeds torch).
"""
from __future__ import annotations

from vidssl.models.alexnet import AlexNetWang2015
from vidssl.models.base import IMAGENET_MEAN, IMAGENET_STD, Backbone
from vidssl.models.embedding import HEADS, EmbeddingNet
from vidssl.models.resnet import ResNet18, ResNet50
from vidssl.models.smallcnn import SmallCNN

ARCHS: dict[str, type[Backbone]] = {
    "smallcnn": SmallCNN,
    "alexnet_wang2015": AlexNetWang2015,
    "resnet18": ResNet18,
    "resnet50": ResNet50,
}


def build_backbone(arch: str, **kwargs) -> Backbone:
    """A randomly initialised backbone; ``kwargs`` go to its constructor (``input_size``; ``width`` for smallcnn)."""
    try:
        cls = ARCHS[arch]
    except KeyError:
        raise ValueError(f"unknown arch '{arch}'; valid: {', '.join(ARCHS)}") from None
    return cls(**kwargs)


def recorded_kwargs(arch: str, kwargs: dict) -> dict:
    """The constructor arguments of the network a model card's or checkpoint's record (``arch``, ``kwargs``)
    describes: ``kwargs`` completed with the values records written before an argument existed imply
    (``Backbone.older_records``), where the argument's default would build another forward."""
    if arch not in ARCHS:
        raise ValueError(f"unknown arch '{arch}'; valid: {', '.join(ARCHS)}")
    return {**ARCHS[arch].older_records, **kwargs}


__all__ = ["ARCHS", "HEADS", "IMAGENET_MEAN", "IMAGENET_STD", "Backbone", "EmbeddingNet", "build_backbone", "recorded_kwargs"]
