"Tasks: no label leak for any task, deterministic seeded splits, clear errors for bad input."
import itertools
import pytest, torch
from husai.core import HusaiError
from husai.tasks import TASKS, N_OPERANDS, make_dataset, check_no_leak, task_answer, COMBINED_DEFAULT_SAMPLES

REF = {'add': lambda a, b, p: (a + b) % p, 'sub': lambda a, b, p: (a - b) % p, 'mul': lambda a, b, p: (a * b) % p,
       'combined': lambda a, b, c, p: ((a + b) * c) % p}

@pytest.mark.parametrize('task', TASKS)
def test_no_leak(task):
    ds = make_dataset(task, p=17, seed=3, n_samples=2000 if task == 'combined' else None)
    check_no_leak(ds)
    x, y = ds.inputs, ds.targets
    # the read-out position holds the same '=' token in every row: it carries nothing about the answer
    assert (x[:, -1] == 17).all() and x.shape[1] == N_OPERANDS[task] + 1
    # no input column equals the targets, and no single column determines them
    for j in range(x.shape[1]):
        assert not torch.equal(x[:, j], y)
        answers = {}
        for t, a in zip(x[:, j].tolist(), y.tolist()): answers.setdefault(t, set()).add(a)
        assert max(len(s) for s in answers.values()) > 1, f'position {j} determines the answer'
    # targets computed independently, one answer per input row
    for row, t in zip(ds.operands.tolist(), y.tolist()): assert REF[task](*row, 17) == t
    assert len(set(map(tuple, x.tolist()))) == len(x)

def test_leak_check_catches_prior_art_layout():
    ds = make_dataset('add', p=11)
    ds.inputs = torch.cat([ds.inputs[:, :2], ds.targets[:, None], ds.inputs[:, 2:]], 1)   # [a, b, c, =]
    ds.operands = ds.inputs[:, :-1]
    with pytest.raises(HusaiError, match='determines'): check_no_leak(ds)

@pytest.mark.parametrize('task,frac', [('add', 0.3), ('sub', 0.5), ('mul', 0.8), ('combined', 0.3)])
def test_split(task, frac):
    kw = dict(p=13, train_frac=frac, n_samples=1000 if task == 'combined' else None)
    a, b, c = make_dataset(task, seed=0, **kw), make_dataset(task, seed=0, **kw), make_dataset(task, seed=1, **kw)
    N = len(a)
    assert N == (1000 if task == 'combined' else 13 ** 2)
    assert torch.equal(a.train_idx, b.train_idx) and torch.equal(a.test_idx, b.test_idx) and torch.equal(a.inputs, b.inputs)
    assert not torch.equal(a.train_idx, c.train_idx)
    assert len(a.train_idx) == round(frac * N)
    assert set(a.train_idx.tolist()).isdisjoint(a.test_idx.tolist())
    assert sorted(a.train_idx.tolist() + a.test_idx.tolist()) == list(range(N))
    assert a.train_idx.dtype == torch.long and a.vocab_size == 14 and a.seq_len == N_OPERANDS[task] + 1

def test_full_pairs_and_combined_sample():
    ds = make_dataset('add', p=7)
    assert sorted(map(tuple, ds.operands.tolist())) == list(itertools.product(range(7), repeat=2))
    c = make_dataset('combined', p=31)
    assert len(c) == COMBINED_DEFAULT_SAMPLES and len(set(map(tuple, c.operands.tolist()))) == len(c)
    assert len(make_dataset('combined', p=7)) == 7 ** 3

@pytest.mark.parametrize('kw,msg', [(dict(p=4), 'prime'), (dict(p=2), 'prime'), (dict(p=1), 'prime'), (dict(p=113.0), 'prime'),
                                    (dict(task='div'), 'unknown task'), (dict(train_frac=0.0), 'train_frac'),
                                    (dict(train_frac=1.0), 'train_frac'), (dict(train_frac=-0.2), 'train_frac'),
                                    (dict(n_samples=10 ** 9), 'n_samples')])
def test_bad_input(kw, msg):
    with pytest.raises(HusaiError, match=msg): make_dataset(**{'task': 'add', 'p': 7, **kw})
    with pytest.raises(ValueError): make_dataset(**{'task': 'add', 'p': 7, **kw})   # HusaiError is a ValueError
