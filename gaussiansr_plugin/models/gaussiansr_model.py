"""GaussianSRModel: BasicSR's SRModel trained on query batches and tested by whole-image chunked rendering."""
import contextlib
import copy
import os
from collections import OrderedDict

import torch
from torch.nn.parallel import DistributedDataParallel

from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger
from basicsr.utils.dist_util import master_only
from basicsr.utils.registry import MODEL_REGISTRY
from ..archs.gaussian_util import output_size
from .checkpoint_io import atomic_torch_save, get_rng_state, set_rng_state
from .schedules import TrainingDiverged, resolve_crop_border, tau_at


@MODEL_REGISTRY.register()
class GaussianSRModel(SRModel):
    """SRModel for arbitrary-scale GaussianSR.

    Training items carry ``lq`` [B, 3, h, w], ``coord``/``cell`` [B, Q, 2] and ``gt_q`` [B, Q, 3]; validation and
    test items carry ``lq`` and ``gt`` images plus ``scale``. Extra ``train`` options: ``amp`` (``bf16`` autocast),
    ``grad_clip`` (max gradient norm), ``tau_schedule`` ({start, end, iters, type: linear|exp}),
    ``max_nan_steps`` (consecutive non-finite steps skipped before stopping; default 10). Extra ``val`` options:
    ``query_chunk``, ``tile``, ``tile_overlap``; ``crop_border`` of a metric may be an int, ``scale`` or ``scale+N``.
    """

    def __init__(self, opt):
        super().__init__(opt)
        self._nan_steps = 0

    def model_to_device(self, net):
        """As BasicSR's, but DDP on CPU (gloo) gets no ``device_ids``."""
        if self.opt['dist'] and self.device.type == 'cpu':
            net = net.to(self.device)
            return DistributedDataParallel(net, find_unused_parameters=self.opt.get('find_unused_parameters', False))
        return super().model_to_device(net)

    def feed_data(self, data):
        self.lq = data['lq'].to(self.device)
        for key in ('coord', 'cell', 'gt_q', 'gt'):
            if key in data:
                setattr(self, key, data[key].to(self.device))
        if 'scale' in data:
            scale = data['scale']
            self.scale = float(scale[0] if torch.is_tensor(scale) and scale.ndim else scale)

    def _autocast(self):
        if self.opt['train'].get('amp') in ('bf16', 'bfloat16', True):
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def optimize_parameters(self, current_iter):
        train_opt = self.opt['train']
        if train_opt.get('tau_schedule'):
            self.get_bare_model(self.net_g).tau = tau_at(train_opt['tau_schedule'], current_iter)
        self.optimizer_g.zero_grad(set_to_none=True)
        with self._autocast():
            self.output = self.net_g(self.lq, self.coord, self.cell)
        l_pix = self.cri_pix(self.output.float(), self.gt_q)
        loss_dict = OrderedDict(l_pix=l_pix)
        if not torch.isfinite(l_pix):
            self._skip_step(current_iter, 'loss')
            return
        l_pix.backward()
        if train_opt.get('grad_clip'):
            grad_norm = torch.nn.utils.clip_grad_norm_(self.net_g.parameters(), float(train_opt['grad_clip']))
        else:
            grad_norm = torch.linalg.vector_norm(
                torch.stack([p.grad.norm() for p in self.net_g.parameters() if p.grad is not None]))
        if not torch.isfinite(grad_norm):
            self._skip_step(current_iter, 'gradient')
            return
        self._nan_steps = 0
        self.optimizer_g.step()
        self.log_dict = self.reduce_loss_dict(loss_dict)
        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)

    def _skip_step(self, current_iter: int, what: str) -> None:
        """Drop a step with a non-finite loss or gradient; stop after ``max_nan_steps`` in a row."""
        self.optimizer_g.zero_grad(set_to_none=True)
        self._nan_steps += 1
        limit = int(self.opt['train'].get('max_nan_steps', 10))
        get_root_logger().warning(f'iter {current_iter}: non-finite {what}, step skipped ({self._nan_steps}/{limit})')
        self.log_dict = OrderedDict(l_pix=float('nan'))
        if self._nan_steps >= limit:
            raise TrainingDiverged(f'training stopped at iter {current_iter}: {limit} non-finite steps in a row; '
                                   f'last good checkpoint in {self.opt["path"]["models"]}')

    def _eval_net(self):
        return self.net_g_ema if hasattr(self, 'net_g_ema') else self.get_bare_model(self.net_g)

    def test(self):
        """Render the whole image at the item's scale (or the ground truth's size) in query chunks."""
        net = self._eval_net()
        was_training = net.training
        val_opt = self.opt.get('val') or {}
        if hasattr(self, 'gt'):
            size = tuple(self.gt.shape[-2:])
        else:
            size = output_size(self.lq.shape[-2:], self.scale)
        net.eval()
        with torch.no_grad():
            self.output = net.upsample(
                self.lq, size, chunk_size=val_opt.get('query_chunk'), tile=val_opt.get('tile'),
                tile_overlap=val_opt.get('tile_overlap', 16)).float()
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
        self.opt['val']['metrics'] = resolved
        try:
            super().nondist_validation(dataloader, current_iter, tb_logger, save_img)
        finally:
            self.opt['val']['metrics'] = metrics

    @master_only
    def save_network(self, net, net_label, current_iter, param_key='params'):
        """BasicSR's checkpoint format (``params`` / ``params_ema``), written atomically."""
        nets, keys = (net, param_key) if isinstance(net, list) else ([net], [param_key])
        save_dict = {}
        for net_, key in zip(nets, keys):
            state = self.get_bare_model(net_).state_dict()
            save_dict[key] = OrderedDict((k[7:] if k.startswith('module.') else k, v.cpu()) for k, v in state.items())
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
            'optimizers': [o.state_dict() for o in self.optimizers],
            'schedulers': [s.state_dict() for s in self.schedulers],
            'rng': get_rng_state(),
            'nan_steps': self._nan_steps,
        }
        atomic_torch_save(state, os.path.join(self.opt['path']['training_states'], f'{current_iter}.state'))

    def resume_training(self, resume_state):
        super().resume_training(resume_state)
        self._nan_steps = int(resume_state.get('nan_steps', 0))
        if 'rng' in resume_state:
            set_rng_state(resume_state['rng'])

    def get_current_visuals(self):
        out = OrderedDict(lq=self.lq.detach().cpu(), result=self.output.detach().cpu())
        if hasattr(self, 'gt'):
            out['gt'] = self.gt.detach().cpu()
        return out

