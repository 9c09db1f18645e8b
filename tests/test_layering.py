"""The package's import layering, read from the source: cli (and train.py / test.py) on top, then inference, models
and data, then archs, then ops, then the shared base modules; no module imports one of a higher layer."""
import ast
import os
from typing import Iterator, Tuple

import gaussiansr_plugin

PACKAGE = os.path.dirname(gaussiansr_plugin.__file__)
LAYERS = {'cli': 4, 'train': 4, 'test': 4, 'inference': 3, 'models': 3, 'data': 3, 'archs': 2, 'ops': 1,
          'errors': 0, 'option_checks': 0, 'atomic_files': 0, 'safe_load': 0, 'version': 0, 'precision': 0}


def _imports(path: str, module: str) -> Iterator[Tuple[int, str]]:
    """(line, absolute module name) of every import of the package in a file, also those inside functions."""
    package = module if path.endswith('__init__.py') else module.rpartition('.')[0]
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                parts = package.split('.')
                base = '.'.join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            names = [base] if node.module else [f'{base}.{alias.name}' for alias in node.names]
        else:
            continue
        yield from ((node.lineno, name) for name in names if name.startswith('gaussiansr_plugin.'))


def _layer(module: str) -> int:
    return LAYERS[module.split('.')[1]]


def test_no_module_imports_a_higher_layer():
    upward = []
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            path = os.path.join(folder, name)
            relative = os.path.relpath(path, os.path.dirname(PACKAGE))
            if not name.endswith('.py') or relative == os.path.join('gaussiansr_plugin', '__init__.py'):
                continue  # the package's face imports what registers; it is no layer
            module = relative[:-3].replace(os.sep, '.').removesuffix('.__init__')
            upward += [f'{relative}:{line} imports {target}' for line, target in _imports(path, module)
                       if _layer(target) > _layer(module)]
    assert upward == []


def test_the_check_sees_an_upward_import(tmp_path):
    bad = tmp_path / 'bad.py'
    bad.write_text('from ..cli.errors import UserError\nimport gaussiansr_plugin.models.gaussiansr_model\n')
    found = list(_imports(str(bad), 'gaussiansr_plugin.inference.bad'))
    assert found == [(1, 'gaussiansr_plugin.cli.errors'), (2, 'gaussiansr_plugin.models.gaussiansr_model')]
    assert [_layer(m) > _layer('gaussiansr_plugin.inference.bad') for _, m in found] == [True, False]
