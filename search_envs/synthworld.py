"""SynthWorld: a seeded world of fictional people, places, organisations and works,
written out as encyclopedia passages, with questions no model can answer from memory.

Why: the embedded Wikipedia holds the answer for few standard QA questions, and a
pretrained model may know the rest; here every answer is an invented fact, so an
agent scores above chance only by searching. Every task carries the ids of its gold
evidence passages, so answer recall and the oracle are exact.

`WorldConfig` holds the knobs; `generate_world(config)` builds the world (seconds,
identical for the same config on any machine: one `random.Random(seed)` drawn in a
fixed order, no hash or set order); `world.tasks(...)` filters its questions;
`write_world` writes the corpus (FlashRAG jsonl, searchable by every engine) and the
task splits (FlashRAG task jsonl). `search_envs.registration.make_synth_env` is the gym entry point of
`SearchEnvs/SynthWorld-v0` (single-hop) and `SearchEnvs/SynthWorldMultiHop-v0`.
Task spec for `load_tasks`: ``synth:<split>[:key=value,...]``, e.g.
``synth:test:kinds=chain,hops=2-4,num_entities=400`` (see `parse_spec`).
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass, field, fields, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from search_envs.tasks import TaskSet
from search_envs.types import Task

KINDS = ("single", "alias", "chain", "comparison")
SPLITS = ("train", "test")

_ONSETS = ("b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "st", "th")
_VOWELS = ("a", "e", "i", "o", "u", "a", "e", "o", "ai", "ea")
_CODAS = ("n", "r", "l", "s", "th", "nd", "m", "x", "rd")
_OCCUPATIONS = ("cartographer", "botanist", "glassblower", "astronomer", "archivist", "shipwright", "composer",
                "physician", "engraver", "geologist", "weaver", "linguist", "architect", "brewer", "surveyor",
                "chemist", "sculptor", "translator", "clockmaker", "economist")
_ORG_KINDS = ("Institute", "Company", "Society", "Works", "Guild", "Bank", "Press", "Foundry")
_GENRES = ("novel", "poem cycle", "treatise", "play", "atlas", "memoir", "chronicle", "song book")
_ADJECTIVES = ("Silent", "Copper", "Hollow", "Amber", "Distant", "Iron", "Pale", "Crimson", "Winter", "Hidden",
               "Bright", "Salt", "Quiet", "Golden", "Broken", "Northern")
_NOUNS = ("Harbor", "Lantern", "Orchard", "Tide", "Compass", "Bell", "River", "Garden", "Crown", "Meadow",
          "Mirror", "Tower", "Falcon", "Anchor", "Forge", "Willow")


@dataclass(frozen=True)
class WorldConfig:
    """The knobs of a world (its corpus and its questions)."""

    seed: int = 0
    num_entities: int = 200
    """People, places, organisations and works together (about 45/25/15/15 %)."""
    passages_per_entity: int = 2
    """An entity's facts are spread over this many passages (at most one per fact)."""
    distractor_density: float = 0.5
    """Share of people who are near-namesakes of an earlier person (same surname) and share
    one attribute value with them: the retriever must tell similar names apart."""
    alias_rate: float = 0.3
    """Share of people with a nickname ("known as the Copper Lantern") for alias questions."""
    test_fraction: float = 0.3
    """Share of anchor entities whose questions form the test split (disjoint from train)."""
    surname_pool: int = 0
    """Distinct surnames to draw from (0: half the number of people). Smaller: more
    people share a surname (harder retrieval; every name word recurs in training)."""
    num_cities: int = 0
    """Cities among the entities (0: a fifth of them). Fewer: every city is some training
    question's answer, so a model that cannot copy an unseen word can still write it."""

    def __post_init__(self) -> None:
        if self.num_entities < 20:
            raise ValueError(f"num_entities must be >= 20, got {self.num_entities}")
        if self.passages_per_entity < 1:
            raise ValueError("passages_per_entity must be >= 1")
        if self.surname_pool < 0:
            raise ValueError("surname_pool must be >= 0")
        if self.num_cities and not 6 <= self.num_cities <= self.num_entities // 3:
            raise ValueError(f"num_cities must be 0 or in [6, num_entities // 3], got {self.num_cities}")
        for name in ("distractor_density", "alias_rate", "test_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]")



@dataclass
class Entity:
    id: str
    kind: str  # person | city | country | org | work
    name: str
    attrs: dict[str, Any] = field(default_factory=dict)
    split: str = "train"
    fact_passage: dict[str, str] = field(default_factory=dict)
    """attribute -> id of the passage stating it (the gold evidence)."""


@dataclass
class World:
    config: WorldConfig
    entities: list[Entity]
    passages: list[dict[str, str]]
    """FlashRAG rows: {"id", "title", "text", "contents"}."""
    all_tasks: list[Task]

    def entity(self, entity_id: str) -> Entity:
        return self._by_id[entity_id]

    def __post_init__(self) -> None:
        self._by_id = {e.id: e for e in self.entities}

    def tasks(self, split: str = "train", kinds: tuple[str, ...] | None = None, hops: tuple[int, ...] | None = None,
              relations: tuple[str, ...] | None = None) -> TaskSet:
        """The questions of a split, filtered by kind, number of hops and relation (template)."""
        if split not in (*SPLITS, "all"):
            raise ValueError(f"split must be one of {SPLITS + ('all',)}, got {split!r}")
        for kind in kinds or ():
            if kind not in KINDS:
                raise ValueError(f"unknown question kind {kind!r}; choose from {KINDS}")
        kept = [t for t in self.all_tasks
                if (split == "all" or t.metadata["split"] == split)
                and (not kinds or t.metadata["kind"] in kinds)
                and (not hops or t.metadata["hops"] in hops)
                and (not relations or t.metadata["relation"] in relations)]
        name = f"synth:{split}"
        if not kept:
            raise ValueError(f"no SynthWorld questions for split={split} kinds={kinds} hops={hops} "
                             f"relations={relations}; relations: {sorted({t.metadata['relation'] for t in self.all_tasks})}")
        return TaskSet(kept, name=name)


# -- names -------------------------------------------------------------------------------
def _word(rng: random.Random, syllables: int) -> str:
    """A pronounceable invented word: open syllables, a consonant at the end."""
    return ("".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables)) + rng.choice(_CODAS)).capitalize()


def _unique_words(rng: random.Random, n: int, syllables: int, taken: list[str], suffix: str = "") -> list[str]:
    seen = set(taken)  # membership only; the order comes from the rng
    out: list[str] = []
    while len(out) < n:
        w = _word(rng, syllables) + suffix
        if w not in seen:
            seen.add(w)
            out.append(w)
    taken.extend(out)
    return out


# -- generation ------------------------------------------------------------------------------
_FACT_SENTENCES: dict[str, tuple[str, ...]] = {
    "birth_year": ("{n} was born in the year {v}.", "The birth of {n} is recorded in {v}."),
    "birthplace": ("{n} is a native of {v}.", "{n} grew up in the city of {v}, where {n} was born."),
    "occupation": ("{n} worked as {av}.", "By profession {n} was {av}."),
    "employer": ("{n} was employed by the {v}.", "For many years {n} worked for the {v}."),
    "alias": ("{n} was widely known as {v}.", "Admirers called {n} {v}."),
    "country": ("{n} is a city in {v}.", "{n} lies within the borders of {v}."),
    "founded": ("{n} was founded in {v}.", "The founding of {n} dates to {v}."),
    "headquarters": ("The {n} has its headquarters in {v}.", "The {n} is based in the city of {v}."),
    "author": ("{n} was written by {v}.", "{v} is the author of {n}."),
    "published": ("{n} was first published in {v}.", "{n} appeared in print in {v}."),
    "genre": ("{n} is {av}.", "Critics describe {n} as {av}."),
    "language": ("{n} is a country whose people speak {v}.", "The language of {n} is {v}."),
}

QUESTIONS: dict[str, tuple[str, ...]] = {
    # single hop: relation -> paraphrases ({e}: the entity)
    "birthplace": ("Where was {e} born?", "In which city was {e} born?", "What is the birthplace of {e}?"),
    "birth_year": ("In what year was {e} born?", "When was {e} born?"),
    "occupation": ("What was the occupation of {e}?", "What did {e} work as?"),
    "employer": ("Which organisation employed {e}?", "Who was {e} employed by?"),
    "country": ("In which country is {e}?", "Which country is {e} in?"),
    "founded": ("In what year was the {e} founded?", "When was the {e} founded?"),
    "headquarters": ("Where is the {e} headquartered?", "In which city is the {e} based?"),
    "author": ("Who wrote {e}?", "Who is the author of {e}?"),
    "published": ("In what year was {e} first published?", "When was {e} published?"),
    # alias: the person is named by a nickname only
    "alias_birthplace": ("Where was the person known as {e} born?",),
    "alias_occupation": ("What was the occupation of the person known as {e}?",),
    # chains: the path of relations from the anchor
    "employer.headquarters": ("In which city is the organisation that employed {e} headquartered?",),
    "birthplace.country": ("In which country was {e} born?",),
    "author.birthplace": ("Where was the author of {e} born?",),
    "author.employer": ("Which organisation employed the author of {e}?",),
    "employer.headquarters.country": ("In which country is the headquarters of the organisation that employed {e}?",),
    "author.birthplace.country": ("In which country was the author of {e} born?",),
    "author.employer.headquarters": ("In which city is the organisation that employed the author of {e} headquartered?",),
    "author.employer.headquarters.country": (
        "In which country is the headquarters of the organisation that employed the author of {e}?",),
    # comparisons
    "born_first": ("Who was born first, {a} or {b}?",),
    "founded_first": ("Which was founded first, the {a} or the {b}?",),
}


def generate_world(config: WorldConfig | None = None) -> World:
    """Build the world of `config` (default `WorldConfig()`)."""
    return _generate(config or WorldConfig())


@lru_cache(maxsize=8)
def _generate(config: WorldConfig) -> World:
    rng = random.Random(config.seed)
    n = config.num_entities
    n_countries = max(3, n // 25)
    n_cities, n_orgs, n_works = config.num_cities or max(6, n // 5), max(4, n // 7), max(4, n // 7)
    n_people = n - n_countries - n_cities - n_orgs - n_works
    taken: list[str] = []
    languages = _unique_words(rng, n_countries, 2, taken, "ish")
    countries = [Entity(f"country{i}", "country", w, {"language": languages[i]})
                 for i, w in enumerate(_unique_words(rng, n_countries, 2, taken, "ia"))]
    cities = [Entity(f"city{i}", "city", w, {"country": rng.choice(countries).name, "founded": rng.randint(900, 1700)})
              for i, w in enumerate(_unique_words(rng, n_cities, 2, taken))]
    org_roots = _unique_words(rng, n_orgs, 2, taken)
    orgs = [Entity(f"org{i}", "org", f"{root} {rng.choice(_ORG_KINDS)}",
                   {"headquarters": rng.choice(cities).name, "founded": rng.randint(1700, 1950)})
            for i, root in enumerate(org_roots)]
    first_names = _unique_words(rng, max(6, int(n_people ** 0.5) + 4), 2, taken)
    surnames = _unique_words(rng, max(6, config.surname_pool or n_people // 2), 2, taken)
    people: list[Entity] = []
    names_taken: set[str] = set()
    aliases: set[str] = set()
    while len(people) < n_people:
        namesake = people and rng.random() < config.distractor_density
        source = rng.choice(people) if namesake else None
        surname = source.name.split()[-1] if source else rng.choice(surnames)
        name = f"{rng.choice(first_names)} {surname}"
        if name in names_taken:
            continue
        attrs: dict[str, Any] = {
            "birth_year": rng.randint(1800, 1960), "birthplace": rng.choice(cities).name,
            "occupation": rng.choice(_OCCUPATIONS), "employer": rng.choice(orgs).name,
        }
        if source is not None:  # a distractor: same surname, one attribute value in common
            shared = rng.choice(["birthplace", "occupation", "employer"])
            attrs[shared] = source.attrs[shared]
        if rng.random() < config.alias_rate:
            alias = f"the {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}"
            if alias not in aliases:
                aliases.add(alias)
                attrs["alias"] = alias
        names_taken.add(name)
        people.append(Entity(f"person{len(people)}", "person", name, attrs))
    works: list[Entity] = []
    titles: set[str] = set()
    while len(works) < n_works:
        title = f"The {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)} of {rng.choice(cities).name}"
        if title in titles:
            continue
        titles.add(title)
        works.append(Entity(f"work{len(works)}", "work", title, {
            "author": rng.choice(people).name, "published": rng.randint(1820, 2000), "genre": rng.choice(_GENRES)}))
    entities = countries + cities + orgs + people + works
    for e in entities:
        e.split = "test" if rng.random() < config.test_fraction else "train"
    passages = _write_passages(entities, config.passages_per_entity, rng)
    tasks = _make_questions(entities, rng)
    return World(config, entities, passages, tasks)


def _write_passages(entities: list[Entity], per_entity: int, rng: random.Random) -> list[dict[str, str]]:
    passages = []
    for e in entities:
        facts = list(e.attrs)
        rng.shuffle(facts)
        k = min(per_entity, len(facts))
        for j in range(k):
            pid = f"{e.id}-{j}"
            sentences = []
            for attr in facts[j::k]:
                value = e.attrs[attr]
                article = "an" if str(value)[0] in "aeiou" else "a"
                sentences.append(rng.choice(_FACT_SENTENCES[attr]).format(n=e.name, v=value, av=f"{article} {value}"))
                e.fact_passage[attr] = pid
            text = " ".join(s[0].upper() + s[1:] for s in sentences)
            passages.append({"id": pid, "title": e.name, "text": text, "contents": f'"{e.name}"\n{text}'})
    return passages


def _task(rng: random.Random, tasks: list[Task], anchor: Entity, kind: str, relation: str, answer: Any,
          evidence: list[str], fill: dict[str, str], hops: int, search_path: list[str]) -> None:
    """search_path: the mentions to search, in order, to reach every evidence passage
    (what the scripted teacher searches)."""
    question = rng.choice(QUESTIONS[relation]).format(**fill)
    tasks.append(Task(f"synth-{kind}-{anchor.id}-{relation}", question, (str(answer),), source=f"synthworld-{kind}",
                      metadata={"kind": kind, "hops": hops, "relation": relation, "split": anchor.split,
                                "evidence": evidence, "entity": anchor.id, "search_path": search_path}))


def _make_questions(entities: list[Entity], rng: random.Random) -> list[Task]:
    by_name = {e.name: e for e in entities}
    tasks: list[Task] = []
    single = {"person": ("birthplace", "birth_year", "occupation", "employer"), "city": ("country", "founded"),
              "org": ("headquarters", "founded"), "work": ("author", "published")}
    for e in entities:
        for rel in single.get(e.kind, ()):
            _task(rng, tasks, e, "single", rel, e.attrs[rel], [e.fact_passage[rel]], {"e": e.name}, 1, [e.name])
        if e.kind == "person" and "alias" in e.attrs:
            for rel in ("birthplace", "occupation"):
                evidence = list(dict.fromkeys([e.fact_passage["alias"], e.fact_passage[rel]]))  # nickname, then fact
                path = [e.attrs["alias"]] + ([e.name] if len(evidence) > 1 else [])
                _task(rng, tasks, e, "alias", f"alias_{rel}", e.attrs[rel], evidence, {"e": e.attrs["alias"]}, 1, path)
    chains = {"person": ("employer.headquarters", "birthplace.country", "employer.headquarters.country"),
              "work": ("author.birthplace", "author.employer", "author.birthplace.country",
                       "author.employer.headquarters", "author.employer.headquarters.country")}
    for e in entities:
        for path in chains.get(e.kind, ()):
            node, evidence, mentions = e, [], []
            for rel in path.split("."):
                evidence.append(node.fact_passage[rel])
                mentions.append(node.name)
                value = node.attrs[rel]
                node = by_name.get(value, node)
            _task(rng, tasks, e, "chain", path, value, evidence, {"e": e.name}, len(evidence), mentions)
    for kind, attr, relation in (("person", "birth_year", "born_first"), ("org", "founded", "founded_first")):
        for split in SPLITS:
            group = [e for e in entities if e.kind == kind and e.split == split]
            rng.shuffle(group)
            for a, b in zip(group[0::2], group[1::2]):
                if a.attrs[attr] == b.attrs[attr]:
                    continue
                first = a if a.attrs[attr] < b.attrs[attr] else b
                _task(rng, tasks, a, "comparison", relation, first.name,
                      [a.fact_passage[attr], b.fact_passage[attr]], {"a": a.name, "b": b.name}, 2, [a.name, b.name])
    return tasks


# -- files ------------------------------------------------------------------------------------
def write_world(world: World, out_dir: str | Path) -> dict[str, Path]:
    """Write corpus.jsonl (FlashRAG: id, contents) and train/test.jsonl (FlashRAG tasks:
    id, question, golden_answers, metadata) into out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"corpus": out / "corpus.jsonl"}
    _write_lines(paths["corpus"], ({"id": p["id"], "contents": p["contents"]} for p in world.passages))
    for split in SPLITS:
        paths[split] = out / f"{split}.jsonl"
        _write_lines(paths[split], ({"id": t.id, "question": t.question, "golden_answers": list(t.answers),
                                     "metadata": t.metadata} for t in world.all_tasks if t.metadata["split"] == split))
    return paths


def _write_lines(path: Path, rows) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
    tmp.replace(path)


def corpus_path(config: WorldConfig) -> Path:
    """The world's corpus file in the cache, named by the hash of its content (so a
    change to the generator can never serve a stale corpus)."""
    from search_envs.data import cache_dir

    world = generate_world(config)
    digest = hashlib.sha256("\n".join(p["contents"] for p in world.passages).encode()).hexdigest()[:16]
    path = Path(cache_dir()) / "synthworld" / digest / "corpus.jsonl"
    if not path.is_file():
        write_world(world, path.parent)
    return path


# -- specs and the environment -------------------------------------------------------------------
_WORLD_KEYS = {f.name: f.type for f in fields(WorldConfig)}


def parse_spec(spec: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``[synth:]<split>[:key=value,...]`` -> (the `WorldConfig` fields it sets, task filters).

    Keys: the `WorldConfig` fields (seed, num_entities, passages_per_entity,
    distractor_density, alias_rate, test_fraction) and the filters kinds
    (``single+chain``), hops (``2-4`` or ``2+3``) and relations (``birthplace+author``)."""
    text = spec[len("synth:"):] if spec.startswith("synth:") else spec
    split, _, options = text.partition(":")
    world: dict[str, Any] = {}
    filters: dict[str, Any] = {"split": split or "train"}
    for item in filter(None, options.split(",")):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep:
            raise ValueError(f"bad synth spec item {item!r} in {spec!r}: use key=value")
        if key in _WORLD_KEYS:
            world[key] = (float if key in ("distractor_density", "alias_rate", "test_fraction") else int)(value)
        elif key in ("kinds", "relations"):
            filters[key] = tuple(value.split("+"))
        elif key == "hops":
            lo, dash, hi = value.partition("-")
            filters[key] = tuple(range(int(lo), int(hi) + 1)) if dash else tuple(int(h) for h in value.split("+"))
        else:
            raise ValueError(f"unknown synth spec key {key!r}; use {sorted(_WORLD_KEYS)} or kinds, hops, relations")
    return world, filters


def synth_tasks(spec: str) -> TaskSet:
    """`load_tasks("synth:...")`: the questions of a spec (see `parse_spec`)."""
    world, filters = parse_spec(spec)
    return generate_world(WorldConfig(**world)).tasks(**filters)
