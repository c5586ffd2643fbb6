"""The flow benchmark end to end: every method on every pair, metrics, a Markdown table and a figure per pair (at
most MAX_FIGURES)."""
from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from vidssl.progress import bars_on_stderr
from vidssl.errors import VidsslError
from vidssl.eval import retire_results
from vidssl.eval.baselines import weights_record
from vidssl.eval.config import MAX_FLOW_FIGURES as MAX_FIGURES
from vidssl.eval.config import FlowConfig
from vidssl.eval.flow.data import find_pairs, load_pair, select_pairs
from vidssl.eval.flow.io import FlowFileError
from vidssl.eval.flow.methods import CLASSICAL, FeatureMatchFlow, FlowMethod, NetworkFlow
from vidssl.eval.flow.metrics import METRIC_KEYS, flow_metrics, mean_metrics, window_reach
from vidssl.eval.flow.transfer import train_transfer
from vidssl.eval.flow.viz import pair_figure
from vidssl.device import resolve_device
from vidssl.eval.frozen import check_models, evaluation_mode
from vidssl.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from vidssl.models.base import MIN_SIDE

log = logging.getLogger(__name__)

# more pairs than this get a warning at the start, naming the key that chooses some (a Sintel release has 2,082)
MANY_PAIRS = 200

_TABLE = (("EPE", "epe", 2), ("EPE noc", "epe_noc", 2), ("EPE occ", "epe_occ", 2), ("AE (deg)", "ae", 1),
          ("Fl-all %", "fl_all", 1), ("<1px %", "acc_1px", 1), ("<3px %", "acc_3px", 1), ("<5px %", "acc_5px", 1))


def file_name(text: str) -> str:
    """A pair or model name as a file name: path separators and odd characters become '_'."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "unnamed"


def _has_weights(model: nn.Module) -> bool:
    return any(p.numel() for p in model.parameters())


def build_methods(models: dict[str, nn.Module], cfg: FlowConfig, out_dir: Path, budget_s: float, seed: int,
                  device: torch.device, progress: bool) -> tuple[dict[str, FlowMethod], dict]:
    """Classical methods, then ``match[name]`` for every model, then ``transfer[name]`` for every model with
    weights (a parameter-free raw-pixel model has nothing to transfer). The transfer budget is split evenly."""
    methods: dict[str, FlowMethod] = {name: CLASSICAL[name] for name in cfg.classical}
    for name, model in models.items():
        methods[f"match[{name}]"] = FeatureMatchFlow(model.to(device), cfg.max_displacement, cfg.temperature, device)
    transfer: dict = {}
    trainable = {name: model for name, model in models.items() if _has_weights(model)} if cfg.transfer else {}
    for name, model in trainable.items():
        # a limit, not a forecast: the decoder stops at its steps or its share of the budget, whichever comes first
        log.info("flow: training the transfer decoder on %s (at most %d steps or %.0f s)", name, cfg.steps,
                 budget_s / len(trainable))
        net, info = train_transfer(model, cfg, budget_s / len(trainable), seed, device,
                                   out_dir / "transfer" / f"{file_name(name)}.pt", progress)
        methods[f"transfer[{name}]"] = NetworkFlow(net, device)
        transfer[name] = info
    return methods, transfer


def markdown_table(summary: dict) -> str:
    """Metrics per method pooled over the pairs' pixels, then EPE per pair and method."""
    def cell(value, digits):
        return "-" if value is None else f"{value:.{digits}f}"

    datasets = summary["datasets"]
    across = f", across {len(datasets)} datasets: per dataset below" if len(datasets) > 1 else ""
    lines = [f"# Optical flow: {len(summary['pairs'])} pairs (pooled over their pixels{across}; lower EPE/AE/Fl-all "
             "is better; s/pair leaves out the first pair, which carries each method's start-up)", "",
             "| method | " + " | ".join(h for h, _, _ in _TABLE) + " | s/pair |",
             "|---" * (len(_TABLE) + 2) + "|"]
    for name, result in summary["methods"].items():
        mean = result["mean"]
        lines.append(f"| {name} | " + " | ".join(cell(mean[k], d) for _, k, d in _TABLE)
                     + f" | {cell(result['seconds_per_pair'], 3)} |")
    if len(datasets) > 1:
        lines += ["", "EPE per dataset (pooled over its pairs' pixels):", "",
                  "| method | " + " | ".join(f"{name} ({len(pairs)})" for name, pairs in datasets.items()) + " |",
                  "|---" * (len(datasets) + 1) + "|"]
        for name, result in summary["methods"].items():
            lines.append(f"| {name} | " + " | ".join(cell(result["datasets"][d]["epe"], 2) for d in datasets) + " |")
    # a row per pair: a column per pair ran 2,082 columns wide on a Sintel release
    lines += ["", "EPE per pair:", "", "| pair | " + " | ".join(summary["methods"]) + " |",
              "|---" * (len(summary["methods"]) + 1) + "|"]
    for pair in summary["pairs"]:
        lines.append(f"| {pair} | " + " | ".join(cell(result["pairs"][pair]["epe"], 2)
                                                 for result in summary["methods"].values()) + " |")
    reach = summary.get("reach")
    if reach:
        lines += ["", f"Within reach of feature matching (+-{reach['px']:g} px per axis): % of valid pixels whose "
                  "motion lies inside, and the lowest EPE a matcher limited to it can score (ground truth clipped):",
                  "",
                  "| pair | in reach % | floor EPE |", "|---|---|---|"]
        lines += [f"| {name} | {r['in_reach_pct']:.1f} | {r['floor_epe']:.2f} |" for name, r in reach["pairs"].items()]
    if summary["transfer"]:
        lines += ["", "Transfer training (synthetic validation EPE, px):", "",
                  "| model | steps | seconds | before | after |", "|---|---|---|---|---|"]
        for name, info in summary["transfer"].items():
            lines.append(f"| {name} | {info['steps']} | {info['train_seconds']} | "
                         f"{info['synthetic_epe_start']:.2f} | {info['synthetic_epe_end']:.2f} |")
    figures = summary.get("figures", [])
    if figures and len(figures) < len(summary["pairs"]):
        lines += ["", f"Figures (pairs/): {len(figures)} of the {len(summary['pairs'])} pairs, at most {MAX_FIGURES} "
                  "spread evenly over them (metrics.json `figures` names them; eval.flow.pairs chooses pairs)."]
    if summary["skipped"]:
        lines += ["", "Skipped pairs:", ""] + [f"- {name}: {why}" for name, why in summary["skipped"].items()]
    return "\n".join(lines) + "\n"


def evaluate_flow(models: dict[str, nn.Module], data_dir: str | os.PathLike, out_dir: str | os.PathLike,
                  cfg: FlowConfig, budget_minutes: float | None = None, *, seed: int = 0,
                  progress: bool = True) -> dict:
    """Evaluate every method on every pair under ``data_dir`` (those ``cfg.pairs`` matches, when it names any);
    write ``out_dir/metrics.json``, ``metrics.md`` and ``pairs/<pair>.png`` (for at most MAX_FIGURES pairs, spread
    evenly over them). ``models`` maps a row name to a backbone (its dense features feed methods 3 and 4);
    ``budget_minutes`` (default ``cfg.budget_minutes``) bounds transfer training. Returns the metrics.json content,
    whose ``weights`` says per model the file it was loaded from (None for a module from code or a baseline).

    A pair whose files cannot be read is skipped and listed under ``skipped`` with the reason. Each model runs in
    eval mode on ``cfg.device`` and is handed back in the mode and on the device it came with.
    """
    from vidssl.config import check_section, versions

    check_section(cfg, "eval.flow", FlowConfig)
    # dense_dim sizes the transfer decoder's input
    check_models(models, ("dense_features", "mean", "std", "dense_stride") + (("dense_dim",) if cfg.transfer else ()),
                 "evaluate_flow")
    out_dir = Path(out_dir)
    device = resolve_device(cfg.device, "eval.flow.device")
    found = find_pairs(data_dir)
    pairs = select_pairs(found, cfg.pairs, data_dir)
    chosen = f" (of {len(found)}, chosen by eval.flow.pairs)" if cfg.pairs else ""
    log.info("flow: %d pair(s) under %s%s, every method on each", len(pairs), data_dir, chosen)
    if len(pairs) > MANY_PAIRS:
        log.warning("flow: %d pairs to evaluate, every method on each, a long run; choose some with glob patterns "
                    "over their names, e.g. --set \"eval.flow.pairs=['%s/*']\"", len(pairs),
                    pairs[0].name.rsplit("/", 1)[0])
    # every pair read once before the transfer decoders train: unreadable data must not cost their budget first
    # (nor leave OUT/transfer behind); pairs are read again one at a time below, none is held
    unreadable = {}
    for pair in pairs:
        try:
            height, width = load_pair(pair).image1.shape[:2]
            if min(height, width) < MIN_SIDE:  # found now, not as a traceback from the first feature method
                raise FlowFileError(pair.frame1, f"frames are {width}x{height} px, under the {MIN_SIDE} px a side the "
                                                 "backbones take")
        except FlowFileError as e:
            log.warning("flow: skipping %s: %s", pair.name, e)
            unreadable[pair.name] = str(e)
    if len(unreadable) == len(pairs):
        raise VidsslError(f"no flow pair under {data_dir} could be read: " + "; ".join(unreadable.values()))
    budget_s = 60.0 * (cfg.budget_minutes if budget_minutes is None else budget_minutes)
    retire_results(out_dir, figures=("pairs/*.png",))
    with evaluation_mode(models, device):
        methods, transfer = build_methods(models, cfg, out_dir, budget_s, seed, device, progress)
        # the feature methods' window: +-max_displacement cells of the coarsest stride (8 for every backbone)
        reach_px = cfg.max_displacement * max((m.dense_stride for m in models.values()), default=8)
        per_method, skipped, reach, figures = _run_methods(methods, [p for p in pairs if p.name not in unreadable],
                                                           cfg, out_dir, progress, reach_px)
    skipped = {**unreadable, **skipped}
    done = [p.name for p in pairs if p.name not in skipped]
    if not done:
        raise VidsslError(f"no flow pair under {data_dir} could be read: " + "; ".join(skipped.values()))

    datasets: dict[str, list[str]] = {}  # pooling Middlebury with KITTI, or Sintel's passes, hides either
    for pair in pairs:
        if pair.name in done:
            datasets.setdefault(pair.dataset, []).append(pair.name)
    summary = {
        "data_dir": str(Path(data_dir).resolve()), "pairs": done, "datasets": datasets, "skipped": skipped,
        "metric_keys": list(METRIC_KEYS),
        "methods": {name: {"mean": mean_metrics(list(results.values())),
                           "datasets": {d: mean_metrics([results[p] for p in names]) for d, names in datasets.items()},
                           "seconds_per_pair": _seconds_per_pair(list(results.values())),
                           "pairs": results} for name, results in per_method.items()},
        "reach": {"px": reach_px, "pairs": reach}, "figures": figures, "transfer": transfer, "device": str(device),
        "seed": seed,
        # the transfer budget applied: config.budget_minutes, or what `vidssl pretrain` could give it
        "budget_minutes": budget_s / 60, "config": asdict(cfg), "versions": versions(),
        # per model (the name inside match[...] and transfer[...]), the file it was loaded from (path, sha256, its
        # card's git_sha and steps), or None
        "weights": weights_record(models),
    }
    atomic_write_json(out_dir / "metrics.json", summary)
    atomic_write_text(out_dir / "metrics.md", markdown_table(summary))
    return summary


def _seconds_per_pair(results: list[dict]) -> float:
    """Mean seconds a pair over the pairs after the first, whose call also pays each method's one-time start-up
    (oneDNN's kernels, OpenCV's DIS instance): over that pair alone when it is the only one."""
    timed = results[1:] or results
    return sum(r["seconds"] for r in timed) / len(timed)


def spread(n: int, most: int) -> set[int]:
    """``min(n, most)`` of the indices 0..n-1, evenly spread with the first and the last among them: a capped set
    of figures still shows every part of the data (a Sintel release's sequences, both passes), not its first few."""
    return set(np.linspace(0, n - 1, min(n, most)).round().astype(int).tolist())


def _run_methods(methods: dict[str, FlowMethod], pairs: list, cfg: FlowConfig, out_dir: Path, progress: bool,
                 reach_px: float) -> tuple[dict[str, dict[str, dict]], dict[str, str], dict[str, dict], list[str]]:
    """Every method on every readable pair: ({method: {pair: metrics and seconds}}, {skipped pair: why}, {pair:
    what the feature methods' +-``reach_px`` window can get right of it}, [pairs whose figure was written])."""
    per_method: dict[str, dict[str, dict]] = {name: {} for name in methods}
    skipped: dict[str, str] = {}
    reach: dict[str, dict] = {}
    figures: list[str] = []
    shown_at = spread(len(pairs), MAX_FIGURES)
    for index, pair in enumerate(tqdm(pairs, desc="flow pairs", unit="pair", disable=not bars_on_stderr(progress))):
        try:
            sample = load_pair(pair)
        except FlowFileError as e:
            log.warning("flow: skipping %s: %s", pair.name, e)
            skipped[pair.name] = str(e)
            continue
        reach[pair.name] = window_reach(sample.flow, sample.valid, reach_px)
        if reach[pair.name]["in_reach_pct"] < 50:  # its match EPE says little about the features
            log.warning("flow: %s: %.0f%% of its pixels move within the +-%g px feature matching reaches "
                        "(eval.flow.max_displacement=%d cells): no matcher limited so scores under EPE %.2f there",
                        pair.name, reach[pair.name]["in_reach_pct"], reach_px, cfg.max_displacement,
                        reach[pair.name]["floor_epe"])
        shown = {}
        for name, method in methods.items():
            start = time.perf_counter()
            flow = method(sample.image1, sample.image2)
            seconds = time.perf_counter() - start
            metrics = flow_metrics(flow, sample.flow, sample.valid, sample.occluded)
            per_method[name][pair.name] = {**metrics, "seconds": seconds}
            shown[name] = (flow, metrics["epe"])
        if cfg.figures and index in shown_at:
            figure = pair_figure(sample.image1, sample.flow, sample.valid, shown)
            ok, png = cv2.imencode(".png", cv2.cvtColor(figure, cv2.COLOR_RGB2BGR))
            atomic_write_bytes(out_dir / "pairs" / f"{file_name(pair.name)}.png", png.tobytes())
            figures.append(pair.name)
    return per_method, skipped, reach, figures
