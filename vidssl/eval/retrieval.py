"""Retrieval transfer benchmark: datasets, batched feature extraction, metrics per model, report files.

Three layouts (``kind``), each turned into a :class:`RetrievalSet` of square uint8 images with integer labels:

- ``images``: category retrieval, ``DIR/labels.csv`` (``path,class_id[,class_name]``, paths relative to DIR) or
  ``DIR/<class>/*.jpg``; every image queries all the others (the unseen-classes protocol).
- ``davis``: instance retrieval across time on DAVIS-layout sequences; each annotated object in each frame is
  cropped (square around the mask box plus a margin); label = sequence + object; a crop queries crops of its own
  sequence at least ``min_gap`` frames away, and every crop of the other sequences.
- ``tracks``: a pair dataset written by ``vidssl mine`` (``dataset.json`` + ``manifest.jsonl`` + shards); label =
  the track; the first patch of each track queries the last patches of all tracks.

:func:`evaluate_retrieval` writes ``metrics.json``, ``metrics.md`` and one ``grid_<model>.png`` per model into
the output folder and returns the ``metrics.json`` payload.
"""
from __future__ import annotations

import csv
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from vidssl.errors import VidsslError
from vidssl.eval.config import RetrievalConfig
from vidssl.eval.metrics import RECALL_KS, exclude_same_group_within, retrieval_metrics
from vidssl.io import atomic_write_bytes, atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


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
        if bgr is None or bgr.size == 0:
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
    """Item i -> (uint8 [3, S, S] RGB, True): patch ``which`` (0 first, 1 last) of pair ``offset`` of a shard."""

    def __init__(self, refs: list[tuple[Path, int, int]], size: int):
        self.refs = refs
        self.size = size
        self._open: dict[Path, np.ndarray] = {}

    def __getstate__(self) -> dict:
        # memory maps stay in the process that opened them; workers open their own
        return {**self.__dict__, "_open": {}}

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, bool]:
        path, offset, which = self.refs[i]
        if path not in self._open:
            self._open[path] = np.load(path, mmap_mode="r")
        patch = np.asarray(self._open[path][offset, which])
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
    itself excluded). ``groups``/``times`` ([N] ints, DAVIS): same group and ``|dt| < min_gap`` is not retrievable.
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
    skipped: dict[str, list[str]] = field(default_factory=dict)


def _image_set_from_csv(root: Path, csv_path: Path, size: int) -> RetrievalSet:
    paths, labels, names, skipped = [], [], {}, {}
    try:
        with open(csv_path, newline="") as fh:
            reader = csv.DictReader(fh)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            if "path" not in columns or "class_id" not in columns:
                raise RetrievalDataError(f"{csv_path}: header must be path,class_id[,class_name]; found "
                                         f"{','.join(columns) or 'nothing'}")
            for line, row in enumerate(reader, start=2):
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
                paths.append(path)
                labels.append(label)
                names.setdefault(label, row.get("class_name") or str(label))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise RetrievalDataError(f"{csv_path}: cannot read ({e.__class__.__name__}: {e})") from None
    if not paths:
        raise RetrievalDataError(f"{csv_path}: lists no existing image; paths are relative to {root}")
    return _image_set(root, paths, labels, names, skipped, size)


def _image_set_from_folders(root: Path, size: int) -> RetrievalSet:
    paths, labels, names = [], [], {}
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    for class_dir in class_dirs:
        files = sorted(p for p in class_dir.iterdir()
                       if p.is_file() and p.suffix.lower() in IMAGE_EXTS and not p.name.startswith("."))
        if not files:
            continue
        label = len(names)
        names[label] = class_dir.name
        paths += files
        labels += [label] * len(files)
    if not paths:
        raise RetrievalDataError(f"{root}: no images found; expected DIR/<class>/*.jpg or DIR/labels.csv "
                                 f"(path,class_id[,class_name])")
    return _image_set(root, paths, labels, names, {}, size)


def _image_set(root, paths, labels, names, skipped, size) -> RetrievalSet:
    n = len(paths)
    return RetrievalSet(kind="images", items=ImageFiles(paths, size), labels=np.asarray(labels, dtype=np.int64),
                        label_names=names, captions=[str(Path(p).relative_to(root)) for p in paths],
                        queries=np.arange(n), references=None, skipped=skipped)


def load_image_set(root: str | os.PathLike, cfg: RetrievalConfig) -> RetrievalSet:
    """Category retrieval: ``labels.csv`` when present, else one sub-folder per class."""
    root = Path(root)
    csv_path = root / "labels.csv"
    if csv_path.is_file():
        return _image_set_from_csv(root, csv_path, cfg.image_size)
    return _image_set_from_folders(root, cfg.image_size)


def square_box(box: tuple[int, int, int, int], margin: float, width: int, height: int) -> tuple[int, int, int, int]:
    """The square (x, y, side, side) around ``box`` = (x, y, w, h) with ``margin`` x its longer side on each side,
    moved inside the image where it fits and clipped to it where it does not."""
    x, y, w, h = box
    side = int(np.ceil(max(w, h) * (1 + 2 * margin)))
    cx, cy = x + w / 2, y + h / 2
    out = []
    for centre, limit in ((cx, width), (cy, height)):
        lo = int(round(centre - side / 2))
        lo = min(max(lo, 0), max(limit - side, 0))
        out.append((lo, min(side, limit - lo)))
    (x0, sw), (y0, sh) = out
    return x0, y0, sw, sh


def object_crops(frame: np.ndarray, mask: np.ndarray, size: int, margin: float, min_pixels: int):
    """Crops of every object in one frame: list of ``(object id, crop [size, size, 3] uint8, (x, y, w, h))``.

    ``mask``: HxW label map (0 background). The crop window is :func:`square_box` of the mask's bounding box.
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
        x0, y0, w, h = square_box(box, margin, width, height)
        crop = frame[y0:y0 + h, x0:x0 + w]
        interp = cv2.INTER_AREA if max(w, h) > size else cv2.INTER_LINEAR
        out.append((int(obj), cv2.resize(crop, (size, size), interpolation=interp), (x0, y0, w, h)))
    return out


def load_davis_set(root: str | os.PathLike, cfg: RetrievalConfig) -> RetrievalSet:
    """Instance retrieval across time: one crop per object per frame of every sequence."""
    from vidssl.eval.davis_data import list_sequences, load_sequence

    crops, labels, groups, times, captions, names = [], [], [], [], [], {}
    label_of: dict[tuple[str, int], int] = {}
    for seq_index, name in enumerate(list_sequences(root)):
        seq = load_sequence(root, name)
        for t, (frame, mask) in enumerate(zip(seq.frames, seq.masks)):
            for obj, crop, _ in object_crops(frame, mask, cfg.image_size, cfg.crop_margin, cfg.min_object_pixels):
                key = (name, obj)
                if key not in label_of:
                    label_of[key] = len(label_of)
                    names[label_of[key]] = f"{name}/{obj}"
                crops.append(crop)
                labels.append(label_of[key])
                groups.append(seq_index)
                times.append(t)
                captions.append(f"{name}/{seq.frame_names[t]} object {obj}")
    if not crops:
        raise RetrievalDataError(f"{root}: no object of at least {cfg.min_object_pixels} pixels in any mask")
    n = len(crops)
    return RetrievalSet(kind="davis", items=ImageArray(np.stack(crops)), labels=np.asarray(labels, dtype=np.int64),
                        label_names=names, captions=captions, queries=np.arange(n), references=None,
                        groups=np.asarray(groups), times=np.asarray(times))


def load_track_set(root: str | os.PathLike, cfg: RetrievalConfig) -> RetrievalSet:
    """Instance retrieval on mined tracks: first patch of each pair (query) vs last patches (references)."""
    root = Path(root)
    manifest = root / "manifest.jsonl"
    if not manifest.is_file():
        raise RetrievalDataError(f"{root}: no manifest.jsonl; pass a pair dataset written by `vidssl mine`")
    records = []
    with open(manifest) as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                records.append((str(rec["video_id"]), int(rec["track_id"]), str(rec["shard"]), int(rec["offset"]),
                                rec.get("video", rec["video_id"]), int(rec.get("start_frame", -1)),
                                int(rec.get("end_frame", -1))))
            except (ValueError, KeyError, TypeError) as e:
                raise RetrievalDataError(f"{manifest}:{line_no}: malformed pair record ({e.__class__.__name__}: "
                                         f"{e}); re-run `vidssl mine`") from None
    if not records:
        raise RetrievalDataError(f"{manifest}: no pairs; mine more videos or lower the mining thresholds")
    shard_len: dict[Path, int] = {}
    for _, _, shard, offset, *_ in records:
        path = root / shard
        if path not in shard_len:
            shard_len[path] = _check_shard(path)
        if not 0 <= offset < shard_len[path]:
            raise RetrievalDataError(f"{path}: manifest offset {offset} is outside the shard's {shard_len[path]} "
                                     f"pairs; the dataset is damaged, re-run `vidssl mine`")
    label_of: dict[tuple[str, int], int] = {}
    for video_id, track_id, *_ in records:
        label_of.setdefault((video_id, track_id), len(label_of))
    refs, labels, captions = [], [], []
    for which in (0, 1):
        for video_id, track_id, shard, offset, video, start, end in records:
            refs.append((root / shard, offset, which))
            labels.append(label_of[(video_id, track_id)])
            captions.append(f"{video} track {track_id} frame {start if which == 0 else end}")
    n = len(records)
    names = {label: f"{video_id}#{track_id}" for (video_id, track_id), label in label_of.items()}
    return RetrievalSet(kind="tracks", items=ShardPatches(refs, cfg.image_size),
                        labels=np.asarray(labels, dtype=np.int64), label_names=names, captions=captions,
                        queries=np.arange(n), references=np.arange(n, 2 * n))


def _check_shard(path: Path) -> int:
    try:
        arr = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as e:
        raise RetrievalDataError(f"{path}: cannot open pair shard ({e.__class__.__name__}: {e}); re-run "
                                 f"`vidssl mine`") from None
    if arr.dtype != np.uint8 or arr.ndim != 5 or arr.shape[1] != 2 or arr.shape[4] != 3 or arr.shape[2] != arr.shape[3]:
        raise RetrievalDataError(f"{path}: pair shard must be uint8 (n, 2, S, S, 3), found {arr.dtype} "
                                 f"{tuple(arr.shape)}")
    return int(arr.shape[0])


LOADERS = {"images": load_image_set, "davis": load_davis_set, "tracks": load_track_set}


def detect_kind(root: str | os.PathLike) -> str:
    """``tracks`` (manifest.jsonl), ``davis`` (JPEGImages + Annotations) or ``images`` (labels.csv or class
    folders holding images)."""
    root = Path(root)
    if not root.is_dir():
        raise RetrievalDataError(f"{root}: data folder not found")
    if (root / "manifest.jsonl").is_file():
        return "tracks"
    if (root / "JPEGImages").is_dir() and (root / "Annotations").is_dir():
        return "davis"
    if (root / "labels.csv").is_file() or any(
            d.is_dir() and any(f.suffix.lower() in IMAGE_EXTS for f in d.iterdir()) for d in root.iterdir()):
        return "images"
    raise RetrievalDataError(f"{root}: not a retrieval layout; expected DIR/labels.csv or DIR/<class>/*.jpg "
                             f"(images), JPEGImages/ + Annotations/ (DAVIS) or manifest.jsonl (pairs from "
                             f"`vidssl mine`); for a folder of videos run `vidssl mine` first")


def load_retrieval_set(root: str | os.PathLike, cfg: RetrievalConfig, kind: str = "auto") -> RetrievalSet:
    if kind == "auto":
        kind = detect_kind(root)
    if kind not in LOADERS:
        raise RetrievalDataError(f"unknown retrieval kind '{kind}'; valid: auto, {', '.join(LOADERS)}")
    return LOADERS[kind](root, cfg)


# ----------------------------------------------------------------------------------------------------------------
# features


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@torch.inference_mode()
def extract_features(models: dict, items: Dataset, batch_size: int = 64, num_workers: int = 0,
                     device: torch.device | str = "cpu", progress: bool = True) -> tuple[dict, np.ndarray]:
    """Pooled features of every item for every model, decoding each image once.

    Returns ``({name: float32 [N, out_dim] on CPU}, ok [N] bool)``; rows where ``ok`` is False are zeros (the item
    could not be decoded).
    """
    from tqdm import tqdm

    device = torch.device(device)
    for model in models.values():
        model.eval().to(device)
    loader = DataLoader(items, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        persistent_workers=False, pin_memory=device.type == "cuda")
    feats: dict[str, list[torch.Tensor]] = {name: [] for name in models}
    ok = []
    for images, good in tqdm(loader, desc="features", unit="batch", disable=None if progress else True):
        x = images.to(device, non_blocking=True).float().div_(255)
        for name, model in models.items():
            mean = torch.tensor(model.mean, device=device).view(1, 3, 1, 1)
            std = torch.tensor(model.std, device=device).view(1, 3, 1, 1)
            feats[name].append(model.embed((x - mean) / std).float().cpu())
        ok.append(good)
    return {name: torch.cat(f) for name, f in feats.items()}, torch.cat(ok).numpy().astype(bool)


# ----------------------------------------------------------------------------------------------------------------
# the benchmark


def evaluate_retrieval(models: dict, data_dir: str | os.PathLike, out_dir: str | os.PathLike,
                       cfg: RetrievalConfig, kind: str = "auto", progress: bool = True) -> dict:
    """Evaluate every model on the retrieval data in ``data_dir``; write ``metrics.json``, ``metrics.md`` and
    ``grid_<model>.png`` into ``out_dir``; return the ``metrics.json`` payload (per model under ``"models"``)."""
    from vidssl.config import versions

    data = load_retrieval_set(data_dir, cfg, kind)
    device = resolve_device(cfg.device)
    feats, ok = extract_features(models, data.items, cfg.batch_size, cfg.num_workers, device, progress)
    if not ok.all():
        data.skipped.setdefault("unreadable image", []).extend(data.captions[i] for i in np.flatnonzero(~ok))
        for caption in data.skipped["unreadable image"]:
            log.warning("%s: cannot decode image, skipped", Path(data_dir) / caption)
    queries = data.queries[ok[data.queries]]
    references = None if data.references is None else data.references[ok[data.references]]
    if len(queries) == 0:
        raise RetrievalDataError(f"{data_dir}: no readable image to query with")
    exclude = None
    if data.groups is not None:
        exclude = exclude_same_group_within(data.groups[queries], data.times[queries], cfg.min_gap)

    rng = np.random.default_rng(cfg.seed)
    shown = np.sort(rng.choice(len(queries), size=min(cfg.grid_queries, len(queries)), replace=False))
    out_dir = Path(out_dir)
    results, grids = {}, {}
    for name, f in feats.items():
        f = f.to(device)
        scores = retrieval_metrics(
            f[queries], data.labels[queries], None if references is None else f[references],
            None if references is None else data.labels[references], exclude, chunk_mb=cfg.chunk_mb,
            seed=cfg.seed, kmeans_iters=cfg.kmeans_iters, keep=cfg.grid_neighbours)
        if scores.lone_queries == scores.num_queries:
            raise RetrievalDataError(f"{data_dir}: no query has a relevant reference (every label occurs once, or "
                                     f"only within min_gap={cfg.min_gap} frames); nothing to measure")
        results[name] = {**scores.to_dict(), "feature_dim": int(f.shape[1])}
        pool = queries if references is None else references
        rows = []
        for q in shown:
            hits = [int(pool[j]) if j >= 0 else -1 for j in scores.neighbours.indices[q].tolist()]
            rows.append((int(queries[q]), hits))
        grids[name] = out_dir / f"grid_{_slug(name)}.png"
        atomic_write_bytes(grids[name], retrieval_grid(data, rows))
        log.debug("%s: P@1 %.3f  MAP@R %.3f  NMI %.3f", name, scores.precision_at_1, scores.map_at_r, scores.nmi)

    payload = {
        "kind": data.kind,
        "data": str(data_dir),
        "items": int(ok.sum()),
        "queries": int(len(queries)),
        "references": int(len(queries) if references is None else len(references)),
        "labels": int(len(np.unique(data.labels[ok]))),
        "protocol": _PROTOCOLS[data.kind].format(min_gap=cfg.min_gap),
        "skipped": data.skipped,
        "models": results,
        "grids": {name: path.name for name, path in grids.items()},
        "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
        "versions": versions(),
    }
    atomic_write_json(out_dir / "metrics.json", payload)
    atomic_write_text(out_dir / "metrics.md", metrics_table(payload))
    return payload


_PROTOCOLS = {
    "images": "category retrieval: every image queries all the others",
    "davis": "instance retrieval: each object crop queries crops of its sequence >= {min_gap} frames away and all "
             "crops of other sequences",
    "tracks": "instance retrieval: the first patch of each mined track queries the last patches of all tracks",
}


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "model"


def metrics_table(payload: dict) -> str:
    """Markdown: one row per model, the best value of each column in bold."""
    cols = [("P@1", lambda m: m["precision_at_1"])]
    cols += [(f"R@{k}", lambda m, k=k: m["recall_at_k"][str(k)]) for k in RECALL_KS]
    cols += [("R-prec", lambda m: m["r_precision"]), ("MAP@R", lambda m: m["map_at_r"]), ("NMI", lambda m: m["nmi"])]
    models = payload["models"]
    best = {title: max(get(m) for m in models.values()) for title, get in cols}
    lines = [f"Retrieval on `{payload['data']}` ({payload['kind']}: {payload['queries']} queries, "
             f"{payload['references']} references, {payload['labels']} labels). {payload['protocol']}.", "",
             "| model | " + " | ".join(title for title, _ in cols) + " |",
             "|---|" + "---:|" * len(cols)]
    for name, m in models.items():
        cells = [f"**{get(m):.3f}**" if get(m) == best[title] else f"{get(m):.3f}" for title, get in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if payload["labels"] == 1:
        lines += ["", "Only one label: every neighbour is relevant, so every metric is 1 by construction."]
    skipped = sum(len(v) for v in payload["skipped"].values())
    if skipped:
        lines += ["", f"{skipped} item(s) skipped: " + ", ".join(f"{k}: {len(v)}" for k, v in payload["skipped"].items())]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------------------------
# figure

_TILE = 96
_BORDER = 4
_CAPTION = 14
_COLOURS = {"query": (255, 255, 255), "right": (0, 200, 0), "wrong": (230, 0, 0), "none": (90, 90, 90)}


def _tile(image: np.ndarray | None, colour: tuple[int, int, int], caption: str) -> np.ndarray:
    side = _TILE + 2 * _BORDER
    tile = np.full((side + _CAPTION, side, 3), 20, np.uint8)
    tile[:side, :side] = colour
    inner = np.zeros((_TILE, _TILE, 3), np.uint8) if image is None else cv2.resize(image, (_TILE, _TILE),
                                                                                    interpolation=cv2.INTER_AREA)
    tile[_BORDER:_BORDER + _TILE, _BORDER:_BORDER + _TILE] = inner
    cv2.putText(tile, caption[:16], (2, side + _CAPTION - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (230, 230, 230), 1,
                cv2.LINE_AA)
    return tile


def retrieval_grid(data: RetrievalSet, rows: list[tuple[int, list[int]]]) -> bytes:
    """PNG bytes: one row per query (white border, its label below), then its nearest neighbours bordered green
    when they share the query's label and red when not; -1 (no allowed neighbour left) is a grey blank."""
    def image(i: int) -> np.ndarray:
        return data.items[i][0].permute(1, 2, 0).numpy()

    def caption(i: int) -> str:
        name = data.label_names[int(data.labels[i])]
        return name if data.times is None else f"{name} t{int(data.times[i])}"

    lines = []
    for q, hits in rows:
        tiles = [_tile(image(q), _COLOURS["query"], caption(q))]
        for j in hits:
            if j < 0:
                tiles.append(_tile(None, _COLOURS["none"], "-"))
                continue
            right = data.labels[j] == data.labels[q]
            tiles.append(_tile(image(j), _COLOURS["right" if right else "wrong"], caption(j)))
        gap = np.full((tiles[0].shape[0], 8, 3), 20, np.uint8)  # separates the query from its neighbours
        lines.append(np.concatenate([tiles[0], gap, *tiles[1:]], axis=1))
    grid = np.concatenate(lines, axis=0)
    ok, png = cv2.imencode(".png", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return png.tobytes()
