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
- `--help` lists every key with its default and one line of the comment beside it in the script (read_descriptions;
  keys that come from elsewhere: train.py's comment, then model.py's GPTConfig field's);
- read_settings(script) gives another script's keys and defaults without running the rest of it.
Config files are python and run with full rights: only use config files you trust.
"""
import ast
import difflib
import os
import re
import runpy
import sys
import tokenize

SIMPLE_TYPES = (bool, int, float, str, type(None))
TRUE_WORDS, FALSE_WORDS = ('true', 'yes', 'on', '1'), ('false', 'no', 'off', '0')
SETTINGS_ONLY = '__settings__'  # the run_name under which read_settings runs a script
HELP_WIDTH = 120  # --help: the longest key line; a description is cut to fit, with '…'
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


def _comments(path):
    """(source, its lines, {line number: comment text without '#'}) of a python file; tokenize tells comments from a
    '#' in a string."""
    with tokenize.open(path) as f:  # honours a coding cookie
        source = f.read()
    lines = source.splitlines()
    comments = {}
    for tok in tokenize.generate_tokens(iter(source.splitlines(keepends=True)).__next__):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip('#').strip()
    return source, lines, comments


def read_descriptions(path, within=None):
    """{key: description} from the comments of a python file, without running it: for every module-level
    `name = value  # text` (and `name: type = value  # text`, dataclass fields, in the body of a module-level class),
    the text beside it, then the comment-only lines right below it (indented or not; a blank line, a code line or a
    `# -----` rule ends them), one line each, joined by newlines: the first line is the one beside the key.
    A key assigned without a comment maps to ''; a later assignment of a key replaces an earlier one's empty text only.
    within='GPTConfig' reads that class's fields only. A file that is missing or does not parse gives {}.
    The comment lines below a key may also be a section header that follows it directly (`# data`): --help shows only
    the first line."""
    try:
        source, lines, comments = _comments(path)
        tree = ast.parse(source)
    except (OSError, SyntaxError, ValueError, tokenize.TokenError):  # ValueError: also a bad encoding (UnicodeError)
        return {}

    def text_of(node):
        first = comments.get(node.end_lineno) or (comments.get(node.lineno) if node.lineno != node.end_lineno else '')
        if not first:
            return ''  # a comment below a key without one beside it is a section header, not its description
        parts, n = [first], node.end_lineno + 1
        while n <= len(lines) and lines[n - 1].lstrip().startswith('#') and n in comments:
            if not re.search(r'\w', comments[n]):  # a rule, `# -----`
                break
            parts.append(comments[n])
            n += 1
        return '\n'.join(parts)

    def names(node):
        if isinstance(node, ast.Assign):
            return [t.id for t in node.targets if isinstance(t, ast.Name)]
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            return [node.target.id]
        return []

    classes = [n for n in tree.body if isinstance(n, ast.ClassDef) and (within is None or n.name == within)]
    statements = [] if within is not None else list(tree.body)
    statements += [n for c in classes for n in c.body]  # module-level names first: a field never hides one
    descriptions = {}
    for node in statements:
        for name in names(node):
            text = text_of(node)
            if text or name not in descriptions:
                descriptions[name] = text
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


ABBREVIATIONS = r'(?<!\be\.g)(?<!\bi\.e)(?<!\betc)(?<!\bvs)(?<!\bcf)'


def one_line(description, room):
    """The first line of a description, up to the end of its first sentence, cut to `room` characters with '…'."""
    lines = (description or '').strip().splitlines()
    text = lines[0].strip() if lines else ''
    end = re.search(ABBREVIATIONS + r'[.!?](?=\s+[A-Z])', text)
    if end:
        text = text[:end.end()]
    if len(text) <= room:
        return text
    cut = text[:room - 1]
    space = cut.rfind(' ')
    if space > room * 3 // 4:  # end on a word when that loses little
        cut = cut[:space]
    return cut.rstrip(' ,;:') + '…'


def format_help(defaults, script, descriptions=None, width=HELP_WIDTH):
    """The --help text: a usage line, then one line per key, `  --key = default   description`, with the keys, the
    defaults (all but the longest ones) and the descriptions aligned; `descriptions` ({key: text}, e.g. from
    read_descriptions) gives each key one line of its text, cut to keep the line within `width` characters.
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
            text = one_line(descriptions[k], room) if room >= 12 else ''  # fewer: no room to say anything
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
        text = format_help(defaults, os.path.basename(sys.argv[0]), key_descriptions(namespace, defaults))
        try:
            print(text)
        except UnicodeEncodeError:  # a terminal without '…'
            print(text.replace('…', '...'))
        sys.exit(0)
    try:
        config = parse_config(defaults, argv, file_only_keys)
    except ConfigError as e:
        sys.exit(f"error: {e}")
    namespace.update(config)
    return config
