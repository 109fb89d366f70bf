"""Analyses: pure computations that return frozen result objects and write nothing.

They take a :class:`~ptqdebug.context.Context` (model, data, engine) and never import plotting
or file-writing code; :mod:`ptqdebug.plots` and :mod:`ptqdebug.report` present their results.
"""
