"""The auditor's tools: the hash-chained prediction log, split by job: where its files live (location), its
secrets (keys), appending (chain), its witnessed heads (witness), checking it (verify), record layouts (records)."""

from crsrisk.audit.chain import AuditLog, log_head
from crsrisk.audit.keys import pseudonym, pseudonym_key
from crsrisk.audit.location import resolve_log_path
from crsrisk.audit.records import batch_record, prediction_record
from crsrisk.audit.verify import VerifyResult, parse_head, verify_log

__all__ = [
    "AuditLog",
    "VerifyResult",
    "batch_record",
    "log_head",
    "parse_head",
    "prediction_record",
    "pseudonym",
    "pseudonym_key",
    "resolve_log_path",
    "verify_log",
]
