"""Reading DAVIS folders: binary (2016) and palette (2017) masks, sequence lists, and errors that name the file."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from vidssl.eval.davis import palette
from vidssl.eval.davis_data import DavisDataError, list_sequences, load_sequence


def write_sequence(root, name, masks, mode="P", frame_ext=".jpg"):
    """Write frames (a gradient) and masks in DAVIS layout; masks: list of (H, W) uint8 label maps."""
    img_dir = root / "JPEGImages" / "480p" / name
    ann_dir = root / "Annotations" / "480p" / name
    img_dir.mkdir(parents=True, exist_ok=True)
    ann_dir.mkdir(parents=True, exist_ok=True)
    for t, mask in enumerate(masks):
        h, w = mask.shape
        frame = np.zeros((h, w, 3), np.uint8)
        frame[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None]
        frame[..., 1] = t * 20
        Image.fromarray(frame).save(img_dir / f"{t:05d}{frame_ext}")
        if mode == "P":
            im = Image.fromarray(mask)
            im.putpalette(palette().flatten().tolist())
        else:
            im = Image.fromarray(np.where(mask > 0, 255, 0).astype(np.uint8), mode="L")
        im.save(ann_dir / f"{t:05d}.png")
    return img_dir, ann_dir


def two_objects(h=48, w=64, frames=3):
    masks = []
    for t in range(frames):
        m = np.zeros((h, w), np.uint8)
        m[4:20, 4 + t:20 + t] = 1
        m[28:44, 30:50] = 2
        m[0, 0] = 255  # void in palette files: read as background, like the official evaluation
        masks.append(m)
    return masks


def test_palette_masks_keep_object_ids(tmp_path):
    masks = two_objects()
    write_sequence(tmp_path, "pair", masks)
    seq = load_sequence(tmp_path, "pair")
    assert seq.name == "pair" and len(seq) == 3 and seq.num_objects == 2
    assert seq.frame_names == ["00000", "00001", "00002"]
    assert seq.frames[0].shape == (48, 64, 3) and seq.frames[0].dtype == np.uint8
    for got, want in zip(seq.masks, masks):
        want = want.copy()
        want[want == 255] = 0
        np.testing.assert_array_equal(got, want)
    assert seq.frames[1][0, 0, 1] == pytest.approx(20, abs=3)  # RGB order, frame order kept (JPEG: approx)


def test_object_ids_are_the_ids_of_the_first_frame(tmp_path):
    masks = two_objects()
    for m in masks:
        m[m == 2] = 5
    masks[2][40:44, 0:4] = 7  # appears after the first frame: neither propagated nor scored
    write_sequence(tmp_path, "gaps", masks)
    seq = load_sequence(tmp_path, "gaps")
    assert seq.object_ids == (1, 5) and seq.num_objects == 5


def test_unpadded_frame_names_keep_their_numeric_order(tmp_path):
    write_sequence(tmp_path, "seq", two_objects(frames=12), frame_ext=".png")
    for folder in (tmp_path / "JPEGImages" / "480p" / "seq", tmp_path / "Annotations" / "480p" / "seq"):
        for path in folder.iterdir():  # 00010.png -> 10.png
            path.rename(path.with_name(f"{int(path.stem)}{path.suffix}"))
    seq = load_sequence(tmp_path, "seq")
    assert seq.frame_names == [str(t) for t in range(12)]
    from vidssl.eval.davis_data import _natural_key

    # "²" is a digit int() cannot read: it stays text; other decimal scripts compare as numbers
    assert sorted(["f_1²", "f_10", "f_2"], key=_natural_key) == ["f_1²", "f_2", "f_10"]
    assert sorted(["f_١٠", "f_٢"], key=_natural_key) == ["f_٢", "f_١٠"]  # Arabic-Indic 10 after 2
    assert [int(f[0, 0, 1]) for f in seq.frames] == [t * 20 for t in range(12)]  # frame t has green = 20 t


def test_frames_in_16_bit_grey_read_as_their_grey_levels(tmp_path):
    """A 16-bit greyscale PNG frame (Pillow's I;16) came out pure white through convert("RGB"): J&F fell from 0.62
    to 0.41 in silence. Expected: each 16-bit level v as round(v / 257), the scale OpenCV and the flow reader use."""
    import cv2

    img_dir, _ = write_sequence(tmp_path, "deep", [np.pad(np.ones((8, 8), np.uint8), 4)] * 2, frame_ext=".png")
    levels = (np.arange(16 * 16).reshape(16, 16) * 257).astype(np.uint16)  # 0 .. 65535 in 255 steps of 257
    levels[0, 1] = 1000  # and one between: 3.89 -> 4
    cv2.imwrite(str(img_dir / "00001.png"), levels)
    assert Image.open(img_dir / "00001.png").mode in ("I;16", "I")  # Pillow's name for it varies by version
    dark = (np.arange(16 * 16).reshape(16, 16)).astype(np.uint16)  # every level <= 255: still 16-bit, so dark
    cv2.imwrite(str(img_dir / "00000.png"), dark)
    assert np.array_equal(load_sequence(tmp_path, "deep").frames[0][..., 1],
                          np.floor(dark / 257.0 + 0.5).astype(np.uint8))
    frame = load_sequence(tmp_path, "deep").frames[1]
    expected = np.floor(levels / 257.0 + 0.5).astype(np.uint8)
    assert frame.shape == (16, 16, 3) and all(np.array_equal(frame[..., c], expected) for c in range(3))


def test_binary_masks_are_object_one(tmp_path):
    masks = [m.clip(0, 2) for m in two_objects()]
    write_sequence(tmp_path, "bin", masks, mode="L")
    seq = load_sequence(tmp_path, "bin")
    assert seq.num_objects == 1
    np.testing.assert_array_equal(seq.masks[2], (masks[2] > 0).astype(np.uint8))


def test_max_side_resizes_frames_and_masks_with_valid_ids(tmp_path):
    write_sequence(tmp_path, "pair", two_objects(h=96, w=128))
    seq = load_sequence(tmp_path, "pair", max_side=64)
    assert seq.frames[0].shape == (48, 64, 3) and seq.masks[0].shape == (48, 64)
    assert set(np.unique(seq.masks[0]).tolist()) == {0, 1, 2}


def test_max_side_resizes_masks_by_nearest_neighbour(tmp_path):
    """Downscaled masks keep exact labels: an interpolated border between background 0 and object 3 would read as
    objects 1 and 2. Checked against nearest-neighbour index arithmetic (pixel centres), not against PIL."""
    rng = np.random.default_rng(0)
    # 8x8 blocks of background or object 3: many 0|3 borders
    mask = np.kron(rng.integers(0, 2, (8, 14)), np.ones((8, 8), np.uint8))[:60, :107].astype(np.uint8) * 3
    mask[0, 0] = 3  # the first frame needs an object
    write_sequence(tmp_path, "gap", [mask])
    seq = load_sequence(tmp_path, "gap", max_side=64)
    h, w = seq.masks[0].shape
    assert (h, w) == (36, 64)
    # output pixel i samples input row floor((i + 0.5) * 60 / 36); (2i + 1) * 60 / 72 is never a whole number, so
    # no sample falls on a tie where float rounding could pick the neighbouring row (likewise 107 / 64 for columns)
    rows = ((np.arange(h) + 0.5) * 60 / h).astype(int)
    cols = ((np.arange(w) + 0.5) * 107 / w).astype(int)
    np.testing.assert_array_equal(seq.masks[0], mask[rows][:, cols])
    assert set(np.unique(seq.masks[0]).tolist()) == {0, 3}


def test_list_sequences_from_imagesets_or_folders(tmp_path):
    for name in ("b", "a", "c"):
        write_sequence(tmp_path, name, two_objects(frames=1))
    assert list_sequences(tmp_path) == ["a", "b", "c"]
    (tmp_path / "ImageSets").mkdir()
    (tmp_path / "ImageSets" / "val.txt").write_text("c\na\n\n")
    assert list_sequences(tmp_path) == ["c", "a"]
    # saved by an editor that writes a byte-order mark: the first name lost nothing ("\ufeffc" was not found)
    (tmp_path / "ImageSets" / "val.txt").write_text("c\na\n", encoding="utf-8-sig")
    assert list_sequences(tmp_path) == ["c", "a"]


def test_a_full_davis_download_evaluates_its_val_subset(tmp_path):
    for name in ("bear", "blackswan", "bmx-trees"):
        write_sequence(tmp_path, name, two_objects(frames=1))
    sets = tmp_path / "ImageSets"
    (sets / "2017").mkdir(parents=True)
    (sets / "2016").mkdir()
    (sets / "2017" / "train.txt").write_text("bear\n")
    (sets / "2017" / "val.txt").write_text("bmx-trees\nblackswan\n")
    (sets / "2016" / "val.txt").write_text("blackswan\n")
    assert list_sequences(tmp_path) == ["bmx-trees", "blackswan"]  # DAVIS-2017's own list first
    assert list_sequences(tmp_path, "train") == ["bear"]
    (sets / "2017" / "val.txt").write_text("\n")
    with pytest.raises(DavisDataError, match=r"2017/val\.txt: lists no sequence"):
        list_sequences(tmp_path)


def test_davis_2016_imagesets_name_frames_not_sequences(tmp_path):
    for name in ("bear", "blackswan"):
        write_sequence(tmp_path, name, two_objects(frames=1))
    (tmp_path / "ImageSets" / "480p").mkdir(parents=True)
    (tmp_path / "ImageSets" / "480p" / "val.txt").write_text(
        "/JPEGImages/480p/blackswan/00000.jpg /Annotations/480p/blackswan/00000.png\n"
        "/JPEGImages/480p/blackswan/00001.jpg /Annotations/480p/blackswan/00001.png\n")
    (tmp_path / "ImageSets" / "480p" / "train.txt").write_text(
        "/JPEGImages/480p/bear/00000.jpg /Annotations/480p/bear/00000.png\n")
    assert list_sequences(tmp_path) == ["blackswan"]
    # a folder named with a trailing slash vanished (its last part was taken for a frame)
    (tmp_path / "ImageSets" / "480p" / "val.txt").write_text("blackswan/\nJPEGImages/480p/bear\n")
    assert list_sequences(tmp_path) == ["blackswan", "bear"]


def test_imageset_lines_that_climb_out_of_the_data_are_skipped_naming_the_line(tmp_path, caplog):
    # each was joined to JPEGImages/480p and to --out's mask folder: "x/.." read JPEGImages/ itself and wrote the
    # masks a folder up, "/." (read as "/") the file system's root
    write_sequence(tmp_path, "a", two_objects(frames=1))
    write_sequence(tmp_path, "x", two_objects(frames=1))
    (tmp_path / "ImageSets").mkdir()
    (tmp_path / "ImageSets" / "val.txt").write_text("a\n../x\nx/..\n/.\n.\n..\\x\n")
    with caplog.at_level("WARNING", logger="vidssl.eval.davis_data"):
        assert list_sequences(tmp_path) == ["a"]
    for number, entry in ((2, "'../x'"), (3, "'x/..'"), (4, "'/.'"), (5, "'.'"), (6, r"'..\\x'")):
        assert f"val.txt:{number}: {entry} is not a sequence name" in caplog.text
    for name in ("..", "/", "", "a/../x"):  # a name given in Python
        with pytest.raises(DavisDataError, match="is not a sequence name; give a folder name under JPEGImages/480p"):
            load_sequence(tmp_path, name)
    assert load_sequence(tmp_path, "a").name == "a"


def test_real_blackswan_reads_as_binary(data_dir):
    root = data_dir / "davis"
    assert list_sequences(root) == ["blackswan"]
    seq = load_sequence(root, "blackswan")
    assert len(seq) == 50 and seq.num_objects == 1
    assert seq.frames[0].shape == (480, 854, 3) and seq.masks[0].shape == (480, 854)
    fg = np.mean([m.mean() for m in seq.masks])
    assert 0.09 < fg < 0.11  # PROVENANCE.md: foreground fraction mean 0.099
    assert set(np.unique(seq.masks[10]).tolist()) == {0, 1}


def test_errors_name_the_file(tmp_path):
    with pytest.raises(DavisDataError, match="not found"):
        list_sequences(tmp_path / "nowhere")
    img_dir, ann_dir = write_sequence(tmp_path, "s", two_objects())
    (ann_dir / "00001.png").unlink()
    with pytest.raises(DavisDataError, match=r"00001\.png: mask missing"):
        load_sequence(tmp_path, "s")
    with pytest.raises(DavisDataError, match=r"480p/zzz: frames folder"):
        load_sequence(tmp_path, "zzz")

    img_dir, ann_dir = write_sequence(tmp_path, "size", two_objects())
    Image.fromarray(np.zeros((10, 10), np.uint8), mode="L").save(ann_dir / "00002.png")
    with pytest.raises(DavisDataError, match=r"size/00002\.png: mask is 10x10 but frame .* is 64x48"):
        load_sequence(tmp_path, "size")

    img_dir, ann_dir = write_sequence(tmp_path, "rgb", two_objects())
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(ann_dir / "00000.png")
    with pytest.raises(DavisDataError, match=r"rgb/00000\.png: mask PNG has mode 'RGB'; save it as a palette "
                                             r"\(mode P\) PNG whose index is the object id"):
        load_sequence(tmp_path, "rgb")

    img_dir, ann_dir = write_sequence(tmp_path, "ids", two_objects())
    Image.fromarray(two_objects()[0].clip(0, 2), mode="L").save(ann_dir / "00000.png")
    with pytest.raises(DavisDataError, match=r"ids/00000\.png: greyscale mask with values up to 2"):
        load_sequence(tmp_path, "ids")

    img_dir, ann_dir = write_sequence(tmp_path, "corrupt", two_objects())
    (img_dir / "00001.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DavisDataError, match=r"corrupt/00001\.jpg: cannot read frame"):
        load_sequence(tmp_path, "corrupt")

    empty = [np.zeros((48, 64), np.uint8)] + two_objects()[1:]
    write_sequence(tmp_path, "empty", empty)
    with pytest.raises(DavisDataError, match=r"empty/00000\.png: first-frame mask has no object"):
        load_sequence(tmp_path, "empty")


def test_a_folder_a_level_off_names_the_davis_folder_to_pass(tmp_path):
    """--data given the folder the zip unpacked into (holding DAVIS/), or DAVIS/JPEGImages, .../480p or a sequence
    folder, said only "this is not a DAVIS-layout folder"."""
    import re

    davis = tmp_path / "d17" / "DAVIS"
    write_sequence(davis, "pair", two_objects())
    with pytest.raises(DavisDataError, match=re.escape(f"pass {davis}, the folder holding JPEGImages/")):
        list_sequences(tmp_path / "d17")
    for inside in ("JPEGImages", "JPEGImages/480p", "JPEGImages/480p/pair", "Annotations"):
        with pytest.raises(DavisDataError, match=re.escape(f"{davis / inside}: no JPEGImages/480p folder") + ".*"
                           + re.escape(f"pass {davis}, the folder holding JPEGImages/")):
            list_sequences(davis / inside)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with pytest.raises(DavisDataError, match="this is not a DAVIS-layout folder$"):  # no hint to give
        list_sequences(elsewhere)
    assert list_sequences(davis) == ["pair"]


def test_a_download_without_480p_frames_is_one_error_naming_the_480p_release(tmp_path):
    """A Full-Resolution-only DAVIS-2017 download (or DAVIS-2016's 1080p alone) was a "frames folder not found"
    warning per listed sequence, then an error that never mentioned the resolution."""
    for folder in ("Full-Resolution", "1080p"):
        root = tmp_path / folder
        write_sequence(root, "pair", two_objects())
        for kind in ("JPEGImages", "Annotations"):
            (root / kind / "480p").rename(root / kind / folder)
        (root / "ImageSets" / "2017").mkdir(parents=True)
        (root / "ImageSets" / "2017" / "val.txt").write_text("pair\n")
        with pytest.raises(DavisDataError, match=rf"JPEGImages: has {folder}/ but no 480p/; vidssl reads the 480p "
                                                 r"frames .*DAVIS-2017-trainval-480p\.zip"):
            list_sequences(root)


def test_masks_that_would_be_misread_are_errors(tmp_path):
    # a 0/255 mask converted to a palette keeps the object at index 255, DAVIS's void: read as background, the
    # object vanished from every frame it was in (only the first frame's empty mask was noticed)
    masks = two_objects()
    binary = [np.where(m == 1, 255, 0).astype(np.uint8) for m in masks]
    img_dir, ann_dir = write_sequence(tmp_path, "p255", masks)
    for t, mask in enumerate(binary):
        Image.fromarray(mask, mode="L").convert("P").save(ann_dir / f"{t:05d}.png")
    with pytest.raises(DavisDataError, match=r"p255/00000\.png: palette mask whose only non-zero index is 255, "
                                             r".*and no mask of sequence 'p255' has an object id 1-254"):
        load_sequence(tmp_path, "p255")
    # greyscale object ids with a 255 void border: > 127 took the border for the object
    img_dir, ann_dir = write_sequence(tmp_path, "idsvoid", masks)
    bordered = masks[0].copy()
    bordered[0, :] = 255
    Image.fromarray(bordered, mode="L").save(ann_dir / "00000.png")
    with pytest.raises(DavisDataError, match=r"idsvoid/00000\.png: greyscale mask with the values \[0, 1, 2, 255\]"):
        load_sequence(tmp_path, "idsvoid")
    # a 0/255 mask with anti-aliased edges is still binary
    img_dir, ann_dir = write_sequence(tmp_path, "smooth", masks, mode="L")
    soft = np.asarray(Image.fromarray(binary[0], mode="L").resize((32, 24), Image.BILINEAR).resize((64, 48),
                                                                                                    Image.BILINEAR))
    assert len(np.unique(soft)) > 16 and ((soft > 0) & (soft <= 127)).any()
    Image.fromarray(soft, mode="L").save(ann_dir / "00000.png")
    assert load_sequence(tmp_path, "smooth").masks[0].max() == 1
    # a 0/255 mask downscaled with a box filter: few levels (64, 128, 191) some under 128, but only along its edges
    img_dir, ann_dir = write_sequence(tmp_path, "halved", [np.zeros((24, 32), np.uint8)] * 3, mode="L")
    big = np.zeros((48, 64), np.uint8)
    big[5:21, 7:30] = 255  # odd edges: the halving averages them with the background
    small = np.asarray(Image.fromarray(big, mode="L").resize((32, 24), Image.BOX))
    levels = np.unique(small)
    assert len(levels) <= 16 and ((levels > 0) & (levels <= 127)).any()
    Image.fromarray(small, mode="L").save(ann_dir / "00000.png")
    assert np.array_equal(load_sequence(tmp_path, "halved").masks[0], (small > 127).astype(np.uint8))
    # two files of one frame: which one was read depended on the listing
    img_dir, ann_dir = write_sequence(tmp_path, "twice", masks)
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(img_dir / "00001.png")
    with pytest.raises(DavisDataError, match=r"twice/00001\.png: 00001\.jpg has the same name"):
        load_sequence(tmp_path, "twice")


def test_reversed_copy_plays_every_sequence_backwards(tmp_path):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("reverse_davis", Path(__file__).parents[1] / "tools" /
                                                  "reverse_davis.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    src = tmp_path / "davis"
    masks = two_objects(frames=4)  # object 1 moves right one pixel a frame
    write_sequence(src, "seq", masks, frame_ext=".png")  # lossless frames: compared exactly below
    assert tool.reverse_davis(src, tmp_path / "rev") == ["seq_reversed"]
    assert list_sequences(tmp_path / "rev") == ["seq_reversed"]
    forward, backward = load_sequence(src, "seq"), load_sequence(tmp_path / "rev", "seq_reversed")
    assert len(backward.frames) == 4 and backward.num_objects == 2
    for t in range(4):
        assert np.array_equal(backward.frames[t], forward.frames[3 - t])
        assert np.array_equal(backward.masks[t], forward.masks[3 - t])
    assert np.argwhere(backward.masks[0] == 1)[:, 1].min() == 4 + 3  # it starts from the last frame's object
    # a second copy into the same folder: refused (a shorter one spliced its frames before the stale ones)
    with pytest.raises(tool.VidsslError, match="rev: not empty; write the reversed copy into a new folder"):
        tool.reverse_davis(src, tmp_path / "rev")
    for mask in (src / "Annotations" / "480p" / "seq").iterdir():  # masks named .PNG, as the loader reads them too
        mask.rename(mask.with_suffix(".PNG"))
    tool.reverse_davis(src, tmp_path / "rev2")
    assert np.array_equal(load_sequence(tmp_path / "rev2", "seq_reversed").masks[0], forward.masks[3])


def test_reversed_copy_reads_frames_in_the_loaders_order(tmp_path):
    """Unpadded names (0.png ... 11.png) sort as numbers, as load_sequence reads them, and a macOS `._` file is no
    frame: sorted as text, the copy played 9, 8, ..., 2, 11, 10, 1, 0 and gained a maskless frame."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("reverse_davis", Path(__file__).parents[1] / "tools" /
                                                  "reverse_davis.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    src = tmp_path / "davis"
    img_dir, ann_dir = write_sequence(src, "seq", two_objects(frames=12), frame_ext=".png")
    for t in range(12):  # unpad the names
        (img_dir / f"{t:05d}.png").rename(img_dir / f"{t}.png")
        (ann_dir / f"{t:05d}.png").rename(ann_dir / f"{t}.png")
    (img_dir / "._0.png").write_bytes(b"AppleDouble")
    tool.reverse_davis(src, tmp_path / "rev")
    forward, backward = load_sequence(src, "seq"), load_sequence(tmp_path / "rev", "seq_reversed")
    assert len(backward.frames) == 12
    for t in range(12):  # frame t's green channel is 20 t (write_sequence)
        assert backward.frames[t][0, 0, 1] == forward.frames[11 - t][0, 0, 1] == 20 * (11 - t)


def test_a_subset_a_davis_release_lacks_is_an_error_naming_the_ones_it_has(tmp_path):
    """ImageSets/2017/{train,val}.txt and --set eval.davis.subset=vall (or a download with test-dev.txt alone):
    the missing list fell back to every folder, train sequences included, and the J&F was over the wrong set."""
    for name in ("a", "b"):
        write_sequence(tmp_path, name, two_objects(frames=2))
    (tmp_path / "ImageSets" / "2017").mkdir(parents=True)
    (tmp_path / "ImageSets" / "2017" / "train.txt").write_text("a\n")
    (tmp_path / "ImageSets" / "2017" / "val.txt").write_text("b\n")
    assert list_sequences(tmp_path) == ["b"] and list_sequences(tmp_path, "train") == ["a"]
    with pytest.raises(DavisDataError, match=r"ImageSets: no vall\.txt \(it has 2017/train, 2017/val\); choose one"):
        list_sequences(tmp_path, "vall")
    # a hand-made list at the top of ImageSets (as $VIDSSL_DATA's sequences.txt) still serves any subset
    shutil.rmtree(tmp_path / "ImageSets" / "2017")
    (tmp_path / "ImageSets" / "sequences.txt").write_text("a\nb\n")
    assert list_sequences(tmp_path, "vall") == ["a", "b"]


def test_a_reversed_copy_that_cannot_be_made_writes_nothing(tmp_path):
    """A listed sequence without frames failed after the ones before it were copied, and the rerun the message asked
    for met "not empty"; a file as dst ended in a NotADirectoryError traceback."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("reverse_davis", Path(__file__).parents[1] / "tools" /
                                                  "reverse_davis.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    src = tmp_path / "davis"
    write_sequence(src, "seq", two_objects(frames=2))
    (src / "ImageSets").mkdir()
    (src / "ImageSets" / "sequences.txt").write_text("seq\nghost\n")
    with pytest.raises(tool.VidsslError, match=r"ghost: no such folder \(ghost is listed in"):
        tool.reverse_davis(src, tmp_path / "rev")
    assert not (tmp_path / "rev").exists()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(tool.VidsslError, match="afile: a file; name a new folder"):
        tool.reverse_davis(src, tmp_path / "afile")


def test_void_alone_in_one_frame_is_background_but_void_in_every_mask_is_an_error(tmp_path):
    """The void check ran per frame: one frame where the object is gone but a void region is left dropped the whole
    sequence. A binary 0/255 mask saved as a palette is told by the sequence: no mask has an id in 1..254."""
    masks = two_objects(frames=4)
    masks[2][:] = 0
    masks[2][10:30, 10:30] = 255  # the objects gone, an ambiguous region marked void
    write_sequence(tmp_path, "gone", masks)
    seq = load_sequence(tmp_path, "gone")
    expected = [np.where(m == 255, 0, m) for m in masks]  # void is background, frame by frame
    assert len(seq) == 4 and all(np.array_equal(got, want) for got, want in zip(seq.masks, expected))
    # the first frame empty, the object at 255 in the others: checked all the same (retrieval reads such a
    # sequence without a first-frame object); the error names the first void-only mask
    late = [np.zeros((48, 64), np.uint8)] + [np.where(m == 1, 255, 0).astype(np.uint8) for m in two_objects()[1:]]
    write_sequence(tmp_path, "late", late)
    with pytest.raises(DavisDataError, match=r"late/00001\.png: palette mask whose only non-zero index is 255"):
        load_sequence(tmp_path, "late", need_first_object=False)


def test_gaps_in_the_frame_numbers_are_one_warning_per_sequence(tmp_path, caplog):
    """00000, 00001, 00003 were read silently as three consecutive frames."""
    import logging

    img_dir, ann_dir = write_sequence(tmp_path, "holes", two_objects(frames=8))
    for t in (2, 5, 6):
        (img_dir / f"{t:05d}.jpg").unlink()
        (ann_dir / f"{t:05d}.png").unlink()
    write_sequence(tmp_path, "whole", two_objects(frames=3))
    with caplog.at_level(logging.WARNING, logger="vidssl.eval.davis_data"):
        seq = load_sequence(tmp_path, "holes")
        load_sequence(tmp_path, "whole")
        load_sequence(tmp_path, "holes", warn_gaps=False)  # retrieval: time is the frame numbers
    assert seq.frame_names == ["00000", "00001", "00003", "00004", "00007"]
    assert seq.frame_times == [0, 1, 3, 4, 7]
    assert [r.getMessage() for r in caplog.records] == [
        "holes: frames 00002 missing between 00001 and 00003 (and 1 more gap(s)); label propagation treats the "
        "frames as consecutive"]
    caplog.clear()
    for path in [*img_dir.iterdir(), *ann_dir.iterdir()]:  # 00004 -> 4, 00007 -> 7: unpadded names, a longer gap
        path.rename(path.with_name(f"{int(path.stem)}{path.suffix}"))
    (img_dir / "1.jpg").unlink()
    (ann_dir / "1.png").unlink()
    with caplog.at_level(logging.WARNING, logger="vidssl.eval.davis_data"):
        load_sequence(tmp_path, "holes")
    assert [r.getMessage() for r in caplog.records] == [
        "holes: frames 1-2 missing between 0 and 3 (and 1 more gap(s)); label propagation treats the frames as "
        "consecutive"]


def test_a_folder_named_like_a_frame_is_no_frame(tmp_path):
    img_dir, ann_dir = write_sequence(tmp_path, "s", two_objects())
    (img_dir / "00009.jpg").mkdir()  # was taken for a frame: "mask missing for frame .../00009.jpg"
    (ann_dir / "00010.png").mkdir()
    seq = load_sequence(tmp_path, "s")
    assert seq.frame_names == ["00000", "00001", "00002"]


def test_a_damaged_16_bit_frame_is_told_to_be_replaced(tmp_path):
    """A cut-short 16-bit PNG was told "save the frame as 8-bit RGB", as if its depth were the fault."""
    import cv2

    img_dir, _ = write_sequence(tmp_path, "deep", two_objects(), frame_ext=".png")
    path = img_dir / "00001.png"
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 65535, (48, 64), dtype=np.uint16))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert Image.open(path).mode in ("I;16", "I")  # the header is whole: the 16-bit branch reads it
    with pytest.raises(DavisDataError, match=r"deep/00001\.png: .*; replace the file$") as error:
        load_sequence(tmp_path, "deep")
    assert "8-bit" not in str(error.value)
