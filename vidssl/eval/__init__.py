"""Transfer evaluation: retrieval, optical flow and DAVIS label propagation. Each produces raw predictions, then a
deterministic scorer turns them into metrics."""
from __future__ import annotations

from pathlib import Path


def weights_row_name(path: str | Path) -> str:
    """The row name every evaluation gives an exported weights file: ``<folder>/<stem>`` (``runs/a/backbone.pt``
    -> ``a/backbone``), or the stem alone for a file in the current folder. Kept in one place so that reports and
    ``vidssl compare`` find the trained model's row."""
    path = Path(path)
    return f"{path.parent.name}/{path.stem}" if path.parent.name else path.stem
