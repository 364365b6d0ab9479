"""The segmenter's core on planted clusters: recovery, determinism, stable ids."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from models.segments import fit_segmenter, stable_ids

FEATURES = [f"term_{i}" for i in range(8)]
#: How two latent traits show in eight behaviour terms (like pace and focus in the
#: real vector), fixed so that every planted world is read through the same terms.
LOADINGS = np.random.default_rng(42).normal(0.0, 1.0, size=(2, 8))


def planted(seed: int, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Four segments of ``n`` sessions each: four known centres of two latent traits,
    seen through eight noisy behaviour terms; and the segments' labels."""
    rng = np.random.default_rng(seed)
    centres = np.array([[-2.0, -2.0], [2.0, -2.0], [-2.0, 2.0], [2.0, 2.0]])
    latent = np.vstack([rng.normal(c, 0.5, size=(n, 2)) for c in centres])
    x = latent @ LOADINGS + rng.normal(0.0, 0.5, size=(4 * n, 8))
    return x, np.repeat(np.arange(4), n)


def test_a_planted_structure_is_recovered() -> None:
    x, truth = planted(1)
    seg = fit_segmenter(x, FEATURES, seed=0)
    assert seg.k == 4 and seg.silhouettes[4] == max(seg.silhouettes.values())
    assert adjusted_rand_score(truth, seg.assign(x)) > 0.95


def test_clustering_is_deterministic_for_a_seed() -> None:
    x, _ = planted(2)
    a, b = fit_segmenter(x, FEATURES, seed=3), fit_segmenter(x, FEATURES, seed=3)
    assert np.array_equal(a.centroids, b.centroids) and a.silhouette == b.silhouette
    assert np.array_equal(a.assign(x), b.assign(x))


def test_ids_stay_when_the_same_data_is_clustered_in_another_order() -> None:
    x, _ = planted(3)
    first = fit_segmenter(x, FEATURES, seed=0)
    order = np.random.default_rng(9).permutation(len(x))
    again = stable_ids(first, fit_segmenter(x[order], FEATURES, seed=5))
    assert np.array_equal(again.assign(x), first.assign(x))
    # New data from the same world: the ids follow the segments, not KMeans's numbering.
    y, truth = planted(4)
    later = stable_ids(first, fit_segmenter(y, FEATURES, seed=11))
    by_first, by_later = first.assign(y), later.assign(y)
    assert (by_first == by_later).mean() > 0.99
    assert adjusted_rand_score(truth, by_later) > 0.95


def test_one_session_is_assigned_like_its_row_and_missing_values_count_as_the_mean() -> None:
    x, _ = planted(5)
    seg = fit_segmenter(x, FEATURES, seed=0)
    row = dict(zip(FEATURES, x[7].tolist(), strict=True))
    assert seg.assign_one(row) == seg.assign(x[7:8])[0]
    card = seg.to_card()
    assert card["features"] == FEATURES and len(card["centroids"]) == seg.k
    assert seg.assign_one({}) in seg.ids


def test_the_scorers_plain_python_path_gives_the_batch_numbers() -> None:
    """segment_vector (one session, plain Python) equals segment_vectors (numpy columns),
    and assign_row equals assign, on random sessions with missing values among them."""
    from feature_repo.features import SEGMENT_INPUTS
    from feature_repo.segment_vector import segment_vector, segment_vectors

    rng = np.random.default_rng(8)
    n = 500
    cols = {c: rng.gamma(2.0, 30.0, size=n) for c in SEGMENT_INPUTS}
    cols["last_event_ts"] = cols["session_start_ts"] + rng.uniform(0, 900, size=n)
    cols["event_count"] = rng.integers(1, 60, size=n).astype(float)
    for c in ("hover_ms_mean", "scroll_velocity_mean", "hesitation_score"):
        cols[c][rng.random(n) < 0.2] = np.nan
    batch = segment_vectors(cols)
    x, _ = planted(6, n=200)
    seg = fit_segmenter(x, FEATURES, seed=0)
    seg_b = fit_segmenter(batch, [f"t{i}" for i in range(8)], seed=0, ks=(4, 5, 6))
    for i in range(n):
        row = {c: None if np.isnan(cols[c][i]) else float(cols[c][i]) for c in SEGMENT_INPUTS}
        one = segment_vector(row)
        assert np.allclose(one, batch[i], rtol=1e-12, atol=1e-12, equal_nan=True)
        sid, point = seg_b.assign_row(one)
        assert sid == seg_b.assign(batch[i : i + 1])[0]
        assert np.allclose(point, seg_b.project(batch[i : i + 1])[0], atol=1e-9)
    assert all(seg.assign_row(r)[0] == s for r, s in zip(x, seg.assign(x), strict=True))


def test_the_shares_check_against_a_hand_computed_index() -> None:
    from monitoring.segments import psi, shares_check

    # PSI = sum (a - e) ln(a / e): (0.6 - 0.5) ln 1.2 + (0.4 - 0.5) ln 0.8
    assert psi(np.array([0.5, 0.5]), np.array([0.6, 0.4])) == pytest.approx(
        0.1 * math.log(1.2) - 0.1 * math.log(0.8)
    )
    x, _ = planted(7, n=300)
    seg = fit_segmenter(x, FEATURES, seed=0)
    labels = seg.assign(x)
    reference = {sid: float(np.mean(labels == sid)) for sid in seg.ids}
    same = shares_check(seg, reference, x, 0.05, min_sessions=500)
    assert same.status == "pass" and same.values["psi"] == pytest.approx(0.0, abs=1e-12)
    # Drop most of one segment: its share falls, the index rises past the limit.
    first = labels == seg.ids[0]
    moved = np.vstack([x[~first], x[first][:30]])
    check = shares_check(seg, reference, moved, 0.05, min_sessions=500)
    assert check.status == "fail" and f"segment {seg.ids[0]}" in check.detail
    assert shares_check(seg, reference, x[:100], 0.05, min_sessions=500).status == "no_data"
