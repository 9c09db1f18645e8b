"""The query-chunk knob is ``chunk_size`` everywhere; its old spellings (``val.query_chunk`` in a yml, ``--chunk`` of
the scripts) keep working for one release, each with one warning line."""
import argparse

import pytest

from basicsr.models import build_model
from gaussiansr_plugin.cli.arguments import add_chunk_size_argument
from shared_helpers import model_opt


def test_val_query_chunk_works_with_one_warning(tiny_net_opt, tmp_path, basicsr_log):
    opt = model_opt(tiny_net_opt, tmp_path)
    opt['val'] = {'query_chunk': 50, 'save_img': False, 'val_freq': 1}
    model = build_model(opt)
    assert model.val_opt['chunk_size'] == 50 and 'query_chunk' not in model.val_opt
    assert model.opt['val'] == {'query_chunk': 50, 'save_img': False, 'val_freq': 1}  # the options stay as given
    assert [m for m in basicsr_log.messages if 'query_chunk' in m] == [
        'val.query_chunk is deprecated: use val.chunk_size (the old name goes in the next release)']
    opt['val']['chunk_size'] = 60
    with pytest.raises(ValueError, match='val.query_chunk is the old name of val.chunk_size: give only'):
        build_model(opt)


def test_chunk_argument_works_with_one_warning(capsys):
    parser = argparse.ArgumentParser()
    add_chunk_size_argument(parser, 7, 'queries')
    assert parser.parse_args([]).chunk_size == 7
    assert parser.parse_args(['--chunk-size', '300']).chunk_size == 300 and capsys.readouterr().err == ''
    assert parser.parse_args(['--chunk', '300']).chunk_size == 300
    assert capsys.readouterr().err == ('warning: --chunk is deprecated: use --chunk-size (the old name goes in the '
                                       'next release)\n')
    assert '--chunk ' not in parser.format_help()
