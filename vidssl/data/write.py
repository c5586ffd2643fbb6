"""Writing a pair dataset from pairs made elsewhere (your own tracker, annotations), for `vidssl train` to read.

::

    ROOT/
      dataset.json         patch_size, pairs, manifest_sha256, shard_bytes, "source": "write_pair_dataset"
      manifest.jsonl       one record per pair, in the order given: video_id, track_id, shard, offset (with frames:
                           video, start_frame, end_frame too)
      shards/NNNNN.npy     (rows, M, S, S, 3) uint8 RGB; M = 2 (first, last patch) or 3 (and a same-frame background)

Every file is written under a temporary name and renamed when complete, dataset.json last: a write killed at any
moment leaves no folder that reads as a dataset. Video ids name no file (any string will do).
"""
from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np

from vidssl.data.pairs import WRITTEN_SOURCE, PairDataError
from vidssl.io import atomic_write_bytes, atomic_write_json, json_text

_TAKEN = ("dataset.json", "manifest.jsonl", "mine.json")  # a dataset, or a `vidssl mine` folder


def write_pair_dataset(root: str | os.PathLike, patches: np.ndarray, video_ids, track_ids, *, frames=None,
                       shard_rows: int = 1024) -> Path:
    """Write N positive pairs to the new folder ``root`` as a pair dataset; ``vidssl train ROOT --out RUN`` trains
    on it. Returns ``root`` as a Path.

    patches:    uint8 [N, 2, S, S, 3] RGB, the first and last patch of each pair (one object, two frames), or
                [N, 3, S, S, 3] with a same-frame background patch third (as `vidssl mine` stores with
                mine.background_patches; training uses it by default, 2-patch pairs train with
                miner.background_negatives=false loss.cycle_background=false).
    video_ids:  N strings; negatives are drawn from other videos, so training needs two videos at least.
    track_ids:  N ints; the pairs of one (video id, track id) are one object, never each other's negatives.
    frames:     optional [N, 2] ints >= 0, the frame of each pair's first and last patch (`vidssl show-pairs` and the
                retrieval evaluation's track set read them; training does not).
    shard_rows: pairs per shard file.

    Raises PairDataError for a ``root`` that holds a dataset already (nothing is overwritten), patches of another
    dtype or shape, arguments of other lengths, and no pairs.
    """
    root = Path(root)
    patches = np.asarray(patches)
    if patches.dtype != np.uint8 or patches.ndim != 5 or patches.shape[1] not in (2, 3) or patches.shape[4] != 3 \
            or patches.shape[2] != patches.shape[3] or patches.shape[2] < 1:
        raise PairDataError(f"patches: {patches.dtype} {patches.shape}, expected uint8 [N, 2, S, S, 3] (first, last "
                            f"RGB patch of each pair) or [N, 3, S, S, 3] (and a background patch); square patches, "
                            f"converted with .astype(np.uint8) from 0..255 values")
    n = len(patches)
    if n == 0:
        raise PairDataError("patches: no pairs (N = 0); a pair dataset needs pairs to train on")
    video_ids, track_ids = list(video_ids), np.asarray(track_ids)
    if len(video_ids) != n or track_ids.ndim != 1 or len(track_ids) != n:
        raise PairDataError(f"video_ids and track_ids: {len(video_ids)} and {track_ids.size} entries for {n} pairs; "
                            f"give one video id and one track id per pair")
    bad = next((i for i, v in enumerate(video_ids) if not isinstance(v, str) or not v), None)
    if bad is not None:
        raise PairDataError(f"video_ids[{bad}] is {video_ids[bad]!r}: each must be a non-empty string")
    if track_ids.dtype.kind not in "iu":
        raise PairDataError(f"track_ids: {track_ids.dtype}, expected integers (the pairs of one (video id, track id) "
                            f"are one object)")
    if frames is not None:
        frames = np.asarray(frames)
        if frames.shape != (n, 2) or frames.dtype.kind not in "iu" or (frames < 0).any():
            raise PairDataError(f"frames: {frames.dtype} {frames.shape}, expected integers >= 0 of shape ({n}, 2): "
                                f"the frame of each pair's first and last patch")
    if type(shard_rows) is not int or shard_rows < 1:  # noqa: E721 (bool is no count)
        raise PairDataError(f"shard_rows: {shard_rows!r}, expected an integer >= 1")
    if root.exists() and not root.is_dir():
        raise PairDataError(f"{root}: a file, not a folder; choose a new folder for the pair dataset")
    taken = [name for name in _TAKEN if (root / name).exists()]
    if taken:
        raise PairDataError(f"{root}: holds a pair dataset already ({', '.join(taken)}); write to a new folder, or "
                            f"delete {root} first")

    lines, shard_bytes = [], {}
    for first in range(0, n, shard_rows):
        name = f"shards/{first // shard_rows:05d}.npy"
        buffer = io.BytesIO()  # serialised in memory: a full disk is an OSError naming the shard
        np.save(buffer, np.ascontiguousarray(patches[first:first + shard_rows]))
        data = buffer.getbuffer()
        atomic_write_bytes(root / name, data)
        shard_bytes[name] = data.nbytes  # training stats each shard against it: a shard copied over is skipped
        for i in range(first, min(first + shard_rows, n)):
            rec = {"video_id": video_ids[i], "track_id": int(track_ids[i]), "shard": name, "offset": i - first}
            if frames is not None:
                rec.update(video=video_ids[i], start_frame=int(frames[i, 0]), end_frame=int(frames[i, 1]))
            lines.append(json_text(rec) + "\n")
    manifest = "".join(lines).encode("utf-8")
    atomic_write_bytes(root / "manifest.jsonl", manifest)
    atomic_write_json(root / "dataset.json", {
        "source": WRITTEN_SOURCE, "pairs": n, "patch_size": int(patches.shape[2]),
        "background_patches": patches.shape[1] == 3,
        "complete": True, "manifest_sha256": hashlib.sha256(manifest).hexdigest(), "shard_bytes": shard_bytes})
    return root
