"""Strict JSON output: undefined metrics are written as null, never as NaN / Infinity (not JSON)."""
from __future__ import annotations

import json
import math

import pytest

from vidssl.io import atomic_write_json, finite_or_none, json_text


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
