"""The one exception family of face3d."""


class Face3dError(Exception):
    """Base of every error face3d raises; its message tells the user what to do."""


class AssetError(Face3dError):
    """A model or data file is missing, unreadable, or does not match its pinned sha256."""


class TopologyError(Face3dError):
    """The canonical mesh metadata could not be read."""


class FitError(Face3dError):
    """A person model could not be fitted, loaded or applied (bad input, too little data, a bad file)."""


class WireError(Face3dError):
    """A coefficient packet could not be decoded (corrupt, from another wire version, or its reference was lost)."""
