"""The one exception type of the edge package."""


class TrackingError(Exception):
    """Capture or tracking cannot go on; the message says what the user can do about it."""
