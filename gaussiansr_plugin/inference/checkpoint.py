"""Load a GaussianSR checkpoint safely, together with the network options it was trained with.

Weights are read with ``torch.load(weights_only=True)``: a pickle that would import or call Python code (a
crafted ``__reduce__``, a pickled class) is refused before anything runs. The network options come from the
first of these that exists:

1. ``config``: a yml given by the user (a BasicSR option file, whose ``network_g`` is used, or the network
   options themselves);
2. a ``network_g`` dict stored in the checkpoint next to ``params`` (GaussianSRModel writes it, and the shipped
   model has it);
3. ``<checkpoint stem>.yml`` beside the checkpoint;
4. for ``experiments/<name>/models/net_g_*.pth``, the option file BasicSR copied into ``experiments/<name>/``;
5. the paper default, ``GaussianSR()``, with the ``output_options`` the checkpoint records, if any.

Whatever the source, ``output_options`` recorded in the checkpoint must match the network built (else one line
naming the option and both values), and every weight must be finite.
"""
import glob
from dataclasses import dataclass
from os import path as osp
from typing import Any, Dict, Optional, Tuple

import torch
import yaml
from torch import Tensor

from ..archs.gaussiansr_arch import GaussianSR
from ..errors import UserError, first_line
from ..option_checks import keyword_names
from ..safe_load import PARAM_KEYS, load_weights, read_checkpoint, select_weights

DEFAULT_MODEL = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'weights', 'gaussiansr_edsrb_demo.pth')
_TRAINING_STATE_KEYS = {'optimizers', 'schedulers', 'iter'}
PAPER_DEFAULT = 'the paper default'


@dataclass
class LoadedModel:
    """A network ready for inference and where it came from.

    Attributes:
        net (GaussianSR): The network, in eval mode, on the requested device.
        path (str): The checkpoint file.
        options (dict): The network options it was built from (``network_g`` without ``type``).
        options_source (str): Where the options came from (a file, 'the checkpoint' or 'the paper default').
        param_key (str): The checkpoint entry the weights came from ('params_ema', 'params', ... or '').
    """
    net: GaussianSR
    path: str
    options: Dict[str, Any]
    options_source: str
    param_key: str


def select_state_dict(checkpoint: dict, path: str) -> Tuple[Dict[str, Tensor], str]:
    """The network weights of a checkpoint and their key: BasicSR's ``{'params': ..., 'params_ema': ...}`` (EMA
    preferred), ``{'state_dict': ...}`` or a bare state dict."""
    if _TRAINING_STATE_KEYS <= set(checkpoint):
        raise UserError(f'{path} is a BasicSR training state (for resuming), not network weights; use a '
                        'models/net_g_*.pth file')
    state, key = select_weights(checkpoint)
    if not state or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()):
        raise UserError(f'{path} holds no network weights (expected {", ".join(PARAM_KEYS[:2])} or a state dict '
                        'of tensors)')
    return dict(state), key


def read_network_options(yml_path: str) -> Dict[str, Any]:
    """Network options from a yml: its ``network_g`` section, or the whole mapping if it has none."""
    if not osp.isfile(yml_path):
        raise UserError(f'config not found: {yml_path}')
    try:
        with open(yml_path) as f:
            opt = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f'cannot read {yml_path}: {first_line(exc)}') from exc
    if isinstance(opt, dict) and 'network_g' in opt:
        opt = opt['network_g']
    if not isinstance(opt, dict):
        raise UserError(f'{yml_path} holds no network options (a mapping, or a BasicSR yml with network_g)')
    return opt


def _experiment_yml(path: str) -> Optional[str]:
    """The option file BasicSR copied into ``experiments/<name>/`` for ``.../models/net_g_*.pth``, if unique."""
    folder = osp.dirname(osp.abspath(path))
    if osp.basename(folder) != 'models':
        return None
    candidates = []
    for yml in sorted(glob.glob(osp.join(osp.dirname(folder), '*.yml'))):
        try:
            with open(yml) as f:
                if isinstance((yaml.safe_load(f) or {}).get('network_g'), dict):
                    candidates.append(yml)
        except (OSError, yaml.YAMLError, AttributeError):
            continue
    return candidates[0] if len(candidates) == 1 else None


def network_options(path: str, checkpoint: Any, config: Optional[str] = None) -> Tuple[Dict[str, Any], str]:
    """The network options of a checkpoint and their source (see the module docstring for the order)."""
    if config:
        return read_network_options(config), config
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get('network_g'), dict):
        return dict(checkpoint['network_g']), 'the checkpoint'
    sidecar = osp.splitext(path)[0] + '.yml'
    if osp.isfile(sidecar):
        return read_network_options(sidecar), sidecar
    experiment = _experiment_yml(path)
    if experiment:
        return read_network_options(experiment), experiment
    return {}, PAPER_DEFAULT


def build_network(options: Dict[str, Any], source: str) -> GaussianSR:
    """``GaussianSR(**options)`` (``type`` must be GaussianSR if given); bad options become a ``UserError``."""
    options = dict(options)
    net_type = options.pop('type', 'GaussianSR')
    if net_type != 'GaussianSR':
        raise UserError(f"network type '{net_type}' in {source} is not GaussianSR")
    if isinstance(options.get('encoder'), dict):
        # the checkpoint holds the encoder's weights; do not load a separate pretrained encoder
        options['encoder'] = {k: v for k, v in options['encoder'].items() if k != 'pretrain_path'}
    try:
        return GaussianSR(**options)
    except (TypeError, ValueError, KeyError) as exc:
        raise UserError(f'cannot build GaussianSR from the options in {source}: {first_line(exc)}') from exc


def adopt_output_options(options: Dict[str, Any], recorded: Dict[str, Any]) -> Dict[str, Any]:
    """``options`` with the ``output_options`` a checkpoint recorded set as GaussianSR arguments."""
    adopted = {k: v for k, v in recorded.items() if k in keyword_names(GaussianSR.__init__) and v is not None}
    return {**options, **adopted}


def load_model(path: Optional[str] = None,
               config: Optional[str] = None,
               device: torch.device = torch.device('cpu')) -> LoadedModel:
    """Load a GaussianSR checkpoint for inference.

    Args:
        path (str, optional): Checkpoint (``.pth``). Default: the shipped ``weights/gaussiansr_edsrb_demo.pth``.
        config (str, optional): A yml with the network options (BasicSR option file or ``network_g`` itself).
        device (torch.device): Where to put the network. Default: CPU.

    Returns:
        LoadedModel: The network in eval mode and where it came from.

    Raises:
        UserError: Missing or unsafe file, not a checkpoint, options that do not build, weights that do not fit.
    """
    if path is None:
        path = DEFAULT_MODEL
        if not osp.isfile(path):
            raise UserError(f'the shipped model {path} is not installed; pass --model PATH, e.g. '
                            'experiments/<name>/models/net_g_latest.pth from `gaussiansr demo` or `basicsr train`')
    checkpoint = read_checkpoint(path)
    state, key = select_state_dict(checkpoint, path)
    options, source = network_options(path, checkpoint, config)
    recorded = checkpoint.get('output_options')
    if isinstance(recorded, dict) and source == PAPER_DEFAULT:
        options = adopt_output_options(options, recorded)
        source = 'the paper default with the output options recorded in the checkpoint'
    net = build_network(options, source)
    differs = net.output_options_mismatch(recorded if isinstance(recorded, dict) else {})
    if differs:
        raise UserError(f'{path} was trained with other options than {source} gives ({differs}); pass its training '
                        'yml with --config')
    load_weights(net, state, path, f'the GaussianSR built from {source}', '. Is it a GaussianSR checkpoint? Pass its '
                 'training yml with --config, or put <checkpoint stem>.yml beside it')
    return LoadedModel(net=net.to(device).eval(), path=path, options=options, options_source=source, param_key=key)
