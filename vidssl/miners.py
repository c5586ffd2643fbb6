"""Negative mining over a batch of P positive pairs, and the schedule that switches miners.

The batch's embeddings are ``[2P, D]``: rows ``0..P-1`` are anchors, row ``P + i`` is anchor ``i``'s positive.
A candidate negative of pair ``i`` is any row of another pair from a different video (or, when allowed, of another
track of the same video). With background patches the batch is ``[3P, D]`` and row ``2P + i`` is pair ``i``'s
same-frame background: it is a negative of pair ``i`` only, added to what the miner picks (:func:`with_backgrounds`).
A miner's ``select`` marks the chosen negatives of every pair among the 2P candidates as a ``[P, 2P]`` boolean
mask; :meth:`MiningSchedule.mine` runs it under ``no_grad`` and turns it into validated
:class:`~vidssl.losses.Triplets` (anchor, positive, negative index tensors), backgrounds added.

Adding a miner (say ``"mine"``): a class in this file, registered as ``MINERS["mine"] = MyMiner``, and the name
added to ``MINER_NAMES`` in vidssl/train_config.py (miner.warmup and miner.main take any of them), then
``python -m vidssl.config > configs/default.yaml``. The class provides:

- ``__init__(k, hard_ratio, margin, **_)``: MiningSchedule passes every miner the same keywords,
  ``k=miner.negatives_per_pair``, ``hard_ratio=miner.hard_ratio`` and ``margin=loss.margin``; take ``**_`` for
  those it does not use (a new setting: a MinerConfig field, added to those keywords);
- ``select(s, g)``: a :class:`Scores` and a torch.Generator -> a [P, 2P] bool mask of the chosen negatives of
  each pair, at most ``k`` a pair (the fixed reducer divides by P x K) and only where ``s.valid``
  (validate_triplets refuses any other). Draw every random number from ``g``: it is seeded by (seed, step,
  rank), so a resumed run mines as an uninterrupted one.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from vidssl.losses import Triplets, check_embeddings
from vidssl.seeds import Stream, step_generator
from vidssl.train_config import MinerConfig

log = logging.getLogger(__name__)


@dataclass
class Scores:
    """What every miner looks at, for P pairs and 2P candidates (all [P, 2P] except d_ap [P])."""

    d_ap: torch.Tensor  # D(anchor_i, positive_i)
    d_an: torch.Tensor  # D(anchor_i, candidate_c)
    loss: torch.Tensor  # the candidate's part of the loss of (anchor_i, positive_i, candidate_c): the whole
    # per-triplet loss for hinge losses, the push term for contrastive (loss.negative_term); > 0 means "violates"
    valid: torch.Tensor  # bool: candidate c may be a negative of pair i


def candidate_mask(groups: torch.Tensor) -> torch.Tensor:
    """[P] group codes -> [P, 2P] bool: candidate c may be a negative of pair i when it is from another group.

    Groups are videos by default; with ``miner.same_video_negatives`` they are tracks (one tracker's pairs overlap
    in time, so they are never each other's negatives). Either way a pair is never its own negative. Tracks are not
    objects: a tracker ends after ``mine.track_span`` frames or on a failure, and motion may find the same object
    again as a new track, whose pairs are then negatives of the old one's (on the 9 real clips, 7 of 22 tracks
    starting within 40 frames of another's end overlap its last box by IoU > 0.3): why it is off by default."""
    return groups.repeat(2)[None, :] != groups[:, None]


@torch.no_grad()
def score_candidates(emb: torch.Tensor, groups: torch.Tensor, loss) -> Scores:
    """[2P, D] embeddings, [P] group codes (see candidate_mask) -> every candidate's distance and loss."""
    check_embeddings(emb)
    P = groups.numel()
    if emb.shape[0] != 2 * P:  # P = N // 2 would drop a row, or candidate_mask would not fit the distances
        raise ValueError(f"embeddings must be [2P, D] = [{2 * P}, D] for {P} group codes (anchors, then "
                         f"positives), got {list(emb.shape)}")
    emb = emb.detach().float()
    d_anchor = loss.distance.pairwise(emb[:P], emb)
    d_pos = loss.distance.pairwise(emb[P:], emb)
    idx = torch.arange(P, device=emb.device)
    d_ap = d_anchor[idx, P + idx]
    values = loss.negative_term(d_ap[:, None], d_anchor, d_pos)
    return Scores(d_ap=d_ap, d_an=d_anchor, loss=values, valid=candidate_mask(groups))


def _pick(mask: torch.Tensor, scores: torch.Tensor, k: int) -> torch.Tensor:
    """[P, C] bool, [P, C] float -> [P, C] bool: in each row, the (up to) k entries of ``mask`` that score highest."""
    out = torch.zeros_like(mask)
    k = min(k, mask.shape[1])
    if k <= 0:
        return out
    top = scores.masked_fill(~mask, float("-inf")).topk(k, dim=1).indices
    return out.scatter(1, top, True) & mask


def _uniform(shape: torch.Size, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(shape, generator=generator).to(device)


class RandomMiner:
    """K candidates per pair, uniformly at random, whether they violate the margin or not."""

    def __init__(self, k: int, **_: object) -> None:
        self.k = k

    def select(self, s: Scores, g: torch.Generator) -> torch.Tensor:
        return _pick(s.valid, _uniform(s.valid.shape, g, s.valid.device), self.k)


class HardMiner:
    """After Wang & Gupta's released RankHardLoss: among candidates with a non-zero loss, take
    ``K * hard_ratio`` (rounded half up: one of K = 1 at 0.5) at random from the K with the highest loss, and the
    rest at random from the remaining violators (all violators when there are at most K). Non-violating candidates
    are never taken. Unlike the released code, which keeps a candidate only when the anchor's hinge is violated and
    ranks by the anchor's similarity, a candidate violating either hinge of the symmetric loss counts, ranked by
    that whole loss."""

    def __init__(self, k: int, hard_ratio: float = 1.0, **_: object) -> None:
        self.k, self.num_hard = k, math.floor(k * hard_ratio + 0.5)  # round() takes halves to even: 0 of 1

    def select(self, s: Scores, g: torch.Generator) -> torch.Tensor:
        violators = s.valid & (s.loss > 0)
        hardest = _pick(violators, s.loss, self.k)
        hard = _pick(hardest, _uniform(s.loss.shape, g, s.loss.device), self.num_hard)
        rest = _pick(violators & ~hard, _uniform(s.loss.shape, g, s.loss.device), self.k - self.num_hard)
        return hard | rest


class SemiHardMiner:
    """FaceNet's semi-hard negatives: farther from the anchor than the positive but within the margin,
    D(a, p) < D(a, n) < D(a, p) + M, and violating; K of them at random per pair. The band is tested directly:
    with the symmetric loss (or contrastive) a candidate outside it can still have a non-zero loss."""

    def __init__(self, k: int, margin: float = 0.5, **_: object) -> None:
        self.k, self.margin = k, margin

    def select(self, s: Scores, g: torch.Generator) -> torch.Tensor:
        d_ap = s.d_ap[:, None]
        semi = s.valid & (s.d_an > d_ap) & (s.d_an < d_ap + self.margin) & (s.loss > 0)
        return _pick(semi, _uniform(semi.shape, g, semi.device), self.k)


MINERS = {"random": RandomMiner, "hard": HardMiner, "semihard": SemiHardMiner}


def to_triplets(selected: torch.Tensor) -> Triplets:
    """[P, 2P] bool selection -> triplets in row-major (anchor, candidate) order."""
    P = selected.shape[0]
    a, n = selected.nonzero(as_tuple=True)
    return Triplets(a=a, p=a + P, n=n)


def with_backgrounds(t: Triplets, P: int) -> Triplets:
    """The mined triplets plus (i, P + i, 2P + i) for every pair i: each pair's own background as a negative."""
    i = torch.arange(P, device=t.a.device)
    return Triplets(a=torch.cat([t.a, i]), p=torch.cat([t.p, i + P]), n=torch.cat([t.n, i + 2 * P]))


def validate_triplets(t: Triplets, groups: torch.Tensor, backgrounds: bool = False) -> None:
    """Raise ValueError unless every triplet is (anchor i, its positive P+i, a valid candidate of pair i), or with
    ``backgrounds`` also (anchor i, P+i, its background 2P+i)."""
    P = groups.numel()  # the index tensors' shapes and dtypes are checked by Triplets itself
    if len(t) == 0:
        return
    own_background = t.n == t.a + 2 * P if backgrounds else torch.zeros_like(t.n, dtype=torch.bool)
    if P > 0:  # without pairs no triplet is valid: the rules below say which one fails
        # every rule in one tensor and one bool(): each bool() of a CUDA tensor waits for the GPU, once a step here
        # instead of five; the indices are clamped for the lookup so that an out-of-range one fails the range
        # rules, not the indexing (on CUDA a device-side assert that ends the process)
        rows_ok = (t.a >= 0) & (t.a < P) & (t.p == t.a + P)
        negatives_ok = (t.n >= 0) & ((t.n < 2 * P) | own_background)
        allowed = candidate_mask(groups)[t.a.clamp(0, P - 1), t.n.clamp(0, 2 * P - 1)] | own_background
        if bool((rows_ok & negatives_ok & allowed).all()):
            return
    if t.a.min() < 0 or t.a.max() >= P or not torch.equal(t.p, t.a + P):
        raise ValueError("anchors must be rows 0..P-1 and each positive its anchor's row + P")
    mined = ~own_background
    if t.n.min() < 0 or bool((t.n[mined] >= 2 * P).any()):
        raise ValueError(f"negative rows must be in [0, {2 * P})" + (" or the anchor's background" if backgrounds
                                                                     else ""))
    if not bool(candidate_mask(groups)[t.a[mined], t.n[mined]].all()):
        raise ValueError("a negative comes from the anchor's own group (its video, or its track)")


def neg_cosine(emb: torch.Tensor, valid: torch.Tensor) -> float:
    """Mean cosine between each anchor and all its candidate negatives: the collapse signal (rises to 1)."""
    P = emb.shape[0] // 2
    e = F.normalize(emb.detach().float(), dim=1)
    cos = e[:P] @ e.T
    return float(cos[valid].mean()) if bool(valid.any()) else float("nan")


def main_miner_start(hard_start: float, total_steps: int) -> int:
    """The step the main miner starts at in a run of ``total_steps`` (``miner.hard_start`` of them)."""
    return int(round(hard_start * total_steps))


class MiningSchedule:
    """`warmup` miner for the first ``hard_start`` of the steps, then `main`; the collapse guard switches back to
    `warmup` on any step where the running mean negative cosine is above ``guard_neg_cos``.

    Mining randomness is drawn from a generator seeded by (seed, step), so a resumed run mines exactly as an
    uninterrupted one; the guard's running mean is the only state (see state_dict).
    """

    def __init__(self, cfg: MinerConfig, loss, total_steps: int, seed: int,
                 average: Callable[[float], float] = lambda value: value, rank: int = 0, world: int = 1) -> None:
        # ``average``: the mean of a float over the processes of a DDP run (NaN where a process has none), so every
        # process feeds the guard the same batch-wide value and takes the same phase
        cfg.validate()  # built in code: an unknown miner is a ConfigError naming the key, not a KeyError
        self.cfg, self.loss, self.seed, self.average = cfg, loss, seed, average
        self.rank, self.world = rank, world
        self.hard_from = self.hard_start_step(total_steps)
        kw = {"k": cfg.negatives_per_pair, "hard_ratio": cfg.hard_ratio, "margin": loss.margin}
        self.warmup, self.main = MINERS[cfg.warmup](**kw), MINERS[cfg.main](**kw)
        if cfg.guard and cfg.warmup == cfg.main and rank == 0:
            log.warning("miner.guard backs off to miner.warmup, which is miner.main (%s): the guard changes nothing; "
                        "set miner.warmup to random, or miner.guard=false", cfg.main)
        self.neg_cos_ema: float | None = None
        self.neg_cos = float("nan")  # the last step's batch-wide value (what the running mean took in)

    def hard_start_step(self, total_steps: int) -> int:
        """The step the main miner starts at in a run of ``total_steps``."""
        return main_miner_start(self.cfg.hard_start, total_steps)

    def set_total(self, total_steps: int) -> None:
        """A new step count (fitted to a budget): the main miner starts at the same share of it."""
        self.hard_from = self.hard_start_step(total_steps)

    def phase(self, step: int) -> str:
        """'warmup', 'main', or 'guard' (main phase, backed off to the warmup miner)."""
        if step < self.hard_from:
            return "warmup"
        guarded = self.cfg.guard and self.neg_cos_ema is not None and self.neg_cos_ema > self.cfg.guard_neg_cos
        return "guard" if guarded else "main"

    @torch.no_grad()
    def mine(self, emb: torch.Tensor, groups: torch.Tensor, step: int) -> tuple[Triplets, Scores, str]:
        """[2P, D] (or [3P, D] with backgrounds) embeddings, [P] group codes (see candidate_mask) -> triplets, the
        candidate scores, and the phase used. Backgrounds are not candidates: each joins its own pair's triplets."""
        P = groups.numel()
        backgrounds = emb.shape[0] == 3 * P
        if not backgrounds and emb.shape[0] != 2 * P:
            raise ValueError(f"expected 2P or 3P = {2 * P} or {3 * P} embeddings for {P} pairs, got {emb.shape[0]}")
        pairs_emb = emb[:2 * P]
        s = score_candidates(pairs_emb, groups, self.loss)
        neg_cos = self.neg_cos = self.average(neg_cosine(pairs_emb, s.valid))
        m = self.cfg.guard_momentum
        if neg_cos == neg_cos:  # not NaN (a batch without candidates leaves the running mean alone)
            self.neg_cos_ema = neg_cos if self.neg_cos_ema is None else m * self.neg_cos_ema + (1 - m) * neg_cos
        phase = self.phase(step)
        # each process its own draws (as augmentation and dropout): with (seed, step) alone every rank picked the
        # same slots of its own batch
        g = step_generator(Stream.MINING, self.seed, step, self.rank)
        miner = self.main if phase == "main" else self.warmup
        t = to_triplets(miner.select(s, g))
        if backgrounds:
            t = with_backgrounds(t, P)
        validate_triplets(t, groups, backgrounds)
        return t, s, phase

    def state_dict(self) -> dict:
        return {"neg_cos_ema": self.neg_cos_ema}

    def load_state_dict(self, state: dict) -> None:
        self.neg_cos_ema = state["neg_cos_ema"]
