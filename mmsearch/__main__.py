"""`python -m mmsearch` runs the CLI."""

from mmsearch.cli import main

main()
