"""`torchrun --nproc_per_node=2` on CPU (gloo): both ranks end with the same weights, and only rank 0 writes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from train_utils import synthetic_pairs
from vidssl.train import CHECKPOINT, build_model, load_checkpoint, parameter_digest

WORKER = textwrap.dedent("""
    import json, os, sys
    from vidssl.config import load_config
    from vidssl.train import train
    pairs, run, out = sys.argv[1:4]
    stats = train(pairs, run, load_config(None, sys.argv[4:]), progress=False)
    with open(os.path.join(out, f"rank{os.environ['RANK']}.json"), "w") as fh:
        json.dump(stats, fh)
""")
SETTINGS = ["data.patch_size=32", "data.num_workers=0", "model.width=8", "model.embed_dim=32", "train.batch_pairs=8",
            "train.steps=12", "train.budget_minutes=null", "train.checkpoint_every=100", "train.log_every=4",
            "train.image_every=0", "train.threads=1", "train.device=cpu",
            # the synthetic pairs have no backgrounds
            "miner.background_negatives=false", "loss.cycle_background=false"]


@pytest.mark.slow
def test_torchrun_two_cpu_processes_identical_weights(tmp_path):
    from vidssl.config import load_config

    pairs = synthetic_pairs(tmp_path / "pairs", num_videos=4, tracks_per_video=12, size=40)
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                    str(script), str(pairs), str(tmp_path / "run"), str(tmp_path), *SETTINGS],
                   check=True, env=env, timeout=600)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["world_size"] == r1["world_size"] == 2 and r0["step"] == r1["step"] == 12
    assert r0["weights_sha256"] == r1["weights_sha256"]
    # rank 0's checkpoint holds those weights, and they moved away from the initialisation
    model = build_model(load_config(None, SETTINGS))
    initial = parameter_digest(model)
    model.load_state_dict(load_checkpoint(tmp_path / "run" / CHECKPOINT)["model"])
    assert parameter_digest(model) == r0["weights_sha256"] != initial
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert steps == [4, 8, 12]  # one writer
