"""Transfer evaluation: retrieval, optical flow and DAVIS label propagation. Each produces raw predictions, then a
deterministic scorer turns them into metrics."""
from __future__ import annotations

from pathlib import Path

# out_dir/masks/: DAVIS's predicted palette PNGs (eval.davis.save_masks), outputs rather than figures; here, not in
# vidssl.eval.davis, so that the report can leave them out without importing torch
MASKS = "masks"


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
    earlier masks or grids to be read as its own. The PNGs go only where an earlier evaluation's metrics are (not a
    folder of the user's, nor a pretrain run folder, whose ``pairs/`` holds the mining's grid), only PNGs, and
    never through a linked folder."""
    from vidssl.video import is_run_folder

    out_dir = Path(out_dir)
    if any((out_dir / name).is_file() for name in ("metrics.json", "metrics.md")) and not is_run_folder(out_dir):
        for pattern in figures:
            for path in sorted(out_dir.glob(pattern)):
                inside = path.relative_to(out_dir).parents[:-1]  # the folders between out_dir and the file
                if path.suffix != ".png" or path.is_symlink() or not path.is_file() or \
                        any((out_dir / folder).is_symlink() for folder in inside):
                    continue
                path.unlink()
                for folder in inside:  # a model's or sequence's folder left empty: a scorer reads it as a
                    if any((out_dir / folder).iterdir()):  # sequence with no predictions
                        break
                    (out_dir / folder).rmdir()
    for name in ("metrics.json", "metrics.md"):
        (out_dir / name).unlink(missing_ok=True)
