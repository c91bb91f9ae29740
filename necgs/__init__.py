"""necgs: neural compression for sets of 3D meshes (NeCGS).

The public API is re-exported here; see ``docs/ARCHITECTURE.md`` for the data flow.
"""

from necgs.errors import NecgsError
from necgs.io.mesh import Mesh, Transform

__all__ = ["Mesh", "NecgsError", "Transform"]
__version__ = "0.1.0"
