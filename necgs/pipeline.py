"""Compress, decompress, inspect and grow ``.ncgs`` archives: the glue of the stages.

Archive contents of format 1.2 (see :mod:`necgs.coding.archive` for the container):

- metadata: format name and version, the :class:`~necgs.config.NecgsConfig`, the decoder
  architecture, the quantization grid of every decoder tensor and of the features, the
  batches (initial and each ``add``), and the rate the training estimated.
- section ``shapes``: one compact binary record per shape (:mod:`necgs.coding.shape_table`).
- section ``weights``: the decoder symbols, one chunk (model + payload) per tensor, or one
  chunk for all when one shared model is smaller (:mod:`necgs.coding.streams`).
- section ``features.model.<batch>``: the model shared by one batch's features (a Laplace
  per channel, or a categorical model, whichever is smaller).
- section ``features.<batch>``: varint byte lengths of the batch's shapes, then each
  shape's feature stream; one shape decodes from the weights, its batch's model and its
  own bytes.

Formats 1.0 and 1.1 (JSON shape records, one ``weights`` stream, a ``feature.<i>``
section per shape) are still read, and grown in their own layout.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from necgs import __version__
from necgs.coding.archive import MINOR, ArchiveReader, Section, write_archive
from necgs.coding.entropy import _get_varints, encode_with_model, shared_model
from necgs.coding.rate_model import codec_estimate_bytes
from necgs.coding.sections import feature_sections, read_weights, weight_sections
from necgs.coding.shape_table import pack_shapes, unpack_shapes
from necgs.coding.streams import (
    decode_stream,
    model_from_bytes,
)
from necgs.config import PRESETS, NecgsConfig, PriorFitConfig
from necgs.errors import ConfigError, CorruptArchiveError, NecgsError
from necgs.geometry.dmc import mesh_from_volume
from necgs.geometry.fit import FittedSet, fit_volumes, resolve_device
from necgs.io.loading import LoadedSet, load_meshes, save_mesh
from necgs.io.mesh import Mesh, Transform
from necgs.model.blocks import decode_volume
from necgs.model.decoder import Decoder, DecoderConfig
from necgs.model.quant import QuantSpec
from necgs.paths import cache_dir
from necgs.prior import Prior, check_prior, find_prior, find_prior_by_id, list_priors, start_features
from necgs.rate import binary_ply_bytes
from necgs.training.fine_tune import apply_delta, fine_tune_decoder
from necgs.training.train import (
    QuantizedTensor,
    TrainedCodec,
    band_errors,
    build_decoder,
    fit_features,
    has_surface,
    repair_empty_shapes,
    train_autodecoder,
)

if TYPE_CHECKING:
    from necgs.rate_control import RatePlan

FORMAT = "necgs"
#: Median band error (mean |TSDF error| where |TSDF| < 1) above which a prior is said to fit badly,
#: whatever its own: shapes it fits well measure 0.05-0.09 (body prior on its training shapes).
BAND_ERROR_LIMIT = 0.2
#: Minor version of archives that name a prior instead of holding a decoder (others stay 1.2).
PRIOR_MINOR = 3
#: Minor version of archives that hold a fine-tuned delta of their prior's decoder.
DELTA_MINOR = 4
#: progress(stage, done, total, detail) — stages: fit, train, code, decode.
StageProgress = Callable[[str, int, int, str], None]


@dataclass
class CompressResult:
    """What :func:`compress` produced.

    Attributes:
        path: The archive.
        bytes: Its size (the whole file).
        names: Shape names, in archive order.
        failures: Input files that could not be used, one line each.
        seconds: Wall time per stage ("fit", "train", "code", "check": the empty-surface check).
        resumed_from_epoch: Training resumed from this checkpointed epoch (0: fresh).
        empty_shapes: Shapes whose decoded TSDF has no zero crossing, so they decode to no
            surface (a collapsed or undertrained decoder); the archive is still written.
        ratio_ply: The meshes as binary PLY over the archive (what rate control targets).
        rate_plan: The setting rate control chose, when a target was given.
        prior: Name and id of the prior the archive needs, if compressed against one.
        notes: What the user should know about the result (prior choice, domain warnings).
    """

    path: Path
    bytes: int
    names: list[str]
    failures: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    resumed_from_epoch: int = 0
    empty_shapes: list[str] = field(default_factory=list)
    ratio_ply: float | None = None
    rate_plan: RatePlan | None = None
    prior: dict | None = None
    notes: list[str] = field(default_factory=list)


def _as_loaded(source) -> LoadedSet:
    if isinstance(source, LoadedSet):
        return source
    if isinstance(source, (list, tuple)) and source and isinstance(source[0], Mesh):
        return LoadedSet(list(source), [], [Path(m.name) for m in source], [binary_ply_bytes(m) for m in source])
    if isinstance(source, (str, os.PathLike)):
        from necgs.io.datasets import resolve_dataset

        source = resolve_dataset(source)
    return load_meshes(source)


def _emit(progress: StageProgress | None, stage: str, done: int, total: int, detail: str = "") -> None:
    if progress is not None:
        progress(stage, done, total, detail)


def compress(
    source,
    output: str | os.PathLike,
    config: NecgsConfig | None = None,
    *,
    progress: StageProgress | None = None,
    cancel: Callable[[], bool] | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    target_ratio: float | None = None,
    target_bytes: int | None = None,
    prior: str | os.PathLike | Prior | None = None,
    prior_fit: PriorFitConfig | None = None,
) -> CompressResult:
    """Compress a set of meshes into one ``.ncgs`` archive.

    Args:
        source: A folder, zip, file, list of files, list of :class:`Mesh`, or a LoadedSet.
        output: The archive path (written atomically).
        config: Settings (default: the ``quick`` preset).
        progress: Stage callback; ``None`` shows tqdm bars.
        cancel: Polled during training; True stops with KeyboardInterrupt.
        checkpoint_dir: Training checkpoints (default: a cache folder keyed by the run),
            so an interrupted run resumes.
        target_ratio: Rate control: wanted ratio of the meshes as binary PLY to the archive;
            the width, bits and lambda_R of ``config`` are replaced by a measured table's
            choice (:mod:`necgs.rate_control`).
        target_bytes: Rate control: wanted archive size (exclusive with ``target_ratio``).
        prior: Compress against a pretrained decoder (:mod:`necgs.prior`): a name, a path,
            a :class:`Prior`, or "auto" (the best installed prior or no prior, whichever
            decodes better; ``notes`` says which). Only the features are fitted and stored.
        prior_fit: How shapes are fitted against the prior (default :class:`PriorFitConfig`).

    Returns:
        The :class:`CompressResult`.
    """
    cfg = (config or PRESETS["quick"]).validate()
    loaded = _as_loaded(source)
    if not loaded.meshes:
        reasons = "; ".join(str(f) for f in loaded.failures[:3])
        raise NecgsError(f"{source}: no usable mesh" + (f" ({reasons})" if reasons else ""))
    if prior is not None and (target_ratio is not None or target_bytes is not None):
        raise ConfigError("a target ratio or size cannot be combined with a prior (the prior fixes the decoder)")
    if prior is not None and str(prior) == "auto":
        return _compress_auto(loaded, output, cfg, prior_fit, progress, cancel, checkpoint_dir)
    if prior is not None:
        return compress_with_prior(loaded, output, find_prior(prior), prior_fit, cfg, progress)
    plan = None
    if target_ratio is not None or target_bytes is not None:
        from necgs.rate_control import plan_rate

        plan = plan_rate(cfg, loaded.meshes, target_ratio=target_ratio, target_bytes=target_bytes)
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    fit_cb = (lambda d, n: _emit(progress, "fit", d, n)) if progress else True
    fitted = fit_volumes(loaded.meshes, cfg.fit, progress=fit_cb)
    seconds["fit"] = time.perf_counter() - t
    ckpt = Path(checkpoint_dir) if checkpoint_dir else cache_dir("checkpoints", Path(output).stem)
    run = _TrainRun(loaded, fitted, ckpt, progress, cancel, seconds)
    size, resumed, notes = run.write(plan.config if plan else cfg, output)
    if plan is not None:
        plan, size, notes = run.second_pass(cfg, plan, size, notes, output)
    t = time.perf_counter()
    final_cfg = plan.config if plan else cfg
    empty = shapes_without_surface(output, device=final_cfg.train.device)
    seconds["check"] = time.perf_counter() - t
    ply = sum(binary_ply_bytes(m) for m in loaded.meshes)
    return CompressResult(
        Path(output),
        size,
        [m.name for m in loaded.meshes],
        [str(f) for f in loaded.failures],
        seconds,
        resumed,
        empty,
        ply / size,
        plan,
        notes=notes,
    )


@dataclass
class _TrainRun:
    """Training and coding of one fitted set, once or (rate control's second pass) twice."""

    loaded: LoadedSet
    fitted: FittedSet
    checkpoint_dir: Path
    progress: StageProgress | None
    cancel: Callable[[], bool] | None
    seconds: dict[str, float]

    def write(self, cfg: NecgsConfig, output: str | os.PathLike) -> tuple[int, int, list[str]]:
        """Train with ``cfg`` and write the archive; returns (bytes, resumed epoch, notes)."""
        t = time.perf_counter()
        train_cb = (
            (lambda e, n, loss, eta: _emit(self.progress, "train", e, n, f"loss {loss:.4f}, ETA {eta:.0f} s"))
            if self.progress
            else True
        )
        codec = train_autodecoder(
            self.fitted.volumes,
            cfg.decoder(),
            cfg.train,
            checkpoint_dir=self.checkpoint_dir,
            progress=train_cb,
            cancel=self.cancel,
            autoencoder=cfg.autoencoder,
        )
        notes = []
        if not cfg.autoencoder:
            codec, repaired = repair_empty_shapes(codec, self.fitted.volumes, cfg.train)
            if repaired:
                names = [self.loaded.meshes[i].name for i in repaired]
                notes.append(
                    f"refitted the features of {len(repaired)} shapes that decoded to no surface: "
                    + ", ".join(names[:5])
                    + (", ..." if len(names) > 5 else "")
                )
        self.seconds["train"] = self.seconds.get("train", 0.0) + time.perf_counter() - t
        t = time.perf_counter()
        _emit(self.progress, "code", 0, 1)
        shapes = [
            _shape_record(m, tr, b, batch=0)
            for m, tr, b in zip(self.loaded.meshes, self.fitted.transforms, self.loaded.source_bytes)
        ]
        size = write_codec_archive(output, cfg, codec, shapes)
        self.seconds["code"] = self.seconds.get("code", 0.0) + time.perf_counter() - t
        _emit(self.progress, "code", 1, 1)
        return size, codec.resumed_from, notes

    def second_pass(
        self, base: NecgsConfig, plan: RatePlan, size: int, notes: list[str], output: str | os.PathLike
    ) -> tuple[RatePlan, int, list[str]]:
        """Rate control's short search: if the archive missed its target, train the setting
        :func:`~necgs.rate_control.replan` names and keep whichever archive lands nearer.

        Args:
            base: The configuration rate control started from.
            plan: The first plan; its archive of ``size`` bytes is at ``output``.
            size: The first archive's bytes.
            notes: The first archive's notes.
            output: The archive path.

        Returns:
            (the plan of the archive kept at ``output``, its bytes, its notes).
        """
        from necgs.rate_control import replan

        second = replan(plan, size, base, self.loaded.meshes)
        if second is None:
            return plan, size, notes
        ply = plan.ply_bytes
        trial = Path(output).with_name(Path(output).name + ".second-pass")
        try:
            trial_size, _, trial_notes = self.write(second.config, trial)
            first = f"ratio {ply / size:.1f} with width {plan.point.width} at {plan.point.bits} bits"
            if second.miss(trial_size) < plan.miss(size):
                os.replace(trial, output)
                note = f"rate control: the first setting missed the target ({first}); trained a second one"
                return second, trial_size, [*trial_notes, note]
        finally:
            trial.unlink(missing_ok=True)
        note = (
            f"rate control: the first setting missed the target ({first}); a second one "
            f"(width {second.point.width} at {second.point.bits} bits) landed farther, ratio {ply / trial_size:.1f}, "
            "so the first archive was kept"
        )
        return plan, size, [*notes, note]


def shapes_without_surface(
    archive: str | os.PathLike | bytes, device: str = "auto", prior: str | os.PathLike | Prior | None = None
) -> list[str]:
    """Names of the shapes of an archive whose decoded TSDF never changes sign (no surface).

    Runs the decoder only (no marching cubes): one forward pass per shape.
    """
    dev = resolve_device(device)
    empty = []
    with open_archive(archive, prior=prior) as arc:
        decoder = arc.decoder(dev)
        for i, record in enumerate(arc.shapes):
            with torch.no_grad():
                tsdf = decoder(arc.feature(i)[None].to(dev))[0, 0]
            if not has_surface(tsdf):
                empty.append(str(record.get("name", i)))
    return empty


# ---------------------------------------------------------------------------- priors
def compress_with_prior(
    source,
    output: str | os.PathLike,
    prior: Prior,
    fit: PriorFitConfig | None = None,
    config: NecgsConfig | None = None,
    progress: StageProgress | None = None,
) -> CompressResult:
    """Compress meshes against a frozen prior: their features (and optionally a decoder delta) are stored.

    With ``fit.fine_tune_steps`` the prior's weights are fine-tuned on the shapes after the
    features are fitted, and the archive stores the coded change (:mod:`necgs.training.fine_tune`).

    Args:
        source: Meshes (anything :func:`compress` takes; one mesh is fine).
        output: The archive path.
        prior: The pretrained decoder.
        fit: Fitting budget (default :class:`PriorFitConfig`).
        config: Only its device and coder are used.
        progress: Stage callback.

    Returns:
        The :class:`CompressResult`; ``notes`` warns when the prior fits the shapes badly: their
        median band error is over twice the prior's own or over :data:`BAND_ERROR_LIMIT`, or a
        shape decodes to no surface.
    """
    loaded = _as_loaded(source)
    if not loaded.meshes:
        raise NecgsError(f"{source}: no usable mesh")
    fit = fit or PriorFitConfig()
    device = (config or PRESETS["quick"]).train.device
    coder = (config or PRESETS["quick"]).coder
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    fcfg = fit.fit(prior, device)
    fit_cb = (lambda d, n: _emit(progress, "fit", d, n)) if progress else True
    fitted = fit_volumes(loaded.meshes, fcfg, progress=fit_cb)
    seconds["fit"] = time.perf_counter() - t
    t = time.perf_counter()
    tcfg = fit.train(prior, device)
    codec = prior.codec()
    decoder = codec.decoder()
    units = tcfg.epochs + fit.fine_tune_steps  # the train stage: feature visits, then fine-tuning steps
    features = fit_features(
        codec,
        fitted.volumes,
        tcfg,
        progress=(lambda e, n, loss, eta: _emit(progress, "train", e, units, f"loss {loss:.4f}"))
        if progress
        else False,
        init=start_features(prior, fitted.volumes, decoder),
    )
    delta = None
    if fit.fine_tune_steps:
        delta, features = fine_tune_decoder(
            codec,
            fitted.volumes,
            features,
            replace(tcfg, blocks_per_shape=fit.fine_tune_blocks, band_fraction=fit.fine_tune_band_fraction),
            fit.fine_tune_steps,
            fit.fine_tune_lr,
            fit.delta_multiple,
            fit.delta_bits,
            progress=(
                (lambda k, n, loss: _emit(progress, "train", tcfg.epochs + k, units, f"fine-tune loss {loss:.4f}"))
                if progress
                else None
            ),
            cosine=fit.fine_tune_cosine,
            lambda_rate=fit.fine_tune_lambda_rate,
        )
        decoder = apply_delta(decoder, delta)
    seconds["train"] = time.perf_counter() - t
    t = time.perf_counter()
    shapes = [
        _shape_record(m, tr, b, batch=0) for m, tr, b in zip(loaded.meshes, fitted.transforms, loaded.source_bytes)
    ]
    size = write_prior_archive(output, prior, features, shapes, seconds["train"], coder, delta)
    seconds["code"] = time.perf_counter() - t
    t = time.perf_counter()
    errors, empty_at = band_errors(decoder, features.value(), fitted.volumes)
    empty = [loaded.meshes[i].name for i in empty_at]
    seconds["check"] = time.perf_counter() - t
    note = prior_fit_note(prior, errors, len(empty))
    notes = [note] if note else []
    ply = sum(binary_ply_bytes(m) for m in loaded.meshes)
    return CompressResult(
        Path(output),
        size,
        [m.name for m in loaded.meshes],
        [str(f) for f in loaded.failures],
        seconds,
        0,
        empty,
        ply / size,
        None,
        {"name": prior.name, "id": prior.id},
        notes,
    )


def prior_fit_note(prior: Prior, errors: np.ndarray, n_empty: int) -> str | None:
    """A warning when ``prior`` fits new shapes badly, else None.

    Badly: their median band error is over twice the prior's own median, or over
    :data:`BAND_ERROR_LIMIT` whatever the prior's own, or a shape decodes to no surface.

    Args:
        prior: The prior.
        errors: (M,) band errors of the new shapes (:func:`necgs.training.train.band_errors`).
        n_empty: How many of them decode to no surface.
    """
    reference = float(prior.card.get("band_error_median") or BAND_ERROR_LIMIT)
    median = float(np.median(errors)) if len(errors) else 0.0
    if median <= min(2 * reference, BAND_ERROR_LIMIT) and not n_empty:
        return None
    return (
        f"prior {prior.name!r} fits these shapes badly (median band error {median:.3f}, {reference:.3f} on its "
        f"training shapes; {n_empty} without surface): a decoder trained on the set may do better; "
        f"try --prior auto or no prior"
    )


def write_prior_archive(
    output,
    prior: Prior,
    features: QuantizedTensor,
    shapes: list[dict],
    seconds: float,
    coder: str = "auto",
    delta: dict[str, QuantizedTensor] | None = None,
) -> int:
    """Write an archive that names ``prior`` by id instead of holding a decoder.

    Without ``delta`` it is format 1.3 and names the prior under ``"prior"``. With a decoder
    delta it is format 1.4: the prior is named under ``"prior_delta"`` (with the delta's
    description) and the delta is section ``delta``, so a 1.3 reader finds neither a prior
    nor a decoder and refuses the file instead of decoding it with the bare prior.

    The settings stored are only what decoding needs (deformation on, the coder); fitting more
    shapes (``add``) takes the prior's frame and :class:`PriorFitConfig`.
    """
    fmeta, fsections = feature_sections(features, 0, coder, shared=prior.feature_model)
    ref = {"id": prior.id, "name": prior.name}
    sections = [Section("shapes", pack_shapes(shapes)), *fsections]
    if delta is not None:
        dmeta, dsection = weight_sections(delta, coder, name="delta")
        sections.append(dsection)
    metadata = {
        "format": FORMAT,
        "library_version": __version__,
        "config": {"deform": True, "coder": coder},
        "decoder": prior.decoder_cfg.to_dict(),
        **({"prior": ref} if delta is None else {"prior_delta": {**ref, "delta": dmeta}}),
        "batches": [{"batch": 0, "mode": "prior", "features": fmeta}],
        "train_seconds": round(seconds, 3),
    }
    return write_archive(output, metadata, sections, PRIOR_MINOR if delta is None else DELTA_MINOR)


def decoded_cd(archive: str | os.PathLike, meshes: Sequence[Mesh], prior: Prior | None = None) -> float:
    """Median Chamfer distance of an archive's decoded shapes to ``meshes`` (same order)."""
    from necgs.metrics import compare_meshes

    decoded = decompress(archive, prior=prior, device="cpu")
    return float(np.median([compare_meshes(d, m, 20_000).cd for d, m in zip(decoded, meshes)]))


def _compress_auto(
    loaded: LoadedSet,
    output,
    cfg: NecgsConfig,
    fit: PriorFitConfig | None,
    progress: StageProgress | None,
    cancel: Callable[[], bool] | None,
    checkpoint_dir,
) -> CompressResult:
    """``--prior auto``: every installed prior and a set-trained decoder; keep the better.

    Better is the lower median Chamfer distance of the decoded shapes; when a prior archive is
    within 10% of the set-trained one it is kept, since it is the smaller. The choice and both
    numbers are in the result's ``notes``.
    """
    import shutil
    import tempfile

    out = Path(output)
    with tempfile.TemporaryDirectory(dir=out.parent if out.parent.exists() else None) as tmp:
        best = None
        for info in list_priors():
            candidate = find_prior(info["file"])
            path = Path(tmp) / f"prior-{candidate.id}.ncgs"
            result = compress_with_prior(loaded, path, candidate, fit, cfg, progress)
            score = decoded_cd(path, loaded.meshes, candidate)
            if best is None or score < best[0]:
                best = (score, result, path)
        own_path = Path(tmp) / "set.ncgs"
        own = compress(loaded, own_path, cfg, progress=progress, cancel=cancel, checkpoint_dir=checkpoint_dir)
        own_score = decoded_cd(own_path, loaded.meshes)
        if best is not None and best[0] <= 1.1 * own_score:
            score, chosen, path = best
            why = f"picked prior {chosen.prior['name']!r}: median CD {score:.3e} vs {own_score:.3e} set-trained"
        else:
            score, chosen, path = own_score, own, own_path
            why = "picked a set-trained decoder: " + (
                f"median CD {own_score:.3e} vs {best[0]:.3e} with prior {best[1].prior['name']!r}"
                if best is not None
                else "no prior is installed"
            )
        shutil.move(str(path), out)
    chosen.path = out
    chosen.notes = [why] + [n for n in chosen.notes if "fits these shapes badly" not in n]
    return chosen


def _shape_record(mesh: Mesh, transform: Transform, source_bytes: int, batch: int) -> dict:
    return {
        "name": mesh.name,
        "transform": transform.to_dict(),
        "n_vertices": mesh.n_vertices,
        "n_faces": mesh.n_faces,
        "source_bytes": int(source_bytes),
        "ply_bytes": binary_ply_bytes(mesh),
        "batch": batch,
    }


def _legacy_feature_sections(
    features: QuantizedTensor, first_index: int, batch: int, coder: str
) -> tuple[dict, list[Section]]:
    """Format 1.1 feature sections (one per shape), used when growing a 1.0/1.1 archive."""
    per_shape = int(np.prod(features.shape[1:]))
    streams = list(features.symbols.reshape(features.shape[0], per_shape))
    model = shared_model(streams, coder if coder in ("rans", "huffman", "raw") else "auto")
    sections = [Section(f"features.model.{batch}", model.to_bytes(), {"coder": model.coder})]
    for k, stream in enumerate(streams):
        sections.append(
            Section(
                f"feature.{first_index + k}", encode_with_model(stream, model), {"batch": batch, "count": per_shape}
            )
        )
    meta = {"spec": features.spec.to_dict(), "shape": list(features.shape[1:])}
    return meta, sections


def _rate_estimate(codec: TrainedCodec) -> dict[str, float]:
    """The training rate term's estimate of the payload bytes, reported beside the real ones."""
    f = codec.features
    return codec_estimate_bytes(
        {n: (q.symbols, q.spec) for n, q in codec.weights.items()},
        f.symbols.reshape(f.shape[0], f.shape[1], -1),
        f.spec,
    )


def write_codec_archive(output, cfg: NecgsConfig, codec: TrainedCodec, shapes: list[dict]) -> int:
    """Entropy-code a trained codec and write a format 1.2 archive; returns its size."""
    wmeta, wsection = weight_sections(codec.weights, cfg.coder)
    fmeta, fsections = feature_sections(codec.features, 0, cfg.coder)
    metadata = {
        "format": FORMAT,
        "library_version": __version__,
        "config": cfg.to_dict(),
        "decoder": codec.decoder_cfg.to_dict(),
        "weights": wmeta,
        "batches": [{"batch": 0, "mode": "initial", "features": fmeta}],
        "train_seconds": round(codec.seconds, 3),
        "rate_estimate": _rate_estimate(codec),
    }
    return write_archive(output, metadata, [Section("shapes", pack_shapes(shapes)), wsection, *fsections])


# ---------------------------------------------------------------------------- reading
@dataclass
class OpenedArchive:
    """An archive's parsed header with lazy access to its decoder and features.

    Attributes:
        reader: The container.
        decoder_cfg: Decoder architecture.
        shapes: One record per shape (name, transform, counts, batch), whatever the format.
        deform: Whether the volumes carry the deformation channels.
    """

    reader: ArchiveReader
    decoder_cfg: DecoderConfig
    shapes: list[dict]
    deform: bool
    prior_given: str | os.PathLike | Prior | None = None
    _batches: dict = field(default_factory=dict, repr=False)
    _prior: Prior | None = field(default=None, repr=False)

    @property
    def metadata(self) -> dict:
        """The raw JSON metadata."""
        return self.reader.metadata

    @property
    def compact(self) -> bool:
        """True for the 1.2 layout (shape table, a feature section per batch, chunked weights)."""
        return "shapes" in self.reader.section_names()

    @property
    def prior_ref(self) -> dict | None:
        """``{"id", "name"}`` of the prior this archive was compressed against, if any."""
        ref = self.metadata.get("prior") or self.metadata.get("prior_delta")
        if ref is None:
            return None
        if not isinstance(ref, dict):
            raise CorruptArchiveError(f"{self.reader.name}: malformed prior reference")
        return {"id": ref.get("id"), "name": ref.get("name")}

    @property
    def has_delta(self) -> bool:
        """Whether the archive holds a fine-tuned delta of its prior's decoder (format 1.4)."""
        return "prior_delta" in self.metadata

    def delta(self) -> dict[str, QuantizedTensor]:
        """The decoder delta's quantized tensors (section ``delta``)."""
        return read_weights(self.reader, self.metadata["prior_delta"]["delta"], True, name="delta")

    def prior(self) -> Prior | None:
        """The prior the archive needs: the one given (checked by id) or an installed one."""
        ref = self.prior_ref
        if ref is None:
            return None
        if self._prior is None:
            wanted, name = str(ref.get("id")), str(ref.get("name"))
            if self.prior_given is not None:
                self._prior = check_prior(find_prior(self.prior_given), wanted, name, self.reader.name)
            else:
                self._prior = find_prior_by_id(wanted, name)
            if self._prior.decoder_cfg.to_dict() != self.decoder_cfg.to_dict():
                raise CorruptArchiveError(f"{self.reader.name}: decoder description differs from its prior's")
        return self._prior

    def weights(self) -> dict[str, QuantizedTensor]:
        """Decode the decoder's quantized parameters (from the prior for an archive that names one)."""
        prior = self.prior()
        if prior is not None:
            return prior.weights
        return read_weights(self.reader, self.metadata["weights"], self.compact)

    def decoder(self, device="cpu") -> Decoder:
        """The decoder rebuilt from its symbols."""
        try:
            decoder = build_decoder(self.decoder_cfg, self.weights(), device)
            return apply_delta(decoder, self.delta()) if self.has_delta else decoder
        except (ConfigError, KeyError, TypeError, ValueError) as exc:
            raise CorruptArchiveError(f"{self.reader.name}: decoder does not match its description ({exc})") from None

    def feature(self, index: int) -> torch.Tensor:
        """Dequantized feature (C, K', K', K') of shape ``index``."""
        bmeta = self._batch(int(self.shapes[index]["batch"]))["features"]
        return QuantizedTensor(
            self.feature_symbols(index), QuantSpec.from_dict(bmeta["spec"]), tuple(int(x) for x in bmeta["shape"])
        ).value()

    def feature_symbols(self, index: int) -> np.ndarray:
        """Feature symbols of a shape, (C * K'^3,) int64, checked against their grid."""
        batch = int(self.shapes[index]["batch"])
        bmeta = self._batch(batch)["features"]
        count = int(np.prod([int(x) for x in bmeta["shape"]]))
        model, payload = self._feature_stream(index, batch)
        symbols = decode_stream(payload, model, count)
        if symbols.size and symbols.max() >= QuantSpec.from_dict(bmeta["spec"]).levels:
            raise CorruptArchiveError(f"{self.reader.name}: feature {index} holds symbols outside its grid")
        return symbols

    def _feature_stream(self, index: int, batch: int):
        """The model and payload bytes of shape ``index`` (in batch ``batch``)."""
        if self._batch(batch)["features"].get("model") == "prior":
            prior = self.prior()
            if prior is None:
                raise CorruptArchiveError(f"{self.reader.name}: batch {batch} uses a prior's model but names no prior")
            model = prior.feature_model
        else:
            model, _ = model_from_bytes(self.reader.read_section(f"features.model.{batch}"))
        return model, self.feature_payload(index, batch)

    def feature_payload(self, index: int, batch: int) -> bytes:
        """The coded feature bytes of shape ``index`` (in batch ``batch``), without its model."""
        if not self.compact:
            return self.reader.read_section(f"feature.{index}")
        if batch not in self._batches:
            self._batches[batch] = self._split_batch(batch)
        members = [i for i, s in enumerate(self.shapes) if int(s["batch"]) == batch]
        return self._batches[batch][members.index(index)]

    def _split_batch(self, batch: int) -> list[bytes]:
        """The per-shape payloads of section ``features.<batch>``."""
        data = self.reader.read_section(f"features.{batch}")
        members = sum(1 for s in self.shapes if int(s["batch"]) == batch)
        if members > len(data) + 1:
            raise CorruptArchiveError(f"{self.reader.name}: features of batch {batch} are truncated")
        lengths, pos = _get_varints(data, members, 0)
        ends = pos + np.cumsum(lengths)
        if members and ends[-1] != len(data):
            raise CorruptArchiveError(f"{self.reader.name}: features of batch {batch} do not match their lengths")
        starts = np.concatenate([[pos], ends[:-1]]).astype(np.int64)
        return [data[a:b] for a, b in zip(starts.tolist(), ends.tolist())]

    def _batch(self, batch: int) -> dict:
        for b in self.metadata["batches"]:
            if int(b["batch"]) == batch:
                return b
        raise CorruptArchiveError(f"{self.reader.name}: unknown batch {batch}")

    def index_of(self, name: str) -> int:
        """Index of a shape by name."""
        for i, s in enumerate(self.shapes):
            if s["name"] == name:
                return i
        raise NecgsError(f"{self.reader.name}: no shape named {name!r}")

    def close(self) -> None:
        """Close the file."""
        self.reader.close()

    def __enter__(self) -> OpenedArchive:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_archive(path: str | os.PathLike | bytes, prior: str | os.PathLike | Prior | None = None) -> OpenedArchive:
    """Open and validate an archive's header (sections are read lazily).

    Args:
        path: The archive (path or bytes).
        prior: For an archive compressed against a prior: the prior to use (name, path or
            object; refused when its id differs). By default an installed prior with the
            archive's id is looked for when the decoder is first needed.
    """
    reader = ArchiveReader(path)
    try:
        meta = reader.metadata
        if meta.get("format") != FORMAT:
            raise CorruptArchiveError(f"{reader.name}: not a necgs mesh-set archive")
        decoder_cfg = DecoderConfig.from_dict(meta["decoder"])
        shapes = unpack_shapes(reader.read_section("shapes")) if "shapes" in reader.section_names() else meta["shapes"]
        if not isinstance(shapes, list) or not all(isinstance(s, dict) for s in shapes):
            raise CorruptArchiveError(f"{reader.name}: malformed shape table")
        deform = bool(meta["config"].get("deform", True))
        return OpenedArchive(reader, decoder_cfg, shapes, deform, prior)
    except (KeyError, TypeError, ValueError, ConfigError, AttributeError) as exc:
        reader.close()
        raise CorruptArchiveError(f"{reader.name}: malformed metadata ({type(exc).__name__}: {exc})") from None
    except Exception:
        reader.close()
        raise


def decompress(
    archive: str | os.PathLike | bytes,
    output_dir: str | os.PathLike | None = None,
    *,
    shapes: Sequence[str] | None = None,
    fmt: str = "ply",
    device: str = "auto",
    progress: StageProgress | None = None,
    sparse: bool = True,
    prior: str | os.PathLike | Prior | None = None,
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

    Returns:
        The decoded meshes, in archive order (or the order of ``shapes``).
    """
    dev = resolve_device(device)
    with open_archive(archive, prior=prior) as arc:
        indices = list(range(len(arc.shapes))) if shapes is None else [arc.index_of(n) for n in shapes]
        decoder = arc.decoder(dev)
        out = []
        for k, i in enumerate(indices):
            out.append(_decode_shape(arc, decoder, i, dev, sparse))
            _emit(progress, "decode", k + 1, len(indices))
    if output_dir is not None:
        for mesh in out:
            save_mesh(mesh, Path(output_dir) / f"{mesh.name}.{fmt.lstrip('.')}")
    return out


def _decode_shape(arc: OpenedArchive, decoder: Decoder, index: int, device, sparse: bool) -> Mesh:
    record = arc.shapes[index]
    try:
        transform = Transform.from_dict(record["transform"])
        name = str(record["name"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptArchiveError(f"{arc.reader.name}: shape {index} has a malformed record ({exc})") from None
    volume = decode_volume(decoder, arc.feature(index)[None].to(device), sparse)[0].cpu()
    return mesh_from_volume(volume, name, deform=arc.deform).transformed(transform, inverse=True)


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
        shapes = []
        for i, s in enumerate(arc.shapes):
            own = len(arc.feature_payload(i, int(s["batch"])))
            shapes.append(
                {
                    "name": s["name"],
                    "batch": s.get("batch", 0),
                    "feature_bytes": own,
                    "n_vertices": s.get("n_vertices"),
                    "n_faces": s.get("n_faces"),
                }
            )
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
            "decoder_parameters": (
                int(sum(np.prod(v) for v in arc.metadata["weights"]["shapes"].values()))
                if "weights" in arc.metadata
                else int(sum(np.prod(p.shape) for p in Decoder(arc.decoder_cfg).parameters()))
            ),
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


# ---------------------------------------------------------------------------- growing
def add_shapes(
    archive: str | os.PathLike,
    source,
    output: str | os.PathLike,
    *,
    epochs: int | None = None,
    progress: StageProgress | None = None,
    prior: str | os.PathLike | Prior | None = None,
) -> CompressResult:
    """Add new shapes to an archive, optimizing only their features (frozen decoder).

    Old shapes keep their sections byte for byte, so they decode bit-identically.

    Args:
        archive: The existing archive.
        source: New meshes (folder, zip, files, list of Mesh).
        output: The grown archive (may equal ``archive``; written atomically).
        epochs: Feature-fitting epochs (default: the archive's training epochs).
        progress: Stage callback.
        prior: The prior of an archive compressed against one (default: the installed one).

    Returns:
        The :class:`CompressResult` of the grown archive (names of all shapes).
    """
    with open_archive(archive, prior=prior) as arc:
        if arc.has_delta:
            raise NecgsError(
                f"{arc.reader.name}: shapes cannot be added to an archive with a fine-tuned decoder delta; "
                "compress the whole set again"
            )
        used_prior = arc.prior()
        if used_prior is not None:  # the prior's frame and the feature-fitting budget of compress --prior
            fit_cfg, train_cfg = PriorFitConfig().fit(used_prior), PriorFitConfig().train(used_prior)
            coder = str(arc.metadata["config"].get("coder", "auto"))
        else:
            try:
                cfg = NecgsConfig.from_dict(arc.metadata["config"]).validate()
            except ConfigError as exc:
                raise CorruptArchiveError(f"archive settings are malformed ({exc})") from None
            fit_cfg, train_cfg, coder = cfg.fit, cfg.train, cfg.coder
        old_names = {s["name"] for s in arc.shapes}
        loaded = _as_loaded(source)
        if not loaded.meshes:
            raise NecgsError(f"{source}: no usable mesh to add")
        clash = sorted(old_names & {m.name for m in loaded.meshes})
        if clash:
            raise NecgsError(f"{archive}: shape names already in the archive: {', '.join(clash[:5])}")
        codec_old = TrainedCodec(arc.decoder_cfg, arc.weights(), _initial_features(arc))
        old_sections = [
            Section(n, arc.reader.read_section(n), arc.reader.section_info(n).info) for n in arc.reader.section_names()
        ]
        metadata = dict(arc.metadata)
        n_old = len(arc.shapes)
        old_records = list(arc.shapes)
        compact = arc.compact
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    fitted = fit_volumes(
        loaded.meshes, fit_cfg, progress=(lambda d, n: _emit(progress, "fit", d, n)) if progress else True
    )
    seconds["fit"] = time.perf_counter() - t
    t = time.perf_counter()
    tcfg = train_cfg if epochs is None else replace(train_cfg, epochs=epochs)
    new_features = fit_features(
        codec_old,
        fitted.volumes,
        tcfg,
        init=start_features(used_prior, fitted.volumes, codec_old.decoder()) if used_prior is not None else None,
        progress=(lambda e, n, loss, eta: _emit(progress, "train", e, n, f"loss {loss:.4f}")) if progress else False,
    )
    seconds["train"] = time.perf_counter() - t
    batch = max(int(b["batch"]) for b in metadata["batches"]) + 1
    records = [
        *old_records,
        *(_shape_record(m, tr, b, batch) for m, tr, b in zip(loaded.meshes, fitted.transforms, loaded.source_bytes)),
    ]
    if compact:
        shared = used_prior.feature_model if used_prior is not None else None
        fmeta, fsections = feature_sections(new_features, batch, coder, shared=shared)
        old_sections = [Section("shapes", pack_shapes(records)) if s.name == "shapes" else s for s in old_sections]
        minor = PRIOR_MINOR if "prior" in metadata else MINOR
    else:  # a 1.0/1.1 archive grows in its own layout, so its old shapes stay bit-identical
        fmeta, fsections = _legacy_feature_sections(new_features, n_old, batch, coder)
        metadata["shapes"] = records
        minor = 1
    metadata["batches"] = [*metadata["batches"], {"batch": batch, "mode": "frozen-decoder", "features": fmeta}]
    size = write_archive(output, metadata, [*old_sections, *fsections], minor)
    names = [s["name"] for s in records]
    return CompressResult(Path(output), size, names, [str(f) for f in loaded.failures], seconds)


def _initial_features(arc: OpenedArchive) -> QuantizedTensor:
    """Features of the shapes of the initial batch (their grid is reused for added shapes)."""
    bmeta = arc.metadata["batches"][0]["features"]
    shape = tuple(int(x) for x in bmeta["shape"])
    first = [i for i, s in enumerate(arc.shapes) if int(s["batch"]) == 0]
    symbols = np.concatenate([arc.feature_symbols(i) for i in first])
    return QuantizedTensor(symbols, QuantSpec.from_dict(bmeta["spec"]), (len(first), *shape))
