"""Tracking stage: mine positive patch pairs from unlabeled videos (Wang & Gupta 2015, section 3).

``mine_folder(videos_dir, out_dir, cfg)`` turns a folder of videos into a pair dataset directory (layout in
``tracking.dataset``); ``merge(out_dir)`` rebuilds its manifest and summary from the per-video results.
"""
from tracking.config import MineConfig
from tracking.dataset import merge
from tracking.runner import format_summary, mine_folder

__all__ = ["MineConfig", "format_summary", "merge", "mine_folder"]
