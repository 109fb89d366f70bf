"""Presentation: text tables, JSON and files. Nothing here computes an analysis."""
