"""docs/features.md, followed to the letter on a copy of the project.

The test copies the project's packages to a temporary directory,
adds the doc's example fold to the copy's ``SESSION_FOLDS`` (step 1), runs
``microtune features build`` on a small generated log (step 3), and then checks
the result as step 4 does. The Feast CLI must show the new field, and the
online values must equal a count made by hand from the raw events. The copy is
put first on ``PYTHONPATH``, so it shadows the installed package and the real
repository is never touched.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import orjson
import pytest

from events.synth import GeneratorConfig, write_event_log

pytestmark = [pytest.mark.slow, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "features.md"

#: Step 1 of the doc: the entry added to SESSION_FOLDS, indented as in features.py.
NEW_FOLD = """\
    Count(
        "cart_page_views",
        "Cart page views so far.",
        Match(types=("page_view",), pages=("cart",)),
    ),
"""
#: The doc adds the fold after ``checkout_starts``, just before the timestamps.
ANCHOR = '    First("session_start_ts",'

#: Step 4 in Python: what the store holds after the build (printed as JSON).
READ_BACK = """
import json, sys

import feature_repo, flows
from stores.feature_store import open_store
from core.settings import get_settings

store = open_store(get_settings())
service = store.get_feature_service("abandonment_v1")
sessions = json.loads(sys.argv[1])
online = store.get_online_features(
    features=["session_behaviour:cart_page_views"],
    entity_rows=[{"session_id": s} for s in sessions],
).to_dict()
print(json.dumps({
    "feature_repo": feature_repo.__file__,
    "flows": flows.__file__,
    "fields": [f.name for f in store.get_feature_view("session_behaviour").features],
    "service": [f.name for p in service.feature_view_projections for f in p.features],
    "online": dict(zip(online["session_id"], online["cart_page_views"])),
}))
"""


def _copy_project(dest: Path) -> Path:
    """Every package of the project (each folder with an ``__init__.py``), copied."""
    ignore = shutil.ignore_patterns("__pycache__", "data")
    for package in sorted(ROOT.glob("*/__init__.py")):
        name = package.parent.name
        if name != "tests":
            shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    shutil.copytree(ROOT / "feature_repo" / "data", dest / "feature_repo" / "data")
    return dest


def _add_fold(features_py: Path) -> None:
    """Step 1: insert the doc's entry into SESSION_FOLDS."""
    src = features_py.read_text()
    assert "cart_page_views" not in src, "the example feature is already declared"
    assert src.count(ANCHOR) == 1, "SESSION_FOLDS no longer ends with session_start_ts"
    features_py.write_text(src.replace(ANCHOR, NEW_FOLD + ANCHOR))
    assert NEW_FOLD + ANCHOR in features_py.read_text()


def _env(copy: Path, home: Path) -> dict[str, str]:
    """This environment minus Prefect, Feast and microtune settings, plus the copy's."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_", "MICROTUNE_", "FEAST_", "FEATURE_REPO_DIR"))
    }
    env.update(
        PYTHONPATH=str(copy),
        MICROTUNE_HOME=str(home),
        MICROTUNE_PROJECT="microtune",
        MICROTUNE_PROFILE="embedded",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
    )
    return env


def _cli(copy: Path) -> list[str]:
    """``microtune`` of the copy (the console script would import the installed package)."""
    return [sys.executable, "-m", "cli.main"]


def _feast() -> str:
    beside = Path(sys.executable).with_name("feast")
    found = str(beside) if beside.exists() else shutil.which("feast")
    assert found, "the feast command is not installed"
    return found


def _check(
    proc: subprocess.CompletedProcess[str] | subprocess.Popen[str], out: str, err: str
) -> None:
    assert proc.returncode == 0, f"{proc.args} failed:\n{out[-3000:]}\n{err[-5000:]}"


def _hand_counts(events_dir: Path) -> tuple[dict[str, float], set[str]]:
    """Cart page views per session over consented events, and the sessions without consent."""
    counts: Counter[str] = Counter()
    consented: set[str] = set()
    seen: set[str] = set()
    for f in sorted(events_dir.glob("*.jsonl")):
        for line in f.read_bytes().splitlines():
            e = orjson.loads(line)
            seen.add(e["session_id"])
            if not e["consent"]:
                continue
            consented.add(e["session_id"])
            if e["event_type"] == "page_view" and e["page_type"] == "cart":
                counts[e["session_id"]] += 1
    return {s: float(counts[s]) for s in consented}, seen - consented


def test_registering_a_feature_as_documented(tmp_path: Path) -> None:
    doc = DOC.read_text()
    assert textwrap.indent(NEW_FOLD, "   ") in doc, "step 1 of the doc changed"
    for command in (
        "microtune features build",
        "feast -c feature_repo feature-views describe session_behaviour",
    ):
        assert command in doc, command

    copy = _copy_project(tmp_path / "project")
    _add_fold(copy / "feature_repo" / "features.py")
    log = tmp_path / "log"
    write_event_log(GeneratorConfig(sessions=200, days=1, seed=3), log)
    expected, unconsented = _hand_counts(log / "events")
    assert any(v > 0 for v in expected.values()), "the log has no cart page views"
    assert unconsented, "the log has no session without consent"
    env = _env(copy, tmp_path / "home")

    # Step 3: register, rebuild and materialize.
    build = subprocess.run(
        [*_cli(copy), "features", "build", "--inbox", str(log / "events")],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    _check(build, build.stdout, build.stderr)
    assert re.search(r"feast apply\W+applied", build.stdout), build.stdout

    # Step 4: the Feast CLI and the online store, read side by side.
    feast = [_feast(), "-c", str(copy / "feature_repo")]
    describe = subprocess.Popen(
        [*feast, "feature-views", "describe", "session_behaviour"],
        cwd=copy,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    sessions = sorted(expected) + sorted(unconsented)
    read = subprocess.run(
        [sys.executable, "-c", READ_BACK, json.dumps(sessions)],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    described, described_err = describe.communicate(timeout=600)
    _check(read, read.stdout, read.stderr)
    _check(describe, described, described_err)

    assert "name: session_behaviour" in described
    assert re.search(r"- name: cart_page_views\n\s+valueType: DOUBLE", described), described

    got = json.loads(read.stdout.strip().splitlines()[-1])
    assert Path(got["feature_repo"]).is_relative_to(copy), got["feature_repo"]
    assert Path(got["flows"]).is_relative_to(copy), got["flows"]
    assert "cart_page_views" in got["fields"]
    assert "cart_page_views" in got["service"]  # step 2: abandonment_v1 lists it
    # Consented sessions read their hand count; sessions without consent have no row.
    assert got["online"] == expected | dict.fromkeys(unconsented)
