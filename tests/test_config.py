"""Config: strict loading, overrides, and the committed default YAML matching the dataclasses."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vidssl.config import Config, default_yaml, load_config, parse_override, to_dict, write_resolved
from vidssl.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


def test_unknown_key_names_it_and_lists_valid_ones(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError) as e:
        load_config(f)
    assert "train.lrr" in str(e.value) and "lr" in str(e.value).split("valid keys")[1]
    with pytest.raises(ConfigError, match="unknown config key 'nosuch'"):
        load_config(overrides=["nosuch=1"])


def test_wrong_type_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match="'train.lr': expected a number"):
        load_config(overrides=["train.lr=fast"])
    with pytest.raises(ConfigError, match="'seed': expected an integer"):
        load_config(overrides=["seed=1.5"])
    with pytest.raises(ConfigError, match="expected true/false"):
        load_config(overrides=["export.safetensors=3"])
    with pytest.raises(ConfigError, match="'train': expected a mapping"):
        load_config(overrides=["train=3"])


@pytest.mark.parametrize("bad", ["train.lr", "=3", "train..lr=1", ".lr=1", "train.lr=[1,"])
def test_malformed_override(bad):
    with pytest.raises(ConfigError, match="malformed override"):
        parse_override(bad)


def test_overrides_apply_in_order_and_file_then_override(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("seed: 3\ntrain:\n  lr: 0.2\n")
    cfg = load_config(f, ["train.lr=0.3", "seed=4"])
    assert cfg.seed == 4 and cfg.train.lr == 0.3
    assert load_config(f).train.lr == 0.2
    assert load_config(overrides=["video.backend=pyav"]).video.backend == "pyav"


def test_exponent_numbers_are_numbers(tmp_path):
    # YAML 1.1 would read 1e-3 (no dot) as a string, and a float key would reject it
    assert load_config(overrides=["train.lr=1e-3"]).train.lr == 0.001
    assert load_config(overrides=["train.weight_decay=5E-4"]).train.weight_decay == 0.0005
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  lr: 2e-2\n  milestones: [5e-1, 0.75]\n")
    cfg = load_config(f)
    assert cfg.train.lr == 0.02 and cfg.train.milestones == [0.5, 0.75]
    assert load_config(overrides=["video.backend=pyav"]).video.backend == "pyav"  # words stay words


def test_missing_or_invalid_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("a: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")


def test_committed_default_yaml_is_generated_from_the_dataclasses():
    committed = (REPO / "configs" / "default.yaml").read_text()
    assert committed == default_yaml(), "run: python -m vidssl.config > configs/default.yaml"
    assert to_dict(load_config(REPO / "configs" / "default.yaml")) == to_dict(Config())
    for line in committed.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            assert "  # " in line, f"uncommented key: {line}"


def test_every_shipped_config_loads():
    for path in sorted((REPO / "configs").glob("*.yaml")):
        load_config(path)


def test_resolved_config_records_versions(tmp_path):
    path = write_resolved(load_config(overrides=["seed=7"]), tmp_path)
    data = yaml.safe_load(path.read_text())
    assert data["config"]["seed"] == 7
    for key in ("vidssl", "torch", "opencv", "pyav", "git_sha", "python"):
        assert key in data["versions"]
    assert data["versions"]["torch"]


def test_recording_versions_does_not_import_torch():
    # a mining-only process stays light: versions come from package metadata unless already imported
    import subprocess
    import sys

    code = ("import sys; from vidssl.config import versions; v = versions(); "
            "assert 'torch' not in sys.modules, 'torch imported'; assert v['torch'] and v['opencv'], v")
    subprocess.run([sys.executable, "-c", code], check=True)
