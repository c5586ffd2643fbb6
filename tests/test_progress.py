"""When progress bars are drawn: on a terminal with a width, not on a file, a pipe or a 0-column terminal."""
from __future__ import annotations

import io
import os

import pytest

from vidssl.progress import bars_on_stderr


class _Stderr(io.StringIO):
    """A stderr that says it is a terminal (or not), on descriptor 2."""

    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty

    def fileno(self) -> int:
        return 2


@pytest.mark.parametrize("tty, columns, wanted, drawn", [
    (True, 120, True, True),
    (True, 0, True, False),  # `script -qc`, a CI runner's pty, `docker exec -t` before a resize: tqdm drew nothing
    (True, 120, False, False),  # -q
    (False, 120, True, False),  # a file or a pipe
])
def test_bars_are_drawn_only_on_a_terminal_with_a_width(monkeypatch, tty, columns, wanted, drawn):
    monkeypatch.setattr("sys.stderr", _Stderr(tty))
    monkeypatch.setattr(os, "get_terminal_size", lambda fd=1: os.terminal_size((columns, 24)))
    assert bars_on_stderr(wanted) is drawn


def test_a_stderr_without_a_terminal_size_draws_no_bar(monkeypatch):
    def no_size(fd=1):
        raise OSError(25, "Inappropriate ioctl for device")

    monkeypatch.setattr("sys.stderr", _Stderr(True))
    monkeypatch.setattr(os, "get_terminal_size", no_size)
    assert bars_on_stderr() is False
