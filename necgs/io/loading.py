"""Loading and saving meshes: files, folders, zips and lists, with per-file validation.

One unusable file never stops a set: :func:`load_meshes` returns the meshes it could
use and a one-line reason for every file it could not.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from necgs.errors import MeshLoadError, NecgsError
from necgs.io.mesh import Mesh
from necgs.io.ply import write_binary_ply

#: File suffixes read as meshes (everything trimesh reads that holds triangles).
MESH_SUFFIXES = (".obj", ".ply", ".off", ".stl", ".glb", ".gltf")
#: Largest single mesh file accepted, in bytes.
MAX_FILE_BYTES = 512 * 1024**2


@dataclass
class LoadFailure:
    """A file that could not be used, and why (one line)."""

    source: str
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"


@dataclass
class LoadedSet:
    """Meshes read from a source, in a deterministic order.

    Attributes:
        meshes: The usable meshes (names unique within the set).
        failures: One entry per mesh-like file that could not be used.
        sources: The file each mesh came from (parallel to ``meshes``).
        source_bytes: Size on disk of each source file (parallel to ``meshes``).
    """

    meshes: list[Mesh] = field(default_factory=list)
    failures: list[LoadFailure] = field(default_factory=list)
    sources: list[Path] = field(default_factory=list)
    source_bytes: list[int] = field(default_factory=list)

    @property
    def total_source_bytes(self) -> int:
        """Total size of the source files of the usable meshes."""
        return int(sum(self.source_bytes))


def load_mesh(path: str | os.PathLike, name: str | None = None, max_bytes: int = MAX_FILE_BYTES) -> Mesh:
    """Read one mesh file as triangles and validate it.

    Args:
        path: A file in a format trimesh reads (obj, ply, off, stl, glb, gltf).
        name: The mesh's name; defaults to the file stem.
        max_bytes: Larger files are refused.

    Returns:
        The validated :class:`Mesh` (vertex order kept; unreferenced vertices kept). STL
        files, which store a triangle soup, get their bit-identical corners welded.

    Raises:
        MeshLoadError: Missing, too large, unreadable, not a triangle mesh, empty or non-finite.
    """
    path = Path(path)
    src = str(path)
    if not path.is_file():
        raise MeshLoadError(src, "no such file")
    if path.suffix.lower() not in MESH_SUFFIXES:
        raise MeshLoadError(
            src, f"unsupported format {path.suffix or '(none)'!r}; use one of {', '.join(MESH_SUFFIXES)}"
        )
    size = path.stat().st_size
    if size > max_bytes:
        raise MeshLoadError(src, f"file is {size / 1e6:.0f} MB, over the {max_bytes / 1e6:.0f} MB limit")
    if size == 0:
        raise MeshLoadError(src, "file is empty")
    vertices, faces = _read_triangles(path)
    if path.suffix.lower() == ".stl":
        vertices, faces = weld_identical(vertices, faces)
    return validate_mesh(Mesh(vertices, faces, name if name is not None else path.stem), src)


def _read_triangles(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import trimesh  # imported when used: trimesh is slow to import and most commands never need it

    try:
        loaded = trimesh.load(path, process=False, force=None)
    except Exception as exc:  # noqa: BLE001 - trimesh raises many types for corrupt files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MeshLoadError(str(path), f"cannot be read as {path.suffix[1:]}: {reason[:200]}") from None
    if isinstance(loaded, trimesh.Scene):
        geoms = [g for g in loaded.dump() if isinstance(g, trimesh.Trimesh)] if loaded.geometry else []
        if not geoms:
            raise MeshLoadError(str(path), "contains no triangle mesh")
        loaded = trimesh.util.concatenate(geoms)
    if not isinstance(loaded, trimesh.Trimesh):
        raise MeshLoadError(str(path), f"is a {type(loaded).__name__}, not a triangle mesh (no faces)")
    return np.asarray(loaded.vertices), np.asarray(loaded.faces)


def weld_identical(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge bit-identical vertices, keeping them in order of first use.

    STL stores every triangle with its own three corners; welding exact copies gives the
    indexed mesh the file describes (no tolerance, nothing else repaired).

    Args:
        vertices: (V, 3) positions.
        faces: (F, 3) indices into ``vertices``.

    Returns:
        ``(vertices, faces)`` with (V', 3) unique positions and (F, 3) re-indexed faces.
    """
    if len(vertices) == 0:
        return vertices, faces
    _, first, inverse = np.unique(vertices, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return vertices[first[order]], rank[inverse.reshape(-1)][faces]


def validate_mesh(mesh: Mesh, source: str) -> Mesh:
    """Check a mesh is usable; returns it unchanged or raises :class:`MeshLoadError`."""
    if mesh.n_vertices == 0 or mesh.n_faces == 0:
        raise MeshLoadError(source, "mesh is empty (no vertices or no faces)")
    if not np.all(np.isfinite(mesh.vertices)):
        raise MeshLoadError(source, "vertex coordinates contain NaN or infinity")
    if mesh.faces.min() < 0 or mesh.faces.max() >= mesh.n_vertices:
        raise MeshLoadError(source, "face indices out of range")
    tri = mesh.vertices[mesh.faces]
    area = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    if not np.any(area > 0):
        raise MeshLoadError(source, "every face is degenerate (zero area)")
    extent = mesh.vertices.max(0) - mesh.vertices.min(0)
    if float(extent.max()) <= 0:
        raise MeshLoadError(source, "all vertices coincide")
    return mesh


def save_mesh(mesh: Mesh, path: str | os.PathLike) -> Path:
    """Write a mesh; the format follows the suffix (binary PLY for ``.ply``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise NecgsError(f"{path}: cannot write format {suffix or '(none)'!r}; use one of {', '.join(MESH_SUFFIXES)}")
    if suffix == ".ply":
        write_binary_ply(mesh, path)
    else:
        mesh.to_trimesh().export(path)
    return path


def _mesh_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in MESH_SUFFIXES)


def load_meshes(
    source: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    max_files: int = 10_000,
    max_total_bytes: int = 4 * 1024**3,
    extract_dir: str | os.PathLike | None = None,
) -> LoadedSet:
    """Load every mesh of a folder (recursive), a zip, one file or a list of files.

    Args:
        source: Folder, ``.zip`` file, mesh file, or a list of mesh files.
        max_files: At most this many mesh files.
        max_total_bytes: At most this many bytes of mesh files in total.
        extract_dir: Where a zip is extracted (a temporary folder if ``None``).

    Returns:
        A :class:`LoadedSet`; names are paths relative to the folder without suffix.

    Raises:
        NecgsError: The source itself is missing or over the limits (single files that
            fail are reported in ``failures`` instead).
    """
    files, root = _resolve_files(source, max_files, max_total_bytes, extract_dir)
    result = LoadedSet()
    seen: set[str] = set()
    for path in files:
        name = _unique(_name_for(path, root), seen)
        try:
            mesh = load_mesh(path, name=name)
        except MeshLoadError as exc:
            result.failures.append(LoadFailure(exc.source, exc.reason))
            continue
        result.meshes.append(mesh)
        result.sources.append(path)
        result.source_bytes.append(path.stat().st_size)
    return result


def _resolve_files(source, max_files, max_total_bytes, extract_dir) -> tuple[list[Path], Path | None]:
    if isinstance(source, (list, tuple)):
        files = [Path(p) for p in source]
        root = None
    else:
        path = Path(source)
        if path.is_dir():
            files, root = _mesh_files(path), path
        elif path.is_file() and path.suffix.lower() == ".zip":
            dest = Path(extract_dir) if extract_dir else Path(tempfile.mkdtemp(prefix="necgs-zip-"))
            safe_extract_zip(path, dest, max_files=max_files, max_bytes=max_total_bytes)
            files, root = _mesh_files(dest), dest
        elif path.is_file():
            files, root = [path], None
        else:
            raise NecgsError(f"{path}: no such file or folder")
    if len(files) > max_files:
        raise NecgsError(f"{source}: {len(files)} mesh files, over the limit of {max_files}")
    total = sum(p.stat().st_size for p in files if p.is_file())
    if total > max_total_bytes:
        raise NecgsError(f"{source}: {total / 1e6:.0f} MB of meshes, over the limit of {max_total_bytes / 1e6:.0f} MB")
    return files, root


def _name_for(path: Path, root: Path | None) -> str:
    rel = path.relative_to(root) if root is not None else Path(path.name)
    return rel.with_suffix("").as_posix()


def _unique(name: str, seen: set[str]) -> str:
    candidate, k = name, 2
    while candidate in seen:
        candidate, k = f"{name}~{k}", k + 1
    seen.add(candidate)
    return candidate


def safe_extract_zip(
    zip_path: str | os.PathLike, dest: str | os.PathLike, max_files: int = 10_000, max_bytes: int = 4 * 1024**3
) -> list[Path]:
    """Extract a zip, confining every entry to ``dest`` and enforcing limits.

    Rejects absolute paths, ``..`` components, symlinks, too many entries and
    too many bytes (checked both against the declared sizes and while writing, so a
    zip bomb stops at the limit). Nothing is written outside ``dest``.

    Returns:
        The extracted files.

    Raises:
        NecgsError: Naming the zip and the problem.
    """
    zip_path, dest = Path(zip_path), Path(dest)
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise NecgsError(f"{zip_path}: not a readable zip file ({exc})") from None
    with zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        if len(infos) > max_files:
            raise NecgsError(f"{zip_path}: {len(infos)} entries, over the limit of {max_files}")
        if sum(i.file_size for i in infos) > max_bytes:
            raise NecgsError(f"{zip_path}: declares {sum(i.file_size for i in infos) / 1e6:.0f} MB, over the limit")
        targets = [(_safe_target(zip_path, dest, info), info) for info in infos]
        written, out = 0, []
        for target, info in targets:
            written = _extract_entry(zf, zip_path, info, target, written, max_bytes)
            out.append(target)
    return out


def _extract_entry(
    zf: zipfile.ZipFile, zip_path: Path, info: zipfile.ZipInfo, target: Path, written: int, max_bytes: int
) -> int:
    """Copy one entry to ``target`` in chunks; returns the running byte count.

    A failure (damaged or encrypted entry, unsupported compression, a size that lies,
    a path clash) removes the partial file and raises :class:`NecgsError`.
    """
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(info) as src, open(target, "wb") as dst:
            while chunk := src.read(1 << 20):
                written += len(chunk)
                if written > max_bytes:
                    raise NecgsError(f"{zip_path}: expands past the limit of {max_bytes / 1e6:.0f} MB")
                dst.write(chunk)
    except NecgsError:
        target.unlink(missing_ok=True)
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError) as exc:
        if target.is_file():
            target.unlink()
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NecgsError(f"{zip_path}: entry {info.filename!r} cannot be extracted ({reason[:200]})") from None
    return written


def _safe_target(zip_path: Path, dest: Path, info: zipfile.ZipInfo) -> Path:
    name = info.filename.replace("\\", "/")
    parts = PurePosixPath(name).parts
    if name.startswith("/") or (parts and ":" in parts[0]) or ".." in parts or not parts:
        raise NecgsError(f"{zip_path}: entry {info.filename!r} points outside the archive folder")
    if (info.external_attr >> 16) & 0o170000 == 0o120000:
        raise NecgsError(f"{zip_path}: entry {info.filename!r} is a symbolic link")
    target = (dest / Path(*parts)).resolve()
    if not target.is_relative_to(dest.resolve()):
        raise NecgsError(f"{zip_path}: entry {info.filename!r} points outside the archive folder")
    return target
