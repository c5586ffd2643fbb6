"""All video decoding in vidssl goes through this module.

``open_video(path, backend="auto")`` returns a :class:`VideoReader` over decord, PyAV or OpenCV. ``"auto"`` tries
them in that order for each file, and falls back to the next one when a backend fails to open the file, to decode
its first frame, or (while streaming) to decode a later frame.

Readers stream: ``frames()`` yields one RGB uint8 frame at a time (optionally every ``stride``-th, resized at decode
time so the long side is at most ``max_side``) and never holds a whole video. ``get_batch(indices)`` gives random
access, sorted internally because unsorted decord batches are about 10x slower.

Create readers inside each DataLoader worker: a decord reader shared across processes deadlocks.

Every file is checked before any backend sees it (missing, directory, zero bytes, unreadable, an image or a text file
under a video name), so no backend is handed input that could crash it; failures raise
:class:`~vidssl.errors.VideoError` subclasses whose message names the file.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import re
import stat
import struct
import sys
import threading
from abc import ABC, abstractmethod
from collections import Counter
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from vidssl.errors import CorruptVideo, EmptyVideo, NoVideoStream, UnsupportedVideo, UsageError, VideoError

log = logging.getLogger(__name__)

# .qt, .3g2 and .f4v are MP4/QuickTime files under other names (FFmpeg's one mov demuxer, as for .mp4, .mov, .3gp):
# every backend decodes them frame for frame alike (tested)
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts", ".flv",
                    ".3gp", ".wmv", ".ogv", ".qt", ".3g2", ".f4v")
# containers of video that are not mined as they are: decord 0.6 decodes DVD programme streams (.vob) a frame off
# and DV with other colours than PyAV and OpenCV, and the rest are untested; passed over with a warning (a folder of
# such files was passed over in silence), not at debug like the .json and .jpg beside a folder of clips
OTHER_VIDEO_EXTENSIONS = (".vob", ".dv", ".mxf", ".y4m", ".asf", ".divx", ".rm", ".rmvb", ".mod", ".tod", ".m2v",
                          ".h264", ".264", ".hevc", ".h265", ".ivf", ".nut", ".mjpeg")

# (magic prefix, what it is): files that some backends would happily "decode" as a one-frame video.
_IMAGE_MAGIC = ((b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
                (b"BM", "a BMP image"), (b"%PDF", "a PDF document"), (b"PK\x03\x04", "a zip archive"))


def resized_shape(height: int, width: int, max_side: int | None) -> tuple[int, int]:
    """(height, width) scaled so the long side is at most ``max_side``; even sizes, never upscaled. ``max_side``
    None or 0: no limit."""
    if max_side is not None and (max_side < 0 or max_side == 1):  # 1 would give 2x2, over the limit
        raise ValueError(f"max_side must be None, 0 (no limit) or at least 2 pixels (sizes are even), got {max_side}")
    if not max_side or max(height, width) <= max_side:
        return height, width
    scale = max_side / max(height, width)
    even_cap = max(2, max_side // 2 * 2)  # rounding to even sizes must not overshoot an odd max_side (255 -> 256)
    return tuple(min(even_cap, max(2, int(round(side * scale / 2)) * 2)) for side in (height, width))


def display_orientation(matrix: Sequence[int] | None) -> tuple[int, bool]:
    """(counter-clockwise quarter turns, mirrored) of a display matrix (9 int32, 16.16 fixed point, row-major, as
    in an MP4 track header and FFmpeg's side data). The turns are the ones FFmpeg's ``av_display_rotation_get``
    rounds to, which decord and OpenCV apply; a matrix with a negative determinant also mirrors, which they
    ignore (FFmpeg reads a horizontal flip as a 180 degree turn). A singular matrix (all zeros) means upright."""
    if matrix is None:
        return 0, False
    a, b, c, d = (matrix[i] / 65536 for i in (0, 1, 3, 4))
    column_scales = math.hypot(a, c), math.hypot(b, d)
    if not all(column_scales):
        return 0, False
    degrees = -math.degrees(math.atan2(b / column_scales[1], a / column_scales[0]))
    return int(round(degrees / 90)) % 4, a * d - b * c < 0


def unmirror(frame: np.ndarray, turns: int) -> np.ndarray:
    """The displayed picture of a mirroring display matrix, from the frame turned by its ``turns`` alone: the
    rows reversed after an even number of quarter turns, the columns after an odd one (FFmpeg's autorotate: a
    horizontal flip, a vertical flip, a transpose)."""
    return np.ascontiguousarray(frame[::-1] if turns % 2 == 0 else frame[:, ::-1])


def ffmpeg_path(path: str | os.PathLike) -> str:
    """``path`` as FFmpeg should get it: a relative name with a colon before its first slash (``12:30.mp4``,
    ``2023-05-01T12:30/a.mp4``) is read as a URL protocol, so relative names start with ``./``. Not made absolute:
    the working folder's name may not be UTF-8 (decord and OpenCV refuse it), and ``link/..`` must go through the
    link's target as the OS resolves it, which normalising would undo."""
    name = os.fspath(path)
    return name if os.path.isabs(name) or name.startswith("./") else os.path.join(os.curdir, name)


def _check_stride_start(stride: int, start: int) -> None:
    if stride < 1 or start < 0:  # decord read a negative start from the end, PyAV and OpenCV from 0
        raise ValueError(f"stride must be >= 1 and start >= 0, got stride {stride}, start {start}")


NOT_UTF8 = "the file name is not valid UTF-8"


def utf8_path(path: Path, backend: str) -> str:
    """``path`` as the str decord and OpenCV take: their C++ encodes it as UTF-8, and a name that is not (bytes
    of another encoding, which Python holds as lone surrogates) crashed OpenCV's process (PyAV opens such names).
    Relative names start with ``./`` (:func:`ffmpeg_path`)."""
    name = ffmpeg_path(path)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise UnsupportedVideo(ascii(name), f"{NOT_UTF8}, which {backend} cannot open (PyAV "
                                            "can: video.backend auto or pyav); or rename it, e.g. convmv -f latin1 "
                                            "-t utf8 --notest FILE") from None
    return name


def dangling_link(path: Path) -> str:
    """What is wrong with ``path``, a symbolic link that reaches no file: a loop of links (ELOOP: one pointing at
    itself, ``ln -s self.mp4 self.mp4``, or two at each other), which "its target does not exist" misnamed (the
    target is there: the link itself), or a target that does not exist."""
    target = os.readlink(path)
    try:
        os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return (f"a symbolic link loop: its target {target} leads back to it through links (ELOOP), never to a "
                    "file; point the link at the video, or delete it")
    return f"a broken link: its target {target} does not exist"


def check_video_file(path: str | os.PathLike) -> Path:
    """Raise the matching VideoError for input that is not a readable, non-empty, plausibly-video file."""
    path = Path(path)
    if not path.exists():
        if path.is_symlink():
            raise UnsupportedVideo(path, dangling_link(path))
        raise UnsupportedVideo(path, "no such file")
    if path.is_dir():
        raise UnsupportedVideo(path, "is a directory, not a video file")
    if not path.is_file():
        raise UnsupportedVideo(path, "is not a regular file")
    st = path.stat()
    # Root can read any file, but a file with no read bit is one its owner meant unreadable: honour that everywhere.
    if not os.access(path, os.R_OK) or stat.S_IMODE(st.st_mode) & 0o444 == 0:
        raise UnsupportedVideo(path, "no read permission (fix with: chmod +r FILE)")
    if st.st_size == 0:
        raise EmptyVideo(path, "zero-byte file")
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError as e:
        raise UnsupportedVideo(path, f"cannot be read ({e.strerror})") from None
    for magic, what in _IMAGE_MAGIC:
        if head.startswith(magic):
            raise UnsupportedVideo(path, f"is {what}, not a video")
    if head[4:8] == b"ftyp" and _mp4_index(path, st.st_size) == "missing":
        # re-encoding cannot help: without the index no decoder knows where the frames are
        raise CorruptVideo(path, "incomplete file (no index): copy or download it again")
    if _looks_like_text(head):
        raise UnsupportedVideo(path, "is a text file, not a video")
    return path


# bytes no text holds (controls other than tab, newlines, form feed and escape): every container's header has some
_NOT_TEXT = bytes(set(range(32)) - {9, 10, 11, 12, 13, 27}) + b"\x7f"


def _looks_like_text(head: bytes) -> bool:
    """Whether the first bytes of a file are text in any 8-bit encoding (UTF-8 cut mid-character, Latin-1) or
    UTF-16 with its byte-order mark."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        body = head[2:len(head) - len(head) % 2]
        try:
            return not any(c in _NOT_TEXT.decode("latin-1") for c in body.decode("utf-16"))
        except UnicodeDecodeError:
            return False
    return not any(b in _NOT_TEXT for b in head)


def _mp4_index(path: Path, size: int) -> str:
    """The state of an MP4/MOV file's (ISO BMFF) top-level ``moov`` box, the index every decoder needs: "whole",
    "missing" (a copy or download cut short, or a recording never finalised, when it was to be written after the
    media data) or "cut" (the file ends inside it: the backends may still read what there is, or call the file
    unparsable or without a video stream)."""
    pos = 0
    with open(path, "rb") as fh:
        while pos + 8 <= size:
            fh.seek(pos)
            header = fh.read(16)
            box_size, kind = struct.unpack(">I4s", header[:8])
            if box_size == 1 and len(header) == 16:
                box_size = struct.unpack(">Q", header[8:])[0]  # 64-bit size
            elif box_size == 0:
                box_size = size - pos  # the last box: up to the end of the file
            if kind == b"moov":
                return "cut" if pos + box_size > size else "whole"
            if box_size < 8:
                return "whole"  # not a box layout this scan understands: the backends judge the file
            pos += box_size
    return "missing"


def _index_cut_short(path: Path) -> bool:
    """Whether ``path`` is an MP4/MOV file that ends inside its index (see :func:`_mp4_index`)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
        return head[4:8] == b"ftyp" and _mp4_index(path, path.stat().st_size) == "cut"
    except OSError:
        return False


class VideoReader(ABC):
    """A decoded video: metadata plus streaming and random access to RGB uint8 frames.

    Attributes: ``path``, ``backend``, ``fps`` (average frame rate), ``width``, ``height`` (source size) and
    ``num_frames`` (frames in the stream, counted once on first use, not only what the container claims; PyAV
    counts the packets that demux, which in a file cut short can be a few more than the frames that decode: the
    decode itself stops there).
    ``decode_failures``: the mid-stream failures a stream survived by falling back to another backend (auto), e.g.
    ``"pyav failed at frame 81"``; a stream that then ends early ended at the damage, not at the end of the video.
    ``announced_frames``: the frame count the container's index claims (PyAV's ``stream.frames``); where it keeps
    none (MKV, WebM), the duration it announces times the frame rate, that duration in ``announced_seconds`` (None
    otherwise); None where it announces neither or the backend cannot tell (OpenCV's own count is estimated from
    the duration, so OpenCV takes PyAV's). A file cut
    short after an index written at its start (``movflags=faststart``) decodes its first part without an error:
    fewer frames than announced is the first sign, and packets that stop short of the announced duration the
    proof (:func:`lost_its_end`; fewer frames alone is not: an edit list or an AVI's dropped-frame chunks make
    healthy files decode fewer than they announce).
    """

    backend: str = ""

    def __init__(self, path: Path):
        self.path = path
        self.fps: float = 0.0
        self.width: int = 0
        self.height: int = 0
        self._num_frames: int | None = None
        self.decode_failures: list[str] = []
        self.announced_frames: int | None = None
        self.announced_seconds: float | None = None

    @property
    def num_frames(self) -> int:
        if self._num_frames is None:
            self._num_frames = self._count_frames()
        return self._num_frames

    @abstractmethod
    def _count_frames(self) -> int: ...

    @abstractmethod
    def frames(self, stride: int = 1, max_side: int | None = None, start: int = 0,
               end: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(index, frame)`` for indices ``start, start+stride, ... < end``; frame: (H, W, 3) RGB uint8."""

    def get_batch(self, indices: Sequence[int], max_side: int | None = None) -> np.ndarray:
        """Frames at ``indices`` (any order, repeats allowed) as (N, H, W, 3) uint8, decoded in sorted order."""
        wanted = sorted(set(int(i) for i in indices))
        if not wanted:
            h, w = resized_shape(self.height, self.width, max_side)
            return np.zeros((0, h, w, 3), np.uint8)
        if wanted[0] < 0:
            raise IndexError(f"{self.path}: negative frame index {wanted[0]}")
        found = self._decode_sorted(wanted, max_side)
        missing = [i for i in wanted if i not in found]
        if missing:
            raise IndexError(f"{self.path}: frame {missing[0]} does not exist or does not decode (the video "
                             f"announces {self.num_frames} frames)")
        return np.stack([found[int(i)] for i in indices])

    def _decode_sorted(self, wanted: list[int], max_side: int | None) -> dict[int, np.ndarray]:
        """Default random access: stream from the first wanted index, keep the wanted ones."""
        keep = set(wanted)
        out = {}
        for i, frame in self.frames(max_side=max_side, start=wanted[0], end=wanted[-1] + 1):
            if i in keep:
                out[i] = frame
        return out

    def close(self) -> None:
        pass

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({str(self.path)!r}, backend={self.backend}, {self.width}x{self.height}, "
                f"fps={self.fps:.2f})")


# ----------------------------------------------------------------------------------------------------------------
# PyAV


def _announced_duration(container, stream) -> tuple[float, bool] | None:
    """(seconds, whether they are the whole container's) that ``container`` announces for its video ``stream``:
    the stream's own duration (MP4, AVI); else, in MKV and WebM, its DURATION tag (what FFmpeg and mkvmerge write,
    "00:00:03.600000000"), else the container's (every stream's); None where none is known. A length, from the
    stream's (or container's) start."""
    if stream.duration and stream.time_base is not None:
        seconds = float(stream.duration * stream.time_base)
        if container.format.name == "avi" and stream.frames:
            # an AVI cut short lost its index (idx1, at the end), and FFmpeg then estimates the duration from what
            # is left; its header's frame count, one time_base tick each, is what the file announced
            seconds = max(seconds, float(stream.frames * stream.time_base))
        return seconds, False
    if not _is_matroska(container):  # where FFmpeg may have estimated a duration (from the PTS of a transport
        return None  # stream's last packets, from the bitrate of a raw stream): no proof of a loss
    tag = next((v for k, v in stream.metadata.items() if k.upper() == "DURATION"), None)
    match = re.fullmatch(r"(\d+):(\d+):(\d+(?:\.\d*)?)", tag.strip()) if isinstance(tag, str) else None
    seconds = int(match[1]) * 3600 + int(match[2]) * 60 + float(match[3]) if match else 0.0
    if seconds > 0:
        start = float(stream.start_time * stream.time_base) if stream.start_time and stream.time_base else 0.0
        return _matroska_length(seconds, start), False
    if container.duration and container.duration > 0:  # AV_TIME_BASE units
        return _matroska_length(container.duration / 1_000_000, (container.start_time or 0) / 1_000_000), True
    return None


def _matroska_length(announced: float, start: float) -> float:
    """The length of a Matroska stream (or segment) starting at ``start`` seconds that announces ``announced``:
    FFmpeg's muxer writes the DURATION tag and the segment's duration as the time the stream ENDS (a healthy clip
    cut from 5 s on, 2 s long, says 7 s and was called cut short), mkvmerge as a length. An announced time past the
    start is taken as the end: a length from mkvmerge of a stream starting late then reads shorter, which can only
    hide a loss, never invent one."""
    return announced - start if 0 < start < announced else announced


def _announced_frames(container, stream, fps: float) -> tuple[int | None, float | None]:
    """(frames, seconds) ``stream`` of ``container`` announces: the index's frame count (PyAV's ``stream.frames``);
    in MKV and WebM, which keep none, their announced length times ``fps``, and that length; None where unknown."""
    if stream.frames:
        return stream.frames, None
    if fps and _is_matroska(container):
        # MKV and WebM keep no frame count, only a duration: a file of theirs cut short was mined as whole
        seconds = (_announced_duration(container, stream) or (0.0,))[0]
        if seconds > 0:
            return max(1, int(round(seconds * fps))), seconds
    return None, None


def _stream_fps(stream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else 0.0


_ATTACHED_PIC = 0x0400  # AV_DISPOSITION_ATTACHED_PIC: cover art shown as a video stream of one picture


def _video_stream(container):
    """The video stream vidssl reads in ``container``; chosen here alone, so that every backend decodes the same
    one. Never cover art (an attached picture, or a stream announcing a single frame: a cover FFmpeg wrote as a
    track); among the rest the one of most pixels (a dash camera's front view before its rear one, a video before
    its preview), the first of equals. FFmpeg's own "best stream" is no rule to follow: decord's FFmpeg 4 ranks by
    probed packets and bit rate, PyAV's FFmpeg prefers the default flag the MP4 muxer sets on the first track, and
    OpenCV takes the first video stream. The two that cannot be told refuse a file where they would read another
    (DecordReader, OpenCVReader)."""
    # max() keeps the first of equals
    return max(_moving_streams(container), key=lambda s: s.codec_context.width * s.codec_context.height)


def _moving_streams(container) -> list:
    """``container``'s video streams but cover art (all of them where every one looks like a cover)."""
    streams = list(container.streams.video)
    shown = [s for s in streams if not int(getattr(s, "disposition", 0)) & _ATTACHED_PIC
             and _announced_frames(container, s, _stream_fps(s))[0] != 1]
    return shown or streams


def _is_matroska(container) -> bool:
    """Whether ``container`` is MKV or WebM (FFmpeg's one demuxer of both), whose header announces a duration."""
    return container.format.name.split(",")[0] == "matroska"


def open_container(av, path: str | os.PathLike):
    """``av.open(path)`` for reading, whatever a file's tags are written in: PyAV before 19 decodes them with one
    encoding and fails the whole open on a tag in another (so errors are ignored there); 19 reads every tag byte
    for byte (surrogateescape) and no longer takes the argument. Relative names start with ``./``
    (:func:`ffmpeg_path`)."""
    name = ffmpeg_path(path)
    if int(av.__version__.split(".")[0]) >= 19:
        return av.open(name)
    return av.open(name, metadata_errors="ignore")


class PyAVReader(VideoReader):
    """PyAV decodes frames as stored; a phone video's display matrix (rotation) is applied here, as decord and
    OpenCV do, so every backend gives the same upright frames. ``width``/``height`` are the displayed size;
    ``turns`` and ``mirrored`` the display matrix's orientation (:func:`display_orientation`). In a file of more
    than one video stream, ``video_stream`` is the one read (:func:`_video_stream`: K in ``-map 0:v:K``) of
    ``video_streams``; ``size_shared``: another has the same stored size."""

    backend = "pyav"

    def __init__(self, path: Path):
        super().__init__(path)
        import av

        self._av = av
        container = self._open()
        try:
            stream = _video_stream(container)
            # which of the video streams is read (0:v:K in ffmpeg's -map); how many it was chosen from (cover art
            # left out: decord's FFmpeg never reads a one-frame stream); whether another of those has its size
            self.video_stream = list(container.streams.video).index(stream)
            moving = _moving_streams(container)
            self.video_streams = len(moving)
            size = stream.codec_context.width, stream.codec_context.height
            self.size_shared = sum((s.codec_context.width, s.codec_context.height) == size for s in moving) > 1
            self.width, self.height = size
            self.fps = _stream_fps(stream)
            self.announced_frames, self.announced_seconds = _announced_frames(container, stream, self.fps)
            if self.width <= 0 or self.height <= 0:
                raise UnsupportedVideo(path, "video stream has no frame size")
            self.turns, self.mirrored = display_orientation(self._display_matrix(container, stream))
        finally:
            container.close()
        if self.turns % 2:
            self.width, self.height = self.height, self.width

    def _display_matrix(self, container, stream) -> tuple[int, ...] | None:
        """The display matrix (see :func:`display_orientation`), which PyAV exposes on decoded frames only: the
        first one is decoded. None when there is none."""
        try:
            frame = next(container.decode(stream), None)
        except self._av.error.FFmpegError:
            return None  # frames() reports the failure
        data = frame.side_data.get("DISPLAYMATRIX") if frame is not None else None
        return None if data is None else struct.unpack("<9i", bytes(data))

    def _stream(self, container):
        return container.streams.video[self.video_stream]

    def _open(self):
        try:
            container = open_container(self._av, self.path)
        except self._av.error.PermissionError:
            raise UnsupportedVideo(self.path, "no read permission (fix with: chmod +r FILE)") from None
        except (self._av.error.InvalidDataError, self._av.error.EOFError) as e:
            raise CorruptVideo(self.path, f"container cannot be parsed ({e.__class__.__name__}); "
                                          "re-encode it, e.g. ffmpeg -i IN -c:v libx264 OUT.mp4") from None
        except OSError as e:
            if e.errno == errno.EIO:  # FFmpeg's word for a header that ends early (a cut MKV or WebM)
                raise CorruptVideo(self.path, "it cannot be read to the end of its header (input/output error): an "
                                              "incomplete or damaged file; copy or download it again") from None
            raise UnsupportedVideo(self.path, f"not a readable video ({e})") from None
        except (self._av.error.FFmpegError, UnicodeDecodeError) as e:
            raise UnsupportedVideo(self.path, f"not a readable video ({e})") from None
        if not container.streams.video:
            container.close()
            raise NoVideoStream(self.path, "has no video stream")
        return container

    def _count_frames(self) -> int:
        container = self._open()
        count = 0
        first_is_key, later_key = None, False  # the first packet's flag; whether a keyframe follows it
        try:
            for packet in container.demux(self._stream(container)):
                if not packet.size:
                    continue
                if first_is_key is None:
                    first_is_key = packet.is_keyframe
                else:
                    later_key = later_key or packet.is_keyframe
                if not packet.is_discard:  # discarded: cut by an edit list, never shown
                    count += 1
        except self._av.error.FFmpegError:
            pass  # a truncated file: count what demuxes
        finally:
            container.close()
        if first_is_key is False and later_key:
            # cut mid-GOP (a camera's segment, a remux from a later packet; starts_before_a_keyframe): whether the
            # packets before the first keyframe decode is the codec's business (H.264 and MPEG-2 drop them, MPEG-4
            # Part 2 conceals them against grey), so these files, rare, are counted by decoding them
            return self._count_decoded()
        return count

    def _count_decoded(self) -> int:
        container = self._open()
        count = 0
        try:
            for _ in container.decode(self._stream(container)):
                count += 1
        except self._av.error.FFmpegError:
            pass  # damaged further on: count what decodes, as frames() will end there
        finally:
            container.close()
        return count

    def time_covered(self) -> tuple[float, float] | None:
        """(seconds the demuxed packets reach, seconds the container announces) for the video stream, from its
        start; None where the container announces no duration. Where only the whole container's duration is known
        (MKV, WebM without a DURATION tag), the packets of every stream count: an audio track longer than the
        video reaches that duration in a whole file. A read of the file, no decoding."""
        container = self._open()
        try:
            stream = self._stream(container)
            announced = _announced_duration(container, stream)
            if announced is None:
                return None
            duration, whole_container = announced
            start = (container.start_time or 0) / self._av.time_base if whole_container else float(
                (stream.start_time or 0) * stream.time_base)
            end = start
            try:
                for packet in container.demux(*(() if whole_container else (stream,))):
                    if packet.pts is not None and packet.time_base is not None:
                        end = max(end, float((packet.pts + (packet.duration or 0)) * packet.time_base))
            except self._av.error.FFmpegError:
                pass  # a truncated file: what demuxed
            return end - start, duration
        finally:
            container.close()

    def frames(self, stride=1, max_side=None, start=0, end=None):
        _check_stride_start(stride, start)
        h, w = resized_shape(self.height, self.width, max_side)
        if self.turns % 2:
            h, w = w, h  # resized as stored, then turned upright
        container = self._open()
        stream = self._stream(container)
        stream.thread_type = "AUTO"
        index = -1
        try:
            for frame in container.decode(stream):
                index += 1
                if end is not None and index >= end:
                    break
                if index < start or (index - start) % stride:
                    continue
                # swscale converts and resizes in one pass, so full-size RGB frames are never materialised
                rgb = frame.to_ndarray(format="rgb24", width=w, height=h)
                if self.turns:
                    rgb = np.ascontiguousarray(np.rot90(rgb, self.turns))
                yield index, unmirror(rgb, self.turns) if self.mirrored else rgb
        except self._av.error.FFmpegError as e:
            if index < 0:  # "after frame -1"
                raise CorruptVideo(self.path, f"no frame decodes ({e.__class__.__name__}): the file is damaged or "
                                              "cut short; copy or download it again") from None
            raise CorruptVideo(self.path, f"decoding failed after frame {index} ({e.__class__.__name__})") from None
        finally:
            container.close()


# ----------------------------------------------------------------------------------------------------------------
# decord


_QUIET_DECODERS = "VIDSSL_QUIET_DECODERS"  # set by decoder_logs_silenced; inherited by worker processes
_QUIET_ENVIRONMENT = {_QUIET_DECODERS: "1",
                      "OPENCV_FFMPEG_LOGLEVEL": "-8",  # AV_LOG_QUIET, read when OpenCV opens its first video
                      "OPENCV_LOG_LEVEL": "ERROR"}  # OpenCV's own "[ WARN:0@...]" lines, read when cv2 is imported
_quiet_lock = threading.Lock()
_quiet_state: dict = {"holders": 0}  # the first holder saves what the last one restores


@contextlib.contextmanager
def decoder_logs_silenced() -> Iterator[None]:
    """Within: the FFmpeg builds inside decord and OpenCV do not print their own lines about a damaged stream
    ("[h264 @ 0x...] error while decoding MB ...") to stderr, in this process and in the workers it starts (they
    inherit the environment). vidssl reports each failure itself, naming the file, and ``-q`` should mean quiet.
    Process-wide while any holder is inside (the command line holds it, not with ``-v``); the last one out
    restores the environment and OpenCV's log level. OpenCV reads its FFmpeg level at its first video, so one
    opened before the first holder entered keeps printing."""
    with _quiet_lock:
        if _quiet_state["holders"] == 0:
            cv2 = sys.modules.get("cv2")
            _quiet_state.update(environment={key: os.environ.get(key) for key in _QUIET_ENVIRONMENT},
                                cv2_level=cv2.utils.logging.getLogLevel() if cv2 is not None else None)
            os.environ.update(_QUIET_ENVIRONMENT)
            if cv2 is not None:  # imported before: the environment variable came too late for it
                cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        _quiet_state["holders"] += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_state["holders"] -= 1
            if _quiet_state["holders"] == 0:
                for key, value in _quiet_state["environment"].items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value
                cv2 = sys.modules.get("cv2")
                if cv2 is not None:
                    # imported inside: it read OPENCV_LOG_LEVEL=ERROR; OpenCV's own default is WARNING
                    level = _quiet_state["cv2_level"]
                    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_WARNING if level is None else level)


def decord_message(error: Exception) -> str:
    """The first line of a decord error without its log prefix (``[15:31:57] /github/workspace/src/video/
    video_reader.cc:486: Error: ``): a time and a path on decord's build machine tell a user nothing."""
    lines = str(error).splitlines() or [""]
    return re.sub(r"^(\[[\d:]+\]\s+\S+:\d+:\s+)+(Error:\s+)?", "", lines[0])  # nested: a worker's error


# decord 0.6 garbles frames its decoder scales to some small widths: 24, 48 or 72 px wide come back as 4-channel
# arrays of the wrong pixels (frame by frame) or fail (batches); every even width from 74 to 1298 is right (tested
# on a 1280x720 clip). Narrower targets are decoded at full size and resized here, as the OpenCV backend does.
DECORD_MIN_SCALED_WIDTH = 128


_OTHER_STREAM_FIX = ("use --set video.backend=auto (or pyav), or keep that stream alone: ffmpeg -i IN -map 0:v:{k} "
                     "-c copy OUT")


# decord decodes ahead in a thread of its own: a damaged packet is reported at whichever frame was being read when
# the thread met it (frame 0 to 15 from one open to the next, for a file damaged at frame 15), not at its own
READS_AHEAD = "decord decodes ahead, so the damage may lie later in the file"


class DecordReader(VideoReader):
    backend = "decord"

    def __init__(self, path: Path):
        super().__init__(path)
        decord = _import_decord()
        # decord's FFmpeg logs through its own process-wide setting (ERROR is about its default)
        decord.logging.set_level(decord.logging.QUIET if os.environ.get(_QUIET_DECODERS) else decord.logging.ERROR)

        # decord can crash the process on malformed containers; PyAV (robust) vets the container first, and reads
        # the display matrix: decord turns the frames by it, but does not mirror them
        vetted = PyAVReader(path)
        self.announced_frames, self._turns, self._mirrored = vetted.announced_frames, vetted.turns, vetted.mirrored
        self.announced_seconds = vetted.announced_seconds
        self._decord = decord
        self._readers: dict[tuple[int, int], object] = {}
        vr = self._reader(None)
        if len(vr) == 0:
            raise EmptyVideo(path, "no frames")
        self.height, self.width = self._full_shape
        self.fps = float(vr.get_avg_fps())
        if vetted.video_streams > 1 and (vetted.size_shared or (vetted.width, vetted.height) != (self.width,
                                                                                               self.height)):
            # decord picks a stream by FFmpeg 4's ranking, which it cannot be told otherwise; only a size of its
            # own tells which one it read
            self.close()
            raise UnsupportedVideo(path, f"it holds {vetted.video_streams} video streams and decord reads one of "
                                         f"its own choosing ({self.width}x{self.height}), which cannot be told to be "
                                         f"stream 0:v:{vetted.video_stream} ({vetted.width}x{vetted.height}) that "
                                         f"vidssl reads; {_OTHER_STREAM_FIX.format(k=vetted.video_stream)}")

    def _reader(self, max_side: int | None):
        key = (0, 0) if max_side is None else resized_shape(self.height, self.width, max_side)
        if key not in self._readers:
            # decord keeps one decoder per output size; resizing inside the decoder avoids full-size copies
            h, w = key if key != (0, 0) else (-1, -1)
            if key != (0, 0) and key == (self.height, self.width):
                return self._reader(None)
            # one decoder at a time: an open decord reader keeps decoding ahead, so a full-size one left idle while
            # another streamed grew a process on a 240-frame 1080p clip to 1.7 GB (190 MB with one at a time)
            self._readers.clear()
            try:
                # one codec thread: FFmpeg's frame threads (num_threads=0: one per core) let decord's read loop run
                # ahead of a slower reader (the miner), piling decoded frames up: a 54,000-frame file mined in two
                # processes peaked at 1.3 GB each, 0.4 GB with one thread; and mining (in a pool of one process per
                # core, or alone beside OpenCV's threads) ran as fast or faster, on the same frames (README)
                reader = self._decord.VideoReader(utf8_path(self.path, "decord"), ctx=self._decord.cpu(0),
                                                  width=w, height=h, num_threads=1)
            except self._decord.DECORDError as e:
                raise CorruptVideo(self.path, f"decord cannot open it ({decord_message(e)[:120]})") from None
            try:
                if len(reader):
                    # a fresh reader whose first access is a seek past the first keyframe decodes grey garbage
                    # from there on (imageio_cockatoo.mp4 at frame 224: mean error 40 against PyAV); frame 0 first
                    # makes every later seek land right
                    first = reader[0]
                    if key == (0, 0):
                        self._full_shape = tuple(int(v) for v in first.shape[:2])  # read by __init__
            except self._decord.DECORDError as e:
                raise CorruptVideo(self.path, f"decord failed reading its first frame ({decord_message(e)[:120]}; "
                                   f"{READS_AHEAD})") from None
            self._readers[key] = reader
        return self._readers[key]

    def _count_frames(self) -> int:
        return len(self._reader(None))

    def frames(self, stride=1, max_side=None, start=0, end=None):
        _check_stride_start(stride, start)
        size, vr = self._sized_reader(max_side)
        stop = len(vr) if end is None else min(end, len(vr))
        # one frame per call: get_batch, even of one frame, grew a process to 1.4 GB (16 frames: 5.4 GB) on a 4K
        # clip, where this stays under 300 MB; the frames are byte-identical and as fast (the 9 real clips)
        for i in range(start, stop, stride):
            try:
                frame = vr[i].asnumpy()
            except self._decord.DECORDError as e:
                raise CorruptVideo(self.path, f"decord failed reading frame {i} ({decord_message(e)[:80]}; "
                                              f"{READS_AHEAD})") from None
            yield i, self._shown(frame, size)

    def _decode_sorted(self, wanted, max_side):
        size, vr = self._sized_reader(max_side)
        out = {}
        for i in (i for i in wanted if i < len(vr)):  # one frame per call, as frames() decodes (its memory)
            try:
                out[i] = self._shown(vr[i].asnumpy(), size)
            except self._decord.DECORDError as e:
                raise CorruptVideo(self.path, f"decord failed reading frame {i} ({decord_message(e)[:80]}; "
                                              f"{READS_AHEAD})") from None
        return out

    def _sized_reader(self, max_side: int | None) -> tuple[tuple[int, int], object]:
        """((height, width) of the frames asked for, the decord reader to decode them with): one scaling in its
        decoder, or a full-size one for widths decord scales wrongly (DECORD_MIN_SCALED_WIDTH)."""
        size = resized_shape(self.height, self.width, max_side)
        return size, self._reader(max_side if size[1] >= DECORD_MIN_SCALED_WIDTH else None)

    def _shown(self, frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """A decoded frame at ``size``, mirrored where the display matrix mirrors (decord only turns)."""
        if frame.shape[:2] != size:
            import cv2

            frame = cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_AREA)
        return unmirror(frame, self._turns) if self._mirrored else frame

    def close(self) -> None:
        self._readers.clear()


# ----------------------------------------------------------------------------------------------------------------
# OpenCV


class OpenCVReader(VideoReader):
    backend = "opencv"

    def __init__(self, path: Path):
        super().__init__(path)
        import cv2

        self._cv2 = cv2
        # OpenCV turns the frames by the display matrix but does not mirror them; PyAV reads the matrix where it
        # can open the file (where it cannot, OpenCV may be the one backend that decodes it: no mirroring known),
        # and the frame count the container announces, by which a stream cut short is told (lost_its_end)
        vetting: VideoError | None = None
        try:
            vetted = PyAVReader(path)
            self._turns, self._mirrored = vetted.turns, vetted.mirrored
            self.announced_frames, self.announced_seconds = vetted.announced_frames, vetted.announced_seconds
        except NoVideoStream:  # an audio-only file, which OpenCV cannot open: no damage to call it by
            raise
        except (VideoError, ImportError) as e:
            self._turns, self._mirrored = 0, False
            vetting = e if isinstance(e, VideoError) else None
        else:
            if vetted.video_stream != 0:  # OpenCV reads the first video stream and cannot be told another
                raise UnsupportedVideo(path, f"OpenCV reads its first video stream (0:v:0), not stream "
                                             f"0:v:{vetted.video_stream} ({vetted.width}x{vetted.height}) that "
                                             f"vidssl reads; {_OTHER_STREAM_FIX.format(k=vetted.video_stream)}")
        try:
            cap = self._open()
        except CorruptVideo:  # "OpenCV cannot open it": PyAV's reason, where it has one, says what is wrong
            if vetting is not None:
                raise vetting from None
            raise
        try:
            self.width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
            self.height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
            self.fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        finally:
            cap.release()
        if self.width <= 0 or self.height <= 0:
            raise UnsupportedVideo(path, "OpenCV reports no frame size")

    def _open(self):
        cap = self._cv2.VideoCapture(utf8_path(self.path, "OpenCV"), self._cv2.CAP_FFMPEG)
        if not cap.isOpened():
            cap.release()
            raise CorruptVideo(self.path, "OpenCV cannot open it")
        return cap

    def _count_frames(self) -> int:
        cap = self._open()
        count = 0
        try:
            while cap.grab():
                count += 1
        finally:
            cap.release()
        if count == 0:  # as decord says it; mining reported "too_short: 0 frames" for a file cut before its first
            raise EmptyVideo(self.path, "no frames (OpenCV decodes none: an empty or damaged file)")
        return count

    def frames(self, stride=1, max_side=None, start=0, end=None):
        _check_stride_start(stride, start)
        cv2 = self._cv2
        h, w = resized_shape(self.height, self.width, max_side)
        cap = self._open()
        index = -1
        try:
            while end is None or index + 1 < end:
                if not cap.grab():
                    break
                index += 1
                if index < start or (index - start) % stride:
                    continue  # grab() without retrieve() skips the colour conversion
                ok, bgr = cap.retrieve()
                if not ok:
                    raise CorruptVideo(self.path, f"decoding failed at frame {index}")
                if (h, w) != bgr.shape[:2]:
                    bgr = cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA)
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                yield index, unmirror(rgb, self._turns) if self._mirrored else rgb
        finally:
            cap.release()


BACKENDS: dict[str, type[VideoReader]] = {"decord": DecordReader, "pyav": PyAVReader, "opencv": OpenCVReader}


def available_backends() -> list[str]:
    """Backends whose library imports on this machine, in auto order."""
    names = []
    for name, load in (("decord", _import_decord), ("pyav", lambda: __import__("av")),
                       ("opencv", lambda: __import__("cv2"))):
        try:
            load()
            names.append(name)
        except ImportError:
            continue
    return names


def _import_decord():
    """decord, loaded after OpenCV: its bundled zlib, loaded first, shadows the one OpenCV's libpng calls, and every
    PNG decoded in the process after that failed ("libpng error: bad parameters to zlib"; pair grids and report
    figures came out as unreadable)."""
    try:
        import cv2  # noqa: F401
    except ImportError:  # no OpenCV, no conflict
        pass
    import decord

    return decord


# ----------------------------------------------------------------------------------------------------------------
# auto: per-file fallback


class AutoReader(VideoReader):
    """Uses the first backend that opens the file and decodes its first frame; falls back while streaming."""

    def __init__(self, path: Path, candidates: Sequence[str]):
        super().__init__(path)
        self._candidates = list(candidates)
        self._errors: list[VideoError] = []
        self._inner = self._next_reader()
        for attr in ("fps", "width", "height", "announced_frames", "announced_seconds"):
            setattr(self, attr, getattr(self._inner, attr))

    @property
    def backend(self) -> str:  # type: ignore[override]
        return self._inner.backend

    def _next_reader(self, size: tuple[int, int] | None = None) -> VideoReader:
        """The next candidate that opens the file and decodes its first frame; where ``size`` (width, height) is
        given, of that frame size alone."""
        while self._candidates:
            name = self._candidates.pop(0)
            try:
                reader = BACKENDS[name](self.path)
                if size is not None and (reader.width, reader.height) != size:
                    reader.close()  # another of the file's video streams: one stream's frames are never mixed
                    raise CorruptVideo(self.path, f"{name} reads {reader.width}x{reader.height} frames, not the "
                                                  f"{size[0]}x{size[1]} ones read so far (another video stream)")
                next(reader.frames(end=1))  # a backend that opens but cannot decode is no use
                return reader
            except StopIteration:
                self._errors.append(EmptyVideo(self.path, f"{name}: no frames"))
            except VideoError as e:
                self._errors.append(e)
            except Exception as e:  # a backend's own exception type: record it and try the next one
                self._errors.append(CorruptVideo(self.path, f"{name}: {e.__class__.__name__}: {e}"))
            log.debug("%s: backend %s failed: %s", self.path, name, self._errors[-1].reason)
        raise self._best_error()

    def _best_error(self) -> VideoError:
        # a backend that refused the name alone says nothing of the file once PyAV, which opens it, has failed on it
        self._errors = [e for e in self._errors if not e.reason.startswith(NOT_UTF8)] or self._errors
        for e in self._errors:  # a container that parses without a video stream: the others' failures say no more
            if isinstance(e, NoVideoStream):
                return e
        for cls in (UnsupportedVideo, EmptyVideo):
            if self._errors and all(isinstance(e, cls) for e in self._errors):
                return self._errors[0]
        corrupt = [e for e in self._errors if isinstance(e, CorruptVideo)]
        first = corrupt[0] if corrupt else self._errors[0]
        reasons = "; ".join(dict.fromkeys(e.reason for e in self._errors))  # decord's PyAV vetting repeats PyAV
        return type(first)(self.path, f"no backend can decode it: {reasons}")

    def _count_frames(self) -> int:
        return self._inner.num_frames

    def frames(self, stride=1, max_side=None, start=0, end=None):
        position = start
        while True:
            try:
                for index, frame in self._inner.frames(stride, max_side, position, end):
                    position = index + stride
                    yield index, frame
                return
            except CorruptVideo as e:
                self._fall_back(e, f"at frame {position}")

    def get_batch(self, indices, max_side=None):
        while True:  # as frames(): a backend that fails on the file hands the whole batch to the next
            try:
                return self._inner.get_batch(indices, max_side)
            except CorruptVideo as e:
                self._fall_back(e, "in a batch")

    def _fall_back(self, error: CorruptVideo, where: str) -> None:
        """Record the current backend's ``error`` (``where``: "at frame N", "in a batch") and go on with the next
        backend (:meth:`_next_reader` raises the best error when none is left)."""
        self._errors.append(error)
        self.decode_failures.append(f"{self._inner.backend} failed {where}")
        log.warning("%s: %s failed %s (%s), falling back", self.path, self._inner.backend, where, error.reason)
        self._inner.close()
        self._inner = self._next_reader((self.width, self.height))

    def close(self) -> None:
        self._inner.close()


def lost_its_end(reader: VideoReader, decoded: int) -> bool:
    """Whether ``reader``'s file, whose stream ended after ``decoded`` frames, lost its end: fewer frames than the
    container announces (2% of slack, at least 3 frames), and its packets stop short of the duration it announces
    (as much slack). The frames alone are not enough: a healthy MP4 cut with an edit list, or an AVI with
    dropped-frame chunks, decodes fewer frames than it announces, but its packets reach its end. The demuxer is
    asked (a read of the file, no decoding) only when the frames fall short."""
    announced = reader.announced_frames
    if announced is None or decoded >= announced - max(2, announced // 50):
        return False
    covered = PyAVReader(reader.path).time_covered()
    if covered is None:
        return False
    reached, duration = covered
    return reached < duration - max(2 * duration / announced, duration / 50)


def is_mpeg_transport_stream(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds an MPEG transport stream (.ts, or .mts/.m2ts with 4-byte timecodes), by its sync bytes:
    0x47 every 188 (or 192) bytes."""
    with open(path, "rb") as fh:
        head = fh.read(3 * 192 + 4)
    return any(len(head) > first + 2 * step and all(head[first + k * step] == 0x47 for k in range(3))
               for first, step in ((0, 188), (4, 192)))


def starts_before_a_keyframe(path: str | os.PathLike) -> bool:
    """Whether the video stream's first packet is no keyframe (a stream cut mid-GOP): one packet demuxed. A
    stream flagging no keyframe at all (intra refresh) counts only if its first packet is followed by one."""
    import av

    try:
        with open_container(av, path) as container:
            if not container.streams.video:
                return False
            stream = _video_stream(container)
            for packet in container.demux(stream):
                if packet.size:
                    return not packet.is_keyframe and _any_keyframe(container, stream)
    except (av.error.FFmpegError, OSError, UnicodeDecodeError):
        pass  # the reader's own open says what is wrong
    return False


def _any_keyframe(container, stream, packets: int = 1000) -> bool:
    """Whether one of the next ``packets`` of ``container``'s video ``stream`` is a keyframe."""
    return any(p.is_keyframe for _, p in zip(range(packets), container.demux(stream)) if p.size)


def has_discarded_packets(path: str | os.PathLike) -> bool:
    """Whether an MP4/MOV (ISO BMFF) file's video stream holds packets its edit list cuts (demuxed, not decoded)."""
    with open(path, "rb") as fh:
        if fh.read(8)[4:8] != b"ftyp":
            return False
    import av

    try:
        with open_container(av, path) as container:
            return bool(container.streams.video) and any(
                p.is_discard for p in container.demux(_video_stream(container)) if p.size)
    except (av.error.FFmpegError, OSError):
        return False  # the reader's own open says what is wrong


def open_video(path: str | os.PathLike, backend: str = "auto") -> VideoReader:
    """Open ``path`` with ``backend`` ("auto", "decord", "pyav" or "opencv"). Raises a VideoError subclass."""
    path = check_video_file(path)
    try:
        return _open_checked(path, backend)
    except VideoError:
        if _index_cut_short(path):  # what the backends say of it ("no video stream", "re-encode it") misleads
            raise CorruptVideo(path, "incomplete file (it ends inside its index): copy or download it again") from None
        raise


def check_named_video(path: str | os.PathLike, backend: str = "auto") -> Path:
    """A file named on purpose as the video to mine (``--videos FILE``): refused with the reason before any output
    is made, where a folder's bad file is skipped with it during the run. Beyond :func:`check_video_file`: a macOS
    metadata file (``._clip.mp4``, ``.DS_Store``: a folder's listing leaves them out) and a file that opens as no
    video (audio only; a damaged header) are refused; opening reads the header, not the frames."""
    path = check_video_file(path)
    if path.name.startswith("._") or path.name == ".DS_Store":
        raise UnsupportedVideo(path, "a macOS metadata file (Finder's, or '._' + a video's name: AppleDouble), not a "
                                     "video; name the video itself, or its folder (which leaves such files out)")
    try:
        with open_video(path, backend):
            pass
    except VideoError as e:
        if path.suffix.lower() in VIDEO_EXTENSIONS:
            raise
        raise UnsupportedVideo(path, f"{e.reason}; and its name has no video extension ({' '.join(VIDEO_EXTENSIONS)}"
                                     "): is it a video at all?") from None
    return path


def _open_checked(path: Path, backend: str) -> VideoReader:
    if backend == "auto":
        candidates = available_backends()
        if is_mpeg_transport_stream(path):
            # decord 0.6 on transport streams: MPEG-2 loses the first frame and repeats the last, H.264 fails at
            # the end of the file (tests/test_video.py); PyAV and OpenCV decode them exactly
            candidates = [name for name in candidates if name != "decord"]
        elif "decord" in candidates and (has_discarded_packets(path) or starts_before_a_keyframe(path)):
            # decord 0.6 ignores an MP4 edit list (a trim: `ffmpeg -ss ... -c copy`, a phone's editor), and numbers
            # the undecodable packets before a stream's first keyframe (a stream cut mid-GOP) as frames: it shows
            # that many repeats of the last frame at the end, and its seeks land that many frames off
            candidates = [name for name in candidates if name != "decord"]
        return AutoReader(path, candidates)
    if backend not in BACKENDS:
        raise ValueError(f"unknown video backend {backend!r}; choose auto, {', '.join(BACKENDS)}")
    if backend not in available_backends():
        raise UnsupportedVideo(path, f"backend {backend} is not installed on this machine")
    if backend == "decord" and has_discarded_packets(path):  # what auto avoids (above), asked for by name
        log.warning("%s: its MP4 edit list cuts frames (a trim), which decord ignores: it shows the cut frames as "
                    "repeats of the last and its seeks land that many frames off; use --set video.backend=auto "
                    "(or pyav)", path)
    elif backend == "decord" and starts_before_a_keyframe(path):
        log.warning("%s: its stream starts before its first keyframe (cut mid-GOP), whose undecodable frames decord "
                    "counts: it shows them as repeats of the last and its seeks land that many frames off; use "
                    "--set video.backend=auto (or pyav)", path)
    return BACKENDS[backend](path)


def refuse_out_among_videos(out: str | os.PathLike, videos: str | os.PathLike, what: str) -> None:
    """A usage error when ``out`` is the folder of ``videos`` (a folder, or one video: its folder): ``what`` would
    be written among the user's videos."""
    base = Path(videos).parent if Path(videos).is_file() else Path(videos)  # a missing folder is no file
    if Path(out).resolve() == base.resolve():
        raise UsageError(f"--out {out} is the videos folder itself: {what} would be written among your videos; "
                         "choose another folder")


def is_run_folder(folder: Path) -> bool:
    """Whether ``folder`` is a `vidssl pretrain` run: its config.yaml beside stage markers (``stages/*.json``) or
    demo clips with their ground truth (``demo_videos/clip_*.json``). The quick start's runs/demo beside a user's
    clips held 12 demo clips that `--videos .` mined as the user's. A folder that cannot be looked into (a disk's
    lost+found) is no run: the walk passes over it as before."""
    try:
        return (folder / "config.yaml").is_file() and (any((folder / "stages").glob("*.json"))
                                                       or any((folder / "demo_videos").glob("clip_*.json")))
    except OSError:
        return False


_told_passed_over: set = set()  # (folder, passed-over video files per extension) already warned of
_told_same_file: set = set()  # (absolute path, absolute path it was listed as) already said


def _tell_same_file(path: Path, kept: Path, quiet: bool) -> None:
    """Say that ``path`` is the file listed as ``kept``: at info once per process, then (and when ``quiet``) at
    debug."""
    told = (os.path.abspath(path), os.path.abspath(kept))
    level = logging.DEBUG if quiet or told in _told_same_file else logging.INFO
    if not quiet:
        _told_same_file.add(told)
    log.log(level, "%s: the same file as %s, listed once as %s", path, kept, kept)


def find_videos(root: str | os.PathLike, quiet: bool = False) -> list[Path]:
    """Video files under ``root`` (recursive), sorted by relative path; follows symlinks but never loops, and lists
    a file reached twice (a link to a video of the folder) once, saying so once per process (pretrain lists the
    folder up to four times: the note came as often). Files of other extensions are counted in one debug log line
    (`-v`); those of a video container not mined (OTHER_VIDEO_EXTENSIONS) in a warning, once per process.
    ``quiet``: the listing is only compared with one mined before (pretrain's rerun warnings), so the same-file
    note goes to debug (a rerun that mines nothing said it each time). A `vidssl pretrain` run folder below
    ``root`` is not searched (see :func:`is_run_folder`)."""
    root = Path(root)
    if root.is_file():
        if root.suffix.lower() in OTHER_VIDEO_EXTENSIONS:  # as in a folder, where it is passed over
            raise UnsupportedVideo(root, f"vidssl does not mine {root.suffix.lower()} files; convert it to MP4, e.g. "
                                         f"ffmpeg -i IN -c:v libx264 -crf 18 OUT.mp4")
        return [root]
    if not root.is_dir():
        if root.is_symlink() and not root.exists():  # as a broken link inside a folder is told (check_video_file)
            raise UnsupportedVideo(root, dangling_link(root))
        # a missing name may have meant either: "no such folder" for `mine nonexist.mp4` misled
        raise UnsupportedVideo(root, "no such file or folder" if not root.exists() else "neither a file nor a folder")
    found: list[Path] = []
    seen: set[tuple[int, int]] = set()
    files_seen: dict[tuple[int, int], Path] = {}
    linked: list[Path] = []  # linked folders met by the first walk, walked after every real one
    ignored: Counter = Counter()

    def walk(folder: Path, through_links: bool) -> None:
        try:
            st = folder.stat()
        except OSError:
            return
        if (st.st_dev, st.st_ino) in seen:
            return  # a symlink loop, or a folder reached twice
        seen.add((st.st_dev, st.st_ino))
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as e:
            log.warning("%s: cannot list folder (%s), skipped", folder, e.strerror)
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            try:
                is_folder = entry.is_dir(follow_symlinks=True)
            except OSError:
                is_folder = False
            if is_folder:  # a folder named like a video too ("clips.mp4/"): its videos are what it holds
                if is_run_folder(path):
                    log.info("%s: a vidssl run folder (config.yaml with stage markers or demo clips), not searched for "
                             "videos; give a folder of it as --videos to mine that", path)
                    continue
                if through_links or not entry.is_symlink():
                    walk(path, through_links)
                else:
                    linked.append(path)
                continue
            if path.suffix.lower() in VIDEO_EXTENSIONS:
                try:
                    st = entry.stat(follow_symlinks=True)
                    key = (st.st_dev, st.st_ino)
                except OSError:
                    key = None  # a dangling link: open_video reports it
                if key is not None and key in files_seen:
                    kept = files_seen[key]
                    if kept.is_symlink() and not path.is_symlink():
                        # listed under the file's own name: the video id, and a link deleted later changes nothing
                        found[found.index(kept)] = files_seen[key] = path
                        kept, path = path, kept
                    _tell_same_file(path, kept, quiet)
                    continue
                if key is not None:
                    files_seen[key] = path
                found.append(path)
            else:
                ignored[path.suffix.lower() or "(no extension)"] += 1

    # the real folders first, then the linked ones whose targets were not walked: a video reached through a linked
    # folder that sorts first (all -> zoo) was listed under the link's path, and the real folder skipped as seen
    walk(root, through_links=False)
    for folder in linked:
        walk(folder, through_links=True)
    videos_passed = {k: n for k, n in ignored.items() if k in OTHER_VIDEO_EXTENSIONS}
    told = (str(root.resolve()), tuple(sorted(videos_passed.items())))
    if videos_passed and told not in _told_passed_over:  # once: pretrain lists the folder more than once
        _told_passed_over.add(told)
        log.warning("%s: %d video file(s) of a container vidssl does not mine passed over (%s); to mine them, "
                    "convert them to MP4, e.g. ffmpeg -i IN -c:v libx264 -crf 18 OUT.mp4 (mined extensions: %s)",
                    root, sum(videos_passed.values()), ", ".join(f"{k} {n}" for k, n in sorted(videos_passed.items())),
                    " ".join(VIDEO_EXTENSIONS))
    if ignored:  # debug: a folder of clips with ground-truth files beside them is the usual case
        log.debug("%s: %d file(s) not listed as videos by their extension (%s); video extensions: %s", root,
                 sum(ignored.values()), ", ".join(f"{k} {v}" for k, v in sorted(ignored.items())),
                 " ".join(VIDEO_EXTENSIONS))
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())
