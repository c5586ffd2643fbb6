"""Configuration of the tracking (mining) stage. Owned by tracking/; composed into vidssl.config.Config."""
from __future__ import annotations

from dataclasses import dataclass

from vidssl.schema import opt


@dataclass
class MineConfig:
    """mining positive pairs by tracking moving regions (vidssl mine)"""

    track_length: int = opt(30, "frames a region is tracked; the pair is (first patch, last patch)")
    patch_size: int = opt(96, "side of the stored square patches in pixels")
