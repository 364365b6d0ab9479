"""Typed request and response bodies of the scoring API (they make the OpenAPI schema)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from events.contract import Device, PageType

ID = Field(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")


class Context(BaseModel):
    """What the front end knows at decision time."""

    model_config = ConfigDict(extra="forbid")
    page_type: PageType | None = Field(default=None, description="Page the visitor is on.")
    device: Device | None = Field(default=None, description="Device class.")
    browser: str | None = Field(default=None, max_length=64)


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
    user_id: str | None = Field(default=None, min_length=1, max_length=128)
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
    degraded_reasons: list[str] = Field(default_factory=list)
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
    degraded: bool
    degraded_reasons: list[str] = Field(default_factory=list)


class Status(BaseModel):
    status: str
    detail: dict[str, Any] = Field(default_factory=dict)
