"""Mining throughput against decoding, motion-method comparison, and memory of the tracking stage.

    python tools/bench_mining.py [--data $VIDSSL_DATA/videos] [--runs 2]   # decode-only vs mining, per clip
    python tools/bench_mining.py --motion [--data $VIDSSL_DATA/videos]      # camera-compensation methods
    python tools/bench_mining.py --rss [--frames 150]                       # peak RSS on a synthetic 1080p clip

Throughput: each clip is decoded alone (the same decode the miner does: auto backend, long side <= working_side)
and mined (decode included), one process, alternating, best of ``--runs``; the ratio is mining f/s over decode f/s.
The first clip is decoded and mined once, untimed, before the table (the libraries' start-up). Numbers on a loaded
machine move together, so read the ratios, measured in one run. An option the chosen mode ignores is refused.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from _bench_videos import data_root, open_clips
from tracking.config import MineConfig
from tracking.motion import CORRESPONDENCES, MotionEstimator
from tracking.video_miner import SkipVideo, mine_video
from vidssl.config import load_config
from vidssl.video import open_video

REPO = Path(__file__).resolve().parents[1]


def decode_seconds(path: Path, cfg: MineConfig) -> tuple[int, float]:
    # the opening timed on both sides, as bench_decode times it (which times the reader's close too): decord
    # decodes while it opens, and open_video's checks are 20-40% of a short clip's decode; the close is not timed
    # on either side here
    start = time.perf_counter()
    with open_video(path) as reader:
        n = sum(1 for _ in reader.frames(max_side=cfg.working_side))
        seconds = time.perf_counter() - start
    return n, seconds


def mine_seconds(path: Path, cfg: MineConfig) -> tuple[int, float, int, str | None]:
    """(frames mined, seconds, pairs, why the miner skipped the clip or None)."""
    start = time.perf_counter()
    with open_video(path) as reader:
        skipped = None
        try:
            result = mine_video(reader, cfg)
        except SkipVideo as e:
            result, skipped = e.result, e.reason
        seconds = time.perf_counter() - start
    return (result.frames if result else 0), seconds, len(result.records) if result else 0, skipped


def _read_through(path: Path) -> None:
    with open(path, "rb") as fh:
        while fh.read(1 << 24):
            pass


def throughput(clips: list[tuple[Path, int, int]], cfg: MineConfig, paper: MineConfig, runs: int) -> None:
    print(f"best of --runs {runs}; both decode with the auto backend, long side <= {cfg.working_side} "
          "(mine.working_side); size: the source's")
    if clips:  # untimed: the libraries' one-time start-up (decoder, OpenCV's pool, allocator) would fall on clip 1
        print(f"{clips[0][0].name} decoded and mined once first, untimed (the libraries' start-up)")
        decode_seconds(clips[0][0], cfg)
        mine_seconds(clips[0][0], cfg)
    print("| clip | size | frames | decode f/s | mining f/s | ratio | pairs | pairs (paper 25-75%) |")
    print("|---|---|---|---|---|---|---|---|")
    totals = np.zeros(4)
    for path, height, width in clips:
        size = f"{width}x{height}"
        decode, mine = [], []
        _read_through(path)  # in the page cache before the first timed read, whichever side comes first
        for run in range(runs):
            if run % 2:  # alternate which side runs first (a cold start or a warmed decoder favours one)
                frames, m, pairs, skipped = mine_seconds(path, cfg)
                n, d = decode_seconds(path, cfg)
            else:
                n, d = decode_seconds(path, cfg)
                frames, m, pairs, skipped = mine_seconds(path, cfg)
            decode.append(d)
            mine.append(m)
        if frames != n:  # skipped before the end (too short, too small): its time is not comparable
            print(f"| {path.name} | {size} | {n} | {n / min(decode):.0f} | - | - | {pairs} | - |  "
                  f"(mined {frames} of {n} frames: {skipped or 'stopped early'}; not in the totals)")
            continue
        d, m = min(decode), min(mine)
        paper_pairs = mine_seconds(path, paper)[2]
        totals += (n, d, m, pairs)
        print(f"| {path.name} | {size} | {n} | {n / d:.0f} | {n / m:.0f} | {d / m:.2f} | {pairs} | {paper_pairs} |")
    n, d, m, pairs = totals
    if not n:
        print("no clip was mined whole: no totals")
        return
    print(f"| **all** | | {n:.0f} | {n / d:.0f} | {n / m:.0f} | **{d / m:.2f}** | {pairs:.0f} | |")
    print(f"\npairs per 1000 frames: {1000 * pairs / n:.1f}")


# ---------------------------------------------------------------------------------------------------------------
# motion methods


# --motion on the real clips: each method timed once on every MOTION_STEP-th frame pair of each clip's first
# MOTION_FRAMES frames
MOTION_FRAMES, MOTION_STEP = 121, 4


def motion_table(videos: list[Path], cfg: MineConfig) -> None:
    from vidssl.demo import make_demo_videos

    with tempfile.TemporaryDirectory() as tmp:
        demo = make_demo_videos(tmp, num=6, seed=0)
        clips = [(p, json.loads(p.with_suffix(".json").read_text()), _grey(p, cfg)) for p in demo]
        real = [(p, _grey(p, cfg, end=MOTION_FRAMES)) for p in videos]
    print("demo: precision = moving points inside a true object (3 px in from its rim) / moving points;"
          " recall = moving points / points inside; background = moving share of points 8+ px from every object")
    print("| method | ms per frame pair (real clips) | demo precision | demo recall | demo background moving |"
          " static clip moving | real frames in 10-90% | real frames in 25-75% |")
    print("|---|---|---|---|---|---|---|---|")
    for method in CORRESPONDENCES:
        estimator = MotionEstimator(method, cfg.motion_points, cfg.move_threshold, cfg.ransac_px, 20)
        tp = moving = inside_n = bg_moving = bg_n = 0
        static = []
        for _, gt, grey in clips:
            for t in range(1, len(grey)):
                if t in gt["cut_frames"]:
                    continue
                motion = estimator(grey[t - 1], grey[t])
                if motion is None:
                    continue
                if gt["static"]:
                    static.append(motion.fraction)
                    continue
                inside, near = _object_masks(motion.points, [o["boxes"][t] for o in gt["objects"]])
                tp += (motion.moving & inside).sum()
                moving += motion.moving.sum()
                inside_n += inside.sum()
                bg_moving += (motion.moving & ~near).sum()
                bg_n += (~near).sum()
        fractions, seconds, calls = [], 0.0, 0
        for _, grey in real:
            for t in range(1, len(grey), MOTION_STEP):
                start = time.perf_counter()
                motion = estimator(grey[t - 1], grey[t])
                seconds += time.perf_counter() - start
                calls += 1
                fractions.append(1.0 if motion is None else motion.fraction)
        f = np.array(fractions)
        print(f"| {method} | {1000 * seconds / calls:.1f} | {tp / max(moving, 1):.2f} | {tp / max(inside_n, 1):.2f} | "
              f"{bg_moving / max(bg_n, 1):.3f} | {np.mean(static):.3f} | {np.mean((f >= .1) & (f <= .9)):.2f} | "
              f"{np.mean((f >= .25) & (f <= .75)):.2f} |")


def _grey(path: Path, cfg: MineConfig, end: int | None = None) -> list[np.ndarray]:
    with open_video(path) as reader:
        return [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for _, f in reader.frames(max_side=cfg.working_side, end=end)]


def _object_masks(points: np.ndarray, boxes: list) -> tuple[np.ndarray, np.ndarray]:
    """Points well inside an object (the demo's discs: the circle inscribed in the box, 3 px in from its rim), and
    points within 8 px of one."""
    inside = np.zeros(len(points), bool)
    near = np.zeros(len(points), bool)
    x, y = points[:, 0], points[:, 1]
    for box in boxes:
        if box is None:
            continue
        bx, by, bw, bh = box
        r = np.hypot(x - (bx + bw / 2), y - (by + bh / 2))
        inside |= r <= bw / 2 - 3
        near |= r <= bw / 2 + 8
    return inside, near


# ---------------------------------------------------------------------------------------------------------------
# memory


def loop_video(src: Path, dst: Path, times: int) -> None:
    """``src``'s packets ``times`` times in a row (no re-encoding): a long clip at the cost of a copy."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        in_stream = inp.streams.video[0]
        stream = out.add_stream_from_template(in_stream)
        packets = [p for p in inp.demux(in_stream) if p.size]
        # one frame's duration: the smallest gap between presentation times (packets come in decode order, so with
        # B-frames the first two are not neighbours: 0, 1536, 512, ... made every seam a 2-frame gap)
        stamps = sorted(p.pts for p in packets)
        span = stamps[-1] + min(b - a for a, b in zip(stamps, stamps[1:]) if b > a)
        for k in range(times):
            for p in packets:
                p.pts += span if k else 0
                p.dts = None if p.dts is None else p.dts + (span if k else 0)
                p.stream = stream
                out.mux(p)


def peak_rss(command: list[str]) -> tuple[float, float]:
    """(peak RSS in MiB, seconds) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{command} failed ({proc.returncode})")
    return usage.ru_maxrss / 1024, time.perf_counter() - start  # Linux: KiB


def rss(frames: int) -> None:
    """Peak RSS of mining a synthetic 1080p pan, once and looped 4x. On Linux a child's ``ru_maxrss`` starts from the
    parent's high-water mark, so the clips are made in a child too and this process stays small; the floor printed
    is that mark (a child can report no less)."""
    import resource

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make = ("import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
                "from vidssl.demo import make_demo_videos; from bench_mining import loop_video; "
                "clip = make_demo_videos(Path(sys.argv[2]) / 'one', num=2, seed=0, frames=int(sys.argv[3]), "
                "width=1920, height=1080)[1]; "  # a pan
                "[(Path(sys.argv[2]) / f'x{t}').mkdir() or loop_video(clip, Path(sys.argv[2]) / f'x{t}' / "
                "'pan_1080p.mp4', t) for t in (1, 4)]")
        subprocess.run([sys.executable, "-c", make, str(Path(__file__).parent), str(tmp), str(frames)], check=True)
        floor = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"(floor: this process's own peak, {floor:.0f} MiB)\n")
        print("| clip | frames | peak RSS: mining (one worker) | peak RSS: `vidssl mine` | pairs |")
        print("|---|---|---|---|---|")
        for times in (1, 4):
            folder = tmp / f"x{times}"
            worker, _ = peak_rss([sys.executable, "-c", "import sys; from tracking import mine_folder, MineConfig; "
                                  "mine_folder(sys.argv[1], sys.argv[2], MineConfig(), progress=False)",
                                  str(folder), str(tmp / f"w{times}")])
            cli, _ = peak_rss([sys.executable, "-m", "vidssl", "-q", "mine", str(folder),
                               "--out", str(tmp / f"c{times}")])
            summary = json.loads((tmp / f"w{times}" / "dataset.json").read_text())
            print(f"| 1920x1080, {times} x {frames} frames | {summary['frames']} | {worker:.0f} MiB | {cli:.0f} MiB | "
                  f"{summary['pairs']} |")
    print("\n`vidssl mine` records library versions from package metadata, so it never imports torch.")


def main() -> None:
    default = data_root() / "videos"
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=None, help=f"a video or a folder of them (default {default}; not "
                                                            "with --rss)")
    ap.add_argument("--runs", type=int, default=None, help="timed runs per clip, the best kept (default 2; not "
                                                           "with --motion or --rss)")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--motion", action="store_true", help="compare the camera-compensation methods")
    mode.add_argument("--rss", action="store_true", help="peak RSS on a synthetic 1080p clip, short and 4x longer")
    ap.add_argument("--frames", type=int, default=None, help="--rss: frames of the synthetic clip before looping "
                                                             "(default 150)")
    args = ap.parse_args()
    if args.rss and args.runs is not None:
        ap.error("--runs does not apply to --rss (one measurement per clip length)")
    if args.motion and args.runs is not None:
        ap.error(f"--runs does not apply to --motion (each method is timed once, on every {MOTION_STEP}th frame pair "
                 f"of each clip's first {MOTION_FRAMES} frames)")
    if args.rss and args.data is not None:
        ap.error("--data does not apply to --rss (it mines a synthetic 1080p clip it makes; size it with --frames)")
    args.data = default if args.data is None else args.data
    if args.frames is not None and not args.rss:
        ap.error("--frames is --rss's (the synthetic clip); the other modes read --data")
    args.runs = 2 if args.runs is None else args.runs
    args.frames = 150 if args.frames is None else args.frames
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    cfg = MineConfig()
    shortest = cfg.track_length + 2  # what the miner needs of a clip: a shorter one is skipped, no pair to measure
    if args.rss and args.frames < shortest:
        ap.error(f"--frames must be at least {shortest} (mine.track_length + 2), got {args.frames}")
    clips = [] if args.rss else open_clips(ap, args.data)  # --rss makes its own clip
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; OpenCV {cv2.__version__}")
    if args.motion:
        motion_table([path for path, _, _ in clips], cfg)
    elif args.rss:
        rss(args.frames)
    else:
        paper = load_config(REPO / "configs" / "mine_paper.yaml").mine
        throughput(clips, cfg, paper, args.runs)


if __name__ == "__main__":
    main()
