"""scripts/export_weights.py: a training's network checkpoint as a release file (EMA weights and the options)."""
import os
import sys

import pytest
import torch

from gaussiansr_plugin.archs.gaussiansr_arch import GaussianSR
from gaussiansr_plugin.inference.checkpoint import load_model

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', 'scripts'))
import export_weights  # noqa: E402


@pytest.fixture
def training_checkpoint(tmp_path, tiny_net_opt):
    """What GaussianSRModel saves: params, params_ema, network_g, output_options."""
    torch.manual_seed(0)
    net, ema = (GaussianSR(**{k: v for k, v in tiny_net_opt.items() if k != 'type'}).eval() for _ in range(2))
    path = tmp_path / 'net_g_100.pth'
    torch.save({'params': net.state_dict(), 'params_ema': ema.state_dict(), 'network_g': tiny_net_opt,
                'output_options': ema.output_options()}, path)
    return path, ema


def test_the_release_file_holds_the_ema_weights_and_loads_alone(training_checkpoint, tmp_path, capsys):
    source, ema = training_checkpoint
    target = tmp_path / 'release.pth'
    export_weights.main([str(source), str(target)])
    assert f'{target}: the params_ema weights of {source}' in capsys.readouterr().out
    saved = torch.load(target, weights_only=True)
    assert set(saved) == {'params_ema', 'network_g', 'output_options'}
    for name, value in ema.state_dict().items():
        assert torch.equal(saved['params_ema'][name], value)
    lq = torch.rand(1, 3, 9, 11)
    with torch.no_grad():
        torch.testing.assert_close(load_model(str(target)).net.upsample(lq, (18, 22)), ema.upsample(lq, (18, 22)))


@pytest.mark.parametrize('drop, message', [('network_g', 'records no network_g'),
                                           ('output_options', 'records no output_options')])
def test_a_checkpoint_without_its_options_is_refused_and_nothing_written(training_checkpoint, tmp_path, capsys,
                                                                         drop, message):
    source, _ = training_checkpoint
    checkpoint = torch.load(source, weights_only=True)
    del checkpoint[drop]
    torch.save(checkpoint, source)
    target = tmp_path / 'release.pth'
    with pytest.raises(SystemExit, match=f'^error: .*{message}') as exit_info:
        export_weights.main([str(source), str(target)])
    assert exit_info.value.code != 0 and '\n' not in str(exit_info.value.code)
    assert not target.exists()


def test_a_missing_source_is_one_error_line(tmp_path):
    with pytest.raises(SystemExit, match='^error: checkpoint not found: '):
        export_weights.main([str(tmp_path / 'none.pth'), str(tmp_path / 'release.pth')])
    assert not (tmp_path / 'release.pth').exists()


def test_evaluate_scores_a_release_file_at_each_precision(training_checkpoint, tmp_path, photo_dirs, monkeypatch):
    """The model card's figures: scripts/evaluate.py on an exported file, fp32 and bf16 (on the CPU bf16 autocast
    covers the matmuls), gains over bicubic recorded with the precision."""
    import json

    import evaluate
    source, _ = training_checkpoint
    target = tmp_path / 'release.pth'
    export_weights.main([str(source), str(target)])
    results = {}
    for precision in ('fp32', 'bf16'):
        out = tmp_path / f'eval_{precision}.json'
        monkeypatch.setattr(sys, 'argv', ['evaluate.py', '--model', str(target), '--data', str(photo_dirs / 'val'),
                                          '--scales', '2', '3.5', '--device', 'cpu', '--precision', precision,
                                          '--json', str(out)])
        evaluate.main()
        results[precision] = json.loads(out.read_text())
    assert results['bf16']['precision'] == 'bf16' and set(results['fp32']['results']) == {'2', '3.5'}
    for scale in ('2', '3.5'):
        fp32, bf16 = results['fp32']['results'][scale], results['bf16']['results'][scale]
        assert fp32['bicubic_psnr'] == bf16['bicubic_psnr'] and abs(fp32['psnr'] - bf16['psnr']) < 0.5
