"""Tracking stage: mine positive patch pairs from unlabeled videos (Wang & Gupta 2015, section 3)."""
