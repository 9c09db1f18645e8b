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
