"""Pretrained decoders ("priors"): a frozen decoder shipped once, named by archives by id.

A prior is what every archive of a domain would otherwise pay for: the decoder, a model of
its features, and the features of the shapes it was trained on (used only to start the
features of new shapes close to a similar training shape). An archive compressed against a
prior stores its shapes' features and the prior's id, nothing else.

The package's rooms: :mod:`~necgs.priors.prior` (what a prior is, its id),
:mod:`~necgs.priors.ncgp` (the ``.ncgp`` file), :mod:`~necgs.priors.installed` (the shipped,
retired and user folders and finding a prior in them), :mod:`~necgs.priors.training` (training
one) and :mod:`~necgs.priors.start` (starting features of new shapes); how new shapes are fitted
against one is :class:`necgs.config.PriorFitConfig`.
"""
