"""Which policy earns most in the simulated world: rules, random arms, the bandit, the oracle.

    python bench/bench_policy.py [--seeds 10] [--train 20000] [--eval 5000] [--epsilon 0.05]

Runs in process on the world's visitors (:mod:`simulation.visitors`): cart
sessions of generated logs, with their latent state and the true effect of
every treatment. Everything is measured as the world's **expected** reward
(revenue net of discounts, per session) of what each policy chooses, so the
figures carry no purchase-draw noise; the bandit itself learns from drawn
purchases, as it would live.

The context every policy sees is what the scorer has: the risk (here the
*ideal* risk, the best a model could give, :mod:`events.synth.ideal`; the
platform's LightGBM is about 0.007 of AUC below it), the device, the page
type, and counts from the visitor's events (price hovers, image zooms,
size-guide opens, product views) with the cart value.

Policies: ``none``; the shipped YAML rules (``serving/policy.yaml``, every
visitor in the 10% discount arm); ``random`` (every treatment equally
likely); the **bandit** (:mod:`models.bandit`), learning online over
``--train`` visitors and then frozen; **uplift**, a T-learner (one LightGBM
classifier of purchase per treatment) fitted on a randomized log of the same
``--train`` visitors, picking the highest expected net revenue; the **oracle**, which knows every
visitor's true effects and picks the best treatment. Each is scored on
``--eval`` other visitors of the same world. Printed per seed and as means
over seeds with their spread:

* conversion, revenue per session and margin given away, per policy;
* the bandit's gain over ``none`` as a share of the oracle's (goal >= 70%),
  and beside it the best any policy seeing only the context can do
  (``in-context``: per-treatment regressors fitted to the learning visitors'
  *expected* rewards, full information and no noise, then the argmax);
* its regret against the oracle during learning;
* its cost while it explores: reward over the first 2,000 learning visitors
  against ``none``'s on the same visitors (goal: at least ``none``'s - 2%);
* off-policy evaluation: the evaluation visitors logged under random arms,
  every policy valued from that log by IPS and doubly robust, and how often
  the 95% interval covers its true value (goal: at least 90% of runs).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from events.synth import GeneratorConfig
from models.bandit import BanditSpec, ContextualBandit
from serving.policy import Chosen, Guard, Policy, treatment_key
from serving.policy_doc import DEFAULT_POLICY
from simulation.visitors import Visitor, visitors

TREATMENTS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("none", {}),
    ("show_discount_popup", {"percent": 10}),
    ("show_discount_popup", {"percent": 15}),
    ("highlight_size_guide", {}),
    ("emphasize_cta", {}),
    ("show_social_proof", {}),
)
KEYS = tuple(treatment_key([Chosen(a, p, "")]) for a, p in TREATMENTS)


@dataclass
class World:
    """Visitors with their context and the expected outcome of every treatment."""

    context: list[dict[str, Any]]
    features: list[dict[str, float]]
    reward: np.ndarray  # (visitors, treatments): expected net revenue
    buy: np.ndarray  # (visitors, treatments): purchase probability
    margin: np.ndarray  # (visitors, treatments): expected discount given away


def _world(people: list[Visitor]) -> World:
    context, features = [], []
    reward = np.zeros((len(people), len(TREATMENTS)))
    buy, margin = np.zeros_like(reward), np.zeros_like(reward)
    for i, v in enumerate(people):
        evs = v.events
        f = {
            "price_hover_count": float(
                sum(e["event_type"] == "hover" and e.get("element_id") == "price" for e in evs)
            ),
            "image_zooms": float(sum(e["event_type"] == "image_zoom" for e in evs)),
            "size_guide_opens": float(sum(e["event_type"] == "size_guide_open" for e in evs)),
            "product_views": float(
                sum(e["event_type"] == "page_view" and e["page_type"] == "product" for e in evs)
            ),
            "cart_value": v.cart_value,
        }
        page = evs[-1]["page_type"]
        context.append({"risk": v.ideal_risk, "device": v.device, "page_type": page, **f})
        features.append(f)
        for j, (action, params) in enumerate(TREATMENTS):
            p, revenue = v.truth(action, params)
            buy[i, j], reward[i, j] = p, revenue
            margin[i, j] = p * v.cart_value * params.get("percent", 0) / 100.0
    return World(context, features, reward, buy, margin)


def _rules() -> Callable[[dict[str, Any], int], np.ndarray]:
    """The shipped rules, every visitor in the 10% arm: a one-hot treatment per visitor."""
    import yaml

    doc = yaml.safe_load(DEFAULT_POLICY.read_text())
    doc["experiment"] = {"name": "rules", "variants": {"rules": {"weight": 1.0}}}
    policy = Policy.from_yaml(yaml.safe_dump(doc))

    def choose(ctx: dict[str, Any], i: int) -> np.ndarray:
        context = {
            "is_mobile": int(ctx["device"] == "mobile"),
            "on_product_page": int(ctx["page_type"] == "product"),
            "on_checkout_page": int(ctx["page_type"] in ("cart", "checkout")),
        }
        feats = {k: v for k, v in ctx.items() if k not in ("risk", "device", "page_type")}
        d = policy.decide(f"v{i}", ctx["risk"], feats, context, Guard(), now=float(i))
        out = np.zeros(len(KEYS))
        out[KEYS.index(d.treatment)] = 1.0
        return out

    return choose


def _matrix(world: World) -> np.ndarray:
    """The context as numbers: risk, counts, cart value, device and page one-hot."""
    pages = ("home", "category", "product", "search", "cart", "checkout", "account", "other")
    rows = []
    for c in world.context:
        nums = [c["risk"], *(c[k] for k in sorted(world.features[0]))]
        rows.append(
            nums
            + [float(c["device"] == d) for d in ("desktop", "mobile", "tablet")]
            + [float(c["page_type"] == p) for p in pages]
        )
    return np.asarray(rows, dtype=float)


def _best_in_context(learn: World, held: World) -> np.ndarray:
    """The best any policy seeing only the context can do (approximately).

    One regressor per treatment learns the *expected* reward (no purchase-draw
    noise, every treatment observed for every visitor: full information) from
    the learning visitors' context; the policy picks the highest prediction.
    """
    from sklearn.ensemble import HistGradientBoostingRegressor

    x, xe = _matrix(learn), _matrix(held)
    pred = np.column_stack(
        [
            HistGradientBoostingRegressor(max_iter=200, random_state=0)
            .fit(x, learn.reward[:, j])
            .predict(xe)
            for j in range(len(KEYS))
        ]
    )
    out = np.zeros_like(pred)
    out[np.arange(len(pred)), pred.argmax(axis=1)] = 1.0
    return out


def _uplift(learn: World, held: World, rng: np.random.Generator) -> np.ndarray:
    """The platform's uplift model (:mod:`models.uplift`) on a randomized log.

    The learning visitors get a treatment uniformly at random (an A/B/n test)
    and a purchase drawn from the world; the T-learner learns P(purchase |
    context) per treatment and the policy picks the highest expected net
    revenue.
    """
    from models.uplift import fit_uplift

    x, xe = _matrix(learn), _matrix(held)
    n = len(x)
    assigned = rng.integers(0, len(KEYS), n)
    bought = (rng.random(n) < learn.buy[np.arange(n), assigned]).astype(float)
    model = fit_uplift(
        x,
        [KEYS[a] for a in assigned],
        np.full(n, 1.0 / len(KEYS)),
        bought,
        columns=[f"x{j}" for j in range(x.shape[1])],
        window={},
    )
    cart = np.array([c["cart_value"] for c in held.context])
    chosen = [KEYS.index(model.treatments[c]) for c in model.choose(xe, cart)]
    out = np.zeros((len(xe), len(KEYS)))
    out[np.arange(len(xe)), chosen] = 1.0
    return out


def _off_policy(
    held: World, probs: dict[str, np.ndarray], rng: np.random.Generator
) -> dict[str, dict[str, bool]]:
    """Does each estimator's 95% interval cover each policy's true value?

    The evaluation visitors are logged under random arms (every treatment
    with probability 1/K, purchases drawn from the world); each policy is then
    valued from that log by IPS and doubly robust (:mod:`experiments.ope`) and
    compared with its true value on the same visitors.
    """
    from experiments.ope import doubly_robust, fit_reward_model, ips

    n, k = held.reward.shape
    action = rng.integers(0, k, n)
    bought = rng.random(n) < held.buy[np.arange(n), action]
    value = held.reward[np.arange(n), action] / np.maximum(held.buy[np.arange(n), action], 1e-12)
    reward = value * bought
    mu = np.full(n, 1.0 / k)
    q = fit_reward_model(_matrix(held), action, reward, k, seed=0)
    out: dict[str, dict[str, bool]] = {}
    for name, target in probs.items():
        true = float((target * held.reward).sum(axis=1).mean())
        out[name] = {}
        for method, est in (
            ("ips", ips(target, action, mu, reward)),
            ("dr", doubly_robust(target, action, mu, reward, q)),
        ):
            out[name][method] = bool(est.ci_low <= true <= est.ci_high)
    return out


def _score(world: World, probs: np.ndarray) -> dict[str, float]:
    return {
        "conversion": float((probs * world.buy).sum(axis=1).mean()),
        "revenue": float((probs * world.reward).sum(axis=1).mean()),
        "margin": float((probs * world.margin).sum(axis=1).mean()),
    }


def one_seed(seed: int, train: int, evaluate: int, epsilon: float) -> dict[str, Any]:
    t0 = time.perf_counter()
    sessions = int((train + evaluate) / 0.28) + 2000  # about 31% of sessions add to cart
    people = visitors(GeneratorConfig(sessions=sessions, days=7, seed=seed))
    if len(people) < train + evaluate:
        raise SystemExit(f"seed {seed}: only {len(people)} visitors; lower --train or --eval")
    learn, held = _world(people[:train]), _world(people[train : train + evaluate])
    prep = time.perf_counter() - t0
    rng = np.random.default_rng([seed, 17])
    spec = BanditSpec(
        actions=KEYS,
        numeric=("risk", "price_hover_count", "image_zooms", "size_guide_opens", "cart_value"),
        categorical=("device", "page_type"),
        epsilon=epsilon,
        seed=seed,
    )
    bandit = ContextualBandit(spec)
    gained = np.zeros(train)  # expected reward of each learning choice
    t1 = time.perf_counter()
    for i, ctx in enumerate(learn.context):
        key, p = bandit.choose(ctx, float(rng.random()))
        j = KEYS.index(key)
        gained[i] = learn.reward[i, j]
        bought = rng.random() < learn.buy[i, j]
        bandit.learn(ctx, key, learn.reward[i, j] / max(learn.buy[i, j], 1e-9) * bought, p)
    learn_s = time.perf_counter() - t1
    n_eval = len(held.context)
    uniform = np.full((n_eval, len(KEYS)), 1.0 / len(KEYS))
    none = np.zeros_like(uniform)
    none[:, 0] = 1.0
    oracle = np.zeros_like(uniform)
    oracle[np.arange(n_eval), held.reward.argmax(axis=1)] = 1.0
    rules = _rules()
    probs = {
        "none": none,
        "rules": np.stack([rules(c, i) for i, c in enumerate(held.context)]),
        "random": uniform,
        "bandit": np.stack([bandit.probabilities(c) for c in held.context]),
        "uplift": _uplift(learn, held, np.random.default_rng([seed, 23])),
        "in-context": _best_in_context(learn, held),
        "oracle": oracle,
    }
    scores = {name: _score(held, p) for name, p in probs.items()}
    covered = _off_policy(held, probs, np.random.default_rng([seed, 29]))
    base, best = scores["none"]["revenue"], scores["oracle"]["revenue"]
    explore = min(2000, train)
    regret = np.cumsum(learn.reward.max(axis=1) - gained)
    return {
        "seed": seed,
        "scores": scores,
        "share_of_oracle_gain": (scores["bandit"]["revenue"] - base) / (best - base),
        "uplift_share": (scores["uplift"]["revenue"] - base) / (best - base),
        "covered": covered,
        "context_share": (scores["in-context"]["revenue"] - base) / (best - base),
        "share_of_context_gain": (scores["bandit"]["revenue"] - base)
        / (scores["in-context"]["revenue"] - base),
        "explore_ratio": gained[:explore].mean() / learn.reward[:explore, 0].mean(),
        "regret": {n: float(regret[n - 1]) for n in (1000, 2000, 5000, 10000, 20000) if n <= train},
        "prep_s": prep,
        "learn_us": learn_s / train * 1e6,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10, help="world seeds 0 .. seeds-1")
    ap.add_argument("--train", type=int, default=20_000, help="visitors the bandit learns from")
    ap.add_argument(
        "--eval", type=int, default=5_000, help="other visitors every policy is scored on"
    )
    ap.add_argument("--epsilon", type=float, default=0.05, help="the bandit's exploration share")
    args = ap.parse_args()
    runs = []
    names = ("none", "rules", "random", "bandit", "uplift", "in-context", "oracle")
    for seed in range(args.seeds):
        r = one_seed(seed, args.train, args.eval, args.epsilon)
        runs.append(r)
        s = r["scores"]
        print(
            f"seed {seed}: revenue/session "
            + ", ".join(f"{n} {s[n]['revenue']:.3f}" for n in names)
            + f"; bandit {r['share_of_oracle_gain']:.0%} of the oracle's gain; "
            f"exploring {r['explore_ratio']:.3f} x none; learn {r['learn_us']:.0f} us/visitor "
            f"(prep {r['prep_s']:.0f} s)",
            flush=True,
        )
    print(f"\nmeans over {len(runs)} seeds (standard deviation across seeds)")
    print(f"{'policy':<11}{'conversion':>18}{'revenue/session':>20}{'margin given':>18}")
    for n in names:
        row = []
        for m in ("conversion", "revenue", "margin"):
            vals = [r["scores"][n][m] for r in runs]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            row.append(f"{statistics.mean(vals):.4f} ({sd:.4f})")
        print(f"{n:<11}{row[0]:>18}{row[1]:>20}{row[2]:>18}")
    share = [r["share_of_oracle_gain"] for r in runs]
    ratio = [r["explore_ratio"] for r in runs]
    sd_share = statistics.stdev(share) if len(share) > 1 else 0.0
    print(
        f"bandit gain over none, as a share of the oracle's: {statistics.mean(share):.0%} "
        f"(sd {sd_share:.0%}; goal >= 70%)"
    )
    print(
        f"reward over the first {min(2000, args.train):,} learning visitors: "
        f"{statistics.mean(ratio):.3f} x none's (goal >= 0.98)"
    )
    ctx = [r["context_share"] for r in runs]
    of_ctx = [r["share_of_context_gain"] for r in runs]
    print(
        f"the best policy seeing only the context (in-context) reaches "
        f"{statistics.mean(ctx):.0%} of the oracle's gain; the bandit "
        f"{statistics.mean(of_ctx):.0%} of that"
    )
    up = [r["uplift_share"] for r in runs]
    print(f"uplift (T-learner on a randomized log of the same size): {statistics.mean(up):.0%}")
    hits = [c for r in runs for c in r["covered"].values()]
    for method in ("ips", "dr"):
        share = sum(h[method] for h in hits) / len(hits)
        print(
            f"off-policy {method.upper()}: the 95% interval covers the true value in "
            f"{share:.0%} of {len(hits)} (policy, seed) pairs (goal >= 90%)"
        )
    keys = list(runs[0]["regret"])
    print(
        "regret against the oracle (cumulative expected reward lost, mean): "
        + ", ".join(f"{k:,}: {statistics.mean(r['regret'][k] for r in runs):.0f}" for k in keys)
    )


if __name__ == "__main__":
    main()
