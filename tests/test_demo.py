"""Demo generator: deterministic, decodable, and its ground truth describes what is in the pixels."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import yaml

from vidssl.demo import GENERATOR_VERSION, KINDS, DemoClip, ForeignClipError, make_demo_videos
from vidssl.errors import VidsslError
from vidssl.video import open_video


def test_same_seed_same_ground_truth_and_pixels(tmp_path, demo_dir):
    again = make_demo_videos(tmp_path, num=6, seed=0)
    for path in again:
        assert json.loads(path.with_suffix(".json").read_text()) == \
            json.loads((demo_dir / path.with_suffix(".json").name).read_text())
        assert path.read_bytes() == (demo_dir / path.name).read_bytes()  # byte-identical files (constant QP)
    other = make_demo_videos(tmp_path / "other", num=1, seed=1)[0]
    assert json.loads(other.with_suffix(".json").read_text())["objects"] != \
        json.loads((demo_dir / "clip_00.json").read_text())["objects"]


def test_clips_decode_with_the_promised_layout(demo_dir):
    kinds = []
    for i in range(6):
        truth = json.loads((demo_dir / f"clip_{i:02d}.json").read_text())
        reader = open_video(demo_dir / f"clip_{i:02d}.mp4")
        assert reader.num_frames == truth["num_frames"] == 90
        assert (reader.width, reader.height) == (truth["width"], truth["height"])
        kinds.append(truth["kind"])
        for obj in truth["objects"]:
            assert len(obj["boxes"]) == 90
            for box in obj["boxes"]:
                if box is None:
                    continue
                x, y, w, h = box
                assert -0.5 <= x and -0.5 <= y and x + w <= truth["width"] + 0.5 and y + h <= truth["height"] + 0.5
    assert kinds == list(KINDS)
    assert [json.loads((demo_dir / f"clip_{i:02d}.json").read_text())["cut_frames"] for i in range(6)] == \
        [[], [], [45], [], [], []]


def test_pixels_inside_each_box_are_that_objects_texture_at_its_orientation(demo_dir):
    """Compare the decoded disc at the GT box with the generator's own texture, turned here by angle + spin x t
    counter-clockwise (on screen) about its centre, independently of the generator's rotation code; the texture at
    its starting orientation must fit worse once the disc has turned."""
    for i in range(6):
        truth = json.loads((demo_dir / f"clip_{i:02d}.json").read_text())
        objects = DemoClip(i, seed=0, frames=90, width=320, height=240).objects()
        for _, obj in objects.values():
            assert obj.spin == 0 if truth["kind"] == "static" else 0.8 <= abs(obj.spin) <= 1.4
        times = [0, 30, 60, 89]
        frames = open_video(demo_dir / f"clip_{i:02d}.mp4").get_batch(times)
        for frame, t in zip(frames, times):
            for box_truth in truth["objects"]:
                box = box_truth["boxes"][t]
                if box is None:
                    continue
                start, obj = objects[box_truth["id"]]
                x, y, w, h = box
                x0, y0, x1, y1 = int(np.ceil(x)), int(np.ceil(y)), int(x + w), int(y + h)
                crop = frame[y0:y1, x0:x1].astype(np.float32)
                d = obj.texture.shape[0]
                c = (d - 1) / 2  # the disc's centre in pixel-index coordinates
                # the disc pixel seen at each crop pixel (inverse of the camera's scale)
                u, v = np.meshgrid((np.arange(x0, x1) + 0.5 - x) * d / w - 0.5,
                                   (np.arange(y0, y1) + 0.5 - y) * d / h - 0.5)
                # 2 texture px inside the rim: edges are blended by interpolation and chroma subsampling
                core = np.hypot(u - c, v - c) <= d / 2 - 2

                def mad(texture, degrees):
                    # a turn by +degrees counter-clockwise on screen (y down): the pixel at (u, v) shows the
                    # texture at the inverse turn of (u, v) about the centre
                    a = np.deg2rad(degrees)
                    su = np.cos(a) * (u - c) - np.sin(a) * (v - c) + c
                    sv = np.sin(a) * (u - c) + np.cos(a) * (v - c) + c
                    expected = cv2.remap(texture.astype(np.float32), su.astype(np.float32), sv.astype(np.float32),
                                         cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
                    return np.abs(crop - expected)[core].mean()

                angle = obj.angle + obj.spin * (t - start)
                own = mad(obj.texture, angle)
                others = [mad(cv2.resize(o.texture, (d, d)), angle) for k, (_, o) in objects.items()
                          if k != box_truth["id"]]
                # H.264 at QP 16 with 4:2:0 chroma on a saturated checkerboard: ~10-18 grey levels off;
                # any other object's texture is ~110 off
                assert own < 25, (i, t, box_truth["id"], own)
                assert all(own < o / 4 for o in others), (i, t, own, others)
                if obj.spin and t - start >= 30:  # turned by at least 24 degrees since its shot began
                    assert own < mad(obj.texture, obj.angle) / 2, (i, t, box_truth["id"])
                    assert own < mad(obj.texture, obj.angle - obj.spin * (t - start)) / 2  # not the other way


def _edges(profile: np.ndarray) -> list[float]:
    """Sub-pixel positions, in pixel-edge coordinates, where a 0..255 profile crosses 127.5 (linear in between)."""
    p = profile.astype(float)
    crossings = np.flatnonzero(np.diff((p > 127.5).astype(int)))
    return [i + (127.5 - p[i]) / (p[i + 1] - p[i]) + 0.5 for i in crossings]  # centre -> edge coordinates


# still, pan, zoom (scale up to 1.35) at the default size; then pans the camera would have carried off the canvas
# at their drawn speed (an IndexError, or, panning left or up, objects pasted away from their boxes): a long clip,
# and small frames (the reviewer's seed-2 300-frame clip drew a pan whose last box held only background)
@pytest.mark.parametrize("index, seed, frames, width, height", [
    (0, 0, 90, 320, 240), (1, 0, 90, 320, 240), (4, 0, 90, 320, 240),
    (1, 2, 300, 320, 240), (1, 0, 150, 320, 240), (5, 1, 150, 320, 240), (2, 0, 90, 128, 96), (5, 0, 90, 160, 120)])
def test_ground_truth_boxes_sit_on_the_rendered_edges(index, seed, frames, width, height):
    """White objects on a black world, rendered as the generator renders them: every box edge within 0.1 px of
    where the frame crosses half intensity, within OpenCV's 1/32-px interpolation grid and uint8 rounding (the zoom's
    boxes were 0.175 px off: centre vs edge coordinates)."""
    clip = DemoClip(index, seed, frames, width, height)
    for _, shot in clip.shots:
        shot.canvas[:] = 0
        for obj in shot.objects:
            obj.texture[:] = 255
    for t in (0, frames // 2, frames - 1):
        frame, boxes = clip.render(t)
        assert any(boxes.values())
        for box in boxes.values():
            if box is None:  # an object of the cut clip's other shot
                continue
            x, y, w, h = box
            across, down = _edges(frame[int(y + h / 2), :, 0]), _edges(frame[:, int(x + w / 2), 0])
            for crossings, edges, size in ((across, (x, x + w), width), (down, (y, y + h), height)):
                for edge in edges:
                    if 1 < edge < size - 1:  # an edge on the frame border has no crossing to measure
                        nearest = min(crossings, key=lambda c: abs(c - edge))  # a row may cross other objects
                        assert abs(nearest - edge) < 0.1, (t, box, edge, nearest)


def test_odd_frame_sizes_are_refused_before_encoding(tmp_path):
    with pytest.raises(ValueError, match="even sides"):
        make_demo_videos(tmp_path, num=1, frames=4, width=65, height=64)


def _written(path):
    """What tells a file written again (atomically: a new inode) from one kept."""
    st = path.stat()
    return st.st_ino, st.st_mtime_ns


def test_clips_of_another_generator_version_are_written_again(tmp_path):
    path = make_demo_videos(tmp_path, num=1, frames=4)[0]
    json_path = path.with_suffix(".json")
    before = _written(path)
    assert make_demo_videos(tmp_path, num=1, frames=4) == [path] and _written(path) == before  # kept as it is
    truth = json.loads(json_path.read_text())
    del truth["generator"]["version"]  # as written before the discs spun
    json_path.write_text(json.dumps(truth))
    make_demo_videos(tmp_path, num=1, frames=4)
    assert _written(path) != before and open_video(path).num_frames == 4
    assert json.loads(json_path.read_text())["generator"]["version"] == GENERATOR_VERSION
    # a pretrain run folder of a version that recorded no "mp4" digest yet, nor its own version: still ours
    truth = json.loads(json_path.read_text())
    del truth["generator"]["version"], truth["mp4"]
    json_path.write_text(json.dumps(truth))
    before = _written(path)
    make_demo_videos(tmp_path, num=1, frames=4)
    assert _written(path) != before and json.loads(json_path.read_text())["mp4"]["size"] == path.stat().st_size


def test_a_clip_whose_json_was_not_written_after_it_is_written_again(tmp_path, monkeypatch):
    """The mp4 is replaced before its final JSON: a call killed between the two left seed 1's mp4 beside seed 0's
    JSON, and a rerun with seed 0 kept seed 1's pixels under seed 0's ground truth; now beside seed 1's claim, which
    records no mp4. So is an mp4 replaced under its JSON."""
    import vidssl.demo

    fresh = make_demo_videos(tmp_path / "fresh", num=1, seed=0, frames=4)[0].read_bytes()
    path = make_demo_videos(tmp_path / "d", num=1, seed=0, frames=4)[0]
    seed_0_truth = path.with_suffix(".json").read_text()
    write_json = vidssl.demo.atomic_write_json

    def killed(json_path, obj, **kwargs):
        if obj.get("mp4") is None:  # the claim
            return write_json(json_path, obj, **kwargs)
        raise OSError(28, "No space left on device", str(json_path))

    monkeypatch.setattr(vidssl.demo, "atomic_write_json", killed)
    with pytest.raises(OSError):
        make_demo_videos(tmp_path / "d", num=1, seed=1, frames=4)
    monkeypatch.undo()
    assert path.read_bytes() != fresh  # the torn state: seed 1's mp4 beside seed 1's claim
    assert json.loads(path.with_suffix(".json").read_text()) == {"generator": {
        "version": GENERATOR_VERSION, "seed": 1, "index": 0, "frames": 4, "width": 320, "height": 240, "fps": 25},
        "mp4": None}
    make_demo_videos(tmp_path / "d", num=1, seed=0, frames=4)
    assert path.read_bytes() == fresh and path.with_suffix(".json").read_text() == seed_0_truth
    path.write_bytes(fresh[:-1] + bytes([fresh[-1] ^ 1]))  # same size, one bit off: the digest tells
    make_demo_videos(tmp_path / "d", num=1, seed=0, frames=4)
    assert path.read_bytes() == fresh


def test_a_malformed_clip_json_is_refused_not_replaced(tmp_path):
    """A JSON list crashed (AttributeError) and bytes that are not UTF-8 were an error; a torn JSON was written
    again. The generator writes its JSON atomically, so none of the three is its own: the call names the file and
    leaves it, and the mp4 beside it, as they are."""
    path = make_demo_videos(tmp_path, num=1, frames=4)[0]
    json_path = path.with_suffix(".json")
    truth, mp4 = json_path.read_text(), path.read_bytes()
    for damaged in (b"[]", b"\xff\xfe", truth.encode()[: len(truth) // 2]):
        json_path.write_bytes(damaged)
        with pytest.raises(ForeignClipError) as e:
            make_demo_videos(tmp_path, num=1, frames=4)
        assert e.value.paths == [path, json_path]
        assert str(e.value).startswith(f"{path}: not recorded as written by vidssl's demo generator (clip_00.json "
                                       "beside it is not a record the demo generator writes)")
        assert json_path.read_bytes() == damaged and path.read_bytes() == mp4, damaged


def test_a_file_where_the_folder_goes_is_not_a_folder(tmp_path):
    """mkdir said "File exists" (pretrain's RUN/demo_videos): vidssl's one-line OSError says "Not a directory"."""
    (tmp_path / "demo_videos").write_text("a file\n")
    with pytest.raises(NotADirectoryError) as e:
        make_demo_videos(tmp_path / "demo_videos", num=1, frames=4)
    assert e.value.filename == str(tmp_path / "demo_videos")


def test_temp_files_a_killed_call_left_are_removed(tmp_path):
    """A call killed while encoding left `.tmp-clip_01.mp4.<pid>@...` for ever. Not a temp file written after this
    call began (another call's, writing into the same folder now)."""
    import os
    import subprocess
    import time

    from vidssl.io import _machine

    ended = subprocess.Popen(["true"])
    ended.wait()
    dead = tmp_path / f".tmp-clip_01.mp4.{ended.pid}@{_machine()}.k1ll3d00"  # a writer of this machine, ended
    old = tmp_path / ".tmp-clip_00.mp4.1@0badc0de.a1b2c3d4"  # another machine's, from before this call
    live = tmp_path / f".tmp-clip_02.mp4.{os.getpid()}@0badc0de.e5f6a7b8"  # modified after this call began
    recent = tmp_path / ".tmp-clip_03.mp4.1@0badc0de.a1b2c3d5"  # another machine's, written seconds ago: alive
    # OUT may be the user's folder: another tool's temp files, however old, are not the generator's (deleted before)
    theirs = [tmp_path / name for name in (".tmp-notes.txt", ".tmp-clip_04.mp4", ".tmp-x.mp4.1@0badc0de.a1b2c3d6")]
    for path in (dead, old, live, recent, *theirs):
        path.write_bytes(b"half a clip")
    for path in (old, *theirs):
        os.utime(path, (time.time() - 120, time.time() - 120))
    os.utime(live, (time.time() + 60, time.time() + 60))
    os.utime(recent, (time.time() - 10, time.time() - 10))
    make_demo_videos(tmp_path, num=1, frames=4)
    assert sorted(p.name for p in tmp_path.glob(".tmp-*")) == sorted(p.name for p in (live, recent, *theirs))


def test_fewer_clips_than_before_leave_no_extra_clip_behind(tmp_path):
    """`demo-videos --num 2` into a folder of 4 said "wrote 2" and left 4, and a pretrain rerun with a smaller
    demo.num mined the folder, old clips and all. A clip of the user's own beside them is left alone."""
    from vidssl.video import find_videos

    make_demo_videos(tmp_path, num=4, frames=4)
    (tmp_path / "clip_07.mp4").write_bytes(b"not ours")  # no JSON of this generator: not ours to delete
    assert make_demo_videos(tmp_path, num=2, frames=4) == [tmp_path / "clip_00.mp4", tmp_path / "clip_01.mp4"]
    assert [p.name for p in find_videos(tmp_path)] == ["clip_00.mp4", "clip_01.mp4", "clip_07.mp4"]
    assert sorted(p.name for p in tmp_path.glob("*.json")) == ["clip_00.json", "clip_01.json"]
    # a user's clips whose JSON is not this generator's: an annotation tool's "generator", another index's record,
    # a JSON that is no object; all kept (the first was deleted with its video)
    theirs = {"clip_07": {"generator": "labelme 5.2", "shapes": []}, "clip_08": 5,
              "clip_09": {"generator": {**json.loads((tmp_path / "clip_00.json").read_text())["generator"]}}}
    for name, record in theirs.items():
        (tmp_path / f"{name}.mp4").write_bytes(f"{name}: not ours".encode())
        (tmp_path / f"{name}.json").write_text(json.dumps(record))
    make_demo_videos(tmp_path, num=2, frames=4)
    assert [p.name for p in find_videos(tmp_path)] == ["clip_00.mp4", "clip_01.mp4", "clip_07.mp4", "clip_08.mp4",
                                                       "clip_09.mp4"]
    # one of ours from before the generator recorded its version is still ours
    old = json.loads((tmp_path / "clip_01.json").read_text())
    del old["generator"]["version"]
    (tmp_path / "clip_01.json").write_text(json.dumps(old))
    make_demo_videos(tmp_path, num=1, frames=4)
    assert not (tmp_path / "clip_01.mp4").exists() and (tmp_path / "clip_09.mp4").exists()


def _listing(folder):
    """Every file in ``folder`` (temp files included) with its bytes and what tells a rewrite."""
    return {p.name: (p.read_bytes(), _written(p)) for p in sorted(folder.iterdir())}


def test_a_users_own_clip_is_never_replaced(tmp_path):
    """`vidssl demo-videos ~/videos` replaced the user's own clip_00.mp4 (a camera's or an editor's name) with a demo
    clip. Now an error names it and nothing is written: not even the clips at indices before or after it."""
    theirs = tmp_path / "clip_00.mp4"
    theirs.write_bytes(b"\x00\x00\x00\x18ftypmp42 a holiday")
    with pytest.raises(ForeignClipError) as e:
        make_demo_videos(tmp_path, num=2, frames=4)
    assert isinstance(e.value, VidsslError) and e.value.paths == [theirs]
    assert str(e.value).startswith(f"{theirs}: not recorded as written by vidssl's demo generator (no clip_00.json")
    assert str(e.value).endswith(f"or move or rename clip_00.mp4 in {tmp_path}")
    assert _listing(tmp_path) == {"clip_00.mp4": (b"\x00\x00\x00\x18ftypmp42 a holiday", _written(theirs))}


def test_a_foreign_clip_json_is_never_replaced(tmp_path):
    """An annotation tool's clip_01.json (it names a "generator" too), alone or beside the user's clip_01.mp4:
    refused before clip_00 is written; then, beside a complete demo folder of num=1, a call with num=2 leaves the
    demo clip as it was too."""
    record = tmp_path / "clip_01.json"
    record.write_text(json.dumps({"generator": "labelme 5.2", "shapes": []}))
    before = _listing(tmp_path)
    with pytest.raises(ForeignClipError, match=f"^{record}: not recorded as written by .* rename clip_01.json in "):
        make_demo_videos(tmp_path, num=2, frames=4)
    assert _listing(tmp_path) == before
    (tmp_path / "clip_01.mp4").write_bytes(b"their clip")
    make_demo_videos(tmp_path, num=1, frames=4)  # index 1 is not asked for: left alone
    before = _listing(tmp_path)
    with pytest.raises(ForeignClipError) as e:
        make_demo_videos(tmp_path, num=3, frames=4)
    assert e.value.paths == [tmp_path / "clip_01.mp4", record]
    assert "(clip_01.json beside it is not a record the demo generator writes)" in str(e.value)
    assert "rename clip_01.mp4, clip_01.json in" in str(e.value)
    assert _listing(tmp_path) == before and sorted(before) == ["clip_00.json", "clip_00.mp4", "clip_01.json",
                                                               "clip_01.mp4"]


@pytest.mark.parametrize("kill", ["encoding", "final json"])
def test_a_killed_call_leaves_every_clip_file_claimed(tmp_path, monkeypatch, kill):
    """Killed while encoding, or between the mp4's rename and its JSON, a call left a file at clip_00's names with no
    record of the generator beside it: that could not be told from a user's file. Now the claim is written first:
    the rerun finds clip_00 the generator's and completes it, byte for byte what an unkilled call writes."""
    import vidssl.demo

    fresh = make_demo_videos(tmp_path / "fresh", num=1, frames=4)[0].read_bytes()
    out = tmp_path / "d"
    write_clip, write_json = vidssl.demo.write_clip, vidssl.demo.atomic_write_json

    def killed_encoding(clip, video_path, fps):
        raise KeyboardInterrupt

    def killed_before_json(json_path, obj, **kwargs):
        if obj.get("mp4") is not None:
            raise KeyboardInterrupt
        write_json(json_path, obj, **kwargs)

    if kill == "encoding":
        monkeypatch.setattr(vidssl.demo, "write_clip", killed_encoding)
    else:
        monkeypatch.setattr(vidssl.demo, "atomic_write_json", killed_before_json)
    with pytest.raises(KeyboardInterrupt):
        make_demo_videos(out, num=1, frames=4)
    monkeypatch.undo()
    assert vidssl.demo.write_clip is write_clip
    left = sorted(p.name for p in out.iterdir())
    assert left == (["clip_00.json"] if kill == "encoding" else ["clip_00.json", "clip_00.mp4"])
    generator = json.loads((out / "clip_00.json").read_text())["generator"]  # claimed: the generator's record
    assert generator["index"] == 0 and set(generator) == {"version", "seed", "index", "frames", "width", "height",
                                                          "fps"}
    path = make_demo_videos(out, num=1, frames=4)[0]
    assert path.read_bytes() == fresh and open_video(path).num_frames == 4


def test_a_claim_beside_a_partial_mp4_is_completed(tmp_path):
    """What a kill -9 while encoding leaves where the mp4 had been renamed by an earlier call (or a copy cut short):
    the claim beside half an mp4. The rerun writes the clip, which decodes in full."""
    fresh = make_demo_videos(tmp_path / "fresh", num=1, frames=4)[0].read_bytes()
    (tmp_path / "clip_00.json").write_text(json.dumps({"generator": {
        "version": GENERATOR_VERSION, "seed": 0, "index": 0, "frames": 4, "width": 320, "height": 240, "fps": 25},
        "mp4": None}))
    (tmp_path / "clip_00.mp4").write_bytes(fresh[: len(fresh) // 2])
    path = make_demo_videos(tmp_path, num=1, frames=4)[0]
    assert path.read_bytes() == fresh and open_video(path).num_frames == 4
    assert json.loads(path.with_suffix(".json").read_text())["mp4"]["size"] == len(fresh)


def test_a_complete_folder_is_kept_byte_for_byte_beside_a_users_clip(tmp_path):
    """A rerun keeps every complete clip as it is (same bytes, same inode: not written again), and a user's clip at
    an index not asked for is left alone; asked for, it is refused and the complete clips stay as they were."""
    make_demo_videos(tmp_path, num=2, frames=4)
    (tmp_path / "clip_02.mp4").write_bytes(b"their clip")
    before = _listing(tmp_path)
    assert make_demo_videos(tmp_path, num=2, frames=4) == [tmp_path / "clip_00.mp4", tmp_path / "clip_01.mp4"]
    assert _listing(tmp_path) == before
    with pytest.raises(ForeignClipError, match="clip_02.mp4"):
        make_demo_videos(tmp_path, num=3, frames=4)
    assert _listing(tmp_path) == before


def test_the_command_line_names_the_users_clip_in_one_line(tmp_path, capsys):
    from vidssl.cli import main

    (tmp_path / "clip_00.mp4").write_bytes(b"their clip")
    assert main(["demo-videos", str(tmp_path), "--num", "1", "--set", "demo.frames=4"]) == 1
    err = capsys.readouterr().err
    assert err == (f"vidssl demo-videos: error: {tmp_path / 'clip_00.mp4'}: not recorded as written by vidssl's demo "
                   "generator (no clip_00.json of the demo generator's beside it), and a demo clip would replace it; "
                   "nothing was written: choose an empty or new folder for the demo clips, or move or rename "
                   f"clip_00.mp4 in {tmp_path}\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip_00.mp4"]  # not its config.yaml either


def test_the_command_line_keeps_a_config_yaml_of_the_users(tmp_path, capsys):
    """`vidssl demo-videos OUT` writes OUT/config.yaml (the resolved config): it replaced a config.yaml of the user's
    own folder. Refused before any clip is written; its own, from an earlier call, is written again."""
    from vidssl.cli import main

    theirs = tmp_path / "config.yaml"
    theirs.write_text("camera: {iso: 400}\n")
    argv = ["demo-videos", str(tmp_path), "--num", "1", "--set", "demo.frames=4"]
    assert main(argv) == 1
    assert capsys.readouterr().err == (
        f"vidssl demo-videos: error: {theirs}: not a resolved config vidssl wrote, and `vidssl demo-videos` writes "
        "its config there; nothing was written: choose an empty or new output folder, or move or rename config.yaml "
        f"in {tmp_path}\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]
    assert theirs.read_text() == "camera: {iso: 400}\n"
    theirs.unlink()
    assert main(argv) == 0 and main(argv) == 0  # the second call finds the config.yaml the first one wrote
    assert yaml.safe_load(theirs.read_text())["config"]["demo"]["frames"] == 4
    # the form users copy from a run folder and edit (a `config:` mapping, as --config reads it) is theirs too
    for edited in ("# my edited copy\nconfig:\n  train:\n    lr: 0.5\n",
                   theirs.read_text().replace("versions:", "# kept for the paper\nversions:")):
        theirs.write_text(edited)
        capsys.readouterr()
        assert main(argv) == 1 and "not a resolved config vidssl wrote" in capsys.readouterr().err
        assert theirs.read_text() == edited


def test_the_command_line_counts_its_clips_in_words(tmp_path, capsys):
    """`vidssl demo-videos --num 1` said "wrote 1 demo clips"."""
    from vidssl.cli import main

    for num, said in ((1, "1 demo clip with"), (2, "2 demo clips with")):
        out = tmp_path / str(num)
        assert main(["demo-videos", str(out), "--num", str(num), "--set", "demo.frames=4"]) == 0
        assert capsys.readouterr().out.splitlines()[0] == f"wrote {said} ground-truth JSON to {out}"
        assert len(list(out.glob("clip_*.mp4"))) == num


def test_pretrains_own_demo_folder_rewrites_a_clip_file_without_a_record(tmp_path):
    """An older version killed between a clip's mp4 and its first JSON (or a JSON deleted by hand) left a lone
    clip_00.mp4 in RUN/demo_videos: every pretrain rerun was refused, told to choose another folder it cannot choose.
    pretrain's folders are its own (owned=True, under RUN's lock): the clip is written again."""
    fresh = make_demo_videos(tmp_path / "fresh", num=1, frames=4)[0].read_bytes()
    lone = tmp_path / "demo_videos" / "clip_00.mp4"
    lone.parent.mkdir()
    lone.write_bytes(fresh[: len(fresh) // 2])
    with pytest.raises(ForeignClipError):
        make_demo_videos(lone.parent, num=1, frames=4)
    assert make_demo_videos(lone.parent, num=1, frames=4, owned=True) == [lone] and lone.read_bytes() == fresh
