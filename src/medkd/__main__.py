"""``python -m medkd``: the same command line as ``medkd``."""

from medkd.cli import main

if __name__ == "__main__":
    main()
