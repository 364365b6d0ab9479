"""Models without Feast: the gate's reasons, calibration, river checkpoints, registry aliases."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.settings import GateSettings
from models import registry
from models.card import ModelCard
from models.gate import decide
from models.lgbm import train_lgbm
from models.metrics import expected_calibration_error, roc_auc
from models.online import RiverRiskModel, replay

COLUMNS = ["size_guide_opens", "cart_removes", "price_hover_count", "hover_ms_mean", "hour_of_day"]


def synthetic(n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows whose abandonment probability rises with hesitation; hour is irrelevant."""
    rng = np.random.default_rng(seed)
    x = np.column_stack(
        [
            rng.poisson(1.0, n),
            rng.poisson(0.5, n),
            rng.poisson(2.0, n),
            rng.lognormal(6, 0.5, n),
            rng.integers(0, 24, n),
        ]
    ).astype(float)
    z = -0.5 + 0.6 * x[:, 0] + 0.5 * x[:, 1] + 0.2 * x[:, 2] + 0.001 * (x[:, 3] - 400)
    p = 1 / (1 + np.exp(-z))
    return x, (rng.random(n) < p).astype(int), p


class Fixed:
    """A stand-in model with a known prediction function (to drive each gate check)."""

    def __init__(self, fn) -> None:
        self.fn = fn
        self.card = ModelCard("test", "svc", COLUMNS, {})

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.clip(self.fn(x), 1e-4, 1 - 1e-4)


def truth(x: np.ndarray) -> np.ndarray:
    z = -0.5 + 0.6 * x[:, 0] + 0.5 * x[:, 1] + 0.2 * x[:, 2] + 0.001 * (x[:, 3] - 400)
    return 1 / (1 + np.exp(-z))


CFG = GateSettings()
PASS = ("pass", "no drift check has run yet")


def failed(decision) -> set[str]:
    return {c.name for c in decision.checks if not c.passed}


def test_gate_promotes_a_good_first_model() -> None:
    x, y, _ = synthetic()
    d = decide(Fixed(truth), None, x, y, CFG, latency_us=50, drift_verdict=PASS)
    assert d.promote and failed(d) == set()


@pytest.mark.parametrize(
    ("challenger", "latency", "verdict", "reason"),
    [
        (lambda x: 0.5 + 0.0 * x[:, 0], 50, PASS, "auc"),  # no better than the baseline
        (lambda x: truth(x) ** 3, 50, PASS, "calibration"),  # right order, wrong scale
        (lambda x: truth(x) * (0.6 + 0.4 * (x[:, 4] < 12)), 50, PASS, "invariance"),
        (lambda x: 1 - truth(x), 50, PASS, "direction"),
        (truth, 50_000, PASS, "latency"),
        (truth, 50, ("fail", "data quality: 30% missing"), "drift"),
    ],
)
def test_gate_refuses_for_the_right_reason(challenger, latency, verdict, reason) -> None:
    x, y, _ = synthetic()
    d = decide(Fixed(challenger), None, x, y, CFG, latency_us=latency, drift_verdict=verdict)
    assert not d.promote
    assert reason in failed(d)
    assert any(r.startswith(reason) for r in d.reasons)


def test_gate_compares_challenger_with_champion_on_the_same_rows() -> None:
    x, y, _ = synthetic()
    noisy = np.random.default_rng(1).random(len(x))
    worse = Fixed(lambda rows: 0.5 * truth(rows) + 0.5 * noisy[: len(rows)])
    d = decide(worse, Fixed(truth), x, y, CFG, latency_us=50, drift_verdict=PASS)
    assert "auc" in failed(d)
    assert d.champion["roc_auc"] > d.challenger["roc_auc"] + CFG.auc_tolerance


def test_lightgbm_is_calibrated_and_near_the_truth() -> None:
    x, y, p = synthetic(12_000)
    card = ModelCard("lightgbm", "svc", COLUMNS, {})
    r = train_lgbm(x[:8000], y[:8000], x[8000:10000], y[8000:10000], card, seed=0)
    pred = r.model.predict(x[10000:])
    assert roc_auc(y[10000:], pred) >= roc_auc(y[10000:], p[10000:]) - 0.03
    assert expected_calibration_error(y[10000:], pred) < 0.05
    contrib = r.model.contributions(x[10000:10001])[0]
    assert set(contrib) == set(COLUMNS)
    assert abs(contrib["hour_of_day"]) < abs(contrib["size_guide_opens"]) + 1.0


def test_large_data_parameters_apply_only_above_the_switch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from models import lgbm

    x, y, _ = synthetic(3000)
    card = ModelCard("lightgbm", "svc", COLUMNS, {})
    small = train_lgbm(x[:2000], y[:2000], x[2000:], y[2000:], card, seed=0).model.card
    assert small.params["num_leaves"] == lgbm.DEFAULT_PARAMS["num_leaves"]
    monkeypatch.setattr(lgbm, "LARGE_DATA_ROWS", 1000)
    card = ModelCard("lightgbm", "svc", COLUMNS, {})
    large = train_lgbm(x[:2000], y[:2000], x[2000:], y[2000:], card, seed=0).model.card
    assert {k: large.params[k] for k in lgbm.LARGE_DATA_PARAMS} == lgbm.LARGE_DATA_PARAMS


def test_leaves_hold_the_same_number_of_sessions_whatever_the_rows_per_session() -> None:
    """min_data_in_leaf is MIN_LEAF_SESSIONS sessions' worth of rows, not a fixed row count."""
    from models.lgbm import MIN_LEAF_SESSIONS

    x, y, _ = synthetic(3000)
    card = ModelCard("lightgbm", "svc", COLUMNS, {})
    one_row_each = train_lgbm(x[:2000], y[:2000], x[2000:], y[2000:], card, seed=0).model.card
    assert one_row_each.params["min_data_in_leaf"] == MIN_LEAF_SESSIONS
    four_rows_each = np.repeat(np.arange(750), 4)  # 750 sessions of 4 decision points
    card = ModelCard("lightgbm", "svc", COLUMNS, {})
    grouped = train_lgbm(
        x[:2000],
        y[:2000],
        x[2000:],
        y[2000:],
        card,
        seed=0,
        groups=four_rows_each[:2000],
        valid_groups=four_rows_each[2000:],
    ).model.card
    assert grouped.params["min_data_in_leaf"] == 4 * MIN_LEAF_SESSIONS
    # An explicit parameter still wins.
    card = ModelCard("lightgbm", "svc", COLUMNS, {})
    fixed = train_lgbm(
        x[:2000], y[:2000], x[2000:], y[2000:], card, seed=0, params={"min_data_in_leaf": 50}
    ).model.card
    assert fixed.params["min_data_in_leaf"] == 50
    with pytest.raises(ValueError, match="groups has 10 entries for 2000 rows"):
        train_lgbm(x[:2000], y[:2000], x[2000:], y[2000:], card, groups=four_rows_each[:10])
    with pytest.raises(ValueError, match="valid_groups has 10 entries for 1000 rows"):
        train_lgbm(
            x[:2000],
            y[:2000],
            x[2000:],
            y[2000:],
            card,
            groups=four_rows_each[:2000],
            valid_groups=four_rows_each[:10],
        )
    with pytest.raises(ValueError, match="groups and valid_groups"):
        train_lgbm(x[:2000], y[:2000], x[2000:], y[2000:], card, groups=four_rows_each[:2000])


def test_the_model_returned_is_refitted_on_training_and_validation_rows() -> None:
    """Selection (rounds, calibration check, valid_* metrics) sees the training rows alone;
    the model returned is the same recipe fitted again on both windows."""
    from models.lgbm import risk_thresholds
    from models.linear_base import fit_linear_base

    x, y, _ = synthetic(6000)
    tr, va = slice(0, 4000), slice(4000, 6000)
    runs = {}
    for refit in (False, True):
        card = ModelCard("lightgbm", "svc", COLUMNS, {})
        runs[refit] = train_lgbm(x[tr], y[tr], x[va], y[va], card, seed=0, refit=refit)
    kept, refitted = runs[False], runs[True]
    assert refitted.best_iteration == kept.best_iteration
    valid = {k: v for k, v in kept.metrics.items() if k.startswith("valid_")}
    assert valid and all(refitted.metrics[k] == v for k, v in valid.items())
    assert (kept.metrics["fit_rows"], refitted.metrics["fit_rows"]) == (4000, 6000)
    model, params = refitted.model, refitted.model.card.params
    assert (kept.model.card.params["refit"], params["refit"]) == (False, True)
    # The trees grew the chosen rounds on both windows (bagging keeps 90 % of 6,000 rows).
    assert model.booster.num_trees() == refitted.best_iteration
    assert model.booster.dump_model()["tree_info"][0]["tree_structure"]["internal_count"] > 4000
    # Class weight and its exact correction are those of all 6,000 rows.
    weight = (y[:6000] == 0).sum() / y[:6000].sum()
    assert params["scale_pos_weight"] == pytest.approx(weight)
    assert model.prior_shift == pytest.approx(np.log(weight))
    # The base is refitted on all rows with the C cross-validation chose.
    assert model.base is not None and kept.model.base is not None
    both = fit_linear_base(x[:6000], y[:6000], seed=0, c=kept.model.base.c)
    np.testing.assert_allclose(model.base.coef, both.coef)
    assert not np.allclose(kept.model.base.coef, both.coef)
    assert model.card.thresholds == risk_thresholds(model.predict(x[va]))
    # A model that needed Platt scaling keeps the fit the scaling was made for.
    card = ModelCard("lightgbm", "svc", COLUMNS, {})
    scaled = train_lgbm(x[tr], y[tr], x[va], y[va], card, seed=0, ece_tolerance=0.0)
    assert scaled.recalibrated and scaled.model.platt != (1.0, 0.0)
    assert scaled.metrics["refit"] == 0.0 and scaled.model.card.params["refit"] is False
    assert scaled.metrics["fit_rows"] == 4000


def test_single_row_fast_path_gives_the_same_numbers() -> None:
    """The scorer's LightGBM C fast path equals Booster.predict, missing values included."""
    import pickle

    x, y, _ = synthetic(6000)
    card = ModelCard("lightgbm", "svc", COLUMNS, {})
    model = train_lgbm(x[:4000], y[:4000], x[4000:5000], y[4000:5000], card, seed=0).model
    model = pickle.loads(pickle.dumps(model))  # as loaded from the registry
    rows = x[5000:5200].copy()
    rows[::7, 1] = np.nan
    assert model.base is not None
    batch = model.predict(rows)
    contrib = model.contribution_matrix(rows)
    for i, row in enumerate(rows):
        assert model.predict_row(row) == pytest.approx(batch[i], rel=0, abs=1e-12)
        np.testing.assert_allclose(model.contributions_row(row), contrib[i], rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="expected 5 features"):
        model.predict_row(rows[0, :2])


def test_contributions_add_up_to_the_models_log_odds() -> None:
    """Trees' SHAP values plus the linear base's terms explain the whole prediction."""
    x, y, _ = synthetic(6000)
    card = ModelCard("lightgbm", "svc", COLUMNS, {})
    model = train_lgbm(x[:4000], y[:4000], x[4000:5000], y[4000:5000], card, seed=0).model
    assert model.base is not None and model.platt == (1.0, 0.0)
    rows = x[5000:5100]
    p = model.raw(rows)
    tree_bias = model.booster.predict(rows, pred_contrib=True)[:, -1]
    total = model.contribution_matrix(rows).sum(axis=1) + tree_bias + model.base.bias
    np.testing.assert_allclose(total, np.log(p / (1 - p)), rtol=0, atol=1e-9)
    # The base is not decoration: without the booster's trees it still ranks well.
    base_only = model.base.logit(x[5000:])
    assert roc_auc(y[5000:], base_only) > 0.7


def test_a_model_without_linear_base_still_loads_and_scores() -> None:
    """Models registered before the linear base (no "base" in their state) keep working."""
    import pickle

    x, y, _ = synthetic(3000)
    card = ModelCard("lightgbm", "svc", COLUMNS, {})
    r = train_lgbm(x[:2000], y[:2000], x[2000:2500], y[2000:2500], card, linear_base=False)
    state = r.model.__getstate__()
    del state["base"]  # the older format
    old = pickle.loads(pickle.dumps(r.model))
    old.__setstate__(state)
    assert old.base is None
    np.testing.assert_allclose(old.predict(x[2500:]), r.model.predict(x[2500:]), rtol=0, atol=0)
    assert old.predict_row(x[2600]) == pytest.approx(r.model.predict(x[2600:2601])[0], abs=1e-12)


def sessions(n_sessions: int = 600, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decision points grouped in sessions; abandoning sessions have more of them."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n_sessions)
    label = (rng.random(n_sessions) < 1 / (1 + np.exp(-(0.3 + 1.5 * signal)))).astype(int)
    points = 1 + rng.poisson(np.where(label == 1, 12, 3))
    group = np.repeat(np.arange(n_sessions), points)
    x = np.column_stack([signal[group] + rng.normal(0, 0.5, len(group)), np.ones(len(group))])
    return x, label[group], group


def test_linear_base_is_calibrated_per_row_though_sessions_weigh_once() -> None:
    """Slopes weigh every session once; the intercept makes the rows' mean risk their rate."""
    from models.linear_base import fit_linear_base

    x, y, group = sessions()
    base = fit_linear_base(x, y, groups=group)
    p = 1 / (1 + np.exp(-base.logit(x)))
    assert p.mean() == pytest.approx(y.mean(), abs=1e-6)
    # Per session the row rate over-counts long (abandoning) sessions; the check
    # above could not pass with the session-weighted intercept.
    assert abs(y.mean() - np.mean([y[group == g][0] for g in range(600)])) > 0.1


def test_a_column_constant_in_training_does_not_move_serving_risk() -> None:
    """Its float spread is ~1e-16, not 0: another value at serving must not blow up."""
    x, y, group = sessions()
    card = ModelCard("lightgbm", "svc", ["signal", "always_one"], {})
    half = len(x) // 2
    model = train_lgbm(
        x[:half], y[:half], x[half:], y[half:], card, groups=group[:half], valid_groups=group[half:]
    ).model
    assert model.base is not None and model.base.coef[1] == 0.0
    row = x[0].copy()
    risk = model.predict_row(row)
    for other in (0.0, 2.0, float("nan")):
        row[1] = other
        assert model.predict_row(row) == pytest.approx(risk, abs=1e-12)
        assert model.predict(row[None, :])[0] == pytest.approx(risk, abs=1e-12)
        assert np.all(np.abs(model.contributions_row(row)) < 10)


def test_a_model_with_a_base_cannot_be_read_as_a_plain_booster() -> None:
    """Its booster scores only a residual: older loaders must fail, not score with it."""
    x, y, _ = synthetic(3000)
    card = ModelCard("lightgbm", "svc", COLUMNS, {})
    state = train_lgbm(x[:2000], y[:2000], x[2000:2500], y[2000:2500], card).model.__getstate__()
    assert "model" not in state and state["residual_model"] and state["base"]


def test_one_outcome_or_few_sessions_get_a_clear_answer() -> None:
    from models.linear_base import FALLBACK_C, choose_c, fit_linear_base

    x, y, group = sessions(40)
    with pytest.raises(ValueError, match="only one outcome"):
        fit_linear_base(x, np.ones_like(y))
    few = group < 3  # three sessions: three folds, one per session
    c = choose_c(x[few], y[few], group[few])
    assert c in (FALLBACK_C, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
    assert choose_c(x[group == 0], y[group == 0], group[group == 0]) == FALLBACK_C


def test_river_checkpoint_restores_exactly(tmp_path: Path) -> None:
    x, y, _ = synthetic(3000)
    t = np.arange(len(x), dtype=float)
    a = RiverRiskModel(ModelCard("river", "svc", COLUMNS, {}))
    replay(a, x[:2000], y[:2000], t[:2000], t[:2000] + 5)
    path = a.checkpoint(tmp_path / "river.pkl")
    b = RiverRiskModel.restore(path)
    assert np.array_equal(a.predict(x[2000:2100]), b.predict(x[2000:2100]))
    ra = replay(a, x[2000:], y[2000:], t[2000:], t[2000:] + 5)
    rb = replay(b, x[2000:], y[2000:], t[2000:], t[2000:] + 5)
    assert np.array_equal(ra.predictions, rb.predictions)
    assert a.learned == b.learned == len(x)


def test_river_learns_only_after_labels_arrive() -> None:
    x, y, _ = synthetic(500)
    t = np.arange(len(x), dtype=float)
    m = RiverRiskModel(ModelCard("river", "svc", COLUMNS, {}))
    r = replay(m, x, y, t, np.full(len(x), 1e9))  # every label arrives after the last decision
    assert np.allclose(r.predictions, r.predictions[0])  # nothing learnt while predicting
    assert m.learned == len(x)


@pytest.mark.integration
def test_registry_aliases_rollback_and_fresh_process_load(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = registry.configure(uri, (tmp_path / "artifacts").as_uri())
    x, y, _ = synthetic(6000)
    versions = []
    for seed in (0, 1, 2):
        card = ModelCard("lightgbm", "abandonment_v1", COLUMNS, {"train": ["a", "b"]})
        r = train_lgbm(
            x[:4000],
            y[:4000],
            x[4000:5000],
            y[4000:5000],
            card,
            seed=seed,
            params={"feature_fraction": 0.7},
        )
        reg = registry.register(
            client,
            registry.LGBM,
            r.model,
            metrics={"auc": 0.8},
            artifacts=[],
            run_name=f"seed-{seed}",
        )
        assert registry.version_of(client, registry.LGBM, registry.CHALLENGER) == reg.version
        registry.set_champion(client, registry.LGBM, reg.version)
        versions.append(reg.version)
    assert registry.version_of(client, registry.LGBM, registry.CHAMPION) == versions[2]
    assert registry.version_of(client, registry.LGBM, registry.PREVIOUS) == versions[1]
    assert registry.rollback(client, registry.LGBM) == (versions[2], versions[1])
    assert registry.version_of(client, registry.LGBM, registry.CHAMPION) == versions[1]
    assert registry.version_of(client, registry.LGBM, registry.PREVIOUS) == versions[0]

    model = registry.load(registry.LGBM, "champion")
    assert model.card.columns == COLUMNS and model.card.feature_service == "abandonment_v1"
    rows = x[5000:5020]
    np.save(tmp_path / "rows.npy", rows)
    script = (
        "import numpy as np, sys; from models import registry; registry.configure(sys.argv[1]);"
        "m = registry.load(registry.LGBM, 'champion');"
        "np.save(sys.argv[2], m.predict(np.load(sys.argv[3])))"
    )
    subprocess.run(
        [sys.executable, "-c", script, uri, str(tmp_path / "out.npy"), str(tmp_path / "rows.npy")],
        check=True,
    )
    assert np.array_equal(np.load(tmp_path / "out.npy"), model.predict(rows))
