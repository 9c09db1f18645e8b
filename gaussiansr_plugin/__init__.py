"""GaussianSR for BasicSR: importing this package registers its archs, datasets and models."""
from ._compat import install_basicsr_compat

install_basicsr_compat()

from . import archs, data, models  # noqa: E402,F401  (registration)
from .version import __version__  # noqa: E402,F401
