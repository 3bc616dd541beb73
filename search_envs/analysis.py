"""Text analysis for BM25: Lucene's English analyzer, and the older bm25s one.

Search-R1 and FlashRAG rank with Pyserini, whose default analyzer (Anserini's
`DefaultEnglishAnalyzer`, the same chain as Lucene's `EnglishAnalyzer`) is:
StandardTokenizer (Unicode UAX #29 word boundaries, one-character tokens kept,
255 characters at most) -> EnglishPossessiveFilter (drops a trailing 's) ->
LowerCaseFilter -> StopFilter (Lucene's 33 English stop words) -> PorterStemFilter
(the original Porter algorithm as Martin Porter's reference code has it, not
Porter2/Snowball English). `LuceneEnglishAnalyzer` reproduces that chain; its
agreement with Lucene is measured in `benchmarks/bm25_vs_pyserini.py`.

`BM25sAnalyzer` is what this library used before (bm25s's `\\w\\w+` tokens,
its English stop words, Snowball English stems), kept so old indexes and
results can be reproduced.

Both analyze a whole text at once and memoise the token -> term mapping, since
a corpus has far fewer distinct tokens than tokens.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Callable, Sequence

import numpy as np
import regex
import Stemmer

from search_envs.span_memo import UNSEEN, SpanMemo

# Lucene's EnglishAnalyzer.ENGLISH_STOP_WORDS_SET (33 words).
LUCENE_STOP_WORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there these they "
    "this to was will with".split()
)
MEMO_LIMIT = 1_000_000  # distinct spans, candidates or terms an analyzer remembers before starting over (bounds its memory)
_NO_TERM = -1
TERM_IDS_PIECE = 2048  # texts per compiled pass of `term_ids`
MAX_TOKEN_LENGTH = 255  # StandardTokenizer's default; longer tokens are split

# UAX #29 word boundaries, the rules that matter for text (WB4-WB13b): letters and
# digits join; a MidLetter/MidNumLet/apostrophe joins two letters ("don't", "u.s.a",
# "a:b"); a MidNum/MidNumLet/apostrophe joins two digits ("1,000.5"); a double quote
# joins two Hebrew letters; connector punctuation ("_") joins anything; combining marks
# and format characters (ZWJ, word joiner) stay with the character before them. Han
# and Hiragana characters are one token each.
_START = r"[\p{L}\p{Nd}\p{Pc}--[\p{Han}\p{Hiragana}]]"
_EXT = r"[\p{M}\p{Cf}]"
_RUN = rf"{_START}(?:{_START}|{_EXT})*"
_MID_LETTER = r"[:\u00B7\u0387\u05F4\u2027\uFE13\uFE55\uFF1A.\u2018\u2019\u2024\uFE52\uFF07\uFF0E']"
_MID_NUM = r"[,;\u037E\u0589\u060C\u060D\u066C\u07F8\u2044\uFE10\uFE14\uFE50\uFE54\uFF0C\uFF1B.\u2018\u2019\u2024\uFE52\uFF07\uFF0E']"
_JOIN = (
    rf"(?<=\p{{L}}{_EXT}*){_MID_LETTER}{_EXT}*(?=\p{{L}})"
    rf"|(?<=\p{{Nd}}{_EXT}*){_MID_NUM}{_EXT}*(?=\p{{Nd}})"
    rf'|(?<=\p{{Hebrew}}{_EXT}*)"{_EXT}*(?=\p{{Hebrew}})'
)
_SYMBOL_CHARS = (  # measured: each is one token in Lucene 9 (Pyserini 1.6), lost by the rules above
    r"\u00a9\u00ae\u02c2-\u02c5\u02d2-\u02d7\u02de-\u02df\u02ed\u02ef-\u02ff\u055b-\u055c\u055e\u05f3"
    r"\u066b\u109e-\u109f\u16ee-\u16f0\u19da\u19de-\u19df\u1aa0-\u1aa6\u1aa8-\u1aad\u203c\u2049\u2122"
    r"\u2160-\u2182\u2185-\u2188\u2194-\u2199\u21a9-\u21aa\u231a-\u231b\u2328\u2388\u23cf\u23e9-\u23f3"
    r"\u23f8-\u23fa\u24b6-\u24e9\u25aa-\u25ab\u25b6\u25c0\u25fb-\u25fe\u2600-\u2605\u2607-\u2612"
    r"\u2614-\u2685\u2690-\u2705\u2708-\u2712\u2714\u2716\u271d\u2721\u2728\u2733-\u2734\u2744\u2747"
    r"\u274c\u274e\u2753-\u2755\u2757\u2763-\u2767\u2795-\u2797\u27a1\u27b0\u27bf\u2934-\u2935"
    r"\u2b05-\u2b07\u2b1b-\u2b1c\u2b50\u2b55\u2e80-\u2e99\u2e9b-\u2ef3\u2f00-\u2fd5\u3030\u303d"
    r"\u309b-\u309c\u30a0\u3297\u3299\u32d0-\u32fe\u3300-\u3357\ua6e6-\ua6ef\ua720-\ua721\ua789-\ua78a"
    r"\uaa77-\uaa79\uaade-\uaadf\uab5b\U00010140-\U00010174\U00010341\U0001034a\U000103d1-\U000103d5"
    r"\U0001173a-\U0001173b\U0001173f\U00012400-\U0001246e\U0001f000-\U0001f02b\U0001f030-\U0001f093"
    r"\U0001f0a0-\U0001f0ae\U0001f0b1-\U0001f0bf\U0001f0c1-\U0001f0cf\U0001f0d1-\U0001f0f5"
    r"\U0001f10d-\U0001f10f\U0001f12f-\U0001f149\U0001f150-\U0001f169\U0001f16c-\U0001f189\U0001f18e"
    r"\U0001f191-\U0001f19a\U0001f1ad\U0001f200-\U0001f202\U0001f21a\U0001f22f\U0001f232-\U0001f23a"
    r"\U0001f250-\U0001f251\U0001f260-\U0001f265\U0001f300-\U0001f53d\U0001f546-\U0001f64f"
    r"\U0001f680-\U0001f6d7\U0001f6dd-\U0001f6ec\U0001f6f0-\U0001f6fc\U0001f7d5-\U0001f7d8"
    r"\U0001f7e0-\U0001f7eb\U0001f7f0\U0001f8b0-\U0001f8b1\U0001f90c-\U0001f93a\U0001f93c-\U0001f945"
    r"\U0001f947-\U0001fa53\U0001fa60-\U0001fa6d\U0001fa70-\U0001fa74\U0001fa78-\U0001fa7c"
    r"\U0001fa80-\U0001fa86\U0001fa90-\U0001faac\U0001fab0-\U0001faba\U0001fac0-\U0001fac5"
    r"\U0001fad0-\U0001fad9\U0001fae0-\U0001fae7\U0001faf0-\U0001faf6\U0001fb00-\U0001fb92"
    r"\U0001fb94-\U0001fbca"
)
STANDARD_TOKEN = regex.compile(
    rf"{_RUN}(?:(?:{_JOIN}){_RUN})*|[\p{{Han}}\p{{Hiragana}}]|[{_SYMBOL_CHARS}]", regex.V1
)
_CONNECTORS_ONLY = regex.compile(r"\p{Pc}+")
_POSSESSIVE_APOSTROPHES = ("'", "\u2019", "\uff07")


# A fast superset split for `re` (C speed): runs of `\w` joined by any mid character.
# Every exact StandardTokenizer token lies inside one candidate, unless the text has
# combining marks or connector punctuation other than "_" (not in `\w`): such texts
# (rare in English) are split with STANDARD_TOKEN directly. A candidate that is not
# plain ASCII letters and digits is re-split with STANDARD_TOKEN once, then memoised.
_CANDIDATE = re.compile(r"\w+(?:[" + _MID_NUM[1:-1] + _MID_LETTER[1:-1] + r"]\w+)*")
_NOT_IN_W = regex.compile(rf"[\p{{M}}\p{{Cf}}\p{{Pc}}\p{{Hebrew}}{_SYMBOL_CHARS}--_]", regex.V1)


@functools.cache
def _not_in_w_chars() -> frozenset[str]:
    """Every character `_NOT_IN_W` matches, found once (~0.2 s): a set test per text is
    ~20x faster than the regex search, which dominated the analysis of non-ASCII text."""
    every = "".join(map(chr, itertools.chain(range(0xD800), range(0xE000, 0x110000))))
    return frozenset(_NOT_IN_W.findall(every))


class Analyzer:
    """text -> list of index terms.

    Subclasses give `candidates` (a fast split of the lower-cased text) and `terms`
    (the exact analysis of one candidate, a space-separated string of terms, "" when
    it yields none). `terms` runs once per distinct candidate: the rest is C-speed
    dictionary look-ups, which is what makes a 21M-passage build feasible in Python.
    """

    name = "analyzer"

    def __init__(self) -> None:
        self._cache: dict[str, str] = {}
        self._codes: dict[str, int] = {}  # candidate -> term id | _NO_TERM | _NO_TERM - 1 - index in _multi
        self._multi: list[list[int]] = []
        self._term_id: dict[str, int] = {}
        self.term_list: list[str] = []
        self._spans = SpanMemo(self.joiners, quote_joins=self.quote_joins)

    joiners: bytes = b""  # ASCII characters that join two word characters into one candidate
    quote_joins = False  # whether '"' joins two non-ASCII characters (Hebrew letters)

    def candidates(self, text: str) -> list[str]:
        raise NotImplementedError

    def terms(self, candidate: str) -> str:
        raise NotImplementedError

    def __call__(self, text: str) -> list[str]:
        candidates = self.candidates(text)
        found = list(map(self._cache.get, candidates))
        if None in found:
            for i, term in enumerate(found):
                if term is None:
                    found[i] = self._learn(candidates[i])
        return " ".join(found).split()

    def _learn(self, candidate: str) -> str:
        if len(self._cache) > MEMO_LIMIT:  # bound the memo on huge vocabularies
            self._cache.clear()
        term = self._cache[candidate] = self.terms(candidate)
        return term

    def analyze_many(self, texts: list[str]) -> list[list[str]]:
        return [self(t) for t in texts]

    def term_ids(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(ids, lengths): the terms of every text as ids into `self.term_list`,
        concatenated, and how many terms each text has. The index build's hot loop:
        the texts are cut into spans and looked up in a compiled memo
        (`search_envs.span_memo`); only a span never seen before is analysed here. The
        memos and vocabulary start over when they pass MEMO_LIMIT entries (ids are only
        meaningful until the next call)."""
        if len(self._spans) > MEMO_LIMIT or len(self._codes) > MEMO_LIMIT or len(self.term_list) > MEMO_LIMIT:
            self._codes, self._multi, self.term_list, self._term_id = {}, [], [], {}
            self._spans.clear()
        if len(texts) > TERM_IDS_PIECE:  # piece by piece: what one piece teaches the memo, the next finds compiled
            pieces = [self._piece_ids(texts[i : i + TERM_IDS_PIECE]) for i in range(0, len(texts), TERM_IDS_PIECE)]
            return np.concatenate([p[0] for p in pieces]), np.concatenate([p[1] for p in pieces])
        return self._piece_ids(texts)

    def _piece_ids(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        encoded = [t.encode("utf-8", "surrogatepass") for t in texts]
        bounds = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(e) for e in encoded], out=bounds[1:])
        buf = np.frombuffer(b"".join(encoded), dtype=np.uint8).copy()
        codes, starts, ends, counts = self._spans.spans(buf, bounds)
        learned: dict[bytes, int] = {}
        for i in np.flatnonzero(codes == UNSEEN):
            key = buf[starts[i] : ends[i]].tobytes()
            if key not in learned:
                learned[key] = self._span_code(key.decode("utf-8", "surrogatepass"))
                self._spans.insert(key, learned[key])
            codes[i] = learned[key]
        width = np.where(codes >= 0, 1, 0)  # terms each span yields: 1, 0 (a stop word) or several
        multi = np.flatnonzero(codes < _NO_TERM)
        width[multi] = [len(self._ids_of(c)) for c in codes[multi]]
        ids = np.repeat(codes, width)
        first = np.cumsum(width) - width
        for i in multi:
            ids[first[i] : first[i] + width[i]] = self._ids_of(codes[i])
        ends_at = np.cumsum(counts)
        per_text = np.concatenate([[0], np.cumsum(width)])
        return ids, per_text[ends_at] - per_text[ends_at - counts]

    def _span_code(self, span: str) -> int:
        """The code of a span (one or more whole candidates): as `_code`, for all its terms."""
        found = self.candidates(span)
        if len(found) == 1:
            return self._code(found[0])
        return self._code_of([i for candidate in found for i in self._ids_of(self._code(candidate))])

    def _code(self, candidate: str) -> int:
        """A candidate's memo code (see `_code_of`), computed once."""
        code = self._codes.get(candidate)
        if code is None:
            ids = []
            for term in self.terms(candidate).split():
                if term not in self._term_id:
                    self._term_id[term] = len(self.term_list)
                    self.term_list.append(term)
                ids.append(self._term_id[term])
            code = self._codes[candidate] = self._code_of(ids)
        return code

    def _code_of(self, ids: list[int]) -> int:
        """The memo code of a list of term ids: the one id, _NO_TERM for none, or for
        several _NO_TERM - 1 - their index in `_multi` (appended)."""
        if len(ids) == 1:
            return ids[0]
        if not ids:
            return _NO_TERM
        self._multi.append(ids)
        return _NO_TERM - len(self._multi)

    def _ids_of(self, code: int) -> list[int]:
        """The term ids a memo code stands for."""
        return [code] if code >= 0 else [] if code == _NO_TERM else self._multi[_NO_TERM - 1 - code]

    def describe(self) -> dict[str, str]:
        """What the manifest records about this analyzer."""
        return {"analyzer": self.name}


class LuceneEnglishAnalyzer(Analyzer):
    """Lucene's EnglishAnalyzer (Pyserini's default): see the module docstring."""

    name = "lucene-english"
    joiners = bytes(c for c in range(128) if re.fullmatch(f"{_MID_NUM}|{_MID_LETTER}", chr(c)))
    quote_joins = True

    def __init__(self) -> None:
        super().__init__()
        self._stem: Callable[[str], str] = Stemmer.Stemmer("porter").stemWord

    def candidates(self, text: str) -> list[str]:
        # Lower-casing first is what LowerCaseFilter does after the tokenizer; the
        # possessive filter then only has to look for "'s".
        if text.isascii():
            return _CANDIDATE.findall(text.lower())
        text = text.replace("\u0130", "i").lower()  # Java lower-cases dotted capital I to plain i
        if not _not_in_w_chars().isdisjoint(text):
            return STANDARD_TOKEN.findall(text)
        return _CANDIDATE.findall(text)

    def terms(self, candidate: str) -> str:
        if candidate.isascii() and candidate.isalnum():  # the common case: one token as it is
            tokens = [candidate]
        else:
            tokens = [t for t in STANDARD_TOKEN.findall(candidate) if not _CONNECTORS_ONLY.fullmatch(t)]
            if any(len(t) > MAX_TOKEN_LENGTH for t in tokens):
                tokens = [t[i : i + MAX_TOKEN_LENGTH] for t in tokens for i in range(0, len(t), MAX_TOKEN_LENGTH)]
        out = []
        for token in tokens:
            if len(token) >= 2 and token[-1] == "s" and token[-2] in _POSSESSIVE_APOSTROPHES:
                token = token[:-2]
            if token and token not in LUCENE_STOP_WORDS:
                out.append(porter_stem(token, self._stem))
        return " ".join(out)

    def describe(self) -> dict[str, str]:
        return {"analyzer": self.name, "stemmer": "porter", "stopwords": "lucene-english-33"}


def porter_stem(word: str, snowball_porter: Callable[[str], str]) -> str:
    """The original Porter stemmer as Lucene's PorterStemmer (Martin Porter's reference
    code) has it, on top of Snowball's 'porter', which follows the published paper.
    The reference code departs from the paper in four places, patched here: it leaves
    words of one or two letters alone; step 1b undoubles any final double consonant
    but l, s, z (Snowball lists bb dd ff gg mm nn pp rr tt); and step 2 maps "-bli"
    (not only "-abli") to "-ble" and "-logi" to "-log" when the stem before has
    measure m > 0."""
    if len(word) <= 2:
        return word
    stem = snowball_porter(word)
    if stem[-1:] in _UNDOUBLED and stem[-2:-1] == stem[-1:] and any(word == stem + e for e in ("ed", "ing", "eds", "ings")):
        stem = snowball_porter(stem[:-1])
    if stem.endswith("bli") and not word.endswith("blie") and _measure(stem[:-3]) > 0:
        return snowball_porter(stem[:-3] + "ble")  # steps 3-5 then run on "-ble" as in Lucene
    if stem.endswith("logi") and not word.endswith("logie") and _measure(stem[:-4]) > 0:
        return stem[:-4] + "log"  # no later step touches "-log"
    return stem


_UNDOUBLED = frozenset("chjkqvwx")  # double consonants Lucene undoubles and Snowball's porter does not


def _measure(stem: str) -> int:
    """Porter's m: the number of vowel-consonant sequences ('y' after a consonant is a vowel)."""
    m, prev_vowel = 0, False
    for i, c in enumerate(stem):
        vowel = c in "aeiou" or (c == "y" and i > 0 and not prev_vowel)
        if prev_vowel and not vowel:
            m += 1
        prev_vowel = vowel
    return m


class BM25sAnalyzer(Analyzer):
    """The analyzer of this library's first BM25 (bm25s.tokenize with English stop
    words and Snowball English stems): tokens of two or more word characters."""

    name = "bm25s"

    def __init__(self) -> None:
        import bm25s.stopwords

        super().__init__()
        self._stop = frozenset(bm25s.stopwords.STOPWORDS_EN)
        self._stem = Stemmer.Stemmer("english").stemWord
        self._pattern = re.compile(r"(?u)\b\w\w+\b")  # `re`, as bm25s

    def candidates(self, text: str) -> list[str]:
        return self._pattern.findall(text.lower())

    def terms(self, candidate: str) -> str:
        return "" if candidate in self._stop else self._stem(candidate)

    def describe(self) -> dict[str, str]:
        return {"analyzer": self.name, "stemmer": "english", "stopwords": "en"}


ANALYZERS: dict[str, type[Analyzer]] = {"lucene-english": LuceneEnglishAnalyzer, "bm25s": BM25sAnalyzer}


def get_analyzer(name: str) -> Analyzer:
    try:
        return ANALYZERS[name]()
    except KeyError:
        raise ValueError(f"unknown analyzer {name!r}; choose one of {', '.join(ANALYZERS)}") from None
