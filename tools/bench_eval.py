"""Evaluation throughput, one section per task, measured in one run:

- retrieval: images/s of batched feature extraction and queries/s of the chunked kNN;
- flow: pairs/s of each method at 1024x436;
- davis: seconds per frame of label propagation.

    python tools/bench_eval.py [--only retrieval|flow|davis]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _bench_davis  # noqa: E402
import _bench_flow  # noqa: E402
import _bench_retrieval  # noqa: E402

SECTIONS = {"retrieval": _bench_retrieval.main, "flow": _bench_flow.main, "davis": _bench_davis.main}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=sorted(SECTIONS), action="append", help="run only these sections")
    args = ap.parse_args()
    for name in args.only or SECTIONS:
        print(f"\n## {name}\n", flush=True)
        SECTIONS[name]()


if __name__ == "__main__":
    main()
