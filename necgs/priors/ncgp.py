"""The ``.ncgp`` prior file: writing a :class:`~necgs.priors.prior.Prior` and reading it back, verified.

File layout: the ``.ncgs`` container (:mod:`necgs.coding.archive`) with metadata ``format:
"necgs-prior"``, so a mesh-set reader refuses it and vice versa. Sections:

- ``weights``: the decoder's quantized tensors (:func:`necgs.coding.sections.weight_sections`);
- ``features.model``: the feature model archives may share (``"model": "prior"``);
- ``features``: the training shapes' quantized features, one chunk;
- ``encoder`` (prior version 2, optional): the 8-bit volume encoder that gives a new shape its
  starting feature (:class:`~necgs.model.encoder.VolumeEncoder` on a pooled volume). Priors
  without one start new shapes from the nearest training feature.

The metadata's ``card`` records what the prior was trained on (sources, shape names) and how.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

from necgs import __version__
from necgs.coding.archive import ArchiveReader, Section, write_archive
from necgs.coding.sections import read_weights, weight_sections
from necgs.coding.streams import model_from_bytes
from necgs.config import FitConfig
from necgs.errors import ConfigError, CorruptArchiveError, NecgsError
from necgs.model.decoder import DecoderConfig
from necgs.priors.prior import Prior
from necgs.training.train import build_decoder

PRIOR_FORMAT = "necgs-prior"
PRIOR_VERSION = 2
PRIOR_SUFFIX = ".ncgp"


def write_prior(path: str | os.PathLike, prior: Prior) -> int:
    """Write ``prior`` as a ``.ncgp`` file (atomically); returns its size in bytes."""
    wmeta, wsection = weight_sections(prior.weights, "auto")
    fmeta, fsection = weight_sections({"features": prior.features}, "auto", name="features")
    metadata = {
        "format": PRIOR_FORMAT,
        "prior_version": PRIOR_VERSION,
        "library_version": __version__,
        "id": prior.id,
        "name": prior.name,
        "decoder": prior.decoder_cfg.to_dict(),
        "fit": asdict(prior.fit),
        "weights": wmeta,
        "features": fmeta,
        "card": prior.card,
    }
    model = Section("features.model", prior.feature_model.to_bytes(), {"coder": prior.feature_model.coder})
    sections = [wsection, model, fsection]
    if prior.encoder is not None:
        emeta, esection = weight_sections(prior.encoder, "auto", name="encoder")
        metadata["encoder"] = {"input_resolution": prior.encoder_input, "tensors": emeta}
        sections.append(esection)
    return write_archive(path, metadata, sections)


def read_prior(path: str | os.PathLike) -> Prior:
    """Read and verify a prior file.

    Raises:
        NecgsError: Not a prior, a newer prior version, or content that does not match its id
            (every container error of :class:`~necgs.coding.archive.ArchiveReader` too).
    """
    with ArchiveReader(path) as reader:
        meta = reader.metadata
        if meta.get("format") != PRIOR_FORMAT:
            raise NecgsError(f"{path}: not a necgs prior (format {meta.get('format')!r})")
        if int(meta.get("prior_version", 0)) > PRIOR_VERSION:
            raise NecgsError(f"{path}: prior version {meta.get('prior_version')} is newer than this necgs reads")
        try:
            cfg = DecoderConfig.from_dict(meta["decoder"])
            weights = read_weights(reader, meta["weights"])
            features = read_weights(reader, meta["features"], name="features")["features"]
            model, _ = model_from_bytes(reader.read_section("features.model"))
            fit = FitConfig(**{"thin_voxels": 0.0, **meta["fit"]}).validate()  # files before the setting
            prior = Prior(str(meta["name"]), cfg, weights, features, model, fit, dict(meta.get("card", {})), Path(path))
            if "encoder" in meta:
                prior.encoder = read_weights(reader, meta["encoder"]["tensors"], name="encoder")
                prior.encoder_input = meta["encoder"]["input_resolution"]
        except (KeyError, TypeError, ValueError, ConfigError) as exc:
            raise CorruptArchiveError(f"{path}: malformed prior ({type(exc).__name__}: {exc})") from None
        if prior.id != meta.get("id"):
            raise CorruptArchiveError(f"{path}: prior content does not match its id {meta.get('id')!r}")
        build_decoder(cfg, weights)  # the tensors fit the architecture
        try:
            prior.volume_encoder()
        except ConfigError as exc:
            raise CorruptArchiveError(f"{path}: {exc}") from None
        return prior
