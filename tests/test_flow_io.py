"""Flow file formats and dataset layouts: .flo and KITTI PNG round trips, malformed files, grey frames, layouts."""
from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest

from vidssl.errors import ConfigError, VidsslError
from vidssl.eval.flow.data import find_pairs, load_pair, select_pairs
from vidssl.eval.flow.io import (FlowFileError, known_flow, read_flo, read_image, read_kitti_flow, write_flo,
                                 write_kitti_flow)


def _flow(h=5, w=7, seed=0):
    return np.random.default_rng(seed).normal(0, 20, (h, w, 2)).astype(np.float32)


def test_flo_round_trip_is_bit_exact_and_follows_the_middlebury_layout(tmp_path):
    flow = _flow()
    path = tmp_path / "a.flo"
    write_flo(path, flow)
    raw = path.read_bytes()
    # independent decoding with struct: "PIEH", int32 width, int32 height, then u, v interleaved row by row
    assert raw[:4] == b"PIEH"
    assert struct.unpack("<ii", raw[4:12]) == (7, 5)
    assert struct.unpack("<2f", raw[12:20]) == (flow[0, 0, 0], flow[0, 0, 1])
    assert struct.unpack("<2f", raw[-8:]) == (flow[4, 6, 0], flow[4, 6, 1])
    assert len(raw) == 12 + 5 * 7 * 8
    back = read_flo(path)
    assert back.dtype == np.float32 and back.shape == (5, 7, 2)
    assert np.array_equal(back, flow)


@pytest.mark.parametrize("mutate, message", [
    (lambda raw: b"XXXX" + raw[4:], "magic number"),
    (lambda raw: raw[:-8], "truncated"),
    (lambda raw: raw[:30], "truncated"),
    (lambda raw: raw + b"\0" * 8, "size mismatch"),
    (lambda raw: raw[:4] + struct.pack("<ii", 7, 6) + raw[12:], "truncated"),
    (lambda raw: raw[:4] + struct.pack("<ii", -7, 5) + raw[12:], "corrupt .flo header"),
    (lambda raw: raw[:6], "shorter than the 12-byte header"),
    (lambda raw: b"", "shorter than the 12-byte header"),
])
def test_malformed_flo_raises_an_error_naming_the_file(tmp_path, mutate, message):
    good = tmp_path / "good.flo"
    write_flo(good, _flow())
    bad = tmp_path / "bad.flo"
    bad.write_bytes(mutate(good.read_bytes()))
    with pytest.raises(FlowFileError, match=message) as info:
        read_flo(bad)
    assert str(bad) in str(info.value)
    assert isinstance(info.value, VidsslError)


def test_a_wrong_magic_number_is_printed_exactly(tmp_path):
    """:g printed 202021.0 as "magic number 202021, expected 202021"."""
    path = tmp_path / "near.flo"
    write_flo(path, _flow())
    path.write_bytes(struct.pack("<f", 202021.0) + path.read_bytes()[4:])
    with pytest.raises(FlowFileError) as info:
        read_flo(path)
    message = str(info.value)
    assert "(magic number 202021.0)" in message and "expected b'PIEH' (202021.25)" in message
    assert repr(struct.pack("<f", 202021.0)) in message  # the bytes the file starts with


def test_missing_flo_is_a_clear_error(tmp_path):
    with pytest.raises(FlowFileError, match="cannot read") as info:
        read_flo(tmp_path / "nope.flo")
    assert "nope.flo" in str(info.value)


def test_unknown_flow_above_1e9_is_masked(tmp_path):
    flow = _flow()
    flow[1, 2] = [1.5e9, 0.0]
    flow[3, 4] = [0.0, np.inf]
    flow[0, 0] = [1e9, -1e9]  # exactly at the threshold still counts as known
    mask = known_flow(flow)
    expected = np.ones((5, 7), bool)
    expected[1, 2] = expected[3, 4] = False
    assert np.array_equal(mask, expected)


def test_kitti_png_round_trip_quantises_to_1_64_px_and_keeps_validity(tmp_path):
    flow = np.random.default_rng(1).uniform(-300, 300, (6, 9, 2))
    valid = np.random.default_rng(2).random((6, 9)) > 0.3
    path = tmp_path / "000000_10.png"
    write_kitti_flow(path, flow, valid)
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)  # BGR order: B = valid, G = v, R = u (KITTI devkit)
    assert raw.dtype == np.uint16 and raw.shape == (6, 9, 3)
    assert raw[0, 0, 2] == round(flow[0, 0, 0] * 64 + 32768)
    assert raw[0, 0, 1] == round(flow[0, 0, 1] * 64 + 32768)
    assert np.array_equal(raw[:, :, 0] > 0, valid)
    back, back_valid = read_kitti_flow(path)
    assert np.array_equal(back_valid, valid)
    assert np.abs(back[valid] - flow[valid]).max() <= 1 / 128 + 1e-9
    assert (back[~valid] == 0).all()


def test_kitti_flow_beyond_the_16_bit_range_is_written_invalid_not_clipped(tmp_path, caplog):
    """u = 600 was clipped to 511.98 and read back as valid ground truth."""
    import logging

    flow = np.zeros((2, 4, 2))
    flow[0] = [[600.0, 0.0], [0.0, -512.5], [-512.0, 3.0], [511.98, -7.25]]  # the last two fit
    flow[1] = [[np.nan, 0.0], [1.0, np.inf], [2.0, 2.0], [-3.0, 4.0]]
    valid = np.ones((2, 4), bool)
    path = tmp_path / "000000_10.png"
    with caplog.at_level(logging.WARNING):
        write_kitti_flow(path, flow, valid)
    back, back_valid = read_kitti_flow(path)
    # the format stores round(x * 64) + 2**15 in 0..65535: x in [-512, 65535 / 64 - 512], checked one by one here
    fits = np.array([[all(-512 <= x <= 65535 / 64 - 512 for x in px) for px in row] for row in flow])
    assert fits.tolist() == [[False, False, True, True], [False, False, True, True]]
    assert np.array_equal(back_valid, fits)
    assert np.abs(back[fits] - flow[fits]).max() <= 1 / 128
    assert (back[~fits] == 0).all()
    assert "4 pixel(s)" in caplog.text and "000000_10.png" in caplog.text


def test_kitti_reader_rejects_an_8_bit_png(tmp_path):
    path = tmp_path / "x.png"
    cv2.imwrite(str(path), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(FlowFileError, match="16-bit"):
        read_kitti_flow(path)


def test_grey_and_16_bit_frames_read_as_rgb_uint8(tmp_path):
    grey = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    cv2.imwrite(str(tmp_path / "g.png"), grey)
    cv2.imwrite(str(tmp_path / "g16.png"), grey.astype(np.uint16) * 257)
    for name in ("g.png", "g16.png"):
        image = read_image(tmp_path / name)
        assert image.shape == (6, 8, 3) and image.dtype == np.uint8
        for c in range(3):
            assert np.array_equal(image[:, :, c], grey)
    colour = np.zeros((2, 2, 3), np.uint8)
    colour[..., 2] = 200  # red in OpenCV's BGR
    cv2.imwrite(str(tmp_path / "c.png"), colour)
    assert read_image(tmp_path / "c.png")[0, 0].tolist() == [200, 0, 0]
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(FlowFileError, match="text.png"):
        read_image(tmp_path / "text.png")


def test_16_bit_frames_read_as_the_nearest_8_bit_level(tmp_path):
    """The other test's levels are all multiples of 257, which `/ 256` (or dropping the rounding) reads alike."""
    values = np.concatenate([[0, 1, 128, 129, 200, 385, 386, 32767, 32768, 65000, 65407, 65408, 65535],
                             np.random.default_rng(0).integers(0, 65536, 243)]).astype(np.uint16).reshape(16, 16)
    cv2.imwrite(str(tmp_path / "g16.png"), values)
    # naive reference: the 8-bit level k whose 16-bit value 257 k is nearest (never a tie: 257 is odd)
    levels = np.arange(256) * 257
    nearest = np.abs(values.astype(np.int64)[..., None] - levels).argmin(axis=-1)
    assert nearest[0, 2] == 0 and nearest[0, 4] == 1 and nearest[0, 9] == 253  # 128, 200, 65000
    image = read_image(tmp_path / "g16.png")
    for c in range(3):
        assert np.array_equal(image[:, :, c], nearest)


def test_a_jpeg_cut_short_is_an_error_naming_the_file(tmp_path):
    """OpenCV decodes a cut-short JPEG, the missing rows flat grey, and said so only on stderr: the pair was scored
    against ground truth on a half-grey frame."""
    rng = np.random.default_rng(0)
    photo = cv2.imencode(".jpg", rng.integers(0, 255, (64, 96, 3), dtype=np.uint8))[1].tobytes()
    (tmp_path / "cut.jpg").write_bytes(photo[: len(photo) // 2])
    assert cv2.imread(str(tmp_path / "cut.jpg")) is not None  # what made it look fine
    with pytest.raises(FlowFileError, match=r"cut\.jpg: JPEG data cut short; replace the file"):
        read_image(tmp_path / "cut.jpg")
    (tmp_path / "cut.png").write_bytes(photo[: len(photo) // 2])  # by its content, not its name
    with pytest.raises(FlowFileError, match="JPEG data cut short"):
        read_image(tmp_path / "cut.png")
    # data a phone appends after the image (motion photos) is no damage
    (tmp_path / "whole.jpg").write_bytes(photo + b"MotionPhoto_Data" + bytes(range(256)) * 4)
    assert np.array_equal(read_image(tmp_path / "whole.jpg"),
                          cv2.cvtColor(cv2.imdecode(np.frombuffer(photo, np.uint8), cv2.IMREAD_COLOR),
                                       cv2.COLOR_BGR2RGB))


# ----------------------------------------------------------------------------------------------------------------
# layouts


def _frames(directory, names, shape=(8, 12), grey=False):
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in names:
        image = rng.integers(0, 255, shape if grey else (*shape, 3), dtype=np.uint8)
        cv2.imwrite(str(directory / name), image)


def test_middlebury_layout_with_grey_frames(tmp_path):
    _frames(tmp_path / "other-data-gray" / "Dimetrodon", ["frame10.png", "frame11.png"], grey=True)
    flow = _flow(8, 12)
    flow[0, 0] = [1e10, 1e10]
    write_flo(tmp_path / "other-gt-flow" / "Dimetrodon" / "flow10.flo", flow)
    (pair,) = find_pairs(tmp_path)
    assert pair.name == "other-data-gray/Dimetrodon/frame10" and pair.dataset == "Middlebury"
    sample = load_pair(pair)
    assert sample.image1.shape == (8, 12, 3)
    assert sample.occluded is None
    assert not sample.valid[0, 0] and sample.valid.sum() == 8 * 12 - 1
    assert np.array_equal(sample.flow[1:], flow[1:])


def test_sintel_folders_take_their_pass_from_a_word_of_the_path(tmp_path):
    for seq in ("clean/alley_1", "sintel_final_ambush_2", "cave_2", "clean_final_mix"):
        _frames(tmp_path / seq, ["frame_0001.png", "frame_0002.png"])
        write_flo(tmp_path / seq / "gt" / "frame_0001.flo", _flow(8, 12))
    found = {p.name.rsplit("/", 1)[0]: p.dataset for p in find_pairs(tmp_path)}
    assert found == {"clean/alley_1": "Sintel clean", "sintel_final_ambush_2": "Sintel final", "cave_2": "Sintel",
                     "clean_final_mix": "Sintel"}  # words, not substrings ("cleanup"); both words: unknown


def test_sintel_release_layout_gives_both_passes_with_masks(tmp_path):
    training = tmp_path / "training"
    for render_pass in ("clean", "final"):
        _frames(training / render_pass / "alley_1", ["frame_0009.png", "frame_0010.png"])
    write_flo(training / "flow" / "alley_1" / "frame_0009.flo", _flow(8, 12))
    occ = np.zeros((8, 12), np.uint8)
    occ[:, :3] = 255
    invalid = np.zeros((8, 12), np.uint8)
    invalid[0] = 255
    (training / "occlusions" / "alley_1").mkdir(parents=True)
    (training / "invalid" / "alley_1").mkdir(parents=True)
    cv2.imwrite(str(training / "occlusions" / "alley_1" / "frame_0009.png"), occ)
    cv2.imwrite(str(training / "invalid" / "alley_1" / "frame_0009.png"), invalid)
    pairs = find_pairs(tmp_path)
    assert [p.name for p in pairs] == ["training/clean/alley_1/frame_0009", "training/final/alley_1/frame_0009"]
    assert [p.dataset for p in pairs] == ["Sintel clean", "Sintel final"]  # the passes are scored apart too
    assert pairs[0].frame2.name == "frame_0010.png"
    sample = load_pair(pairs[1])
    assert np.array_equal(sample.occluded, occ > 0)
    assert np.array_equal(sample.valid, invalid == 0)


def test_kitti_layout_splits_occluded_pixels_from_flow_noc(tmp_path):
    training = tmp_path / "training"
    _frames(training / "image_2", ["000003_10.png", "000003_11.png"])
    flow = _flow(8, 12)
    occ_valid = np.ones((8, 12), bool)
    occ_valid[7] = False  # no ground truth on the last row
    noc_valid = occ_valid.copy()
    noc_valid[:, :4] = False  # the first columns are occluded in frame 2
    write_kitti_flow(training / "flow_occ" / "000003_10.png", flow, occ_valid)
    write_kitti_flow(training / "flow_noc" / "000003_10.png", flow, noc_valid)
    (pair,) = find_pairs(tmp_path)
    assert pair.name == "training/image_2/000003_10" and pair.frame2.name == "000003_11.png"
    assert pair.dataset == "KITTI"
    sample = load_pair(pair)
    assert np.array_equal(sample.valid, occ_valid)
    assert np.array_equal(sample.occluded, occ_valid & ~noc_valid)


def test_odd_files_beside_the_ground_truth(tmp_path, caplog):
    import logging

    # a stray copy without a frame number is skipped with a warning (was a ValueError that ended the evaluation)
    _frames(tmp_path / "seq", ["frame_0001.png", "frame_0002.png"])
    write_flo(tmp_path / "seq" / "gt" / "frame_0001.flo", _flow(8, 12))
    write_flo(tmp_path / "seq" / "gt" / "frame_0001_old.flo", _flow(8, 12))
    with caplog.at_level(logging.WARNING):
        pairs = find_pairs(tmp_path)
    assert [p.name for p in pairs] == ["seq/frame_0001"] and "frame_0001_old.flo" in caplog.text
    # an occlusion mask with an opaque alpha channel: only the colour channels count (alpha set every pixel)
    occ = np.zeros((8, 12), np.uint8)
    occ[:, :3] = 255
    (tmp_path / "seq" / "gt" / "occlusions").mkdir()
    cv2.imwrite(str(tmp_path / "seq" / "gt" / "occlusions" / "frame_0001.png"),
                np.dstack([occ, occ, occ, np.full_like(occ, 255)]))
    (pair,) = find_pairs(tmp_path)
    assert np.array_equal(load_pair(pair).occluded, occ > 0)
    # KITTI flow_noc of another size than flow_occ: a FlowFileError (the run skips the pair), not a numpy error
    training = tmp_path / "kitti" / "training"
    _frames(training / "image_2", ["000003_10.png", "000003_11.png"])
    write_kitti_flow(training / "flow_occ" / "000003_10.png", _flow(8, 12))
    write_kitti_flow(training / "flow_noc" / "000003_10.png", _flow(6, 12))
    (pair,) = find_pairs(tmp_path / "kitti")
    with pytest.raises(FlowFileError, match=r"flow_noc/000003_10.png: is 12x6 but the ground truth"):
        load_pair(pair)


def test_frames_and_masks_with_an_upper_case_extension_are_found(tmp_path):
    """frame_0002.PNG where frame_0002.png was expected: "cannot read as an image (missing...)" on a case-sensitive
    file system, though the file was there."""
    _frames(tmp_path / "seq", ["frame_0001.PNG", "frame_0002.PNG"])
    write_flo(tmp_path / "seq" / "gt" / "frame_0001.flo", _flow(8, 12))
    occ = np.zeros((8, 12), np.uint8)
    occ[2:5, 3:9] = 255
    (tmp_path / "seq" / "gt" / "occlusions").mkdir()
    cv2.imwrite(str(tmp_path / "seq" / "gt" / "occlusions" / "frame_0001.PNG"), occ)
    (pair,) = find_pairs(tmp_path)
    assert pair.name == "seq/frame_0001"
    sample = load_pair(pair)
    written = [cv2.cvtColor(cv2.imread(str(tmp_path / "seq" / n)), cv2.COLOR_BGR2RGB)
               for n in ("frame_0001.PNG", "frame_0002.PNG")]
    assert np.array_equal(sample.image1, written[0]) and np.array_equal(sample.image2, written[1])
    assert np.array_equal(sample.occluded, occ > 0)


def test_ground_truth_with_an_upper_case_extension_is_found(tmp_path):
    """gt/frame_0001.FLO, other-gt-flow/.../flow10.FLO and KITTI's flow_occ/000000_10.PNG: no pair found ("no flow
    pairs with ground truth") on a case-sensitive file system, though every file was there; a name present in
    both cases is one pair, read from the lower-case file."""
    sintel, truth = tmp_path / "sintel" / "seq", _flow(8, 12)
    _frames(sintel, ["frame_0001.png", "frame_0002.png"])
    write_flo(sintel / "gt" / "frame_0001.FLO", truth)
    middlebury = tmp_path / "middlebury"
    _frames(middlebury / "other-data" / "Dime", ["frame10.png", "frame11.png"])
    write_flo(middlebury / "other-gt-flow" / "Dime" / "flow10.FLO", truth + 1)
    training = tmp_path / "kitti" / "training"
    _frames(training / "image_2", ["000003_10.png", "000003_11.png"])
    write_kitti_flow(training / "flow_occ" / "000003_10.PNG", truth + 2)
    for folder, shift in (("sintel", 0), ("middlebury", 1), ("kitti", 2)):
        (pair,) = find_pairs(tmp_path / folder)
        assert np.allclose(load_pair(pair).flow, truth + shift, atol=1 / 64)
    write_flo(sintel / "gt" / "frame_0001.flo", truth - 1)
    (pair,) = find_pairs(tmp_path / "sintel")
    assert pair.flow.name == "frame_0001.flo" and np.allclose(load_pair(pair).flow, truth - 1)


def test_missing_second_frame_and_size_mismatch_name_the_file(tmp_path):
    _frames(tmp_path / "seq", ["frame_0001.png"])
    write_flo(tmp_path / "seq" / "gt" / "frame_0001.flo", _flow(8, 12))
    (pair,) = find_pairs(tmp_path)
    with pytest.raises(FlowFileError, match="frame_0002.png"):
        load_pair(pair)
    _frames(tmp_path / "seq", ["frame_0002.png"], shape=(9, 12))
    with pytest.raises(FlowFileError, match="frame_0002.png.*12x9"):
        load_pair(pair)


def test_no_pairs_or_no_folder_is_a_user_error(tmp_path):
    with pytest.raises(VidsslError, match="no flow pairs"):
        find_pairs(tmp_path)
    with pytest.raises(VidsslError, match="not found"):
        find_pairs(tmp_path / "missing")


def _sintel_release(root, sequences=("alley_1", "ambush_2")):
    training = root / "training"
    for seq in sequences:
        for render_pass in ("clean", "final"):
            _frames(training / render_pass / seq, ["frame_0001.png", "frame_0002.png", "frame_0003.png"])
        for frame in ("frame_0001", "frame_0002"):
            write_flo(training / "flow" / seq / f"{frame}.flo", _flow(8, 12))
    return training


def test_pairs_are_chosen_by_glob_patterns_over_their_names(tmp_path):
    _sintel_release(tmp_path)
    pairs = find_pairs(tmp_path)
    names = [p.name for p in pairs]
    assert len(names) == 8 and select_pairs(pairs, [], tmp_path) == pairs  # no pattern: all of them

    def chosen(*patterns):
        return [p.name for p in select_pairs(pairs, list(patterns), tmp_path)]

    assert chosen("training/clean/*") == [n for n in names if n.startswith("training/clean/")]
    assert chosen("*/alley_1/*") == [n for n in names if "/alley_1/" in n] and len(chosen("*/alley_1/*")) == 4
    # several patterns: the union, in the pairs' order, each pair once
    assert chosen("*/frame_0002", "training/final/ambush_2/*") == [
        "training/clean/alley_1/frame_0002", "training/final/alley_1/frame_0002", "training/final/ambush_2/frame_0001",
        "training/clean/ambush_2/frame_0002", "training/final/ambush_2/frame_0002"]
    with pytest.raises(ConfigError) as info:  # a pattern matching nothing is a mistake, not "evaluate nothing"
        select_pairs(pairs, ["*/alley_1/*", "clean/alley_1/*", "*.png"], tmp_path)
    message = str(info.value)
    assert "eval.flow.pairs" in message and "'clean/alley_1/*', '*.png' matches none of the 8 pairs" in message
    assert "training/clean/alley_1/frame_0001" in message  # what names look like
    assert "'*/alley_1/*'" not in message


def test_a_folder_inside_a_release_is_an_error_naming_the_folder_to_pass(tmp_path):
    """--data MPI-Sintel-complete/training/clean said "no flow pairs ... expected one of" without saying that the
    folder above holds the pairs."""
    training = _sintel_release(tmp_path / "MPI-Sintel-complete")
    for inner in ("clean", "final", "flow"):
        with pytest.raises(VidsslError, match="is one part of a Sintel release") as info:
            find_pairs(training / inner)
        assert f"pass --data {training.parent})" in str(info.value)
    # the release folder it names holds the pairs, named as the documented eval.flow.pairs patterns expect
    assert [p.name for p in find_pairs(training.parent)][:1] == ["training/clean/alley_1/frame_0001"]
    kitti = tmp_path / "kitti" / "training"
    _frames(kitti / "image_2", ["000003_10.png", "000003_11.png"])
    write_kitti_flow(kitti / "flow_occ" / "000003_10.png", _flow(8, 12))
    with pytest.raises(VidsslError, match=f"image_2/ is one part of a KITTI release.*--data {kitti.parent}\\)"):
        find_pairs(kitti / "image_2")
    # the frames without their ground truth (training/flow/ not downloaded): said so, whichever folder is passed
    frames_only = tmp_path / "frames_only" / "training"
    _frames(frames_only / "clean" / "alley_1", ["frame_0001.png", "frame_0002.png"])
    for folder in (frames_only, frames_only / "clean"):
        with pytest.raises(VidsslError, match=f"{frames_only} has Sintel frames but no flow/ beside them"):
            find_pairs(folder)
    # a folder merely named flow (an empty $VIDSSL_DATA/flow) gets no such hint
    (tmp_path / "data" / "flow").mkdir(parents=True)
    with pytest.raises(VidsslError, match="no flow pairs") as info:
        find_pairs(tmp_path / "data" / "flow")
    assert "folder above" not in str(info.value) and "beside them" not in str(info.value)


def test_real_sintel_pairs(data_dir):
    pairs = find_pairs(data_dir / "flow")
    assert [p.name for p in pairs] == ["sintel_clean_alley_1/frame_0002", "sintel_final_ambush_2/frame_0020"]
    assert [p.dataset for p in pairs] == ["Sintel clean", "Sintel final"]  # the pass, read off the folder names
    sample = load_pair(pairs[0])
    assert sample.image1.shape == sample.image2.shape == (436, 1024, 3)
    assert sample.flow.shape == (436, 1024, 2)
    # PROVENANCE.md: alley_1 u in [-10.64, 2.19], v in [-3.52, 4.63]; Sintel masks are sparse
    assert sample.flow[..., 0].min() == pytest.approx(-10.64, abs=0.01)
    assert sample.flow[..., 1].max() == pytest.approx(4.63, abs=0.01)
    assert 0 < sample.occluded.mean() < 0.1 and 0.999 < sample.valid.mean() < 1
