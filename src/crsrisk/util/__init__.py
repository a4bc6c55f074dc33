"""Small helpers at the edges: atomic owner-only writes, output tables, strict JSON, the cluster client."""
