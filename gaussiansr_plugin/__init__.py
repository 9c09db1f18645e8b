"""GaussianSR for BasicSR: importing this package registers its archs, datasets and models."""
import gaussiansr_basicsr_compat

gaussiansr_basicsr_compat.install()  # before BasicSR is first imported (also when this checkout is not installed)

from . import archs, data, models  # noqa: E402,F401  (registration)
from .version import __version__  # noqa: E402,F401
