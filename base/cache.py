"""Where headcast keeps what it fetches and builds: `$HEADCAST_CACHE_DIR`, else the user cache folder.

Below it: `assets/` (model files), `demo/` (the demo's base and target), `enrol/` (enrolment work
folders), `jobs/` (job progress), `logs/` (one log file per command), `uploads/` (the gateway's).
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

CACHE_ENV = "HEADCAST_CACHE_DIR"


def cache_dir() -> Path:
    """Return headcast's cache folder (`$HEADCAST_CACHE_DIR` when set, else the user cache directory)."""
    override = os.environ.get(CACHE_ENV)
    return Path(override) if override else platformdirs.user_cache_path("headcast")
