"""Argument types and options shared by the ``gaussiansr`` sub-commands."""
import argparse
import math
import re
import sys
from typing import List, NoReturn, Optional, Tuple


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    sys.stderr.write(f'error: {message}\n')
    sys.exit(code)


def one_line_errors(parser: argparse.ArgumentParser) -> None:
    """Report argument mistakes as one ``error: ...`` line (exit 2) instead of argparse's usage block."""

    def error(message: str) -> None:
        fail(f'{message} (see `{parser.prog} --help`)')

    parser.error = error


def positive_float(text: str) -> float:
    """A finite number > 0 (scales)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f'must be a positive finite number, got {text}')
    return value


def _integer(text: str, minimum: int) -> int:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not (math.isfinite(value) and value >= minimum and value == int(value)):
        raise argparse.ArgumentTypeError(f'must be an integer >= {minimum}, got {text}')
    return int(value)


def positive_int(text: str) -> int:
    """An integer >= 1 (also written like ``2e8``)."""
    return _integer(text, 1)


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    return _integer(text, 0)


def image_size(text: str) -> Tuple[int, int]:
    """``WxH`` (e.g. ``1920x1080``) -> (H, W)."""
    found = re.fullmatch(r'\s*(\d+)\s*[xX\u00d7]\s*(\d+)\s*', text)
    if not found or int(found.group(1)) < 1 or int(found.group(2)) < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not WIDTHxHEIGHT with positive integers, e.g. 1920x1080")
    return int(found.group(2)), int(found.group(1))


class _OldSpelling(argparse.Action):
    """The old spelling of an option: stores into the option's ``dest`` and writes one warning line."""

    def __init__(self, option_strings, dest, new: str, **kwargs):
        super().__init__(option_strings, dest, **kwargs)
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        sys.stderr.write(f'warning: {option_string} is deprecated: use {self.new} (the old name goes in the next '
                         'release)\n')
        setattr(namespace, self.dest, values)


def add_chunk_size_argument(parser: argparse.ArgumentParser, default: Optional[int], help: str) -> None:
    """``--chunk-size N`` (queries rendered at once), and its old spelling ``--chunk N``, which keeps working with
    one warning line until the next release."""
    parser.add_argument('--chunk-size', type=positive_int, default=default, metavar='N', help=help)
    parser.add_argument('--chunk', dest='chunk_size', type=positive_int, action=_OldSpelling, new='--chunk-size',
                        help=argparse.SUPPRESS)


def add_scales_argument(parser: argparse.ArgumentParser, default: List[float], what: str) -> None:
    """``--scales S [S ...]``: positive scales; ``what`` says what they are for in the help."""
    shown = ' '.join(f'{s:g}' for s in default)
    parser.add_argument('--scales', type=positive_float, nargs='+', default=default, metavar='S',
                        help=f'{what}. Default: {shown}')


def add_model_arguments(parser: argparse.ArgumentParser, device_default: str = 'auto') -> None:
    """``--model``, ``--config`` and ``--device``."""
    parser.add_argument(
        '--model',
        metavar='PATH',
        default=None,
        help='GaussianSR checkpoint (.pth; BasicSR params/params_ema). Default: the shipped model')
    parser.add_argument(
        '--config',
        metavar='YML',
        default=None,
        help='network options for --model: a BasicSR yml (its network_g) or the options alone. '
        'Default: the network_g saved in the checkpoint, <model stem>.yml beside it, the experiment yml, else the '
        'paper default')
    parser.add_argument(
        '--device',
        default=device_default,
        metavar='DEVICE',
        help=f'auto, cpu, cuda or cuda:N. Default: {device_default}')
