"""The benchmark scripts' argument checks: bad values are refused in one line before any work, and a single video
is as good a --data as a folder of them."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def _run(script: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOLS / script), *map(str, args)], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("args, message", [
    (["--archs", "vgg"], "--archs vgg --sizes 64: config key 'model.arch': 'vgg' is not one of"),
    (["--sizes", "60"], "--archs smallcnn --sizes 60: loss.cycle_weight needs data.patch_size to be a multiple of 8"),
    (["--pairs", "/nowhere/pairs"], "--pairs /nowhere/pairs: not a pair dataset (no manifest.jsonl)"),
])
def test_bench_train_refuses_settings_before_writing_shards(args, message):
    """A bad --archs or --sizes failed with a traceback after writing 113 MB of synthetic shards."""
    out = _run("bench_train.py", *args)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, out.stderr[-1500:]
    assert out.stdout == ""  # not even the table's header


def test_bench_decode_takes_one_video_and_refuses_a_negative_size(demo_dir):
    out = _run("bench_decode.py", "--max-side", "-5")
    assert out.returncode == 2 and "--max-side must be a positive number of pixels" in out.stderr
    out = _run("bench_decode.py", "--data", demo_dir / "clip_00.mp4", "--runs", "1", "--max-side", "64")
    assert out.returncode == 0, out.stderr[-1500:]
    assert "| clip_00.mp4 |" in out.stdout and "no videos under" not in out.stderr
