"""Counting and pricing: what happened (counters) kept apart from what it costs (profiles)."""
