"""Random draws and grouped running sums the simulation is built from (numpy, column-wise)."""

from __future__ import annotations

import numpy as np

from events.synth.world import ADD, REMOVE

# --------------------------------------------------------------------------- helpers


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _categorical(rng: np.random.Generator, logits: np.ndarray) -> np.ndarray:
    """One draw per row of a (rows, k) matrix of log-weights (``-inf`` = impossible)."""
    weights = np.exp(logits - logits.max(axis=1, keepdims=True))
    cum = np.cumsum(weights, axis=1)
    u = rng.random(len(logits)) * cum[:, -1]
    return np.minimum((cum <= u[:, None]).sum(axis=1), logits.shape[1] - 1)


def _rows_choice(rng: np.random.Generator, probs: np.ndarray, row: np.ndarray) -> np.ndarray:
    """One draw per element of ``row`` from the probability table row it names."""
    cum = np.cumsum(probs, axis=1)
    cum /= cum[:, -1:]
    u = rng.random(len(row))
    return np.minimum((cum[row] <= u[:, None]).sum(axis=1), probs.shape[1] - 1)


def _group_cummax(values: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Running maximum of int64 ``values`` restarting at each group (groups ascending)."""
    if len(values) == 0:
        return values
    span = int(values.max() - values.min()) + 1
    shift = group.astype(np.int64) * (2 * span)
    return np.maximum.accumulate(values + shift) - shift


def _cart_steps_of(etype: np.ndarray) -> np.ndarray:
    return (etype == ADD).astype(np.int64) - (etype == REMOVE)


def _group_starts(group: np.ndarray) -> np.ndarray:
    first = np.ones(len(group), dtype=bool)
    first[1:] = group[1:] != group[:-1]
    return first
