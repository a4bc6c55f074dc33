"""The ``crsrisk`` command line: thin wrappers that parse options, call the library and print results.

One module per command group; importing them registers their commands on ``app``.
"""

from crsrisk.cli import audit, care, data, modelling, monitoring  # noqa: F401  (registers the commands)
from crsrisk.cli.common import app, print_json

__all__ = ["app", "print_json"]
