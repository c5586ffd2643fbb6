"""Built-in demo videos: textured objects on known trajectories, with ground truth.

The default input of ``vidssl pretrain`` and the fixture of the tracking tests. Each clip is an H.264 mp4 (PyAV)
with a JSON beside it giving every object's box in every frame, so mined tracks can be scored against the truth.

A clip is rendered in *world* coordinates (a textured background canvas twice the frame size, with opaque textured
discs moving on it) and viewed through a camera that pans and/or zooms; because the camera only translates and
scales, every world box maps to an axis-aligned frame box exactly.

Every disc also spins about its centre (0.8-1.4 degrees a frame, so the two patches of a 30-frame pair differ by
24-42 degrees): the object's appearance changes along its track, as real objects' do, which a matching of raw
pixels across time cannot follow and a representation learned from the pairs can. A disc's bounding box does not
depend on its rotation, so the ground-truth boxes stay exact. (Faster spins lose the KCF tracker: at 1.5-2 degrees
a frame most tracks failed.)

Clip kinds cycle with the clip index (see ``KINDS``): a still camera, a pan, a hard scene cut, a fully static clip
(nothing moves or spins), a zoom, and a pan with three objects. The same seed gives the same clips and the same JSON.
"""
from __future__ import annotations

import errno
import hashlib
import math
import os
import re
import time
from fractions import Fraction
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vidssl.errors import VidsslError
from vidssl.io import atomic_path, atomic_write_json, json_object, remove_temp_leftovers

KINDS = ("still", "pan", "cut", "static", "zoom", "pan3")
LEFTOVER_AGE_S = 60.0  # a clip's temp file unchanged this long is a killed call's
# the temp names atomic_path gives this generator's own files (.tmp-clip_03.mp4.<pid>@<machine>.<random>; before the
# writer was named, .tmp-clip_03.mp4.<random>): OUT may be the user's folder, whose other .tmp-* files (another
# tool's) are not this generator's to delete
_CLIP_TEMP = re.compile(r"\.tmp-clip_\d+\.(mp4|json)\.")
# recorded in each clip's JSON: a clip written by another version of the generator is written again, not reused
# (2: spinning discs; before, rectangles that kept their orientation)
# a clip JSON's "generator" (without "version" before version 2)
GENERATOR_KEYS = {"version", "seed", "index", "frames", "width", "height", "fps"}
GENERATOR_VERSION = 3  # 3: the pan slowed where the camera would leave the canvas (long or small clips)


@dataclass
class _Object:
    """A textured disc moving inside its own vertical lane of the *frame*, bouncing off the lane's walls, so it
    stays in view and never overlaps another object whatever the camera does, and spinning about its centre."""

    texture: np.ndarray  # (d, d, 3) uint8, in world pixels (frame pixels at zoom 1); the disc is its inscribed circle
    lane: tuple[float, float, float, float]  # x0, y0, x1, y1 of the region the frame box stays inside
    start: tuple[float, float]  # frame top-left at t=0, relative to the lane
    velocity: tuple[float, float]  # frame pixels per frame
    wobble: float  # amplitude of a sinusoidal component, so trajectories are not straight lines
    phase: float
    spin: float  # degrees per frame, counter-clockwise on screen (0: the texture keeps its orientation)
    angle: float  # orientation at t=0, degrees

    def __post_init__(self) -> None:
        # (d, d) bool: the pixels whose centres lie inside the circle inscribed in the texture's square
        centre = np.arange(self.texture.shape[0]) + 0.5 - self.texture.shape[0] / 2
        self.disc = centre[:, None] ** 2 + centre[None, :] ** 2 <= (self.texture.shape[0] / 2) ** 2

    def rotated_texture(self, t: int) -> np.ndarray:
        """The texture turned to its orientation at time t: (d, d, 3) uint8."""
        import cv2

        d = self.texture.shape[0]
        rotation = cv2.getRotationMatrix2D(((d - 1) / 2, (d - 1) / 2), self.angle + self.spin * t, 1.0)
        # pixels outside the disc are never pasted; reflecting there only keeps the rim's interpolation clean
        return cv2.warpAffine(self.texture, rotation, (d, d), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)

    def frame_position(self, t: int, max_scale: float) -> tuple[float, float]:
        """Top-left corner in frame pixels at time t (reflected at the lane walls)."""
        h, w = self.texture.shape[:2]
        span_x = max(1e-6, (self.lane[2] - self.lane[0]) - w * max_scale)
        span_y = max(1e-6, (self.lane[3] - self.lane[1]) - h * max_scale)
        x = self.start[0] + self.velocity[0] * t + self.wobble * math.sin(0.15 * t + self.phase)
        y = self.start[1] + self.velocity[1] * t + self.wobble * math.cos(0.11 * t + self.phase)
        x = span_x - abs((x % (2 * span_x)) - span_x)
        y = span_y - abs((y % (2 * span_y)) - span_y)
        return self.lane[0] + x, self.lane[1] + y


def object_texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A high-contrast texture: a coarse grid of saturated random colours with fine noise. (h, w, 3) uint8."""
    cells = rng.integers(0, 256, size=(max(2, height // 10), max(2, width // 10), 3)).astype(np.float32)
    cells = np.where(cells > 127, np.minimum(cells + 60, 255), np.maximum(cells - 60, 0))
    import cv2

    big = cv2.resize(cells, (width, height), interpolation=cv2.INTER_NEAREST)
    noise = rng.normal(0, 12, size=big.shape)
    return np.clip(big + noise, 0, 255).astype(np.uint8)


def background_texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A low-contrast natural-looking texture (smoothed noise plus blobs), so corners exist for camera estimation
    but objects stand out. (h, w, 3) uint8."""
    import cv2

    base = rng.uniform(60, 190, size=(height // 16 + 1, width // 16 + 1, 3)).astype(np.float32)
    img = cv2.resize(base, (width, height), interpolation=cv2.INTER_CUBIC)
    detail = cv2.GaussianBlur(rng.normal(0, 25, size=(height, width, 3)).astype(np.float32), (0, 0), 1.5)
    img = img + detail
    for _ in range(int(height * width / 900)):
        cx, cy = int(rng.integers(0, width)), int(rng.integers(0, height))
        color = tuple(float(c) for c in rng.uniform(40, 220, size=3))
        cv2.circle(img, (cx, cy), int(rng.integers(2, 7)), color, -1)
    return np.clip(img, 0, 255).astype(np.uint8)


class _Shot:
    """One continuous shot: a world canvas, its objects, and a camera path."""

    def __init__(self, rng: np.random.Generator, kind: str, width: int, height: int, frames: int, first_id: int):
        self.width, self.height = width, height
        self.canvas = background_texture(rng, 2 * height, 2 * width)
        self.kind = kind
        n_objects = {"still": 2, "pan": 2, "cut": 2, "static": 2, "zoom": 2, "pan3": 3}[kind]
        self.objects: list[_Object] = []
        self.ids = list(range(first_id, first_id + n_objects))
        side = min(width, height)
        self.max_scale = 1.35 if kind == "zoom" else 1.0
        lane_w = width / n_objects
        for k in range(n_objects):
            low, high = 0.30, 0.36  # a narrow range, so one mining box size (demo.mine_box_fraction) fits them all
            d = int(min(rng.integers(int(low * side), int(high * side) + 1), 0.8 * lane_w / self.max_scale))
            lane = (k * lane_w, 0.0, (k + 1) * lane_w, float(height))
            speed = 0.0 if kind == "static" else rng.uniform(1.2, 2.2)
            angle = rng.uniform(0, 2 * math.pi)
            wobble = 0.0 if kind == "static" else rng.uniform(3, 8)
            spin = 0.0 if kind == "static" else rng.uniform(0.8, 1.4) * rng.choice([-1, 1])
            self.objects.append(_Object(object_texture(rng, d, d), lane,
                                        (rng.uniform(0, lane_w), rng.uniform(0, height)),
                                        (speed * math.cos(angle), speed * math.sin(angle)), wobble,
                                        rng.uniform(0, 2 * math.pi), float(spin), float(rng.uniform(0, 360))))
        self.frames = frames
        pan = (rng.uniform(0.8, 1.4) * rng.choice([-1, 1]), rng.uniform(0.3, 0.7) * rng.choice([-1, 1])) \
            if kind in ("pan", "pan3") else (0.0, 0.0)
        # the frame starts half a frame inside the 2W x 2H canvas: at the drawn speed a long or small clip's camera
        # left it (an IndexError pasting an object, or an object pasted away from its box). Slower there, so the
        # frame stays on the canvas; the default 90 frames at 320x240 (up to 1.8 and 1.3 px a frame) are unchanged
        reach = ((width / 2 - 1) / max(1, frames - 1), (height / 2 - 1) / max(1, frames - 1))
        self.pan = tuple(math.copysign(min(abs(v), r), v) for v, r in zip(pan, reach))

    def camera(self, t: int) -> tuple[float, float, float]:
        """(x, y, scale): the world point at the frame's top-left and the zoom factor at local time t."""
        scale = 1.0 + (self.max_scale - 1.0) * t / max(1, self.frames - 1)
        x = self.width / 2 + self.pan[0] * t
        y = self.height / 2 + self.pan[1] * t
        if self.kind == "zoom":  # zoom about the frame centre
            cx, cy = self.width / 2 + self.width / 2, self.height / 2 + self.height / 2
            x, y = cx - self.width / (2 * scale), cy - self.height / (2 * scale)
        return x, y, scale

    def render(self, t: int) -> tuple[np.ndarray, list[list[float] | None]]:
        """Frame (H, W, 3) uint8 RGB at local time t and each object's frame box [x, y, w, h]."""
        import cv2

        world = self.canvas.copy()
        cam_x, cam_y, scale = self.camera(t)
        boxes: list[list[float] | None] = []
        for obj in self.objects:
            fx, fy = obj.frame_position(t, self.max_scale)
            h, w = obj.texture.shape[:2]
            # paste at the integer world position, then report the exact frame box of what was pasted
            xi, yi = int(round(cam_x + fx / scale)), int(round(cam_y + fy / scale))
            world[yi:yi + h, xi:xi + w][obj.disc] = obj.rotated_texture(t)[obj.disc]
            # warpAffine maps pixel centres, boxes are in pixel-edge coordinates: an edge lands 0.5 x (scale - 1)
            # px before scale x (world - cam) (0.175 px at the zoom's 1.35)
            shift = 0.5 * (scale - 1.0)
            boxes.append([round(scale * (xi - cam_x) - shift, 3), round(scale * (yi - cam_y) - shift, 3),
                          round(scale * w, 3), round(scale * h, 3)])
        # frame = scale * (world - cam): an affine map, so boxes stay axis-aligned
        matrix = np.array([[scale, 0, -scale * cam_x], [0, scale, -scale * cam_y]], np.float64)
        frame = cv2.warpAffine(world, matrix, (self.width, self.height), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT)
        return frame, boxes


class DemoClip:
    """A whole demo clip: one or two shots. ``render(t)`` gives frame t and all object boxes (None = absent)."""

    def __init__(self, index: int, seed: int, frames: int, width: int, height: int):
        self.kind = KINDS[index % len(KINDS)]
        rng = np.random.default_rng([seed, index])
        self.frames, self.width, self.height = frames, width, height
        self.cut = frames // 2 if self.kind == "cut" else None
        if self.cut is None:
            self.shots = [(0, _Shot(rng, self.kind, width, height, frames, 0))]
        else:
            first = _Shot(rng, "still", width, height, self.cut, 0)
            second = _Shot(rng, "pan", width, height, frames - self.cut, len(first.objects))
            self.shots = [(0, first), (self.cut, second)]

    @property
    def object_ids(self) -> list[int]:
        return [i for _, shot in self.shots for i in shot.ids]

    def objects(self) -> dict[int, tuple[int, _Object]]:
        """Object id -> (first frame of its shot, the object): the generator's own parameters and texture, for
        checking the decoded output."""
        return {i: (start, obj) for start, shot in self.shots for i, obj in zip(shot.ids, shot.objects)}

    def render(self, t: int) -> tuple[np.ndarray, dict[int, list[float] | None]]:
        start, shot = [s for s in self.shots if s[0] <= t][-1]
        frame, boxes = shot.render(t - start)
        out: dict[int, list[float] | None] = {i: None for i in self.object_ids}
        out.update(zip(shot.ids, boxes))
        return frame, out


def write_clip(clip: DemoClip, video_path: Path, fps: int) -> dict:
    """Encode ``clip`` as H.264 mp4 at ``video_path`` (atomically) and return its ground-truth dict."""
    import av

    boxes: dict[int, list] = {i: [] for i in clip.object_ids}
    with atomic_path(video_path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = clip.width, clip.height, "yuv420p"
            stream.codec_context.time_base = Fraction(1, fps)
            # constant QP, one thread: x264's CRF rate control is not bit-reproducible run to run, constant QP is
            stream.options = {"qp": "16", "preset": "veryfast", "threads": "1"}
            for t in range(clip.frames):
                frame, frame_boxes = clip.render(t)
                for i, box in frame_boxes.items():
                    boxes[i].append(box)
                video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
                video_frame.pts, video_frame.time_base = t, Fraction(1, fps)
                for packet in stream.encode(video_frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    return {"width": clip.width, "height": clip.height, "fps": fps, "num_frames": clip.frames, "kind": clip.kind,
            "cut_frames": [] if clip.cut is None else [clip.cut], "static": clip.kind == "static",
            "objects": [{"id": i, "boxes": boxes[i]} for i in clip.object_ids]}


def make_held_out_demo_videos(out_dir, num: int = 6, seed: int = 0, frames: int = 90, width: int = 320,
                              height: int = 240, fps: int = 25, owned: bool = False) -> list[Path]:
    """The clips a demo run evaluates on and never trains on, for the demo settings ``num``, ``seed``, ...: another
    seed (seed + 1000) and half as many clips (at least 2), written as :func:`make_demo_videos` writes them."""
    return make_demo_videos(out_dir, max(2, num // 2), seed + 1000, frames, width, height, fps, owned)


def make_demo_videos(out_dir, num: int = 6, seed: int = 0, frames: int = 90, width: int = 320, height: int = 240,
                     fps: int = 25, owned: bool = False) -> list[Path]:
    """Write ``num`` clips ``clip_XX.mp4`` with ``clip_XX.json`` ground truth into ``out_dir``; returns the mp4 paths.

    Clips already present with a matching JSON (same generator version and arguments, and the mp4's size and SHA-256
    it recorded) are kept, so reruns are cheap; any other clip of this generator's is written again. A
    ``clip_XX.mp4`` or ``clip_XX.json`` it did not write (a user's own clip_00.mp4) is never replaced or deleted:
    :class:`ForeignClipError`, raised before anything is written. ``owned``: ``out_dir`` is a folder of vidssl's own
    (``vidssl pretrain``'s ``RUN/demo_videos``, under RUN's lock), where a clip file without a record is a leftover
    (an older version's call killed before its first JSON, a JSON deleted by hand) and is written again.
    """
    started = time.time()
    if num < 1 or frames < 2 or width < 64 or height < 64 or width % 2 or height % 2:
        raise ValueError("demo videos need num >= 1, frames >= 2 and a frame of at least 64x64 with even sides "
                         f"(H.264 in yuv420p), got num={num}, frames={frames}, {width}x{height}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():  # mkdir would say "File exists"
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(out))
    out.mkdir(parents=True, exist_ok=True)
    # every index before anything is written or deleted: a refusal leaves the folder as it was, not half replaced
    foreign = [] if owned else [path for index in range(num) for path in _foreign_files(out, index)]
    if foreign:
        raise ForeignClipError(foreign)
    # a clip half encoded when a call was killed; no lock is held here, so not a temp file another call writing into
    # this folder may still be writing: one untouched for a minute (an encoder writes every fraction of a second),
    # or whose writer on this machine has ended
    remove_temp_leftovers(out, older_than=started - LEFTOVER_AGE_S, only=_CLIP_TEMP)
    paths = []
    for index in range(num):
        video_path, json_path = _clip_paths(out, index)
        params = {"version": GENERATOR_VERSION, "seed": seed, "index": index, "frames": frames, "width": width,
                  "height": height, "fps": fps}
        if _clip_is_complete(video_path, json_path, params):
            paths.append(video_path)
            continue
        # the claim, written before the mp4, so the index stays recognisably this generator's whatever write a kill
        # stops the call at (before it: nothing of ours here yet, or our earlier record; after it: the claim, then
        # the final JSON). Its "mp4": null matches no mp4: a claimed clip is written again until its JSON is final
        atomic_write_json(json_path, {"generator": params, "mp4": None}, indent=None)
        truth = write_clip(DemoClip(index, seed, frames, width, height), video_path, fps)
        truth["generator"] = params
        # top level, not in "generator" (_made_here checks its exact keys): an older version wrote no claim, and a
        # call of it killed between the mp4's write and this JSON's left a new mp4 beside the old JSON, which
        # matches it no more
        truth["mp4"] = _mp4_record(video_path)
        atomic_write_json(json_path, truth, indent=None)  # written last: its mp4 record marks the clip complete
        paths.append(video_path)
    _remove_clips_beyond(out, num)
    return paths


class ForeignClipError(VidsslError):
    """A ``clip_XX.mp4`` or ``clip_XX.json`` in the demo folder that the demo generator did not write (a camera's or
    an editor's clip_00.mp4 in the user's own folder), where it would write a clip: never replaced. ``paths``: every
    such file among the indices asked for."""

    def __init__(self, paths: list[Path]):
        self.paths = list(paths)
        first = self.paths[0]
        record = first.with_suffix(".json")
        # "not recorded": an mp4 of its own whose JSON was damaged since is refused too (nothing says whose it is)
        why = ("not a record the demo generator writes" if first.suffix == ".json"
               else f"{record.name} beside it is not a record the demo generator writes" if os.path.lexists(record)
               else f"no {record.name} of the demo generator's beside it")
        names = ", ".join(path.name for path in self.paths[:4])
        if len(self.paths) > 4:
            names += f" and {len(self.paths) - 4} more"
        super().__init__(f"{first}: not recorded as written by vidssl's demo generator ({why}), and a demo clip would "
                         f"replace it; nothing was written: choose an empty or new folder for the demo clips, or move "
                         f"or rename {names} in {first.parent}")


def _clip_paths(out: Path, index: int) -> tuple[Path, Path]:
    """Clip ``index``'s mp4 and JSON in ``out``."""
    return out / f"clip_{index:02d}.mp4", out / f"clip_{index:02d}.json"


def _made_here(json_path: Path, index: int) -> bool:
    """Whether ``json_path`` is this generator's record of clip ``index``: its claim, its complete clip's JSON, or one
    an older version wrote (no "version" before version 2, no "mp4" before the digest was recorded). Exactly the
    "generator" keys make_demo_videos records, for this index: an annotation tool's JSON beside a user's own
    clip_07.mp4 may well name its "generator" too. A JSON that is missing, torn, not UTF-8 or no object is none."""
    made_by = json_object(json_path).get("generator")
    return (isinstance(made_by, dict) and set(made_by) in (GENERATOR_KEYS, GENERATOR_KEYS - {"version"})
            and type(made_by["index"]) is int and made_by["index"] == index)  # noqa: E721 (bool is no index)


def _foreign_files(out: Path, index: int) -> list[Path]:
    """The files at clip ``index``'s two paths that this generator did not write: none where its record (see
    :func:`_made_here`) claims the index, both that exist where none does. It writes the claim before the mp4, so
    an mp4 of its own always has one; an mp4 an older version wrote, killed before its first JSON, has none (a
    leftover of one call, named like any file of the user's)."""
    video_path, json_path = _clip_paths(out, index)
    if _made_here(json_path, index):
        return []
    return [path for path in (video_path, json_path) if os.path.lexists(path)]  # a dangling link is someone's too


def _mp4_record(path: Path) -> dict:
    """``{"size", "sha256"}`` of a written clip, recorded in its JSON."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return {"size": size, "sha256": digest.hexdigest()}


def _clip_is_complete(video_path: Path, json_path: Path, params: dict) -> bool:
    """Whether ``json_path`` records ``params`` and the mp4 now at ``video_path``. A claim ("mp4": null) records no
    mp4; a JSON that is missing, torn, not UTF-8 or no object (a list) is no record."""
    record = json_object(json_path)
    mp4 = record.get("mp4")
    if record.get("generator") != params or not isinstance(mp4, dict):
        return False
    try:
        if not video_path.is_file() or video_path.stat().st_size != mp4.get("size"):
            return False  # cheap: no need to read it
        return _mp4_record(video_path) == mp4
    except OSError:
        return False


def _remove_clips_beyond(out: Path, num: int) -> None:
    """Delete the demo clips an earlier call with a larger ``num`` wrote into ``out`` (those whose JSON is this
    generator's record of that index, claims included): mining the folder would train on them too (a pretrain rerun
    with a smaller demo.num). Only names it writes (clip_07.json, not clip_007.json or clip_7.json)."""
    for json_path in out.glob("clip_*.json"):
        index = json_path.stem[len("clip_"):]
        if not (index.isascii() and index.isdigit()) or int(index) < num or index != f"{int(index):02d}":
            continue
        if _made_here(json_path, int(index)):
            json_path.with_suffix(".mp4").unlink(missing_ok=True)  # the mp4 first: its JSON says whose it is
            json_path.unlink()
