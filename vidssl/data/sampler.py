"""Which pairs go in which batch: P pairs spread over the videos and tracks, deterministic per step.

A tracker yields a pair every few frames (tracking/track.py), so one track may hold many pairs. Each epoch, every
track's pairs are spread evenly through its video's share of the epoch and every video's through the epoch, then
the stream is cut into batches: every pair once per epoch, and a track holding a fraction f of the pairs gets about
f * P of each batch. An earlier rule, "at most
ceil(P / tracks) pairs of a track per batch", starved the epoch once the short tracks were used up: on the 9 real
clips it formed one batch per epoch, always holding the short tracks' pairs.

Each epoch is a fixed function of (seed, epoch). A batch draws from nearly every video that holds at least 1/P of
the pairs: each video's spacing starts at its own random offset, and batches are cut by count while the other
videos' keys crowd unevenly, so a video with little over N / P pairs can miss batches (one of 130 pairs among 400
of 20, P = 64: 3.3% of its batches; over a mix of lognormal video sizes, 0.2% of the (video, batch) slots of the
videos holding at least N / P pairs). Global batch ``g`` goes to process ``g % world``; a process at step ``s`` takes global batch
``s * world + rank``, so resuming at a step needs nothing but the step. With several processes an epoch keeps a
multiple of ``world`` of its batches, so the batches of one step come from one epoch and share no pair (one step
spanning two epochs could hold a pair twice, one plan's batch beside the next plan's).
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


def _groups(codes: np.ndarray) -> list[np.ndarray]:
    """The indices of each code's members, ascending, codes in ascending order: one sort, where a scan per code
    (``codes == c``) made an epoch's plan quadratic in the pairs (0.8 s at 80k pairs of 4 a track)."""
    order = np.argsort(codes, kind="stable")
    starts = np.flatnonzero(np.diff(codes[order])) + 1
    return np.split(order, starts)


# the last word of an epoch plan's seed, a slot no batch has: augmentation is seeded by [seed, global batch, slot],
# and numpy pads a seed with zeros, so a plan seeded [seed, epoch] drew the very numbers that cropped slot 0 of
# global batch ``epoch``
_PLAN = 2**32 - 1
# the version of the rule that makes a run's batches and its per-step draws, saved in its checkpoints: 2 seeds plans
# with _PLAN and, under DDP, cuts an epoch to a multiple of the process count; 3 seeds mining, the cycle's roll and
# dropout from streams of their own (vidssl.seeds). A run resumed across a change trains on other batches or draws
# from there on, which the trainer says
BATCH_PLAN = 3


def epoch_batches(video: np.ndarray, track: np.ndarray, batch_pairs: int, seed: int, epoch: int) -> np.ndarray:
    """[N] video codes, [N] track codes -> [B, P] pair indices of one epoch, B = N // P (the rest is dropped)."""
    rng = np.random.default_rng([seed, epoch, _PLAN])
    n = video.size
    in_track = np.empty(n)
    for members in _groups(track):  # each track's pairs, shuffled, spread evenly over its video's share
        _spread(members, rng.random(members.size), rng, in_track)
    keys = np.empty(n)
    for members in _groups(video):  # each video's pairs, tracks interleaved, spread evenly over the epoch
        _spread(members, in_track[members], rng, keys)
    stream = np.lexsort((rng.random(n), keys))  # key order; ties broken at random
    return stream[:n // batch_pairs * batch_pairs].reshape(-1, batch_pairs).astype(np.int64)


def batches_per_epoch(num_pairs: int, batch_pairs: int, world: int = 1) -> int:
    """The batches an epoch is cut into: N // P, less the remainder of a division by ``world`` (see above)."""
    return num_pairs // batch_pairs // world * world


def too_few_pairs(num_pairs: int, batch_pairs: int) -> str:
    """What to tell a user whose ``num_pairs`` pairs do not fill one batch: a batch size they do fill (the largest
    power of two, at least the 2 a batch needs for a negative), or to mine more."""
    fix = "mine more videos"
    if num_pairs >= 2:
        fix = f"lower the batch (--set train.batch_pairs={1 << (num_pairs.bit_length() - 1)}) or {fix}"
    return f"{num_pairs} pairs, fewer than a batch of {batch_pairs}; {fix}"


def too_few_batches(num_pairs: int, batch_pairs: int, world: int) -> str:
    """What to tell a user whose pairs make fewer batches than the run has processes."""
    return (f"{num_pairs} pairs make {num_pairs // batch_pairs} batch(es) of {batch_pairs}, fewer than the {world} "
            f"processes that each take one a step; lower the batch (train.batch_pairs), run fewer processes or mine "
            f"more videos")


class PairBatchSampler(Sampler):
    """Yields, for steps ``start_step .. steps - 1``, lists of ``(pair_index, (seed, global_batch, slot))``: the
    second item seeds that pair's augmentation, so augmentation does not depend on worker scheduling."""

    def __init__(self, video: np.ndarray, track: np.ndarray, batch_pairs: int, seed: int, steps: int,
                 start_step: int = 0, rank: int = 0, world: int = 1) -> None:
        if track.size < batch_pairs:
            raise VidsslError(too_few_pairs(track.size, batch_pairs))
        if track.size // batch_pairs < world:
            raise VidsslError(too_few_batches(track.size, batch_pairs, world))
        self.video, self.track, self.batch_pairs, self.seed = video, track, batch_pairs, seed
        self.steps, self.start_step, self.rank, self.world = steps, start_step, rank, world
        self._epoch, self._batches = -1, np.zeros((0, batch_pairs), np.int64)

    def global_batch(self, g: int) -> np.ndarray:
        """[P] pair indices of global batch ``g``. Every epoch has :func:`batches_per_epoch` batches, so ``g``'s
        epoch is known without planning the ones before it (a resume deep into a run waits for one plan, not all);
        the current epoch's plan is cached."""
        per_epoch = batches_per_epoch(self.track.size, self.batch_pairs, self.world)  # >= 1: checked at __init__
        epoch = g // per_epoch
        if epoch != self._epoch:
            self._epoch = epoch
            self._batches = epoch_batches(self.video, self.track, self.batch_pairs, self.seed, epoch)
        return self._batches[g - epoch * per_epoch]

    def __len__(self) -> int:
        return max(0, self.steps - self.start_step)

    def __iter__(self) -> Iterator[list]:
        for step in range(self.start_step, self.steps):
            g = step * self.world + self.rank
            yield [(int(i), (self.seed, g, slot)) for slot, i in enumerate(self.global_batch(g))]
