"""`python -m medkd.cli`: the `medkd` command."""

from medkd.cli import main

main()
