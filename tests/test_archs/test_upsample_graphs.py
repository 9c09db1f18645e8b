"""GaussianSR.upsample records a CUDA graph once one shape repeats (archs/upsample_graphs.py). On the CPU a stand-in
recorder checks the policy and the wiring; on a GPU the replays are checked against the plain calls."""
import gc
from contextlib import nullcontext
from types import SimpleNamespace

import pytest
import torch

from basicsr.archs import build_network
from gaussiansr_plugin.archs import upsample_graphs
from gaussiansr_plugin.archs.upsample_graphs import MAX_GRAPHS, STREAK, UpsampleGraphs

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')


class StandIn:
    """Records by calling ``render`` (as the warm-up would) and replays by calling it again."""
    recorded = []

    def __init__(self, render, lq):
        self.render = render
        StandIn.recorded.append(tuple(lq.shape))

    def replay(self, lq):
        return self.render(lq)


@pytest.fixture(autouse=True)
def _fresh_stand_in():
    StandIn.recorded = []


def test_the_third_call_of_one_key_records_and_at_most_two_graphs_stay():
    graphs = UpsampleGraphs(record=StandIn)
    lq = torch.zeros(1, 3, 2, 2)
    results = [graphs(key, lq, lambda x: x + 1) for key in 'AAAABBBACCC']
    replayed = [r is not None for r in results]
    assert STREAK == 3 and MAX_GRAPHS == 2
    assert replayed == [False, False, True, True, False, False, True, True, False, False, True]
    # A, B, C recorded; when C came, B was the least recently replayed and was dropped
    assert len(StandIn.recorded) == 3 and len(graphs) == 2
    assert graphs('A', lq, lambda x: x + 1) is not None  # kept: replayed on its first call back
    assert graphs('B', lq, lambda x: x + 1) is None  # dropped: eager again until it repeats
    graphs.clear()
    assert len(graphs) == 0


def test_a_failed_recording_warns_once_and_stays_eager():
    def failing(render, lq):
        raise RuntimeError('operation not permitted when stream is capturing\nmore')

    graphs = UpsampleGraphs(record=failing)
    lq = torch.zeros(1, 3, 2, 2)
    with pytest.warns(UserWarning, match=r'stays eager: recording a CUDA graph failed \(operation not permitted '
                                         r'when stream is capturing\)'):
        results = [graphs('A', lq, lambda x: x) for _ in range(STREAK)]
    assert results == [None] * STREAK and graphs.failure
    assert graphs('A', lq, lambda x: x) is None


def test_upsample_replays_what_repeats_through_the_recorder(tiny_net_opt, monkeypatch):
    """The wiring of GaussianSR.upsample, with the recorder and the eligibility forced on the CPU."""
    net = build_network(tiny_net_opt).eval()
    net._graphs = UpsampleGraphs(record=StandIn)
    monkeypatch.setattr(net, '_graphable', lambda lq, size: True)
    lq = torch.rand(1, 3, 9, 8)
    with torch.no_grad():
        plain = net.render_whole(lq, (20, 17), 64)
        outs = [net.upsample(lq, (20, 17), chunk_size=64) for _ in range(4)]
        net.upsample(lq, (20, 17), chunk_size=64, tile=4, tile_overlap=2)  # tiled: never recorded
    assert StandIn.recorded == [(1, 3, 9, 8)]
    for out in outs:
        assert torch.equal(out, plain)


def test_a_replay_asks_for_no_free_memory_and_keeps_the_chunk_it_was_recorded_with(tiny_net_opt, monkeypatch):
    """The chunk is fitted to the free memory (a driver call on a GPU) by every eager call and once by the recording;
    the replays reuse it, keyed by the requested chunk."""
    net = build_network(tiny_net_opt).eval()
    net._graphs = UpsampleGraphs(record=StandIn)
    monkeypatch.setattr(net, '_graphable', lambda lq, size: True)
    fits, chunks = [], []
    monkeypatch.setattr(net, 'fit_chunk_size', lambda lq, chunk: fits.append(chunk) or chunk // 2)
    render_whole = net.render_whole
    monkeypatch.setattr(net, 'render_whole', lambda lq, size, chunk: chunks.append(chunk) or render_whole(lq, size,
                                                                                                          chunk))
    lq = torch.rand(1, 3, 9, 8)
    with torch.no_grad():
        for _ in range(STREAK + 3):
            net.upsample(lq, (20, 17), chunk_size=64)
    assert len(StandIn.recorded) == 1
    assert fits == [64] * STREAK  # two eager calls and the recording; none for the three replays
    assert chunks == [32] * (STREAK + 3)


def test_the_key_follows_every_way_the_weights_can_be_replaced_or_moved(tiny_net_opt):
    """A recorded graph reads the weights at their addresses, and the key keeps them without walking the modules at
    every call: it must still change when a weight is assigned, loaded with assign=True or converted, and stay when
    weights are loaded in place (the graph then reads the new values)."""
    net = build_network(tiny_net_opt).eval()
    lq = torch.rand(1, 3, 8, 8)

    def key():
        return net._graph_key(lq, (16, 16), 64)

    first = key()
    assert key() == first and len(first[-1]) == len(list(net.parameters())) + len(list(net.buffers()))
    net.load_state_dict({k: v + 1 for k, v in net.state_dict().items()})
    assert key() == first
    layer = next(m for m in net.decoder.modules() if isinstance(m, torch.nn.Linear))
    layer.weight = torch.nn.Parameter(layer.weight.detach().clone())
    assigned = key()
    assert assigned != first
    net.load_state_dict({k: v.clone() for k, v in net.state_dict().items()}, assign=True)
    loaded = key()
    assert loaded != assigned
    net.double()
    assert key() != loaded and key()[-1] == tuple(t.data_ptr() for m in net.modules() for t in
                                                  (*m._parameters.values(), *m._buffers.values()) if t is not None)


def test_every_recording_warms_up_on_one_side_stream_per_gpu(monkeypatch):
    """cuBLAS keeps a workspace per stream it ran on: a new side stream per recording would keep one more each time."""
    made = []

    class FakeStream:
        def __init__(self, device):
            made.append(device)

        def wait_stream(self, other):
            pass

    monkeypatch.setattr(upsample_graphs, '_SIDE_STREAMS', {})
    monkeypatch.setattr(torch.cuda, 'Stream', FakeStream)
    current = SimpleNamespace(wait_stream=lambda other: None)
    monkeypatch.setattr(torch.cuda, 'current_stream', lambda device=None: current)
    monkeypatch.setattr(torch.cuda, 'stream', lambda stream: nullcontext())
    monkeypatch.setattr(torch.cuda, 'current_device', lambda: 0)
    for device in ('cuda', 'cuda:0', torch.device('cuda', 0), 'cuda:1'):
        made.clear()
        with upsample_graphs.side_stream(device):
            pass
        assert made == ([0] if device == 'cuda' else [1] if device == 'cuda:1' else [])  # new stream once per GPU
    assert sorted(upsample_graphs._SIDE_STREAMS) == [0, 1]


def test_on_the_cpu_and_in_training_upsample_is_never_recorded(tiny_net_opt):
    net = build_network(tiny_net_opt).eval()
    lq = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert not net._graphable(lq, (16, 16))
    net.train()
    assert not net._graphable(lq, (16, 16))


@cuda
@pytest.mark.parametrize('autocast_dtype', [None, torch.bfloat16])
def test_on_a_gpu_replays_equal_the_plain_calls_and_follow_the_weights(tiny_net_opt, autocast_dtype):
    torch.manual_seed(0)
    net = build_network(tiny_net_opt).cuda().eval()
    lqs = [torch.rand(2, 3, 12, 9, device='cuda') for _ in range(5)]
    with torch.no_grad(), torch.autocast('cuda', dtype=autocast_dtype or torch.float32,
                                         enabled=autocast_dtype is not None):
        graphed = [net.upsample(lq, (30, 23), chunk_size=100) for lq in lqs]
        assert len(net._graphs) == 1 and not net._graphs.failure
        net.auto_cuda_graphs = False
        plain = [net.upsample(lq, (30, 23), chunk_size=100) for lq in lqs]
        for a, b in zip(graphed, plain):
            assert torch.equal(a, b)
        net.auto_cuda_graphs = True
        net.decoder.layers[-1].bias.add_(0.25)
        moved = net.upsample(lqs[0], (30, 23), chunk_size=100)
    assert torch.allclose(moved.float(), plain[0].float() + 0.125, atol=2e-2)  # the output is scaled by 0.5


@cuda
def test_on_a_gpu_replays_never_synchronise_and_a_progress_hook_keeps_calls_eager(tiny_net_opt):
    net = build_network(tiny_net_opt).cuda().eval()
    lq = torch.rand(1, 3, 10, 10, device='cuda')
    with torch.no_grad():
        for _ in range(STREAK):
            net.upsample(lq, (25, 25), chunk_size=64)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode('error')
        try:
            net.upsample(lq, (25, 25), chunk_size=64)
        finally:
            torch.cuda.set_sync_debug_mode('default')
        assert len(net._graphs) == 1
        handle = net.decoder.register_forward_hook(lambda *args: None)
        assert not net._graphable(lq, (25, 25))
        handle.remove()


@cuda
def test_on_a_gpu_graphs_recorded_and_dropped_keep_no_memory(tiny_net_opt):
    """After the first recording (cuBLAS's workspaces for the side and capture streams), recording and dropping more
    graphs gives their memory back: no workspace, pool or cache kept per graph."""
    net = build_network(tiny_net_opt).cuda().eval()

    def record_and_drop(side):
        lq = torch.rand(1, 3, side, side, device='cuda')
        for _ in range(STREAK + 1):
            net.upsample(lq, (2 * side, 2 * side))
        assert len(net._graphs) == 1
        net._graphs.clear()
        gc.collect()
        torch.cuda.synchronize()

    with torch.no_grad():
        record_and_drop(8)
        first = torch.cuda.memory_allocated()
        for side in (10, 12, 14, 16, 18, 20):
            record_and_drop(side)
    assert torch.cuda.memory_allocated() - first < 8 * 2**20
