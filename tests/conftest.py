"""Shared fixtures: the real data folder ($VIDSSL_DATA) and a session-wide set of demo videos."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def pytest_configure(config) -> None:
    # A suite started as a background job of a script (`pytest ... &`, nohup) inherits SIGINT ignored: the shell
    # keeps the terminal's Ctrl-C for its foreground job. The trainer then rightly leaves Ctrl-C alone, and the tests
    # that send one to a training (in this process, or to a child, which inherits the disposition) failed, or waited
    # on a trainer that never stopped. Handled here as in an interactive run; the children get the default action.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def data_root() -> Path:
    return Path(os.environ.get("VIDSSL_DATA", REPO.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """$VIDSSL_DATA (default ../shared/data); tests using it skip only when the folder is absent."""
    root = data_root()
    if not root.is_dir():
        pytest.skip(f"real data not found at {root}; set VIDSSL_DATA")
    return root


@pytest.fixture(scope="session")
def real_videos(data_dir) -> list[Path]:
    from vidssl.video import find_videos

    return find_videos(data_dir / "videos")


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> Path:
    """The six default demo clips (one of each kind), written once per test session."""
    from vidssl.demo import make_demo_videos

    out = tmp_path_factory.mktemp("demo")
    make_demo_videos(out, num=6, seed=0)
    return out
