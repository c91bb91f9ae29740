"""Uploaded meshes and zips, staged in the session's folder and loaded, every unusable file named."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from necgs.errors import NecgsError
from necgs.io.loading import MESH_SUFFIXES, LoadedSet, load_meshes, safe_extract_zip
from necgs.webapp.messages import scrub_paths

#: The data set control's entry for an upload.
UPLOAD_LABEL = "(my upload)"
#: Limits of one upload (files, and bytes before unpacking), checked before anything is written.
MAX_UPLOAD_FILES = 200
MAX_UPLOAD_BYTES = 200 * 1024**2


class UploadError(NecgsError):
    """An upload that cannot be used.

    Attributes:
        title: What went wrong.
        details: One line per file: its name and why it was not used.
    """

    def __init__(self, title: str, details: list[str] | None = None) -> None:
        self.title, self.details = title, list(details or [])
        super().__init__(title + (": " + "; ".join(self.details) if self.details else ""))


def stage_upload(files: list[str] | None, dest: Path) -> tuple[Path, list[str]]:
    """Copy uploaded mesh files / zips into ``dest/upload``; returns the folder and notes.

    Zip entries stay inside the folder; non-mesh files are reported and skipped; size and
    count limits apply before anything is written.

    Raises:
        UploadError: Nothing uploaded, over the limits, or a zip entry pointing outside.
    """
    if not files:
        raise UploadError("no files uploaded")
    if len(files) > MAX_UPLOAD_FILES:
        raise UploadError(f"{len(files)} files uploaded, the limit is {MAX_UPLOAD_FILES}")
    total = sum(Path(f).stat().st_size for f in files)
    if total > MAX_UPLOAD_BYTES:
        raise UploadError(f"upload of {total / 1e6:.0f} MB exceeds the {MAX_UPLOAD_BYTES / 1e6:.0f} MB limit")
    folder = dest / "upload"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    notes = []
    for f in files:
        p = Path(f)
        if p.suffix.lower() == ".zip":
            try:
                extracted = safe_extract_zip(p, folder / p.stem, max_files=MAX_UPLOAD_FILES, max_bytes=MAX_UPLOAD_BYTES)
            except NecgsError as exc:
                raise UploadError("the zip could not be unpacked", [f"{p.name}: {scrub_paths(exc)}"]) from None
            notes += [f"skipped {e.name}: not a mesh file" for e in extracted if e.suffix.lower() not in MESH_SUFFIXES]
        elif p.suffix.lower() in MESH_SUFFIXES:
            shutil.copy(p, folder / re.sub(r"[^A-Za-z0-9._-]", "_", p.name))
        else:
            notes.append(f"skipped {p.name}: not a mesh file (use {', '.join(sorted(MESH_SUFFIXES))} or a zip)")
    return folder, notes


def load_upload(files: list[str] | None, dest: Path) -> tuple[LoadedSet, list[str]]:
    """Stage and load an upload; every unusable file becomes a note naming it and why.

    Raises:
        UploadError: No usable mesh at all (the message names each file and its reason).
    """
    folder, notes = stage_upload(files, dest)
    loaded = load_meshes(folder)
    for failure in loaded.failures:
        notes.append(f"skipped {_relative(failure.source, folder)}: {scrub_paths(failure.reason)}")
    if not loaded.meshes:
        raise UploadError("no usable mesh in the upload", notes or ["the upload holds no mesh file"])
    return loaded, notes


def _relative(source: str, folder: Path) -> str:
    try:
        return str(Path(source).relative_to(folder))
    except ValueError:
        return Path(source).name
