"""The training step as one CUDA graph (``train.cuda_graph: true``): forward, loss, backward, the non-finite check,
the optimizer step and the EMA update recorded once, then replayed on each new batch of the same shapes.

A small model's step is many small kernels, and launching them one by one from Python can take longer than running
them. PyTorch's whole-network capture: a few eager steps on a side stream first (cuDNN autotuning, lazy allocations),
gradients set to None before the capture (the captured backward then keeps them in the graph's own memory), a fused
Adam made capturable, and its learning rate a device tensor that the schedulers fill in place.
"""
from typing import Callable, ContextManager, Dict, List, Optional

import torch
from torch import Tensor

from ..archs.upsample_graphs import side_stream

WARMUP_STEPS = 3


def graph_problem(device: torch.device, distributed: bool, train_opt: dict, optimizer: torch.optim.Optimizer) -> str:
    """Why ``train.cuda_graph`` cannot record this run's step, or ''."""
    if device.type != 'cuda':
        return 'it needs a CUDA device (num_gpu > 0)'
    if distributed:
        return "DDP's gradient all-reduce is not recorded: train on one GPU"
    if train_opt.get('tau_schedule'):
        return 'train.tau_schedule changes the temperature every step, which a recorded step would not follow'
    if not all(group.get('fused') for group in optimizer.param_groups):
        return 'it needs the fused Adam (leave optim_g without fused: false or foreach)'
    return ''


class StepGraph:
    """One recorded training step over static copies of its inputs.

    Args:
        device (torch.device): The CUDA device of the model.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.static: Optional[Dict[str, Tensor]] = None
        self.stats: Optional[Tensor] = None
        self.graph: Optional[torch.cuda.CUDAGraph] = None
        self.lrs: List[Tensor] = []
        self.optimizer: Optional[torch.optim.Optimizer] = None

    @property
    def captured(self) -> bool:
        return self.graph is not None

    def prepare(self, optimizer: torch.optim.Optimizer) -> None:
        """Make the optimizer recordable: capturable, with each group's learning rate a device tensor, and the step
        counts of a resumed state (kept on the CPU by an eager optimizer) on their parameters' device, where a
        capturable Adam asserts they are. The graph keeps the optimizer: its replays write into the optimizer's
        state, memory the graph does not own, which an optimizer dropped by its caller would free (an illegal memory
        access at the first replay once the allocator has returned that memory to the driver)."""
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group['capturable'] = True
            for param in group['params']:
                step = optimizer.state.get(param, {}).get('step')
                if isinstance(step, Tensor) and step.device != param.device:
                    optimizer.state[param]['step'] = step.to(param.device, torch.float32)
        self.lrs = [torch.tensor(float(group['lr']), device=self.device) for group in optimizer.param_groups]
        for group, lr in zip(optimizer.param_groups, self.lrs):
            group['lr'] = lr

    def follow_lrs(self, optimizer: torch.optim.Optimizer) -> None:
        """Put a learning rate that was assigned as a number (BasicSR's warm-up does) into the recorded tensor."""
        for group, lr in zip(optimizer.param_groups, self.lrs):
            if group['lr'] is not lr:
                lr.fill_(float(group['lr']))
                group['lr'] = lr

    def side_stream(self) -> ContextManager[None]:
        """Eager steps before the capture run on a side stream, as the capture asks."""
        return side_stream(self.device)

    def capture(self, inputs: Dict[str, Tensor], step: Callable[[Dict[str, Tensor]], Tensor]) -> None:
        """Record ``step`` (static inputs -> the step's stats tensor) on copies of ``inputs``."""
        self.static = {key: value.clone() for key, value in inputs.items()}
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.stats = step(self.static)

    def fits(self, inputs: Dict[str, Tensor]) -> bool:
        """Whether ``inputs`` have the recorded keys, shapes and dtypes."""
        return self.static is not None and inputs.keys() == self.static.keys() and all(
            value.shape == self.static[key].shape and value.dtype == self.static[key].dtype
            for key, value in inputs.items())

    def replay(self, inputs: Dict[str, Tensor]) -> Tensor:
        """Run the recorded step on ``inputs``; its stats (a fresh tensor)."""
        for key, value in inputs.items():
            self.static[key].copy_(value, non_blocking=True)
        self.graph.replay()
        return self.stats.clone()


def portable_optimizer_state(optimizer: torch.optim.Optimizer) -> dict:
    """``optimizer.state_dict()`` with numbers for learning rates and ``capturable`` off, as an eager run (on any
    device) resumes it; a recorded run makes them tensors and capturable again (``StepGraph.prepare``)."""
    state = optimizer.state_dict()
    for group in state['param_groups']:
        group['lr'] = float(group['lr'])
        if 'capturable' in group:
            group['capturable'] = False
    return state
