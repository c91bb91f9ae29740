"""How new shapes are compressed against a prior (``compress --prior``): :class:`PriorFitConfig`."""

from __future__ import annotations

from dataclasses import dataclass, replace

from necgs.config import BAND_LOSS
from necgs.errors import ConfigError
from necgs.geometry.fit import FitConfig
from necgs.priors.prior import Prior
from necgs.training.train import TrainConfig


@dataclass(frozen=True)
class PriorFitConfig:
    """How new shapes are compressed against a prior (``compress --prior``).

    The measurements below were made against the 8x4^3 body prior (now
    ``assets/priors/retired/bodies-8x4.ncgp``) unless they say otherwise; the 1x8^3 ``bodies``
    gives 1.03-1.11x the set-trained CD on four frames with 200 fine-tuning steps.

    Attributes:
        fit_iterations: Fitting iterations of each new shape's volume (as the priors' own
            training volumes: 30 iterations of 10k samples).
        fit_samples: Surface samples per fitting iteration.
        visits: Feature updates per shape.
        batch_size: Shapes per step.
        blocks_per_shape: Blocks of each shape per step.
        block_size: Side of a fitting block at resolution K.
        lr: Peak learning rate of the features; None: ``lr_per_std`` x the standard deviation
            of the prior's training features.
        lr_per_std: The learning rate per unit of feature scale. The features of an encoder
            prior are 40x smaller than an auto-decoder's (std 0.04 against 1.6): on 4 samba
            frames against the encoder prior, lr 5e-2 threw them off (CD 140-207e-3 after 150
            visits), 1e-2 gave 19-45e-3 and 2e-3 (0.048 x std) 15-22e-3; on the first body
            prior 5e-2 (0.032 x std) was best of 2e-2, 5e-2 and 1e-1.
        lambda1: Weight of the masked L1 on the band (the presets' band loss).
        tau: Half-width of that band in TSDF units.
        lambda2: Weight of the SSIM term.
        band_fraction: Share of the feature-fitting blocks drawn near the surface;
            the rest come from the far field, which keeps local features from growing
            floaters there. With the 1x8^3 body prior, features only: 8 procedural figures
            (out of domain) CD 14.4e-3 with 2-5 components per shape at 0.85 (training's
            share), 12.6e-3 with 1-3 at 0.5, 13.3e-3 at 0.3; 6 samba frames 12.2, 12.0 and
            12.8e-3.
        fine_tune_band_fraction: The same share while fine-tuning. On two samba frames with
            200 steps (1x8^3 bodies), 0.85 gave 1.02x / 1.05x the set-trained CD and 0.5 1.13x /
            1.11x (with the features fitted at 0.5 first: 1.03x / 1.03x).
        fine_tune_steps: After the features are fitted, steps that also train a coded delta
            of the prior's decoder (0: the archive holds features only). On one unseen samba
            frame against the body prior (its CD in today's set-trained archive: 3.66e-3):
            22.2e-3 without, 3.85e-3 after 200 steps of 16 blocks with the cosine schedule
            below (23 kB, 8.9 s of CPU on one thread).
        fine_tune_visits: Feature updates per shape before fine-tuning (instead of
            ``visits``; fine-tuning updates the features too). On that frame with 100 steps:
            50 visits gave CD 5.4e-3 in 8.3 s of CPU, 150 visits 5.6e-3 in 10.3 s. With 200
            cosine steps on two frames, 25 visits gave 1.06x / 1.05x their set-trained CD and 50
            visits 1.05x / 1.04x, for 0.5 s more CPU.
        fine_tune_lr: Peak learning rate of the decoder's weights while fine-tuning.
        fine_tune_cosine: Decay both learning rates to zero over the fine-tuning steps (half a
            cosine) instead of keeping them constant. On two samba frames (set-trained CD
            3.66e-3 and 3.62e-3), 200 steps: constant lr 1e-3 gave 4.53e-3 and 6.04e-3, constant
            2e-3 5.47e-3 and 4.85e-3; cosine from 2e-3 3.85e-3 and 3.77e-3 (23 kB), cosine from
            3e-3 3.75e-3 and 3.63e-3 (28 kB); cosine from 2e-3 over 150 steps 4.67e-3 and 4.33e-3.
        fine_tune_blocks: Blocks of each shape per fine-tuning step. On the samba frame, lr
            1e-3: 200 steps x 16 blocks 4.5e-3 (9.4 s of CPU), 150 x 32 4.6e-3 (10.2 s),
            100 x 32 6.7e-3 (6.5 s), 150 x 16 5.5e-3 (7.3 s), 300 x 8 6.4e-3 (9.5 s); lr 2e-3
            with 100 x 32 5.3e-3 for 24 kB.
        delta_multiple: A delta step in steps of the prior's weight grid. Measured on that
            frame after 100 steps: 1 gave CD 4.9e-3 for 40.8 kB of delta, 2 5.4e-3 for 26.5 kB,
            4 5.6e-3 for 15.5 kB (through the pipeline with 50 visits first: 5.4e-3 for
            17.8 kB; 8: 7.0e-3 for 8.6 kB; 16: 14.2e-3 for 2.1 kB).
        delta_bits: Bits of a delta symbol (a weight may move by up to 2^(bits-1) delta steps).
        fine_tune_lambda_rate: lambda_R of the fine-tuning loss: the weight of the estimated
            bits of the delta and the features per output voxel
            (:func:`necgs.coding.bit_estimate.rate_term`); 0 leaves the rate term out. Four
            samba frames each fine-tuned alone (1x8^3 bodies, 200 steps): 0 gave 17.5-18.9 kB at
            1.03-1.10x their set-trained CD, 0.25 14.4-15.9 kB at 1.04-1.13x, 0.5 12.7-13.0 kB
            at 1.09-1.14x, 1 (mesh_0032) 8.4 kB at 1.21x, 4 3.6 kB at 1.82x. The same 16 frames
            as one set with a delta step of 16: 0 gave 567x at CD 6.47e-3, 4 590x at 6.47e-3,
            16 659x at 6.82e-3 (``prior_samba16_bodies_rate.json``).
    """

    fit_iterations: int = 30
    fit_samples: int = 10_000
    visits: int = 150
    batch_size: int = 16
    blocks_per_shape: int = 16
    block_size: int = 8
    lr: float | None = None
    lr_per_std: float = 0.04
    lambda1: float = BAND_LOSS["lambda1"]
    tau: float = BAND_LOSS["tau"]
    lambda2: float = BAND_LOSS["lambda2"]
    band_fraction: float = 0.5
    fine_tune_band_fraction: float = 0.85
    fine_tune_steps: int = 0
    fine_tune_visits: int = 25
    fine_tune_lr: float = 2e-3
    fine_tune_blocks: int = 16
    fine_tune_cosine: bool = True
    delta_multiple: int = 4
    delta_bits: int = 6
    fine_tune_lambda_rate: float = 0.5

    def __post_init__(self) -> None:
        if not 0 <= self.fine_tune_steps <= 100_000:
            raise ConfigError(f"fine-tuning steps must be in [0, 100000], got {self.fine_tune_steps}")
        if not 1 <= self.fine_tune_blocks <= 4096:
            raise ConfigError(f"fine-tuning blocks must be in [1, 4096], got {self.fine_tune_blocks}")
        if not 1 <= self.delta_multiple <= 256 or not 2 <= self.delta_bits <= 12:
            raise ConfigError(
                f"delta multiple (--delta-step) must be in [1, 256] and delta bits in [2, 12], "
                f"got {self.delta_multiple}, {self.delta_bits}"
            )
        if not 0 <= self.fine_tune_lambda_rate <= 1000:
            raise ConfigError(f"fine-tuning lambda_R must be in [0, 1000], got {self.fine_tune_lambda_rate}")
        if not 0 < self.fine_tune_lr <= 1:
            raise ConfigError(f"fine-tuning lr must be in (0, 1], got {self.fine_tune_lr}")
        for name in ("band_fraction", "fine_tune_band_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{name.replace('_', ' ')} must be in [0, 1], got {getattr(self, name)}")

    def fit(self, prior: Prior, device: str = "auto") -> FitConfig:
        """The prior's fitting frame (resolution, truncation, fill) with this budget."""
        return replace(prior.fit, iterations=self.fit_iterations, samples=self.fit_samples, device=device).validate()

    def train(self, prior: Prior, device: str = "auto") -> TrainConfig:
        """Feature-fitting settings (:func:`necgs.training.train.fit_features`): ``visits`` epochs
        (``fine_tune_visits`` when fine-tuning follows)."""
        lr = self.lr if self.lr is not None else max(self.lr_per_std * float(prior.features.value().std()), 1e-6)
        return TrainConfig(
            epochs=self.fine_tune_visits if self.fine_tune_steps else self.visits,
            lr=lr,
            feature_lr_scale=1.0,
            batch_size=self.batch_size,
            blocks_per_shape=self.blocks_per_shape,
            block_size=self.block_size,
            mode="patch",
            feature_bits=prior.features.spec.bits,
            weight_bits=next(iter(prior.weights.values())).spec.bits,
            checkpoint_every=0,
            device=device,
            lambda1=self.lambda1,
            tau=self.tau,
            lambda2=self.lambda2,
            band_fraction=self.band_fraction,
        ).validate()
