"""``python -m labelcut``: the same command line as ``labelcut``."""

from labelcut.app.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
