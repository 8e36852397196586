"""Command line: ``python -m pipeline.synth --out results/demo --size demo --seed 0``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pipeline.cli import user_errors
from pipeline.synth.generate import generate
from pipeline.synth.sizes import SIZES


@user_errors()
def main(argv: list[str] | None = None) -> None:
    """Parse the command line and generate the data set."""
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.synth", description="Render the synthetic AV benchmark."
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder of the data set")
    parser.add_argument("--size", default="demo", help=f"one of: {', '.join(SIZES)}")
    parser.add_argument("--seed", type=int, default=0, help="data-set seed")
    parser.add_argument("--num-classes", type=int, default=10, help="event classes, 2..20")
    parser.add_argument("--workers", type=int, default=1, help="parallel rendering processes")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    generate(args.out, args.size, args.seed, args.num_classes, workers=args.workers)


if __name__ == "__main__":
    sys.exit(main())
