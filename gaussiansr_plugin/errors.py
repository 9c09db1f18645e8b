"""The package's error types and the one helper that turns an exception into the line a user sees.

Each error's message is one line: the ``gaussiansr`` commands and the ``basicsr train|test`` launcher print it as
``error: <message>`` with a non-zero exit status, never a traceback. Data errors take a single message argument, so
a DataLoader worker can re-raise them in the main process (PyTorch rebuilds the exception from its type and a message
that embeds the worker's traceback; ``first_line`` recovers the original message).
"""
import re


class UserError(Exception):
    """A mistake in the user's input (file, option, scale, checkpoint)."""


class DataError(ValueError):
    """An image or LMDB entry that cannot be used for training or testing (unreadable, missing, too small)."""


class MissingImageError(DataError, FileNotFoundError):
    """An image file or LMDB key that does not exist."""


class CheckpointError(UserError, ValueError):
    """A checkpoint that is missing, unsafe to unpickle, not a PyTorch file, or does not fit the network."""


class CheckpointWriteError(RuntimeError):
    """A checkpoint or training state that cannot be written (a full disk, a read-only folder)."""


class TrainingDiverged(RuntimeError):
    """Too many consecutive non-finite training steps."""


_WORKER_HEADER = re.compile(r'^Caught \w+ in DataLoader worker process \d+\.')
_QUALIFIED_NAME = re.compile(r'^[\w.]+(Error|Exception): ')


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (its type name if there is none); for an exception a
    DataLoader worker re-raised (``Caught DataError in DataLoader worker process 0.`` then the worker's traceback,
    ending ``<module>.DataError: <message>``), the original message.
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    if _WORKER_HEADER.match(lines[0]):
        return _QUALIFIED_NAME.sub('', lines[-1], count=1)
    return lines[0]
