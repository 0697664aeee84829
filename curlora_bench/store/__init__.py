"""Typed results: schema, run folders, metrics, checkpoints, report, plots, export."""
