"""The pair dataset directory: layout, per-video results, and the merge into one manifest.

::

    PAIRS/
      dataset.json            summary (pairs, videos found/mined/skipped by reason, each skip's and each partly mined
                              video's detail, tracks rejected, config, versions; shard_bytes: each manifest shard's
                              size as its done-marker records it, which training checks with a stat)
      manifest.jsonl          one record per pair, videos in listing order, tracks in start order
      videos.json             what is being mined: {"root": folder, "videos": [{"video": relative path, "video_id",
                              "bytes"}]} (each shard decides its own videos: see shard_listing)
      mine.json               the mining config and backend; a rerun with other settings is refused
      shards/<video_id>.npy         (n, 2, S, S, 3) uint8 RGB pairs of one video (n, 3, S, S, 3) with
                                    mine.background_patches: first, last, same-frame background)
      shards/<video_id>.tracks.npy  (n, T, S, S, 3) every patch of each track (only with mine.store_tracks)
                                    (a video mined again writes <video_id>.<n>.npy, a name no manifest holds yet)
      done/<video_id>.json    the video's done-marker: its manifest records, skip reason, statistics, its shards'
                              sizes and the video file's size and mtime_ns when it was mined (only names of this
                              form are markers: a macOS ._<video_id>.json beside it is none)
      done/<video_id>.attempt how many runs started the video without finishing it (see runner.MAX_ATTEMPTS)

A video's shards are written under temporary names and renamed when complete; its done-marker is written last. A
video is finished when its marker exists, the shards the marker names are complete, and the video file still has
the size and mtime it was mined at; any other video is redone (a remined video's old marker goes first, so no marker ever
names shards of another mining, and its new shards take a new name, so the manifest of the last merge, which names
the old ones until the next merge, never describes rows of another mining). ``kill -9`` at any moment loses at most
the videos in progress. Several processes
or machines can mine disjoint parts of one listing into one directory; ``merge`` builds ``manifest.jsonl`` and
``dataset.json`` from whatever markers exist, so it can run at any time.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import io
import json
import logging
import os
import re
import time
from collections import Counter
from pathlib import Path

import numpy as np

from tracking.config import IMPLIED_WHEN_ABSENT, MineConfig
from vidssl.errors import VidsslError
from vidssl.io import (atomic_path, atomic_write_bytes, atomic_write_json, file_state, json_text, open_lock_file,
                       remove_temp_leftovers, same_file)

SHARDS, DONE = "shards", "done"
log = logging.getLogger(__name__)


class DatasetMismatch(VidsslError):
    """The output directory holds a dataset mined with other settings."""


def video_id(relative: str) -> str:
    """A stable, readable id for a video from its path relative to the videos folder: ``<stem>-<10 hex>``.

    The same relative path gives the same id on every machine and run; the hash keeps ids of equal stems in
    different folders apart.
    """
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(relative).stem)[:40] or "video"
    # surrogateescape: a file name that is not UTF-8 (a Latin-1 "caf\xe9.mp4") is hashed by its bytes, not refused
    return f"{stem}-{hashlib.sha1(relative.encode('utf-8', 'surrogateescape')).hexdigest()[:10]}"


def settings(cfg: MineConfig, video_backend: str) -> dict:
    """Everything that changes which pairs are mined (mining draws no random numbers: the run's seed is not)."""
    return {"config": dataclasses.asdict(cfg), "video_backend": video_backend}


def shard_of(video: str, count: int) -> int:
    """The shard (of ``count``) that mines ``video`` (its path relative to the videos folder): a hash of the
    path, so a video keeps its shard when files are added to or removed from the folder between shards' starts
    (by position in the listing, a file copied in between moved videos to shards that had already run)."""
    return int(hashlib.sha1(video.encode("utf-8", "surrogateescape")).hexdigest(), 16) % count


def prepare(out_dir: Path, root: Path, listing: list[dict], cfg: MineConfig, video_backend: str,
            shard: tuple[int, int] = (0, 1)) -> None:
    """Create the layout and record the settings and listing; refuse a directory mined with other settings or
    split into another number of shards (see :func:`check_shard_count`).

    ``listing`` is what this run found; what ``videos.json`` records is :func:`shard_listing`'s combination of it
    with the listing there, so a shard whose copy of the folder lags drops no other shard's videos."""
    (out_dir / SHARDS).mkdir(parents=True, exist_ok=True)
    (out_dir / DONE).mkdir(exist_ok=True)
    wanted = settings(cfg, video_backend)
    existing = out_dir / "mine.json"
    # under the lock: shards started at the same moment with different settings must not both find no mine.json
    with _locked(out_dir):
        if existing.is_file():
            have = json.loads(existing.read_text(encoding="utf-8"))
            if isinstance(have, dict):  # earlier versions recorded the seed, which never changed a pair
                have.pop("seed", None)
                if isinstance(have.get("config"), dict):
                    # a key a later version added counts as what the older version did: its default then
                    have["config"] = {**dataclasses.asdict(MineConfig()), **IMPLIED_WHEN_ABSENT, **have["config"]}
            if have != wanted:
                was = have.get("config", {}) if isinstance(have.get("config"), dict) else {}
                changed = [(f"mine.{k}", was.get(k), wanted["config"][k]) for k in sorted(wanted["config"])
                           if was.get(k) != wanted["config"][k]]
                changed += [(k, have.get(k), wanted[k]) for k in ("video_backend",) if have.get(k) != wanted[k]]
                # as pretrain names a stage's changed settings: the key, what it was and what it is now
                detail = ", ".join(f"{k}: {old!r} -> {new!r}" for k, old, new in changed) or "format"
                raise DatasetMismatch(f"{out_dir} was mined with other settings ({detail}); use a new --out, or the "
                                      "settings it was mined with (its mine.json), or delete it to start over")
        else:
            atomic_write_json(existing, wanted)
    index, count = shard
    check_shard_count(out_dir, index, count)  # before the listing is combined by a count the folder refuses
    with _locked(out_dir):
        recorded = out_dir / "videos.json"
        before = json.loads(recorded.read_text(encoding="utf-8"))["videos"] if count > 1 and recorded.is_file() else []
        atomic_write_json(recorded, {"root": str(root.resolve()),
                                     "videos": shard_listing(before, listing, index, count)})


def shard_listing(before: list[dict], found: list[dict], index: int, count: int) -> list[dict]:
    """The listing to record when shard ``index`` of ``count`` found ``found`` and ``before`` was recorded: this
    shard decides its own videos (a file gone from its folder leaves the dataset), the other shards' stay as
    recorded, plus those of theirs this shard sees first (pending until their shard mines them). Unsharded
    (``count`` 1), ``found`` is the listing. The last shard to start used to record its own listing for all: a
    machine whose copy of the folder lagged dropped the other shards' finished videos from a "complete" dataset."""
    if count == 1:
        return found
    known = {entry["video"] for entry in before}
    kept = [entry for entry in before if shard_of(entry["video"], count) != index]
    kept += [entry for entry in found if shard_of(entry["video"], count) == index
             or entry["video"] not in known]
    return sorted(kept, key=lambda entry: entry["video"])  # find_videos' order, whatever the shards' order


SHARDING = "sharding.json"  # {"count": N} of the first sharded run: every shard of a folder must split it alike


def recorded_shard_count(out_dir: str | Path) -> int | None:
    """The N of the ``--shard I/N`` that ``out_dir`` is mined in (its sharding.json): 1 where it never was, None
    where the record is damaged (written atomically: by hand or by the disk)."""
    record = Path(out_dir) / SHARDING
    if not record.is_file():
        return 1
    try:
        count = json.loads(record.read_text(encoding="utf-8")).get("count")
    except (OSError, ValueError, AttributeError):
        return None
    return count if isinstance(count, int) and not isinstance(count, bool) and count >= 2 else None


def check_shard_count(out_dir: Path, index: int, count: int) -> None:
    """Refuse ``--shard index/count`` in a folder whose videos are being mined in another number of shards: each
    video belongs to the shard its path hashes to mod N, so with two Ns some videos are mined twice and others by
    no shard, pending for ever. Unsharded runs (count 1) take every video left and are always allowed."""
    if count == 1:
        return
    record = out_dir / SHARDING
    with _locked(out_dir):
        if record.is_file():
            was = recorded_shard_count(out_dir)
            if was is None:
                raise DatasetMismatch(f"{record}: not the record of a shard count ({{\"count\": N}}), so the shard "
                                      f"count the folder is mined in is unknown; if no shard of it is running, delete "
                                      f"{SHARDING} and run every shard again with one --shard I/N")
            if was != count:
                raise DatasetMismatch(f"{out_dir} is mined in {was} shards (--shard I/{was}); --shard {index}/{count} "
                                      f"would mine some videos twice and leave others to no shard: use --shard "
                                      f"{index if index < was else 'I'}/{was}, or mine without --shard to take every "
                                      f"video left")
        else:
            atomic_write_json(record, {"count": count})


def marker_ids(out_dir: Path) -> set[str]:
    """The video ids of the done-markers in ``out_dir``: files named as :func:`marker_path` names them, as the
    shard clean-up takes only shard names (``_ANY_SHARD``); a macOS ``._<id>.json`` (AppleDouble metadata, copied
    along with the folder) or another hidden or foreign file there is no marker, damaged or not."""
    return {found[1] for path in (out_dir / DONE).glob("*.json") if (found := _MARKER.fullmatch(path.name))}


def marker_path(out_dir: Path, vid: str) -> Path:
    return out_dir / DONE / f"{vid}.json"


def read_marker(out_dir: Path, vid: str) -> dict | None:
    """The done-marker of video ``vid`` as written, or None when there is none or it is damaged (a disk that
    filled, a copy cut short: its video is mined again; see :func:`done_marker`)."""
    path = marker_path(out_dir, vid)
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:  # not OSError: a marker that cannot be read now (no
        # permission, a mount's hiccup) may be a good one, and treating it as damaged would remine the video
        log.warning("%s: damaged done-marker (%s); its video is mined again", path, e)
        return None
    if not isinstance(marker, dict) or not isinstance(marker.get("pairs", []), list):
        log.warning("%s: not a done-marker (a JSON object with a list of pairs); its video is mined again", path)
        return None
    return marker


def _npy_rows(path: Path) -> int | None:
    """The rows of a complete ``.npy`` shard, or None for a missing, damaged or cut short one (an interrupted copy
    of the folder: its header announces more bytes than the file holds). For markers written before they recorded
    their shards' sizes."""
    try:
        array = np.load(path, mmap_mode="r")
    except (OSError, ValueError, EOFError):
        return None
    return int(array.shape[0]) if isinstance(array, np.ndarray) and array.ndim else None


def _shards_complete(out_dir: Path, marker: dict) -> bool:
    """Whether every shard ``marker`` names is there whole: of the size it was written at (recorded in the
    marker: a stat per shard, as a merge over thousands of videos on a shared file system needs), or, for markers
    of older versions, a readable header with a row for each pair."""
    sizes = marker.get("shard_bytes")
    if isinstance(sizes, dict):
        return all(sizes.get(name) == (file_state(out_dir / name) or {}).get("size") for name in _shards_named(marker))
    rows = {name: _npy_rows(out_dir / name) for name in _shards_named(marker)}
    return not any(n is None for n in rows.values()) and not any(
        rec["offset"] >= rows[rec[key]] for rec in marker.get("pairs", []) for key in ("shard", "track_shard")
        if key in rec)


def source_state(path: Path) -> dict | None:
    """The video file's state recorded in its marker (:func:`vidssl.io.file_state`): a file replaced or still being
    copied when it was mined differs on the next run. None when it cannot be stat'ed."""
    return file_state(path)


def _same_source(marker: dict, source: dict, path: Path | None) -> bool:
    """Whether the video file (``source``: its state now, ``path``) is the one ``marker`` was mined from: the same
    size and time, or, when only the time differs, the same content sample (read only then)."""
    was = marker["source"]
    if was == source:
        return True
    return (path is not None and isinstance(was, dict) and marker.get("source_sample") is not None
            and same_file({**was, "sample": marker["source_sample"]}, path))


def done_marker(out_dir: Path, vid: str, source: dict | None = None, path: Path | None = None) -> dict | None:
    """The marker of a finished video ``vid``, else None: no marker (or a damaged one), a shard it names is
    missing or cut short, the video file's ``source`` state differs from the one mined (a file of the same size
    with only another time, at ``path``, is the same when its content sample is), or it records a crash whose
    ``.attempt`` file was deleted (the way to ask for a retry). ``source`` None (the file is not here: moved away, or
    on another machine) trusts the marker, as do markers of older versions, which hold no state; a marker whose file
    could not be stat'ed when it was skipped (a broken link) holds None, and is redone once the file is there."""
    marker = read_marker(out_dir, vid)
    if marker is None:
        return None
    if not _shards_complete(out_dir, marker):
        return None
    if source is not None and "source" in marker and not _same_source(marker, source, path):
        return None
    if marker.get("crashed") and not attempt_path(out_dir, vid).is_file():
        return None
    return marker


def _shards_named(marker: dict) -> set[str]:
    return {rec[key] for rec in marker.get("pairs", []) for key in ("shard", "track_shard") if key in rec}


def attempt_path(out_dir: Path, vid: str) -> Path:
    return out_dir / DONE / f"{vid}.attempt"


def read_attempt(out_dir: Path, vid: str) -> dict | None:
    """``{"attempts": n, "run", "source", "counted"}``: n runs started video ``vid`` (the last one ``run``, whose
    start added to n where ``counted``) without finishing."""
    try:
        return json.loads(attempt_path(out_dir, vid).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def begin_attempt(out_dir: Path, vid: str, run: str, source: dict | None, counts: bool = True) -> int:
    """Count one more start of video ``vid`` (written before it is decoded, so a process that dies on it leaves the
    count behind); a video file that changed since starts over at 1. Returns the count. A start that ``counts``
    False (a pool worker's: a worker that dies is blamed by its pool, see tracking.runner) marks the video started
    by ``run`` without adding to the count, so killing the whole run never blames its videos."""
    last = read_attempt(out_dir, vid)
    count = int(counts) + (last["attempts"] if last and last.get("source") == source else 0)
    atomic_write_json(attempt_path(out_dir, vid), {"attempts": count, "run": run, "source": source,
                                                   "counted": counts}, indent=None)
    return count


def undo_attempt(out_dir: Path, vid: str, run: str) -> None:
    """Take back ``run``'s start of video ``vid``: it was interrupted on purpose (Ctrl-C), not crashed on. Only
    what that start added is taken back: a pool worker's start counted nothing, and the deaths counted before it
    (a --workers 1 run that died on the video) stay."""
    last = read_attempt(out_dir, vid)
    if last is None or last.get("run") != run:
        return
    remaining = last["attempts"] - int(last.get("counted", True))
    if remaining <= 0:
        attempt_path(out_dir, vid).unlink(missing_ok=True)
    else:
        atomic_write_json(attempt_path(out_dir, vid), {"attempts": remaining, "run": None, "source": last.get("source")},
                          indent=None)


def write_video(out_dir: Path, entry: dict, pairs: np.ndarray | None, track_patches: np.ndarray | None,
                marker: dict, shard_names: ShardNameIndex | None = None) -> dict:
    """Store one video's shards, then its done-marker (last, so a marker always means complete shards).

    ``marker["pairs"]`` records get ``video``, ``video_id``, ``shard`` and ``offset`` filled in; returns the marker.
    ``shard_names``: the caller's index of the manifest's shard names (a mining run's, one per process), so a video
    mined again reads no manifest; None reads the manifest for it.
    """
    vid = entry["video_id"]
    # a remined video: its old marker goes first, so no marker ever names shards of another mining; its shards get a
    # name not on disk, so the manifest of the last merge (which names the old ones until the next merge) never
    # describes the new rows: overwritten in place, a kill before that merge left it reading another mining's
    # pairs under its tracks, as a complete dataset
    marker_path(out_dir, vid).unlink(missing_ok=True)
    base = _free_shard_base(out_dir, vid, shard_names)
    shard, track_shard = f"{SHARDS}/{base}.npy", f"{SHARDS}/{base}.tracks.npy"
    for name, array in ((shard, pairs), (track_shard, track_patches)):
        if array is not None:
            _save_npy(out_dir / name, array)
    records = []
    for offset, rec in enumerate(marker.get("pairs", [])):
        full = {"video": entry["video"], "video_id": vid, **rec, "shard": shard, "offset": offset}
        if track_patches is not None:
            full["track_shard"] = track_shard
        records.append(full)
    sizes = {name: (out_dir / name).stat().st_size for name in {rec[key] for rec in records
                                                                 for key in ("shard", "track_shard") if key in rec}}
    # the code and libraries that mined this video: shards of one folder may be mined on many machines
    marker = {**marker, "video": entry["video"], "video_id": vid, "pairs": records, "shard_bytes": sizes,
              "versions": _process_versions()}
    atomic_write_json(marker_path(out_dir, vid), marker, indent=None)
    if not marker.get("crashed"):  # a crash record lives as long as its attempt file (see done_marker)
        attempt_path(out_dir, vid).unlink(missing_ok=True)
    return marker


def _free_shard_base(out_dir: Path, vid: str, shard_names: ShardNameIndex | None = None) -> str:
    """``vid``, or ``vid.1``, ``vid.2``...: the first shard name of the video that ``manifest.jsonl`` does not name
    (the last merge's manifest names an earlier mining's shards until the next merge; they stay until no marker names
    them, see _remove_leftovers). A file of a free name is a killed writer's orphan and is overwritten, so a first
    mining, killed and rerun, keeps ``vid``. The manifest is read only where ``vid``'s shards are on disk: a video
    mined again, or an orphan; with ``shard_names`` (a run's), only where that index has not read this version of
    it."""
    if not any((out_dir / SHARDS / f"{vid}{suffix}").exists() for suffix in (".npy", ".tracks.npy")):
        return vid
    taken = set((shard_names or ShardNameIndex()).taken(out_dir, vid))
    n = 0
    while n in taken:
        n += 1
    return vid if n == 0 else f"{vid}.{n}"


# what follows shards/<vid> in a name write_video gives: .npy or .tracks.npy, after .<n> from the second mining on
_BASE_REST = re.compile(r"(?:\.([1-9][0-9]*))?(?:\.tracks)?\.npy")


def _base_number(vid: str, name) -> int | None:
    """n of a shard name of ``vid`` as write_video gives them (``shards/vid.npy``: 0, ``shards/vid.n.npy`` and
    ``shards/vid.n.tracks.npy``: n), else None (no name _free_shard_base could pick for ``vid``)."""
    prefix = f"{SHARDS}/{vid}"
    if not isinstance(name, str) or not name.startswith(prefix):
        return None
    found = _BASE_REST.fullmatch(name, len(prefix))
    return None if found is None else int(found[1] or 0)


def _version(st: os.stat_result) -> tuple:
    """What tells one version of a file from the next: a merge writes a new file and renames it over the old."""
    return st.st_ino, st.st_size, st.st_mtime_ns


def _manifest_version(path: Path) -> tuple | None:
    try:
        return _version(os.stat(path))
    except FileNotFoundError:
        return None


class ShardNameIndex:
    """Which shard names (as numbers n of their bases, see _base_number) ``manifest.jsonl`` gives each video, read
    in one pass the first time a video mined again asks, and again only once the file changed (another shard's merge
    may rewrite it during a run). Scanning the whole manifest for each such video cost 0.67 s a video at 750k pairs.

    Owned by its caller, one per mining run or pool worker: it holds the last manifest read, of any folder."""

    def __init__(self) -> None:
        self._read_as: tuple | None = None  # (manifest path, _manifest_version) of the file indexed
        self._numbers: dict[str, tuple[int, ...]] = {}  # video_id -> n of each base its records name

    def taken(self, out_dir: Path, vid: str) -> tuple[int, ...]:
        """The n of every base of ``vid``'s shards named in ``out_dir``'s manifest as it is now."""
        path = Path(out_dir) / "manifest.jsonl"
        if self._read_as != (path, _manifest_version(path)):
            self._read(path)
        return self._numbers.get(vid, ())

    def _read(self, path: Path) -> None:
        self._numbers, self._read_as = {}, (path, None)
        with contextlib.suppress(FileNotFoundError), open(path, "rb") as fh:
            self._read_as = (path, _version(os.fstat(fh.fileno())))  # the version read, should a merge replace it
            last = None
            for line in fh:  # line by line: the whole manifest held as text is hundreds of MiB (see merge)
                try:
                    rec = json.loads(line)
                except ValueError:  # a damaged line names nothing
                    continue
                names = (rec.get("video_id"), rec.get("shard"), rec.get("track_shard")) if isinstance(
                    rec, dict) else None
                if names is not None and names != last:  # a video's records, one after another, name one base
                    self._add(*names)
                last = names

    def _add(self, vid, *names) -> None:
        if not isinstance(vid, str):
            return
        have = self._numbers.get(vid, ())
        for name in names:
            n = _base_number(vid, name)
            if n is not None and n not in have:
                have += (n,)
        if have:
            self._numbers[vid] = have


# the names write_video gives a video's shards: its base (_free_shard_base) and a kind
_SHARD_SUFFIX = r"(\.\d+)?(\.tracks)?\.npy"
# any video's, its id as video_id makes it: the only names a merge deletes from shards/ (a file of the user's there,
# or of a folder linked there, is no leftover of ours)
_VIDEO_ID = r"([A-Za-z0-9_-]{1,40}-[0-9a-f]{10})"
_ANY_SHARD = re.compile(_VIDEO_ID + _SHARD_SUFFIX)
_MARKER = re.compile(_VIDEO_ID + r"\.json")  # a video's done-marker (marker_path)
# the atomic_path temp file of a video's shard or marker, .tmp-NAME.PID@MACHINE.XXXXXXXX (NAME too short to be cut)
_VIDEO_TEMP = re.compile(rf"\.tmp-{_VIDEO_ID}(\.\d+)?(\.tracks)?\.(npy|json|attempt)\.\d+@[0-9a-f]{{8}}\..*")


def _save_npy(path: Path, array: np.ndarray) -> None:
    # serialised in memory, written by Python: a file size limit or a quota is an OSError with its errno, where
    # numpy writing the file said "38400 requested and 3968 written"
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array))
    atomic_write_bytes(path, buffer.getbuffer())


MERGE_LOCK = ".vidssl-merge.lock"


@contextlib.contextmanager
def _locked(out_dir: Path):
    """Serialise the settings check and the merges of processes sharing ``out_dir``, also on other machines: an
    advisory lock on a file opened for writing (NFS emulates flock with byte-range locks, which a folder, opened
    read-only, cannot take), never through a symbolic link."""
    fd = open_lock_file(out_dir / MERGE_LOCK)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


PENDING_NAMED = 10  # pending videos named in dataset.json (a folder being mined on many machines has thousands)
LEFTOVER_AGE_S = 600.0  # a temp file or unnamed shard this old is a killed writer's: np.save writes one in seconds


def merge(out_dir: str | Path) -> dict:
    """Write ``manifest.jsonl`` and ``dataset.json`` from the done-markers of the listing; returns the summary.

    Safe to run at any time, from any rank: unfinished videos are counted as pending. Once every video is done,
    leftovers of killed runs (temporary files, shards without a marker) are removed.
    """
    out_dir = Path(out_dir)
    listing_path, settings_path = out_dir / "videos.json", out_dir / "mine.json"
    if not listing_path.is_file() or not settings_path.is_file():
        raise VidsslError(f"{out_dir} is not a pair dataset being mined (no videos.json / mine.json); "
                          "run `vidssl mine VIDEOS --out DIR` first")
    videos = json.loads(listing_path.read_text(encoding="utf-8"))
    listing, root = videos["videos"], Path(videos["root"])
    mined = json.loads(settings_path.read_text(encoding="utf-8"))
    with _locked(out_dir):
        skipped, tracks_rejected, starts_rejected = {}, Counter(), Counter()
        # each skip's detail names the setting or the fix, and a video mined only up to damage says where: kept
        # here, or they were in the done-markers alone once the run's warnings had scrolled by
        skipped_detail, partial, cut_short = {}, {}, {}
        mined_with: Counter = Counter()  # the versions that decide pairs, per video done
        frames = mined_videos = 0
        seconds = 0.0
        pending_videos = []  # not done: never mined, mined from another file, or cut short by a time budget
        # written marker by marker and hashed as written: the whole manifest held as text (held 3.5 times: 1M pairs,
        # 322 MiB of manifest) took a merge, run at the end of every mining, from 65 MiB of memory to 1.2 GiB
        digest, n_pairs = hashlib.sha256(), 0
        shard_bytes: dict[str, int] = {}  # the sizes the markers recorded: training stats each shard against them
        # the markers read here and the shards they name: the leftover clean-up reads only the others
        read_ids, named = set(), set()
        with atomic_path(out_dir / "manifest.jsonl") as tmp, open(tmp, "wb") as manifest:
            for entry in listing:
                # a video file replaced since it was mined is pending, not done: its pairs are of the old file
                path = root / entry["video"]
                marker = done_marker(out_dir, entry["video_id"], source_state(path), path)
                if marker is None:
                    pending_videos.append(entry["video"])
                    continue
                read_ids.add(entry["video_id"])
                named |= _shards_named(marker)
                frames += marker["stats"]["frames"]
                seconds += marker["stats"]["seconds"]
                mined_with[json_text(_deciding(marker.get("versions")))] += 1
                tracks_rejected.update(marker["stats"]["tracks_rejected"])
                starts_rejected.update(marker["stats"]["starts_rejected"])
                if marker["status"] == "skipped":
                    skipped.setdefault(marker["reason"], []).append(entry["video"])
                    skipped_detail[entry["video"]] = marker.get("detail")
                    continue
                if "budget_cut" in marker:  # its pairs so far are in, yet it is not done: a mining rerun mines it whole
                    cut_short[entry["video"]] = marker.get("detail")
                    pending_videos.append(entry["video"])
                else:
                    mined_videos += 1
                    if marker.get("detail"):  # a mined video's only other detail: the damage it was mined up to
                        partial[entry["video"]] = marker["detail"]
                # encoded as atomic_write_text did: the same bytes, so the same sha256 as a merge of an earlier vidssl
                chunk = "".join(json_text(rec) + "\n" for rec in marker["pairs"]).encode("utf-8", "backslashreplace")
                manifest.write(chunk)
                digest.update(chunk)
                n_pairs += len(marker["pairs"])
                if isinstance(marker.get("shard_bytes"), dict):  # markers of earlier versions record none
                    shard_bytes.update(marker["shard_bytes"])
        pending = len(pending_videos)
        summary = {
            "pairs": n_pairs,
            # two files, two renames: a merge killed between them leaves a new manifest beside the old summary,
            # which may say complete; open_pairs holds the manifest to this
            "manifest_sha256": digest.hexdigest(),
            "patch_size": mined["config"]["patch_size"],
            "track_length": mined["config"]["track_length"],
            "complete": pending == 0,
            "videos": {"found": len(listing), "mined": mined_videos, "skipped": dict(sorted(skipped.items())),
                       **({"skipped_detail": skipped_detail} if skipped_detail else {}),
                       **({"partial": partial} if partial else {}),
                       **({"cut_short": cut_short} if cut_short else {}),
                       "pending": pending, **({"pending_examples": pending_videos[:PENDING_NAMED]} if pending else {})},
            "tracks_rejected": dict(sorted(tracks_rejected.items())),
            "start_frames_rejected": dict(sorted(starts_rejected.items())),
            "frames": frames,
            "mining_seconds": round(seconds, 3),
            "frames_per_s": round(frames / seconds, 1) if seconds else None,
            "videos_root": videos["root"],
            **mined,
        }
        if shard_bytes:
            summary["shard_bytes"] = dict(sorted(shard_bytes.items()))
        unlisted = sorted(marker_ids(out_dir) - {e["video_id"] for e in listing})
        if unlisted:  # kept, never deleted: see _remove_leftovers
            examples = [(read_marker(out_dir, vid) or {}).get("video", vid) for vid in unlisted[:PENDING_NAMED]]
            summary["videos"]["not_listed"] = {"count": len(unlisted), "examples": examples}
        summary["versions"] = mining_versions()
        summary["mined_with"] = [{**json.loads(key), "videos": n} for key, n in mined_with.most_common()]
        if len(mined_with) > 1:
            keys = sorted({k for key in mined_with for k, v in json.loads(key).items()
                           if any(json.loads(other).get(k) != v for other in mined_with)})
            log.warning("%s: its videos were mined with %d different versions of %s (machines or runs apart), "
                        "which can give other pairs for the same video: dataset.json's mined_with says which",
                        out_dir, len(mined_with), ", ".join(keys))
        atomic_write_json(out_dir / "dataset.json", summary)
        if pending == 0:
            # ids as mining makes them from the paths: a listing's own ids (a folder from elsewhere) could name
            # another dataset's shards in a linked shards/ folder
            _remove_leftovers(out_dir, {entry["video_id"] for entry in listing
                                        if entry["video_id"] == video_id(entry["video"])}, read_ids, named)
    return summary


# of mining_versions(), the entries that can change the pairs of a video (not python's or the platform's)
_DECIDING = ("vidssl", "git_sha", "git_diff_sha256", "opencv", "pyav", "decord", "numpy")


def _deciding(versions: dict | None) -> dict:
    """The pair-deciding entries of a marker's versions; {"unknown": True} for a marker of an earlier vidssl."""
    if not isinstance(versions, dict):
        return {"unknown": True}
    return {k: versions.get(k) for k in _DECIDING}


@functools.lru_cache(maxsize=1)
def _process_versions() -> dict:
    """mining_versions() once per process: it runs git several times, and a worker marks many videos."""
    return mining_versions()


def mining_versions() -> dict:
    """Versions of what decides the pairs: vidssl.config.versions() less torch and torchvision, which mining never
    imports. Read as that does, from package metadata: OpenCV's ``cv2.__version__`` (5.1.0) named no wheel build,
    and a pair folder's config.yaml said 5.1.0.95 beside its markers' 5.1.0."""
    from vidssl.config import versions

    return {k: v for k, v in versions().items() if k not in ("torch", "torchvision")}


def _remove_leftovers(out_dir: Path, listed: set[str], read_ids: set[str] = frozenset(),
                      named: set[str] = frozenset()) -> None:
    """Delete what killed writers left: temporary files, and shards no marker names (never part of the dataset),
    both only when older than LEFTOVER_AGE_S (a shard process mining a video of another listing may be writing one
    now). The markers and shards of videos this run's listing lacks are kept: a rerun on one file or a subfolder of
    the videos, or a machine whose mount lags, must not delete other videos' finished mining. Only names vidssl
    writes; in a shards/ or done/ that is a symbolic link (shards moved to a larger disk, perhaps shared with other
    datasets or files: a merge emptied it of every .npy file) only those of the ``listed`` video ids, by age.
    ``read_ids``: the videos whose markers the caller read just now (merge), naming the shards in ``named``: their
    markers are not read again (a merge of thousands of videos read each twice)."""
    cutoff = time.time() - LEFTOVER_AGE_S
    remove_temp_leftovers(out_dir, older_than=cutoff)
    linked = {name: (out_dir / name).is_symlink() for name in (SHARDS, DONE)}
    for name in (SHARDS, DONE):
        if not linked[name]:
            remove_temp_leftovers(out_dir / name, older_than=cutoff)
            continue
        # linked: only the temp files of this listing's shards and markers, by age as its shards (any .tmp-* there
        # may be another dataset's or the user's)
        with contextlib.suppress(FileNotFoundError), os.scandir(out_dir / name) as entries:
            for entry in entries:
                found = _VIDEO_TEMP.fullmatch(entry.name)
                if (found and found[1] in listed and entry.is_file(follow_symlinks=False)
                        and _mtime(entry) < cutoff):
                    Path(entry.path).unlink(missing_ok=True)
    named, damaged = set(named), set()
    for vid in marker_ids(out_dir) - read_ids:
        marker = read_marker(out_dir, vid)
        if marker is not None:
            named |= _shards_named(marker)
        else:  # a damaged marker's shards may be whole: kept until its video is mined again (this listing may lack it)
            damaged.add(vid)
    with contextlib.suppress(FileNotFoundError), os.scandir(out_dir / SHARDS) as entries:
        for entry in entries:
            # not a link: unlinking one deletes no data, but an old shard-named link is not ours either
            found = _ANY_SHARD.fullmatch(entry.name)
            if (not entry.is_file(follow_symlinks=False) or not found or f"{SHARDS}/{entry.name}" in named
                    or found[1] in damaged):
                continue
            if linked[SHARDS] and found[1] not in listed:  # another dataset's there, or a video this listing lacks
                continue
            if _mtime(entry) < cutoff:
                Path(entry.path).unlink(missing_ok=True)  # or another merge's


def _mtime(entry: os.DirEntry) -> float:
    try:
        return entry.stat(follow_symlinks=False).st_mtime
    except FileNotFoundError:
        return float("inf")
