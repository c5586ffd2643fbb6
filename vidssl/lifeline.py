"""Worker processes that end when the process that started them is gone.

A worker of a process killed with ``kill -9`` (or by the out-of-memory killer) otherwise waits forever on its task
queue, holding its memory: a mining worker blocks in ``ProcessPoolExecutor``'s queue, and a DataLoader worker's own
watchdog watches its parent, which under the ``forkserver`` start method is the fork server, not the training
process. Ctrl-C and SIGTERM need none of this: the main process then shuts its workers down itself.
"""
from __future__ import annotations

import functools
import os
import sys
import threading
import time


def process_start(pid: int) -> str | None:
    """An identity of process ``pid`` that a later process reusing the pid does not share (its start time in clock
    ticks since boot, from /proc), "" where /proc is not available, None when the process is gone or a zombie."""
    if not os.path.isdir("/proc/self"):  # macOS, BSD: no start time to tell a reused pid by
        return _signal_probe(pid)
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode(errors="replace")
    except FileNotFoundError:
        return None
    except OSError:
        return _signal_probe(pid)
    fields = stat[stat.rfind(")") + 2:].split()  # after "pid (command name) "; the name may hold spaces
    if fields[0] in ("Z", "X"):  # killed, not yet reaped by its own parent: gone all the same
        return None
    return fields[19]  # field 22 of proc(5), counting from the state (field 3)


def _signal_probe(pid: int) -> str | None:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # exists, under another user
    return ""


def exit_with(pid: int, poll_seconds: float = 1.0) -> None:
    """In a worker: end this process (exit status 1) once process ``pid`` is gone; checked every ``poll_seconds``
    by a daemon thread."""
    start = process_start(pid)
    if start is None:
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(poll_seconds)
            if process_start(pid) != start:
                os._exit(1)  # no cleanup to run: the work of a killed run is redone by the next one

    threading.Thread(target=watch, name="vidssl-lifeline", daemon=True).start()


def refuse_reimport(call: str) -> None:
    """Raise when ``call`` comes from the top-level code of a script that multiprocessing is importing as
    ``__mp_main__``: a worker process (a DataLoader's, started through forkserver, or a mining pool's, spawned)
    imports the main module again, and unguarded top-level code would run the whole job again in it, into a run
    folder locked by the first, while the user saw only "DataLoader worker exited unexpectedly". Code that a spawned
    process runs as its target is no module-level code: it passes."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "<module>" and frame.f_globals.get("__name__") == "__mp_main__":
            from vidssl.errors import VidsslError

            raise VidsslError(f"{call} was called at the top level of a script that a worker process is importing "
                              "(vidssl's DataLoader workers start through forkserver and its mining workers are "
                              "spawned: each imports the main module again); put the calls under "
                              "`if __name__ == \"__main__\":`")
        frame = frame.f_back


def loader_workers(num_workers: int, call: str) -> dict:
    """The DataLoader arguments for ``num_workers`` workers (training's and the retrieval features'), for ``call``
    (named in :func:`refuse_reimport`'s error). forkserver, not fork: a worker forked from a process whose OpenCV
    thread pool has run (mining, figures) inherits its locked mutexes and deadlocks on its first cv2 call (seen in
    `vidssl pretrain`). The workers end with this process (:func:`loader_worker_init`)."""
    if not num_workers:
        return {"num_workers": 0}
    refuse_reimport(call)
    return {"num_workers": num_workers, "multiprocessing_context": "forkserver",
            "worker_init_fn": functools.partial(loader_worker_init, parent_pid=os.getpid())}


def loader_worker_init(_: int, parent_pid: int) -> None:
    """``worker_init_fn`` of every DataLoader with workers (training's and the retrieval features'): a ``kill -9``
    of ``parent_pid`` leaves no worker behind, as their parent is the fork server, which outlives it while they do
    (the retrieval's workers ran on, adopted by init, for good)."""
    import signal

    import cv2
    import torch

    # Ctrl-C reaches the whole process group: the trainer finishes its step and checkpoints it
    # (vidssl.train.StopAtStepEnd), but a worker that died of it made the trainer's next fetch an error. SIGTERM
    # stays: it is how multiprocessing ends its children at exit (ignored, the exit waited on them for ever)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cv2.setNumThreads(1)  # the workers already run in parallel; nested OpenCV threads only contend
    torch.set_num_threads(1)
    exit_with(parent_pid)


# the programs of a torch elastic agent: `torchrun ...` (also as `python .../torchrun ...`, which its shebang line
# runs), `python -m torch.distributed.run ...` (or .launch)
_LAUNCHER_SCRIPT = b"torchrun"
_LAUNCHER_MODULES = (b"torch.distributed.run", b"torch.distributed.launch")
_PYTHON_OPTIONS_WITH_VALUE = (b"-X", b"-W", b"-Q")


def is_launcher(argv: list[bytes]) -> bool:
    """Whether a command line (``argv``, as /proc/PID/cmdline holds it) runs a torch elastic launcher: by the
    program it runs, not by any argument (a shell whose command merely names ``runs/torchrun1`` outlives torchrun,
    and a rank watching it trained on after torchrun was killed)."""
    if not argv:
        return False
    program = os.path.basename(argv[0])
    if program == _LAUNCHER_SCRIPT:
        return True
    if not program.startswith(b"python"):
        return False
    i = 1
    while i < len(argv) and argv[i].startswith(b"-") and not argv[i].startswith(b"-m") and argv[i] != b"-c":
        i += 2 if argv[i] in _PYTHON_OPTIONS_WITH_VALUE else 1
    if i >= len(argv) or argv[i] == b"-c":
        return False
    if argv[i].startswith(b"-m"):
        module = argv[i][2:] or (argv[i + 1] if i + 1 < len(argv) else b"")
        return module in _LAUNCHER_MODULES
    return os.path.basename(argv[i]) == _LAUNCHER_SCRIPT


def _process_info(pid: int) -> tuple[int, str, list[bytes]] | None:
    """(parent pid, name, argv) of process ``pid`` from /proc, None when it is gone or hidden. The name is the
    executable's (``bash``, ``python3.11``; a script run through its shebang line: the script's, ``torchrun``)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode(errors="replace")
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = fh.read().split(b"\0")
    except OSError:
        return None
    if argv and argv[-1] == b"":  # each argument ends in a NUL
        argv.pop()
    name = stat[stat.index("(") + 1:stat.rfind(")")]
    return int(stat[stat.rfind(")") + 2:].split()[1]), name, argv


def launcher_pid(max_depth: int = 8) -> int | None:
    """The nearest ancestor of this process that is a torch elastic launcher (:func:`is_launcher`), or None: the
    rank's parent is the launcher itself, or a shell between them (``torchrun --no-python bash -c ...``, a wrapper
    script without ``exec``)."""
    pid = os.getpid()
    for _ in range(max_depth):
        this = _process_info(pid)
        if this is None or this[0] <= 0:
            return None
        pid = this[0]
        parent = _process_info(pid)
        if parent is None:
            return None
        if is_launcher(parent[2]):
            return pid
        if pid == 1:
            return None
    return None


def _adopted_by_init() -> bool:
    """Whether the process torchrun started for this rank (the leader of the rank's session: torchrun starts each
    in a session of its own; the rank itself, or a shell that runs it) now has init (pid 1, not Python, so not a
    launcher) for its parent: its launcher is gone."""
    leader, pid = os.getsid(0), os.getpid()
    while pid != leader:  # up through shells only: a Python process on the way may be a launcher of another name
        this = _process_info(pid)
        if this is None or this[0] <= 1:
            return False
        pid = this[0]
        parent = _process_info(pid)
        if parent is None or "python" in parent[1]:
            return False
    top, init = _process_info(leader), _process_info(1)
    return top is not None and top[0] == 1 and init is not None and "python" not in init[1]


@functools.cache  # once per process: a second train() under torchrun watched with a second thread
def exit_with_launcher() -> None:
    """In a process started by torchrun (``TORCHELASTIC_RUN_ID`` set): end it once the launcher is gone, as a
    ``kill -9`` of torchrun (or the OOM killer's) leaves its ranks running, orphaned, holding the run's lock.

    Watches the nearest launcher ancestor; without one (a launcher of another name, e.g. ``elastic_launch`` called
    from a script), the parent. A rank that init adopted before this runs (its launcher died while it started up)
    exits at once. Not covered: a launcher of another name that died before this runs, and a rank adopted by a
    subreaper other than pid 1 (``systemd --user``, ``tini -s``)."""
    if not os.path.isdir("/proc/self"):
        exit_with(os.getppid())
        return
    pid = launcher_pid()
    if pid is not None:
        exit_with(pid)
    elif _adopted_by_init():
        print(f"vidssl: rank {os.environ.get('RANK', '?')}: its torchrun ended before the rank started; exiting",
              file=sys.stderr, flush=True)
        os._exit(1)
    else:
        exit_with(os.getppid())
