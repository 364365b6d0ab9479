"""When each online feature view was last written, for the freshness alert.

The batch load (``build_features``) records its writes in
``<home>/feast/online_writes.json``; the scorer adds the live writes it makes
itself. ``microtune_online_features_age_seconds`` is the time since the later
of the two.

>>> import tempfile
>>> root = Path(tempfile.mkdtemp())
>>> record_write(root, "session_behaviour", 100.0)
>>> record_write(root, "session_behaviour", 90.0)  # an older write never moves it back
>>> last_writes(root)
{'session_behaviour': 100.0}
"""

from __future__ import annotations

import json
from pathlib import Path

from core.files import atomic_write_bytes

FILE = "online_writes.json"


def last_writes(feast_dir: Path) -> dict[str, float]:
    """Epoch seconds of each view's last recorded write ({} when none)."""
    try:
        data = json.loads((feast_dir / FILE).read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): float(v) for k, v in data.items()} if isinstance(data, dict) else {}


def record_write(feast_dir: Path, view: str, when: float) -> None:
    """Record a write of ``view`` at ``when`` (epoch seconds); keeps the latest."""
    writes = last_writes(feast_dir)
    writes[view] = max(when, writes.get(view, when))
    atomic_write_bytes(feast_dir / FILE, json.dumps(writes, sort_keys=True).encode())
