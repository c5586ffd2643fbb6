"""The benchmark scripts: bad values are refused in one line before any work, a single video is as good a --data as
a folder of them, and the settings and the order of what they time (with stubbed steps and decoders)."""
from __future__ import annotations

import importlib
import itertools
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def _run(script: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOLS / script), *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def _tool(name: str, monkeypatch):
    """A tools/ script imported in this process (its stubs then apply), as `python tools/NAME.py` finds its
    neighbours."""
    monkeypatch.syspath_prepend(str(TOOLS))
    return importlib.import_module(name)


def _tiny_pairs(root: Path, n: int) -> Path:
    """``n`` pairs with backgrounds (first, last and background patch), 16 px."""
    from train_utils import write_pairs

    patches = np.random.default_rng(0).integers(0, 256, size=(n, 3, 16, 16, 3), dtype=np.uint8)
    return write_pairs(root, patches, [f"v{i % 3}" for i in range(n)], list(range(n)))


@pytest.mark.parametrize("args, message", [
    (["--archs", "vgg"], "--archs vgg --sizes 64: config key 'model.arch': 'vgg' is not one of"),
    (["--sizes", "60"], "--archs smallcnn --sizes 60: loss.cycle_weight needs data.patch_size to be a multiple of 8"),
    (["--pairs", "/nowhere/pairs"], "--pairs /nowhere/pairs: not a pair dataset (no manifest.jsonl)"),
])
def test_bench_train_refuses_settings_before_writing_shards(args, message):
    """A bad --archs or --sizes failed with a traceback after writing 113 MB of synthetic shards."""
    out = _run("bench_train.py", *args)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, out.stderr[-1500:]
    assert out.stdout == ""  # not even the table's header


def test_bench_decode_takes_one_video_and_refuses_a_negative_size(demo_dir):
    out = _run("bench_decode.py", "--max-side", "-5")
    assert out.returncode == 2 and "--max-side must be a positive number of pixels" in out.stderr
    out = _run("bench_decode.py", "--data", demo_dir / "clip_00.mp4", "--runs", "1", "--max-side", "64")
    assert out.returncode == 0, out.stderr[-1500:]
    assert "| clip_00.mp4 |" in out.stdout and "no videos under" not in out.stderr


def test_bench_train_feeds_time_the_same_step_indices(monkeypatch):
    """The loader feed ran its workers x prefetch untimed steps a round and counted them in the step index, the
    in-memory feed none, so the two timed different step indices: different miner phases (random before
    miner.hard_start of the steps, hard after) and cycle-loss rolls."""
    import torch

    import vidssl.train
    from vidssl.config import load_config

    bench_train = _tool("bench_train", monkeypatch)
    calls, marks = [], []

    class Step:  # records which feed ran which step index; trains nothing
        def __init__(self, model, cfg, dev, total):
            self.total = total

        def __call__(self, feed, groups, step):
            calls.append((feed, step, self.total))
            return SimpleNamespace(triplets=[])

    monkeypatch.setattr(vidssl.train, "TrainStep", Step)
    monkeypatch.setattr(vidssl.train, "build_model", lambda cfg: torch.nn.Identity())
    # each reading of the clock marks how many steps had run: [start, end) pairs delimit the timed steps
    clock = SimpleNamespace(perf_counter=lambda: marks.append(len(calls)) or len(marks))
    monkeypatch.setattr(bench_train, "time", clock)
    feeds = {name: (lambda chunk, name=name: itertools.repeat((name, None)), lead)
             for name, lead in (("memory", 0), ("loader", 4))}
    bench_train._alternate(load_config(), "cpu", "smallcnn", 64, feeds, steps=3, warmup=2, rounds=3, batch_pairs=8)
    timed = {"memory": [], "loader": []}
    for start, end in zip(marks[::2], marks[1::2]):
        for name, step, _ in calls[start:end]:
            timed[name].append(step)
    assert timed["memory"] == timed["loader"], timed
    assert len(set(timed["loader"])) == 3 * 3
    total = calls[0][2]
    for name in timed:  # each feed's indices rise through the schedule the miner was built for
        steps = [step for feed, step, _ in calls if feed == name]
        assert steps == sorted(set(steps)) and steps[-1] < total


def test_bench_train_refuses_a_batch_larger_than_the_pairs(tmp_path):
    """Checked only by the sampler, after writing ~170 MB of synthetic shards: a traceback."""
    out = _run("bench_train.py", "--batch-pairs", "4096")
    assert out.returncode == 2 and "--batch-pairs 4096: more than the 2048 pairs of the synthetic set; use at most " \
        "2048" in out.stderr and "Traceback" not in out.stderr, out.stderr[-1500:]
    assert out.stdout == ""
    pairs = _tiny_pairs(tmp_path / "pairs", 10)
    out = _run("bench_train.py", "--pairs", pairs, "--batch-pairs", "16")
    assert out.returncode == 2 and f"--batch-pairs 16: more than the 10 pairs of {pairs}; use at most 10" in out.stderr
    assert "Traceback" not in out.stderr and out.stdout == "", out.stderr[-1500:]


def test_bench_train_header_names_its_settings(tmp_path, monkeypatch, capsys):
    """--warmup and the loader's untimed steps per round were not printed, and the triplets column counted each
    pair's background triplet (P a step) without saying so."""
    bench_train = _tool("bench_train", monkeypatch)
    monkeypatch.setattr(bench_train, "bench", lambda *args: {"pairs_per_s": 1.0, "triplets_per_s": 5.0,
                                                             "memory_pairs_per_s": 1.0, "ratio": 1.0})
    pairs = _tiny_pairs(tmp_path / "pairs", 10)
    assert bench_train.main(["--pairs", str(pairs), "--archs", "smallcnn", "--batch-pairs", "8",
                             "--warmup", "2", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "2 warm-up steps" in out and "each loader round after 4 untimed ones (workers x data.prefetch)" in out
    assert "| triplets/s (mined + background) |" in out


@pytest.mark.parametrize("args, message", [
    (["--repeats", "0"], "--repeats must be at least 1, got 0"),
    (["--archs", "smallcnn,vgg"], "--archs: unknown 'vgg'; choose from smallcnn,"),
    (["--max-displacement", "0"], "--max-displacement must be at least 1 cell, got 0"),
    (["--device", "gpu0"], "; use cpu, cuda or cuda:N"),
    (["--device", "meta"], "--device meta: use cpu, cuda or cuda:N"),  # a traceback after the header
    (["--device", "cpu:3"], "--device cpu:3: use cpu, cuda or cuda:N"),  # ran as cpu
    (["--device", "cuda:64"], "--device cuda:64: torch sees "),
])
def test_bench_flow_refuses_bad_arguments_before_any_work(args, message, monkeypatch, capsys):
    """--repeats 0 ended in min() of nothing, an unknown arch in build_backbone's traceback, and a radius of 0 was
    timed as if it were one."""
    bench_flow = _tool("_bench_flow", monkeypatch)

    def work(*_):
        raise AssertionError("the benchmark started")

    monkeypatch.setattr(bench_flow, "synthetic_pairs", work)
    with pytest.raises(SystemExit) as exit_:
        bench_flow.main(args)
    out = capsys.readouterr()
    assert exit_.value.code == 2 and message in out.err and out.out == "", out.err


@pytest.mark.parametrize("script", ["bench_decode.py", "bench_mining.py"])
def test_bench_refuses_data_that_is_not_a_video(script, tmp_path):
    """A traceback from open_video after the table's header was printed."""
    notes = tmp_path / "notes.mp4"
    notes.write_text("not a video\n")
    out = _run(script, "--data", notes, "--runs", "1")
    assert out.returncode == 2 and f"--data: {notes}: is a text file, not a video" in out.stderr
    assert "Traceback" not in out.stderr and out.stdout == "", out.stderr[-1500:]


@pytest.mark.parametrize("args, message", [
    (["--rss", "--frames", "31"], "--frames must be at least 32 (mine.track_length + 2), got 31"),
    (["--rss", "--motion", "--data", "/nowhere"], "argument --motion: not allowed with argument --rss"),
    (["--frames", "500", "--data", "/nowhere"], "--frames is --rss's"),  # ignored
    (["--rss", "--runs", "3"], "--runs does not apply to --rss"),  # ignored, and --runs 0 refused
    (["--motion", "--runs", "3", "--data", "/nowhere"], "--runs does not apply to --motion"),  # ignored
    (["--rss", "--data", "/nowhere"], "--data does not apply to --rss"),  # ignored
])
def test_bench_mining_refuses_bad_arguments(args, message):
    """--frames 1 failed in a child process (CalledProcessError), and a clip too short to mine gives no pair."""
    out = _run("bench_mining.py", *args)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, out.stderr[-1500:]
    assert out.stdout == ""


def test_bench_mining_prints_its_settings(demo_dir):
    out = _run("bench_mining.py", "--data", demo_dir / "clip_00.mp4", "--runs", "1")
    assert out.returncode == 0, out.stderr[-1500:]
    assert "best of --runs 1; both decode with the auto backend, long side <= 600 (mine.working_side)" in out.stdout


def _decode_stub(bench_decode, monkeypatch, fails: str | None = None) -> list[str]:
    """bench_decode with three backends and a decode_fps that decodes nothing: the backends it is called with, in
    order. Each backend's first call reports 1000 f/s, its n-th 10 * n; ``fails`` raises instead."""
    from vidssl.errors import CorruptVideo

    calls = []

    def decode_fps(path, backend, max_side):
        calls.append(backend)
        if backend == fails:
            raise CorruptVideo(path, "cannot open it")
        n = calls.count(backend)
        return 90, 1000.0 if n == 1 else 10.0 * n

    monkeypatch.setattr(bench_decode, "decode_fps", decode_fps)
    monkeypatch.setattr(bench_decode, "available_backends", lambda: ["decord", "pyav", "opencv"])
    return calls


def test_bench_decode_warms_up_and_takes_turns(demo_dir, monkeypatch, capsys):
    """Each backend's runs ran in one block (decord x N, then PyAV x N, ...) with no warm-up; and neither the runs
    nor --max-side were printed, the size column showing the source size even when frames were decoded smaller."""
    bench_decode = _tool("bench_decode", monkeypatch)
    calls = _decode_stub(bench_decode, monkeypatch)
    monkeypatch.setattr(sys, "argv", ["bench_decode.py", "--data", str(demo_dir / "clip_00.mp4"), "--runs", "2",
                                      "--max-side", "64"])
    bench_decode.main()
    # one untimed decode each, then the runs, the first backend moving one along each run
    assert calls == ["decord", "pyav", "opencv", "pyav", "opencv", "decord", "opencv", "decord", "pyav"]
    out = capsys.readouterr().out
    assert "median of --runs 2 after one untimed decode per backend; --max-side 64" in out
    assert "| clip_00.mp4 | 64x48 | 90 | 25 | 25 | 25 |" in out  # medians of 20 and 30: the 1000 of the warm-up out


def test_bench_decode_gives_a_failing_backend_a_row(demo_dir, monkeypatch, capsys):
    """A clip `auto` opens that one backend cannot (decord on a truncated MP4 with its index first) stopped the
    benchmark with a traceback."""
    bench_decode = _tool("bench_decode", monkeypatch)
    _decode_stub(bench_decode, monkeypatch, fails="pyav")
    monkeypatch.setattr(sys, "argv", ["bench_decode.py", "--data", str(demo_dir / "clip_00.mp4"), "--runs", "1"])
    bench_decode.main()
    assert "| clip_00.mp4 | 320x240 | 90 | 20 | - | 20 |  (pyav failed: cannot open it)" in capsys.readouterr().out


def test_bench_retrieval_knn_rows_warm_up_and_take_the_best(monkeypatch):
    """Each kNN row was one timed call, the first: no warm-up, no best-of, unlike the other sections."""
    bench_retrieval = _tool("_bench_retrieval", monkeypatch)
    calls = []
    monkeypatch.setattr(bench_retrieval, "retrieval_metrics",
                        lambda x, labels, with_nmi, chunk_mb: calls.append(chunk_mb))
    monkeypatch.setattr(bench_retrieval, "kmeans", lambda *args, **kwargs: None)
    bench_retrieval.bench_knn(sizes=(100,))
    assert calls == [64] * (1 + bench_retrieval.REPEATS) + [256] * (1 + bench_retrieval.REPEATS)


@pytest.mark.parametrize("script", ["_bench_davis.py", "_bench_retrieval.py"])
def test_the_eval_sections_run_alone_take_no_arguments(script):
    """Without a parser, `--help` ran the whole benchmark, and any argument was ignored."""
    assert _run(script, "--help").returncode == 0
    out = _run(script, "--runs", "1")
    assert out.returncode == 2 and "unrecognized arguments: --runs 1" in out.stderr


def test_bench_mining_loops_a_clip_with_b_frames_at_its_frame_rate(demo_dir, tmp_path, monkeypatch):
    """--rss's long clip repeats a clip's packets: the frame duration was taken from the first two packets, which
    with B-frames (the demo clips: pts 0, 1536, 512, ...) are not neighbours, so every seam left a 2-frame gap."""
    import av

    bench_mining = _tool("bench_mining", monkeypatch)
    looped = tmp_path / "looped.mp4"
    bench_mining.loop_video(demo_dir / "clip_00.mp4", looped, 3)
    with av.open(str(looped)) as container:
        pts = sorted(p.pts for p in container.demux(container.streams.video[0]) if p.size)
    gaps = {b - a for a, b in zip(pts, pts[1:])}
    assert len(pts) == 3 * 90 and len(gaps) == 1, sorted(gaps)


def test_bench_train_feeds_take_turns_going_first(monkeypatch):
    """The in-memory feed always went first in a round, so with --warmup 0 the first steps' one-time costs fell on
    it alone (fill_cost already alternated)."""
    import types

    import vidssl.train

    bench_train = _tool("bench_train", monkeypatch)
    order = []

    class Step:
        def __init__(self, *args):
            pass

        def __call__(self, batch, name, step):
            order.append((name, step))
            return types.SimpleNamespace(triplets=[])

    monkeypatch.setattr(vidssl.train, "TrainStep", Step)
    monkeypatch.setattr(vidssl.train, "build_model", lambda cfg: torch.nn.Linear(1, 1))

    def feed(name):
        return lambda chunk: iter([(None, name)] * 10)

    bench_train._alternate(None, torch.device("cpu"), "smallcnn", 64, {"memory": (feed("memory"), 0),
                                                                       "loader": (feed("loader"), 1)},
                           steps=2, warmup=0, rounds=2, batch_pairs=8)
    firsts = [order[0][0], order[5][0]]  # each round: 2 memory steps, 1 + 2 loader steps
    assert firsts == ["memory", "loader"], order
    # both feeds time the same step indices in a round
    assert sorted(s for n, s in order[:5] if n == "memory") == [1, 2] == sorted(s for n, s in order[:5]
                                                                                  if n == "loader")[1:]
