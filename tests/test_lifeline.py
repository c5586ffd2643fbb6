"""kill -9 of a training or mining process leaves no worker behind: the workers notice their starter is gone and
exit, instead of waiting forever on a queue while holding their memory."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from vidssl import lifeline
from vidssl.lifeline import process_start

needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table in /proc")


def _children(pid: int) -> set[int]:
    """Every live descendant of ``pid``."""
    parent_of = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent_of[int(entry.name)] = int(stat[stat.rfind(")") + 2:].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parent_of.items() if parent in frontier} - found
        found |= frontier
    return {p for p in found if process_start(p) is not None}


def _wait_for(condition, seconds: float):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    return condition()


def _kill_and_check_workers_exit(proc: subprocess.Popen, workers: set[int]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)  # reaped at once here; a killed process its own parent has not reaped yet counts as gone too
    left = _wait_for(lambda: not (workers & _alive(workers)) or None, 15)
    survivors = workers & _alive(workers)
    for pid in survivors:  # do not leave them to the next test
        os.kill(pid, signal.SIGKILL)
    assert left and not survivors, f"workers still alive 15 s after kill -9 of their starter: {survivors}"


def _kill_a_loader_once_ready(script: str) -> None:
    """Run ``script`` (it prints "ready" once its loader's workers run), kill -9 it, and check its workers end."""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        workers = _children(proc.pid)
        assert workers, "the loader started no worker process"
        _kill_and_check_workers_exit(proc, workers)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()  # left to the garbage collector, a ResourceWarning under `pytest -W error`


def _alive(pids: set[int]) -> set[int]:
    return {p for p in pids if process_start(p) is not None}


@needs_proc
def test_process_start_tells_a_live_process_from_a_zombie():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert process_start(proc.pid) and process_start(proc.pid) == process_start(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        assert _wait_for(lambda: process_start(proc.pid) is None, 5)  # a zombie until reaped: already gone
    finally:
        proc.wait(5)
    assert process_start(proc.pid) is None


@needs_proc
def test_process_start_is_the_start_time_unchanged_as_the_process_grows():
    """Another field of /proc/PID/stat (the virtual memory size, next to the start time) changes as the process
    maps memory: a worker (exit_with) would take its live parent for gone and exit. A process started later has a
    later start time."""
    import mmap

    before = process_start(os.getpid())
    if not before:  # /proc/PID/stat unreadable (a hidepid mount): the signal probe has no start time to compare
        pytest.skip("no start time in /proc here")
    grown = mmap.mmap(-1, 64 << 20)  # mapped, never touched: no memory used, the size field moves all the same
    try:
        assert process_start(os.getpid()) == before
    finally:
        grown.close()
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert int(process_start(proc.pid)) > int(before)
    finally:
        proc.kill()
        proc.wait(5)


@needs_proc
def test_training_loader_workers_exit_when_the_trainer_is_killed(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from train_utils import synthetic_pairs
        from vidssl.data import open_pairs
        from vidssl.data.dataset import PairPatches, make_loader
        from vidssl.data.sampler import PairBatchSampler
        from vidssl.train_config import DataConfig

        pairs = open_pairs(synthetic_pairs({str(tmp_path / "pairs")!r}, num_videos=2, tracks_per_video=8))
        cfg = DataConfig(patch_size=32, num_workers=2)
        sampler = PairBatchSampler(pairs.video, pairs.track, 4, 0, steps=1000)
        batches = iter(make_loader(PairPatches(pairs, cfg), sampler, cfg, pin_memory=False))
        next(batches)
        print("ready", flush=True)
        time.sleep(120)
    """)
    _kill_a_loader_once_ready(script)


@needs_proc
def test_retrieval_feature_workers_exit_when_the_evaluation_is_killed(tmp_path):
    """The retrieval's loader had no lifeline: after a kill -9 of `vidssl eval retrieval` (or pretrain's eval
    stage) its workers, the fork server and the resource tracker ran on, adopted by init, for good."""
    import cv2
    import numpy as np

    for i in range(64):
        cv2.imwrite(str(tmp_path / f"{i:02d}.png"), np.full((40, 40, 3), i * 4, np.uint8))
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from vidssl.eval.baselines import PixelFeatures
        from vidssl.eval.retrieval import extract_features
        from vidssl.eval.retrieval_data import ImageFiles

        class Slow(PixelFeatures):  # in this process: the workers keep decoding ahead while it works
            def embed(self, x):
                print("ready", flush=True)
                time.sleep(120)

        items = ImageFiles(sorted(Path({str(tmp_path)!r}).glob("*.png")), 32)
        extract_features({{"slow": Slow()}}, items, batch_size=2, num_workers=2, progress=False)
    """)
    _kill_a_loader_once_ready(script)


@needs_proc
def test_mining_workers_exit_when_vidssl_mine_is_killed(demo_dir, tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "vidssl", "mine", str(demo_dir), "--out", str(tmp_path / "pairs"),
                             "--workers", "2", "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # both pool workers running (the resource tracker is a child too): at least three descendants
        workers = _wait_for(lambda: (lambda c: c if len(c) >= 3 else None)(_children(proc.pid)), 60)
        assert workers and proc.poll() is None, "mining ended before its workers could be seen; use longer clips"
        _kill_and_check_workers_exit(proc, workers)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_without_proc_a_live_process_is_alive(monkeypatch):
    """macOS and BSD have no /proc: the pid is probed with signal 0 instead (every worker exited at once when the
    missing /proc was read as "the starter is gone")."""
    real_isdir = os.path.isdir
    monkeypatch.setattr(os.path, "isdir", lambda p: False if str(p).startswith("/proc") else real_isdir(p))
    assert process_start(os.getpid()) == ""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(10)
    assert process_start(proc.pid) is None


# a stand-in for torchrun, run as `python .../torchrun` (as its shebang line runs it): it starts the rank through
# a shell (as `torchrun --no-python bash -c ...` or a wrapper script without exec) in a session of its own, as
# torchrun does
FAKE_LAUNCHER = textwrap.dedent("""
    import os, shlex, subprocess, sys, time
    script, record, delay, mode = sys.argv[1:5]
    command = " ".join(map(shlex.quote, [sys.executable, script, record, delay])) + "; sleep 60"
    rank = subprocess.Popen(["bash", "-c", command], start_new_session=True,
                            env={**os.environ, "TORCHELASTIC_RUN_ID": "test", "RANK": "0"})
    print(rank.pid, flush=True)
    if mode == "exit":  # dies before the rank starts watching it
        os._exit(0)
    time.sleep(120)
""")
RANK = textwrap.dedent("""
    import os, sys, time
    from vidssl import lifeline
    time.sleep(float(sys.argv[2]))
    with open(sys.argv[1], "w") as fh:
        fh.write(f"{os.getpid()} {lifeline.launcher_pid()}")
    lifeline.exit_with_launcher()
    with open(sys.argv[1], "a") as fh:  # watching now: a kill before this line is found by the watcher's own lookup
        fh.write(" watching")
    time.sleep(60)
""")


def _launch(tmp_path: Path, delay: float, mode: str) -> tuple[subprocess.Popen, int, Path]:
    """(the fake launcher, its shell's pid (the rank's session), the file the rank writes its pid into)."""
    script, record, fake = tmp_path / "rank.py", tmp_path / "rank.txt", tmp_path / "torchrun"
    script.write_text(RANK)
    fake.write_text(FAKE_LAUNCHER)
    launcher = subprocess.Popen([sys.executable, str(fake), str(script), str(record), str(delay), mode],
                                stdout=subprocess.PIPE, text=True)
    return launcher, int(launcher.stdout.readline()), record


def _rank_pid(record: Path, watching: bool = False) -> tuple[int, int | None]:
    """(the rank's pid, the launcher it found); with ``watching``, once it watches that launcher: killed before,
    on a machine whose pid 1 runs Python the rank took itself for adopted by a launcher and lived on."""
    def written() -> str:
        text = record.read_text() if record.exists() else ""
        return text if text.endswith(" watching") or not watching else ""

    text = _wait_for(written, 30)
    assert text, "the rank never started"
    pid, launcher = text.split()[:2]
    return int(pid), None if launcher == "None" else int(launcher)


@needs_proc
def test_a_rank_behind_a_shell_exits_when_its_launcher_is_killed(tmp_path):
    """The rank's parent is a shell that outlives torchrun: watching the parent left the rank training."""
    launcher, shell, record = _launch(tmp_path, 0.0, "stay")
    try:
        pid, found = _rank_pid(record, watching=True)
        assert found == launcher.pid  # the launcher, through the shell
        _kill_and_check_workers_exit(launcher, {pid})
        assert process_start(shell) is not None  # the shell lives on: it was not what the rank watched
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
        launcher.stdout.close()
        os.killpg(shell, signal.SIGKILL)


@needs_proc
def test_a_rank_whose_launcher_died_before_it_started_exits(tmp_path):
    """torchrun killed while its ranks were still importing: the rank, adopted by init, watched init for ever."""
    if b"python" in Path("/proc/1/cmdline").read_bytes():
        pytest.skip("pid 1 runs Python here: it could be a launcher, so an adopted rank is not told apart")
    launcher, shell, record = _launch(tmp_path, 1.0, "exit")
    launcher.wait(10)
    try:
        pid, found = _rank_pid(record)
        assert found is None
        assert _wait_for(lambda: process_start(pid) is None, 10), "the orphaned rank kept running"
    finally:
        launcher.stdout.close()
        os.killpg(shell, signal.SIGKILL)


@needs_proc
def test_a_single_process_torchrun_rank_is_watched_too():
    """With --nproc_per_node=1 (WORLD_SIZE 1) no lifeline was armed."""
    code = ("import os, threading\nos.environ.update(TORCHELASTIC_RUN_ID='x', WORLD_SIZE='1')\n"
            "from vidssl.train import _init_distributed\n_init_distributed('cpu')\n"
            "print(sorted(t.name for t in threading.enumerate()))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "vidssl-lifeline" in out.stdout, out.stderr[-2000:]


@pytest.mark.parametrize("argv, launcher", [
    ([b"torchrun", b"--nproc_per_node=2", b"train.py"], True),
    ([b"/usr/bin/python3", b"/opt/venv/bin/torchrun", b"--nnodes=2", b"train.py"], True),  # through its shebang
    ([b"python3.11", b"-u", b"-X", b"dev", b"-m", b"torch.distributed.run", b"train.py"], True),
    ([b"python", b"-mtorch.distributed.launch", b"train.py"], True),
    ([b"bash", b"-c", b"vidssl train --out runs/torchrun1"], False),  # names it in an argument only
    ([b"python", b"torchrun_exp/train.py"], False),
    ([b"python", b"-c", b"import torch.distributed.run"], False),
    ([b"python", b"-m", b"vidssl", b"pretrain", b"--out", b"torchrun"], False),
    ([], False),
])
def test_a_launcher_is_known_by_the_program_it_runs(argv, launcher):
    """Matched anywhere in an ancestor's command line, a shell with "torchrun" in an argument was taken for the
    launcher: the rank watched the shell, which outlives torchrun, and trained on after a kill -9 of torchrun."""
    assert lifeline.is_launcher(argv) is launcher


def test_a_second_training_in_one_process_starts_no_second_watcher(monkeypatch):
    """train() starts the launcher watch under torchrun; a script calling train() twice started a thread each time."""
    import threading

    monkeypatch.setattr(lifeline, "launcher_pid", lambda: os.getpid())  # a launcher that stays alive: this process
    lifeline.exit_with_launcher.cache_clear()

    def watchers() -> int:
        return sum(t.name == "vidssl-lifeline" for t in threading.enumerate())

    before = watchers()
    lifeline.exit_with_launcher()
    lifeline.exit_with_launcher()
    assert watchers() == before + 1


# ----------------------------------------------------------------------------------------------------------------
# from a mutation review: a reused pid, a loader worker's Ctrl-C


def test_a_watched_pid_reused_by_another_process_counts_as_gone(monkeypatch):
    """Kills lf01 (the watcher compares ``process_start(pid) is None`` instead of ``!= start``): the starter killed
    and its pid reused by a new process (pid_max wraps, containers with small pid spaces) kept the worker alive for
    ever. The start time is what tells the processes apart; no test changed it."""
    import threading

    from vidssl import lifeline

    starts = iter(["1000", "1000", "2000"])  # the starter, then another process under the same pid
    monkeypatch.setattr(lifeline, "process_start", lambda pid: next(starts, "2000"))
    exited = threading.Event()

    def fake_exit(code):  # the watcher thread (a daemon) stays here instead of ending the test process (an
        exited.set()  # exception ending the thread is reported by pytest as a warning of whichever test runs then)
        threading.Event().wait()

    monkeypatch.setattr(lifeline.os, "_exit", fake_exit)
    lifeline.exit_with(12345, poll_seconds=0.01)
    assert exited.wait(3), "the worker kept running after its starter's pid was taken by another process"


def test_a_loader_worker_ignores_ctrl_c_and_watches_its_starter():
    """Kills lf02 (``signal.signal(SIGINT, SIG_IGN)`` dropped from loader_worker_init): the one test that sends
    Ctrl-C to a training's process group passes without it, because torch's worker loop swallows the
    KeyboardInterrupt and ``_batches`` ends the loop quietly in a single process. Under DDP ``_batches`` re-raises
    ("DataLoader worker exited unexpectedly"), so the promise "the loader's workers ignoring the Ctrl-C" matters
    there and is tested nowhere directly."""
    import subprocess
    import sys

    code = ("import os, signal, threading\nfrom vidssl.lifeline import loader_worker_init\n"
            "loader_worker_init(0, parent_pid=os.getppid())\n"
            "print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN,"
            " any(t.name == 'vidssl-lifeline' for t in threading.enumerate()))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.split() == ["True", "True"], out.stderr[-2000:]
