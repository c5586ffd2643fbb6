"""The trainer end to end on tiny synthetic pairs: it learns, logs, stops on budget, continues, refuses mismatched
runs, and stops on a non-finite loss keeping the last good checkpoint."""
from __future__ import annotations

import json
import logging
import math
import os
import re
import signal
import sys
import time
from importlib import metadata

import numpy as np
import pytest
import torch
import yaml

from test_io import strict_loads
from train_utils import synthetic_pairs
from vidssl.config import git_sha, load_config
from vidssl.errors import ConfigError, VidsslError
from vidssl.train import (CHECKPOINT, TrainingDiverged, TrainStep, build_model, load_checkpoint, lr_factor,
                          resolve_precision, train)
from vidssl.train_config import TrainConfig

TINY = ["data.patch_size=32", "data.num_workers=0", "model.width=8", "model.embed_dim=32", "train.batch_pairs=12",
        "train.budget_minutes=null", "train.log_every=5", "train.checkpoint_every=10", "train.image_every=10",
        "train.warmup_steps=5", "train.threads=1",
        "train.checkpoint_minutes=0",  # checkpoints only at the steps the tests expect, however slow the machine
        "miner.background_negatives=false", "loss.cycle_background=false"]  # the synthetic pairs have no backgrounds


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return synthetic_pairs(tmp_path_factory.mktemp("pairs") / "pairs", num_videos=4, tracks_per_video=12, size=40)


def test_learns_and_writes_its_run_folder(pairs, tmp_path):
    run = tmp_path / "run"
    stats = train(pairs, run, load_config(None, TINY + ["train.steps=60", "miner.hard_start=0.5"]), progress=False)
    assert stats["step"] == stats["total_steps"] == 60 and stats["stopped"] == "done"
    records = [strict_loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(5, 61, 5))
    first, last = records[0], records[-1]
    for key in ("loss", "active", "d_ap", "d_an", "lr", "triplets_per_s", "pos_cos", "neg_cos", "neg_cos_ema",
                "spread", "phase"):
        assert key in last
    assert {r["phase"] for r in records} >= {"warmup", "main"}
    from vidssl.data import open_pairs

    batches_per_epoch = len(open_pairs(pairs)) // 12  # whole batches of 12 pairs
    assert [r["epoch"] for r in records] == pytest.approx([r["step"] / batches_per_epoch for r in records])
    # it learned: positives closer than the other videos' patches, by a wide margin
    assert last["pos_cos"] - last["neg_cos"] > 0.4 and last["loss"] < first["loss"]
    assert last["spread"] > 0.3
    events = list((run / "tb").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 1000  # scalars and images
    assert (run / "config.yaml").is_file() and json.loads((run / "stats.json").read_text())["step"] == 60
    ckpt = load_checkpoint(run / CHECKPOINT)
    assert ckpt["step"] == 60 and set(ckpt) >= {"model", "optimizer", "scaler", "miner", "config"}
    again = train(pairs, run, load_config(None, TINY + ["train.steps=60", "miner.hard_start=0.5"]), progress=False)
    assert again["step"] == 60 and again["minutes"] == 0.0  # a finished run is not trained again


def test_budget_stop_then_continue(pairs, tmp_path):
    cfg = load_config(None, TINY + ["train.steps=400", "train.fit_budget=false"])
    stats = train(pairs, tmp_path / "run", cfg, budget_minutes=0.002, progress=False)
    assert stats["stopped"] == "budget" and 0 < stats["step"] < 400
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT)["step"] == stats["step"]
    # the first session ran under other code: its record must survive the resume, beside the new session's
    ckpt = load_checkpoint(tmp_path / "run" / CHECKPOINT)
    assert [s["start_step"] for s in ckpt["sessions"]] == [0] and ckpt["sessions"][0]["git_sha"] == git_sha()
    ckpt["sessions"][0]["git_sha"] = "older-code"
    assert 0 < ckpt["trained_seconds"] <= stats["minutes"] * 60
    ckpt["trained_seconds"] = 600.0  # the first session's ten minutes, to be told apart from this one's
    torch.save(ckpt, tmp_path / "run" / CHECKPOINT)
    torn = tmp_path / "run" / ".tmp-checkpoint.pt.x1y2z3"  # a checkpoint half written when a session was killed
    torn.write_bytes(b"\0" * 1000)
    more = train(pairs, tmp_path / "run", cfg, budget_minutes=0.002, resume=True, progress=False)
    assert more["step"] > stats["step"]
    # minutes: this session's; over both sessions, the first's ten plus this one's (up to its last checkpoint,
    # the end of the session)
    assert more["sessions"] == 2 and more["minutes_all_sessions"] == pytest.approx(10 + more["minutes"], abs=0.01)
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT)["trained_seconds"] == pytest.approx(
        600 + more["minutes"] * 60, abs=0.5)
    assert not torn.exists()
    sessions = load_checkpoint(tmp_path / "run" / CHECKPOINT)["sessions"]
    assert [(s["start_step"], s["git_sha"]) for s in sessions] == [(0, "older-code"), (stats["step"], git_sha())]
    recorded = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert recorded["sessions"] == sessions
    # the budget given on the command line, not the config's (none), is what config.yaml says the run had
    assert cfg.train.budget_minutes is None and recorded["config"]["train"]["budget_minutes"] == 0.002
    assert sessions[1]["torch"] == metadata.version("torch")
    # log.jsonl's (TensorBoard's speed/) lines of a resumed session: "minutes" begins again, the sum goes on
    third = train(pairs, tmp_path / "run", cfg, budget_minutes=0.01, resume=True, progress=False)
    lines = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    resumed = [line for line in lines if line["step"] > more["step"]]
    assert third["step"] > more["step"] and resumed
    for line in resumed:
        assert line["minutes_all_sessions"] - line["minutes"] == pytest.approx(10 + more["minutes"], abs=0.01)
    assert not any("minutes_all_sessions" in line for line in lines if line["step"] <= stats["step"])


def _training_process(program: list[str], pairs, run, settings: list[str], logged_steps: int):
    """`vidssl train PAIRS --out RUN --set ...` run by ``program`` in a session of its own (its process group: the
    trainer and its loader's workers), returned once ``logged_steps`` steps are in RUN/log.jsonl."""
    import subprocess

    command = program + ["train", str(pairs), "--out", str(run)] + [a for kv in settings for a in ("--set", kv)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    log = run / "log.jsonl"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None and (
            not log.is_file() or len(log.read_text().splitlines()) < logged_steps):
        time.sleep(0.05)
    return proc


def _stderr_when_done(proc, timeout: float = 180) -> str:
    """The stderr of ``proc`` once it exits; one still running after ``timeout`` is killed with its process group
    (a trainer that missed its signal went on training past the test, for 27 minutes once, on a loaded machine)."""
    import subprocess

    try:
        return proc.communicate(timeout=timeout)[1]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise


@pytest.mark.parametrize("signum, code, times", [(signal.SIGINT, 130, 1), (signal.SIGTERM, 143, 1),
                                                 (signal.SIGTERM, 143, 2)])
def test_a_signal_while_training_keeps_the_step_in_flight(pairs, tmp_path, signum, code, times):
    """Ctrl-C (to the whole process group, the loader's worker too) or SIGTERM to the trainer: the step in flight
    finishes and is checkpointed. The run lost everything since its last periodic checkpoint (here, with none
    due, all of it), and a worker killed by the signal failed the trainer's next fetch. SIGTERM twice, as Slurm
    sends it to every process and torchrun relays it to its ranks: the second stopped at once, exit 130, no
    checkpoint."""

    run = tmp_path / "run"
    settings = TINY + ["train.steps=100000", "train.checkpoint_every=100000", "train.log_every=1",
                       "data.num_workers=1"]
    proc = _training_process([sys.executable, "-m", "vidssl"], pairs, run, settings, logged_steps=3)
    log = run / "log.jsonl"
    # Ctrl-C reaches the process group, the loader's worker too; `timeout`, `docker stop` and torchrun send SIGTERM
    # to the trainer
    if signum == signal.SIGINT:
        os.killpg(proc.pid, signum)
    else:
        for _ in range(times):
            proc.send_signal(signum)
            time.sleep(0.005)
    err = _stderr_when_done(proc)
    assert proc.returncode == code, err
    assert "train: stopping after this step, once its checkpoint is written" in err
    logged = [json.loads(line)["step"] for line in log.read_text().splitlines()]
    saved = load_checkpoint(run / CHECKPOINT)
    assert saved["step"] >= max(logged) >= 3  # none was due: this one is the signal's, at the step it reached
    # and the same run goes on from there
    stats = train(pairs, run, load_config(None, settings + ["train.fit_budget=false"]), budget_minutes=0.02,
                  progress=False)
    assert stats["step"] - stats["session_steps"] == saved["step"] and stats["session_steps"] >= 1


SLOW_LOADER = """
import sys, time
from vidssl.data import dataset
_fetch = dataset.PairPatches.__getitem__


def slow(self, item):  # the worker imports this script too (forkserver): its batches take a second each
    time.sleep(1.0)
    return _fetch(self, item)


dataset.PairPatches.__getitem__ = slow
if __name__ == "__main__":
    from vidssl.cli import main
    sys.exit(main(sys.argv[1:]))
"""


def test_sigterm_to_every_process_of_a_job_keeps_the_last_step(pairs, tmp_path):
    """Slurm (scancel, the time limit) sends SIGTERM to every process of the job: the loader's worker died of it
    while the trainer waited for its batch, and the trainer's fetch failed ("worker exited unexpectedly") before it
    could checkpoint the steps it had finished: the run fell back to its last periodic checkpoint (here: none)."""

    run, script = tmp_path / "run", tmp_path / "slow_loader.py"
    script.write_text(SLOW_LOADER)
    settings = TINY + ["train.steps=100000", "train.checkpoint_every=100000", "train.log_every=1",
                       "data.num_workers=1", "data.prefetch=1"]
    proc = _training_process([sys.executable, str(script)], pairs, run, settings, logged_steps=2)
    log = run / "log.jsonl"
    time.sleep(0.3)  # the trainer is waiting for its next batch (a step takes milliseconds, a batch a second)
    os.killpg(proc.pid, signal.SIGTERM)
    err = _stderr_when_done(proc)
    assert proc.returncode == 143, err
    logged = [json.loads(line)["step"] for line in log.read_text().splitlines()]
    assert (run / CHECKPOINT).is_file(), err
    assert load_checkpoint(run / CHECKPOINT)["step"] == max(logged) >= 2


def test_a_checkpoint_with_an_earlier_versions_fingerprint_resumes(pairs, tmp_path):
    from vidssl.data import open_pairs

    cfg = load_config(None, TINY + ["train.steps=400", "train.fit_budget=false"])
    stats = train(pairs, tmp_path / "run", cfg, budget_minutes=0.002, progress=False)
    ckpt = load_checkpoint(tmp_path / "run" / CHECKPOINT)
    ckpt["pairs_fingerprint"] = open_pairs(pairs).legacy_fingerprint  # as written before the fingerprint changed
    torch.save(ckpt, tmp_path / "run" / CHECKPOINT)
    assert train(pairs, tmp_path / "run", cfg, budget_minutes=0.002, progress=False)["step"] > stats["step"]
    ckpt["pairs_fingerprint"] = "0123456789abcdef"
    torch.save(ckpt, tmp_path / "run" / CHECKPOINT)
    with pytest.raises(ConfigError, match="trained on other pairs"):
        train(pairs, tmp_path / "run", cfg, budget_minutes=0.002, progress=False)


def test_a_run_started_under_another_batch_plan_resumes_and_says_its_batches_differ(pairs, tmp_path, caplog):
    import logging

    cfg = load_config(None, TINY + ["train.steps=400", "train.fit_budget=false"])
    stats = train(pairs, tmp_path / "run", cfg, budget_minutes=0.002, progress=False)
    ckpt = load_checkpoint(tmp_path / "run" / CHECKPOINT)
    assert ckpt["batch_plan"] == 3
    with caplog.at_level(logging.WARNING):  # the same version: nothing to say
        stats = train(pairs, tmp_path / "run", cfg, budget_minutes=0.002, progress=False)
    assert "made otherwise" not in caplog.text
    for written_before in ("the epoch plans were reseeded", "the per-step draws had streams of their own"):
        ckpt = load_checkpoint(tmp_path / "run" / CHECKPOINT)
        if written_before.startswith("the epoch"):
            del ckpt["batch_plan"]
        else:
            ckpt["batch_plan"] = 2
        torch.save(ckpt, tmp_path / "run" / CHECKPOINT)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert train(pairs, tmp_path / "run", cfg, budget_minutes=0.002, progress=False)["step"] > stats["step"]
        assert "was started by an earlier vidssl, whose batches or per-step random draws were made otherwise" \
            in caplog.text, written_before
        stats = json.loads((tmp_path / "run" / "stats.json").read_text())


def train_killed_at(monkeypatch, step: int, pairs, run, cfg, **kwargs) -> None:
    """Train ``run`` until the step of index ``step`` begins, then stop as Ctrl-C does there (a KeyboardInterrupt
    inside the step: the checkpoints before it are what is left)."""
    call = TrainStep.__call__

    def killed(self, x, groups, index):
        if index == step:
            raise KeyboardInterrupt
        return call(self, x, groups, index)

    with monkeypatch.context() as m:
        m.setattr(TrainStep, "__call__", killed)
        with pytest.raises(KeyboardInterrupt):
            train(pairs, run, cfg, progress=False, **kwargs)


def nan_embeddings_from(monkeypatch, step: int) -> None:
    """From the step of index ``step`` on, the network's outputs are NaN (its forward scaled by NaN)."""
    call = TrainStep.__call__

    def poisoned(self, x, groups, index):
        if index >= step and not hasattr(self.net, "healthy_forward"):
            self.net.healthy_forward = self.net.forward
            self.net.forward = lambda *a, **k: self.net.healthy_forward(*a, **k) * float("nan")
        return call(self, x, groups, index)

    monkeypatch.setattr(TrainStep, "__call__", poisoned)


def simulated_clock(monkeypatch, seconds_per_step):
    """Training timed by a clock that moves ``seconds_per_step(step)`` a step and not otherwise: the machine's load,
    and the 3 s the first train() of a process spends importing torch's compiler stack (under its budget), timed
    by the wall clock, failed budget tests run alone or on a busy CI machine."""
    import types

    from vidssl import train as trainer

    clock = types.SimpleNamespace(now=0.0)
    monkeypatch.setattr(trainer, "time", types.SimpleNamespace(monotonic=lambda: clock.now,
                                                               perf_counter=time.perf_counter))
    step_fn = trainer.TrainStep.__call__

    def timed_step(self, x, groups, step):
        clock.now += seconds_per_step(step)
        return step_fn(self, x, groups, step)

    monkeypatch.setattr(trainer.TrainStep, "__call__", timed_step)


def test_budget_fits_the_schedule(pairs, tmp_path, monkeypatch):
    simulated_clock(monkeypatch, lambda step: 0.05)  # 3 s of budget: 60 steps
    cfg = load_config(None, TINY + ["train.steps=100000"])
    stats = train(pairs, tmp_path / "run", cfg, budget_minutes=0.05, progress=False)
    assert stats["total_steps"] < 100000 and stats["step"] <= stats["total_steps"]
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT)["fitted"] is True


def test_a_budget_spent_before_the_fit_stops_unfitted_and_a_rerun_fits(pairs, tmp_path, monkeypatch):
    """The step the fit follows stalled past the budget: the fit set the run's length below the steps done, it ended
    "done" at the warm-up's learning rate, and every rerun, whatever its budget, said it was complete."""
    stall = {6: 2.5}  # the 7th step, after which the step count is fitted, outlasts the 1.2 s budget
    simulated_clock(monkeypatch, lambda step: stall.get(step, 0.01))
    cfg = load_config(None, TINY + ["train.steps=60", "train.checkpoint_every=1000", "train.image_every=0"])
    stats = train(pairs, tmp_path / "run", cfg, budget_minutes=0.02, progress=False)
    assert (stats["stopped"], stats["step"], stats["total_steps"]) == ("budget", 7, 60)
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT)["fitted"] is False
    stall.clear()
    stats = train(pairs, tmp_path / "run", cfg, budget_minutes=5, progress=False)  # more time: continued, fitted
    assert (stats["stopped"], stats["step"], stats["total_steps"]) == ("done", 60, 60)
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT)["fitted"] is True


def test_a_run_that_slows_down_after_the_fit_is_refitted_and_still_anneals(pairs, tmp_path, monkeypatch):
    simulated_clock(monkeypatch, lambda step: 0.02 if step < 10 else 0.05)  # busy once the step count is fitted
    cfg = load_config(None, TINY + ["train.steps=100000", "train.checkpoint_every=1000", "train.image_every=0"])
    stats = train(pairs, tmp_path / "run", cfg, budget_minutes=0.04, progress=False)
    assert stats["stopped"] == "done" and stats["step"] == stats["total_steps"]  # not cut off by the budget
    assert stats["lr"] < 0.05 * cfg.train.lr  # the cosine schedule got (nearly) to its end


def test_a_budget_that_fits_fewer_steps_than_the_warm_up_still_anneals(pairs, tmp_path, monkeypatch, caplog):
    """0.2 s a step and a 4-second budget fit about 11 steps, under a 40-step warm-up: the run ended 'done' with the
    lr still rising, at 11/40 of its peak."""
    import logging

    simulated_clock(monkeypatch, lambda step: 0.2)
    cfg = load_config(None, TINY + ["train.steps=100000", "train.warmup_steps=40", "train.checkpoint_every=1000",
                                    "train.image_every=0"])
    with caplog.at_level(logging.INFO, logger="vidssl.train"):
        stats = train(pairs, tmp_path / "run", cfg, budget_minutes=0.07, progress=False)
    fitted = int(re.search(r"fitted (\d+) steps to the", caplog.text).group(1))
    assert fitted < 40 and "at the end of the warm-up" not in caplog.text
    assert stats["stopped"] == "done" and stats["step"] == stats["total_steps"]
    assert stats["lr"] < 0.1 * cfg.train.lr  # annealed, not warming up


def test_a_run_slow_at_first_is_fitted_again_at_the_end_of_the_warm_up(pairs, tmp_path, monkeypatch, caplog):
    """On a simulated clock (0.17 s a step for 7 steps, then 0.08 s): timed by the wall clock, the test failed
    whenever other work slowed the machine down (its run then stopped at the budget, not done)."""
    import logging

    # as a loader filling its prefetch queue slows the first steps
    simulated_clock(monkeypatch, lambda step: 0.17 if step < 7 else 0.08)
    cfg = load_config(None, TINY + ["train.steps=100000", "train.warmup_steps=12", "miner.hard_start=0.5",
                                    "train.checkpoint_every=1000", "train.image_every=0"])
    with caplog.at_level(logging.INFO, logger="vidssl.train"):
        # long enough that the first fit is over 5x the warm-up (60 steps): a shorter schedule's warm-up is a
        # fifth of it, which a refit would lengthen, so none is made
        stats = train(pairs, tmp_path / "run", cfg, budget_minutes=0.3, progress=False)
    first = int(re.search(r"fitted (\d+) steps to the", caplog.text).group(1))
    assert first >= 60
    again = int(re.search(r"fitted (\d+) steps at the end of the warm-up", caplog.text).group(1))
    assert again > 1.5 * first  # the steps after the slow start are several times faster
    # (a machine that gets busy later may shorten it again, as it would any fit)
    assert stats["stopped"] == "done" and stats["step"] == stats["total_steps"] > first
    assert stats["lr"] < 0.05 * cfg.train.lr  # annealed to the new count


def test_a_resumed_run_stopped_before_it_logs_keeps_the_last_metrics(pairs, tmp_path, monkeypatch):
    cfg = load_config(None, TINY + ["train.steps=400", "train.fit_budget=false", "train.checkpoint_every=10"])
    # the checkpoint of step 10 (logged at step 10) is what is left
    train_killed_at(monkeypatch, 12, pairs, tmp_path / "run", cfg)
    saved = load_checkpoint(tmp_path / "run" / CHECKPOINT)
    assert saved["step"] == 10 and "loss" in saved["metrics"]
    again = train(pairs, tmp_path / "run", cfg, budget_minutes=1e-9, resume=True, progress=False)
    assert again["step"] == 11 and again["stopped"] == "budget"  # stopped before its next log step (15)
    assert again["loss"] == saved["metrics"]["loss"]
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT)["metrics"]["loss"] == saved["metrics"]["loss"]


def test_a_run_fitted_to_a_budget_resumes_without_one(pairs, tmp_path, monkeypatch):
    simulated_clock(monkeypatch, lambda step: 0.05)  # 3 s of budget: 60 steps, killed at the 12th
    cfg = load_config(None, TINY + ["train.steps=100000", "train.checkpoint_every=10", "train.image_every=0"])
    train_killed_at(monkeypatch, 12, pairs, tmp_path / "run", cfg, budget_minutes=0.05)
    saved = load_checkpoint(tmp_path / "run" / CHECKPOINT)
    assert saved["fitted"] and saved["step"] == 10 and saved["total_steps"] < 100000
    # a session that stops before it could fit keeps the run fitted: read as unfitted, a resume with a budget fitted
    # it afresh at its 7th step (only a projected overrun refits a fitted run), and its checkpoint said unfitted
    once = train(pairs, tmp_path / "run", cfg, budget_minutes=1e-9, resume=True, progress=False)
    assert (once["stopped"], once["step"], once["total_steps"]) == ("budget", 11, saved["total_steps"])
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT)["fitted"] is True
    again = train(pairs, tmp_path / "run", cfg, budget_minutes=None, resume=True, progress=False)  # as --resume
    assert again["stopped"] == "done" and again["step"] == saved["total_steps"]


def test_a_run_killed_before_its_stats_are_written_writes_them_on_the_rerun(pairs, tmp_path):
    """Killed between the final checkpoint and stats.json, every rerun found the run complete and returned without
    writing it (nor the weights' digest), which pretrain and users read."""
    run = tmp_path / "run"
    cfg = load_config(None, TINY + ["train.steps=10", "train.image_every=0"])
    first = train(pairs, run, cfg, progress=False)
    (run / "stats.json").unlink()
    again = train(pairs, run, cfg, progress=False)
    written = strict_loads((run / "stats.json").read_text())
    assert written["weights_sha256"] == again["weights_sha256"] == first["weights_sha256"]
    assert written["step"] == written["total_steps"] == 10 and written["stopped"] == "done"
    # or an earlier session's stats.json stayed (it stopped at the budget; the next finished and was killed before
    # its own): the pipeline and the export read a budget stop of a finished run
    (run / "stats.json").write_text(json.dumps({**written, "step": 4, "stopped": "budget", "minutes": 9.0}))
    train(pairs, run, cfg, progress=False)
    rewritten = strict_loads((run / "stats.json").read_text())
    assert (rewritten["step"], rewritten["stopped"], rewritten["minutes"]) == (10, "done", 0.0)
    # a finished run's own stats.json is kept as it is (its minutes are the training's, not the rerun's 0)
    (run / "stats.json").write_text(json.dumps({**written, "minutes": 3.5}))
    train(pairs, run, cfg, progress=False)
    assert strict_loads((run / "stats.json").read_text())["minutes"] == 3.5


def test_a_signal_during_the_final_checkpoint_stops_after_stats_json(pairs, tmp_path, monkeypatch):
    """Ctrl-C while the last step's checkpoint was written: the KeyboardInterrupt came before stats.json, so a
    finished training read as an interrupted one (the pipeline and `vidssl train` said so) until a rerun."""
    from vidssl import train as trainer

    save = trainer._save_checkpoint

    def save_then_ctrl_c(path, payload):
        save(path, payload)
        if payload["step"] == payload["total_steps"]:
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(trainer, "_save_checkpoint", save_then_ctrl_c)
    run = tmp_path / "run"
    cfg = load_config(None, TINY + ["train.steps=4", "train.image_every=0", "train.checkpoint_every=100"])
    with pytest.raises(KeyboardInterrupt):
        train(pairs, run, cfg, progress=False)
    written = strict_loads((run / "stats.json").read_text())
    assert (written["step"], written["total_steps"], written["stopped"]) == (4, 4, "done")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handlers are the caller's again
    # or while stats.json is made (the weights' digest of a large model takes a while): held as well
    monkeypatch.setattr(trainer, "_save_checkpoint", save)
    digest = trainer.parameter_digest

    def ctrl_c_then_digest(model):
        signal.raise_signal(signal.SIGINT)
        return digest(model)

    monkeypatch.setattr(trainer, "parameter_digest", ctrl_c_then_digest)
    again = tmp_path / "again"
    with pytest.raises(KeyboardInterrupt):
        train(pairs, again, cfg, progress=False)
    assert strict_loads((again / "stats.json").read_text())["stopped"] == "done"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_log_line_that_is_no_training_record_is_dropped_on_resume_not_a_crash(tmp_path, caplog):
    """JSON that is not an object (``7``) or has no numeric step crashed the resume with a bare AttributeError or
    TypeError naming neither the file nor the fix."""
    from vidssl.train import RunLog

    lines = ['{"step": 4, "loss": 1.0}', "7", '{"step": null, "loss": 2.0}', '{"loss": 3.0}', '{"step": true}',
             '{"step": 5, "lo', '{"step": 6, "loss": 0.5}', '{"step": 12, "loss": 0.4}']
    (tmp_path / "log.jsonl").write_text("\n".join(lines) + "\n")
    with caplog.at_level(logging.WARNING, logger="vidssl"):
        RunLog(tmp_path, start_step=6, enabled=True).close()
    assert (tmp_path / "log.jsonl").read_text().splitlines() == [lines[0], lines[6]]
    assert "log.jsonl: dropped 4 line(s) that are no training record" in caplog.text


def test_a_run_recorded_with_steps_and_epochs_both_set_resumes_with_steps_alone(pairs, tmp_path):
    """train.epochs beside train.steps was ignored, and is refused now: a run an earlier version checkpointed with
    both (`--set train.epochs=1` and the default steps) could be resumed neither with both (refused) nor with steps
    alone ("another config (train.epochs: 1.0 -> 0.0)"), though either trains the same steps."""
    cfg = load_config(None, TINY + ["train.steps=2", "train.image_every=0"])
    train(pairs, tmp_path / "run", cfg, progress=False)
    ckpt = load_checkpoint(tmp_path / "run" / CHECKPOINT)
    recorded = {**ckpt["flat_config"], "train.epochs": 1.0}
    torch.save({**ckpt, "step": 1, "flat_config": recorded}, tmp_path / "run" / CHECKPOINT)
    stats = train(pairs, tmp_path / "run", cfg, progress=False)
    assert stats["step"] == 2 and stats["stopped"] == "done"
    torch.save({**ckpt, "step": 1, "flat_config": {**recorded, "train.lr": 0.5}}, tmp_path / "run" / CHECKPOINT)
    with pytest.raises(ConfigError, match=r"another config \(train.lr: 0.5 -> 0.02\)"):  # what differs is said
        train(pairs, tmp_path / "run", cfg, progress=False)


def test_a_checkpoint_of_a_network_this_version_builds_otherwise_is_not_resumed(pairs, tmp_path):
    """A checkpoint recording an AlexNet without ``fc7_relu`` (written before fc7's ReLU) trained a signed fc7:
    resumed, its remaining steps trained today's ReLU'd fc7 on its weights without a word."""
    alexnet = ["model.arch=alexnet_wang2015", "model.width=32", "data.patch_size=64", "train.image_every=0"]
    cfg = load_config(None, TINY + alexnet + ["train.steps=2"])
    train(pairs, tmp_path / "run", cfg, progress=False)
    ckpt = load_checkpoint(tmp_path / "run" / CHECKPOINT)
    del ckpt["backbone"]["fc7_relu"]  # as the version before the argument recorded it
    torch.save({**ckpt, "step": 1}, tmp_path / "run" / CHECKPOINT)  # a step left to train
    with pytest.raises(ConfigError, match=r"checkpoint.pt: this vidssl builds its alexnet_wang2015 otherwise "
                                          r"\(fc7_relu: False -> True\)"):
        train(pairs, tmp_path / "run", cfg, progress=False)
    torch.save(ckpt, tmp_path / "run" / CHECKPOINT)  # finished: nothing trains, no refusal
    assert train(pairs, tmp_path / "run", cfg, progress=False)["stopped"] == "done"


def test_a_model_with_dropout_resumes_exactly(pairs, tmp_path, monkeypatch, caplog):
    """alexnet_wang2015 with dropout in fc6/fc7 (0.5, as torchvision's AlexNet; the shipped net, as released, has
    none, so the test builds it with dropout: with the default it drew nothing and could not fail): killed at step
    8 and resumed from its step-6 checkpoint, it ends with the weights of an uninterrupted run, because every step
    reseeds the generator dropout draws from."""
    from vidssl import train as trainer
    from vidssl.models import build_backbone

    monkeypatch.setattr(trainer, "build_backbone", lambda arch, **kw: build_backbone(arch, **kw, dropout=0.5))
    cfg = load_config(None, TINY + ["model.arch=alexnet_wang2015", "model.width=32",  # width: smallcnn only
                                    "data.patch_size=64", "train.steps=12", "train.checkpoint_every=6",
                                    "train.image_every=0"])
    model = trainer.build_model(cfg).train()
    x = torch.rand(2, 3, 64, 64)
    assert not torch.equal(model(x), model(x))  # the training forward draws: the resume below can fail
    straight = train(pairs, tmp_path / "straight", cfg, progress=False)
    train_killed_at(monkeypatch, 8, pairs, tmp_path / "killed", cfg)
    assert load_checkpoint(tmp_path / "killed" / CHECKPOINT)["step"] == 6
    with caplog.at_level(logging.INFO, logger="vidssl.train"):
        resumed = train(pairs, tmp_path / "killed", cfg, progress=False)
    assert f"train: resuming {tmp_path / 'killed'} at step 6 of 12 (its checkpoint)" in caplog.text  # said, not silent
    assert resumed["weights_sha256"] == straight["weights_sha256"]
    # the whole state, BatchNorm's running statistics included (the digest covers parameters only)
    a, b = (load_checkpoint(tmp_path / run / CHECKPOINT)["model"] for run in ("straight", "killed"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # and the logs (but for the timings): the weights match whenever the collapse guard stays off, even where the
    # resume restarts the miner's running mean (neg_cos_ema, the guard's) instead of loading the checkpoint's
    assert _logged(tmp_path / "killed") == _logged(tmp_path / "straight")


def _logged(run) -> list[dict]:
    """log.jsonl's records less what the clock measures."""
    timings = ("triplets_per_s", "pairs_per_s", "minutes", "minutes_all_sessions")
    return [{k: v for k, v in strict_loads(line).items() if k not in timings}
            for line in (run / "log.jsonl").read_text().splitlines()]


def test_dropout_draws_depend_on_the_step_and_the_process_only():
    from vidssl.train import Dist, _seed_step

    def draw(step, rank, world=2):
        _seed_step(0, step, Dist(rank, world, 0))
        return torch.rand(4)

    assert torch.equal(draw(5, 1), draw(5, 1))  # a resumed run draws what the uninterrupted one did
    assert not torch.equal(draw(5, 0), draw(5, 1))  # each process its own dropout masks
    assert not torch.equal(draw(5, 0), draw(6, 0))


def test_mismatched_run_and_bad_resume_are_errors(pairs, tmp_path, caplog):
    train(pairs, tmp_path / "run", load_config(None, TINY + ["train.steps=2"]), progress=False)
    with pytest.raises(ConfigError, match=r"another config \(model.embed_dim: 32 -> 16"):
        train(pairs, tmp_path / "run", load_config(None, TINY + ["train.steps=2", "model.embed_dim=16"]),
              progress=False)
    # a checkpoint of a version before a key existed: what its steps did is not on record (a key's first default need
    # not be the earlier code's behaviour), so the remaining steps' setting is said, neither checked nor refused
    cfg = load_config(None, TINY + ["train.steps=4", "data.flip=false"])
    train(pairs, tmp_path / "older", cfg, budget_minutes=1e-9, progress=False)  # stopped at the budget after a step
    saved = load_checkpoint(tmp_path / "older" / CHECKPOINT)
    del saved["flat_config"]["data.flip"]
    torch.save(saved, tmp_path / "older" / CHECKPOINT)
    with caplog.at_level(logging.WARNING, logger="vidssl.train"):
        assert train(pairs, tmp_path / "older", cfg, progress=False)["step"] == 4
    assert "whose checkpoint does not record 1 setting(s) of this one: the remaining steps run with data.flip=False" \
        in caplog.text
    other = synthetic_pairs(tmp_path / "other", num_videos=3, tracks_per_video=12, seed=5)
    with pytest.raises(ConfigError, match="trained on other pairs"):
        train(other, tmp_path / "run", load_config(None, TINY + ["train.steps=2"]), progress=False)
    with pytest.raises(Exception, match="--resume: no checkpoint.pt"):
        train(pairs, tmp_path / "fresh", load_config(None, TINY), resume=True, progress=False)


def _cpu_computes_bf16(monkeypatch, native: bool) -> None:
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.setattr(torch.cpu, probe, lambda: native, raising=False)


def test_auto_precision_is_bf16_only_where_the_cpu_computes_it(pairs, tmp_path, monkeypatch):
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    _cpu_computes_bf16(monkeypatch, False)  # an AVX2 CPU: oneDNN would emulate bf16, 13x slower than fp32
    cfg = load_config(None, TINY + ["train.steps=3", "train.precision=auto"])
    assert resolve_precision("auto", cpu) == "fp32" and TrainStep(build_model(cfg), cfg, cpu, 3).amp is None
    train(pairs, tmp_path / "run", cfg, progress=False)
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["config"]["train"]["precision"] == "fp32"
    _cpu_computes_bf16(monkeypatch, True)
    assert resolve_precision("auto", cpu) == "bf16" and TrainStep(build_model(cfg), cfg, cpu, 3).amp == torch.bfloat16
    # the run moved to hardware where auto means bf16: refused, naming the setting that continues it as it was
    with pytest.raises(ConfigError, match=r"train.precision: 'fp32' -> 'bf16'.*--set train.precision=fp32 continues"):
        train(pairs, tmp_path / "run", cfg, progress=False)
    again = train(pairs, tmp_path / "run", load_config(None, TINY + ["train.steps=3", "train.precision=fp32"]),
                  progress=False)
    assert again["step"] == 3


def test_a_dataset_with_videos_pending_is_refused_unless_allowed(tmp_path):
    """Shards of other machines still mining: training then would use part of the data, and the finished dataset's
    fingerprint would refuse the resume, wasting the run."""
    part = synthetic_pairs(tmp_path / "part", num_videos=3, tracks_per_video=12)
    meta = json.loads((part / "dataset.json").read_text())
    meta["complete"], meta["videos"]["pending"] = False, 2
    (part / "dataset.json").write_text(json.dumps(meta))
    cfg = load_config(None, TINY + ["train.steps=2"])
    with pytest.raises(Exception, match=r"mining is not complete \(2 video\(s\) pending, 36 pairs so far\).*"
                                        r"--allow-incomplete"):
        train(part, tmp_path / "run", cfg, progress=False)
    assert not (tmp_path / "run" / CHECKPOINT).exists()
    assert train(part, tmp_path / "run", cfg, allow_incomplete=True, progress=False)["step"] == 2


def test_a_pair_folder_whose_videos_were_all_skipped_says_why(tmp_path):
    from tracking import MineConfig, mine_folder

    (tmp_path / "videos").mkdir()
    for name in ("notes.mp4", "readme.mkv"):
        (tmp_path / "videos" / name).write_text(f"{name} is not a video\n")  # not the same bytes: no duplicate
    mine_folder(tmp_path / "videos", tmp_path / "pairs", MineConfig(), progress=False)
    with pytest.raises(Exception, match=r"no pairs; none of the 2 videos could be mined \(2 not_a_video; each one's "
                                        r"reason in .*dataset.json\)"):
        train(tmp_path / "pairs", tmp_path / "run", load_config(None, TINY), progress=False)


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(pairs, tmp_path):
    cfg = load_config(None, TINY + ["train.steps=200", "train.lr=1.0e+30", "train.warmup_steps=0",
                                    "train.precision=fp32", "train.checkpoint_every=1"])
    with pytest.raises(TrainingDiverged, match=r"non-finite (loss|gradient) at step \d+: stopped; the last good"):
        train(pairs, tmp_path / "run", cfg, progress=False)
    ckpt = load_checkpoint(tmp_path / "run" / CHECKPOINT)
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


class StandInScaler:
    """The part of torch's GradScaler that TrainStep calls, for fp16 tests on a CPU (fp16 needs CUDA): the loss
    unscaled; each test says what its steps and updates do."""

    def __init__(self):
        self.scale_value, self.calls = 65536.0, 0

    def is_enabled(self):
        return True

    def get_scale(self):
        return self.scale_value

    def scale(self, loss):
        return loss

    def unscale_(self, optimizer):
        pass


@pytest.mark.parametrize("overflowing, killed_at", [(None, None), (29, None), (None, 21)])
def test_fp16_steps_that_all_overflow_stop_the_run(pairs, tmp_path, monkeypatch, overflowing, killed_at):
    """With fp16 the grad scaler skips a step whose gradients overflow and halves its scale, and the gradient check
    is off (overflow is the scaler's business): gradients that overflow at every scale, under a finite loss, were
    skipped to the end and the run ended "done" with its initial weights. A stand-in scaler (fp16 needs CUDA)
    that finds every step's gradients non-finite (or the first 29: a start whose scale was too high, which may
    settle), as GradScaler does them: skip, halve. Killed after 20 such steps and resumed, the run stops at the
    same step (the count of skips in a row is checkpointed: it restarted at 0 and the run ended "done")."""
    from vidssl import train as trainer

    class OverflowingScaler(StandInScaler):
        def step(self, optimizer):
            self.calls += 1

        def update(self):
            if overflowing is None or self.calls <= overflowing:
                self.scale_value /= 2  # found inf: the step was skipped

        def state_dict(self):
            return {}

        def load_state_dict(self, state):
            pass

    init = TrainStep.__init__

    def with_overflowing_scaler(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.scaler, self.check_grad = OverflowingScaler(), False

    monkeypatch.setattr(TrainStep, "__init__", with_overflowing_scaler)
    cfg = load_config(None, TINY + ["train.steps=40", f"train.checkpoint_every={10 if killed_at else 1000}"])
    if killed_at is not None:  # after the checkpoint of step 20
        train_killed_at(monkeypatch, killed_at, pairs, tmp_path / "run", cfg)
        assert load_checkpoint(tmp_path / "run" / CHECKPOINT)["step"] == 20
    if overflowing is not None:
        assert train(pairs, tmp_path / "run", cfg, progress=False)["stopped"] == "done"
        return
    with pytest.raises(TrainingDiverged, match=rf"non-finite gradient \(fp16: {trainer.FP16_SKIPS_IN_A_ROW} steps in "
                                               rf"a row overflowed, none taken\) at step {trainer.FP16_SKIPS_IN_A_ROW}:"):
        train(pairs, tmp_path / "run", cfg, progress=False)


def test_embeddings_holding_nan_under_a_finite_loss_stop_the_run_naming_them(pairs, tmp_path, monkeypatch):
    """The hard miner picks no NaN candidate, so NaN embeddings gave no triplet and a loss of 0: the run stopped only
    a check later, blaming the gradient."""
    cfg = load_config(None, TINY + ["train.steps=20", "loss.cycle_weight=0", "miner.hard_start=0",
                                    "train.checkpoint_every=1000"])
    nan_embeddings_from(monkeypatch, 3)
    with pytest.raises(TrainingDiverged, match=r"non-finite embeddings at step 4: stopped"):
        train(pairs, tmp_path / "run", cfg, progress=False)


def test_a_model_state_that_overflows_under_a_finite_loss_stops_training_and_is_not_exported(pairs, tmp_path):
    """At lr 1e8 the loss stays finite while BatchNorm's running variances overflow (training normalises by batch
    statistics): that state was checkpointed as "good", exported without a word, and embedded everything as NaN."""
    from vidssl.errors import VidsslError
    from vidssl.export import export_backbone

    cfg = load_config(None, TINY + ["train.steps=30", "train.lr=1.0e+8", "train.warmup_steps=0",
                                    "train.precision=fp32", "train.checkpoint_every=1"])
    with pytest.raises(TrainingDiverged, match=r"non-finite model state \(backbone\.\S+\.running_var.*at step \d+: "
                                               r"stopped; the last good checkpoint .*into a new --out"):
        train(pairs, tmp_path / "run", cfg, progress=False)
    ckpt = load_checkpoint(tmp_path / "run" / CHECKPOINT)
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    # a checkpoint an earlier version wrote in that state: export refuses it, naming the tensor
    name = next(k for k in ckpt["model"] if k.endswith("running_var"))
    ckpt["model"][name] = torch.full_like(ckpt["model"][name], float("inf"))
    torch.save(ckpt, tmp_path / "run" / CHECKPOINT)
    with pytest.raises(VidsslError, match=rf"non-finite values in {name}: the training diverged"):
        export_backbone(tmp_path / "run", tmp_path / "backbone.pt")
    assert not (tmp_path / "backbone.pt").exists()


def test_the_collapse_signals_against_their_definitions():
    """pos_cos and spread are what the "it learned" and "no collapse" tests read: here against a loop over pairs and
    the spread's two anchors, isotropic unit vectors about 1 and one vector repeated 0."""
    from vidssl.losses import build_loss
    from vidssl.miners import RandomMiner, score_candidates, to_triplets
    from vidssl.train import batch_stats
    from vidssl.train_config import LossConfig

    g = torch.Generator().manual_seed(0)
    P, D = 16, 64
    emb = torch.nn.functional.normalize(torch.randn(2 * P, D, generator=g, dtype=torch.float64), dim=1)
    groups = torch.arange(P) // 2
    scores = score_candidates(emb, groups, build_loss(LossConfig()))
    t = to_triplets(RandomMiner(k=2).select(scores, g))
    values = torch.relu(torch.rand(len(t), generator=g) - 0.3)  # some exactly 0, as a hinge gives inactive ones
    stats = batch_stats(emb, values, scores, t)
    loop = sum(float(emb[i] @ emb[P + i]) / float(emb[i].norm() * emb[P + i].norm()) for i in range(P)) / P
    assert stats["pos_cos"] == pytest.approx(loop, abs=1e-9)
    # the logged loss statistics, by loops over the triplets: mean, share active, mean cosine distances
    triplets = list(zip(t.a.tolist(), t.n.tolist(), values.tolist()))
    assert stats["loss_mean_triplet"] == pytest.approx(sum(v for _, _, v in triplets) / len(triplets), abs=1e-6)
    assert stats["active"] == pytest.approx(sum(v > 0 for _, _, v in triplets) / len(triplets))
    assert 0 < stats["active"] < 1
    cos_dist = lambda i, j: 1 - float(emb[i] @ emb[j])  # noqa: E731  (unit rows)
    assert stats["d_an"] == pytest.approx(sum(cos_dist(a, n) for a, n, _ in triplets) / len(triplets), abs=1e-6)
    assert stats["d_ap"] == pytest.approx(sum(cos_dist(i, P + i) for i in range(P)) / P, abs=1e-6)
    many = torch.nn.functional.normalize(torch.randn(4000, D, generator=g), dim=1)  # isotropic on the sphere
    assert batch_stats(many, torch.zeros(0), score_candidates(many, torch.arange(2000), build_loss(LossConfig())),
                       to_triplets(torch.zeros(2000, 4000, dtype=torch.bool)))["spread"] == pytest.approx(1.0, abs=0.02)
    same = torch.nn.functional.normalize(torch.ones(2 * P, D), dim=1)
    assert batch_stats(same, torch.zeros(0), score_candidates(same, groups, build_loss(LossConfig())),
                       to_triplets(torch.zeros(P, 2 * P, dtype=torch.bool)))["spread"] == pytest.approx(0.0, abs=1e-6)


def test_lr_schedules_closed_form():
    cos = TrainConfig(lr=1.0, warmup_steps=10, schedule="cosine")
    assert lr_factor(0, 110, cos) == pytest.approx(0.1) and lr_factor(9, 110, cos) == pytest.approx(1.0)
    assert lr_factor(60, 110, cos) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_factor(110, 110, cos) == pytest.approx(0.0)
    step = TrainConfig(warmup_steps=0, schedule="step", milestones=[0.5, 0.75], gamma=0.1)
    assert [lr_factor(s, 100, step) for s in (0, 49, 50, 74, 75, 99)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    # a schedule shorter than 5x the warm-up warms up for a fifth of it: 11 steps of a 20-step warm-up ended still
    # warming up, at 11/20 of the lr
    short = TrainConfig(lr=1.0, warmup_steps=20, schedule="cosine")
    assert [lr_factor(s, 11, short) for s in (0, 1)] == pytest.approx([0.5, 1.0])
    assert lr_factor(10, 11, short) == pytest.approx(0.5 * (1 + math.cos(math.pi * 8 / 9)))
    assert lr_factor(0, 4, short) == pytest.approx(1.0)  # under 5 steps: no warm-up
    assert lr_factor(19, 100, short) == pytest.approx(1.0)  # 100 steps: the whole 20


def test_each_step_trains_at_the_lr_of_its_index_and_logs_it(pairs, tmp_path, monkeypatch):
    """lr_factor's closed form was tested, not the lr the loop gives it: the step at index i (from 0) trains at
    (i + 1) / 5 of train.lr in the 5-step warm-up, then on the cosine over the other 25 steps; log.jsonl's record
    of step s (steps done) has the lr that step s - 1 trained at."""
    from vidssl import train as trainer

    applied = {}
    step_fn = trainer.TrainStep.__call__

    def recording(self, x, groups, step):
        applied[step] = [group["lr"] for group in self.optimizer.param_groups]
        return step_fn(self, x, groups, step)

    monkeypatch.setattr(trainer.TrainStep, "__call__", recording)
    cfg = load_config(None, TINY + ["train.steps=30", "train.log_every=1", "train.checkpoint_every=1000",
                                    "train.image_every=0"])
    train(pairs, tmp_path / "run", cfg, progress=False)

    def naive(i):
        return cfg.train.lr * ((i + 1) / 5 if i < 5 else 0.5 * (1 + math.cos(math.pi * (i - 5) / 25)))

    assert sorted(applied) == list(range(30))
    for i, lrs in applied.items():
        assert lrs == pytest.approx([naive(i)] * len(lrs)), i
    records = [strict_loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 31))
    assert [r["lr"] for r in records] == pytest.approx([naive(s - 1) for s in range(1, 31)])


def test_the_budget_fit_fills_97_percent_of_the_time_left_at_the_measured_speed(monkeypatch):
    import types

    from vidssl import train as trainer

    monkeypatch.setattr(trainer, "time", types.SimpleNamespace(monotonic=lambda: 4.0))
    # timed from t = 1 s at step 1 to t = 4 s at step 7: 0.5 s a step; a 1-minute budget from t0 = 0 has 56 s left,
    # of which 97% fit int(54.32 / 0.5) = 108 more steps
    assert trainer._budget_fit(7, (1.0, 1), 1.0, 0.0) == (7 + 108, 0.5, 56.0)
    assert trainer._budget_fit(7, (1.0, 1), 0.05, 0.0) == (8, 0.5, -1.0)  # spent (3 s): still one more step


def test_shipped_training_configs_load():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "configs"
    paper = load_config(root / "paper_alexnet.yaml")
    assert (paper.model.arch, paper.data.patch_size, paper.model.embed_dim) == ("alexnet_wang2015", 227, 1024)
    assert (paper.loss.margin, paper.miner.negatives_per_pair, paper.miner.hard_start) == (0.5, 4, 0.375)
    assert paper.loss.cycle_weight == 0.0 and not paper.miner.background_negatives  # neither is in the paper
    gpu = load_config(root / "gpu_resnet50.yaml")
    assert gpu.model.arch == "resnet50" and gpu.train.device == "cuda" and gpu.train.precision == "auto"
    with pytest.raises(ConfigError, match="train.schedule"):
        load_config(None, ["train.schedule=linear"])


@pytest.mark.parametrize("name", ["paper_alexnet", "gpu_resnet50"])
def test_shipped_training_configs_train_two_steps_on_cpu(name, pairs, tmp_path, caplog):
    """Each shipped config trains as written but for what a CPU test must shrink (steps, batch, workers, device,
    and the cycle loss's backgrounds, which the synthetic pairs lack); the paper's 227 px on 40 px pairs says the
    patches are upscaled."""
    from pathlib import Path

    config = Path(__file__).resolve().parent.parent / "configs" / f"{name}.yaml"
    small = ["train.steps=2", "train.batch_pairs=8", "data.num_workers=0", "train.device=cpu",
             "train.image_every=0", "train.threads=1", "train.warmup_steps=0", "train.budget_minutes=null",
             "loss.cycle_background=false", "miner.background_negatives=false"]
    with caplog.at_level(logging.WARNING):
        stats = train(pairs, tmp_path / "run", load_config(config, small), progress=False)
    assert stats["step"] == 2 and stats["stopped"] == "done" and math.isfinite(stats["loss"])
    upscaled = "the pairs are stored at 40 px and data.patch_size is 227: every patch is upscaled 5.7x"
    assert (upscaled in caplog.text) == (name == "paper_alexnet")
    if name == "paper_alexnet":  # the size whose smallest crops (data.crop_min 0.88) are 227 px: 227 / 0.88
        assert "--set mine.patch_size=258: crops of data.crop_min=0.88 of it are 227 px" in caplog.text


def test_training_warns_of_the_guard_an_unfillable_k_and_a_one_step_budget(pairs, tmp_path, caplog):
    """The guard showed only as phase "guard" in log.jsonl: no warning, and TensorBoard (numbers only) had nothing.
    With guard_neg_cos under any cosine the guard holds from the first main-phase step."""
    run = tmp_path / "run"
    settings = TINY + ["train.steps=6", "train.log_every=1", "miner.hard_start=0.5", "miner.guard_neg_cos=-1.0"]
    with caplog.at_level(logging.INFO):
        train(pairs, run, load_config(None, settings), progress=False)
    said = [r.getMessage() for r in caplog.records if "miner.guard_neg_cos=-1" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("train: step 4: the negatives' running mean cosine ")
    assert "mining backs off to miner.warmup (random) until it falls" in said[0]
    assert said[0].endswith("a run that stays here wants a lower train.lr")  # textured patches: the optimiser's doing
    assert "fixed reducer divides by slots" not in caplog.text  # 12 pairs: 22 candidates for K = 4
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # 2 pairs: each has 2 candidates for K = 4
        train(pairs, tmp_path / "small", load_config(None, TINY + ["train.steps=1", "train.batch_pairs=2"]),
              progress=False)
    assert "train.batch_pairs=2 leaves each pair 2 candidate negatives, fewer than miner.negatives_per_pair=4" in \
        caplog.text
    caplog.clear()
    from vidssl.cli import main

    # a budget spent by the first step: each rerun of `vidssl train` would start up for one more (pretrain, which
    # warns of a short training itself, skips a completed stage)
    sets = [a for s in TINY + ["train.steps=50"] for a in ("--set", s)]
    for budget, said in (("0.0001", True), ("10", False)):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert main(["-q", "train", str(pairs), "--out", str(tmp_path / f"short{budget}"), *sets,
                         "--budget-minutes", budget]) == 0
        assert ("the budget ended after 1 step(s) of this session (start-up included)" in caplog.text) == said
    assert json.loads((tmp_path / "short0.0001" / "stats.json").read_text())["step"] == 1
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [(r["step"], r["phase"], r["guarded"]) for r in records] == [
        (1, "warmup", 0.0), (2, "warmup", 0.0), (3, "warmup", 0.0), (4, "guard", 1.0), (5, "guard", 1.0),
        (6, "guard", 1.0)]


def test_same_video_negatives_come_from_other_tracks(tmp_path, monkeypatch):
    # one video, 8 tracks of 3 pairs each (as one tracker yields several pairs): negatives must come from other
    # tracks, so the miner is given track codes, and a batch of 12 holds at most ceil(12 / 8) = 2 pairs per track
    import numpy as np

    from train_utils import write_pairs
    from vidssl.miners import MiningSchedule

    rng = np.random.default_rng(0)
    patches = rng.integers(0, 256, size=(24, 2, 40, 40, 3), dtype=np.uint8)
    one_video = write_pairs(tmp_path / "pairs", patches, ["v0"] * 24, [i // 3 for i in range(24)])
    with pytest.raises(Exception, match="all pairs come from one video"):
        train(one_video, tmp_path / "run0", load_config(None, TINY + ["train.steps=2"]), progress=False)
    # both problems of a small one-video set in one error, not one per run
    with pytest.raises(Exception, match=r"one video, .*same_video_negatives=true; and 24 pairs, fewer than a "
                                        r"batch of 32"):
        train(one_video, tmp_path / "run0", load_config(None, TINY + ["train.steps=2", "train.batch_pairs=32"]),
              progress=False)
    # one track in one video: with same-video negatives there is still no other track to draw from (it used to
    # train to "done" with no triplet at all, loss 0 at every step)
    one_track = write_pairs(tmp_path / "one_track", patches, ["v0"] * 24, [0] * 24)
    with pytest.raises(Exception, match="all pairs come from one track"):
        train(one_track, tmp_path / "run1", load_config(None, TINY + ["train.steps=2",
                                                                     "miner.same_video_negatives=true"]),
              progress=False)
    seen = []
    original = MiningSchedule.mine

    def spy(self, emb, groups, step):
        seen.append(groups.tolist())
        return original(self, emb, groups, step)

    monkeypatch.setattr(MiningSchedule, "mine", spy)
    stats = train(one_video, tmp_path / "run", load_config(None, TINY + ["train.steps=3",
                                                                        "miner.same_video_negatives=true"]),
                  progress=False)
    assert stats["step"] == 3 and len(seen) == 3
    for groups in seen:
        counts = np.bincount(groups)
        assert len(groups) == 12 and counts.max() <= 2 and (counts > 0).sum() >= 6


def test_cycle_loss_and_background_negatives_train(tmp_path):
    import numpy as np

    from train_utils import write_pairs
    from vidssl.train import cycle_shift

    # the synthetic pairs plus a background per pair: another texture of the same video's palette
    base = synthetic_pairs(tmp_path / "base", num_videos=3, tracks_per_video=8, size=40)
    from vidssl.data import open_pairs
    rows = open_pairs(base)
    patches = np.load(base / "shards" / "00000.npy")
    rng = np.random.default_rng(0)
    backgrounds = patches[rng.permutation(len(patches)), :1]  # some other pair's patch: a hard same-scene negative
    triples = np.concatenate([patches, backgrounds], axis=1)
    root = write_pairs(tmp_path / "pairs", triples, [rows.video_ids[v] for v in rows.video], list(range(24)))
    cfg = load_config(None, TINY + ["train.steps=40", "loss.cycle_weight=1.0", "miner.background_negatives=true",
                                    "loss.cycle_background=true"])
    stats = train(root, tmp_path / "run", cfg, progress=False)
    assert stats["step"] == 40
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert all("cycle" in r and "bg_cos" in r for r in records)
    assert all(math.isfinite(r["cycle"]) and r["cycle"] >= 0 for r in records)
    assert records[-1]["cycle"] < min(records[0]["cycle"], math.log(16))  # it learns to follow content (4x4 cells)
    assert all(r["triplets"] >= 12 for r in records)  # every pair's background is one of its negatives
    with pytest.raises(Exception, match="mine.background_patches=true") as missing:
        train(base, tmp_path / "run2", cfg, progress=False)
    # the fix it names works as given: both overrides (the second alone is a config error, the first alone too
    # when the cycle walks into the backgrounds)
    fix = re.findall(r"--set (\S+)", str(missing.value))[1:]  # [0]: mine again with backgrounds
    assert fix == ["miner.background_negatives=false", "loss.cycle_background=false"]
    load_config(None, [s for s in TINY if not s.startswith(("miner.background_negatives", "loss.cycle_background"))]
                + ["loss.cycle_weight=0.3"] + fix)
    with pytest.raises(ConfigError, match="multiple of 8"):
        train(root, tmp_path / "run3", load_config(None, TINY + ["data.patch_size=36", "loss.cycle_weight=0.3"]),
              progress=False)
    with pytest.raises(ConfigError, match="miner.background_negatives=true"):  # no backgrounds to walk into
        train(root, tmp_path / "run4", load_config(None, TINY + ["loss.cycle_weight=0.3", "loss.cycle_background=true",
                                                                 "miner.background_negatives=false"]), progress=False)
    # both rules hold at load time (before a pipeline mines) and for a config built in code, at the trainer
    with pytest.raises(ConfigError, match="multiple of 8"):
        load_config(None, ["data.patch_size=36"])
    assert load_config(None, ["data.patch_size=36", "loss.cycle_weight=0"]).data.patch_size == 36
    in_code = load_config(None, TINY)
    in_code.miner.background_negatives, in_code.loss.cycle_background = False, True
    with pytest.raises(ConfigError, match="miner.background_negatives=true"):
        train(root, tmp_path / "run5", in_code, progress=False)
    # the roll is a function of (seed, step), along one axis, by at most half the map
    shifts = [cycle_shift(0, s, 8, 8) for s in range(50)]
    assert shifts == [cycle_shift(0, s, 8, 8) for s in range(50)] and len(set(shifts)) > 4
    assert all((dy == 0) != (dx == 0) and max(abs(dy), abs(dx)) <= 4 for dy, dx in shifts)


def test_runtime_settings_are_the_runs_alone(monkeypatch):
    """Threads, determinism and the cuBLAS workspace variable are set for a run and given back afterwards: the
    caller (an evaluation, a notebook) continues with its own."""
    import os

    import cv2

    from vidssl.train import runtime_settings

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(), cv2.getNumThreads())
    cfg = load_config(None, ["train.threads=1", "train.deterministic=true", "data.num_workers=0"])
    with runtime_settings(cfg, torch.device("cpu")):
        assert torch.get_num_threads() == 1 and torch.are_deterministic_algorithms_enabled()
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] and cv2.getNumThreads() == 1
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(), cv2.getNumThreads()) == before
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ


def test_the_step_reads_no_memory_it_did_not_write():
    """runtime_settings turns off deterministic mode's NaN fill of fresh tensors (7-9% of a CPU step): safe only
    while no op of the step reads memory it never wrote. With the fill on, such a read would turn the weights NaN
    or change them; steps of the full loss (ranking, hard miner after warm-up, cycle through the backgrounds) give
    bit-identical weights either way. The fill is given back afterwards."""
    import torch.utils.deterministic as det

    from vidssl.train import TrainStep, build_model, parameter_digest, runtime_settings

    cfg = load_config(None, ["data.patch_size=32", "model.width=8", "model.embed_dim=32", "train.threads=1",
                             "train.deterministic=true"])
    P = 12
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3 * P, 3, 32, 32, generator=g).contiguous(memory_format=torch.channels_last)
    groups = torch.arange(P) % 4
    before = det.fill_uninitialized_memory
    digests = {}
    with runtime_settings(cfg, torch.device("cpu")):
        assert det.fill_uninitialized_memory is False
        for fill in (True, False):
            det.fill_uninitialized_memory = fill
            model = build_model(cfg).to(memory_format=torch.channels_last).train()
            step = TrainStep(model, cfg, torch.device("cpu"), total_steps=10)
            phases = {step(x, groups, s).phase for s in range(10)}
            digests[fill] = parameter_digest(model)
            assert all(torch.isfinite(p).all() for p in model.parameters())
    assert phases == {"warmup", "main"}  # both miners ran
    assert digests[True] == digests[False]
    assert det.fill_uninitialized_memory == before


def test_training_leaves_the_callers_random_stream_where_it_was(pairs, tmp_path):
    """Every step seeds torch's global generator (dropout); a caller seeded before training continues its own
    stream after it (two callers seeded 1 and 2 drew the same numbers after train())."""
    torch.manual_seed(1)
    expected = torch.rand(3)
    torch.manual_seed(1)
    train(pairs, tmp_path / "run", load_config(None, TINY + ["train.steps=2"]), progress=False)
    assert torch.equal(torch.rand(3), expected)


def test_a_script_without_the_main_guard_is_told_to_add_it(pairs, tmp_path):
    """DataLoader workers start through forkserver, which imports the user's script again: unguarded, the import
    trained again into the locked run folder and the user saw only "DataLoader worker exited unexpectedly"."""
    import subprocess
    import sys
    import textwrap

    settings = [s for s in TINY if not s.startswith("data.num_workers")] + ["data.num_workers=1", "train.steps=2"]
    body = f"""
        from vidssl.config import load_config
        from vidssl.train import train
        CFG = load_config(None, {settings!r})
        """
    run = f"train({str(pairs)!r}, {str(tmp_path / 'run')!r}, CFG, progress=False)"
    (tmp_path / "unguarded.py").write_text(textwrap.dedent(body) + run + "\n")
    done = subprocess.run([sys.executable, str(tmp_path / "unguarded.py")], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode != 0
    assert ("vidssl.train.train was called at the top level of a script that a worker process is importing" in
            done.stderr and "put the calls under `if __name__ == \"__main__\":`" in done.stderr)
    # guarded, the same script trains (and a process it spawns may call train from a function: not module level)
    (tmp_path / "guarded.py").write_text(textwrap.dedent(body) + "if __name__ == '__main__':\n    " + run + "\n")
    done = subprocess.run([sys.executable, str(tmp_path / "guarded.py")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def test_a_bad_budget_flag_is_named_as_typed_before_the_run_folder_is_made(pairs, tmp_path, capsys):
    from vidssl.cli import main

    for bad in ("0", "-2", "nan"):
        assert main(["train", str(pairs), "--out", str(tmp_path / "run"), "--budget-minutes", bad]) == 2
        assert f"vidssl train: error: --budget-minutes must be a number > 0, got {float(bad)}" in \
            capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # no folder, no lock file left behind


def test_a_device_flag_naming_a_missing_gpu_is_named_as_typed(pairs, tmp_path, capsys, monkeypatch):
    """`--device cuda` was answered with the config key it sets ("config key 'train.device' is 'cuda' ...")."""
    from vidssl.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["train", str(pairs), "--out", str(tmp_path / "run"), "--device", "cuda"]) == 2
    assert capsys.readouterr().err.strip() == (
        "vidssl train: error: --device cuda: torch sees no CUDA device; use --device cpu (or auto)")
    assert not (tmp_path / "run").exists()


def test_auto_precision_on_a_gpu_that_only_emulates_bf16_is_fp32(monkeypatch):
    """torch.cuda.is_bf16_supported() says yes on a V100 or T4 (compute capability < 8: it can hold bf16 tensors
    and emulates the arithmetic); auto must ask about native support."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert resolve_precision("auto", torch.device("cuda", 0)) == "fp32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)  # Ampere and later
    assert resolve_precision("auto", torch.device("cuda", 0)) == "bf16"


def test_the_cycle_loss_feeds_the_model_the_layout_it_was_converted_to(pairs):
    """torch.roll and torch.cat return the contiguous layout: with the cycle loss on, a channels_last model was fed
    NCHW input (one conversion per step on a GPU; on a CPU, oneDNN's reorders)."""
    cfg = load_config(None, TINY + ["train.steps=3", "loss.cycle_weight=0.2"])
    model = build_model(cfg).to(memory_format=torch.channels_last)
    step = TrainStep(model, cfg, torch.device("cpu"), 3)
    layouts = []
    forward = model.forward

    def recording(x, *args, **kwargs):
        layouts.append(x.is_contiguous(memory_format=torch.channels_last))
        return forward(x, *args, **kwargs)

    model.forward = recording
    x = torch.randn(24, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    step(x, torch.arange(12) % 4, 0)
    assert layouts == [True]
    step.channels_last = False
    step(x.contiguous(), torch.arange(12) % 4, 1)
    assert layouts == [True, False]


@pytest.mark.parametrize("unranked_from, cycle_weight, warned", [(5, 0, True), (11, 0, False), (5, 0.2, False)])
def test_a_run_whose_ranking_loss_had_nothing_to_learn_says_so(pairs, tmp_path, monkeypatch, caplog, unranked_from,
                                                              cycle_weight, warned):
    """The paper's setting (no cycle loss) on a few videos: after a couple of hundred steps no triplet violates the
    margin, the loss is 0 and every later step trains nothing, which only the log's `active` column showed. Here the
    ranking loss is made 0 from a chosen step on: 15 of 20 steps are said; 9 of 20, or a cycle loss, are not."""
    from vidssl.losses import HingeTripletLoss

    per_triplet, calls = HingeTripletLoss.per_triplet, []

    def solved_from(self, emb, t):
        calls.append(None)
        values = per_triplet(self, emb, t)
        return values * 0 if len(calls) > unranked_from else values

    monkeypatch.setattr(HingeTripletLoss, "per_triplet", solved_from)
    settings = TINY + ["train.steps=20", "miner.hard_start=0", "miner.main=random",
                       f"loss.cycle_weight={cycle_weight}"]
    with caplog.at_level(logging.WARNING, logger="vidssl.train"):
        train(pairs, tmp_path / "run", load_config(None, settings), progress=False)
    said = [r.getMessage() for r in caplog.records if "steps had no triplet violating" in r.getMessage()]
    assert said == ([f"train: {20 - unranked_from} of this session's 20 steps had no triplet violating "
                     "loss.margin=0.5, and with loss.cycle_weight=0 they trained nothing: the tracks are told apart "
                     "already. More videos (more distinct tracks), miner.same_video_negatives=true or the dense cycle "
                     "loss (loss.cycle_weight=0.2, the default) give training more to learn"] if warned else [])


def test_a_train_step_refuses_a_batch_without_the_rows_its_config_expects():
    """Called from code with the defaults (background negatives and the cycle through them) on [2P, ...]: the
    dense maps split into four parts, parts[2] was the rolled anchors, and the cycle's walk could stop at the very
    copy it must arrive at: a short-cut loss, no error. Now the batch's rows are checked against the config."""
    cfg = load_config(None, ["data.patch_size=32", "model.width=8", "model.embed_dim=32", "train.precision=fp32"])
    assert cfg.miner.background_negatives and cfg.loss.cycle_background and cfg.loss.cycle_weight  # the defaults
    model = build_model(cfg)
    step = TrainStep(model, cfg, torch.device("cpu"), 10)
    with pytest.raises(ValueError, match=r"x must be \[3P, 3, S, S\] \(anchors, positives, backgrounds; "
                                         r"miner.background_negatives=True\): \[24, 3, S, S\] for 8 group codes, "
                                         r"got \[16, 3, 32, 32\]"):
        step(torch.randn(16, 3, 32, 32), torch.arange(8), 0)
    assert step(torch.randn(24, 3, 32, 32), torch.arange(8), 0).diverged is None
    off = load_config(None, ["data.patch_size=32", "model.width=8", "model.embed_dim=32", "train.precision=fp32",
                             "miner.background_negatives=false", "loss.cycle_background=false"])
    with pytest.raises(ValueError, match=r"x must be \[2P, 3, S, S\] \(anchors, positives; "):
        TrainStep(build_model(off), off, torch.device("cpu"), 10)(torch.randn(24, 3, 32, 32), torch.arange(8), 0)


def test_a_checkpoint_is_also_written_by_time(pairs, tmp_path, monkeypatch):
    """With train.checkpoint_minutes the rolling checkpoint is written once that much time passed, whatever
    checkpoint_every says: Ctrl-C at step 7 of a run checkpointed every 1000 steps kept nothing before, and a rerun
    started over (at 3 s a step on a CPU, 50 steps are 2.5 minutes)."""
    for minutes, kept in ((0.0, None), (1e-9, 7)):  # 1e-9: every step is overdue
        cfg = load_config(None, TINY + ["train.steps=40", "train.fit_budget=false", "train.checkpoint_every=1000",
                                        f"train.checkpoint_minutes={minutes}"])
        run = tmp_path / f"run_{minutes}"
        train_killed_at(monkeypatch, 7, pairs, run, cfg)
        if kept is None:
            assert not (run / CHECKPOINT).exists()
        else:
            assert load_checkpoint(run / CHECKPOINT)["step"] == kept
    uninterrupted = train(pairs, tmp_path / "whole", cfg, progress=False)
    resumed = train(pairs, tmp_path / f"run_{1e-9}", cfg, resume=True, progress=False)
    assert resumed["weights_sha256"] == uninterrupted["weights_sha256"]


@pytest.mark.parametrize("terminal", [None, 0])
def test_without_a_progress_bar_a_log_file_gets_progress_lines(pairs, tmp_path, monkeypatch, caplog, terminal):
    """Output to a file (a batch job) disables the bar: `[train] ...` was followed by nothing for minutes. So does a
    terminal of 0 columns (`script -qc`, a CI runner's pty), where tqdm drew nothing and the lines were off too."""
    import os

    from vidssl import train as trainer

    monkeypatch.setattr(trainer, "_PROGRESS_EVERY_S", 0.0)
    if terminal is not None:  # progress wanted, on a terminal that reports no width
        monkeypatch.setattr("sys.stderr.isatty", lambda: True, raising=False)
        monkeypatch.setattr("sys.stderr.fileno", lambda: 2, raising=False)
        monkeypatch.setattr(os, "get_terminal_size", lambda fd=1: os.terminal_size((terminal, 24)))
    cfg = load_config(None, TINY + ["train.steps=10", "train.image_every=0"])
    with caplog.at_level(logging.INFO, logger="vidssl.train"):
        train(pairs, tmp_path / "run", cfg, progress=terminal is not None)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("train: step ")]
    assert [line.split(",")[0] for line in lines] == ["train: step 5 of 10", "train: step 10 of 10"], lines
    assert all(re.search(r"loss \d+\.\d{3}, about \d+\.\d min left$", line) for line in lines), lines


def test_a_steps_loss_is_the_mean_over_the_batchs_capacity_plus_the_weighted_cycle_loss():
    """The step's loss, recomputed from the paper's formula over the mined triplets (read off the step's own
    embeddings): their sum over P x (K + 1), K mined negatives and each pair's background per pair (the released
    RankHardLoss's fixed divisor), plus cycle_weight times the cycle loss. Dropping the background's +1 passed
    every training test."""
    from test_losses import naive_loss
    from vidssl.train import TrainStep, build_model

    cfg = load_config(None, TINY + ["train.precision=fp32", "miner.background_negatives=true",
                                    "loss.cycle_background=true", "loss.cycle_weight=0.3",
                                    "miner.negatives_per_pair=4"])
    P, K = cfg.train.batch_pairs, cfg.miner.negatives_per_pair
    assert (P, K) == (12, 4)
    model = build_model(cfg)
    step = TrainStep(model, cfg, torch.device("cpu"), total_steps=10)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3 * P, 3, 32, 32, generator=g)  # anchors, positives, backgrounds
    out = step(x, torch.arange(P) % 3, 0)
    rows = out.emb.double().tolist()
    triplets = list(zip(out.triplets.a.tolist(), out.triplets.p.tolist(), out.triplets.n.tolist()))
    assert sum(n >= 2 * P for _, _, n in triplets) == P  # every pair's own background among its negatives
    total = sum(naive_loss("ranking", "cosine", 0.5, True, rows[a], rows[p], rows[n]) for a, p, n in triplets)
    assert out.cycle is not None
    assert out.loss.item() == pytest.approx(total / 60 + 0.3 * out.cycle.item(), rel=1e-5, abs=1e-7)


def test_bad_overrides_are_refused_before_the_run_folder_is_made(pairs, tmp_path):
    """train()'s budget and device were checked only when the model was built: after the run folder, its lock file
    and the pair checks."""
    run = tmp_path / "run"
    with pytest.raises(ConfigError, match=r"'train\.budget_minutes': must be > 0"):
        train(pairs, run, load_config(None, TINY + ["train.steps=2"]), budget_minutes=-1.0, progress=False)
    assert not run.exists()


def test_a_gpu_index_as_train_device_says_how_to_pick_the_gpu():
    """eval.*.device takes cuda:N and train.device did not say why it does not."""
    with pytest.raises(ConfigError, match=re.escape(
            "config key 'train.device': 'cuda:1' names a GPU, which training does not: it takes the GPU of its "
            "LOCAL_RANK (0 outside torchrun); pick the GPU with CUDA_VISIBLE_DEVICES=1 and set train.device=cuda")):
        load_config(None, ["train.device=cuda:1"])
    with pytest.raises(ConfigError, match=re.escape("'train.device': 'cuda:x' is not one of ['auto', 'cpu', 'cuda']")):
        load_config(None, ["train.device=cuda:x"])  # no index: no CUDA_VISIBLE_DEVICES=x to advise


def test_a_run_folder_that_is_a_pair_dataset_is_refused(tmp_path):
    """`vidssl train PAIRS --out PAIRS` replaced the config.yaml the pairs were mined with and checkpointed among
    the shards; another pair dataset as --out would have lost its own the same way."""
    from vidssl.errors import UsageError

    pairs = synthetic_pairs(tmp_path / "pairs", num_videos=2, tracks_per_video=8, size=16)
    other = synthetic_pairs(tmp_path / "other", num_videos=2, tracks_per_video=8, size=16)
    (pairs / "config.yaml").write_text("mine: {box_fraction: 0.33}\n")
    cfg = load_config(None, TINY + ["train.steps=1"])
    for out, what in ((pairs, "the pair dataset itself"), (other, "a pair dataset")):
        before = sorted(p.name for p in out.iterdir())
        with pytest.raises(UsageError, match=re.escape(f"--out {out} is {what}: the run's config.yaml would")):
            train(pairs, out, cfg, progress=False)
        assert sorted(p.name for p in out.iterdir()) == before
    assert (pairs / "config.yaml").read_text() == "mine: {box_fraction: 0.33}\n"
    train(pairs, tmp_path / "pairs" / "run", cfg, progress=False)  # a run folder inside it is its own folder


def test_a_checkpoint_that_cannot_be_read_is_never_said_to_be_damaged(pairs, tmp_path):
    """An I/O error (here: a folder where the checkpoint is) got "unreadable checkpoint; delete it to start over",
    advice that loses a good checkpoint on a storage hiccup; a damaged file keeps that advice."""
    run = tmp_path / "run"
    cfg = load_config(None, TINY + ["train.steps=2"])
    (run / CHECKPOINT).mkdir(parents=True)
    with pytest.raises(Exception, match=r"checkpoint\.pt: cannot be read \(Is a directory\); fix that and run again "
                                        r"\(nothing was changed\)") as refused:
        train(pairs, run, cfg, progress=False)
    assert "delete" not in str(refused.value)
    (run / CHECKPOINT).rmdir()
    (run / CHECKPOINT).write_bytes(b"PK\x03\x04 not a whole zip")
    with pytest.raises(Exception, match=r"unreadable checkpoint .*delete it to start over"):
        train(pairs, run, cfg, progress=False)


def test_too_few_batches_for_the_ranks_is_said_before_the_run_folder_records_a_run(pairs, tmp_path, monkeypatch):
    """The sampler's refusal came after config.yaml was written, so RUN said a run of these settings was there."""
    import vidssl.train as train_module
    from vidssl.errors import VidsslError

    monkeypatch.setattr(train_module, "_init_distributed", lambda *args: train_module.Dist(rank=0, world=64))
    run = tmp_path / "run"
    with pytest.raises(VidsslError, match=r"batch\(es\) of 12, fewer than the 64 processes"):
        train(pairs, run, load_config(None, TINY + ["train.steps=2"]), progress=False)
    assert not (run / "config.yaml").exists()


def test_one_video_of_one_track_is_not_told_to_look_for_negatives_in_it(tmp_path):
    """Following "set miner.same_video_negatives=true" for pairs of one video and one track met the next error,
    "all pairs come from one track": the advice is given only where it helps."""
    from vidssl.errors import VidsslError

    one = synthetic_pairs(tmp_path / "one", num_videos=1, tracks_per_video=1, size=40)
    with pytest.raises(VidsslError, match=r"one track too, so miner\.same_video_negatives cannot help") as refused:
        train(one, tmp_path / "run", load_config(None, TINY + ["train.steps=2"]), progress=False)
    assert "set miner.same_video_negatives=true" not in str(refused.value)
    several = synthetic_pairs(tmp_path / "several", num_videos=1, tracks_per_video=3, size=40)
    with pytest.raises(VidsslError, match=r"mine more videos or set miner\.same_video_negatives=true"):
        train(several, tmp_path / "run2", load_config(None, TINY + ["train.steps=2"]), progress=False)


def test_a_run_that_speeds_up_early_grows_its_schedule_into_the_budget(pairs, tmp_path, monkeypatch):
    """The quick start's first ~90 steps ran 25% slower than the rest: fitted to that speed, the run ended "done"
    with a quarter of its budget unused, as refits only shortened. On a simulated clock (1 s a step for 15 steps,
    then 0.5 s), the schedule grows while the miner is in its first phase and the run fills its budget."""
    simulated_clock(monkeypatch, lambda step: 1.0 if step < 15 else 0.5)
    cfg = load_config(None, TINY + ["train.steps=1000", "train.log_every=5", "train.checkpoint_every=100000",
                                    "train.image_every=0"])
    stats = train(pairs, tmp_path / "run", cfg, budget_minutes=2.0, progress=False)
    # fitted at step 7 to 1 s a step: about 116 steps, 66 s of the 120 at the faster speed; grown: nearly all
    assert stats["stopped"] == "done" and stats["total_steps"] > 180, stats["total_steps"]
    assert 0.9 * 120 <= stats["minutes"] * 60 <= 120
    # every fit is on record, [step, steps], the last the run's length: the schedule's history, which the final
    # count alone does not give (train.steps=N with fit_budget=false repeats a run only of one fit)
    history = stats["fit_history"]
    assert history[0][0] == 7 and 100 <= history[0][1] <= 125, history
    assert len(history) >= 2 and history[-1][1] == stats["total_steps"] > history[0][1]
    assert [at for at, _ in history] == sorted({at for at, _ in history})
    saved = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert saved["fit_history"] == history
    session = saved["sessions"][0]["settings"]  # what the session ran with, as used
    assert session["train.threads"] == (cfg.train.threads or torch.get_num_threads()) and session["train.device"] == "cpu"
    assert session["data.num_workers"] == cfg.data.num_workers and "train.budget_minutes" in session


def test_under_ddp_only_rank_0_logs_below_errors(caplog):
    """A caller's own script under torchrun (not through `vidssl train`) printed each warning once per rank."""
    from vidssl.train import Dist, _rank_0_says_it

    package_log = logging.getLogger("vidssl")
    for rank, said in ((1, False), (0, True)):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="vidssl"), _rank_0_says_it(Dist(rank=rank, world=2)):
            logging.getLogger("vidssl.train").warning("a warning")
            logging.getLogger("vidssl.train").error("an error")
        assert ("a warning" in caplog.text) is said and "an error" in caplog.text
    assert package_log.level == logging.NOTSET  # as it was


def test_a_signal_ignored_by_whoever_started_training_stays_ignored():
    """`vidssl train ... &` in a script inherits SIGINT ignored (the Ctrl-C is for the foreground job): training
    took the signal over and stopped on it, where Python and mining leave it ignored."""
    from vidssl.train import StopAtStepEnd

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for ignored, caught in ((signal.SIGINT, signal.SIGTERM), (signal.SIGTERM, signal.SIGINT)):
            signal.signal(ignored, signal.SIG_IGN)
            signal.signal(caught, signal.default_int_handler)
            stopping = StopAtStepEnd()
            stopping.install()
            assert signal.getsignal(ignored) is signal.SIG_IGN
            assert signal.getsignal(caught) == stopping._handle
            stopping.restore()
            assert signal.getsignal(ignored) is signal.SIG_IGN and signal.getsignal(caught) is signal.default_int_handler
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)


def test_a_checkpoint_by_time_is_written_each_time_checkpoint_minutes_pass(pairs, tmp_path, monkeypatch):
    """At 25 s a step and train.checkpoint_minutes=1, a checkpoint is due once 60 s passed since the last one: every
    3rd step (75 s), and the final one. Minutes read as seconds, or a clock not restarted by a checkpoint, wrote one
    every step."""
    from vidssl import train as trainer

    simulated_clock(monkeypatch, lambda step: 25.0)
    save = trainer._save_checkpoint
    saved_at = []

    def recorded(path, state):
        saved_at.append(state["step"])
        save(path, state)

    monkeypatch.setattr(trainer, "_save_checkpoint", recorded)
    cfg = load_config(None, TINY + ["train.steps=10", "train.checkpoint_every=1000", "train.checkpoint_minutes=1",
                                    "train.image_every=0"])
    train(pairs, tmp_path / "run", cfg, progress=False)
    every = math.ceil(60 / 25)  # steps until 60 s have passed
    assert saved_at == [*range(every, 10, every), 10]  # [3, 6, 9], then the final checkpoint


def test_a_schedule_never_grows_back_past_the_start_of_the_main_miner(pairs, tmp_path, monkeypatch):
    """A schedule grown once the main miner started moves its start past the current step: mining falls back to the
    warm-up miner mid-run. On a simulated clock (1 s a step, fitted at step 7 to 7 + int(0.97 * 33) = 39 steps,
    the main miner from step 9 = round(0.2 * 39) + 1), five times faster from that step on: a count that would
    grow well past 1.1x, with its main phase beyond the step reached."""
    simulated_clock(monkeypatch, lambda step: 1.0 if step < 8 else 0.2)
    cfg = load_config(None, TINY + ["train.steps=100000", "train.log_every=1", "train.checkpoint_every=100000",
                                    "train.image_every=0", "miner.hard_start=0.2", "miner.guard=false"])
    stats = train(pairs, tmp_path / "run", cfg, budget_minutes=40 / 60, progress=False)
    phases = [r["phase"] for r in _logged(tmp_path / "run")]
    main_from = phases.index("main") + 1  # the step count at the first step mined by the main miner
    assert main_from == 9 and stats["stopped"] == "done"
    assert "warmup" not in phases[main_from - 1:]
    assert all(at < main_from for at, _ in stats["fit_history"]), stats["fit_history"]


def test_a_run_whose_last_step_passes_the_budget_is_done(pairs, tmp_path, monkeypatch):
    """The 10th of 10 steps (1 s each) ends past the 9.5 s budget: the run is complete, not stopped by the budget
    (stats.json said "budget" at step == total_steps, a finished run recorded as unfinished)."""
    simulated_clock(monkeypatch, lambda step: 1.0)
    cfg = load_config(None, TINY + ["train.steps=10", "train.fit_budget=false", "train.image_every=0"])
    stats = train(pairs, tmp_path / "run", cfg, budget_minutes=9.5 / 60, progress=False)
    assert (stats["stopped"], stats["step"], stats["total_steps"]) == ("done", 10, 10)
    assert stats["minutes"] * 60 > 9.5  # the last step did pass the budget
    assert json.loads((tmp_path / "run" / "stats.json").read_text())["stopped"] == "done"


def test_a_resumed_run_that_diverges_names_the_checkpoint_it_resumed_from(pairs, tmp_path, monkeypatch):
    """Killed at step 8 (checkpointed at 5), resumed, and non-finite at step 7 before its next checkpoint: the
    message said no checkpoint had been written, where the one of step 5 is kept."""
    cfg = load_config(None, TINY + ["train.steps=20", "train.checkpoint_every=5", "loss.cycle_weight=0",
                                    "miner.hard_start=0"])
    train_killed_at(monkeypatch, 7, pairs, tmp_path / "run", cfg)
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT)["step"] == 5
    nan_embeddings_from(monkeypatch, 6)
    with pytest.raises(TrainingDiverged, match=r"non-finite embeddings at step 7: stopped; the last good checkpoint "
                                               r"\(step 5\) is kept in"):
        train(pairs, tmp_path / "run", cfg, resume=True, progress=False)


def test_a_guard_engaged_on_flat_patches_points_at_the_pairs_not_the_learning_rate(tmp_path, caplog):
    """Pairs of black patches (black frames mined, or pairs written by hand): every embedding is the same, the guard
    engages at once, and its advice was "a lower train.lr", which cannot help; it now names the pairs to look at."""
    from train_utils import write_pairs

    from vidssl.train import flat_patch_share

    black = write_pairs(tmp_path / "black pairs", np.zeros((36, 3, 40, 40, 3), np.uint8), [f"v{i % 4}" for i in
                        range(36)], list(range(36)))
    with caplog.at_level(logging.WARNING, logger="vidssl.train"):
        train(black, tmp_path / "run", load_config(None, TINY + ["train.steps=2", "miner.hard_start=0"]),
              progress=False)
    said = [r.getMessage() for r in caplog.records if "is above miner.guard_neg_cos" in r.getMessage()]
    assert len(said) == 1 and "100% of this batch's patches are a single flat colour" in said[0]
    assert f"look at the pairs with `vidssl show-pairs '{black}'`" in said[0] and "train.lr" not in said[0]
    # the share against a per-patch loop: flat in every channel (each its own value), or not
    x = torch.randn(6, 3, 8, 8)
    x[1], x[4] = torch.tensor([0.3, -1.0, 2.0]).view(3, 1, 1), -1.7
    x[2, 1] = 0.5  # one flat channel of three is not a flat patch
    expected = sum(all(float(x[i, c].max() - x[i, c].min()) == 0 for c in range(3)) for i in range(6)) / 6
    assert expected == pytest.approx(2 / 6) and flat_patch_share(x) == pytest.approx(expected)


def test_the_collapse_guard_warns_the_first_time_it_engages_then_says_it_as_info(pairs, tmp_path, monkeypatch,
                                                                                  caplog):
    """The guard held the miner back at steps 3 and 6 (forced here: its running mean is no knob a test can set): a
    warning the first time, an info line the second (a mean hovering at the bar would warn every few steps)."""
    from vidssl.miners import MiningSchedule

    phase = MiningSchedule.phase
    monkeypatch.setattr(MiningSchedule, "phase", lambda self, step: "guard" if step in (2, 5) else phase(self, step))
    cfg = load_config(None, TINY + ["train.steps=8", "miner.hard_start=0", "miner.guard=false"])
    with caplog.at_level(logging.INFO, logger="vidssl.train"):
        train(pairs, tmp_path / "run", cfg, progress=False)
    engaged = [(r.levelno, r.getMessage()[:14]) for r in caplog.records if "is above miner.guard_neg_cos" in
               r.getMessage()]
    assert engaged == [(logging.WARNING, "train: step 3:"), (logging.INFO, "train: step 6:")]
    left = [r.levelno for r in caplog.records if "is back under miner.guard_neg_cos" in r.getMessage()]
    assert left == [logging.INFO, logging.INFO]


def test_a_budget_fit_that_keeps_the_step_count_is_not_on_record(pairs, tmp_path, monkeypatch):
    """10 steps of 0.01 s in a 10-minute budget: the fit keeps train.steps (it never goes beyond it), changing
    nothing, so fit_history stays empty (train.steps=10 with fit_budget=false repeats the run)."""
    simulated_clock(monkeypatch, lambda step: 0.01)
    cfg = load_config(None, TINY + ["train.steps=10", "train.image_every=0"])
    stats = train(pairs, tmp_path / "run", cfg, budget_minutes=10, progress=False)
    assert (stats["stopped"], stats["total_steps"], stats["fit_history"]) == ("done", 10, [])
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT)["fitted"] is True  # it was fitted


def test_a_speed_up_under_a_tenth_does_not_grow_the_schedule(pairs, tmp_path, monkeypatch):
    """Speed measured since the fit varies (a shared machine): the schedule grows only for a count over 1.1x its
    own. 1 s a step, fitted at step 7 to 7 + int(0.97 * 23) = 29 steps, then 0.93 s a step: refits count 31 (under
    31.9), so the schedule stays at 29."""
    simulated_clock(monkeypatch, lambda step: 1.0 if step < 7 else 0.93)
    cfg = load_config(None, TINY + ["train.steps=100000", "train.checkpoint_every=100000", "train.image_every=0",
                                    "miner.hard_start=0.9"])
    stats = train(pairs, tmp_path / "run", cfg, budget_minutes=0.5, progress=False)
    fitted = 7 + int(0.97 * (30 - 7) / 1.0)
    assert stats["fit_history"] == [[7, fitted]] and stats["total_steps"] == fitted
    assert stats["stopped"] == "done"


@pytest.mark.parametrize("bg", [False, True])
def test_the_steps_cycle_loss_is_the_loop_over_its_maps(bg):
    """The step's cycle loss is the loop over its own maps (tests/test_losses.py's naive cycle): anchors walk to
    positives and back to their rolled copies, both directions, through the backgrounds when asked; swapped rolled
    copies, or the background ignored or taken from the anchors, passed every trainer test."""
    from test_losses import _naive_cycle
    from vidssl.losses import dense_cycle_loss
    from vidssl.train import cycle_shift

    cfg = load_config(None, TINY + ["train.precision=fp32", f"miner.background_negatives={str(bg).lower()}",
                                    f"loss.cycle_background={str(bg).lower()}", "loss.cycle_weight=0.3"])
    Pn = cfg.train.batch_pairs
    model = build_model(cfg)
    step = TrainStep(model, cfg, torch.device("cpu"), total_steps=10)
    x = torch.randn((3 if bg else 2) * Pn, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    shift = cycle_shift(cfg.seed, 0, 4, 4)
    with torch.no_grad():  # the same train-mode forward (batch statistics) the step takes, before it updates
        rolled = torch.cat([torch.roll(x[:2 * Pn], (8 * shift[0], 8 * shift[1]), dims=(2, 3))])
        _, maps = model(torch.cat([x, rolled]), dense=True)
    out = step(x, torch.arange(Pn) % 3, 0)
    m = maps.double().split(Pn)
    a, b, extra = m[0], m[1], (m[2] if bg else None)
    ar, br = m[-2], m[-1]
    T = cfg.loss.cycle_temperature
    # one pair: the loop is slow (the library's own loop test covers batches of pairs)
    sub = lambda t: None if t is None else t[:1]  # noqa: E731
    full = 0.5 * (_naive_cycle(a[:1], b[:1], ar[:1], shift, T, sub(extra))
                  + _naive_cycle(b[:1], a[:1], br[:1], shift, T, sub(extra)))
    lib = 0.5 * (float(dense_cycle_loss(a, b, ar, shift, T, extra))
                 + float(dense_cycle_loss(b, a, br, shift, T, extra)))
    one = 0.5 * (float(dense_cycle_loss(a[:1], b[:1], ar[:1], shift, T, sub(extra)))
                 + float(dense_cycle_loss(b[:1], a[:1], br[:1], shift, T, sub(extra))))
    assert one == pytest.approx(full, rel=1e-6)  # the library function on these maps is the loop's
    assert out.cycle.item() == pytest.approx(lib, rel=1e-4)


# ----------------------------------------------------------------------------------------------------------------
# from a mutation review of the trainer


def _one_process_group(tmp_path):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)


def test_a_rank_other_than_0_writes_nothing_and_takes_its_share_of_an_epoch(pairs, tmp_path, monkeypatch):
    """Rank 1 of 2 (a one-process gloo group standing in for the pair): it writes no checkpoint, log, config.yaml,
    stats.json or TensorBoard event into the (shared) run folder, and train.epochs=1 is an epoch of *global*
    batches: per_epoch / world steps. Kills: checkpoint saved by every rank (`if not d.main: return` dropped),
    stats.json or the image grid written by every rank, epochs not divided by the process count."""
    import torch.distributed as dist

    from vidssl import train as trainer
    from vidssl.data import batches_per_epoch, open_pairs

    _one_process_group(tmp_path)
    try:
        monkeypatch.setattr(trainer, "_init_distributed", lambda *a: trainer.Dist(rank=1, world=2, local_rank=0))
        monkeypatch.setattr(trainer, "_check_ranks_agree", lambda *a: None)  # all_gather needs the real second rank
        run = tmp_path / "run"
        run.mkdir()  # rank 0 made it
        cfg = load_config(None, TINY + ["train.steps=0", "train.epochs=1", "train.image_every=1",
                                        "train.checkpoint_every=1", "train.log_every=1"])
        stats = train(pairs, run, cfg, progress=False)
    finally:
        dist.destroy_process_group()
    per_epoch = batches_per_epoch(len(open_pairs(pairs)), 12, 2)
    assert stats["step"] == stats["total_steps"] == per_epoch // 2
    assert sorted(p.name for p in run.iterdir()) == []


def test_the_run_folder_stays_locked_until_stats_json_is_written(pairs, tmp_path, monkeypatch):
    """While a training writes into RUN, a second command into RUN is refused: tried at a step, at the final
    checkpoint and at stats.json. Kills: the lock not taken, or released before the final writes."""
    from vidssl import train as trainer
    from vidssl.io import run_lock

    run, refused = tmp_path / "run", []

    def try_lock(when):
        try:
            with run_lock(run):
                refused.append((when, False))
        except VidsslError as e:
            refused.append((when, "is in use by another vidssl command" in str(e)))

    step_fn, save, write_json = TrainStep.__call__, trainer._save_checkpoint, trainer.atomic_write_json
    monkeypatch.setattr(TrainStep, "__call__", lambda self, x, g, i: (try_lock(f"step {i}") if i == 1 else None)
                        or step_fn(self, x, g, i))
    monkeypatch.setattr(trainer, "_save_checkpoint", lambda p, s: (try_lock(f"ckpt {s['step']}"), save(p, s)))
    monkeypatch.setattr(trainer, "atomic_write_json", lambda p, o: (try_lock(p.name), write_json(p, o)))
    train(pairs, run, load_config(None, TINY + ["train.steps=3", "train.image_every=0"]), progress=False)
    assert refused == [("step 1", True), ("ckpt 3", True), ("stats.json", True)]
    with run_lock(run):  # and free once train() returned
        pass


def test_a_checkpoint_holding_pickled_code_is_refused_unrun(tmp_path):
    """load_checkpoint reads with weights_only=True: a checkpoint whose pickle calls a function (a planted or foreign
    file) is an 'unreadable checkpoint' error, and the function never runs. Kills: weights_only=False."""
    marker = tmp_path / "ran"

    class Planted:
        def __reduce__(self):  # unpickling calls open(marker, "w"): the file appears if the pickle's code ran
            return (open, (str(marker), "w"))

    path = tmp_path / CHECKPOINT
    torch.save({"format": "vidssl-train/1", "step": 0, "payload": Planted()}, path)
    with pytest.raises(VidsslError, match=r"(?s)unreadable checkpoint .*delete it to start over"):
        load_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize("kind, said", [
    ("pickled module", "it holds objects other than tensors (another tool's file?), not loaded as they could run code"),
    ("legacy pickle", "it holds objects other than tensors (another tool's file?), not loaded as they could run code"),
    ("zip of text", "RuntimeError: file in archive is not in a subdirectory: a.txt"),
    ("text", "not a torch file: damaged, or of another format"),
    ("empty", "empty"),
])
def test_a_checkpoint_that_is_no_checkpoint_is_one_line_without_torchs_unsafe_advice(tmp_path, kind, said):
    """A checkpoint.pt that is a whole pickled module (another tool's), text or empty: the error is one line and
    never relays torch's advice to load it with weights_only=False (lines of it, with terminal colour codes, cut
    mid-word), which runs whatever code the file holds; export's loader already said what such a file is."""
    path = tmp_path / CHECKPOINT
    if kind == "pickled module":
        torch.save(torch.nn.Linear(2, 2), path)
    elif kind == "legacy pickle":  # torch.save's format before its zip
        torch.save(torch.nn.Linear(2, 2), path, _use_new_zipfile_serialization=False)
    elif kind == "zip of text":  # torch's "[enforce fail at inline_container.cc:180] ." before its words
        import zipfile

        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("a.txt", "hi")
    else:
        path.write_bytes(b"step: 10\n" if kind == "text" else b"")
    with pytest.raises(VidsslError) as e:
        load_checkpoint(path)
    assert str(e.value) == f"{path}: unreadable checkpoint ({said}); delete it to start over, or choose another --out"


def test_a_resumed_run_keeps_the_fits_of_its_earlier_sessions(pairs, tmp_path, monkeypatch):
    """fit_history of a run fitted in its first session, killed, and finished in a second: the first session's fit
    stays on record (checkpoint and stats.json). Kills: fit_history not restored from the checkpoint."""
    simulated_clock(monkeypatch, lambda step: 0.05)  # 3 s of budget: fitted at step 7 to 7 + int(0.97 * 2.65 / 0.05)
    cfg = load_config(None, TINY + ["train.steps=100000", "train.checkpoint_every=10", "train.image_every=0"])
    train_killed_at(monkeypatch, 12, pairs, tmp_path / "run", cfg, budget_minutes=0.05)
    first = load_checkpoint(tmp_path / "run" / CHECKPOINT)["fit_history"]
    assert first == [[7, 7 + int(0.97 * (3 - 7 * 0.05) / 0.05)]]
    done = train(pairs, tmp_path / "run", cfg, budget_minutes=None, progress=False)
    assert done["fit_history"] == first == load_checkpoint(tmp_path / "run" / CHECKPOINT)["fit_history"]


def test_the_hardest_triplet_grid_shows_anchor_positive_negative_rows_by_loss():
    """Row r of the grid is (anchor, positive, negative) of the r-th largest loss, denormalised; against a grid
    built by hand. Kills: a swapped column, the wrong order, a missing denormalisation."""
    from vidssl.losses import Triplets
    from vidssl.train import hardest_triplet_grid

    g = torch.Generator().manual_seed(0)
    x = torch.randn(9, 3, 8, 8, generator=g) * 0.2
    t = Triplets(torch.tensor([0, 1, 2, 0]), torch.tensor([3, 4, 5, 3]), torch.tensor([6, 7, 8, 4]))
    values = torch.tensor([0.1, 0.9, 0.5, 0.0])
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    grid = hardest_triplet_grid(x, values, t, mean, std, rows=2)
    m, s = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)
    for r, k in enumerate([1, 2]):  # losses 0.9, then 0.5
        for c, index in enumerate((t.a[k], t.p[k], t.n[k])):
            cell = grid[:, 2 + r * 10:2 + r * 10 + 8, 2 + c * 10:2 + c * 10 + 8]
            assert torch.allclose(cell, (x[index] * s + m).clamp(0, 1)), (r, c)


def test_the_hardest_triplet_grid_shows_each_anchor_once():
    """A hard miner's K negatives share their anchor: the grid's rows were the same anchor K times over. A row per
    anchor, its hardest triplet, anchors by that loss."""
    from vidssl.losses import Triplets
    from vidssl.train import hardest_triplet_grid

    x = torch.rand(9, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    t = Triplets(torch.tensor([1, 1, 1, 2, 0]), torch.tensor([4, 4, 4, 5, 3]), torch.tensor([6, 7, 8, 6, 7]))
    values = torch.tensor([0.9, 0.8, 0.7, 0.5, 0.6])
    grid = hardest_triplet_grid(x, values, t, (0.0,) * 3, (1.0,) * 3, rows=3)
    for r, k in enumerate([0, 4, 3]):  # anchor 1 (0.9; its 0.8 and 0.7 left out), anchor 0 (0.6), anchor 2 (0.5)
        for c, index in enumerate((t.a[k], t.p[k], t.n[k])):
            assert torch.equal(grid[:, 2 + r * 10:2 + r * 10 + 8, 2 + c * 10:2 + c * 10 + 8], x[index]), (r, c)
    assert grid.shape[1] == 2 + 3 * 10


def test_a_run_shorter_than_image_every_writes_its_last_step_s_grid(pairs, tmp_path):
    """A budget-fitted run of fewer steps than train.image_every (200) wrote no image at all."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = load_config(None, TINY + ["train.steps=7", "train.image_every=5"])
    train(pairs, tmp_path / "run", cfg, progress=False)
    events = EventAccumulator(str(tmp_path / "run" / "tb"), size_guidance={"images": 0})
    events.Reload()
    assert [image.step for image in events.Images("hardest_triplets")] == [5, 7]
    # the curves in sections: the loss, the embedding's collapse signals, the schedule, the throughput
    tags = set(events.Tags()["scalars"])
    assert {"loss/loss", "loss/active", "embedding/pos_cos", "embedding/neg_cos_ema", "embedding/spread",
            "optimisation/lr", "optimisation/guarded", "speed/pairs_per_s"} <= tags, sorted(tags)
    logged = set(json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[-1])) - {"step", "phase"}
    assert {tag.split("/")[1] for tag in tags} == logged  # every number of log.jsonl, once
    assert not [tag for tag in tags if tag.startswith("train/")], sorted(tags)  # every key has its section


def test_a_resumed_fp16_run_continues_with_the_scalers_state(pairs, tmp_path, monkeypatch):
    """The grad scaler's scale is checkpointed and restored (a stand-in scaler with state, fp16 needing CUDA): a
    run killed after its step-10 checkpoint ends with the scale of an uninterrupted one (halved on each of the
    first 15 steps, then kept). Kills: scaler.load_state_dict not called on resume."""
    class HalvingScaler(StandInScaler):
        def step(self, optimizer):
            self.calls += 1
            optimizer.step()

        def update(self):
            if self.scale_value > 65536.0 / 2 ** 15:
                self.scale_value /= 2

        def state_dict(self):
            return {"scale": self.scale_value}

        def load_state_dict(self, state):
            self.scale_value = state["scale"]

    init = TrainStep.__init__

    def with_scaler(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.scaler = HalvingScaler()

    monkeypatch.setattr(TrainStep, "__init__", with_scaler)
    cfg = load_config(None, TINY + ["train.steps=20", "train.checkpoint_every=10", "train.image_every=0"])
    train(pairs, tmp_path / "straight", cfg, progress=False)
    train_killed_at(monkeypatch, 12, pairs, tmp_path / "killed", cfg)
    assert load_checkpoint(tmp_path / "killed" / CHECKPOINT)["scaler"] == {"scale": 65536.0 / 2 ** 10}
    train(pairs, tmp_path / "killed", cfg, progress=False)
    assert load_checkpoint(tmp_path / "killed" / CHECKPOINT)["scaler"] == \
        load_checkpoint(tmp_path / "straight" / CHECKPOINT)["scaler"] == {"scale": 65536.0 / 2 ** 15}


def test_the_loop_trains_on_the_batches_of_the_runs_seed(pairs, tmp_path, monkeypatch):
    """The pairs of the first two steps are epoch 0's batches 0 and 1 planned with the run's seed (sampler.py's
    epoch_batches, independently), which another seed's plan does not give. Kills: the sampler or loader given
    another seed than cfg.seed."""
    from vidssl import train as trainer
    from vidssl.data import open_pairs
    from vidssl.data.sampler import epoch_batches

    seen, batches = [], trainer._batches

    def recording(loader, stopping, d):
        for patches, index in batches(loader, stopping, d):
            seen.append(index.tolist())
            yield patches, index

    monkeypatch.setattr(trainer, "_batches", recording)
    train(pairs, tmp_path / "run", load_config(None, TINY + ["seed=3", "train.steps=2", "train.image_every=0"]),
          progress=False)
    p = open_pairs(pairs)
    plan = epoch_batches(p.video, p.track, 12, seed=3, epoch=0)
    assert seen == plan[:2].tolist()
    assert seen != epoch_batches(p.video, p.track, 12, seed=0, epoch=0)[:2].tolist()  # the test can fail


def _fitted_then_repeated(pairs, tmp_path, monkeypatch, warmup, seconds_per_step, budget):
    common = TINY + [f"train.warmup_steps={warmup}", "train.checkpoint_every=1000", "train.image_every=0"]
    with monkeypatch.context() as m:
        simulated_clock(m, lambda step: seconds_per_step)
        fitted = train(pairs, tmp_path / "fitted", load_config(None, common + ["train.steps=100000"]),
                       budget_minutes=budget, progress=False)
    n = fitted["total_steps"]
    assert all(at <= warmup for at, _ in fitted["fit_history"]), fitted["fit_history"]  # the README's condition
    again = train(pairs, tmp_path / "again", load_config(None, common + [f"train.steps={n}", "train.fit_budget=false"]),
                  progress=False)
    return fitted, again


def test_a_fitted_run_is_repeated_bit_for_bit_by_its_final_count(pairs, tmp_path, monkeypatch):
    """README: a fitted run is repeated bit for bit by train.steps=N, train.fit_budget=false, N its final count,
    when no fit_history entry lies past train.warmup_steps. 0.05 s a step in 6 s: fitted at step 7 to 116 steps,
    the default 20-step warm-up. Kills: the miner's phase not moved by a fit (schedule.set_total dropped), a fit
    that changes the warm-up's length."""
    fitted, again = _fitted_then_repeated(pairs, tmp_path, monkeypatch, 20, 0.05, 0.1)
    assert fitted["fit_history"] == [[7, 116]]
    assert again["weights_sha256"] == fitted["weights_sha256"]
    assert fitted["pinning_repeats"] is True  # what stats.json says of it, the report and summary.json after it


def test_a_run_refitted_after_its_warm_up_says_pinning_does_not_repeat_it(pairs, tmp_path, monkeypatch):
    """Steps that slow down 4x at step 30 (a shared machine): the fit shortens the schedule after the warm-up, so the
    cosine of the steps before ran under another count, and train.steps=N, fit_budget=false, gives other weights.
    stats.json said nothing of it; `pinning_repeats` is now false, as the pinned rerun shows."""
    common = TINY + ["train.warmup_steps=20", "train.checkpoint_every=1000", "train.image_every=0"]
    with monkeypatch.context() as m:
        simulated_clock(m, lambda step: 0.05 if step < 30 else 0.2)
        fitted = train(pairs, tmp_path / "fitted", load_config(None, common + ["train.steps=100000"]),
                       budget_minutes=0.1, progress=False)
    assert any(at > 20 for at, _ in fitted["fit_history"]), fitted["fit_history"]
    again = train(pairs, tmp_path / "again", load_config(None, common + [f"train.steps={fitted['total_steps']}",
                                                                        "train.fit_budget=false"]), progress=False)
    assert again["weights_sha256"] != fitted["weights_sha256"] and fitted["pinning_repeats"] is False
    assert again["pinning_repeats"] is True  # no fit at all: its own count from the start
    assert json.loads((tmp_path / "fitted" / "stats.json").read_text())["pinning_repeats"] is False


def test_pinning_repeats_follows_the_schedule_step_by_step():
    """Against the schedule computed step by step: a fit inside the warm-up that keeps its length repeats; one
    that shortens the warm-up (a count under 5 x warmup_steps) or moves the main miner's start before its step, or
    a run stopped short of its count, does not."""
    from vidssl.train import lr_factor, pinning_repeats

    tc = TrainConfig(warmup_steps=20)

    def naive(first, fits, n, hard_start):  # the (lr, phase) of every step the run took, against the pinned run's
        counts = [first] * n
        for at, steps in fits:
            counts[at:] = [steps] * (n - at)
        return all(lr_factor(s, c, tc) == lr_factor(s, n, tc)
                   and (s < round(hard_start * c)) == (s < round(hard_start * n)) for s, c in enumerate(counts))

    cases = [(10000, [[7, 116]], 116, 0.5), (10000, [[7, 60]], 60, 0.5), (10000, [[7, 116], [30, 90]], 90, 0.5),
             (10000, [[7, 116]], 116, 0.05), (10000, [[7, 116]], 116, 0.0), (10000, [], 10000, 0.5),
             (50, [[7, 116]], 116, 0.5)]
    got = [pinning_repeats(first, fits, n, "done", tc, hard) for first, fits, n, hard in cases]
    assert got == [naive(*case) for case in cases] == [True, False, False, False, True, True, False]
    assert not pinning_repeats(10000, [[7, 116]], 116, "budget", tc, 0.5)


def test_a_step_with_a_non_finite_gradient_updates_nothing():
    """A finite loss whose gradient is infinite (a hook scales one parameter's by inf): the step says "gradient"
    and leaves every parameter and the optimizer's momentum as they were ("nothing was updated", StepOutput).
    Kills: the gradient check moved after the optimizer step (the weights and momentum already NaN)."""
    from vidssl.train import build_model

    cfg = load_config(None, TINY + ["train.precision=fp32", "loss.cycle_weight=0"])
    model = build_model(cfg)
    step = TrainStep(model, cfg, torch.device("cpu"), total_steps=10)
    x = torch.randn(24, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert step(x, torch.arange(12) % 4, 0).diverged is None  # a good step first: momentum buffers exist
    before = {k: v.clone() for k, v in model.state_dict().items()}
    momentum = {id(p): s["momentum_buffer"].clone() for p, s in step.optimizer.state.items()}
    next(model.parameters()).register_hook(lambda g: g * float("inf"))
    out = step(x, torch.arange(12) % 4, 1)
    assert out.diverged == "gradient" and math.isfinite(out.loss.item())
    params = dict(model.named_parameters())
    assert all(torch.equal(params[k], before[k]) for k in params)
    assert all(torch.equal(s["momentum_buffer"], momentum[id(p)]) for p, s in step.optimizer.state.items())


# ----------------------------------------------------------------------------------------------------------------
# from a mutation review: a second Ctrl-C, each draw's stream


def test_a_second_ctrl_c_while_training_stops_at_once_a_second_sigterm_does_not():
    """Kills sg04 (the second Ctrl-C swallowed like the second SIGTERM): README and the class docstring promise
    "A second Ctrl-C stops at once"; no test sends two SIGINTs (test_a_signal_while_training_keeps_the_step_in_flight
    sends SIGINT once, SIGTERM once or twice)."""
    from vidssl.train import StopAtStepEnd

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        stopping = StopAtStepEnd()
        stopping.install()
        signal.raise_signal(signal.SIGTERM)  # the first: noted, the step goes on
        signal.raise_signal(signal.SIGTERM)  # a relayed one: still goes on
        assert stopping.signum == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)  # Ctrl-C after it: now
        stopping.restore()
        stopping = StopAtStepEnd()
        stopping.install()
        signal.raise_signal(signal.SIGINT)
        assert stopping.signum == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
        stopping.restore()
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)


def test_dropout_is_seeded_from_the_dropout_stream_and_not_the_minings():
    """Kills sd01 (``_seed_step`` seeding from Stream.MINING): test_per_step_draws_have_streams_of_their_own checks
    that step_seed keeps the streams apart, but nothing checked that each caller names its own stream; dropout masks
    would repeat the miner's picks draw for draw."""
    from vidssl.seeds import Stream, step_generator
    from vidssl.train import Dist, _seed_step

    with torch.random.fork_rng(devices=[]):
        _seed_step(3, 7, Dist(1, 2, 0))
        drawn = torch.rand(16)
    assert torch.equal(drawn, torch.rand(16, generator=step_generator(Stream.DROPOUT, 3, 7, 1)))
    assert not torch.equal(drawn, torch.rand(16, generator=step_generator(Stream.MINING, 3, 7, 1)))


def test_the_cycle_roll_is_drawn_from_its_own_stream(monkeypatch):
    """Kills sd02 (``cycle_shift`` drawing from Stream.MINING): the trainer tests only check the roll is a function
    of (seed, step) within bounds. The stream each of its draws names is recorded."""
    from vidssl import train as trainer
    from vidssl.seeds import Stream, step_generator

    named = []
    monkeypatch.setattr(trainer, "step_generator", lambda stream, *a, **k: named.append(stream) or
                        step_generator(stream, *a, **k))
    for step in range(5):
        trainer.cycle_shift(0, step, 16, 16)
    assert named and set(named) == {Stream.CYCLE_ROLL}


def test_the_run_records_how_its_pairs_were_mined_and_a_resume_keeps_it(tmp_path):
    """config.yaml holds the train command's own mine section (defaults): the pairs' (dataset.json's config,
    video_backend and manifest_sha256, mined here with mine.box_fraction=0.33) went nowhere, so neither the weights'
    card nor `vidssl compare` could say how the pairs were mined."""
    pairs = synthetic_pairs(tmp_path / "pairs", num_videos=3, tracks_per_video=8, mined_with={"box_fraction": 0.33})
    meta = json.loads((pairs / "dataset.json").read_text())
    record = {"mine": meta["config"], "video": {"backend": "auto"}, "manifest_sha256": meta["manifest_sha256"],
              "videos_root": "/videos"}
    run = tmp_path / "run"
    cfg = load_config(None, TINY + ["train.steps=400", "train.fit_budget=false"])
    stats = train(pairs, run, cfg, budget_minutes=0.002, progress=False)
    assert stats["stopped"] == "budget" and stats["mining"]["mine"]["box_fraction"] == 0.33
    assert load_checkpoint(run / CHECKPOINT)["mining"] == record
    assert json.loads((run / "stats.json").read_text())["mining"] == record
    assert yaml.safe_load((run / "config.yaml").read_text())["config"]["mine"]["box_fraction"] == 0.5  # the command's
    # a resume keeps the first session's record
    ckpt = load_checkpoint(run / CHECKPOINT)
    ckpt["mining"] = {**record, "videos_root": "/first"}
    torch.save(ckpt, run / CHECKPOINT)
    more = train(pairs, run, cfg, budget_minutes=0.002, resume=True, progress=False)
    assert more["step"] > ckpt["step"] and more["mining"] == ckpt["mining"]
    assert load_checkpoint(run / CHECKPOINT)["mining"] == ckpt["mining"]
    # a checkpoint of an earlier version holds none: the resumed run records the pairs' (their fingerprint, which
    # the resume checks, holds their mining settings)
    del ckpt["mining"]
    torch.save(ckpt, run / CHECKPOINT)
    assert train(pairs, run, cfg, budget_minutes=0.002, progress=False)["mining"] == record
    assert load_checkpoint(run / CHECKPOINT)["mining"] == record
    # pairs merged by an earlier version record none of it: nothing is recorded, and nothing fails
    (pairs / "dataset.json").write_text(json.dumps({"pairs": meta["pairs"], "patch_size": meta["patch_size"]}))
    stats = train(pairs, tmp_path / "run_on_older_pairs", load_config(None, TINY + ["train.steps=1"]), progress=False)
    assert stats["mining"] == json.loads((tmp_path / "run_on_older_pairs" / "stats.json").read_text())["mining"] == {}
