"""Atomic writes and strict JSON output: undefined metrics are written as null, never as NaN / Infinity (not JSON);
a failed write names the file the user asked for, never our temp file, and leaves neither behind."""
from __future__ import annotations

import errno
import hashlib
import os
import json
import re
import math
import tempfile

import numpy as np
import pytest

from vidssl.io import (SAMPLE_BYTES, atomic_path, atomic_write_bytes, atomic_write_json, atomic_write_text,
                       content_sample, file_record, finite_or_none, json_text, same_file)


def strict_loads(text: str):
    def reject(constant):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=reject)


def test_non_finite_floats_become_null_at_any_depth(tmp_path):
    record = {"loss": 0.25, "d_an": float("nan"), "nested": [1, float("inf"), (2.5, -math.inf)],
              "deep": {"x": {"y": float("nan")}}, "text": "nan", "flag": True, "n": 3}
    path = tmp_path / "out.json"
    atomic_write_json(path, record)
    back = strict_loads(path.read_text())
    assert back == {"loss": 0.25, "d_an": None, "nested": [1, None, [2.5, None]], "deep": {"x": {"y": None}},
                    "text": "nan", "flag": True, "n": 3}
    assert strict_loads(json_text(record)) == back
    assert finite_or_none(1e308) == 1e308 and finite_or_none(-0.0) == 0.0  # finite extremes pass unchanged
    with pytest.raises(ValueError, match="NaN"):  # the reference reader does reject what json.dumps writes by default
        strict_loads(json.dumps({"d_an": float("nan")}))


def test_a_failed_write_names_the_destination_not_the_temp_file(tmp_path):
    dest = tmp_path / "backbone.pt"
    # a full disk: write() raises ENOSPC naming no file, or the writer names the temp path it was given
    for named in (False, True):
        with pytest.raises(OSError) as caught:
            with atomic_path(dest) as tmp:
                tmp.write_bytes(b"partial")
                raise OSError(errno.ENOSPC, "No space left on device", *([str(tmp)] if named else []))
        assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(dest)
        assert not dest.exists() and list(tmp_path.iterdir()) == []  # no partial file, no temp file left
    # an error about another file (an input the writer reads) is passed on as it is
    with pytest.raises(FileNotFoundError) as caught:
        with atomic_path(dest):
            open(tmp_path / "missing-input.mp4", "rb")
    assert caught.value.filename == str(tmp_path / "missing-input.mp4")
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_said_in_a_writer_s_own_words_is_a_full_disk_naming_the_file(tmp_path, monkeypatch):
    """torch.save says a full disk as RuntimeError ("unexpected pos"), safetensors as SafetensorError and np.save as
    an OSError with no errno ("912384 requested and 262016 written"): a traceback, or a line naming no file."""
    import shutil

    import vidssl.io as io

    dest = tmp_path / "checkpoint.pt"
    usage = shutil.disk_usage(tmp_path)
    for free in (0, io.OUT_OF_SPACE_BYTES - 1):
        monkeypatch.setattr(io.shutil, "disk_usage", lambda folder: usage._replace(free=free))
        for said in (RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 512 vs 448"),
                     OSError("912384 requested and 262016 written")):
            with pytest.raises(OSError) as caught:
                with atomic_path(dest) as tmp:
                    tmp.write_bytes(b"partial")
                    raise said
            assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(dest)
            assert caught.value.__cause__ is said and list(tmp_path.iterdir()) == []
    # with room on the disk the writer's own error is not taken for a full disk
    monkeypatch.setattr(io.shutil, "disk_usage", lambda folder: usage._replace(free=io.OUT_OF_SPACE_BYTES))
    with pytest.raises(RuntimeError, match="unexpected pos"):
        with atomic_path(dest):
            raise RuntimeError("unexpected pos")
    with pytest.raises(OSError, match=f"writing {re.escape(str(dest))}: 912384 requested") as caught:
        with atomic_path(dest):
            raise OSError("912384 requested and 262016 written")
    assert caught.value.errno is None and list(tmp_path.iterdir()) == []


def test_a_failed_rename_names_the_destination_not_the_temp_file(tmp_path):
    dest = tmp_path / "config.yaml"
    dest.mkdir()  # a folder where the file goes: the rename fails, naming the temp file and the destination
    with pytest.raises(OSError) as caught:
        atomic_write_json(dest, {"a": 1})
    assert caught.value.filename == str(dest) and ".tmp-" not in str(caught.value)
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]


def test_the_folder_is_synced_after_the_rename(tmp_path, monkeypatch):
    """Without it a power cut may lose the rename: the newest checkpoint or card is gone, though each was synced."""
    import os

    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}")) or real_fsync(fd))
    atomic_write_json(tmp_path / "card.json", {"a": 1})
    assert synced[-1] == str(tmp_path) and synced[0].startswith(str(tmp_path / ".tmp-card.json."))


def test_a_umask_without_owner_write_still_writes_files(tmp_path, monkeypatch):
    """With umask 0222 every file is made read-only; the temp file was opened for writing to fsync it after its
    mode was set, which fails for any user but root, naming the destination in a folder that was writable. Root
    writes anything (as tests may run), so a user's permission check on opening is simulated."""
    import builtins
    import os
    import stat

    real_open = builtins.open

    def users_open(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wa+") and os.path.exists(file) and not os.stat(file).st_mode & stat.S_IWUSR:
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", users_open)
    before = os.umask(0o222)
    try:
        atomic_write_json(tmp_path / "x.json", {"a": 1})
    finally:
        os.umask(before)
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": 1}
    assert stat.S_IMODE((tmp_path / "x.json").stat().st_mode) == 0o444  # what open(..., "w") gives under it


def test_a_folder_that_refuses_new_files_is_named_with_the_destination(tmp_path, monkeypatch):
    dest = tmp_path / "backbone.pt"

    def refuse(prefix, dir):  # as mkstemp in a read-only folder (root writes anywhere, so it is simulated)
        raise PermissionError(errno.EACCES, "Permission denied", f"{dir}/{prefix}abc123")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(PermissionError) as caught:
        atomic_write_json(dest, {"a": 1})
    assert caught.value.filename == str(dest) and ".tmp-" not in str(caught.value)


def test_a_dead_writers_temp_file_is_removed_at_once_a_live_or_unknown_ones_only_when_old(tmp_path):
    """Mining shards share a folder with other processes, so a fresh temp file may be a live writer's. One whose
    writer (named in the temp name) is a process of this machine that has ended is a leftover, whatever its age."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from vidssl.io import remove_temp_leftovers

    writer = ("import sys, time\nfrom vidssl.io import atomic_path\n"
              "with atomic_path(sys.argv[1]) as tmp:\n"
              "    tmp.write_bytes(b'half')\n    print(tmp.name, flush=True)\n    time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", writer, str(tmp_path / "shard.npy")], stdout=subprocess.PIPE,
                            text=True)
    try:
        temp = tmp_path / proc.stdout.readline().strip()
        assert temp.name.startswith(".tmp-shard.npy.") and temp.read_bytes() == b"half"
        unknown = tmp_path / ".tmp-other.npy.abc123"  # no writer in the name (another tool's, or an older vidssl's)
        # another machine's process, of the writer's pid: once it ends below, that pid is free here, which says
        # nothing of the other machine's process (its shard, still being written, would be deleted)
        elsewhere = tmp_path / f".tmp-other.npy.{proc.pid}@00000000.abc123"
        for path in (unknown, elsewhere):
            path.write_bytes(b"x")
        cutoff = time.time() - 600
        remove_temp_leftovers(tmp_path, older_than=cutoff)
        assert temp.exists() and unknown.exists() and elsewhere.exists()  # the writer is alive
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        remove_temp_leftovers(tmp_path, older_than=cutoff)
        assert not temp.exists() and unknown.exists() and elsewhere.exists()
        old = cutoff - 60
        for path in (unknown, elsewhere):
            os.utime(path, (old, old))
        remove_temp_leftovers(tmp_path, older_than=cutoff)
        assert not unknown.exists() and not elsewhere.exists()
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def test_a_run_folder_s_cleanup_deletes_temp_files_only_not_its_lock_or_other_dotfiles(tmp_path):
    """Only atomic_path's .tmp-* names are a killed writer's: the user's dotfiles stay, and so does the held run
    lock, whose deletion would let a second command lock a new file of that name and write into the run alongside."""
    from vidssl.errors import VidsslError
    from vidssl.io import remove_temp_leftovers, run_lock

    with run_lock(tmp_path):
        for name in (".gitignore", ".tmpdata", ".tmp-checkpoint.pt.1@00000000.x"):
            (tmp_path / name).write_text("x")
        remove_temp_leftovers(tmp_path)
        assert sorted(p.name for p in tmp_path.iterdir()) == [".gitignore", ".tmpdata", ".vidssl.lock"]
        with pytest.raises(VidsslError, match="is in use by another vidssl command"):
            with run_lock(tmp_path):
                pass


def test_a_name_near_the_length_limit_is_still_written(tmp_path):
    """The temp name adds the writer (pid, machine): a long name is shortened there, never refused as too long."""
    from vidssl.io import atomic_write_bytes

    # 255 bytes, the limit of most file systems; and 253 bytes of 4-byte characters, which a cut of 60 characters
    # (not bytes) left 240 bytes long, too long again with the writer's suffix
    for name in ("x" * 250 + ".json", "\U0001F600" * 62 + ".json", "a" + "\U0001F600" * 62 + ".json"):
        atomic_write_bytes(tmp_path / name, b"ok")
        assert (tmp_path / name).read_bytes() == b"ok" and [p.name for p in tmp_path.iterdir()] == [name]
        (tmp_path / name).unlink()


@pytest.mark.parametrize("write, data, back", [
    (atomic_write_bytes, b"new", lambda path: path.read_bytes()),
    (atomic_write_text, "new", lambda path: path.read_text()),
    (atomic_write_json, {"v": "new"}, lambda path: json.loads(path.read_text()))], ids=["bytes", "text", "json"])
def test_the_finished_file_is_its_temp_file_renamed_so_a_reader_has_the_old_file_or_the_new(tmp_path, monkeypatch,
                                                                                            write, data, back):
    """A copy onto the destination (not a rename) truncates the file in place: a reader (another process loading
    the checkpoint, a kill -9 in the middle) met a file half old, half new or empty."""
    made = []
    real_mkstemp = tempfile.mkstemp

    def recording(*args, **kwargs):
        fd, name = real_mkstemp(*args, **kwargs)
        made.append((os.path.dirname(name), os.fstat(fd).st_ino))
        return fd, name

    monkeypatch.setattr(tempfile, "mkstemp", recording)
    dest = tmp_path / "card.json"
    dest.write_text("old")
    with open(dest) as reader:  # opened before the write: it keeps the file it opened
        write(dest, data)
        assert reader.read() == "old"
    assert back(dest) == data
    # the destination is the very temp file made beside it (the same inode), not a copy of it
    assert made == [(str(tmp_path), dest.stat().st_ino)] and [p.name for p in tmp_path.iterdir()] == ["card.json"]


def test_every_name_length_up_to_the_limit_is_written(tmp_path, monkeypatch):
    """The temp name adds 24 bytes and the writer's pid to the name: any name the file system takes (255 bytes
    here) must be written, whatever its length and its characters (1 to 4 bytes each in UTF-8, so the cut that
    shortens a long name meets each split of a character)."""
    monkeypatch.setattr(os, "fsync", lambda fd: None)  # 284 writes; their syncs are tested elsewhere
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    for size in range(limit - 70, limit + 1):
        for char in ("x", "\u00e9", "\u20ac", "\U0001F600"):
            width = len(char.encode())
            body = size - len(".json")
            name = "x" * (body % width) + char * (body // width) + ".json"
            assert len(os.fsencode(name)) == size
            atomic_write_bytes(tmp_path / name, b"ok")
            assert [p.name for p in tmp_path.iterdir()] == [name], (size, char)
            assert (tmp_path / name).read_bytes() == b"ok"
            (tmp_path / name).unlink()


def test_a_same_size_file_changed_only_near_its_end_is_not_the_same(tmp_path):
    """The content sample is the size, first and last SAMPLE_BYTES: a video rewritten in place at the same size
    (new time) whose change lies near its end differs there, which a sample of the second MiB never read."""
    rng = np.random.default_rng(0)
    data = bytearray(rng.integers(0, 256, 3 * SAMPLE_BYTES, dtype=np.uint8).tobytes())
    path = tmp_path / "clip.mp4"
    path.write_bytes(data)
    recorded = file_record(path)
    reference = hashlib.sha1(str(len(data)).encode() + data[:SAMPLE_BYTES] + data[-SAMPLE_BYTES:]).hexdigest()
    assert recorded["sample"] == content_sample(path) == reference
    later = recorded["mtime_ns"] + 10**9
    os.utime(path, ns=(later, later))  # a copy: new time, same bytes
    assert same_file(recorded, path)
    data[-1] ^= 1
    path.write_bytes(data)
    os.utime(path, ns=(later, later))
    assert path.stat().st_size == recorded["size"] and not same_file(recorded, path)


def test_a_lock_refusal_names_its_holder_only_while_that_process_lives(tmp_path):
    """Shards share the mining lock, each writing its pid into the file on entry: the last to start may have ended
    while the others still hold it, and the refusal named that dead pid."""
    import subprocess
    import sys

    from vidssl.errors import VidsslError
    from vidssl.io import run_lock

    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(ended.stdout)
    with run_lock(tmp_path, "mine", shared=True):
        with pytest.raises(VidsslError, match=rf"is in use by another vidssl command \(pid {os.getpid()}\); wait"):
            with run_lock(tmp_path, "mine"):
                pass
        (tmp_path / ".vidssl-mine.lock").write_text(str(dead))  # a shard that started later and has ended
        with run_lock(tmp_path, "mine", shared=True):  # another shard beside it: shared, accepted
            (tmp_path / ".vidssl-mine.lock").write_text(str(dead))
            with pytest.raises(VidsslError) as refused:
                with run_lock(tmp_path, "mine"):
                    pass
    assert "is in use by another vidssl command; wait" in str(refused.value) and "pid" not in str(refused.value)


def test_a_lock_file_that_is_a_symbolic_link_is_refused_and_its_target_left_as_it_is(tmp_path):
    """run_lock truncated its file to write its pid, through a link: RUN/.vidssl.lock linked to ~/.bashrc wiped it
    (`vidssl report RUN`, train, pretrain, mine), and a dangling link created its target."""
    from vidssl.errors import VidsslError
    from vidssl.io import run_lock

    run, bashrc = tmp_path / "run", tmp_path / "bashrc"
    run.mkdir()
    bashrc.write_text("export PATH=$HOME/bin:$PATH\n")
    (run / ".vidssl.lock").symlink_to(bashrc)
    (run / ".vidssl-mine.lock").symlink_to(tmp_path / "absent")
    for name, lock in ((None, ".vidssl.lock"), ("mine", ".vidssl-mine.lock")):
        said = f"{run / lock} is a symbolic link; vidssl writes its lock file itself: remove the link"
        with pytest.raises(VidsslError, match=re.escape(said)):
            with run_lock(run, name):
                pass
    assert bashrc.read_text() == "export PATH=$HOME/bin:$PATH\n" and not (tmp_path / "absent").exists()
    # a plain lock file as before: it names its holder alone (an earlier holder's longer pid cut) and refuses another
    (run / ".vidssl.lock").unlink()
    (run / ".vidssl.lock").write_text("4194304123")
    with run_lock(run):
        assert (run / ".vidssl.lock").read_text() == str(os.getpid())
        with pytest.raises(VidsslError, match="is in use by another vidssl command"):
            with run_lock(run):
                pass


# ----------------------------------------------------------------------------------------------------------------
# from a mutation review: the order of syncs, a lock file that stays


def test_the_folder_is_synced_after_the_rename_not_before(tmp_path, monkeypatch):
    """Kills io02 (``_fsync_folder`` moved before ``os.replace``): the existing test only looks at which fds were
    synced, not when; a folder synced before the rename does not make the rename durable."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(src, dst, *args, **kwargs):
        events.append(("replace", str(dst)))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    from vidssl.io import atomic_write_json

    atomic_write_json(tmp_path / "card.json", {"a": 1})
    kinds = [(kind, os.path.basename(name) if kind == "fsync" and name != str(tmp_path) else name)
             for kind, name in events]
    assert kinds[0][0] == "fsync" and kinds[0][1].startswith(".tmp-card.json.")  # the data, before the rename
    assert kinds[1] == ("replace", str(tmp_path / "card.json"))
    assert kinds[2] == ("fsync", str(tmp_path)) and len(kinds) == 3  # the folder, after it


def test_a_released_lock_file_stays_so_a_waiting_opener_and_a_newcomer_never_both_hold_it(tmp_path):
    """Kills io11 (the lock file unlinked on release, a "clean-up" that looks harmless): a command that had opened
    the lock file before the release then locks the old inode, while a third one creates and locks a new file of
    the same name: two writers in one run folder."""
    import fcntl

    from vidssl.errors import VidsslError
    from vidssl.io import open_lock_file, run_lock

    lock = tmp_path / ".vidssl.lock"
    with run_lock(tmp_path):
        waiting = open_lock_file(lock)  # a second command, between its open and its flock
    try:
        fcntl.flock(waiting, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the first has ended: the second holds the folder now
        assert lock.exists() and os.fstat(waiting).st_ino == lock.stat().st_ino
        with pytest.raises(VidsslError, match="is in use by another vidssl command"):
            with run_lock(tmp_path):  # a third command
                pass
    finally:
        os.close(waiting)
