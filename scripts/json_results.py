"""The JSON result files that the scripts write (``race.py --out``, ``bench.py --json``, ``bank_stats.py --json``),
read back for tables and figures: a missing, unreadable or malformed file ends the script with one error line."""
import json
from typing import Iterable


def read_result(path: str, keys: Iterable[str], written_by: str) -> dict:
    """The result in ``path``, which must be a JSON object holding ``keys`` (``written_by`` names its writer in the
    error line)."""
    try:
        with open(path) as f:
            result = json.load(f)
    except OSError as exc:
        raise SystemExit(f'error: cannot read {path}: {exc.strerror}') from None
    except ValueError:
        raise SystemExit(f'error: {path} is not JSON') from None
    if not isinstance(result, dict) or not set(keys) <= result.keys():
        raise SystemExit(f'error: {path} is not a result of {written_by}')
    return result
