"""Retrieval metrics: hand-computed cases, a naive Python reference, pytorch-metric-learning's AccuracyCalculator,
exclusion rules, chunking, clustering, and the memory bound of the chunked kNN."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vidssl.eval.metrics import (RECALL_KS, exclude_same_group_within, kmeans, knn, nmi, retrieval_metrics,
                                 tie_order)


def on_circle(degrees) -> torch.Tensor:
    """[N, 2] unit vectors at the given angles: cosine similarity falls with the angle between them."""
    rad = np.deg2rad(np.asarray(degrees, dtype=np.float64))
    return torch.tensor(np.stack([np.cos(rad), np.sin(rad)], 1), dtype=torch.float32)


# ----------------------------------------------------------------------------------------------------------------
# hand-computed cases


def test_hand_computed_query_set_is_reference_set():
    # A 0deg L0, B 10 L0, C 25 L1, D 45 L0, E 100 L1, F 205 L1. Orders by angle (self excluded):
    # A: B+ C D+ E F      P@1 1, R=2, RP 1/2, AP@R 1/2
    # B: A+ C D+ E F      P@1 1, R=2, RP 1/2, AP@R 1/2
    # C: B D A E+ F+      P@1 0, R=2, RP 0,   AP@R 0,   first hit at rank 4
    # D: C B+ A+ E F      P@1 0, R=2, RP 1/2, AP@R (1/2)(1/2) = 1/4
    # E: D C+ B A F+      P@1 0, R=2, RP 1/2, AP@R 1/4
    # F: E+ A D B C+      P@1 1, R=2, RP 1/2, AP@R 1/2
    x = on_circle([0, 10, 25, 45, 100, 205])
    labels = [0, 0, 1, 0, 1, 1]
    s = retrieval_metrics(x, labels, keep=5)
    assert s.precision_at_1 == pytest.approx(3 / 6)
    assert s.recall_at_k == pytest.approx({"1": 3 / 6, "2": 5 / 6, "4": 1.0, "8": 1.0})
    assert s.r_precision == pytest.approx(2.5 / 6)
    assert s.map_at_r == pytest.approx(2.0 / 6)
    assert (s.num_queries, s.lone_queries) == (6, 0)
    assert s.neighbours.indices[2].tolist() == [1, 3, 0, 4, 5]  # C: B D A E F
    assert s.neighbours.indices[5].tolist() == [4, 0, 3, 1, 2]  # F: E A D B C


def test_hand_computed_separate_references_and_lone_query():
    # query 0 at 0deg, label 0; references at 10..50deg with labels 1 0 0 0 1 -> R = 3, hits at ranks 2 and 3:
    # P@1 0, Recall@2 1, R-precision 2/3, MAP@R (1/3)(1/2 + 2/3) = 7/18.
    # query 1 (label 7) has no reference of its label: a lone query, left out of every mean.
    query = on_circle([0, 0])
    refs = on_circle([10, 20, 30, 40, 50])
    s = retrieval_metrics(query, [0, 7], refs, [1, 0, 0, 0, 1])
    assert (s.precision_at_1, s.recall_at_k["1"], s.recall_at_k["2"]) == (0.0, 0.0, 1.0)
    assert s.r_precision == pytest.approx(2 / 3)
    assert s.map_at_r == pytest.approx(7 / 18)
    assert (s.num_queries, s.lone_queries) == (2, 1)


def test_all_queries_lone_gives_nan():
    s = retrieval_metrics(on_circle([0, 10, 20]), [0, 1, 2], with_nmi=False)
    assert s.lone_queries == 3 and math.isnan(s.precision_at_1) and math.isnan(s.map_at_r)


def test_nmi_closed_form():
    # true [0 0 1 1], predicted [0 0 0 1]: joint counts (0,0)=2, (1,0)=1, (1,1)=1 of 4
    mi = 0.5 * math.log(0.5 / (0.5 * 0.75)) + 0.25 * math.log(0.25 / (0.5 * 0.75)) + 0.25 * math.log(0.25 / (0.5 * 0.25))
    h_true = math.log(2)
    h_pred = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert nmi([0, 0, 1, 1], [0, 0, 0, 1]) == pytest.approx(mi / ((h_true + h_pred) / 2))
    assert nmi([0, 0, 1, 1], [5, 5, 3, 3]) == 1.0  # same partition, other names
    assert nmi([0, 0, 1, 1], [0, 1, 0, 1]) == 0.0  # independent
    assert nmi([4, 4, 4], [9, 9, 9]) == 1.0  # one group each: a perfect match, as scikit-learn says


def test_nmi_matches_scikit_learn():
    from sklearn.metrics import normalized_mutual_info_score

    rng = np.random.default_rng(0)
    for n, a, b in ((50, 3, 4), (400, 20, 20), (1000, 2, 50)):
        t, p = rng.integers(0, a, n), rng.integers(0, b, n)
        assert nmi(t, p) == pytest.approx(normalized_mutual_info_score(t, p), abs=1e-12)


# ----------------------------------------------------------------------------------------------------------------
# a naive reference: Python loops over numpy dot products


def naive_metrics(q, ql, r, rl, allowed) -> dict:
    """allowed(i, j) -> bool. Mirrors the definitions in the module docstring, one query at a time."""
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    r = r / np.linalg.norm(r, axis=1, keepdims=True)
    sums = {"p1": 0.0, "rp": 0.0, "map": 0.0, **{str(k): 0.0 for k in RECALL_KS}}
    n_valid = 0
    per_label: dict[int, list[float]] = {}
    for i in range(len(q)):
        cands = [j for j in range(len(r)) if allowed(i, j)]
        order = sorted(cands, key=lambda j: -float(np.dot(q[i], r[j])))
        rel = [rl[j] == ql[i] for j in order]
        big_r = sum(rel)
        if big_r == 0:
            continue
        n_valid += 1
        sums["p1"] += rel[0]
        for k in RECALL_KS:
            sums[str(k)] += any(rel[:k])
        sums["rp"] += sum(rel[:big_r]) / big_r
        ap, hits = 0.0, 0
        for rank, is_rel in enumerate(rel[:big_r], start=1):
            hits += is_rel
            ap += hits / rank if is_rel else 0.0
        sums["map"] += ap / big_r
        per_label.setdefault(int(ql[i]), []).append(ap / big_r)
    out = {k: v / n_valid for k, v in sums.items()}
    out["lone"] = len(q) - n_valid
    out["per_label"] = {label: sum(aps) / len(aps) for label, aps in per_label.items()}
    return out


def assert_matches_naive(s, ref):
    assert s.precision_at_1 == pytest.approx(ref["p1"], abs=1e-12)
    for k in RECALL_KS:
        assert s.recall_at_k[str(k)] == pytest.approx(ref[str(k)], abs=1e-12)
    assert s.r_precision == pytest.approx(ref["rp"], abs=1e-12)
    assert s.map_at_r == pytest.approx(ref["map"], abs=1e-12)
    assert s.lone_queries == ref["lone"]
    assert s.map_at_r_per_label.keys() == ref["per_label"].keys()  # labels whose every query is lone: absent
    for label, value in ref["per_label"].items():
        assert s.map_at_r_per_label[label] == pytest.approx(value, abs=1e-12)


def test_matches_naive_loop_with_temporal_exclusion():
    rng = np.random.default_rng(1)
    n = 150
    x = rng.normal(size=(n, 8)).astype(np.float32)
    labels = rng.integers(0, 6, n)
    groups = rng.integers(0, 4, n)
    times = rng.integers(0, 30, n)
    gap = 7
    s = retrieval_metrics(torch.from_numpy(x), labels, exclude=exclude_same_group_within(groups, times, gap),
                          with_nmi=False, chunk_mb=0.01)
    ref = naive_metrics(x, labels, x, labels,
                        lambda i, j: i != j and not (groups[i] == groups[j] and abs(times[i] - times[j]) < gap))
    assert_matches_naive(s, ref)


def test_exclusion_mask_against_double_loop():
    rng = np.random.default_rng(2)
    groups, times = rng.integers(0, 3, 40), rng.integers(0, 12, 40)
    mask = exclude_same_group_within(groups, times, 4)(5, 17)
    for a, i in enumerate(range(5, 17)):
        for j in range(40):
            assert bool(mask[a, j]) == (groups[i] == groups[j] and abs(int(times[i]) - int(times[j])) < 4)
    with pytest.raises(ValueError, match="min_gap"):
        exclude_same_group_within(groups, times, 0)


def test_excluded_references_are_never_returned():
    # one sequence of 12 frames, gap 5: frame t may only retrieve frames with |dt| >= 5
    x = torch.randn(12, 4, generator=torch.Generator().manual_seed(0))
    t = np.arange(12)
    nb = knn(x, None, 12, exclude=exclude_same_group_within(np.zeros(12), t, 5))
    for i in range(12):
        got = [j for j in nb.indices[i].tolist() if j >= 0]
        assert sorted(got) == [j for j in range(12) if abs(i - j) >= 5]
        assert (nb.sims[i, len(got):] == -math.inf).all()


def test_query_never_retrieves_itself_even_among_duplicates():
    # every vector identical: all similarities tie, so only the exclusion keeps a query off its own row
    x = torch.ones(30, 5)
    nb = knn(x, None, 29, chunk_mb=0.0001)
    for i in range(30):
        assert i not in nb.indices[i].tolist()
        assert sorted(nb.indices[i].tolist()) == [j for j in range(30) if j != i]
    # two copies of one image with different labels: each retrieves the other, not itself
    s = retrieval_metrics(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]), [0, 1, 0, 1],
                          with_nmi=False)
    assert s.precision_at_1 == 0.0


@pytest.mark.parametrize("with_refs", [False, True])
def test_chunking_equals_unchunked(with_refs):
    g = torch.Generator().manual_seed(3)
    q = torch.randn(97, 16, generator=g)
    ql = torch.randint(0, 9, (97,), generator=g)
    r = torch.randn(61, 16, generator=g) if with_refs else None
    rl = torch.randint(0, 9, (61,), generator=g) if with_refs else None
    one_row = retrieval_metrics(q, ql, r, rl, chunk_mb=1e-9, keep=6)  # one query row per block
    few_rows = retrieval_metrics(q, ql, r, rl, chunk_mb=0.05, keep=6)
    whole = retrieval_metrics(q, ql, r, rl, chunk_mb=1024, keep=6)
    flat = lambda d: {**{k: v for k, v in d.items() if k != "recall_at_k"}, **d["recall_at_k"]}  # noqa: E731
    for s in (one_row, few_rows):
        assert flat(s.to_dict()) == pytest.approx(flat(whole.to_dict()), abs=1e-12)
        assert torch.equal(s.neighbours.indices, whole.neighbours.indices)


def test_exact_ties_rank_in_the_fixed_tie_order_whatever_the_chunking():
    # duplicates tie exactly (duplicate images, flat crops): 4 distinct vectors, each repeated 6 times, labels
    # interleaved so the order among the tied copies decides P@1 and MAP@R
    g = torch.Generator().manual_seed(0)
    base = torch.randn(4, 8, generator=g)
    x = base.repeat_interleave(6, dim=0)  # rows 6j..6j+5 are copies of base[j]
    labels = torch.arange(24) % 3
    nb = knn(x, None, 23, chunk_mb=1024).indices
    position = {int(j): p for p, j in enumerate(tie_order(24))}
    for i in range(24):  # the naive rule: own copies first, in the tie order, self excluded
        copies = sorted((j for j in range(6 * (i // 6), 6 * (i // 6) + 6) if j != i), key=position.get)
        assert nb[i, :5].tolist() == copies
    results = [retrieval_metrics(x, labels, chunk_mb=mb, keep=8) for mb in (1e-9, 0.0005, 1024)]
    flat = lambda d: {**{k: v for k, v in d.items() if k != "recall_at_k"}, **d["recall_at_k"]}  # noqa: E731
    for s in results[:2]:  # means over blocks may differ in the last bit, rankings not at all
        assert flat(s.to_dict()) == pytest.approx(flat(results[2].to_dict()), abs=1e-12)
        assert torch.equal(s.neighbours.indices, results[2].neighbours.indices)


def test_near_ties_of_flat_vectors_rank_the_same_whatever_the_chunking():
    """Flat vectors of different brightness point the same way: their cosines tie mathematically but not bit for
    bit, and a float32 GEMM's last bits depend on the block's shape (the reviewer's case; chunk_mb reordered them)."""
    rng = np.random.default_rng(0)
    n, dim = 200, 147
    levels = rng.uniform(0.05, 1.0, n)
    textured = (rng.random((n, 1)) < 0.5) * rng.normal(size=(n, dim))
    x = torch.from_numpy((levels[:, None] * np.ones((n, dim)) + textured).astype(np.float32))
    labels = rng.integers(0, 10, n)
    results = [retrieval_metrics(x, labels, with_nmi=False, chunk_mb=mb, keep=20) for mb in (0.001, 0.05, 1024)]
    for s in results[:2]:
        assert torch.equal(s.neighbours.indices, results[2].neighbours.indices)
        assert s.map_at_r == pytest.approx(results[2].map_at_r, abs=1e-12)
        assert s.precision_at_1 == pytest.approx(results[2].precision_at_1, abs=1e-12)


def test_similarities_that_cancel_to_zero_rank_the_same_whatever_the_chunking():
    """Integer vectors: every cosine's exact value is known, and several are exactly 0 by cancellation, e.g.
    (0, -1, 1).(1, 1, 1). A GEMM gave +-1e-17 for those, by the block's shape, and float32 kept it: the order among
    them followed that noise. Reference: exact integer dot products, ties in the tie order."""
    x = torch.tensor([[0., -1, -1], [1, 0, -1], [1, 0, 1], [0, -1, 1], [-1, 0, 0], [1, -1, 0], [0, 0, 1], [1, 0, 0],
                      [0, 1, -1], [1, 1, -1], [-1, -1, 1], [0, 1, 0]])
    labels = [1, 2, 3, 3, 0, 0, 3, 3, 0, 1, 3, 1]
    position = {int(j): p for p, j in enumerate(tie_order(12))}
    xi = x.long()
    norms = [math.sqrt(int(v @ v)) for v in xi]
    truth_rank = []
    for i in range(12):  # exact cosine as a fraction: dot / (|a| |b|); compared exactly via the dot and the norms
        others = [j for j in range(12) if j != i]
        truth_rank.append(sorted(others, key=lambda j: (-int(xi[i] @ xi[j]) / norms[j] if int(xi[i] @ xi[j]) else 0.0,
                                                        position[j])))
    for mb in (256, 1e-9):
        nb = knn(x, None, 11, chunk_mb=mb).indices
        assert nb.tolist() == truth_rank, mb
    a, b = (retrieval_metrics(x, labels, with_nmi=False, chunk_mb=mb) for mb in (256, 1e-9))
    assert a.map_at_r == pytest.approx(b.map_at_r, abs=1e-12) and a.recall_at_k == pytest.approx(b.recall_at_k)


def test_a_collapsed_model_scores_chance_whatever_the_order_of_the_folder():
    """Every embedding equal: the ranking is the tie order alone. By reference index, a folder sorted by class ranked
    each query's own class first (MAP@R 5x chance on the CUB subset); in the fixed permutation it is chance-like
    whether the folder is sorted or shuffled."""
    labels = torch.arange(30).repeat_interleave(20)  # 30 classes of 20, sorted as a class-per-folder listing
    x = torch.ones(600, 8)
    shuffled = labels[torch.randperm(600, generator=torch.Generator().manual_seed(5))]
    sorted_, mixed = (retrieval_metrics(x, lab, with_nmi=False) for lab in (labels, shuffled))
    chance = 19 / 599  # P@1 of a random other item
    for s in (sorted_, mixed):
        assert abs(s.precision_at_1 - chance) < 0.02 and s.map_at_r < 0.015, s.to_dict()


def test_a_non_finite_embedding_is_an_error_not_everyone_s_nearest_neighbour():
    x = torch.randn(8, 4)
    x[3, 1] = float("nan")
    with pytest.raises(ValueError, match="1 of the 8 query embeddings hold NaN"):
        retrieval_metrics(x, [0, 0, 0, 0, 1, 1, 1, 1], with_nmi=False)
    with pytest.raises(ValueError, match="reference embeddings"):
        knn(torch.randn(2, 4), torch.full((3, 4), float("inf")), 1)


# ----------------------------------------------------------------------------------------------------------------
# agreement with pytorch-metric-learning


def label_distribution(name: str, n: int, rng) -> np.ndarray:
    if name == "uniform":
        return rng.integers(0, 10, n)
    if name == "long_tail":  # Zipf-like sizes, including singleton classes (lone queries)
        sizes = np.maximum(1, (120 / np.arange(1, 60) ** 1.3).astype(int))
        return rng.permutation(np.repeat(np.arange(len(sizes)), sizes))[:n]
    if name == "imbalanced":
        return (rng.random(n) < 0.1).astype(int)
    if name == "pairs":
        return rng.permutation(np.repeat(np.arange(n // 2), 2))
    raise KeyError(name)


@pytest.mark.parametrize("dist", ["uniform", "long_tail", "imbalanced", "pairs"])
@pytest.mark.parametrize("with_refs", [False, True])
def test_agrees_with_pytorch_metric_learning(dist, with_refs):
    from pytorch_metric_learning.distances import CosineSimilarity
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    from pytorch_metric_learning.utils.inference import CustomKNN

    rng = np.random.default_rng(["uniform", "long_tail", "imbalanced", "pairs"].index(dist))
    n = 300
    labels = label_distribution(dist, n, rng)
    n = len(labels)
    x = torch.from_numpy(rng.normal(size=(n, 12)).astype(np.float32))
    if with_refs:
        # reference set: the same labels, other embeddings (as tracks: first patches vs last patches)
        ref = x + 0.8 * torch.from_numpy(rng.normal(size=(n, 12)).astype(np.float32))
        ref_labels = rng.permutation(labels)
    cluster = lambda emb, k: kmeans(F.normalize(emb, dim=1), k, seed=0)  # noqa: E731
    calc = AccuracyCalculator(include=("precision_at_1", "r_precision", "mean_average_precision_at_r", "NMI"),
                              k="max_bin_count", knn_func=CustomKNN(CosineSimilarity()), kmeans_func=cluster,
                              device=torch.device("cpu"))
    if with_refs:
        expected = calc.get_accuracy(x, torch.from_numpy(labels), ref, torch.from_numpy(ref_labels),
                                     ref_includes_query=False, exclude=("NMI",))
        s = retrieval_metrics(x, labels, ref, ref_labels, with_nmi=False)
    else:
        expected = calc.get_accuracy(x, torch.from_numpy(labels))
        s = retrieval_metrics(x, labels)
        assert s.nmi == pytest.approx(expected["NMI"], abs=1e-12)
    assert s.precision_at_1 == pytest.approx(expected["precision_at_1"], abs=1e-9)
    assert s.r_precision == pytest.approx(expected["r_precision"], abs=1e-9)
    assert s.map_at_r == pytest.approx(expected["mean_average_precision_at_r"], abs=1e-9)
    # Recall@K is not in AccuracyCalculator: check it (and the rest again) against the naive loop
    r, rl = (ref.numpy(), ref_labels) if with_refs else (x.numpy(), labels)
    assert_matches_naive(s, naive_metrics(x.numpy(), labels, r, rl,
                                          (lambda i, j: True) if with_refs else (lambda i, j: i != j)))


# ----------------------------------------------------------------------------------------------------------------
# k-means


def test_kmeans_recovers_separated_blobs_and_is_deterministic():
    g = torch.Generator().manual_seed(4)
    centres = torch.randn(6, 16, generator=g) * 10
    truth = torch.arange(6).repeat_interleave(25)
    x = centres[truth] + 0.1 * torch.randn(150, 16, generator=g)
    a = kmeans(x, 6, seed=0)
    assert nmi(truth.numpy(), a.numpy()) == 1.0
    assert torch.equal(a, kmeans(x, 6, seed=0))
    for scale in (1e-6, 1e4):  # the distance grid follows the data's scale (a fixed one merged all at 1e-6)
        assert nmi(truth.numpy(), kmeans(x * scale, 6, seed=0).numpy()) == 1.0, scale


def test_kmeans_plus_plus_seeds_small_far_blobs():
    # 180 points around the origin, 10 at (100, 0) and 10 at (0, 100): k-means++ draws each seed with probability
    # ~ its squared distance to the seeds so far, so each far blob gets a seed of its own (in ~99% of draws); a
    # uniform draw gives both of them one about 1 time in 100. One Lloyd iteration returns the assignment to the
    # seeds themselves
    g = torch.Generator().manual_seed(5)
    x = torch.randn(200, 2, generator=g)
    x[180:190, 0] += 100
    x[190:, 1] += 100
    blobs = torch.arange(200).div(10, rounding_mode="floor").clamp(min=17) - 17  # 0 near, 1 and 2 far
    exact = sum(nmi(blobs.numpy(), kmeans(x, 3, seed=seed, iters=1).numpy()) > 1 - 1e-9 for seed in range(20))
    assert exact >= 18


def test_kmeans_inertia_close_to_scikit_learn():
    from sklearn.cluster import KMeans

    g = torch.Generator().manual_seed(5)
    x = torch.randn(400, 8, generator=g) + torch.randn(8, 8, generator=g).repeat(50, 1) * 1.5
    ours = kmeans(x, 8, seed=0)
    centres = torch.stack([x[ours == c].mean(0) for c in range(8) if (ours == c).any()])
    inertia = float(((x.unsqueeze(1) - centres.unsqueeze(0)) ** 2).sum(2).min(1).values.sum())
    best = KMeans(8, n_init=10, random_state=0).fit(x.numpy()).inertia_
    assert inertia <= 1.1 * best


def test_kmeans_of_duplicate_heavy_features_does_not_depend_on_the_chunking():
    """Binary features: many points lie exactly as far from two centres, and a float32 block product decided
    between them by its shape (NMI 0.0773 against 0.0752 for the reviewer's case)."""
    rng = np.random.default_rng(3)
    for _ in range(20):
        x = torch.tensor(rng.integers(0, 2, size=(120, 8)), dtype=torch.float32) + 1e-3
        x = torch.nn.functional.normalize(x, dim=1)  # as retrieval_metrics clusters them
        assert torch.equal(kmeans(x, 6, seed=0, chunk_mb=256), kmeans(x, 6, seed=0, chunk_mb=1e-6))


def test_kmeans_reseeds_a_cluster_that_lloyd_empties():
    """11 distinct points, k=5: from the k-means++ seeds that seed 10507 draws, the first Lloyd update leaves one
    cluster with no point (found by searching random draws; without the re-seed the run ends with 4 clusters)."""
    x = torch.tensor([[0.1635, -0.4131], [-1.2399, 1.0211], [0.1755, -0.4521], [0.5105, -0.6846],
                      [1.8648, -0.7188], [1.8396, 0.4348], [-1.0266, 0.2709], [0.36, -0.0825],
                      [1.7803, -1.1022], [-1.4998, 0.7466], [1.0907, 0.6233]])
    a = kmeans(x, 5, seed=10507)
    assert sorted(set(a.tolist())) == list(range(5))
    # and the result is a Lloyd fixed point, by a naive loop: every point is nearest to its own cluster's mean
    means = [x[a == c].mean(0) for c in range(5)]
    for point, own in zip(x, a.tolist()):
        d = [float(((point - mu) ** 2).sum()) for mu in means]
        assert d[own] <= min(d) + 1e-9


def test_kmeans_more_clusters_than_distinct_points():
    x = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.6, 0.8]] * 3)
    a = kmeans(x, 5, seed=0)
    assert a.shape == (15,) and int(a.min()) >= 0 and int(a.max()) < 5
    # equal points share a cluster whatever happened to the surplus clusters
    assert len(set(a[[0, 2, 5, 7, 10, 12]].tolist())) == 1
    assert torch.equal(kmeans(x[:3], 3), torch.arange(3))  # k >= N: one point per cluster


# ----------------------------------------------------------------------------------------------------------------
# memory: the N x N similarity matrix of 30,000 embeddings would be 3.6 GB, a boolean N x N mask of them 0.84 GiB

# the peak is this process's own (VmHWM: the high-water mark of its memory since exec). ru_maxrss carries the
# parent's peak across fork and exec on Linux, so under a test session grown past 2 GiB it read the session's
MEMORY_SCRIPT = """
import json, sys, time, torch
from vidssl.eval.metrics import retrieval_metrics


def high_water_kb():
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))


g = torch.Generator().manual_seed(0)
x = torch.randn(30000, 128, generator=g)  # the N x N matrix alone: 3.6 GB
labels = torch.randint(0, 1000, (30000,), generator=g)
before = high_water_kb()
s = retrieval_metrics(x, labels, with_nmi=False)
peak = high_water_kb()
print(json.dumps({"before_kb": before, "peak_kb": peak, "p1": s.precision_at_1, "lone": s.lone_queries}))
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads the peak from /proc (Linux)")
def test_knn_of_30k_embeddings_stays_under_2_gib():
    out = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    peak_gib = report["peak_kb"] / 2**20  # KiB: the whole process, torch included
    assert peak_gib < 2.0, report
    # what the kNN itself added: under an N x N boolean mask (a same-label matrix), which fits the bound above
    assert (report["peak_kb"] - report["before_kb"]) / 2**20 < 0.75, report
    assert report["lone"] == 0 and 0.0 <= report["p1"] < 0.01  # random embeddings: near-chance, all queries used


def test_cluster_sums_against_a_loop():
    """The centres' sums in a fixed order (index_add_ adds in no fixed order on CUDA): equal to a per-cluster loop,
    empty clusters included."""
    from vidssl.eval.metrics import cluster_sums

    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 6, generator=g)
    assign = torch.randint(0, 9, (500,), generator=g)
    assign[assign == 4] = 5  # cluster 4 empty
    counts = torch.bincount(assign, minlength=10)
    got = cluster_sums(x, assign, counts)
    for c in range(10):
        want = x[assign == c].double().sum(0) if counts[c] else torch.zeros(6, dtype=torch.float64)
        assert torch.allclose(got[c].double(), want, atol=1e-5), c


def test_exclusion_with_frame_indices_beyond_int32():
    # |t| >= 2**30 must switch to int64 differences: in int32, 2**32 + 3 wraps to 3 (within 10 frames of 0) and
    # 2**31 + 8 - (-(2**31) + 2) overflows
    groups = np.zeros(4, np.int64)
    times = np.array([0, 2**32 + 3, 2**31 + 8, -(2**31) + 2], np.int64)
    mask = exclude_same_group_within(groups, times, 10)(0, 4)
    naive = np.array([[abs(int(a) - int(b)) < 10 for b in times] for a in times])
    assert mask.tolist() == naive.tolist()


def test_nmi_clusters_the_references_too_when_they_are_a_separate_set():
    # queries: labels 0 and 1, both at (1, 0); references: labels 0 and 1, both at (0, 1). Over all four, the two
    # clusters are {queries} and {references}, independent of the labels: NMI 0. The queries alone (two points, two
    # classes) would be one cluster each: NMI 1.
    q = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    r = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    s = retrieval_metrics(q, [0, 1], r, [0, 1])
    assert s.nmi == pytest.approx(0.0, abs=1e-12)
