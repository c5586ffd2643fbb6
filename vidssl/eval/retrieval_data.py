"""Retrieval datasets: each layout becomes a :class:`RetrievalSet` of square uint8 images with integer labels.

- ``images``: category retrieval, ``DIR/labels.csv`` (``path,class_id[,class_name]``, paths relative to DIR) or
  ``DIR/<class>/*.jpg``, or the CUB-200-2011 release folder (its tables; classes ``cub_classes``); every image
  queries all the others (the unseen-classes protocol).
- ``davis``: instance retrieval across time on DAVIS-layout sequences; each annotated object in each frame is
  cropped (square around the mask box plus a margin); label = sequence + object; a crop queries crops of its own
  sequence at least ``min_gap`` frames away (by the numbers of the frames' file names, so a subsampled sequence
  keeps its time), and every crop of the other sequences.
- ``tracks``: instance retrieval across time on a pair dataset written by ``vidssl mine`` (``dataset.json`` +
  ``manifest.jsonl`` + shards): every tracked patch (both ends of every pair, each frame of a track once) queries
  the patches of its own track at least ``track_length`` frames away and every patch of the other tracks; label =
  the track (one tracker). At most ``max_tracks`` tracks, whole, drawn with ``seed``.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from vidssl.data.pairs import REWRITE_ADVICE, written_by_writer
from vidssl.data.shards import ShardRows
from vidssl.errors import VidsslError, shell_arg
from vidssl.eval.config import RetrievalConfig
from vidssl.eval.davis_data import is_davis_root
from vidssl.eval.flow.io import truncated_jpeg  # shared with the flow frames' reader

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


log = logging.getLogger(__name__)


class RetrievalDataError(VidsslError):
    """A retrieval data folder, label file or pair dataset that cannot be used; the message names the file."""


# ----------------------------------------------------------------------------------------------------------------
# images -> square network inputs


def square_resize(image: np.ndarray, size: int) -> np.ndarray:
    """HxWx3 uint8 -> size x size x 3: shorter side resized to ``size``, then the centre square cut out."""
    h, w = image.shape[:2]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    image = cv2.resize(image, (nw, nh), interpolation=interp)
    top, left = (nh - size) // 2, (nw - size) // 2
    return np.ascontiguousarray(image[top:top + size, left:left + size])


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)


class ImageFiles(Dataset):
    """Item i -> (uint8 [3, S, S] RGB, True), or (zeros, False) when the file cannot be decoded."""

    def __init__(self, paths: list[Path], size: int):
        self.paths = list(paths)
        self.size = size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, bool]:
        bgr = cv2.imread(str(self.paths[i]), cv2.IMREAD_COLOR)
        if bgr is None or bgr.size == 0 or truncated_jpeg(self.paths[i]):
            return torch.zeros(3, self.size, self.size, dtype=torch.uint8), False
        return _to_tensor(square_resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), self.size)), True


class ImageArray(Dataset):
    """Item i -> (uint8 [3, S, S] RGB, True) from an in-memory [N, S, S, 3] uint8 array."""

    def __init__(self, images: np.ndarray):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, bool]:
        return _to_tensor(self.images[i]), True


class ShardPatches(Dataset):
    """Item i -> (uint8 [3, S, S] RGB, True): patch ``which`` (0 first, 1 last) of pair ``offset`` of a shard.
    ``remake``: the fix a damaged shard's error gives (:class:`vidssl.data.shards.ShardRows`)."""

    def __init__(self, refs: list[tuple[Path, int, int]], size: int, remake: str | None = None):
        self.refs = refs
        self.size = size
        self.remake = remake
        # no file kept open per shard: a held-out set of thousands of videos has as many
        self._rows = ShardRows(remake)

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, bool]:
        path, offset, which = self.refs[i]
        patch = self._rows.read(path, offset, first=which, count=1)[0].copy()  # writable, for the resize and tensor
        if patch.shape[0] != self.size:
            interp = cv2.INTER_AREA if patch.shape[0] > self.size else cv2.INTER_LINEAR
            patch = cv2.resize(patch, (self.size, self.size), interpolation=interp)
        return _to_tensor(patch), True


# ----------------------------------------------------------------------------------------------------------------
# datasets


@dataclass
class RetrievalSet:
    """N square images with labels, and who queries whom.

    ``queries``/``references``: item indices; ``references=None`` means the queries search each other (the query
    itself excluded). ``groups``/``times`` ([N] ints: DAVIS, tracks): same group and ``|dt| < min_gap`` is not
    retrievable; ``min_gap`` None means the config's. ``selection``: the part of the folder read, when a protocol
    leaves some of it out (the CUB release's classes, a pair dataset's tracks past ``max_tracks``), for the report.
    """

    kind: str
    items: Dataset
    labels: np.ndarray  # [N] int64
    label_names: dict[int, str]
    captions: list[str]  # [N] where each item came from, for the grid and logs
    queries: np.ndarray  # [Q] int64
    references: np.ndarray | None  # [M] int64, or None
    groups: np.ndarray | None = None
    times: np.ndarray | None = None
    min_gap: int | None = None
    skipped: dict[str, list[str]] = field(default_factory=dict)
    selection: str | None = None


def _image_set_from_csv(root: Path, csv_path: Path, size: int) -> RetrievalSet:
    paths, labels, names, skipped = [], [], {}, {}
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:  # Excel writes a byte-order mark
            reader = csv.DictReader(fh)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            if "path" not in columns or "class_id" not in columns:
                raise RetrievalDataError(f"{csv_path}: header must be path,class_id[,class_name]; found "
                                         f"{','.join(columns) or 'nothing'}")
            seen: dict[Path, int] = {}  # resolved image path -> the line that listed it
            for line, row in enumerate(reader, start=2):
                if None in row:  # csv puts the fields past the header's under None
                    raise RetrievalDataError(f"{csv_path}:{line}: {len(reader.fieldnames) + len(row[None])} "
                                             f"fields, the header has {len(reader.fieldnames)}; quote a class name "
                                             f"that holds a comma (\"Albatross, black-footed\")")
                row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
                try:
                    label = int(row["class_id"])
                except ValueError:
                    raise RetrievalDataError(f"{csv_path}:{line}: class_id {row['class_id']!r} is not an integer; "
                                             f"use one integer id per class") from None
                if not row["path"]:
                    raise RetrievalDataError(f"{csv_path}:{line}: empty path")
                path = root / row["path"]
                if not path.is_file():
                    skipped.setdefault("missing file", []).append(row["path"])
                    continue
                first = seen.setdefault(path.resolve(), line)
                if first != line:  # twice in the set, each query would find its own copy
                    raise RetrievalDataError(f"{csv_path}:{line}: {row['path']} is listed again (first on line "
                                             f"{first}); list each image once")
                paths.append(path)
                labels.append(label)
                name = row.get("class_name")
                if name:  # a row may leave the name out; two names for one id merge two classes
                    first, first_line = names.setdefault(label, (name, line))
                    if first != name:
                        raise RetrievalDataError(f"{csv_path}:{line}: class_id {label} is named {name!r}, but "
                                                 f"{first!r} on line {first_line}; give each class its own id")
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise RetrievalDataError(f"{csv_path}: cannot read ({e.__class__.__name__}: {e})") from None
    names = {label: names.get(label, (str(label),))[0] for label in labels}  # a class never named: its id
    if not paths:
        raise RetrievalDataError(f"{csv_path}: lists no existing image; paths are relative to {root}")
    missing = skipped.get("missing file", [])
    if missing:  # a labels.csv read against the wrong root, or a partial download: evaluated, but said
        log.warning("%s: %d of the %d images it lists are missing (e.g. %s), skipped; paths are relative to %s",
                    csv_path, len(missing), len(missing) + len(paths), missing[0], root)
    return _image_set(root, paths, labels, names, skipped, size)


def _visible(folder: Path) -> list[Path]:
    """The entries of ``folder`` not hidden (``.thumbs/``, ``.DS_Store``), sorted: detection and loading agree."""
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _class_folders(root: Path) -> list[tuple[Path, list[Path]]]:
    """``(class folder, its image files)`` of a class-folder layout, folders without images left out."""
    out = []
    for class_dir in (p for p in _visible(root) if p.is_dir()):
        files = [p for p in _visible(class_dir) if p.is_file() and p.suffix.lower() in IMAGE_EXTS]
        if files:
            out.append((class_dir, files))
    return out


def _image_set_from_folders(root: Path, size: int) -> RetrievalSet:
    paths, labels, names, skipped = [], [], {}, {}
    folders = _class_folders(root)
    for class_dir, files in folders:
        label = len(names)
        names[label] = class_dir.name
        paths += files
        labels += [label] * len(files)
        images = set(files)
        for other in (p for p in _visible(class_dir) if p not in images):  # listed, not silently left out
            reason = ("sub-folder (not read)" if other.is_dir() else
                      "broken link" if other.is_symlink() and not other.exists() else "not an image file")
            skipped.setdefault(reason, []).append(os.path.relpath(other, root))
    read = {class_dir for class_dir, _ in folders}
    for entry in _visible(root):  # what holds no class: images beside the folders, folders without images
        if entry.is_dir() and entry not in read:  # a folder of .gif files: say so, as for the whole tree
            skipped.setdefault("class folder without images", []).append(
                f"{entry.name} ({_found_files(entry)})" if _visible(entry) else entry.name)
        elif entry.is_file() and entry.suffix.lower() in IMAGE_EXTS:
            skipped.setdefault("image outside a class folder", []).append(entry.name)
    if not paths:
        raise RetrievalDataError(f"{root}: no images found; expected DIR/<class>/*.jpg or DIR/labels.csv "
                                 f"(path,class_id[,class_name]); {_found_files(root)}")
    for reason, items in skipped.items():
        log.warning("%s: %s, %d skipped (e.g. %s)", root, reason, len(items), items[0])
    return _image_set(root, paths, labels, names, skipped, size)


def _found_files(root: Path, shown: int = 3) -> str:
    """What ``root`` and its folders hold, for an error: a class tree of .gif or .ppm files read as "no images"."""
    files = []
    for entry in _visible(root):
        if entry.is_file():
            files.append(entry)
        elif entry.is_dir():
            files += [p for p in _visible(entry) if p.is_file()]
    supported = "images are " + ", ".join(IMAGE_EXTS)
    if not files:
        return f"{supported}; found no file in it or its folders"
    counts: dict[str, int] = {}
    for path in files:
        ext = path.suffix.lower() or "(no extension)"
        counts[ext] = counts.get(ext, 0) + 1
    common = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    listed = ", ".join(f"{n} {ext}" for ext, n in common[:shown]) + (", ..." if len(common) > shown else "")
    examples = ", ".join(os.path.relpath(p, root) for p in files[:shown])
    return f"{supported}; found {listed} (e.g. {examples})"


def is_cub_release(root: Path) -> bool:
    """The CUB-200-2011 release folder: ``images.txt`` (id, path under ``images/``) beside ``images/``."""
    return (root / "images.txt").is_file() and (root / "images").is_dir()


def _read_id_table(path: Path) -> dict[int, str]:
    """``<integer id> <value>`` per line (the CUB release's tables) -> {id: value}; a bad line is an error."""
    table = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise RetrievalDataError(f"{path}: cannot read ({e.__class__.__name__}: {e}); the CUB-200-2011 release "
                                 f"folder holds images.txt, image_class_labels.txt and classes.txt") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        key, _, value = line.strip().partition(" ")
        if not key.isdigit() or not value.strip():
            raise RetrievalDataError(f"{path}:{number}: expected '<integer id> <value>', found {line.strip()!r}")
        if table.setdefault(int(key), value.strip()) != value.strip():
            raise RetrievalDataError(f"{path}:{number}: id {key} is listed twice")
    return table


def _image_set_from_cub(root: Path, cfg: RetrievalConfig) -> RetrievalSet:
    """The classes ``cfg.cub_classes`` (first, last id) of a CUB-200-2011 release folder, as its own tables
    label them (ids 1-200; ``classes.txt`` names them, e.g. ``001.Black_footed_Albatross``)."""
    image_paths = _read_id_table(root / "images.txt")
    label_file = root / "image_class_labels.txt"
    if not label_file.is_file():
        raise RetrievalDataError(f"{label_file}: not found; the CUB-200-2011 release folder labels its images "
                                 f"there (or pass a folder with a labels.csv)")
    image_labels = _read_id_table(label_file)
    class_names = _read_id_table(root / "classes.txt") if (root / "classes.txt").is_file() else {}
    first, last = cfg.cub_classes
    paths, labels, names, skipped = [], [], {}, {}
    left_out = 0
    for image_id, relative in sorted(image_paths.items()):
        if image_id not in image_labels:
            raise RetrievalDataError(f"{label_file}: image id {image_id} ({relative}, images.txt) has no class")
        label = image_labels[image_id]
        if not label.isdigit():
            raise RetrievalDataError(f"{label_file}: image id {image_id} has class {label!r}, not an integer id")
        label = int(label)
        if not first <= label <= last:
            left_out += 1
            continue
        path = root / "images" / relative
        if not path.is_file():
            skipped.setdefault("missing file", []).append(f"images/{relative}")
            continue
        paths.append(path)
        labels.append(label)
        names.setdefault(label, class_names.get(label, str(label)))
    if not paths:
        raise RetrievalDataError(f"{root}: no image of classes {first}-{last} found under images/ "
                                 f"(eval.retrieval.cub_classes picks the classes)")
    missing = skipped.get("missing file", [])
    if missing:
        log.warning("%s: %d of the %d images images.txt lists in classes %d-%d are missing (e.g. %s), skipped",
                    root, len(missing), len(missing) + len(paths), first, last, missing[0])
    data = _image_set(root, paths, labels, names, skipped, cfg.image_size)
    # else only metrics.json's config says that a release folder's first 100 classes were never read
    data.selection = (f"CUB-200-2011 release, classes {first}-{last} (eval.retrieval.cub_classes; {left_out} images "
                      f"of other classes left out)")
    return data


def _image_set(root, paths, labels, names, skipped, size) -> RetrievalSet:
    n = len(paths)
    return RetrievalSet(kind="images", items=ImageFiles(paths, size), labels=np.asarray(labels, dtype=np.int64),
                        label_names=names, captions=[os.path.relpath(p, root) for p in paths],
                        queries=np.arange(n), references=None, skipped=skipped)


def load_image_set(root: str | os.PathLike, cfg: RetrievalConfig) -> RetrievalSet:
    """Category retrieval: ``labels.csv`` when present, else the CUB-200-2011 release's tables, else one
    sub-folder per class."""
    root = Path(root)
    csv_path = root / "labels.csv"
    if csv_path.is_file():
        return _image_set_from_csv(root, csv_path, cfg.image_size)
    if is_cub_release(root):
        return _image_set_from_cub(root, cfg)
    return _image_set_from_folders(root, cfg.image_size)


# what a crop is padded with past the frame's edge: the ImageNet mean, which the backbones' normalisation maps to 0,
# as their convolutions pad
PAD_RGB = (124, 116, 104)


def square_box(box: tuple[int, int, int, int], margin: float, width: int, height: int) -> tuple[int, int, int, int]:
    """The square (x, y, side, side) around ``box`` = (x, y, w, h) with ``margin`` x its longer side on each side,
    moved inside the image along each axis where it fits; where it does not (a side longer than the image's), centred
    on the box along that axis, reaching past both edges (x or y negative)."""
    x, y, w, h = box
    side = int(np.ceil(max(w, h) * (1 + 2 * margin)))
    origin = []
    for centre, limit in ((x + w / 2, width), (y + h / 2, height)):
        lo = int(round(centre - side / 2))
        origin.append(min(max(lo, 0), limit - side) if side <= limit else lo)
    return origin[0], origin[1], side, side


def square_crop(frame: np.ndarray, window: tuple[int, int, int, int]) -> np.ndarray:
    """The pixels of ``frame`` (H, W, 3) under the square ``window`` (:func:`square_box`), padded with
    :data:`PAD_RGB` where it reaches past the frame, so a resize keeps the object's shape (cut to the frame and
    resized, a crop at the edge was squashed)."""
    x0, y0, side, _ = window
    height, width = frame.shape[:2]
    top, left = max(-y0, 0), max(-x0, 0)
    bottom, right = max(y0 + side - height, 0), max(x0 + side - width, 0)
    inside = frame[y0 + top:y0 + side - bottom, x0 + left:x0 + side - right]
    if not (top or left or bottom or right):
        return inside
    return cv2.copyMakeBorder(inside, top, bottom, left, right, cv2.BORDER_CONSTANT, value=PAD_RGB)


def object_crops(frame: np.ndarray, mask: np.ndarray, size: int, margin: float, min_pixels: int):
    """Crops of every object in one frame: list of ``(object id, crop [size, size, 3] uint8, (x, y, side, side))``.

    ``mask``: HxW label map (0 background). The window is :func:`square_box` of the mask's bounding box, in frame
    pixels (it may reach past the frame, whose missing part is padded: :func:`square_crop`).
    """
    out = []
    height, width = mask.shape
    for obj in np.unique(mask):
        if obj == 0:
            continue
        ys, xs = np.nonzero(mask == obj)
        if len(xs) < min_pixels:
            continue
        box = (int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
        window = square_box(box, margin, width, height)
        interp = cv2.INTER_AREA if window[2] > size else cv2.INTER_LINEAR
        out.append((int(obj), cv2.resize(square_crop(frame, window), (size, size), interpolation=interp), window))
    return out


def load_davis_set(root: str | os.PathLike, cfg: RetrievalConfig, subset: str = "val") -> RetrievalSet:
    """Instance retrieval across time: one crop per object per frame of every sequence of ``subset`` (see
    ``davis_data.list_sequences``). A sequence that cannot be read is skipped with a warning, listed under
    ``skipped``."""
    from vidssl.eval.davis_data import DavisDataError, list_sequences, load_sequence

    crops, labels, groups, times, captions, names = [], [], [], [], [], {}
    label_of: dict[tuple[str, int], int] = {}
    skipped: dict[str, list[str]] = {}
    sequences = list_sequences(root, subset)
    for seq_index, name in enumerate(sequences):
        try:  # crops come from every frame's mask, so the first frame need not hold an object; time is the
            # frames' numbers, so a gap in them is no warning here
            seq = load_sequence(root, name, need_first_object=False, warn_gaps=False)
        except DavisDataError as e:
            log.warning("DAVIS sequence %s skipped: %s", name, e)
            skipped.setdefault("unreadable sequence", []).append(f"{name}: {e}")
            continue
        frame_times = seq.frame_times  # min_gap counts frames: a sequence keeping every 5th is 0, 5, 10 apart
        for t, (frame, mask) in enumerate(zip(seq.frames, seq.masks)):
            for obj, crop, _ in object_crops(frame, mask, cfg.image_size, cfg.crop_margin, cfg.min_object_pixels):
                key = (name, obj)
                if key not in label_of:
                    label_of[key] = len(label_of)
                    names[label_of[key]] = f"{name}/{obj}"
                crops.append(crop)
                labels.append(label_of[key])
                groups.append(seq_index)
                times.append(frame_times[t])
                captions.append(f"{name}/{seq.frame_names[t]} object {obj}")
    if not crops and len(skipped.get("unreadable sequence", [])) == len(sequences):
        # the cause, not the mask-size rule below: a reader sees only the last line
        raise RetrievalDataError(f"{root}: no sequence could be read; first problem: "
                                 f"{skipped['unreadable sequence'][0]}")
    if not crops:
        raise RetrievalDataError(f"{root}: no object of at least {cfg.min_object_pixels} pixels in any mask")
    n = len(crops)
    return RetrievalSet(kind="davis", items=ImageArray(np.stack(crops)), labels=np.asarray(labels, dtype=np.int64),
                        label_names=names, captions=captions, queries=np.arange(n), references=None,
                        groups=np.asarray(groups), times=np.asarray(times), skipped=skipped)


def load_track_set(root: str | os.PathLike, cfg: RetrievalConfig) -> RetrievalSet:
    """Instance retrieval across time on mined tracks: items are the tracked patches (a frame of a track once, though
    the end of one pair may be the start of another); a patch retrieves its own track's patches at least the
    dataset's ``track_length`` frames away among every patch of the other tracks."""
    root = Path(root)
    manifest = root / "manifest.jsonl"
    if not manifest.is_file():
        raise RetrievalDataError(f"{root}: no manifest.jsonl; pass a pair dataset written by `vidssl mine`")
    refs, labels, times, captions = [], [], [], []
    label_of: dict[tuple[str, int], int] = {}
    seen: set[tuple[str, int, int]] = set()
    shard_len: dict[Path, int] = {}
    with open(manifest, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                video_id, track_id = str(rec["video_id"]), int(rec["track_id"])
                shard, offset = root / str(rec["shard"]), int(rec["offset"])
                ends = (int(rec["start_frame"]), int(rec["end_frame"]))
                video = str(rec.get("video", video_id))
            except (ValueError, KeyError, TypeError) as e:
                raise RetrievalDataError(f"{manifest}:{line_no}: malformed pair record ({e.__class__.__name__}: "
                                         f"{e}); re-run `vidssl mine`") from None
            if shard not in shard_len:
                shard_len[shard] = _check_shard(shard)
            if not 0 <= offset < shard_len[shard]:
                raise RetrievalDataError(f"{shard}: manifest offset {offset} is outside the shard's "
                                         f"{shard_len[shard]} pairs; the dataset is damaged, re-run `vidssl mine`")
            label = label_of.setdefault((video_id, track_id), len(label_of))
            for which, frame in enumerate(ends):
                if (video_id, track_id, frame) in seen:
                    continue
                seen.add((video_id, track_id, frame))
                refs.append((shard, offset, which))
                labels.append(label)
                times.append(frame)
                captions.append(f"{video} track {track_id} frame {frame}")
    if not refs:
        raise RetrievalDataError(f"{manifest}: no pairs; mine more videos or lower the mining thresholds")
    try:
        gap = int(json.loads((root / "dataset.json").read_text(encoding="utf-8"))["track_length"])
    except (OSError, ValueError, KeyError, TypeError):
        gap = cfg.min_gap  # a hand-made pair set without the miner's summary
    names = {label: f"{video_id}#{track_id}" for (video_id, track_id), label in label_of.items()}
    n = len(refs)
    remake = REWRITE_ADVICE if written_by_writer(root) else None
    data = RetrievalSet(kind="tracks", items=ShardPatches(refs, cfg.image_size, remake),
                        labels=np.asarray(labels, dtype=np.int64), label_names=names, captions=captions,
                        queries=np.arange(n), references=None, groups=np.asarray(labels, dtype=np.int64),
                        times=np.asarray(times, dtype=np.int64), min_gap=gap)
    return _cap_tracks(data, cfg, root)


def _cap_tracks(data: RetrievalSet, cfg: RetrievalConfig, root: Path) -> RetrievalSet:
    """``data`` (a track set, labels 0..M-1) cut to ``cfg.max_tracks`` of its tracks drawn with ``cfg.seed``, each
    with all its patches, so every query still has its own track's patches to find. The kNN and the k-means (k = the
    tracks) grow with the square of the set: the held-out tails of thousands of videos hold 10^5 pairs."""
    tracks = len(data.label_names)
    if not cfg.max_tracks or tracks <= cfg.max_tracks:
        return data
    kept = np.sort(np.random.default_rng(cfg.seed).choice(tracks, size=cfg.max_tracks, replace=False))
    rows = np.flatnonzero(np.isin(data.labels, kept))
    labels = np.searchsorted(kept, data.labels[rows])  # the kept tracks numbered 0..max_tracks-1, in manifest order
    log.info("%s: kept %d of %d tracks (eval.retrieval.max_tracks; drawn with eval.retrieval.seed=%d; 0 keeps all)",
             root, len(kept), tracks, cfg.seed)
    return dataclasses.replace(
        data, items=ShardPatches([data.items.refs[i] for i in rows], cfg.image_size, data.items.remake),
        labels=labels,
        label_names={new: data.label_names[int(old)] for new, old in enumerate(kept)},
        captions=[data.captions[i] for i in rows], queries=np.arange(len(rows)), groups=labels.copy(),
        times=data.times[rows],
        # else only metrics.json's config says that most of the tracks were never read
        selection=(f"{len(kept)} of the {tracks} tracks, drawn with eval.retrieval.seed={cfg.seed} "
                   f"(eval.retrieval.max_tracks; {len(data.labels) - len(rows)} patches of other tracks left out)"))


def _check_shard(path: Path) -> int:
    try:
        arr = np.load(path, mmap_mode="r")
    except PermissionError:  # mining again does not help: it finds the shard made and keeps it
        raise RetrievalDataError(f"{path}: no read permission (chmod +r {shell_arg(path)})") from None
    except (OSError, ValueError) as e:
        raise RetrievalDataError(f"{path}: cannot open pair shard ({e.__class__.__name__}: {e}); re-run "
                                 f"`vidssl mine`") from None
    if (arr.dtype != np.uint8 or arr.ndim != 5 or arr.shape[1] not in (2, 3) or arr.shape[4] != 3
            or arr.shape[2] != arr.shape[3]):
        # a third patch per pair is the same-frame background (mine.background_patches): not a tracked patch
        raise RetrievalDataError(f"{path}: pair shard must be uint8 (n, 2, S, S, 3) or (n, 3, S, S, 3), found "
                                 f"{arr.dtype} {tuple(arr.shape)}")
    return int(arr.shape[0])


LOADERS = {"images": load_image_set, "davis": load_davis_set, "tracks": load_track_set}


def _inside_a_layout(root: Path) -> str | None:
    """Why ``root``, a folder inside a DAVIS or CUB-200-2011 folder, is no retrieval set of its own, else None. Its
    sub-folders look like classes (a sequence's frames, a species' photos), so it was read as category retrieval: on
    DAVIS one label per sequence, train and val mixed, adjacent frames finding each other; on CUB all 200 classes."""
    root = Path(os.path.abspath(root))  # "480p" alone has no parents to look at
    for davis in (root.parent, root.parent.parent):
        part = root.relative_to(davis).parts[:1]  # () for "/"
        if part in (("JPEGImages",), ("Annotations",)) and is_davis_root(davis):
            return (f"a folder of the DAVIS folder {davis} ({part[0]}/); pass --data {shell_arg(davis)} for "
                    f"instance retrieval on its objects (read as class folders, each sequence would be one class, "
                    f"train and val mixed, a frame finding the next one: --kind images does that all the same)")
    if root.name == "images" and is_cub_release(root.parent):
        return (f"the images of the CUB-200-2011 release folder {root.parent}, read as folders it would be all 200 "
                f"classes; pass --data {shell_arg(root.parent)} for the release's protocol "
                f"(eval.retrieval.cub_classes, by default 101-200; [1, 200] for all), or --kind images to read these "
                f"folders all the same")
    return None


def _layout_of(folder: Path) -> str | None:
    """The layout ``folder`` holds by its marker files (no class-folder scan: cheap, for a hint), or None."""
    if (folder / "manifest.jsonl").is_file():
        return "pairs from `vidssl mine`"
    if is_davis_root(folder):
        return "DAVIS"
    if is_cub_release(folder):
        return "CUB-200-2011 release"
    if (folder / "labels.csv").is_file():
        return "labels.csv"
    return None


def detect_kind(root: str | os.PathLike) -> str:
    """``tracks`` (manifest.jsonl), ``davis`` (JPEGImages + Annotations), ``images`` (labels.csv or class
    folders holding images) or ``videos`` (video files, to be mined into tracks first)."""
    root = Path(root)
    if not root.is_dir():
        raise RetrievalDataError(f"{root}: " + ("a file, not a data folder" if root.exists() else
                                                "data folder not found"))
    if (root / "manifest.jsonl").is_file():
        return "tracks"
    if is_davis_root(root):
        return "davis"
    if (root / "labels.csv").is_file() or is_cub_release(root):
        return "images"
    inside = _inside_a_layout(root)
    if inside:  # before the class folders it would otherwise pass for
        raise RetrievalDataError(f"{root}: {inside}")
    if _class_folders(root):
        from vidssl.eval.flow.data import pairs_under

        flow = pairs_under(root)  # only now: its walks cost a class-folder listing's fifth, on a set that needs it
        if flow:  # a sequence's two frames would be one class finding its other frame: every model scores 1
            raise RetrievalDataError(
                f"{root}: an optical-flow dataset ({len(flow)} frame pair(s) with ground truth, e.g. "
                f"{flow[0].flow.relative_to(root)}); evaluate it with `vidssl eval flow --weights W.pt "
                f"--data {shell_arg(root)}` (read as class folders, each sequence would be one class of its "
                f"frames, every model scoring about 1: --kind images does that all the same)")
        return "images"
    from vidssl.video import find_videos

    if find_videos(root):
        return "videos"
    # one level above a layout (the folder an archive was unpacked into): name it, one look into each folder
    below = [(p, _layout_of(p)) for p in _visible(root) if p.is_dir()]
    hint = " or ".join(f"--data {shell_arg(p)} ({layout})" for p, layout in below if layout)
    raise RetrievalDataError(f"{root}: not a retrieval layout; " + (f"it holds one: pass {hint}" if hint else
                             "expected DIR/labels.csv or DIR/<class>/*.jpg (images), JPEGImages/ + Annotations/ "
                             "(DAVIS), manifest.jsonl (pairs from `vidssl mine`), a CUB-200-2011 release folder "
                             f"(images.txt, images/) or a folder of videos; {_found_files(root)}"))


def load_retrieval_set(root: str | os.PathLike, cfg: RetrievalConfig, kind: str = "auto",
                       davis_subset: str = "val") -> RetrievalSet:
    """The retrieval set in ``root`` (``kind``: auto-detected, or one of ``LOADERS``); ``davis_subset`` picks a
    DAVIS folder's sequences (``eval.davis.subset``)."""
    if kind == "auto":
        kind = detect_kind(root)
    if kind == "videos":
        raise RetrievalDataError(f"{root}: a folder of videos; mine its tracks first (`vidssl mine {shell_arg(root)} "
                                 f"--out PAIRS`) and pass the pair dataset, or let `vidssl eval retrieval` mine it")
    if kind not in LOADERS:
        raise RetrievalDataError(f"unknown retrieval kind '{kind}'; valid: auto, {', '.join(LOADERS)}")
    if kind == "davis":
        return load_davis_set(root, cfg, davis_subset)
    return LOADERS[kind](root, cfg)
