"""The cohort contract's facts: the analyte registry (names, units, codes, ranges) and the table columns and vocabularies."""
