"""Pictures of a pair dataset for a person to judge: a grid of pairs, and tracked boxes over source frames."""
from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import cv2
import numpy as np

from tracking.dataset import marker_path, read_marker
from vidssl.errors import VidsslError, shell_arg
from vidssl.io import drawable

_GRID_KEYS = frozenset({"video", "shard", "offset", "start_frame", "end_frame"})  # what the pair grid reads of a record
_TRACK_KEYS = _GRID_KEYS | {"video_id", "track_id"}  # what the track strips read
# each key's type as mining writes it: a hand edit ("offset": 0.0 or "0", "end_frame": null, "shard": 5) was a
# TypeError traceback from the grid, or an IndexError from numpy
_KEY_TYPES = {"video": str, "shard": str, "video_id": str, "offset": int, "start_frame": int, "end_frame": int,
              "track_id": int}
log = logging.getLogger(__name__)
CAPTION = 14  # px of caption bar above each pair / track row
FONT = cv2.FONT_HERSHEY_SIMPLEX


def _open_manifest(pairs_dir: str | Path) -> TextIO:
    """``pairs_dir``'s manifest.jsonl, open for reading; a VidsslError naming what the folder is instead."""
    path = Path(pairs_dir) / "manifest.jsonl"
    if not path.is_file():
        folder = Path(pairs_dir)
        if (folder / "pairs" / "manifest.jsonl").is_file():  # a `vidssl pretrain` run folder
            raise VidsslError(f"{pairs_dir} has no manifest.jsonl: it is a run folder; its pairs are in "
                              f"{folder / 'pairs'}")
        from vidssl.video import find_videos

        if folder.is_dir() and find_videos(folder):
            raise VidsslError(f"{pairs_dir} is a folder of videos, not mined pairs: mine it first (vidssl mine "
                              f"{shell_arg(pairs_dir)} --out PAIRS), then show PAIRS")
        raise VidsslError(f"{pairs_dir} has no manifest.jsonl; mine it first (vidssl mine VIDEOS --out "
                          f"{shell_arg(pairs_dir)})")
    return open(path, encoding="utf-8", errors="replace")


# the line breaks of str.splitlines(), less "\r" (text mode reads "\r" and "\r\n" as "\n")
_LINE_BREAKS = "\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


def _pair_lines(manifest: TextIO, chunk_chars: int = 1 << 16) -> Iterator[tuple[int, str]]:
    """The non-blank lines of ``manifest`` from its start, with their line numbers, read ``chunk_chars`` at a time
    (64k: a few hundred kB held, as fast as larger chunks; a line per read is slower). Numbered as
    str.splitlines() of the whole text numbered them (it also splits at \\f, \\x85, \\u2028...), so an error names
    the line it always named."""
    manifest.seek(0)  # the second pass reads the file the first did, even if a merge has replaced it since
    lineno, carry = 0, ""
    while True:
        chunk = manifest.read(chunk_chars)
        text = carry + chunk
        lines = text.splitlines()
        carry = lines.pop() if chunk and text and text[-1] not in _LINE_BREAKS else ""  # a line the next chunk ends
        for line in lines:
            lineno += 1
            if line.strip():
                yield lineno, line
        if not chunk:
            return


def _pair_record(manifest: TextIO, lineno: int, line: str, keys: frozenset[str]) -> dict:
    """``line`` as a record holding ``keys`` of mining's types; a VidsslError naming the file, line and fix
    otherwise."""
    rec = None
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as e:
        problem = f"not JSON: {e}"
    else:
        if isinstance(rec, dict) and keys <= rec.keys() and _of_mining_types(rec, _typed_keys(keys)):
            return rec
        missing = keys - set(rec) if isinstance(rec, dict) else keys
        problem = f"keys missing: {', '.join(sorted(missing))}" if missing else _wrong_types(rec, keys)
    pairs_dir = Path(manifest.name).parent
    if _written(pairs_dir):
        from vidssl.data.pairs import REWRITE_ADVICE

        frameless = isinstance(rec, dict) and not {"start_frame", "end_frame"} & set(rec)
        raise VidsslError(f"{manifest.name}:{lineno}: not a pair record ({problem}); "
                          + (f"{pairs_dir} was written by vidssl.data.write_pair_dataset without frames, which "
                             f"show-pairs captions each pair with: {REWRITE_ADVICE}, giving frames=[N, 2] (each "
                             f"pair's first and last frame)" if frameless else REWRITE_ADVICE))
    raise VidsslError(f"{manifest.name}:{lineno}: not a pair record ({problem}); rerun the `vidssl mine` that "
                      f"made {pairs_dir} into it: it rebuilds the manifest from its finished videos")


def _written(pairs_dir: Path) -> bool:
    """vidssl.data.pairs.written_by_writer, imported on the error paths only: vidssl.data pulls in torch, which
    show-pairs otherwise never loads."""
    from vidssl.data.pairs import written_by_writer

    return written_by_writer(pairs_dir)


def _pair_records(manifest: TextIO, keys: frozenset[str] = _GRID_KEYS) -> Iterator[dict]:
    """Every record of ``manifest``, each checked (:func:`_pair_record`) and handed on, not kept: a caller that
    keeps only what it needs holds a few records whatever the manifest's size (every record as a dict: 2.1 GB to
    draw 48 of 750k pairs). An empty manifest is an error once it is read through."""
    count = 0
    for lineno, line in _pair_lines(manifest):
        yield _pair_record(manifest, lineno, line, keys)
        count += 1
    if not count:
        raise VidsslError(f"{Path(manifest.name).parent} holds no pairs (see its dataset.json for why videos were "
                          f"skipped)")


@functools.lru_cache(maxsize=None)
def _typed_keys(keys: frozenset[str]) -> tuple[tuple[str, type], ...]:
    """The keys of ``keys`` whose type is checked, with the type: worked out once, not per record."""
    return tuple((key, kind) for key, kind in _KEY_TYPES.items() if key in keys)


def _of_mining_types(rec: dict, typed: tuple[tuple[str, type], ...]) -> bool:
    """Whether each of ``typed``'s keys of ``rec`` holds its type: the check of every line, so a loop, not a
    generator (a quarter of the pass's time at 300k lines)."""
    for key, kind in typed:
        if type(rec[key]) is not kind:  # noqa: E721 (not isinstance: true is no integer here)
            return False
    return True


def _wrong_types(rec: dict, keys: frozenset[str]) -> str | None:
    """What in ``rec`` is not of the type mining writes (an integer, not a boolean or 0.0; a string), or None."""
    wrong = []
    for key in sorted(keys & set(_KEY_TYPES)):
        if type(rec[key]) is not _KEY_TYPES[key]:  # noqa: E721 (not isinstance: true is no integer here)
            value = json.dumps(rec[key])
            value = value if len(value) <= 40 else value[:37] + "..."
            wrong.append(f"{key} is {value}, not {'an integer' if _KEY_TYPES[key] is int else 'a string'}")
    return "; ".join(wrong) or None


def _out_of_step(pairs_dir: Path, what: str, rec: dict, size: int) -> VidsslError:
    """The error for a record whose ``offset`` is past the end of ``what`` (``size`` rows): a manifest out of step
    with the files it points into."""
    from vidssl.data.pairs import remine_advice

    fix = remine_advice(pairs_dir, "", _written(pairs_dir))
    return VidsslError(f"{what}: has {size} rows, but {pairs_dir / 'manifest.jsonl'} points at row {rec['offset']} for "
                       f"{rec['video']} (the manifest is out of step with it){fix}")


@dataclass
class _ShardTally:
    """What the grid needs of the whole manifest, per shard in order of first mention: a few numbers and names per
    shard, not a record per pair."""
    # shard -> [the last row a record refers to (training's check), its pairs, its videos]: one lookup per record
    shards: dict[str, list] = field(default_factory=dict)

    def add(self, rec: dict) -> None:
        entry = self.shards.get(rec["shard"])
        if entry is None:
            entry = self.shards[rec["shard"]] = [-1, 0, set()]
        entry[0] = max(entry[0], rec["offset"])
        entry[1] += 1
        entry[2].add(rec["video"])

    def last_rows(self) -> dict[str, int]:
        return {name: entry[0] for name, entry in self.shards.items()}

    def count(self, shards: Iterable[str]) -> int:
        return sum(self.shards[name][1] for name in shards)

    def video_count(self, shards: Iterable[str]) -> int:
        return len(set().union(*(self.shards[name][2] for name in shards)))


def sample_pairs(pairs_dir: str | Path, n: int, seed: int) -> tuple[list[dict], dict[str, str], str, int]:
    """The records of ``n`` random pairs of ``pairs_dir`` in manifest order, drawn from those training reads (all of
    them when it reads none), with the shards training skips, the fix to say, and the manifest's pair count.

    Two passes over manifest.jsonl, holding ``n`` records: the first checks every line and counts pairs per shard;
    the second picks the ``n`` drawn. The draw is that of a list of the drawable records: rng(seed).choice of their
    count without replacement, sorted (numpy draws a few of many in O(n) memory, by Floyd's algorithm)."""
    pairs_dir = Path(pairs_dir)
    with _open_manifest(pairs_dir) as manifest:
        tally = _ShardTally()
        for rec in _pair_records(manifest):
            tally.add(rec)
        problems, fix = _skipped_shards(pairs_dir, tally)
        total, kept = tally.count(tally.shards), tally.count(s for s in tally.shards if s not in problems)
        if problems and kept:
            _say_left_out(pairs_dir, problems, total - kept, fix)
        left_out = set(problems) if kept else set()  # every shard skipped: the grid stops at the first with its error
        drawn = kept or total
        picked = np.random.default_rng(seed).choice(drawn, size=min(n, drawn), replace=False)
        return _drawn_records(manifest, sorted(int(i) for i in picked), left_out), problems, fix, total


def _say_left_out(pairs_dir: Path, problems: dict[str, str], pairs: int, fix: str) -> None:
    """One warning line for the ``pairs`` of the shards training would skip, which the grid leaves out."""
    shown = "; ".join(f"{pairs_dir / name}: {why}" for name, why in list(problems.items())[:3])
    more = f"; ... (+{len(problems) - 3} more)" if len(problems) > 3 else ""
    log.warning("show-pairs: left out the %d pairs of %d shard(s) training would skip (%s%s); %s",
                pairs, len(problems), shown, more, fix)


def _drawn_records(manifest: TextIO, picked: list[int], left_out: set[str]) -> list[dict]:
    """The records at the indices ``picked`` (sorted) among those of ``manifest`` outside the ``left_out`` shards.
    Only where shards are left out is every line parsed again (to tell its shard); otherwise only the picked are."""
    wanted, found, index = set(picked), [], -1
    for lineno, line in _pair_lines(manifest):
        rec = None
        if left_out:
            rec = _pair_record(manifest, lineno, line, _GRID_KEYS)
            if rec["shard"] in left_out:
                continue
        index += 1
        if index in wanted:
            found.append(rec if rec is not None else _pair_record(manifest, lineno, line, _GRID_KEYS))
            if len(found) == len(wanted):
                break
    return found


def _track_rank(seed: int, key: tuple[str, int]) -> tuple[bytes, str, int]:
    """A tracker's place in the seeded draw: a hash of the seed and the tracker, the same in every process (str's
    hash() is not); the tracker itself breaks ties."""
    return hashlib.blake2b(f"{seed}\0{key[0]}\0{key[1]}".encode("utf-8", "backslashreplace"),
                           digest_size=8).digest(), *key


def _sample_tracks(records: Iterable[dict], n: int, seed: int) -> list[dict]:
    """One pair each of ``n`` random trackers (a tracker yields a pair every mine.pair_stride frames, so sampling
    pairs drew rows of one tracker's overlapping windows): its middle window, in manifest order of the trackers.

    The trackers drawn are the ``n`` of lowest :func:`_track_rank`: one pass holds the windows of ``n`` trackers
    (of one video each, so bounded by a video's length), not a list of every tracker, and the draw is the same
    whatever the order of the records."""
    if n < 1:
        return []
    chosen: dict[tuple, tuple[tuple, list[dict]]] = {}  # tracker -> (rank, its windows), in order of first record
    last_key, last_in = None, False
    for rec in records:
        key = (rec["video_id"], rec["track_id"])
        if key != last_key:  # a tracker's windows mostly follow one another: one rank per run of them
            last_key, last_in = key, key in chosen or _enter(chosen, key, _track_rank(seed, key), n)
        if last_in:
            chosen[key][1].append(rec)
    return [sorted(windows, key=lambda r: r["start_frame"])[len(windows) // 2] for _, windows in chosen.values()]


def _enter(chosen: dict[tuple, tuple[tuple, list[dict]]], key: tuple, rank: tuple, n: int) -> bool:
    """Whether the tracker ``key`` of ``rank`` is among the ``n`` of lowest rank seen so far; it enters ``chosen``,
    pushing out the highest, if so. A tracker once out stays out: its rank is above the highest kept ever after."""
    if len(chosen) >= n:
        highest = max(chosen, key=lambda k: chosen[k][0])
        if rank > chosen[highest][0]:
            return False
        del chosen[highest]
    chosen[key] = (rank, [])
    return True


def _caption(width: int, text: str) -> np.ndarray:
    bar = np.full((CAPTION, width, 3), 255, np.uint8)
    text = drawable(text)
    while len(text) > 4 and cv2.getTextSize(text, FONT, 0.35, 1)[0][0] > width - 4:
        text = text[:-5] + "..."
    cv2.putText(bar, text, (2, CAPTION - 4), FONT, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
    return bar


def pair_grid(pairs_dir: str | Path, n: int = 64, seed: int = 0, columns: int = 4) -> np.ndarray:
    """(H, W, 3) uint8 RGB image: ``n`` random pairs side by side, each captioned with its video and frame gap; with
    background patches (mine.background_patches) each pair's same-frame background is shown third."""
    pairs_dir = Path(pairs_dir)
    shards: dict[str, np.ndarray] = {}
    cells = []
    drawn, problems, fix, total = sample_pairs(pairs_dir, n, seed)
    for rec in drawn:
        if rec["shard"] not in shards:
            try:
                shards[rec["shard"]] = np.load(pairs_dir / rec["shard"], mmap_mode="r")
            except (OSError, ValueError, EOFError) as e:  # a shard lost or cut short after the merge
                from vidssl.data.pairs import remine_advice

                raise VidsslError(f"{pairs_dir / rec['shard']}: unreadable ({type(e).__name__}: {e})"
                                  f"{remine_advice(pairs_dir, '', _written(pairs_dir))}") from None
        shard = shards[rec["shard"]]
        if not 0 <= rec["offset"] < len(shard):
            raise _out_of_step(pairs_dir, str(pairs_dir / rec["shard"]), rec, len(shard))
        if rec["shard"] in problems:  # readable, yet training skips it (as every other): another mining's rows
            raise VidsslError(f"{pairs_dir}: none of the {total} pairs is one training reads (e.g. "
                              f"{pairs_dir / rec['shard']}: {problems[rec['shard']]}); {fix}")
        patches = list(shard[rec["offset"]])  # first, last[, background]
        size = patches[0].shape[0]
        gap = np.full((size, 2, 3), 255, np.uint8)
        body = np.concatenate([part for p in patches for part in (gap, p)][1:], axis=1)
        text = f"{Path(rec['video']).name} +{rec['end_frame'] - rec['start_frame']}f" + (", bg" if len(patches) > 2
                                                                                          else "")
        cells.append(np.concatenate([_caption(body.shape[1], text), body], axis=0))
    return _tile(cells, columns)


def _skipped_shards(pairs_dir: Path, tally: _ShardTally) -> tuple[dict[str, str], str]:
    """The shards of ``tally`` that training would skip, and why (vidssl.data.pairs' check: unreadable, of another
    shape or size than mined, short of the rows named), with the fix to say."""
    from vidssl.data.pairs import shard_problems, skipped_fix

    problems = shard_problems(pairs_dir, tally.last_rows())
    lost = tally.video_count(problems)
    fix = skipped_fix(pairs_dir, problems, lost, tally.video_count(tally.shards),
                      written=_written(pairs_dir)) if problems else ""
    return problems, fix.replace(" (the warnings above name them)", "")


def box_frames(start: int, end: int, num_boxes: int) -> list[int]:
    """The frames of a pair's ``num_boxes`` tracked boxes: from ``start`` to ``end`` every mine.track_step frames."""
    step = (end - start) // max(1, num_boxes - 1)
    return [start + k * step for k in range(num_boxes)]


def track_strips(pairs_dir: str | Path, n: int = 4, seed: int = 0, frames: int = 5, height: int = 160,
                 video_backend: str | None = None) -> np.ndarray:
    """(H, W, 3) uint8 RGB image: for ``n`` random trackers, ``frames`` source frames spread over one of their
    pairs' windows with the tracked box drawn; needs the source videos where they were mined (dataset.json
    ``videos_root``).

    The frames are decoded as mining decoded them: with the dataset's ``video_backend`` (unless one is given), in
    one sequential pass from frame 0. Random access could draw a box on another frame: decord's frames after a seek
    are not always a sequential decode's."""
    from vidssl.video import open_video

    pairs_dir = Path(pairs_dir)
    with _open_manifest(pairs_dir) as manifest:  # first: its errors tell a run or videos folder from pairs
        if _written(pairs_dir):
            raise VidsslError(f"{pairs_dir} was written by vidssl.data.write_pair_dataset: the tracked boxes over "
                              f"the source videos that --tracks draws are recorded only by `vidssl mine`; draw its "
                              f"pairs without --tracks")
        sampled = _sample_tracks(_pair_records(manifest, _TRACK_KEYS), n, seed)
    meta_path = pairs_dir / "dataset.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        root = Path(meta["videos_root"])
        backend = video_backend or meta.get("video_backend", "auto")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise VidsslError(f"{meta_path}: cannot tell where the videos are ({type(e).__name__}: {e}); rebuild it "
                          f"with `vidssl mine --merge --out {shell_arg(pairs_dir)}`") from None
    rows = []
    for rec in sampled:
        marker = read_marker(pairs_dir, rec["video_id"]) or {}
        where = marker_path(pairs_dir, rec["video_id"])
        if "track_boxes" not in marker:
            raise VidsslError(f"{where}: missing or damaged, so the tracks of {rec['video']} are unknown; rerun the "
                              f"`vidssl mine` that made {pairs_dir} to mine it again")
        if not 0 <= rec["offset"] < len(marker["track_boxes"]):
            raise _out_of_step(pairs_dir, f"{where} (track_boxes)", rec, len(marker["track_boxes"]))
        boxes = marker["track_boxes"][rec["offset"]]
        if not isinstance(boxes, list) or len(boxes) < 2:  # mining keeps a box at each end of a pair at least
            raise VidsslError(f"{where}: damaged (the track of row {rec['offset']} has no boxes to draw); rerun the "
                              f"`vidssl mine` that made {pairs_dir} to mine {rec['video']} again")
        steps = np.linspace(0, len(boxes) - 1, frames).round().astype(int)
        at = box_frames(rec["start_frame"], rec["end_frame"], len(boxes))
        wanted = {at[s] for s in steps}
        try:
            with open_video(root / rec["video"], backend) as reader:
                decoded = {i: f for i, f in reader.frames(end=max(wanted) + 1) if i in wanted}
            images = [decoded[at[s]] for s in steps]
        except (VidsslError, KeyError) as e:
            raise VidsslError(f"cannot draw the tracks of {root / rec['video']}: "
                              f"{e if isinstance(e, VidsslError) else f'frame {e} does not decode'}") from None
        tiles = []
        for step, image in zip(steps, images):
            scale = height / image.shape[0]
            tile = np.ascontiguousarray(cv2.resize(image, (round(image.shape[1] * scale), height),
                                                   interpolation=cv2.INTER_AREA))
            x, y, w, h = (v * scale for v in boxes[step])
            cv2.rectangle(tile, (round(x), round(y)), (round(x + w), round(y + h)), (0, 255, 0), 2)
            cv2.putText(tile, f"t={at[step]}", (4, 14), FONT, 0.4, (255, 255, 0), 1,
                        cv2.LINE_AA)
            tiles.append(tile)
        body = np.concatenate(tiles, axis=1)
        text = f"{rec['video']} track {rec['track_id']}: frames {rec['start_frame']}-{rec['end_frame']}"
        rows.append(np.concatenate([_caption(body.shape[1], text), body], axis=0))
    return _tile(rows, 1)


def _tile(cells: list[np.ndarray], columns: int, pad: int = 4) -> np.ndarray:
    """Cells in a grid, left to right then top to bottom, on white."""
    h = max(c.shape[0] for c in cells)
    w = max(c.shape[1] for c in cells)
    columns = min(columns, len(cells))
    rows = -(-len(cells) // columns)
    canvas = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, 3), 255, np.uint8)
    for i, cell in enumerate(cells):
        r, c = divmod(i, columns)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        canvas[y:y + cell.shape[0], x:x + cell.shape[1]] = cell
    return canvas


# the suffixes `vidssl show-pairs --out` takes, and the encoder each one selects
IMAGE_FORMATS = {".png": ".png", ".jpg": ".jpg", ".jpeg": ".jpg"}


def image_format(path: str | Path) -> str:
    """The encoder for ``path``'s suffix (``".png"`` or ``".jpg"``); a VidsslError for any other suffix, so a
    viewer never gets bytes of another format than the name says."""
    suffix = Path(path).suffix.lower()
    if suffix not in IMAGE_FORMATS:
        raise VidsslError(f"{path}: cannot write a {suffix or 'suffix-less'} image; name it .png, .jpg or .jpeg")
    return IMAGE_FORMATS[suffix]


def save_image(path: str | Path, image: np.ndarray, encoding: str | None = None) -> None:
    """Write an RGB image atomically, encoded as its suffix says (or as ``encoding``, e.g. ``".png"``)."""
    from vidssl.io import atomic_write_bytes

    encoding = encoding or image_format(path)
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if encoding == ".jpg" else []
    ok, data = cv2.imencode(encoding, cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise VidsslError(f"cannot encode {path} as {encoding[1:].upper()}")
    atomic_write_bytes(path, data.tobytes())


def save_png(path: str | Path, image: np.ndarray) -> None:
    """Write an RGB image as PNG atomically."""
    save_image(path, image, ".png")
