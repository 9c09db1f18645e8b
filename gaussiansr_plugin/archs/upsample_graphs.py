"""Whole-image upsampling replayed from CUDA graphs once calls of one shape repeat.

At small sizes the GPU runs each of the ~100 kernels of an upsample faster than Python launches the next, so the
launches are most of the latency. A CUDA graph records them once and replays them with one call; the replay runs the
very kernels of the plain call on the same inputs, so its output is bitwise equal. Recording costs two warm-up calls
and the capture, and the graph keeps a private memory pool as large as one call's peak, so ``GaussianSR.upsample``
records only what repeats: the third consecutive call with one key (input shape, output size, chunk, precision,
weights' storage), at most ``MAX_GRAPHS`` graphs, outputs of at most ``MAX_GRAPH_PIXELS`` pixels (beyond, the GPU is
busy for long enough that launches do not matter). Frames, tiles of one size and benchmarks replay; a validation
set of photos of different sizes runs eagerly, as before.
"""
import warnings
from collections import OrderedDict
from contextlib import contextmanager
from typing import Callable, Dict, Hashable, Iterator, List, Optional, Tuple

import torch
from torch import Tensor, nn

from ..errors import first_line

STREAK = 3  # calls with one key, the last of which records
MAX_GRAPHS = 2
MAX_GRAPH_PIXELS = 1 << 21
_WARMUP_CALLS = 2  # cuDNN autotuning, lazy allocations and the splat extension's first load happen before capture

Render = Callable[[Tensor], Tensor]


_SIDE_STREAMS: Dict[int, 'torch.cuda.Stream'] = {}


@contextmanager
def side_stream(device: torch.device) -> Iterator[None]:
    """The eager calls before a CUDA-graph capture run on a side stream, as the capture asks (here and in
    ``models/step_graph.StepGraph``): one stream per GPU for every recording. cuBLAS keeps a workspace (tens of MiB)
    for each stream it has run on, so a new stream per recording kept one more workspace with each graph recorded
    (the bench's peak memory grew ~35 MB with each)."""
    index = torch.device(device).index
    index = torch.cuda.current_device() if index is None else index
    side = _SIDE_STREAMS.get(index)
    if side is None:
        side = _SIDE_STREAMS[index] = torch.cuda.Stream(index)
    side.wait_stream(torch.cuda.current_stream(index))
    with torch.cuda.stream(side):
        yield
    torch.cuda.current_stream(index).wait_stream(side)


_registrations = [0]  # parameters, buffers and submodules registered by any module so far (torch's global hooks)


def _count_registration(*_args) -> None:
    _registrations[0] += 1


for _register in (nn.modules.module.register_module_parameter_registration_hook,
                  nn.modules.module.register_module_buffer_registration_hook,
                  nn.modules.module.register_module_module_registration_hook):
    _register(_count_registration)


class TensorAddresses:
    """``addresses(module)``: the addresses of every parameter and buffer of ``module``, which a recorded graph reads
    in place (a new key when a weight is replaced or moved). Runs on every ``upsample``: the tensors are listed once
    and again only after a registration anywhere (an assigned parameter, a new submodule, ``load_state_dict(...,
    assign=True)``) or ``forget()`` (``GaussianSR._apply``: ``.to()`` replaces the buffers without registering them);
    a walk of the modules at each call cost ~90 µs of host time per upsample."""

    def __init__(self):
        self._tensors: List[Tensor] = []
        self._listed_at = -1

    def forget(self) -> None:
        self._tensors, self._listed_at = [], -1

    def __call__(self, module: nn.Module) -> Tuple[int, ...]:
        if self._listed_at != _registrations[0]:
            self._tensors = [t for m in module.modules() for t in (*m._parameters.values(), *m._buffers.values())
                             if t is not None]
            self._listed_at = _registrations[0]
        return tuple(t.data_ptr() for t in self._tensors)


class GraphReplay:
    """A recorded ``render`` over a static copy of its input: ``replay(lq)`` -> a fresh output tensor."""

    def __init__(self, render: Render, lq: Tensor):
        self.static_in = lq.clone()
        # autocast's weight-cast cache would hand the graph casts made before the capture and freed after it
        autocast = torch.autocast('cuda', dtype=torch.get_autocast_dtype('cuda'),
                                  enabled=torch.is_autocast_enabled('cuda'), cache_enabled=False)
        with side_stream(lq.device), autocast:
            for _ in range(_WARMUP_CALLS):
                render(self.static_in)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph), autocast:
            self.static_out = render(self.static_in)

    def replay(self, lq: Tensor) -> Tensor:
        self.static_in.copy_(lq)
        self.graph.replay()
        return self.static_out.clone()


class UpsampleGraphs:
    """The recording policy of ``GaussianSR.upsample`` (module docstring).

    Args:
        record (callable): ``(render, lq) -> replay object`` with ``.replay(lq)``. Default: ``GraphReplay``; tests
            pass a stand-in that runs on the CPU.
    """

    def __init__(self, record: Callable[[Render, Tensor], GraphReplay] = GraphReplay):
        self._record = record
        self._replays: 'OrderedDict[Hashable, GraphReplay]' = OrderedDict()
        self._last_key: Optional[Hashable] = None
        self._streak = 0
        self.failure = ''  # why recording stopped for good: the first capture error

    def __len__(self) -> int:
        return len(self._replays)

    def __call__(self, key: Hashable, lq: Tensor, render: Render) -> Optional[Tensor]:
        """``render(lq)`` replayed when ``key`` has repeated enough, else None (the caller renders eagerly)."""
        if self.failure:
            return None
        self._streak = self._streak + 1 if key == self._last_key else 1
        self._last_key = key
        replay = self._replays.get(key)
        if replay is None:
            if self._streak < STREAK:
                return None
            try:
                replay = self._record(render, lq)
            except RuntimeError as err:  # a kernel that cannot be captured: stay eager from now on
                self.failure = first_line(err)
                warnings.warn(f'GaussianSR.upsample stays eager: recording a CUDA graph failed ({self.failure})')
                return None
            self._replays[key] = replay
            while len(self._replays) > MAX_GRAPHS:
                self._replays.popitem(last=False)
        self._replays.move_to_end(key)
        return replay.replay(lq)

    def clear(self) -> None:
        """Drop every graph and its memory pool."""
        self._replays.clear()
        self._last_key, self._streak = None, 0
