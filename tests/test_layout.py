"""The house rules a reader relies on: model.py is the model and nothing else; train.py reads top to bottom (no helper
reads a name that is only defined further down, no `global`); one file holds each chore."""
import ast
import re

from conftest import REPO

STDLIB = {'math', 'dataclasses', 'typing'}


def tree(name):
    return ast.parse((REPO / name).read_text())


def test_model_py_is_the_model():
    source = (REPO / 'model.py').read_text()
    imported = {a.name.split('.')[0] for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Import)
                for a in node.names}
    imported |= {node.module.split('.')[0] for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ImportFrom)}
    assert imported <= STDLIB | {'torch'}, imported  # torch and the standard library only
    assert not re.search(r'distributed|PEAK|os\.replace|csv', source)  # no processes, GPU tables or files
    assert len(source.splitlines()) <= 700


def module_bindings(module):
    """{name: the line of its first binding at module level} (assignments, imports, defs, loops, with, except)."""
    first = {}

    def bind(name, line):
        first.setdefault(name, line)

    def visit(nodes):
        for node in nodes:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                bind(node.name, node.lineno)
                continue  # what a body binds is its own
            for sub in ast.walk(node):
                if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                    bind(sub.id, sub.lineno)
                elif isinstance(sub, (ast.Import, ast.ImportFrom)):
                    for a in sub.names:
                        bind((a.asname or a.name).split('.')[0], sub.lineno)
                elif isinstance(sub, ast.ExceptHandler) and sub.name:
                    bind(sub.name, sub.lineno)
    visit(module.body)
    return first


def free_names(fn):
    """The names a function reads that it does not bind itself (its arguments, assignments, inner defs)."""
    bound = {a.arg for a in ast.walk(fn.args) if isinstance(a, ast.arg)}
    loads = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.Name):
            (loads if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.Lambda)) and node is not fn:
            bound |= {a.arg for a in ast.walk(node.args) if isinstance(a, ast.arg)}
            if isinstance(node, ast.FunctionDef):
                bound.add(node.name)
        elif isinstance(node, ast.comprehension):
            bound |= {n.id for n in ast.walk(node.target) if isinstance(n, ast.Name)}
    return loads - bound


def test_train_py_reads_top_down():
    module = tree('train.py')
    assert not [n.lineno for n in ast.walk(module) if isinstance(n, (ast.Global, ast.Nonlocal))]
    first = module_bindings(module)
    late = [f"{fn.name} (line {fn.lineno}) reads {name}, first bound at line {first[name]}"
            for fn in module.body if isinstance(fn, ast.FunctionDef)
            for name in sorted(free_names(fn)) if name in first and first[name] > fn.lineno]
    assert late == []


def test_the_check_finds_a_helper_that_reads_ahead():
    """The check above can fail: a helper that reads state defined below it is caught."""
    module = ast.parse("def log():\n    return bar\n\n\nbar = 1\n")
    fn, first = module.body[0], module_bindings(module)
    assert [n for n in free_names(fn) if first.get(n, 0) > fn.lineno] == ['bar']


def test_one_atomic_write():
    """Files are replaced atomically in one place (data/common.py's atomic_file); hf.py renames a whole folder."""
    writers = {p.relative_to(REPO).as_posix() for p in [*REPO.glob('*.py'), *REPO.glob('data/**/*.py')]
               if 'os.replace(' in p.read_text()}
    assert writers == {'data/common.py', 'hf.py', 'data/tinystories/prepare.py'}, writers
