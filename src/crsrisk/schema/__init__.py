"""The cohort contract: analyte registry, table columns, validation."""
