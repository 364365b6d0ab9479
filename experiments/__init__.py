"""Experiments: outcomes joined to decisions, and their analysis.

:mod:`experiments.join` attaches to each assigned session what it did after
its first decision, point in time; :mod:`experiments.load` reads a window of
decisions and events for it; :mod:`experiments.stats` holds the statistics
(scipy, statsmodels); :mod:`experiments.analysis` compares every arm with
control and gives a verdict; :mod:`experiments.report` draws it.
"""
