"""What every headcast package needs, and nothing heavier than the standard library and platformdirs.

`errors` (the `HeadcastError` root every package's errors derive from), `files` (atomic writes and
file hashes), `cache` (the cache folder), `targets` (the target-id rule) and `assets` (the model
files, sha256-pinned, resolved and fetched). The edge, the gateway and the CLI import it without
pulling torch, cv2 or Ray; tests/test_layering.py checks that.
"""

from base.errors import HeadcastError

__all__ = ["HeadcastError"]
