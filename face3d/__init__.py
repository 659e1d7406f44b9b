"""Face geometry for headcast: NumPy/SciPy only.

The canonical MediaPipe topology, person models and their fitting (paper eq. 2), the online
coefficient path, retargeting, NMFC rendering, the correspondence warp, and `Coefficients` (whose
wire codec is the `wire` package).
"""

from face3d.blendshapes import BLENDSHAPE_INDEX, BLENDSHAPE_NAMES, NUM_BLENDSHAPES
from face3d.camera import Camera, project_to_image
from face3d.coefficients import Coefficients
from face3d.errors import Face3dError, FitError, TopologyError
from face3d.fit import FitConfig, FitResult, fit_person
from face3d.nmfc import NmfcImage, NmfcTopology, nmfc_topology, render_nmfc, render_nmfc_px
from face3d.online import OnlineConfig, OnlineEstimator
from face3d.person import PersonModel
from face3d.prior import build_prior
from face3d.raster import Raster, rasterise
from face3d.retarget import PoseAdapter, PoseOffset, SourcePoseTracker, TargetPoseMap, retarget
from face3d.topology import NUM_TRIANGLES, NUM_VERTICES, CanonicalMesh, load_canonical_mesh

__all__ = [
    "BLENDSHAPE_INDEX",
    "BLENDSHAPE_NAMES",
    "NUM_BLENDSHAPES",
    "NUM_TRIANGLES",
    "NUM_VERTICES",
    "Camera",
    "CanonicalMesh",
    "Coefficients",
    "Face3dError",
    "FitConfig",
    "FitError",
    "FitResult",
    "NmfcImage",
    "NmfcTopology",
    "OnlineConfig",
    "OnlineEstimator",
    "PersonModel",
    "PoseAdapter",
    "PoseOffset",
    "Raster",
    "SourcePoseTracker",
    "TargetPoseMap",
    "TopologyError",
    "build_prior",
    "fit_person",
    "load_canonical_mesh",
    "nmfc_topology",
    "project_to_image",
    "rasterise",
    "render_nmfc",
    "render_nmfc_px",
    "retarget",
]
