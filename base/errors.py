"""The root of headcast's own errors.

Each package has its own type (`face3d.FitError`, `edge.TrackingError`, `signaling.AuthError`, …) whose
message tells the user what to do; all of them derive from `HeadcastError`, so a command reports any of
them as one line without listing every package's types, and anything else stays a bug with a traceback.
"""

from __future__ import annotations


class HeadcastError(Exception):
    """An error raised on purpose: bad input, a missing file, a refused request; its message says what to do."""
