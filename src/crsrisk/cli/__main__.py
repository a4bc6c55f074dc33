"""``python -m crsrisk.cli``: the same command line as ``crsrisk``."""

from crsrisk.cli import app

app()
