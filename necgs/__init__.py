"""necgs: neural compression for sets of 3D meshes (NeCGS).

The public API is re-exported here; see ``docs/ARCHITECTURE.md`` for the data flow.
"""

from necgs.errors import NecgsError
from necgs.io.mesh import Mesh, Transform


def __getattr__(name: str):
    """Heavy parts (torch, open3d) load on first use, so ``import necgs`` stays fast."""
    lazy = {
        "compress": ("necgs.compression", "compress"),
        "decompress": ("necgs.compression", "decompress"),
        "describe": ("necgs.compression", "describe"),
        "add_shapes": ("necgs.compression", "add_shapes"),
        "evaluate": ("necgs.evaluation.runner", "evaluate"),
        "NecgsConfig": ("necgs.config", "NecgsConfig"),
        "preset": ("necgs.settings", "preset"),
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
