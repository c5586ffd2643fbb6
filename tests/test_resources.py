"""Resource exhaustion and odd inputs: a full disk, a file size limit, an unreadable shard, an unwritable --out, a
pipe given as a file. Each is one line naming the file and what to do, and leaves no partial or temp file."""
from __future__ import annotations

import errno
import logging
import os
import pathlib
import resource
from contextlib import contextmanager

import numpy as np
import pytest
import torch

from train_utils import write_pairs
from vidssl.cli import main
from vidssl.config import load_config
from vidssl.errors import ConfigError
from vidssl.export import ModelFileError, load_backbone, save_backbone
from vidssl.models import build_backbone


@contextmanager
def file_size_limit(limit: int):
    """`ulimit -f`: a write past ``limit`` bytes fails with EFBIG (Python ignores SIGXFSZ). Held only around the
    write under test: pytest's own files grow past it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def test_a_file_size_limit_during_export_is_one_line_naming_the_weights_file(tmp_path, monkeypatch, capsys):
    """torch.save writing the file itself said EFBIG (and a quota, and a full disk whose space its failure freed)
    as "RuntimeError: [enforce fail at inline_container.cc:672] unexpected pos": a traceback naming no file."""
    import vidssl.export

    backbone = build_backbone("smallcnn", width=8)
    out = tmp_path / "out" / "backbone.pt"
    # the export of a run, without training one: the same save_backbone
    monkeypatch.setattr(vidssl.export, "export_backbone",
                        lambda run, out, safetensors=True: save_backbone(backbone, out, None, safetensors))
    with file_size_limit(4096):  # the weights are ~25 kB; the temp files are made empty
        code = main(["export", str(tmp_path), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and err == f"vidssl export: error: File too large: {out}\n"
    assert list(out.parent.iterdir()) == []  # no weights, copy, card or temp file


def test_a_full_disk_writing_the_safetensors_copy_names_that_file(tmp_path, monkeypatch):
    """safetensors' save_file removed its own file before raising SafetensorError, so the free-space guess saw room
    and the traceback reached the user. Now Python writes the bytes, and a full disk is ENOSPC naming the copy (not
    the weights file, whose temp file is the innermost of the nested writes)."""
    written = pathlib.Path.write_bytes

    def full_disk_for_the_copy(self, data):
        if self.name.startswith(".tmp-backbone.safetensors."):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as a write says it: no file name
        return written(self, data)

    monkeypatch.setattr(pathlib.Path, "write_bytes", full_disk_for_the_copy)
    out = tmp_path / "backbone.pt"
    with pytest.raises(OSError) as caught:
        save_backbone(build_backbone("smallcnn", width=8), out)
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(tmp_path / "backbone.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_the_exported_safetensors_bytes_load_with_their_card(tmp_path):
    """safetensors.torch.save (bytes) in place of save_file: the same tensors, the card in the metadata."""
    from safetensors import safe_open

    backbone = build_backbone("smallcnn", width=8)
    save_backbone(backbone, tmp_path / "backbone.pt")
    with safe_open(str(tmp_path / "backbone.safetensors"), "pt") as fh:
        assert fh.metadata()["format"] == "pt" and fh.metadata()["arch"] == "smallcnn"
    loaded = load_backbone(tmp_path / "backbone.safetensors").state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in backbone.state_dict().items())
    assert oct(os.stat(tmp_path / "backbone.safetensors").st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def test_a_file_size_limit_writing_a_checkpoint_names_it(tmp_path):
    from vidssl.train import _save_checkpoint

    path = tmp_path / "checkpoint.pt"
    with file_size_limit(4096):
        with pytest.raises(OSError) as caught:
            _save_checkpoint(path, {"w": torch.zeros(4096)})
    assert caught.value.errno == errno.EFBIG and caught.value.filename == str(path)
    assert list(tmp_path.iterdir()) == []
    _save_checkpoint(path, {"w": torch.arange(5)})  # and without the limit it loads back
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.arange(5))


def test_a_full_disk_writing_the_log_names_it_once(tmp_path):
    """A full disk's write error named no file, and close() (in train's finally) flushed the failed buffer again:
    the same error chained three times. The TensorBoard writer is still closed."""
    from vidssl.train import RunLog

    run_log = RunLog(tmp_path, 0, True)
    run_log.fh.close()
    run_log.fh = open("/dev/full", "a")  # every write: ENOSPC
    closed = []
    writer_close = run_log.writer.close
    run_log.writer.close = lambda: closed.append(writer_close())
    with pytest.raises(OSError) as caught:
        run_log.scalars(1, {"loss": 0.5})
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(tmp_path / "log.jsonl")
    run_log.close()  # no second error
    assert run_log.fh.closed and closed == [None]


def test_an_unreadable_pair_shard_asks_for_read_permission_not_a_new_mining(tmp_path, monkeypatch, caplog):
    """Mining again finds the shard made and keeps it: the advice did nothing. (Simulated: root reads anything.)"""
    from vidssl.data.pairs import open_pairs
    from vidssl.eval.retrieval_data import RetrievalDataError, _check_shard

    patches = np.random.default_rng(0).integers(0, 256, (8, 2, 16, 16, 3), dtype=np.uint8)
    root = write_pairs(tmp_path / "pairs", patches, ["a"] * 4 + ["b"] * 4, list(range(8)), shard_rows=4)
    locked = sorted(root.rglob("*.npy"))[0]
    load = np.load

    def no_permission(path, *args, **kwargs):
        if pathlib.Path(path) == locked:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return load(path, *args, **kwargs)

    monkeypatch.setattr(np, "load", no_permission)
    with pytest.raises(RetrievalDataError, match=f"{locked}: no read permission \\(chmod \\+r {locked}\\)"):
        _check_shard(locked)
    with caplog.at_level(logging.WARNING, logger="vidssl"):
        pairs = open_pairs(root)
    assert locked.relative_to(root).as_posix() in pairs.skipped
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert f"no read permission (chmod +r {locked})" in warning and "mine its video again" not in warning


def _eval_retrieval(tmp_path, out) -> int:
    # weights that do not exist: before the --out check, it refused them ("no such file"), after loading started
    return main(["eval", "retrieval", "--weights", str(tmp_path / "missing.pt"), "--data", str(tmp_path),
                 "--out", str(out)])


def test_an_eval_out_on_a_read_only_mount_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    real = os.statvfs

    def read_only(path):
        st = real(path)
        return os.statvfs_result((*st[:8], st.f_flag | os.ST_RDONLY, *st[9:]))

    monkeypatch.setattr(os, "statvfs", read_only)
    out = tmp_path / "evals" / "retrieval"
    assert _eval_retrieval(tmp_path, out) == 2
    err = capsys.readouterr().err
    assert f"--out {out}: {tmp_path} is on a read-only file system; choose another --out" in err
    assert not (tmp_path / "evals").exists()  # created nothing


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into any folder whatever its permission bits")
def test_an_eval_out_without_write_permission_is_refused_before_any_work(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    try:
        assert _eval_retrieval(tmp_path, locked / "eval") == 2
    finally:
        locked.chmod(0o755)
    assert f"no permission to write in {locked}" in capsys.readouterr().err
    assert list(locked.iterdir()) == []


def test_an_eval_out_below_a_file_is_refused_before_any_work(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("")
    assert _eval_retrieval(tmp_path, tmp_path / "notes.txt" / "eval") == 2
    assert f"{tmp_path / 'notes.txt'} is a file, not a folder" in capsys.readouterr().err
    # a dangling link: the folder above it is writable, but making OUT at the end failed on the link
    (tmp_path / "eval").symlink_to(tmp_path / "gone")
    assert _eval_retrieval(tmp_path, tmp_path / "eval") == 2
    assert f"a link to a missing folder ({tmp_path / 'gone'})" in capsys.readouterr().err


def test_a_pipe_given_as_config_or_weights_is_said_to_be_one(tmp_path):
    """`--config <(echo ...)` and /dev/stdin were "config file not found"; opening a pipe without a writer blocks,
    so it stays refused, saying what it is."""
    pipe = tmp_path / "config.yaml"
    os.mkfifo(pipe)
    with pytest.raises(ConfigError, match=r"config.yaml is not a regular file \(a pipe: write the YAML to a file"):
        load_config(pipe)
    weights = tmp_path / "backbone.pt"
    os.mkfifo(weights)
    with pytest.raises(ModelFileError, match=r"backbone.pt is not a regular file \(a pipe: save the weights"):
        load_backbone(weights, arch="smallcnn")
    with pytest.raises(ConfigError, match="config file not found"):  # a missing file is still said so
        load_config(tmp_path / "missing.yaml")


def test_a_file_size_limit_writing_a_pair_shard_names_it(tmp_path):
    """numpy writing the shard itself said EFBIG as "38400 requested and 3968 written": no errno, no file."""
    from tracking.dataset import _save_npy

    shard = tmp_path / "shards" / "clip.npy"
    with file_size_limit(4096), pytest.raises(OSError) as caught:
        _save_npy(shard, np.zeros((10, 2, 16, 16, 3), np.uint8))  # 15 kB
    assert caught.value.errno == errno.EFBIG and caught.value.filename == str(shard)
    assert list(shard.parent.iterdir()) == []
    _save_npy(shard, np.arange(10 * 2 * 16 * 16 * 3).astype(np.uint8).reshape(10, 2, 16, 16, 3))
    assert np.array_equal(np.load(shard), np.arange(10 * 2 * 16 * 16 * 3).astype(np.uint8).reshape(10, 2, 16, 16, 3))
