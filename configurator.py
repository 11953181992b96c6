"""
The configurator shared by train.py, sample.py and bench.py (nanoGPT's idea, without its traps).

A script defines its settings as plain globals, then calls

    configure(globals())

which reads `python script.py [config/x.py ...] [--key=value ...]`:
- config files are python; every global they define must be a known key;
- `--key=value` (or `--key value`) overrides always win over files, whatever the order on the command line;
- values are coerced to the type of the default (`--lr=1` is a float, `--compile=false` a bool,
  `--dataset=123` stays a string, a None default takes a python literal or else the string);
- an unknown key or a value of the wrong type is one line naming the key and what was expected;
- `--help` lists every key with its default;
- read_settings(script) gives another script's keys and defaults without running the rest of it.
Config files are python and run with full rights: only use config files you trust.
"""
import ast
import difflib
import os
import runpy
import sys

SIMPLE_TYPES = (bool, int, float, str, type(None))
TRUE_WORDS, FALSE_WORDS = ('true', 'yes', 'on', '1'), ('false', 'no', 'off', '0')
SETTINGS_ONLY = '__settings__'  # the run_name under which read_settings runs a script


class ConfigError(ValueError):
    pass


def config_keys(namespace):
    """The settable keys of a script: its public globals of a simple type, in definition order."""
    return [k for k, v in namespace.items() if not k.startswith('_') and isinstance(v, SIMPLE_TYPES)]


def _unknown(key, known):
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close)}?" if close else "; run with --help to list the keys"
    return ConfigError(f"unknown config key '{key}'{hint}")


def coerce(key, value, default):
    """Turn `value` (a command-line string or a python value from a config file) into the default's type."""
    kind = type(default)
    if isinstance(value, str) and kind is not str:
        text = value.strip()
        if kind is bool:
            if text.lower() in TRUE_WORDS:
                return True
            if text.lower() in FALSE_WORDS:
                return False
        elif kind is int:
            try:
                return int(text.replace('_', ''))
            except ValueError:
                try:
                    f = float(text)  # allow --max_iters=1e4
                    if f.is_integer():
                        return int(f)
                except ValueError:
                    pass
        elif kind is float:
            try:
                return float(text)
            except ValueError:
                pass
        else:  # None default: a python literal, true/false/none words, or the plain string
            if text.lower() in ('none', 'null'):
                return None
            if text.lower() in ('true', 'false'):
                return text.lower() == 'true'
            try:
                return ast.literal_eval(text)
            except (ValueError, SyntaxError):
                return value
        raise ConfigError(f"--{key}={value}: expected {kind.__name__} (default is {default!r})")
    # python values from config files, or a str default
    if default is None or isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    raise ConfigError(f"{key} = {value!r}: expected {kind.__name__} (default is {default!r})")


def split_args(defaults, argv):
    """argv as (config files, [(key, value string)]): `--key=value`, `--key value` and a bare `--flag` for a bool."""
    files, overrides = [], []
    args = list(argv)
    while args:
        arg = args.pop(0)
        if not arg.startswith('--'):
            files.append(arg)
            continue
        key, eq, value = arg[2:].partition('=')
        key = key.replace('-', '_')
        if not eq:  # `--key value`, or a bare `--flag` for a bool
            if isinstance(defaults.get(key), bool):
                value = args.pop(0) if args and args[0].lower() in TRUE_WORDS + FALSE_WORDS else 'true'
            elif key in defaults and args:
                value = args.pop(0)
            elif key in defaults:
                raise ConfigError(f"--{key} needs a value: --{key}=VALUE")
        overrides.append((key, value))
    return files, overrides


def parse_config(defaults, argv, file_only_keys=()):
    """Return {key: value} for the keys of `defaults` after applying config files and overrides in argv.
    file_only_keys may appear in config files and are skipped (bench.py reads training configs)."""
    known = list(defaults)
    files, overrides = split_args(defaults, argv)
    config = dict(defaults)
    for path in files:
        if not os.path.isfile(path):
            raise ConfigError(f"config file not found: {path}")
        namespace = {'__file__': os.path.abspath(path)}  # lets a config build on another one beside it
        with open(path) as f:
            exec(compile(f.read(), path, 'exec'), namespace)
        for key, value in namespace.items():
            if key.startswith('_') or type(value).__name__ == 'module' or key in file_only_keys and key not in defaults:
                continue
            if key not in defaults:
                raise ConfigError(f"{path}: {_unknown(key, known)}")
            config[key] = coerce(key, value, defaults[key])
    for key, value in overrides:
        if key not in defaults:
            raise _unknown(key, known)
        config[key] = coerce(key, value, defaults[key])
    return config


class SettingsRead(Exception):
    """Raised by configure() in a script that read_settings runs: it carries the script's settings, and stops the script
    before its setup."""

    def __init__(self, defaults):
        super().__init__('settings read')
        self.defaults = defaults


def read_settings(script):
    """Another script's keys and their defaults (train.py's, for bench.py, ladder.py and the tests), without training:
    the script runs in this process up to its configure(globals()) call, which hands back the settings and stops it."""
    try:
        runpy.run_path(script, run_name=SETTINGS_ONLY)
    except SettingsRead as e:
        return e.defaults
    raise RuntimeError(f"{script} never called configure(globals())")


def format_help(defaults, script):
    lines = [f"usage: python {script} [config/file.py ...] [--key=value ...]", "", "keys (default):"]
    width = max(map(len, defaults), default=0)
    lines += [f"  --{k:<{width}} = {v!r}" for k, v in defaults.items()]
    return "\n".join(lines)


def configure(namespace, argv=None, file_only_keys=()):
    """Apply config files and --key=value overrides to a script's globals; exit with one line on error."""
    defaults = {k: namespace[k] for k in config_keys(namespace)}
    if namespace.get('__name__') == SETTINGS_ONLY:
        raise SettingsRead(defaults)
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ('-h', '--help') for a in argv):
        print(format_help(defaults, os.path.basename(sys.argv[0])))
        sys.exit(0)
    try:
        config = parse_config(defaults, argv, file_only_keys)
    except ConfigError as e:
        sys.exit(f"error: {e}")
    namespace.update(config)
    return config
