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


def retire_results(out_dir: str | Path, figures: tuple[str, ...] = ()) -> None:
    """Remove an earlier evaluation's ``metrics.json`` and ``metrics.md`` from ``out_dir``, and its PNGs matching
    the glob patterns ``figures`` (relative to ``out_dir``): called just before the new evaluation writes its first
    file, so that a rerun into the same folder that fails half way leaves no old scores beside its new pictures,
    one that fails before (bad data, a broken model) loses nothing, and one of other models or sequences leaves no
    earlier masks or grids to be read as its own. The PNGs go only from a folder an evaluation wrote into (its
    metrics or config.yaml are there), and only PNGs: an --out that is a folder of the user's is not emptied."""
    out_dir = Path(out_dir)
    if any((out_dir / name).is_file() for name in ("metrics.json", "metrics.md", "config.yaml")):
        for pattern in figures:
            for path in sorted(out_dir.glob(pattern)):
                if path.suffix == ".png" and path.is_file() and not path.is_symlink():
                    path.unlink()
                    for folder in path.parents:  # a model's or sequence's folder left empty: a scorer reads it
                        if folder == out_dir or any(folder.iterdir()):  # as a sequence with no predictions
                            break
                        folder.rmdir()
    for name in ("metrics.json", "metrics.md"):
        (out_dir / name).unlink(missing_ok=True)
