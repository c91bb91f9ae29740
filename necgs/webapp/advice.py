"""The page's starting decoder for a set: a prior for a few shapes, a trained decoder of a fitting width for many.

A decoder trained on a set is stored in its archive, so its weights are shared by the set's
shapes: over a few shapes even the tiny decoder costs more than every feature together, and a
prior (whose decoder ships with necgs and is not stored) gives a far smaller archive. The rule
is one budget, :data:`DECODER_BYTES_PER_SHAPE`: a width pays off once its weights cost at most
that many bytes per shape. Below the tiny decoder's count of shapes the page starts from a
prior (the one trained on this data set where one is, else the one trained on the most sets);
above it, from the widest decoder that pays off. Each advice carries the one line that says why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from dataclasses import replace as replaced
from functools import cache

from necgs.config import PRESETS
from necgs.model.decoder import Decoder
from necgs.target_rate import RATE_TABLE
from necgs.webapp.decoders import PRIOR_CHOICE, TRAIN_DECODER

#: Bytes of decoder weights per shape at which a trained decoder pays off: about what the shipped
#: 88-AMA benchmark's quick decoder costs each body (docs/ARCHITECTURE.md, "The app", "Defaults").
DECODER_BYTES_PER_SHAPE = 1000
#: The decoder sizes the page offers, smallest first.
PAGE_WIDTHS = ("tiny", "small", "medium", "large")
#: The preset whose decoder and bits the advice prices (the page's default preset).
ADVICE_PRESET = "quick"


@dataclass(frozen=True)
class DecoderAdvice:
    """Where the page starts for a set, and why.

    Attributes:
        choice: The decoder choice (:mod:`necgs.webapp.decoders`' vocabulary).
        width: The decoder size suggested for a trained decoder.
        reason: One line saying why.
    """

    choice: str
    width: str
    reason: str


@cache
def decoder_bytes(width: str) -> int:
    """Estimated bytes of a trained decoder's weights of size ``width`` (preset :data:`ADVICE_PRESET`,
    its weight bits): its exact parameter count times the measured bits per parameter of the rate
    table's point of that width and bits (of the nearest smaller width where the table has none)."""
    config = PRESETS[ADVICE_PRESET]
    params = Decoder(replaced(config, width=width).decoder()).param_count()
    bits = config.train.weight_bits
    points = [p for p in RATE_TABLE if p.bits == bits and p.feature_bits is None and p.width in PAGE_WIDTHS]
    by_width = {p.width: p.weight_bits_per_param for p in points}
    known = [w for w in PAGE_WIDTHS[: PAGE_WIDTHS.index(width) + 1] if w in by_width]
    per_param = by_width[known[-1]] if known else float(bits)
    return int(params * per_param / 8)


def pays_off_from(width: str) -> int:
    """The number of shapes from which a trained decoder of ``width`` pays off."""
    return math.ceil(decoder_bytes(width) / DECODER_BYTES_PER_SHAPE)


def suggested_width(n_shapes: int) -> str:
    """The widest page width that pays off over ``n_shapes`` shapes (tiny when none does)."""
    fitting = [w for w in PAGE_WIDTHS if pays_off_from(w) <= n_shapes]
    return fitting[-1] if fitting else PAGE_WIDTHS[0]


def prior_for(dataset: str | None, priors: list[dict]) -> str | None:
    """The installed prior to start from: one trained on ``dataset`` (the fewest other sets first),
    else the one trained on the most sets; None without priors."""
    if not priors:
        return None

    def sets(info: dict) -> list[str]:
        return [str(s).split("/")[0] for s in info.get("trained_on") or []]

    own = [p for p in priors if dataset and dataset in sets(p)]
    if own:
        return str(min(own, key=lambda p: len(sets(p)))["name"])
    return str(max(priors, key=lambda p: len(sets(p)))["name"])


def _shapes(n: int) -> str:
    return "1 shape" if n == 1 else f"{n} shapes"


def _kb(n_bytes: float) -> str:
    return f"{n_bytes / 1e3:.0f} kB"


def advise(n_shapes: int, dataset: str | None, priors: list[dict]) -> DecoderAdvice:
    """The decoder the page starts from for ``n_shapes`` shapes of ``dataset``, with its reason.

    Args:
        n_shapes: How many shapes the run compresses.
        dataset: The data set's name (picks the prior trained on it), or None.
        priors: The installed priors (:func:`necgs.webapp.decoders.installed_priors`).
    """
    n = max(int(n_shapes), 1)
    width = suggested_width(n)
    smallest = PAGE_WIDTHS[0]
    if pays_off_from(smallest) > n:
        why = (
            f"{_shapes(n)}: a trained decoder (even {smallest}: about {_kb(decoder_bytes(smallest))}) "
            f"pays off from about {pays_off_from(smallest)} shapes"
        )
        prior = prior_for(dataset, priors)
        if prior is None:
            return DecoderAdvice(TRAIN_DECODER, width, f"{why}; no prior is installed, so a {width} one is trained.")
        return DecoderAdvice(
            f"{PRIOR_CHOICE}{prior}",
            width,
            f"{why}, so prior {prior!r} is the start: its decoder ships with necgs, "
            "the archive holds only each shape's feature.",
        )
    wider = next((w for w in PAGE_WIDTHS if pays_off_from(w) > n), None)
    more = f"; {wider} pays off from about {pays_off_from(wider)}" if wider else ""
    return DecoderAdvice(
        TRAIN_DECODER,
        width,
        f"{_shapes(n)} share one trained decoder: width {width} (about {_kb(decoder_bytes(width))}, "
        f"{decoder_bytes(width) / n / 1e3:.1f} kB a shape) suits them{more}.",
    )
