"""Reading DAVIS-layout video object segmentation data.

Layout (DAVIS 2016 and 2017 alike)::

    ROOT/JPEGImages/480p/<sequence>/00000.jpg ...
    ROOT/Annotations/480p/<sequence>/00000.png ...
    ROOT/ImageSets/*.txt            (optional: one sequence name per line)

Masks come in two encodings, told apart by the PNG mode:

- DAVIS-2016 binary masks: greyscale (mode ``L`` or ``1``), values {0, 255}; ``value > 127`` is object 1.
- DAVIS-2017 palette masks (mode ``P``): the palette index is the object id (0 background, 1..K objects).
  Index 255 ("void" in some DAVIS-derived sets) is read as background, as the official DAVIS-2017 evaluation does.

Frames are returned at the annotation resolution, or downscaled so the long side is at most ``max_side``; masks
are resized with nearest-neighbour so object ids are never blended.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vidssl.errors import VidsslError
from vidssl.eval.config import is_sequence_name

log = logging.getLogger(__name__)
RESOLUTION = "480p"
VOID = 255  # palette index the official DAVIS-2017 evaluation reads as background
IMAGE_EXTS = (".jpg", ".jpeg", ".png")


class DavisDataError(VidsslError):
    """A DAVIS folder, frame or mask that cannot be used; the message names the file and the fix."""


class FirstFrameOnly(DavisDataError):
    """A sequence whose only mask is the first frame's, as in DAVIS test-dev and test-challenge."""


@dataclass
class DavisSequence:
    """One annotated sequence.

    ``frames``: T arrays (H, W, 3) uint8 RGB. ``masks``: T arrays (H, W) uint8 label maps, 0 background,
    1..K objects. ``num_objects`` = K, the largest id in the first frame (the label maps' channel count is K + 1).
    ``object_ids``: the ids present in the first frame, the objects propagated and scored; DAVIS numbers its objects
    1..K, but other data may skip ids, and an id absent from the first frame would otherwise be scored as a perfect
    empty object (as the official evaluation does). Objects that only appear later are neither propagated nor
    scored. ``frame_names``: file stems, e.g. ``"00000"``.
    """

    name: str
    frames: list[np.ndarray]
    masks: list[np.ndarray]
    num_objects: int
    frame_names: list[str] = field(default_factory=list)

    @property
    def object_ids(self) -> tuple[int, ...]:
        return tuple(int(i) for i in np.unique(self.masks[0]) if i != 0)

    @property
    def frame_times(self) -> list[int]:
        """The frame numbers of the file names (``"00005"`` -> 5), or the positions 0..T-1 where the names are not
        all numbers: a sequence keeping every 5th frame is 0, 5, 10, ... apart, not 0, 1, 2."""
        return frame_numbers(self.frame_names) or list(range(len(self.frames)))

    def __len__(self) -> int:
        return len(self.frames)


def _layout_dirs(root: Path) -> tuple[Path, Path]:
    return root / "JPEGImages" / RESOLUTION, root / "Annotations" / RESOLUTION


def is_davis_root(root: Path) -> bool:
    """A DAVIS folder by its two top folders (at whatever resolution): ``JPEGImages/`` beside ``Annotations/``."""
    return (root / "JPEGImages").is_dir() and (root / "Annotations").is_dir()


def check_layout(root: str | os.PathLike) -> None:
    """Raise :class:`DavisDataError` for a folder without ``JPEGImages/480p`` that is a DAVIS download at
    another resolution, or that holds a DAVIS folder one level down or lies inside one (``--data`` given a level
    off); any other folder is left to the callers' own checks."""
    root = Path(root)
    images, _ = _layout_dirs(root)
    if images.is_dir() or not root.is_dir():
        return
    other = [d for d in ("Full-Resolution", "1080p") if (root / "JPEGImages" / d).is_dir()]
    if other:  # else every listed sequence was a "frames folder not found" warning, and the error never said why
        raise DavisDataError(f"{root / 'JPEGImages'}: has {other[0]}/ but no {RESOLUTION}/; vidssl reads the "
                             f"{RESOLUTION} frames and masks (JPEGImages/{RESOLUTION}, Annotations/{RESOLUTION}): "
                             f"download the {RESOLUTION} release (DAVIS-2017-trainval-{RESOLUTION}.zip)")
    hint = _layout_hint(root)
    if hint:
        raise DavisDataError(f"{root}: no JPEGImages/{RESOLUTION} folder, so not a DAVIS-layout folder; {hint}")


def _layout_hint(root: Path) -> str:
    """"pass X" for a DAVIS folder one level under ``root`` (the folder a zip unpacked into) or up to three
    levels above it (``root`` is its JPEGImages, JPEGImages/480p or a sequence folder); "" when there is none."""
    below = sorted(p for p in root.iterdir() if is_davis_root(p))
    if below:
        return "pass " + " or ".join(str(p) for p in below) + ", the folder holding JPEGImages/"
    for parent in list(root.absolute().parents)[:3]:
        if is_davis_root(parent):
            return f"pass {parent}, the folder holding JPEGImages/"
    return ""


SUBSET_FOLDERS = ("2017", "480p", "2016", "")  # where official downloads keep <subset>.txt, in order of preference


def imageset_file(root: str | os.PathLike, subset: str) -> Path | None:
    """The ``<subset>.txt`` (e.g. ``val.txt``) of a DAVIS folder: ``ImageSets/2017/`` (DAVIS-2017), then
    ``ImageSets/480p/`` (DAVIS-2016), ``ImageSets/2016/``, ``ImageSets/``, then any other folder under ImageSets
    (sorted); None when there is none."""
    sets = Path(root) / "ImageSets"
    for folder in SUBSET_FOLDERS:
        candidate = sets / folder / f"{subset}.txt"
        if candidate.is_file():
            return candidate
    others = sorted(sets.rglob(f"{subset}.txt")) if sets.is_dir() else []
    return others[0] if others else None


def _read_imageset(txt: Path, names: list[str]) -> None:
    # a list saved with a byte-order mark too
    for number, line in enumerate(txt.read_text(encoding="utf-8-sig").splitlines(), start=1):
        entry = line.strip().split()[0].rstrip("/") if line.strip() else ""  # "blackswan/" is the folder
        parts = Path(entry).parts
        name = entry
        # DAVIS-2016 ImageSets list "/JPEGImages/480p/seq/00000.jpg /Annotations/..." pairs: keep the folder
        if "/" in entry:
            name = parts[-2] if len(parts) >= 2 and Path(entry).suffix else parts[-1]
        if not name or entry.startswith("#") or name.startswith("#"):  # a blank line or a comment ("#../x" too)
            continue
        if ".." in parts or not is_sequence_name(name):
            # the name is joined to the data folder and to --out's overlay and mask folders: "x/..", "/." or
            # "../x" would read or write outside them
            log.warning("%s:%d: %r is not a sequence name (a folder name under JPEGImages/%s); line skipped", txt,
                        number, entry, RESOLUTION)
            continue
        if name not in names:
            names.append(name)


def list_sequences(root: str | os.PathLike, subset: str = "val") -> list[str]:
    """Sequence names, in file order and de-duplicated: those of the ``subset`` ImageSets file when the folder has
    one (:func:`imageset_file`: a full DAVIS download evaluates its val set, as CRW, VFS and DINO report), else the
    union of the ``ImageSets/*.txt`` files (a hand-made list such as ``sequences.txt``), else the folders of
    ``JPEGImages/480p`` in sorted order."""
    root = Path(root)
    images, _ = _layout_dirs(root)
    if not root.is_dir():
        raise DavisDataError(f"{root}: DAVIS folder not found; give a folder with JPEGImages/{RESOLUTION} and "
                             f"Annotations/{RESOLUTION}")
    check_layout(root)
    chosen = imageset_file(root, subset)
    if chosen is not None:
        sets = [chosen]
    else:
        found = sorted((root / "ImageSets").rglob("*.txt")) if (root / "ImageSets").is_dir() else []
        sets = [p for p in found if p.parent == root / "ImageSets"]
        listed = [p for p in found if p.parent != root / "ImageSets"]
        if listed:  # a DAVIS release's ImageSets/2017/{train,val}.txt: a typo in the subset evaluated them all
            subsets = ", ".join(p.relative_to(root / "ImageSets").with_suffix("").as_posix() for p in listed)
            raise DavisDataError(f"{root / 'ImageSets'}: no {subset}.txt (it has {subsets}); choose one of those "
                                 f"by its name (--set eval.davis.subset=NAME, or --subset for tools/reverse_davis.py)")
    names: list[str] = []
    for txt in sets:
        _read_imageset(txt, names)
    if not names:
        if chosen is not None:
            raise DavisDataError(f"{chosen}: lists no sequence; name sequences in it or pick another subset "
                                 f"(--set eval.davis.subset=...)")
        if not images.is_dir():
            raise DavisDataError(f"{root}: no ImageSets/*.txt and no JPEGImages/{RESOLUTION} folder; this is not a "
                                 f"DAVIS-layout folder")
        names = sorted(p.name for p in images.iterdir() if p.is_dir())
    if not names:
        raise DavisDataError(f"{root}: no sequences found (JPEGImages/{RESOLUTION} has no sequence folders)")
    return names


def _resize_shape(h: int, w: int, max_side: int | None) -> tuple[int, int]:
    if max_side is None or max(h, w) <= max_side:
        return h, w
    scale = max_side / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def _read_frame(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if not (im.mode.startswith("I;16") or im.mode == "I"):
                return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
        # 16-bit grey (Pillow's I;16, or I in some versions): convert("RGB") clips it to white; the flow reader
        # reads by the file's own bit depth, which a dark frame's values alone would not tell
        from vidssl.eval.flow.io import FlowFileError, read_image

        try:
            return read_image(path)
        except FlowFileError as e:  # a damaged file is replaced; only an unsupported depth is saved again
            fix = "save the frame as 8-bit RGB" if e.reason.startswith("unsupported") else "replace the file"
            raise DavisDataError(f"{e}; {fix}") from None
    except (OSError, UnidentifiedImageError) as e:
        raise DavisDataError(f"{path}: cannot read frame ({e.__class__.__name__}: {e}); replace the file") from None


def read_mask(path: Path) -> np.ndarray:
    """(H, W) uint8 label map from a binary (L/1) or palette (P) PNG. A palette mask whose only non-zero index is
    255 (void) is an error: alone, it cannot be told from a binary mask saved as a palette (:func:`load_sequence`
    looks at a sequence's masks together, where a frame with only void left in it is no error)."""
    labels, void_only = _read_labels(path)
    if void_only:
        raise _void_only_error(path, "")
    return labels


def _void_only_error(path: Path, where: str) -> DavisDataError:
    # void is a border around objects, never alone in every mask: binary 0/255 masks converted to a palette
    return DavisDataError(f"{path}: palette mask whose only non-zero index is {VOID}, DAVIS's void (read as "
                          f"background){where}; a binary mask saved as a palette? Save the object as index 1, or as "
                          f"a greyscale (mode L) 0/255 PNG")


def _read_labels(path: Path) -> tuple[np.ndarray, bool]:
    """:func:`read_mask`'s label map, unchecked for void, and whether the file is a palette mask whose only non-zero
    index is 255 (void, read as background)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            mode = im.mode
            arr = np.asarray(im)
    except (OSError, UnidentifiedImageError) as e:
        raise DavisDataError(f"{path}: cannot read mask ({e.__class__.__name__}: {e}); replace the file") from None
    if mode == "P":
        labels = arr.astype(np.uint8)
        values = np.unique(labels)
        void_only = values[values > 0].tolist() == [VOID]
        labels[labels == VOID] = 0
        return labels, void_only
    if mode == "1":
        return arr.astype(np.uint8), False
    if mode == "L":
        if 0 < int(arr.max()) <= 127:
            raise DavisDataError(f"{path}: greyscale mask with values up to {int(arr.max())} looks like object ids; "
                                 f"DAVIS-2016 binary masks use 255 for the object and DAVIS-2017 masks are palette "
                                 f"PNGs: save it as a palette (mode P) PNG")
        values = np.unique(arr)
        ids = values[(values > 0) & (values <= 127)]
        if len(ids) and len(values) <= 16 and any(_has_interior(arr == v) for v in ids.tolist()):
            # few levels, some under 128, each filling a region: object ids with a 255 border, where > 127 would
            # take the border for the object. A 0/255 mask that was resized also has a few levels (64, 128, 191
            # after a box filter), but only in a band 1-2 px wide along its edges: thresholded as binary
            raise DavisDataError(f"{path}: greyscale mask with the values {values.tolist()} looks like object ids "
                                 f"(with 255 as void); DAVIS-2016 binary masks hold 0 and 255 only and DAVIS-2017 "
                                 f"masks are palette PNGs: save it as a palette (mode P) PNG")
        return (arr > 127).astype(np.uint8), False
    raise DavisDataError(f"{path}: mask PNG has mode {mode!r}; save it as a palette (mode P) PNG whose index is the "
                         f"object id (0 background), as DAVIS-2017's are, or, for one object, as a greyscale (mode L) "
                         f"PNG of 0 and 255, as DAVIS-2016's are")


def _has_interior(region: np.ndarray) -> bool:
    """Whether some pixel of the (H, W) bool ``region`` has its 8 neighbours in it too: an object, not an edge."""
    import cv2

    return bool(cv2.erode(region.astype(np.uint8), np.ones((3, 3), np.uint8), borderValue=0).any())


def _files(folder: Path, exts: tuple[str, ...]) -> dict[str, Path]:
    """Stem -> file of ``folder``'s files with one of ``exts``; two files of one stem are an error. A folder named
    like a frame (``00009.jpg/``) is no frame; a broken link is kept, for the reader to name it."""
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() not in exts or p.name.startswith(".") or p.is_dir():
            continue
        if p.stem in found:
            raise DavisDataError(f"{p}: {found[p.stem].name} has the same name; a frame or mask is one file, so "
                                 f"remove one of them")
        found[p.stem] = p
    return found


def load_sequence(root: str | os.PathLike, name: str, max_side: int | None = None,
                  need_first_object: bool = True, warn_gaps: bool = True) -> DavisSequence:
    """Load every frame and mask of sequence ``name`` (see :class:`DavisSequence` for shapes).

    Every frame needs a mask of the same size with the same file stem (DAVIS ships full annotations for
    the train/val sets). Raises :class:`DavisDataError` naming the file for anything missing or mismatched, for
    palette masks whose only non-zero index is void (255) in every frame, and (``need_first_object``: label
    propagation starts there) for a first frame without an object. ``warn_gaps``: log a warning when the frame
    numbers skip some (00001, 00003), which label propagation reads as consecutive frames.
    """
    root = Path(root)
    if not is_sequence_name(name):  # an absolute name or "../" reads outside the data folder
        raise DavisDataError(f"{root}: {name!r} is not a sequence name; give a folder name under "
                             f"JPEGImages/{RESOLUTION}")
    images, annotations = _layout_dirs(root)
    img_dir, ann_dir = images / name, annotations / name
    for d, what in ((img_dir, "frames"), (ann_dir, "masks")):
        if not d.is_dir():
            raise DavisDataError(f"{d}: {what} folder of sequence '{name}' not found; expected the DAVIS layout "
                                 f"JPEGImages/{RESOLUTION}/<seq> and Annotations/{RESOLUTION}/<seq>")
    frame_files = _files(img_dir, IMAGE_EXTS)
    mask_files = _files(ann_dir, (".png",))
    if not frame_files:
        raise DavisDataError(f"{img_dir}: no frames (.jpg/.png) in sequence '{name}'")
    missing = sorted(set(frame_files) - set(mask_files))
    first = min(frame_files, key=_natural_key)
    if len(frame_files) > 1 and set(mask_files) == {first}:
        raise FirstFrameOnly(f"{ann_dir}: only the first frame ({first}) has a mask; scoring needs every frame's "
                             f"(a DAVIS test-dev or test-challenge sequence?)")
    if missing:
        raise DavisDataError(f"{ann_dir / (missing[0] + '.png')}: mask missing for frame {frame_files[missing[0]]} "
                             f"({len(missing)} frame(s) without masks); every frame needs a mask with the same name")
    extra = sorted(set(mask_files) - set(frame_files))
    if extra:
        raise DavisDataError(f"{mask_files[extra[0]]}: mask has no frame (expected {img_dir / (extra[0] + '.jpg')}); "
                             f"remove it or add the frame")
    stems = sorted(frame_files, key=_natural_key)  # 2.png before 10.png: names need not be zero-padded
    if warn_gaps:
        _warn_gaps(name, stems)
    frames, masks = [], []
    native: tuple[int, int] | None = None
    void_only: list[Path] = []
    has_object = False
    for stem in stems:
        mask, only_void = _read_labels(mask_files[stem])
        if only_void:
            void_only.append(mask_files[stem])
        has_object = has_object or bool(mask.any())  # before a resize, which may drop a small object
        frame = _read_frame(frame_files[stem])
        if frame.shape[:2] != mask.shape:
            raise DavisDataError(f"{mask_files[stem]}: mask is {mask.shape[1]}x{mask.shape[0]} but frame "
                                 f"{frame_files[stem]} is {frame.shape[1]}x{frame.shape[0]}; they must match")
        if native is None:
            native = mask.shape
        elif mask.shape != native:
            raise DavisDataError(f"{frame_files[stem]}: frame size {frame.shape[1]}x{frame.shape[0]} differs from "
                                 f"the first frame's {native[1]}x{native[0]}; a sequence has one resolution")
        out_shape = _resize_shape(*native, max_side)
        if out_shape != native:
            frame, mask = _resize_pair(frame, mask, out_shape)
        frames.append(frame)
        masks.append(mask)
    if void_only and not has_object:
        # per sequence, not per frame: a frame where the object is gone may keep a void region, and a sequence
        # whose first frame has no object yet (retrieval crops every frame) is checked all the same
        raise _void_only_error(void_only[0], f", and no mask of sequence '{name}' has an object id 1-{VOID - 1}")
    num_objects = int(masks[0].max())
    if num_objects == 0 and need_first_object:
        raise DavisDataError(f"{mask_files[stems[0]]}: first-frame mask has no object; label propagation starts "
                             f"from the first frame's objects")
    return DavisSequence(name=name, frames=frames, masks=masks, num_objects=num_objects, frame_names=stems)


def frame_numbers(stems: list[str]) -> list[int] | None:
    """The numbers of frame names (``["00000", "00005"]`` -> ``[0, 5]``), in their order; None unless every name is
    a number and they increase (``"1"`` and ``"01"``, or names out of numeric order, have no time of their own)."""
    if not stems or not all(stem.isdecimal() for stem in stems):
        return None
    numbers = [int(stem) for stem in stems]
    return numbers if all(a < b for a, b in zip(numbers, numbers[1:])) else None


def _warn_gaps(name: str, stems: list[str]) -> None:
    """One warning for a sequence whose frame numbers skip some (frames 00002 missing between 00001 and 00003):
    not an error, as a subsampled sequence is legitimate, but label propagation reads its frames as consecutive."""
    numbers = frame_numbers(stems)
    if numbers is None:
        return
    gaps = [i for i in range(1, len(numbers)) if numbers[i] - numbers[i - 1] > 1]
    if not gaps:
        return
    i = gaps[0]
    before, after = stems[i - 1], stems[i]
    width = len(before) if before.startswith("0") else 0  # the missing names as zero-padded as their neighbour
    first, last = numbers[i - 1] + 1, numbers[i] - 1
    missing = f"{first:0{width}d}" if first == last else f"{first:0{width}d}-{last:0{width}d}"
    more = f" (and {len(gaps) - 1} more gap(s))" if len(gaps) > 1 else ""
    log.warning("%s: frames %s missing between %s and %s%s; label propagation treats the frames as consecutive",
                name, missing, before, after, more)


def _natural_key(stem: str) -> list:
    """``"frame10"`` -> ``["frame", 10, ""]``: numbers compare as numbers, so unpadded frame names keep their order."""
    # isdecimal, not isdigit: "²" is a digit int() cannot read; \d matches exactly the decimal characters
    return [int(part) if part.isdecimal() else part for part in re.split(r"(\d+)", stem)]


def _resize_pair(frame: np.ndarray, mask: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    size = (shape[1], shape[0])
    frame = np.asarray(Image.fromarray(frame).resize(size, Image.BILINEAR))
    mask = np.asarray(Image.fromarray(mask).resize(size, Image.NEAREST))
    return frame, mask
