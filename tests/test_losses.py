"""Each loss and reducer against a naive Python loop (float64 and float32), the no-violation case, and backward."""
from __future__ import annotations

import math

import pytest
import torch

from vidssl.losses import (DISTANCES, LOSSES, REDUCERS, Triplets, build_loss, build_reducer, dense_cycle_loss)
from vidssl.train_config import LossConfig


def _cos_dist(x, y):
    dot = sum(a * b for a, b in zip(x, y))
    return 1.0 - dot / (math.sqrt(sum(a * a for a in x)) * math.sqrt(sum(b * b for b in y)))


def _sq(x, y):
    return sum((a - b) ** 2 for a, b in zip(x, y))


NAIVE_DIST = {"cosine": _cos_dist, "sqeuclidean": _sq, "euclidean": lambda x, y: math.sqrt(_sq(x, y))}


def naive_loss(name, dist, margin, symmetric, a, p, n):
    """One triplet's loss, written from the papers' formulas."""
    D = NAIVE_DIST[dist]
    if name in ("ranking", "triplet"):
        first = max(0.0, D(a, p) - D(a, n) + margin)
        return 0.5 * (first + max(0.0, D(a, p) - D(p, n) + margin)) if symmetric else first
    pull = 0.5 * D(a, p) ** 2
    push = 0.5 * max(0.0, margin - D(a, n)) ** 2
    if symmetric:
        push = 0.5 * (push + 0.5 * max(0.0, margin - D(p, n)) ** 2)
    return pull + push


def _batch(dtype, P=5, dim=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    emb = torch.nn.functional.normalize(torch.randn(2 * P, dim, generator=g, dtype=torch.float64), dim=1)
    a = torch.tensor([0, 0, 1, 2, 3, 4, 4], dtype=torch.int64)
    n = torch.tensor([2, 7, 9, 5, 1, 0, 8], dtype=torch.int64)
    return emb.to(dtype), Triplets(a=a, p=a + P, n=n)


CASES = [("ranking", None, True), ("ranking", None, False), ("triplet", None, True), ("triplet", None, False),
         ("contrastive", None, True), ("contrastive", None, False), ("ranking", "sqeuclidean", True),
         ("contrastive", "cosine", False)]


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("name,distance,symmetric", CASES)
def test_per_triplet_matches_naive_loop(name, distance, symmetric, dtype, tol):
    cfg = LossConfig(name=name, distance=distance, symmetric=symmetric, margin=0.7 if name != "contrastive" else 1.2)
    loss = build_loss(cfg)
    emb, t = _batch(dtype)
    got = loss.per_triplet(emb, t)
    assert got.dtype == dtype and got.shape == (len(t),)
    dist = distance or {"ranking": "cosine", "triplet": "sqeuclidean", "contrastive": "euclidean"}[name]
    rows = emb.double().tolist()
    want = [naive_loss(name, dist, cfg.margin, symmetric, rows[i], rows[j], rows[k])
            for i, j, k in zip(t.a.tolist(), t.p.tolist(), t.n.tolist())]
    assert max(want) > 0  # the batch exercises the hinge
    torch.testing.assert_close(got.double(), torch.tensor(want, dtype=torch.float64), rtol=tol, atol=tol)


@pytest.mark.parametrize("name", ["ranking", "triplet", "contrastive"])
def test_backward_matches_finite_differences(name):
    loss = build_loss(LossConfig(name=name, margin=0.7))
    emb, t = _batch(torch.float64, seed=3)
    emb.requires_grad_(True)
    fn = lambda e: build_reducer(LossConfig(reducer="mean"))(loss.per_triplet(e, t), t, 1)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (emb,), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["ranking", "triplet"])
@pytest.mark.parametrize("reducer", list(REDUCERS))
def test_no_violation_gives_zero_loss_and_zero_gradient(name, reducer):
    """Positives equal to their anchors and negatives opposite: no hinge is active."""
    P, dim = 3, 4
    a = torch.nn.functional.normalize(torch.randn(P, dim, dtype=torch.float64), dim=1)
    emb = torch.cat([a, a.clone()]).requires_grad_(True)
    n_rows = -a  # a separate row set, appended as candidates
    full = torch.cat([emb, n_rows])
    t = Triplets(a=torch.arange(P), p=torch.arange(P) + P, n=torch.arange(P) + 2 * P)
    cfg = LossConfig(name=name, margin=0.5, reducer=reducer)
    value = build_reducer(cfg)(build_loss(cfg).per_triplet(full, t), t, 4 * P)
    assert value.item() == 0.0 and value.requires_grad
    value.backward()
    assert emb.grad is not None and torch.equal(emb.grad, torch.zeros_like(emb))


def test_contrastive_zero_when_positives_coincide_and_negatives_far():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    emb = torch.cat([a, a, torch.tensor([[5.0, 5.0]], dtype=torch.float64)]).requires_grad_(True)
    t = Triplets(a=torch.tensor([0, 1]), p=torch.tensor([2, 3]), n=torch.tensor([4, 4]))
    value = build_loss(LossConfig(name="contrastive", margin=1.0)).per_triplet(emb, t).sum()
    assert value.item() < 1e-11  # the clamp under the square root leaves D = 1e-6 at coincident points
    value.backward()
    assert torch.isfinite(emb.grad).all()  # Euclidean distance at zero does not give NaN gradients


def test_reducers_match_naive():
    values = torch.tensor([0.0, 0.4, 0.0, 1.0, 0.2], dtype=torch.float64)
    t = Triplets(a=torch.tensor([0, 0, 1, 2, 2]), p=torch.tensor([3, 3, 4, 5, 5]), n=torch.tensor([1, 2, 0, 0, 1]))
    assert REDUCERS["mean"](values, t, 12).item() == pytest.approx(1.6 / 5)
    assert REDUCERS["mean_active"](values, t, 12).item() == pytest.approx(1.6 / 3)
    assert REDUCERS["fixed"](values, t, 12).item() == pytest.approx(1.6 / 12)
    assert REDUCERS["per_pair"](values, t, 12).item() == pytest.approx(((0.4 / 2) + 0.0 + (1.2 / 2)) / 3)
    empty = Triplets(*(torch.zeros(0, dtype=torch.int64),) * 3)
    for reduce in REDUCERS.values():  # no triplet mined: 0, not NaN
        assert reduce(torch.zeros(0, requires_grad=True), empty, 12).item() == 0.0


@pytest.mark.parametrize("name", list(DISTANCES))
def test_pairwise_distance_matches_rows(name):
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(4, 5, generator=g, dtype=torch.float64), torch.randn(3, 5, generator=g, dtype=torch.float64)
    D = DISTANCES[name]().pairwise(x, y)
    want = [[NAIVE_DIST[name](xi, yj) for yj in y.tolist()] for xi in x.tolist()]
    torch.testing.assert_close(D, torch.tensor(want, dtype=torch.float64), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", ["sqeuclidean", "euclidean"])
def test_pairwise_euclidean_distances_are_never_negative(name):
    # ||x||^2 + ||y||^2 - 2 x.y cancels in float32: a row against itself, or a near-duplicate far from the origin
    # (norms^2 ~ 1.6e5, rounded in steps of 0.016), came out below zero, under the margin of every triplet
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 16, generator=g)
    far = 100.0 + x
    near = far + 1e-3 * torch.randn(64, 16, generator=g)
    for a, b in ((x, x), (far, far), (far, near)):
        D = DISTANCES[name]().pairwise(a, b)
        assert D.dtype == torch.float32 and D.min() >= 0
        want = torch.tensor([[NAIVE_DIST[name](ai, bj) for bj in b.tolist()] for ai in a.tolist()])
        torch.testing.assert_close(D, want, rtol=1e-3, atol=0.2 if name == "sqeuclidean" else 0.5)


@pytest.mark.parametrize("name", ["sqeuclidean", "euclidean"])
def test_pairwise_euclidean_is_exact_far_from_the_origin(name):
    # norms ~50, distances ~0.1: the expanded ||x||^2 + ||y||^2 - 2 x.y was up to 0.19 off in float32, so the miner
    # ranked candidates by other distances than the loss's rows; the differences themselves are exact there
    g = torch.Generator().manual_seed(0)
    centre = 50.0 * torch.nn.functional.normalize(torch.randn(1, 32, generator=g), dim=1)
    x = centre + 0.05 * torch.randn(24, 32, generator=g)
    y = centre + 0.05 * torch.randn(16, 32, generator=g)
    D = DISTANCES[name]().pairwise(x, y)
    want = torch.tensor([[NAIVE_DIST[name](xi, yj) for yj in y.double().tolist()] for xi in x.double().tolist()],
                        dtype=torch.float64)
    assert float(want.min()) > 0.01
    torch.testing.assert_close(D.double(), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["ranking", "triplet", "contrastive"])
def test_losses_refuse_embeddings_that_are_not_n_by_d(name):
    """An [N, 1, D] batch indexed fine and gave [T, D] 'losses', a plausible wrong number after the reducer."""
    loss = build_loss(LossConfig(name=name))
    emb, t = _batch(torch.float32)
    with pytest.raises(ValueError, match=r"embeddings must be \[N, D\] \(one row per patch\), got \[10, 1, 6\]: "
                                         "flatten them"):
        loss.per_triplet(emb[:, None, :], t)
    with pytest.raises(ValueError, match="embeddings must be a floating .* got torch.int64: cast them to float"):
        loss.per_triplet(emb.long(), t)
    past = Triplets(a=t.a, p=t.p, n=t.n.clone().index_fill_(0, torch.tensor([2]), 10))
    with pytest.raises(ValueError, match=r"triplet indices must be rows 0..9 of the \[10, 6\] embeddings, got "
                                         r"indices in \[0, 10\]"):
        loss.per_triplet(emb, past)
    wrapped = Triplets(a=t.a, p=t.p, n=t.n.clone().index_fill_(0, torch.tensor([2]), -1))  # torch wraps: row 9
    with pytest.raises(ValueError, match=r"got indices in \[-1, 9\]"):
        loss.per_triplet(emb, wrapped)
    empty = Triplets(*(torch.zeros(0, dtype=torch.int64),) * 3)
    assert loss.per_triplet(emb, empty).shape == (0,)


def test_the_torch_free_config_lists_agree_with_the_registries():
    """train_config names the losses, distances and reducers without importing torch: a name in a list but not in
    its registry loaded as config and failed later with a KeyError."""
    import dataclasses
    import re

    from vidssl.train_config import DISTANCE_NAMES, LOSS_NAMES, REDUCER_NAMES

    assert LOSS_NAMES == tuple(LOSSES)
    assert DISTANCE_NAMES == tuple(DISTANCES)
    assert REDUCER_NAMES == tuple(REDUCERS)
    assert all(standard in DISTANCES for _, standard in LOSSES.values())
    helps = {f.name: f.metadata["help"] for f in dataclasses.fields(LossConfig)}
    for key, names in (("name", LOSS_NAMES), ("distance", DISTANCE_NAMES), ("reducer", REDUCER_NAMES)):
        for name in names:  # the help is written by hand: a new name must be described there too
            assert re.search(rf"(?<![\w]){name}(?![\w])", helps[key]), f"loss.{key} help does not name {name}"


def _naive_cycle(a, b, r, shift, temperature, extra=None):
    """The cycle loss by loops over cells: walk anchor -> positive (and ``extra``'s cells) -> rolled anchor, score
    the rolled content cell."""
    P, C, h, w = a.shape
    cells = [(i, j) for i in range(h) for j in range(w)]
    # the first step's destinations: (map, cell) for every cell of the positive, then of the extra map
    stops = [(b, c) for c in cells] + ([] if extra is None else
                                      [(extra, (i, j)) for i in range(extra.shape[2]) for j in range(extra.shape[3])])

    def unit(m, p, cell):
        v = [float(m[p, c, cell[0], cell[1]]) for c in range(C)]
        norm = math.sqrt(sum(x * x for x in v))
        return [x / norm for x in v]

    def softmax_row(u, dests, p):
        scores = [sum(x * y for x, y in zip(u, unit(m, p, c))) / temperature for m, c in dests]
        top = max(scores)
        e = [math.exp(s - top) for s in scores]
        return [x / sum(e) for x in e]

    total = 0.0
    for p in range(P):
        for cell in cells:
            first = softmax_row(unit(a, p, cell), stops, p)
            target = ((cell[0] + shift[0]) % h, (cell[1] + shift[1]) % w)
            arrive = sum(first[k] * softmax_row(unit(m, p, mid), [(r, c) for c in cells], p)[cells.index(target)]
                         for k, (m, mid) in enumerate(stops))
            total += -math.log(arrive)
    return total / (P * h * w)


@pytest.mark.parametrize("shift", [(1, 0), (0, -2), (2, 1)])
def test_dense_cycle_loss_matches_naive_loop(shift):
    g = torch.Generator().manual_seed(0)
    a, b, r = (torch.randn(2, 5, 3, 4, generator=g, dtype=torch.float64) for _ in range(3))
    got = dense_cycle_loss(a, b, r, shift, 0.3)
    assert got.item() == pytest.approx(_naive_cycle(a, b, r, shift, 0.3), rel=1e-5)
    # with a background map the first step may also walk into (loss.cycle_background), of another size
    bg = torch.randn(2, 5, 2, 3, generator=g, dtype=torch.float64)
    got = dense_cycle_loss(a, b, r, shift, 0.3, extra=bg)
    assert got.item() == pytest.approx(_naive_cycle(a, b, r, shift, 0.3, bg), rel=1e-5)


def test_dense_cycle_loss_background_is_a_place_to_get_lost():
    # one-hot content; the positive holds every anchor cell's content, the background map copies of some of them.
    # A walk into a copy continues to the rolled anchor just as well (content, not origin, decides), while
    # background cells whose content the anchor does not hold pull the walk off its way
    h, w = 3, 4
    content = torch.eye(h * w).view(h * w, h, w)[None]
    shift = (0, 1)
    rolled = torch.roll(content, shift, dims=(2, 3))
    alone = dense_cycle_loss(content, content, rolled, shift, 0.5).item()
    assert dense_cycle_loss(content, content, rolled, shift, 0.5, extra=content).item() == pytest.approx(alone)
    # background cells equally close to every anchor cell (cos 0.29) draw walks away, the more the further
    lured = [dense_cycle_loss(content, content, rolled, shift, 0.5, extra=torch.full((1, h * w, k, 1), 0.5)).item()
             for k in (1, 6, 12)]
    assert alone < lured[0] < lured[1] < lured[2] and lured[2] > alone + 0.3


def test_dense_cycle_loss_rewards_content_not_position():
    # one-hot features of the content of each cell; the rolled map holds the same content moved by the shift
    h, w = 4, 5
    content = torch.eye(h * w).view(h * w, h, w)[None].repeat(2, 1, 1, 1)
    shift = (1, -2)
    rolled = torch.roll(content, shift, dims=(2, 3))
    assert dense_cycle_loss(content, content, rolled, shift, 0.01).item() < 1e-6
    # features that encode the position in the patch (unchanged by the roll) walk back to the wrong cell
    assert dense_cycle_loss(content, content, content, shift, 0.01).item() > 10
    # features that tell no cell apart: every walk ends anywhere, log N
    flat = torch.ones(2, 3, h, w)
    assert dense_cycle_loss(flat, flat, flat, shift, 0.07).item() == pytest.approx(math.log(h * w), rel=1e-6)
    x = torch.randn(2, 3, h, w, requires_grad=True)
    dense_cycle_loss(x, torch.randn(2, 3, h, w), torch.randn(2, 3, h, w), shift, 0.1).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_dense_cycle_loss_says_how_wrong_a_sure_wrong_walk_is():
    # features of the position in the patch at a small temperature: every walk is sure of the wrong cell, and
    # arrives at the right one with a probability (about e^-100) far under float32's smallest. The loss must still
    # be its -log (not a clamp's constant) and give a gradient that moves the features
    h, w = 3, 4
    g = torch.Generator().manual_seed(1)
    position = (torch.eye(h * w) + 0.05 * torch.rand(h * w, h * w, generator=g)).view(h * w, h, w)[None]
    shift, temperature = (0, 1), 0.01
    want = _naive_cycle(position.double(), position.double(), position.double(), shift, temperature)
    assert want > 60  # the clamp at 1e-12 this replaced gave 27.6 here
    x = position.clone().requires_grad_(True)
    got = dense_cycle_loss(x, position, position, shift, temperature)
    assert got.item() == pytest.approx(want, rel=1e-4)
    got.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().max() > 1


def test_triplets_refuse_mismatched_or_misshapen_indices():
    ok = torch.arange(3)
    with pytest.raises(ValueError, match="as many anchors, positives and negatives, got 3, 1 and 3"):
        Triplets(ok, torch.tensor([4]), ok)  # indexing would broadcast the lone positive
    with pytest.raises(ValueError, match=r"Triplets.a must be a 1-D int64 tensor, got torch.int64 of shape \(1, 3\)"):
        Triplets(ok[None], ok[None], ok[None])  # the cosine would be taken over the wrong axis
    with pytest.raises(ValueError, match="Triplets.n must be a 1-D int64 tensor, got torch.float32"):
        Triplets(ok, ok, ok.float())
    assert len(Triplets(ok, ok, ok)) == 3
