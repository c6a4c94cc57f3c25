"""Scheduled digests: drift, incidents and governance, computed (pure) and then rendered."""
