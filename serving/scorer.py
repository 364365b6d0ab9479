"""The scoring core: features, models, policy and logs for one decision (no web code).

:class:`Scorer` is what the FastAPI routes call. Its request path is numpy and
dicts: an online-store read per view, one LightGBM predict (and its SHAP
contributions), one river predict, the policy, and a buffered log line.
Failures never escape :meth:`Scorer.score`: a failing store or a missing
model gives a safe ``none`` decision with ``degraded: true``.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict, defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np

from core.errors import StoreError
from core.privacy import pseudonymizer
from core.settings import Settings
from events.contract import RECORD_ONLY_TYPES, EventType, minimize_row
from events.ingest import quarantine_record
from events.validation import Rejection, ValidationResult, is_id, validate_rows
from feature_repo.features import SEGMENT, SESSION_VIEW
from feature_repo.segment_vector import segment_vector
from features.stream import fold_sessions
from models import registry
from models.segment_registry import SEGMENTER
from serving.champions import ModelSet
from serving.learner import LabelQueue
from serving.online import FeatureRead, OnlineFeatures, model_features
from serving.policy import Decision, Guards, Policy
from serving.schemas import EventBatch, ScoreRequest
from stores.decision_log import AppendLog
from stores.event_stream import EventStream

log = logging.getLogger("microtune.serving")
SEGMENT_FEATURE = SEGMENT.name
#: Least time between two recorded decision points of one session (river's labels).
DECISION_SPACING_S = 5.0


def _vector(columns: list[str], features: dict[str, float | None]) -> np.ndarray:
    return np.array(
        [[np.nan if (v := features.get(c)) is None else v for c in columns]], dtype=np.float64
    )


class Scorer:
    """Everything one server process needs to decide; swapped parts are single references."""

    def __init__(
        self,
        settings: Settings,
        online: OnlineFeatures | None,
        models: ModelSet,
        policy: Policy,
        *,
        online_error: str | None = None,
        writer: OnlineFeatures | None = None,
        stream: EventStream | None = None,
    ) -> None:
        self.settings = settings
        #: User ids become pseudonyms before anything reads or writes them.
        self.pseudonym = pseudonymizer(settings)
        self.online = online
        self.online_error = online_error
        #: The connection live events are folded through: its own, so that a batch
        #: written from a worker thread never shares a connection with the reads.
        self.writer = writer or online
        #: The Redis Stream live events go to (None: folded here, the embedded path).
        self.stream = stream
        self.models = models
        self.policy = policy
        self.guards = Guards()
        fsync = settings.serve.log_fsync
        self.log = AppendLog(settings.paths.decisions, fsync=fsync)
        self.inbox = AppendLog(settings.paths.live_inbox, fsync=fsync)
        #: What POST /v1/events rejects, with its reasons, as ingest quarantines files.
        self.quarantine = AppendLog(settings.paths.quarantine / "api", fsync=fsync)
        self.labels = LabelQueue(settings.paths.serving / "labels.db")
        self.drift_pending = False
        self._last_point: dict[str, float] = {}
        self._event_ids: OrderedDict[str, None] = OrderedDict()

    # -- scoring --------------------------------------------------------------

    def score(self, req: ScoreRequest, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        context = {k: (v.value if hasattr(v, "value") else v) for k, v in req.context}
        reasons: list[str] = []
        models = self.models  # one reference for the whole request
        user = self.pseudonym(req.user_id)  # the stores know users by pseudonym only
        read = self._read(req.session_id, user, context, now, reasons)
        store_failed = read is None
        features = read.features if read is not None else {}
        session = read.session if read is not None else {}
        age = read.age_s if read is not None else None
        if not features:
            features = model_features({}, {}, context, now)
        risk_lgbm = risk_river = None
        explanation: list[dict[str, Any]] = []
        try:
            if models.lgbm is not None:
                x = _vector(models.lgbm.card.columns, features)[0]
                risk_lgbm = models.lgbm.predict_row(x)
                explanation = self._explain(models.lgbm, x, features)
            if models.river is not None:
                risk_river = models.river.predict_one(
                    {k: v for k, v in features.items() if v is not None}
                )
        except Exception:  # a model that fails at predict time degrades, not 500
            log.exception("model failed")
            reasons.append("model_failed")
        risk, source = self._combine(risk_lgbm, risk_river, reasons, models)
        segment = self._segment(models, session, req.session_id, now)
        if risk is None or store_failed:
            why = "online store unavailable" if store_failed else "no model score"
            decision = self.policy.safe_decision(req.session_id, f"degraded: {why}, safe decision")
        else:
            guard = self.guards.get(req.session_id)
            seen = features if segment is None else {**features, SEGMENT_FEATURE: segment}
            decision = self.policy.decide(req.session_id, risk, seen, context, guard, now=now)
        degraded = bool(reasons)
        self._record(
            req,
            user,
            now,
            risk,
            risk_lgbm,
            risk_river,
            features,
            decision,
            models,
            degraded,
            segment,
        )
        return {
            "session_id": req.session_id,
            "risk": risk,
            "risk_lgbm": risk_lgbm,
            "risk_river": risk_river,
            "model": {
                "lgbm": models.versions.get(registry.LGBM) if models.lgbm is not None else None,
                "river": models.versions.get(registry.RIVER) if models.river is not None else None,
                "river_role": self.settings.serve.river_role,
                "source": source,
            },
            "decision": {
                "variant": decision.variant,
                "actions": [
                    {"action": a.action, "params": a.params, "reason": a.reason, "rule": a.rule}
                    for a in decision.actions
                ],
            },
            "explanation": explanation,
            "degraded": degraded,
            "degraded_reasons": reasons,
            "features_age_s": age,
            "features": features,
            "segment": None
            if segment is None
            else {
                "id": segment,
                "name": models.segmenter.names.get(segment),
                "segmenter": models.versions.get(SEGMENTER),
            },
        }

    def _segment(
        self, models: ModelSet, session: Mapping[str, float], session_id: str, now: float
    ) -> int | None:
        """The session's segment by the champion segmenter, from its stored row (None
        without a segmenter or a row); its whitened vector goes to the streaming clusterer."""
        seg = models.segmenter
        if seg is None or not session or not self.settings.serve.segments:
            return None
        try:
            segment, point = seg.assign_row(segment_vector(session))
            self.labels.add_segment_point(session_id, now, point)
            return segment
        except Exception:  # a segmenter that fails leaves the decision without a segment
            log.exception("segment assignment failed")
            return None

    def _read(
        self,
        session_id: str,
        user: str | None,
        context: dict[str, Any],
        now: float,
        reasons: list[str],
    ) -> FeatureRead | None:
        """The online store's read for one decision; None when the store failed (the
        reason is added to ``reasons``)."""
        if self.online is None:
            reasons.append("online_store_not_loaded")
            return None
        try:
            read = self.online.read(session_id, user, context, now)
        except StoreError as exc:
            reasons.append("online_store_unavailable")
            log.warning("online read failed: %s", exc)
            return None
        if not read.session_found:
            stale = SESSION_VIEW in read.stale
            reasons.append("stale_session_features" if stale else "unknown_session")
        return read

    def _combine(
        self,
        lgbm: float | None,
        river: float | None,
        reasons: list[str],
        models: ModelSet,
    ) -> tuple[float | None, str]:
        role = self.settings.serve.river_role
        if lgbm is None and models.errors.get(registry.LGBM):
            reasons.append("no_model")
        if role == "blend" and lgbm is not None and river is not None:
            w = self.settings.serve.blend_weight
            return (1 - w) * lgbm + w * river, "blend"
        if lgbm is not None:
            return lgbm, "lgbm"
        if role in ("fallback", "blend") and river is not None:
            return river, "river"
        return None, "none"

    def _explain(self, model: Any, x: np.ndarray, features: dict[str, Any]) -> list[dict[str, Any]]:
        top = self.settings.serve.explain_top
        if top == 0:
            return []
        contrib = model.contributions_row(x)
        order = np.argsort(-np.abs(contrib))[:top]
        cols = model.card.columns
        return [
            {"feature": cols[i], "value": features.get(cols[i]), "contribution": float(contrib[i])}
            for i in order
        ]

    def _record(
        self,
        req: ScoreRequest,
        user: str | None,
        now: float,
        risk: float | None,
        risk_lgbm: float | None,
        risk_river: float | None,
        features: dict[str, float | None],
        decision: Decision,
        models: ModelSet,
        degraded: bool,
        segment: int | None = None,
    ) -> None:
        drift, self.drift_pending = self.drift_pending, False
        self.log.append(
            {
                "ts": now,
                "session_id": req.session_id,
                "user_id": user,
                "experiment": self.policy.doc.experiment.name,
                "variant": decision.variant,
                "policy_version": self.policy.version,
                "propensity": decision.propensity,
                "treatment": decision.treatment,
                "treatment_propensity": decision.treatment_propensity,
                "arm_policies": decision.arm_policies,
                "risk": risk,
                "risk_lgbm": risk_lgbm,
                "risk_river": risk_river,
                "features": features,
                "actions": [a.action for a in decision.actions],
                "params": {a.action: a.params for a in decision.actions if a.params},
                "models": dict(models.versions),
                "degraded": degraded,
                "drift_signal": drift,
                "segment": segment,
            }
        )
        if decision.bandit_context is not None and not degraded:
            try:  # the bandit learns from each session's first decision (learner.py)
                self.labels.add_assignment(
                    req.session_id,
                    now,
                    decision.bandit_context,
                    decision.treatment,
                    decision.treatment_propensity,
                )
            except Exception:  # the queue is best effort; scoring goes on
                log.exception("label queue write failed")
        # A decision point of a cart session, for river's live learning (see
        # learner.py); a session scored many times a second counts once per
        # DECISION_SPACING_S, so that chatty front ends do not weigh more.
        if (
            (features.get("cart_adds") or 0) > 0
            and not (features.get("checkout_starts") or 0)
            and now - self._last_point.get(req.session_id, -math.inf) >= DECISION_SPACING_S
        ):
            self._last_point[req.session_id] = now
            if len(self._last_point) > 100_000:
                self._last_point.clear()
            x = {k: v for k, v in features.items() if v is not None}
            try:
                self.labels.add_decision(req.session_id, now, x, risk_river)
            except Exception:  # the label queue is best effort; scoring goes on
                log.exception("label queue write failed")

    # -- live events ------------------------------------------------------------

    def events(self, batch: EventBatch, now: float | None = None) -> dict[str, Any]:
        """Validate, keep, and fold a batch of live events into the online features.

        With the event stream on (``MICROTUNE_STREAM__ENABLED``), the accepted
        events go to the Redis Stream instead, for the stream workers to fold and
        store; :class:`~stores.event_stream.StreamUnavailable` (a 503) when Redis
        cannot take them or the workers are too far behind: nothing is accepted.
        """
        now = time.time() if now is None else now
        if self.stream is not None:
            self.stream.admit()
        oldest = datetime.fromtimestamp(now - self.settings.serve.max_event_age_hours * 3600, UTC)
        result = validate_rows(batch.events, now=datetime.fromtimestamp(now, UTC), earliest=oldest)
        self._quarantine(result.rejected, now)
        # Without consent only the minimal fields are kept, here as in the raw store.
        # Rows built in Python, not in one long call into Arrow: the event loop's
        # thread can take the interpreter back between rows.
        rows = [minimize_row(r) for r in result.to_rows()]
        for r in rows:  # never stored raw (core/privacy.py)
            if r.get("user_id") is not None:
                r["user_id"] = self.pseudonym(r["user_id"])
        if self.stream is not None:  # the workers fold once per event id
            self.stream.append([_inbox_record(r) for r in rows])
            self._activities(rows)
            return _answer(result, queued=len(rows))
        # A retried event (same id) is folded once; the batch build deduplicates too.
        fresh = [r for r in rows if not self._seen(r["event_id"])]
        duplicates = len(rows) - len(fresh)
        rows = fresh
        # Written first, before any answer: nothing accepted is lost if the store fails
        # or the process dies.
        self.inbox.append_many(map(_inbox_record, rows), (r["ts"].timestamp() for r in rows))
        by_session = self._activities(rows)
        reasons: list[str] = []
        updated = late = 0
        if by_session and self.writer is None:
            reasons.append("online_store_not_loaded")
        elif by_session:
            assert self.writer is not None
            try:
                # One read, one vectorized fold and one write for the whole batch.
                stored = self.writer.session_states(list(by_session), now)
                new, late = fold_sessions(stored, by_session)
                if new:
                    self.writer.write_sessions(new)
                updated = len(new)
            except StoreError as exc:  # the events are kept for the next batch build
                reasons.append("online_store_unavailable")
                log.warning("live feature update failed: %s", exc)
            except Exception:  # never a 500 for valid events: they are kept
                log.exception("live feature update failed")
                reasons.append("online_update_failed")
        return _answer(result, updated=updated, late=late, duplicates=duplicates, reasons=reasons)

    def _activities(self, rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        """Record the visitors' activity (river's labels); the consented behaviour events
        by session, times as epoch seconds, for the fold."""
        by_session: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            if row["event_type"] in RECORD_ONLY_TYPES:
                continue  # what the site did, not the visitor: no activity, no feature
            if row["event_type"] == EventType.PURCHASE.value or row["consent"]:
                self._activity(row)
            if row["consent"]:
                by_session[row["session_id"]].append({**row, "ts": row["ts"].timestamp()})
        return by_session

    def _quarantine(self, rejected: list[Rejection], now: float) -> None:
        """Keep what the route refused, with its reasons, minimized and pseudonymized."""
        if rejected:
            records = [
                {**quarantine_record(r, "POST /v1/events", self.pseudonym), "ts": now}
                for r in rejected
            ]
            try:
                self.quarantine.append_many(records, [now] * len(records))
            except (OSError, TypeError):  # refused input only: the answer still lists every reason
                log.exception("quarantine write failed")

    def _seen(self, event_id: str) -> bool:
        """True when this worker already took ``event_id`` (the most recent 500,000)."""
        if event_id in self._event_ids:
            return True
        self._event_ids[event_id] = None
        if len(self._event_ids) > 500_000:
            self._event_ids.popitem(last=False)
        return False

    def _activity(self, row: dict[str, Any]) -> None:
        try:
            purchased = row["event_type"] == EventType.PURCHASE.value
            self.labels.add_activity(
                row["session_id"],
                row["ts"].timestamp(),
                purchased=purchased,
                revenue=float(row.get("cart_value") or 0.0) if purchased else 0.0,
            )
        except Exception:
            log.exception("label queue write failed")


def _answer(
    result: ValidationResult,
    *,
    updated: int = 0,
    late: int = 0,
    duplicates: int = 0,
    reasons: list[str] | None = None,
    queued: int = 0,
) -> dict[str, Any]:
    """The body of ``POST /v1/events``'s answer."""
    return {
        "accepted": result.accepted_count,
        "rejected": [
            {
                "position": r.position,
                "event_id": r.row.get("event_id") if is_id(r.row.get("event_id")) else None,
                "reason": r.reason,
            }
            for r in result.rejected
        ],
        "sessions_updated": updated,
        "late": late,
        "duplicates": duplicates,
        "queued": queued,
        "degraded": bool(reasons),
        "degraded_reasons": reasons or [],
    }


def _inbox_record(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["ts"] = row["ts"].isoformat().replace("+00:00", "Z")
    return out
