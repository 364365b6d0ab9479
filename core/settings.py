"""One typed settings object for every part of microtune.

All state lives under one home directory (``MICROTUNE_HOME``, default
``./.microtune``), so several isolated copies can run side by side. The two
profiles differ only in configuration:

* ``embedded`` (default): SQLite online store, Parquet offline store, MLflow on
  SQLite, Prefect's local server, all under the home.
* ``production``: Redis online store, PostgreSQL for the Feast registry and
  MLflow; the Parquet offline store is read with Dask (Feast's file store).

Settings are read from ``MICROTUNE_*`` environment variables once, by
:func:`get_settings`, at the edge of a process (the command line, the
scorer's factory, a deployment's flow run). From there the object is passed
down: nothing below reads the environment. Each stage's thresholds are a
nested model, typed once; their variables use ``__`` between the section
and the field, for example ``MICROTUNE_GATE__MAX_ECE=0.1`` or
``MICROTUNE_SERVE__ADMIN_TOKEN=...``.

Examples
--------
>>> s = Settings(home="/tmp/mt-doc", gate={"max_ece": 0.1})
>>> str(s.paths.raw_events), s.gate.max_ece, s.gate.auc_tolerance
('/tmp/mt-doc/raw/events', 0.1, 0.01)
>>> s.feature_store_yaml.name
'feature_store.yaml'
>>> s.store_variables()["MICROTUNE_HOME"]
'/tmp/mt-doc'
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.paths import Paths
from core.settings_scale import DaskSettings, StreamSettings
from core.settings_segments import SegmentSettings

#: The Feast repository that ships with the project.
FEATURE_REPO = Path(__file__).resolve().parent.parent / "feature_repo"


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FeatureSettings(_Section):
    """How sessions are cut from events (``MICROTUNE_FEATURES__*``)."""

    session_gap_minutes: float = Field(
        default=30.0, gt=0, description="Inactivity after which a session has ended."
    )
    session_lookback_hours: float = Field(
        default=6.0, gt=0, description="Longest session a window build must see whole."
    )


class GateSettings(_Section):
    """The promotion gate's bounds (``MICROTUNE_GATE__*``; see models/gate.py)."""

    auc_tolerance: float = Field(default=0.01, ge=0, description="Allowed AUC loss.")
    max_ece: float = Field(
        default=0.08,
        gt=0,
        description="Calibration error bound on the one-day hold-out. It must exceed the "
        "day-to-day swing of the abandonment rate, which ECE cannot be below (see "
        "docs/models.md).",
    )
    min_first_auc: float = Field(default=0.55, description="AUC the very first model needs.")
    max_invariance_shift: float = Field(
        default=0.03, description="Mean |Δrisk| allowed when hour_of_day is shuffled."
    )
    direction_tolerance: float = Field(
        default=0.005, description="Mean risk drop allowed when sessions look more hesitant."
    )
    latency_budget_us: float = Field(default=2000.0, gt=0, description="Single-row predict.")


class DriftSettings(_Section):
    """Thresholds and the sampling rule of a drift check (``MICROTUNE_DRIFT__*``).

    See docs/drift.md for how each was chosen and measured.
    """

    threshold: float = 0.1
    drift_share: float = 0.1
    min_drifted: int = 2
    prediction_threshold: float = 0.1
    max_missing_increase: float = 0.1
    max_out_of_range: float = 0.05
    max_new_category: float = 0.01
    max_auc_drop: float = 0.05
    max_ece: float = 0.1
    #: With ``calibrate``: the performance bounds are raised to what chance gives at the
    #: window's size (``performance_draws`` label draws; ECE at mean + ``calibration_z``
    #: sd, the AUC drop at ``auc_z`` sd).
    performance_draws: int = 200
    auc_z: float = 3.0
    #: With ``calibrate``: ``max_ece`` is the miscalibration allowed *beyond* chance, so
    #: the ECE bound is at least ``max_ece`` plus the chance ECE's mean (False: at least
    #: ``max_ece`` itself). Measured ECE is chance noise on top of any real miscalibration.
    ece_floor_over_chance: bool = True
    min_rows: int = 200
    min_labelled: int = 200
    min_values: int = 30
    sample_rows: int | None = 20_000
    seed: int = 0
    #: Calibrate thresholds on random splits of the reference (False: ``threshold`` for all).
    calibrate: bool = True
    calibration_draws: int = 40
    calibration_z: float = 3.0
    #: Rows sharing this key (a session's decision points) stay on one side of a split.
    group: str | None = "session_id"
    #: Counted features whose average |Spearman| on the reference reaches this form one
    #: group that votes once (None: every feature votes alone). See monitoring/groups.py.
    group_corr: float | None = 0.4
    #: True (with ``calibrate``): data_drift fails at the drifted-group count that at
    #: most ``count_alpha`` of ``count_draws`` fresh reference splits reach (never below
    #: ``min_drifted``). False (the default; see docs/drift.md): at ``drift_share`` of the
    #: groups and ``min_drifted``.
    calibrate_count: bool = False
    count_draws: int = 100
    count_alpha: float = 0.12


class ServeSettings(_Section):
    """The online scorer (``MICROTUNE_SERVE__*``; see docs/api.md)."""

    admin_token: str | None = Field(
        default=None, description="Bearer token of the admin routes; unset disables them."
    )
    policy: Path | None = Field(
        default=None, description="Decision policy YAML (default: serving/policy.yaml)."
    )
    river_role: Literal["shadow", "fallback", "blend"] = Field(
        default="shadow",
        description="river beside LightGBM: logged only, used when LightGBM is missing, "
        "or blended with weight blend_weight.",
    )
    blend_weight: float = Field(default=0.3, ge=0, le=1)
    model_poll_s: float = Field(
        default=10.0, gt=0, description="How often the server checks the champion aliases."
    )
    max_body_bytes: int = Field(default=1_000_000, gt=0)
    max_events: int = Field(default=1_000, gt=0, description="Events per POST /v1/events.")
    max_event_age_hours: float = Field(
        default=48.0,
        gt=0,
        description="Oldest live event POST /v1/events takes (batch ingest takes history).",
    )
    rate_limit_score_per_min: int = Field(
        default=600, ge=0, description="POST /v1/score per client and minute; 0: no limit."
    )
    rate_limit_events_per_min: int = Field(
        default=300, ge=0, description="POST /v1/events per client and minute; 0: no limit."
    )
    rate_limit_storage: str = Field(
        default="memory://",
        description="Where the counts live: memory:// (per process) or redis://host:port.",
    )
    api_keys: list[str] = Field(
        default_factory=list, description="Keys in X-API-Key that name a client of their own."
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses or networks whose X-Forwarded-For names the client.",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Origins whose pages may call the API from a browser (CORS), e.g. "
        '["https://shop.example"]; empty: none.',
    )
    storefront: bool = Field(
        default=True,
        description="Serve the demo storefront at /demo/ (a shop using the browser SDK); "
        "turn it off on a scorer that faces real visitors.",
    )
    read_timeout_s: float = Field(
        default=10.0, gt=0, description="A request must arrive whole within this (slow clients)."
    )
    keep_alive_s: int = Field(
        default=5, gt=0, description="An idle keep-alive connection is closed after this."
    )
    log_fsync: Literal["interval", "always", "never"] = Field(
        default="interval",
        description="When the decision log and the event inbox reach the disk: synced every "
        "second (interval), before every answer (always), or when the OS decides (never). "
        "Lines are written before every answer in all three.",
    )
    explain_top: int = Field(default=5, ge=0)
    segments: bool = Field(
        default=True,
        description="Assign each scored session its micro-segment, when a segmenter is "
        "registered (docs/segments.md).",
    )


class RetentionSettings(_Section):
    """How long personal data is kept (``MICROTUNE_RETENTION__*``); the daily
    ``apply_retention`` deployment deletes what is older (docs/operations.md)."""

    raw_events_days: float = Field(
        default=180.0, gt=0, description="Raw events, and the scorer's ingested inbox files."
    )
    decisions_days: float = Field(default=180.0, gt=0, description="The decision log.")
    quarantine_days: float = Field(default=30.0, gt=0, description="Quarantined rows.")


class PrivacySettings(_Section):
    """Pseudonymous ids and the erasure audit (``MICROTUNE_PRIVACY__*``, core/privacy.py)."""

    pseudonym_key: str | None = Field(
        default=None,
        repr=False,
        description="Hex key of the user-id pseudonyms; None: HOME/secrets/pseudonym.key.",
    )
    audit_key: str | None = Field(
        default=None,
        repr=False,
        description="Hex key of the erasure audit's id hashes (not the pseudonym key); "
        "None: HOME/secrets/audit.key.",
    )


class Settings(BaseSettings):
    """microtune configuration, from ``MICROTUNE_*`` environment variables."""

    model_config = SettingsConfigDict(
        env_prefix="MICROTUNE_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

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
        default=None,
        description="Prefect server. None: the server `microtune server` runs for this "
        "home when one is up, else a temporary local one.",
    )
    prefect_database_url: str | None = Field(
        default=None,
        description="Database of the Prefect server `microtune server` runs. None: SQLite "
        "under HOME/prefect (embedded), or the database `prefect` on the PostgreSQL server "
        "of postgres_url (production).",
    )
    mlflow_tracking_uri: str | None = Field(
        default=None, description="None: SQLite under the home (embedded) or PostgreSQL."
    )
    alert_webhook_url: str | None = Field(
        default=None, description="Where a failing drift verdict is POSTed as JSON."
    )

    features: FeatureSettings = FeatureSettings()
    gate: GateSettings = GateSettings()
    drift: DriftSettings = DriftSettings()
    serve: ServeSettings = ServeSettings()
    retention: RetentionSettings = RetentionSettings()
    privacy: PrivacySettings = PrivacySettings()
    stream: StreamSettings = StreamSettings()
    dask: DaskSettings = DaskSettings()
    segments: SegmentSettings = SegmentSettings()

    @field_validator("home")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        return v.expanduser().resolve()

    @property
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
    def prefect_database(self) -> str | None:
        """The Prefect server's database URL (None: Prefect's SQLite under the home).

        >>> Settings(home="/tmp/mt-doc", profile="production").prefect_database
        'postgresql+asyncpg://postgres@127.0.0.1:5432/prefect'
        """
        if self.prefect_database_url:
            return self.prefect_database_url
        if self.profile == "production":
            server = self.postgres_url.split("://", 1)[1].rsplit("/", 1)[0]
            return f"postgresql+asyncpg://{server}/prefect"
        return None

    @property
    def tracking_uri(self) -> str:
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        if self.profile == "production":
            return self.postgres_url
        return f"sqlite:///{self.paths.mlflow / 'mlflow.db'}"

    def store_variables(self) -> dict[str, str]:
        """The ``${...}`` variables of the Feast yaml files, from these settings.

        The same names let a person run ``feast`` by hand on a home (see
        docs/features.md); microtune itself fills them in from this object.
        """
        return {
            "MICROTUNE_HOME": str(self.home),
            "MICROTUNE_PROJECT": self.project,
            "MICROTUNE_REDIS_URL": self.redis_url,
            "MICROTUNE_POSTGRES_URL": self.postgres_url,
        }

    def environment(self) -> dict[str, str]:
        """``MICROTUNE_*`` variables that give a child process these same settings.

        >>> env = Settings(home="/tmp/mt-doc", gate={"max_ece": 0.1}).environment()
        >>> env["MICROTUNE_HOME"], env["MICROTUNE_GATE__MAX_ECE"]
        ('/tmp/mt-doc', '0.1')
        """

        def text(v: Any) -> str:
            return json.dumps(v) if isinstance(v, list | dict) else str(v)

        env: dict[str, str] = {}
        for name, value in self.model_dump(mode="json").items():
            if isinstance(value, dict):
                for field, v in value.items():
                    if v is not None:
                        env[f"MICROTUNE_{name}__{field}".upper()] = text(v)
            elif value is not None:
                env[f"MICROTUNE_{name}".upper()] = text(value)
        return env

    def override(self, **changes: Any) -> Settings:
        """A validated copy with ``changes``; a section takes a mapping of its fields.

        >>> s = Settings(home="/tmp/mt-doc").override(gate={"max_ece": 0.15}, project="p2")
        >>> s.gate.max_ece, s.gate.auc_tolerance, s.project
        (0.15, 0.01, 'p2')
        """
        data = self.model_dump()
        for name, value in changes.items():
            if isinstance(value, dict) and isinstance(data.get(name), dict):
                data[name] = {**data[name], **value}
            else:
                data[name] = value
        return type(self).model_validate(data)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment.

    Call it at a process's edge only; pass the object down from there.
    """
    return Settings()
