"""Reading rows of the pair shards (``.npy`` arrays, uint8 (n, M, S, S, 3)) without keeping files open."""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from vidssl.errors import VidsslError


class ShardRows:
    """Patches of ``.npy`` shards, each read by one positioned read.

    No file stays open between reads: one shard is one video, and a memory map kept per shard (an open file each)
    ran a DataLoader worker out of files on sets of over ~1000 videos, while opening a map per read cost about 12x
    a read. Each shard's header is parsed once per process (the layout is all a read needs).

    ``remake``: what a damaged or missing shard's error tells to do; None for a folder `vidssl mine` made (mine its
    video again), vidssl.data.pairs.REWRITE_ADVICE for one vidssl.data.write_pair_dataset wrote, which no mining
    remakes."""

    def __init__(self, remake: str | None = None) -> None:
        self._layouts: dict[Path, tuple[int, tuple[int, ...]]] = {}
        self.remake = remake

    def _fix(self, mine: str = "") -> str:
        """The fix a shard error ends with: ``remake``, or rerunning the mining (``mine``: what that does here)."""
        return self.remake or f"rerun the `vidssl mine` that made it{mine}"

    def _layout(self, path: Path) -> tuple[int, tuple[int, ...]]:
        """(byte offset of the data, shape) of the shard at ``path``, from its header."""
        if path not in self._layouts:
            # the header alone (not np.load's map, which refuses a file shorter than it promises): a shard cut
            # short is then named by the read that misses its bytes
            fmt = np.lib.format
            try:
                with open(path, "rb") as fh:
                    header = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}.get(
                        fmt.read_magic(fh))
                    if header is None:
                        raise ValueError("an .npy format version numpy does not write for such arrays")
                    shape, fortran_order, dtype = header(fh)
                    offset = fh.tell()
            except FileNotFoundError:
                raise self._gone(path) from None
            except (ValueError, EOFError) as e:
                raise VidsslError(f"{path}: not a readable .npy shard ({e}); {self._fix()}") from None
            if dtype != np.uint8 or len(shape) != 5 or fortran_order:
                # "found uint8 (7, 2, 8, 8, 3)" alone reads as what was asked for: a Fortran-order array is named
                order = " in Fortran order" if fortran_order else ""
                raise VidsslError(f"{path}: not a pair shard (uint8 (n, M, S, S, 3) in C order, found {dtype} {shape}"
                                  f"{order}); {self._fix()}"
                                  + ("; it keeps a shard of this size: delete the shard first"
                                     if fortran_order and self.remake is None else ""))
            self._layouts[path] = (offset, tuple(shape))
        return self._layouts[path]

    def read(self, path: Path, row: int, first: int = 0, count: int | None = None) -> np.ndarray:
        """[count, S, S, 3] uint8 (read-only): patches ``first .. first + count - 1`` (default: to the row's end) of
        row ``row`` of the shard at ``path``."""
        offset, shape = self._layout(path)
        count = shape[1] - first if count is None else count
        patch = math.prod(shape[2:])
        size = count * patch
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise self._gone(path) from None
        try:
            data = os.pread(fd, size, offset + row * shape[1] * patch + first * patch)
        finally:
            os.close(fd)
        if len(data) != size:
            again = " (same videos, same --out) to mine its video again"
            raise VidsslError(f"{path}: ends before row {row} of its {shape[0]}: cut short since it was read "
                              f"(an interrupted copy?); {self._fix(again)}")
        return np.frombuffer(data, np.uint8).reshape(count, *shape[2:])

    def _gone(self, path: Path) -> VidsslError:
        """A shard deleted since the pairs were indexed (its video mined again into the folder, a hand clean-up)."""
        return VidsslError(f"{path}: gone since the pairs were read (its video mined again, or deleted); "
                           f"{self._fix(' (same videos, same --out), then train again')}")
