"""scripts/bench.py (CPU sanity run) and scripts/plot_bench.py produce what docs/benchmarks.md is made from."""
import gc
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, 'scripts'))
import bench  # noqa: E402

needs_cxx = pytest.mark.skipif(not shutil.which(os.environ.get('CXX', 'g++')),
                               reason="Inductor's CPU backend needs a C++ compiler")


def test_bench_cpu_json_and_table(tmp_path):
    out = tmp_path / 'bench.json'
    cmd = [sys.executable, os.path.join(ROOT, 'scripts', 'bench.py'), '--device', 'cpu', '--reps', '1', '--warmup', '0',
           '--max-hr', '64', '--no-train', '--cuda-graph', '--json', str(out)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(out.read_text())
    rows = result['inference']
    assert [(r['lr'], r['hr'], r['precision']) for r in rows] == [(32, 64, 'fp32'), (32, 64, 'bf16')]
    assert all(r['ms'] > 0 and not r['graph'] and not r['eager'] for r in rows)  # CUDA-only variants skipped on CPU
    assert result['train'] == [] and '| 32->64 x2 |' in run.stdout and '| case | fp32 ms |' in run.stdout
    # the limit's FLOPs: the decoder's matmuls 68-256-256-256-256-3, and EDSR-baseline's 34 3x3 convolutions (head,
    # 16 blocks of two, body end) plus the selection head per LR pixel
    edsr = 9 * 64 * (3 + 33 * 64)
    assert result['flops']['per_query'] == 2 * (68 * 256 + 3 * 256 * 256 + 256 * 3)
    assert 2 * edsr < result['flops']['per_lr_px'] < 2.1 * edsr and '| limit ms | fastest / limit |' in run.stdout


@needs_cxx
def test_bench_compiled_query_rows(tmp_path):
    """``--compile`` adds fp32 and bf16 rows timed with the query compiled by Inductor (a compile failure would be an
    ``error`` row, not a time)."""
    out = tmp_path / 'bench.json'
    cmd = [sys.executable, os.path.join(ROOT, 'scripts', 'bench.py'), '--device', 'cpu', '--reps', '1', '--warmup', '1',
           '--max-hr', '64', '--no-train', '--compile', '--json', str(out)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=400)
    assert run.returncode == 0, run.stderr[-2000:]
    rows = json.loads(out.read_text())['inference']
    assert [(r['precision'], r['compiled']) for r in rows] == [('fp32', False), ('bf16', False),
                                                               ('fp32', True), ('bf16', True)]
    assert all(r.get('ms', 0) > 0 for r in rows), rows
    assert '| fp32 compiled ms |' in run.stdout


def test_profile_train_step_cpu_smoke():
    cmd = [sys.executable, os.path.join(ROOT, 'scripts', 'profile_train_step.py'), '--device', 'cpu', '--steps', '1',
           '--rows', '5', '--batch', '2', '--queries', '64']
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert '## float32' in run.stdout and '## bfloat16' in run.stdout
    assert run.stdout.count('Self CPU time total') == 2 and 'convolution' in run.stdout


def test_plot_bench_from_recorded_json(tmp_path):
    png = tmp_path / 'scaling.png'
    subprocess.run([sys.executable, os.path.join(ROOT, 'scripts', 'plot_bench.py'),
                    os.path.join(ROOT, 'docs', 'logs', 'model_h200_2026-11-29', 'bench.json'), str(png)], check=True)
    assert png.stat().st_size > 10000


def run_query_parts(tmp_path, *extra, timeout=300) -> tuple:
    """bench_query_parts.py on the CPU with one repetition: (its JSON, its stdout)."""
    out = tmp_path / 'parts.json'
    cmd = [sys.executable, os.path.join(ROOT, 'scripts', 'bench_query_parts.py'), '--device', 'cpu', '--reps', '1',
           '--inner', '1', '--json', str(out), *extra]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(out.read_text()), run.stdout


def test_bench_query_parts_cpu_smoke(tmp_path):
    result, stdout = run_query_parts(tmp_path, '--lr', '12', '--scale', '3', '--chunk-size', '300',
                                     '--set', 'gabor_bands=4')
    assert result['variant'] == {'gabor_bands': 4}
    assert result['hr'] == 36 and result['block_queries'] == 300 and result['blocks'] == 5  # 1296 queries
    parts = {r['part']: r for r in result['parts']}
    splat = parts['splat (maps prepared once per image)']
    assert splat['ms_per_image'] == 5 * splat['ms_per_block'] > 0
    assert parts['decoder matmuls only fp32']['tflops'] > 0 and '| upsample (whole image, eager) |' in stdout


@needs_cxx
def test_bench_query_parts_times_the_compiled_decoder(tmp_path):
    result, _ = run_query_parts(tmp_path, '--lr', '8', '--scale', '2', '--chunk-size', '256',
                                '--compile-decoder', 'default', timeout=400)
    parts = {r['part']: r for r in result['parts']}
    assert parts['decoder TF32, torch.compile default']['ms_per_block'] > 0
    assert parts['decoder TF32, torch.compile default']['tflops'] > 0
    assert parts['decoder bf16 autocast, torch.compile default']['ms_per_block'] > 0


def test_bench_splat_cpu_smoke(tmp_path):
    out = tmp_path / 'splat.json'
    cmd = [sys.executable, os.path.join(ROOT, 'scripts', 'bench_splat.py'), '--device', 'cpu', '--runs', '1',
           '--warmup', '0', '--json', str(out)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(out.read_text())
    meta = result['meta']
    assert meta['launch_us'] > 0 and meta['queued_launch_us'] > 0 and meta['copy_bandwidth'] > 0
    assert {(r['backend'], r['passes']) for r in result['rows']} == {('reference', 'fwd'), ('reference', 'fwd+bwd')}
    assert all(r['x_floor'] > 1 for r in result['rows']) and 'One-element add_ on cpu' in run.stdout


def test_bench_peers_times_a_racer_as_bench_times_ours(monkeypatch, capsys):
    """The peers themselves need CUDA (their code calls .cuda()); a tiny model of ours stands in for one here."""
    sys.path.insert(0, os.path.join(ROOT, 'scripts'))
    import bench
    import bench_peers
    import race
    import torch
    tiny = {'encoder': {'type': 'edsr-baseline', 'num_feat': 8, 'num_block': 1}, 'mlp_hidden': [16], 'bank_size': 4,
            'num_gaussian_channels': 4}
    racer, _ = race.build_ours(tiny, torch.device('cpu'), 1.0)
    rows = bench_peers.bench_peer_inference(racer, torch.device('cpu'), [(16, 2), (12, 3)], warmup=0, reps=1,
                                            precision='tf32')
    assert [(r['lr'], r['hr']) for r in rows] == [(16, 32), (12, 36)] and all(r['ms'] > 0 for r in rows)
    train = bench_peers.bench_peer_train(racer, torch.device('cpu'), warmup=0, reps=1, batch=2, q=64)
    assert train['ms'] > 0 and train['queries'] == 64
    table = bench.markdown({'device_name': 'cpu', 'torch': torch.__version__, 'date': 'today', 'inference': rows,
                            'train': [train]})
    assert '| case | tf32 ms | tf32 GiB |' in table and '| 16->32 x2 |' in table
    assert '| train step B2 48² 64q x4 (float32) |' in table
    monkeypatch.setattr(sys, 'argv', ['bench_peers.py', '--peer', 'nope'])
    with pytest.raises(SystemExit) as exc:
        bench_peers.main()
    assert exc.value.code == 2 and 'invalid choice' in capsys.readouterr().err


def test_bench_host_times_the_host_path_of_a_replayed_upsample(tmp_path):
    import bench_host
    out = tmp_path / 'host.json'
    result = bench_host.main(['--lr', '16', '--scale', '2', '--number', '5', '--repeat', '3', '--set',
                              'gabor_bands=4', '--json', str(out)])
    assert json.loads(out.read_text()) == result and result['hr'] == 32 and result['variant'] == {'gabor_bands': 4}
    assert 0 < result['graph_key_us'] < result['upsample_us'] and result['host_us'] > 0
    # the encoder alone dispatches 37 convolutions; the reference splat is counted apart
    assert result['operators']['outside_the_splat'] > 37 and result['operators']['splat_reference'] > 0
    # a training step runs the encoder's convolutions forward and backward, the splat's reference both ways
    steps = result['train_step_operators']
    assert steps['outside_the_splat'] > 2 * result['operators']['outside_the_splat'] and steps['splat_reference'] > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_on_a_gpu_the_recorded_bench_step_replays_after_the_cache_is_emptied():
    """The bench's recorded step drops its optimizer once recorded; the graph must keep it (its replays write into
    the optimizer's state), or the replay faults once emptying the cache has returned that memory to the driver."""
    from basicsr.utils.registry import ARCH_REGISTRY
    device = torch.device('cuda')
    net = ARCH_REGISTRY.get('GaussianSR')(num_gaussian_channels=0).to(device).train()
    replay = bench.graphed_train_step(list(net.parameters()), net, device, torch.float32, 4.0, 2, 256)
    gc.collect()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    before = [p.detach().clone() for p in net.parameters()]
    for _ in range(3):
        replay()
    torch.cuda.synchronize()
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_a_bench_train_row_trains_a_copy_and_leaves_the_net_as_it_was():
    from basicsr.utils.registry import ARCH_REGISTRY
    net = ARCH_REGISTRY.get('GaussianSR')(num_gaussian_channels=4).eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    row = bench.bench_train(net, torch.device('cpu'), torch.float32, 0, 2, batch=1, q=16)
    assert row['ms'] > 0 and not net.training
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_bench_bicubic_times_each_form_and_puts_the_arch_back(tmp_path):
    import bench_bicubic
    import gaussiansr_plugin.archs.gaussiansr_arch as gaussiansr_arch
    default = gaussiansr_arch.sample_bicubic
    out = tmp_path / 'grid.json'
    rows = bench_bicubic.main(['--form', 'grid_sample', '--device', 'cpu', '--warmup', '0', '--reps', '1',
                               '--batch', '1', '--queries', '16', '--set', 'num_gaussian_channels=4', '--json',
                               str(out)])
    assert json.loads(out.read_text()) == rows and gaussiansr_arch.sample_bicubic is default
    assert [(r['form'], r['dtype'], r['graph']) for r in rows] == [('grid_sample', 'float32', False),
                                                                   ('grid_sample', 'bfloat16', False)]
    assert all(r['ms'] > 0 for r in rows)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_on_a_gpu_the_bench_records_its_step_after_eager_rows():
    """The bench's rows in its order, eager then recorded, on one net: the recorded row must capture (it failed when
    the rows shared the net that the eager rows had trained)."""
    from basicsr.utils.registry import ARCH_REGISTRY
    device = torch.device('cuda')
    net = ARCH_REGISTRY.get('GaussianSR')(gabor_bands=4, kernel_refine=True, head_input='all').to(device)
    rows = [bench.bench_train(net, device, torch.float32, 2, 3, batch=2, q=256, graph=graph) for graph in (False, True)]
    assert all('error' not in row and row['ms'] > 0 for row in rows), rows


def test_the_benched_step_adds_the_balance_term_as_training_does():
    """With ``bank_balance`` the step takes the network's term into its loss (GaussianSRModel does): the network then
    holds no finished step's autograd graph."""
    from basicsr.utils.registry import ARCH_REGISTRY
    net = ARCH_REGISTRY.get('GaussianSR')(num_gaussian_channels=4, bank_balance=0.5).train()
    params = list(net.parameters())
    step = bench.train_step(params, net, torch.device('cpu'), torch.float32, batch=1, q=16)
    step()
    assert net.take_balance_loss() is None
