"""Entropy coding of quantized symbols and the ``.ncgs`` archive container."""
