"""Export the suite's tiny test bundles for a run on an interpreter without torch.

The vehicle's interpreter (JetPack 6: Python 3.10, numpy 1.x) has no torch and so cannot export;
the workstation fills a store once and the torch-free run copies bundles from it:

    .venv/bin/python tools/prebuild_test_bundles.py build/test_bundles
    UWSTEGO_TEST_BUNDLES=build/test_bundles .venv310/bin/python -m pytest
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", type=Path, help="folder to fill (bundles in it are replaced)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))  # the test helpers are not an installed package
    from tests.support.bundles import prebuild

    for path in prebuild(args.store):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
