"""One clear line and a non-zero exit for user mistakes, never a traceback."""
import sys
from typing import NoReturn


class UserError(Exception):
    """A mistake in the user's input (file, option, scale, checkpoint); shown as one line."""


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    sys.stderr.write(f'error: {message}\n')
    sys.exit(code)
