"""One typed settings object for every part of microtune.

All state lives under one home directory (``MICROTUNE_HOME``, default
``./.microtune``), so several isolated copies can run side by side. The two
profiles differ only in configuration:

* ``embedded`` (default): SQLite online store, Parquet offline store, MLflow on
  SQLite, Prefect's local server, all under the home.
* ``production``: Redis online store, PostgreSQL for the Feast registry and
  MLflow; the Parquet offline store is read with Dask (Feast's file store).

Settings are read once through :func:`get_settings`; tests call
``get_settings.cache_clear()`` after changing the environment.

Examples
--------
>>> s = Settings(home="/tmp/mt-doc")
>>> str(s.paths.raw_events)
'/tmp/mt-doc/raw/events'
>>> s.feature_store_yaml.name
'feature_store.yaml'
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The Feast repository that ships with the project.
FEATURE_REPO = Path(__file__).resolve().parent.parent / "feature_repo"


@dataclass(frozen=True)
class Paths:
    """Every location under the home directory."""

    home: Path

    @property
    def raw_events(self) -> Path:
        return self.home / "raw" / "events"

    @property
    def quarantine(self) -> Path:
        return self.home / "quarantine"

    @property
    def offline(self) -> Path:
        return self.home / "offline"

    @property
    def session_features(self) -> Path:
        return self.offline / "session_features"

    @property
    def session_outcomes(self) -> Path:
        return self.offline / "session_outcomes"

    @property
    def user_features(self) -> Path:
        return self.offline / "user_features"

    @property
    def feast(self) -> Path:
        return self.home / "feast"

    @property
    def reports(self) -> Path:
        return self.home / "reports"

    @property
    def mlflow(self) -> Path:
        return self.home / "mlflow"

    @property
    def prefect(self) -> Path:
        return self.home / "prefect"

    @property
    def decisions(self) -> Path:
        return self.home / "decisions"

    @property
    def serving(self) -> Path:
        return self.home / "serving"

    @property
    def live_inbox(self) -> Path:
        """Events taken by ``POST /v1/events``, for the next ``build_features`` run."""
        return self.home / "inbox" / "live"

    @property
    def examples(self) -> Path:
        return self.home / "examples"

    def ensure(self) -> Paths:
        for p in (
            self.raw_events,
            self.quarantine,
            self.offline,
            self.feast,
            self.reports,
            self.mlflow,
            self.prefect,
        ):
            p.mkdir(parents=True, exist_ok=True)
        return self


class Settings(BaseSettings):
    """microtune configuration, from ``MICROTUNE_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="MICROTUNE_", extra="ignore")

    home: Path = Field(default=Path(".microtune"), description="Root of all state.")
    profile: Literal["embedded", "production"] = "embedded"
    project: str = Field(
        default="microtune",
        pattern=r"^[A-Za-z][A-Za-z0-9_]*$",
        description="Feast project of the production profile; isolates homes that share "
        "Redis and PostgreSQL (the embedded profile has one project per home).",
    )

    # production stores
    redis_url: str = "127.0.0.1:6379"
    postgres_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    prefect_api_url: str | None = Field(
        default=None, description="Prefect server; None uses a local server under the home."
    )
    mlflow_tracking_uri: str | None = Field(
        default=None, description="None: SQLite under the home (embedded) or PostgreSQL."
    )

    # features
    session_gap_minutes: float = Field(
        default=30.0, gt=0, description="Inactivity after which a session has ended."
    )
    session_lookback_hours: float = Field(
        default=6.0, gt=0, description="Longest session a window build must see whole."
    )

    # promotion gate (see models/gate.py)
    gate_auc_tolerance: float = Field(default=0.01, ge=0, description="Allowed AUC loss.")
    gate_max_ece: float = Field(
        default=0.08,
        gt=0,
        description="Calibration error bound on the one-day hold-out. It must exceed the "
        "day-to-day swing of the abandonment rate, which ECE cannot be below (see "
        "docs/models.md).",
    )
    gate_latency_budget_us: float = Field(default=2000.0, gt=0)

    # drift monitoring (see flows/drift.py, docs/drift.md)
    alert_webhook_url: str | None = Field(
        default=None, description="Where a failing drift verdict is POSTed as JSON."
    )

    # online scorer (serving/, see docs/api.md)
    serve_admin_token: str | None = Field(
        default=None, description="Bearer token of the admin routes; unset disables them."
    )
    serve_policy: Path | None = Field(
        default=None, description="Decision policy YAML (default: serving/policy.yaml)."
    )
    serve_river_role: Literal["shadow", "fallback", "blend"] = Field(
        default="shadow",
        description="river beside LightGBM: logged only, used when LightGBM is missing, "
        "or blended with weight serve_blend_weight.",
    )
    serve_blend_weight: float = Field(default=0.3, ge=0, le=1)
    serve_model_poll_s: float = Field(
        default=10.0, gt=0, description="How often the server checks the champion aliases."
    )
    serve_max_body_bytes: int = Field(default=1_000_000, gt=0)
    serve_max_events: int = Field(default=1_000, gt=0, description="Events per POST /v1/events.")
    serve_explain_top: int = Field(default=5, ge=0)

    @field_validator("home")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        return v.expanduser().resolve()

    @cached_property
    def paths(self) -> Paths:
        return Paths(self.home)

    @property
    def feature_repo(self) -> Path:
        return FEATURE_REPO

    @property
    def feature_store_yaml(self) -> Path:
        name = (
            "feature_store.yaml" if self.profile == "embedded" else "feature_store.production.yaml"
        )
        return FEATURE_REPO / name

    @property
    def artifact_root(self) -> str:
        """Where MLflow stores run artifacts and models (never the working directory)."""
        return (self.paths.mlflow / "artifacts").as_uri()

    @property
    def tracking_uri(self) -> str:
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        if self.profile == "production":
            return self.postgres_url
        return f"sqlite:///{self.paths.mlflow / 'mlflow.db'}"

    def export_env(self) -> None:
        """Publish the settings to libraries that read the environment.

        Feast expands ``${MICROTUNE_HOME}`` in ``feature_store.yaml``, Prefect
        keeps its database under ``PREFECT_HOME``, and MLflow reads its URI.
        Call this before importing Prefect or creating a ``FeatureStore``.
        """
        os.environ["MICROTUNE_HOME"] = str(self.home)
        os.environ["MICROTUNE_PROFILE"] = self.profile
        os.environ["MICROTUNE_PROJECT"] = self.project
        os.environ["MICROTUNE_REDIS_URL"] = self.redis_url
        os.environ["MICROTUNE_POSTGRES_URL"] = self.postgres_url
        # Prefect's own state belongs to this home too, unless a server is configured.
        if not self.prefect_api_url:
            os.environ["PREFECT_HOME"] = str(self.paths.prefect)
        # A loaded laptop can take longer than Prefect's default 20 s to start
        # its temporary local server; telemetry off keeps the run local.
        os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
        os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        os.environ.setdefault("DO_NOT_TRACK", "1")
        if self.prefect_api_url:
            os.environ["PREFECT_API_URL"] = self.prefect_api_url
        os.environ["MLFLOW_TRACKING_URI"] = self.tracking_uri


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
