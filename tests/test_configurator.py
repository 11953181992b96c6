"""The configurator: config files, --key=value overrides, type coercion and clear errors."""
import pytest

from configurator import ConfigError, format_help, parse_config
from conftest import run, run_here

DEFAULTS = {'batch_size': 12, 'learning_rate': 6e-4, 'compile': True, 'dataset': 'openwebtext',
            'device': None, 'lr_decay_iters': None, 'init_from': 'scratch'}


def test_overrides_are_coerced_to_the_default_type():
    cfg = parse_config(DEFAULTS, ['--batch_size=32', '--learning_rate=1', '--compile=false', '--dataset=123'])
    assert cfg['batch_size'] == 32 and type(cfg['batch_size']) is int
    assert cfg['learning_rate'] == 1.0 and type(cfg['learning_rate']) is float
    assert cfg['compile'] is False
    assert cfg['dataset'] == '123'  # a string that looks like a number stays a string
    assert parse_config(DEFAULTS, ['--compile=True'])['compile'] is True
    assert parse_config(DEFAULTS, ['--compile'])['compile'] is True  # a bare flag switches a bool on
    assert parse_config(DEFAULTS, ['--batch_size=1e3'])['batch_size'] == 1000
    assert parse_config(DEFAULTS, ['--learning_rate=3e-4'])['learning_rate'] == 3e-4


def test_none_defaults_take_literals_or_strings():
    cfg = parse_config(DEFAULTS, ['--device=cuda:1', '--lr_decay_iters=5000'])
    assert cfg['device'] == 'cuda:1' and cfg['lr_decay_iters'] == 5000
    assert parse_config(DEFAULTS, ['--lr_decay_iters=None'])['lr_decay_iters'] is None


def test_space_separated_values_and_bare_bool_flags(tmp_path):
    cfg_file = tmp_path / 'cfg.py'
    cfg_file.write_text("batch_size = 5\n")
    cfg = parse_config(DEFAULTS, ['--dataset', 'One day', '--compile', str(cfg_file)])
    assert cfg['dataset'] == 'One day' and cfg['compile'] is True and cfg['batch_size'] == 5
    assert parse_config(DEFAULTS, ['--compile', 'false', '--batch_size', '3'])['compile'] is False
    with pytest.raises(ConfigError, match='needs a value'):
        parse_config(DEFAULTS, ['--batch_size'])


def test_values_may_contain_equals_signs():
    assert parse_config(DEFAULTS, ['--dataset=a=b=c'])['dataset'] == 'a=b=c'


def test_unknown_key_names_the_closest_keys():
    with pytest.raises(ConfigError, match="unknown config key 'batchsize'.*batch_size"):
        parse_config(DEFAULTS, ['--batchsize=3'])
    with pytest.raises(ConfigError, match="unknown config key 'zzz'"):
        parse_config(DEFAULTS, ['--zzz=3'])


def test_wrong_type_names_key_and_expected_type():
    with pytest.raises(ConfigError, match=r'--batch_size=abc: expected int'):
        parse_config(DEFAULTS, ['--batch_size=abc'])
    with pytest.raises(ConfigError, match=r'--learning_rate=high: expected float'):
        parse_config(DEFAULTS, ['--learning_rate=high'])
    with pytest.raises(ConfigError, match=r'--compile=maybe: expected bool'):
        parse_config(DEFAULTS, ['--compile=maybe'])


def test_config_files_and_override_precedence(tmp_path):
    a = tmp_path / 'a.py'
    a.write_text("import math\nbatch_size = 64\nlearning_rate = 1  # an int for a float key is fine\n"
                 "_private = 'ignored'\n")
    b = tmp_path / 'b.py'
    b.write_text("batch_size = 128\n")
    # later files win over earlier ones; command-line overrides win over every file, whatever the order
    cfg = parse_config(DEFAULTS, ['--batch_size=7', str(a), str(b)])
    assert cfg['batch_size'] == 7 and cfg['learning_rate'] == 1.0
    assert parse_config(DEFAULTS, [str(a), str(b)])['batch_size'] == 128


def test_config_file_errors(tmp_path):
    bad_key = tmp_path / 'bad_key.py'
    bad_key.write_text("batch_sise = 3\n")
    with pytest.raises(ConfigError, match=r"bad_key.py: unknown config key 'batch_sise'.*batch_size"):
        parse_config(DEFAULTS, [str(bad_key)])
    bad_type = tmp_path / 'bad_type.py'
    bad_type.write_text("compile = 'yes please'\n")
    with pytest.raises(ConfigError, match='compile'):
        parse_config(DEFAULTS, [str(bad_type)])
    with pytest.raises(ConfigError, match='not found'):
        parse_config(DEFAULTS, [str(tmp_path / 'missing.py')])


def test_file_only_keys_are_skipped_in_files_but_not_on_the_command_line(tmp_path):
    train_cfg = tmp_path / 'train_cfg.py'
    train_cfg.write_text("batch_size = 64\nmax_iters = 5000\n")
    assert parse_config(DEFAULTS, [str(train_cfg)], file_only_keys=('max_iters',))['batch_size'] == 64
    with pytest.raises(ConfigError, match='max_iters'):
        parse_config(DEFAULTS, [str(train_cfg)])
    with pytest.raises(ConfigError, match='max_iters'):
        parse_config(DEFAULTS, ['--max_iters=3'], file_only_keys=('max_iters',))


def test_help_lists_every_key_with_its_default():
    text = format_help(DEFAULTS, 'train.py')
    for key, value in DEFAULTS.items():
        assert f"--{key}" in text and repr(value) in text


def test_cli_errors_are_one_line_and_fail():
    for arg, expected in (('--no_such_key=1', "unknown config key 'no_such_key'"),
                          ('--batch_size=abc', '--batch_size=abc: expected int'),
                          ('--dropout=high', '--dropout=high: expected float')):
        p = run_here('train.py', arg)
        assert p.returncode != 0
        assert p.stderr.strip().splitlines() == [f"error: {p.stderr.strip()[7:]}"]  # exactly one line
        assert expected in p.stderr and 'Traceback' not in p.stderr


def test_cli_help_lists_keys():
    p = run('train.py', '--help')
    assert 'batch_size' in p.stdout and 'learning_rate' in p.stdout and 'compile' in p.stdout
