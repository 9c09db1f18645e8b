"""splat_colour: the Gaussians also splat the normalised LR colours, three more channels the decoder reads."""
import pytest
import torch

from basicsr.archs import build_network
from gaussiansr_plugin.ops.splat import splat


def test_the_colours_are_splatted_with_each_pixels_gaussian_and_reach_the_decoder(tiny_net_opt):
    torch.manual_seed(0)
    net = build_network(dict(tiny_net_opt, gabor_bands=2, splat_colour=True)).eval()
    plain = build_network(dict(tiny_net_opt, gabor_bands=2)).eval()
    assert net.splatted_channels == plain.splatted_channels + 3
    assert net.decoder.layers[0].in_features == plain.decoder.layers[0].in_features + 3
    lq = torch.rand(1, 3, 9, 8)
    coord = torch.rand(1, 30, 2) * 2 - 1
    seen = []
    net.decoder.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    with torch.no_grad():
        feat = net.encode(lq)
        maps, sigma, rho, opacity = net.splat_maps(lq, feat, net.gaussians(feat))
        torch.testing.assert_close(maps[:, -3:], net.normalize(lq))
        colours = splat(net.normalize(lq), sigma, rho, opacity, coord, net.radius)
        out = net.query(lq, feat, net.gaussians(feat), coord, torch.full((1, 30, 2), 0.1))
    assert out.shape == (1, 30, 3)
    splatted_end = net.num_gaussian_channels + 2 * 2 + 3  # features, Gabor bands, colours
    torch.testing.assert_close(seen[0][..., splatted_end - 3:splatted_end], colours)


def test_the_colours_train(tiny_net_opt):
    net = build_network(dict(tiny_net_opt, splat_colour=True)).train()
    lq = torch.rand(2, 3, 8, 8)
    coord, cell = torch.rand(2, 20, 2) * 2 - 1, torch.full((2, 20, 2), 0.1)
    net(lq, coord, cell).square().mean().backward()
    ng = net.num_gaussian_channels
    colour_columns = net.decoder.layers[0].weight.grad[:, ng:ng + 3]  # the decoder reads them after the features
    assert colour_columns.abs().sum() > 0 and net.bank.raw.grad.abs().sum() > 0


@pytest.mark.parametrize('options, message', [
    ({'splat_colour': 'yes'}, "splat_colour must be true or false, got 'yes'"),
    ({'splat_colour': True, 'num_gaussian_channels': 0}, r'splat_colour needs a Gaussian bank'),
])
def test_bad_splat_colour(tiny_net_opt, options, message):
    with pytest.raises(ValueError, match=message):
        build_network(dict(tiny_net_opt, **options))
