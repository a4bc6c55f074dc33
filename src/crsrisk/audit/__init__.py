"""The auditor's tools: the hash-chained prediction log (log.py)."""
