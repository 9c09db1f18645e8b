"""cli/setup_errors.py: set-up mistakes become one line naming the step, other errors keep their type, and the
launcher replaces no BasicSR function beyond the named fixes."""
import importlib

import pytest

import basicsr.test
import basicsr.train
from basicsr.data import build_dataset
from basicsr.models import build_model
from gaussiansr_plugin.cli import basicsr_fixes
from gaussiansr_plugin.cli.setup_errors import reported_as_user_errors
from gaussiansr_plugin.errors import UserError


def test_a_mistake_is_named_after_the_step_that_met_it():
    with pytest.raises(UserError, match=r"^dataset 'val': .*NoSuchDataset"):
        with reported_as_user_errors():
            build_dataset({'name': 'val', 'type': 'NoSuchDataset', 'phase': 'val'})
    with pytest.raises(UserError, match=r"^cannot build NoSuchModel: .*NoSuchModel"):
        with reported_as_user_errors():
            build_model({'model_type': 'NoSuchModel'})


def test_a_key_error_in_a_step_is_a_missing_option():
    with pytest.raises(UserError, match=r"^cannot build GaussianSRModel: missing option 'network_g'$"):
        with reported_as_user_errors():
            build_model({'model_type': 'GaussianSRModel', 'num_gpu': 0, 'is_train': False, 'dist': False})


def test_errors_outside_the_set_up_steps_keep_their_type():
    with pytest.raises(ValueError, match='^late$'):
        with reported_as_user_errors():
            raise ValueError('late')  # as in the training loop: no set-up step on the traceback


def test_only_the_named_fixes_replace_basicsr_functions():
    basicsr_fixes.apply()
    replaced = {(fix.module, fix.attr) for fix in basicsr_fixes.FIXES}
    for module in (basicsr.train, basicsr.test):
        for name in ('build_dataset', 'build_dataloader', 'build_model', 'parse_options', 'load_resume_state',
                     'create_train_val_dataloader'):
            if not hasattr(module, name) or (module.__name__, name) in replaced:
                continue
            assert getattr(module, name).__module__.startswith('basicsr.'), (module.__name__, name)
    for module_name, attr in replaced:
        assert getattr(importlib.import_module(module_name), attr) is not basicsr_fixes.upstream(module_name, attr)
