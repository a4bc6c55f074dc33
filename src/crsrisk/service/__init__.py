"""The clinician-facing service: REST on patient records and the bedside page (``crsrisk serve``)."""

from crsrisk.service.app import create_app

__all__ = ["create_app"]
