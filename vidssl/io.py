"""Atomic file writes: a finished file is either complete or absent, never partial (kill -9 safe)."""
from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import shutil
import socket
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed onto ``path``.

    The temp name starts with ``.tmp-`` so scanners can ignore leftovers of a killed process, and names its writer
    (``.tmp-NAME.PID@MACHINE.XXXXXXXX``) so a leftover whose writer has died can be told from a live one's.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".tmp-{_short(path.name)}.{os.getpid()}@{_machine()}.", dir=path.parent)
    except OSError as e:
        raise error_naming(e, path) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:  # before the chmod: a umask without owner write (0222) leaves it 0444
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        # mkstemp makes 0600 files; a finished file gets the usual permissions. Set after the writer is done: some
        # (safetensors' save_file) replace the file they are given, and with it its mode
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
        _fsync_folder(path.parent)  # the rename itself survives a power cut: the newest checkpoint is not lost
    except OSError as e:
        # an errno-less OSError ("912384 requested and 262016 written", as numpy's tofile says it); vidssl's own
        # weights and checkpoints are written as bytes (torch_bytes), whose OSError has its errno
        if e.errno is None and _out_of_space(path.parent):
            raise _full(path) from e
        # the temp file is ours, not the user's: "No space left on device: /run/.tmp-backbone.pt.x1y2" would send them
        # looking for a file that is gone once this returns (a failed rename names both: the temp file and ``path``)
        if e.filename not in (None, tmp, str(tmp_path)):
            raise
        raise error_naming(e, path) from e
    except Exception as e:
        # a writer given the temp path (PyAV's mp4 in the demo; torch.save and safetensors' save_file did) may say a
        # full disk in words of its own ("unexpected pos", SafetensorError), which reached the user as a traceback.
        # Asked before the temp file is removed, which frees the space again. A guess: it misses a writer that
        # removes its own file first (save_file) and a file size limit or quota, which leave space; so vidssl's
        # own files are serialised in memory and written by Python (torch_bytes, atomic_write_bytes)
        if _out_of_space(path.parent):
            raise _full(path) from e
        raise
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # a folder that cannot be opened for reading (no r bit): the file itself is synced
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems (network, FUSE) refuse fsync on a folder
        pass
    finally:
        os.close(fd)


def error_naming(error: OSError, path: Path) -> OSError:
    """``error`` (same errno, same subclass: PermissionError, FileNotFoundError...) naming ``path`` instead of the
    temp file beside it, or naming it at all (a full disk's write error names no file)."""
    if error.errno is None:
        return OSError(f"writing {path}: {error}")
    return OSError(error.errno, error.strerror or os.strerror(error.errno), str(path))


OUT_OF_SPACE_BYTES = 1 << 20  # free space under which a failed write is taken for a full disk


def _out_of_space(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < OUT_OF_SPACE_BYTES
    except OSError:
        return False


def _full(path: Path) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def file_state(path: str | os.PathLike) -> dict | None:
    """``{"size", "mtime_ns"}`` of a file, recorded by what was made from it (a mined video, the checkpoint an
    export cut): a file replaced, or still being copied, differs later. None when it cannot be stat'ed."""
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


SAMPLE_BYTES = 1 << 20  # read from each end of a file for its content sample


def content_sample(path: str | os.PathLike) -> str | None:
    """SHA-1 of a file's size, first and last MiB: tells a copy of the same file (``cp -r``, ``scp``, an archive
    unpacked, another machine's copy of the videos: new times) from a file replaced under its name, without reading
    a large file whole. None when it cannot be read, or is no regular file (opening a FIFO blocks for ever)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            digest = hashlib.sha1(str(size).encode())
            digest.update(fh.read(SAMPLE_BYTES))
            fh.seek(max(SAMPLE_BYTES, size - SAMPLE_BYTES))
            digest.update(fh.read(SAMPLE_BYTES))
    except OSError:
        return None
    return digest.hexdigest()


def special_file(path: str | os.PathLike) -> str | None:
    """What ``path`` is when it exists but is no regular file nor folder ("a pipe": ``<(echo ...)``, /dev/stdin fed by
    a pipe; "a device": /dev/stdin at a terminal; "a socket"), else None: such a path is refused by name, not as "not
    found" (reading a pipe without a writer blocks for ever)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISFIFO(mode):
        return "a pipe"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a socket" if stat.S_ISSOCK(mode) else None


def file_record(path: str | os.PathLike) -> dict | None:
    """:func:`file_state` plus the file's ``sample`` (:func:`content_sample`), for :func:`same_file`."""
    state = file_state(path)
    return None if state is None else {**state, "sample": content_sample(path)}


def same_file(recorded: dict, path: str | os.PathLike) -> bool:
    """Whether the file at ``path`` is the one ``recorded`` (:func:`file_state`, with a ``sample`` where
    :func:`file_record` made it) describes: the same size and time, or, when only the time differs, the same
    content sample (read only then). A missing file is not the same."""
    now = file_state(path)
    if now is None:
        return False
    if all(recorded.get(key) == value for key, value in now.items()):
        return True
    return (recorded.get("size") == now["size"] and recorded.get("sample") is not None
            and content_sample(path) == recorded["sample"])


def remove_temp_leftovers(folder: str | os.PathLike, older_than: float | None = None,
                          only: re.Pattern | None = None) -> None:
    """Delete the :func:`atomic_path` temp files a killed writer left in ``folder``. Without ``older_than``, all of
    them: only while holding the folder (its run lock), as a live writer's temp file looks the same. Where other
    processes write into ``folder`` (mining shards, perhaps from other machines), only those whose writer is known
    dead (a process of this machine that no longer runs) or that were last modified before the time ``older_than``
    (seconds since the epoch). ``only``: just the temp names it matches (a folder of the user's, whose other
    ``.tmp-*`` files are another tool's)."""
    for path in Path(folder).glob(".tmp-*"):
        if only is not None and not only.match(path.name):
            continue
        if older_than is not None and not _writer_is_dead(path.name):
            try:
                if path.stat().st_mtime >= older_than:
                    continue
            except FileNotFoundError:
                continue
        path.unlink(missing_ok=True)


_WRITER = re.compile(r"\.(\d+)@([0-9a-f]{8})\.[^.]*$")


def _short(name: str) -> str:
    """``name`` as the temp name holds it: a name near the file system's 255-byte limit is shortened (its start and
    a hash), so the 31 bytes the temp name adds never make a writable name fail as too long."""
    encoded = os.fsencode(name)
    if len(encoded) <= 200:
        return name
    # cut by bytes: 60 characters of 4-byte UTF-8 (emoji) were 240 bytes, and the temp name too long again; a
    # character the cut splits is dropped, so the temp name is valid UTF-8 where the file system asks for it
    return f"{encoded[:60].decode('utf-8', 'ignore')}~{hashlib.sha1(encoded).hexdigest()[:12]}"


def _machine() -> str:
    """8 hex digits naming this machine and process-id namespace: a pid means one process only within both (two
    containers on one host, even sharing its host name, number their processes apart; /etc/machine-id tells apart
    two hosts of one name, whose initial namespaces share an inode number)."""
    try:
        machine_id = Path("/etc/machine-id").read_text(encoding="utf-8").strip()
    except OSError:  # not systemd's, or not Linux
        machine_id = ""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:  # not Linux: the host name and machine-id alone
        namespace = ""
    return hashlib.sha1(f"{socket.gethostname()}/{machine_id}/{namespace}".encode()).hexdigest()[:8]


def _writer_is_dead(temp_name: str) -> bool:
    """Whether the :func:`atomic_path` temp file ``temp_name`` was written by a process of this machine that has
    ended. False where unsure (another machine's file, an older name without its writer, a pid now reused)."""
    found = _WRITER.search(temp_name)
    if found is None or found.group(2) != _machine():
        return False
    from vidssl.lifeline import process_start

    pid = int(found.group(1))
    return pid != os.getpid() and process_start(pid) is None  # gone, or a zombie: its write will not finish


def torch_bytes(obj: Any) -> bytes:
    """``obj`` as ``torch.save`` writes it, in memory. Written with :func:`atomic_write_bytes`, a full disk, a file
    size limit (``ulimit -f``) or a quota is Python's OSError with its errno, named for the file: torch.save writing
    the file itself said all three as "RuntimeError: [enforce fail at inline_container.cc] unexpected pos". Holds
    one serialised copy in memory (the object's size)."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def write_temp(tmp: Path, data: bytes, path: str | os.PathLike) -> None:
    """Write ``data`` to ``tmp``, the :func:`atomic_path` temp file of ``path``; an OSError names ``path``. For
    temp files of nested atomic_paths (files renamed together): the innermost one named any error without a file
    name (a full disk's) as its own file."""
    try:
        tmp.write_bytes(data)
    except OSError as e:
        raise error_naming(e, Path(path)) from e


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    # a file name that is not UTF-8 (lone surrogates in Python) quoted in a report is written escaped, not fatal
    atomic_write_bytes(path, text.encode("utf-8", "backslashreplace"))


def drawable(text: str) -> str:
    """``text`` as OpenCV's ``putText`` can draw it: its Hershey fonts draw ASCII only, and a lone surrogate (a
    file name that is not UTF-8) crashed the process."""
    return text.encode("ascii", "backslashreplace").decode("ascii")


def finite_or_none(obj: Any) -> Any:
    """``obj`` with every non-finite float (NaN, +-inf) replaced by None, in nested dicts, lists and tuples.

    JSON has no NaN or Infinity: Python writes them, but JavaScript's ``JSON.parse`` (a report's reader), ``jq``
    and strict parsers reject the whole file. A metric that is undefined (e.g. a mean over no triplets) is null.
    """
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    return obj


def json_text(obj: Any, indent: int | None = None) -> str:
    """Strict JSON text of ``obj`` (non-finite floats written as null, see ``finite_or_none``)."""
    return json.dumps(finite_or_none(obj), indent=indent, sort_keys=False, allow_nan=False)


def json_object(path: str | os.PathLike) -> dict:
    """``path``'s JSON object, or {} where it is missing, unreadable or no object (for a reader that can do
    without it; one that must report a damaged file reads it itself)."""
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def newer_format(found: object, current: str) -> bool:
    """Whether ``found`` (a file's ``format`` field, ``"name/N"``) is of ``current``'s kind at a later version N:
    a file a newer vidssl wrote, which this one may misread (a card with a constructor argument it lacks)."""
    name, _, version = current.rpartition("/")
    if not isinstance(found, str) or not found.startswith(name + "/"):
        return False
    try:
        return int(found[len(name) + 1:]) > int(version)
    except ValueError:
        return False


def newer_format_error(path: str | os.PathLike, found: str, current: str) -> str:
    """The one-line error for a file of a newer format (see :func:`newer_format`)."""
    return (f"{path}: written by a newer vidssl (format {found}; this one reads {current}): upgrade vidssl "
            "(git pull, then pip install -e . again)")


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    atomic_write_text(path, json_text(obj, indent) + "\n")


def open_own_file(path: str | os.PathLike, flags: int, what: str) -> int:
    """A descriptor of ``path``, a file vidssl writes itself (``what`` it is: "its lock file"), opened with ``flags``
    (os.O_CREAT among them) and never through a symbolic link: a run folder copied with its links, or planted ones,
    had vidssl truncate or append to the link's target (~/.bashrc)."""
    from vidssl.errors import VidsslError

    try:
        return os.open(path, flags | os.O_NOFOLLOW, 0o666)  # as open() made it: the umask decides
    except OSError:
        if os.path.islink(path):  # ELOOP on Linux and macOS, EMLINK on FreeBSD: asked of the path itself
            raise VidsslError(f"{path} is a symbolic link; vidssl writes {what} itself: remove the link") from None
        raise


def open_lock_file(path: str | os.PathLike) -> int:
    """A descriptor of lock file ``path``, opened for reading and writing (NFS emulates flock with byte-range locks,
    which need a file open for writing) and created if missing; not through a link (the holder truncates it to write
    its pid)."""
    return open_own_file(path, os.O_RDWR | os.O_CREAT, "its lock file")


def lock_path(folder: str | os.PathLike, name: str | None = None) -> Path:
    """The file :func:`run_lock` locks: ``folder/.vidssl.lock``, or ``folder/.vidssl-NAME.lock`` for ``name``."""
    return Path(folder) / (".vidssl.lock" if name is None else f".vidssl-{name}.lock")


def lock_held(folder: str | os.PathLike, name: str | None = None) -> bool:
    """Whether a process holds :func:`run_lock`'s lock of ``folder`` (and ``name``) exclusively now: a
    non-blocking shared try, released at once. False where the lock file is missing or cannot be opened."""
    import fcntl

    try:
        fd = os.open(lock_path(folder, name), os.O_RDONLY)
    except OSError:  # never taken here (or not readable)
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


@contextmanager
def run_lock(folder: str | os.PathLike, name: str | None = None,
             advice: str = "wait for it to end or choose another --out", shared: bool = False) -> Iterator[None]:
    """Hold ``folder/.vidssl.lock`` exclusively while a command writes into ``folder``: a second command into the same
    folder (two trainings' logs and checkpoints interleaved) is refused, naming the process that holds it. An
    advisory ``flock``, released by the kernel when the holder exits or is killed, so a crash leaves no stale lock.
    ``name``: a lock of its own (``.vidssl-NAME.lock``) for one of several writers that share the folder (a shard).
    ``advice``: what the refusal tells the user to do (commands without ``--out`` say something else).
    ``shared``: held beside other shared holders and refused only by an exclusive one (and refusing it): shards
    mine a folder together, an unsharded mining alone. The file names the last holder to start."""
    import fcntl

    from vidssl.errors import VidsslError

    path = lock_path(folder, name)
    if path.parent.exists() and not path.parent.is_dir():  # mkdir would say "File exists"
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path.parent))
    path.parent.mkdir(parents=True, exist_ok=True)
    with os.fdopen(open_lock_file(path), "r+") as fh:
        try:
            fcntl.flock(fh, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            from vidssl.lifeline import process_start

            fh.seek(0)
            holder = fh.read().strip()
            # a shared lock's file names its last holder to start, which may have ended while others hold it
            who = f" (pid {holder})" if holder.isdigit() and process_start(int(holder)) is not None else ""
            what = "" if name is None else f" ({name})"
            raise VidsslError(f"{folder}{what} is in use by another vidssl command{who}; {advice}") from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
