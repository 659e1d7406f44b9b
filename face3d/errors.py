"""The one exception family of face3d."""

from base.errors import HeadcastError


class Face3dError(HeadcastError):
    """Base of every error face3d raises; its message tells the user what to do."""


class TopologyError(Face3dError):
    """The canonical mesh metadata could not be read."""


class FitError(Face3dError):
    """A person model could not be fitted, loaded or applied (bad input, too little data, a bad file)."""
