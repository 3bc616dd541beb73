"""Corpus formats, chunking and the on-disk passage store, on real Wikipedia text."""

from __future__ import annotations

import json

import pytest

from search_envs.corpus import (
    CorpusFormatError,
    CorpusStats,
    Passage,
    PassageStore,
    chunk_words,
    embedded_corpus_path,
    embedded_subset_path,
    iter_passages,
    parse_record,
    resolve_corpus,
    write_store,
)
from search_envs.data import embedded_articles


def test_chunk_words_keeps_every_word_in_order_in_near_equal_chunks():
    words = [f"w{i}" for i in range(257)]
    chunks = chunk_words(" ".join(words), 100)
    assert len(chunks) == 3
    assert " ".join(chunks).split() == words
    assert all(67 <= len(c.split()) <= 150 for c in chunks)
    assert chunk_words("  \n ") == []
    assert chunk_words("one two") == ["one two"]


def test_flashrag_record_title_is_first_line_without_quotes():
    [p] = parse_record({"id": "7", "contents": '"Evan Morris"\nEvan L. Morris was a lobbyist.'}, "0")
    assert p == Passage("7", "Evan Morris", "Evan L. Morris was a lobbyist.")


def test_title_text_record_and_long_text_is_chunked_with_suffixed_ids():
    text = " ".join(["word"] * 230)
    passages = parse_record({"id": "d1", "title": "T", "text": text}, "0")
    assert [p.id for p in passages] == ["d1-0", "d1-1"]
    assert all(p.title == "T" for p in passages)
    assert sum(len(p.text.split()) for p in passages) == 230


def test_kilt_page_drops_title_paragraph_and_section_lines():
    rec = {
        "wikipedia_id": "42",
        "wikipedia_title": "Ada Lovelace",
        "text": ["Ada Lovelace\n", "Ada was a mathematician.\n", "Section::::Life.\n", "BULLET::::- She wrote notes.\n"],
    }
    [p] = parse_record(rec, "0")
    assert p == Passage("42", "Ada Lovelace", "Ada was a mathematician. - She wrote notes.")


@pytest.mark.parametrize("rec", [{"foo": 1}, [1, 2], {"id": "1", "text": "no title"}, "text"])
def test_unknown_layout_is_a_value_error(rec):
    with pytest.raises(ValueError):
        parse_record(rec, "0")


def test_bad_line_names_file_and_line_or_is_skipped_and_counted(tmp_path):
    path = tmp_path / "c.jsonl"
    good = json.dumps({"id": "1", "contents": '"A"\nalpha'})
    path.write_text(good + "\n\n{not json\n" + json.dumps({"x": 1}) + "\n" + good + "\n", encoding="utf-8")
    with pytest.raises(CorpusFormatError, match=r"c\.jsonl:3"):
        list(iter_passages(path))
    stats = CorpusStats()
    assert len(list(iter_passages(path, skip_bad=True, stats=stats))) == 2
    assert (stats.records, stats.bad_lines) == (2, 2)


def test_missing_corpus_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="corpus file not found"):
        resolve_corpus(tmp_path / "nope.jsonl")


def test_wiki18_sample_parses_as_one_passage_per_record(shared_data):
    passages = list(iter_passages(shared_data / "corpus" / "wiki18_sample_1000.jsonl"))
    assert len(passages) == 1000
    assert passages[0].id == "0" and passages[0].title == "Evan Morris"
    assert passages[0].text.startswith("Evan Morris Evan L. Morris")
    assert not any(p.title.startswith('"') for p in passages)
    assert len({p.id for p in passages}) == 1000


def test_kilt_sample_is_chunked_into_about_100_word_passages(shared_data):
    stats = CorpusStats()
    passages = list(iter_passages(shared_data / "corpus" / "kilt_pages_sample_99.jsonl", stats=stats))
    assert stats.records == 99 and stats.bad_lines == 0
    assert len(passages) > 99  # whole pages become several passages
    assert not any("Section::::" in p.text for p in passages)
    assert len({p.id for p in passages}) == len(passages)
    multi = [p for p in passages if "-" in p.id]
    assert multi and all(len(p.text.split()) <= 150 for p in multi)
    first = next(p for p in passages if p.title == "A")
    assert first.id == "A-0" and first.text.startswith("A (named")


def test_store_round_trip_is_lazy_and_exact(tmp_path):
    passages = [Passage(str(i), f"Title {i}", f"text {i} — ünïcödé 日本語 \"quoted\"\nline") for i in range(50)]
    assert write_store(iter(passages), tmp_path) == 50
    store = PassageStore(tmp_path)
    assert len(store) == 50
    assert store[0] == passages[0] and store[-1] == passages[-1]
    assert store.get_many([49, 3, 3]) == [passages[49], passages[3], passages[3]]
    assert [d.id for d in store.documents([2, 1], [0.5, 0.25])] == ["2", "1"]
    assert store.offsets.dtype.name == "int64" and not store.offsets.flags.owndata  # memory-mapped
    with pytest.raises(IndexError):
        store[50]
    store.close()
    store.close()


@pytest.mark.parametrize("layout, name", [("zstd", "passages.zst"), ("jsonl", "passages.jsonl")])
def test_truncated_store_is_detected(tmp_path, layout, name):
    write_store([Passage("1", "t", "some text here")], tmp_path, layout=layout)
    data = (tmp_path / name).read_bytes()
    (tmp_path / name).write_bytes(data[:-3])
    with pytest.raises(ValueError, match="truncated"):
        PassageStore(tmp_path)


@pytest.mark.parametrize("layout, name", [("zstd", "passages.zst"), ("jsonl", "passages.jsonl")])
def test_same_size_corrupt_store_names_the_file(tmp_path, layout, name):
    from search_envs.store import CorruptStoreError

    passages = [Passage(str(i), f"T{i}", f"passage number {i} about rivers and mountains") for i in range(300)]
    write_store(passages, tmp_path, layout=layout)
    path = tmp_path / name
    data = bytearray(path.read_bytes())
    store = PassageStore(tmp_path)
    a, b = int(store.offsets[7]), int(store.offsets[8])
    store.close()
    data[a + 1 : b - 2] = bytes(x ^ 0x5A for x in data[a + 1 : b - 2])
    path.write_bytes(bytes(data))
    store = PassageStore(tmp_path)
    assert store[6] == passages[6]
    with pytest.raises(CorruptStoreError, match=name):
        store.get_many([6, 7])
    store.close()


def test_compressed_store_is_smaller(tmp_path):
    from search_envs.data import embedded_articles

    passages = [Passage(str(i), a.title, a.text) for i, a in enumerate(embedded_articles()[:2000])]
    (tmp_path / "z").mkdir()
    (tmp_path / "j").mkdir()
    write_store(passages, tmp_path / "z")
    write_store(passages, tmp_path / "j", layout="jsonl")
    packed = (tmp_path / "z" / "passages.zst").stat().st_size + (tmp_path / "z" / "passages.dict").stat().st_size
    assert packed < 0.6 * (tmp_path / "j" / "passages.jsonl").stat().st_size
    store = PassageStore(tmp_path / "z")
    assert store.get_many(range(0, 2000, 97)) == passages[::97]
    store.close()


def test_embedded_corpus_is_written_once_in_flashrag_format(tmp_cache):
    path = embedded_corpus_path()
    assert path.parent.parent == tmp_cache
    mtime = path.stat().st_mtime_ns
    assert embedded_corpus_path().stat().st_mtime_ns == mtime
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(embedded_articles()) == 10033
    records = [json.loads(line) for line in lines]
    hamlet = next(r for r in records if r["contents"].startswith('"Hamlet"\n'))
    assert "Shakespeare" in hamlet["contents"]
    assert resolve_corpus(None) == resolve_corpus("embedded") == path


def test_embedded_subset_includes_requested_titles(tmp_cache):
    path = embedded_subset_path(30, include=("Hamlet", "Jupiter"))
    titles = [p.title for p in iter_passages(path)]
    assert {"Hamlet", "Jupiter"} <= set(titles)
    assert len({json.loads(line)["id"] for line in path.open()}) == 30
    with pytest.raises(ValueError, match="Nowhere Land"):
        embedded_subset_path(5, include=("Nowhere Land",))
