"""Pair datasets (contract 1) into batches: reading and its errors, the batch plan, augmentation, the loader."""
from __future__ import annotations

import json
import logging
import os
import re

import numpy as np
import pytest
import torch

from train_utils import write_pairs
from vidssl.data import (PairBatchSampler, PairDataError, PairPatches, epoch_batches, make_loader, open_pairs,
                         to_input, too_few_pairs)
from vidssl.data.augment import augment_patch
from vidssl.errors import VidsslError
from vidssl.train_config import DataConfig


def _toy(tmp_path, n_videos=3, tracks=10, size=8, shard_rows=7):
    rng = np.random.default_rng(0)
    patches = rng.integers(0, 256, size=(n_videos * tracks, 2, size, size, 3), dtype=np.uint8)
    videos = [f"v{i // tracks}" for i in range(n_videos * tracks)]
    track_ids = [i % tracks for i in range(n_videos * tracks)]
    return write_pairs(tmp_path / "pairs", patches, videos, track_ids, shard_rows=shard_rows), patches


def test_open_pairs_indexes_every_pair(tmp_path):
    root, patches = _toy(tmp_path)
    pairs = open_pairs(root)
    assert len(pairs) == 30 and pairs.num_videos == 3 and pairs.patch_size == 8
    assert np.unique(pairs.track).size == 30  # (video, track) pairs, not bare track ids
    ds = PairPatches(pairs, DataConfig(patch_size=8, crop_min=1.0, flip=False))
    for i in (0, 6, 7, 29):  # across shard boundaries
        assert np.array_equal(ds.raw(i), patches[i])
        out, index = ds[(i, (0, 0, 0))]
        assert index == i and np.array_equal(out, patches[i])  # no crop, no flip, same size: identity


def test_reading_pairs_keeps_no_shard_open(tmp_path):
    # one shard per video and a worker that lives the whole run: with a memory map (an open file) kept per shard,
    # a dataset of over ~1000 videos ran out of the process's open files
    root, patches = _toy(tmp_path, n_videos=40, tracks=2, shard_rows=2)
    ds = PairPatches(open_pairs(root), DataConfig(patch_size=8, crop_min=1.0, flip=False))
    fds = lambda: len(os.listdir("/proc/self/fd"))  # noqa: E731
    before = fds()
    for i in range(len(patches)):
        assert np.array_equal(ds.raw(i), patches[i])
    assert fds() == before
    # the held-out tracks of retrieval read the same shards
    from vidssl.eval.config import RetrievalConfig
    from vidssl.eval.retrieval_data import load_track_set

    items = load_track_set(root, RetrievalConfig(image_size=8)).items
    before = fds()
    got = [items[i][0] for i in range(len(items))]
    assert fds() == before
    assert torch.equal(got[0], torch.from_numpy(patches[0, 0]).permute(2, 0, 1))


def test_a_shard_cut_short_after_indexing_is_a_clear_error(tmp_path):
    root, patches = _toy(tmp_path, shard_rows=7)
    ds = PairPatches(open_pairs(root), DataConfig(patch_size=8, crop_min=1.0, flip=False))
    shard = root / "shards" / "00000.npy"
    shard.write_bytes(shard.read_bytes()[:-300])  # rows 5 and 6 lose bytes: copied over while training runs
    assert np.array_equal(ds.raw(4), patches[4])
    with pytest.raises(VidsslError, match=r"00000.npy: ends before row 6 of its 7.*rerun the `vidssl mine`"):
        ds.raw(6)


def test_a_shard_lost_inside_a_loader_worker_is_one_line_at_the_command_line(tmp_path, capsys, monkeypatch):
    """Read in a DataLoader worker (data.num_workers 1, the default), the clear error came back wrapped in torch's
    "Caught VidsslError in DataLoader worker process 0." and the worker's traceback, the message on its last line;
    a shard deleted since indexing was a bare FileNotFoundError."""
    from vidssl.cli import main
    from vidssl.data import make_loader
    from vidssl.errors import one_line

    root, _ = _toy(tmp_path, shard_rows=7)
    pairs = open_pairs(root)
    cfg = DataConfig(patch_size=8, crop_min=1.0, flip=False, num_workers=1)
    (root / "shards" / "00000.npy").unlink()  # its video mined again meanwhile
    loader = make_loader(PairPatches(pairs, cfg), PairBatchSampler(pairs.video, pairs.track, 4, seed=0, steps=1),
                         cfg, pin_memory=False)
    with pytest.raises(VidsslError) as caught:
        next(iter(loader))
    assert str(caught.value).startswith("Caught VidsslError in DataLoader worker")
    message = one_line(caught.value)
    assert message.startswith(str(root / "shards" / "00000.npy") + ": gone since the pairs were read")
    assert message.endswith("rerun the `vidssl mine` that made it (same videos, same --out), then train again")

    def fails(args, cfg):
        raise caught.value

    from vidssl.commands import report
    monkeypatch.setattr(report, "run", fails)
    assert main(["report", str(tmp_path)]) == 1
    assert capsys.readouterr().err == f"vidssl report: error: {message}\n"


def test_broken_inputs_are_clear_errors(tmp_path, caplog):
    with pytest.raises(PairDataError, match="not found"):
        open_pairs(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PairDataError, match="dataset.json is missing; make it with `vidssl mine"):
        open_pairs(tmp_path / "empty")
    root, _ = _toy(tmp_path)
    lines = (root / "manifest.jsonl").read_text().splitlines()
    (root / "manifest.jsonl").write_text("\n".join(lines[:4] + ['{"video_id": "v0"}'] + lines[4:]) + "\n")
    with pytest.raises(PairDataError, match=r"manifest.jsonl:5: not a pair record"):
        open_pairs(root)
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    (root / "shards" / "00001.npy").unlink()  # rows 7..13
    np.save(root / "shards" / "00002.npy", np.zeros((7, 2, 9, 9, 3), np.uint8))  # wrong patch size: rows 14..20
    with caplog.at_level(logging.WARNING):
        pairs = open_pairs(root)
    assert len(pairs) == 30 - 14 and set(pairs.skipped) == {"shards/00001.npy", "shards/00002.npy"}
    assert "missing" in caplog.text and "expected (n, 2, 8, 8, 3)" in caplog.text
    for name in ("00000", "00003", "00004"):
        (root / "shards" / f"{name}.npy").write_bytes(b"garbage")
    with pytest.raises(PairDataError, match="none of the 30 pairs is readable"):
        open_pairs(root)


def test_empty_and_zip_shards_are_skipped_and_odd_dataset_json_is_an_error(tmp_path, caplog):
    import json

    root, _ = _toy(tmp_path)
    (root / "shards" / "00001.npy").write_bytes(b"")  # an interrupted copy: np.load raises EOFError
    np.savez(root / "shards" / "zipped.npz", np.zeros(3))
    (root / "shards" / "zipped.npz").replace(root / "shards" / "00002.npy")  # a zip under a .npy name
    with caplog.at_level(logging.WARNING):
        pairs = open_pairs(root)
    assert len(pairs) == 30 - 14 and set(pairs.skipped) == {"shards/00001.npy", "shards/00002.npy"}
    assert "EOFError" in pairs.skipped["shards/00001.npy"] and "zip" in pairs.skipped["shards/00002.npy"]
    meta = json.loads((root / "dataset.json").read_text())
    for videos in ({}, {"pending": "2"}, {"pending": -1}, {"pending": True}):
        (root / "dataset.json").write_text(json.dumps({**meta, "complete": False, "videos": videos}))
        with pytest.raises(PairDataError, match=r"dataset.json: 'complete' is false but 'videos.pending'"):
            open_pairs(root)
    (root / "dataset.json").write_text(json.dumps({**meta, "complete": False, "videos": {"pending": 2}}))
    assert open_pairs(root).pending_videos == 2
    # an empty manifest explained from a dataset.json whose skipped videos are not a mapping
    (root / "manifest.jsonl").write_text("")
    (root / "dataset.json").write_text(json.dumps({**meta, "videos": {"found": 2, "mined": 0, "skipped": []}}))
    with pytest.raises(PairDataError, match="manifest.jsonl: no pairs"):
        open_pairs(root)


def test_fingerprint_follows_the_usable_pairs_not_the_provenance(tmp_path):
    import hashlib
    import json

    root, _ = _toy(tmp_path)
    meta = json.loads((root / "dataset.json").read_text())
    first = open_pairs(root)
    # what an earlier version computed (dataset.json + manifest bytes): its interrupted runs must still resume
    legacy = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
    legacy.update((root / "manifest.jsonl").read_bytes())
    assert first.legacy_fingerprint == legacy.hexdigest()[:16]
    # `vidssl mine` re-merging a finished folder rewrites versions and timings: the pairs are the same
    meta.update({"versions": {"git_sha": "another"}, "mining_seconds": 9.9, "videos_root": "/elsewhere"})
    (root / "dataset.json").write_text(json.dumps(meta))
    assert open_pairs(root).fingerprint == first.fingerprint
    meta["track_length"] = 16  # what decides the pairs
    (root / "dataset.json").write_text(json.dumps(meta))
    assert open_pairs(root).fingerprint != first.fingerprint
    del meta["track_length"]
    (root / "dataset.json").write_text(json.dumps(meta))
    # a lost shard leaves fewer pairs and other batches: the fingerprint changes, the earlier one is not offered
    (root / "shards" / "00001.npy").unlink()
    lost = open_pairs(root)
    assert len(lost) == 23 and lost.fingerprint != first.fingerprint and lost.legacy_fingerprint == ""


def test_videos_whose_pairs_were_all_skipped_are_not_counted(tmp_path):
    root, _ = _toy(tmp_path)  # 3 videos; rows 0..6 in the first shard
    before = open_pairs(root)
    for name in ("00001", "00002", "00003", "00004"):
        (root / "shards" / f"{name}.npy").unlink()
    after = open_pairs(root)
    videos = {before.video_ids[v] for v in before.video[:7]}
    assert after.num_videos == len(videos) == len(after.video_ids)
    assert [after.video_ids[v] for v in after.video] == [before.video_ids[v] for v in before.video[:7]]


@pytest.mark.parametrize("offset", ["-1", "1.7", "null", '"3"', "true"])
def test_a_manifest_offset_that_is_not_a_row_index_is_an_error(tmp_path, offset):
    root, _ = _toy(tmp_path)
    lines = (root / "manifest.jsonl").read_text().splitlines()
    lines[2] = lines[2].replace('"offset": 2', f'"offset": {offset}')
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(PairDataError, match=r"manifest.jsonl:3: not a pair record"):
        open_pairs(root)


def test_a_manifest_row_one_past_its_shard_s_end_skips_the_shard(tmp_path, caplog):
    # rows are counted from 0: a shard of 7 rows has no row 7, which only the first read in training would find
    root, _ = _toy(tmp_path, shard_rows=7)
    lines = (root / "manifest.jsonl").read_text().splitlines()
    assert '"shard": "shards/00000.npy", "offset": 6' in lines[6]
    lines[6] = lines[6].replace('"offset": 6', '"offset": 7')
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    with caplog.at_level(logging.WARNING):
        pairs = open_pairs(root)
    assert pairs.skipped == {"shards/00000.npy": "7 rows, but the manifest refers to row 7"}
    assert len(pairs) == 30 - 7 and "skipping 7 pairs" in caplog.text


def test_epoch_batches_distinct_tracks_spread_over_videos():
    video = np.repeat(np.arange(4), [40, 30, 20, 10])
    track = np.arange(100) // 2  # two pairs per track
    batches = epoch_batches(video, track, batch_pairs=10, seed=0, epoch=0)
    assert batches.shape[1] == 10 and len(batches) >= 8
    flat = batches.ravel()
    assert len(set(flat.tolist())) == flat.size  # each pair at most once per epoch
    for b in batches:
        assert len(set(track[b].tolist())) == 10  # distinct tracks
        assert len(set(video[b].tolist())) == 4  # every video holds >= 1/P of the pairs, so every batch has it
    assert np.array_equal(batches, epoch_batches(video, track, 10, seed=0, epoch=0))
    assert not np.array_equal(batches, epoch_batches(video, track, 10, seed=0, epoch=1))


def test_epoch_batches_share_few_tracks_evenly():
    # 3 videos x 2 long tracks (one tracker: a pair every few frames), P = 8: each track is 1/6 of every batch
    video = np.repeat(np.arange(3), 30)
    track = np.repeat(np.arange(6), 15)
    batches = epoch_batches(video, track, batch_pairs=8, seed=0, epoch=0)
    assert len(batches) == 90 // 8
    for b in batches:
        assert max(np.bincount(track[b])) <= 2 and len(set(video[b].tolist())) == 3
    assert len(set(batches.ravel().tolist())) == batches.size


def test_epoch_batches_use_every_pair_when_track_sizes_are_skewed():
    # track sizes as mined from the 9 real clips: a few long trackers, many short ones
    sizes = [46, 46, 46, 33, 21, 21, 18, 16, 15, 15, 14, 10, 9, 7, 7, 5, 4, 4, 3, 3, 3, 3, 2, 2, 2]
    track = np.repeat(np.arange(len(sizes)), sizes)
    video = track % 7
    for seed in range(3):
        batches = epoch_batches(video, track, batch_pairs=64, seed=seed, epoch=0)
        assert len(batches) == track.size // 64  # every full batch the epoch holds
        assert len(set(batches.ravel().tolist())) == batches.size
        fair = np.ceil(64 * np.array(sizes) / track.size)  # a track's share of a batch, rounded up
        for b in batches:
            assert (np.bincount(track[b], minlength=len(sizes)) <= fair + 1).all()


def _epoch_batches_by_scans(video, track, batch_pairs, seed, epoch):
    """The plan written the naive way: one scan per track and per video (sampler._spread is the rule itself)."""
    from vidssl.data.sampler import _PLAN, _spread

    rng = np.random.default_rng([seed, epoch, _PLAN])
    n = video.size
    in_track, keys = np.empty(n), np.empty(n)
    for t in np.unique(track):
        members = np.flatnonzero(track == t)
        _spread(members, rng.random(members.size), rng, in_track)
    for v in np.unique(video):
        members = np.flatnonzero(video == v)
        _spread(members, in_track[members], rng, keys)
    stream = np.lexsort((rng.random(n), keys))
    return stream[:n // batch_pairs * batch_pairs].reshape(-1, batch_pairs)


def test_epoch_batches_group_by_one_sort_as_by_scans():
    # codes out of order and with gaps, as the manifest gives them: the grouping by one sort plans the same epoch
    rng = np.random.default_rng(5)
    for trial in range(20):
        n = int(rng.integers(8, 400))
        track = rng.choice(rng.permutation(1000)[:int(rng.integers(1, 40))], n)
        video = track % int(rng.integers(1, 6)) * 7
        for epoch in (0, 3):
            assert np.array_equal(epoch_batches(video, track, 8, seed=trial, epoch=epoch),
                                  _epoch_batches_by_scans(video, track, 8, trial, epoch))


def test_the_epoch_plan_and_augmentation_draw_different_numbers(monkeypatch):
    # every random stream of a run (each epoch's plan, each pair's augmentation) must be its own: numpy pads seeds
    # with zeros, so a plan seeded [seed, epoch] replayed the stream of slot 0 of global batch ``epoch``
    import vidssl.data.sampler as sampler_module

    seeds = []
    real = np.random.default_rng
    monkeypatch.setattr(sampler_module.np.random, "default_rng", lambda key: seeds.append(key) or real(key))
    video, track = np.repeat(np.arange(3), 20), np.arange(60)
    batches = list(PairBatchSampler(video, track, 8, seed=1, steps=7 * 3))  # three epochs' plans
    monkeypatch.undo()
    plans = {tuple(np.random.SeedSequence(key).generate_state(4)) for key in seeds}
    augmentations = {tuple(np.random.SeedSequence(list(seed)).generate_state(4)) for b in batches for _, seed in b}
    assert len(plans) == 3 and len(augmentations) == 7 * 3 * 8 and not plans & augmentations


def test_sampler_plans_only_the_epoch_it_resumes_in(monkeypatch):
    import vidssl.data.sampler as sampler_module

    video = np.repeat(np.arange(3), 20)
    track = np.arange(60)
    full = list(PairBatchSampler(video, track, 8, seed=1, steps=7 * 50 + 3))  # 7 batches an epoch
    planned = []
    real = sampler_module.epoch_batches
    monkeypatch.setattr(sampler_module, "epoch_batches", lambda *a: planned.append(a[-1]) or real(*a))
    resumed = list(PairBatchSampler(video, track, 8, seed=1, steps=7 * 50 + 3, start_step=7 * 50 + 1))
    assert resumed == full[-2:] and planned == [50]  # not the 50 epochs before it


def test_sampler_resumes_and_shards_by_rank():
    video = np.repeat(np.arange(3), 20)
    track = np.arange(60)
    full = list(PairBatchSampler(video, track, 8, seed=1, steps=20))  # crosses epochs (7 batches each)
    assert len(full) == 20
    assert list(PairBatchSampler(video, track, 8, seed=1, steps=20, start_step=13)) == full[13:]
    # two processes: each epoch keeps 6 of its 7 batches, so that a step's two batches come from one epoch
    kept = [b for e in range(3) for b in full[7 * e:7 * e + 6]]
    r0 = list(PairBatchSampler(video, track, 8, seed=1, steps=9, rank=0, world=2))
    r1 = list(PairBatchSampler(video, track, 8, seed=1, steps=9, rank=1, world=2))
    pairs_of = lambda batches: [[i for i, _ in b] for b in batches]  # noqa: E731
    assert pairs_of(r0) == pairs_of(kept[0::2]) and pairs_of(r1) == pairs_of(kept[1::2])  # dealt out in turn
    for rank, batches in enumerate((r0, r1)):  # augmentation seeded by (seed, global batch, slot)
        assert all(seed == (1, 2 * step + rank, slot) for step, b in enumerate(batches) for slot, (_, seed) in
                   enumerate(b))
    for a, b in zip(r0, r1):  # every step: two batches of one epoch's plan, disjoint
        assert not {i for i, _ in a} & {i for i, _ in b}
    with pytest.raises(VidsslError, match="7 batch.*fewer than the 8 processes"):
        PairBatchSampler(video, track, 8, seed=1, steps=1, world=8)
    with pytest.raises(Exception, match="fewer than a batch of 80") as few:
        PairBatchSampler(video, track, 80, seed=1, steps=1)
    suggested = int(re.search(r"train.batch_pairs=(\d+)", str(few.value)).group(1))
    assert suggested == 32  # the largest power of two that 60 pairs fill
    assert len(list(PairBatchSampler(video, track, suggested, seed=1, steps=3))) == 3  # and it does work
    for pairs, expected in ((2, 2), (3, 2), (31, 16), (32, 32)):
        assert f"train.batch_pairs={expected})" in too_few_pairs(pairs, 64)
    assert "batch_pairs=" not in too_few_pairs(1, 64) and "mine more videos" in too_few_pairs(1, 64)


def test_augment_patch_is_a_crop_and_flip():
    rng = np.random.default_rng(0)
    patch = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    seen_flip = seen_plain = False
    for seed in range(20):
        out = augment_patch(patch, np.random.default_rng(seed), 16, crop_min=1.0, flip=True)
        seen_flip |= np.array_equal(out, patch[:, ::-1])
        seen_plain |= np.array_equal(out, patch)
        assert np.array_equal(out, patch) or np.array_equal(out, patch[:, ::-1])
    assert seen_flip and seen_plain
    big = augment_patch(patch, np.random.default_rng(3), 32, crop_min=0.5, flip=False)
    assert big.shape == (32, 32, 3) and big.dtype == np.uint8


def test_augment_patch_crops_a_square_window_of_half_to_all_the_patch_anywhere_in_it():
    """A patch that encodes its own coordinates (red = 4 x row, green = 4 x column): the output's corners read the
    window back. Over many draws the side spans [crop_min, 1] x S0 and the window's origin its whole range (a crop
    always at the corner, or never cropping, passed the shape-only check)."""
    s0 = 64
    rows, cols = np.meshgrid(np.arange(s0), np.arange(s0), indexing="ij")
    patch = np.stack([4 * rows, 4 * cols, np.zeros_like(rows)], axis=-1).astype(np.uint8)
    sides, origins = [], []
    for seed in range(2000):
        out = augment_patch(patch, np.random.default_rng(seed), s0, crop_min=0.5, flip=False).astype(float)
        y0, x0 = out[0, 0, 0] / 4, out[0, 0, 1] / 4
        side_y, side_x = (out[-1, 0, 0] - out[0, 0, 0]) / 4 + 1, (out[0, -1, 1] - out[0, 0, 1]) / 4 + 1
        assert abs(side_y - side_x) <= 1.0, seed  # square
        assert y0 >= -0.5 and x0 >= -0.5 and y0 + side_y <= s0 + 1 and x0 + side_x <= s0 + 1, seed  # inside
        sides.append(side_y)
        origins.append((y0, x0, s0 - side_y))
    sides = np.array(sides)
    assert sides.min() >= 0.5 * s0 - 1.5 and sides.max() <= s0 + 0.5
    assert sides.min() < 0.56 * s0 and sides.max() > 0.95 * s0  # the whole range is drawn
    # uniformly: side = round(64 u), u ~ U(0.5, 1), is under 48 with probability (47.5 / 64 - 0.5) / 0.5
    assert np.mean(sides < 48) == pytest.approx((47.5 / 64 - 0.5) / 0.5, abs=0.05)
    # the origin takes its whole range, both ends included: a crop that never reached the bottom or right edge
    # (origin drawn below the room, not up to it) passed "near the end". The corners read back exact rows and
    # columns (cv2 clamps an upscale's corners to the source's); at chance 1 / (room + 1) per draw, each end of
    # each axis is met about 190 times in these 2000 draws
    ends = [(y0 == 0, y0 == room, x0 == 0, x0 == room) for y0, x0, room in origins if room > 0]
    assert all(sum(hits) > 100 for hits in zip(*ends))


def test_loader_same_batches_with_and_without_workers(tmp_path):
    root, _ = _toy(tmp_path)
    pairs = open_pairs(root)
    cfg = DataConfig(patch_size=32, crop_min=0.6, flip=True, num_workers=0)
    sampler = PairBatchSampler(pairs.video, pairs.track, 6, seed=0, steps=5)
    plain = [(x.clone(), i.clone()) for x, i in make_loader(PairPatches(pairs, cfg), sampler, cfg, False)]
    cfg_w = DataConfig(patch_size=32, crop_min=0.6, flip=True, num_workers=2, prefetch=2)
    sampler_w = PairBatchSampler(pairs.video, pairs.track, 6, seed=0, steps=5)
    worked = list(make_loader(PairPatches(pairs, cfg_w), sampler_w, cfg_w, False))
    assert len(plain) == len(worked) == 5
    for (x0, i0), (x1, i1) in zip(plain, worked):
        assert x0.shape == (6, 2, 32, 32, 3) and x0.dtype == torch.uint8
        assert torch.equal(x0, x1) and torch.equal(i0, i1)  # augmentation is seeded per item, not per worker
    x = to_input(plain[0][0], (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), torch.device("cpu"), channels_last=False)
    assert x.shape == (12, 3, 32, 32)
    first = plain[0][0]
    torch.testing.assert_close(x[1], (first[1, 0].permute(2, 0, 1).float() / 255 - 0.5) / 0.25)  # anchor row 1
    torch.testing.assert_close(x[6 + 1], (first[1, 1].permute(2, 0, 1).float() / 255 - 0.5) / 0.25)  # its positive


def test_background_patches_are_read_only_when_asked(tmp_path):
    rng = np.random.default_rng(1)
    triples = rng.integers(0, 256, size=(12, 3, 8, 8, 3), dtype=np.uint8)
    root = write_pairs(tmp_path / "bg", triples, [f"v{i % 3}" for i in range(12)], list(range(12)), shard_rows=5)
    pairs = open_pairs(root)
    assert pairs.has_background
    cfg = DataConfig(patch_size=8, crop_min=1.0, flip=False)
    out, _ = PairPatches(pairs, cfg, background=True)[(7, (0, 0, 0))]
    assert np.array_equal(out, triples[7])  # first, last, background
    out, _ = PairPatches(pairs, cfg)[(7, (0, 0, 0))]
    assert np.array_equal(out, triples[7, :2])  # a pair dataset with backgrounds still trains without them
    x = to_input(torch.from_numpy(triples[:4]), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), torch.device("cpu"), False)
    assert x.shape == (12, 3, 8, 8)  # anchors, positives, backgrounds
    for m in range(3):
        want = torch.from_numpy(triples[:4, m]).permute(0, 3, 1, 2).float() / 255
        torch.testing.assert_close(x[4 * m:4 * m + 4], want)
    plain, _ = _toy(tmp_path)
    assert not open_pairs(plain).has_background
    with pytest.raises(VidsslError, match="the pairs have no background patches.*mine.background_patches=true"):
        PairPatches(open_pairs(plain), cfg, background=True)
    # a merge of shards mined with and without backgrounds: name those without, not "the pairs have none"
    np.save(root / "shards" / "00001.npy", np.ascontiguousarray(triples[5:10, :2]))
    mixed = open_pairs(root)
    assert not mixed.has_background and mixed.narrow_shards == ["shards/00001.npy"]
    with pytest.raises(VidsslError, match=r"1 of the 3 shards \(e.g. shards/00001.npy\) have no background"):
        PairPatches(mixed, cfg, background=True)


def test_each_video_s_evenly_spaced_keys_start_at_a_uniform_random_offset():
    """The README's "each video's spacing starts at its own random offset": n keys exactly 1/n apart, the first
    uniform on [0, 1/n) (without the offset every video's first pair opened the epoch, passing the other tests)."""
    from vidssl.data.sampler import _spread

    n, firsts = 7, []
    rng = np.random.default_rng(0)
    for _ in range(2000):
        keys = np.full(20, np.nan)
        members = np.arange(3, 3 + n)
        _spread(members, rng.random(n), rng, keys)
        got = np.sort(keys[members])
        assert np.isnan(keys[:3]).all() and np.allclose(np.diff(got), 1 / n)  # only the members, evenly spaced
        firsts.append(got[0] * n)  # the offset, scaled to [0, 1)
    firsts = np.array(firsts)
    assert firsts.min() >= 0 and firsts.max() < 1
    # uniform: each tenth of [0, 1) holds about a tenth of the offsets (binomial sd 0.0067)
    assert np.allclose(np.histogram(firsts, bins=10, range=(0, 1))[0] / firsts.size, 0.1, atol=0.03)


def test_a_fortran_order_shard_is_a_clear_error_not_garbage(tmp_path):
    """A shard another tool saved in Fortran order (np.save of a transposed array) has the right dtype and shape:
    read in C order, each row's bytes were patches of other rows, mixed, and training went on with them."""
    root, patches = _toy(tmp_path, shard_rows=7)
    shard = root / "shards" / "00000.npy"
    np.save(shard, np.asfortranarray(patches[:7]))
    assert np.array_equal(np.load(shard)[3], patches[3])  # a valid .npy of the same rows
    pairs = open_pairs(root)  # skipped when the pairs are indexed, as any other unusable shard
    assert pairs.skipped == {"shards/00000.npy": "a Fortran-order array (written by another tool?), expected C order "
                                                 "as `vidssl mine` writes; a new mining keeps a shard of its size: "
                                                 "delete it first"}
    ds = PairPatches(pairs, DataConfig(patch_size=8, crop_min=1.0, flip=False))
    assert len(ds) == 30 - 7 and np.array_equal(ds.raw(0), patches[7])  # the other shards are read as before
    # and the reader itself refuses it (a shard replaced after the pairs were indexed), naming the order
    from vidssl.data.shards import ShardRows

    with pytest.raises(VidsslError, match=r"00000.npy: not a pair shard \(.*Fortran order.*rerun the `vidssl mine`.*delete the shard first"):
        ShardRows().read(shard, 3)


def test_each_patch_of_a_pair_draws_its_own_crop_and_flip():
    """The two patches of a pair are cropped and flipped independently (README: "an independent horizontal flip per
    patch", scales up to 2x apart): patches that encode their own coordinates, over 400 seeds."""
    from vidssl.data.augment import augment_pair

    s0 = 32
    rows, cols = np.meshgrid(np.arange(s0), np.arange(s0), indexing="ij")
    patch = np.stack([4 * rows, 4 * cols, np.zeros_like(rows)], axis=-1).astype(np.uint8)
    pair = np.stack([patch, patch])
    flips, same_crop = [], 0
    for seed in range(400):
        out = augment_pair(pair, np.random.default_rng(seed), s0, 0.5, True).astype(int)
        f = [int(o[0, 0, 1] > o[0, -1, 1]) for o in out]  # column decreasing left to right: flipped
        flips.append(f)
        same_crop += np.array_equal(out[0], out[1])
    flips = np.array(flips)
    assert abs(flips.mean(0) - 0.5).max() < 0.08  # each patch flipped half the time
    assert abs((flips[:, 0] == flips[:, 1]).mean() - 0.5) < 0.08  # independently
    assert same_crop < 10


def _coordinate_patch(s0: int) -> np.ndarray:
    """[s0, s0, 3] uint8 whose red is 4 x the row and green 4 x the column: a crop reads its window back."""
    rows, cols = np.meshgrid(np.arange(s0), np.arange(s0), indexing="ij")
    return np.stack([4 * rows, 4 * cols, np.zeros_like(rows)], axis=-1).astype(np.uint8)


def test_box_view_crops_from_the_tracked_box_inside_the_window_at_its_rate():
    """data.box_view: a patch is cropped from its tracked box (the recorded fractions of the stored side) with that
    chance, each of the pair's two apart, the background never; the crop's corners read back the box's pixels.
    Without box_view the draws are the plain crop's, patch by patch (a loop over augment_patch is the reference)."""
    from vidssl.data.augment import augment_pair

    s0 = 60
    patch = _coordinate_patch(s0)
    pair = np.stack([patch, patch, patch])  # first, last, background
    boxes = np.asarray([[0.1, 0.2, 0.5, 0.5], [0.45, 0.0, 0.5, 0.56]], np.float32)  # 30 x 30 px; 30 x 33.6
    regions = [(6, 12, 30), (27, 2, 30)]  # x, y, side px: the second's shorter side about its centre (1.8 -> 2)
    in_box = np.zeros(2)
    for seed in range(2000):
        out = augment_pair(pair, np.random.default_rng(seed), 60, 1.0, False, boxes, box_view=0.4).astype(int)
        for k, (x, y, side) in enumerate(regions):
            box_crop = out[k, 0, 0, 0] == 4 * y and out[k, 0, 0, 1] == 4 * x and out[k, -1, -1, 0] == 4 * (y + 29)
            whole = np.array_equal(out[k], patch)  # crop_min 1: the whole window (a box crop is doubled)
            assert box_crop or whole, (seed, k)
            in_box[k] += box_crop
        assert np.array_equal(out[2], patch)  # the background: its whole window every time
    assert np.allclose(in_box / 2000, 0.4, atol=0.035), in_box  # sd 0.011
    for seed in range(20):  # box_view 0: the same numbers as a plain crop and flip of each patch in turn
        got = augment_pair(pair, np.random.default_rng(seed), 24, 0.5, True, boxes, box_view=0.0)
        rng = np.random.default_rng(seed)
        assert np.array_equal(got, np.stack([augment_patch(q, rng, 24, 0.5, True) for q in pair]))
    # a pair whose boxes are not recorded (NaN) keeps its window
    nan = np.full((2, 4), np.nan, np.float32)
    out = augment_pair(pair[:2], np.random.default_rng(0), 60, 1.0, False, nan, box_view=1.0)
    assert np.array_equal(out[0], patch) and np.array_equal(out[1], patch)


def _items(pairs, cfg, seeds=range(12)) -> list:
    from vidssl.data import PairPatches
    ds = PairPatches(pairs, cfg)
    return [ds[(i % len(ds), (s, i))][0] for i, s in enumerate(seeds)]


def test_patch_boxes_are_read_with_the_pairs_and_box_view_crops_nothing_without_them(tmp_path):
    """open_pairs keeps each record's patch_boxes (NaN where a record has none), in the order of the usable pairs;
    a malformed one is named by its line. On pairs without any (mined with mine.patch_context 1: the patch is the
    box) data.box_view changes nothing: the same items, draw for draw, as box_view 0; on pairs with boxes it does."""
    from vidssl.data import PairDataError, open_pairs
    from vidssl.train_config import DataConfig

    root, _ = _toy(tmp_path)
    assert open_pairs(root).patch_boxes is None
    plain = _items(open_pairs(root), DataConfig(patch_size=8, box_view=0.0))
    for got, want in zip(_items(open_pairs(root), DataConfig(patch_size=8, box_view=0.5)), plain, strict=True):
        assert np.array_equal(got, want)
    manifest = root / "manifest.jsonl"
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    for i, rec in enumerate(records):
        if i != 3:
            rec["patch_boxes"] = [[0.01 * i, 0.2, 0.5, 0.5], [0.3, 0.01 * i, 0.6, 0.6]]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in records))
    meta = json.loads((root / "dataset.json").read_text())
    meta.pop("manifest_sha256", None)  # edited by hand here: no digest to check it against
    (root / "dataset.json").write_text(json.dumps(meta))
    pairs = open_pairs(root)
    assert pairs.patch_boxes.shape == (30, 2, 4) and np.isnan(pairs.patch_boxes[3]).all()
    assert pairs.patch_boxes[7].ravel().tolist() == pytest.approx([0.07, 0.2, 0.5, 0.5, 0.3, 0.07, 0.6, 0.6])
    boxed = _items(pairs, DataConfig(patch_size=8, box_view=0.5))
    assert sum(not np.array_equal(a, b) for a, b in zip(boxed, plain, strict=True)) >= 3
    for bad in ([[0.6, 0.2, 0.5, 0.5], [0.3, 0.0, 0.6, 0.6]], [[0.1, 0.2, 0.5]], "wide"):
        records[5]["patch_boxes"] = bad
        manifest.write_text("".join(json.dumps(r) + "\n" for r in records))
        with pytest.raises(PairDataError, match=r"manifest.jsonl:6: patch_boxes is .*, not two \[x, y, w, h\] boxes"):
            open_pairs(root)


def test_augmentation_follows_the_run_seed(tmp_path):
    """config.seed reaches the crops and flips: another run seed, other augmentations of the same pair."""
    from vidssl.data import PairPatches, open_pairs
    from vidssl.train_config import DataConfig
    root, _ = _toy(tmp_path)
    ds = PairPatches(open_pairs(root), DataConfig(patch_size=32, crop_min=0.5, num_workers=0))
    assert not np.array_equal(ds[(0, (0, 5, 1))][0], ds[(0, (1, 5, 1))][0])


# --- damaged pair datasets: a shard of another mining, the advice after skips, macOS files in done/, resuming ---

def _mined(out: os.PathLike, rows: list[int], size: int = 16):
    """A pair folder as `vidssl mine` leaves it, without decoding a video: prepare, one write_video per video (its
    shard and done-marker, as the runner writes them) and the merge. Video i has rows[i] pairs of random patches.
    Returns (folder, listing)."""
    from pathlib import Path

    from tracking.config import MineConfig
    from tracking.dataset import merge, prepare, video_id, write_video

    out = Path(out)
    rng = np.random.default_rng(len(rows))
    listing = [{"video": f"v{i}.mp4", "video_id": video_id(f"v{i}.mp4"), "bytes": 1} for i in range(len(rows))]
    prepare(out, out.parent / "videos", listing, MineConfig(patch_size=size), "auto")
    for entry, n in zip(listing, rows):
        marker = {"status": "mined", "reason": None, "detail": None,
                  "stats": {"frames": 10, "seconds": 0.1, "tracks_rejected": {}, "starts_rejected": {}},
                  "pairs": [{"track_id": t, "start_frame": 0, "end_frame": 10} for t in range(n)]}
        write_video(out, entry, rng.integers(0, 256, (n, 2, size, size, 3), np.uint8), None, marker)
    merge(out)
    return out, listing


def test_a_shard_of_another_mining_copied_over_one_s_name_is_skipped_by_its_recorded_size(tmp_path, caplog):
    """A shard of another dataset or mining copied over one of PAIRS' shard names, with more rows than the manifest
    uses, passed every check (the header is as good) and was trained on, and drawn by show-pairs. Its size differs
    from the one its video's done-marker recorded (which the merge copies into dataset.json): skipped, as other
    damaged shards are. A dataset.json of an earlier merge records no size: nothing is checked."""
    import json

    from tracking.show import CAPTION, pair_grid

    out, listing = _mined(tmp_path / "pairs", [4, 6, 5])
    shard = {e["video_id"]: f"shards/{e['video_id']}.npy" for e in listing}
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["shard_bytes"] == {name: os.path.getsize(out / name) for name in shard.values()}
    assert len(open_pairs(out)) == 15
    first, second = (shard[e["video_id"]] for e in listing[:2])
    (out / first).write_bytes((out / second).read_bytes())  # 6 rows where the manifest uses 4: same header kind
    with caplog.at_level(logging.WARNING):
        pairs = open_pairs(out)
    assert len(pairs) == 11 and list(pairs.skipped) == [first] and pairs.num_videos == 2
    want = os.path.getsize(out / first), meta["shard_bytes"][first]
    assert pairs.skipped[first].startswith(f"{want[0]} bytes, not the {want[1]} its video's mining wrote")
    assert f"skipping 4 pairs of {out / first}" in caplog.text
    assert f"rerun the `vidssl mine` that made {out} (same videos, same --out)" in caplog.text
    # show-pairs leaves the same shard out, said in one line: 11 cells in one column, not 15
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tracking.show"):
        grid = pair_grid(out, n=64, seed=0, columns=1)
    assert grid.shape[0] == 4 + 11 * (CAPTION + 16 + 4)
    said = [r.getMessage() for r in caplog.records if r.name == "tracking.show"]
    assert len(said) == 1 and f"left out the 4 pairs of 1 shard(s) training would skip ({out / first}: " in said[0]
    assert "1 of 3 videos' shards were skipped" in said[0]
    # an earlier merge's dataset.json: no size on record, no size check
    (out / "dataset.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "shard_bytes"}))
    assert len(open_pairs(out)) == 15


def test_a_macos_file_in_done_is_no_done_marker(tmp_path, caplog):
    """A macOS ._<id>.json (AppleDouble metadata, copied along with the folder) was read as a damaged done-marker
    ("its video is mined again") and counted as a video mined earlier that the listing lacks (dataset.json
    videos.not_listed). Only names of the marker form are markers."""
    from tracking.dataset import marker_ids, merge

    out, listing = _mined(tmp_path / "pairs", [3, 3])
    apple = out / "done" / f"._{listing[0]['video_id']}.json"
    apple.write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(200))
    (out / "done" / ".hidden.json").write_text("{}")
    with caplog.at_level(logging.WARNING):
        summary = merge(out)
    assert marker_ids(out) == {e["video_id"] for e in listing}
    assert "not_listed" not in summary["videos"] and summary["videos"]["mined"] == 2
    assert "done-marker" not in caplog.text and apple.exists()


def _video_shards(tmp_path, videos=2, tracks=10):
    """A pair folder with one shard per video (shards/0000i.npy: video v<i>'s ``tracks`` pairs)."""
    rng = np.random.default_rng(1)
    patches = rng.integers(0, 256, size=(videos * tracks, 2, 32, 32, 3), dtype=np.uint8)
    names = [f"v{i // tracks}" for i in range(videos * tracks)]
    return write_pairs(tmp_path / "pairs", patches, names, [i % tracks for i in range(videos * tracks)],
                       shard_rows=tracks)


def test_after_skipped_shards_the_too_small_errors_say_to_restore_them(tmp_path):
    """When shards were skipped, "all pairs come from one video ... set miner.same_video_negatives=true" and "mine
    more videos" gave the wrong fix (no setting and no new video brings the lost pairs back), and the every-shard-
    gone error printed a Python tuple ("e.g. ('shards/...npy', 'missing')"). They say how many videos' shards were
    skipped and to rerun the mining, and name a file."""
    from vidssl.config import load_config
    from vidssl.train import train

    root = _video_shards(tmp_path)
    cfg = load_config(None, ["data.patch_size=32", "data.num_workers=0", "train.batch_pairs=12", "train.steps=1",
                             "miner.background_negatives=false", "loss.cycle_background=false"])
    (root / "shards" / "00001.npy").unlink()  # v1's pairs: 10 left, of one video
    with pytest.raises(VidsslError) as caught:
        train(root, tmp_path / "run", cfg, progress=False)
    message = str(caught.value)
    assert message == (f"{root}: all pairs come from one video, so there is no negative from another video; and 10 "
                       f"pairs, fewer than a batch of 12; 1 of 2 videos' shards were skipped (the warnings above "
                       f"name them): rerun the `vidssl mine` that made {root} (same videos, same --out) to mine them "
                       f"again")
    # a batch the whole manifest (20 pairs) would not fill either: restoring alone is not enough, its own fix stays
    # (following "restore them" met "20 pairs, fewer than a batch of 24" on the next run)
    bigger = load_config(None, ["data.patch_size=32", "data.num_workers=0", "train.batch_pairs=24", "train.steps=1",
                                "miner.background_negatives=false", "loss.cycle_background=false"])
    with pytest.raises(VidsslError) as caught:
        train(root, tmp_path / "run", bigger, progress=False)
    assert str(caught.value) == (
        f"{root}: all pairs come from one video, so there is no negative from another video; and 10 pairs, fewer "
        f"than a batch of 24; lower the batch (--set train.batch_pairs=8) or mine more videos; and 1 of 2 videos' "
        f"shards were skipped (the warnings above name them): rerun the `vidssl mine` that made {root} (same "
        f"videos, same --out) to mine them again")
    (root / "shards" / "00000.npy").unlink()
    with pytest.raises(PairDataError) as caught:
        open_pairs(root)
    assert str(caught.value) == (f"{root}: none of the 20 pairs is readable (e.g. {root / 'shards' / '00000.npy'}: "
                                 f"missing); 2 of 2 videos' shards were skipped (the warnings above name them): "
                                 f"rerun the `vidssl mine` that made {root} (same videos, same --out) to mine them "
                                 f"again")
    # without a skip, the advice stays the settings' and more videos'
    one = write_pairs(tmp_path / "one", np.zeros((10, 2, 32, 32, 3), np.uint8), ["v0"] * 10, list(range(10)))
    with pytest.raises(VidsslError, match="set miner.same_video_negatives=true.*lower the batch"):
        train(one, tmp_path / "run1", cfg, progress=False)


def test_resuming_names_the_shard_skipped_then_or_now(tmp_path):
    """A resume was refused as "trained on other pairs (dataset fingerprint A, now B)" when the only difference was
    a shard skipped at one of the two starts. The checkpoint records the skipped shards (its pairs summary); the
    refusal names the shard, what it was then and is now, and the fix."""
    from vidssl.config import load_config
    from vidssl.errors import ConfigError
    from vidssl.train import train

    root = _video_shards(tmp_path, videos=4, tracks=12)
    cfg = load_config(None, ["data.patch_size=32", "data.num_workers=0", "model.width=8", "model.embed_dim=32",
                             "train.batch_pairs=12", "train.steps=1", "train.fit_budget=false", "train.threads=1",
                             "train.budget_minutes=null", "train.checkpoint_minutes=0",
                             "miner.background_negatives=false", "loss.cycle_background=false"])
    away = tmp_path / "00003.npy"
    (root / "shards" / "00003.npy").replace(away)
    train(root, tmp_path / "run", cfg, progress=False)
    away.replace(root / "shards" / "00003.npy")
    with pytest.raises(ConfigError) as caught:
        train(root, tmp_path / "run", cfg, progress=False)
    assert re.search(r"was trained on other pairs \(dataset fingerprint \w+, now \w+\): shards/00003.npy was "
                     r"skipped \(missing\) when this run started and is readable now: restore the state it trained "
                     r"on, or choose a new --out$", str(caught.value)), caught.value
    # its video mined again since (as the skip's warning advises): the manifest names a new shard, and the old one
    # is no state to restore (it was said "readable now: restore the state it trained on")
    (root / "shards" / "00003.npy").replace(root / "shards" / "00003.1.npy")
    manifest = root / "manifest.jsonl"
    manifest.write_text(manifest.read_text().replace('"shards/00003.npy"', '"shards/00003.1.npy"'))
    with pytest.raises(ConfigError) as caught:
        train(root, tmp_path / "run", cfg, progress=False)
    assert re.search(r": shards/00003.npy was skipped \(missing\) when this run started and its video has been mined "
                     r"again since: choose a new --out to train on these$", str(caught.value)), caught.value
    train(root, tmp_path / "whole", cfg, progress=False)
    (root / "shards" / "00001.npy").unlink()
    with pytest.raises(ConfigError, match=r"shards/00001.npy is skipped now \(missing\) and was read when this run "
                                          r"started: restore the state"):
        train(root, tmp_path / "whole", cfg, progress=False)
