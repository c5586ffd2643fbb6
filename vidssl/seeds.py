"""Seeds of the trainer's per-step draws, one stream per use, each a function of (seed, step, rank) alone, so a
resumed run draws what an uninterrupted one would.

Linear formulas (``seed * 1_000_003 + step * world + rank``, the same plus a constant for another use) made the
streams overlap: the cycle's roll at step t drew the numbers of the mining at step t + 7919, and the model's
initial weights (seeded ``seed``) those of the mining at step 0 of seed 0. Hashing the words together
(numpy's SeedSequence) keeps every (use, seed, step, rank) apart.
"""
from __future__ import annotations

import enum

import numpy as np
import torch


class Stream(enum.IntEnum):
    """What a seed is drawn for; the value is the first word hashed, so it must never change."""

    MINING = 1  # the miner's random picks (vidssl.miners.MiningSchedule)
    CYCLE_ROLL = 2  # the roll of the cycle loss's copy (vidssl.train.cycle_shift)
    DROPOUT = 3  # torch's global generator during a step (dropout masks)


def step_seed(stream: Stream, seed: int, step: int, rank: int = 0) -> int:
    """A 63-bit seed for ``stream`` at ``step`` of process ``rank`` of a run seeded ``seed``."""
    words = np.random.SeedSequence([int(stream), seed, step, rank]).generate_state(2, np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


def step_generator(stream: Stream, seed: int, step: int, rank: int = 0) -> torch.Generator:
    """A CPU generator seeded by :func:`step_seed`."""
    return torch.Generator().manual_seed(step_seed(stream, seed, step, rank))
