"""Progress bars where a person watches a terminal; the long stages log a line a minute where nobody does."""
from __future__ import annotations

import os
import sys


def bars_on_stderr(wanted: bool = True) -> bool:
    """Whether to draw progress bars: ``wanted``, and stderr a terminal with a width. tqdm (dynamic_ncols) draws
    nothing on one that reports 0 columns (`script -qc`, some CI runners, `docker exec -t` before a resize), and a
    bar counted as drawn there had switched the once-a-minute lines off as well: the run was silent."""
    if not wanted or not sys.stderr.isatty():
        return False
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns > 0
    except (OSError, ValueError):  # no descriptor behind it, or one that is no terminal after all
        return False
