"""Test videos shared by the decoding and mining tests."""
from __future__ import annotations

import fractions
from pathlib import Path

import numpy as np


def trim_with_edit_list(source: Path, dest: Path, cut_frames: int, fps: int) -> Path:
    """Copy ``source`` to ``dest`` with its first ``cut_frames`` frames cut by an edit list, packets untouched (what
    `ffmpeg -ss ... -c copy` or a phone's trim makes: the cut packets stay in the file, marked discarded)."""
    import av

    with av.open(str(source)) as src, av.open(str(dest), "w") as dst:
        original = src.streams.video[0]
        copy = dst.add_stream_from_template(original)
        shift = int(round(cut_frames / fps / original.time_base))
        for packet in src.demux(original):
            if packet.dts is None:
                continue
            packet.pts -= shift
            packet.dts -= shift
            packet.stream = copy
            dst.mux(packet)
    return dest


def write_grey_streams(path: Path, streams, cover: tuple[int, int] | None = None, start_ms: int = 0) -> Path:
    """Write ``path`` with one video stream per ``(codec, width, height, frames, first_grey, step)`` in ``streams``,
    in that order, at 24 fps, interleaved frame by frame: frame i of a stream is flat grey ``first_grey + step * i``,
    so a decoded frame names the stream and the frame it is. ``cover``: (width, height) of a one-picture MJPEG
    cover (white) written first, flagged as an attached picture (MP4 keeps it as cover art, after the tracks;
    FFmpeg's Matroska muxer as a track of one frame). ``start_ms``: the timestamps (1 ms time base) start there."""
    import fractions

    import av
    import numpy as np

    with av.open(str(path), "w") as out:
        if cover is not None:
            art = out.add_stream("mjpeg", rate=1)
            art.width, art.height, art.pix_fmt = *cover, "yuvj420p"
            art.disposition = av.stream.Disposition.attached_pic
        written = []
        for codec, width, height, _, _, _ in streams:
            stream = out.add_stream(codec, rate=24)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            if start_ms:
                stream.time_base = stream.codec_context.time_base = fractions.Fraction(1, 1000)
            written.append(stream)
        if cover is not None:  # every stream is added before the first packet is muxed
            picture = av.VideoFrame.from_ndarray(np.full((cover[1], cover[0], 3), 255, np.uint8), format="rgb24")
            for packet in [*art.encode(picture.reformat(format="yuvj420p")), *art.encode()]:
                out.mux(packet)
        for i in range(max(spec[3] for spec in streams)):
            for stream, (_, width, height, frames, first, step) in zip(written, streams):
                if i < frames:
                    frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), first + step * i, np.uint8),
                                                       format="rgb24")
                    if start_ms:
                        frame.pts, frame.time_base = start_ms + 42 * i, fractions.Fraction(1, 1000)
                    for packet in stream.encode(frame):
                        out.mux(packet)
        for stream in written:
            for packet in stream.encode():
                out.mux(packet)
    return path


# clips whose every frame shows its index (from a mutation review of vidssl/video.py): a reference independent of
# every backend, read back by thresholding block centres
BITS, BLOCK = 8, 16  # frame i: bit k of i is block k of the top row (16x16 px), white if set
W, H = BITS * BLOCK, 64  # 128x64; a red block bottom-left and a blue one bottom-right tell RGB from BGR


def index_picture(i: int) -> np.ndarray:
    img = np.zeros((H, W, 3), np.uint8)
    for k in range(BITS):
        if i >> k & 1:
            img[:BLOCK, k * BLOCK:(k + 1) * BLOCK] = 255
    img[-BLOCK:, :BLOCK] = (255, 0, 0)
    img[-BLOCK:, -BLOCK:] = (0, 0, 255)
    return img


def index_of(frame: np.ndarray) -> int:
    """The index a decoded (H, W, 3) RGB frame of :func:`index_picture` shows, at any size (block centres)."""
    h, w = frame.shape[:2]
    row = int(h * (BLOCK / 2) / H)
    bits = [frame[row, int(w * (k + 0.5) / BITS)].mean() > 128 for k in range(BITS)]
    return sum(1 << k for k, bit in enumerate(bits) if bit)


def write_index_clip(path, frames=40, rate=25, codec="libx264", durations_ms=None, start_ms=0, **fmt):
    """Frame i is :func:`index_picture` (i). ``durations_ms``: a cycle of frame durations (variable frame rate) in
    a 1 ms time base; ``start_ms``: the first timestamp (a stream that starts late)."""
    import av

    with av.open(str(path), "w", **fmt) as out:
        stream = out.add_stream(codec, rate=rate, options={"g": "10", "bf": "2"} if codec == "libx264" else {})
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        ms = durations_ms or start_ms
        if ms:
            stream.time_base = stream.codec_context.time_base = fractions.Fraction(1, 1000)
        t = start_ms
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(index_picture(i), format="rgb24")
            if ms:
                frame.pts, frame.time_base = t, fractions.Fraction(1, 1000)
                t += durations_ms[i % len(durations_ms)] if durations_ms else 1000 // rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def damaged_mjpeg_avi(tmp_path, frames=30, damaged=15):
    """An MJPEG AVI whose packet ``damaged`` is zeroed in place (a bad sector, a bit-rotted copy): FFmpeg's MJPEG
    decoder refuses it (InvalidDataError), where H.264 would conceal the damage."""
    import av

    path = tmp_path / "whole.avi"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mjpeg", rate=24)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuvj420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(index_picture(i), format="rgb24").reformat(format="yuvj420p")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    with av.open(str(path)) as container:
        pos, size = [(p.pos, p.size) for p in container.demux(video=0) if p.size][damaged]
    data = bytearray(path.read_bytes())
    data[pos:pos + size] = bytes(size)
    bad = tmp_path / "damaged.avi"
    bad.write_bytes(bytes(data))
    return bad


def write_audio_only(path: Path, packets: int = 10) -> Path:
    """An MP4 holding one AAC stream of silence and no video (a voice memo)."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=16000)
        for i in range(packets):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return Path(path)
