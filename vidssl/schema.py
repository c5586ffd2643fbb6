"""``opt``: a dataclass field with a help string, used by every component's config dataclass.

Kept apart from ``vidssl.config`` so component config modules (``tracking/config.py`` and others) import no
vidssl machinery and the composition in ``vidssl.config`` has no import cycle.
"""
from __future__ import annotations

import copy
from dataclasses import field
from typing import Any


def opt(default: Any, help: str, **kwargs: Any) -> Any:
    """A dataclass field whose ``help`` becomes the comment beside the key in ``configs/default.yaml``."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: copy.deepcopy(d), metadata={"help": help}, **kwargs)
    return field(default=default, metadata={"help": help}, **kwargs)
