"""`vidssl export`: Export backbone weights that load in one line (torchvision key names)."""
from __future__ import annotations

NAME = "export"
HELP = "Export backbone weights that load in one line (torchvision key names)"


def add_arguments(parser) -> None:
    parser.add_argument("run", metavar="RUN", help="training run folder (holds checkpoint.pt), or a `vidssl pretrain` run folder (its train/)")
    parser.add_argument("--out", required=True, metavar="FILE",
                        help="weights file, e.g. backbone.pt; its .safetensors and model card go beside it "
                             "(model_card.json for backbone.pt, X.model_card.json for X.pt)")


def run(args, cfg) -> int:
    import json
    from pathlib import Path

    from vidssl.export import card_path, export_backbone
    from vidssl.train import CHECKPOINT

    path = export_backbone(args.run, args.out, safetensors=cfg.export.safetensors)
    card = json.loads(card_path(path).read_text())
    t = card["training"]
    # the command that finishes it: a pretrain run folder (checkpoint in its train/) continues under `vidssl pretrain`
    resume = "vidssl train" if (Path(args.run) / CHECKPOINT).is_file() else "vidssl pretrain"
    note = "" if t["complete"] else f" (run incomplete: rerun the same `{resume}` into it to finish)"
    files = ", ".join(card["files"] + [card_path(path).name])
    print(f"export: {card['arch']} backbone after {t['steps']}/{t['total_steps']} steps{note} -> {files} in "
          f"{path.parent}; load with vidssl.load_backbone('{path}')")
    return 0
