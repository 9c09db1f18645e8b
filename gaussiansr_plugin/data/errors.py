"""Errors of the data pipeline that name the file or LMDB key at fault.

``DataError`` is a ``ValueError``; ``MissingImageError`` is also a ``FileNotFoundError``. Both take a single
message argument, so a DataLoader worker can re-raise them in the main process (PyTorch rebuilds the exception
from its type and a message that embeds the worker's traceback; ``one_line`` recovers the original message).
The ``basicsr train|test`` launcher reports them as one ``error:`` line with exit status 2.
"""
import re

from ..safe_load import first_line


class DataError(ValueError):
    """An image or LMDB entry that cannot be used for training or testing (unreadable, missing, too small)."""


class MissingImageError(DataError, FileNotFoundError):
    """An image file or LMDB key that does not exist."""


_WORKER_HEADER = re.compile(r'^Caught \w+ in DataLoader worker process \d+\.')
_QUALIFIED_NAME = re.compile(r'^[\w.]+(Error|Exception): ')


def one_line(exc: BaseException) -> str:
    """The original one-line message of an exception, also when a DataLoader worker re-raised it.

    PyTorch re-raises a worker's exception with the message ``Caught DataError in DataLoader worker process 0.``
    followed by the worker's traceback, whose last line is ``<module>.DataError: <message>``.
    """
    text = str(exc)
    if _WORKER_HEADER.match(text):
        last = [line for line in text.splitlines() if line.strip()][-1]
        return _QUALIFIED_NAME.sub('', last.strip(), count=1)
    return first_line(exc)
