"""The console of ``gaussiansr demo``'s training: a progress bar instead of BasicSR's log.

BasicSR logs the environment, every option and the whole network (~250 lines) before the first iteration, then one
line per ``print_freq`` iterations. During the demo its console handler shows warnings and errors only; the file
handler still gets everything (``experiments/<name>/train_<name>_<time>.log``), and a tqdm bar follows the
iterations that BasicSR's ``MessageLogger`` reports, with the loss.
"""
import contextlib
import io
import logging
import sys
from typing import Iterator, List

from tqdm import tqdm


def _console_handlers(logger: logging.Logger) -> list:
    return [h for h in logger.handlers if type(h) is logging.StreamHandler]  # FileHandler is a subclass


@contextlib.contextmanager
def training_progress(total_iter: int) -> Iterator[None]:
    """Inside: BasicSR's ``train_pipeline`` logs to its file only (warnings also to the console) and draws a bar
    once training starts (a mistake found while setting up is one error line, with no bar)."""
    import basicsr.train
    get_root_logger, message_logger = basicsr.train.get_root_logger, basicsr.train.MessageLogger
    bars: List[tqdm] = []
    quieted = []

    def quiet_root_logger(*args, **kwargs) -> logging.Logger:
        logger = get_root_logger(*args, **kwargs)
        for handler in _console_handlers(logger):
            if handler.level < logging.WARNING:
                quieted.append((handler, handler.level))
                handler.setLevel(logging.WARNING)
        return logger

    class BarMessageLogger(message_logger):
        """BasicSR's ``MessageLogger`` (made just before the first iteration) that also moves the bar to the
        reported iteration."""

        def __init__(self, opt: dict, start_iter: int = 1, tb_logger=None) -> None:
            super().__init__(opt, start_iter, tb_logger)  # train_pipeline passes the iterations done: 0, or resumed
            bars.append(tqdm(total=total_iter, initial=start_iter, desc='training', unit='iter', file=sys.stderr,
                             dynamic_ncols=True))

        def __call__(self, log_vars: dict) -> None:
            losses = {k: f'{v:.4f}' for k, v in log_vars.items() if k.startswith('l_') and isinstance(v, float)}
            bars[-1].set_postfix(losses, refresh=False)
            bars[-1].update(log_vars['iter'] - bars[-1].n)
            super().__call__(log_vars)

    basicsr.train.get_root_logger, basicsr.train.MessageLogger = quiet_root_logger, BarMessageLogger
    try:
        # BasicSR's parse_options prints 'Disable distributed.' on stdout, which holds the demo's results
        with contextlib.redirect_stdout(io.StringIO()):
            yield
        for bar in bars:
            bar.update(bar.total - bar.n)
    finally:
        for bar in bars:
            bar.close()
        basicsr.train.get_root_logger, basicsr.train.MessageLogger = get_root_logger, message_logger
        for handler, level in quieted:
            handler.setLevel(level)
