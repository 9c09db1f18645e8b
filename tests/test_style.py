"""The house style of setup.cfg's [flake8] section (lines of at most 120 characters, pep8 layout) over the package,
the scripts and the tests; CI installs flake8 (.ci/run), a plain ``pytest`` run without it skips this."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_code_keeps_the_house_style():
    pytest.importorskip('flake8')
    run = subprocess.run([sys.executable, '-m', 'flake8', 'gaussiansr_plugin', 'scripts', 'tests', 'setup.py'],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
