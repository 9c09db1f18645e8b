"""GaussianSRModel in-process: query training step, tau schedule, bf16 autocast, grad clipping, chunked test."""
import pytest
import torch

from basicsr.models import build_model
from basicsr.utils.registry import MODEL_REGISTRY
from gaussiansr_plugin.archs.gaussian_util import make_cell, make_coord
from gaussiansr_plugin.models.schedules import resolve_crop_border, tau_at
from shared_helpers import model_opt, train_without_sync


def _opt(tiny_net_opt, tmp_path, **train):
    return dict(model_opt(tiny_net_opt, tmp_path, **train), val={'chunk_size': 50, 'val_freq': 1, 'save_img': False})


def _batch(b=2, q=64, size=(40, 40)):
    idx = torch.randint(0, size[0] * size[1], (b, q))
    cell = make_cell(q, size)[None].repeat(b, 1, 1)
    return {'lq': torch.rand(b, 3, 16, 16), 'coord': make_coord(size)[idx], 'cell': cell, 'gt_q': torch.rand(b, q, 3),
            'scale': torch.full((b,), 2.5)}


def test_registered():
    assert 'GaussianSRModel' in MODEL_REGISTRY


@pytest.mark.parametrize('train', [{}, {'amp': 'bf16'}, {'grad_clip': 0.01}])
def test_training_step_updates_weights(tiny_net_opt, tmp_path, train):
    model = build_model(_opt(tiny_net_opt, tmp_path, **train))
    before = [p.detach().clone() for p in model.net_g.parameters()]
    model.feed_data(_batch())
    model.optimize_parameters(1)
    assert torch.isfinite(torch.as_tensor(model.get_current_log()['l_pix']))
    assert any(not torch.equal(a, p) for a, p in zip(before, model.net_g.parameters()))


def test_bank_lr_mult_gives_the_bank_its_own_rate(tiny_net_opt, tmp_path):
    model = build_model(_opt(tiny_net_opt, tmp_path, bank_lr_mult=10))
    rest, bank = model.optimizer_g.param_groups
    assert bank['params'] == [model.net_g.bank.raw] and len(rest['params']) == len(list(model.net_g.parameters())) - 1
    assert (rest['lr'], bank['lr']) == pytest.approx((1e-3, 1e-2))
    for it in range(1, 12):  # past the MultiStepLR milestone (10): both rates halve, the ratio stays
        model.feed_data(_batch())
        model.optimize_parameters(it)
        model.update_learning_rate(it)
    assert (rest['lr'], bank['lr']) == pytest.approx((5e-4, 5e-3))
    assert len(build_model(_opt(tiny_net_opt, tmp_path)).optimizer_g.param_groups) == 1  # default: BasicSR's


def test_bank_balance_is_added_to_the_loss_and_logged(tiny_net_opt, tmp_path):
    """With ``bank_balance: w`` the step's gradients are those of L1 + w * aux (aux from the weights before the step),
    and the log holds ``l_balance`` = w * aux; off, the log holds ``l_pix`` only."""
    from gaussiansr_plugin.archs.sgs import balance_loss
    models = {w: build_model(_opt(dict(tiny_net_opt, bank_balance=w), tmp_path)) for w in (0, 0.5)}
    models[0.5].net_g.load_state_dict(models[0].net_g.state_dict())
    batch = _batch()
    net = models[0].net_g
    aux = 0.5 * balance_loss(net.kernel_logits(net.encode(batch['lq'])))
    aux_grads = torch.autograd.grad(aux, list(net.parameters()), allow_unused=True)
    for model in models.values():
        torch.manual_seed(0)  # the same Gumbel draws
        model.feed_data(batch)
        model.optimize_parameters(1)
    assert list(models[0].get_current_log()) == ['l_pix']
    assert models[0.5].get_current_log()['l_balance'] == pytest.approx(aux.item(), rel=1e-5)
    for off, on, extra in zip(models[0].net_g.parameters(), models[0.5].net_g.parameters(), aux_grads):
        torch.testing.assert_close(on.grad, off.grad + (0 if extra is None else extra), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize('bad, net', [(0, {}), (True, {}), ('x', {}), (10, {'num_gaussian_channels': 0})])
def test_bad_bank_lr_mult(tiny_net_opt, tmp_path, bad, net):
    with pytest.raises(ValueError, match='bank_lr_mult'):
        build_model(_opt(dict(tiny_net_opt, **net), tmp_path, bank_lr_mult=bad))


def test_checkpoints_record_and_check_output_options(tiny_net_opt, tmp_path):
    from gaussiansr_plugin.errors import CheckpointError
    model = build_model(_opt(dict(tiny_net_opt, gaussian_norm='peak'), tmp_path))
    model.save_network(model.net_g, 'net_g', 7)
    saved = torch.load(tmp_path / 'net_g_7.pth', weights_only=True)
    assert saved['output_options'] == model.net_g.output_options()
    assert saved['output_options']['gaussian_norm'] == 'peak'
    model.load_network(model.net_g, str(tmp_path / 'net_g_7.pth'))  # same options: loads
    other = build_model(_opt(dict(tiny_net_opt, gaussian_norm='density'), tmp_path))
    with pytest.raises(CheckpointError, match="gaussian_norm: checkpoint 'peak', network 'density'"):
        other.load_network(other.net_g, str(tmp_path / 'net_g_7.pth'))


def test_tau_schedule_reaches_the_net(tiny_net_opt, tmp_path):
    model = build_model(_opt(tiny_net_opt, tmp_path, tau_schedule={'start': 1.0, 'end': 0.5, 'iters': 100}))
    model.feed_data(_batch())
    model.optimize_parameters(50)
    assert model.net_g.tau == pytest.approx(0.75)
    assert tau_at({'start': 2.0, 'end': 0.5, 'iters': 10, 'type': 'exp'}, 10) == pytest.approx(0.5)
    assert tau_at({'start': 2.0, 'end': 0.5, 'iters': 10}, 1000) == pytest.approx(0.5)


def test_test_renders_gt_size_in_chunks(tiny_net_opt, tmp_path):
    model = build_model(_opt(tiny_net_opt, tmp_path))
    model.feed_data({'lq': torch.rand(1, 3, 10, 12), 'gt': torch.rand(1, 3, 33, 40), 'scale': torch.tensor([3.3])})
    model.test()
    assert model.output.shape == (1, 3, 33, 40)
    assert model.net_g.training  # restored after the test


@pytest.mark.parametrize('value, scale, expected', [(4, 2.5, 4), ('scale', 2.4, 3), ('scale', 4, 4),
                                                    ('scale+6', 3, 9), ('scale+6', 3.6, 10)])
def test_crop_border_rules(value, scale, expected):
    assert resolve_crop_border(value, scale) == expected


def test_bad_crop_border():
    with pytest.raises(ValueError, match='crop_border'):
        resolve_crop_border('half', 2)


def test_gradients_are_clipped_only_with_grad_clip_and_checked_in_a_few_kernels(tiny_net_opt, tmp_path, monkeypatch):
    """clip_grad_norm_ runs only with grad_clip; without it the finiteness check dispatches a handful of operators
    for all gradients (multi-tensor kernels), not a few per parameter."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        calls = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Count.calls += 1
            return func(*args, **(kwargs or {}))

    norms = []
    clip = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, 'clip_grad_norm_', lambda *args, **kw: norms.append(1) or clip(*args, **kw))
    for train, expected in (({}, []), ({'grad_clip': 1.0}, [1])):
        norms.clear()
        model = build_model(_opt(tiny_net_opt, tmp_path, **train))
        model.feed_data(_batch())
        model.optimize_parameters(1)
        assert norms == expected and model._nan_steps == 0
    with Count():
        model._gradients_finite(None)
    assert len(list(model.net_g.parameters())) > 15 and Count.calls <= 8  # 5 per parameter before


def test_validation_resolves_crop_border_without_changing_the_options(tiny_net_opt, tmp_path, monkeypatch):
    import types
    import basicsr.models.sr_model as sr_model
    opt = _opt(tiny_net_opt, tmp_path)
    opt['val']['metrics'] = {'psnr': {'type': 'calculate_psnr', 'crop_border': 'scale+6', 'test_y_channel': False}}
    model = build_model(opt)
    opt = model.opt
    seen = []
    monkeypatch.setattr(sr_model, 'calculate_metric', lambda data, metric_opt: seen.append(
        (metric_opt['crop_border'], model.opt is opt, opt['val']['metrics']['psnr']['crop_border'])) or 30.0)
    item = {'lq': torch.rand(1, 3, 10, 10), 'gt': torch.rand(1, 3, 30, 30), 'lq_path': ['a.png']}
    dataset = types.SimpleNamespace(opt={'name': 'set', 'scale': 3})
    model.nondist_validation(_Loader(dataset, [item]), 1, None, False)
    assert seen == [(9, False, 'scale+6')] and model.opt is opt
    assert opt['val']['metrics']['psnr']['crop_border'] == 'scale+6'


class _Loader(list):
    """A one-dataset validation loader: its items and ``dataset.opt``."""

    def __init__(self, dataset, items):
        super().__init__(items)
        self.dataset = dataset


@pytest.mark.parametrize('train', [{}, {'grad_clip': 1.0}])
def test_a_training_step_fetches_from_the_device_once(tiny_net_opt, tmp_path, monkeypatch, train):
    """With an optimiser that cannot skip a step on the device (an unfused Adam, the CPU default), the finite check
    and the logged loss share one host transfer; the optimiser's own step (its step counters live on the host) is not
    counted. A fused Adam (the GPU default) reads them every few steps (test_nan_steps.py)."""
    model = build_model(_opt(tiny_net_opt, tmp_path, **train))
    model.feed_data(_batch())
    fetches, counting = [], [True]
    for name in ('item', 'tolist', '__bool__', '__float__', 'cpu', 'numpy'):
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda self, *a, _name=name, _f=original, **k: (
            counting[0] and fetches.append(_name)) or _f(self, *a, **k))
    step = model.optimizer_g.step
    monkeypatch.setattr(model.optimizer_g, 'step', lambda: counting.__setitem__(0, False) or step()
                        or counting.__setitem__(0, True))
    model.optimize_parameters(1)
    monkeypatch.undo()
    assert fetches == ['tolist'] and set(model.get_current_log()) == {'l_pix'}


@pytest.mark.parametrize('scale_max, clip, warned', [(4, 4.0, False), (8, 4.0, True), (8, None, False), (8, 8, False)])
def test_a_cell_clip_below_the_training_scales_is_named(tiny_net_opt, tmp_path, monkeypatch, scale_max, clip, warned):
    from types import SimpleNamespace
    from gaussiansr_plugin.models import gaussiansr_model
    warnings = []
    monkeypatch.setattr(gaussiansr_model, 'get_root_logger', lambda: SimpleNamespace(warning=warnings.append))
    opt = _opt(dict(tiny_net_opt, cell_clip=clip), tmp_path)
    opt['datasets'] = {'train': {'scale_max': scale_max}}
    build_model(opt)
    assert [w for w in warnings if 'cell_clip' in w] == ([
        'network_g.cell_clip 4 is below the training scale_max 8: scales above x4 train with the cell of x4; '
        'set cell_clip: 8 (or null)'] if warned else [])


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
@pytest.mark.parametrize('train', [{'ema_decay': 0.999}, {'ema_decay': 0.999, 'grad_clip': 1.0}])
def test_on_a_gpu_training_steps_do_not_wait_for_the_device(tiny_net_opt, tmp_path, train):
    """Adam is fused on a GPU, so non-finite steps are skipped on the device: the steps between two reads of their
    verdicts (every ``max_nan_steps``) launch without a host sync (CUDA's sync debug mode raises on one)."""
    model = build_model(dict(_opt(tiny_net_opt, tmp_path, max_nan_steps=10, **train), num_gpu=1))
    assert all(group['fused'] for group in model.optimizer_g.param_groups)
    batches = [_batch() for _ in range(3)] + [{k: v.pin_memory() for k, v in _batch().items()} for _ in range(6)]
    for it, batch in enumerate(batches[:3], start=1):  # warm-up; the third step reads nothing yet
        model.feed_data(batch)
        model.optimize_parameters(it)
    model.get_current_log()
    train_without_sync(model, batches[3:], 4)
    assert model.get_current_log()['l_pix'] > 0 and model._last_finite_iter == 9
