"""Distances, per-triplet losses and reducers, composed by name from ``LossConfig``.

A triplet is three rows of the embedding batch: anchor ``a``, positive ``p`` and negative ``n``. Each loss is a
function of the three distances D(a, p), D(a, n), D(p, n) and returns one value per triplet, so the same function
scores every candidate in the miner (on distance matrices) and the selected triplets in the loss (on rows).

Adding a loss (say ``"mine"``): a class in this file, registered as ``LOSSES["mine"] = (MyLoss, "cosine")`` (its
standard distance, a key of DISTANCES), and the name added to ``LOSS_NAMES`` (and the ``loss.name`` help) in
vidssl/train_config.py, then ``python -m vidssl.config > configs/default.yaml``. The class provides:

- ``__init__(distance, margin, symmetric)``: build_loss passes a DISTANCES instance (``cfg.distance`` or the
  standard one), ``loss.margin`` and ``loss.symmetric``; keep them as the attributes ``distance`` and ``margin``:
  the miner scores candidates with ``distance.pairwise`` and MiningSchedule hands ``margin`` to every miner
  (SemiHardMiner's band);
- ``per_triplet(emb, t)``: [N, D] embeddings and a :class:`Triplets` -> [T] losses, one per triplet, attached to
  the graph; call :func:`check_embeddings` first. A reducer (REDUCERS) then turns them into the step's loss;
- ``negative_term(d_ap, d_an, d_pn)``: elementwise and broadcasting over distance tensors, the part of a
  triplet's loss that depends on its negative; vidssl.miners.score_candidates calls it with d_ap [P, 1] and
  d_an, d_pn [P, 2P], and > 0 means the candidate violates (what the hard and semi-hard miners keep).

A loss that is not a sum over single triplets (InfoNCE: a softmax over all of an anchor's negatives) does not fit
``per_triplet``; the training step (vidssl.train, ``per_triplet`` then the reducer) would have to change too.
A distance is a class with a no-argument constructor, ``rows(x, y)`` ([N, D], [N, D] -> [N]) and ``pairwise(x,
y)`` ([N, D], [M, D] -> [N, M]) that agree, registered in DISTANCES and DISTANCE_NAMES; a reducer is a function
``(values [T], triplets, capacity) -> scalar``, registered in REDUCERS and REDUCER_NAMES.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vidssl.train_config import LossConfig

_EPS = 1e-12  # under the square root of a Euclidean distance, so its gradient stays finite at zero distance


class CosineDistance:
    """D(x, y) = 1 - cos(x, y), in [0, 2] (the paper's distance)."""

    def rows(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """[N, D], [N, D] -> [N]."""
        return 1.0 - F.cosine_similarity(x, y, dim=1, eps=1e-8)

    def pairwise(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """[N, D], [M, D] -> [N, M]."""
        return 1.0 - F.normalize(x, dim=1) @ F.normalize(y, dim=1).T


class SquaredEuclidean:
    """D(x, y) = ||x - y||^2 (FaceNet)."""

    def rows(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (x - y).pow(2).sum(dim=1)

    def pairwise(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # the differences, not ||x||^2 + ||y||^2 - 2 x.y: that cancels in float32 far from the origin (0.19 off at
        # norms ~50 for distances ~0.1), and the miner would rank candidates by other distances than the loss's
        return torch.cdist(x, y, compute_mode="donot_use_mm_for_euclid_dist").pow(2)


class Euclidean:
    """D(x, y) = ||x - y|| (Hadsell et al.)."""

    def rows(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return SquaredEuclidean().rows(x, y).clamp_min(_EPS).sqrt()

    def pairwise(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return SquaredEuclidean().pairwise(x, y).clamp_min(_EPS).sqrt()


DISTANCES = {"cosine": CosineDistance, "sqeuclidean": SquaredEuclidean, "euclidean": Euclidean}


@dataclass(frozen=True)
class Triplets:
    """Indices into the embedding batch, each [T] int64: anchors, their positives and the mined negatives."""

    a: torch.Tensor
    p: torch.Tensor
    n: torch.Tensor

    def __post_init__(self) -> None:
        # indexing would broadcast a shorter tensor, or take the cosine over the wrong axis of a 2-D one
        for name in ("a", "p", "n"):
            t = getattr(self, name)
            if not isinstance(t, torch.Tensor) or t.ndim != 1 or t.dtype != torch.long:
                raise ValueError(f"Triplets.{name} must be a 1-D int64 tensor, got "
                                 f"{getattr(t, 'dtype', type(t).__name__)} of shape {tuple(getattr(t, 'shape', ()))}")
        if not len(self.a) == len(self.p) == len(self.n):
            raise ValueError(f"Triplets need as many anchors, positives and negatives, got {len(self.a)}, "
                             f"{len(self.p)} and {len(self.n)}")

    def __len__(self) -> int:
        return int(self.a.numel())


def check_embeddings(emb: torch.Tensor, t: Triplets | None = None) -> None:
    """Raise ValueError unless ``emb`` is a 2-D floating [N, D] tensor and every index of ``t`` is a row of it.

    Indexing an [N, 1, D] batch works and gives [T, 1, D] rows, whose distances come out [T, D]: a plausible
    wrong number after the reducer instead of an error. The bound check costs one sync of the indices (torch
    wraps negative indices silently, and an index past N is a device-side assert on CUDA)."""
    if not isinstance(emb, torch.Tensor) or emb.ndim != 2:
        got = list(emb.shape) if isinstance(emb, torch.Tensor) else type(emb).__name__
        raise ValueError(f"embeddings must be [N, D] (one row per patch), got {got}: flatten them")
    if not emb.is_floating_point():
        raise ValueError(f"embeddings must be a floating [N, D] tensor, got {emb.dtype}: cast them to float")
    if t is None or len(t) == 0:  # min/max of an empty tensor raise
        return
    lo, hi = torch.cat([t.a, t.p, t.n]).aminmax()
    lo, hi = torch.stack([lo, hi]).tolist()
    if lo < 0 or hi >= emb.shape[0]:
        raise ValueError(f"triplet indices must be rows 0..{emb.shape[0] - 1} of the [{emb.shape[0]}, "
                         f"{emb.shape[1]}] embeddings, got indices in [{lo}, {hi}]: mine them from this batch")


class HingeTripletLoss:
    """max(0, D(a, p) - D(a, n) + M); symmetric: the mean of that and max(0, D(a, p) - D(p, n) + M).

    With 1 - cos this is Wang & Gupta's ranking loss (the symmetric form is their released RankHardLoss, whose mean
    over 2 x triplets equals the mean of this per-triplet value); with squared L2 it is FaceNet's triplet loss.
    """

    def __init__(self, distance, margin: float, symmetric: bool) -> None:
        self.distance, self.margin, self.symmetric = distance, margin, symmetric

    def from_distances(self, d_ap: torch.Tensor, d_an: torch.Tensor, d_pn: torch.Tensor) -> torch.Tensor:
        """Elementwise (broadcasting) per-triplet loss."""
        first = F.relu(d_ap - d_an + self.margin)
        if not self.symmetric:
            return first
        return 0.5 * (first + F.relu(d_ap - d_pn + self.margin))

    # every term involves the negative: a candidate's whole loss is what a miner ranks it by
    negative_term = from_distances

    def per_triplet(self, emb: torch.Tensor, t: Triplets) -> torch.Tensor:
        """[N, D] embeddings, T triplets -> [T] losses."""
        check_embeddings(emb, t)
        d = self.distance.rows
        return self.from_distances(d(emb[t.a], emb[t.p]), d(emb[t.a], emb[t.n]), d(emb[t.p], emb[t.n]))


class ContrastiveLoss:
    """Hadsell et al. (2006) on the triplet's pairs: D(a, p)^2 / 2 + max(0, M - D(a, n))^2 / 2;
    symmetric: the negative term is the mean of the (a, n) and (p, n) terms.

    The pull on a positive pair lives in its triplets: a miner that keeps only violating negatives (hard,
    semihard) leaves a pair whose negatives are all beyond the margin without it, so the config (Config.validate)
    requires each pair's background triplet (always kept) or the random miner with this loss."""

    def __init__(self, distance, margin: float, symmetric: bool) -> None:
        self.distance, self.margin, self.symmetric = distance, margin, symmetric

    def from_distances(self, d_ap: torch.Tensor, d_an: torch.Tensor, d_pn: torch.Tensor) -> torch.Tensor:
        pull = 0.5 * d_ap.pow(2)
        push = 0.5 * F.relu(self.margin - d_an).pow(2)
        if self.symmetric:
            push = 0.5 * (push + 0.5 * F.relu(self.margin - d_pn).pow(2))
        return pull + push

    def negative_term(self, d_ap: torch.Tensor, d_an: torch.Tensor, d_pn: torch.Tensor) -> torch.Tensor:
        """The push term alone: the pull term is the same for every candidate of a pair, so a miner that ranked
        by the whole loss would call every candidate a violator."""
        return self.from_distances(torch.zeros_like(d_ap), d_an, d_pn)

    per_triplet = HingeTripletLoss.per_triplet


LOSSES = {  # name -> (class, its standard distance)
    "ranking": (HingeTripletLoss, "cosine"),
    "triplet": (HingeTripletLoss, "sqeuclidean"),
    "contrastive": (ContrastiveLoss, "euclidean"),
}


def dense_cycle_loss(anchor: torch.Tensor, positive: torch.Tensor, anchor_rolled: torch.Tensor,
                     shift: tuple[int, int], temperature: float, extra: torch.Tensor | None = None) -> torch.Tensor:
    """Cycle consistency through time on the dense maps of each pair, scored against a known correspondence.

    anchor, positive, anchor_rolled: [P, C, h, w]; ``anchor_rolled`` is the map of the anchor patch rolled (with
    wrap-around) by ``shift`` = (dy, dx) cells before the network, so the content of anchor cell (r, c) sits at cell
    ((r + dy) mod h, (c + dx) mod w) of it. Every anchor cell walks to the positive (30 frames later) with
    probabilities softmax(cos / temperature) over its cells, and from there to the rolled anchor the same way; the
    loss is the mean of -log(probability of arriving at the cell that holds the starting content): log N for
    features that cannot tell the N = h w cells apart, 0 for a one-to-one matching by content. Returning to the
    unrolled anchor (a two-step palindrome) is solved by any one-to-one matching, including one by position in the
    patch; the roll moves content but not the patch borders, so only matching by content arrives. What it trains is
    what label propagation does: find each cell's counterpart in a later frame, distinct from its neighbours. The
    trainer averages it over both directions (first -> last -> rolled first, last -> first -> rolled last).

    extra: [P, C, h', w'] or None; more cells the first step may walk into (the trainer passes the pair's
    same-frame background patch, loss.cycle_background). A walk that enters one continues to the rolled anchor like
    any other, so a background cell that holds anchor content (the boxes may overlap) is as good a stop as its
    counterpart in the positive, and one that holds only scene leads the walk astray.
    """
    P, _, h, w = anchor.shape
    a, b, r = (F.normalize(m.flatten(2).float(), dim=1) for m in (anchor, positive, anchor_rolled))  # [P, C, N]
    if extra is not None:  # its cells become stops of the first step, beside the positive's: M = N + h' w'
        b = torch.cat([b, F.normalize(extra.flatten(2).float(), dim=1)], dim=2)
    # in log space throughout: a walk sure of a wrong cell arrives with a probability far under float32's
    # smallest, and its loss and gradient must still say how wrong it is
    log_to_positive = (a.transpose(1, 2) @ b / temperature).log_softmax(dim=2)  # [P, N, M]
    log_to_rolled = (b.transpose(1, 2) @ r / temperature).log_softmax(dim=2)  # [P, M, N]
    rows, cols = torch.meshgrid(torch.arange(h, device=anchor.device), torch.arange(w, device=anchor.device),
                                indexing="ij")
    target = (((rows + shift[0]) % h) * w + (cols + shift[1]) % w).flatten()  # [N]
    # log P(anchor cell i arrives at target[i]) = logsumexp over stops j of log p(i -> j) + log p(j -> target[i])
    log_arrived = (log_to_positive + log_to_rolled[:, :, target].transpose(1, 2)).logsumexp(dim=2)  # [P, N]
    return -log_arrived.mean()


def reduce_mean(values: torch.Tensor, t: Triplets, capacity: int) -> torch.Tensor:
    """Mean over the mined triplets (0, still attached to the graph, when there are none)."""
    return values.sum() / max(values.numel(), 1)


def reduce_mean_active(values: torch.Tensor, t: Triplets, capacity: int) -> torch.Tensor:
    """Mean over the triplets with a non-zero loss (0 when none is active)."""
    return values.sum() / (values > 0).sum().clamp_min(1)


def reduce_fixed(values: torch.Tensor, t: Triplets, capacity: int) -> torch.Tensor:
    """Sum over the mined triplets divided by ``capacity``, what the miner could return at most, as in the
    released RankHardLoss: a batch with few violators gives a small step instead of a magnified one. The trainer
    passes P x K, or P x (K + 1) with miner.background_negatives (each pair's own background is one more)."""
    return values.sum() / capacity


def reduce_per_pair(values: torch.Tensor, t: Triplets, capacity: int) -> torch.Tensor:
    """Mean over each anchor's negatives, then over the anchors that have any."""
    if values.numel() == 0:
        return values.sum()
    anchors, inverse = torch.unique(t.a, return_inverse=True)
    sums = torch.zeros(len(anchors), dtype=values.dtype, device=values.device).index_add(0, inverse, values)
    counts = torch.bincount(inverse, minlength=len(anchors)).to(values.dtype)
    return (sums / counts).mean()


REDUCERS = {"mean": reduce_mean, "mean_active": reduce_mean_active, "fixed": reduce_fixed,
            "per_pair": reduce_per_pair}


def build_loss(cfg: LossConfig):
    """The per-triplet loss named by ``cfg`` (its ``distance`` attribute is what the miner scores with)."""
    cfg.validate()  # built in code: an unknown name is a ConfigError naming the key, not a KeyError
    cls, standard = LOSSES[cfg.name]
    return cls(DISTANCES[cfg.distance or standard](), cfg.margin, cfg.symmetric)


def build_reducer(cfg: LossConfig):
    cfg.validate()
    return REDUCERS[cfg.reducer]
