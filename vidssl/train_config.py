"""Configuration of the pair loader, model, loss, miner, trainer and export. Composed into vidssl.config.Config."""
from __future__ import annotations

from dataclasses import dataclass

from vidssl.schema import opt


@dataclass
class DataConfig:
    """streaming the mined pairs into training batches"""

    patch_size: int = opt(64, "side of the network input in pixels (patches are resized to it)")
    num_workers: int = opt(2, "DataLoader worker processes (0: load in the main process)")


@dataclass
class ModelConfig:
    """the backbone and its embedding head"""

    arch: str = opt("smallcnn", "backbone: smallcnn | alexnet_wang2015 | resnet18 | resnet50")
    embed_dim: int = opt(1024, "dimension of the L2-normalised embedding (paper: 1024)")


@dataclass
class LossConfig:
    """the ranking loss on (anchor, positive, negative) triplets"""

    margin: float = opt(0.5, "margin M of the ranking loss (paper: 0.5)")


@dataclass
class MinerConfig:
    """negative selection: random, hard, semi-hard, and the schedule between them"""

    negatives_per_pair: int = opt(4, "K negatives per positive pair (paper: 4)")


@dataclass
class TrainConfig:
    """the optimiser, schedule, checkpoints and logs"""

    lr: float = opt(0.05, "initial learning rate of SGD")
    batch_pairs: int = opt(64, "P positive pairs per batch")


@dataclass
class ExportConfig:
    """what `vidssl export` writes"""

    safetensors: bool = opt(True, "also write backbone.safetensors beside backbone.pt")
