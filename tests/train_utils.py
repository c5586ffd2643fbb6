"""Tiny pair datasets in the tracking stage's format (contract 1), written directly for the training tests."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np


def write_pairs(root: Path, patches: np.ndarray, videos: list[str], tracks: list[int], shard_rows: int = 64,
                patch_size: int | None = None, mined_with: dict | None = None) -> Path:
    """patches [N, 2, S, S, 3] uint8 -> PAIRS folder with dataset.json, manifest.jsonl and shards/*.npy.
    ``mined_with``: mine settings (over the defaults) to record as `vidssl mine` does, in dataset.json's "config",
    with "video_backend", "manifest_sha256" and "videos_root"; None: none of them (an earlier version's merge)."""
    root = Path(root)
    (root / "shards").mkdir(parents=True, exist_ok=True)
    n, s = len(patches), patches.shape[2]
    lines = []
    for first in range(0, n, shard_rows):
        name = f"shards/{first // shard_rows:05d}.npy"
        np.save(root / name, np.ascontiguousarray(patches[first:first + shard_rows]))
        for off in range(min(shard_rows, n - first)):
            i = first + off
            lines.append(json.dumps({"video": f"{videos[i]}.mp4", "video_id": videos[i], "track_id": int(tracks[i]),
                                     "start_frame": 0, "end_frame": 10, "box_start": [0, 0, s, s],
                                     "box_end": [0, 0, s, s], "motion": 1.0, "shard": name, "offset": off}))
    manifest = ("\n".join(lines) + "\n").encode()
    (root / "manifest.jsonl").write_bytes(manifest)
    found = sorted(set(videos))
    meta = {"pairs": n, "patch_size": patch_size or s,
            "videos": {"found": len(found), "mined": len(found), "skipped": {}}, "tracks_rejected": {}}
    if mined_with is not None:
        from tracking.config import MineConfig

        meta.update({"config": dataclasses.asdict(dataclasses.replace(MineConfig(), **mined_with)),
                     "video_backend": "auto", "manifest_sha256": hashlib.sha256(manifest).hexdigest(),
                     "videos_root": "/videos"})
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def synthetic_pairs(root: Path, num_videos: int = 4, tracks_per_video: int = 24, size: int = 40,
                    seed: int = 0, mined_with: dict | None = None) -> Path:
    """Learnable toy pairs: each track is a random texture (its video sets the colour palette); the two patches are
    crops of it at different offsets with a brightness change. ``mined_with``: see :func:`write_pairs`."""
    rng = np.random.default_rng(seed)
    patches, videos, tracks = [], [], []
    for v in range(num_videos):
        palette = rng.integers(0, 256, size=(4, 3))
        for t in range(tracks_per_video):
            cells = palette[rng.integers(0, 4, size=(6, 6))]
            tex = np.kron(cells, np.ones((12, 12, 1))).astype(np.float32)  # 72 x 72
            tex += rng.normal(0, 10, tex.shape)
            pair = []
            for _ in range(2):
                y, x = rng.integers(0, 72 - size + 1, size=2)
                pair.append(np.clip(tex[y:y + size, x:x + size] * rng.uniform(0.85, 1.15), 0, 255))
            patches.append(np.stack(pair).astype(np.uint8))
            videos.append(f"video{v}")
            tracks.append(t)
    return write_pairs(root, np.stack(patches), videos, tracks, mined_with=mined_with)


def demo_pairs(demo_dir: Path, root: Path, size: int = 48, gap: int = 15, stride: int = 3) -> Path:
    """Pairs cut from the demo clips at their ground-truth boxes: each object at frames t and t + gap (same shot),
    one track per (object, t). Square crops around the box, 20% margin, resized to ``size``."""
    import cv2

    from vidssl.video import open_video

    patches, videos, tracks = [], [], []
    for video in sorted(Path(demo_dir).glob("clip_*.mp4")):
        truth = json.loads(video.with_suffix(".json").read_text())
        cuts = truth["cut_frames"]
        wanted = []
        for obj in truth["objects"]:
            boxes = obj["boxes"]
            for t in range(0, truth["num_frames"] - gap, stride):
                same_shot = not any(t < c <= t + gap for c in cuts)
                if same_shot and boxes[t] is not None and boxes[t + gap] is not None:
                    wanted.append((obj["id"], t, boxes[t], boxes[t + gap]))
        frames_needed = sorted({t for _, t, _, _ in wanted} | {t + gap for _, t, _, _ in wanted})
        with open_video(video) as reader:
            frames = dict(zip(frames_needed, reader.get_batch(frames_needed)))
        for k, (oid, t, b0, b1) in enumerate(wanted):
            pair = []
            for frame_index, (x, y, w, h) in ((t, b0), (t + gap, b1)):
                frame = frames[frame_index]
                side = int(max(w, h) * 1.2)
                padded = cv2.copyMakeBorder(frame, side, side, side, side, cv2.BORDER_REFLECT)
                top, left = int(y + h / 2) - side // 2 + side, int(x + w / 2) - side // 2 + side  # in `padded`
                crop = padded[top:top + side, left:left + side]
                pair.append(cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA))
            patches.append(np.stack(pair))
            videos.append(video.stem)
            tracks.append(k)
    return write_pairs(root, np.stack(patches), videos, tracks)
