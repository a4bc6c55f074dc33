"""Clinical data sources read into the cohort contract: FHIR R4 (``fhir``), OMOP CDM v5.4 (``omop``).

Both importers gather the same source rows (``assemble.SourceRows``) and share one rule for dates without a
time (``daily.TimeRule``); ``assemble`` turns the rows into the three contract tables and validates them.
"""
