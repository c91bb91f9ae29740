"""necgs: neural compression for sets of 3D meshes (NeCGS).

The public API is re-exported here; see ``docs/ARCHITECTURE.md`` for the data flow.
"""

from necgs.errors import NecgsError
from necgs.io.mesh import Mesh, Transform


def __getattr__(name: str):
    """Heavy parts (torch, open3d) load on first use, so ``import necgs`` stays fast."""
    lazy = {
        "compress": ("necgs.pipeline", "compress"),
        "decompress": ("necgs.pipeline", "decompress"),
        "describe": ("necgs.pipeline", "describe"),
        "add_shapes": ("necgs.pipeline", "add_shapes"),
        "evaluate": ("necgs.evaluation.runner", "evaluate"),
        "NecgsConfig": ("necgs.config", "NecgsConfig"),
        "preset": ("necgs.config", "preset"),
        "load_meshes": ("necgs.io.loading", "load_meshes"),
    }
    if name not in lazy:
        raise AttributeError(f"module 'necgs' has no attribute {name!r}")
    import importlib

    module, attr = lazy[name]
    return getattr(importlib.import_module(module), attr)


__all__ = [
    "Mesh",
    "NecgsError",
    "Transform",
    "compress",
    "decompress",
    "describe",
    "add_shapes",
    "evaluate",
    "NecgsConfig",
    "preset",
    "load_meshes",
]
__version__ = "0.1.0"
