"""show-pairs and pretrain's pairs_grid.png read the manifest a line at a time: memory that does not grow with it,
the draw of a list of every record, and a damaged line named as before."""
import json
import random
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from vidssl.errors import VidsslError

ROWS = 40  # rows per shard; the manifest's records point into them over and over
WINDOWS = 7  # records per tracker


def _record(i: int, lines: int, shards: int) -> dict:
    """Record ``i`` of ``lines``: videos (one shard each) in turn, each tracker's windows together, as mining writes
    them, with extras (boxes, motion) as big as mining's and ``row`` to tell the records apart."""
    v = i * shards // lines
    start = i % WINDOWS * 4
    return {"video": f"v{v}.mp4", "video_id": f"v{v}", "track_id": i // WINDOWS, "start_frame": start,
            "end_frame": start + 30, "box_start": [1.5, 2.5, 30.0, 40.0], "box_end": [3.5, 4.5, 31.0, 41.0],
            "motion": 1.2345678, "shard": f"shards/{v:05d}.npy", "offset": i % ROWS, "row": i}


def _pairs(root: Path, lines: int, shards: int = 3) -> Path:
    """A pair folder of ``shards`` shards of ROWS 8 px pairs and a manifest of ``lines`` records into them."""
    from train_utils import write_pairs

    data = np.random.default_rng(0).integers(0, 256, (shards * ROWS, 2, 8, 8, 3), np.uint8)
    write_pairs(root, data, [f"v{i // ROWS}" for i in range(shards * ROWS)], list(range(shards * ROWS)),
                shard_rows=ROWS)
    (root / "manifest.jsonl").write_text("".join(json.dumps(_record(i, lines, shards)) + "\n" for i in range(lines)))
    return root


def _peak_bytes(call) -> int:
    """Python's peak allocation while ``call()`` runs (an error it raises is its end, as the draw was made)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        try:
            call()
        except VidsslError:
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_the_pair_grid_s_memory_does_not_grow_with_the_manifest(tmp_path):
    """pair_grid kept every record as a dict (2.1 GB to draw 48 of 750k pairs): 10 times the records now take no
    more memory to draw 16 of them."""
    from tracking.show import pair_grid

    small, big = _pairs(tmp_path / "small", 2_000), _pairs(tmp_path / "big", 20_000)
    pair_grid(small, n=16)  # imports and caches first, outside the measure
    peaks = {d.name: _peak_bytes(lambda d=d: pair_grid(d, n=16, seed=1)) for d in (small, big)}
    assert peaks["big"] - peaks["small"] < 512 * 1024 and peaks["big"] < 4 * 1024 * 1024, peaks


def test_the_track_draw_s_memory_does_not_grow_with_the_manifest(tmp_path):
    """track_strips grouped every record by tracker; now it keeps the windows of the trackers it draws. Measured up
    to its next step (no videos_root in this dataset.json: an error after the draw)."""
    from tracking.show import track_strips

    small, big = _pairs(tmp_path / "small", 2_000), _pairs(tmp_path / "big", 20_000)
    with pytest.raises(VidsslError, match="cannot tell where the videos are"):
        track_strips(small, n=4)
    peaks = {d.name: _peak_bytes(lambda d=d: track_strips(d, n=4, seed=1)) for d in (small, big)}
    assert peaks["big"] - peaks["small"] < 512 * 1024 and peaks["big"] < 4 * 1024 * 1024, peaks


def _reference_draw(pairs: Path, n: int, seed: int, left_out: set[str] = frozenset()) -> list[int]:
    """The rows drawn as before, from a list of every record: rng(seed).choice of those outside ``left_out``."""
    records = [json.loads(line) for line in (pairs / "manifest.jsonl").read_text().splitlines() if line.strip()]
    drawable = [rec for rec in records if rec["shard"] not in left_out]
    picked = np.random.default_rng(seed).choice(len(drawable), size=min(n, len(drawable)), replace=False)
    return [drawable[i]["row"] for i in sorted(picked)]


def test_the_grid_draws_the_pairs_a_list_of_every_record_drew(tmp_path, caplog):
    """Streaming keeps the draw: a seed picks the rows it picked from the whole list, with the shards training
    skips left out (said in one warning), and from every shard when training would skip them all."""
    from tracking.show import sample_pairs

    pairs = _pairs(tmp_path / "pairs", 3_000)
    (pairs / "manifest.jsonl").write_text((pairs / "manifest.jsonl").read_text().replace("\n", "\n\n", 50))
    for seed in (0, 1, 7):
        for n in (1, 48, 5_000):
            drawn, problems, _, total = sample_pairs(pairs, n, seed)
            assert [rec["row"] for rec in drawn] == _reference_draw(pairs, n, seed), (seed, n)
            assert problems == {} and total == 3_000
    assert [r["row"] for r in sample_pairs(pairs, 48, 3)[0]] == [r["row"] for r in sample_pairs(pairs, 48, 3)[0]]
    (pairs / "shards" / "00001.npy").unlink()  # training skips the second video's shard
    with caplog.at_level("WARNING", logger="tracking.show"):
        drawn, problems, _, _ = sample_pairs(pairs, 48, 0)
    assert list(problems) == ["shards/00001.npy"] and "left out the 1000 pairs of 1 shard(s)" in caplog.text
    assert [rec["row"] for rec in drawn] == _reference_draw(pairs, 48, 0, {"shards/00001.npy"})
    for name in ("00000", "00002"):
        (pairs / "shards" / f"{name}.npy").unlink()
    assert [rec["row"] for rec in sample_pairs(pairs, 48, 0)[0]] == _reference_draw(pairs, 48, 0)


def test_the_tracks_drawn_are_the_seed_s_lowest_ranked_whatever_the_order(tmp_path):
    """The trackers drawn are the n of lowest seeded rank among all (one pass holds n trackers' windows, not a list
    of every tracker): the same for the records in any order, each one's middle window, every tracker drawn about
    as often over seeds."""
    from tracking.show import _sample_tracks, _track_rank

    records = [_record(i, 70, 2) for i in range(70)]  # 10 trackers of 7 windows, over 2 videos
    trackers = sorted({(r["video_id"], r["track_id"]) for r in records})
    shuffled = random.Random(0).sample(records, len(records))
    times = dict.fromkeys(trackers, 0)
    for seed in range(200):
        rows = _sample_tracks(iter(records), 3, seed)
        keys = [(r["video_id"], r["track_id"]) for r in rows]
        assert set(keys) == set(sorted(trackers, key=lambda k: _track_rank(seed, k))[:3]), seed
        assert keys == sorted(keys, key=lambda k: k[1])  # in manifest order
        assert all(r["start_frame"] == WINDOWS // 2 * 4 for r in rows)  # the middle of 7 windows
        assert set(keys) == {(r["video_id"], r["track_id"]) for r in _sample_tracks(shuffled, 3, seed)}
        for key in keys:
            times[key] += 1
    assert all(30 <= count <= 90 for count in times.values()), times  # 60 expected
    assert len(_sample_tracks(records, 20, 0)) == 10


def test_a_damaged_line_anywhere_is_named_by_file_and_line(tmp_path):
    """Every line is still checked, not only the drawn: a damaged line past every drawn one is named by its line
    number, counted as before (str.splitlines(): blank lines, \\f and \\u2028 count)."""
    from tracking.show import pair_grid, track_strips

    pairs = _pairs(tmp_path / "pairs", 3_000)
    manifest = pairs / "manifest.jsonl"
    lines = manifest.read_text().splitlines()
    lines[2] = lines[2] + "\x0c"  # splits the line in two: record 2, then an empty line
    lines[4] = lines[4].replace('"v0.mp4"', '"v0\u2028.mp4"')  # splits the line in two halves of JSON
    manifest.write_text("\n".join(lines) + "\n")
    for draw in (pair_grid, track_strips):
        with pytest.raises(VidsslError) as caught:
            draw(pairs, 1)
        assert str(caught.value).startswith(f"{manifest}:6: not a pair record (not JSON: ")  # record 4, first half
    lines[4] = lines[4].replace("\u2028", "")
    lines[2_990] = lines[2_990][:40]  # cut short
    manifest.write_text("\n".join(lines) + "\n")
    with pytest.raises(VidsslError) as caught:
        pair_grid(pairs, 1)
    assert str(caught.value) == (f"{manifest}:2992: not a pair record (not JSON: Unterminated string starting at: "
                                 f"line 1 column 39 (char 38)); rerun the `vidssl mine` that made {pairs} into it: "
                                 f"it rebuilds the manifest from its finished videos")
    manifest.write_text("\n \n")
    with pytest.raises(VidsslError, match="holds no pairs"):
        pair_grid(pairs, 1)


def test_lines_are_numbered_the_same_in_any_chunks(tmp_path):
    """The manifest is read in chunks: a line across two, or a break at a chunk's end, is numbered as
    str.splitlines() of the whole text numbered it."""
    from tracking.show import _pair_lines

    text = 'a\nbb\r\ncc\rd\x0ce\x85\n\nf\u2028g  \n \nh'
    path = tmp_path / "manifest.jsonl"
    path.write_bytes(text.encode("utf-8"))
    want = [(i, line) for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if line.strip()]
    assert want[-1] == (11, "h")
    for chunk_chars in (1, 2, 3, 5, 1 << 20):
        with open(path, encoding="utf-8") as fh:
            assert list(_pair_lines(fh, chunk_chars)) == want, chunk_chars
            assert list(_pair_lines(fh, chunk_chars)) == want, chunk_chars  # a second pass starts over
