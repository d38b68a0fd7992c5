"""The notebooks are the source: exported code, cleaned notebooks, README and CI agree with them."""
import re, shutil, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent

def _bin(name):
    p = Path(sys.executable).parent/name
    if not p.exists(): pytest.skip(f'{name} is not installed in this environment (pip install -e ".[dev]")')
    return str(p)

def _tracked_copy(tmp_path):
    "A git repo in tmp_path holding the tracked and untracked-but-not-ignored files of this checkout."
    files = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard', '-z'], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split('\0')
    for f in filter(None, files):
        src, dst = ROOT/f, tmp_path/f
        if src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True); shutil.copy2(src, dst)
    git = ['git', '-c', 'user.name=t', '-c', 'user.email=t@t']
    subprocess.run(['git', 'init', '-q'], cwd=tmp_path, check=True)
    subprocess.run(['git', 'add', '-A'], cwd=tmp_path, check=True)
    subprocess.run(git + ['commit', '-qm', 'base'], cwd=tmp_path, check=True)
    return tmp_path

def test_clean_and_export_leave_no_diff(tmp_path):
    repo = _tracked_copy(tmp_path)
    for cmd in ('nbdev_clean', 'nbdev_export'):
        subprocess.run([_bin(cmd)], cwd=repo, check=True, capture_output=True)
    diff = subprocess.run(['git', 'status', '--porcelain'], cwd=repo, capture_output=True, text=True).stdout
    assert diff == '', f'nbdev_clean/nbdev_export change these files; run them and commit:\n{diff}'

def test_readme_is_generated_from_index():
    r = subprocess.run([sys.executable, str(ROOT/'tools'/'make_readme.py'), '--check'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr

def test_ci_runs_the_readme_test_command():
    readme = (ROOT/'README.md').read_text()
    cmds = re.findall(r'```sh\n(.*?)\n```', readme, re.S)
    test_cmd = [c for c in cmds if 'pytest' in c]
    assert len(test_cmd) == 1, f'expected one test command in the README, found {test_cmd}'
    assert test_cmd[0] in (ROOT/'.ci'/'run').read_text().splitlines()

def test_library_does_not_import_dev_tools():
    "The exported library runs without nbdev, fastcore or Jupyter (they are development extras)."
    for f in (ROOT/'husai').rglob('*.py'):
        src = f.read_text()
        for mod in ('nbdev', 'fastcore', 'IPython', 'ipywidgets', 'execnb'):
            assert not re.search(rf'^\s*(import|from)\s+{mod}\b', src, re.M), f'{f.name} imports {mod} at module level'
