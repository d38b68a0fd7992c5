"""husai.lm: the rows of a real language model (all-MiniLM-L6-v2, from the `husai[lm]` extra) against a
direct `transformers` forward pass, the cutting of a text into sequences, the cache, atomic writes,
the corpus, and `husai extract-lm` -> `husai train-saes` -> `husai stability` end to end.

CI installs the extra; `importorskip` only spares a local checkout without it."""
import contextlib, io, socket, sys
from pathlib import Path
import numpy as np
import pytest
import torch

pytest.importorskip('transformers', reason='husai.lm needs the lm extra: pip install -e ".[lm]"')
import husai.lm as hl
from husai.cli import main
from husai.core import HusaiError

TEXTS = ['Sparse autoencoders find features.',
         'A much longer document that goes on and on, with many words, commas, and clauses, so that it '
         'will not fit into one short sequence of sixteen tokens and has to be cut into several pieces.',
         'Short.',
         'Seeds differ; the dictionaries they learn differ too, and by how much is the question.']

@pytest.fixture(scope='module')
def model():
    torch.set_num_threads(1)
    return hl.load_lm(progress=False)

@pytest.fixture
def text(tmp_path):
    p = tmp_path/'docs.txt'
    p.write_text('\n\n'.join(t.replace(', ', ',\n') for t in TEXTS) + '\n')   # line breaks inside documents too
    return p

def _direct_rows(lm, tok, layer, seq_len):
    "What the rows must be: each document tokenized by the tokenizer itself, cut by hand, each piece run alone."
    rows, width = [], seq_len - 2
    for t in TEXTS:
        ids = tok(t, add_special_tokens=False)['input_ids']
        if len(ids) <= width:   # fits: the tokenizer's own input, with its [CLS]/[SEP], no padding
            pieces = [tok(t, return_tensors='pt')]
            assert pieces[0]['input_ids'][0, 0] == tok.cls_token_id and pieces[0]['input_ids'][0, -1] == tok.sep_token_id
        else:
            pieces = [{'input_ids': torch.tensor([[tok.cls_token_id] + ids[s:s + width] + [tok.sep_token_id]])}
                      for s in range(0, len(ids), width)]
        for x in pieces:
            with torch.no_grad(): h = lm(**x, output_hidden_states=True).hidden_states
            assert len(h) == lm.config.num_hidden_layers + 1
            rows.append(h[layer][0, 1:-1])
    return torch.cat(rows)

@pytest.mark.parametrize('layer', [0, 3, 6])
def test_rows_equal_a_direct_forward(model, text, tmp_path, layer):
    lm, tok = model
    seq_len = 16   # the long document is cut; batches of 3 mix lengths, so they are padded
    res = hl.extract_lm(text, layer, cfg=hl.ExtractConfig(seq_len=seq_len, batch_size=3), progress=False,
                        cache_root=tmp_path/'cache')
    want = _direct_rows(lm, tok, layer, seq_len)
    got = torch.from_numpy(np.array(res.acts()))
    assert got.dtype == torch.float32 and got.shape == want.shape, (got.shape, want.shape)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    toks = res.tokens()
    assert toks[:, 0].tolist() == sum((tok(t, add_special_tokens=False)['input_ids'] for t in TEXTS), [])
    assert not np.isin(toks[:, 0], tok.all_special_ids).any()
    assert res.meta['n_documents'] == len(TEXTS) and res.meta['n_tokens'] == len(want)
    # the token table traces rows to the text: document of each row, position in its model input
    docs = [tok(t, add_special_tokens=False)['input_ids'] for t in TEXTS]
    assert np.bincount(toks[:, 1]).tolist() == [len(d) for d in docs]
    assert toks[:, 3].min() == 1 and toks[:, 3].max() == seq_len - 2

def test_stopping_at_the_layer_gives_the_full_pass_numbers(model):
    lm, tok = model
    x = tok(TEXTS, padding=True, return_tensors='pt')
    calls = []
    hooks = [b.register_forward_hook(lambda *a, i=i: calls.append(i)) for i, b in enumerate(lm.encoder.layer)]
    try:
        with torch.no_grad():
            full = lm(**x, output_hidden_states=True).hidden_states
            for L in range(len(full)):
                calls.clear()
                assert torch.equal(hl.hidden_at(lm, L, **x), full[L]), L
                assert calls == list(range(L)), (L, calls)   # the blocks past L never run
    finally:
        for h in hooks: h.remove()

def test_layers_differ_and_layer_0_is_the_embeddings(model, text, tmp_path):
    "Layer 0 is the embedding output itself (word + position + type, LayerNorm), not the first block."
    lm, tok = model
    res = hl.extract_lm(text, 0, cfg=hl.ExtractConfig(seq_len=64), progress=False, cache_root=tmp_path)
    ids = tok(TEXTS[0], return_tensors='pt')
    with torch.no_grad(): emb = lm.embeddings(input_ids=ids['input_ids'])[0, 1:-1]
    n = len(emb)
    torch.testing.assert_close(torch.from_numpy(np.array(res.acts()[:n])), emb, rtol=1e-5, atol=1e-5)
    one = hl.extract_lm(text, 1, cfg=hl.ExtractConfig(seq_len=64), progress=False, cache_root=tmp_path)
    assert not np.allclose(one.acts()[:n], res.acts()[:n], atol=1e-2)

def test_sequences_keep_order_and_length(model, tmp_path):
    _, tok = model
    rng = np.random.default_rng(0)
    vocab = 'the a stable feature of sparse models seeds differ when width grows and sparsity falls'.split()
    docs = [' '.join(rng.choice(vocab, n)) for n in (5, 300, 1, 77, 129)]
    p = tmp_path/'long.txt'
    p.write_text('\n\n\n'.join(docs) + '\n')
    for seq_len in (8, 32, 128):
        s = hl.tokenize_corpus(p, tok, seq_len=seq_len)
        lens = np.diff(s.starts)
        assert lens.min() >= 1 and lens.max() <= seq_len - 2      # [CLS] and [SEP] fit in seq_len
        assert (np.diff(s.doc) >= 0).all()                        # documents in order
        for i, d in enumerate(docs):                              # each document's pieces, joined, are its tokens
            ids = tok(d, add_special_tokens=False)['input_ids']
            pieces = [s.ids[s.starts[j]:s.starts[j + 1]].tolist() for j in np.flatnonzero(s.doc == i)]
            assert sum(pieces, []) == ids
            assert [len(q) for q in pieces[:-1]] == [seq_len - 2] * (len(pieces) - 1)   # only the last piece is short
    cut = hl.tokenize_corpus(p, tok, seq_len=32, max_tokens=100)
    assert cut.ids.tolist() == s.ids[:100].tolist()

def test_second_call_is_a_cache_hit(model, text, tmp_path, monkeypatch):
    cfg = hl.ExtractConfig(seq_len=32)
    first = hl.extract_lm(text, 2, cfg=cfg, progress=False, cache_root=tmp_path)
    def no_load(*a, **k): raise AssertionError('the model was loaded on a cache hit')
    monkeypatch.setattr(hl, 'load_lm', no_load)
    again = hl.extract_lm(text, 2, cfg=hl.ExtractConfig(seq_len=32, batch_size=7), progress=False, cache_root=tmp_path)
    assert again.folder == first.folder and again.meta == first.meta    # batch_size is not in the key
    for other in (dict(layer=3, cfg=cfg), dict(layer=2, cfg=hl.ExtractConfig(seq_len=16)),
                  dict(layer=2, cfg=hl.ExtractConfig(seq_len=32, max_tokens=10))):
        with pytest.raises(AssertionError, match='was loaded'):          # anything that changes the rows misses
            hl.extract_lm(text, progress=False, cache_root=tmp_path, **other)
    text.write_text(text.read_text() + '\nOne more.\n')                  # so does another text
    with pytest.raises(AssertionError, match='was loaded'): hl.extract_lm(text, 2, cfg=cfg, progress=False, cache_root=tmp_path)

def test_an_interrupted_run_leaves_nothing(model, text, tmp_path, monkeypatch):
    calls = []
    real = hl._rows_of
    def fail_second(*a, **k):
        calls.append(1)
        if len(calls) == 2: raise KeyboardInterrupt
        return real(*a, **k)
    monkeypatch.setattr(hl, '_rows_of', fail_second)
    with pytest.raises(KeyboardInterrupt):
        hl.extract_lm(text, 1, cfg=hl.ExtractConfig(seq_len=16, batch_size=2), progress=False, cache_root=tmp_path)
    folder, = (tmp_path/'lm_acts').iterdir()
    assert sorted(p.name for p in folder.iterdir()) == ['.lock']          # no acts.npy, no temp file, no meta
    monkeypatch.setattr(hl, '_rows_of', real)
    res = hl.extract_lm(text, 1, cfg=hl.ExtractConfig(seq_len=16, batch_size=2), progress=False, cache_root=tmp_path)
    assert res.folder == folder and res.acts().shape[0] == res.meta['n_tokens']

def test_loading_never_touches_the_network(monkeypatch):
    def refuse(*a, **k): raise AssertionError('network access')
    monkeypatch.setattr(socket.socket, 'connect', refuse)
    monkeypatch.setattr(socket, 'create_connection', refuse)
    lm, tok = hl.load_lm(progress=False)
    assert lm.config.hidden_size == 384 and tok('hi')['input_ids'][0] == tok.cls_token_id

def test_missing_transformers_names_the_extra(text, monkeypatch):
    monkeypatch.setitem(sys.modules, 'transformers', None)   # `import transformers` now fails
    with pytest.raises(HusaiError, match=r'pip install "husai\[lm\]"'): hl.extract_lm(text, 1, progress=False)
    with pytest.raises(HusaiError, match=r'pip install "husai\[lm\]"'): hl.load_lm()

def test_model_hash_follows_the_files(tmp_path):
    src = hl.default_model_dir()
    dst = tmp_path/'m'
    dst.mkdir()
    for p in src.iterdir():
        if p.is_file(): (dst/p.name).symlink_to(p)
    assert hl.model_hash(dst) == hl.model_hash(src)
    (dst/'config.json').unlink()
    (dst/'config.json').write_text((src/'config.json').read_text().replace('"gelu"', '"relu"'))
    assert hl.model_hash(dst) != hl.model_hash(src)

def test_corpus_is_large_enough_and_clean(model, tmp_path):
    _, tok = model
    path = hl.corpus_text(tmp_path/'fortunes.txt')
    docs = list(hl.read_documents(path))
    raw = sum(sum(1 for l in p.read_text(errors='replace').splitlines() if l.strip() == '%') for p in hl.fortune_files())
    assert len(docs) > 14_000 and abs(len(docs) - raw) < 30       # one document per fortune (a few banners dropped)
    assert not any(p.name.endswith('-o') for p in hl.fortune_files())
    quick = hl.tokenize_corpus(path, tok, 128, max_tokens=hl.CORPUS_TOKENS['quick'])
    assert len(quick.ids) == 200_000                               # the quick scale fits in the corpus
    assert np.mean([sum(c.isalpha() for c in d) / len(d) for d in docs[:2000]]) > 0.7   # prose, not symbols

def _cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err): code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()

def test_cli_errors_exit_2_on_one_line(text, tmp_path, monkeypatch):
    monkeypatch.setenv('HUSAI_CACHE', str(tmp_path/'cache'))
    (tmp_path/'blank.txt').write_text('\n  \n\n')
    (tmp_path/'taken.npy').write_bytes(b'keep me')
    cases = [(['--model', tmp_path/'no-model'], 'o.npy', 'does not exist'),
             (['--model', tmp_path], 'o.npy', 'no config.json'),
             (['--layer', '7'], 'o.npy', 'layer 7 does not exist'),
             (['--layer', '-1'], 'o.npy', 'layer -1 does not exist'),
             ([], 'docs.txt/o.npy', 'cannot write there'),
             ([], 'o.txt', 'ending in .npy'),
             ([], 'taken.npy', 'exists')]
    for extra, out, msg in cases:
        argv = ['extract-lm', text, '--out', tmp_path/out] + (extra if '--layer' in extra else ['--layer', '3'] + extra)
        code, o, e = _cli(*argv)
        assert (code, o, len(e.strip().splitlines())) == (2, '', 1) and msg in e, (argv, e)
    code, o, e = _cli('extract-lm', tmp_path/'blank.txt', '--layer', 3, '--out', tmp_path/'o.npy')
    assert code == 2 and 'no text' in e
    code, o, e = _cli('extract-lm', tmp_path/'none.txt', '--layer', 3, '--out', tmp_path/'o.npy')
    assert code == 2 and 'no such text file' in e
    assert (tmp_path/'taken.npy').read_bytes() == b'keep me' and not (tmp_path/'o.npy').exists()

def test_extract_train_stability_end_to_end(tmp_path, monkeypatch):
    "husai extract-lm -> husai train-saes -> husai stability on the fortunes corpus, tiny."
    monkeypatch.setenv('HUSAI_CACHE', str(tmp_path/'cache'))
    corpus = hl.corpus_text(tmp_path/'fortunes.txt')
    acts = tmp_path/'acts.npy'
    code, o, e = _cli('extract-lm', corpus, '--layer', 3, '--out', acts, '--max-tokens', 3000, '--quiet')
    assert code == 0, e
    assert '3000 rows x 384 (hidden_states[3]' in o
    a = np.load(acts)
    assert a.shape == (3000, 384) and a.dtype == np.float32 and np.isfinite(a).all()
    assert np.load(tmp_path/'acts.tokens.npy').shape == (3000, 4)
    code, o, e = _cli('train-saes', acts, '--d-sae', 64, '--k', 8, '--seeds', 0, 1, '--steps', 60, '--out', tmp_path/'saes', '--quiet')
    assert code == 0, e
    assert 'fvu_eval' in o
    code, o, e = _cli('stability', tmp_path/'saes', '--json', '--n-boot', 50)
    assert code == 0, e
    assert 'hungarian_mcc' in o and 'shared_fraction' in o
