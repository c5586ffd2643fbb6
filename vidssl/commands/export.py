"""`vidssl export`: Export backbone weights that load in one line (torchvision key names)."""
from __future__ import annotations

NAME = "export"
HELP = "Export backbone weights that load in one line (torchvision key names)"
READS = ("export",)
SET_EXAMPLE = "export.safetensors=false"  # the --set example of its --help: a key it reads


def add_arguments(parser) -> None:
    parser.add_argument("run", metavar="RUN",
                        help="training run folder (holds checkpoint.pt), or a `vidssl pretrain` folder (its train/)")
    parser.add_argument("--out", required=True, metavar="FILE",
                        help="weights file, e.g. backbone.pt; its .safetensors and model card go beside it "
                             "(model_card.json for backbone.pt, X.model_card.json for X.pt)")


def run(args, cfg) -> int:
    import json
    from pathlib import Path

    from vidssl.export import card_path, export_backbone

    path = export_backbone(args.run, args.out, safetensors=cfg.export.safetensors)
    card = json.loads(card_path(path).read_text(encoding="utf-8"))
    t = card["training"]
    note = "" if t["complete"] else f" (run incomplete: {_how_to_finish(Path(args.run))})"
    files = ", ".join(card["files"] + [card_path(path).name])
    print(f"export: {card['arch']} backbone after {t['steps']}/{t['total_steps']} steps{note} -> {files} in "
          f"{path.parent}; load with vidssl.load_backbone({str(path)!r})")
    return 0


def _how_to_finish(run) -> str:
    """What finishes the training of ``run``: `vidssl train` continues its checkpoint; a pretrain folder continues
    an interrupted train stage, but takes a completed one (stopped at the pretrain budget) as final."""
    from vidssl.pipeline import Stages
    from vidssl.train import CHECKPOINT

    if (run / CHECKPOINT).is_file():
        return "rerun the same `vidssl train` into it to finish"
    if Stages(run).done("train") is not None:
        return ("`vidssl pretrain` stopped its training at the budget; for the whole schedule, run it into a new "
                "--out with a larger --budget-minutes")
    return "its training was interrupted: rerun the same `vidssl pretrain` into it to finish"
