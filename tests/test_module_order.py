"""Data flows one way (issue 16): a husai module imports only modules of notebooks before its own, counting imports
inside functions, so there is no import circle and a reader meets every name before it is used."""
import ast, json, re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

def notebook_order() -> dict:
    "Module name -> the number of the notebook that exports it (its `#| default_exp`)."
    order = {}
    for nb in sorted((ROOT/'nbs').glob('[0-9][0-9]_*.ipynb')):
        for c in json.loads(nb.read_text())['cells']:
            m = re.search(r'#\|\s*default_exp\s+(\S+)', ''.join(c['source']))
            if m: order[m.group(1)] = int(nb.name[:2])
    return order

def husai_imports(src: str) -> list:
    "(module, line) for every import of a husai module in `src`, at any depth, relative or absolute or by import_module."
    out = []
    for n in ast.walk(ast.parse(src)):
        if isinstance(n, ast.ImportFrom):
            if n.level: mods = [n.module] if n.module else [a.name for a in n.names]
            elif n.module == 'husai': mods = [a.name for a in n.names]
            elif (n.module or '').startswith('husai.'): mods = [n.module[6:]]
            else: mods = []
        elif isinstance(n, ast.Import): mods = [a.name[6:] for a in n.names if a.name.startswith('husai.')]
        elif (isinstance(n, ast.Call) and getattr(n.func, 'attr', getattr(n.func, 'id', None)) == 'import_module'
              and n.args and isinstance(n.args[0], ast.Constant) and str(n.args[0].value).startswith('husai.')):
            mods = [n.args[0].value[6:]]
        else: mods = []
        out += [(m.split('.')[0], n.lineno) for m in mods]
    return out

def test_the_finder_sees_every_kind_of_import():
    src = "from .stats import x\nimport husai.io\ndef f():\n    from husai import report\n    importlib.import_module('husai.cli')\n"
    assert [m for m, _ in husai_imports(src)] == ['stats', 'io', 'report', 'cli']

def test_no_module_imports_a_later_one():
    order = notebook_order()
    assert {'core', 'grokking', 'train_sae', 'stability', 'report', 'cli'} <= set(order)
    bad = [f"husai/{f.stem}.py:{line} imports {m} (notebook {order[m]:02d} comes after {order[f.stem]:02d})"
           for f in sorted((ROOT/'husai').glob('*.py')) if f.stem in order
           for m, line in husai_imports(f.read_text()) if m in order and order[m] > order[f.stem]]
    assert not bad, '\n'.join(bad)
