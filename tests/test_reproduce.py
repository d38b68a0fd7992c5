"""`husai reproduce`: its checks happen before any notebook runs, failures are reported per notebook, results files are read strictly."""
import json
from pathlib import Path
import pytest
from husai.cli import main
from husai.core import HusaiError, save_json
from husai.reproduce import find_notebooks, read_results, kernel_env, reproduce

def test_only_empty_is_an_error_not_everything(tmp_path, capsys):
    (tmp_path/'nbs'/'findings').mkdir(parents=True)
    for n in ('00_a', '01_b'): (tmp_path/'nbs'/'findings'/f'{n}.ipynb').write_text('{}')
    with pytest.raises(HusaiError, match='non-empty'): find_notebooks(tmp_path/'nbs'/'findings', '')
    assert main(['reproduce', '--root', str(tmp_path), '--only', '']) == 2
    assert 'non-empty' in capsys.readouterr().err
    assert [p.stem for p in find_notebooks(tmp_path/'nbs'/'findings', 'b')] == ['01_b']

def test_bad_jobs_and_threads_exit_2_before_running(tmp_path, capsys):
    (tmp_path/'nbs'/'findings').mkdir(parents=True)
    assert main(['reproduce', '--root', str(tmp_path), '--jobs', '0']) == 2
    assert main(['reproduce', '--root', str(tmp_path), '--threads', '0']) == 2
    with pytest.raises(HusaiError, match='scale'): kernel_env('huge')

def test_read_results_refuses_a_claims_object(tmp_path):
    save_json({'title': 't', 'headline': 'h', 'scale': 'quick', 'claims': {'claim': 'x', 'verdict': 'reproduced'}}, tmp_path/'a.json')
    with pytest.raises(HusaiError, match='must be a list'): read_results(tmp_path)
    (tmp_path/'a.json').write_text('[1, 2]')
    with pytest.raises(HusaiError, match='JSON object'): read_results(tmp_path)

def test_kernel_env_sets_scale_and_threads_and_drops_in_test(monkeypatch):
    monkeypatch.setenv('IN_TEST', '1')
    env = kernel_env('quick', 1, {'X': 'y'})
    assert env['HUSAI_SCALE'] == 'quick' and env['HUSAI_THREADS'] == '1' and env['X'] == 'y' and 'IN_TEST' not in env

def _nb(code):
    return json.dumps({'cells': [{'cell_type': 'code', 'execution_count': None, 'id': 'a1', 'metadata': {}, 'outputs': [],
                                  'source': code}], 'metadata': {'kernelspec': {'name': 'python3', 'display_name': 'python3',
                                  'language': 'python'}}, 'nbformat': 4, 'nbformat_minor': 5})

def test_parallel_run_reports_every_failure_and_keeps_the_good_results(tmp_path):
    f = tmp_path/'nbs'/'findings'; f.mkdir(parents=True)
    ok = "import os, pathlib; pathlib.Path('ok_' + os.environ['HUSAI_SCALE'] + '_' + os.environ['HUSAI_THREADS']).write_text('1')"
    (f/'00_good.ipynb').write_text(_nb(ok)); (f/'01_bad.ipynb').write_text(_nb("raise RuntimeError('boom')"))
    (f/'02_bad.ipynb').write_text(_nb("1/0"))
    with pytest.raises(HusaiError) as e:
        reproduce(tmp_path, 'tiny', write_back=False, out_dir=tmp_path/'out', progress=False, jobs=2)
    assert '2 of 3 notebooks failed' in str(e.value) and '01_bad' in str(e.value) and '02_bad' in str(e.value)
    assert (f/'ok_tiny_1').exists() and (tmp_path/'out'/'00_good.ipynb').exists()
