"""Configuration of the transfer evaluations. Composed into vidssl.config.Config as the `eval` section."""
from __future__ import annotations

from dataclasses import dataclass, field

from vidssl.schema import opt


@dataclass
class RetrievalConfig:
    """retrieval benchmark (vidssl eval retrieval)"""

    image_size: int = opt(64, "images are resized to this side before feature extraction")
    min_gap: int = opt(10, "DAVIS instance retrieval: a crop queries only crops at least this many frames away")


@dataclass
class FlowConfig:
    """optical-flow transfer benchmark (vidssl eval flow)"""

    max_displacement: int = opt(4, "correlation volume radius in feature cells")


@dataclass
class DavisConfig:
    """DAVIS label propagation (vidssl eval davis)"""

    context: int = opt(20, "previous frames used as context besides the first")
    topk: int = opt(10, "top-k affinities kept per target pixel")
    temperature: float = opt(0.07, "softmax temperature of the affinities")
    radius: int = opt(12, "spatial radius of the affinity in feature cells")


@dataclass
class EvalConfig:
    """transfer evaluations"""

    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    davis: DavisConfig = field(default_factory=DavisConfig)
