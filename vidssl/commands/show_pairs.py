"""`vidssl show-pairs`: Draw an image grid of mined pairs (and tracked boxes) to judge pair quality."""
from __future__ import annotations

NAME = "show-pairs"
HELP = "Draw an image grid of mined pairs (and tracked boxes) to judge pair quality"
READS = ("seed",)  # which pairs are drawn
SET_EXAMPLE = "seed=1"  # the --set example of its --help: a key it reads


def add_arguments(parser) -> None:
    parser.add_argument("pairs", metavar="PAIRS", help="pair dataset directory written by vidssl mine")
    parser.add_argument("--out", metavar="IMAGE", required=True,
                        help="image to write, encoded as its suffix says: .png, .jpg or .jpeg")
    parser.add_argument("--n", type=int, default=64,
                        help="random pairs shown (default 64; with --tracks: tracks, at most 8)")
    parser.add_argument("--tracks", action="store_true",
                        help="instead draw the tracked box over source frames for a few tracks (needs the videos)")


def run(args, cfg) -> int:
    import os

    from tracking.show import image_format, pair_grid, save_image, track_strips
    from vidssl.commands import check_out_folder
    from vidssl.errors import UsageError, VidsslError

    if args.n < 1:
        raise UsageError(f"--n must be >= 1, got {args.n}")
    if os.path.isdir(args.out):  # said "Is a directory" after the grid was drawn
        raise UsageError(f"--out {args.out}: a folder, not an image file; choose another --out (an image in it: "
                         f"--out {os.path.join(args.out, 'pairs_grid.png')})")
    try:
        image_format(args.out)  # a suffix we cannot write fails before the grid is drawn
    except VidsslError as e:  # an argument of this command: exit 2, as export's --out of a suffix it cannot write
        raise UsageError(f"--out {e}") from None
    check_out_folder(os.path.dirname(args.out) or ".", given=args.out)  # under a file: mkdir said "File exists"
    if args.tracks:
        image = track_strips(args.pairs, n=min(args.n, 8), seed=cfg.seed)  # the backend the pairs were mined with
    else:
        image = pair_grid(args.pairs, n=args.n, seed=cfg.seed)
    save_image(args.out, image)
    print(f"wrote {args.out} ({image.shape[1]}x{image.shape[0]})")
    return 0
