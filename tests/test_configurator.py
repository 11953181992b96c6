"""The configurator: config files, --key=value overrides, type coercion and clear errors."""
import pytest

from configurator import ConfigError, format_help, parse_config
from conftest import REPO, run, run_here

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


# --help's descriptions: the comment beside each key in the script (configurator.read_descriptions); imported in each
# test, so that the tests above still run where the configurator has none
SOURCE = '''"""A script's settings."""
import os

batch_size = 32  # sequences per micro-batch. A second sentence
init_from = 'scratch'  # 'scratch' or 'resume': the first line
# the second line, not indented
    # a third, indented
seed = 1337
# data: a section header below a key without a comment is not its description
dataset = 'x#y'  # a '#' in the value is no comment
n_head = 4  # heads
# -----------------------------------------------------------------------------
n_embd = 8


class Config:
    n_kv_head: Optional[int] = None  # key/value heads: None = n_head
    window: int = 3
'''


def test_descriptions_are_read_from_the_comments_beside_the_keys(tmp_path):
    from configurator import read_descriptions
    path = tmp_path / 'script.py'
    path.write_text(SOURCE)
    d = read_descriptions(str(path))
    assert d['batch_size'] == 'sequences per micro-batch. A second sentence'
    assert d['init_from'] == "'scratch' or 'resume': the first line"  # the comment beside it, not the lines below
    assert d['seed'] == '' and d['n_embd'] == ''  # keys without a comment; a header below one is not its text
    assert d['dataset'] == "a '#' in the value is no comment"
    assert d['n_head'] == 'heads'
    assert 'os' not in d and 'n_kv_head' not in d  # module level only
    assert read_descriptions(str(path), within='Config') == {'n_kv_head': 'key/value heads: None = n_head',
                                                             'window': ''}  # dataclass fields
    assert read_descriptions(str(tmp_path / 'missing.py')) == {}
    (tmp_path / 'broken.py').write_text("x = (  # never closed\n")
    assert read_descriptions(str(tmp_path / 'broken.py')) == {}


def test_help_gives_each_key_one_line_of_its_description_aligned_and_cut():
    descriptions = {'batch_size': 'sequences per micro-batch', 'learning_rate': 'word ' * 60,
                    'compile': 'the first line', 'dataset': ''}
    text = format_help(DEFAULTS, 'train.py', descriptions)
    lines = {line.split()[0][2:]: line for line in text.splitlines() if line.startswith('  --')}
    assert list(lines) == list(DEFAULTS)
    assert lines['batch_size'].endswith('   sequences per micro-batch')
    assert lines['compile'].endswith('   the first line')
    assert len(lines['learning_rate']) <= 120 and lines['learning_rate'].endswith('word...')  # cut to fit
    assert lines['dataset'] == f"  --{'dataset':<{max(map(len, DEFAULTS))}} = 'openwebtext'"  # as without descriptions
    assert len({line.index(descriptions[k].split()[0]) for k, line in lines.items() if descriptions.get(k)}) == 1


def test_configure_help_reads_the_calling_script_and_survives_a_missing_file(tmp_path, capsys):
    from configurator import configure
    path = tmp_path / 'script.py'
    path.write_text("steps = 5  # optimizer steps to time\nlabel = 'a'\n")
    for namespace in ({'__file__': str(path), 'steps': 5, 'label': 'a'},
                      {'__file__': str(tmp_path / 'gone.py'), 'steps': 5, 'label': 'a'}, {'steps': 5, 'label': 'a'}):
        with pytest.raises(SystemExit) as e:
            configure(namespace, ['--help'])
        assert e.value.code == 0
        lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith('  --')]
        assert lines[1] == "  --label = 'a'"
        assert lines[0].endswith('optimizer steps to time') == (namespace.get('__file__') == str(path))


def help_lines(script):
    """{key: its line} of the keys section of `script --help`, run in this process."""
    p = run_here(script, '--help')
    assert p.returncode == 0, p.stderr
    return {line.split()[0][2:]: line for line in p.stdout.splitlines() if line.startswith('  --')}


def test_train_help_describes_the_keys_in_one_line_each(train_defaults):
    lines = help_lines('train.py')
    assert list(lines) == list(train_defaults)
    assert all(len(line) <= 120 for line in lines.values())
    assert 'key/value heads' in lines['n_kv_head']  # a GPTConfig field: model.py's comment
    assert 'longest context' in lines['block_size']  # no comment in train.py: model.py's
    from configurator import read_descriptions
    described = {k: v for k, v in read_descriptions(str(REPO / 'train.py')).items() if v and k in lines}
    assert 'eval_iters' in described and 'init_from' in described
    for key, text in described.items():  # each comment's first words, after the default
        assert lines[key].split(' = ', 1)[1].split(None, 1)[1].startswith(text.split()[0]), key


def test_bench_help_describes_the_keys_it_takes_from_train_py():
    lines = help_lines('bench.py')
    assert 'torch.compile on CUDA' in lines['compile']  # train.py's comment: bench.py takes the key from train.py
    assert 'key/value heads' in lines['n_kv_head']
    assert 'untimed steps first' in lines['warmup_steps']  # bench.py's own
    assert all(len(line) <= 120 for line in lines.values())
