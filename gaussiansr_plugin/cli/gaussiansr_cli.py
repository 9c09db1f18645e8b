"""``gaussiansr upscale | profile | show | demo``: each sub-command lives in its own module."""
import argparse
import importlib
import sys
from typing import List, Optional

from ..errors import UserError
from .arguments import fail

# sub-command -> module in this package exposing ``add_arguments(parser)`` and ``run(args)``
COMMANDS = {
    'demo': 'Prepare the offline demo photos, train briefly (or use the shipped model) and upscale.',
    'upscale': 'Upscale images or folders by any scale or to a given size.',
    'profile': 'Parameters, FLOPs, latency and peak memory per scale.',
    'show': 'Figures: the learned Gaussian bank, the per-pixel kernel choice, SR side by side.',
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='gaussiansr', description='GaussianSR tools (BasicSR plugin).')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')
    for name, help_text in COMMANDS.items():
        module = importlib.import_module(f'{__package__}.{name}_cmd')
        module.add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: Optional[List[str]] = None) -> None:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.command is None:
        parser.print_help()
        sys.exit(2)
    module = importlib.import_module(f'{__package__}.{args.command}_cmd')
    try:
        module.run(args)
    except UserError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail('interrupted', code=130)


if __name__ == '__main__':
    main()
