"""Config: strict loading, overrides, and the committed default YAML matching the dataclasses."""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import sys
import typing
from pathlib import Path

import pytest
import yaml

from vidssl.config import Config, default_yaml, from_dict, load_config, parse_override, to_dict, write_resolved
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
    # a typo gets the close key, in its section and at the top level
    with pytest.raises(ConfigError, match="unknown config key 'train.lrr'; did you mean 'train.lr'\\?"):
        load_config(f)
    with pytest.raises(ConfigError, match="unknown config key 'trian'; did you mean 'train'\\?"):
        load_config(overrides=["trian.lr=0.1"])


def test_numbers_beyond_a_float_or_64_bits_are_config_errors():
    """An integer too large for a float raised OverflowError: a traceback, where 1e400 got the one-line error."""
    with pytest.raises(ConfigError, match="'train.lr': expected a finite number, got an integer of 401 digits"):
        load_config(overrides=["train.lr=1" + "0" * 400])
    with pytest.raises(ConfigError, match="'train.steps': expected an integer under 2\\*\\*63"):
        load_config(overrides=[f"train.steps={2 ** 63}"])
    assert load_config(overrides=[f"train.steps={2 ** 63 - 1}"]).train.steps == 2 ** 63 - 1


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
    with pytest.raises(ConfigError, match=f"is a folder, not a config file: {tmp_path}"):
        load_config(tmp_path)
    (tmp_path / "bad.yaml").write_text("a: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")


def test_a_key_given_twice_is_an_error_not_the_last_one_wins(tmp_path):
    (tmp_path / "twice.yaml").write_text("train:\n  lr: 0.5\n  lr: 0.001\n")
    with pytest.raises(ConfigError, match=r"twice.yaml .*line 3.*key 'lr' appears twice \(lines 2 and 3\)"):
        load_config(tmp_path / "twice.yaml")
    # a second section would replace the first one whole: lr would fall back to the default without a word
    (tmp_path / "sections.yaml").write_text("train:\n  lr: 0.5\nmodel:\n  width: 8\ntrain:\n  steps: 7\n")
    with pytest.raises(ConfigError, match=r"key 'train' appears twice \(lines 1 and 5\)"):
        load_config(tmp_path / "sections.yaml")
    assert load_config(None, ["train.lr=0.5", "train.lr=0.001"]).train.lr == 0.001  # --set: the last one wins


def test_numbers_are_read_as_yaml_1_2_and_keys_as_written(tmp_path):
    """YAML 1.1 read --set seed=010 as octal 8 and 1:30 as 90 (base 60); a key `on:` became True, and sorting it
    beside string keys raised a TypeError (a traceback, not the one-line error)."""
    assert parse_override("seed=010") == (["seed"], 10)
    assert [parse_override(f"seed={v}")[1] for v in ("0o17", "0x1F", "-5", "+3")] == [15, 31, -5, 3]
    with pytest.raises(ConfigError, match="'seed': expected an integer, got '1:30'"):
        load_config(None, ["seed=1:30"])
    with pytest.raises(ConfigError, match="'seed': expected an integer, got '1_000'"):
        load_config(None, ["seed=1_000"])
    # booleans too: YAML 1.1's yes/no/on/off are strings (a sequence list [bear, on] read as ['bear', True])
    assert [load_config(None, [f"data.flip={v}"]).data.flip for v in ("true", "True", "FALSE")] == [True, True, False]
    with pytest.raises(ConfigError, match="'data.flip': expected true/false, got 'no'"):
        load_config(None, ["data.flip=no"])
    assert load_config(None, ["eval.davis.sequences=[bear, on, off, yes, y]"]).eval.davis.sequences == [
        "bear", "on", "off", "yes", "y"]
    (tmp_path / "on.yaml").write_text("train: {on: true, lr: 0.1}\n")
    with pytest.raises(ConfigError, match="unknown config key 'train.on'"):
        load_config(tmp_path / "on.yaml")
    (tmp_path / "mixed.yaml").write_text("train: {yes: 1, 1: 2, null: 3, lrr: 4}\n")
    with pytest.raises(ConfigError, match="unknown config key 'train.1'"):
        load_config(tmp_path / "mixed.yaml")


def test_yaml_merge_keys_still_load_and_odd_keys_are_one_line_errors(tmp_path):
    # `<<: *anchor` brings keys the mapping may then override: repeating them is what it is for
    (tmp_path / "merge.yaml").write_text("train: &base {lr: 0.5, steps: 7}\n"
                                         "data: {patch_size: 96}\n"
                                         "eval:\n  retrieval: &dev {device: cpu}\n  flow: {<<: *dev, lr: 0.001}\n")
    cfg = load_config(tmp_path / "merge.yaml")
    assert cfg.eval.flow.device == "cpu" and cfg.eval.flow.lr == 0.001 and cfg.train.steps == 7
    (tmp_path / "unhashable.yaml").write_text("? [a, b]\n: 1\n")
    with pytest.raises(ConfigError, match="unhashable.yaml is not valid YAML .*unhashable key"):
        load_config(tmp_path / "unhashable.yaml")


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


def test_the_recorded_git_sha_is_this_checkout_s_and_none_inside_another_project(tmp_path):
    """Installed (not editable) into a virtualenv inside the user's own git project, vidssl recorded that
    project's HEAD as its own version in every run, checkpoint and model card."""
    import shutil
    import subprocess
    import sys

    from vidssl.config import git_sha

    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("not run from a git checkout of vidssl")
    assert git_sha().removesuffix("-dirty") == head.stdout.strip()
    project = tmp_path / "userproj"
    site = project / ".venv" / "site-packages"
    shutil.copytree(REPO / "vidssl", site / "vidssl", ignore=shutil.ignore_patterns("__pycache__"))
    git = ["git", "-C", str(project), "-c", "user.name=u", "-c", "user.email=u@x"]
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "user's own"], check=True)
    theirs = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    found = subprocess.run([sys.executable, "-c", "import vidssl.config as c; print(c.__file__, c.git_sha())"],
                           cwd=tmp_path, capture_output=True, text=True, check=True,
                           env={"PYTHONPATH": str(site), "PATH": os.environ["PATH"]}).stdout.split()
    assert found[0].startswith(str(site)) and theirs != head.stdout.strip()  # the copy ran, in a project of its own
    assert found[1] == "None"


def test_a_dirty_checkout_records_a_digest_of_its_changes(tmp_path):
    """A "-dirty" SHA said only that the tree had changes, not which: runs of two edits read the same."""
    import shutil
    import subprocess

    from vidssl.config import git_sha, git_state

    def git_diff_sha256(root):
        return git_state(root)["git_diff_sha256"]

    first = tmp_path / "first"
    git = ["git", "-C", str(first), "-c", "user.name=u", "-c", "user.email=u@x"]
    subprocess.run(["git", "init", "-q", str(first)], check=True)
    (first / "code.py").write_text("lr = 0.02\n")
    subprocess.run([*git, "add", "code.py"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "c"], check=True)
    second = tmp_path / "second"
    shutil.copytree(first, second)  # the same commit, checked out twice
    assert git_diff_sha256(first) is None and not git_sha(first).endswith("-dirty")  # clean: nothing to record
    (first / "code.py").write_text("lr = 0.05\n")
    edit = git_diff_sha256(first)
    assert git_sha(first).endswith("-dirty") and edit is not None
    (second / "code.py").write_text("lr = 0.05\n")
    assert git_diff_sha256(second) == edit  # one edit, one digest, wherever it is
    (second / "code.py").write_text("lr = 0.1\n")
    assert git_diff_sha256(second) not in (None, edit)
    (tmp_path / "first" / "notes.txt").write_text("untracked")  # untracked files are no change of the code
    assert git_diff_sha256(first) == edit


def test_keys_of_a_section_set_where_a_value_was_given_are_refused(tmp_path):
    """`--set model=resnet18 --set model.width=64` (or a file's `train: 5` and `--set train.lr=0.1`) loaded: the
    section's keys replaced the wrong value before its type was checked."""
    for overrides in (["model=resnet18", "model.width=64"], ["eval=1", "eval.davis.topk=5"],
                      ["eval.davis=x", "eval.davis.topk=5"]):
        with pytest.raises(ConfigError, match=f"config key '{overrides[0].split('=')[0]}' is a section"):
            load_config(overrides=overrides)
    path = tmp_path / "c.yaml"
    path.write_text("train: 5\n")
    with pytest.raises(ConfigError, match="config key 'train' is a section.*e.g. train.KEY=VALUE"):
        load_config(path, ["train.lr=0.1"])
    assert load_config(overrides=["model.width=64", "model.width=32"]).model.width == 32  # sections still merge
    # keys under a plain key are no section's: the key's own type check names it (not "a section" of value 0.02)
    with pytest.raises(ConfigError, match=r"config key 'train.lr': expected a number, got \{'x': 1\}"):
        load_config(overrides=["train.lr.x=1"])


def test_recording_versions_does_not_import_torch():
    # a mining-only process stays light: versions come from package metadata unless already imported
    import subprocess
    import sys

    code = ("import sys; from vidssl.config import versions; v = versions(); "
            "assert 'torch' not in sys.modules, 'torch imported'; assert v['torch'] and v['opencv'], v")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_recorded_versions_do_not_depend_on_what_was_imported(monkeypatch):
    """The evaluations (torch imported) recorded torch 2.14.1+cu130 where the run's config.yaml (written before)
    recorded 2.14.1: a module's __version__ may be spelled otherwise than its distribution's metadata."""
    import types
    from importlib import metadata

    from vidssl.config import versions

    before = versions()
    for module in ("torch", "torchvision", "cv2", "numpy"):
        monkeypatch.setitem(sys.modules, module, types.SimpleNamespace(__version__="0.0.0+spelled-otherwise"))
    after = versions()
    assert after["torch"] == before["torch"] == metadata.version("torch")
    assert after["torchvision"] == metadata.version("torchvision")
    assert after["numpy"] == metadata.version("numpy")
    assert after == before


def test_video_backend_is_a_checked_choice():
    """An unknown decoder name fails at load time (exit 2), not as every video 'skipped (error)' with rc 0."""
    with pytest.raises(ConfigError, match=r"'video.backend': 'ffmpeg' is not one of \['auto', 'decord', 'pyav', "
                                          r"'opencv'\]"):
        load_config(overrides=["video.backend=ffmpeg"])
    from vidssl.config import VIDEO_BACKENDS
    from vidssl.video import BACKENDS

    assert VIDEO_BACKENDS == ("auto", *BACKENDS)  # the config's list follows the decoders


def test_resolved_config_yaml_reads_back_as_the_same_config(tmp_path):
    """RUN/config.yaml (config + versions) is a valid --config: it reproduces the run; --set still applies on top."""
    cfg = load_config(overrides=["seed=7", "train.lr=0.01", "video.backend=pyav", "eval.davis.topk=5"])
    path = write_resolved(cfg, tmp_path)
    assert load_config(path) == cfg
    assert load_config(path, ["seed=8"]).seed == 8
    default = write_resolved(Config(), tmp_path / "d")
    assert load_config(default) == Config()
    # a key written beside a resolved file's config mapping: said so, not "unknown config key 'config'"
    (tmp_path / "mixed.yaml").write_text("config: {seed: 1}\ntrain: {lr: 0.1}\nversions: {}\n")
    with pytest.raises(ConfigError, match="mixed.yaml is a resolved config.yaml with 'train' beside 'config:'; "
                                          "put it under 'config:'"):
        load_config(tmp_path / "mixed.yaml")


@pytest.mark.parametrize("override, message", [
    ("demo.fps=0", "'demo.fps': must be >= 1"), ("demo.fps=-5", "'demo.fps': must be >= 1"),
    ("demo.num=0", "'demo.num': must be >= 1"), ("demo.frames=1", "'demo.frames': must be >= 2"),
    ("demo.width=321", "'demo.width': must be an even number >= 64"),
    ("demo.height=32", "'demo.height': must be an even number >= 64"),
    ("demo.mine_box_fraction=0", "'demo.mine_box_fraction': must be in")])
def test_demo_values_are_checked_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=[override])


@pytest.mark.parametrize("override, message", [
    # momentum 1 kept step 0's value as the running mean for ever: the collapse guard was off
    ("miner.guard_momentum=1.0", r"'miner.guard_momentum': must be in \[0, 1\), got 1.0"),
    # the walks' probabilities underflow to no gradient, and near 1e-39 cos / T overflows to NaN
    ("loss.cycle_temperature=0.001", "'loss.cycle_temperature': must be >= 0.01, got 0.001")])
def test_settings_that_switch_a_mechanism_off_silently_are_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=[override])
    assert load_config(overrides=[override.split("=")[0] + "=0.5"])  # values inside the range load


def test_config_file_errors_are_one_line_naming_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [\n- a\n")
    with pytest.raises(ConfigError) as e:
        load_config(bad)
    assert "\n" not in str(e.value) and str(bad) in str(e.value) and "at line 2, column 1" in str(e.value)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("train:\n  lr: 0.1\n  foo: 1\n")
    with pytest.raises(ConfigError, match=f"config file {unknown}: unknown config key 'train.foo'"):
        load_config(unknown)
    (tmp_path / "wrong.yaml").write_text("seed: 1.5\n")
    with pytest.raises(ConfigError, match=f"config file {tmp_path / 'wrong.yaml'}: config key 'seed'"):
        load_config(tmp_path / "wrong.yaml")
    (tmp_path / "ok.yaml").write_text("seed: 3\n")
    with pytest.raises(ConfigError) as e:  # the override is to blame, not the file
        load_config(tmp_path / "ok.yaml", ["train.lrr=1"])
    assert "ok.yaml" not in str(e.value) and "unknown config key 'train.lrr'" in str(e.value)


def test_seeds_out_of_range_are_config_errors():
    """Negative seeds, and seeds of 2**32 and more: the trainer's per-step seeds (seed x 1,000,003 + step) overflowed
    torch's 64 bits on the first step from about 1.8e13, and eval.retrieval.seed was not checked at all (a
    traceback after feature extraction)."""
    for key in ("seed", "demo.seed", "eval.retrieval.seed"):
        for bad in (-1, 2 ** 32, 35184372088832):
            with pytest.raises(ConfigError, match=rf"'{key}': must be in \[0, 2\*\*32\), got {bad}"):
                load_config(None, [f"{key}={bad}"])
        assert load_config(None, [f"{key}={2 ** 32 - 1}"])


def test_a_section_whose_keys_are_all_commented_out_keeps_its_defaults(tmp_path):
    # copied out of default.yaml with every key commented: `train:` alone read as null and was refused
    (tmp_path / "empty.yaml").write_text("train:\n  # lr: 0.1\nseed: 3\neval:\n  davis:\n")
    assert load_config(tmp_path / "empty.yaml") == load_config(None, ["seed=3"])
    with pytest.raises(ConfigError, match="config section 'train': expected a mapping, got null"):
        load_config(None, ["train=null"])  # written on purpose: refused, not ignored


def test_base_60_floats_are_no_numbers():
    # YAML 1.1's float resolver read 1:30.5 as 90.5 after its int resolver had been taken out
    with pytest.raises(ConfigError, match="'train.lr': expected a number, got '1:30.5'"):
        load_config(None, ["train.lr=1:30.5"])
    assert [parse_override(f"train.lr={v}")[1] for v in ("1e-3", "1.5", ".5", "1_0.5")] == [0.001, 1.5, 0.5, "1_0.5"]
    with pytest.raises(ConfigError, match="'train.lr': expected a number, got '1_0.5'"):  # as '1_000' for an int
        load_config(None, ["train.lr=1_0.5"])


def test_strings_that_look_like_numbers_survive_the_resolved_config_yaml(tmp_path):
    """safe_dump quotes by YAML 1.1's rules and left "1e3" and "0o17" plain, which this loader (YAML 1.2 numbers)
    read back as numbers: RUN/config.yaml did not load as --config. "1:30" must stay a string for YAML 1.1
    readers too."""
    # "2023-13-45" and "!!int x" raise ValueError, not YAMLError, when the dumper tries them as plain scalars
    names = ["1e3", "0o17", "1:30", "010", "true", "null", "~", "plain", "a: b", "-", "1.5", "2023-13-45", "!!int x",
             "2020-02-30"]
    cfg = load_config(None, [f"eval.davis.sequences={json.dumps(names)}"])
    assert cfg.eval.davis.sequences == names
    path = write_resolved(cfg, tmp_path)
    assert load_config(path) == cfg
    assert yaml.safe_load(path.read_text())["config"]["eval"]["davis"]["sequences"] == names


def test_flow_methods_and_cub_classes_are_checked_at_load():
    # a misspelt method failed only when the flow evaluation started: under vidssl pretrain, after mining and
    # training, and reported as bad data
    with pytest.raises(ConfigError, match="'eval.flow.classical': must be a list of zero, farneback"):
        load_config(None, ["eval.flow.classical=[farnback]"])
    with pytest.raises(ConfigError, match="'eval.retrieval.cub_classes': must be .* <= 200"):
        load_config(None, ["eval.retrieval.cub_classes=[101, 300]"])
    assert load_config(None, ["eval.retrieval.cub_classes=[1, 200]"])


def test_the_flow_methods_named_in_the_config_are_the_ones_that_exist():
    from vidssl.eval.config import CLASSICAL_FLOW
    from vidssl.eval.flow.methods import CLASSICAL

    assert CLASSICAL_FLOW == tuple(CLASSICAL)


@pytest.mark.parametrize("override", ["train.lr=.nan", "loss.margin=.nan", "train.budget_minutes=.nan",
                                      "train.lr=.inf", "mine.box_fraction=-.inf"])
def test_nan_and_infinity_are_refused_naming_the_key(override):
    # NaN passes range checks written as comparisons (nan < 0 and nan >= 0 are both False)
    with pytest.raises(ConfigError, match=f"'{override.split('=')[0]}': expected a finite number"):
        load_config(None, [override])


def test_a_config_built_in_code_is_held_to_the_loader_s_checks():
    from vidssl.losses import build_loss
    from vidssl.miners import MiningSchedule
    from vidssl.train import build_model
    from vidssl.train_config import LossConfig, MinerConfig, ModelConfig, TrainConfig

    cases = [(Config(model=ModelConfig(arch="resnet18", width=8)), "'model.width' applies to smallcnn only"),
             (Config(loss=LossConfig(margin=-1.0)), "'loss.margin': must be > 0"),
             (Config(miner=MinerConfig(hard_start=5.0)), r"'miner.hard_start': must be in \[0, 1\]"),
             (Config(train=TrainConfig(momentum=3.0)), r"'train.momentum': must be in \[0, 1\]"),
             (Config(train=TrainConfig(lr="0.1")), "'train.lr': expected a number"),
             (Config(train=TrainConfig(lr=float("nan"))), "'train.lr': expected a finite number")]
    for cfg, message in cases:
        with pytest.raises(ConfigError, match=message):
            cfg.validate()
    Config().validate()
    with pytest.raises(ConfigError, match="'model.arch': 'vgg' is not one of"):
        build_model(Config(model=ModelConfig(arch="vgg")))
    with pytest.raises(ConfigError, match="'loss.name': 'foo' is not one of"):
        build_loss(LossConfig(name="foo"))
    with pytest.raises(ConfigError, match="'miner.main': 'hardest' is not one of"):
        MiningSchedule(MinerConfig(main="hardest"), build_loss(LossConfig()), 10, 0)


def test_a_config_built_from_numpy_values_or_mappings_in_code():
    """numpy's integers were refused ("expected an integer, got np.int64(10)"); a mapping for a section passed
    validate() and then failed in train() as "replace() should be called on dataclass instances"."""
    import numpy as np

    from vidssl.config import check_section
    from vidssl.eval.config import DavisConfig
    from vidssl.train_config import TrainConfig

    cfg = Config(train=TrainConfig(steps=np.int64(10), lr=np.float32(0.5)), seed=np.uint8(3))
    cfg.validate()
    assert (type(cfg.train.steps), type(cfg.train.lr), type(cfg.seed)) == (int, float, int)
    assert (cfg.train.steps, cfg.train.lr, cfg.seed) == (10, 0.5, 3)
    assert yaml.safe_load(yaml.safe_dump(to_dict(cfg)))["train"]["steps"] == 10  # numpy scalars do not dump
    with pytest.raises(ConfigError, match="'train.lr': expected a finite number"):
        Config(train=TrainConfig(lr=np.float32("nan"))).validate()
    with pytest.raises(ConfigError, match="'train.steps': expected an integer"):
        Config(train=TrainConfig(steps=np.float64(10))).validate()
    with pytest.raises(ConfigError, match=r"section 'train': expected TrainConfig, got dict: build it as "
                                          r"TrainConfig\(...\), or a whole config from a mapping with "
                                          r"vidssl.config.from_dict"):
        Config(train={"lr": 0.1}).validate()
    from vidssl.train import train

    with pytest.raises(ConfigError, match=r"section 'train': expected TrainConfig, got dict"):
        train(Path("no pairs"), Path("no run"), Config(train={"lr": 0.1}))  # before any folder is looked at
    with pytest.raises(TypeError, match="expected the eval.davis section, a DavisConfig .cfg.eval.davis of a "
                                        "Config., got Config"):
        check_section(Config(), "eval.davis", DavisConfig)


def test_contrastive_with_a_violators_only_miner_needs_the_background_triplets():
    base = ["loss.name=contrastive", "miner.background_negatives=false", "loss.cycle_background=false"]
    with pytest.raises(ConfigError, match="'contrastive' with miner hard needs miner.background_negatives=true"):
        load_config(None, base)
    load_config(None, base + ["miner.warmup=random", "miner.main=random"])
    load_config(None, ["loss.name=contrastive"])  # background triplets on (the default): each pair keeps its pull


@pytest.mark.parametrize("overrides, message", [
    (["model.head=identity", "model.width=16"],
     "model.head 'identity' passes smallcnn's pooled features through, so model.embed_dim must be their size, 128"),
    (["model.arch=alexnet_wang2015", "data.patch_size=48"],
     "'data.patch_size': alexnet_wang2015 takes inputs of at least 63 pixels, got 48"),
    (["pretrain.mine_fraction=2"], "'pretrain.mine_fraction': must be in (0, 1]"),
    (["pretrain.train_fraction=-1"], "'pretrain.train_fraction': must be in (0, 1]"),
    (["pretrain.mine_workers=0"], "'pretrain.mine_workers': must be >= 1"),
    (["pretrain.budget_minutes=-1"], "'pretrain.budget_minutes': must be > 0"),
    (["eval.retrieval.device=cuda:x"], "'eval.retrieval.device': must be auto, cpu, cuda or cuda:N"),
    (["eval.davis.device=gpu"], "'eval.davis.device': must be auto, cpu, cuda or cuda:N"),
])
def test_models_that_cannot_be_built_and_bad_pipeline_shares_are_load_errors(overrides, message):
    """They crashed with a traceback after minutes of work (the model is built after mining), or not at all."""
    with pytest.raises(ConfigError) as e:
        load_config(None, overrides)
    assert message in str(e.value)
    assert load_config(None, ["model.head=identity", "model.embed_dim=256"]).model.embed_dim == 256  # 8 x 32


def test_the_torch_free_arch_facts_agree_with_the_models():
    from vidssl.models import ARCHS, build_backbone
    from vidssl.train_config import min_embed_side, pooled_dim

    for arch, cls in ARCHS.items():
        for width in (8, 32) if "width" in cls.model_config_keys else (32,):
            kwargs = {"width": width} if "width" in cls.model_config_keys else {}
            backbone = build_backbone(arch, input_size=227 if arch == "alexnet_wang2015" else 64, **kwargs)
            assert pooled_dim(arch, width) == backbone.out_dim, arch
        assert min_embed_side(arch) == cls.min_embed_side, arch
    with pytest.raises(ValueError, match="at least 63"):  # the side is the model's, not a guess
        build_backbone("alexnet_wang2015", input_size=62)
    build_backbone("alexnet_wang2015", input_size=63)


def test_a_box_that_cannot_fit_inside_the_edge_margins_is_refused_at_load():
    """box_fraction 0.9 with edge_margin 0.1 left no place for a box: every video was skipped as `no_start`."""
    with pytest.raises(ConfigError, match=r"'mine.box_fraction': plus twice mine.edge_margin \(0.1\) must be <= 1"):
        load_config(overrides=["mine.box_fraction=0.9", "mine.edge_margin=0.1"])
    assert load_config(overrides=["mine.box_fraction=0.9", "mine.edge_margin=0.05"]).mine.box_fraction == 0.9


def test_a_dotted_key_in_a_yaml_file_is_said_to_be_set_syntax_with_its_nested_form(tmp_path):
    """`train.lr: 0.01` in a file was "unknown config key 'train.lr'; did you mean 'train'?": a real key called
    unknown, and the suggested 'train' is the section it already names."""
    (tmp_path / "top.yaml").write_text("train.lr: 0.01\n")
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path / "top.yaml")
    assert str(e.value) == (f"config file {tmp_path / 'top.yaml'}: unknown config key 'train.lr'; 'train.lr' is --set "
                            "syntax (--set train.lr=...); in a YAML file write it nested:\n    train:\n      lr: 0.01")
    # inside its own section, and a section's dotted name: the nested form from the top, value and all
    (tmp_path / "inside.yaml").write_text("train: {train.steps: 5}\neval.davis: {topk: 3}\n")
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path / "inside.yaml")
    text = str(e.value)
    assert "unknown config key 'eval.davis'; 'eval.davis' is --set syntax" in text.split("\n")[0]
    assert "write it nested:\n    eval:\n      davis:\n        topk: 3\n" in text
    assert "unknown config key 'train.train.steps'; 'train.steps' is --set syntax" in text
    assert "write it nested:\n      train:\n        steps: 5" in text
    assert "did you mean" not in text
    # not expanded silently: the nested form loads, the dotted one does not
    nested = tmp_path / "nested.yaml"
    nested.write_text("train:\n  lr: 0.01\n")
    assert load_config(nested).train.lr == 0.01


def test_a_key_of_another_section_is_said_to_be_one():
    """`data.lr` listed data's keys only, and difflib (in the section) found nothing: the user was not told that lr
    is train's."""
    cases = {"data.lr=0.1": "'lr' is a key of train (train.lr) and eval.flow (eval.flow.lr)",
             "lr=0.01": "'lr' is a key of train (train.lr) and eval.flow (eval.flow.lr)",
             "train.patch_size=64": "'patch_size' is a key of mine (mine.patch_size) and data (data.patch_size)",
             "train.flip=true": "'flip' is a key of data (data.flip)",
             "data.seed=3": "'seed' is a key of the top level (seed), demo (demo.seed) and eval.retrieval "
                            "(eval.retrieval.seed)",
             "model.davis=1": "'davis' is a key of eval (eval.davis)"}
    for override, said in cases.items():
        with pytest.raises(ConfigError) as e:
            load_config(None, [override])
        key = override.split("=")[0]
        assert str(e.value).startswith(f"unknown config key '{key}'; {said}; valid keys in "), str(e.value)
    # naive reference: every section that has the leaf, read off the defaults' tree
    from vidssl.config import flat_config

    owners = sorted(k.rsplit(".", 1)[0] for k in flat_config(Config()) if k.endswith(".device"))
    with pytest.raises(ConfigError) as e:
        load_config(None, ["data.device=cpu"])
    assert sorted(o for o in owners if f"{o} ({o}.device)" in str(e.value)) == owners and len(owners) >= 3
    # a typo still gets its close key, beside the other section's key of that name when both exist
    with pytest.raises(ConfigError, match=r"unknown config key 'train.lrr'; did you mean 'train.lr'\?"):
        load_config(None, ["train.lrr=1"])


def test_every_unknown_key_is_reported_in_one_error(tmp_path):
    """A file with three typos named one; fixed, the next run named the next."""
    f = tmp_path / "typos.yaml"
    f.write_text("mdoel: {arch: smallcnn}\ntrain:\n  lrr: 0.1\n  stpes: 5\ndata:\n  crop_mn: 0.5\n")
    with pytest.raises(ConfigError) as e:
        load_config(f, ["eval.davis.topkk=3", "seed=2"])
    lines = str(e.value).split("\n")
    # the first line as a lone unknown key's (the top level's first, as before), then one line per key
    assert lines[0].startswith(f"config file {f}: unknown config key 'mdoel'; did you mean 'model'?; valid keys in ")
    assert [line.split("'")[1] for line in lines] == ["mdoel", "data.crop_mn", "train.lrr", "train.stpes",
                                                      "eval.davis.topkk"]
    assert "did you mean 'data.crop_min'?" in lines[1] and "did you mean 'train.lr'?" in lines[2]
    assert lines[4].startswith("  unknown config key 'eval.davis.topkk' (--set eval.davis.topkk=3); ")
    assert "did you mean 'eval.davis.topk'?" in lines[4]
    # from_dict (a config built from a mapping in code) reports them all too
    from vidssl.config import from_dict

    with pytest.raises(ConfigError) as e:
        from_dict(Config, {"trian": {}, "model": {"archh": "x"}, "export": {"nope": 1}})
    assert [line.split("'")[1] for line in str(e.value).split("\n")] == ["trian", "model.archh", "export.nope"]


def test_a_pair_dataset_s_mine_json_is_recognised(tmp_path):
    """PAIRS/mine.json as --config was called a resolved config.yaml with 'video_backend' beside 'config:', and
    putting it under 'config:' failed again: its config holds mine keys without the mine: section."""
    from dataclasses import asdict

    from tracking.config import MineConfig
    from tracking.dataset import settings

    pairs = tmp_path / "pairs"
    pairs.mkdir()
    (pairs / "mine.json").write_text(json.dumps(settings(MineConfig(), "auto")))  # as the miner writes it
    with pytest.raises(ConfigError) as e:
        load_config(pairs / "mine.json")
    assert str(e.value).startswith(f"config file {pairs / 'mine.json'} is a pair dataset's record of the settings "
                                   "it was mined with")
    assert "under 'mine:'" in str(e.value) and "under 'config:'" not in str(e.value)
    assert "PAIRS/config.yaml" in str(e.value)
    write_resolved(load_config(None, ["mine.box_fraction=0.4"]), pairs)  # what `vidssl mine` writes beside it
    with pytest.raises(ConfigError, match=f"use {pairs / 'config.yaml'} "):
        load_config(pairs / "mine.json")
    assert load_config(pairs / "config.yaml").mine.box_fraction == 0.4
    # from another version, a key renamed since: still a mining record (its backend beside its settings)
    record = settings(MineConfig(), "auto")
    record["config"]["renamed_since"] = record["config"].pop("box_fraction")
    (pairs / "mine.json").write_text(json.dumps(record))
    with pytest.raises(ConfigError, match="is a pair dataset's record of the settings it was mined with"):
        load_config(pairs / "mine.json")
    # the advice works: its settings under mine: load
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump({"mine": asdict(MineConfig(box_fraction=0.4))}))
    assert load_config(tmp_path / "mine.yaml").mine.box_fraction == 0.4


def test_a_tab_in_yaml_says_to_indent_with_spaces(tmp_path):
    (tmp_path / "tab.yaml").write_text("seed: 1\ntrain:\n\tlr: 0.1\n")
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path / "tab.yaml")
    assert str(e.value).startswith(f"config file {tmp_path / 'tab.yaml'} is not valid YAML at line 3, column 1: ")
    assert str(e.value).endswith("; indent with spaces, not tabs") and "\n" not in str(e.value)
    (tmp_path / "bad.yaml").write_text("train: [\n")  # other YAML errors are not blamed on tabs
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path / "bad.yaml")
    assert "tabs" not in str(e.value)


def test_the_paper_configs_pin_the_paper_s_values():
    """They left momentum, weight decay, the track length, the working size and the move threshold to the defaults:
    a change of default would have changed "the paper setting" without a word. So the values are read from the
    files as written (the defaults hold the same numbers today) and through the strict loader."""
    for path in sorted((REPO / "configs").glob("*.yaml")):
        load_config(path)  # every shipped file loads
    stated = {"paper_alexnet.yaml": {"train.lr": 0.001, "train.momentum": 0.9, "train.weight_decay": 5e-4,
                                     "train.steps": 400000, "miner.negatives_per_pair": 4, "miner.hard_start": 0.375,
                                     "miner.same_video_negatives": False, "miner.background_negatives": False,
                                     "loss.margin": 0.5, "model.embed_dim": 1024, "data.patch_size": 227},
              "mine_paper.yaml": {"mine.track_length": 30, "mine.working_side": 600, "mine.move_threshold": 0.5,
                                  "mine.box_fraction": 0.507, "mine.min_moving_fraction": 0.25,
                                  "mine.max_moving_fraction": 0.75}}
    from vidssl.config import flat_config, flat_dict

    for name, values in stated.items():
        written = flat_dict(yaml.safe_load((REPO / "configs" / name).read_text()))
        loaded = flat_config(load_config(REPO / "configs" / name))
        assert {k: written.get(k) for k in values} == values, name
        assert {k: loaded[k] for k in values} == values, name


def test_a_yaml_alias_bomb_gives_a_short_error_not_gigabytes(tmp_path):
    """Nine levels of YAML aliases: a few hundred bytes of file, 10**9 leaves when expanded. Loading shares the
    aliased lists; the error message's repr of the value expanded them (10**6 leaves took 300 MB, a few more
    levels ran out of memory)."""
    import time

    levels = ["&a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    levels += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]
    path = tmp_path / "bomb.yaml"
    path.write_text("eval:\n  davis:\n    topk: [" + ", ".join(levels) + "]\n")
    assert path.stat().st_size < 1000
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"config key 'eval.davis.topk': expected an integer, got \[\[1, 1, 1") as e:
        load_config(path)
    assert len(str(e.value)) < 1000 and time.perf_counter() - start < 30  # the old message would need terabytes, not seconds


def test_several_unknown_keys_name_each_set_and_each_section_s_keys_once():
    """Of `--set data.lr=0.1 --set train.x=1 --set train.y=2`, only the second and third lines named their --set, and
    train's valid keys were listed twice; a mapping's keys were shown sorted, not as given."""
    with pytest.raises(ConfigError) as e:
        load_config(None, ["data.lr=0.1", "train.x=1", "train.y=2"])
    lines = str(e.value).split("\n")
    assert [line.strip().split(";")[0] for line in lines] == [
        "unknown config key 'data.lr' (--set data.lr=0.1)", "unknown config key 'train.x' (--set train.x=1)",
        "unknown config key 'train.y' (--set train.y=2)"]
    assert [line.count("valid keys in 'train'") for line in lines] == [0, 1, 0]
    with pytest.raises(ConfigError, match=r"got \{'b': 1, 'a': 2\}"):
        load_config(None, ["train.milestones={b: 1, a: 2}"])


def test_an_unknown_key_after_a_dotted_one_still_lists_the_section_s_keys():
    """The dotted key's line lists no keys, yet counted its section as listed: the next unknown key of the section
    ended in a bare "; ". And a dotted key's value built in code that YAML cannot write (numpy's) crashed the
    message with a RepresenterError."""
    import numpy as np

    from vidssl.config import Config, from_dict

    with pytest.raises(ConfigError) as e:
        from_dict(Config, {"data": {"train.lr": 1, "zz": 2}})
    assert str(e.value).split("\n")[-1] == ("  unknown config key 'data.zz'; valid keys in 'data': box_view, crop_min, "
                                            "flip, num_workers, patch_size, prefetch")
    with pytest.raises(ConfigError, match=r"write it nested:\n    train:\n      lr: VALUE$"):
        from_dict(Config, {"train.lr": np.float64(0.1)})
    with pytest.raises(ConfigError) as e:  # two typos in one section: the second is pointed to the first's list
        from_dict(Config, {"data": {"zz": 1, "qq": 2}})
    assert str(e.value).split("\n")[1] == ("  unknown config key 'data.zz'; not a key of 'data' (its valid keys are "
                                           "listed above)")


@pytest.mark.parametrize("key", ["train.steps", "seed", "train.lr"])
def test_true_and_false_are_no_numbers(key):
    # YAML reads --set train.steps=true as True, which Python counts as the integer 1: one step, not an error
    for value in ("true", "false"):
        with pytest.raises(ConfigError, match=rf"'{key}': expected (an integer|a number), got {value}$"):
            load_config(None, [f"{key}={value}"])


def test_values_are_named_in_yaml_words(tmp_path):
    """Messages named Python's spelling of what the file held: `lr:` with no value "got None", `steps: true` "got
    True", a date "got datetime.date(2023, 1, 1)", and a quoted number gave no hint."""
    cases = [("train:\n  lr:\n", "'train.lr': expected a number, got null"),
             ("train:\n  lr: 2023-01-01\n", "'train.lr': expected a number, got 2023-01-01"),
             ("data:\n  flip: [true, null]\n", "'data.flip': expected true/false, got [true, null]"),
             ('train:\n  steps: "1200"\n', "'train.steps': expected an integer, got '1200'; write it unquoted: "
                                           "quoted, YAML reads it as a string"),
             ("train:\n  lr: ' 0.5'\n", "'train.lr': expected a number, got ' 0.5'; write it unquoted"),
             ("train:\n  lr: 'fast'\n", "'train.lr': expected a number, got 'fast'")]
    for text, said in cases:
        path = tmp_path / "c.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError) as e:
            load_config(path)
        assert said in str(e.value), (text, str(e.value))
        assert str(e.value).endswith("string") == ("unquoted" in said), str(e.value)


def test_flow_pairs_are_glob_patterns_checked_at_load():
    cfg = load_config(None, ["eval.flow.pairs=['training/clean/alley_1/*', '*/ambush_2/*']"])
    assert cfg.eval.flow.pairs == ["training/clean/alley_1/*", "*/ambush_2/*"]
    assert load_config(None, []).eval.flow.pairs == []  # every pair, as before the key
    with pytest.raises(ConfigError, match=r"'eval.flow.pairs': must be a list of non-empty glob .*got \['a', ' '\]"):
        load_config(None, ["eval.flow.pairs=['a', ' ']"])


@pytest.mark.parametrize("override, problem, example, meant", [
    # the glob configs/default.yaml suggests, unquoted: `*` starts a YAML alias
    ("eval.flow.pairs=[*/alley_1/*]", "expected alphabetic or numeric character, but found '/' (while scanning "
     "an alias); YAML reads a leading * (*/alley_1/*) as syntax", "--set \"eval.flow.pairs=['*/alley_1/*']\"",
     ["*/alley_1/*"]),
    ("eval.flow.pairs=[training/*, */ambush_2/*]", "(while scanning an alias)",
     "--set \"eval.flow.pairs=['training/*', '*/ambush_2/*']\"", ["training/*", "*/ambush_2/*"]),
    ("eval.flow.pairs=['a, b', *c]", "found undefined alias 'c'", "--set \"eval.flow.pairs=['a, b', '*c']\"",
     ["a, b", "*c"]),
    ("model.arch=@x", "found character '@' that cannot start any token", "--set \"model.arch='@x'\"", "@x"),
    ("model.arch=it's: a: b", "mapping values are not allowed here; YAML reads ': ' as the separator",
     "--set \"model.arch='it''s: a: b'\"", "it's: a: b"),
    # YAML's own quotes inside the shell's single quotes, where its double quotes would expand $ or `
    ("model.arch=$x: a: b", "mapping values are not allowed here", "--set 'model.arch=\"$x: a: b\"'",
     "$x: a: b"),
    ("model.arch=!foo bar", "could not determine a constructor for the tag '!foo'", "--set 'model.arch=\"!foo bar\"'",
     "!foo bar"),
])
def test_a_set_value_yaml_cannot_read_says_why_and_how_to_quote_it(override, problem, example, meant):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    message = str(e.value)
    assert message.startswith(f"malformed override '{override}': value is not valid YAML: ") and "\n" not in message
    assert problem in message and message.endswith(f": quote it, e.g. {example}")
    # the example is the fix: it reads as the text meant (its shell quotes removed as the shell would)
    assert parse_override(shlex.split(example)[1])[1] == meant


def test_a_set_value_yaml_cannot_read_with_no_syntax_to_blame_gets_yaml_s_problem_alone():
    with pytest.raises(ConfigError) as e:
        load_config(None, ["eval.flow.pairs=[a,"])
    assert str(e.value).endswith("value is not valid YAML: expected the node content, but found '<stream end>' "
                                 "(while parsing a flow node)")
    with pytest.raises(ConfigError, match=r"^malformed override 'model.arch=2023-13-45': value is not valid YAML: "
                       r"month must be in 1\.\.12$"):  # a date YAML cannot build: was a ValueError's traceback
        load_config(None, ["model.arch=2023-13-45"])


@pytest.mark.parametrize("override, dropped, example, meant", [
    # loaded as resnet18 before: the text after ' #' was dropped without a word
    ("model.arch=resnet18 # x", "'# x' as a comment", "--set \"model.arch='resnet18 # x'\"", "resnet18 # x"),
    ("eval.davis.sequences=[&b bear, dog]", "'&b' as an anchor",  # loaded as [bear, dog] before
     "--set \"eval.davis.sequences=['&b bear', 'dog']\"", ["&b bear", "dog"]),
])
def test_set_value_text_yaml_would_drop_is_refused_not_dropped(override, dropped, example, meant):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert str(e.value) == (f"malformed override '{override}': YAML reads {dropped} and drops it; if it is part of "
                            f"the value, quote the value, e.g. {example}, else leave it out")
    assert parse_override(shlex.split(example)[1])[1] == meant
    # a # that is no comment stays part of the value: inside quotes, or not after a space
    assert [parse_override(o)[1] for o in ("model.arch='a # b'", "model.arch=a#b")] == ["a # b", "a#b"]


def test_a_quoted_value_with_a_comment_after_it_gets_no_example_that_repeats_it():
    # 'resnet18' # note was told --set "model.arch='resnet18' # note": the very value refused
    for override in ("model.arch='resnet18' # note", 'model.arch="a" # b'):
        with pytest.raises(ConfigError) as e:
            load_config(None, [override])
        assert str(e.value).endswith("as a comment and drops it; if it is part of the value, quote the value, else "
                                     "leave it out"), str(e.value)
    with pytest.raises(ConfigError, match=re.escape("; YAML reads ' #' as the start of a comment: quote it")):
        load_config(None, ["eval.davis.sequences={k: v # c}"])  # the ': ' of a mapping is no mistake


def test_keys_that_take_null_say_null_is_the_spelling():
    cases = [
        ("train.budget_minutes=None",
         "'train.budget_minutes': expected a number or null, got 'None'; write null (YAML), not None"),
        ("train.dist_timeout_minutes=none",
         "'train.dist_timeout_minutes': expected a number or null, got 'none'; write null (YAML), not none"),
        ("train.budget_minutes='null'", "'train.budget_minutes': expected a number or null, got 'null'; write null "
                                        "unquoted: quoted, YAML reads it as a string"),
        ("train.budget_minutes=fast", "'train.budget_minutes': expected a number or null, got 'fast'"),
        # a choice check names the strings; null, the key's default, is a choice too
        ("loss.distance=None", "'loss.distance': 'None' is not one of ['cosine', 'sqeuclidean', 'euclidean'] or "
                               "null; write null (YAML), not None"),
        ("loss.distance=cos", "'loss.distance': 'cos' is not one of ['cosine', 'sqeuclidean', 'euclidean'] or null"),
        ("loss.distance=[cosine]", "'loss.distance': expected a string or null, got ['cosine']"),
        ("train.lr=None", "'train.lr': expected a number, got 'None'"),  # null is no value of lr: not suggested
    ]
    for override, message in cases:
        with pytest.raises(ConfigError) as e:
            load_config(None, [override])
        assert str(e.value) == f"config key {message}"
    cfg = load_config(None, ["train.budget_minutes=null", "loss.distance=~"])
    assert cfg.train.budget_minutes is None and cfg.loss.distance is None


def test_an_optional_choice_of_a_literal_lists_null():
    @dataclasses.dataclass
    class Section:
        mode: typing.Literal["fast", "slow"] | None = None

    assert from_dict(Section, {"mode": None}).mode is None and from_dict(Section, {"mode": "slow"}).mode == "slow"
    with pytest.raises(ConfigError) as e:
        from_dict(Section, {"mode": "None"}, "s")
    assert str(e.value) == ("config key 's.mode': expected one of ['fast', 'slow'] or null, got 'None'; "
                            "write null (YAML), not None")


def test_a_config_file_value_yaml_cannot_construct_is_one_line_naming_the_file(tmp_path):
    """A date no calendar has crashed load_config with a bare ValueError ("month must be in 1..12")."""
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  arch: 2023-13-45\n")
    with pytest.raises(ConfigError, match=re.escape(f"config file {path} is not valid YAML: month must be in 1..12")):
        load_config(path)


@pytest.mark.parametrize("override, key", [
    ("mine.time_range=[false, true]", "mine.time_range[0]"),          # bools passed the range check as 0 and 1
    ("eval.flow.synthetic_size=[128.5, 160]", "eval.flow.synthetic_size[0]"),
    ("eval.retrieval.cub_classes=[true, 200]", "eval.retrieval.cub_classes[0]"),
    ("eval.flow.pairs=[1, 2]", "eval.flow.pairs[0]"),
])
def test_every_item_of_a_list_key_is_type_checked(override, key):
    """Kills C7 (config.py _coerce: list items returned unchecked, `return list(value)`): [false, true] passed
    mine.time_range's range check as [0, 1]."""
    import re

    with pytest.raises(ConfigError, match=re.escape(f"'{key}'")):
        load_config(None, [override])


def test_a_set_value_may_hold_an_equals_sign():
    """Kills C10 (parse_override: rsplit("=", 1) instead of split): a glob over pair names holding '='."""
    assert parse_override("eval.flow.pairs=['a=b*']") == (["eval", "flow", "pairs"], ["a=b*"])
    assert load_config(None, ["eval.flow.pairs=['a=b*']"]).eval.flow.pairs == ["a=b*"]


@pytest.mark.parametrize("override, want", [
    ("pretrain.train_fraction=0", r"'pretrain.train_fraction': must be in \(0, 1\]"),
    ("pretrain.held_out_tail=0.6", r"'pretrain.held_out_tail': must be in \[0, 0.5\]"),
    ("pretrain.held_out_tail=-0.1", r"'pretrain.held_out_tail': must be in \[0, 0.5\]"),
    ("pretrain.held_out_patch_context=0.9", r"'pretrain.held_out_patch_context': must be in \[1, 4\]"),
])
def test_the_pipeline_shares_bounds_are_load_errors(override, want):
    """Kills C11 (train_fraction 0 accepted: training would get the 1-second floor) and C13 (held_out_tail up to 1
    accepted: the training part's time_range [first, first] is empty)."""
    with pytest.raises(ConfigError, match=want):
        load_config(None, [override])
    load_config(None, ["pretrain.train_fraction=1", "pretrain.held_out_tail=0.5"])  # the bounds themselves load


def test_config_files_are_read_as_utf8_under_any_locale(tmp_path):
    """vidssl writes UTF-8; read in the locale's encoding, a valid file with a non-ASCII comment was "not UTF-8 text"
    under a C locale with Python's UTF-8 mode off."""
    import subprocess
    import sys

    path = tmp_path / "c.yaml"
    path.write_bytes("seed: 7  # \u00d7 2, caf\u00e9\n".encode())
    code = ("import locale, sys; from vidssl.config import load_config; "
            "assert locale.getpreferredencoding(False).lower() not in ('utf-8', 'utf8'), locale.getpreferredencoding();"
            " print(load_config(sys.argv[1]).seed)")
    env = {**os.environ, "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0", "LC_ALL": "C", "LANG": "C"}
    done = subprocess.run([sys.executable, "-c", code, str(path)], env=env, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout == "7\n", done.stderr


def test_keys_holding_characters_that_do_not_show_are_named(tmp_path):
    """A byte-order mark mid-file (files joined with cat), a zero-width space or non-breaking spaces (pasted from a
    web page) made "unknown config key 'model'; did you mean 'model'?", the character invisible in the terminal."""
    cases = [(b"train:\n  lr: 0.1\n\xef\xbb\xbfmodel:\n  arch: resnet18\n",
              "unknown config key '\\ufeffmodel' (it holds U+FEFF (ZERO WIDTH NO-BREAK SPACE), which does not show: "
              "retype it); did you mean 'model'?"),
             (b"train:\n  lr\xe2\x80\x8b: 0.1\n",
              "unknown config key 'train.lr\\u200b' (it holds U+200B (ZERO WIDTH SPACE), which does not show: retype "
              "it); did you mean 'train.lr'?"),
             (b"train:\n\xc2\xa0\xc2\xa0lr: 0.1\n",
              "unknown config key '\\xa0\\xa0lr' (it holds U+00A0 (NO-BREAK SPACE), which does not show: retype it)"),
             (b"train:\n  lr: 0.1\x07\n", "is not valid YAML at line 2, column 10: character U+0007 (a control "
                                          "character) is not allowed; remove it")]
    for text, said in cases:
        path = tmp_path / "c.yaml"
        path.write_bytes(text)
        with pytest.raises(ConfigError) as e:
            load_config(path)
        assert said in str(e.value), str(e.value)
    with pytest.raises(ConfigError) as e:
        load_config(None, ["train.l=0.1"])
    assert "unknown config key 'train.l'; did you mean" in str(e.value) and "show" not in str(e.value)  # a plain typo


def test_too_few_motion_points_to_fit_the_camera_or_start_a_track_are_refused():
    """Accepted down to 1, they skipped every video, blamed on its content ("all_motion", "no_start")."""
    with pytest.raises(ConfigError, match=r"'mine.motion_points': must be >= 20: the camera's motion is fitted to at "
                                          r"least 20 point matches, got 19$"):
        load_config(None, ["mine.motion_points=19"])
    # a box of 0.33 of a square frame's side holds 0.1089 of its points: 60 give 6.5, under min_box_points 8
    with pytest.raises(ConfigError, match=r"'mine.motion_points': gives a box of mine.box_fraction=0.33 about 6.5 "
                                          r"points at most, under mine.min_box_points=8: no track could start; use "
                                          r"at least 74, got 60$"):
        load_config(None, ["mine.motion_points=60", "mine.box_fraction=0.33"])
    assert load_config(None, ["mine.motion_points=74", "mine.box_fraction=0.33"]).mine.motion_points == 74
    assert load_config(None, ["mine.motion_points=32"]).mine.motion_points == 32  # 0.25 x 32 = 8 at the default 0.5
    with pytest.raises(ConfigError, match="use at least 32, got 31$"):
        load_config(None, ["mine.motion_points=31"])


def test_stored_patches_too_small_to_learn_from_are_refused():
    with pytest.raises(ConfigError, match=r"config key 'mine.patch_size': must be >= 16 .*, got 7$"):
        load_config(None, ["mine.patch_size=7"])
    assert load_config(None, ["mine.patch_size=16"]).mine.patch_size == 16


def test_a_config_file_that_is_not_utf8_is_named_with_the_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes("train:\n  lr: 0.1\n  # r\u00e9glage\n".encode("latin-1"))
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value) == f"config file {path} is not UTF-8 text: byte 0xe9 at line 3; save it as UTF-8"


def test_steps_and_epochs_both_set_are_refused_not_the_epochs_ignored():
    """train.epochs counts only with train.steps 0: `--set train.epochs=1` beside the default 1200 steps trained
    1200 steps (340 epochs' worth on a small dataset) without a word."""
    with pytest.raises(ConfigError, match=r"'train.steps' \(1200\) and 'train.epochs' \(1\) are both set, and epochs "
                                          r"count only when steps is 0: set train.steps=0 to train 1 epoch\(s\), or "
                                          r"train.epochs=0 to train 1200 steps"):
        load_config(None, ["train.epochs=1"])
    with pytest.raises(ConfigError, match="'train.steps' and 'train.epochs' are both 0"):
        load_config(None, ["train.steps=0"])
    assert load_config(None, ["train.steps=0", "train.epochs=1.5"]).train.epochs == 1.5
    assert load_config(None, ["train.steps=30"]).train.steps == 30
