"""Atomic writes and strict JSON output: undefined metrics are written as null, never as NaN / Infinity (not JSON);
a failed write names the file the user asked for, never our temp file, and leaves neither behind."""
from __future__ import annotations

import errno
import json
import math
import tempfile

import pytest

from vidssl.io import atomic_path, atomic_write_json, finite_or_none, json_text


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


def test_a_folder_that_refuses_new_files_is_named_with_the_destination(tmp_path, monkeypatch):
    dest = tmp_path / "backbone.pt"

    def refuse(prefix, dir):  # as mkstemp in a read-only folder (root writes anywhere, so it is simulated)
        raise PermissionError(errno.EACCES, "Permission denied", f"{dir}/{prefix}abc123")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(PermissionError) as caught:
        atomic_write_json(dest, {"a": 1})
    assert caught.value.filename == str(dest) and ".tmp-" not in str(caught.value)
