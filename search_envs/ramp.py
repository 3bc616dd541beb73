"""RAMP: masked-prediction tasks made offline from a Wikipedia corpus.

MaskSearch's Retrieval-Augmented Mask Prediction: take a sentence of an article,
replace a salient span (a named entity, a date or year, a number) with `[mask]`
and ask for the span. The article's title is given so the mask has one answer;
the sentence itself is enough for a search engine to find the article, so every
task is answerable from the corpus but not from the question alone.

Spans come from regular expressions and simple checks (no model download). The
split is by article (a hash of the title), so no article gives tasks to both
splits, and the choice of spans depends only on (seed, title, text): adding an
article to the corpus does not change the tasks of the others.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterable, Iterator
from functools import lru_cache

from search_envs.rewards import normalize_answer
from search_envs.types import Task

MASK = "[mask]"
SPLITS = ("train", "test")
TEST_FRACTION = 0.1
"""About 1,000 test articles of the 10,033 embedded ones; the rest are train."""

MIN_WORDS, MAX_WORDS = 8, 60

_MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
_DATE = re.compile(
    rf"\b(?:(?:{_MONTHS}) \d{{1,2}}, \d{{3,4}}|\d{{1,2}} (?:{_MONTHS}) \d{{3,4}}|(?:{_MONTHS}) \d{{3,4}})\b"
)
_YEAR = re.compile(r"\b(?:1[0-9]{3}|20[0-2][0-9])\b(?:\s(?:BC|BCE|AD|CE)\b)?")
_NUMBER = re.compile(
    r"(?<![\w.,$€£-])\d+(?:st|nd|rd|th)\b"
    r"|(?<![\w.,$€£-])\d{1,3}(?:,\d{3})+(?:\.\d+)?(?: (?:million|billion|trillion))?(?![\w,.]\d)"
    r"|(?<![\w.,$€£-])\d+(?:\.\d+)?(?: (?:million|billion|trillion|percent|per cent))?(?![\w,.]\d|%)"
)
_CONNECTORS = r"(?:of|the|de|du|la|le|von|van|der|da|di|al|bin)"
_CAP_WORD = r"(?:[A-Z][\w'’.\-]*[\w]|[A-Z])"
_ENTITY = re.compile(rf"\b{_CAP_WORD}(?:(?: {_CONNECTORS})* {_CAP_WORD})*")
_JOINERS = set("-–—/_@&")
_CONVERSION = re.compile(r"\s?[^\W\d]{0,6}\d?\s?\(\s?[\d.,]+")
_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"”)]))\s+(?=[\"“(]?[A-Z0-9])")
_ABBREVIATION = re.compile(r"(?:\b[A-Z]|\b(?:Mr|Mrs|Ms|Dr|St|Jr|Sr|Mt|Ft|Gen|Col|Lt|Capt|Rev|Prof|No|vs|c|ca|approx|e\.g|i\.e|U\.S|U\.K|Inc|Co|Ltd|etc|al))\.$")
_STOP_ENTITIES = {
    "the", "a", "an", "in", "it", "its", "this", "these", "those", "that", "he", "she", "they", "his", "her",
    "their", "there", "however", "although", "after", "before", "during", "since", "while", "when", "as", "at",
    "by", "for", "from", "on", "of", "with", "many", "some", "most", "other", "such", "today", "both", "each",
    "one", "two", "also", "following", "later", "early", "modern", "according", "because", "if", "until",
}


def split_sentences(text: str) -> list[str]:
    """Sentences of a lead section; merges splits after common abbreviations ('St.', 'U.S.')."""
    pieces = _SENTENCE_END.split(text)
    sentences: list[str] = []
    for piece in pieces:
        if sentences and _ABBREVIATION.search(sentences[-1]):
            sentences[-1] = f"{sentences[-1]} {piece}"
        else:
            sentences.append(piece)
    return [s.strip() for s in sentences if s.strip()]


def candidate_spans(sentence: str, title: str) -> dict[str, list[tuple[int, int]]]:
    """Maskable spans by kind ('date', 'number', 'entity'), as (start, end) offsets.

    A span is kept only if it is whole words, occurs once in the sentence, is
    not part of the title (the question shows the title) and does not start the
    sentence (a capitalised first word is rarely an entity).
    """
    title_norm = normalize_answer(title)
    found: dict[str, list[tuple[int, int]]] = {"date": [], "number": [], "entity": []}
    taken: list[tuple[int, int]] = []
    for kind, pattern in (("date", _DATE), ("date", _YEAR), ("number", _NUMBER), ("entity", _ENTITY)):
        for m in pattern.finditer(sentence):
            start, end = m.span()
            if kind == "entity":
                start, end = _trim_entity(sentence, start, end)
            if end <= start or any(start < e and s < end for s, e in taken):
                continue
            taken.append((start, end))
            if _maskable(sentence, start, end, kind, title_norm):
                found[kind].append((start, end))
    return found


def _trim_entity(sentence: str, start: int, end: int) -> tuple[int, int]:
    """Drop leading stop words ('The', 'In') and a trailing period of a capitalised run."""
    words = sentence[start:end].split(" ")
    while words and words[0].lower() in _STOP_ENTITIES:
        start += len(words.pop(0)) + 1
    text = sentence[start:end]
    for suffix in ("'s", "’s"):
        if text.endswith(suffix):
            text, end = text[: -len(suffix)], end - len(suffix)
    while text.endswith((".", "'", "’", "-")):
        text, end = text[:-1], end - 1
    return start, end


def _maskable(sentence: str, start: int, end: int, kind: str, title_norm: str) -> bool:
    span = sentence[start:end]
    if start == 0 or not span.strip():
        return False
    before, after = sentence[start - 1], sentence[end : end + 1]
    if before.isalnum() or before in _JOINERS or (after and (after.isalnum() or after in _JOINERS)):
        return False  # inside a word or a compound ('Algonquian–Wiyot')
    if kind == "entity" and before == "(" and after == ")":
        return False  # an alias or acronym of the words just before it
    if kind == "entity" and re.search(r"(?:^|\s)[A-Z]$", span):
        return False  # cut at an initial ('George H. W. Bush')
    if kind == "number" and (before == "(" or _CONVERSION.match(sentence, end)):
        return False  # a unit conversion ('80 km (50 mi)') gives it away
    if sentence.count(span) != 1:
        return False  # the answer would be visible elsewhere in the sentence
    norm = normalize_answer(span)
    if not norm or (kind == "entity" and (len(norm) < 3 or norm in _STOP_ENTITIES)):
        return False
    if kind == "number" and norm in {"0", "1", "2"}:
        return False  # too easy to guess
    if norm in title_norm.split() or norm == title_norm or (kind == "entity" and norm in title_norm):
        return False
    return True


def make_question(title: str, masked_sentence: str) -> str:
    return f'Fill in the {MASK} in this sentence from the Wikipedia article "{title}": "{masked_sentence}"'


def article_split(title: str, test_fraction: float = TEST_FRACTION) -> str:
    """'test' or 'train', from a hash of the title (stable across runs and corpora)."""
    h = int.from_bytes(hashlib.blake2b(title.encode("utf-8"), digest_size=8).digest(), "big")
    return "test" if h / 2**64 < test_fraction else "train"


def _article_key(title: str, text: str) -> str:
    """Names one article: corpora of passages repeat a title over many passages."""
    return hashlib.blake2b(f"{title}\x00{text}".encode("utf-8"), digest_size=6).hexdigest()


def _shuffled_sentences(title: str, text: str, salt: str) -> tuple[str, random.Random, list[str]]:
    """The article's key, an RNG seeded by (salt, key), and its maskable-length sentences shuffled by it."""
    key = _article_key(title, text)
    rng = random.Random(f"{salt}\x00{key}")
    sentences = [s for s in split_sentences(text) if MIN_WORDS <= len(s.split()) <= MAX_WORDS]
    rng.shuffle(sentences)
    return key, rng, sentences


def tasks_from_article(title: str, text: str, seed: int = 0, per_article: int = 1) -> list[Task]:
    """Up to `per_article` masked-sentence tasks from one article, each from a different sentence."""
    key, rng, sentences = _shuffled_sentences(title, text, f"{seed}")
    tasks: list[Task] = []
    for sentence in sentences:
        spans = {kind: v for kind, v in candidate_spans(sentence, title).items() if v}
        if not spans:
            continue
        kind = rng.choice(sorted(spans))
        start, end = rng.choice(spans[kind])
        answer = sentence[start:end]
        masked = f"{sentence[:start]}{MASK}{sentence[end:]}"
        tasks.append(
            Task(
                f"ramp-{key}-{len(tasks)}",
                make_question(title, masked),
                (answer,),
                source="ramp",
                metadata={"title": title, "sentence": sentence, "mask_type": kind},
            )
        )
        if len(tasks) == per_article:
            break
    return tasks


def generate_ramp_tasks(
    articles: Iterable[tuple[str, str]],
    split: str = "test",
    seed: int = 0,
    per_article: int = 1,
    test_fraction: float = TEST_FRACTION,
) -> Iterator[Task]:
    """RAMP tasks of one split from any corpus given as (title, text) pairs."""
    if split not in SPLITS:
        raise ValueError(f"unknown RAMP split {split!r}; choose from {SPLITS}")
    for title, text in articles:
        if article_split(title, test_fraction) == split:
            yield from tasks_from_article(title, text, seed=seed, per_article=per_article)


@lru_cache(maxsize=8)
def ramp_tasks(split: str = "test", seed: int = 0) -> tuple[Task, ...]:
    """The default RAMP set over the embedded Wikipedia lead sections, in a seeded
    random order (cached per process; under a second to build)."""
    from search_envs.data import embedded_articles

    tasks = list(generate_ramp_tasks(((a.title, a.text) for a in embedded_articles()), split, seed))
    if not tasks:
        raise ValueError(f"RAMP split {split!r} produced no tasks")
    # A seeded shuffle, so the first n tasks (`load_tasks(..., limit=n)`) are a
    # sample of the whole alphabet, not the articles whose titles start with digits.
    random.Random(f"ramp-order-{seed}").shuffle(tasks)
    return tuple(tasks)


# ----------------------------------------------------------------------------- MaskSearch: several masks
MAX_MASKS = 4
"""MaskSearch's `gen_qa.py` masks up to 4 entities of a paragraph."""


def make_multi_mask_question(title: str, masked_sentence: str, count: int) -> str:
    if count == 1:
        return make_question(title, masked_sentence)
    return (f'Fill in the {count} {MASK}s in this sentence from the Wikipedia article "{title}": "{masked_sentence}" '
            f"Give the missing spans in order, separated by semicolons.")


def multi_mask_tasks_from_article(title: str, text: str, seed: int = 0, per_article: int = 1,
                                  max_masks: int = MAX_MASKS, mask_count: int | None = None) -> list[Task]:
    """Up to `per_article` tasks, each a sentence with k of its maskable spans replaced by [mask]
    (k and the spans chosen as MaskSearch's `gen_qa.py` does, see `_mask_weights`; or k fixed by
    `mask_count`, sentences with fewer spans skipped). The answer is the spans in sentence order
    joined by '; '; metadata has the `masks` and their `mask_count` (the curriculum's key)."""
    if mask_count is not None and not 1 <= mask_count <= max_masks:
        raise ValueError(f"mask_count must be in 1..{max_masks}, got {mask_count}")
    key, rng, sentences = _shuffled_sentences(title, text, f"masksearch\x00{seed}")
    tasks: list[Task] = []
    for sentence in sentences:
        found = candidate_spans(sentence, title)
        spans = sorted(s for v in found.values() for s in v)
        if not spans or (mask_count is not None and len(spans) < mask_count):
            continue
        # gen_qa.py: 1..n masks when there are 1 or 2 candidates, else 3 or 4 (4 whenever possible)
        k = mask_count or (rng.randint(1, len(spans)) if len(spans) < 3 else min(len(spans), max_masks))
        chosen = sorted(_weighted_sample(rng, spans, _mask_weights(sentence, spans, found), k))
        masked = sentence
        for start, end in reversed(chosen):
            masked = f"{masked[:start]}{MASK}{masked[end:]}"
        masks = [sentence[s:e] for s, e in chosen]
        tasks.append(Task(
            f"masksearch-{key}-{len(tasks)}",
            make_multi_mask_question(title, masked, k),
            ("; ".join(masks),),
            source="masksearch",
            metadata={"title": title, "sentence": sentence, "masks": masks, "mask_count": k},
        ))
        if len(tasks) == per_article:
            break
    return tasks


def _mask_weights(sentence: str, spans: list[tuple[int, int]], found: dict[str, list[tuple[int, int]]]) -> list[float]:
    """gen_qa.py's sampling weights: an entity weighs its number of words, a number (or date) the
    largest entity weight, so long entities and numbers are masked more often."""
    numeric = set(found["number"]) | set(found["date"])
    words = [len(sentence[s:e].split()) for s, e in spans if (s, e) not in numeric]
    top = max(words, default=1)
    return [float(top) if span in numeric else float(len(sentence[span[0]:span[1]].split())) for span in spans]


def _weighted_sample(rng: random.Random, items: list, weights: list[float], k: int) -> list:
    """k distinct items drawn with probability proportional to weight, one at a time."""
    items, weights, out = list(items), list(weights), []
    for _ in range(k):
        i = rng.choices(range(len(items)), weights=weights)[0]
        out.append(items.pop(i))
        weights.pop(i)
    return out


@lru_cache(maxsize=8)
def masksearch_tasks(split: str = "train", seed: int = 0, mask_count: int | None = None) -> tuple[Task, ...]:
    """RAMP with several masks per sentence over the embedded Wikipedia (spec 'masksearch:<split>[:<k>]'),
    split by article as RAMP is, in a seeded random order."""
    from search_envs.data import embedded_articles

    if split not in SPLITS:
        raise ValueError(f"unknown MaskSearch split {split!r}; choose from {SPLITS}")
    tasks = [t for a in embedded_articles() if article_split(a.title) == split
             for t in multi_mask_tasks_from_article(a.title, a.text, seed=seed, mask_count=mask_count)]
    if not tasks:
        raise ValueError(f"MaskSearch split {split!r} produced no tasks")
    random.Random(f"masksearch-order-{seed}").shuffle(tasks)
    return tuple(tasks)
