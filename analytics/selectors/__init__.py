"""Reads of the analytics app, one module per area; selectors decide joins and prefetches."""
