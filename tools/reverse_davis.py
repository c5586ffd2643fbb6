"""Write a time-reversed copy of a DAVIS-layout folder: every sequence (of its `val` ImageSets list when it has one,
or `--subset`'s; see vidssl.eval.davis_data.list_sequences) played backwards, so label propagation
starts from its *last* annotated frame. A diagnostic beside the DAVIS protocol, not part of it: the same frames
give a second propagation task (another starting mask, the motion reversed), which tells a direction-specific
advantage (e.g. a colour cue that the first frame happens to show well) from a general one.

    python tools/reverse_davis.py $VIDSSL_DATA/davis runs/davis_reversed
    vidssl eval davis --weights RUN/backbone.pt --data runs/davis_reversed --out RUN/eval/davis_reversed

Frames and masks are copied (renumbered 00000, 00001, ...) into ``<sequence>_reversed`` folders.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from vidssl.errors import VidsslError
from vidssl.eval.davis_data import IMAGE_EXTS, RESOLUTION, _files, _natural_key, list_sequences


def reverse_davis(src: Path, dst: Path, subset: str = "val") -> list[str]:
    """Copy every sequence of ``src`` (of its ``subset`` ImageSets list when it has one) into ``dst`` in reverse frame
    order; returns the new sequence names. ``dst`` must not hold a copy already: frames of an earlier, longer copy
    left in it would be read after the new ones."""
    if dst.exists() and not dst.is_dir():
        raise VidsslError(f"{dst}: a file; name a new folder for the reversed copy")
    if dst.exists() and any(dst.iterdir()):
        raise VidsslError(f"{dst}: not empty; write the reversed copy into a new folder (or delete this one)")
    sequences = list_sequences(src, subset)
    for seq in sequences:  # all before any is written: a rerun after the fix would meet "not empty"
        frames_in = src / "JPEGImages" / RESOLUTION / seq
        if not frames_in.is_dir():
            raise VidsslError(f"{frames_in}: no such folder ({seq} is listed in {src / 'ImageSets'}); remove it "
                              "from the list or add its frames")
    names = []
    for seq in sequences:
        frames_in, masks_in = src / "JPEGImages" / RESOLUTION / seq, src / "Annotations" / RESOLUTION / seq
        # in the order the loader reads them (numbers as numbers, hidden files such as ._00000.jpg left out)
        found = _files(frames_in, IMAGE_EXTS)
        frames = [found[stem] for stem in sorted(found, key=_natural_key)]
        masks = _files(masks_in, (".png",)) if masks_in.is_dir() else {}  # as the loader finds them (.PNG too)
        new = f"{seq}_reversed"
        frames_out, masks_out = dst / "JPEGImages" / RESOLUTION / new, dst / "Annotations" / RESOLUTION / new
        frames_out.mkdir(parents=True, exist_ok=True)
        masks_out.mkdir(parents=True, exist_ok=True)
        for i, frame in enumerate(reversed(frames)):
            shutil.copyfile(frame, frames_out / f"{i:05d}{frame.suffix}")
            mask = masks.get(frame.stem)
            if mask is not None:  # a frame without a mask is reported by the evaluation, naming it
                shutil.copyfile(mask, masks_out / f"{i:05d}.png")
        names.append(new)
    (dst / "ImageSets").mkdir(parents=True, exist_ok=True)
    (dst / "ImageSets" / "sequences.txt").write_text("".join(f"{n}\n" for n in names))
    return names


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path, help="DAVIS-layout folder (JPEGImages/480p, Annotations/480p)")
    ap.add_argument("dst", type=Path, help="output folder (created; must not hold anything yet)")
    ap.add_argument("--subset", default="val", help="the ImageSets list to reverse when src has one (default val)")
    args = ap.parse_args()
    if args.dst.resolve() == args.src.resolve():
        sys.exit("reverse_davis: dst must differ from src")
    try:
        names = reverse_davis(args.src, args.dst, args.subset)
    except VidsslError as e:
        sys.exit(f"reverse_davis: {e}")
    print(f"wrote {len(names)} reversed sequence(s) into {args.dst}: {', '.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
