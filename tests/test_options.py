"""Every yml in options/ parses as BasicSR reads it, names registered classes and builds its network."""
import glob
import os
import subprocess
import sys

import pytest
import yaml

from basicsr.archs import build_network
from basicsr.utils.options import ordered_yaml
from basicsr.utils.registry import DATASET_REGISTRY, MODEL_REGISTRY
from gaussiansr_plugin.models.schedules import resolve_crop_border

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPTIONS = sorted(glob.glob(os.path.join(ROOT, 'options', '*.yml')))


@pytest.mark.parametrize('path', OPTIONS, ids=os.path.basename)
def test_option_file(path):
    with open(path) as f:
        opt = yaml.load(f, Loader=ordered_yaml()[0])
    assert opt['model_type'] in MODEL_REGISTRY
    for phase, dataset in opt['datasets'].items():
        assert dataset['type'] in DATASET_REGISTRY, (phase, dataset['type'])
        if phase.startswith('test') or phase.startswith('val'):
            assert float(dataset['scale']) > 1 or dataset['type'] != 'ArbitraryScaleTestDataset'
    if 'test' in os.path.basename(path):
        assert 'scale' not in opt, 'a top-level scale would overwrite every dataset scale'
        assert opt['val'].get('suffix', 'missing') is None
    if 'swinir' not in path:  # SwinIR-classical is large; its encoder is tested small in test_archs
        net = build_network(opt['network_g'])
        assert sum(p.numel() for p in net.parameters()) > 0


def test_paper_setting():
    with open(os.path.join(ROOT, 'options', 'gaussiansr_x4.yml')) as f:
        opt = yaml.load(f, Loader=ordered_yaml()[0])
    train = opt['datasets']['train']
    assert (train['lq_size'], train['scale_min'], train['scale_max'], train['sample_q']) == (48, 1, 4, 2304)
    assert train['batch_size_per_gpu'] == 16 and train['io_backend']['type'] == 'lmdb'
    assert opt['train']['optim_g']['lr'] == 1e-4 and opt['train']['scheduler']['gamma'] == 0.5
    iters_per_epoch = 800 * train['dataset_enlarge_ratio'] // 16
    assert opt['train']['total_iter'] == 2000 * iters_per_epoch
    assert opt['train']['scheduler']['milestones'][0] == 200 * iters_per_epoch


def test_test_ymls_are_generated(tmp_path):
    """options/test_*.yml are exactly what scripts/make_test_options.py writes."""
    subprocess.run([sys.executable, os.path.join(ROOT, 'scripts', 'make_test_options.py')], cwd=tmp_path, check=True)
    for path in glob.glob(str(tmp_path / 'options' / '*.yml')):
        with open(path) as f, open(os.path.join(ROOT, 'options', os.path.basename(path))) as g:
            assert f.read() == g.read(), os.path.basename(path)


@pytest.mark.parametrize('protocol', ['a', 'b'])
def test_benchmark_ymls_cover_the_paper_protocol(protocol):
    """Every set (General100 too) at x2-x4, the non-integer scales of the paper's Table 2 and x6-x12; LR files only at
    integer in-training scales of protocol A; BasicSR's sorted key order is the order of the yml."""
    with open(os.path.join(ROOT, 'options', f'test_gaussiansr_benchmarks_protocol_{protocol}.yml')) as f:
        opt = yaml.load(f, Loader=ordered_yaml()[0])
    datasets = list(opt['datasets'].items())
    assert [key for key, _ in datasets] == sorted(opt['datasets'])
    names = [d['name'] for _, d in datasets]
    for name in ('Set5', 'Set14', 'B100', 'Urban100', 'Manga109', 'General100'):
        assert [n for n in names if n.startswith(name + '_')] == [
            f'{name}_x{s}' for s in (2, 3, 4, 1.5, 2.4, 3.6, 6, 8, 12)]
    for _, d in datasets:
        assert ('dataroot_lq' in d) == (protocol == 'a' and d['scale'] in (2, 3, 4)), d['name']
    assert opt['val']['metrics']['psnr_y']['crop_border'] == 'scale'
    assert resolve_crop_border('scale', 2.4) == 3 and resolve_crop_border('scale', 3) == 3
