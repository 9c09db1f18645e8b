"""GraphedUpsample replays the plain upsample exactly, and the query path never waits for the GPU (CUDA only)."""
import pytest
import torch

from basicsr.archs import build_network
from gaussiansr_plugin.inference.cuda_graph import GraphedUpsample

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')


def test_refuses_cpu_inputs_and_training_mode(tiny_net_opt):
    net = build_network(tiny_net_opt)
    with pytest.raises(ValueError, match='eval mode'):
        GraphedUpsample(net)
    with pytest.raises(ValueError, match='CUDA input'):
        GraphedUpsample(net.eval())(torch.rand(1, 3, 8, 8), (16, 16))


@cuda
@pytest.mark.parametrize('autocast_dtype', [None, torch.bfloat16])
def test_replay_equals_plain_call(tiny_net_opt, autocast_dtype):
    torch.manual_seed(0)
    net = build_network(tiny_net_opt).cuda().eval()
    graphed = GraphedUpsample(net, chunk_size=100, autocast_dtype=autocast_dtype)
    for lq, size in [(torch.rand(2, 3, 12, 9, device='cuda'), (30, 23)),
                     (torch.rand(2, 3, 12, 9, device='cuda'), (30, 23)),  # same key: a replay on new pixels
                     (torch.rand(1, 3, 7, 7, device='cuda'), (21, 21))]:
        with torch.no_grad(), torch.autocast('cuda', dtype=autocast_dtype or torch.float32,
                                             enabled=autocast_dtype is not None):
            plain = net.upsample(lq, size, chunk_size=100)
        assert torch.equal(graphed(lq, size), plain)
    assert len(graphed._graphs) == 2


@cuda
def test_replay_follows_weight_updates(tiny_net_opt):
    net = build_network(tiny_net_opt).cuda().eval()
    graphed = GraphedUpsample(net)
    lq = torch.rand(1, 3, 8, 8, device='cuda')
    before = graphed(lq, (16, 16))
    with torch.no_grad():
        net.decoder.layers[-1].bias.add_(0.25)
    assert torch.allclose(graphed(lq, (16, 16)), before + 0.125, atol=1e-5)  # the output is scaled by 0.5


@cuda
def test_upsample_never_synchronises(tiny_net_opt):
    """No host-device copy on the query path: each one would stall the CPU until the GPU queue drains."""
    net = build_network(tiny_net_opt).cuda().eval()
    lq = torch.rand(1, 3, 10, 10, device='cuda')
    with torch.no_grad():
        net.upsample(lq, (25, 25), chunk_size=64)  # first call: loads the splat extension
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode('error')
        try:
            net.upsample(lq, (25, 25), chunk_size=64)
            net.upsample(lq, (25, 25), chunk_size=64, tile=4, tile_overlap=2)
        finally:
            torch.cuda.set_sync_debug_mode('default')


def test_profile_times_single_images_without_the_automatic_graphs(tiny_net_opt, monkeypatch):
    """``gaussiansr profile`` repeats one call: it reports what one image costs, so the replays stay off."""
    from gaussiansr_plugin.inference import profiling
    net = build_network(tiny_net_opt).eval()
    seen = []
    real_render = profiling.render
    monkeypatch.setattr(profiling, 'render', lambda net, *args: seen.append(net.auto_cuda_graphs) or
                        real_render(net, *args))
    cost = profiling.profile_scale(net, torch.rand(1, 3, 8, 8), 2.0, repeats=2)
    assert cost.size == (16, 16) and seen and not any(seen) and net.auto_cuda_graphs
