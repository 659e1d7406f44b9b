"""Keeping MediaPipe's native start-up chatter (glog/TFLite INFO and W lines) off the user's terminal."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Silence file descriptor 2 while a MediaPipe graph is created; Python exceptions still propagate.

    MediaPipe's C++ side writes several lines to stderr each time a graph starts (every shot cut
    restarts one) and offers no switch for it. Set HEADCAST_NATIVE_LOGS=1 to keep them: the `headcast`
    commands do, and send them to their log file (headcast/logs.py) or, with --verbose, the console.
    """
    if os.environ.get("HEADCAST_NATIVE_LOGS") == "1":
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (embedded interpreters): nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
