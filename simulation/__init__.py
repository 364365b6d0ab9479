"""Simulated visitors that answer the scorer's decisions: the closed loop, with its truth.

:mod:`simulation.visitors` turns a generated world's cart sessions into
visitors and draws how each ends, given what it was shown;
:mod:`simulation.run` drives them through the scorer (over HTTP or in
process) and writes the truth beside the decisions.
"""
