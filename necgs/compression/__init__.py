"""Compress, decompress, inspect and grow ``.ncgs`` archives: the glue of the stages.

Rooms: :mod:`~necgs.compression.choose` (the public ``compress``: one explicit way per call),
:mod:`~necgs.compression.set_trained`, :mod:`~necgs.compression.with_prior`,
:mod:`~necgs.compression.auto` (the three ways), :mod:`~necgs.compression.decode`
(opening, decoding, describing), :mod:`~necgs.compression.grow` (``add``) and
:mod:`~necgs.compression.steps` (what they share). The archive layout is
:mod:`necgs.coding.codec_archive`.
"""

from necgs.compression.choose import compress
from necgs.compression.decode import decompress, describe, open_archive, shapes_without_surface
from necgs.compression.grow import add_shapes

__all__ = ["add_shapes", "compress", "decompress", "describe", "open_archive", "shapes_without_surface"]
