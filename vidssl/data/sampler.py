"""Which pairs go in which batch: P pairs spread over the videos and tracks, deterministic per step.

A tracker yields a pair every few frames (tracking/track.py), so one track may hold many pairs. Each epoch, every
track's pairs are spread evenly through its video's share of the epoch and every video's through the epoch, then
the stream is cut into batches: every pair once per epoch, and a track holding a fraction f of the pairs gets about
f * P of each batch. An earlier rule, "at most
ceil(P / tracks) pairs of a track per batch", starved the epoch once the short tracks were used up: on the 9 real
clips it formed one batch per epoch, always holding the short tracks' pairs.

Each epoch is a fixed function of (seed, epoch), so each batch draws from every video that holds at least 1/P of the
pairs. Global batch ``g`` goes to process ``g % world``; a process at step ``s`` takes global batch
``s * world + rank``, so resuming at a step needs nothing but the step.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
from torch.utils.data import Sampler

from vidssl.errors import VidsslError


def _spread(members: np.ndarray, order_keys: np.ndarray, rng: np.random.Generator, keys: np.ndarray) -> None:
    """Give ``members`` (taken in ``order_keys`` order, ties at random) evenly spaced keys in [0, 1)."""
    order = members[np.lexsort((rng.random(members.size), order_keys))]
    keys[order] = (np.arange(members.size) + rng.random()) / members.size


def epoch_batches(video: np.ndarray, track: np.ndarray, batch_pairs: int, seed: int, epoch: int) -> np.ndarray:
    """[N] video codes, [N] track codes -> [B, P] pair indices of one epoch, B = N // P (the rest is dropped)."""
    rng = np.random.default_rng([seed, epoch])
    n = video.size
    in_track = np.empty(n)
    for t in np.unique(track):  # each track's pairs, shuffled, spread evenly over its video's share
        members = np.flatnonzero(track == t)
        _spread(members, rng.random(members.size), rng, in_track)
    keys = np.empty(n)
    for v in np.unique(video):  # each video's pairs, tracks interleaved, spread evenly over the epoch
        members = np.flatnonzero(video == v)
        _spread(members, in_track[members], rng, keys)
    stream = np.lexsort((rng.random(n), keys))  # key order; ties broken at random
    return stream[:n // batch_pairs * batch_pairs].reshape(-1, batch_pairs).astype(np.int64)


def too_few_pairs(num_pairs: int, batch_pairs: int) -> str:
    """What to tell a user whose ``num_pairs`` pairs do not fill one batch: a batch size they do fill (the largest
    power of two, at least the 2 a batch needs for a negative), or to mine more."""
    fix = "mine more videos"
    if num_pairs >= 2:
        fix = f"lower the batch (--set train.batch_pairs={1 << (num_pairs.bit_length() - 1)}) or {fix}"
    return f"{num_pairs} pairs, fewer than a batch of {batch_pairs}; {fix}"


class PairBatchSampler(Sampler):
    """Yields, for steps ``start_step .. steps - 1``, lists of ``(pair_index, (seed, global_batch, slot))``: the
    second item seeds that pair's augmentation, so augmentation does not depend on worker scheduling."""

    def __init__(self, video: np.ndarray, track: np.ndarray, batch_pairs: int, seed: int, steps: int,
                 start_step: int = 0, rank: int = 0, world: int = 1) -> None:
        if track.size < batch_pairs:
            raise VidsslError(too_few_pairs(track.size, batch_pairs))
        self.video, self.track, self.batch_pairs, self.seed = video, track, batch_pairs, seed
        self.steps, self.start_step, self.rank, self.world = steps, start_step, rank, world
        self._epoch, self._batches, self._first = -1, np.zeros((0, batch_pairs), np.int64), 0

    def global_batch(self, g: int) -> np.ndarray:
        """[P] pair indices of global batch ``g`` (epochs are generated in order and cached one at a time)."""
        if g < self._first:
            self._epoch, self._batches, self._first = -1, np.zeros((0, self.batch_pairs), np.int64), 0
        while g >= self._first + len(self._batches):
            self._first += len(self._batches)
            self._epoch += 1
            self._batches = epoch_batches(self.video, self.track, self.batch_pairs, self.seed, self._epoch)
            if len(self._batches) == 0:
                raise VidsslError(f"not one batch of {self.batch_pairs} pairs could be formed")
        return self._batches[g - self._first]

    def __len__(self) -> int:
        return max(0, self.steps - self.start_step)

    def __iter__(self) -> Iterator[list]:
        for step in range(self.start_step, self.steps):
            g = step * self.world + self.rank
            yield [(int(i), (self.seed, g, slot)) for slot, i in enumerate(self.global_batch(g))]
