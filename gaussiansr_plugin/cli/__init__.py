"""Console entry points: ``basicsr train|test`` and ``gaussiansr upscale|profile|show|demo``."""
