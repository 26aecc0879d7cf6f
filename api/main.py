"""Console entry point: the daemon's CLI with this API layer plugged in."""

from __future__ import annotations

import sys

from api.app import build_app
from daemon.cli import main as daemon_main


def main() -> int:
    return daemon_main(sys.argv[1:], build_app=build_app)


if __name__ == "__main__":
    sys.exit(main())
