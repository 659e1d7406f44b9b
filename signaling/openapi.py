"""The gateway's OpenAPI description (signaling/openapi.yaml), as `GET /api/openapi.json` serves it.

The YAML file is the one written description of the HTTP API next to docs/live-protocol.md; the
served document lists only what this gateway serves: the enrolment paths (tag "enrolment") appear
only when the gateway was given an enroller.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import yaml

SPEC_FILE = Path(__file__).with_name("openapi.yaml")
ENROLMENT_TAG = "enrolment"
_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


@functools.cache
def _full_document() -> dict[str, Any]:
    with SPEC_FILE.open(encoding="utf-8") as stream:
        document: dict[str, Any] = yaml.safe_load(stream)
    return document


def openapi_document(enrolment: bool) -> dict[str, Any]:
    """Return the description of a gateway's API; `enrolment`: whether it serves the enrolment routes."""
    document = copy.deepcopy(_full_document())
    if not enrolment:
        document["paths"] = {
            path: item for path, item in document["paths"].items()
            if not all(ENROLMENT_TAG in item[m].get("tags", ()) for m in _METHODS if m in item)
        }  # fmt: skip
    return document
