"""Write README.md from nbs/index.ipynb without Quarto (which `nbdev_readme` needs and cannot be installed; GUIDE §4).

nbdev's processors drop exported and `#| hide` cells; the Quarto cell options (`#| echo: false` ...) become
nbconvert's tags (`build_docs.quarto_options`, as for the docs site); nbconvert's `MarkdownExporter` writes
the rest (markdown as is, code in fences, outputs: markdown as is, text indented). Doc links are not added,
so the README reads the same on GitHub and on PyPI. Usage: `python tools/make_readme.py [--check]`.
"""
import json, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
HEADER = '<!-- Generated from nbs/index.ipynb by tools/make_readme.py: edit the notebook, not this file. -->\n\n'

def render(nb_path=ROOT/'nbs'/'index.ipynb') -> str:
    import nbformat
    from execnb.nbio import read_nb, nb2dict
    from nbconvert import MarkdownExporter
    from nbconvert.preprocessors import TagRemovePreprocessor
    from nbdev.process import NBProcessor
    from nbdev.processors import rm_export, hide_
    from build_docs import quarto_options
    nb = read_nb(nb_path)
    NBProcessor(nb=nb, procs=[rm_export, hide_, quarto_options]).process()
    ex = MarkdownExporter()
    ex.register_preprocessor(TagRemovePreprocessor(remove_cell_tags={'remove_cell'}, remove_input_tags={'remove_input'},
                                                   remove_all_outputs_tags={'remove_output'}), enabled=True)
    body, _ = ex.from_notebook_node(nbformat.reads(json.dumps(nb2dict(nb)), as_version=4))
    return HEADER + re.sub(r'\n{3,}', '\n\n', body).strip() + '\n'   # nbconvert leaves runs of blank lines between cells

if __name__ == '__main__':
    txt, readme = render(), ROOT/'README.md'
    if '--check' in sys.argv:
        if not readme.exists() or readme.read_text(encoding='utf-8') != txt:
            sys.exit('README.md is out of date with nbs/index.ipynb: run `python tools/make_readme.py`')
    else: readme.write_text(txt, encoding='utf-8')
