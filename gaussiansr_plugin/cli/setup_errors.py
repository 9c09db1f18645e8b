"""One line, instead of a traceback from deep inside BasicSR, for a mistake met while a run is being set up.

Nothing of BasicSR is replaced for this: the launcher runs BasicSR's pipeline inside ``reported_as_user_errors``.
A ``ValueError``, ``KeyError``, ``TypeError``, ``OSError`` or ``NotImplementedError`` that escapes the pipeline
from one of BasicSR's set-up steps (parsing the options, loading the resume state, building a dataset, its data
loader or the model: ``STEPS``, found on the traceback) becomes a ``UserError`` that names the step. Errors raised
anywhere else, e.g. in the training loop, keep their tracebacks.
"""
from contextlib import contextmanager
from types import FrameType, TracebackType
from typing import Callable, Dict, Iterator, Mapping, Optional

from ..errors import UserError, first_line

SETUP_ERRORS = (ValueError, KeyError, TypeError, OSError, NotImplementedError)


def _dataset(opt: object) -> str:
    name = opt.get('name') if isinstance(opt, Mapping) else None
    return f"dataset '{name}'" if name else 'dataset'


def _model(opt: object) -> str:
    model_type = opt.get('model_type') if isinstance(opt, Mapping) else None
    return f"cannot build {model_type or 'the model'}"


# BasicSR's set-up steps (by function name) -> what they set up, from the frame's local variables
STEPS: Dict[str, Callable[[Dict[str, object]], str]] = {
    'parse_options': lambda local: 'options',
    'load_resume_state': lambda local: 'resume state',
    'create_train_val_dataloader': lambda local: 'datasets',
    'build_dataset': lambda local: _dataset(local.get('dataset_opt')),
    'build_dataloader': lambda local: f"data loader of {_dataset(local.get('dataset_opt'))}",
    'build_model': lambda local: _model(local.get('opt')),
}


def describe(exc: BaseException) -> str:
    """One line for an exception raised while setting up a run (``KeyError('x')`` -> ``missing option 'x'``)."""
    if isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str) and ' ' not in exc.args[0]:
        return f'missing option {exc.args[0]!r}'
    if isinstance(exc, KeyError) and len(exc.args) == 1:
        return str(exc.args[0])
    return first_line(exc)


def step_of(tb: Optional[TracebackType]) -> Optional[str]:
    """What the innermost set-up step of ``STEPS`` on the traceback was setting up (None if none is on it)."""
    where = None
    while tb is not None:
        frame: FrameType = tb.tb_frame
        if frame.f_code.co_name in STEPS:
            where = STEPS[frame.f_code.co_name](frame.f_locals)
        tb = tb.tb_next
    return where


@contextmanager
def reported_as_user_errors() -> Iterator[None]:
    """Run a BasicSR set-up step (or a whole pipeline) with the mistakes its set-up steps meet raised as one-line
    ``UserError``s.

    Raises:
        UserError: ``'<what was being set up>: <message>'`` for a ``SETUP_ERRORS`` exception raised in a set-up step.
    """
    try:
        yield
    except SETUP_ERRORS as exc:
        where = step_of(exc.__traceback__)
        if where is None:
            raise
        message = describe(exc)
        raise UserError(message if where.lower() in message.lower() else f'{where}: {message}') from exc
