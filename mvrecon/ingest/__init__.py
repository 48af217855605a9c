"""Ingest stage: the session checked against its rig, every photo decoded once (``ingest/manifest.json``)."""
