"""Write README.md from nbs/index.ipynb without Quarto (which cannot be installed here; GUIDE §4).

Markdown cells are copied; code cells marked `#| hide` are dropped; code cells marked
`#| echo: false` contribute only their markdown/text outputs; other code cells appear as code
followed by their outputs. Usage: `python tools/make_readme.py [--check]`.
"""
import json, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADER = '<!-- Generated from nbs/index.ipynb by tools/make_readme.py: edit the notebook, not this file. -->\n\n'

def _src(c): return ''.join(c['source']) if isinstance(c['source'], list) else c['source']

def _directives(src):
    return {l[3:].strip().split(':')[0].strip() for l in src.splitlines() if l.startswith('#|')}

def _outputs(c):
    out = []
    for o in c.get('outputs', []):
        data = o.get('data', {})
        if 'text/markdown' in data: out.append(''.join(data['text/markdown']))
        elif 'text/plain' in data: out.append('```\n' + ''.join(data['text/plain']).rstrip() + '\n```')
        elif o.get('output_type') == 'stream': out.append('```\n' + ''.join(o['text']).rstrip() + '\n```')
    return out

def render(nb_path=ROOT/'nbs'/'index.ipynb') -> str:
    nb = json.loads(Path(nb_path).read_text())
    parts = []
    for c in nb['cells']:
        src = _src(c)
        if c['cell_type'] == 'markdown': parts.append(src.strip()); continue
        if c['cell_type'] != 'code': continue
        d = _directives(src)
        if 'hide' in d or 'include' in d and 'include: false' in src: continue
        if 'echo' not in d:
            code = '\n'.join(l for l in src.splitlines() if not l.startswith('#|')).strip()
            if code: parts.append('```python\n' + code + '\n```')
        parts += _outputs(c)
    return HEADER + '\n\n'.join(p for p in parts if p) + '\n'

if __name__ == '__main__':
    txt, readme = render(), ROOT/'README.md'
    if '--check' in sys.argv:
        if not readme.exists() or readme.read_text() != txt:
            sys.exit('README.md is out of date with nbs/index.ipynb: run `python tools/make_readme.py`')
    else: readme.write_text(txt)
