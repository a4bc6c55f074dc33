"""The cohort: contract tables validated into a ``Cohort`` (``validate``), one patient's record (``record``),
flat numpy arrays for the kernels (``arrays``), and reading/writing contract folders (``io``).

Everything here sits above ``schema`` (the facts: analytes, columns, vocabularies) and below ``tasks``,
``features`` and everything that consumes a cohort.
"""

from crsrisk.cohort.validated import Cohort

__all__ = ["Cohort"]
