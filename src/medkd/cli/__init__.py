"""The `medkd` command: parses options and calls the packages; no logic of its own. Each module registers its
commands on the one app of `common`."""

# Imported for their commands, in the order `medkd --help` lists them.
from medkd.cli import training  # noqa: F401, I001
from medkd.cli import deploy  # noqa: F401
from medkd.cli import site  # noqa: F401
from medkd.cli.common import app


def main() -> None:
    app()


__all__ = ["app", "main"]
