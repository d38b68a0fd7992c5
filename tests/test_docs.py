"""The offline docs site (tools/build_docs.py: nbdev's processing, nbconvert's rendering): every notebook has a
page in the sidebar, every internal link and figure resolves, hidden cells stay hidden, every library page shows
its API reference, and every page loads in headless Chromium without errors, scripts or network requests."""
import base64, fcntl, html.parser, json, os, re, select, shutil, struct, subprocess, sys, time, zlib
from pathlib import Path
from urllib.parse import unquote, urlsplit
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT/'tools'))
import build_docs  # noqa: E402

CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
                  '--disable-component-update', '--disable-sync', '--disable-quic', '--disable-extensions',
                  '--window-size=1280,1600']

def _need_nbdev():
    try: import nbdev, execnb  # noqa: F401
    except ImportError: pytest.skip('nbdev is not installed (pip install -e ".[dev]"): the docs build needs it')

@pytest.fixture(scope='module')
def site(tmp_path_factory):
    "The site built from this checkout's notebooks, as the command line builds it."
    _need_nbdev()
    out = tmp_path_factory.mktemp('site')/'_site'
    site.notebooks = build_docs.find_notebooks()   # before the build (others may add notebooks meanwhile)
    r = subprocess.run([sys.executable, str(ROOT/'tools'/'build_docs.py'), '--out', str(out)],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    return out

# ---------------------------------------------------------------------------------------------
# A small synthetic project: the features the real notebooks may not use yet (figures, links)

def _png(w=8, h=6, rgb=(200, 30, 30)) -> bytes:
    raw = b''.join(b'\x00' + bytes(rgb)*w for _ in range(h))
    def chunk(t, d): return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 2, 0, 0, 0))
            + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))

def _nb(*cells):
    def cell(c):
        if isinstance(c, str): return {'cell_type': 'markdown', 'metadata': {}, 'source': c}
        src, outs = c
        return {'cell_type': 'code', 'execution_count': None, 'metadata': {}, 'source': src, 'outputs': outs}
    return {'cells': [cell(c) for c in cells], 'metadata': {'kernelspec': {'name': 'python3', 'display_name': 'python3', 'language': 'python'}},
            'nbformat': 4, 'nbformat_minor': 5}

def _write_toy(root: Path):
    nbs = root/'nbs'; (nbs/'findings').mkdir(parents=True); (nbs/'images').mkdir()
    shutil.copy(ROOT/'settings.ini', root/'settings.ini'); shutil.copy(build_docs.NBS/'sidebar.yml', nbs/'sidebar.yml')
    (nbs/'images'/'fig.png').write_bytes(_png(5, 5, (30, 30, 200)))
    png = base64.b64encode(_png()).decode()
    toy = {
        'index.ipynb': _nb('# toy\n\n> A toy site.', 'See [alpha](01_alpha.ipynb#details) and [the finding](findings/f1.ipynb).',
                           ('#| echo: false\nprint("shown without its code")', [{'output_type': 'stream', 'name': 'stdout', 'text': 'shown without its code\n'}])),
        '01_alpha.ipynb': _nb('# alpha\n\n> First library page.', ('#| hide\nsecret_hidden_cell = 1', []),
                              '## R & D\n\n## Details\n\nBack to the [index](index.ipynb); a figure file: ![saved](images/fig.png)',
                              ('x = 1\nx', [{'output_type': 'execute_result', 'execution_count': 1, 'metadata': {},
                                             'data': {'image/png': png, 'text/plain': '<Figure>'}}]),
                              ('#| output: false\nprint("not shown")', [{'output_type': 'stream', 'name': 'stdout', 'text': 'not shown\n'}])),
        'findings/f1.ipynb': _nb('# f1\n\n> A finding.', 'Uses [alpha](../01_alpha.ipynb).',
                                 ('#| echo: false\n#| output: asis\nprint(table)', [{'output_type': 'stream', 'name': 'stdout',
                                                                              'text': '| metric | value |\n|---|---|\n| mmcs | 0.5 |\n'}]),
                                 ('#| fig-cap: Stability *vs* size\nplot()', [{'output_type': 'display_data', 'metadata': {},
                                                                            'data': {'image/png': png, 'text/plain': '<Figure>'}}]),
                                 ('#| code-fold: true\n1 + 1', [{'output_type': 'stream', 'name': 'stderr', 'text': ' 10%|#\r100%|##########| done\n'}]),
                                 ('#| output: asis\n', [{'output_type': 'stream', 'name': 'stdout', 'text': 'from a cell of options only\n'}]),
                                 ('#| include: false\nprint("left out")', [{'output_type': 'stream', 'name': 'stdout', 'text': 'left out, output too\n'}]),
                                 ('from tqdm.auto import tqdm', [{'output_type': 'display_data', 'metadata': {}, 'data': {
                                     'application/vnd.jupyter.widget-view+json': {'model_id': 'abc', 'version_major': 2, 'version_minor': 0},
                                     'text/plain': 'widget-fallback-text'}}])),
    }
    for name, nb in toy.items(): (nbs/name).write_text(json.dumps(nb))
    return nbs

@pytest.fixture(scope='module')
def toy_site(tmp_path_factory):
    _need_nbdev()
    root = tmp_path_factory.mktemp('toy')
    nbs = _write_toy(root)
    pages = build_docs.build(root/'_site', nbs, jobs=1, quiet=True)
    return root/'_site', pages

# ---------------------------------------------------------------------------------------------
# Static checks

class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(); self.urls, self.ids, self.imgs, self.title, self._in_title = [], set(), [], '', False
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if 'id' in a: self.ids.add(a['id'])
        for k in ('href', 'src'):
            if a.get(k) is not None: self.urls.append(a[k])
        if tag == 'img': self.imgs.append(a.get('src'))
        if tag == 'title': self._in_title = True
    def handle_endtag(self, tag):
        if tag == 'title': self._in_title = False
    def handle_data(self, d):
        if self._in_title: self.title += d

def _parse(f: Path) -> _Links:
    p = _Links(); p.feed(f.read_text(encoding='utf-8')); return p

def check_links(site: Path) -> list[str]:
    "Every href/src that is not external resolves to a file in the site, and its #fragment to an id there."
    bad, parsed = [], {}
    def get(f):
        if f not in parsed: parsed[f] = _parse(f)
        return parsed[f]
    for page in sorted(site.rglob('*.html')):
        for url in get(page).urls:
            u = urlsplit(url)
            if u.scheme or url.startswith('//'): continue        # external (http, https, mailto, data)
            target = (page.parent/unquote(u.path)).resolve() if u.path else page
            if target.is_dir(): target = target/'index.html'
            if not target.is_file() or site.resolve() not in target.parents:
                bad.append(f'{page.relative_to(site)}: {url} -> missing'); continue
            if u.fragment and target.suffix == '.html' and u.fragment not in get(target).ids:
                bad.append(f'{page.relative_to(site)}: {url} -> no id {u.fragment!r}')
    return bad

def _group_of() -> dict:
    "Each notebook's sidebar section (None: at the top) as nbs/sidebar.yml puts it."
    return {p: sec for sec, ps in build_docs.sidebar_groups() for p in ps}

def test_every_notebook_has_a_page_in_the_sidebar(site):
    nbs = globals()['site'].notebooks
    assert nbs, 'no notebooks found'
    sources = {re.search(r'Rendered from <code>nbs/(.*?)</code>', p.read_text()).group(1): p.relative_to(site).as_posix()
               for p in site.rglob('*.html')}
    assert {nb.relative_to(build_docs.NBS).as_posix() for nb in nbs} <= set(sources)
    assert (site/'index.html').is_file()
    idx = (site/'index.html').read_text()
    groups = _group_of()
    assert set(nbs) <= set(groups), f'not in nbs/sidebar.yml: {sorted(str(p) for p in set(nbs) - set(groups))}'
    for nb in nbs:
        if groups[nb]: assert f'<h2>{groups[nb]}</h2>' in idx, groups[nb]
    nav = idx.split('</nav>')[0]
    n_links = len(re.findall(r'<li><a', nav))
    assert n_links >= len(nbs), 'the sidebar must link every page'
    library = [sources[p.relative_to(build_docs.NBS).as_posix()] for p in nbs if groups[p] == 'Library']
    assert [u for u in re.findall(r'<li><a href="([^"]+)"', nav) if u in library] == library   # in notebook order

def test_every_internal_link_resolves(site):
    assert check_links(site) == []

def test_hidden_and_exported_cells_are_dropped_show_doc_rendered(site):
    for page in site.rglob('*.html'):
        txt = page.read_text()
        for bad in ('#| export', '#| hide', '#| echo', 'nbdev_export()', 'from nbdev.showdoc', '#| default_exp', '<script',
                    'widget-state+json', 'output-file:'):
            assert bad not in txt, f'{page.name} shows {bad!r}'
    core = (site/'core.html').read_text()
    assert 'id="husaierror"' in core and 'id="get_device"' in core      # show_doc headings, Quarto's anchors
    text = re.sub(r'<[^>]+>', '', core)
    assert 'def get_device(' in text and 'Asking for CUDA where there is none is an error' in text
    tasks = (site/'tasks.html').read_text()
    assert '<math' in tasks and '$p$' not in tasks                      # TeX became MathML

def test_toy_site_links_figures_and_directives(toy_site):
    site, pages = toy_site
    assert sorted(p.relative_to(site).as_posix() for p in site.rglob('*.html')) == ['alpha.html', 'findings/f1.html', 'index.html']
    assert check_links(site) == []
    idx, alpha, f1 = (site/'index.html').read_text(), (site/'alpha.html').read_text(), (site/'findings/f1.html').read_text()
    assert 'href="alpha.html#details"' in idx and 'href="findings/f1.html"' in idx
    assert 'href="../alpha.html"' in f1 and 'href="../index.html"' in f1
    assert 'shown without its code' in idx and 'print(' not in idx                       # echo: false
    assert 'secret_hidden_cell' not in alpha and '>not shown</pre>' not in alpha           # hide, output: false
    assert '"not shown"' in re.sub(r'<[^>]+>', '', alpha)                                 # ... but its code is shown
    imgs = _parse(site/'alpha.html').imgs
    assert len(imgs) == 2 and all(i.startswith('data:image/png;base64,') for i in imgs)   # output and markdown figures, inline
    assert sorted(base64.b64decode(i.split(',', 1)[1]) for i in imgs) == sorted([_png(), _png(5, 5, (30, 30, 200))])
    assert '100%|##########| done' in f1 and '10%' not in f1 and '<details class="code-fold">' in f1   # \r overwrites; code-fold
    assert '<td>mmcs</td>' in f1 and 'print(table)' not in f1                              # output: asis -> markdown
    assert '<div class="caption"><p>Stability <em>vs</em> size</p>' in f1                 # fig-cap
    assert 'left out' not in f1 and 'widget-fallback-text' not in f1                       # include: false; widget views
    assert '<p>from a cell of options only</p>' in f1 and f1.count('class="input"') == 3   # no empty code box
    assert not any(re.search(r'#\|\s*[\w-]+\s*:', t) for t in (idx, alpha, f1))          # options never shown
    assert '<h2>Library</h2>' in idx and '<h2>Findings</h2>' in idx
    assert '<a href="#r-d">R &amp; D</a>' in alpha and 'id="r-d"' in alpha                # contents entry escaped once

def test_sidebar_yml_puts_every_notebook_in_one_group():
    "nbs/sidebar.yml (Quarto's file, which the offline site reads too) matches each notebook exactly once."
    yaml = pytest.importorskip('yaml', reason='PyYAML comes with nbdev (pip install -e ".[dev]")')
    contents = yaml.safe_load((build_docs.NBS/'sidebar.yml').read_text())['website']['sidebar']['contents']
    for nb in build_docs.find_notebooks():
        rel = nb.relative_to(build_docs.NBS)
        found = [None if isinstance(c, str) else c['section'] for c in contents
                 if build_docs.in_glob(c if isinstance(c, str) else c['contents'], rel)]
        assert len(found) == 1, f'{rel} is in sidebar group(s) {found}'
    q = yaml.safe_load((build_docs.NBS/'_quarto.yml').read_text())
    assert 'sidebar.yml' in q['metadata-files'] and q['project']['type'] == 'website'

def test_library_notebooks_store_no_widget_state():
    """Widget state (the ipywidgets models Jupyter and nbclient save beside live widgets: 91 KB in the explorer) is
    for drawing widgets in a viewer; the docs draw none, so a notebook need not carry it. nbdev_clean always keeps
    it (nbdev hard-codes the 'widgets' key: allowed_metadata_keys can only add keys), so this test does."""
    heavy = [p.name for p, sec in _group_of().items() if sec == 'Library' and 'widgets' in json.loads(p.read_text())['metadata']]
    assert heavy == [], f'{heavy} store widget state: execute them with nbclient store_widget_state=False, or delete metadata.widgets'

# ---------------------------------------------------------------------------------------------
# Headless Chromium over the DevTools protocol (a pipe on fds 3/4: no websocket library needed)

def _chromium():
    for name in ('chromium', 'chromium-browser', 'google-chrome'):
        p = shutil.which(name)
        if p: return p
    pytest.skip('Chromium is not installed, so the pages were not opened in a browser: '
                'install it with `apt-get install -y chromium` (Debian) and rerun')

class Browser:
    def __init__(self, exe, profile):
        Path(profile).mkdir(parents=True, exist_ok=True)
        r0, self._w = os.pipe(); self._r, w0 = os.pipe()
        r_cmd, w_res = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (r0, w0)]   # >= 10: never 3 or 4
        os.close(r0); os.close(w0)
        self.proc = subprocess.Popen(['bash', '-c', f'exec "$0" "$@" 3<&{r_cmd} 4>&{w_res}', exe, *CHROMIUM_FLAGS,
                                      f'--user-data-dir={profile}', '--remote-debugging-pipe', 'about:blank'],
                                     pass_fds=(r_cmd, w_res), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(Path(profile)/'chromium.log', 'wb'))
        self.log = Path(profile)/'chromium.log'
        os.close(r_cmd); os.close(w_res)
        self._buf, self._id, self.events = b'', 0, []
        tid = self.call('Target.createTarget', url='about:blank')['targetId']
        self.session = self.call('Target.attachToTarget', targetId=tid, flatten=True)['sessionId']
        for m in ('Page.enable', 'Runtime.enable', 'Log.enable', 'Network.enable'): self.call(m, session=True)

    def _read(self, timeout):
        end = time.time() + timeout
        while b'\0' not in self._buf:
            left = end - time.time()
            if left <= 0 or not select.select([self._r], [], [], left)[0]: raise TimeoutError('no answer from Chromium')
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                tail = self.log.read_text(errors='replace')[-3000:]
                raise RuntimeError(f'Chromium closed the DevTools pipe (exit {self.proc.poll()}); its log ends:\n{tail}')
            self._buf += chunk
        msg, self._buf = self._buf.split(b'\0', 1)
        return json.loads(msg)

    def call(self, method, session=False, timeout=30, **params):
        self._id += 1
        msg = {'id': self._id, 'method': method, 'params': params}
        if session: msg['sessionId'] = self.session
        os.write(self._w, json.dumps(msg).encode() + b'\0')
        while True:
            m = self._read(timeout)
            if m.get('id') == self._id:
                if 'error' in m: raise RuntimeError(f'{method}: {m["error"]}')
                return m.get('result', {})
            self.events.append(m)

    def wait_event(self, method, timeout=30):
        end = time.time() + timeout
        while True:
            for i, e in enumerate(self.events):
                if e.get('method') == method: return self.events.pop(i)
            self.events.append(self._read(max(0.01, end - time.time())))

    def open(self, url) -> dict:
        "Load `url`; return what the page shows and the errors it raised while loading."
        self.events.clear()
        self.call('Page.navigate', session=True, url=url)
        self.wait_event('Page.loadEventFired')
        info = self.call('Runtime.evaluate', session=True, returnByValue=True, expression='''JSON.stringify({
            title: document.title, h1: (document.querySelector('h1') || {}).textContent || '',
            nav: document.querySelectorAll('nav.sidebar a').length, text: document.body.innerText.length,
            imgs: Array.from(document.images).map(i => ({src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0})) })''')
        info = json.loads(info['result']['value'])
        errs = []
        for e in self.events:
            m, p = e.get('method'), e.get('params', {})
            if m == 'Runtime.exceptionThrown': errs.append(f"exception: {p['exceptionDetails'].get('text')}")
            elif m == 'Network.loadingFailed': errs.append(f"failed to load: {p.get('errorText')} ({p.get('requestId')})")
            elif m == 'Log.entryAdded' and p['entry']['level'] == 'error': errs.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}")
            elif m == 'Runtime.consoleAPICalled' and p.get('type') == 'error': errs.append('console.error')
            elif m == 'Network.requestWillBeSent' and not p['request']['url'].startswith(('file:', 'data:', 'about:')):
                errs.append(f"fetches {p['request']['url']}")      # the site is offline: nothing from a network
        info['errors'] = errs
        return info

    def screenshot(self, path):
        data = self.call('Page.captureScreenshot', session=True, format='png')['data']
        Path(path).write_bytes(base64.b64decode(data))

    def close(self):
        try: self.call('Browser.close', timeout=5)
        except Exception: pass
        try: self.proc.wait(10)
        except subprocess.TimeoutExpired: self.proc.kill(); self.proc.wait()
        os.close(self._w); os.close(self._r)

@pytest.fixture(scope='module')
def browser(tmp_path_factory):
    b = Browser(_chromium(), tmp_path_factory.mktemp('chromium-profile'))
    yield b
    b.close()

def _check_in_browser(browser, site: Path):
    n = 0
    for page in sorted(site.rglob('*.html')):
        info = browser.open(page.resolve().as_uri())
        where = page.relative_to(site)
        assert info['errors'] == [], f'{where}: {info["errors"]}'
        assert info['title'].strip() and info['h1'].strip(), f'{where}: no title/heading'
        assert info['nav'] >= 2 and info['text'] > 50, f'{where}: page looks empty ({info})'
        assert len(info['imgs']) == len(_parse(page).imgs)
        assert all(i['ok'] for i in info['imgs']), f'{where}: images not shown: {[i for i in info["imgs"] if not i["ok"]]}'
        n += len(info['imgs'])
    return n

def test_pages_load_in_chromium(site, browser, tmp_path):
    _check_in_browser(browser, site)
    browser.open((site/'index.html').as_uri())
    shot = Path(os.environ.get('HUSAI_DOCS_SCREENSHOT') or tmp_path/'index.png')
    browser.screenshot(shot)
    w, h = struct.unpack('>II', shot.read_bytes()[16:24])
    assert shot.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' and w >= 800 and h >= 600

def test_toy_pages_and_figures_load_in_chromium(toy_site, browser):
    site, _ = toy_site
    assert _check_in_browser(browser, site) == 3
    info = browser.open((site/'alpha.html').as_uri() + '#details')
    assert info['title'].startswith('alpha')

def test_browser_check_catches_a_broken_figure(toy_site, browser, tmp_path):
    "The checks themselves can fail: a figure whose file is missing, or whose data is not an image, is reported."
    site, _ = toy_site
    broken = tmp_path/'site'; shutil.copytree(site, broken)
    page = broken/'alpha.html'
    first, second = _parse(page).imgs
    page.write_text(page.read_text().replace(first, 'missing.png').replace(second, 'data:image/png;base64,bm90IGEgcG5n'))
    assert any('missing.png' in b for b in check_links(broken))
    info = browser.open(page.as_uri())
    assert info['errors'] and [i['ok'] for i in info['imgs']] == [False, False]

def test_every_exported_function_and_class_is_documented_on_its_page(site):
    "show_doc rendered for each public def/class a library notebook exports (nbdev's add_show_docs)."
    import ast
    missing = []
    for nb in globals()['site'].notebooks:
        m = re.search(r'#\|\s*default_exp\s+(\S+)', nb.read_text())
        if not m or not (ROOT/'husai'/f'{m.group(1)}.py').exists(): continue
        tree = ast.parse((ROOT/'husai'/f'{m.group(1)}.py').read_text())
        all_ = next((ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                     and any(getattr(t, 'id', '') == '__all__' for t in n.targets)), [])
        defs = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)) and n.name in all_]
        page = next((p for p in site.rglob('*.html') if f'Rendered from <code>nbs/{nb.relative_to(build_docs.NBS).as_posix()}</code>' in p.read_text()), None)
        assert page, nb
        ids = _parse(page).ids
        missing += [f'{page.name}: {d}' for d in defs if d.lower() not in ids]
    assert missing == []
