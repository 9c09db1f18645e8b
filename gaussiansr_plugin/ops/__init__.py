"""Custom ops: ``splat`` (continuous 2D Gaussian splatting)."""
