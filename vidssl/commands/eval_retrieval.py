"""`vidssl eval retrieval`: Recall@K, MAP@R, R-precision and NMI of exported backbones against baselines."""
from __future__ import annotations

from vidssl.commands.eval_models import (add_model_arguments, check_out_writable, models_from_args,
                                         resolved_into_output, with_device_flag)

NAME = "retrieval"
HELP = "Retrieval benchmark: Recall@K, MAP@R, R-precision, NMI against baselines"
# model: the random-init row's, without --weights; video, mine: held-out tracks
READS = ("seed", "model.arch", "model.width", "video", "mine", "eval.retrieval", "eval.davis.subset")
SET_EXAMPLE = "eval.retrieval.batch_size=32"  # the --set example of its --help: a key it reads


def add_arguments(parser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--data", metavar="DIR", required=True,
                        help="labels.csv or <class>/*.jpg folder, DAVIS folder, pair dataset from `vidssl mine`, "
                             "or a folder of videos (mined into OUT/pairs first)")
    parser.add_argument("--out", metavar="EVAL", required=True,
                        help="output folder: metrics.json, metrics.md, grid_<model>.png")
    parser.add_argument("--kind", choices=("auto", "images", "davis", "tracks"), default="auto",
                        help="data layout (default: detected from the folder)")


def run(args, cfg) -> int:
    from pathlib import Path

    from vidssl.eval.retrieval import evaluate_retrieval
    from vidssl.eval.retrieval_data import detect_kind

    cfg = with_device_flag(cfg, NAME, args.device)
    check_out_writable(args.out, NAME)  # before the models and data: a failed write came after all the work
    models = models_from_args(args, cfg)
    out = Path(args.out)
    data, kind = Path(args.data), args.kind
    videos = kind in ("auto", "tracks") and detect_kind(data) == "videos"
    if videos:  # before anything is written (config.yaml too)
        from vidssl.video import refuse_out_among_videos

        refuse_out_among_videos(out, data, "the evaluation (its pairs, metrics and figures)")
    with resolved_into_output(cfg, out):
        if videos:
            from tracking import mine_folder

            # instance retrieval on plain videos: the tracking stage's pairs, resumable in OUT/pairs
            data, kind = out / "pairs", "tracks"
            mine_folder(args.data, data, cfg.mine, video_backend=cfg.video.backend, progress=not args.quiet)
        result = evaluate_retrieval(models, data, out, cfg.eval.retrieval, kind=kind, progress=not args.quiet,
                                    davis_subset=cfg.eval.davis.subset)
    print((out / "metrics.md").read_text(encoding="utf-8"), end="")
    print(f"wrote {out / 'metrics.json'}, {out / 'metrics.md'} and {len(result['grids'])} neighbour grid(s)")
    return 0
