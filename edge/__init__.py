"""The edge: capture, face tracking (MediaPipe), smoothing and the WebRTC client. Never needs torch."""

from edge.capture import Camera, Frame, SourceInfo, VideoFile, open_source
from edge.config import EdgeConfig
from edge.errors import EdgeError, TrackingError
from edge.pipeline import track_video
from edge.tracking import FaceTracker, TrackedFrame
from edge.tracks import Person, Tracks, load_tracks, save_tracks

__all__ = [
    "Camera",
    "EdgeConfig",
    "EdgeError",
    "FaceTracker",
    "Frame",
    "Person",
    "SourceInfo",
    "TrackedFrame",
    "TrackingError",
    "Tracks",
    "VideoFile",
    "load_tracks",
    "open_source",
    "save_tracks",
    "track_video",
]
