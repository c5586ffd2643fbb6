"""Retrieval transfer benchmark: batched feature extraction, metrics per model, report files.

:func:`evaluate_retrieval` reads any layout of :mod:`vidssl.eval.retrieval_data`, extracts every model's pooled
features in one DataLoader pass, scores them with :func:`vidssl.eval.metrics.retrieval_metrics` and writes
``metrics.json``, ``metrics.md`` and one ``grid_<model>.png`` per model into the output folder.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from vidssl.errors import ConfigError, VidsslError
from vidssl.eval import retire_results
from vidssl.eval.baselines import weights_record
from vidssl.eval.config import RetrievalConfig
from vidssl.device import resolve_device
from vidssl.eval.frozen import check_models, evaluation_mode
from vidssl.eval.metrics import RECALL_KS, exclude_same_group_within, non_finite_rows, retrieval_metrics
from vidssl.eval.retrieval_data import ImageArray, RetrievalDataError, RetrievalSet, load_retrieval_set
from vidssl.io import atomic_write_bytes, atomic_write_json, atomic_write_text, drawable
from vidssl.lifeline import loader_workers, refuse_reimport
from vidssl.models.base import normalize_rgb

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------------------------
# features


def extract_features(models: dict, items: Dataset, batch_size: int = 64, num_workers: int = 0,
                     device: torch.device | str = "cpu", progress: bool = True) -> tuple[dict, np.ndarray]:
    """Pooled features of every item for every model, decoding each image once.

    Returns ``({name: float32 [N, out_dim] on CPU}, ok [N] bool)``; rows where ``ok`` is False are zeros (the item
    could not be decoded). A model moved to ``device`` for it is moved back outside inference mode: moved inside,
    its parameters came back as inference tensors, and the caller's next training step failed.
    """
    from tqdm import tqdm

    from vidssl.progress import bars_on_stderr

    device = torch.device(device)
    if isinstance(items, ImageArray):  # crops in memory: a worker would only index them, after a copy of them all
        num_workers = 0
    # its own generator: starting an iterator drew its base seed from the caller's torch RNG, so a training loop
    # with a retrieval hook followed another random stream than one without; the workers end with this process: a
    # `kill -9` of it left them running, adopted by init
    loader = DataLoader(items, batch_size=batch_size, shuffle=False, **loader_workers(num_workers, "extract_features"),
                        generator=torch.Generator().manual_seed(0), persistent_workers=False,
                        pin_memory=device.type == "cuda")
    feats: dict[str, list[torch.Tensor]] = {name: [] for name in models}
    ok = []
    with evaluation_mode(models, device), torch.inference_mode():
        for images, good in tqdm(loader, desc="features", unit="batch", disable=not bars_on_stderr(progress)):
            x = images.to(device, non_blocking=True).float().div_(255)
            for name, model in models.items():
                feats[name].append(_pooled(name, model, x))
            ok.append(good)
    return {name: torch.cat(f) for name, f in feats.items()}, torch.cat(ok).numpy().astype(bool)


def _pooled(name: str, model, x: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] in [0, 1] -> ``model.embed`` of it, float32 [B, D] on CPU. A model of one's own returning
    [B, D, 1, 1] (a pool with keepdim) failed deep in the metrics with a matrix product's shape error."""
    emb = model.embed(normalize_rgb(x, model.mean, model.std))
    if emb.dim() != 2 or emb.shape[0] != x.shape[0]:
        raise ValueError(f"{name}: embed() gave {list(emb.shape)} for a batch of {x.shape[0]} images; the Backbone "
                         f"contract is [B, out_dim] (flatten a pooled [B, D, 1, 1] with .flatten(1))")
    return emb.float().cpu()


# ----------------------------------------------------------------------------------------------------------------
# the benchmark


def evaluate_retrieval(models: dict, data_dir: str | os.PathLike, out_dir: str | os.PathLike,
                       cfg: RetrievalConfig, kind: str = "auto", progress: bool = True,
                       davis_subset: str = "val") -> dict:
    """Evaluate every model on the retrieval data in ``data_dir``; write ``metrics.json``, ``metrics.md`` and
    ``grid_<model>.png`` into ``out_dir``; return the ``metrics.json`` payload (per model under ``"models"``; under
    ``"weights"`` the file each row was loaded from, None for a module from code or a baseline)."""
    from vidssl.config import check_section, versions

    check_section(cfg, "eval.retrieval", RetrievalConfig)
    if cfg.num_workers:  # before any work a worker's import of an unguarded script would repeat
        refuse_reimport("evaluate_retrieval")
    check_models(models, ("embed", "mean", "std"), "evaluate_retrieval")
    if not models:
        raise ValueError("evaluate_retrieval needs at least one model")
    for name, model in models.items():  # before any data is read: a model that cannot take the images at all
        smallest = getattr(model, "min_embed_side", 32)
        if cfg.image_size < smallest:
            raise ConfigError(f"config key 'eval.retrieval.image_size' is {cfg.image_size}, but {name} takes inputs "
                              f"of at least {smallest} pixels")
        note = getattr(model, "embed_size_note", lambda side: None)(cfg.image_size)
        if note:  # scored all the same (a user may mean it), but not as the paper's setting reads the weights
            log.warning("%s: %s; evaluate at its size: --set eval.retrieval.image_size=%d", name, note,
                        model.input_size)
    device = resolve_device(cfg.device, "eval.retrieval.device")
    data = load_retrieval_set(data_dir, cfg, kind, davis_subset)
    feats, ok = extract_features(models, data.items, cfg.batch_size, cfg.num_workers, device, progress)
    if not ok.all():
        data.skipped.setdefault("unreadable image", []).extend(data.captions[i] for i in np.flatnonzero(~ok))
        for caption in data.skipped["unreadable image"]:
            log.warning("%s: cannot decode image, skipped", Path(data_dir) / caption)
    queries = data.queries[ok[data.queries]]
    references = None if data.references is None else data.references[ok[data.references]]
    if len(queries) == 0:
        raise RetrievalDataError(f"{data_dir}: no readable image to query with")
    exclude = None
    min_gap = cfg.min_gap if data.min_gap is None else data.min_gap
    if data.groups is not None:
        # built over the queries, so it is the query x reference mask only when the queries are the references
        if references is not None:
            raise ValueError("same-group exclusion needs the queries to be the references")
        exclude = exclude_same_group_within(data.groups[queries], data.times[queries], min_gap)

    rng = np.random.default_rng(cfg.seed)
    shown = np.sort(rng.choice(len(queries), size=min(cfg.grid_queries, len(queries)), replace=False))
    out_dir = Path(out_dir)
    results, grids = {}, {}
    for name, f in feats.items():
        broken = non_finite_rows(f[ok])
        if broken:
            raise VidsslError(f"{name}: {broken} of {int(ok.sum())} embeddings of {data_dir} hold NaN or infinity; "
                              "these weights are broken (a diverged run, or a damaged file): retrain or re-export")
        f = f.to(device)
        scores = retrieval_metrics(
            f[queries], data.labels[queries], None if references is None else f[references],
            None if references is None else data.labels[references], exclude, chunk_mb=cfg.chunk_mb,
            seed=cfg.seed, kmeans_iters=cfg.kmeans_iters, keep=cfg.grid_neighbours)
        if scores.lone_queries == scores.num_queries:
            raise RetrievalDataError(f"{data_dir}: no query has a relevant reference (every label occurs once, or "
                                     f"only within min_gap={min_gap} frames); nothing to measure")
        results[name] = {**scores.to_dict(), "feature_dim": int(f.shape[1]),
                         "map_at_r_per_label": _by_name(scores.map_at_r_per_label, data.label_names)}
        pool = queries if references is None else references
        rows = []
        for q in shown:
            hits = [int(pool[j]) if j >= 0 else -1 for j in scores.neighbours.indices[q].tolist()]
            rows.append((int(queries[q]), hits))
        slug = _slug(name)
        while f"grid_{slug}.png" in {p.name for p in grids.values()}:  # "a/b" and "a_b" must not share a file
            slug += "_"
        grids[name] = out_dir / f"grid_{slug}.png"
        if len(grids) == 1:  # this evaluation's first file: the earlier one's scores go (see retire_results)
            retire_results(out_dir, figures=("grid_*.png",))
        atomic_write_bytes(grids[name], retrieval_grid(data, rows))
        log.debug("%s: P@1 %.3f  MAP@R %.3f  NMI %.3f", name, scores.precision_at_1, scores.map_at_r, scores.nmi)

    lone = next(iter(results.values()), {}).get("lone_queries", 0)  # of the labels and the gap, not of a model
    if lone:
        away = f" {min_gap} or more frames away in its track or sequence"
        log.warning("retrieval: %d of %d queries have no other item of their label%s and are not scored", lone,
                    len(queries), "" if data.groups is None else away)
    if len(np.unique(data.labels[ok])) == 1:
        log.warning("retrieval: %s holds one label: every neighbour is relevant, so every metric is 1 by construction "
                    "and says nothing about the models", data_dir)
    payload = {
        "kind": data.kind,
        "data": str(Path(data_dir).resolve()),  # resolved: `vidssl compare` tells data sets apart by it
        "items": int(ok.sum()),
        "queries": int(len(queries)),
        "references": int(len(queries) if references is None else len(references)),
        "labels": int(len(np.unique(data.labels[ok]))),
        "protocol": _PROTOCOLS[data.kind].format(min_gap=min_gap),
        "selection": data.selection,  # the part of the folder read (CUB: its classes), or None for all of it
        "min_gap": min_gap,  # the gap applied: a track set's own (its pairs' length), else config.min_gap
        "skipped": data.skipped,
        "models": results,
        # per row, the file it was loaded from (path, sha256, its card's git_sha and steps), or None: a row label
        # such as "run/backbone" names no file
        "weights": weights_record(models),
        "grids": {name: path.name for name, path in grids.items()},
        "config": dataclasses.asdict(cfg),
        "versions": versions(),
    }
    atomic_write_json(out_dir / "metrics.json", payload)
    atomic_write_text(out_dir / "metrics.md", metrics_table(payload))
    return payload


_PROTOCOLS = {
    "images": "category retrieval: every image queries all the others",
    "davis": "instance retrieval: each object crop queries crops of its sequence >= {min_gap} frames away and all "
             "crops of other sequences",
    "tracks": "instance retrieval across time: each tracked patch queries its own track's patches >= {min_gap} "
              "frames away and every patch of the other tracks",
}


def _by_name(per_label: dict[int, float], names: dict[int, str]) -> dict[str, float]:
    """``per_label`` keyed by the labels' names; a name two labels share (two class ids of one ``class_name`` in a
    labels.csv) gets its id, so neither score overwrites the other."""
    spelled = [names.get(label, str(label)) for label in per_label]
    shared = {name for name, n in Counter(spelled).items() if n > 1}
    return {f"{name} ({label})" if name in shared else name: value
            for (label, value), name in zip(per_label.items(), spelled)}


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "model"


def metrics_table(payload: dict) -> str:
    """Markdown: one row per model, the best value of each column in bold."""
    cols = [("P@1", lambda m: m["precision_at_1"])]
    cols += [(f"R@{k}", lambda m, k=k: m["recall_at_k"][str(k)]) for k in RECALL_KS]
    cols += [("R-prec", lambda m: m["r_precision"]), ("MAP@R", lambda m: m["map_at_r"]), ("NMI", lambda m: m["nmi"])]
    models = payload["models"]
    best = {title: max(get(m) for m in models.values()) for title, get in cols}
    lines = [f"Retrieval on `{payload['data']}` ({payload['kind']}: {payload['queries']} queries, "
             f"{payload['references']} references, {payload['labels']} labels). {payload['protocol']}."
             + (f" {payload['selection']}." if payload.get("selection") else ""), "",
             "| model | " + " | ".join(title for title, _ in cols) + " |",
             "|---|" + "---:|" * len(cols)]
    for name, m in models.items():
        cells = [f"**{get(m):.3f}**" if get(m) == best[title] else f"{get(m):.3f}" for title, get in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if payload["labels"] == 1:
        lines += ["", "Only one label: every neighbour is relevant, so every metric is 1 by construction."]
    hardest = _hardest_labels(models)
    if hardest:
        lines += ["", f"Lowest MAP@R per label (all of them: `map_at_r_per_label` in metrics.json): {hardest}."]
    lone = next(iter(models.values()), {}).get("lone_queries", 0)
    if lone:
        lines += ["", f"{lone} of the {payload['queries']} queries have no other item of their label (within the "
                      "protocol) and are not scored."]
    skipped = sum(len(v) for v in payload["skipped"].values())
    if skipped:
        lines += ["", f"{skipped} item(s) skipped: "
                  + ", ".join(f"{k}: {len(v)}" for k, v in payload["skipped"].items())]
    return "\n".join(lines) + "\n"


def _hardest_labels(models: dict, shown: int = 3) -> str:
    """Each model's ``shown`` labels of lowest MAP@R, as "model: label 0.01, label 0.73; ...", leaving out a model
    without per-label scores or whose labels all score the same (none stands out); "" when none is left."""
    said = []
    for name, m in models.items():
        per_label = m.get("map_at_r_per_label") or {}
        if len(set(per_label.values())) < 2:
            continue
        worst = sorted(per_label.items(), key=lambda item: (item[1], item[0]))[:shown]
        said.append(f"{name}: " + ", ".join(f"{label} {value:.2f}" for label, value in worst))
    return "; ".join(said)


# ----------------------------------------------------------------------------------------------------------------
# figure

_TILE = 96
_BORDER = 4
_CAPTION = 14
_COLOURS = {"query": (255, 255, 255), "right": (0, 200, 0), "wrong": (230, 0, 0), "none": (90, 90, 90)}


def _fit_caption(caption: str, width: int = 16) -> str:
    """``caption`` in ``width`` characters, keeping its end: a track's "<video id>#<track> t<frame>" cut from the end
    showed the video id alone, so two tracks of a video and their frames looked the same."""
    return caption if len(caption) <= width else "~" + caption[-(width - 1):]


def _tile(image: np.ndarray | None, colour: tuple[int, int, int], caption: str) -> np.ndarray:
    side = _TILE + 2 * _BORDER
    tile = np.full((side + _CAPTION, side, 3), 20, np.uint8)
    tile[:side, :side] = colour
    inner = np.zeros((_TILE, _TILE, 3), np.uint8) if image is None else cv2.resize(image, (_TILE, _TILE),
                                                                                    interpolation=cv2.INTER_AREA)
    tile[_BORDER:_BORDER + _TILE, _BORDER:_BORDER + _TILE] = inner
    cv2.putText(tile, _fit_caption(drawable(caption)), (2, side + _CAPTION - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.33,
                (230, 230, 230), 1, cv2.LINE_AA)
    return tile


def retrieval_grid(data: RetrievalSet, rows: list[tuple[int, list[int]]]) -> bytes:
    """PNG bytes: one row per query (white border, its label below), then its nearest neighbours bordered green
    when they share the query's label and red when not; -1 (no allowed neighbour left) is a grey blank."""
    def image(i: int) -> np.ndarray:
        return data.items[i][0].permute(1, 2, 0).numpy()

    def caption(i: int) -> str:
        name = data.label_names[int(data.labels[i])]
        return name if data.times is None else f"{name} t{int(data.times[i])}"

    lines = []
    for q, hits in rows:
        tiles = [_tile(image(q), _COLOURS["query"], caption(q))]
        for j in hits:
            if j < 0:
                tiles.append(_tile(None, _COLOURS["none"], "-"))
                continue
            right = data.labels[j] == data.labels[q]
            tiles.append(_tile(image(j), _COLOURS["right" if right else "wrong"], caption(j)))
        gap = np.full((tiles[0].shape[0], 8, 3), 20, np.uint8)  # separates the query from its neighbours
        lines.append(np.concatenate([tiles[0], gap, *tiles[1:]], axis=1))
    grid = np.concatenate(lines, axis=0)
    ok, png = cv2.imencode(".png", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return png.tobytes()
