"""Lucene-compatible BM25: analyzer, length encoding, scores and rankings against
Pyserini (values recorded from Pyserini 1.6.0, so no Java is needed here), the
older bm25s scheme, and the out-of-core build."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from search_envs.analysis import BM25sAnalyzer, LuceneEnglishAnalyzer
from search_envs.bm25_build import byte4_to_int, int_to_byte4
from search_envs.index import BrokenIndexError, build_index, load_index

# (text, tokens) recorded from pyserini.analysis.Analyzer(get_lucene_analyzer()) (Pyserini 1.6.0)
LUCENE_ANALYZED = [
    (
        "John's U.S.A. don't 1,000.50 rock_n_roll e-mail anthropology possibly biology Paris' 東京タワー x a I the "
        "incredibly 3.14 foo:bar ab.cd. us as",
        ["john", "u.s.a", "don't", "1,000.50", "rock_n_rol", "e", "mail", "anthropolog", "possibl", "biologi", "pari",
         "東", "京", "タワー", "x", "i", "incred", "3.14", "foo:bar", "ab.cd", "us"],
    ),
    ("Meshhed, desiccated paléontologie İzmir's", ["mesh", "desicc", "paléontologi", "izmir"]),
    ("(509\u200d–\u200d27 \u20603/4\u2060, bonds\u2060\u200d—\u200dthat", ["509\u200d", "27", "3", "4\u2060", "bonds\u2060\u200d"]),
    ("Rashi (רש\"י), ″̶. x² 1.a", ["rashi", "רש\"י", "x", "1"]),
    ("E♭ major, the mass of the Sun (M☉) © _ a_b Ⅻ", ["e", "♭", "major", "mass", "sun", "m", "☉", "©", "a_b", "ⅻ"]),
]


@pytest.mark.parametrize("text, expected", LUCENE_ANALYZED)
def test_lucene_english_analyzer_matches_lucene(text, expected):
    assert LuceneEnglishAnalyzer()(text) == expected


def test_bm25s_analyzer_matches_bm25s_tokenize():
    import bm25s
    import Stemmer

    from search_envs.data import embedded_articles

    texts = [f"{a.title}\n{a.text}" for a in embedded_articles()[::97]]
    ref = bm25s.tokenize(texts, stopwords="en", stemmer=Stemmer.Stemmer("english"), return_ids=False, show_progress=False)
    assert BM25sAnalyzer().analyze_many(texts) == ref


def _long_to_int4(i: int) -> int:  # SmallFloat.longToInt4, transcribed from Lucene's javadoc
    bits = int(i).bit_length()
    return i if bits < 4 else ((i >> (bits - 4)) & 7) | ((bits - 3) << 3)


def test_lucene_length_byte():
    # intToByte4: exact below 24, then 4 significant bits; byte4ToInt gives the bucket's floor
    for n, code, decoded in [(0, 0, 0), (23, 23, 23), (24, 24, 24), (40, 40, 40), (100, 57, 96), (127, 60, 120), (2**31 - 1, 255, 2013265944)]:
        assert int_to_byte4(np.array([n]))[0] == code, n
        assert byte4_to_int(np.array([code]))[0] == decoded, code
    n = np.arange(5000)
    ref = np.array([i if i < 24 else 24 + _long_to_int4(i - 24) for i in n])
    assert (int_to_byte4(n) == ref).all()
    assert (np.diff(byte4_to_int(np.arange(256))) > 0).all()
    assert (byte4_to_int(int_to_byte4(n)) <= n).all()


def _lucene_score(tf: int, dl: int, df: int, n: int, avgdl: float, k1: float = 0.9, b: float = 0.4) -> float:
    """Lucene's BM25 by hand: idf * tf / (tf + k1 * (1 - b + b * L / avgdl)), L = the one-byte length."""
    idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
    length = float(byte4_to_int(int_to_byte4(np.array([dl])))[0])
    return idf * tf / (tf + k1 * (1 - b + b * length / avgdl))


def test_scores_follow_lucenes_formula(tmp_path):
    docs = [
        ("0", "Alpha", "alpha beta beta gamma"),
        ("1", "Beta", " ".join(["beta"] * 3 + [f"filler{i}" for i in range(60)])),
        ("2", "Gamma", "gamma delta epsilon"),
        ("3", "The", "of and"),  # no indexed term: not counted in N or avgdl, as in Lucene
    ]
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"id": i, "title": t, "text": x}) + "\n" for i, t, x in docs))
    engine = load_index(build_index(corpus, "bm25", tmp_path / "idx", show_progress=False))
    lengths = {"0": 5, "1": 64, "2": 4}  # title + text terms
    n, avgdl = 3, (5 + 64 + 4) / 3
    [hits] = engine.search(["beta"], 5)
    expected = {i: _lucene_score(tf, lengths[i], 2, n, avgdl) for i, tf in (("0", 2), ("1", 4))}
    assert {d.id: d.score for d in hits} == pytest.approx(expected, rel=1e-6)
    assert [d.id for d in hits] == sorted(expected, key=expected.get, reverse=True)
    [hits] = engine.search(["beta beta gamma"], 5)  # a repeated query term counts twice
    g = {i: _lucene_score(tf, lengths[i], 2, n, avgdl) for i, tf in (("0", 1), ("2", 2))}
    assert {d.id: d.score for d in hits} == pytest.approx(
        {"0": 2 * expected["0"] + g["0"], "1": 2 * expected["1"], "2": g["2"]}, rel=1e-6
    )
    assert engine.manifest["scheme"] == "lucene" and engine.manifest["k1"] == 0.9 and engine.manifest["b"] == 0.4
    engine.close()


PYSERINI_1K = [  # (query, top-5 docids, scores) from Pyserini 1.6.0 default BM25 on wiki18_sample_1000.jsonl
    ('In the 1973 NFL season, the Pro Bowl took place at what football stadium that is part of the Truman Sports Complex, along with what other stadium?', ['172', '777', '74', '477', '78'], [13.7598, 11.3442, 10.6479, 9.8787, 9.8508]),
    ('Q: What 1965-born field director directed the 2002 Indian comedy horror film "Makdee" ("Spider", in English)?', ['896', '925', '934', '165', '739'], [11.4053, 8.0223, 8.0223, 7.3851, 6.8451]),
    ("Johnnie Casson appeared on which ex-professional footballer's British television show?", ['91', '151', '527', '400', '696'], [5.8632, 5.2624, 5.1472, 5.092, 5.0667]),
    ('Who has been making music long Eric Gaffney or Pearl Jam?', ['185', '958', '783', '819', '987'], [6.6674, 6.1428, 4.2154, 4.1966, 4.188]),
    ('What distinguishes the footwear brand referenced in the album Pork Soda?', ['290', '802', '488', '790', '416'], [5.642, 3.5886, 3.4702, 2.9692, 2.8441]),
    ('Who starred as an American attorney in Grey Gardens?', ['536', '508', '230', '647', '471'], [5.0724, 4.8889, 4.1628, 4.081, 3.7014]),
    ('Was Atom Egoyans biggest commercial success on stage or on film?', ['652', '547', '607', '749', '516'], [4.917, 4.8299, 4.4219, 3.9254, 3.8623]),
    ("What speech by Abraham Lincoln was part of Richard Heffner's A Documentary History of the United States?", ['425', '325', '681', '742', '740'], [8.1814, 5.4999, 5.4465, 5.1215, 4.9411]),
    ('What country does Haringey Heartlands and The Mall Wood Green have in common?', ['354', '117', '567', '637', '587'], [5.3034, 5.0491, 4.5101, 4.2086, 3.7823]),
    ('Which professional footballer played for Kadji Sports Academy as a youth and went on to be the most decorated African player of all time?', ['777', '10', '527', '181', '172'], [12.4199, 12.2837, 10.1081, 8.1848, 7.3003]),
    ("Who is Ahmose-Henutemipet's paternal grandmother?", ['627', '874', '159', '174', '529'], [1.4702, 1.3868, 1.3727, 1.2631, 1.2631]),
    ('Which film has the director who is older than the other, The Lone Prairie or Buckaroo From Powder River? ', ['542', '723', '739', '526', '258'], [6.2535, 5.9272, 5.528, 5.3521, 5.2941]),
    ('Where was the director of film Hatchet Ii born?', ['282', '526', '542', '739', '784'], [4.5489, 4.4916, 4.4581, 4.1946, 3.9555]),
    ("Which film has the director born earlier, Douce Violence (Film) or The Cowboy'S Flute?", ['526', '542', '739', '165', '797'], [7.9123, 7.8566, 7.3295, 7.0318, 6.5771]),
    ("When did Harald Sigtryggsson's father die?", ['22', '159', '58', '544', '893'], [4.4678, 3.3865, 3.2148, 3.1988, 3.1652]),
    ('Are Schmale Gera and Lusatian Neisse located in the same country?', ['774', '92', '378', '430', '360'], [3.4358, 3.3013, 3.2871, 3.2318, 3.0679]),
    ('Which country the director of film Witchville is from?', ['462', '739', '526', '542', '128'], [5.0324, 4.6766, 4.4916, 4.4581, 3.8353]),
    ('Where was the place of burial of the director of film Tag Der Freiheit: Unsere Wehrmacht?', ['516', '141', '526', '542', '857'], [5.111, 4.9157, 4.4916, 4.4581, 4.3537]),
    ("Which film has the director who was born later, He Knows You'Re Alone or The Twilight Saga: Breaking Dawn – Part 2?", ['896', '542', '179', '788', '990'], [6.9875, 6.2535, 6.2453, 6.2061, 6.1778]),
    ('Where was the father of Adalbert Ii, Margrave Of Tuscany born?', ['131', '230', '568', '891', '18'], [4.756, 3.5995, 3.5612, 3.5612, 3.4869]),
    ('What was the director of Addicted to Love nominated for?', ['739', '925', '934', '986', '206'], [4.3619, 4.2786, 4.2786, 3.763, 3.4222]),
    ("The author of Abel's Island wrote what 1982 book featuring a mouse-dentist?", ['156', '239', '13', '666', '791'], [8.1892, 6.7755, 6.279, 5.0812, 4.7417]),
    ('When was the kingdom that Heptarchy was part of abolished?', ['133', '918', '548', '543', '475'], [4.8697, 4.7332, 4.0652, 4.0215, 3.7712]),
    ('Who was a prominent figure at the radio division of the broadcast company that created the version of The Biggest Loser set in the country where Kelupis originated?', ['668', '856', '89', '821', '935'], [9.2144, 7.4057, 7.3085, 5.3826, 5.063]),
    ('Who sings Home Alone Tonight with the Rain is a Good Thing singer?', ['659', '557', '421', '959', '607'], [5.6608, 4.7314, 4.48, 4.2104, 4.1586]),
    ('What was the story of the character from The Bourne Deception based on?', ['413', '60', '770', '572', '716'], [5.8258, 5.2899, 4.738, 4.3043, 4.2732]),
    ('How many people work at the school that holds the Julian P. Kanter Political Commercial Archive?', ['881', '667', '464', '288', '529'], [5.6083, 5.5343, 5.4871, 5.469, 5.2136]),
    ('Which county shares a border with the county where the most populous city in the state where Washington State Prison can be found is located?', ['911', '736', '380', '379', '721'], [12.0741, 10.4555, 10.2393, 10.2018, 9.9212]),
    ("What administrative territorial entity does Heinrich Gross's birth place located?", ['149', '795', '587', '409', '28'], [6.1151, 5.0583, 4.9053, 4.4599, 4.161]),
    ('When did the place of death of the author of Quadragesimo Anno become its own country?', ['643', '545', '377', '117', '612'], [5.8602, 5.4001, 5.0232, 4.5677, 4.4529]),
    ('Who was president of the United States in the year that Citibank was founded?', ['846', '467', '330', '659', '702'], [6.2007, 5.2812, 5.0555, 4.7354, 4.709]),
    ('Who was mayor of New York City when Fiorello H. La Guardia was born?', ['534', '784', '742', '131', '274'], [7.9997, 7.1522, 6.8143, 6.3222, 6.1384]),
    ('What is the lowest elevation of the longest railway tunnel?', ['110', '100', '566', '569', '22'], [3.1905, 3.187, 3.1577, 3.1577, 3.1205]),
    ('Who is the Dutch lawyer and professor Baron Guillaume Adolphe?', ['266', '906', '987', '565', '168'], [3.6328, 3.5567, 3.5567, 3.4825, 3.3292]),
    ('the of and', [], []),
    ("Lucie Vázquez-Poveda 1,000.50 U.S.A. John's", ['126', '744', '745', '398', '874'], [5.3085, 3.2563, 3.187, 2.8201, 2.5817]),
    ('zzqxjw', [], []),
    ('football football football club', ['527', '500', '502', '474', '423'], [11.3102, 10.8761, 10.2649, 9.4566, 9.2229]),
]


@pytest.fixture(scope="module")
def small_corpus_path():
    from search_envs.corpus import embedded_subset_path

    return embedded_subset_path(30)


@pytest.fixture(scope="module")
def wiki1k(shared_data) -> Path:
    """The shared 1,000-passage wiki-18 sample."""
    return shared_data / "corpus" / "wiki18_sample_1000.jsonl"


@pytest.fixture(scope="module")
def wiki1k_engine(tmp_path_factory, wiki1k):
    engine = load_index(build_index(wiki1k, "bm25", tmp_path_factory.mktemp("w") / "idx", show_progress=False))
    yield engine
    engine.close()


def test_rankings_and_scores_equal_pyserini_on_wiki18_sample(wiki1k_engine):
    queries = [q for q, _, _ in PYSERINI_1K]
    results = wiki1k_engine.search(queries, 5)
    for (query, ids, scores), hits in zip(PYSERINI_1K, results):
        assert [d.id for d in hits] == ids, query  # ties included: Pyserini breaks them by docid
        assert [d.score for d in hits] == pytest.approx(scores, abs=1e-4), query


def test_any_batch_size_gives_the_same_results(wiki1k_engine):
    queries = [q for q, _, _ in PYSERINI_1K] * 5  # 190 queries: several slices of 64
    batched = wiki1k_engine.search(queries, 3)
    assert batched == [wiki1k_engine.search_one(q, 3) for q in queries]


@pytest.mark.slow
def test_bm25s_scheme_ranks_as_bm25s(tmp_path):
    """The older scheme (kept as `scheme="bm25s"`) gives bm25s's scores and rankings."""
    import bm25s
    import Stemmer

    from search_envs.corpus import embedded_subset_path

    corpus = embedded_subset_path(300)
    engine = load_index(build_index(corpus, "bm25", tmp_path / "idx", scheme="bm25s", show_progress=False))
    assert engine.manifest["k1"] == 1.5 and engine.manifest["b"] == 0.75 and engine.manifest["analyzer"] == "bm25s"
    store = engine.store
    texts = [f"{p.title}\n{p.text}" for p in store.get_many(range(len(store)))]
    stemmer = Stemmer.Stemmer("english")
    ref = bm25s.BM25(k1=1.5, b=0.75, method="lucene")
    ref.index(bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False)
    queries = [p.title + " history" for p in store.get_many(range(0, len(store), 7))]
    rows, scores = engine.search_rows(queries, 5)
    r = ref.retrieve(bm25s.tokenize(queries, stopwords="en", stemmer=stemmer, show_progress=False), k=6, show_progress=False)
    ref_rows, ref_scores = np.asarray(r.documents), np.asarray(r.scores)
    np.testing.assert_allclose(scores, ref_scores[:, :5], rtol=1e-4)  # bm25s rounds in float32
    checked = 0
    for row, rr, rs in zip(rows, ref_rows, ref_scores):
        if rs[4] > rs[5] * (1 + 1e-6):
            assert set(row) == set(rr[:5])
            checked += 1
    assert checked > 0.3 * len(queries)  # single-word titles often tie at the cut
    engine.close()


def test_out_of_core_build_equals_one_chunk(tmp_path, monkeypatch):
    """Tiny memory budget: many spilled chunks, many merge ranges, two worker processes;
    the arrays must equal a one-chunk build's."""
    import search_envs.bm25_build as bb
    from search_envs.corpus import embedded_subset_path

    corpus = embedded_subset_path(400)
    one = build_index(corpus, "bm25", tmp_path / "one", show_progress=False)
    monkeypatch.setattr(bb, "chunk_rows", lambda memory_mb: 37)
    monkeypatch.setattr(bb, "MIN_PARALLEL_ROWS", 100)
    many = build_index(corpus, "bm25", tmp_path / "many", memory_mb=1, workers=2, show_progress=False)
    for name in ("postings.bin", "offsets.npy", "df.npy", "norms.npy", "tie_rank.npy", "vocab.json"):
        assert (one / "bm25" / name).read_bytes() == (many / "bm25" / name).read_bytes(), name
    assert not list(tmp_path.glob("**/*-spill"))


def test_build_falls_back_to_one_process_when_workers_cannot_start(tmp_path, monkeypatch):
    """Spawned workers die at start when `__main__` cannot be re-imported (a script read
    from stdin): the build must finish in-process, not hang."""
    import concurrent.futures.process as cfp

    import search_envs.bm25_build as bb
    import search_envs.workers as workers
    from search_envs.corpus import embedded_subset_path

    class DeadPool:
        def __init__(self, *args, **kwargs):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def submit(self, *args, **kwargs):
            raise cfp.BrokenProcessPool("A child process terminated abruptly")

    corpus = embedded_subset_path(60)
    one = build_index(corpus, "bm25", tmp_path / "one", show_progress=False)
    monkeypatch.setattr(workers, "ProcessPoolExecutor", DeadPool)
    monkeypatch.setattr(bb, "MIN_PARALLEL_ROWS", 10)
    monkeypatch.setattr(bb, "chunk_rows", lambda memory_mb: 17)
    with pytest.warns(UserWarning, match="analysing in this process"):
        fallback = build_index(corpus, "bm25", tmp_path / "fallback", workers=2, show_progress=False)
    assert (one / "bm25" / "postings.bin").read_bytes() == (fallback / "bm25" / "postings.bin").read_bytes()


def test_interrupted_merge_leaves_nothing_that_loads(tmp_path, monkeypatch, small_corpus_path):
    import search_envs.bm25_build as bb

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(bb.postings, "encode", boom)
    with pytest.raises(KeyboardInterrupt):
        build_index(small_corpus_path, "bm25", tmp_path / "idx", show_progress=False)
    assert not (tmp_path / "idx").exists() and not list(tmp_path.iterdir())
    with pytest.raises(BrokenIndexError):
        load_index(tmp_path / "idx")


def test_old_bm25_index_is_refused_with_a_clear_error(tmp_path, small_corpus_path):
    out = build_index(small_corpus_path, "bm25", tmp_path / "idx", show_progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    del manifest["scheme"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BrokenIndexError, match="older version"):
        load_index(out)


def test_unknown_scheme_is_refused(tmp_path, small_corpus_path):
    with pytest.raises(ValueError, match="unknown BM25 scheme"):
        build_index(small_corpus_path, "bm25", tmp_path / "idx", scheme="okapi", show_progress=False)


@pytest.mark.parametrize("name", ["bm25/postings.bin", "bm25/offsets.npy", "bm25/tie_rank.npy", "bm25/norms.npy", "passages.zst", "offsets.npy"])
def test_same_size_corruption_is_refused_naming_the_file(tmp_path, small_corpus_path, name, monkeypatch):
    out = build_index(small_corpus_path, "bm25", tmp_path / "idx", show_progress=False)
    path = out / name
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 8] = bytes(x ^ 0xFF for x in data[middle : middle + 8])
    path.write_bytes(bytes(data))
    with pytest.raises(BrokenIndexError, match=f"{name}: sha256 differs"):
        load_index(out)
    monkeypatch.setenv("SEARCH_ENVS_VERIFY", "0")  # the documented skip for multi-GB indexes
    if name == "passages.zst":  # still no silent garbage: the frame checksum names the file
        from search_envs.store import CorruptStoreError

        engine = load_index(out)
        with pytest.raises(CorruptStoreError, match="passages.zst"):
            engine.store.get_many(range(len(engine.store)))
        engine.close()


TRICKY_TEXTS = [
    "", "a", "A.B.C. d'Arcy O'NEIL's 1,000.5 x.y..z 'quoted' \"רש\"י\" ΟΔΟΣ İstanbul ﬁnance", "a" * 600, "x_y__z",
    "café—bar", "日本語テキスト", "\u200d\u200d", "e\u0301cole", "end. Next,word;semi:colon 'tis", "U.S.", "3.14.",
]


@pytest.mark.parametrize("analyzer_class", [LuceneEnglishAnalyzer, BM25sAnalyzer])
def test_term_ids_equal_the_analyzer_text_by_text(analyzer_class, monkeypatch, wiki1k):
    """The build's compiled path (spans looked up in a memo) gives each text exactly the
    terms the analyzer gives it, on real Wikipedia text, the Lucene edge cases above and
    across memo resets (MEMO_LIMIT made tiny: every call starts over)."""
    import search_envs.analysis as analysis
    from search_envs.corpus import iter_passages
    from search_envs.data import embedded_articles

    texts = [f"{a.title}\n{a.text}" for a in embedded_articles()[::3]]
    texts += [f"{p.title}\n{p.text}" for p in iter_passages(wiki1k)]
    texts += [text for text, _ in LUCENE_ANALYZED] + TRICKY_TEXTS
    reference = analyzer_class()
    expected = [reference(t) for t in texts]
    fast = analyzer_class()
    for limit in (analysis.MEMO_LIMIT, 50):
        monkeypatch.setattr(analysis, "MEMO_LIMIT", limit)
        for batch in (texts, texts[::-1][:500]):  # a cold memo, then a warm one (or a reset one)
            ids, lengths = fast.term_ids(batch)
            assert lengths.sum() == len(ids)
            got = np.split(ids, np.cumsum(lengths)[:-1])
            want = expected if batch is texts else expected[::-1][:500]
            assert [[fast.term_list[i] for i in g] for g in got] == want


def test_span_memo_grows_and_finds_every_key():
    from search_envs.span_memo import UNSEEN, SpanMemo

    memo = SpanMemo(b".", quote_joins=False)
    words = [f"w{i}x{i * 7919 % 10007}" for i in range(100_000)]  # forces several rehashes
    for i, w in enumerate(words):
        memo.insert(w.encode(), i)
    memo.insert(words[5].encode(), 5)  # again: no duplicate entry
    assert len(memo) == len(words)
    text = (" ".join(words) + " NEVER.seen W1X7919").encode()
    codes, starts, ends, per_text = memo.spans(np.frombuffer(text, dtype=np.uint8).copy(), np.array([0, len(text)]))
    assert per_text.tolist() == [len(words) + 2]
    assert codes[: len(words)].tolist() == list(range(len(words)))
    assert codes[-2] == UNSEEN and codes[-1] == 1  # "never.seen" joined by "."; upper case folded to w1x7919
