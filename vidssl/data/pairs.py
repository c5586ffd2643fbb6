"""Reading a mined pair dataset (``PAIRS/dataset.json``, ``manifest.jsonl``, ``shards/*.npy``).

Only the manifest's index columns are held in memory (a few bytes per pair); patches stay in the ``.npy`` shards
and are read by one positioned read each (``vidssl.data.shards``), no file kept open.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vidssl.errors import VidsslError, shell_arg

log = logging.getLogger(__name__)


class PairDataError(VidsslError):
    """A pair dataset that cannot be trained on; the message names the file and how to remake it."""


_REMAKE = "make it with `vidssl mine VIDEOS --out PAIRS`"
WRITTEN_SOURCE = "write_pair_dataset"  # dataset.json's "source" for pairs written by vidssl.data.write_pair_dataset
REWRITE_ADVICE = "write the pairs again with vidssl.data.write_pair_dataset, into a new folder"  # no mine remakes them
NO_READ_PERMISSION = "no read permission"
# a re-mined video's shard names (tracking.dataset._free_shard_base): shards/<video id>.<n>[.tracks].npy; video ids
# end in "-<hex digest>", so a canonical name never matches
_REMINED_SHARD = re.compile(rb'("shards/[^"/]*?)\.\d+((?:\.tracks)?\.npy")')
_REQUIRED = ("video_id", "track_id", "shard", "offset")


@dataclass
class PairSet:
    """The usable pairs of a dataset: index arrays of length N (pairs whose shard is broken are left out)."""

    root: Path
    patch_size: int  # side of the stored patches
    shards: list[str]  # shard paths relative to root
    shard_index: np.ndarray  # [N] int32 into `shards`
    offset: np.ndarray  # [N] int64 row in the shard
    video: np.ndarray  # [N] int32 code of the video (index into `video_ids`)
    track: np.ndarray  # [N] int64 code of the (video, track) pair
    video_ids: list[str]
    fingerprint: str  # changes when the usable pairs change, and only then (a resumed run checks it)
    has_background: bool = False  # every stored pair has a third, same-frame background patch
    narrow_shards: list[str] = field(default_factory=list)  # shards without it (when others have it: a mixed merge)
    skipped: dict[str, str] = field(default_factory=dict)  # shard -> why its pairs were left out
    legacy_fingerprint: str = ""  # the fingerprint earlier versions computed (dataset.json + manifest), so their
    # interrupted runs still resume; "" when a shard is skipped (they did not see that)
    pending_videos: int = 0  # videos of the listing not mined yet (other shards still running, or a budget ran out)
    manifest_videos: int = 0  # videos the manifest names, those whose every pair was skipped too
    skipped_videos: int = 0  # videos with pairs in a skipped shard
    manifest_pairs: int = 0  # pairs the manifest lists, those of skipped shards too
    # how the pairs were mined, as dataset.json records it (:func:`_mining_record`): what a run and its weights'
    # card keep, since the train command's own mine section says nothing of them
    mining: dict = field(default_factory=dict)
    # [N, 2, 4] float32: the first and last patch's tracked box inside it (x, y, w, h, fractions of the patch side),
    # recorded by mining with mine.patch_context above 1 (NaN for a pair without); None when no pair has them
    patch_boxes: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.offset.size)

    @property
    def num_videos(self) -> int:
        return len(self.video_ids)

    @property
    def written(self) -> bool:
        """Whether vidssl.data.write_pair_dataset wrote these pairs (no `vidssl mine` made them, so the fix for a
        damaged shard is REWRITE_ADVICE), as the dataset.json that open_pairs read says."""
        return self.mining.get("source") == WRITTEN_SOURCE

    def skipped_advice(self) -> str:
        """The fix for a dataset too small to train on because shards were skipped ("" when none was): mining
        more videos, or other settings, does not bring those pairs back."""
        if not self.skipped:
            return ""
        return skipped_fix(self.root, self.skipped, self.skipped_videos, self.manifest_videos,
                           written=self.written)

    def summary(self) -> dict:
        """What a model card records about the training data."""
        return {"pairs_dir": str(self.root.resolve()), "pairs": len(self), "videos": self.num_videos,
                "tracks": int(np.unique(self.track).size), "patch_size": self.patch_size,
                "fingerprint": self.fingerprint, "skipped_shards": self.skipped}


def _mining_record(meta: dict) -> dict:
    """``mine`` (dataset.json's ``config``, the mine section), ``video`` (``backend``), ``manifest_sha256``,
    ``videos_root`` and ``source`` of a dataset.json; a field it lacks (a dataset merged by an earlier version, or
    written by write_pair_dataset: no mine settings) is left out."""
    record: dict = {}
    if isinstance(meta.get("config"), dict):
        record["mine"] = meta["config"]
    if isinstance(meta.get("video_backend"), str):
        record["video"] = {"backend": meta["video_backend"]}
    record.update({key: meta[key] for key in ("manifest_sha256", "videos_root", "source")
                   if isinstance(meta.get(key), str)})  # source: pairs written by vidssl.data.write_pair_dataset
    return record


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PairDataError(f"{path.parent} is not a pair dataset: {path.name} is missing; {_REMAKE}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PairDataError(f"{path}: unreadable ({e}); {_REMAKE}") from None
    if not isinstance(data, dict) or not isinstance(data.get("patch_size"), int):
        raise PairDataError(f"{path}: expected a JSON object with an integer 'patch_size'; {_REMAKE}")
    return data


def _check_shard(path: Path, patch_size: int | None,
                 recorded_bytes: int | None = None) -> tuple[int, int, str | None]:
    """(rows, patches per row, None) for a usable shard, (0, 0, why) otherwise. Reads only the .npy header, and
    stats the file when mining recorded its size (``recorded_bytes``: a shard of another mining copied over this
    name has a header as good). ``patch_size`` None: any square patch side (a dataset.json that cannot be read)."""
    try:
        arr = np.load(path, mmap_mode="r")
    except FileNotFoundError:
        return 0, 0, "missing"
    except PermissionError:  # mining again does not help: it finds the shard made and keeps it
        return 0, 0, f"{NO_READ_PERMISSION} (chmod +r {shell_arg(path)})"
    except (OSError, ValueError, EOFError) as e:  # EOFError: an empty file (an interrupted copy, a full disk)
        return 0, 0, f"unreadable ({type(e).__name__}: {e})"
    if not isinstance(arr, np.ndarray):  # np.load opens a zip (.npz) as an archive
        return 0, 0, "not a .npy array (a zip archive?)"
    side = patch_size if patch_size is not None else (arr.shape[2] if arr.ndim == 5 else -1)
    want = (side, side, 3)
    if arr.dtype != np.uint8 or arr.ndim != 5 or arr.shape[1] not in (2, 3) or tuple(arr.shape[2:]) != want:
        shown = ", ".join(map(str, want)) if patch_size is not None else "S, S, 3"
        return 0, 0, (f"shape {arr.shape} {arr.dtype}, expected (n, 2, {shown}) uint8 (or n, 3, ... with "
                      f"background patches)")
    if np.isfortran(arr):  # the reader takes rows as C-order bytes: this one would read as garbage patches
        return 0, 0, ("a Fortran-order array (written by another tool?), expected C order as `vidssl mine` writes; "
                      "a new mining keeps a shard of its size: delete it first")
    if recorded_bytes is not None:
        try:
            size = os.stat(path).st_size  # the one stat: the header says nothing of where the rows came from
        except OSError as e:  # gone since np.load opened it
            return 0, 0, f"unreadable ({type(e).__name__}: {e})"
        if size != recorded_bytes:
            return 0, 0, (f"{size} bytes, not the {recorded_bytes} its video's mining wrote (a shard of another "
                          f"dataset or mining copied over it?)")
    return int(arr.shape[0]), int(arr.shape[1]), None


def _recorded_bytes(meta: dict) -> dict[str, int]:
    """Each shard's size as its video's done-marker recorded it, copied into dataset.json by the merge ({} from a
    merge of an earlier version, or markers that predate the record: no size is checked)."""
    sizes = meta.get("shard_bytes")
    if not isinstance(sizes, dict):
        return {}
    return {k: v for k, v in sizes.items() if type(v) is int}  # noqa: E721 (bool is no size)


def _shard_verdict(root: Path, name: str, patch_size: int | None, last_row: int,
                   recorded: dict[str, int]) -> tuple[int, str | None]:
    """(patches per row, None) for a shard training reads, (0, why) for one it skips: unreadable, of another
    shape or size than mined, or without the rows the manifest refers to (up to ``last_row``)."""
    rows, width, why = _check_shard(root / name, patch_size, recorded.get(name))
    if why is None and last_row >= rows:
        why = f"{rows} rows, but the manifest refers to row {last_row}"
    return (0, why) if why is not None else (width, None)


def remine_advice(root: Path, why: str, written: bool = False) -> str:
    """What to do about a shard skipped for ``why``: mine its video again (``written``: write the pairs again), or
    (no read permission, where mining again keeps the shard) nothing more than the chmod ``why`` names."""
    if why.startswith(NO_READ_PERMISSION):
        return ""
    if written:
        return f"; {REWRITE_ADVICE}"
    return f"; rerun the `vidssl mine` that made {root} (same videos, same --out) to mine its video again"


def shard_problems(root: str | os.PathLike, last_rows: dict[str, int]) -> dict[str, str]:
    """The shards of ``last_rows`` (shard -> the last row a record refers to) that training would skip, and why
    (``open_pairs``' check, for readers of the manifest such as ``vidssl show-pairs``). A dataset.json that cannot
    be read checks every square patch side and no size."""
    root = Path(root)
    try:
        meta = _read_json(root / "dataset.json")
    except PairDataError:
        meta = {"patch_size": None}
    recorded = _recorded_bytes(meta)
    verdicts = {name: _shard_verdict(root, name, meta["patch_size"], last, recorded)[1]
                for name, last in last_rows.items()}
    return {name: why for name, why in verdicts.items() if why is not None}


def _why_no_pairs(meta: dict, root: Path) -> str:
    """What dataset.json says about an empty pair set, and what to do."""
    videos = meta.get("videos") if isinstance(meta.get("videos"), dict) else {}
    skipped = videos.get("skipped") if isinstance(videos.get("skipped"), dict) else {}
    if videos.get("found") and not videos.get("mined") and skipped:
        reasons = ", ".join(f"{len(paths)} {reason}" for reason, paths in skipped.items())
        return (f"none of the {videos['found']} videos could be mined ({reasons}; each one's reason in "
                f"{root / 'dataset.json'})")
    if videos.get("mined"):
        return (f"the {videos['mined']} mined videos gave no track that passed its checks (tracks rejected by reason "
                f"in {root / 'dataset.json'}); videos with moving objects, or relaxed mine.* thresholds, give pairs")
    return _REMAKE


def skipped_fix(root: Path, skipped: dict[str, str], videos: int, of: int, written: bool = False) -> str:
    """What to do when ``videos`` of the ``of`` videos lost their pairs to the ``skipped`` shards (``written``: a
    dataset of write_pair_dataset, which no `vidssl mine` made)."""
    fixes = []
    if any(not why.startswith(NO_READ_PERMISSION) for why in skipped.values()):
        fixes.append(REWRITE_ADVICE if written else
                     f"rerun the `vidssl mine` that made {root} (same videos, same --out) to mine them again")
    if any(why.startswith(NO_READ_PERMISSION) for why in skipped.values()):
        fixes.append(f"chmod -R +r {shell_arg(root)}")
    return (f"{videos} of {of} videos' shards were skipped (the warnings above name them): "
            f"{' and '.join(fixes)}")


def written_by_writer(root: str | os.PathLike) -> bool:
    """Whether vidssl.data.write_pair_dataset wrote ``root`` (its dataset.json says so): no `vidssl mine` made it,
    so the fix for a damaged one is REWRITE_ADVICE. False when dataset.json cannot be read."""
    try:
        return _read_json(Path(root) / "dataset.json").get("source") == WRITTEN_SOURCE
    except PairDataError:
        return False


def require_pairs_folder(root: str | os.PathLike) -> Path:
    """``root`` as a Path, or a PairDataError when no such folder exists (checked before a run folder is made)."""
    root = Path(root)
    if not root.is_dir():
        raise PairDataError(f"{root}: pair dataset folder not found; {_REMAKE}")
    return root


class _ManifestMismatch(PairDataError):
    """manifest.jsonl is not the one dataset.json describes."""


def open_pairs(root: str | os.PathLike, retries: int = 2) -> PairSet:
    """Index a pair dataset. Broken shards are skipped with a warning; no usable pair at all is an error. A
    manifest that dataset.json does not describe is read again after a second (``retries`` times): a merge of
    another shard may be between its two writes; a merge killed there stays an error."""
    attempt = 0
    while True:
        try:
            return _open_pairs(root)
        except _ManifestMismatch:
            if attempt == retries:
                raise
            attempt += 1
            time.sleep(1.0)


def _open_pairs(root: str | os.PathLike) -> PairSet:
    root = require_pairs_folder(root)
    meta = _read_json(root / "dataset.json")
    patch_size = meta["patch_size"]
    written = meta.get("source") == WRITTEN_SOURCE
    remake = REWRITE_ADVICE if written else _REMAKE
    manifest = root / "manifest.jsonl"
    if not manifest.is_file():
        raise PairDataError(f"{manifest}: missing; {remake}")
    shards: dict[str, int] = {}
    shard_index, offsets, video_codes, track_keys = [], [], [], []
    patch_boxes: list[list[float]] = []  # 8 numbers a pair (NaN where not recorded), kept only if any is
    videos: dict[str, int] = {}
    tracks: dict[tuple[int, int], int] = {}
    # what decides the pairs: not the provenance merge() rewrites (versions, timings, the videos' root)
    decisive = {k: meta.get(k) for k in ("patch_size", "track_length", "config", "seed", "video_backend")}
    digest = hashlib.sha256(json.dumps(decisive, sort_keys=True).encode())
    legacy = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
    whole = hashlib.sha256()
    with open(manifest, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            # a video mined again to the same pairs names its shards <id>.<n>.npy: the same pairs, the same data
            digest.update(_REMINED_SHARD.sub(rb"\1\2", raw))
            legacy.update(raw)
            whole.update(raw)
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
                vid, track, shard, offset = (rec[k] for k in _REQUIRED)
                if not (type(track) is int and type(offset) is int and offset >= 0):  # noqa: E721 (bool is no id)
                    raise TypeError("track and offset must be non-negative integers")
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
                raise PairDataError(f"{manifest}:{lineno}: not a pair record with keys {', '.join(_REQUIRED)} "
                                    f"({e}); {remake}") from None
            patch_boxes.append(_patch_boxes(rec.get("patch_boxes"), manifest, lineno, remake))
            v = videos.setdefault(str(vid), len(videos))
            shard_index.append(shards.setdefault(str(shard), len(shards)))
            offsets.append(offset)
            video_codes.append(v)
            track_keys.append(tracks.setdefault((v, track), len(tracks)))
    recorded = meta.get("manifest_sha256")  # None: merged by an earlier version, which recorded none
    if recorded is not None and recorded != whole.hexdigest():
        fix = REWRITE_ADVICE if written else f"rewrite both with `vidssl mine --merge --out {shell_arg(root)}`"
        raise _ManifestMismatch(f"{manifest} is not the manifest {root / 'dataset.json'} describes (a merge was "
                                f"interrupted between the two, or one was edited): {fix}")
    if not offsets:
        raise PairDataError(f"{manifest}: no pairs; {REWRITE_ADVICE if written else _why_no_pairs(meta, root)}")
    shard_index_arr = np.asarray(shard_index, np.int32)
    offset_arr = np.asarray(offsets, np.int64)
    # per shard, in one pass over the pairs (a pass per shard: 0.6 ms each at 1M pairs, 13 s for 20k videos)
    last_row = np.full(len(shards), -1, np.int64)
    np.maximum.at(last_row, shard_index_arr, offset_arr)
    pair_count = np.bincount(shard_index_arr, minlength=len(shards))
    skipped, skipped_ids = {}, []
    widths, narrow = set(), []
    recorded = _recorded_bytes(meta)
    for name, i in shards.items():
        width, why = _shard_verdict(root, name, patch_size, int(last_row[i]), recorded)
        if why is not None:
            skipped[name] = why
            skipped_ids.append(i)
            log.warning("pairs: skipping %d pairs of %s: %s%s", int(pair_count[i]), root / name, why,
                        remine_advice(root, why, written))
        else:
            widths.add(width)
            if width == 2:
                narrow.append(name)
    keep = ~np.isin(shard_index_arr, skipped_ids)
    video_arr = np.asarray(video_codes, np.int32)
    lost = int(np.unique(video_arr[~keep]).size)  # videos with pairs in a skipped shard
    if not keep.any():
        name, why = next(iter(skipped.items()))
        raise PairDataError(f"{root}: none of the {len(offsets)} pairs is readable (e.g. {root / name}: {why}); "
                            f"{skipped_fix(root, skipped, lost, len(videos), written)}")
    digest.update(json.dumps(sorted(skipped)).encode())  # a lost shard changes the pairs, and so the fingerprint
    # videos whose every pair was skipped are not training data: the "negatives from another video" check counts
    # only videos present, so codes are renumbered over those
    present, video = np.unique(video_arr[keep], return_inverse=True)
    names = list(videos)
    return PairSet(root=root, patch_size=patch_size, shards=list(shards), shard_index=shard_index_arr[keep],
                   offset=offset_arr[keep], video=video.astype(np.int32),
                   track=np.asarray(track_keys, np.int64)[keep], video_ids=[names[i] for i in present],
                   fingerprint=digest.hexdigest()[:16], skipped=skipped, has_background=widths == {3},
                   narrow_shards=narrow if 3 in widths else [],
                   legacy_fingerprint="" if skipped else legacy.hexdigest()[:16],
                   pending_videos=_pending_videos(meta, root / "dataset.json"), manifest_videos=len(videos),
                   manifest_pairs=len(offsets), skipped_videos=lost, mining=_mining_record(meta),
                   patch_boxes=(np.asarray(patch_boxes, np.float32).reshape(-1, 2, 4)[keep]
                                if any(b is not _NO_BOXES for b in patch_boxes) else None))


_NO_BOXES = [float("nan")] * 8  # shared by every pair without patch_boxes


def _patch_boxes(value, manifest: Path, lineno: int, remake: str) -> list[float]:
    """A record's patch_boxes as 8 numbers (first box, last box), _NO_BOXES where absent; any other shape or a box
    not inside its patch is an error naming the line."""
    if value is None:
        return _NO_BOXES
    try:
        flat = [float(v) for box in value for v in box]
        ok = len(value) == 2 and len(flat) == 8 and all(
            0 <= x and 0 <= y and 0 < w and 0 < h and x + w <= 1.001 and y + h <= 1.001
            for x, y, w, h in (flat[:4], flat[4:]))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise PairDataError(f"{manifest}:{lineno}: patch_boxes is {json.dumps(value)[:80]}, not two [x, y, w, h] "
                            f"boxes inside the patch (fractions of its side); {remake}")
    return flat


def _pending_videos(meta: dict, path: Path) -> int:
    """Videos an incomplete dataset.json says are still to mine (0 when complete)."""
    if meta.get("complete", True):
        return 0
    pending = (meta.get("videos") if isinstance(meta.get("videos"), dict) else {}).get("pending")
    if type(pending) is not int or pending < 0:  # noqa: E721 (bool is no count)
        raise PairDataError(f"{path}: 'complete' is false but 'videos.pending' is {pending!r}, not a count of "
                            f"videos; {_REMAKE}")
    return pending
