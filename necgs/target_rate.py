"""Meeting a target rate: pick the decoder width, bits and lambda_R that give a wanted size or ratio.

The choice comes from a measured table (:data:`RATE_TABLE`, written by
``benchmarks/bench_rate.py``; the raw runs are in ``benchmarks/results/rate_ama8_k64_band2_*.json``).
Each point records what one setting cost per decoder parameter and per shape's feature, and
the CD it reached, on real shapes.
For a set of N meshes the archive's bytes are predicted as

    shape table (exact, from the names and counts) + fixed header
    + decoder parameters (exact, from the architecture) x bits per parameter / 8
    + N x feature bytes per shape,

and the plan is the point of lowest measured CD among those predicted within 10% under the
target (or, if none is that close, among all that fit).
The ratio is the benchmark's: the meshes as canonical binary PLY over the archive.

The weights' bits per parameter vary between trainings (measurements: docs/ARCHITECTURE.md,
"Rate control"), so when an archive misses its target by more than :data:`LANDING_TOLERANCE`,
:func:`replan` scales every point's weights by what the first archive really wrote and names a
second setting, which the pipeline trains once (a short search).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from necgs.coding.shape_table import pack_shapes
from necgs.config import NecgsConfig
from necgs.errors import ConfigError
from necgs.io.mesh import Mesh
from necgs.io.ply import binary_ply_bytes
from necgs.model.decoder import Decoder


@dataclass(frozen=True)
class RatePoint:
    """One measured setting of the rate table.

    Attributes:
        width: Decoder size name or base width.
        bits: Quantization bits of the decoder weights (and of the features, unless
            ``feature_bits`` is given).
        lambda_rate: lambda_R of the training.
        weight_bits_per_param: Weights section bits per decoder parameter.
        feature_bytes_per_shape: Feature bytes per shape (its stream and length).
        cd: Mean CD measured with this setting (orders the points by quality).
        feature_bits: Quantization bits of the features; None: ``bits``.
        tied_modules: How many upsampling modules share one set of weights (0: none).
    """

    width: str | int
    bits: int
    lambda_rate: float
    weight_bits_per_param: float
    feature_bytes_per_shape: float
    cd: float
    feature_bits: int | None = None
    tied_modules: int = 0


#: JSON metadata header (config, decoder, specs, batches), zlib'd, as measured on a small set
#: (docs/ARCHITECTURE.md, "Rate control").
FIXED_HEADER_BYTES = 1010
#: Container prefix, CRC and per-section table entries.
FRAMING_BYTES = 24
#: A size target (``--target-bytes``, a ceiling) prefers settings predicted at most this share under it.
LANDING_TOLERANCE = 0.1
#: A ratio target prefers settings predicted within this share of it, on either side.
RATIO_WINDOW = 0.05
#: Bounds of the measured correction of the weights' bytes a second plan applies.
WEIGHT_SCALE_RANGE = (0.5, 2.0)

#: One point per measured setting of preset quick (K = 64, 8^3 blocks, 200 epochs, the band loss)
#: on AMA bodies, written by ``benchmarks/bench_rate.py`` (results/rate_ama8_k64_band2_table.json,
#: rate_ama8_k64_band2_fbits4.json and, with the 4 upsampling modules tied,
#: rate_ama8_k64_band2_tied4.json), in order of size; the CDs only order the points. No point
#: trains with the rate term, because fewer bits beat it at equal bytes (benchmarks/README.md, "The
#: rate table again with the band loss").
RATE_TABLE: tuple[RatePoint, ...] = (
    RatePoint(12, 5, 0.0, 3.884, 211.0, 8.548e-03, feature_bits=4, tied_modules=4),
    RatePoint("tiny", 4, 0.0, 2.786, 183.5, 7.920e-03),
    RatePoint(12, 6, 0.0, 4.854, 200.2, 9.018e-03, feature_bits=4, tied_modules=4),
    RatePoint(16, 5, 0.0, 3.627, 212.5, 7.702e-03, feature_bits=4, tied_modules=4),
    RatePoint("tiny", 5, 0.0, 3.746, 251.4, 7.693e-03),
    RatePoint(10, 4, 0.0, 2.788, 200.0, 7.901e-03),
    RatePoint(16, 6, 0.0, 4.484, 206.0, 7.074e-03, feature_bits=4, tied_modules=4),
    RatePoint("tiny", 6, 0.0, 4.790, 337.0, 7.704e-03),
    RatePoint("small", 4, 0.0, 2.539, 210.8, 7.263e-03),
    RatePoint(10, 5, 0.0, 3.731, 265.5, 7.560e-03),
    RatePoint(10, 5, 0.0, 3.850, 202.0, 7.570e-03, feature_bits=4),
    RatePoint(10, 6, 0.0, 4.645, 194.4, 7.487e-03, feature_bits=4),
    RatePoint(10, 6, 0.0, 4.763, 333.0, 7.432e-03),
    RatePoint("small", 5, 0.0, 3.652, 273.5, 7.001e-03),
    RatePoint("medium", 4, 0.0, 2.413, 204.0, 6.864e-03),
    RatePoint("small", 6, 0.0, 4.687, 331.4, 6.894e-03),
    RatePoint("medium", 5, 0.0, 3.507, 275.0, 6.531e-03),
    RatePoint("medium", 6, 0.0, 4.462, 325.0, 6.456e-03),
)


@dataclass(frozen=True)
class RatePlan:
    """A setting chosen for a target.

    Attributes:
        config: The configuration to compress with.
        point: The table point it came from.
        predicted_bytes: The archive size the table predicts.
        target_bytes: The size asked for (from the ratio when a ratio was asked).
        ply_bytes: The meshes as binary PLY (the ratio's numerator).
        target_ratio: The ratio asked for (None: a size was asked, ``target_bytes`` is a ceiling).
        weight_scale: Correction of the table's weight bytes the prediction used (1: none;
            see :func:`replan`).
    """

    config: NecgsConfig
    point: RatePoint
    predicted_bytes: int
    target_bytes: int
    ply_bytes: int
    target_ratio: float | None = None
    weight_scale: float = 1.0

    def describe(self) -> str:
        """One line for the CLI."""
        corrected = f", weights x{self.weight_scale:.2f} as measured" if self.weight_scale != 1.0 else ""
        tied = f" (upsampling modules tied: {self.point.tied_modules})" if self.point.tied_modules else ""
        return (
            f"rate control: width {self.point.width}{tied}, {self.point.bits} bits "
            f"(features {self.point.feature_bits or self.point.bits}), lambda_R {self.point.lambda_rate:g}; "
            f"predicted {self.predicted_bytes} bytes (ratio {self.ply_bytes / self.predicted_bytes:.1f}{corrected}) "
            f"for a target of {self.target_bytes} bytes (ratio {self.ply_bytes / self.target_bytes:.1f})"
        )

    def landed(self, written: int) -> bool:
        """Whether an archive of ``written`` bytes meets the target: a ratio within
        :data:`LANDING_TOLERANCE` of the one asked, or a size at most the one asked and within
        the tolerance under it."""
        if self.target_ratio is not None:
            return abs(self.ply_bytes / written / self.target_ratio - 1) <= LANDING_TOLERANCE
        return (1 - LANDING_TOLERANCE) * self.target_bytes <= written <= self.target_bytes

    def miss(self, written: int) -> float:
        """How far ``written`` bytes are from the target (0: on it); a size over a size
        target ranks behind every size under it."""
        distance = abs(math.log(written / self.target_bytes))
        return distance + (1.0 if self.target_ratio is None and written > self.target_bytes else 0.0)


def point_config(base: NecgsConfig, point: RatePoint) -> NecgsConfig:
    """``base`` with the width, tied modules, bits and lambda_R of ``point``."""
    train = replace(
        base.train,
        weight_bits=point.bits,
        feature_bits=point.feature_bits or point.bits,
        lambda_rate=point.lambda_rate,
    )
    return replace(base, width=point.width, tied_modules=point.tied_modules, train=train).validate()


def predict_bytes(config: NecgsConfig, point: RatePoint, meshes: Sequence[Mesh], weight_scale: float = 1.0) -> int:
    """Archive bytes the table predicts for ``meshes`` compressed with ``point``.

    Args:
        config: The base configuration.
        point: The table point.
        meshes: The set.
        weight_scale: Factor on the table's weight bytes (a measured correction).
    """
    return _predictions(config, [point], len(meshes), _shape_table_bytes(meshes), weight_scale)[0][1]


def _predictions(
    config: NecgsConfig, points: Sequence[RatePoint], n: int, table_bytes: int, weight_scale: float = 1.0
) -> list[tuple[RatePoint, int]]:
    """(point, predicted archive bytes) for each point, for ``n`` shapes whose table has ``table_bytes``."""
    out = []
    for point in points:
        rest, weights = _predicted_parts(config, point, n, table_bytes)
        out.append((point, int(rest + weight_scale * weights)))
    return out


def _shape_table_bytes(meshes: Sequence[Mesh]) -> int:
    """Bytes of the shape table the archive of ``meshes`` will hold (exact but for the transforms)."""
    records = [
        {
            "name": m.name,
            "transform": {"center": [0.0, 0.0, 0.0], "scale": 1.0},
            "n_vertices": m.n_vertices,
            "n_faces": m.n_faces,
            "source_bytes": binary_ply_bytes(m),
            "batch": 0,
        }
        for m in meshes
    ]
    return len(pack_shapes(records))


def _predicted_parts(config: NecgsConfig, point: RatePoint, n: int, table_bytes: int) -> tuple[float, float]:
    """(everything but the weights, the weights) of the predicted archive of ``n`` shapes, in bytes."""
    params = Decoder(point_config(config, point).decoder()).param_count()
    rest = FIXED_HEADER_BYTES + FRAMING_BYTES + table_bytes + n * point.feature_bytes_per_shape
    return rest, params * point.weight_bits_per_param / 8


def plan_rate(
    config: NecgsConfig,
    meshes: Sequence[Mesh],
    *,
    target_ratio: float | None = None,
    target_bytes: int | None = None,
    table: Sequence[RatePoint] = RATE_TABLE,
) -> RatePlan:
    """The setting that lands on the target.

    A size (``target_bytes``) is a ceiling: the plan takes the lowest measured CD among the
    points predicted within ``LANDING_TOLERANCE`` under it, or, when none lands that close,
    among all that fit (the lowest CD among all that fit overshot, a much smaller point having
    measured a slightly lower CD). A ratio is a value to land near: the lowest CD among the
    points predicted within ``RATIO_WINDOW`` of it on either side, else the point predicted
    nearest to it (as a ceiling, ratios landed too high). An archive that still misses gets a
    second setting from :func:`replan` (measurements: docs/ARCHITECTURE.md, "Rate control";
    benchmarks/README.md, "Widths x bits at K = 64: the rate-control table").

    Args:
        config: The base configuration (preset, resolution, epochs...); width, bits and
            lambda_R are replaced.
        meshes: The set to compress.
        target_ratio: Wanted binary-PLY-to-archive ratio (exclusive with ``target_bytes``).
        target_bytes: Wanted archive size.
        table: The measured points.

    Raises:
        ConfigError: No target, both, a non-positive one, or one no point can meet.
    """
    if (target_ratio is None) == (target_bytes is None):
        raise ConfigError("give exactly one of a target ratio and a target size")
    if (target_ratio is not None and not target_ratio > 0) or (target_bytes is not None and target_bytes <= 0):
        raise ConfigError("the rate target must be positive")
    if not meshes:
        raise ConfigError("rate control needs at least one mesh")
    if not table:
        raise ConfigError("no rate table is available for rate control")
    ply = sum(binary_ply_bytes(m) for m in meshes)
    target = int(target_bytes if target_bytes is not None else ply / target_ratio)
    options = _predictions(config, table, len(meshes), _shape_table_bytes(meshes))
    point, predicted = _choose(options, target, target_ratio, ply, len(meshes))
    return RatePlan(point_config(config, point), point, predicted, target, ply, target_ratio)


def replan(
    plan: RatePlan,
    written: int,
    config: NecgsConfig,
    meshes: Sequence[Mesh],
    table: Sequence[RatePoint] = RATE_TABLE,
) -> RatePlan | None:
    """A second setting for a target the first archive missed, or None if none would do better.

    The first archive's weights are taken to show how this set's training codes weights
    compared with the table's: every point's predicted weight bytes are scaled by
    (written - predicted rest) / predicted weights of the first point, bounded by
    :data:`WEIGHT_SCALE_RANGE`. The first point is left out, and the same rule as
    :func:`plan_rate` picks among the others.

    Args:
        plan: The first plan.
        written: The first archive's real size in bytes.
        config: The base configuration given to :func:`plan_rate`.
        meshes: The set.
        table: The measured points (the same as the first plan's).

    Returns:
        The second plan, or None when the first archive landed, or when no other point is
        predicted nearer the target than the first archive is.
    """
    if plan.landed(written):
        return None
    table_bytes = _shape_table_bytes(meshes)
    rest, weights = _predicted_parts(config, plan.point, len(meshes), table_bytes)
    low, high = WEIGHT_SCALE_RANGE
    scale = min(max((written - rest) / weights, low), high)
    options = _predictions(config, [p for p in table if p != plan.point], len(meshes), table_bytes, scale)
    if not options:
        return None
    try:
        point, predicted = _choose(options, plan.target_bytes, plan.target_ratio, plan.ply_bytes, len(meshes))
    except ConfigError:
        return None
    second = RatePlan(
        point_config(config, point), point, predicted, plan.target_bytes, plan.ply_bytes, plan.target_ratio, scale
    )
    return second if second.miss(predicted) < plan.miss(written) else None


def _choose(
    options: list[tuple[RatePoint, int]], target: int, ratio: float | None, ply: int, n: int
) -> tuple[RatePoint, int]:
    """The (point, predicted bytes) for a target (see :func:`plan_rate`)."""
    if ratio is not None:
        return _choose_ratio(options, target, ratio, ply, n)
    fitting = [(p, b) for p, b in options if b <= target]
    if not fitting:
        smallest = min(b for _, b in options)
        raise ConfigError(
            f"{target} bytes are out of reach for these {n} meshes: the smallest setting makes about "
            f"{smallest} bytes (ratio {ply / smallest:.1f})"
        )
    landing = [(p, b) for p, b in fitting if b >= (1 - LANDING_TOLERANCE) * target]
    return min(landing or fitting, key=lambda pb: (pb[0].cd, -pb[1]))


def _choose_ratio(
    options: list[tuple[RatePoint, int]], target: int, ratio: float, ply: int, n: int
) -> tuple[RatePoint, int]:
    """The (point, predicted bytes) for a ratio target; ``options`` are (point, predicted bytes)."""
    smallest = min(b for _, b in options)
    if smallest > (1 + RATIO_WINDOW) * target:
        raise ConfigError(
            f"ratio {ratio:g} is out of reach for these {n} meshes: the smallest setting makes about "
            f"{smallest} bytes (ratio {ply / smallest:.1f})"
        )
    near = [(p, b) for p, b in options if abs(b / target - 1) <= RATIO_WINDOW]
    if near:
        return min(near, key=lambda pb: (pb[0].cd, abs(pb[1] - target)))
    return min(options, key=lambda pb: abs(math.log(pb[1] / target)))
