"""Opening an archive for decoding, decoding its meshes, describing it, and finding shapes without surface."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from necgs.coding.codec_archive import CodecArchive, FindShared
from necgs.compression.steps import StageProgress, emit
from necgs.device import resolve_device
from necgs.errors import ConfigError, CorruptArchiveError, StopCheck, stop_if_asked
from necgs.geometry.dmc import mesh_from_volume
from necgs.io.loading import save_mesh
from necgs.io.mesh import Mesh, Transform
from necgs.model.blocks import decode_volume
from necgs.model.decoder import Decoder
from necgs.priors.installed import PriorSpec, check_prior, find_prior, find_prior_by_id
from necgs.priors.prior import Prior
from necgs.training.features import decodes_to_surface
from necgs.training.fine_tune import apply_delta
from necgs.training.train import build_decoder


class OpenedArchive(CodecArchive[Prior]):
    """A mesh-set archive opened for decoding: its layout (:class:`CodecArchive`) and the decoder it describes."""

    def decoder(self, device: str | torch.device = "cpu") -> Decoder:
        """The decoder rebuilt from its symbols (the prior's, plus the archive's delta if it holds one).

        Raises:
            CorruptArchiveError: Tensors that do not fit the described architecture.
        """
        try:
            decoder = build_decoder(self.decoder_cfg, self.weights(), device)
            return apply_delta(decoder, self.delta()) if self.has_delta else decoder
        except (ConfigError, KeyError, TypeError, ValueError) as exc:
            raise CorruptArchiveError(f"{self.reader.name}: decoder does not match its description ({exc})") from None


def prior_finder(given: PriorSpec | None) -> FindShared[Prior]:
    """How an archive's prior is found: the one ``given`` (refused when its id differs), else the installed one."""
    if given is None:
        return lambda wanted, name, archive: find_prior_by_id(wanted, name)
    return lambda wanted, name, archive: check_prior(find_prior(given), wanted, name, archive)


def open_archive(path: str | os.PathLike | bytes, prior: PriorSpec | None = None) -> OpenedArchive:
    """Open and validate an archive's header (sections are read lazily).

    Args:
        path: The archive (path or bytes).
        prior: For an archive compressed against a prior: the prior to use (name, path or
            object; refused when its id differs). By default an installed prior with the
            archive's id is looked for when the decoder is first needed.
    """
    return OpenedArchive.open(path, prior_finder(prior))


def decompress(
    archive: str | os.PathLike | bytes,
    output_dir: str | os.PathLike | None = None,
    *,
    shapes: Sequence[str] | None = None,
    fmt: str = "ply",
    device: str = "auto",
    progress: StageProgress | None = None,
    sparse: bool = True,
    prior: PriorSpec | None = None,
    cancel: StopCheck | None = None,
) -> list[Mesh]:
    """Decode meshes (original coordinates) from an archive; optionally write them.

    Args:
        archive: Path or bytes of a ``.ncgs`` file.
        output_dir: If given, each mesh is written there as ``<name>.<fmt>``.
        shapes: Names to decode (default: all). Others are not decoded.
        fmt: Output format suffix (ply, obj, off, stl, glb).
        device: "auto", "cpu" or "cuda".
        progress: Stage callback ("decode", i, n).
        sparse: Run the fine decoder levels only near the surface where that is faster
            (K >= 128 and a decoder with a coarse head, :func:`necgs.model.blocks.decode_volume`);
            ``False`` decodes every voxel.
        prior: The prior of an archive compressed against one (name, path or object);
            default: the installed prior with the archive's id.
        cancel: Asked before each shape; True stops with :class:`necgs.errors.Cancelled`.

    Returns:
        The decoded meshes, in archive order (or the order of ``shapes``).
    """
    dev = resolve_device(device)
    with open_archive(archive, prior=prior) as arc:
        indices = list(range(len(arc.shapes))) if shapes is None else [arc.index_of(n) for n in shapes]
        decoder = arc.decoder(dev)
        out = []
        for k, i in enumerate(indices):
            stop_if_asked(cancel)
            out.append(decode_shape(arc, decoder, i, dev, sparse))
            emit(progress, "decode", k + 1, len(indices))
    if output_dir is not None:
        for mesh in out:
            save_mesh(mesh, Path(output_dir) / f"{mesh.name}.{fmt.lstrip('.')}")
    return out


def decode_shape(arc: OpenedArchive, decoder: Decoder, index: int, device: torch.device, sparse: bool) -> Mesh:
    """Shape ``index`` of ``arc`` decoded to a mesh in its original coordinates."""
    record = arc.shapes[index]
    try:
        transform = Transform.from_dict(record["transform"])
        name = str(record["name"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptArchiveError(f"{arc.reader.name}: shape {index} has a malformed record ({exc})") from None
    volume = decode_volume(decoder, arc.feature(index)[None].to(device), sparse)[0].cpu()
    return mesh_from_volume(volume, name, deform=arc.deform).transformed(transform, inverse=True)


def shapes_without_surface(
    archive: str | os.PathLike | bytes, device: str = "auto", prior: PriorSpec | None = None
) -> list[str]:
    """Names of the shapes of an archive whose decoded TSDF never changes sign (no surface).

    Runs the decoder only (no marching cubes), as :func:`decompress` runs it: block-sparse where
    the decoder decodes sparse (a sparse decode with no surface falls back to the dense one, so
    the answer is the dense decode's, at an eighth of its cost at K = 128).
    """
    dev = resolve_device(device)
    empty = []
    with open_archive(archive, prior=prior) as arc:
        decoder = arc.decoder(dev)
        for i, record in enumerate(arc.shapes):
            if not decodes_to_surface(decoder, arc.feature(i).to(dev)):
                empty.append(str(record.get("name", i)))
    return empty


def describe(archive: str | os.PathLike) -> dict:
    """Header summary, bytes per section kind, ratio and per-shape costs of an archive."""
    with open_archive(archive) as arc:
        r = arc.reader
        sizes = {name: r.section_info(name).length for name in r.section_names()}
        feature_sections = [
            k for k in sizes if k.startswith(("feature.", "features.")) and not k.startswith("features.model.")
        ]
        weights_bytes = sizes.get("weights", 0) + sizes.get("delta", 0)
        model_bytes = sum(v for k, v in sizes.items() if k.startswith("features.model."))
        feature_bytes = sum(sizes[k] for k in feature_sections)
        shapes = shape_costs(arc)
        source = sum(int(s.get("source_bytes", 0)) for s in arc.shapes)
        ply = sum(int(s.get("ply_bytes", 0)) for s in arc.shapes)
        return {
            "file": str(archive),
            "version": ".".join(map(str, r.version)),
            "bytes": r.total_bytes,
            "header_bytes": r.total_bytes - weights_bytes - model_bytes - feature_bytes,
            "weights_bytes": weights_bytes,
            "feature_model_bytes": model_bytes,
            "feature_bytes": feature_bytes,
            "rate_estimate": arc.metadata.get("rate_estimate"),
            "n_shapes": len(arc.shapes),
            "decoder": arc.decoder_cfg.to_dict(),
            "decoder_parameters": decoder_parameters(arc),
            "prior": arc.prior_ref,
            "coders": {
                name: r.section_info(name).info.get("coder")
                for name in r.section_names()
                if "coder" in r.section_info(name).info
            },
            "config": arc.metadata.get("config"),
            "batches": [{"batch": b["batch"], "mode": b.get("mode")} for b in arc.metadata["batches"]],
            "ratio_files": source / r.total_bytes if source else None,
            "ratio_ply": ply / r.total_bytes if ply else None,
            "shapes": shapes,
        }


def decoder_parameters(arc: OpenedArchive) -> int:
    """How many parameters the archive's decoder has (without decoding it)."""
    if "weights" in arc.metadata:
        return int(sum(np.prod(v) for v in arc.metadata["weights"]["shapes"].values()))
    return int(sum(np.prod(p.shape) for p in Decoder(arc.decoder_cfg).parameters()))


def shape_costs(arc: OpenedArchive) -> list[dict]:
    """Per shape: name, batch, own feature bytes and mesh counts."""
    return [
        {
            "name": s["name"],
            "batch": s.get("batch", 0),
            "feature_bytes": len(arc.feature_payload(i, int(s["batch"]))),
            "n_vertices": s.get("n_vertices"),
            "n_faces": s.get("n_faces"),
        }
        for i, s in enumerate(arc.shapes)
    ]
