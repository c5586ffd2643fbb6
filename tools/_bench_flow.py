"""Flow section of tools/bench_eval.py: pairs/s of every method at Sintel size (1024x436), measured in one run, and
the vectorised correlation layer against the two obvious alternatives (a loop over displacements, an unfold).

    python tools/_bench_flow.py [--archs smallcnn,resnet18] [--repeats 3] [--device cpu]

Frames are a synthetic pair (no data needed); backbones are at random init (speed does not depend on weights);
transfer rows time the inference of an untrained CorrFlowNet.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
import torch
import torch.nn.functional as F

from _bench_timing import best_seconds
from vidssl.eval.baselines import PixelFeatures
from vidssl.eval.flow.correlation import correlation
from vidssl.eval.flow.methods import CLASSICAL, FeatureMatchFlow, NetworkFlow
from vidssl.eval.flow.synthetic import synthetic_pairs
from vidssl.eval.flow.transfer import CorrFlowNet
from vidssl.models import ARCHS, build_backbone

HEIGHT, WIDTH = 436, 1024


def _loop_correlation(f1, f2, d):
    h, w = f1.shape[-2:]
    padded = F.pad(f2, (d, d, d, d))
    return torch.stack([(f1 * padded[:, :, dy:dy + h, dx:dx + w]).sum(1)
                        for dy in range(2 * d + 1) for dx in range(2 * d + 1)], 1)


def _unfold_correlation(f1, f2, d):
    b, c, h, w = f1.shape
    patches = F.unfold(f2, kernel_size=2 * d + 1, padding=d).view(b, c, -1, h, w)
    return (patches * f1.unsqueeze(2)).sum(1)


def main(argv: list[str] | None = None) -> None:
    """Print the tables; ``argv`` None (as tools/bench_eval.py calls it) means the defaults."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", default="smallcnn,resnet18", help="comma-separated backbones for rows 3 and 4")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-displacement", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args([] if argv is None else argv)
    if args.repeats < 1:
        ap.error(f"--repeats must be at least 1, got {args.repeats}")
    if args.max_displacement < 1:
        ap.error(f"--max-displacement must be at least 1 cell, got {args.max_displacement}")
    unknown = [arch for arch in args.archs.split(",") if arch not in ARCHS]
    if unknown:
        ap.error(f"--archs: unknown {', '.join(map(repr, unknown))}; choose from {', '.join(ARCHS)}")
    try:
        device = torch.device(args.device)
    except RuntimeError as e:
        ap.error(f"--device {args.device}: {e}; use cpu, cuda or cuda:N")
    if device.type not in ("cpu", "cuda") or device.type == "cpu" and device.index not in (None, 0):
        ap.error(f"--device {args.device}: use cpu, cuda or cuda:N")  # meta ran into a traceback, cpu:3 ran as cpu
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device.type == "cuda" and (device.index or 0) >= gpus:
        ap.error(f"--device {args.device}: torch sees {gpus} CUDA device(s) on this machine; use --device cpu")
    d = args.max_displacement

    pair = synthetic_pairs(1, HEIGHT, WIDTH, torch.Generator().manual_seed(0))
    image1, image2 = ((x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
                      for x in (pair.image1, pair.image2))
    torch.manual_seed(0)
    methods = dict(CLASSICAL)
    for arch in args.archs.split(","):
        backbone = build_backbone(arch).eval().to(device)
        methods[f"match[{arch}]"] = FeatureMatchFlow(backbone, d, 0.05, device)
        methods[f"transfer[{arch}]"] = NetworkFlow(CorrFlowNet(backbone, d, 0.05).to(device), device)
    methods["match[raw pixels]"] = FeatureMatchFlow(PixelFeatures(), d, 0.05, device)

    print(f"flow methods at {WIDTH}x{HEIGHT}, {torch.get_num_threads()} torch threads, device {device}, "
          f"radius {d} cells, best of {args.repeats} runs")
    times = {name: best_seconds(lambda m=method: m(image1, image2), args.repeats, device)
             for name, method in methods.items()
             if name != "zero"}
    reference = times["dis_medium"]
    print("| method | s/pair | pairs/s | time vs dis_medium |\n|---|---|---|---|")
    for name, seconds in times.items():
        print(f"| {name} | {seconds:.3f} | {1 / seconds:.2f} | {seconds / reference:.1f}x |")

    print(f"\ncorrelation layer, radius {d}, at stride-8 size of {WIDTH}x{HEIGHT} (55x128 cells)")
    print("| channels | vectorised s | loop over displacements s | unfold s | loop / vectorised | unfold / vectorised |"
          "\n|---|---|---|---|---|---|")
    for channels in (256, 1024):
        g = torch.Generator().manual_seed(1)
        f1, f2 = (torch.randn(1, channels, 55, 128, generator=g).to(device) for _ in range(2))
        with torch.no_grad():
            fast = best_seconds(lambda: correlation(f1, f2, d), args.repeats, device)
            loop = best_seconds(lambda: _loop_correlation(f1, f2, d), args.repeats, device)
            unfold = best_seconds(lambda: _unfold_correlation(f1, f2, d), args.repeats, device)
        print(f"| {channels} | {fast:.3f} | {loop:.3f} | {unfold:.3f} | {loop / fast:.1f}x | {unfold / fast:.1f}x |")


if __name__ == "__main__":
    main(sys.argv[1:])
