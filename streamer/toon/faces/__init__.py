"""Face-aware DCT-Net: detect, align, stylise heads in one batch, paste back, steady over time."""
