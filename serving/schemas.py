"""Typed request and response bodies of the scoring API (they make the OpenAPI schema)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from events.contract import ID_PATTERN, Device, PageType

#: The event contract's id rule: an id that can be written can be scored.
ID = Field(pattern=ID_PATTERN, description="1 to 64 printable ASCII characters, no spaces.")

#: Why an answer is degraded: stable codes (details go to the server log).
DegradedReason = Literal[
    "online_store_unavailable",
    "online_store_not_loaded",
    "unknown_session",
    "stale_session_features",
    "model_failed",
    "no_model",
    "online_update_failed",
]


class Context(BaseModel):
    """What the front end knows at decision time."""

    model_config = ConfigDict(extra="forbid")
    page_type: PageType | None = Field(default=None, description="Page the visitor is on.")
    device: Device | None = Field(default=None, description="Device class.")
    browser: str | None = Field(default=None, max_length=32, pattern=r"^[^\x00-\x1f\x7f]*$")


class ScoreRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "session_id": "s-42",
                    "user_id": "u-7",
                    "context": {"page_type": "cart", "device": "mobile"},
                }
            ]
        },
    )
    session_id: str = ID
    user_id: str | None = Field(default=None, pattern=ID_PATTERN)
    context: Context = Field(default_factory=Context)


class ActionOut(BaseModel):
    action: Literal[
        "show_discount_popup",
        "highlight_size_guide",
        "emphasize_cta",
        "show_social_proof",
        "none",
    ]
    params: dict[str, Any] = Field(default_factory=dict)
    reason: str
    rule: str | None = None


class DecisionOut(BaseModel):
    variant: str = Field(description="Experiment variant (deterministic per session).")
    actions: list[ActionOut]


class Contribution(BaseModel):
    feature: str
    value: float | None
    contribution: float = Field(description="Signed log-odds contribution (LightGBM SHAP).")


class ModelsUsed(BaseModel):
    lgbm: str | None = Field(description="abandonment-lgbm champion version used.")
    river: str | None = Field(description="abandonment-river champion version used.")
    river_role: Literal["shadow", "fallback", "blend"]
    source: Literal["lgbm", "river", "blend", "none"] = Field(
        description="Which model produced `risk`."
    )


class ScoreResponse(BaseModel):
    session_id: str
    risk: float | None = Field(description="Calibrated probability of abandonment.")
    risk_lgbm: float | None
    risk_river: float | None
    model: ModelsUsed
    decision: DecisionOut
    explanation: list[Contribution] = Field(description="Top contributing features.")
    degraded: bool
    degraded_reasons: list[DegradedReason] = Field(default_factory=list)
    features_age_s: float | None = Field(
        description="Seconds since the session's stored features were last updated."
    )
    features: dict[str, float | None] = Field(description="Model inputs used, by name.")


class EventBatch(BaseModel):
    """Events in the ingest contract (``docs/features.md``); each is validated alone."""

    model_config = ConfigDict(extra="forbid")
    events: list[Any] = Field(
        min_length=1,
        description="Event objects; each is checked by the event contract and rejected alone.",
    )


class RejectedEvent(BaseModel):
    position: int
    event_id: str | None
    reason: str = Field(description="`field: problem`, as in the ingest quarantine.")


class EventsResponse(BaseModel):
    accepted: int
    rejected: list[RejectedEvent]
    sessions_updated: int
    duplicates: int = Field(
        default=0, description="Accepted events this worker had already taken (same event_id)."
    )
    late: int = Field(
        description="Accepted events older than the stored state; the batch build folds them."
    )
    queued: int = Field(
        default=0,
        description="Accepted events handed to the event stream (answer 202): the stream "
        "workers fold and store them.",
    )
    degraded: bool
    degraded_reasons: list[DegradedReason] = Field(default_factory=list)


class Status(BaseModel):
    status: str
    detail: dict[str, Any] = Field(default_factory=dict)


class FieldError(BaseModel):
    loc: list[str] = Field(description="Where: body, then the field path.")
    msg: str
    type: str


class ErrorOut(BaseModel):
    detail: str | list[FieldError]
    request_id: str | None = Field(default=None, description="On 500: the server log's key.")


_ANSWERS: dict[int, str] = {
    400: "The body could not be read as JSON.",
    401: "Missing or wrong 'Authorization: Bearer <token>' (or admin routes disabled).",
    413: "Body over MICROTUNE_SERVE__MAX_BODY_BYTES, or too many events in one request.",
    422: "A field is invalid; each error names the field (the input is never echoed).",
    429: "Over this client's rate; Retry-After says when to try again.",
    500: "A fault in the server (never bad input); request_id finds it in the log.",
    503: "The scorer is starting, or refuses work for a while.",
}


def answers(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` of a route: each error answer it can give, with its body."""
    return {c: {"model": ErrorOut, "description": _ANSWERS[c]} for c in codes}
