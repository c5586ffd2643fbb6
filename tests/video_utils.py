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
