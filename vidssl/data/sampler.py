"""Which pairs go in which batch: P pairs spread over the videos and tracks, deterministic per step.

A tracker yields a pair every few frames (tracking/track.py), so one track may hold many pairs; a batch takes at
most ceil(P / tracks) pairs of one track (pairs from distinct tracks whenever there are P tracks or more).

Each epoch is a fixed function of (seed, epoch): every video's pairs are shuffled and the videos interleaved in
proportion to their size, so each batch draws from every video that holds at least 1/P of the pairs. A pair whose
track already has its share of the current batch waits for the next one. Global batch ``g`` goes to process ``g % world``; a
process at step ``s`` takes global batch ``s * world + rank``, so resuming at a step needs nothing but the step.
"""
from __future__ import annotations

from collections import Counter, deque
from typing import Iterator

import numpy as np
from torch.utils.data import Sampler

from vidssl.errors import VidsslError


def epoch_batches(video: np.ndarray, track: np.ndarray, batch_pairs: int, seed: int, epoch: int) -> np.ndarray:
    """[N] video codes, [N] track codes -> [B, P] pair indices of one epoch (the incomplete rest is dropped)."""
    rng = np.random.default_rng([seed, epoch])
    keys = np.empty(video.size)
    for v in np.unique(video):
        members = np.flatnonzero(video == v)
        order = rng.permutation(members.size)
        keys[members[order]] = (np.arange(members.size) + rng.random()) / members.size
    stream = np.lexsort((rng.random(video.size), keys))  # key order; ties broken at random
    share = -(-batch_pairs // np.unique(track).size)  # most pairs of one track in a batch
    batches, current, in_batch, waiting = [], [], Counter(), deque()
    for i in stream:
        waiting.append(int(i))
        for _ in range(len(waiting)):  # take every waiting pair whose track still has room in the batch
            j = waiting.popleft()
            if in_batch[track[j]] >= share:
                waiting.append(j)
                continue
            current.append(j)
            in_batch[track[j]] += 1
            if len(current) == batch_pairs:
                batches.append(current)
                current, in_batch = [], Counter()
    return np.asarray(batches, dtype=np.int64).reshape(-1, batch_pairs)


class PairBatchSampler(Sampler):
    """Yields, for steps ``start_step .. steps - 1``, lists of ``(pair_index, (seed, global_batch, slot))``: the
    second item seeds that pair's augmentation, so augmentation does not depend on worker scheduling."""

    def __init__(self, video: np.ndarray, track: np.ndarray, batch_pairs: int, seed: int, steps: int,
                 start_step: int = 0, rank: int = 0, world: int = 1) -> None:
        if track.size < batch_pairs:
            raise VidsslError(f"{track.size} pairs, fewer than a batch of {batch_pairs}; lower train.batch_pairs or "
                              f"mine more videos")
        self.video, self.track, self.batch_pairs, self.seed = video, track, batch_pairs, seed
        self.steps, self.start_step, self.rank, self.world = steps, start_step, rank, world
        self._epoch, self._batches, self._first = -1, np.zeros((0, batch_pairs), np.int64), 0

    def batches_per_epoch(self) -> int:
        return len(epoch_batches(self.video, self.track, self.batch_pairs, self.seed, 0))

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

    def epoch_of(self, g: int) -> int:
        self.global_batch(g)
        return self._epoch

    def __len__(self) -> int:
        return max(0, self.steps - self.start_step)

    def __iter__(self) -> Iterator[list]:
        for step in range(self.start_step, self.steps):
            g = step * self.world + self.rank
            yield [(int(i), (self.seed, g, slot)) for slot, i in enumerate(self.global_batch(g))]
