"""The compact neural representation: quantizer, auto-decoder, ablation encoder."""
