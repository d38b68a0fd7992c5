"""`husai train-saes`: options from the config dataclasses, a finished output is recognisable (and only that
is read), the output folder is checked before any training, and bad input exits 2 with one line."""
import json, os, shutil, subprocess, sys
from pathlib import Path
import numpy as np
import pytest
import torch
import husai.io
from husai.cli import main
from husai.core import HusaiError, save_json
from husai.io import load_saes

ACTS = (torch.randn(400, 12, generator=torch.Generator().manual_seed(0)) @
        torch.randn(12, 12, generator=torch.Generator().manual_seed(1)))
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def acts(tmp_path):
    f = tmp_path/'acts.npy'; np.save(f, ACTS.numpy()); return f


def train(acts, out, *extra, seeds=('0', '1', '2')):
    return main(['train-saes', str(acts), '--d-sae', '16', '--k', '2', '--steps', '10', '--quiet', '--out', str(out),
                 '--seeds', *seeds, *extra])


def one_line_error(capsys, *words):
    err = capsys.readouterr().err.strip()
    assert err.count('\n') == 0 and err.startswith('husai train-saes: error:'), err
    for w in words: assert w in err, (w, err)
    return err


def test_finished_output_is_read_by_its_record(acts, tmp_path, capsys):
    out = tmp_path/'run'
    assert train(acts, out) == 0
    rec = json.loads((out/'metrics.json').read_text())
    assert rec['finished'] is True and rec['seeds'] == [0, 1, 2] and rec['record'] == 'husai train-saes'
    shutil.copytree(out/'seed_0', out/'seed_7')           # a stray SAE folder is not one of the output's seeds
    assert [n for n, _ in load_saes(out)] == ['seed_0', 'seed_1', 'seed_2']


def test_force_with_fewer_seeds_leaves_no_old_seeds(acts, tmp_path, capsys):
    out = tmp_path/'run'
    assert train(acts, out) == 0
    assert train(acts, out, seeds=('5', '6')) == 2            # a finished output needs --force
    one_line_error(capsys, 'exists', '--force')
    assert train(acts, out, '--force', seeds=('5', '6')) == 0
    assert sorted(p.name for p in out.iterdir()) == ['metrics.json', 'seed_5', 'seed_6']
    assert [n for n, _ in load_saes(out)] == ['seed_5', 'seed_6']
    capsys.readouterr()
    assert main(['stability', str(out), '--json', '--n-boot', '50']) == 0
    assert json.loads(capsys.readouterr().out)['n_seeds'] == 2


def test_unfinished_output_is_refused(acts, tmp_path, capsys):
    out = tmp_path/'run'
    assert train(acts, out) == 0
    (out/'metrics.json').unlink()                            # as if killed after seed_1/seed_2 were written
    with pytest.raises(HusaiError, match='unfinished'): load_saes(out)
    capsys.readouterr()
    assert main(['stability', str(out)]) == 2 and 'unfinished' in capsys.readouterr().err


def _no_training(monkeypatch):
    calls = []
    monkeypatch.setattr(husai.io, 'train_saes', lambda *a, **k: calls.append(1) or pytest.fail('training started'))
    return calls


def test_out_is_checked_before_training(acts, tmp_path, capsys, monkeypatch):
    calls = _no_training(monkeypatch)
    (tmp_path/'afile').write_text('x')
    assert train(acts, tmp_path/'afile') == 2; one_line_error(capsys, 'is a file')
    assert train(acts, tmp_path/'afile'/'below') == 2; one_line_error(capsys, 'below the file')
    assert train(acts, '') == 2; one_line_error(capsys, 'empty')
    grok = tmp_path/'grokrun'; grok.mkdir(); save_json({'history': [1, 2]}, grok/'metrics.json')
    before = (grok/'metrics.json').read_text()
    assert train(acts, grok, '--force') == 2; one_line_error(capsys, 'not the record')
    assert (grok/'metrics.json').read_text() == before and calls == []


@pytest.fixture
def read_only_dir(tmp_path):
    "A folder nobody may write to: chmod 555, or (root writes anywhere) a read-only tmpfs mounted there."
    d = tmp_path/'ro'; d.mkdir()
    if os.geteuid() != 0:
        os.chmod(d, 0o555); yield d; os.chmod(d, 0o755); return
    r = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'ro,size=64k', 'tmpfs', str(d)], capture_output=True)
    if r.returncode: pytest.skip('running as root and cannot mount a read-only folder here')
    try: yield d
    finally: subprocess.run(['umount', str(d)], capture_output=True)


def test_read_only_out_is_refused_before_training(acts, read_only_dir, capsys, monkeypatch):
    calls = _no_training(monkeypatch)
    assert train(acts, read_only_dir/'run') == 2
    one_line_error(capsys, 'cannot be written')
    assert train(acts, read_only_dir) == 2
    one_line_error(capsys, 'cannot be written')
    assert calls == []


def test_options_come_from_the_config_dataclasses(acts, tmp_path, capsys):
    out = tmp_path/'run'
    assert train(acts, out, '--aux-k', '0', '--lr-decay', 'none', '--data-seed', '3', '--no-init-enc-from-dec',
                 '--batch-size', '0', '--betas', '0.8', '0.9') == 0
    rec = json.loads((out/'metrics.json').read_text())
    assert rec['sae_cfg']['aux_k'] == 0 and rec['sae_cfg']['init_enc_from_dec'] is False
    assert rec['train_cfg']['lr_decay'] == 'none' and rec['train_cfg']['data_seed'] == 3 and rec['train_cfg']['betas'] == [0.8, 0.9]
    assert rec['train_cfg']['batch_size'] == rec['metrics']['0']['n_train'] == 360     # 0: full batch (90% train split)
    assert train(acts, tmp_path/'both', '--epochs', '1') == 2; one_line_error(capsys, '--steps or --epochs')
    with pytest.raises(SystemExit): main(['train-saes', str(acts), '--out', str(tmp_path/'x'), '--lr-decay', 'bogus'])
    capsys.readouterr()
    with pytest.raises(SystemExit): main(['train-saes', '--help'])
    helptext = capsys.readouterr().out
    for opt in ('--lr-warmup-steps', '--aux-k', '--dead-after', '--eval-frac', '--seeds', '--site', '--cache', '--force'):
        assert opt in helptext, opt
    assert '(default: 1024)' in helptext                     # d_sae's default, read from SAEConfig


@pytest.mark.parametrize('device,word', [('bogus', 'not a device name'), ('meta', 'holds no data')])
def test_bad_device_exits_2(acts, tmp_path, capsys, monkeypatch, device, word):
    _no_training(monkeypatch)
    assert train(acts, tmp_path/'o', '--device', device) == 2
    one_line_error(capsys, word)
    assert not (tmp_path/'o').exists()


def test_bad_activation_files_exit_2_with_one_line(tmp_path, capsys, monkeypatch):
    _no_training(monkeypatch)
    torch.save({'acts': ACTS, 'note': np.array(['from numpy'])}, tmp_path/'pickled.pt')
    assert train(tmp_path/'pickled.pt', tmp_path/'o') == 2
    err = one_line_error(capsys, 'not a plain tensor file', 'will not unpickle')
    assert 'weights_only' not in err
    be = tmp_path/'big.npy'; np.save(be, ACTS.numpy().astype('>f4'))
    monkeypatch.undo()
    assert train(be, tmp_path/'be') == 0                       # big-endian: converted, not a traceback
