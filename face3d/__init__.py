"""Face geometry for headcast: NumPy/SciPy only.

The canonical MediaPipe topology, the asset resolver, blendshape names and pose helpers; person
models, fitting, NMFC rendering and the coefficient wire codec build on these.
"""

from face3d.blendshapes import BLENDSHAPE_INDEX, BLENDSHAPE_NAMES, NUM_BLENDSHAPES
from face3d.errors import AssetError, Face3dError, TopologyError
from face3d.topology import NUM_TRIANGLES, NUM_VERTICES, CanonicalMesh, load_canonical_mesh

__all__ = [
    "BLENDSHAPE_INDEX",
    "BLENDSHAPE_NAMES",
    "NUM_BLENDSHAPES",
    "NUM_TRIANGLES",
    "NUM_VERTICES",
    "AssetError",
    "CanonicalMesh",
    "Face3dError",
    "TopologyError",
    "load_canonical_mesh",
]
