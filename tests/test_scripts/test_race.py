"""scripts/race.py: the self-contained equal-budget race (tiny ours on CPU), its resume, table and figures."""
import json
import math
import os
import subprocess
import sys
from contextlib import contextmanager

import cv2
import numpy as np
import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, 'scripts'))
import plot_race  # noqa: E402
import race  # noqa: E402

TINY = ['--set', 'encoder={type: edsr-baseline, num_feat: 8, num_block: 1}', '--set', 'mlp_hidden=[16]',
        '--set', 'bank_size=4', '--set', 'num_gaussian_channels=4']
PEERS = os.path.join(ROOT, '.peers')


@pytest.fixture(scope='module', autouse=True)
def small_harness():
    """Batches of 4 x 576 queries and 120-pixel eval crops: the race's logic at a CPU test's cost."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(race, 'BATCH', 4)
        mp.setattr(race, 'SAMPLE_Q', 576)
        mp.setattr(race, 'EVAL_SIDE', 120)
        yield


@pytest.fixture(scope='module')
def photos(tmp_path_factory):
    """Two 200² training PNGs and one 240x250 held-out PNG (smooth noise)."""
    root = tmp_path_factory.mktemp('race_photos')
    rng = np.random.default_rng(0)
    for split, n, (h, w) in (('train', 2, (200, 210)), ('val', 1, (240, 250))):
        os.makedirs(root / split)
        for i in range(n):
            img = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (7, 7), 2)
            cv2.imwrite(str(root / split / f'p{i}.png'), img)
    return root


def race_args(photos, tmp, name, iters, *extra):
    return race.parse_args([*TINY, '--device', 'cpu', '--train-dir', str(photos / 'train'), '--eval-dir',
                            str(photos / 'val'), '--iters', str(iters), '--eval-at', '3,6', '--log-every', '2',
                            '--state', str(tmp / f'state_{name}'), '--out', str(tmp / f'race_{name}.json'),
                            '--save-weights', str(tmp / f'{name}.pth'), *extra])


def run_race(photos, tmp, name, iters, *extra):
    race.run(race_args(photos, tmp, name, iters, *extra), torch.device('cpu'))
    with open(tmp / f'race_{name}.json') as f:
        return json.load(f)


@pytest.fixture(scope='module')
def straight(photos, tmp_path_factory):
    """8 iterations in one go: (folder, JSON)."""
    tmp = tmp_path_factory.mktemp('straight')
    return tmp, run_race(photos, tmp, 'default', 8)


def assert_same_weights(a, b):
    sa, sb = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_json_fields_and_eval_points(straight):
    tmp, result = straight
    assert result['racer'] == 'default' and result['peer'] == 'ours' and result['variant']['bank_size'] == 4
    assert result['iterations_done'] == result['iters'] == 8 and result['finished'] and result['seed'] == 0
    assert result['eval_at'] == [3, 6, 8] and list(result['scores']) == ['3', '6', '8']
    scales = ['2', '3', '4', '2.4', '6', '12']
    assert list(result['bicubic']) == scales and all(list(s) == scales for s in result['scores'].values())
    for scores in (result['bicubic'], *result['scores'].values()):
        assert all(20 < v['psnr'] < 60 and 0 < v['ssim'] < 1 for v in scores.values())
    assert len(result['loss']) == 4 and result['loss_every'] == 2 and result['tf32'] is False
    assert result['params'] < 20000 and result['train_s'] > 0
    assert result['meta']['torch'] == torch.__version__ and result['meta']['date'].endswith('+00:00')


def test_resume_is_exact(photos, straight, tmp_path, capsys):
    """4 iterations, then a resumed run to 8: bitwise the weights, loss history and scores of the straight run."""
    first = run_race(photos, tmp_path, 'default', 4)
    assert first['iterations_done'] == 4 and list(first['scores']) == ['3', '4']
    resumed = run_race(photos, tmp_path, 'default', 8)
    assert 'resumed at iteration 4' in capsys.readouterr().out
    ref_dir, ref = straight
    assert_same_weights(tmp_path / 'default.pth', ref_dir / 'default.pth')
    assert resumed['loss'] == ref['loss']
    assert {k: resumed['scores'][k] for k in ('3', '6', '8')} == ref['scores']


def test_time_limit_pauses_then_resumes(photos, straight, tmp_path, capsys, monkeypatch):
    """A pause at iteration 5 (the clock faked) saves, writes the JSON so far and returns; the next start resumes
    to the end with the straight run's weights."""
    real = race.Race.must_pause
    monkeypatch.setattr(race.Race, 'must_pause', lambda self, *a: self.iteration == 5 or real(self, *a))
    paused = run_race(photos, tmp_path, 'default', 8, '--time-limit', '600')
    assert 'paused at iteration 5' in capsys.readouterr().out
    assert paused['iterations_done'] == 5 and not paused['finished'] and list(paused['scores']) == ['3']
    monkeypatch.setattr(race.Race, 'must_pause', real)
    done = run_race(photos, tmp_path, 'default', 8, '--time-limit', '600')
    assert 'resumed at iteration 5' in capsys.readouterr().out and done['finished']
    assert_same_weights(tmp_path / 'default.pth', straight[0] / 'default.pth')
    assert done['loss'] == straight[1]['loss']


def test_cli_pauses_before_the_time_limit(photos, tmp_path):
    """A limit too short for one iteration: the command stops cleanly (exit 0) at iteration 0, with a JSON."""
    out = tmp_path / 'race_x.json'
    cmd = [sys.executable, os.path.join(ROOT, 'scripts', 'race.py'), *TINY, '--device', 'cpu', '--train-dir',
           str(photos / 'train'), '--eval-dir', str(photos / 'val'), '--iters', '5', '--state', str(tmp_path / 's'),
           '--out', str(out), '--time-limit', '0.01']
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1] == 'paused at iteration 0'
    result = json.loads(out.read_text())
    assert result['iterations_done'] == 0 and not result['finished'] and result['scores'] == {}
    assert (tmp_path / 's' / race.CHECKPOINT).is_file()


def test_table_and_figures(straight, tmp_path, capsys, monkeypatch):
    ref_dir, ref = straight
    other = dict(ref, racer='liif', peer='liif', variant={})
    other['scores'] = {k: {s: {'psnr': v['psnr'] - 1, 'ssim': v['ssim'] - 0.01} for s, v in sc.items()}
                       for k, sc in ref['scores'].items()}
    (tmp_path / 'race_liif.json').write_text(json.dumps(other))
    paths = [str(ref_dir / 'race_default.json'), str(tmp_path / 'race_liif.json')]
    monkeypatch.setattr(sys, 'argv', ['race.py', '--table', *paths])
    race.main()
    text = capsys.readouterr().out
    assert '| racer | iteration | x2 | x3 | x4 | x2.4 | x6 | x12 | SSIM x2 |' in text
    assert '| loss, last 1k | train s | params |' in text
    assert '| default | 3 | ' in text and '| liif | 8 | ' in text and '| bicubic | - | +0.00 |' in text
    assert '| default − liif | 6 | +1.00 | +1.00 | +1.00 | +1.00 | +1.00 | +1.00 | +0.0100 |' in text
    monkeypatch.setattr(sys, 'argv', ['plot_race.py', '--curves', str(tmp_path / 'curves.png'), '--loss',
                                      str(tmp_path / 'loss.png'), *paths])
    plot_race.main()
    assert (tmp_path / 'curves.png').stat().st_size > 0 and (tmp_path / 'loss.png').stat().st_size > 0


def test_the_loss_before_an_evaluation_is_the_mean_of_the_entries_logged_in_its_span():
    result = {'loss_every': 100, 'loss': [float(i) for i in range(30)]}  # entry i: iterations 100 i + 1 ... 100 (i + 1)
    assert race.loss_before(result, 2000) == sum(range(10, 20)) / 10  # iterations 1001 ... 2000
    assert race.loss_before(result, 500) == sum(range(5)) / 5  # fewer than the span so far
    assert race.loss_before(result, 50) is None


def test_crop_photos_are_found_by_name_in_png_or_webp_and_checked_before_training(photos, tmp_path):
    import cv2
    with pytest.raises(SystemExit, match=r'--crop-photos p9: not among the photos of .*\(p0\)'):
        race_args(photos, tmp_path, 'c', 1, '--crops', str(tmp_path / 'crops'), '--crop-photos', 'p0', 'p9')
    webp = tmp_path / 'webp'
    webp.mkdir()
    cv2.imwrite(str(webp / 'p0.webp'), cv2.imread(str(photos / 'val' / 'p0.png')), [cv2.IMWRITE_WEBP_QUALITY, 101])
    assert race.crop_photo_paths(str(webp), ['p0']) == [str(webp / 'p0.webp')]


def test_crops_timing_and_bank_lr(photos, tmp_path, capsys):
    args = race_args(photos, tmp_path, 'c', 1, '--crops', str(tmp_path / 'crops'), '--crop-photos', 'p0')
    racer, _ = race.build_racer(args, torch.device('cpu'))
    race.finish(racer, args, torch.device('cpu'))
    assert (tmp_path / 'c.pth').is_file()
    assert sorted(os.listdir(tmp_path / 'crops')) == [f'p0_x4_{k}.png' for k in ('bicubic', 'hr', 'lr', 'ours')]
    assert 'p0 is smaller than a x8 crop' in capsys.readouterr().err
    plot_race.plot_crops(str(tmp_path / 'crops'), str(tmp_path / 'crops.png'))
    printed = capsys.readouterr().out
    assert 'p0_x4 ours: RGB PSNR ' in printed and 'p0_x4 bicubic: RGB PSNR ' in printed
    assert (tmp_path / 'crops.png').stat().st_size > 0
    assert race.time_iterations(args, torch.device('cpu'), 1, warmup=1) > 0
    net_groups = race.build_racer(race_args(photos, tmp_path, 'b', 1, '--bank-lr-mult', '10'),
                                  torch.device('cpu'))[1].param_groups
    rest, bank = net_groups
    assert bank['lr'] == pytest.approx(1e-3) and rest['lr'] == 1e-4 and len(bank['params']) == 1


def test_bank_balance_is_added_to_ours_loss(photos, tmp_path):
    """``--set bank_balance=W`` trains on L1 + the term: W = 0 steps exactly as without the option, W > 0 moves the
    selection head elsewhere; the returned loss (the history) is the L1 of the same forward either way."""
    batch = race.make_batch(race.load_photos(str(photos / 'train'), torch.device('cpu'), 192),
                            torch.Generator().manual_seed(0))
    heads, losses = [], []
    for extra in ([], ['--set', 'bank_balance=0'], ['--set', 'bank_balance=1.0']):
        racer, opt = race.build_racer(race_args(photos, tmp_path, 'bal', 1, *extra), torch.device('cpu'))
        losses.append(race.train_step(racer, opt, batch))
        heads.append(racer.net.head.body[0].weight.detach().clone())
    assert torch.equal(losses[0], losses[1]) and torch.equal(losses[0], losses[2])
    assert torch.equal(heads[0], heads[1]) and not torch.equal(heads[0], heads[2])


def test_batches_do_not_depend_on_the_model(photos):
    """The same seed gives the same batch, whatever was built; coord / cell / gt agree with the HR crop."""
    train = race.load_photos(str(photos / 'train'), torch.device('cpu'), 192)
    a = race.make_batch(train, torch.Generator().manual_seed(3))
    torch.manual_seed(123)
    b = race.make_batch(train, torch.Generator().manual_seed(3))
    for x, y in zip(a, b):
        assert torch.equal(torch.as_tensor(x), torch.as_tensor(y))
    side = round(a.scale * 48)
    n, q = race.BATCH, race.SAMPLE_Q
    assert a.lr.shape == (n, 3, 48, 48) and a.coord.shape == (n, q, 2) and a.gt.shape == (n, q, 3)
    assert torch.allclose(a.cell, torch.full_like(a.cell, 2 / side)) and 48 <= side <= 192
    pix = ((a.coord + 1) * side / 2 - 0.5).round()  # back to integer pixel indices
    assert torch.allclose((a.coord + 1) * side / 2 - 0.5, pix, atol=1e-3) and pix.min() >= 0 and pix.max() < side
    assert torch.equal(a.lr, (a.lr * 255).round() / 255)


@pytest.mark.skipif(not all(os.path.isdir(os.path.join(PEERS, d, 'models')) for d in race.PEER_DIRS.values()),
                    reason='peer code not in .peers/')
def test_peer_wrappers_on_cpu():
    """The peers' convention ([0, 1] in and out, the official scale tensor, chunked rendering) on a CPU, their
    ``.cuda()`` calls made no-ops; in a subprocess, which drops one peer's ``models`` before importing the other's."""
    code = f'''
import sys, torch
sys.path.insert(0, {os.path.join(ROOT, 'scripts')!r})
torch.Tensor.cuda = lambda self, *a, **k: self
import race
from gaussiansr_plugin.archs.gaussian_util import make_coord
race.PEER_CHUNK = 50
for peer in race.PEER_DIRS:
    for name in [m for m in sys.modules if m.split('.')[0] in ('models', 'utils')]:
        del sys.modules[name]
    racer = race.build_peer(peer, {PEERS!r}, torch.device('cpu'))
    lr = torch.rand(1, 3, 12, 12)
    coord = make_coord((24, 24))[None, :7]
    pred = racer.forward(lr, coord, torch.full_like(coord, 2 / 24), 2.0)
    racer.net.eval()
    with torch.no_grad():
        up = racer.upsample(lr, 24, 24)
    assert pred.shape == (1, 7, 3) and up.shape == (1, 3, 24, 24), (pred.shape, up.shape)
    assert 0 < up.mean() < 1
    print('ok', peer)
'''
    run = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    assert [line for line in run.stdout.splitlines() if line.startswith('ok ')] == ['ok gaussiansr', 'ok liif']


def test_bad_override_is_one_line():
    run = subprocess.run([sys.executable, os.path.join(ROOT, 'scripts', 'race.py'), '--set', 'radius'],
                         capture_output=True, text=True)
    assert run.returncode != 0 and run.stderr.strip() == "error: --set takes key=value, got 'radius'"


def test_score_rescored_weights_match_the_race_and_see_inference_options(photos, straight, capsys):
    tmp, result = straight
    base = [*TINY, '--device', 'cpu', '--eval-dir', str(photos / 'val'), '--score', str(tmp / 'default.pth')]
    scored = race.score_weights(race.parse_args(base), torch.device('cpu'))
    assert scored['scores'] == result['scores']['8'] and scored['bicubic'] == result['bicubic']
    free = race.score_weights(race.parse_args([*base, '--set', 'cell_clip=null']), torch.device('cpu'))
    for key in ('2', '3', '4', '2.4'):  # at or below the clip scale nothing changes
        assert free['scores'][key] == scored['scores'][key]
    assert free['scores']['12'] != scored['scores']['12']
    with pytest.raises(SystemExit):
        race.parse_args(['--score', str(tmp / 'default.pth')])  # no --eval-dir


class EagerStandIn:
    """StepGraph on the CPU: capture records the step, replay runs it on the static copies (as a replay would)."""

    def __init__(self, device):
        self.static = self.step = None

    def prepare(self, optimizer):
        pass

    @contextmanager
    def side_stream(self):
        yield

    @property
    def captured(self):
        return self.step is not None

    def capture(self, inputs, step):
        self.static, self.step = {key: value.clone() for key, value in inputs.items()}, step

    def replay(self, inputs):
        for key, value in inputs.items():
            self.static[key].copy_(value)
        return self.step(self.static).clone()


def test_recorded_steps_train_as_the_eager_steps(photos, tmp_path, monkeypatch):
    """--cuda-graph's wiring, with a stand-in for the graph: warm-up steps, the capture, then replays on static
    copies train ours exactly as plain steps on the same batches."""
    from gaussiansr_plugin.models import step_graph
    monkeypatch.setattr(step_graph, 'StepGraph', EagerStandIn)
    train = race.load_photos(str(photos / 'train'), torch.device('cpu'), 192)
    weights = []
    for graphed in (False, True):
        run = race.Race(race_args(photos, tmp_path, 'graph', 6), torch.device('cpu'))
        step = race.GraphedSteps(run, torch.device('cpu')) if graphed else (
            lambda batch, run=run: race.train_step(run.racer, run.opt, batch))
        gen = torch.Generator().manual_seed(0)
        losses = [step(race.make_batch(train, gen)) for _ in range(step_graph.WARMUP_STEPS + 3)]
        weights.append([p.detach().clone() for p in run.racer.net.parameters()])
        if graphed:
            assert step.graph.captured and step.warmup_left == 0
    assert all(torch.equal(a, b) for a, b in zip(*weights)) and all(torch.isfinite(loss) for loss in losses)


def test_cuda_graph_is_for_a_race_of_ours_on_cuda(photos, tmp_path):
    with pytest.raises(SystemExit, match='--cuda-graph needs a CUDA device'):
        race.run(race_args(photos, tmp_path, 'cpu_graph', 2, '--cuda-graph'), torch.device('cpu'))
    for extra in (['--peer', 'liif'], ['--timing', '3']):
        done = subprocess.run([sys.executable, os.path.join(ROOT, 'scripts', 'race.py'), '--cuda-graph', *extra],
                              capture_output=True, text=True)
        assert done.returncode == 2 and '--cuda-graph applies to a race of --peer ours only' in done.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_on_a_gpu_a_recorded_race_pauses_resumes_and_scores(photos, tmp_path, capsys):
    """8 recorded iterations in two runs: the second resumes (and records anew), the JSON says cuda_graph; the first
    run's end (4) is scored too, as in an eager race."""
    for iters in (4, 8):
        race.run(race_args(photos, tmp_path, 'gpu_graph', iters, '--device', 'cuda', '--cuda-graph'),
                 torch.device('cuda'))
    assert 'resumed at iteration 4' in capsys.readouterr().out
    with open(tmp_path / 'race_gpu_graph.json') as f:
        result = json.load(f)
    assert result['cuda_graph'] and result['finished'] and list(result['scores']) == ['3', '4', '6', '8']
    assert all(math.isfinite(loss) for loss in result['loss'])


def test_pairs_print_each_pairs_difference_and_their_mean(straight, tmp_path, capsys, monkeypatch):
    ref_dir, ref = straight
    paths = [str(ref_dir / 'race_default.json')]
    for name, offset in (('official', 1.0), ('ours_s1', 0.0), ('official_s1', 0.5)):
        other = dict(ref, racer=name)
        other['scores'] = {k: {s: dict(v, psnr=v['psnr'] - offset) for s, v in sc.items()}
                           for k, sc in ref['scores'].items() if k != '3' or name != 'official_s1'}
        (tmp_path / f'race_{name}.json').write_text(json.dumps(other))
        paths.append(str(tmp_path / f'race_{name}.json'))
    monkeypatch.setattr(sys, 'argv', ['race.py', '--table', *paths, '--pairs', 'default:official',
                                      'ours_s1:official_s1'])
    race.main()
    text = capsys.readouterr().out
    assert '| iteration | default − official (x2 / x3 / x4 / x2.4 / x6 / x12) | ours_s1 − official_s1 (' in text
    six = ' / '.join(['{:+.2f}'] * 6)
    assert f"| 6 | {six.format(*[1] * 6)} | {six.format(*[.5] * 6)} | {six.format(*[.75] * 6)} |" in text
    assert f"| 3 | {six.format(*[1] * 6)} | – | – |" in text  # official_s1 has no score at 3
    monkeypatch.setattr(sys, 'argv', ['race.py', '--table', *paths, '--pairs', 'default:nobody'])
    with pytest.raises(SystemExit, match='not found or malformed: nobody'):
        race.main()
    assert capsys.readouterr().out == ''


@pytest.mark.parametrize('content, message', [
    (None, 'cannot read {path}: No such file or directory'),
    ('{bad', '{path} is not JSON'),
    ('[1]', '{path} is not a result of scripts/race.py --out'),
])
def test_a_bad_result_file_is_one_error_line(tmp_path, monkeypatch, capsys, content, message):
    path = tmp_path / 'race_x.json'
    if content is not None:
        path.write_text(content)
    monkeypatch.setattr(sys, 'argv', ['race.py', '--table', str(path)])
    with pytest.raises(SystemExit) as exit_info:
        race.main()
    assert str(exit_info.value) == 'error: ' + message.format(path=path)
    assert capsys.readouterr().out == ''


@pytest.mark.parametrize('script, args', [('plot_race.py', ['--curves', 'c.png', 'broken.json']),
                                          ('plot_bench.py', ['broken.json', 'c.png']),
                                          ('bank_stats.py', ['--plot', 'c.png', 'broken.json'])])
def test_each_figure_script_refuses_a_bad_result_file_in_one_line(tmp_path, script, args):
    (tmp_path / 'broken.json').write_text('{"racer": ')
    run = subprocess.run([sys.executable, os.path.join(ROOT, 'scripts', script), *args], capture_output=True,
                         text=True, cwd=tmp_path)
    assert run.returncode == 1 and run.stderr.strip() == 'error: broken.json is not JSON', run.stderr
    assert not (tmp_path / 'c.png').exists()
