#!/usr/bin/env python
"""Build the documentation site offline, without Quarto (which cannot be installed here; GUIDE §4).

Every notebook under nbs/ (folders starting with `_` or `.` skipped) is processed by nbdev's own
docs processors -- what `nbdev_proc_nbs` runs: `show_doc` rendered, exported and `#| hide` cells
dropped, front matter taken from the title cell (one change: a cell that mixes imports with other
code keeps its saved outputs, where nbdev would rerun it) -- and then rendered by this script to a static,
self-contained HTML page (no JavaScript, nothing fetched from the network):

- `#| echo: false` hides a cell's code, `#| output: false` its outputs, `#| include: false` and
  `#| hide` the whole cell; `#| code-fold: true` folds the code;
- outputs: markdown, HTML, plain text, streams, errors, and images, which are written beside the
  page (`<page>_files/`); ipywidgets views (progress bars) have no static form and are left out;
- links to `*.ipynb` become links to their pages; links to the docs host in settings.ini
  (what nbdev's `add_links` writes) become relative links; local files a page links to
  (figures in markdown) are copied into `_files/` of the site;
- a sidebar on every page: the index, then Library (the numbered notebooks in nbs/), then
  Findings (nbs/findings/), then any other notebooks.

Usage: `python tools/build_docs.py --out _site` (then open `_site/index.html`).
Where Quarto exists, `nbdev_docs` builds the Quarto site from nbs/_quarto.yml and nbs/sidebar.yml
(same groups, as globs; it keeps sidebar.yml only with `custom_sidebar = True` in settings.ini).
This is a development tool: it needs nbdev (a dev requirement), the library never does.
"""
from __future__ import annotations
import argparse, base64, configparser, html, json, os, posixpath, re, shutil, sys, time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT/'nbs'
GROUPS = ('Library', 'Findings', 'Pages')

# ---------------------------------------------------------------------------------------------
# Finding and grouping the notebooks

def find_notebooks(nbs: Path = NBS) -> list[Path]:
    "Every notebook under `nbs`, skipping files and folders whose names start with `_` or `.`."
    out = [p for p in nbs.rglob('*.ipynb')
           if not any(part.startswith(('_', '.')) for part in p.relative_to(nbs).parts)]
    return sorted(out, key=lambda p: (len(p.relative_to(nbs).parts), str(p.relative_to(nbs))))

def group_of(rel: Path) -> str | None:
    "Sidebar group of a notebook path relative to nbs/: None for the index page."
    if rel.as_posix() == 'index.ipynb': return None
    if rel.parts[0] == 'findings': return 'Findings'
    if len(rel.parts) == 1 and re.match(r'^\d+_', rel.name): return 'Library'
    return 'Pages'

def _settings(root: Path = ROOT) -> dict:
    cp = configparser.ConfigParser(delimiters=['='], interpolation=None)
    cp.read(root/'settings.ini', encoding='utf-8')
    return dict(cp['DEFAULT']) if cp.has_section('DEFAULT') or cp.defaults() else {}

# ---------------------------------------------------------------------------------------------
# Processing (nbdev's docs processors, in worker processes: each notebook's cells run there)

def _proc_worker(src: str) -> dict:
    "nbdev's `FilterDefaults` processors applied to notebook `src`, run from the notebook's folder."
    os.chdir(Path(src).parent)             # as when the notebook runs; settings.ini found upwards
    os.environ['IN_TEST'] = '1'             # what nbdev_proc_nbs sets
    import warnings
    warnings.filterwarnings('ignore', message='Found cells containing imports')   # handled: see _filter_defaults
    from execnb.nbio import read_nb
    nb = read_nb(src)
    _filter_defaults()()(nb)
    return json.loads(json.dumps(nb, default=str))

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

def _src(c) -> str: return ''.join(c.get('source') or '') if isinstance(c.get('source'), list) else (c.get('source') or '')

_re_dir = re.compile(r'^\s*#\|\s*([\w-]+)\s*:?\s*(.*?)\s*$')

def directives(src: str) -> tuple[dict, str]:
    "The `#| key: value` lines at the top of a code cell as a dict, and the code without them."
    d, lines = {}, src.splitlines()
    i = 0
    while i < len(lines) and (lines[i].strip() == '' or _re_dir.match(lines[i])):
        m = _re_dir.match(lines[i])
        if m: d[m.group(1).lower()] = m.group(2).strip().strip('"\'')
        i += 1
    return d, '\n'.join(lines[i:]).strip('\n')

def light_process(nb: dict) -> dict:
    "A stand-in for nbdev's processors where nbdev is absent: front matter, drop hidden/exported cells."
    cells = nb['cells']
    for c in cells:
        if c['cell_type'] == 'markdown':
            m = re.match(r'^#\s+(.+?)\s*(?:\n+>\s*(.+?))?\s*$', _src(c).strip(), re.S)
            if m:
                fm = f'---\ntitle: {json.dumps(m.group(1))}\n' + (f'description: {json.dumps(m.group(2))}\n' if m.group(2) else '') + '---'
                cells = [{'cell_type': 'raw', 'source': fm, 'metadata': {}}] + [o for o in cells if o is not c]
            break
    keep = []
    for c in cells:
        if c['cell_type'] == 'code':
            d, _ = directives(_src(c))
            if d.keys() & {'hide', 'export', 'exporti', 'default_exp'}: continue
        keep.append(c)
    return {**nb, 'cells': keep}

def process_all(nbs: list[Path], jobs: int = 2, use_nbdev: bool = True) -> dict[Path, dict]:
    if use_nbdev:
        try: import nbdev, execnb  # noqa: F401
        except ImportError:
            print('build_docs: nbdev is not installed (pip install -e ".[dev]"); show_doc is not rendered', file=sys.stderr)
            use_nbdev = False
    if not use_nbdev: return {p: light_process(json.loads(p.read_text(encoding='utf-8'))) for p in nbs}
    if str(Path(__file__).parent) not in sys.path: sys.path.insert(0, str(Path(__file__).parent))
    import build_docs   # pickle the worker by this module's name, not __main__'s (spawned workers import it)
    with ProcessPoolExecutor(max_workers=max(1, min(jobs, len(nbs))), mp_context=get_context('spawn')) as ex:
        futs = {p: ex.submit(build_docs._proc_worker, str(p)) for p in nbs}
        out = {}
        for p, f in futs.items():
            try: out[p] = f.result()
            except Exception as e:
                raise SystemExit(f'build_docs: processing {p} failed: {type(e).__name__}: {e}')
    return out

def front_matter(nb: dict) -> dict:
    "The YAML front matter (title, description, output-file) from the raw cell nbdev puts first."
    for c in nb['cells']:
        if c['cell_type'] != 'raw': continue
        m = re.match(r'^\s*---\s*\n(.*?)\n---', _src(c), re.S)
        if not m: continue
        try:
            import yaml
            fm = yaml.safe_load(m.group(1)) or {}
        except Exception:
            fm = dict(re.findall(r'^([\w-]+):\s*(.*)$', m.group(1), re.M))
        return {k: str(v).strip().strip('\'"') for k, v in fm.items()}
    return {}

# ---------------------------------------------------------------------------------------------
# Rendering

def _highlight(code: str, lang: str = 'python') -> str:
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import get_lexer_by_name, TextLexer
    try: lexer = get_lexer_by_name(lang or 'text')
    except Exception: lexer = TextLexer()
    return highlight(code, lexer, HtmlFormatter(cssclass='highlight'))

_TEX_SUBS = [(r'\\(?:text|textrm|operatorname)\s*\{', r'\\mathrm{'), (r'\\[td]frac\b', r'\\frac'),
             (r'\\lVert|\\rVert', r'\\Vert'), (r'\\lvert|\\rvert', '|'), (r'\\!', '')]
_tex_cache: dict = {}

def tex_svg(tex: str, display: bool = False) -> str:
    "TeX math as inline SVG drawn by matplotlib's mathtext (no MathJax, nothing fetched); raw TeX if it can't."
    key = (tex, display)
    if key in _tex_cache: return _tex_cache[key]
    label = html.escape(tex.strip(), quote=True)
    try:
        import io, matplotlib
        matplotlib.use('Agg')
        from matplotlib import mathtext, rc_context
        from matplotlib.font_manager import FontProperties
        t = tex.strip()
        for a, b in _TEX_SUBS: t = re.sub(a, b, t)
        prop, buf = FontProperties(size=14 if display else 12), io.BytesIO()   # 12pt = the 16px text
        with rc_context({'mathtext.fontset': 'cm', 'svg.fonttype': 'path', 'svg.hashsalt': 'husai'}):
            depth = mathtext.MathTextParser('path').parse(f'${t}$', dpi=72, prop=prop).depth
            mathtext.math_to_image(f'${t}$', buf, prop=prop, format='svg')
        svg = buf.getvalue().decode()
        svg = re.sub(r'^.*?(?=<svg)', '', svg, flags=re.S)
        svg = re.sub(r'<metadata>.*?</metadata>|<style[^>]*>.*?</style>', '', svg, flags=re.S)
        svg = re.sub(r'\n\s*', '\n', svg).strip()
        out = (f'<span class="math" role="img" aria-label="{label}" title="{label}" '
               f'style="vertical-align:-{depth:g}pt">{svg}</span>')
    except Exception:
        out = f'<span class="math tex">{label}</span>'
    _tex_cache[key] = out
    return out

def _markdown():
    import mistune
    class R(mistune.HTMLRenderer):
        def block_code(self, code, info=None):
            return _highlight(code.rstrip('\n'), (info or 'text').split()[0])
        def inline_math(self, text): return tex_svg(text)
        def block_math(self, text): return f'<div class="math display">{tex_svg(text, display=True)}</div>\n'
    md = mistune.create_markdown(renderer=R(escape=False),
                                 plugins=['table', 'strikethrough', 'url', 'footnotes', 'math'])
    _re_attr_link = re.compile(r'\[([^\]\n]*)\]\(([^)\s]+)\)\{([^}\n]*)\}')   # pandoc: [t](u){k="v"}
    def render(text: str) -> str:
        def attr_link(m):
            attrs = ' '.join(f'{k}="{html.escape(v)}"' for k, v in re.findall(r'([\w-]+)="([^"]*)"', m.group(3))
                             if k in ('target', 'title', 'class'))
            return f'<a href="{html.escape(m.group(2))}" class="source-link" {attrs}>{html.escape(m.group(1))}</a>'
        return md(_re_attr_link.sub(attr_link, text))
    return render

_re_ansi = re.compile(r'\x1b\[[0-9;?]*[A-Za-z]')

def _terminal_text(s: str) -> str:
    "Text as a terminal shows it: ANSI codes removed, `\\r` overwrites the line (tqdm bars)."
    s = _re_ansi.sub('', s)
    return '\n'.join(line.rsplit('\r', 1)[-1] for line in s.replace('\r\n', '\n').split('\n'))

_IMG = {'image/png': 'png', 'image/jpeg': 'jpg', 'image/gif': 'gif'}
_ORDER = ['text/html', 'text/markdown', 'image/svg+xml', 'image/png', 'image/jpeg', 'image/gif',
          'text/latex', 'text/plain']

class Page:
    "One notebook rendered to one HTML page of the site."
    def __init__(self, src: Path, nb: dict, nbs: Path):
        self.src, self.nb, self.rel = src, nb, src.relative_to(nbs)
        self.fm = front_matter(nb)
        self.title = self.fm.get('title') or self.rel.stem
        self.description = self.fm.get('description', '')
        out = self.fm.get('output-file') or re.sub(r'^\d+_', '', self.rel.stem) + '.html'
        self.url = (self.rel.parent/out).as_posix()        # path in the site, relative to its root
        self.group = group_of(self.rel)
        self.files: dict[str, bytes] = {}                  # site path -> bytes (figures of outputs)

    def render_outputs(self, outputs, md, asis: bool = False) -> str:
        "HTML of a cell's outputs; `asis` (`#| output: asis`): printed text is markdown, as Quarto reads it."
        parts = []
        for o in outputs:
            t = o.get('output_type')
            if t == 'stream':
                txt = _terminal_text(''.join(o.get('text', '')))
                if asis and o.get('name') == 'stdout':
                    parts.append(f'<div class="output markdown">{md(txt)}</div>'); continue
                if txt.strip(): parts.append(f'<pre class="output stream {o.get("name","")}">{html.escape(txt.rstrip())}</pre>')
                continue
            if t == 'error':
                tb = _terminal_text('\n'.join(o.get('traceback', [])) or f'{o.get("ename")}: {o.get("evalue")}')
                parts.append(f'<pre class="output error">{html.escape(tb)}</pre>'); continue
            data = o.get('data', {})
            if 'application/vnd.jupyter.widget-view+json' in data: continue   # no static form
            mime = next((m for m in _ORDER if m in data), None)
            if mime is None: continue
            v = data[mime]
            v = ''.join(v) if isinstance(v, list) else v
            if mime == 'text/html': parts.append(f'<div class="output html">{v}</div>')
            elif mime == 'text/markdown': parts.append(f'<div class="output markdown">{md(v)}</div>')
            elif mime == 'image/svg+xml': parts.append(f'<div class="output figure">{v}</div>')
            elif mime in _IMG:
                name = f'{Path(self.url).stem}_files/figure-{len(self.files) + 1}.{_IMG[mime]}'
                self.files[posixpath.join(posixpath.dirname(self.url), name)] = base64.b64decode(v)
                alt = html.escape(''.join(data.get('text/plain', '')) or 'figure')
                parts.append(f'<div class="output figure"><img src="{name}" alt="{alt}"></div>')
            elif mime == 'text/latex': parts.append(f'<div class="output math">{html.escape(v)}</div>')
            else: parts.append(f'<pre class="output">{html.escape(_terminal_text(v).rstrip())}</pre>')
        return '\n'.join(parts)

    def render_body(self, md) -> str:
        out = []
        for c in self.nb['cells']:
            src = _src(c)
            if c['cell_type'] == 'markdown':
                if src.strip(): out.append(f'<div class="cell markdown">{md(src)}</div>')
                continue
            if c['cell_type'] != 'code': continue
            d, code = directives(src)
            low = {k: v.lower() for k, v in d.items()}
            if 'hide' in d or low.get('include') == 'false': continue
            show_code = bool(code.strip()) and low.get('echo') != 'false'
            outs = '' if low.get('output') == 'false' else self.render_outputs(c.get('outputs', []), md, asis=low.get('output') == 'asis')
            if outs and d.get('fig-cap'): outs += f'<div class="caption">{md(d["fig-cap"])}</div>'
            if not show_code and not outs: continue
            inp = ''
            if show_code:
                inp = f'<div class="cell-input">{_highlight(code)}</div>'
                if low.get('code-fold') in ('true', 'show'):
                    inp = f'<details{" open" if low["code-fold"] == "show" else ""}><summary>Code</summary>{inp}</details>'
            out.append(f'<div class="cell code">{inp}' + (f'<div class="cell-output">{outs}</div>' if outs else '') + '</div>')
        return '\n'.join(out)

def _slug(text: str) -> str:
    t = html.unescape(re.sub(r'<[^>]+>', '', text)).strip().lower()
    return re.sub(r'[^\w.-]+', '-', t).strip('-') or 'section'

def _add_heading_ids(body: str) -> tuple[str, list]:
    "Give headings ids as Quarto does (lower case, spaces to dashes); return the h2s for the page's contents."
    seen, toc = set(), []
    def sub(m):
        lvl, attrs, inner = m.group(1), m.group(2), m.group(3)
        if 'id=' in attrs: return m.group(0)
        s = base = _slug(inner); i = 1
        while s in seen: i += 1; s = f'{base}-{i}'
        seen.add(s)
        if lvl == '2': toc.append((s, html.unescape(re.sub(r'<[^>]+>', '', inner))))
        return f'<h{lvl}{attrs} id="{s}">{inner}</h{lvl}>'
    return re.sub(r'<h([1-6])([^>]*)>(.*?)</h\1>', sub, body, flags=re.S), toc

_re_url_attr = re.compile(r'(\s(?:href|src)=)(["\'])(.*?)\2', re.S)

def rewrite_links(body: str, page: Page, pages_by_src: dict, doc_prefix: str, site_files: dict, root: Path) -> str:
    "Links to notebooks -> their pages; links to the docs host -> relative; local files copied into the site."
    here = posixpath.dirname(page.url)
    def rel(target):  # site path -> URL relative to this page
        return posixpath.relpath(target, here or '.')
    def sub(m):
        url = html.unescape(m.group(3))
        new = url
        if doc_prefix and url.startswith(doc_prefix):
            path, _, frag = url[len(doc_prefix):].partition('#')
            new = rel(path or 'index.html') + (f'#{frag}' if frag else '')
        elif not re.match(r'^([a-z][\w+.-]*:|#|//)', url, re.I) and url:
            path, _, frag = url.partition('#')
            path = path.split('?')[0]
            target = (page.src.parent/path).resolve()
            if path.endswith('.ipynb'):
                p = pages_by_src.get(target)
                new = (rel(p.url) if p else path[:-6] + '.html') + (f'#{frag}' if frag else '')
            elif target.is_file() and root in target.parents:
                site_path = '_files/' + target.relative_to(root).as_posix()
                site_files[site_path] = target
                new = rel(site_path) + (f'#{frag}' if frag else '')
        return f'{m.group(1)}{m.group(2)}{html.escape(new, quote=True)}{m.group(2)}'
    return _re_url_attr.sub(sub, body)

def sidebar(pages: list[Page], current: Page, toc: list, site_title: str) -> str:
    here = posixpath.dirname(current.url)
    def link(p):
        cls = ' class="active"' if p is current else ''
        label = 'Overview' if p.group is None else p.title
        sub = ''
        if p is current and toc:
            sub = '<ul class="toc">' + ''.join(f'<li><a href="#{a}">{html.escape(t)}</a></li>' for a, t in toc) + '</ul>'
        return f'<li><a{cls} href="{posixpath.relpath(p.url, here or ".")}">{html.escape(label)}</a>{sub}</li>'
    index = next((p for p in pages if p.group is None), None)
    head = (f'<a class="site-title" href="{posixpath.relpath(index.url, here or ".")}">{html.escape(site_title)}</a>'
            if index else f'<span class="site-title">{html.escape(site_title)}</span>')
    parts = [head, '<ul class="top">' + (link(index) if index else '') + '</ul>']
    for g in GROUPS:
        ps = [p for p in pages if p.group == g]
        if ps: parts.append(f'<div class="group"><h2>{g}</h2><ul>' + ''.join(map(link, ps)) + '</ul></div>')
    return '<nav class="sidebar" aria-label="Site">' + '\n'.join(parts) + '</nav>'

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="tools/build_docs.py">
<title>{title}</title>
<meta name="description" content="{description}">
<link rel="stylesheet" href="{css}">
</head>
<body>
<div class="layout">
{sidebar}
<main class="content">
<header class="page-header"><h1 class="title">{h1}</h1>{desc_html}</header>
{body}
<footer>Rendered from <code>{source}</code> by <code>tools/build_docs.py</code>.</footer>
</main>
</div>
</body>
</html>
"""

CSS = """
:root { --fg:#1f2328; --muted:#59636e; --bg:#fff; --side:#f6f8fa; --line:#d1d9e0; --accent:#0969da; --code:#f6f8fa; }
* { box-sizing: border-box; }
body { margin:0; color:var(--fg); background:var(--bg); font:16px/1.6 -apple-system, "Segoe UI", "Helvetica Neue", Arial, sans-serif; }
a { color:var(--accent); text-decoration:none; } a:hover { text-decoration:underline; }
.layout { display:flex; min-height:100vh; }
.sidebar { flex:0 0 260px; background:var(--side); border-right:1px solid var(--line); padding:1.2rem 1rem;
           position:sticky; top:0; height:100vh; overflow-y:auto; font-size:0.93rem; }
.sidebar .site-title { display:block; font-size:1.35rem; font-weight:700; color:var(--fg); margin-bottom:0.8rem; }
.sidebar ul { list-style:none; margin:0; padding:0; }
.sidebar li a { display:block; padding:0.15rem 0.5rem; border-radius:4px; color:var(--fg); }
.sidebar li a.active { background:#ddf4ff; color:var(--accent); font-weight:600; }
.sidebar .toc { margin:0.1rem 0 0.3rem 0.8rem; border-left:2px solid var(--line); }
.sidebar .toc a { font-size:0.85rem; color:var(--muted); padding:0.05rem 0.5rem; }
.sidebar .group h2 { font-size:0.75rem; text-transform:uppercase; letter-spacing:0.06em; color:var(--muted); margin:1.1rem 0 0.3rem 0.5rem; }
.content { flex:1 1 auto; min-width:0; max-width:960px; padding:1.5rem 2.5rem 3rem; }
.page-header { border-bottom:1px solid var(--line); margin-bottom:1.2rem; }
h1.title { margin:0.2rem 0 0.3rem; font-size:2.1rem; }
.page-header .description { color:var(--muted); font-size:1.1rem; margin:0 0 1rem; }
h2 { margin-top:2rem; padding-bottom:0.2rem; border-bottom:1px solid var(--line); }
h3 { margin-top:1.6rem; }
code { font-family:ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size:0.88em; background:var(--code); padding:0.1em 0.3em; border-radius:4px; }
pre, .highlight pre { font-family:ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size:0.85rem; line-height:1.45;
      background:var(--code); border:1px solid var(--line); border-radius:6px; padding:0.7rem 0.9rem; overflow-x:auto; margin:0.5rem 0; }
pre code { background:none; padding:0; }
.cell.code { margin:1rem 0; }
.cell-output pre.output { background:#fff; border-style:dashed; }
.cell-output pre.stderr { background:#fff8f0; }
.cell-output pre.error { background:#fff0f0; border-color:#f0b4b4; }
.cell-output .figure { text-align:center; }
.cell-output .figure img, .markdown img { max-width:100%; height:auto; }
.cell-output .markdown hr:first-child { display:none; }
div.caption { color:var(--muted); font-size:0.9rem; text-align:center; margin-top:0.2rem; }
.cell-output .markdown .highlight pre { border-left:3px solid var(--accent); }
table { border-collapse:collapse; margin:0.8rem 0; font-size:0.92rem; display:block; overflow-x:auto; }
th, td { border:1px solid var(--line); padding:0.3rem 0.7rem; text-align:left; vertical-align:top; }
th { background:var(--side); }
blockquote { margin:0.8rem 0; padding:0.2rem 1rem; color:var(--muted); border-left:4px solid var(--line); }
a.source-link { float:right; font-size:0.85rem; }
.math svg { display:inline-block; }
.math.tex { font-family:"Latin Modern Math", "STIX Two Math", "Cambria Math", serif; font-style:italic; }
div.math.display { text-align:center; margin:0.8rem 0; }
details > summary { cursor:pointer; color:var(--muted); font-size:0.9rem; }
footer { margin-top:3rem; padding-top:0.8rem; border-top:1px solid var(--line); color:var(--muted); font-size:0.85rem; }
@media (max-width: 800px) { .layout { display:block; } .sidebar { position:static; height:auto; border-right:0; border-bottom:1px solid var(--line); }
  .content { padding:1rem; } }
"""

def build(out: Path, nbs: Path = NBS, jobs: int = 2, use_nbdev: bool = True, quiet: bool = False) -> list[Page]:
    "Build the site into `out` (emptied first). Returns the pages."
    t0 = time.time()
    srcs = find_notebooks(nbs)
    if not srcs: raise SystemExit(f'build_docs: no notebooks under {nbs}')
    processed = process_all(srcs, jobs=jobs, use_nbdev=use_nbdev)
    cfg = _settings(nbs.parent)
    site_title = cfg.get('title') or cfg.get('lib_name') or 'docs'
    doc_prefix = (cfg.get('doc_host', '') + cfg.get('doc_baseurl', '')).rstrip('/') + '/' if cfg.get('doc_host') else ''
    pages = [Page(p, processed[p], nbs) for p in srcs]
    urls = {}
    for p in pages:   # two notebooks wanting one output file: the later keeps its own stem
        if p.url in urls: p.url = (p.rel.parent/(p.rel.stem + '.html')).as_posix()
        urls[p.url] = p
    pages_by_src = {p.src.resolve(): p for p in pages}
    order = {None: 0, 'Library': 1, 'Findings': 2, 'Pages': 3}
    pages.sort(key=lambda p: (order[p.group], p.rel.as_posix()))
    if out.exists(): shutil.rmtree(out)
    (out/'assets').mkdir(parents=True)
    from pygments.formatters import HtmlFormatter
    (out/'assets'/'site.css').write_text(CSS + HtmlFormatter(style='friendly').get_style_defs('.highlight'), encoding='utf-8')
    md, site_files = _markdown(), {}
    for p in pages:
        body, toc = _add_heading_ids(p.render_body(md))
        body = rewrite_links(body, p, pages_by_src, doc_prefix, site_files, nbs.parent.resolve())
        here = posixpath.dirname(p.url) or '.'
        page_html = PAGE.format(
            title=html.escape(p.title if p.group is None else f'{p.title} – {site_title}'),
            description=html.escape(p.description), css=posixpath.relpath('assets/site.css', here),
            sidebar=sidebar(pages, p, toc, site_title),
            h1=html.escape(p.title), desc_html=f'<p class="description">{html.escape(p.description)}</p>' if p.description else '',
            body=body, source=html.escape('nbs/' + p.rel.as_posix()))
        dst = out/p.url
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text(page_html, encoding='utf-8')
        for path, data in p.files.items():
            (out/path).parent.mkdir(parents=True, exist_ok=True); (out/path).write_bytes(data)
    for path, src in site_files.items():
        (out/path).parent.mkdir(parents=True, exist_ok=True); shutil.copy2(src, out/path)
    if not quiet:
        print(f'build_docs: {len(pages)} pages, {sum(len(p.files) for p in pages)} figures, '
              f'{len(site_files)} linked files -> {out} ({time.time() - t0:.1f} s)')
    return pages

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog='build_docs.py', description=__doc__.split('\n\n')[0])
    ap.add_argument('--out', type=Path, default=ROOT/'_site', help='output folder, emptied first (default: _site)')
    ap.add_argument('--nbs', type=Path, default=NBS, help='notebook folder (default: nbs)')
    ap.add_argument('--jobs', type=int, default=2, help='worker processes for nbdev processing (default: 2)')
    ap.add_argument('--no-nbdev', action='store_true', help="don't run nbdev's processors (show_doc not rendered)")
    a = ap.parse_args(argv)
    build(a.out.resolve(), a.nbs.resolve(), jobs=a.jobs, use_nbdev=not a.no_nbdev)
    return 0

if __name__ == '__main__':
    sys.exit(main())
