"""Codecs compared against NeCGS, each behind :class:`necgs.baselines.base.Codec`."""
