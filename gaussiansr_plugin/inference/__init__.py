"""Inference helpers behind ``gaussiansr upscale | profile | show | demo``.

- ``image_io``: reading (8/16-bit, float TIFF, gray, RGBA, EXIF orientation) and atomic writing of images.
- ``checkpoint``: loading a GaussianSR checkpoint safely (``weights_only``) together with its network options.
- ``upscaler``: device selection and whole-image upscaling with a CUDA out-of-memory fallback.
- ``profiling``: parameters, FLOPs (mmengine), latency and peak memory per scale.
- ``figures``: the Gaussian bank, the kernel choice map and side-by-side comparisons (matplotlib, Agg).
"""
