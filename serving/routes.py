"""HTTP routes of the scorer. Each one only wires a request to :class:`~serving.scorer.Scorer`."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import hmac
import json
import time
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, ORJSONResponse, PlainTextResponse
from pydantic import ValidationError

from core.logs import personal
from models import registry
from models.segment_registry import SEGMENTER
from serving import metrics
from serving.champions import FAMILIES
from serving.runtime import Runtime
from serving.schemas import (
    EventBatch,
    EventsResponse,
    ScoreRequest,
    ScoreResponse,
    Status,
    answers,
)
from serving.scorer import Scorer
from stores.event_stream import StreamUnavailable

router = APIRouter()


# Dependencies are ``async``: FastAPI runs plain functions in a thread pool,
# which costs more than the whole decision.
async def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


RuntimeDep = Annotated[Runtime, Depends(runtime)]


async def scorer(rt: RuntimeDep) -> Scorer:
    if rt.scorer is None:
        raise HTTPException(503, "the scorer is starting; retry in a few seconds")
    return rt.scorer


ScorerDep = Annotated[Scorer, Depends(scorer)]


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (RFC 7235: the scheme is
    case-insensitive, one or more spaces follow it); None for any other header.

    >>> bearer_token("Bearer abc"), bearer_token("bearer  abc"), bearer_token("abc")
    ('abc', 'abc', None)
    """
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token and " " not in token else None


async def admin(rt: RuntimeDep, authorization: Annotated[str | None, Header()] = None) -> None:
    expected = rt.settings.serve.admin_token
    given = bearer_token(authorization)
    # compare_digest takes the same time wherever the tokens differ.
    ok = given is not None and expected is not None
    if not ok or not hmac.compare_digest(given.encode(), expected.encode()):  # type: ignore[union-attr]
        raise HTTPException(
            401,
            "admin routes need 'Authorization: Bearer <MICROTUNE_SERVE__ADMIN_TOKEN>'"
            if expected
            else "admin routes are disabled: set MICROTUNE_SERVE__ADMIN_TOKEN and restart",
            headers={"WWW-Authenticate": "Bearer"},
        )


@router.post(
    "/v1/score",
    response_model=ScoreResponse,
    tags=["scoring"],
    responses=answers(400, 413, 422, 429, 500, 503),
)
async def score(req: ScoreRequest, request: Request) -> Any:
    """Risk, decision and explanation for a session, now."""
    # The hottest route reads the scorer without dependency injection (each
    # resolved dependency costs more than a feature read).
    s = request.app.state.runtime.scorer
    if s is None:
        raise HTTPException(503, "the scorer is starting; retry in a few seconds")
    personal(req.session_id, req.user_id)  # never in clear in a log line
    out = s.score(req)
    metrics.count_decision(out)
    # Built by the scorer to the response model's shape; returned as is, so the
    # model documents the route without a second validation on every request.
    return ORJSONResponse(out)


@router.post(
    "/v1/events",
    response_model=EventsResponse,
    tags=["scoring"],
    responses=answers(400, 413, 422, 429, 500, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": EventBatch.model_json_schema()}},
        }
    },
)
async def events(request: Request, response: Response, s: ScorerDep, rt: RuntimeDep) -> Any:
    """Live events: validated like ingest, folded into the session's online features.

    The body is read here and everything else (parsing, validation, the inbox
    write, the fold) runs on the events thread, one batch at a time and below
    the event loop's priority: scores keep being answered while a large batch
    is handled. With the event stream on, the accepted events are appended to
    it and the answer is 202 (``queued``); 503 with ``Retry-After`` when Redis
    cannot hold them or the stream workers are too far behind.
    """
    body = await request.body()
    # In this request's context, so that the thread's log lines carry its id.
    run = functools.partial(contextvars.copy_context().run, _events, s, body)
    try:
        out = await asyncio.get_running_loop().run_in_executor(rt.events_pool, run)
    except StreamUnavailable as exc:
        metrics.STREAM_REFUSED.inc()
        raise HTTPException(
            503, f"events not accepted: {exc}", headers={"Retry-After": "1"}
        ) from exc
    if out["queued"]:
        response.status_code = 202
    metrics.EVENTS.labels("accepted").inc(out["accepted"])
    metrics.EVENTS.labels("rejected").inc(len(out["rejected"]))
    return out


def _loads(body: bytes) -> Any:
    """JSON as clients send it: orjson's fast strict parser, else the standard library's,
    which also reads ``NaN`` and lone surrogates (each then rejected per event)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)


def _ids(events: list[Any]) -> set[str]:
    """The session and user ids a batch names (redacted from the batch's log lines)."""
    out: set[str] = set()
    for e in events:
        if isinstance(e, dict):
            out.update(v for k in ("session_id", "user_id") if isinstance(v := e.get(k), str))
    return out


def _events(s: Scorer, body: bytes) -> dict[str, Any]:
    """Parse and check a batch as FastAPI would (422 with the field), then take it."""
    try:
        batch = EventBatch.model_validate(_loads(body))
    except json.JSONDecodeError as exc:
        error = {
            "loc": ("body", exc.pos),
            "msg": f"JSON decode error: {exc.msg}",
            "type": "json_invalid",
        }
        raise RequestValidationError([error]) from exc
    except (UnicodeDecodeError, RecursionError) as exc:
        error = {"loc": ("body",), "msg": "not readable as JSON", "type": "json_invalid"}
        raise RequestValidationError([error]) from exc
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
        raise RequestValidationError(errors) from exc
    personal(*_ids(batch.events))
    limit = s.settings.serve.max_events
    if len(batch.events) > limit:
        raise HTTPException(413, f"at most {limit} events per request; split the batch")
    return s.events(batch)


@router.get("/healthz", response_model=Status, tags=["operations"])
async def healthz(rt: RuntimeDep) -> Any:
    """The process is up."""
    return {"status": "ok", "detail": {"uptime_s": round(time.time() - rt.started, 1)}}


@router.get(
    "/readyz", response_model=Status, tags=["operations"], responses={503: {"model": Status}}
)
async def readyz(rt: RuntimeDep) -> Any:
    """200 only when the online store and the LightGBM champion are loaded."""
    s = rt.scorer
    problems: dict[str, Any] = {}
    if s is None:
        problems["scorer"] = "starting"
    else:
        if s.online is None:
            problems["online_store"] = s.online_error
        if s.models.lgbm is None:
            problems[registry.LGBM] = s.models.errors.get(registry.LGBM, "not loaded")
    if s is None or problems:
        return JSONResponse({"status": "not ready", "detail": problems}, status_code=503)
    return {"status": "ready", "detail": {"models": s.models.versions}}


@router.get("/metrics", tags=["operations"], response_class=PlainTextResponse)
async def prometheus() -> Any:
    """Prometheus metrics: latency per route, decisions, degraded count, model versions."""
    body, content_type = metrics.render()
    return PlainTextResponse(body, media_type=content_type)


@router.get("/v1/models", tags=["operations"])
async def models(s: ScorerDep) -> Any:
    """Which versions serve: the champions and the policy (and its canary), no more.

    Model cards, thresholds, the policy's source and the learner's state are
    operators' business: ``GET /v1/admin/models``.
    """
    p = s.policy
    return {
        "models": {name: s.models.versions.get(name) for name in FAMILIES},
        "policy": {
            "version": p.version,
            "canary_share": p.canary[1] if p.canary is not None else 0.0,
        },
    }


@router.get(
    "/v1/admin/models",
    tags=["admin"],
    dependencies=[Depends(admin)],
    responses=answers(401, 503),
)
async def models_in_detail(s: ScorerDep, rt: RuntimeDep) -> Any:
    """The champions in use with their cards (columns, thresholds, metrics, training
    window), the river learner's state and the policy with its source."""
    out: dict[str, Any] = {"river_role": s.settings.serve.river_role, "models": {}}
    for name, m in ((registry.LGBM, s.models.lgbm), (registry.RIVER, s.models.river)):
        out["models"][name] = {
            "version": s.models.versions.get(name),
            "error": s.models.errors.get(name),
            "card": m.card.as_dict() if m is not None else None,
        }
    river = s.models.river
    out["river_learner"] = {
        "this_process_learns": rt.lock.held,
        "learned": getattr(river, "learned", None),
        "drifts": getattr(river, "drifts", None),
        "pending_decisions": s.labels.pending(),
    }
    seg = s.models.segmenter
    out["segmenter"] = {
        "version": s.models.versions.get(SEGMENTER),
        "error": s.models.errors.get(SEGMENTER),
        "card": seg.to_card() if seg is not None else None,
    }
    p = s.policy
    out["policy"] = {"source": p.source, "rules": len(p.doc.rules), "version": p.version}
    if p.canary is not None:
        out["policy"]["canary"] = {"source": p.canary[0].source, "share": p.canary[1]}
    return out


@router.post(
    "/v1/admin/reload-models",
    tags=["admin"],
    dependencies=[Depends(admin)],
    responses=answers(401, 500, 503),
)
async def reload_models(rt: RuntimeDep) -> Any:
    """Load the current champions now (they are also polled)."""
    return {"models": await rt.reload_models()}


@router.post(
    "/v1/admin/reload-policy",
    tags=["admin"],
    dependencies=[Depends(admin)],
    responses=answers(401, 422, 500, 503),
)
async def reload_policy(rt: RuntimeDep) -> Any:
    """Serve the registry's champion policy (and canary) now, or re-read the policy
    file when none is registered; an invalid file keeps the current policy (422).
    The registry is also polled."""
    policy = await rt.reload_policy()
    return {"policy": policy.source, "rules": len(policy.doc.rules), "version": policy.version}
