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
- `--help` lists every key with its default and the comment beside it in the script (read_descriptions; keys that
  come from elsewhere: train.py's comment, then model.py's GPTConfig field's);
- read_settings(script) gives another script's keys and defaults without running the rest of it.
Config files are python and run with full rights: only use config files you trust.
"""
import ast
import difflib
import io
import os
import runpy
import sys
import tokenize

SIMPLE_TYPES = (bool, int, float, str, type(None))
TRUE_WORDS, FALSE_WORDS = ('true', 'yes', 'on', '1'), ('false', 'no', 'off', '0')
SETTINGS_ONLY = '__settings__'  # the run_name under which read_settings runs a script
HELP_WIDTH = 120  # --help: the longest key line; a description is cut to fit, with '...'
HERE = os.path.dirname(os.path.abspath(__file__))  # where train.py and model.py are: keys a script takes from them


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


def read_descriptions(path, within=None):
    """{key: the comment beside it} for a python file's module-level assignments, `name = value  # text` (within=
    'GPTConfig': that class's fields, `name: type = value  # text`), without running the file; '' for a key without
    one, {} for a file that is missing or does not parse. tokenize tells a comment from a '#' inside a string."""
    try:
        with tokenize.open(path) as f:  # honours a coding cookie
            source = f.read()
        tokens = tokenize.generate_tokens(io.StringIO(source).readline)
        comments = {t.start[0]: t.string.lstrip('#').strip() for t in tokens if t.type == tokenize.COMMENT}
        tree = ast.parse(source)
    except (OSError, SyntaxError, ValueError, tokenize.TokenError):  # ValueError: also a bad encoding (UnicodeError)
        return {}
    body = tree.body if within is None else [n for c in tree.body if isinstance(c, ast.ClassDef) and c.name == within
                                             for n in c.body]
    descriptions = {}
    for node in body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) \
            else []
        for name in (t.id for t in targets if isinstance(t, ast.Name)):
            if not descriptions.get(name):  # a later assignment fills in only a missing text
                descriptions[name] = comments.get(node.end_lineno) or comments.get(node.lineno, '')
    return descriptions


def key_descriptions(namespace, keys):
    """{key: description} for a script's --help: the script's own comments (namespace['__file__']); for a key the script
    does not assign, train.py's beside this file (bench.py takes keys from it); then, for a key still undescribed,
    its GPTConfig field's comment in model.py beside this file. A missing file only means no descriptions from it."""
    script = namespace.get('__file__')
    own = read_descriptions(script) if script else {}
    train = read_descriptions(os.path.join(HERE, 'train.py'))
    model = read_descriptions(os.path.join(HERE, 'model.py'), within='GPTConfig')
    return {k: own.get(k) or (k not in own and train.get(k)) or model.get(k) or '' for k in keys}


def fit(text, room):
    """text cut to `room` characters at a word's end, with '...' where it was cut."""
    return text if len(text) <= room else text[:room - 2].rsplit(' ', 1)[0][:room - 3].rstrip(' ,;:') + '...'


def format_help(defaults, script, descriptions=None, width=HELP_WIDTH):
    """The --help text: a usage line, then one line per key, `  --key = default   description`, with the keys, the
    defaults (all but the longest ones) and the descriptions aligned; `descriptions` ({key: text}, e.g. from
    read_descriptions) gives each key its text, cut to keep the line within `width` characters.
    A default is never cut."""
    descriptions = descriptions or {}
    lines = [f"usage: python {script} [config/file.py ...] [--key=value ...]", "", "keys (default):"]
    width_k = max(map(len, defaults), default=0)
    values = {k: repr(v) for k, v in defaults.items()}
    short = [len(r) for k, r in values.items() if descriptions.get(k) and len(r) <= 24]
    width_v = max(short, default=0)  # a longer default pushes its own description to the right
    for k, r in values.items():
        line = f"  --{k:<{width_k}} = {r}"
        if descriptions.get(k):
            line = f"{line:<{4 + width_k + 3 + width_v}}   "
            room = width - len(line)
            text = fit(descriptions[k], room) if room >= 12 else ''  # fewer: no room to say anything
            line += text
        lines.append(line.rstrip())
    return "\n".join(lines)


def configure(namespace, argv=None, file_only_keys=()):
    """Apply config files and --key=value overrides to a script's globals; exit with one line on error."""
    defaults = {k: namespace[k] for k in config_keys(namespace)}
    if namespace.get('__name__') == SETTINGS_ONLY:
        raise SettingsRead(defaults)
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ('-h', '--help') for a in argv):
        print(format_help(defaults, os.path.basename(sys.argv[0]), key_descriptions(namespace, defaults)))
        sys.exit(0)
    try:
        config = parse_config(defaults, argv, file_only_keys)
    except ConfigError as e:
        sys.exit(f"error: {e}")
    namespace.update(config)
    return config
