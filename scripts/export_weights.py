"""A network checkpoint of a GaussianSR training (``experiments/<name>/models/net_g_<iter>.pth``) as a release file:
one set of weights (the EMA ones when the training kept them), with the ``network_g`` and ``output_options`` the
checkpoint records, so that ``gaussiansr upscale --model`` and ``torch.load(weights_only=True)`` take it alone. The
file is written atomically and loaded back before the script reports it.

    python scripts/export_weights.py experiments/NAME/models/net_g_latest.pth gaussiansr_plugin/weights/X.pth
"""
import argparse
import os
import sys
from typing import List, Optional


import gaussiansr_plugin  # noqa: F401  (BasicSR compat + registration)
from gaussiansr_plugin.errors import UserError
from gaussiansr_plugin.inference.checkpoint import load_model, select_state_dict
from gaussiansr_plugin.models.checkpoint_io import atomic_torch_save
from gaussiansr_plugin.safe_load import read_checkpoint


def export(source: str, target: str) -> str:
    """Write the release file of ``source`` to ``target``; returns the weights' key in ``source``."""
    checkpoint = read_checkpoint(source)
    state, key = select_state_dict(checkpoint, source)
    missing = [k for k in ('network_g', 'output_options') if not isinstance(checkpoint.get(k), dict)]
    if missing:
        raise UserError(f'{source} records no {" and no ".join(missing)}: export a checkpoint that GaussianSRModel '
                        'saved (models/net_g_*.pth)')
    if os.path.abspath(source) == os.path.abspath(target):
        raise UserError(f'the release file would overwrite its source {source}; choose another path')
    atomic_torch_save({'params_ema': {k: v.detach().cpu().contiguous() for k, v in state.items()},
                       'network_g': checkpoint['network_g'], 'output_options': checkpoint['output_options']}, target)
    try:
        load_model(target)
    except UserError:
        os.remove(target)  # never leave a release file that does not load
        raise
    return key


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('source', help='models/net_g_*.pth of a training')
    parser.add_argument('target', help='the release file to write')
    args = parser.parse_args(argv)
    try:
        key = export(args.source, args.target)
    except UserError as err:
        sys.exit(f'error: {err}')
    size_mb = os.path.getsize(args.target) / 1e6
    print(f'{args.target}: the {key} weights of {args.source}, {size_mb:.1f} MB')


if __name__ == '__main__':
    main()
