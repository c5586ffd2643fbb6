"""Flow pairs with ground truth, found in the layouts their benchmarks ship.

- Middlebury: ``other-data/<seq>/frame10.png``, ``frame11.png`` (or ``other-data-gray/``) and
  ``other-gt-flow/<seq>/flow10.flo``.
- Sintel, one folder per pair set (as in ``$VIDSSL_DATA/flow``): ``<seq>/frame_XXXX.png``, ``<seq>/gt/frame_XXXX.flo``,
  ``<seq>/gt/invalid/frame_XXXX.png``, ``<seq>/gt/occlusions/frame_XXXX.png``.
- Sintel as released: ``training/{clean,final}/<seq>/frame_XXXX.png``, ``training/flow/<seq>/frame_XXXX.flo``,
  ``training/invalid/<seq>/``, ``training/occlusions/<seq>/``.
- KITTI 2012/2015: ``training/{image_2,colored_0,image_0}/NNNNNN_10.png`` and ``_11.png``,
  ``training/flow_occ/NNNNNN_10.png`` (all pixels with ground truth) and ``training/flow_noc/`` (non-occluded ones).
"""
from __future__ import annotations

import fnmatch
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vidssl.errors import ConfigError, VidsslError, shell_arg
from vidssl.eval.flow.io import FlowFileError, known_flow, read_flo, read_image, read_kitti_flow, read_mask

log = logging.getLogger(__name__)

LAYOUTS_HELP = ("Middlebury (other-data/<seq>/frame10.png + other-gt-flow/<seq>/flow10.flo), Sintel "
                "(<seq>/frame_XXXX.png + <seq>/gt/frame_XXXX.flo, or training/{clean,final,flow}/<seq>/), "
                "KITTI (training/image_2/NNNNNN_10.png + training/flow_occ/NNNNNN_10.png)")


@dataclass(frozen=True)
class FlowPair:
    """Where one pair's files are. ``flow`` is a ``.flo`` or a KITTI PNG (chosen by suffix)."""

    name: str  # stable id: frame 1's path relative to the data folder, without suffix
    frame1: Path
    frame2: Path
    flow: Path
    dataset: str  # the benchmark (and Sintel pass, where the layout says it): metrics are also given per dataset
    invalid: Path | None = None  # Sintel: pixels excluded from evaluation
    occlusions: Path | None = None  # Sintel: frame-1 pixels not visible in frame 2
    flow_noc: Path | None = None  # KITTI: ground truth restricted to non-occluded pixels


@dataclass
class FlowSample:
    """A loaded pair: frames uint8 [H, W, 3] RGB, ``flow`` float32 [H, W, 2], ``valid`` / ``occluded`` bool [H, W]."""

    name: str
    image1: np.ndarray
    image2: np.ndarray
    flow: np.ndarray
    valid: np.ndarray
    occluded: np.ndarray | None  # None where the benchmark ships no occlusion information


def _read_flo_valid(path: Path) -> tuple[np.ndarray, np.ndarray]:
    flow = read_flo(path)
    valid = known_flow(flow)
    return np.where(valid[:, :, None], flow, 0.0).astype(np.float32), valid


FLOW_READERS = {".flo": _read_flo_valid, ".png": read_kitti_flow}


def _on_disk(path: Path) -> Path:
    """``path``, or the file of its name with the extension in the other case (``frame_0002.PNG`` for
    ``frame_0002.png``) where only that one exists: a case-sensitive file system tells them apart, the readers
    do not. ``path`` itself where neither exists, for the error to name."""
    if path.is_file():
        return path
    for suffix in (path.suffix.upper(), path.suffix.lower()):
        if suffix != path.suffix and path.with_suffix(suffix).is_file():
            return path.with_suffix(suffix)
    return path


def _existing(path: Path) -> Path | None:
    path = _on_disk(path)
    return path if path.is_file() else None


def _first_existing(paths) -> Path | None:
    return next((p for p in map(_on_disk, paths) if p.is_file()), None)


def _ground_truth(root: Path, pattern: str, suffix: str) -> list[Path]:
    """Files under ``root`` matching ``pattern + suffix``, the suffix in any case (``flow10.FLO``, KITTI's
    ``000000_10.PNG``: the readers take either), sorted; where one name is there in two cases, the lower-case one."""
    any_case = "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in suffix)
    found = set(root.rglob(pattern + any_case))
    return sorted(p for p in found if p.suffix == suffix or p.with_suffix(suffix) not in found)


def _name(frame1: Path, root: Path) -> str:
    return frame1.relative_to(root).with_suffix("").as_posix()


def _middlebury(root: Path) -> list[FlowPair]:
    pairs = []
    for gt in _ground_truth(root, "other-gt-flow/*/flow10", ".flo"):
        base, seq = gt.parent.parent.parent, gt.parent.name
        frames = _first_existing(base / d / seq / "frame10.png" for d in ("other-data", "other-data-gray"))
        if frames is None:
            log.warning("skipping %s: no other-data/%s/frame10.png beside it", gt, seq)
            continue
        pairs.append(FlowPair(_name(frames, root), frames, _on_disk(frames.with_name("frame11.png")), gt,
                              "Middlebury"))
    return pairs


def _next_frame(frame: Path, gt: Path) -> Path | None:
    """The frame after ``frame`` (``name_0007`` -> ``name_0008``); None, with a warning naming the ground truth
    ``gt``, when the name has no frame number (a stray copy such as ``frame_0002_old.flo``)."""
    match = re.fullmatch(r"(.*)_(\d+)", frame.stem)
    if match is None:
        log.warning("skipping %s: its name does not end in _<frame number>, so its next frame is unknown", gt)
        return None
    stem, number = match.groups()
    return _on_disk(frame.with_name(f"{stem}_{int(number) + 1:0{len(number)}d}{frame.suffix}"))


def _sintel_folders(root: Path) -> list[FlowPair]:
    pairs = []
    for gt in _ground_truth(root, "gt/frame_*", ".flo"):
        seq_dir = gt.parent.parent
        frame1 = _on_disk(seq_dir / f"{gt.stem}.png")
        frame2 = _next_frame(frame1, gt)
        if frame2 is None:
            continue
        pairs.append(FlowPair(_name(frame1, root), frame1, frame2, gt, _sintel_pass(seq_dir, root),
                              _existing(gt.parent / "invalid" / f"{gt.stem}.png"),
                              _existing(gt.parent / "occlusions" / f"{gt.stem}.png")))
    return pairs


def _sintel_pass(seq_dir: Path, root: Path) -> str:
    """"Sintel clean" / "Sintel final" where a word of the sequence's path says the pass (`sintel_clean_alley_1`,
    `final/ambush_2`), else "Sintel"."""
    words = set(re.split(r"[^a-z0-9]+", seq_dir.relative_to(root).as_posix().lower()))
    passes = [name for name in ("clean", "final") if name in words]
    return f"Sintel {passes[0]}" if len(passes) == 1 else "Sintel"


def _sintel_release(root: Path) -> list[FlowPair]:
    pairs = []
    for gt in _ground_truth(root, "flow/*/frame_*", ".flo"):
        training, seq = gt.parent.parent.parent, gt.parent.name
        for render_pass in ("clean", "final"):
            frame1 = _on_disk(training / render_pass / seq / f"{gt.stem}.png")
            frame2 = _next_frame(frame1, gt) if frame1.is_file() else None
            if frame2 is not None:
                pairs.append(FlowPair(_name(frame1, root), frame1, frame2, gt, f"Sintel {render_pass}",
                                      _existing(training / "invalid" / seq / f"{gt.stem}.png"),
                                      _existing(training / "occlusions" / seq / f"{gt.stem}.png")))
    return pairs


def _kitti(root: Path) -> list[FlowPair]:
    pairs = []
    for gt in _ground_truth(root, "flow_occ/*_10", ".png"):
        training = gt.parent.parent
        frame1 = _first_existing(training / d / gt.name for d in ("image_2", "colored_0", "image_0"))
        if frame1 is None:
            log.warning("skipping %s: no image_2/, colored_0/ or image_0/%s beside it", gt, gt.name)
            continue
        frame2 = _next_frame(frame1, gt)
        if frame2 is not None:
            pairs.append(FlowPair(_name(frame1, root), frame1, frame2, gt, "KITTI",
                                  flow_noc=_existing(training / "flow_noc" / gt.name)))
    return pairs


LAYOUTS = {"middlebury": _middlebury, "sintel": _sintel_folders, "sintel_release": _sintel_release, "kitti": _kitti}


def pairs_under(root: Path) -> list[FlowPair]:
    """Every pair under the folder ``root`` in a known layout, in a deterministic order: layout by layout (LAYOUTS'
    order), each layout's pairs by the path of their ground truth; [] where it holds none (not a flow dataset)."""
    return [p for find in LAYOUTS.values() for p in find(root)]


def find_pairs(root: str | os.PathLike) -> list[FlowPair]:
    """:func:`pairs_under` ``root``; an error naming the folder and the layouts where there is none."""
    root = Path(root)
    if not root.is_dir():
        raise VidsslError(f"flow data folder not found: {root}; pass --data DIR holding pairs in a known layout: "
                          f"{LAYOUTS_HELP}")
    pairs = pairs_under(root)
    if not pairs:
        raise VidsslError(f"no flow pairs with ground truth under {root}{_release_hint(root)}; expected one of: "
                          f"{LAYOUTS_HELP}")
    return pairs


# the frame and ground-truth folders of a release's training/, which pairs need side by side
_RELEASES = (("Sintel", ("clean", "final"), "flow", ("invalid", "occlusions")),
             ("KITTI", ("image_2", "colored_0", "image_0"), "flow_occ", ("flow_noc",)))


def _release_hint(root: Path) -> str:
    """Why a folder of a Sintel or KITTI release holds no pair, naming the folder to pass: ``training/clean`` has
    the frames and ``training/flow`` the ground truth, so pairs are found only from the folder holding both."""
    for benchmark, frames, truth, masks in _RELEASES:
        if root.name in (*frames, truth, *masks):
            training = root.parent
        elif root.name == "training":
            training = root
        else:
            continue
        if not any((training / name).is_dir() for name in frames):
            continue
        if not (training / truth).is_dir():
            return (f" ({training} has {benchmark} frames but no {truth}/ beside them, where the release keeps "
                    "its ground truth)")
        if training != root:
            # the release's own folder rather than its training/: the pairs' names then start with training/, as
            # the documented eval.flow.pairs patterns do
            release = training.parent if training.name == "training" else training
            return (f" ({root.name}/ is one part of a {benchmark} release: pairs are found from a folder holding "
                    f"its frames and its {truth}/ ground truth, so pass --data {shell_arg(release)})")
    return ""


def select_pairs(pairs: list[FlowPair], patterns: list[str], root: str | os.PathLike) -> list[FlowPair]:
    """The pairs whose name matches one of the glob ``patterns`` (``eval.flow.pairs``; * also spans '/'), in their
    order; all of them when there is no pattern. A pattern that matches no pair is an error listing some names."""
    if not patterns:
        return pairs
    unmatched = [pattern for pattern in patterns if not any(fnmatch.fnmatchcase(p.name, pattern) for p in pairs)]
    if unmatched:
        names = [p.name for p in pairs]
        shown = ", ".join(names[:: max(1, len(names) // 5)][:5])  # a few, spread over the layouts and sequences
        raise ConfigError(f"config key 'eval.flow.pairs': {', '.join(map(repr, unmatched))} matches none of the "
                          f"{len(names)} pairs under {root}, named by frame 1's path without suffix, e.g. {shown}")
    return [p for p in pairs if any(fnmatch.fnmatchcase(p.name, pattern) for pattern in patterns)]


def load_pair(pair: FlowPair) -> FlowSample:
    """Read a pair's frames, ground truth and masks; raise :class:`FlowFileError` naming the file that is wrong."""
    image1, image2 = read_image(pair.frame1), read_image(pair.frame2)
    flow, valid = FLOW_READERS[pair.flow.suffix.lower()](pair.flow)
    for path, shape in ((pair.frame1, image1.shape), (pair.frame2, image2.shape)):
        if shape[:2] != flow.shape[:2]:
            raise FlowFileError(path, f"frame is {shape[1]}x{shape[0]} but the ground truth {pair.flow} is "
                                      f"{flow.shape[1]}x{flow.shape[0]}")
    occluded = None
    if pair.invalid is not None:
        valid &= ~_mask(pair.invalid, flow.shape)
    if pair.occlusions is not None:
        occluded = _mask(pair.occlusions, flow.shape)
    if pair.flow_noc is not None:
        noc_flow, noc = read_kitti_flow(pair.flow_noc)
        if noc.shape != valid.shape:
            raise FlowFileError(pair.flow_noc, f"is {noc_flow.shape[1]}x{noc_flow.shape[0]} but the ground truth "
                                               f"{pair.flow} is {flow.shape[1]}x{flow.shape[0]}")
        occluded = valid & ~noc
    if not valid.any():
        raise FlowFileError(pair.flow, "no pixel has valid ground truth")
    return FlowSample(pair.name, image1, image2, flow, valid, occluded)


def _mask(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    mask = read_mask(path)
    if mask.shape != shape[:2]:
        raise FlowFileError(path, f"mask is {mask.shape[1]}x{mask.shape[0]}, ground truth is {shape[1]}x{shape[0]}")
    return mask
