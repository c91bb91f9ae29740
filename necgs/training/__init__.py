"""Fitting the auto-decoder to TSDF-Def volumes: losses, SSIM, the training loop."""
