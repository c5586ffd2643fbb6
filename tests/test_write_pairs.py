"""vidssl.data.write_pair_dataset: pairs made elsewhere read back exactly by the trainer's reader, grouped as given;
every bad argument refused in one line; `vidssl train` and `vidssl export` run on what it writes."""
from __future__ import annotations

import json

import numpy as np
import pytest

from vidssl.config import load_config
from vidssl.data import PairDataError, PairPatches, open_pairs, write_pair_dataset
from vidssl.errors import VidsslError


def _pairs(n: int = 48, width: int = 2, size: int = 40, seed: int = 0):
    """``n`` random pairs of 4 videos, interleaved; 2 pairs a track (track ids repeat across videos)."""
    rng = np.random.default_rng(seed)
    patches = rng.integers(0, 256, size=(n, width, size, size, 3), dtype=np.uint8)
    videos = [f"../up/clip {i % 4}.mp4" for i in range(n)]  # no safe file-name stem: it names no file
    tracks = [(i // 8) % 6 for i in range(n)]
    return patches, videos, tracks


@pytest.mark.parametrize("width, frames", [(2, False), (3, True)])
def test_round_trip_through_the_reader(tmp_path, width, frames):
    patches, videos, tracks = _pairs(n=30, width=width)
    tracks[5] = 2**40  # any int64
    given = np.stack([np.arange(30), np.arange(30) + 10], axis=1) if frames else None
    root = write_pair_dataset(tmp_path / "pairs", patches, videos, np.asarray(tracks), frames=given, shard_rows=7)
    pairs = open_pairs(root)
    assert len(pairs) == 30 and pairs.patch_size == 40 and pairs.has_background == (width == 3)
    assert len(pairs.shards) == 5 and pairs.skipped == {}
    assert pairs.video_ids == [f"../up/clip {v}.mp4" for v in range(4)]
    assert [pairs.video_ids[v] for v in pairs.video] == videos
    keys = list(zip(videos, tracks))
    for i in range(30):  # one track code per (video, track) given, and only that
        assert all((pairs.track[i] == pairs.track[j]) == (keys[i] == keys[j]) for j in range(30))
    data = PairPatches(pairs, load_config().data, background=width == 3)
    for i in range(30):
        assert np.array_equal(data.raw(i), patches[i])
    meta = json.loads((root / "dataset.json").read_text())
    assert meta["source"] == "write_pair_dataset" and meta["pairs"] == 30 and meta["complete"] is True
    # what a run records of mining: where the pairs came from, no mine settings
    assert pairs.mining == {"manifest_sha256": meta["manifest_sha256"], "source": "write_pair_dataset"}
    records = [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]
    assert [(r["video_id"], r["track_id"]) for r in records] == keys
    assert all(("start_frame" in r) == frames for r in records)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()) == [
        "pairs/dataset.json", "pairs/manifest.jsonl", *(f"pairs/shards/{k:05d}.npy" for k in range(5))]
    if frames:  # what `vidssl show-pairs` draws: pairs captioned with their frame gap
        from tracking.show import pair_grid

        assert pair_grid(root, n=4).ndim == 3


def _refused(tmp_path, message, **changes):
    patches, videos, tracks = _pairs(n=6)
    args = {"patches": patches, "video_ids": videos, "track_ids": tracks, **changes}
    with pytest.raises(PairDataError) as e:
        write_pair_dataset(tmp_path / "pairs", args.pop("patches"), args.pop("video_ids"), args.pop("track_ids"),
                           **args)
    assert message in str(e.value), str(e.value)
    assert not (tmp_path / "pairs").exists()  # refused before anything is written


@pytest.mark.parametrize("change, message", [
    ({"patches": np.zeros((6, 2, 8, 8, 3), np.float32)}, "patches: float32 (6, 2, 8, 8, 3), expected uint8 [N, 2, S"),
    ({"patches": np.zeros((6, 2, 8, 9, 3), np.uint8)}, "(6, 2, 8, 9, 3), expected uint8 [N, 2, S, S, 3]"),
    ({"patches": np.zeros((6, 4, 8, 8, 3), np.uint8)}, "or [N, 3, S, S, 3] (and a background patch)"),
    ({"patches": np.zeros((6, 2, 8, 8), np.uint8)}, "uint8 (6, 2, 8, 8), expected"),
    ({"patches": np.zeros((6, 2, 8, 8, 1), np.uint8)}, "(6, 2, 8, 8, 1), expected"),
    ({"patches": np.zeros((0, 2, 8, 8, 3), np.uint8), "video_ids": [], "track_ids": []}, "patches: no pairs (N = 0)"),
    ({"video_ids": ["a"] * 5}, "video_ids and track_ids: 5 and 6 entries for 6 pairs"),
    ({"track_ids": [1] * 7}, "video_ids and track_ids: 6 and 7 entries for 6 pairs"),
    ({"track_ids": 3}, "video_ids and track_ids: 6 and 1 entries for 6 pairs"),
    ({"video_ids": ["a", "b", "", "a", "b", "a"]}, "video_ids[2] is '': each must be a non-empty string"),
    ({"video_ids": ["a", "b", 7, "a", "b", "a"]}, "video_ids[2] is 7: each must be a non-empty string"),
    ({"track_ids": [0.5] * 6}, "track_ids: float64, expected integers"),
    ({"track_ids": [True] * 6}, "track_ids: bool, expected integers"),
    ({"frames": np.zeros((6, 3), int)}, "frames: int64 (6, 3), expected integers >= 0 of shape (6, 2)"),
    ({"frames": -np.ones((6, 2), int)}, "expected integers >= 0 of shape (6, 2)"),
    ({"frames": np.zeros((6, 2))}, "frames: float64 (6, 2)"),
    ({"shard_rows": 0}, "shard_rows: 0, expected an integer >= 1"),
    ({"shard_rows": True}, "shard_rows: True, expected an integer >= 1"),
])
def test_bad_arguments_are_refused_naming_the_argument(tmp_path, change, message):
    _refused(tmp_path, message, **change)


@pytest.mark.parametrize("existing", ["dataset.json", "manifest.jsonl", "mine.json"])
def test_a_folder_holding_a_dataset_is_never_overwritten(tmp_path, existing):
    root = tmp_path / "pairs"
    root.mkdir()
    (root / existing).write_text("{}")
    patches, videos, tracks = _pairs(n=6)
    with pytest.raises(PairDataError, match=rf"pairs: holds a pair dataset already \({existing}\); write to a new "
                                            r"folder, or delete .*pairs first"):
        write_pair_dataset(root, patches, videos, tracks)
    assert sorted(p.name for p in root.iterdir()) == [existing] and (root / existing).read_text() == "{}"
    (tmp_path / "file").write_text("")
    with pytest.raises(PairDataError, match="file: a file, not a folder; choose a new folder"):
        write_pair_dataset(tmp_path / "file", patches, videos, tracks)


def test_a_write_killed_before_dataset_json_leaves_no_dataset(tmp_path, monkeypatch):
    import vidssl.data.write as write

    def killed(*_, **__):
        raise KeyboardInterrupt

    monkeypatch.setattr(write, "atomic_write_json", killed)
    root = tmp_path / "pairs"
    patches, videos, tracks = _pairs(n=6)
    with pytest.raises(KeyboardInterrupt):
        write_pair_dataset(root, patches, videos, tracks)
    with pytest.raises(PairDataError, match="dataset.json is missing"):
        open_pairs(root)
    monkeypatch.undo()
    with pytest.raises(PairDataError, match=r"holds a pair dataset already \(manifest.jsonl\)"):
        write_pair_dataset(root, patches, videos, tracks)


@pytest.mark.parametrize("width", [2, 3])
def test_vidssl_train_and_export_run_on_written_pairs(tmp_path, width):
    """2-patch pairs with the background settings off, 3-patch ones with the defaults (backgrounds on)."""
    from vidssl.cli import main

    patches, videos, tracks = _pairs(n=48, width=width)
    pairs = write_pair_dataset(tmp_path / "pairs", patches, videos, tracks)
    settings = ["data.patch_size=32", "data.num_workers=0", "model.width=8", "model.embed_dim=32",
                "train.batch_pairs=12", "train.steps=3", "train.budget_minutes=null", "train.warmup_steps=0",
                "train.image_every=0", "train.threads=1"]
    if width == 2:
        settings += ["miner.background_negatives=false", "loss.cycle_background=false"]
    sets = [a for s in settings for a in ("--set", s)]
    run = tmp_path / "run"
    assert main(["-q", "train", str(pairs), "--out", str(run), *sets]) == 0
    stats = json.loads((run / "stats.json").read_text())
    assert stats["step"] == 3 and stats["stopped"] == "done" and stats["pairs"] == 48
    assert sorted(stats["mining"]) == ["manifest_sha256", "source"] and (run / "checkpoint.pt").is_file()
    assert main(["-q", "export", str(run), "--out", str(tmp_path / "backbone.pt")]) == 0
    card = json.loads((tmp_path / "model_card.json").read_text())
    assert (tmp_path / "backbone.pt").is_file() and card["training"]["steps"] == 3


def test_a_broken_written_dataset_is_told_to_write_again_not_to_mine(tmp_path, caplog):
    """The reader's advice for mined pairs (rerun `vidssl mine`, `vidssl mine --merge`) is no fix for pairs no
    `vidssl mine` made."""
    import logging

    patches, videos, tracks = _pairs(n=12)
    root = write_pair_dataset(tmp_path / "pairs", patches, videos, tracks, shard_rows=6)
    shard = root / "shards" / "00001.npy"
    shard.write_bytes(shard.read_bytes()[:-10])  # a copy cut short
    with caplog.at_level(logging.WARNING):
        assert len(open_pairs(root)) == 6
    assert "write the pairs again with vidssl.data.write_pair_dataset, into a new folder" in caplog.text
    assert "vidssl mine" not in caplog.text
    first = root / "shards" / "00000.npy"
    first.write_bytes(first.read_bytes()[:-10])
    with pytest.raises(PairDataError, match=r"none of the 12 pairs is readable .*: write the pairs again with "
                                            r"vidssl.data.write_pair_dataset") as e:
        open_pairs(root)
    assert "vidssl mine" not in str(e.value)
    manifest = root / "manifest.jsonl"
    manifest.write_text(manifest.read_text().replace('"track_id": 0', '"track_id": 9'))
    with pytest.raises(PairDataError, match=r"is not the manifest .* describes .*: write the pairs again") as e:
        open_pairs(root, retries=0)
    assert "vidssl mine" not in str(e.value)


@pytest.mark.parametrize("written", [True, False])
def test_a_shard_damaged_after_indexing_names_the_fix_for_how_the_pairs_were_made(tmp_path, written):
    """A shard cut short or deleted after the pairs were indexed fails the read itself (training's loader and the
    track-retrieval reader). For pairs no `vidssl mine` made the advice is to write them again (it was to rerun
    `vidssl mine`); a folder that says it was mined keeps that advice."""
    from vidssl.eval.config import RetrievalConfig
    from vidssl.eval.retrieval_data import load_track_set
    from vidssl.train_config import DataConfig

    patches, videos, tracks = _pairs(n=12)
    root = write_pair_dataset(tmp_path / "pairs", patches, videos, tracks, shard_rows=6,
                              frames=np.stack([np.arange(12), np.arange(12) + 40], axis=1))
    if not written:  # as `vidssl mine` leaves dataset.json: no source key
        meta = json.loads((root / "dataset.json").read_text())
        del meta["source"]
        (root / "dataset.json").write_text(json.dumps(meta))
    ds = PairPatches(open_pairs(root), DataConfig(patch_size=40, crop_min=1.0, flip=False))
    tracks_set = load_track_set(root, RetrievalConfig(image_size=40))
    shard = root / "shards" / "00001.npy"
    ds.raw(6), tracks_set.items[12]  # each reader has parsed the shard's header: the damage comes after
    shard.write_bytes(shard.read_bytes()[:-10])
    for read in (lambda: ds.raw(11), lambda: tracks_set.items[23]):
        with pytest.raises(VidsslError, match="00001.npy: ends before row 5") as e:
            read()
        assert ("write the pairs again with vidssl.data.write_pair_dataset" in str(e.value)) is written, e.value
        assert ("rerun the `vidssl mine`" in str(e.value)) is not written, e.value
    shard.unlink()
    for read in (lambda: ds.raw(6), lambda: tracks_set.items[12]):
        with pytest.raises(VidsslError, match="00001.npy: gone since the pairs were read") as e:
            read()
        assert ("write the pairs again with vidssl.data.write_pair_dataset" in str(e.value)) is written, e.value


def test_show_pairs_on_written_pairs_draws_them_or_says_what_to_write(tmp_path, capsys):
    """Without frames the grid has no caption to draw, and --tracks no source video: both refused with the fix for
    pairs no `vidssl mine` made (its advice, rerun `vidssl mine`, was the only one given)."""
    from vidssl.cli import main

    patches, videos, tracks = _pairs(n=8, width=3)
    frameless = write_pair_dataset(tmp_path / "frameless", patches, videos, tracks)
    assert main(["show-pairs", str(frameless), "--out", str(tmp_path / "grid.png")]) != 0
    err = capsys.readouterr().err
    assert "written by vidssl.data.write_pair_dataset without frames" in err and "frames=[N, 2]" in err, err
    assert "vidssl mine" not in err and not (tmp_path / "grid.png").exists()
    framed = write_pair_dataset(tmp_path / "framed", patches, videos, tracks, frames=np.tile([[3, 33]], (8, 1)))
    assert main(["show-pairs", str(framed), "--out", str(tmp_path / "grid.png")]) == 0
    assert (tmp_path / "grid.png").stat().st_size > 0
    assert main(["show-pairs", str(framed), "--tracks", "--out", str(tmp_path / "tracks.png")]) != 0
    err = capsys.readouterr().err
    assert "the tracked boxes over the source videos that --tracks draws are recorded only by `vidssl mine`" in err
    shard = framed / "shards" / "00000.npy"
    shard.write_bytes(shard.read_bytes()[:200])  # cut short: training and the grid skip it, nothing left to draw
    assert main(["show-pairs", str(framed), "--out", str(tmp_path / "grid2.png")]) != 0
    err = capsys.readouterr().err
    assert "write the pairs again with vidssl.data.write_pair_dataset" in err and "vidssl mine" not in err, err
