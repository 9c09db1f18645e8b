"""train.cuda_graph: the training step recorded once as a CUDA graph and replayed. On the CPU a stand-in graph runs
the recorded step at each replay, which tests the model's side (warm-up, static inputs, learning rates, the queued
verdicts); on a GPU the real graph is compared with eager steps."""
import gc
import math
import types
import weakref
from contextlib import contextmanager

import pytest
import torch

from basicsr.models import build_model
from gaussiansr_plugin.archs import upsample_graphs
from gaussiansr_plugin.models import gaussiansr_model, step_graph
from shared_helpers import model_opt, query_batch, train_without_sync


class ReplayedEagerly(step_graph.StepGraph):
    """A StepGraph whose replay runs the recorded step itself, with the gradients a real capture would write anew."""

    def prepare(self, optimizer):
        self.optimizer = optimizer
        self.lrs = [torch.tensor(float(group['lr'])) for group in optimizer.param_groups]  # no capturable on the CPU
        for group, lr in zip(optimizer.param_groups, self.lrs):
            group['lr'] = lr

    @contextmanager
    def side_stream(self):
        yield

    def capture(self, inputs, step):
        self.static = {key: value.clone() for key, value in inputs.items()}
        self.graph, self.step = True, step

    def replay(self, inputs):
        for key, value in inputs.items():
            self.static[key].copy_(value)
        self.optimizer.zero_grad(set_to_none=True)
        return self.step(self.static).clone()


def _opt(tiny_net_opt, tmp_path, **train):
    optim = {'type': 'Adam', 'lr': 1e-3, 'fused': True}
    defaults = dict(optim_g=optim, ema_decay=0.9, max_nan_steps=3,
                    scheduler={'type': 'MultiStepLR', 'milestones': [5], 'gamma': 0.5})
    return model_opt(tiny_net_opt, tmp_path, **{**defaults, **train})


def _batch(seed, gt_value=None, b=2):
    return query_batch(seed, gt_value, b)


def _train(model, batches):
    logs = []
    for it, batch in enumerate(batches, start=1):
        model.update_learning_rate(it)
        model.feed_data(batch)
        model.optimize_parameters(it)
        logs.append(dict(model.get_current_log()))
    return logs


def test_a_recorded_step_trains_as_the_eager_step(tiny_net_opt, tmp_path, monkeypatch):
    """Warm-up steps, the capture, replays, a batch of other shapes, a non-finite batch and a learning-rate change
    (the scheduler halves it from step 6): the same weights, EMA, log and learning rate as eager steps on the same
    batches."""
    monkeypatch.setattr(gaussiansr_model, 'StepGraph', ReplayedEagerly)
    monkeypatch.setattr(gaussiansr_model, 'graph_problem', lambda *args: '')
    batches = [_batch(i) for i in range(6)] + [_batch(6, b=3), _batch(7, gt_value=float('nan')), _batch(8)]
    runs = []
    for graphed in (False, True):
        torch.manual_seed(0)
        model = build_model(_opt(tiny_net_opt, tmp_path, cuda_graph=graphed))
        runs.append((model, _train(model, batches)))
    (eager, eager_logs), (graphed, graphed_logs) = runs
    assert graphed._step_graph.captured and graphed._step_graph.fits(batches[-1])
    assert not graphed._step_graph.fits(batches[6])  # three items: trained eagerly
    for a, b in zip(eager.net_g.parameters(), graphed.net_g.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    for a, b in zip(eager.net_g_ema.parameters(), graphed.net_g_ema.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert [set(log) for log in graphed_logs] == [set(log) for log in eager_logs]
    assert graphed_logs[7]['l_pix'] != graphed_logs[7]['l_pix']  # the non-finite step: skipped and logged
    assert eager.get_current_learning_rate() == [5e-4]
    assert graphed.get_current_learning_rate() == [pytest.approx(5e-4)]  # a float32 device tensor when recorded
    # the recorded step reads its learning rate from that very tensor: the scheduler must have filled it in place
    lr = graphed._step_graph.lrs[0]
    assert graphed.optimizer_g.param_groups[0]['lr'] is lr and float(lr) == pytest.approx(5e-4)


def test_a_recorded_run_saves_a_state_an_eager_run_resumes(tiny_net_opt, tmp_path, monkeypatch):
    monkeypatch.setattr(gaussiansr_model, 'StepGraph', ReplayedEagerly)
    monkeypatch.setattr(gaussiansr_model, 'graph_problem', lambda *args: '')
    model = build_model(_opt(tiny_net_opt, tmp_path, cuda_graph=True))
    _train(model, [_batch(i) for i in range(5)])
    assert isinstance(model.optimizer_g.param_groups[0]['lr'], torch.Tensor)
    model.save_training_state(0, 5)
    state = torch.load(tmp_path / '5.state', weights_only=True)
    group = state['optimizers'][0]['param_groups'][0]
    assert type(group['lr']) is float and group['lr'] == pytest.approx(1e-3) and not group.get('capturable')
    resumed = build_model(_opt(tiny_net_opt, tmp_path))
    resumed.resume_training(state)
    _train(resumed, [_batch(9)])


@pytest.mark.parametrize('train, message', [
    ({'cuda_graph': 'yes'}, "train.cuda_graph must be true, false or auto, got 'yes'"),
    ({'cuda_graph': 1}, 'train.cuda_graph must be true, false or auto, got 1'),
    ({'cuda_graph': True}, r'train.cuda_graph: it needs a CUDA device \(num_gpu > 0\)'),
])
def test_cuda_graph_option_faults(tiny_net_opt, tmp_path, train, message):
    with pytest.raises(ValueError, match=message):
        build_model(_opt(tiny_net_opt, tmp_path, **train))


def test_auto_records_where_it_can_and_trains_eagerly_elsewhere(tiny_net_opt, tmp_path, monkeypatch):
    logged = []
    monkeypatch.setattr(gaussiansr_model, 'get_root_logger',
                        lambda: types.SimpleNamespace(info=logged.append, warning=logged.append))
    model = build_model(_opt(tiny_net_opt, tmp_path, cuda_graph='auto'))  # the CPU: eager, and the log says why
    assert model._step_graph is None
    assert 'train.cuda_graph auto: the step trains eagerly (it needs a CUDA device (num_gpu > 0))' in logged
    _train(model, [_batch(0)])
    model.device, model.opt['train']['cuda_graph'] = torch.device('cuda'), 'auto'  # as on a GPU
    model._setup_step_graph()
    assert model._step_graph is not None


def test_what_a_recorded_step_cannot_follow(tiny_net_opt, tmp_path):
    cuda = torch.device('cuda')
    fused = torch.optim.Adam([torch.nn.Parameter(torch.ones(1))], fused=True)
    unfused = torch.optim.Adam([torch.nn.Parameter(torch.ones(1))])
    assert step_graph.graph_problem(cuda, False, {}, fused) == ''
    assert 'DDP' in step_graph.graph_problem(cuda, True, {}, fused)
    assert 'tau_schedule' in step_graph.graph_problem(cuda, False, {'tau_schedule': {'start': 1}}, fused)
    assert 'fused Adam' in step_graph.graph_problem(cuda, False, {}, unfused)


def test_a_network_with_a_gaussian_stream_may_record_its_step(tiny_net_opt, tmp_path):
    model = build_model(_opt(tiny_net_opt, tmp_path))
    model.device, model.opt['train']['cuda_graph'] = torch.device('cuda'), True  # as on a GPU
    model._setup_step_graph()
    assert model._step_graph is not None


def test_the_graph_keeps_the_optimizer_its_replays_write_into():
    """A replay updates the optimizer's state in place: an optimizer its caller drops must stay alive with the graph
    (the benchmark's recorded step dropped it; once the allocator had returned that memory, the replay faulted)."""
    graph = step_graph.StepGraph(torch.device('cpu'))
    param = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.Adam([param], 1e-3)
    alive = weakref.ref(optimizer)
    graph.prepare(optimizer)
    del optimizer
    gc.collect()
    assert alive() is graph.optimizer is not None


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
@pytest.mark.parametrize('amp', [None, 'bf16'])
def test_on_a_gpu_the_recorded_step_equals_eager_steps(tiny_net_opt, tmp_path, amp):
    """No Gaussians (no Gumbel draws), so both runs see the same numbers; the replays launch without a host sync."""
    net = dict(tiny_net_opt, num_gaussian_channels=0)
    batches = [{k: v.pin_memory() for k, v in _batch(i).items()} for i in range(9)]
    runs = []
    for graphed in (False, True):
        torch.manual_seed(0)
        model = build_model(dict(_opt(net, tmp_path, cuda_graph=graphed, amp=amp, max_nan_steps=10), num_gpu=1))
        _train(model, batches[:5])
        train_without_sync(model, batches[5:], 6)
        runs.append(model)
    eager, graphed = runs
    assert graphed._step_graph.captured
    for a, b in zip(eager.net_g.parameters(), graphed.net_g.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert graphed.get_current_log()['l_pix'] == pytest.approx(eager.get_current_log()['l_pix'], rel=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_on_a_gpu_a_step_through_the_splat_op_replays_after_an_earlier_graph_is_gone(tiny_net_opt, tmp_path):
    """An upsample graph recorded first, then the training step of a network with a Gaussian stream (the splat op's
    forward and backward), then the upsample graph destroyed and the cache emptied (its memory back to the driver);
    the replays must run and train (the Gumbel draws differ from eager steps, so no equality)."""
    model = build_model(dict(_opt(dict(tiny_net_opt, gabor_bands=4), tmp_path, cuda_graph=True), num_gpu=1))
    net = model.get_bare_model(model.net_g)
    lq = torch.rand(1, 3, 16, 16, device=model.device)
    net.eval()
    with torch.no_grad():
        for _ in range(upsample_graphs.STREAK):
            net.upsample(lq, (40, 40))
    assert len(net._graphs) == 1
    net.train()
    batch = {k: v.pin_memory() for k, v in _batch(0).items()}
    _train(model, [batch] * (step_graph.WARMUP_STEPS + 1))
    assert model._step_graph.captured
    net._graphs.clear()
    gc.collect()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    before = [p.detach().clone() for p in net.parameters()]
    logs = _train(model, [batch] * 5)
    torch.cuda.synchronize()
    assert all(math.isfinite(log['l_pix']) for log in logs)
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_a_resumed_optimizer_state_is_made_recordable():
    """An eager Adam keeps its step counts on the CPU, and a resumed state too; a capturable one asserts they are on
    the parameters' device: prepare moves them (a 'meta' parameter stands in for a CUDA one)."""
    param = torch.nn.Parameter(torch.zeros(2, device='meta'))
    optimizer = torch.optim.Adam([param], lr=1e-3)
    optimizer.state[param] = {'step': torch.tensor(7.0), 'exp_avg': torch.zeros(2, device='meta'),
                              'exp_avg_sq': torch.zeros(2, device='meta')}
    step_graph.StepGraph(torch.device('meta')).prepare(optimizer)
    step = optimizer.state[param]['step']
    assert step.device.type == 'meta' and step.dtype == torch.float32
    group = optimizer.param_groups[0]
    assert group['capturable'] and isinstance(group['lr'], torch.Tensor) and group['lr'].device.type == 'meta'


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_on_a_gpu_a_recorded_run_resumes_a_saved_state(tiny_net_opt, tmp_path):
    """The state a run saves (portable: step counts and learning rates as an eager run keeps them) resumes in a
    recorded run, which moves the counts back to the GPU before its first step."""
    opt = dict(_opt(tiny_net_opt, tmp_path, cuda_graph=True), num_gpu=1)
    batches = [{k: v.pin_memory() for k, v in _batch(i).items()} for i in range(6)]
    first = build_model(opt)
    _train(first, batches)
    first.save_training_state(0, 6)
    state = torch.load(tmp_path / '6.state', weights_only=True)
    resumed = build_model(opt)
    resumed.resume_training(state)
    logs = _train(resumed, batches)
    assert resumed._step_graph.captured and all(math.isfinite(log['l_pix']) for log in logs)
