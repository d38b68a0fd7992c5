#!/usr/bin/env python
"""Build the documentation site offline: nbdev processes the notebooks, nbconvert renders them.

`nbdev_docs` hands nbdev's processed notebooks to Quarto, which cannot be installed here (GUIDE §4).
This script keeps nbdev's half and gives the rendering to nbconvert:

1. nbdev's docs processors, what `nbdev_proc_nbs` runs (`FilterDefaults`): front matter from the title
   cell, `show_doc` for every exported function and class, exported and `#| hide` cells dropped, doc
   links for backticked names. One change: a cell that mixes imports with other code keeps its saved
   outputs, where nbdev reruns it (and stops if it needs names from other cells).
2. The Quarto cell options that nbdev leaves for Quarto become nbconvert's cell tags and metadata
   (`quarto_options`, shared with tools/make_readme.py): `echo`, `output` (`false`, `asis`),
   `include`, `code-fold`, `code-summary`, `fig-cap`.
3. nbconvert's `HTMLExporter` renders each page with the template in tools/docs_template/husai (the
   sidebar and the stylesheet; no script, nothing fetched): Pygments highlighting, ANSI colours, `\\r`
   in progress bars, figures and markdown images inline, TeX math as MathML (latex2mathml, which
   browsers draw without MathJax), headings with Quarto's ids so that nbdev's doc links land.
4. Links to `*.ipynb` go to their pages; links to the docs host in settings.ini (nbdev's doc links)
   become relative.

The sidebar is nbs/sidebar.yml, the file Quarto reads (the index, Library, Findings, as globs).
Usage: `python tools/build_docs.py --out _site`, then open `_site/index.html`. A development tool: it
needs the dev requirements (nbdev, nbconvert, latex2mathml); the library never does.
"""
from __future__ import annotations
import argparse, configparser, fnmatch, json, os, posixpath, re, shutil, sys, time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT/'nbs'
TEMPLATES = Path(__file__).resolve().parent/'docs_template'

# ---------------------------------------------------------------------------------------------
# The pages and the sidebar (nbs/sidebar.yml)

def find_notebooks(nbs: Path = NBS) -> list[Path]:
    "Every notebook under `nbs`, skipping files and folders whose names start with `_` or `.` (as nbdev does)."
    out = [p for p in nbs.rglob('*.ipynb')
           if not any(part.startswith(('_', '.')) for part in p.relative_to(nbs).parts)]
    return sorted(out, key=lambda p: (len(p.relative_to(nbs).parts), str(p.relative_to(nbs))))

def in_glob(pattern: str, rel: Path) -> bool:
    "Whether notebook `rel` (relative to nbs/) matches a Quarto sidebar glob; a leading `/` means the top level only."
    if pattern.startswith('/'): return len(rel.parts) == 1 and fnmatch.fnmatch(rel.name, pattern[1:])
    return fnmatch.fnmatch(rel.as_posix(), pattern)

def sidebar_groups(nbs: Path = NBS) -> list[tuple[str | None, list[Path]]]:
    "The entries of nbs/sidebar.yml as (section, or None at the top, [notebooks in order]); each notebook once, first match."
    import yaml
    entries = yaml.safe_load((nbs/'sidebar.yml').read_text(encoding='utf-8'))['website']['sidebar']['contents']
    left, out = find_notebooks(nbs), []
    for e in entries:
        section, pats = (None, e) if isinstance(e, str) else (e.get('section'), e.get('contents', []))
        pats = [pats] if isinstance(pats, str) else pats
        hit = [p for p in left if any(in_glob(g, p.relative_to(nbs)) for g in pats)]
        left = [p for p in left if p not in hit]
        out.append((section, hit))
    return out

def _settings(root: Path = ROOT) -> dict:
    cp = configparser.ConfigParser(delimiters=['='], interpolation=None)
    cp.read(root/'settings.ini', encoding='utf-8')
    return dict(cp['DEFAULT'])

# ---------------------------------------------------------------------------------------------
# 1-2. nbdev's processing, in worker processes (each notebook's show_doc cells run there)

def quarto_options(cell) -> None:
    """Move a code cell's (execnb's `read_nb` cell) Quarto options (`#| key: value`, which nbdev leaves for Quarto) out of its source into what
    nbconvert reads: tags for nbconvert's `TagRemovePreprocessor`, metadata for the site's template."""
    from nbdev.process import extract_directives, first_code_ln
    if cell.get('cell_type') != 'code' or not cell.get('source'): return
    opts = {k.rstrip(':'): ' '.join(v).strip('\'"') for k, v in extract_directives(cell, remove=False).items()}
    lines = cell['source'].splitlines(keepends=True)
    first = first_code_ln(lines)                 # None: nothing but options
    cell['source'] = '' if first is None else ''.join(lines[first:])
    low = {k: v.lower() for k, v in opts.items()}
    tags = set(cell.get('metadata', {}).get('tags', []))
    if low.get('echo') == 'false' or not cell['source'].strip(): tags.add('remove_input')   # no code: no empty code box
    if low.get('output') == 'false': tags.add('remove_output')
    if low.get('include') == 'false': tags.add('remove_cell')
    if low.get('output') == 'asis':   # printed text is markdown, as Quarto reads it
        cell['outputs'] = [{'output_type': 'display_data', 'metadata': {}, 'data': {'text/markdown': o['text']}}
                           if o.get('output_type') == 'stream' and o.get('name') == 'stdout' else o for o in cell.get('outputs', [])]
    md = cell.setdefault('metadata', {})
    if tags: md['tags'] = sorted(tags)
    if low.get('code-fold') in ('true', 'show'): md['code_fold'] = low['code-fold']
    if 'code-summary' in opts: md['code_summary'] = opts['code-summary']
    if 'fig-cap' in opts: md['fig_cap'] = opts['fig-cap']

def _filter_defaults():
    "nbdev's processors, with `exec_show_docs` keeping the saved outputs of cells that mix imports and code."
    import ast
    from nbdev.processors import FilterDefaults, exec_show_docs, _do_eval, _show_docs
    class exec_show_docs_keep_outputs(exec_show_docs):
        """As nbdev's, except for cells it runs only because they contain an import among other code
        (nbdev warns about those, reruns them and replaces their saved outputs, or stops if they need
        names from other cells): run only their top-level imports and keep the outputs the notebook saved."""
        def __call__(self, cell):
            if not getattr(self.nb, 'has_docs_', False) or not hasattr(self, 'k'): return
            if str(getattr(self.nb, 'frontmatter_', {}).get('skip_showdoc', False)).lower() in ('true', '1', 'yes'): return
            if not _do_eval(cell): return
            trees, imp = cell.parsed_(), (ast.Import, ast.ImportFrom)
            if (cell.directives_.keys() & {'export', 'exports', 'exporti', 'exec_doc'}) or _show_docs(trees) \
               or all(isinstance(t, imp) for t in trees):
                return super().__call__(cell)
            code = '\n'.join(ast.get_source_segment(cell.source, t) or '' for t in trees if isinstance(t, imp))
            self.k.run(code)
            if self.k.exc: raise Exception(f'Error in cell {cell.idx_} while importing:\n{code}') from self.k.exc
    class Filter(FilterDefaults):
        def base_procs(self):
            return [exec_show_docs_keep_outputs if p is exec_show_docs else p for p in super().base_procs()]
    return Filter

def _proc_worker(src: str) -> dict:
    "Notebook `src` processed for the docs (nbdev's processors, then `quarto_options`), run from its folder."
    os.chdir(Path(src).parent)             # as when the notebook runs; settings.ini is found upwards
    os.environ['IN_TEST'] = '1'             # what nbdev_proc_nbs sets
    import warnings
    warnings.filterwarnings('ignore', message='Found cells containing imports')   # handled: see _filter_defaults
    from execnb.nbio import read_nb, nb2dict
    nb = read_nb(src)
    _filter_defaults()()(nb)
    for c in nb.cells: quarto_options(c)
    out = json.loads(json.dumps(nb2dict(nb), default=str))
    for c in out['cells']: c.pop('has_sd', None)   # nbdev's own mark, not nbformat's: nbconvert would reject it
    out['metadata'].pop('widgets', None)    # widget state (nbdev's exec_show_docs adds its own): no widget manager here
    return out

def process_all(nbs: list[Path], jobs: int = 2) -> dict[Path, dict]:
    "Each notebook processed by `_proc_worker`, `jobs` at a time (spawned processes: each runs its own show_docs)."
    try: import nbdev, execnb  # noqa: F401
    except ImportError: raise SystemExit('build_docs: nbdev is not installed; pip install -e ".[dev]"')
    if str(Path(__file__).parent) not in sys.path: sys.path.insert(0, str(Path(__file__).parent))
    import build_docs   # pickle the worker by this module's name, not __main__'s (spawned workers import it)
    with ProcessPoolExecutor(max_workers=max(1, min(jobs, len(nbs))), mp_context=get_context('spawn')) as ex:
        futs = {p: ex.submit(build_docs._proc_worker, str(p)) for p in nbs}
        out = {}
        for p, f in futs.items():
            try: out[p] = f.result()
            except Exception as e: raise SystemExit(f'build_docs: processing {p} failed: {type(e).__name__}: {e}')
    return out

def front_matter(nb: dict) -> dict:
    "The YAML front matter (title, description, output-file) of the raw cell nbdev puts first."
    import yaml
    for c in nb['cells']:
        src = ''.join(c['source']) if isinstance(c['source'], list) else c['source']
        m = re.match(r'^\s*---\s*\n(.*?)\n---', src, re.S) if c['cell_type'] == 'raw' else None
        if m: return {k: str(v) for k, v in (yaml.safe_load(m.group(1)) or {}).items()}
    return {}

# ---------------------------------------------------------------------------------------------
# 3. nbconvert: the exporter with the site's template

def slug(text: str) -> str:
    "A heading's id as Quarto (pandoc) makes it: lower case, punctuation but `_-.` dropped, words joined by `-`."
    t = re.sub(r'[^\w\s.-]', '', text.lower())
    t = re.sub(r'^[^a-z]+', '', '-'.join(t.split()))
    return t or 'section'

def exporter():
    "nbconvert's HTMLExporter with the site's template, MathML math, Quarto's heading ids and pandoc's `{attr}` links."
    import html
    from bs4 import BeautifulSoup
    from latex2mathml.converter import convert
    from nbconvert import HTMLExporter
    from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath
    from nbconvert.preprocessors import TagRemovePreprocessor, CoalesceStreamsPreprocessor
    try: from jinja2 import pass_context
    except ImportError: from jinja2 import contextfilter as pass_context

    class Renderer(IPythonRenderer):
        def __init__(self, ids: set, **kw): super().__init__(**kw); self.ids = ids
        def inline_html(self, html):   # nbconvert embeds images by re-parsing each tag alone, which would empty <a>...</a>
            return super().inline_html(html) if '<img' in html else html
        def inline_math(self, body): return self._math(body, 'inline')
        def block_math(self, body): return self._math(body, 'block')
        def _math(self, tex, display):
            try: return convert(tex, display=display)
            except Exception: return f'<code class="tex">{html.escape(tex)}</code>'   # TeX latex2mathml can't read: shown as is
        def heading(self, text, level, **attrs):
            s = base = slug(BeautifulSoup(text, 'html.parser').get_text()); i = 1
            while s in self.ids: i += 1; s = f'{base}-{i}'
            self.ids.add(s)
            return f'<h{level} id="{s}">{text}<a class="anchor-link" href="#{s}">{self.anchor_link_text}</a></h{level}>\n'

    re_attr_link = re.compile(r'\[([^\]\n]*)\]\(([^)\s]+)\)\{([^}\n]*)\}')   # pandoc's [text](url){key="value"}
    def attr_link(m):
        attrs = ''.join(f' {k}="{html.escape(v)}"' for k, v in re.findall(r'([\w-]+)="([^"]*)"', m.group(3)) if k == 'target')
        return f'<a href="{html.escape(m.group(2))}" class="source-link"{attrs}>{html.escape(m.group(1))}</a>'

    class SiteExporter(HTMLExporter):
        ids: set = set()
        @pass_context
        def markdown2html(self, context, source):
            cell = context.get('cell', {})
            renderer = Renderer(self.ids, escape=False, attachments=cell.get('attachments', {}), embed_images=True,
                                path=context.get('resources', {}).get('metadata', {}).get('path', ''),
                                anchor_link_text=self.anchor_link_text)
            return MarkdownWithMath(renderer=renderer).render(re_attr_link.sub(attr_link, source))
        def from_notebook_node(self, nb, resources=None, **kw):
            self.ids = set()   # heading ids are unique within a page
            return super().from_notebook_node(nb, resources, **kw)

    ex = SiteExporter(template_name='husai', extra_template_basedirs=[str(TEMPLATES)],
                      exclude_input_prompt=True, exclude_output_prompt=True, embed_images=True)
    ex.register_preprocessor(TagRemovePreprocessor(remove_cell_tags={'remove_cell'}, remove_input_tags={'remove_input'},
                                                   remove_all_outputs_tags={'remove_output'}), enabled=True)
    ex.register_preprocessor(CoalesceStreamsPreprocessor(), enabled=True)
    return ex

# ---------------------------------------------------------------------------------------------
# 4. Pages: names, links, sidebar

class Page:
    "One notebook's page: where it goes in the site, its title, its sidebar group."
    def __init__(self, src: Path, nb: dict, nbs: Path, section: str | None, listed: bool):
        self.src, self.nb, self.rel, self.section, self.listed = src, nb, src.relative_to(nbs), section, listed
        fm = front_matter(nb)
        nb['cells'] = [c for c in nb['cells'] if not (c['cell_type'] == 'raw' and front_matter({'cells': [c]}))]   # in the header
        self.title, self.description = fm.get('title') or self.rel.stem, fm.get('description', '')
        out = fm.get('output-file') or re.sub(r'^\d+_', '', self.rel.stem) + '.html'
        self.url = (self.rel.parent/out).as_posix()        # path in the site, relative to its root

def _href(target: str, here: str) -> str: return posixpath.relpath(target, posixpath.dirname(here) or '.')

def site_url(url: str, page: Page, by_src: dict, doc_prefix: str) -> str:
    "A link as the site needs it: to a notebook -> its page; to the docs host (nbdev's doc links) -> relative."
    path, hash_, frag = url.partition('#')
    if doc_prefix and url.startswith(doc_prefix):
        return _href(path[len(doc_prefix):] or 'index.html', page.url) + hash_ + frag
    if path.endswith('.ipynb') and not re.match(r'^([a-z][\w+.-]*:|//)', url, re.I):
        p = by_src.get((page.src.parent/path).resolve())
        return (_href(p.url, page.url) if p else path[:-len('.ipynb')] + '.html') + hash_ + frag
    return url

def sidebar(page: Page, pages: list[Page], home: Page) -> list[dict]:
    "The sidebar as `page` links it: the groups of nbs/sidebar.yml in order, each a section name and its links."
    groups = []
    for p in (p for p in pages if p.listed):
        if not groups or groups[-1]['section'] != p.section: groups.append({'section': p.section, 'links': []})
        groups[-1]['links'].append({'href': _href(p.url, page.url), 'active': p is page, 'label': 'Overview' if p is home else p.title})
    return groups

def render(page: Page, pages: list[Page], ex, site_title: str, doc_prefix: str) -> str:
    "The HTML of `page`: nbconvert with the site's template, then its links made relative and its sections listed."
    import nbformat
    from bs4 import BeautifulSoup
    home = next((p for p in pages if p.rel.as_posix() == 'index.ipynb'), pages[0])
    resources = {'metadata': {'path': str(page.src.parent)},
                 'page': {'title': page.title, 'description': page.description, 'site_title': site_title,
                          'head_title': page.title if page is home else f'{page.title} – {site_title}',
                          'home': _href(home.url, page.url), 'sidebar': sidebar(page, pages, home),
                          'source': f'nbs/{page.rel.as_posix()}'}}
    body, _ = ex.from_notebook_node(nbformat.reads(json.dumps(page.nb), as_version=4), resources=resources)
    soup = BeautifulSoup(body, 'html.parser')
    by_src = {p.src.resolve(): p for p in pages}
    for tag, attr in (('a', 'href'), ('img', 'src')):
        for el in soup.find_all(tag, **{attr: True}): el[attr] = site_url(el[attr], page, by_src, doc_prefix)
    toc = soup.select_one('nav.sidebar ul.toc')
    for h in soup.select('main.content h2[id]'):
        a = soup.new_tag('a', href=f'#{h["id"]}'); a.string = h.get_text().rstrip('¶').strip()
        li = soup.new_tag('li'); li.append(a); toc.append(li)
    return str(soup)

def land_doc_links(body: str, here: str, ids: dict) -> str:
    """nbdev links every backticked name it knows, but only names with a `show_doc` heading have an anchor.
    A method without its own heading (`SAEUnit.run`) links to its class; a private helper (`_fit`) stays code."""
    from bs4 import BeautifulSoup
    soup = BeautifulSoup(body, 'html.parser')
    for a in soup.find_all('a', href=True):
        path, _, frag = a['href'].partition('#')
        if not frag or not path.endswith('.html') or re.match(r'^([a-z][\w+.-]*:|//)', path, re.I): continue
        target = posixpath.normpath(posixpath.join(posixpath.dirname(here), path))
        if target not in ids or frag in ids[target]: continue
        owner = frag.split('.')[0]
        if '.' in frag and owner in ids[target]: a['href'] = f'{path}#{owner}'
        elif len(a.contents) == 1 and getattr(a.contents[0], 'name', None) == 'code': a.unwrap()   # a doc link, not prose
    return str(soup)

def build(out: Path, nbs: Path = NBS, jobs: int = 2, quiet: bool = False) -> list[Page]:
    "Build the site into `out` (emptied first). Returns the pages, in sidebar order."
    t0 = time.time()
    srcs = find_notebooks(nbs)
    if not srcs: raise SystemExit(f'build_docs: no notebooks under {nbs}')
    groups = sidebar_groups(nbs)
    processed = process_all(srcs, jobs=jobs)
    pages = [Page(p, processed[p], nbs, section, True) for section, ps in groups for p in ps]
    listed = {p.src for p in pages}
    pages += [Page(p, processed[p], nbs, None, False) for p in srcs if p not in listed]   # not in sidebar.yml: a page all the same
    seen = set()
    for p in pages:   # two notebooks wanting one output file: the later keeps its own stem
        if p.url in seen: p.url = (p.rel.parent/(p.rel.stem + '.html')).as_posix()
        seen.add(p.url)
    cfg = _settings(nbs.parent)
    site_title = cfg.get('title') or cfg.get('lib_name') or 'docs'
    doc_prefix = (cfg.get('doc_host', '') + cfg.get('doc_baseurl', '')).rstrip('/') + '/' if cfg.get('doc_host') else ''
    if out.exists(): shutil.rmtree(out)
    ex = exporter()
    html_of = {p.url: render(p, pages, ex, site_title, doc_prefix) for p in pages}
    ids = {u: set(re.findall(r'\sid="([^"]+)"', h)) for u, h in html_of.items()}
    for p in pages:
        dst = out/p.url
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text(land_doc_links(html_of[p.url], p.url, ids), encoding='utf-8')
    if not quiet: print(f'build_docs: {len(pages)} pages -> {out} ({time.time() - t0:.1f} s)')
    return pages

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog='build_docs.py', description=__doc__.split('\n\n')[0])
    ap.add_argument('--out', type=Path, default=ROOT/'_site', help='output folder, emptied first (default: _site)')
    ap.add_argument('--nbs', type=Path, default=NBS, help='notebook folder (default: nbs)')
    ap.add_argument('--jobs', type=int, default=2, help='worker processes for nbdev processing (default: 2)')
    a = ap.parse_args(argv)
    build(a.out.resolve(), a.nbs.resolve(), jobs=a.jobs)
    return 0

if __name__ == '__main__':
    sys.exit(main())
