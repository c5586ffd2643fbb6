"""Mine a folder of videos into a pair dataset: resumable, parallel, shardable across machines."""
from __future__ import annotations

import concurrent.futures as futures
import contextlib
import hashlib
import json
import logging
import logging.handlers
import multiprocessing
import os
import signal
import stat
import time
import uuid
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Callable

from tracking.config import MineConfig
from tracking.dataset import (ShardNameIndex, attempt_path, begin_attempt, done_marker, merge, prepare, read_attempt,
                              recorded_shard_count, shard_of, source_state, undo_attempt, video_id, write_video)
from tracking.track import check_tracker
from tracking.video_miner import OutOfTime, SkipVideo, mine_video
from vidssl.errors import (CorruptVideo, EmptyVideo, UnsupportedVideo, UsageError, VideoError, VidsslError,
                           shell_arg)
from vidssl.io import atomic_write_json, content_sample, lock_held, run_lock

log = logging.getLogger(__name__)

# decoding errors -> skip reason; "unreadable" is told apart before opening (see _unreadable)
VIDEO_ERROR_REASONS = {EmptyVideo: "empty", CorruptVideo: "corrupt", UnsupportedVideo: "not_a_video"}

# Runs that may start a video and die on it before it is skipped as one that crashes the process. Not 1: a run
# killed on purpose (kill -9, a preempted job) leaves the same trace as one a decoder crashed, and must resume.
MAX_ATTEMPTS = 2
WORKER_DIED = "the worker process died while mining it (crash or out of memory)"


class SkippedInStrictMode(VidsslError):
    """``--strict``: a video had to be skipped."""


def mine_folder(videos_dir, out_dir, cfg: MineConfig, video_backend: str = "auto", workers: int = 1,
                shard: tuple[int, int] = (0, 1), strict: bool = False, progress: bool = True,
                time_budget_s: float | None = None, label: str | None = None,
                on_prepared: Callable[[], None] | None = None,
                already_said: Callable[[dict], bool] | None = None) -> dict:
    """Mine every video under ``videos_dir`` (this call's ``shard``: index, count) into ``out_dir``. ``label``
    names this mining in its progress bar and skip messages (pretrain's "held-out tails", whose skips are not the
    training videos'). ``on_prepared()`` is called once ``out_dir`` is accepted as this mining's (its settings
    checked and recorded), before any video is mined: what it writes there is in place however the mining ends.
    ``already_said(result)``: whether a video's skip was told by another mining of the same files (pretrain's
    training part, of a zero-byte file): such a skip is logged at debug only (dataset.json records it as any).

    Videos already finished in ``out_dir`` are skipped, so rerunning the same call resumes (a video file that changed
    since it was mined is mined again). With a time budget no new video is started once it is spent, and the videos
    being mined then are cut short there: their pairs so far are kept and they stay pending (a rerun mines them again
    whole, or keeps them where it is cut again, earlier), except that while this call has no pair yet a video goes on
    to its first pair, and one cut before any pair keeps nothing. The dataset is still valid and a rerun continues.
    A video that killed the process on MAX_ATTEMPTS runs is skipped (error).
    Returns the summary of ``dataset.json`` plus ``run`` (this call's videos, frames, seconds and frames/s).
    """
    from vidssl.config import check_section

    check_section(cfg, "mine", MineConfig)  # built in code, a box_fraction of 2 would fail video by video
    check_tracker(cfg)  # an OpenCV without it failed video by video too
    index, count = shard
    if not 0 <= index < count:
        raise UsageError(f"bad shard {index}/{count}: expected I/N with 0 <= I < N")
    if workers < 1:
        raise UsageError(f"--workers must be >= 1, got {workers}")
    if workers > 1:
        from vidssl.lifeline import refuse_reimport

        refuse_reimport("tracking.mine_folder")  # its spawned workers import the main module again
    from vidssl.video import VIDEO_EXTENSIONS, check_named_video, find_videos, refuse_out_among_videos

    root, out = Path(videos_dir), Path(out_dir)
    if root.exists() and not root.is_dir():  # one file named on purpose: what it is, before OUT is made (in a
        check_named_video(root, video_backend)  # folder it would be skipped); a FIFO is no folder either
    paths = find_videos(root)
    if not paths:
        raise VidsslError(f"no videos under {root} (looked for {' '.join(VIDEO_EXTENSIONS)}, recursively)")
    base = root if root.is_dir() else root.parent
    refuse_out_among_videos(out, root, "the pair dataset (manifest, shards, markers)")
    listing = []
    for path in paths:
        rel = path.relative_to(base).as_posix()
        listing.append({"video": rel, "video_id": video_id(rel), "bytes": _size(path)})
    # shards mine a folder together, an unsharded run takes every video left, so alone: without this, one started
    # beside running shards mined their videos a second time
    sharded = count > 1
    together = run_lock(out, "mine", shared=sharded, advice=(
        "an unsharded mining (no --shard) is running there: wait for it to end" if sharded else
        "it is being mined (by shards, or a run without --shard): mining without --shard takes every video left "
        "once it has ended"))
    own_shard = run_lock(out, shard_lock(index, count),  # the same shard twice at once: refused
                         advice="that shard is being mined; start each --shard once (other shards may run beside it)"
                         ) if sharded else contextlib.nullcontext()
    with together, own_shard:
        prepare(out, base, listing, cfg, video_backend, shard=(index, count))
        if on_prepared is not None:
            on_prepared()
        copies = find_copies(base, out, listing)
        todo, crashed = _to_mine(base, out, [e for e in listing if shard_of(e["video"], count) == index], copies)
        # in a pool a dying worker is blamed by the pool itself; only a death of this process counts as a crash
        job = _Job(base, out, cfg, video_backend, strict, counts_deaths=workers == 1, copies=copies)
        return _mine_listed(job, todo, crashed, workers, (index, count), strict, progress, time_budget_s, label,
                            already_said)


def find_copies(root: Path, out: Path, listing: list[dict]) -> dict[str, str]:
    """``{video: the video it is a byte-for-byte copy of}`` among ``listing`` (paths relative to ``root``). Mined
    twice, one clip would be two "videos" whose tracks are each other's negatives, identical to the positives.
    The copy kept is one already mined into ``out``, else the first by path: every shard, on any machine, picks the
    same. Only files of equal size are read (their content samples, then whole where those agree)."""
    by_size: dict[int, list[str]] = {}
    for entry in listing:
        # a file without read permission is skipped as unreadable: it must not be the copy kept (root reads it)
        if entry["bytes"] > 0 and not _unreadable(root / entry["video"]):
            by_size.setdefault(entry["bytes"], []).append(entry["video"])
    copies: dict[str, str] = {}
    digests = _DigestCache(out)
    for names in by_size.values():
        if len(names) < 2:
            continue
        by_sample: dict[str, list[str]] = {}
        for name in names:
            sample = content_sample(root / name)
            if sample is not None:
                by_sample.setdefault(sample, []).append(name)
        by_content: dict[str, list[str]] = {}
        for group in by_sample.values():
            for name in group if len(group) > 1 else ():
                digest = digests.get(root, name)
                if digest is not None:
                    by_content.setdefault(digest, []).append(name)
        for group in by_content.values():
            if len(group) < 2:
                continue
            mined = [name for name in group if _mined(root, out, name)]
            kept = min(mined or group)
            copies.update({name: kept for name in group if name != kept})
    digests.save()
    return copies


class _DigestCache:
    """Whole-file SHA-1s of the videos that have a same-size twin, in ``OUT/.vidssl-digests.json`` by path with the
    file's state: a copied folder is read whole once, not again by every rerun and every shard."""

    def __init__(self, out: Path):
        self.path = out / ".vidssl-digests.json"
        try:
            self.known = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.known = {}
        if not isinstance(self.known, dict):
            self.known = {}
        self.changed = False

    def get(self, root: Path, name: str) -> str | None:
        state = source_state(root / name)
        record = self.known.get(name)
        if isinstance(record, dict) and record.get("state") == state and isinstance(record.get("sha1"), str):
            return record["sha1"]
        digest = _content_digest(root / name)
        if digest is not None and state is not None:
            self.known[name] = {"state": state, "sha1": digest}
            self.changed = True
        return digest

    def save(self) -> None:
        if self.changed:  # shards writing at once: the last one's wins, a cache missing entries is read again
            atomic_write_json(self.path, self.known, indent=None)


def _content_digest(path: Path) -> str | None:
    digest = hashlib.sha1()
    try:
        with open(path, "rb") as fh:
            while block := fh.read(1 << 24):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def _mined(root: Path, out: Path, name: str) -> bool:
    marker = done_marker(out, video_id(name), source_state(root / name), root / name)
    return marker is not None and marker.get("status") == "mined"


def _mine_listed(job: "_Job", todo: list[dict], crashed: list[dict], workers: int, shard: tuple[int, int],
                 strict: bool, progress: bool, time_budget_s: float | None, label: str | None = None,
                 already_said: Callable[[dict], bool] | None = None) -> dict:
    """Mine this shard's ``todo`` (and record its ``crashed``) under the shard's lock; the summary of mine_folder."""
    out = job.out

    started = time.monotonic()
    # handed to pool workers as a time of this clock: time.monotonic is one clock for the whole machine on Linux,
    # macOS and Windows, and a pool's workers run on the machine that started them
    job.deadline = None if time_budget_s is None else started + time_budget_s
    bar = _FrameBar(crashed + todo, progress, label, already_said)
    done: list[dict] = []
    try:
        for entry in crashed:
            detail = (f"crashed the process on {MAX_ATTEMPTS} runs (or those runs were killed with -9 while on "
                      f"it: with --workers 1 the two look the same); delete {attempt_path(out, entry['video_id'])} "
                      "to retry")
            done.append(_finish(job.crashed(entry, detail), bar, strict))
        if workers == 1:
            for entry in todo:
                if _spent(started, time_budget_s):
                    break
                done.append(_finish(job(entry, bar.update_frames, until_a_pair=_no_pair_yet(done)), bar, strict))
        else:
            _run_pool(job, todo, workers, bar, done, strict, started, time_budget_s)
    finally:
        bar.close()
        summary = merge(out)
    seconds = time.monotonic() - started
    frames = sum(r["frames"] for r in done)
    # a video cut before its first pair (queued in a pool past the deadline) was not mined: its frames count
    summary["run"] = {"videos": sum(r["status"] != "pending" for r in done), "frames": frames,
                      "seconds": round(seconds, 2), "frames_per_s": round(frames / seconds, 1) if seconds > 0 else None,
                      "shard": list(shard), "workers": workers, "out": str(out),
                      "stopped_by_budget": len(done) < len(crashed) + len(todo)
                      or any(r["status"] == "pending" or r["cut_short"] for r in done)}
    return summary


def _to_mine(root: Path, out: Path, entries: list[dict], copies: dict[str, str]) -> tuple[list[dict], list[dict]]:
    """(videos to mine, videos that crashed the process on MAX_ATTEMPTS runs) among the unfinished ``entries``."""
    todo, crashed = [], []
    for entry in entries:
        source = source_state(root / entry["video"])
        marker = done_marker(out, entry["video_id"], source, root / entry["video"])
        # skipped as "unreadable", whose detail says `chmod +r FILE`: a chmod changes neither size nor mtime; or
        # no longer the copy it was recorded as (the original deleted or changed), or a copy now (a file mined,
        # moved away and copied back: both mined, the first by path is kept); or cut short by a time budget
        fixed = marker is not None and (
            marker.get("reason") == "unreadable" and not _unreadable(root / entry["video"])
            or marker.get("copy_of") != copies.get(entry["video"]) or "budget_cut" in marker)
        if marker is not None and not fixed:
            continue
        attempt = read_attempt(out, entry["video_id"])
        tried = attempt["attempts"] if attempt and attempt.get("source") == source else 0
        (crashed if tried >= MAX_ATTEMPTS else todo).append(entry)
    return todo, crashed


def _run_pool(job, todo: list[dict], workers: int, bar, done: list, strict: bool, started: float,
              budget: float | None) -> None:
    """Mine ``todo`` in ``workers`` processes. A worker that dies (crash, out of memory) breaks the whole pool, so
    the videos being mined then are only suspects: each is mined again alone, and one that kills its lone worker
    too is recorded as skipped (error); the others go on in a fresh pool."""
    while todo:
        todo, suspects = _pool_pass(job, todo, workers, bar, done, strict, started, budget)
        for entry in suspects:
            _pool_pass(job, [entry], 1, bar, done, strict, started, None, blame=True)


def _pool_pass(job, todo: list[dict], workers: int, bar, done: list, strict: bool, started: float,
               budget: float | None, blame: bool = False) -> tuple[list[dict], list[dict]]:
    """Mine ``todo`` in one pool, submitting lazily so a budget or a strict failure stops early. Returns (videos not
    started, videos being mined) when a worker died, else ([], []); with ``blame`` (a pool of one video) that video
    is recorded as the one that crashes its worker instead."""
    context = multiprocessing.get_context("spawn")  # decoders and OpenCV threads do not survive fork safely
    # a spawned worker's logging is unconfigured: it gets the levels here, and its records come back to be handled
    levels = {name: logging.getLogger(name).getEffectiveLevel() for name in ("", *WORKER_LOGGERS)}
    pool = futures.ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                       initargs=(os.getpid(), levels))
    pending = iter(todo)
    running: dict = {}  # future -> listing entry
    try:
        while True:
            while len(running) < 2 * workers and not _spent(started, budget):
                entry = next(pending, None)
                if entry is None:
                    break
                running[pool.submit(_mine_in_worker, job, entry, _no_pair_yet(done))] = entry
            if not running:
                return [], []
            finished, _ = futures.wait(running, return_when=futures.FIRST_COMPLETED)
            if any(isinstance(f.exception(), BrokenProcessPool) for f in finished):
                futures.wait(running)  # every future of a broken pool ends (failed, or finished just before)
                again, suspects = _after_crash(job, running, bar, done, strict, blame)
                return again + list(pending), suspects
            for future in sorted(finished, key=lambda f: running[f]["video"]):
                del running[future]
                result = _worker_result(future)
                bar.update_frames(result["frames"])
                done.append(_finish(result, bar, strict))
    except KeyboardInterrupt:
        _stop_now(pool, job, list(running.values()))
        raise
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=True)


def _after_crash(job, running: dict, bar, done: list, strict: bool, blame: bool) -> tuple[list[dict], list[dict]]:
    """Book the futures of a broken pool: results that came back count; returns (videos no worker had started,
    videos a worker was mining), both in listing order. With ``blame`` the video being mined is recorded as crashed.
    A pool that broke before any video started (workers dying at start-up: a script without an
    ``if __name__ == "__main__":`` guard, a missing library, memory) would break again: that is an error."""
    again, suspects, progressed = [], [], False
    for future, entry in sorted(running.items(), key=lambda item: item[1]["video"]):
        error = future.exception()
        if not isinstance(error, BrokenProcessPool):
            result = _worker_result(future)  # a video's error is raised there, after what its worker logged
            bar.update_frames(result["frames"])
            done.append(_finish(result, bar, strict))
            progressed = True
        elif not job.started(entry):
            again.append(entry)
        elif blame:
            detail = f"{WORKER_DIED}; delete {attempt_path(job.out, entry['video_id'])} to retry"
            done.append(_finish(job.crashed(entry, detail), bar, strict))
            progressed = True
        else:
            suspects.append(entry)
            progressed = True
    if not progressed:
        raise VidsslError("mining worker processes died before starting any video; a script calling mine_folder "
                          "with workers > 1 needs an `if __name__ == \"__main__\":` guard (workers are spawned and "
                          "import it), otherwise check memory and that the workers can import OpenCV, or use "
                          "--workers 1 to see the error")
    return again, suspects


def _stop_now(pool, job, entries: list[dict]) -> None:
    """Ctrl-C: cancel what is queued and end the workers (they ignore SIGINT) without waiting for their videos,
    whose starts are taken back: interrupted is not crashed, and the next run mines them."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # private; 3.14 has terminate_workers()
    pool.shutdown(wait=False, cancel_futures=True)  # a queued call already handed to a worker is not cancellable
    for process in processes:
        process.terminate()
    for process in processes:
        process.join()  # none may write an attempt after the undo below
    for entry in entries:
        undo_attempt(job.out, entry["video_id"], job.run)


WORKER_LOGGERS = ("vidssl", "tracking")  # the packages whose levels a worker takes from the main process
_worker_records: list[logging.LogRecord] = []  # a worker's records since its last video was returned
# a worker's index of the manifest's shard names, kept from video to video: each comes with a fresh copy of the job
_worker_shard_names = ShardNameIndex()


class _KeepRecords(logging.handlers.QueueHandler):
    """Keeps a worker's records, made picklable as for a queue (message formatted, traceback in its text). Not a
    multiprocessing queue: a worker killed (-9, out of memory) while holding its lock would hang the others."""

    def enqueue(self, record: logging.LogRecord) -> None:
        _worker_records.append(record)


def _init_worker(miner_pid: int, levels: dict[str, int] | None = None) -> None:
    import cv2

    from vidssl.lifeline import exit_with

    cv2.setNumThreads(1)  # parallelism comes from the processes; nested thread pools only contend
    # Ctrl-C reaches the whole process group; the main process alone decides what stops (see _stop_now)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_with(miner_pid)  # a killed `vidssl mine` leaves no worker waiting on its queue
    # last: a failure above, in no video, is still printed here (by lastResort). From now on a handler of this
    # process's own would print to bare stderr (across the progress bar), or a second time beside the main
    # process's: the main module's import set them up here too, on any logger (`vidssl`, one of its modules', ...),
    # and one that does not propagate would keep its records from the keeper; lastResort only acts where no handler is
    for logger in [logging.root, *logging.Logger.manager.loggerDict.values()]:
        if isinstance(logger, logging.Logger):  # not a PlaceHolder (a dotted name's parent no one asked for)
            logger.handlers.clear()
            logger.propagate = True
    logging.root.addHandler(_KeepRecords(None))
    for name, level in (levels or {}).items():
        logging.getLogger(name).setLevel(level)  # a -v run gets the workers' debug records, others no debug work


def _mine_in_worker(job: "_Job", entry: dict, until_a_pair: bool = False) -> tuple[dict, list[logging.LogRecord]]:
    """``job(entry)`` in a pool worker, with the log records since the last video's (see _worker_result); where it
    raises (a full disk), the records go with the error, as its ``worker_records`` (an exception's attributes are
    pickled with it)."""
    job.shard_names = _worker_shard_names
    try:
        return job(entry, until_a_pair=until_a_pair), _worker_records[:]
    except BaseException as error:
        error.worker_records = _worker_records[:]
        raise
    finally:
        _worker_records.clear()


def _worker_result(future) -> dict:
    """The result of a video mined in the pool, its worker's log records handled here first: by this process's
    handlers (RUN/pretrain.log, the console) and levels, before the video is booked as done, or before its error is
    raised. The records of a worker that died are lost with it (the crash is reported as such)."""
    try:
        result, records = future.result()
    except BaseException as error:
        # popped: a future gives the same error object each time it is read, and its records are logged once
        _log_records(vars(error).pop("worker_records", []))
        raise
    _log_records(records)
    return result


def _log_records(records: list[logging.LogRecord]) -> None:
    for record in records:
        logger = logging.getLogger(record.name)
        if logger.isEnabledFor(record.levelno):
            logger.handle(record)


def _no_pair_yet(done: list[dict]) -> bool:
    """Whether no video this run mined gave a pair: the next goes on past a time budget to its first (mine_video)."""
    return not any(result["pairs"] for result in done)


def _spent(started: float, budget: float | None) -> bool:
    return budget is not None and time.monotonic() - started >= budget


def _finish(result: dict, bar, strict: bool) -> dict:
    bar.video_done(result)
    if result["cut_short"]:
        log.info("%s%s: %s", f"{bar.label}: " if bar.label else "", result["video"], result["detail"])
    if result["status"] == "skipped":
        message = f"{result['video']}: skipped ({result['reason']}: {result['detail']})"
        if bar.label:
            message = f"{bar.label}: {message}"
        if strict:
            raise SkippedInStrictMode(message + "; --strict makes any skip fail the run")
        told = bar.already_said is not None and bar.already_said(result)
        log.log(logging.DEBUG if told else logging.WARNING, message)
    return result


class _Job:
    """Mines one listing entry and stores its result; picklable, so pool workers run it too."""

    def __init__(self, root: Path, out: Path, cfg: MineConfig, video_backend: str, strict: bool,
                 counts_deaths: bool = True, copies: dict[str, str] | None = None):
        self.root, self.out, self.cfg = root, out, cfg
        self.copies = copies or {}  # video -> the byte-identical video mined instead (find_copies)
        self.video_backend, self.strict = video_backend, strict
        self.counts_deaths = counts_deaths  # whether a start counts toward MAX_ATTEMPTS (see begin_attempt)
        self.run = uuid.uuid4().hex  # tells this run's attempt files from those of runs that died
        self.deadline: float | None = None  # time.monotonic() at which the videos being mined are cut short
        # the manifest's shard names, read once for the videos mined again in this process (see write_video)
        self.shard_names: ShardNameIndex | None = ShardNameIndex()

    def __getstate__(self) -> dict:
        # not sent with each video to a pool worker, which keeps its own (_worker_shard_names)
        return {**vars(self), "shard_names": None}

    def __call__(self, entry: dict, on_frames: Callable[[int], None] | None = None,
                 until_a_pair: bool = False) -> dict:
        """Mine ``entry`` between an attempt file (left behind if the process dies) and its done-marker.
        ``until_a_pair``: the run has no pair yet, so the video goes on past the deadline to its first."""
        vid = entry["video_id"]
        source = source_state(self.root / entry["video"])
        begin_attempt(self.out, vid, self.run, source, counts=self.counts_deaths)
        try:
            result = self._mine(entry, source, on_frames, until_a_pair)
        except BaseException:  # interrupted, or the result could not be stored: not a crash, the next run retries
            undo_attempt(self.out, vid, self.run)
            raise
        # strict: a skip is not recorded, nor is its attempt; a video cut before its first pair was not mined
        if self.strict and result["status"] == "skipped" or result["status"] == "pending":
            undo_attempt(self.out, vid, self.run)
        return result

    def started(self, entry: dict) -> bool:
        """Whether this run started ``entry`` and did not finish it."""
        attempt = read_attempt(self.out, entry["video_id"])
        return attempt is not None and attempt.get("run") == self.run

    def crashed(self, entry: dict, detail: str) -> dict:
        """Record ``entry`` as skipped (error) because mining it killed the process; the record holds while its
        attempt file exists (deleting that file retries the video)."""
        marker = {"status": "skipped", "reason": "error", "detail": detail, "crashed": True,
                  "source": source_state(self.root / entry["video"]),
                  "source_sample": content_sample(self.root / entry["video"]),
                  "stats": {"frames": 0, "seconds": 0.0, "tracks_rejected": {}, "starts_rejected": {}, "cuts": []}}
        if not self.strict:
            write_video(self.out, entry, None, None, marker, self.shard_names)
        return _result(entry, marker)

    def _mine(self, entry: dict, source: dict | None, on_frames: Callable[[int], None] | None,
              until_a_pair: bool) -> dict:
        from vidssl.video import open_video

        path = self.root / entry["video"]
        deadline = self.deadline
        out_of_time = None if deadline is None else lambda: time.monotonic() >= deadline
        marker: dict = {"status": "mined", "reason": None, "detail": None, "source": source,
                        "source_sample": content_sample(path)}
        result = None
        info: dict = {}
        try:
            if entry["video"] in self.copies:
                marker["copy_of"] = self.copies[entry["video"]]
                raise SkipVideo("duplicate", f"the same bytes as {marker['copy_of']}, which is mined instead (a "
                                             "clip mined twice would be its own negative)")
            if _unreadable(path):
                raise SkipVideo("unreadable", "no read permission (fix with: chmod +r FILE)")
            with open_video(path, self.video_backend) as reader:
                info = {"backend": reader.backend, "width": reader.width, "height": reader.height,
                        "fps": round(reader.fps, 3)}
                result = mine_video(reader, self.cfg, on_frames, out_of_time=out_of_time, until_a_pair=until_a_pair)
        except OutOfTime as e:  # nothing to keep: no marker, so the video stays pending
            return _result(entry, {"status": "pending", "reason": None, "detail": str(e),
                                   "stats": {"frames": e.result.frames}})
        except SkipVideo as e:
            marker.update(status="skipped", reason=e.reason, detail=e.detail)
            result = e.result
        except VideoError as e:
            reason = next(r for cls, r in VIDEO_ERROR_REASONS.items() if isinstance(e, cls))
            marker.update(status="skipped", reason=reason, detail=e.reason)
        except Exception as e:  # a long run skips what it cannot handle and goes on; the marker keeps the why
            log.debug("%s: unexpected error", path, exc_info=True)
            marker.update(status="skipped", reason="error", detail=f"{type(e).__name__}: {e}")
        stats = {"frames": 0, "seconds": 0.0, "tracks_rejected": {}, "starts_rejected": {}, "cuts": [], **info}
        if result is not None:
            stats.update(frames=result.frames, seconds=round(result.seconds, 3),
                         tracks_rejected=dict(result.tracks_rejected), starts_rejected=dict(result.starts_rejected),
                         cuts=result.cuts)
        marker["stats"] = stats
        pairs = None
        if marker["status"] == "mined":
            marker["pairs"], marker["track_boxes"] = result.records, result.track_boxes
            pairs = result.pairs
            if result.damage:  # mined up to the damage: say so, the video is not all there
                marker["detail"] = f"{result.damage}; mined the frames before it"
                log.warning("%s: %s", path, marker["detail"])
            if result.cut_at is not None:  # kept, yet pending (tracking.dataset.merge): a rerun mines it whole
                earlier = done_marker(self.out, entry["video_id"], source, path)
                if earlier is not None and earlier.get("budget_cut", {}).get("at_frame", -1) >= result.cut_at:
                    # an earlier run cut it later: its pairs hold these (the miner is causal), and more
                    undo_attempt(self.out, entry["video_id"], self.run)
                    return _result(entry, earlier)
                marker["budget_cut"] = {"at_frame": result.cut_at}
                marker["detail"] = result.cut_note
        if not (self.strict and marker["status"] == "skipped"):  # strict: the run fails, nothing is recorded
            write_video(self.out, entry, pairs, result.track_patches if pairs is not None else None, marker,
                        self.shard_names)
        return _result(entry, marker)


def _result(entry: dict, marker: dict) -> dict:
    """What the main process books of one video (see _finish)."""
    return {"video": entry["video"], "bytes": entry["bytes"], "status": marker["status"], "reason": marker["reason"],
            "detail": marker["detail"], "frames": marker["stats"]["frames"], "pairs": len(marker.get("pairs", [])),
            "cut_short": "budget_cut" in marker}


def _unreadable(path: Path) -> bool:
    """A regular file without read permission (root can read anything, so the mode bits count too)."""
    try:
        st = path.stat()
    except OSError:
        return False  # missing: open_video names that
    return stat.S_ISREG(st.st_mode) and (not os.access(path, os.R_OK) or stat.S_IMODE(st.st_mode) & 0o444 == 0)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size if path.is_file() else 0
    except OSError:
        return 0


PROGRESS_EVERY_S = 60.0  # with no progress bar (output to a file, a batch job's log): a line this often


class _FrameBar:
    """tqdm over frames with ETA. Frame counts are unknown until a video is decoded, so the frames left are estimated
    from the bytes still to mine at the frames per byte of the videos decoded so far (a file skipped at once, a copy
    or one too small, decodes nothing and is left out of the rate), and the time left from the frames per second so
    far. Where no bar is drawn (output to a file or a pipe: a batch job, nohup, `| tee`) but progress is wanted, a
    line every PROGRESS_EVERY_S instead, as training logs: a mining of hours had said nothing between its skip
    warnings until its summary."""

    def __init__(self, todo: list[dict], enabled: bool, label: str | None = None,
                 already_said: Callable[[dict], bool] | None = None):
        from tqdm import tqdm

        from vidssl.progress import bars_on_stderr

        self.label, self.already_said = label, already_said  # how its videos' skips are told (see _finish)
        self.bytes_left = sum(e["bytes"] for e in todo)
        self.bytes_decoded = self.frames_decoded = 0  # of the finished videos that decoded frames
        self.videos, self.videos_done = len(todo), 0
        self.frames_seen = 0  # counted here: a disabled tqdm (no terminal, where the lines are said) counts nothing
        self.bar = tqdm(total=None, unit="frame", desc=f"mining {label}" if label else "mining", dynamic_ncols=True,
                        disable=not bars_on_stderr(enabled))
        self.lines = enabled and self.bar.disable
        self.started = self.said = time.monotonic()

    def update_frames(self, n: int) -> None:
        self.bar.update(n)
        self.frames_seen += n
        self._say_now_and_then()

    def video_done(self, result: dict) -> None:
        self.bytes_left -= result["bytes"]
        self.videos_done += 1
        if result["frames"]:
            self.bytes_decoded += result["bytes"]
            self.frames_decoded += result["frames"]
        if self.bytes_decoded:
            self.bar.total = self.bar.n + int(self.frames_left())
            self.bar.refresh()
        self._say_now_and_then()

    def frames_left(self) -> float:
        """The frames still to decode: the bytes left at the frames per byte so far, less those of the videos being
        mined that were decoded already (with --workers 1, reported as decoded; a pool's come as each is done)."""
        in_progress = self.frames_seen - self.frames_decoded
        return max(0.0, self.bytes_left * self.frames_decoded / self.bytes_decoded - in_progress)

    def _say_now_and_then(self) -> None:
        now = time.monotonic()
        if not self.lines or now - self.said < PROGRESS_EVERY_S:
            return
        self.said = now
        left = ""
        if self.bytes_decoded and self.frames_seen:  # frames per byte, and frames per second, known
            per_s = self.frames_seen / max(now - self.started, 1e-9)
            left = f", about {self.frames_left() / per_s / 60:.1f} min left"
        log.info("mining%s: %d of %d videos done, %d frames%s", f" {self.label}" if self.label else "",
                 self.videos_done, self.videos, self.frames_seen, left)

    def close(self) -> None:
        self.bar.close()


def _first_clause(note: str) -> str:
    """``note`` up to its first ": " outside parentheses (where the damage is, before what it means), "..." marking
    the cut."""
    depth = 0
    for i, char in enumerate(note):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0 and note.startswith(": ", i):
            return note[:i] + " ..."
    return note


def _shard_count(out_dir: str | Path) -> int:
    """The N of the ``--shard I/N`` that ``out_dir`` is mined in, 1 where it never was or its record is damaged: a
    hint is no reason to fail the summary."""
    return recorded_shard_count(out_dir) or 1


def format_summary(summary: dict, out_dir: str | Path | None = None) -> str:
    """Human-readable lines of a mining summary (as returned by ``mine_folder``, ``merge`` or read from
    dataset.json) of the pair dataset ``out_dir`` (named in the command that mines what a merge left pending); the
    command's results, for stdout (the advisory :func:`kept_notice` is not among them)."""
    v = summary["videos"]
    skipped = sum(len(x) for x in v["skipped"].values())
    partial = v.get("partial") or {}
    damaged = f" ({len(partial)} only up to damage)" if partial else ""
    cut = v.get("cut_short") or {}
    cut_note = f" ({len(cut)} cut short by the time budget, with pairs)" if cut else ""
    lines = [f"videos: {v['found']} found, {v['mined']} mined{damaged}, {skipped} skipped, {v['pending']} pending"
             f"{cut_note}", f"pairs: {summary['pairs']}"]
    for reason, names in v["skipped"].items():
        shown = ", ".join(names[:3]) + (f", ... (+{len(names) - 3}; each with its reason in dataset.json)"
                                        if len(names) > 3 else "")
        lines.append(f"  skipped ({reason}): {shown}")
    if partial:  # mined, so counted as such above; yet part of each video was never seen
        named = [f"{name} ({_first_clause(note)})" for name, note in list(partial.items())[:3]]
        lines.append(f"  mined up to damage: {', '.join(named)}" + (
            f", ... (+{len(partial) - 3}; each with its note in dataset.json)" if len(partial) > 3 else ""))
    for name, note in list(cut.items())[:3]:  # pending, yet their pairs so far are in the manifest
        lines.append(f"  {name}: {note}")
    if len(cut) > 3:
        lines.append(f"  ... (+{len(cut) - 3} cut short; each with its note in dataset.json)")
    if summary["tracks_rejected"]:
        lines.append("tracks rejected: " + ", ".join(f"{k} {n}" for k, n in summary["tracks_rejected"].items()))
    run = summary.get("run")
    if run:
        rate = f"{run['frames_per_s']:.0f} frames/s" if run["frames_per_s"] else "-"
        lines.append(f"this run: {run['videos']} videos, {run['frames']} frames in {run['seconds']:.1f} s ({rate})"
                     + (" - stopped by the time budget; rerun to continue" if run["stopped_by_budget"] else ""))
    if not summary["complete"]:
        named = v.get("pending_examples") or []
        shown = ", ".join(named[:3]) + (f", ... (+{v['pending'] - 3})" if v["pending"] > 3 else "")
        lines.append(f"not complete: {v['pending']} video(s) pending ({shown}): " + _pending_advice(summary, out_dir))
    return "\n".join(lines)


def kept_notice(summary: dict, out_dir: str | Path | None = None) -> str | None:
    """The notice of videos mined into the folder earlier that this run's listing lacks (an advisory for stderr, as
    the skips are), or None. Of the pair dataset ``out_dir`` (by default the one mine_folder mined into, its
    ``run``'s ``out``), only those whose markers say mined are named: a skipped one (deleted while being mined:
    not_a_video, no such file) has no pairs to stay on disk. Without either, the summary's ``not_listed`` as is."""
    kept = summary["videos"].get("not_listed")
    out_dir = out_dir if out_dir is not None else (summary.get("run") or {}).get("out")
    if kept and out_dir is not None:
        kept = _mined_not_listed(Path(out_dir))
    if not kept:
        return None
    shown = ", ".join(kept["examples"][:3]) + (f", ... (+{kept['count'] - 3})" if kept["count"] > 3 else "")
    return (f"kept: {kept['count']} video(s) mined into this folder earlier are not in this listing ({shown}); "
            "their pairs stay on disk, left out of manifest.jsonl: mine their videos folder into it again to include "
            "them, or use a new --out for a separate dataset")


def _mined_not_listed(out: Path) -> dict | None:
    """``{"count", "examples"}`` of the videos whose done-markers in ``out`` say mined and which its listing
    (videos.json) lacks, as merge's ``not_listed`` counts every marker; None where there are none."""
    from tracking.dataset import PENDING_NAMED, marker_ids, read_marker

    try:
        listed = {e.get("video_id") for e in json.loads((out / "videos.json").read_text(encoding="utf-8"))["videos"]}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # a damaged listing: merge said so
    names = []
    for vid in sorted(marker_ids(out) - listed):
        marker = read_marker(out, vid) or {}
        if marker.get("status") == "mined":
            names.append(marker.get("video", vid))
    return {"count": len(names), "examples": names[:PENDING_NAMED]} if names else None


def _pending_advice(summary: dict, out_dir: str | Path | None) -> str:
    """What mines the pending videos: a mining rerun mines them, a merge (no ``run``) mines nothing, so it names
    the mining command; other shards are named only where the folder is mined in shards."""
    run = summary.get("run")
    if run:
        count = run["shard"][1]
    else:
        count = _shard_count(out_dir) if out_dir is not None else 1
    shards = (f"each video belongs to one shard of {count}, so a shard never run leaves its videos pending (mining "
              "without --shard takes every video left)")
    if run and count > 1:
        return f"rerun the same command, or wait for the other shards; {shards}"
    if run:
        return "rerun the same command to mine them"
    videos = shell_arg(summary["videos_root"]) if summary.get("videos_root") else "VIDEOS"
    mine = f"vidssl mine {videos} --out {shell_arg(out_dir) if out_dir is not None else 'PAIRS'}"
    if out_dir is not None and (Path(out_dir) / "config.yaml").is_file():
        # the folder's settings: without them the command met "mined with other settings" (box_fraction 0.33 -> 0.5)
        mine += f" --config {shell_arg(Path(out_dir) / 'config.yaml')}"
    if count > 1:
        examples = summary["videos"].get("pending_examples") or []
        owners = sorted({shard_of(video, count) for video in examples})
        whose = (f"; {'those named are' if len(examples) > 1 else 'the one named is'} shard "
                 f"{' and '.join(map(str, owners))}'s" if owners else "")
        running = _running_shards(Path(out_dir), count) if out_dir is not None else []
        wait = (f", or wait for shard {' and '.join(map(str, running))}, still running" if running
                else "; no shard is running now")
        return f"`{mine} --shard I/{count}` mines shard I's (a merge mines none{whose}){wait}; {shards}"
    return f"`{mine}` mines them (a merge only gathers what is mined)"


def shard_lock(index: int, count: int) -> str:
    """The name of shard ``index`` of ``count``'s own run_lock in the pair folder (one process per shard)."""
    return f"mine-shard-{index}-of-{count}"


def _running_shards(out: Path, count: int) -> list[int]:
    """The shards of ``count`` mining into ``out`` now: those whose own lock a process holds."""
    return [index for index in range(count) if lock_held(out, shard_lock(index, count))]
