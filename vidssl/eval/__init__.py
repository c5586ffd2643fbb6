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


def retire_results(out_dir: str | Path) -> None:
    """Remove an earlier evaluation's ``metrics.json`` and ``metrics.md`` from ``out_dir``: called just before the
    new evaluation writes its first file, so that a rerun into the same folder that fails half way leaves no old
    scores beside its new pictures, and one that fails before (bad data, a broken model) loses nothing."""
    for name in ("metrics.json", "metrics.md"):
        (Path(out_dir) / name).unlink(missing_ok=True)
