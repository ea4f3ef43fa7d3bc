"""Benchmarks of durable against the database's own baselines: ``python -m benchmarks``."""
