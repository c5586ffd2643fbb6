"""`torchrun --nproc_per_node=2` on CPU (gloo): both ranks end with the same weights, and only rank 0 writes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from train_utils import synthetic_pairs
from vidssl.train import CHECKPOINT, build_model, load_checkpoint, parameter_digest

WORKER = textwrap.dedent("""
    import json, os, sys
    from vidssl.config import load_config
    from vidssl.train import train
    pairs, run, out = sys.argv[1:4]
    stats = train(pairs, run, load_config(None, sys.argv[4:]), progress=False)
    with open(os.path.join(out, f"rank{os.environ['RANK']}.json"), "w") as fh:
        json.dump(stats, fh)
""")
SETTINGS = ["data.patch_size=32", "data.num_workers=0", "model.width=8", "model.embed_dim=32", "train.batch_pairs=8",
            "train.steps=12", "train.budget_minutes=null", "train.checkpoint_every=100", "train.log_every=4",
            "train.checkpoint_minutes=0",  # checkpoints only at the steps the tests expect, however slow the machine
            "train.image_every=0", "train.threads=1", "train.device=cpu",
            # the synthetic pairs have no backgrounds
            "miner.background_negatives=false", "loss.cycle_background=false"]


def torchrun(worker: str, tmp_path, *args) -> subprocess.CompletedProcess:
    """``worker`` (a script's text) under ``torchrun --nproc_per_node=2`` on the CPU, one thread per process."""
    script = tmp_path / "worker.py"
    script.write_text(worker)
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(script), *map(str, args)], env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600,
                          capture_output=True, text=True)


@pytest.mark.slow
def test_torchrun_two_cpu_processes_identical_weights(tmp_path):
    from vidssl.config import load_config

    pairs = synthetic_pairs(tmp_path / "pairs", num_videos=4, tracks_per_video=12, size=40)
    run = torchrun(WORKER, tmp_path, pairs, tmp_path / "run", tmp_path, *SETTINGS)
    assert run.returncode == 0, run.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["world_size"] == r1["world_size"] == 2 and r0["step"] == r1["step"] == 12
    assert r0["weights_sha256"] == r1["weights_sha256"]
    # rank 0's checkpoint holds those weights, and they moved away from the initialisation
    model = build_model(load_config(None, SETTINGS))
    initial = parameter_digest(model)
    model.load_state_dict(load_checkpoint(tmp_path / "run" / CHECKPOINT)["model"])
    assert parameter_digest(model) == r0["weights_sha256"] != initial
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert steps == [4, 8, 12]  # one writer


OWN_GROUP_WORKER = textwrap.dedent("""
    import json, os, sys, time
    import torch.distributed as dist
    from vidssl import train as T
    from vidssl.config import load_config
    pairs, run, out = sys.argv[1:4]
    dist.init_process_group("gloo")  # the caller's group: train() neither makes nor ends it
    write = T.atomic_write_json
    def slow_write(path, obj):  # rank 0 writes stats.json late: the other rank must wait for it
        time.sleep(1.0)
        write(path, obj)
    T.atomic_write_json = slow_write
    T.train(pairs, run, load_config(None, sys.argv[4:]), progress=False)
    seen = os.path.exists(os.path.join(run, "stats.json"))
    with open(os.path.join(out, f"rank{os.environ['RANK']}.json"), "w") as fh:
        json.dump({"stats_written": seen, "group_alive": dist.is_initialized()}, fh)
    dist.destroy_process_group()
""")


@pytest.mark.slow
def test_ranks_of_a_callers_group_return_after_rank_0_has_written(tmp_path):
    """With a process group the caller made, the ranks other than 0 returned before rank 0 wrote the final
    checkpoint and stats.json (the end-of-run barrier was only taken in a group train() had made)."""
    pairs = synthetic_pairs(tmp_path / "pairs", num_videos=4, tracks_per_video=12, size=40)
    run = torchrun(OWN_GROUP_WORKER, tmp_path, pairs, tmp_path / "run", tmp_path, *SETTINGS, "train.steps=4")
    assert run.returncode == 0, run.stderr[-3000:]
    for r in (0, 1):
        assert json.loads((tmp_path / f"rank{r}.json").read_text()) == {"stats_written": True, "group_alive": True}


TRACING_WORKER = textwrap.dedent("""
    import json, os, sys
    from vidssl import train as T
    from vidssl.config import load_config
    from vidssl.miners import MiningSchedule
    pairs, run, out, crash_at = sys.argv[1:5]
    phases, mine = [], MiningSchedule.mine
    def traced(self, emb, groups, step):
        result = mine(self, emb, groups, step)
        phases.append((step, result[2]))
        return result
    MiningSchedule.mine = traced
    call = T.TrainStep.__call__
    def crashing(self, x, groups, step):
        if step == int(crash_at):
            raise SystemExit(3)  # a killed run: the checkpoint of step 6 is what is left
        return call(self, x, groups, step)
    T.TrainStep.__call__ = crashing
    stats = T.train(pairs, run, load_config(None, sys.argv[5:]), progress=False)
    with open(os.path.join(out, f"rank{os.environ['RANK']}.json"), "w") as fh:
        json.dump({**stats, "phases": phases}, fh)
""")


@pytest.mark.slow
def test_ddp_processes_share_the_collapse_guard_and_resume_exactly(tmp_path):
    """The guard's running mean is of the whole global batch: every process takes the same miner phase on every
    step, and a run killed at step 8 and resumed from its step-6 checkpoint ends with the uninterrupted weights."""
    pairs = synthetic_pairs(tmp_path / "pairs", num_videos=4, tracks_per_video=12, size=40)
    # the guard threshold sits inside the batches' spread of negative cosines, so the phase changes during the run
    settings = SETTINGS + ["train.checkpoint_every=6", "miner.hard_start=0.0", "miner.guard_neg_cos=0.1",
                           "miner.guard_momentum=0.5"]
    def launch(run, out, crash_at):
        out.mkdir(exist_ok=True)
        return torchrun(TRACING_WORKER, tmp_path, pairs, run, out, crash_at, *settings)

    assert launch(tmp_path / "straight", tmp_path / "a", -1).returncode == 0
    r0, r1 = (json.loads((tmp_path / "a" / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["phases"] == r1["phases"]  # one phase per step for the whole run
    assert len({phase for _, phase in r0["phases"]}) == 2, r0["phases"]  # the guard did switch
    assert launch(tmp_path / "killed", tmp_path / "b", 8).returncode != 0
    assert load_checkpoint(tmp_path / "killed" / CHECKPOINT)["step"] == 6
    assert launch(tmp_path / "killed", tmp_path / "c", -1).returncode == 0
    resumed = [json.loads((tmp_path / "c" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [phase for _, phase in resumed[0]["phases"]] == [phase for step, phase in r0["phases"] if step >= 6]
    assert resumed[0]["weights_sha256"] == resumed[1]["weights_sha256"] == r0["weights_sha256"]
    # rank 0's whole state, BatchNorm's running statistics included (the digest covers parameters only)
    a, b = (load_checkpoint(tmp_path / run / CHECKPOINT)["model"] for run in ("straight", "killed"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_resuming_with_another_process_count_is_refused(tmp_path):
    from vidssl.config import load_config
    from vidssl.errors import ConfigError
    from vidssl.train import train

    pairs = synthetic_pairs(tmp_path / "pairs", num_videos=4, tracks_per_video=12, size=40)
    torchrun(TRACING_WORKER, tmp_path, pairs, tmp_path / "run", tmp_path, 8, *SETTINGS, "train.checkpoint_every=6")
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT)["step"] == 6
    with pytest.raises(ConfigError, match=r"trained by 2 process\(es\), this is 1"):
        train(pairs, tmp_path / "run", load_config(None, SETTINGS + ["train.checkpoint_every=6"]), progress=False)


HANGING_WORKER = textwrap.dedent("""
    import os, signal, sys, time
    from vidssl import train as T
    from vidssl.config import load_config
    pairs, run = sys.argv[1:3]
    call = T.TrainStep.__call__
    def hanging(self, x, groups, step):
        if step == 3 and os.environ["RANK"] == "1":
            # torchrun's SIGTERM once rank 0 fails ends it at once: the trainer's own handler would wait for a step
            # that never ends, and torchrun 30 s before its SIGKILL
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            time.sleep(3600)  # a rank stuck on stalled storage: alive, never reaching the next collective
        return call(self, x, groups, step)
    T.TrainStep.__call__ = hanging
    T.train(pairs, run, load_config(None, sys.argv[3:]), progress=False)
""")


@pytest.mark.slow
def test_a_hung_rank_fails_the_job_after_train_dist_timeout_minutes(tmp_path):
    """Without the setting the other rank waits for torch's default timeout (30 min with gloo)."""
    import time

    pairs = synthetic_pairs(tmp_path / "pairs", num_videos=4, tracks_per_video=12, size=40)
    started = time.monotonic()
    run = torchrun(HANGING_WORKER, tmp_path, pairs, tmp_path / "run", *SETTINGS, "train.dist_timeout_minutes=0.05")
    assert run.returncode != 0
    assert time.monotonic() - started < 120, "the job waited far longer than its 3 s timeout"
    assert "timed out" in run.stderr.lower() or "timeout" in run.stderr.lower(), run.stderr[-3000:]


SPLIT_WORKER = textwrap.dedent("""
    import os, sys
    from vidssl.config import load_config
    from vidssl.train import train
    pairs, run = sys.argv[1:3]
    if os.environ["RANK"] != "0":
        run += "_rank" + os.environ["RANK"]  # a node whose --out is its own local disk
    train(pairs, run, load_config(None, sys.argv[3:]), progress=False)
""")


@pytest.mark.slow
def test_ranks_that_see_different_run_folders_fail_at_once(tmp_path):
    """Rank 0 resumes from step 6; rank 1, on a folder without the checkpoint, would start at step 0. They used to
    train on with mismatched collectives, write a "done" checkpoint and hang at the last barrier."""
    import time

    pairs = synthetic_pairs(tmp_path / "pairs", num_videos=4, tracks_per_video=12, size=40)
    settings = SETTINGS + ["train.checkpoint_every=6"]
    torchrun(TRACING_WORKER, tmp_path, pairs, tmp_path / "run", tmp_path, 8, *settings)
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT)["step"] == 6
    started = time.monotonic()
    run = torchrun(SPLIT_WORKER, tmp_path, pairs, tmp_path / "run", *settings)
    assert run.returncode != 0 and time.monotonic() - started < 120
    assert "the processes do not see the same run: rank 0: step 6 of 12" in run.stderr, run.stderr[-3000:]
    assert "rank 1: step 0 of 12" in run.stderr and "storage every node shares" in run.stderr
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT)["step"] == 6  # nothing written over it


MIXED_CPU_WORKER = textwrap.dedent("""
    import os, sys
    import torch
    from vidssl.config import load_config
    from vidssl.train import train
    pairs, run = sys.argv[1:3]
    if os.environ["RANK"] == "1":  # a node whose CPU computes bf16 (AMX) beside one that does not
        torch.cpu._is_amx_tile_supported = lambda: True
    else:
        torch.cpu._is_amx_tile_supported = torch.cpu._is_avx512_bf16_supported = lambda: False
    train(pairs, run, load_config(None, sys.argv[3:]), progress=False)
""")


@pytest.mark.slow
def test_ranks_that_would_train_in_different_precisions_fail_at_once(tmp_path):
    pairs = synthetic_pairs(tmp_path / "pairs", num_videos=4, tracks_per_video=12, size=40)
    run = torchrun(MIXED_CPU_WORKER, tmp_path, pairs, tmp_path / "run", *SETTINGS, "train.precision=auto")
    assert run.returncode != 0
    assert "would train in different precisions (rank 0: fp32, rank 1: bf16)" in run.stderr, run.stderr[-3000:]
    assert "--set train.precision=fp32" in run.stderr and not (tmp_path / "run" / CHECKPOINT).exists()


SPLIT_CONFIG_WORKER = textwrap.dedent("""
    import os, sys
    from vidssl.config import load_config
    from vidssl.train import train
    pairs, run, out = sys.argv[1:4]
    extra = ["train.lr=0.5", "seed=7"] if os.environ["RANK"] == "1" else []  # a node with its own config file
    train(pairs, run, load_config(None, sys.argv[4:] + extra), progress=False)
""")


@pytest.mark.slow
def test_ranks_with_different_configs_fail_at_once(tmp_path):
    """Ranks compared their step, schedule, pairs and precision, not their config: one with another learning rate
    and seed trained on to exit 0, the ranks' weights apart, rank 0's checkpointed."""
    pairs = synthetic_pairs(tmp_path / "pairs", num_videos=4, tracks_per_video=12, size=40)
    run = torchrun(SPLIT_CONFIG_WORKER, tmp_path, pairs, tmp_path / "run", tmp_path, *SETTINGS)
    assert run.returncode != 0
    assert ("the processes run different configs (seed: rank 0 0, rank 1 7; train.lr: rank 0 0.02, rank 1 0.5)"
            in run.stderr), run.stderr[-3000:]
    assert not (tmp_path / "run" / CHECKPOINT).exists()


SLOW_WORKER = textwrap.dedent("""
    import os, sys, time
    from vidssl import train as T
    from vidssl.config import load_config
    pairs, run, out = sys.argv[1:4]
    call = T.TrainStep.__call__
    def slow(self, x, groups, step):
        if step == 1:
            open(os.path.join(out, f"pid{os.environ['RANK']}"), "w").write(str(os.getpid()))
        time.sleep(0.5)
        return call(self, x, groups, step)
    T.TrainStep.__call__ = slow
    T.train(pairs, run, load_config(None, sys.argv[4:]), progress=False)
""")


@pytest.mark.slow
def test_ranks_end_when_torchrun_is_killed(tmp_path):
    """`kill -9` of torchrun alone (the OOM killer's choice, or a lost ssh session's) left both ranks training
    without a parent and holding the run folder's lock against the rerun."""
    import signal
    import time

    pairs = synthetic_pairs(tmp_path / "pairs", num_videos=4, tracks_per_video=12, size=40)
    script = tmp_path / "worker.py"
    script.write_text(SLOW_WORKER)
    launcher = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                                 str(script), str(pairs), str(tmp_path / "run"), str(tmp_path), *SETTINGS,
                                 "train.steps=200"], env={**os.environ, "OMP_NUM_THREADS": "1"},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pid_files = [tmp_path / "pid0", tmp_path / "pid1"]
    deadline = time.monotonic() + 300
    while not all(p.exists() and p.read_text() for p in pid_files):
        assert time.monotonic() < deadline and launcher.poll() is None, "the ranks never started training"
        time.sleep(0.2)
    ranks = [int(p.read_text()) for p in pid_files]
    launcher.send_signal(signal.SIGKILL)
    launcher.wait()

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return not open(f"/proc/{pid}/stat").read().split(")")[-1].split()[0] in ("Z", "X")

    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in ranks) and time.monotonic() < deadline:
        time.sleep(0.2)
    survivors = [pid for pid in ranks if alive(pid)]
    for pid in survivors:
        os.kill(pid, signal.SIGKILL)
    assert not survivors, "ranks outlived their torchrun"


@pytest.mark.slow
def test_sigterm_to_torchrun_checkpoints_the_step_every_rank_finished(tmp_path):
    """A scheduler's preemption reaches torchrun, which passes SIGTERM to its ranks: every rank finishes its step,
    rank 0 checkpoints it (the ranks agree to stop in one collective, so none leaves the loop alone)."""
    import signal
    import time

    pairs = synthetic_pairs(tmp_path / "pairs", num_videos=4, tracks_per_video=12, size=40)
    script = tmp_path / "worker.py"
    script.write_text(SLOW_WORKER)
    run = tmp_path / "run"
    launcher = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                                 str(script), str(pairs), str(run), str(tmp_path), *SETTINGS, "train.steps=200",
                                 "train.log_every=1"], env={**os.environ, "OMP_NUM_THREADS": "1"},
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log = run / "log.jsonl"
    deadline = time.monotonic() + 300
    while not (log.is_file() and len(log.read_text().splitlines()) >= 3):
        assert time.monotonic() < deadline and launcher.poll() is None, "the ranks never trained 3 steps"
        time.sleep(0.1)
    launcher.send_signal(signal.SIGTERM)
    _, err = launcher.communicate(timeout=120)
    assert launcher.returncode != 0  # stopped, not finished
    logged = [json.loads(line)["step"] for line in log.read_text().splitlines()]
    saved = load_checkpoint(run / CHECKPOINT)  # none was due (checkpoint_every 100): this one is the signal's
    assert max(logged) >= 3 and saved["step"] >= max(logged), err[-3000:]
    assert saved["step"] < 200
