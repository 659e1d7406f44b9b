"""Every package's errors share one root, so a command reports any of them as one line."""

from __future__ import annotations

import pytest

from base.assets import AssetError
from base.errors import HeadcastError
from base.targets import TargetIdError
from edge.errors import EdgeError, TrackingError
from face3d.errors import Face3dError, FitError, TopologyError
from inference.protocol import RenderError
from inference.raster_torch import RasterError
from inference.registry import RegistryError
from inference.warp import WarpError
from signaling.auth import AuthError
from signaling.errors import GatewayError, RendererUnavailableError, TlsError
from training.checkpoint import TrainingError
from training.clips import ClipError
from training.corpus import CorpusError
from training.evaluate import EvaluationError
from training.finetune import EnrolError
from training.jobs import JobError
from training.metrics import MetricsError
from training.references import ReferenceError
from wire import WireError

ERRORS = [AssetError, TargetIdError, EdgeError, TrackingError, Face3dError, FitError, TopologyError, WireError,
          RenderError, RasterError, RegistryError, WarpError, AuthError, GatewayError, RendererUnavailableError,
          TrainingError, ClipError, CorpusError, EvaluationError, EnrolError, JobError, MetricsError,
          ReferenceError, TlsError]  # fmt: skip


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: e.__name__)
def test_each_package_error_is_a_headcast_error(error: type[Exception]) -> None:
    assert issubclass(error, HeadcastError)


def test_errors_that_were_value_errors_still_are() -> None:
    # Callers that catch ValueError (bad shapes, bad ids) keep working.
    assert all(issubclass(e, ValueError) for e in (RasterError, WarpError, TargetIdError))
    assert issubclass(JobError, RuntimeError)
