"""Experiments: outcomes joined to decisions, and their analysis.

:mod:`experiments.join` attaches to each assigned session what it did after
its first decision, point in time.
"""
