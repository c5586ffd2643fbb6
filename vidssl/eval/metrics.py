"""Retrieval metrics over a chunked cosine kNN, plus k-means clustering and NMI.

Definitions follow pytorch-metric-learning's ``AccuracyCalculator`` (Musgrave, Belongie, Lim, "A Metric Learning
Reality Check", ECCV 2020), generalised to a per-query set of *allowed* references:

- a reference is allowed for query q unless an exclusion rule forbids it (a query never retrieves itself; on DAVIS,
  frames of the same sequence closer than ``min_gap`` are forbidden too);
- ``R_q`` = number of allowed references sharing q's label; queries with ``R_q = 0`` ("lone" queries) are left out
  of every kNN metric, as AccuracyCalculator does;
- precision@1: the nearest allowed reference shares the label;
- Recall@K: any of the K nearest allowed references shares the label (the deep-metric-learning "recall");
- R-precision: share of the R_q nearest that are relevant;
- MAP@R: ``(1/R_q) * sum_{i<=R_q} P(i) * rel(i)`` with P(i) the precision of the first i neighbours;
- NMI: k-means with k = number of classes (fixed seed) on the L2-normalised embeddings, arithmetic-mean
  normalised mutual information (scikit-learn's default, which AccuracyCalculator calls).

Memory is O(N * k + chunk): similarities are computed for a block of query rows at a time and every per-query
metric is reduced inside the block, so the N x N matrix never exists.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

RECALL_KS = (1, 2, 4, 8)

# (first query row, end row) -> bool [end - start, N_ref]; True marks references that query may not retrieve.
ExcludeFn = Callable[[int, int], torch.Tensor]


def exclude_same_group_within(groups, times, min_gap: int) -> ExcludeFn:
    """Query i may not retrieve j when ``groups[i] == groups[j]`` and ``|times[i] - times[j]| < min_gap``.

    ``groups``/``times``: [N] integers (e.g. sequence index, frame index); query set == reference set. With
    ``min_gap >= 1`` this also excludes the query itself.
    """
    if min_gap < 1:
        raise ValueError(f"min_gap must be >= 1 so a query never retrieves itself, got {min_gap}")
    g = torch.as_tensor(np.asarray(groups), dtype=torch.long)
    times = np.asarray(times)
    # one int32 [B, N] difference, its absolute value taken in place (two int64 ones had doubled a block's memory
    # over what _rows_per_chunk budgets for chunk_mb)
    wide = times.size and np.abs(times.astype(np.int64)).max() >= 2**30
    t = torch.as_tensor(times, dtype=torch.long if wide else torch.int32)

    def fn(start: int, end: int) -> torch.Tensor:
        same = g[start:end].unsqueeze(1) == g.unsqueeze(0)
        gap = t[start:end].unsqueeze(1) - t.unsqueeze(0)
        near = gap.abs_() < min_gap
        del gap
        return same & near

    return fn


def non_finite_rows(x: torch.Tensor) -> int:
    """How many rows of [N, D] ``x`` hold NaN or infinity."""
    return int((~torch.isfinite(x)).any(dim=1).sum()) if x.numel() else 0


def _rows_per_chunk(n_ref: int, chunk_mb: float, top_k: int = 0, exclusion: bool = False) -> int:
    # a block holds ~24 bytes per [rows, n_ref] entry: the float64 product, its float32 copy, label equality and
    # scratch; an exclusion rule ~12 more (its int32 time difference and three masks: measured, 1.45x the memory of
    # a block without one at 24); scoring its top-k (k up to the largest class) ~48 more per [rows, k] entry
    # (indices, relevance, float64 cumsum, precisions and their product): one class of most of the set made k ~ n_ref
    # and tripled the memory a chunk_mb allowed
    per_entry = 36 if exclusion else 24
    return max(1, int(chunk_mb * 2**20) // (per_entry * max(n_ref, 1) + 48 * top_k))


def _similarity_blocks(query: torch.Tensor, reference: torch.Tensor, self_match: bool, exclude: ExcludeFn | None,
                       chunk_mb: float, top_k: int = 0):
    """Yield ``(start, end, sims [B, N_ref], excluded [B, N_ref] bool or None)`` over blocks of query rows.

    Forbidden pairs get similarity -inf: the query itself when ``self_match`` (query i is reference i), and
    whatever ``exclude`` marks; ``excluded`` is the union of both, or None when there is no ``exclude`` rule.

    The products are taken in float64 and rounded to a fixed grid of 2^-24: a GEMM's last bits depend on the
    block's shape, which would reorder near-ties (flat crops of different brightness) with ``chunk_mb``. The grid is
    absolute, not float32's relative one: an exact 0 by cancellation came out as +-1e-17, which float32 keeps.
    """
    for name, x in (("query", query), ("reference", reference)):
        bad = non_finite_rows(x)
        if bad:
            raise ValueError(f"{bad} of the {len(x)} {name} embeddings hold NaN or infinity (broken weights?); "
                             "a non-finite embedding would rank arbitrarily")
    q = F.normalize(query.double(), dim=1)
    r = q if reference is query else F.normalize(reference.double(), dim=1)  # one float64 copy (8x float32's) not two
    rows = _rows_per_chunk(len(r), chunk_mb, top_k, exclusion=exclude is not None)
    for start in range(0, len(q), rows):
        end = min(start + rows, len(q))
        sims = _on_grid(q[start:end] @ r.T)
        excluded = None
        if exclude is not None:
            excluded = exclude(start, end).to(sims.device)
            sims.masked_fill_(excluded, -math.inf)
        if self_match:
            # an index write, not a dense mask: the common no-rule case stays a matmul plus a top-k
            own = torch.arange(end - start, device=sims.device)
            sims[own, own + start] = -math.inf
            if excluded is not None:
                excluded[own, own + start] = True
        yield start, end, sims, excluded


GRID = 2.0 ** -24  # float32's spacing just below 1: a cosine on it is exact in float32 (beyond 1, still one value)


def _on_grid(x: torch.Tensor, grid: float = GRID) -> torch.Tensor:
    """float64 ``x`` (a fresh tensor: rounded in place) to the nearest multiple of ``grid``, as float32."""
    return x.div_(grid).round_().mul_(grid).float()


def tie_order(n: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """[n] the order in which equal similarities rank: a permutation of the reference indices fixed by seed 0."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(0)).to(device)


def _topk(sims: torch.Tensor, k: int, order: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of each row, padded to k columns; index -1 where no allowed reference is left.

    Equal similarities rank in ``order`` (:func:`tie_order`): ``torch.topk`` breaks ties arbitrarily (and
    differently for different block sizes), and duplicate images or flat crops tie exactly, so the metrics would
    depend on ``chunk_mb``. A fixed permutation rather than the reference index: a collapsed model (every
    similarity equal) on a folder sorted by class ranked each query's own class first, and scored MAP@R 0.033 on the
    CUB subset where a shuffled copy gave 0.006. Rows with a tie among their top k + 1 are re-ranked with a stable
    sort; the rest keep top-k's linear cost.
    """
    kk = min(k, sims.shape[1])
    probe = min(kk + 1, sims.shape[1])  # one more place: a tie across the k-th one decides who is in
    values, indices = torch.topk(sims, probe, dim=1)
    tied = ((values[:, 1:] == values[:, :-1]) & torch.isfinite(values[:, 1:])).any(dim=1)
    if bool(tied.any()):
        rows = tied.nonzero().squeeze(1)
        v, i = torch.sort(sims[rows][:, order], dim=1, descending=True, stable=True)
        values[rows], indices[rows] = v[:, :probe], order[i[:, :probe]]
    values, indices = values[:, :kk], indices[:, :kk]
    if kk < k:
        values = F.pad(values, (0, k - kk), value=-math.inf)
        indices = F.pad(indices, (0, k - kk), value=-1)
    indices = indices.masked_fill(values == -math.inf, -1)
    return values, indices


@dataclass
class Neighbours:
    """The k nearest allowed references of each query, most similar first."""

    sims: torch.Tensor  # [Q, k] cosine similarity; -inf where fewer than k references are allowed
    indices: torch.Tensor  # [Q, k] reference index; -1 where padded


def knn(query: torch.Tensor, reference: torch.Tensor | None, k: int, exclude: ExcludeFn | None = None,
        chunk_mb: float = 256) -> Neighbours:
    """Cosine kNN of ``query`` [Q, D] among ``reference`` [N, D] (None: the queries themselves, self excluded)."""
    self_match = reference is None
    reference = query if self_match else reference
    sims, indices = [], []
    order = tie_order(len(reference), query.device)
    for _, _, block, _ in _similarity_blocks(query, reference, self_match, exclude, chunk_mb):
        v, i = _topk(block, k, order)
        sims.append(v)
        indices.append(i)
    return Neighbours(torch.cat(sims), torch.cat(indices))


@dataclass
class RetrievalScores:
    """Means over the non-lone queries. ``neighbours`` keeps the top ``keep`` of every query (for figures).
    ``map_at_r_per_label``: MAP@R over each label's non-lone queries, per label id (a mean over few labels can hide
    one that fails: one track of seven scoring 0 moves the mean by 0.14)."""

    precision_at_1: float
    recall_at_k: dict[str, float]
    r_precision: float
    map_at_r: float
    nmi: float | None
    num_queries: int
    lone_queries: int
    neighbours: Neighbours | None = field(default=None, repr=False)
    map_at_r_per_label: dict[int, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"precision_at_1": self.precision_at_1, "recall_at_k": dict(self.recall_at_k),
                "r_precision": self.r_precision, "map_at_r": self.map_at_r, "nmi": self.nmi,
                "num_queries": self.num_queries, "lone_queries": self.lone_queries}


def _labels(labels, device: torch.device) -> torch.Tensor:
    """Integer labels from a tensor (any device), an array or a list -> [N] long on ``device``."""
    if isinstance(labels, torch.Tensor):
        return labels.to(device=device, dtype=torch.long)
    return torch.as_tensor(np.asarray(labels), dtype=torch.long, device=device)


def _label_counts(query_labels: torch.Tensor, reference_labels: torch.Tensor) -> torch.Tensor:
    """[Q] number of references carrying each query's label."""
    values, counts = torch.unique(reference_labels, return_counts=True)
    pos = torch.searchsorted(values, query_labels).clamp(max=max(len(values) - 1, 0))
    found = values[pos] == query_labels if len(values) else torch.zeros_like(query_labels, dtype=torch.bool)
    return torch.where(found, counts[pos] if len(values) else 0, 0)


def retrieval_metrics(query: torch.Tensor, query_labels, reference: torch.Tensor | None = None,
                      reference_labels=None, exclude: ExcludeFn | None = None, *, chunk_mb: float = 256,
                      with_nmi: bool = True, seed: int = 0, kmeans_iters: int = 100,
                      keep: int = 0) -> RetrievalScores:
    """Precision@1, Recall@{1,2,4,8}, R-precision, MAP@R and NMI of ``query`` [Q, D] against ``reference`` [N, D].

    ``reference=None``: every query against all the others (the query set is the reference set and a query never
    retrieves itself). ``exclude`` forbids further (query, reference) pairs. Labels: [Q] / [N] integers. NMI
    clusters the queries (plus the references when they are a separate set) into as many clusters as they have
    labels. ``keep``: also return the ``keep`` nearest neighbours of every query.
    """
    q_labels = _labels(query_labels, query.device)
    if len(q_labels) != len(query):
        raise ValueError(f"{len(query)} query embeddings but {len(q_labels)} labels")
    self_match = reference is None
    if self_match:
        reference, r_labels = query, q_labels
    else:
        r_labels = _labels(reference_labels, query.device)
        if len(r_labels) != len(reference):
            raise ValueError(f"{len(reference)} reference embeddings but {len(r_labels)} labels")

    # R_q before exclusion rules; also the bound that sizes each block's top-k
    r_all = _label_counts(q_labels, r_labels) - int(self_match)
    k_min = max(max(RECALL_KS), keep)
    hits = {"p1": 0.0, "rp": 0.0, "map": 0.0, **{str(k): 0.0 for k in RECALL_KS}}
    n_valid = 0
    kept_sims, kept_idx = [], []
    query_aps, query_ap_labels = [], []  # each scored query's AP@R and label, per block: MAP@R per label
    order = tie_order(len(reference), query.device)
    k_bound = max(k_min, int(r_all.max()) if len(r_all) else 0)  # exclusion rules only lower R_q
    for start, end, sims, excluded in _similarity_blocks(query, reference, self_match, exclude, chunk_mb, k_bound):
        labels = q_labels[start:end]
        if excluded is None:
            r = r_all[start:end]
        else:
            r = ((labels.unsqueeze(1) == r_labels.unsqueeze(0)) & ~excluded).sum(1)
        k = max(k_min, int(r.max()) if len(r) else 0)
        values, indices = _topk(sims, k, order)
        if keep:
            kept_sims.append(values[:, :keep])
            kept_idx.append(indices[:, :keep])
        rel = (r_labels[indices.clamp(min=0)] == labels.unsqueeze(1)) & (indices >= 0)  # [B, k]
        valid = r > 0
        rel, r, labels = rel[valid], r[valid], labels[valid]
        n_valid += int(valid.sum())
        rank = torch.arange(1, k + 1, device=rel.device)
        rel_r = (rel & (rank.unsqueeze(0) <= r.unsqueeze(1))).double()  # relevant and within the first R_q
        hits["p1"] += float(rel[:, 0].sum())
        for kk in RECALL_KS:
            hits[str(kk)] += float(rel[:, :kk].any(1).sum())
        hits["rp"] += float((rel_r.sum(1) / r).sum())
        precision_at_i = rel.double().cumsum(1) / rank
        ap = (precision_at_i * rel_r).sum(1) / r  # [B'] each query's AP@R
        hits["map"] += float(ap.sum())
        query_aps.append(ap)
        query_ap_labels.append(labels)

    mean = (lambda key: hits[key] / n_valid) if n_valid else (lambda key: math.nan)
    nmi_value = None
    if with_nmi:
        emb = query if self_match else torch.cat([query, reference])
        labels = q_labels if self_match else torch.cat([q_labels, r_labels])
        n_classes = int(torch.unique(labels).numel())
        clusters = kmeans(F.normalize(emb.float(), dim=1), n_classes, seed=seed, iters=kmeans_iters,
                          chunk_mb=chunk_mb)
        nmi_value = nmi(labels.cpu().numpy(), clusters.cpu().numpy())
    neighbours = Neighbours(torch.cat(kept_sims), torch.cat(kept_idx)) if keep else None
    return RetrievalScores(precision_at_1=mean("p1"), recall_at_k={str(k): mean(str(k)) for k in RECALL_KS},
                           r_precision=mean("rp"), map_at_r=mean("map"), nmi=nmi_value,
                           num_queries=len(query), lone_queries=len(query) - n_valid, neighbours=neighbours,
                           map_at_r_per_label=_mean_per_label(query_aps, query_ap_labels))


def _mean_per_label(values: list[torch.Tensor], labels: list[torch.Tensor]) -> dict[int, float]:
    """Blocks of per-query values [B] and their labels [B] -> {label: mean of its queries' values}, by label."""
    if not values:
        return {}
    # on the CPU: a GPU's index_add_ adds in no fixed order, and [Q] values are small
    values_all, labels_all = torch.cat(values).cpu(), torch.cat(labels).cpu()
    ids, at = torch.unique(labels_all, return_inverse=True)  # sorted
    sums = torch.zeros(len(ids), dtype=torch.float64).index_add_(0, at, values_all)
    counts = torch.bincount(at, minlength=len(ids))
    return dict(zip(ids.tolist(), (sums / counts).tolist()))


# ----------------------------------------------------------------------------------------------------------------
# clustering


def _nearest_centre(x: torch.Tensor, centres: torch.Tensor, chunk_mb: float,
                    grid: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Index [N] of the nearest centre and the squared distance [N] to it, in row blocks. The distances are taken
    in float64 and put on ``grid`` (GRID times the data's squared scale), as the similarities are on GRID: a point
    equidistant from two centres (duplicate-heavy features) otherwise went to one or the other with the block's
    shape, and NMI changed with ``chunk_mb``."""
    x, centres = x.double(), centres.double()
    c_sq = (centres * centres).sum(1)
    rows = _rows_per_chunk(len(centres), chunk_mb)
    idx, dist = [], []
    for start in range(0, len(x), rows):
        xb = x[start:start + rows]
        # |x - c|^2 = |x|^2 - 2 x.c + |c|^2; the |x|^2 term does not change the argmin
        d = _on_grid(c_sq.unsqueeze(0) - 2 * xb @ centres.T, grid)
        best, arg = d.min(1)  # ties: the first centre
        idx.append(arg)
        dist.append((best + (xb * xb).sum(1).float()).clamp(min=0))
    return torch.cat(idx), torch.cat(dist)


def cluster_sums(x: torch.Tensor, assign: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """[N, D] points, [N] cluster index, [k] cluster sizes -> [k, D] sum of each cluster's points, in an order
    fixed by the data: ``index_add_`` adds in no fixed order on CUDA, so a centre's last bits, and a near-tie's
    assignment, could change run to run. A float64 running sum over the points sorted by cluster instead."""
    order = torch.argsort(assign, stable=True)
    prefix = torch.cumsum(x[order].double(), 0)
    prefix = torch.cat([prefix.new_zeros(1, x.shape[1]), prefix])
    ends = torch.cumsum(counts, 0)
    return (prefix[ends] - prefix[ends - counts]).to(x.dtype)


def kmeans(x: torch.Tensor, k: int, seed: int = 0, iters: int = 100, chunk_mb: float = 256) -> torch.Tensor:
    """Lloyd's k-means with k-means++ seeding (deterministic for a seed). x: [N, D] -> cluster index [N] long.

    Written here rather than taken from scikit-learn so that evaluation needs no extra runtime dependency; an
    emptied cluster is re-seeded at the point farthest from its centre.
    """
    n = len(x)
    if k >= n:
        return torch.arange(n, device=x.device)
    x = x.float()
    gen = torch.Generator(device="cpu").manual_seed(seed)
    first = int(torch.randint(n, (1,), generator=gen))
    picks = [first]
    x_sq = (x * x).sum(1)

    def sq_dist_to(i: int) -> torch.Tensor:  # [N]; a mat-vec, no [N, D] temporary
        return (x_sq - 2 * (x @ x[i]) + x_sq[i]).clamp(min=0)

    d2 = sq_dist_to(first)
    for _ in range(1, k):
        total = float(d2.sum())
        if total > 0:
            pick = int(torch.multinomial((d2 / total).double().cpu(), 1, generator=gen))
        else:  # fewer distinct points than clusters: any point will do
            pick = int(torch.randint(n, (1,), generator=gen))
        picks.append(pick)
        d2 = torch.minimum(d2, sq_dist_to(pick))
    centres = x[picks].clone()

    # relative to the data: features of any scale keep their distances apart (an absolute grid merged them all
    # at a scale of 1e-6); the L2-normalised features of retrieval_metrics get GRID itself
    grid = GRID * max(float(x_sq.max()), torch.finfo(torch.float32).tiny)
    assign = None
    for _ in range(iters):
        new, dist = _nearest_centre(x, centres, chunk_mb, grid)
        if assign is not None and torch.equal(new, assign):
            break
        assign = new
        counts = torch.bincount(assign, minlength=k)
        centres = cluster_sums(x, assign, counts) / counts.clamp(min=1).unsqueeze(1).to(x.dtype)
        for empty in torch.nonzero(counts == 0).flatten().tolist():
            far = int(dist.argmax())
            centres[empty] = x[far]
            dist[far] = 0
    return assign


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def nmi(labels_true, labels_pred) -> float:
    """Normalised mutual information with the arithmetic-mean normaliser (scikit-learn's default).

    Two labelings that both put everything in one group count as a perfect match (1.0), as in scikit-learn.
    """
    a = np.unique(np.asarray(labels_true), return_inverse=True)[1].ravel()
    b = np.unique(np.asarray(labels_pred), return_inverse=True)[1].ravel()
    if len(a) != len(b):
        raise ValueError(f"{len(a)} true labels but {len(b)} predicted labels")
    na, nb = int(a.max(initial=-1)) + 1, int(b.max(initial=-1)) + 1
    if na == nb and na <= 1:
        return 1.0
    joint = np.bincount(a * nb + b, minlength=na * nb).reshape(na, nb).astype(np.float64)
    n = joint.sum()
    pa, pb = joint.sum(1), joint.sum(0)
    nz = joint > 0
    mi = float((joint[nz] / n * np.log(joint[nz] * n / np.outer(pa, pb)[nz])).sum())
    if mi <= 0:
        return 0.0
    return mi / ((_entropy(pa) + _entropy(pb)) / 2)
