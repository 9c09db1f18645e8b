"""``gaussiansr upscale`` never writes under its input folder, whatever the layout of IN and OUT."""
import os

import cv2
import numpy as np
import pytest

from shared_helpers import cli


def _tree(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob('*')) if p.is_file()}


@pytest.fixture
def nested(tmp_path, monkeypatch):
    """``in/a.png`` and ``in/in/a.png`` under the working directory (the layout of the issue)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'in' / 'in').mkdir(parents=True)
    cv2.imwrite('in/a.png', np.full((3, 3, 3), 10, np.uint8))
    cv2.imwrite('in/in/a.png', np.full((3, 3, 3), 200, np.uint8))
    return tmp_path


@pytest.mark.parametrize('out, message', [('.', 'inside the input folder in (the output folder contains it)'),
                                          ('in/in', 'is inside the input folder'),
                                          ('in/out', 'is inside the input folder')])
def test_layouts_writing_under_the_input_folder_are_refused(nested, capsys, out, message, tiny_checkpoint):
    before = _tree(nested)
    code = cli('upscale', 'in', out, '--scale', '2', '--model', tiny_checkpoint[0], '--device', 'cpu')
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count('\n') == 1 and 'Traceback' not in err
    assert _tree(nested) == before


def test_output_folder_above_the_input_is_fine_when_no_image_lands_inside(nested, capsys, tiny_checkpoint):
    os.remove('in/in/a.png')
    os.rmdir('in/in')
    before = (nested / 'in' / 'a.png').read_bytes()
    assert cli('upscale', 'in', '.', '--scale', '2', '--model', tiny_checkpoint[0], '--device', 'cpu') == 0
    assert cv2.imread('a.png').shape == (6, 6, 3) and (nested / 'in' / 'a.png').read_bytes() == before
