"""MLPDecoder's fused bf16 inference path (each hidden layer one GEMM with bias and GELU in its epilogue)."""
import pytest
import torch

from gaussiansr_plugin.archs.decoder import MLPDecoder


def _decoder_and_input(device='cpu'):
    torch.manual_seed(0)
    return MLPDecoder(37, 3, (64, 64, 64)).to(device), torch.randn(2, 50, 37, device=device)


def test_the_fused_layers_compute_the_plain_ones():
    decoder, x = _decoder_and_input()
    assert not decoder.fuse_bf16  # opt-in: slower than the GEMMs and GELUs apart on an H200
    with torch.no_grad():
        torch.testing.assert_close(decoder.forward_fused(x, torch.float32), decoder.layers(x), rtol=1e-5, atol=1e-5)


def test_the_fused_layers_in_bf16_stay_within_its_rounding():
    decoder, x = _decoder_and_input()
    with torch.no_grad():
        fused = decoder.forward_fused(x, torch.bfloat16)
        assert fused.dtype == torch.bfloat16 and fused.shape == (2, 50, 3)
        torch.testing.assert_close(fused.float(), decoder.layers(x), rtol=0, atol=0.05)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_on_a_gpu_opted_in_bf16_inference_takes_the_fused_path_and_training_does_not(monkeypatch):
    decoder, x = _decoder_and_input('cuda')
    calls = []
    fused = decoder.forward_fused
    monkeypatch.setattr(decoder, 'forward_fused', lambda *args: calls.append(1) or fused(*args))
    decoder.fuse_bf16 = True  # opt-in
    with torch.no_grad():
        reference = decoder(x)
        with torch.autocast('cuda', dtype=torch.bfloat16):
            out = decoder(x)
            decoder.fuse_bf16 = False
            unfused = decoder(x)
    assert len(calls) == 1
    # tanh-form GELU and bfloat16 activations: both within bf16's rounding of the fp32 output
    torch.testing.assert_close(out.float(), reference, rtol=0, atol=0.05)
    torch.testing.assert_close(out.float(), unfused.float(), rtol=0, atol=0.05)
    decoder.fuse_bf16 = True
    with torch.autocast('cuda', dtype=torch.bfloat16):
        decoder(x).float().sum().backward()
    assert len(calls) == 1 and decoder.layers[0].weight.grad is not None
