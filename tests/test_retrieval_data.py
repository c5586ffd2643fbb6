"""Retrieval datasets: image folders and labels.csv, DAVIS object crops, mined track pairs, layout detection."""
from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from vidssl.eval.config import RetrievalConfig
from vidssl.eval.retrieval_data import (PAD_RGB, RetrievalDataError, detect_kind, load_retrieval_set,
                                        object_crops, square_box, square_resize)

CFG = RetrievalConfig(image_size=32, num_workers=0)


def write_rgb(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def solid(colour, h=40, w=48) -> np.ndarray:
    return np.full((h, w, 3), colour, np.uint8)


@pytest.mark.parametrize("override, message", [
    ("eval.retrieval.min_gap=0", "'eval.retrieval.min_gap': must be >= 1"),
    ("eval.retrieval.image_size=16", "'eval.retrieval.image_size': must be >= 32"),
    ("eval.retrieval.device=tpu", "'eval.retrieval.device': must be auto, cpu, cuda or cuda:N"),
])
def test_config_rejects_bad_values(override, message):
    from vidssl.config import load_config
    from vidssl.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        load_config(overrides=[override])


# ----------------------------------------------------------------------------------------------------------------
# geometry


def test_square_resize_keeps_the_centre():
    # column x holds value x: the centre 40x40 of a 40x80 image is columns 20..59
    ramp = np.tile(np.arange(80, dtype=np.uint8)[None, :, None], (40, 1, 3))
    out = square_resize(ramp, 40)
    assert out.shape == (40, 40, 3)
    assert out[0, :, 0].tolist() == list(range(20, 60))
    assert square_resize(ramp, 20).shape == (20, 20, 3)


def test_square_box_cases():
    # 20x10 box at (40, 50) in a 200x100 image, margin 0.25 -> side 30, centred on (50, 55)
    assert square_box((40, 50, 20, 10), 0.25, 200, 100) == (35, 40, 30, 30)
    # the same box at the left edge: the square moves inside rather than leaving the image
    assert square_box((0, 50, 20, 10), 0.25, 200, 100) == (0, 40, 30, 30)
    # bottom-right corner
    assert square_box((185, 95, 15, 5), 0.0, 200, 100) == (185, 85, 15, 15)
    # a box wider than the image is tall: the square reaches past both edges, centred on the box (rows -25..124)
    assert square_box((10, 0, 150, 100), 0.0, 200, 100) == (10, -25, 150, 150)
    assert square_box((10, 40, 150, 20), 0.0, 200, 100) == (10, -25, 150, 150)


def test_a_crop_past_the_frame_edge_is_padded_not_squashed():
    # a 40x20 object filling the frame's height in a 60x20 frame: its square crop is 40x40, padded above and below
    frame = np.zeros((20, 60, 3), np.uint8)
    mask = np.zeros((20, 60), np.uint8)
    frame[:, 10:50] = (255, 0, 0)
    frame[5:15, 25:35] = (0, 255, 0)  # a square mark: it must stay square in the crop
    mask[:, 10:50] = 1
    ((_, crop, window),) = object_crops(frame, mask, size=40, margin=0.0, min_pixels=1)
    assert window == (10, -10, 40, 40)
    expected = np.empty((40, 40, 3), np.uint8)  # built pixel by pixel: inside the frame its pixel, else the pad
    for row in range(40):
        for col in range(40):
            y, x = row - 10, col + 10
            expected[row, col] = frame[y, x] if 0 <= y < 20 else PAD_RGB
    assert np.array_equal(crop, expected)
    green = np.argwhere((crop == (0, 255, 0)).all(axis=2))
    assert np.ptp(green[:, 0]) == np.ptp(green[:, 1]) == 9


def test_object_crops_cut_the_square_around_each_mask():
    frame = np.zeros((60, 80, 3), np.uint8)
    mask = np.zeros((60, 80), np.uint8)
    frame[10:20, 10:30] = (255, 0, 0)  # object 1: 20 wide, 10 tall
    mask[10:20, 10:30] = 1
    frame[40:50, 60:70] = (0, 0, 255)  # object 2: 10x10
    mask[40:50, 60:70] = 2
    mask[0, 0] = 3  # object 3: a single pixel, under min_pixels
    crops = object_crops(frame, mask, size=20, margin=0.0, min_pixels=4)
    assert [c[0] for c in crops] == [1, 2]
    assert crops[0][2] == (10, 5, 20, 20)  # square of side 20 centred on the box, rows 5..24
    assert crops[1][2] == (60, 40, 10, 10)
    one = crops[0][1]
    assert one.shape == (20, 20, 3)
    assert (one[5:15, :] == (255, 0, 0)).all() and (one[:5] == 0).all() and (one[15:] == 0).all()
    assert (crops[1][1] == (0, 0, 255)).all()


# ----------------------------------------------------------------------------------------------------------------
# images


@pytest.fixture
def image_folder(tmp_path) -> Path:
    root = tmp_path / "imgs"
    for c, colour in enumerate([(200, 0, 0), (0, 200, 0), (0, 0, 200)]):
        for i in range(3):
            write_rgb(root / f"class_{c}" / f"{i}.png", solid(colour))
    (root / "empty_class").mkdir()
    (root / "class_0" / "notes.txt").write_text("not an image")
    (root / "class_0" / "3.png").symlink_to(root / "moved.png")  # a link whose image was moved
    write_rgb(root / "stray.png", solid((9, 9, 9)))  # beside the class folders: in no class
    return root


def test_image_folder_layout(image_folder):
    data = load_retrieval_set(image_folder, CFG)
    assert data.kind == "images" and detect_kind(image_folder) == "images"
    # listed, not silently left out (an image outside the folders, a folder without images were not listed; a
    # broken link was called "not an image file")
    assert data.skipped == {"broken link": ["class_0/3.png"], "not an image file": ["class_0/notes.txt"],
                            "class folder without images": ["empty_class"],
                            "image outside a class folder": ["stray.png"]}
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert data.label_names == {0: "class_0", 1: "class_1", 2: "class_2"}
    assert data.captions[3] == "class_1/0.png"
    assert data.references is None and data.queries.tolist() == list(range(9))
    image, ok = data.items[4]
    assert ok and image.shape == (3, 32, 32) and image[:, 0, 0].tolist() == [0, 200, 0]


def test_labels_csv_layout_with_missing_file(tmp_path, caplog):
    root = tmp_path / "csvset"
    write_rgb(root / "a.jpg", solid((10, 20, 30)))
    write_rgb(root / "sub" / "b.png", solid((40, 50, 60)))
    (root / "labels.csv").write_text("path,class_id,class_name\na.jpg,7,seven\nsub/b.png,3,three\n"
                                     "gone.jpg,7,seven\n")
    data = load_retrieval_set(root, CFG)
    assert data.labels.tolist() == [7, 3]
    assert data.label_names == {7: "seven", 3: "three"}
    assert data.skipped == {"missing file": ["gone.jpg"]}
    assert "labels.csv: 1 of the 3 images it lists are missing (e.g. gone.jpg), skipped; paths are relative to " \
        f"{root}" in caplog.text  # said, not only recorded
    (root / "labels.csv").write_text("path,class_id\na.jpg,1\nsub/b.png,1\n")  # no class_name column
    assert load_retrieval_set(root, CFG).label_names == {1: "1"}
    # saved by Excel: a byte-order mark before "path" ("header must be path,class_id; found path,class_id")
    (root / "labels.csv").write_bytes(b"\xef\xbb\xbfpath,class_id\r\na.jpg,1\r\nsub/b.png,2\r\n")
    assert load_retrieval_set(root, CFG).labels.tolist() == [1, 2]


@pytest.mark.parametrize("text, message", [
    ("file,label\na.jpg,1\n", "header must be path,class_id"),
    ("path,class_id\na.jpg,cat\n", r"labels.csv:2: class_id 'cat' is not an integer"),
    ("path,class_id\ngone.jpg,1\n", "lists no existing image"),
])
def test_bad_labels_csv_names_the_file(tmp_path, text, message):
    write_rgb(tmp_path / "a.jpg", solid((1, 2, 3)))
    (tmp_path / "labels.csv").write_text(text)
    with pytest.raises(RetrievalDataError, match=message):
        load_retrieval_set(tmp_path, CFG)


def test_labels_csv_rows_that_would_be_misread_are_errors(tmp_path):
    write_rgb(tmp_path / "a.jpg", solid((1, 2, 3)))
    write_rgb(tmp_path / "b.jpg", solid((4, 5, 6)))
    # an image listed twice finds its own copy at rank 1 (P@1 1.0 for pixels on the CUB-style set)
    (tmp_path / "labels.csv").write_text("path,class_id\na.jpg,1\nb.jpg,1\n./a.jpg,1\n")
    with pytest.raises(RetrievalDataError, match=r"labels.csv:4: ./a.jpg is listed again \(first on line 2\)"):
        load_retrieval_set(tmp_path, CFG)
    # one class_id named as two classes: the second was merged into the first without a word
    (tmp_path / "labels.csv").write_text("path,class_id,class_name\na.jpg,1,cat\nb.jpg,1,dog\n")
    with pytest.raises(RetrievalDataError, match=r"labels.csv:3: class_id 1 is named 'dog', but 'cat' on line 2"):
        load_retrieval_set(tmp_path, CFG)
    for rows in ("a.jpg,1,cat\nb.jpg,1,\n", "a.jpg,1,\nb.jpg,1,cat\n"):  # named on one line only: fine
        (tmp_path / "labels.csv").write_text("path,class_id,class_name\n" + rows)
        assert load_retrieval_set(tmp_path, CFG).label_names == {1: "cat"}, rows
    # an unquoted comma in a class name: csv hands the extra field over under None (was an AttributeError)
    (tmp_path / "labels.csv").write_text("path,class_id,class_name\na.jpg,1,Albatross, black-footed\nb.jpg,1,x\n")
    with pytest.raises(RetrievalDataError, match=r"labels.csv:2: 4 fields, the header has 3; quote"):
        load_retrieval_set(tmp_path, CFG)
    # an absolute path outside the folder loads (its caption was a ValueError from Path.relative_to)
    elsewhere = tmp_path.parent / f"{tmp_path.name}_elsewhere.jpg"
    write_rgb(elsewhere, solid((7, 8, 9)))
    root = tmp_path / "set"
    write_rgb(root / "a.jpg", solid((1, 2, 3)))
    (root / "labels.csv").write_text(f"path,class_id\na.jpg,1\n{elsewhere},1\n")
    data = load_retrieval_set(root, CFG)
    assert data.captions == ["a.jpg", f"../../{elsewhere.name}"]


def test_unreadable_image_is_flagged_not_fatal(tmp_path):
    write_rgb(tmp_path / "c" / "good.jpg", solid((1, 2, 3)))
    (tmp_path / "c" / "bad.jpg").write_bytes(b"this is not a jpeg")
    # a real photo cut short (a half-finished download): OpenCV decodes it, the missing rows flat grey
    photo = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8))[1]
    photo = photo.tobytes()
    (tmp_path / "c" / "cut.jpg").write_bytes(photo[: len(photo) // 3])
    assert cv2.imread(str(tmp_path / "c" / "cut.jpg")) is not None  # what made it look fine
    # data a phone appends after the image (motion photos) is no damage
    (tmp_path / "c" / "trailer.jpg").write_bytes(photo + b"MotionPhoto_Data" + bytes(range(256)) * 40)
    write_rgb(tmp_path / "c" / "page.tif", solid((4, 5, 6)))
    # a JPEG over Pillow's pixel limit (a decompression bomb to Pillow, not to OpenCV): no check, no crash
    from PIL import Image

    big = tmp_path / "c" / "big.jpg"
    write_rgb(big, solid((7, 8, 9)))
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = 100  # the 40x48 image is then over twice the limit, which Pillow refuses to open
    try:
        data = load_retrieval_set(tmp_path, CFG)
        flags = {data.captions[i]: data.items[i][1] for i in range(len(data.captions))}
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    assert flags["c/big.jpg"]
    big.unlink()
    data = load_retrieval_set(tmp_path, CFG)
    flags = {data.captions[i]: data.items[i][1] for i in range(len(data.captions))}
    assert flags == {"c/bad.jpg": False, "c/cut.jpg": False, "c/good.jpg": True, "c/page.tif": True,
                     "c/trailer.jpg": True}


def test_layout_errors(tmp_path):
    with pytest.raises(RetrievalDataError, match="not found"):
        detect_kind(tmp_path / "nowhere")
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(RetrievalDataError, match="not a retrieval layout"):
        detect_kind(tmp_path)
    with pytest.raises(RetrievalDataError, match="unknown retrieval kind 'clips'"):
        load_retrieval_set(tmp_path, CFG, kind="clips")
    hidden = tmp_path / ".thumbs"  # not a class: detection and loading agree
    write_rgb(hidden / "a.jpg", solid((1, 2, 3)))
    with pytest.raises(RetrievalDataError, match="not a retrieval layout"):
        detect_kind(tmp_path)
    (tmp_path / "clip.mp4").write_bytes(b"")  # a folder of videos is told apart, and needs mining first
    assert detect_kind(tmp_path) == "videos"
    with pytest.raises(RetrievalDataError, match="a folder of videos; mine its tracks first"):
        load_retrieval_set(tmp_path, CFG)


def test_unsupported_image_formats_are_named(tmp_path):
    # a class tree of GIF and PPM files: "not a retrieval layout" / "no images found" said neither what is read
    # nor what was there
    for name, exts in {"cats": (".gif", ".gif", ".ppm"), "dogs": (".gif",)}.items():
        for i, ext in enumerate(exts):
            (tmp_path / name).mkdir(exist_ok=True)
            Image.fromarray(solid((9, 9, 9), 24, 32)).save(tmp_path / name / f"{i}{ext}")
    found = re.escape("images are .jpg, .jpeg, .png, .bmp, .webp, .tif, .tiff; found 3 .gif, 1 .ppm (e.g. cats/0.gif, "
                      "cats/1.gif, cats/2.ppm)")
    with pytest.raises(RetrievalDataError, match="not a retrieval layout; .*" + found):
        detect_kind(tmp_path)
    with pytest.raises(RetrievalDataError, match="no images found; .*" + found):
        load_retrieval_set(tmp_path, CFG, kind="images")


def test_a_class_folder_of_unsupported_images_names_what_it_holds(tmp_path):
    """A class folder holding only GIFs was "class folder without images", as if it were empty."""
    for i in range(2):
        write_rgb(tmp_path / "cats" / f"{i}.jpg", solid((9, 9, 9)))
    (tmp_path / "dogs").mkdir()
    for i in range(3):
        Image.fromarray(solid((9, 9, 9), 24, 32)).save(tmp_path / "dogs" / f"{i}.gif")
    (tmp_path / "empty").mkdir()
    data = load_retrieval_set(tmp_path, CFG)
    assert data.label_names == {0: "cats"}
    assert data.skipped == {"class folder without images": [
        "dogs (images are .jpg, .jpeg, .png, .bmp, .webp, .tif, .tiff; found 3 .gif (e.g. 0.gif, 1.gif, 2.gif))",
        "empty"]}


def test_a_folder_above_a_layout_names_it(tmp_path):
    # the folder an archive was unpacked into: the layout one level down is named, not only "not a layout"
    _cub_release(tmp_path / "CUB_200_2011", {101: 1})
    make_davis(tmp_path / "DAVIS", frames=1)
    (tmp_path / "notes").mkdir()
    with pytest.raises(RetrievalDataError) as e:
        detect_kind(tmp_path)
    assert str(e.value) == (f"{tmp_path}: not a retrieval layout; it holds one: pass --data "
                            f"{tmp_path / 'CUB_200_2011'} (CUB-200-2011 release) or --data {tmp_path / 'DAVIS'} "
                            "(DAVIS)")
    assert detect_kind(tmp_path / "DAVIS") == "davis" and detect_kind(tmp_path / "CUB_200_2011") == "images"


def test_a_folder_inside_a_davis_folder_is_refused(tmp_path, monkeypatch):
    # JPEGImages/480p read as class folders: one label per sequence, adjacent frames finding each other, no warning
    make_davis(tmp_path / "DAVIS", frames=2)
    davis = tmp_path / "DAVIS"
    for inside in ("JPEGImages/480p", "Annotations/480p", "JPEGImages"):
        with pytest.raises(RetrievalDataError, match=re.escape(f"a folder of the DAVIS folder {davis} (") + ".*"
                           + re.escape(f"; pass --data {davis} for instance retrieval")):
            detect_kind(davis / inside)
    monkeypatch.chdir(davis / "JPEGImages")  # "480p" alone: its parents are found all the same
    with pytest.raises(RetrievalDataError, match=re.escape(f"of the DAVIS folder {davis} ")):
        load_retrieval_set("480p", CFG)
    data = load_retrieval_set("480p", CFG, kind="images")  # asked for by name: still read, as class folders
    assert data.label_names == {0: "alpha", 1: "beta"} and data.labels.tolist() == [0, 0, 1, 1]


def test_an_optical_flow_folder_is_refused(tmp_path):
    # $VIDSSL_DATA/flow read as class folders: each sequence one class of its two frames, every model scoring 1
    from vidssl.eval.flow.io import write_flo

    for seq in ("sintel_clean_alley_1", "sintel_final_ambush_2"):
        for i in (1, 2):
            write_rgb(tmp_path / seq / f"frame_{i:04d}.png", solid((10 * i, 2, 3)))
        write_flo(tmp_path / seq / "gt" / "frame_0001.flo", np.zeros((8, 8, 2), np.float32))
    with pytest.raises(RetrievalDataError, match=re.escape(
            f"{tmp_path}: an optical-flow dataset (2 frame pair(s) with ground truth, e.g. "
            f"{Path('sintel_clean_alley_1', 'gt', 'frame_0001.flo')}); evaluate it with `vidssl eval flow")):
        load_retrieval_set(tmp_path, CFG)
    data = load_retrieval_set(tmp_path, CFG, kind="images")  # asked for by name: read as class folders
    assert data.labels.tolist() == [0, 0, 1, 1]
    for seq in ("sintel_clean_alley_1", "sintel_final_ambush_2"):  # no ground truth: class folders after all
        (tmp_path / seq / "gt" / "frame_0001.flo").unlink()
    assert detect_kind(tmp_path) == "images"


def test_the_images_folder_of_a_cub_release_is_refused(tmp_path):
    # read as class folders, all 200 classes: the release's protocol (classes 101-200) silently dropped
    cub = tmp_path / "CUB_200_2011"
    _cub_release(cub, {1: 1, 101: 2})
    with pytest.raises(RetrievalDataError, match=re.escape(f"images of the CUB-200-2011 release folder {cub}, ")
                       + ".*" + re.escape(f"; pass --data {cub} for the release's protocol")):
        load_retrieval_set(cub / "images", CFG)
    data = load_retrieval_set(cub / "images", CFG, kind="images")  # asked for by name: every class folder
    assert data.label_names == {0: "001.Bird_1", 1: "101.Bird_101"} and len(data.labels) == 3
    (tmp_path / "elsewhere" / "images" / "a").mkdir(parents=True)  # a folder merely named images: no release
    write_rgb(tmp_path / "elsewhere" / "images" / "a" / "0.png", solid((1, 2, 3)))
    assert detect_kind(tmp_path / "elsewhere" / "images") == "images"


# ----------------------------------------------------------------------------------------------------------------
# DAVIS


def palette_png(path: Path, labels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(labels.astype(np.uint8), mode="P")
    im.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (3 * 253))
    im.save(path)


def make_davis(root: Path, frames: int = 5) -> dict:
    """Two sequences of 64x48 frames, two 12-px squares each (a colour per sequence and object) moving 2 px right
    per frame; palette masks. Returns the true (x, y, w, h) of every object in every frame."""
    truth = {}
    colours = {"alpha": ((250, 0, 0), (0, 0, 250)), "beta": ((0, 250, 0), (250, 250, 0))}
    for seq in ("alpha", "beta"):
        for t in range(frames):
            frame = np.full((48, 64, 3), 30, np.uint8)
            mask = np.zeros((48, 64), np.uint8)
            for obj, (x, y) in {1: (4, 6), 2: (30, 26)}.items():
                colour = colours[seq][obj - 1]
                x += 2 * t
                frame[y:y + 12, x:x + 12] = colour
                mask[y:y + 12, x:x + 12] = obj
                truth[(seq, t, obj)] = (x, y, 12, 12)
            write_rgb(root / "JPEGImages" / "480p" / seq / f"{t:05d}.png", frame)  # lossless: exact colours
            palette_png(root / "Annotations" / "480p" / seq / f"{t:05d}.png", mask)
    return truth


def test_davis_crops_labels_and_times(tmp_path):
    truth = make_davis(tmp_path)
    assert detect_kind(tmp_path) == "davis"
    cfg = RetrievalConfig(image_size=32, crop_margin=0.25, min_object_pixels=10)
    data = load_retrieval_set(tmp_path, cfg)
    assert len(data.labels) == 2 * 5 * 2
    assert data.label_names == {0: "alpha/1", 1: "alpha/2", 2: "beta/1", 3: "beta/2"}
    # order: sequence, frame, object
    assert data.labels.tolist() == [0, 1] * 5 + [2, 3] * 5
    assert data.groups.tolist() == [0] * 10 + [1] * 10
    assert data.times.tolist() == [t for t in range(5) for _ in (1, 2)] * 2
    assert data.captions[3] == "alpha/00001 object 2"
    # the crop is the 18-px square around the 12-px object (margin 0.25 x 12 = 3 px a side), resized to 32:
    # the object covers the middle 12/18 of it
    crop = data.items[2][0].permute(1, 2, 0).numpy()  # alpha, frame 1, object 1
    assert truth[("alpha", 1, 1)] == (6, 6, 12, 12)
    centre = crop[8:24, 8:24].astype(int)
    assert (np.abs(centre - (250, 0, 0)) < 40).all()
    assert (np.abs(crop[:3].astype(int) - 30) < 40).all()  # background above the object


def test_davis_binary_mask_real_sequence(data_dir):
    root = data_dir / "davis"
    data = load_retrieval_set(root, RetrievalConfig(image_size=32, crop_margin=0.0))
    assert data.kind == "davis" and len(data.labels) == 50
    assert data.label_names == {0: "blackswan/1"} and data.times.tolist() == list(range(50))
    # the crop of frame 0 is the square around the bounding box of mask > 127, found here with row/column scans
    mask = np.asarray(Image.open(root / "Annotations" / "480p" / "blackswan" / "00000.png")) > 127
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    box = (int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1))
    frame = np.asarray(Image.open(root / "JPEGImages" / "480p" / "blackswan" / "00000.jpg").convert("RGB"))
    (_, crop, window), = object_crops(frame, mask.astype(np.uint8), 32, 0.0, 1)
    x, y, w, h = window
    assert w == h == max(box[2], box[3])
    assert x <= box[0] and y <= box[1] and x + w >= box[0] + box[2] and y + h >= box[1] + box[3]
    assert np.array_equal(data.items[0][0].permute(1, 2, 0).numpy(), crop)


def test_davis_crops_skip_an_unreadable_sequence_and_need_no_first_frame_object(tmp_path):
    from test_davis_data import two_objects, write_sequence

    late = two_objects(frames=3)
    late[0][:] = 0  # the objects enter in frame 1: nothing to propagate from, but crops from frames 1-2
    write_sequence(tmp_path, "late", late)
    write_sequence(tmp_path, "broken", two_objects(frames=2))
    (tmp_path / "Annotations" / "480p" / "broken" / "00001.png").write_bytes(b"not a png")
    data = load_retrieval_set(tmp_path, CFG)
    assert sorted(set(data.captions[i].split("/")[0] for i in range(len(data.captions)))) == ["late"]
    assert data.times.tolist() == [1, 1, 2, 2] and len(data.label_names) == 2
    (reason, [why]), = data.skipped.items()
    assert reason == "unreadable sequence" and why.startswith("broken: ") and "00001.png" in why


def test_davis_times_are_the_frame_numbers_of_a_subsampled_sequence(tmp_path):
    """A sequence keeping every 5th frame (00000, 00005, ...) had the times 0, 1, 2, 3: min_gap counted list
    positions, so crops 10 frames apart were not retrievable at min_gap 2."""
    make_davis(tmp_path, frames=4)
    for seq in ("alpha", "beta"):
        for kind in ("JPEGImages", "Annotations"):
            folder = tmp_path / kind / "480p" / seq
            for path in sorted(folder.iterdir(), reverse=True):  # 00003 -> 00015 before 00001 -> 00005
                path.rename(path.with_name(f"{int(path.stem) * 5:05d}{path.suffix}"))
    # beta's frames are named without numbers: their positions are their times
    for kind in ("JPEGImages", "Annotations"):
        folder = tmp_path / kind / "480p" / "beta"
        for path in sorted(folder.iterdir()):
            path.rename(path.with_name(f"f{path.stem}{path.suffix}"))
    data = load_retrieval_set(tmp_path, CFG)
    names = [caption.split(" ")[0] for caption in data.captions]  # "alpha/00005"
    expected = [int(n.split("/")[1]) if n.startswith("alpha/") else int(n.split("/")[1][1:]) // 5 for n in names]
    assert data.times.tolist() == expected
    assert data.times.tolist() == [t for t in (0, 5, 10, 15) for _ in (1, 2)] + [t for t in range(4) for _ in (1, 2)]


# ----------------------------------------------------------------------------------------------------------------
# tracks (pair dataset contract)


_PAIRS = [("v0", 0, "a.npy", 0, 0), ("v0", 0, "a.npy", 1, 30), ("v0", 1, "a.npy", 2, 20), ("v1", 0, "b.npy", 0, 30)]


def make_pairs(root: Path, size: int = 32, colours: bool = False, recs: list[tuple] = _PAIRS) -> np.ndarray:
    """Two shards; video v0 has track 0 (two pairs, frames 0-30 and 30-60: frame 30 is both) and track 1 (20-50),
    video v1 has track 0 (30-60). ``colours``: every patch of a track is its own flat colour plus noise. Returns all
    patches [N, 2, S, S, 3]. ``recs``: other pairs, each (video, track, shard, offset, start frame), a shard's
    offsets in order."""
    rng = np.random.default_rng(0)
    patches = rng.integers(0, 256, (len(recs), 2, size, size, 3), dtype=np.uint8)
    if colours:
        palette = {("v0", 0): (220, 30, 30), ("v0", 1): (30, 220, 30), ("v1", 0): (30, 30, 220)}
        for i, (vid, track, *_rest) in enumerate(recs):
            noise = rng.integers(-20, 21, (2, size, size, 3))
            patches[i] = np.clip(np.array(palette[vid, track]) + noise, 0, 255).astype(np.uint8)
    (root / "shards").mkdir(parents=True)
    for shard in dict.fromkeys(rec[2] for rec in recs):
        np.save(root / "shards" / shard, patches[[i for i, rec in enumerate(recs) if rec[2] == shard]])
    with open(root / "manifest.jsonl", "w") as fh:
        for vid, track, shard, off, start in recs:
            fh.write(json.dumps({"video": f"{vid}.mp4", "video_id": vid, "track_id": track, "start_frame": start,
                                 "end_frame": start + 30, "box_start": [0, 0, 8, 8], "box_end": [1, 1, 8, 8],
                                 "motion": 1.0, "shard": f"shards/{shard}", "offset": off}) + "\n")
    (root / "dataset.json").write_text(json.dumps({"pairs": len(recs), "patch_size": size, "track_length": 30}))
    return patches


def test_tracked_patches_are_items_once_labelled_by_track(tmp_path):
    patches = make_pairs(tmp_path)
    assert detect_kind(tmp_path) == "tracks"
    data = load_retrieval_set(tmp_path, CFG)
    # v0#0: frames 0, 30, 60 (frame 30 ends one pair and starts the next: one item); v0#1: 20, 50; v1#0: 30, 60
    assert [(data.label_names[int(l)], int(t)) for l, t in zip(data.labels, data.times)] == [
        ("v0#0", 0), ("v0#0", 30), ("v0#0", 60), ("v0#1", 20), ("v0#1", 50), ("v1#0", 30), ("v1#0", 60)]
    assert data.queries.tolist() == list(range(7)) and data.references is None
    assert np.array_equal(data.groups, data.labels) and data.min_gap == 30  # the dataset's track_length
    want = [patches[0, 0], patches[0, 1], patches[1, 1], patches[2, 0], patches[2, 1], patches[3, 0], patches[3, 1]]
    for i, patch in enumerate(want):
        assert np.array_equal(data.items[i][0].permute(1, 2, 0).numpy(), patch)
    assert data.captions[2] == "v0.mp4 track 0 frame 60"
    resized = load_retrieval_set(tmp_path, RetrievalConfig(image_size=48))
    assert resized.items[0][0].shape == (3, 48, 48)


def test_damaged_pair_dataset_errors(tmp_path):
    make_pairs(tmp_path)
    lines = (tmp_path / "manifest.jsonl").read_text().splitlines()
    rec = json.loads(lines[3])
    rec["offset"] = 5
    (tmp_path / "manifest.jsonl").write_text("\n".join(lines[:3] + [json.dumps(rec)]) + "\n")
    with pytest.raises(RetrievalDataError, match="b.npy: manifest offset 5 is outside"):
        load_retrieval_set(tmp_path, CFG)
    (tmp_path / "manifest.jsonl").write_text("{not json\n")
    with pytest.raises(RetrievalDataError, match="manifest.jsonl:1: malformed pair record"):
        load_retrieval_set(tmp_path, CFG)
    np.save(tmp_path / "shards" / "a.npy", np.zeros((3, 32, 32, 3), np.uint8))
    (tmp_path / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(RetrievalDataError, match=r"a.npy: pair shard must be uint8 \(n, 2, S, S, 3\)"):
        load_retrieval_set(tmp_path, CFG)


def test_a_manifest_offset_equal_to_the_shard_length_is_an_error(tmp_path):
    make_pairs(tmp_path)  # b.npy holds 1 pair: offset 1 is one past its last row
    lines = (tmp_path / "manifest.jsonl").read_text().splitlines()
    rec = json.loads(lines[3])
    assert rec["shard"] == "shards/b.npy" and len(np.load(tmp_path / "shards" / "b.npy", mmap_mode="r")) == 1
    rec["offset"] = 1
    (tmp_path / "manifest.jsonl").write_text("\n".join(lines[:3] + [json.dumps(rec)]) + "\n")
    with pytest.raises(RetrievalDataError, match="b.npy: manifest offset 1 is outside the shard's 1 pairs"):
        load_retrieval_set(tmp_path, CFG)


def _many_tracks(root: Path, tracks: int = 12):
    """A pair dataset of ``tracks`` tracks over two videos, track t chaining (t % 3) + 1 pairs (2 to 4 patches).
    Returns it read whole."""
    recs = []
    for t in range(tracks):
        recs += [(f"v{t % 2}", t, "a.npy", len(recs), 30 * k) for k in range(t % 3 + 1)]
    make_pairs(root, recs=recs)
    return load_retrieval_set(root, RetrievalConfig(image_size=32, num_workers=0, max_tracks=0))


def _patches_by_track(data) -> dict[str, set[str]]:
    """{track name: its patches' captions}."""
    return {name: {c for c, l in zip(data.captions, data.labels) if l == label}
            for label, name in data.label_names.items()}


def test_max_tracks_keeps_whole_tracks_drawn_with_the_seed(tmp_path, caplog):
    # the held-out tails of thousands of videos: the kNN and k-means grew with the square of their 10^5 patches
    every = _many_tracks(tmp_path)
    truth = _patches_by_track(every)
    assert len(truth) == 12 and len(every.labels) == 4 * 2 + 4 * 3 + 4 * 4
    cfg = RetrievalConfig(image_size=32, num_workers=0, max_tracks=5, seed=0)
    with caplog.at_level("INFO", logger="vidssl.eval.retrieval_data"):
        data = load_retrieval_set(tmp_path, cfg)
    kept = _patches_by_track(data)
    assert len(kept) == 5 and np.unique(data.labels).tolist() == list(range(5))
    assert all(patches == truth[name] for name, patches in kept.items())  # every kept track whole
    assert np.array_equal(data.groups, data.labels) and data.queries.tolist() == list(range(len(data.labels)))
    for i, caption in enumerate(data.captions):  # each item still reads its own patch, at its own frame
        j = every.captions.index(caption)
        assert data.items.refs[i] == every.items.refs[j] and data.times[i] == every.times[j]
    assert data.selection == (f"5 of the 12 tracks, drawn with eval.retrieval.seed=0 (eval.retrieval.max_tracks; "
                              f"{36 - len(data.labels)} patches of other tracks left out)")
    assert "kept 5 of 12 tracks" in caplog.text
    again = load_retrieval_set(tmp_path, cfg)
    assert _patches_by_track(again) == kept and again.captions == data.captions
    other = load_retrieval_set(tmp_path, RetrievalConfig(image_size=32, num_workers=0, max_tracks=5, seed=1))
    assert len(other.label_names) == 5 and set(_patches_by_track(other)) != set(kept)


@pytest.mark.parametrize("cap", [0, 12, None])  # None: the default (1000)
def test_max_tracks_at_or_above_the_tracks_keeps_them_all(tmp_path, caplog, cap):
    truth = _patches_by_track(_many_tracks(tmp_path))
    cfg = RetrievalConfig(image_size=32, num_workers=0) if cap is None else \
        RetrievalConfig(image_size=32, num_workers=0, max_tracks=cap)
    with caplog.at_level("INFO", logger="vidssl.eval.retrieval_data"):
        data = load_retrieval_set(tmp_path, cfg)
    assert _patches_by_track(data) == truth and data.selection is None and "kept" not in caplog.text


@pytest.mark.parametrize("value", [-1, 1])
def test_max_tracks_rejects_bad_values(value):
    from vidssl.errors import ConfigError

    with pytest.raises(ConfigError, match="'eval.retrieval.max_tracks': must be 0 \\(every track\\) or >= 2"):
        RetrievalConfig(max_tracks=value).validate()


def _cub_release(root: Path, classes: dict[int, int]) -> dict[str, int]:
    """A CUB-200-2011 release folder: ``classes[c]`` images of class id c, ids shuffled against the folders'
    order as in the release. Returns {images/<path>: class id}, the ground truth."""
    truth, image_lines, label_lines = {}, [], []
    image_id = 0
    for c, count in classes.items():
        for k in range(count):
            image_id += 1
            relative = f"{c:03d}.Bird_{c}/Bird_{c}_{k:04d}.jpg"
            write_rgb(root / "images" / relative, solid((c, 60 * k, 7)))
            truth[f"images/{relative}"] = c
            image_lines.append(f"{image_id} {relative}")
            label_lines.append(f"{image_id} {c}")
    order = np.random.default_rng(0).permutation(len(image_lines))  # the tables need not share an order
    (root / "images.txt").write_text("\n".join(image_lines[i] for i in order) + "\n")
    (root / "image_class_labels.txt").write_text("\n".join(label_lines) + "\n")
    (root / "classes.txt").write_text("".join(f"{c} {c:03d}.Bird_{c}\n" for c in classes))
    (root / "train_test_split.txt").write_text("")  # in the release, not read: the split is by class
    return truth


def test_cub_release_folder_reads_its_tables(tmp_path):
    cub = tmp_path / "CUB_200_2011"
    truth = _cub_release(cub, {1: 2, 100: 3, 101: 2, 150: 1, 200: 3})
    assert detect_kind(cub) == "images"
    data = load_retrieval_set(cub, CFG)  # default: classes 101-200, metric learning's test split
    got = dict(zip(data.captions, data.labels.tolist()))
    assert got == {path: c for path, c in truth.items() if c >= 101}
    assert data.label_names[150] == "150.Bird_150" and data.kind == "images"
    image = data.items[data.captions.index("images/150.Bird_150/Bird_150_0000.jpg")][0]
    assert np.abs(image[:, 0, 0].numpy().astype(int) - (150, 0, 7)).max() <= 3  # that file's pixels (JPEG)
    every = load_retrieval_set(cub, RetrievalConfig(image_size=32, num_workers=0, cub_classes=[1, 200]))
    assert dict(zip(every.captions, every.labels.tolist())) == truth
    (cub / "images" / "101.Bird_101" / "Bird_101_0001.jpg").unlink()  # a partial download: said, not fatal
    data = load_retrieval_set(cub, CFG)
    assert data.skipped == {"missing file": ["images/101.Bird_101/Bird_101_0001.jpg"]} and len(data.labels) == 5
    with pytest.raises(RetrievalDataError, match="no image of classes 3-99 found"):
        load_retrieval_set(cub, RetrievalConfig(image_size=32, num_workers=0, cub_classes=[3, 99]))
    labels = cub / "image_class_labels.txt"
    labels.write_text(labels.read_text().replace("\n3 100\n", "\n3 one hundred\n"))
    with pytest.raises(RetrievalDataError, match="image id 3 has class 'one hundred', not an integer id"):
        load_retrieval_set(cub, CFG)
    labels.write_text("1 1\n")
    with pytest.raises(RetrievalDataError, match=r"image id 2 \(001.Bird_1/Bird_1_0001.jpg, images.txt\) has no"):
        load_retrieval_set(cub, CFG)
    labels.write_text("1 1\n1 2\n")
    with pytest.raises(RetrievalDataError, match="image_class_labels.txt:2: id 1 is listed twice"):
        load_retrieval_set(cub, CFG)
    labels.write_text("1\n")
    with pytest.raises(RetrievalDataError, match=r"image_class_labels.txt:1: expected '<integer id> <value>'"):
        load_retrieval_set(cub, CFG)
    labels.unlink()
    with pytest.raises(RetrievalDataError, match="image_class_labels.txt: not found"):
        load_retrieval_set(cub, CFG)


@pytest.mark.parametrize("classes", [[0, 200], [150, 101], [101]])
def test_cub_classes_rejects_bad_ranges(classes):
    from vidssl.errors import ConfigError

    with pytest.raises(ConfigError, match="'eval.retrieval.cub_classes': must be \\[first, last\\]"):
        RetrievalConfig(cub_classes=classes).validate()
