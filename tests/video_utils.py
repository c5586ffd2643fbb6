"""Test videos shared by the decoding and mining tests."""
from __future__ import annotations

from pathlib import Path


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
