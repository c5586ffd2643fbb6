"""Worker processes that end when the process that started them is gone.

A worker of a process killed with ``kill -9`` (or by the out-of-memory killer) otherwise waits forever on its task
queue, holding its memory: a mining worker blocks in ``ProcessPoolExecutor``'s queue, and a DataLoader worker's own
watchdog watches its parent, which under the ``forkserver`` start method is the fork server, not the training
process. Ctrl-C and SIGTERM need none of this: the main process then shuts its workers down itself.
"""
from __future__ import annotations

import os
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
