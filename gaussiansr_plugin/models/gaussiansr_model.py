"""GaussianSRModel: BasicSR's SRModel trained on query batches and tested by whole-image chunked rendering."""
import contextlib
import copy
import functools
import os
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

import torch
from torch.nn.parallel import DistributedDataParallel

from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger
from basicsr.utils.dist_util import master_only
from basicsr.utils.registry import MODEL_REGISTRY
from ..archs.gaussian_util import output_size
from ..errors import CheckpointError, TrainingDiverged
from ..option_checks import is_int_at_least
from ..precision import DEFAULT_PRECISION, inference_precision
from ..safe_load import checkpoint_network_options, load_weights, read_checkpoint, strip_ddp_prefix
from .checkpoint_io import atomic_torch_save, checkpoint_before, get_rng_state, set_rng_state
from .option_sections import check_sections
from .schedules import resolve_crop_border, tau_at
from .step_graph import WARMUP_STEPS, StepGraph, graph_problem, portable_optimizer_state
from .step_guard import ema_update_unless, skips_on_device, step_stats, step_unless


def bank_lr_groups(net: torch.nn.Module, lr: float, mult: float) -> List[dict]:
    """Optimizer parameter groups of a GaussianSR: its trainable parameters at ``lr``, except the Gaussian bank's,
    which get ``mult * lr`` (``train.bank_lr_mult``)."""
    named = [(name, p) for name, p in net.named_parameters() if p.requires_grad]
    bank = [p for name, p in named if name.startswith('bank.')]
    if not bank:
        raise ValueError('train.bank_lr_mult needs a Gaussian bank (network_g.num_gaussian_channels > 0)')
    return [{'params': [p for name, p in named if not name.startswith('bank.')]}, {'params': bank, 'lr': lr * mult}]


@functools.lru_cache(maxsize=None)
def _warn_once(message: str) -> None:
    """One warning line per message (net_g and net_g_ema load the same file)."""
    get_root_logger().warning(message)


@MODEL_REGISTRY.register()
class GaussianSRModel(SRModel):
    """SRModel for arbitrary-scale GaussianSR.

    Training items carry ``lq`` [B, 3, h, w], ``coord``/``cell`` [B, Q, 2] and ``gt_q`` [B, Q, 3]; validation and
    test items carry ``lq`` and ``gt`` images plus ``scale``. Extra ``train`` options: ``amp`` (``bf16`` autocast),
    ``grad_clip`` (max gradient norm), ``tau_schedule`` ({start, end, iters, type: linear|exp}),
    ``max_nan_steps`` (consecutive non-finite steps skipped before stopping; default 10), ``bank_lr_mult`` (the Gaussian
    bank's learning rate as a multiple of ``optim_g.lr``, in its own parameter group; default 1). With
    ``network_g.bank_balance`` > 0 the network's load-balancing term is added to the loss and logged as ``l_balance``.
    On a GPU, Adam is fused unless ``optim_g`` sets ``fused`` or ``foreach``: non-finite steps are then skipped on the
    device and the host reads the steps' verdicts and losses every ``max_nan_steps`` steps and before a log or a save.
    ``cuda_graph: true`` records the whole step as one CUDA graph after a few eager steps (``models/step_graph.py``).
    Extra ``val`` options: ``chunk_size`` (formerly ``query_chunk``), ``tile``, ``tile_overlap``, ``precision``
    (``fp32`` | ``tf32`` | ``bf16``, default tf32); ``crop_border`` of a
    metric may be an int, ``scale`` or ``scale+N``.
    """

    def __init__(self, opt):
        self.val_opt = check_sections(opt)
        if not opt.get('is_train') and not (opt.get('path') or {}).get('pretrain_network_g'):
            get_root_logger().warning('path.pretrain_network_g is not set: testing a network with random weights')
        super().__init__(opt)
        self._nan_steps = 0
        self._last_finite_iter = 0
        self._unsettled: List[Tuple[int, List[str], torch.Tensor]] = []  # steps run before the host read their flags
        self._step_graph: Optional[StepGraph] = None
        if self.is_train:
            self._max_nan_steps()  # a bad value fails before training starts
            self._warn_cell_clip(opt)
            self._setup_step_graph()

    def _warn_cell_clip(self, opt: dict) -> None:
        """Say so when the network clips cells below the training's largest scale (``cell_clip``): those scales are
        then trained and decoded with the cell of the clip scale, which is rarely meant."""
        clip = getattr(self.get_bare_model(self.net_g), 'cell_clip', None)
        scale_max = ((opt.get('datasets') or {}).get('train') or {}).get('scale_max')
        if clip is not None and isinstance(scale_max, (int, float)) and scale_max > clip:
            get_root_logger().warning(f'network_g.cell_clip {clip:g} is below the training scale_max {scale_max:g}: '
                                      f'scales above x{clip:g} train with the cell of x{clip:g}; set cell_clip: '
                                      f'{scale_max:g} (or null)')

    def _setup_step_graph(self) -> None:
        """``train.cuda_graph``: true records the step (one ``ValueError`` saying why it cannot); auto records it
        where it can and trains eagerly elsewhere (the CPU, DDP, ...), saying why in the log."""
        wanted = self.opt['train'].get('cuda_graph', False)
        if not (isinstance(wanted, bool) or wanted == 'auto'):
            raise ValueError(f'train.cuda_graph must be true, false or auto, got {wanted!r}')
        if not wanted:
            return
        problem = graph_problem(self.device, self.opt['dist'], self.opt['train'], self.optimizer_g)
        if problem and wanted == 'auto':
            get_root_logger().info(f'train.cuda_graph auto: the step trains eagerly ({problem})')
            return
        if problem:
            raise ValueError(f'train.cuda_graph: {problem}')
        self._step_graph = StepGraph(self.device)
        self._graph_warmup_left = WARMUP_STEPS

    def setup_optimizers(self):
        """BasicSR's, except with ``train.bank_lr_mult`` != 1: the bank then trains in a second parameter group at that
        multiple of the learning rate (its gradients disagree from batch to batch, docs/quality.md), and the
        schedulers scale both groups alike."""
        mult = self.opt['train'].get('bank_lr_mult', 1)
        if isinstance(mult, bool) or not isinstance(mult, (int, float)) or not mult > 0:
            raise ValueError(f'train.bank_lr_mult must be a number > 0, got {mult!r}')
        if mult == 1:
            return super().setup_optimizers()
        optim_opt = dict(self.opt['train']['optim_g'])
        optim_type, lr = optim_opt.pop('type'), optim_opt.pop('lr')
        groups = bank_lr_groups(self.get_bare_model(self.net_g), lr, mult)
        self.optimizer_g = self.get_optimizer(optim_type, groups, lr, **optim_opt)
        self.optimizers.append(self.optimizer_g)

    def get_optimizer(self, optim_type, params, lr, **kwargs):
        """BasicSR's, with Adam fused on a GPU unless ``optim_g`` sets ``fused`` or ``foreach``: one kernel for the
        update, and a step that skips a non-finite step on the device, without a host sync."""
        if optim_type == 'Adam' and self.device.type == 'cuda' and not {'fused', 'foreach'} & set(kwargs):
            kwargs = dict(kwargs, fused=True)
        return super().get_optimizer(optim_type, params, lr, **kwargs)

    def model_to_device(self, net):
        """As BasicSR's, but DDP on CPU (gloo) gets no ``device_ids``."""
        if self.opt['dist'] and self.device.type == 'cpu':
            net = net.to(self.device)
            return DistributedDataParallel(net, find_unused_parameters=self.opt.get('find_unused_parameters', False))
        return super().model_to_device(net)

    def feed_data(self, data):
        # non_blocking: a copy from pinned memory (datasets' pin_memory: true) does not wait for the device
        self.lq = data['lq'].to(self.device, non_blocking=True)
        for key in ('coord', 'cell', 'gt_q', 'gt'):
            if key in data:
                setattr(self, key, data[key].to(self.device, non_blocking=True))
        if 'scale' in data:
            scale = data['scale']
            self.scale = float(scale[0] if torch.is_tensor(scale) and scale.ndim else scale)

    def _autocast(self):
        if self.opt['train'].get('amp') in ('bf16', 'bfloat16', True):
            # autocast's weight-cast cache would hand a recorded step tensors freed after the capture
            return torch.autocast(self.device.type, dtype=torch.bfloat16, cache_enabled=self._step_graph is None)
        return contextlib.nullcontext()

    def optimize_parameters(self, current_iter):
        train_opt = self.opt['train']
        if train_opt.get('tau_schedule'):
            self.get_bare_model(self.net_g).tau = tau_at(train_opt['tau_schedule'], current_iter)
        if self._step_graph is not None:
            self._graph_step(current_iter)
            return
        self.optimizer_g.zero_grad(set_to_none=True)
        keys, stats = self._forward_backward(self._batch())
        if skips_on_device(self.optimizer_g):
            self._step_on_device(current_iter, keys, stats)
            return
        *values, bad_loss, bad_grads = stats.tolist()  # the step's one host sync
        if not self._account_step(current_iter, keys, values, bad_loss == 0, bad_grads == 0):
            self.optimizer_g.zero_grad(set_to_none=True)
            return
        self.optimizer_g.step()
        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)

    def _batch(self) -> Dict[str, torch.Tensor]:
        return {'lq': self.lq, 'coord': self.coord, 'cell': self.cell, 'gt_q': self.gt_q}

    def _forward_backward(self, batch: Dict[str, torch.Tensor]) -> Tuple[List[str], torch.Tensor]:
        """Forward, loss and backward of ``batch``: the names of the losses and the step's stats (``step_stats``)."""
        with self._autocast():
            self.output = self.net_g(batch['lq'], batch['coord'], batch['cell'])
        l_pix = self.cri_pix(self.output.float(), batch['gt_q'])
        losses = OrderedDict(l_pix=l_pix)
        take_balance = getattr(self.get_bare_model(self.net_g), 'take_balance_loss', None)  # GaussianSR's
        l_balance = take_balance() if take_balance is not None else None  # with network_g.bank_balance > 0 only
        if l_balance is not None:
            losses['l_balance'] = l_balance
        l_total = l_pix if l_balance is None else l_pix + l_balance
        l_total.backward()  # a non-finite loss gives non-finite gradients, which the skipped step drops
        grads_finite = self._gradients_finite(self.opt['train'].get('grad_clip'))
        return list(losses), step_stats(list(losses.values()), grads_finite, self.opt['dist'])

    def _step_on_device(self, current_iter: int, keys: List[str], stats: torch.Tensor) -> None:
        """Step (and EMA) unless the step is non-finite, decided on the device; the host reads the verdicts of
        ``max_nan_steps`` steps at a time, and before a log or a checkpoint (``_settle_steps``)."""
        self._update_unless(stats)
        self._queue_step(current_iter, keys, stats)

    def _update_unless(self, stats: torch.Tensor) -> None:
        """The optimizer step and the EMA update, both no-ops on the device for a non-finite step."""
        bad = (stats[-2:].sum() > 0).float()
        step_unless(self.optimizer_g, bad)
        if self.ema_decay > 0:
            ema_update_unless(self.net_g_ema, self.get_bare_model(self.net_g), self.ema_decay, bad)

    def _queue_step(self, current_iter: int, keys: List[str], stats: torch.Tensor) -> None:
        self._unsettled.append((current_iter, keys, stats))
        if len(self._unsettled) >= self._max_nan_steps():
            self._settle_steps()

    def _graph_step(self, current_iter: int) -> None:
        """``train.cuda_graph``: a few eager steps on a side stream, then record the step once and replay it on every
        batch of the recorded shapes (a batch of other shapes trains eagerly)."""
        graph, batch = self._step_graph, self._batch()
        if not graph.lrs:
            graph.prepare(self.optimizer_g)
        graph.follow_lrs(self.optimizer_g)
        if graph.captured and graph.fits(batch):
            stats = graph.replay(batch)
            self._queue_step(current_iter, self._graph_keys, stats)
            return
        if graph.captured or self._graph_warmup_left > 0:
            self._graph_warmup_left -= 1
            with graph.side_stream():
                self.optimizer_g.zero_grad(set_to_none=True)
                self._step_on_device(current_iter, *self._forward_backward(batch))
            return
        self.optimizer_g.zero_grad(set_to_none=True)  # the recorded backward keeps the gradients in its own memory
        graph.capture(batch, self._recorded_step)
        stats = graph.replay(batch)
        self._queue_step(current_iter, self._graph_keys, stats)

    def _recorded_step(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        keys, stats = self._forward_backward(batch)
        self._graph_keys = keys
        self._update_unless(stats)
        return stats

    def get_current_learning_rate(self):
        return [float(group['lr']) for group in self.optimizers[0].param_groups]  # a device tensor when recorded

    def _settle_steps(self) -> None:
        """Read the verdicts of the steps run on the device so far (one host transfer) and account for them in
        order, as if each had been read at its own step: the same warnings, counts, log and divergence error."""
        if not self._unsettled:
            return
        steps, self._unsettled = self._unsettled, []
        rows = torch.stack([stats for _, _, stats in steps]).tolist()
        for (current_iter, keys, _), (*values, bad_loss, bad_grads) in zip(steps, rows):
            self._account_step(current_iter, keys, values, bad_loss == 0, bad_grads == 0)

    def get_current_log(self):
        self._settle_steps()
        return super().get_current_log()

    def save(self, epoch, current_iter):
        self._settle_steps()  # a run that diverged stops before it writes a checkpoint
        super().save(epoch, current_iter)

    def _gradients_finite(self, grad_clip) -> torch.Tensor:
        """Whether every gradient is finite, as a device tensor: from the clipped norm when ``grad_clip`` is set (the
        clipping norm is computed only then), else from the sum of |g| of each gradient, in a few multi-tensor kernels
        (a check per parameter launched five each): a sum carries any NaN or infinity, and overflows only past
        3.4e38, where a 2-norm does past 1.8e19. DDP averaged the gradients: the same answer on every rank."""
        if grad_clip:
            return torch.isfinite(torch.nn.utils.clip_grad_norm_(self.net_g.parameters(), float(grad_clip)))
        grads = [p.grad for p in self.net_g.parameters() if p.grad is not None]
        return torch.isfinite(torch.stack(torch._foreach_norm(grads, 1))).all()

    def _account_step(self, current_iter: int, keys: List[str], values: List[float], loss_ok: bool,
                      grads_ok: bool) -> bool:
        """Count a step from its verdict (each loss averaged over the ranks; every loss and gradient finite on every
        rank): whether it trains. A finite step resets the count and is logged; a non-finite one is skipped and
        logged as ``l_pix: nan`` (BasicSR's message logger prints it as ``nan``); ``max_nan_steps`` in a row stop.

        Raises:
            TrainingDiverged: The ``max_nan_steps``-th non-finite step in a row; the message names the iteration
                and the newest checkpoint saved before the last finite step (and its folder).
        """
        if loss_ok and grads_ok:
            self._nan_steps = 0
            self._last_finite_iter = current_iter
            self.log_dict = OrderedDict(zip(keys, values))
            return True
        what = 'gradient' if loss_ok else 'loss'
        self._nan_steps += 1
        limit = self._max_nan_steps()
        get_root_logger().warning(f'iter {current_iter}: non-finite {what}, step skipped ({self._nan_steps}/{limit})')
        self.log_dict = OrderedDict(l_pix=float('nan'))
        if self._nan_steps < limit:
            return False
        models_dir = self.opt['path'].get('models', '')
        good = checkpoint_before(models_dir, self._last_finite_iter)
        where = (f'last good checkpoint: {good} (the newest saved before iter {self._last_finite_iter}, the last '
                 'finite step)' if good else f'no checkpoint saved before iter {self._last_finite_iter} (the last '
                 f'finite step) in {models_dir}')
        raise TrainingDiverged(f'training diverged at iter {current_iter}: {limit} non-finite steps in a row '
                               f'(the last: {what}); {where}; lower train.optim_g.lr or set train.grad_clip')

    def _max_nan_steps(self) -> int:
        limit = self.opt['train'].get('max_nan_steps', 10)
        if not is_int_at_least(limit, 1):
            raise ValueError(f'train.max_nan_steps must be an int >= 1, got {limit!r}')
        return limit

    def _eval_net(self):
        return self.net_g_ema if hasattr(self, 'net_g_ema') else self.get_bare_model(self.net_g)

    def test(self):
        """Render the whole image at the item's scale (or the ground truth's size) in query chunks."""
        net = self._eval_net()
        was_training = net.training
        if hasattr(self, 'gt'):
            size = tuple(self.gt.shape[-2:])
        else:
            size = output_size(self.lq.shape[-2:], self.scale)
        net.eval()
        precision = self.val_opt.get('precision', DEFAULT_PRECISION)
        with torch.no_grad(), inference_precision(precision, self.lq.device.type):
            self.output = net.upsample(
                self.lq, size, chunk_size=self.val_opt.get('chunk_size'), tile=self.val_opt.get('tile'),
                tile_overlap=self.val_opt.get('tile_overlap', 16)).float()
        net.train(was_training)

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        """BasicSR's validation, with ``crop_border: scale`` / ``scale+N`` resolved for this dataset's scale."""
        metrics = (self.opt.get('val') or {}).get('metrics')
        if not metrics:
            return super().nondist_validation(dataloader, current_iter, tb_logger, save_img)
        scale = float(dataloader.dataset.opt.get('scale', 1))
        resolved = copy.deepcopy(metrics)
        for metric_opt in resolved.values():
            if 'crop_border' in metric_opt:
                metric_opt['crop_border'] = resolve_crop_border(metric_opt['crop_border'], scale)
        run_opt = self.opt  # SRModel reads the metrics from self.opt: it sees a copy, the run's options stay intact
        self.opt = {**run_opt, 'val': {**run_opt['val'], 'metrics': resolved}}
        try:
            super().nondist_validation(dataloader, current_iter, tb_logger, save_img)
        finally:
            self.opt = run_opt

    def load_network(self, net, load_path, strict=True, param_key='params'):
        """BasicSR's ``load_network`` (``param_key`` falls back to ``params``, DDP's ``module.`` is stripped), but
        safe and with one-line errors: ``weights_only=True`` refuses a pickle that would run code, and with
        ``strict`` a checkpoint that does not fit raises a ``CheckpointError`` naming the first mismatching keys
        (BasicSR logs the whole diff and raises ``RuntimeError``).
        """
        net = self.get_bare_model(net)
        what = f'path.pretrain_network_g {load_path}'
        checkpoint = read_checkpoint(load_path, 'path.pretrain_network_g')
        self._check_output_options(net, checkpoint, what)
        if param_key is not None:
            if param_key not in checkpoint and 'params' in checkpoint:
                get_root_logger().info(f'Loading: {param_key} does not exist, use params.')
                param_key = 'params'
            if not isinstance(checkpoint.get(param_key), dict):
                hint = '; set path.param_key_g: params_ema' if isinstance(checkpoint.get('params_ema'), dict) else ''
                raise CheckpointError(f'{what} has no {param_key!r} entry (it has: {", ".join(map(str, checkpoint))})'
                                      f'{hint}')
            checkpoint = checkpoint[param_key]
        state = strip_ddp_prefix(checkpoint)
        get_root_logger().info(
            f'Loading {net.__class__.__name__} model from {load_path}, with param key: [{param_key}].')
        if not strict:
            self._print_different_keys_loading(net, state, strict)  # renames keys of other shapes: not loaded
        load_weights(net, state, what, f'the {net.__class__.__name__} built from network_g',
                     ' (another architecture or other network_g options?)', strict)

    @staticmethod
    def _check_output_options(net, checkpoint: dict, what: str) -> None:
        """Refuse a checkpoint whose recorded ``output_options`` differ from ``net``'s, naming both values; say so
        in one line when it records none (written before they were recorded): then nothing can be checked."""
        if not hasattr(net, 'output_options_mismatch'):
            return
        if not isinstance(checkpoint.get('output_options'), dict):
            _warn_once(f'{what} records no output options (an older checkpoint): assuming network_g gives the '
                       'options it was trained with')
            return
        differs = net.output_options_mismatch(checkpoint['output_options'])
        if differs:
            raise CheckpointError(f'{what} was trained with other network_g options ({differs}); set them in '
                                  'network_g as the checkpoint has them')

    @master_only
    def save_network(self, net, net_label, current_iter, param_key='params'):
        """BasicSR's checkpoint format (``params`` / ``params_ema``), written atomically, plus the network's
        ``output_options`` (checked when the checkpoint is loaded again) and ``network_g`` (``gaussiansr upscale
        --model`` rebuilds the network from it, without the yml)."""
        nets, keys = (net, param_key) if isinstance(net, list) else ([net], [param_key])
        save_dict = {}
        for net_, key in zip(nets, keys):  # the bare model: keys carry no DDP ``module.`` prefix
            save_dict[key] = OrderedDict((k, v.cpu()) for k, v in self.get_bare_model(net_).state_dict().items())
        bare = self.get_bare_model(nets[0])  # params and params_ema: one architecture
        if hasattr(bare, 'output_options'):
            save_dict['output_options'] = bare.output_options()
            save_dict['network_g'] = checkpoint_network_options(self.opt['network_g'])
        label = 'latest' if current_iter == -1 else current_iter
        atomic_torch_save(save_dict, os.path.join(self.opt['path']['models'], f'{net_label}_{label}.pth'))

    @master_only
    def save_training_state(self, epoch, current_iter):
        """BasicSR's training state plus the RNG states, written atomically."""
        if current_iter == -1:
            return
        state = {
            'epoch': epoch,
            'iter': current_iter,
            'optimizers': [portable_optimizer_state(o) for o in self.optimizers],
            'schedulers': [s.state_dict() for s in self.schedulers],
            'rng': get_rng_state(),
            'nan_steps': self._nan_steps,
        }
        atomic_torch_save(state, os.path.join(self.opt['path']['training_states'], f'{current_iter}.state'))

    def resume_training(self, resume_state):
        super().resume_training(resume_state)
        self._nan_steps = int(resume_state.get('nan_steps', 0))
        self._last_finite_iter = int(resume_state['iter']) - self._nan_steps
        if 'rng' in resume_state:
            set_rng_state(resume_state['rng'])
