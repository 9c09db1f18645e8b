"""Training-time helpers of GaussianSRModel: Gumbel temperature schedule, crop-border rules, divergence stop."""
import math
from typing import Union


def tau_at(schedule: dict, current_iter: int) -> float:
    """Gumbel-softmax temperature at ``current_iter``: ``linear`` or ``exp``, ``start`` to ``end`` over ``iters``."""
    start = float(schedule.get('start', 1.0))
    end = float(schedule.get('end', start))
    iters = max(1, int(schedule.get('iters', 1)))
    t = min(1.0, max(0.0, current_iter / iters))
    kind = schedule.get('type', 'linear')
    if kind == 'linear':
        return start + (end - start) * t
    if kind == 'exp':
        return start * (end / start)**t
    raise ValueError(f"tau_schedule.type must be 'linear' or 'exp', got {kind!r}")


def resolve_crop_border(value: Union[int, str], scale: float) -> int:
    """``crop_border`` as an int, or ``scale`` / ``scale+N`` meaning ceil(scale) (+ N)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    text = str(value).replace(' ', '')
    if text == 'scale':
        return math.ceil(scale - 1e-9)
    if text.startswith('scale+') and text[6:].isdigit():
        return math.ceil(scale - 1e-9) + int(text[6:])
    raise ValueError(f"crop_border must be an int, 'scale' or 'scale+N', got {value!r}")
