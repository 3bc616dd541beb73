"""ZeroSearch's simulated search engine, exact where the world is known: SynthWorld.

ZeroSearch asks an LLM for *useful* or *noisy* documents per query. Over a SynthWorld
the truth is known, so the same two kinds can be written without an LLM, exactly:

- useful: the true facts of the entities the query names (full name or nickname;
  entities sharing a name word with the query, such as near-namesakes, fill the
  remaining ranks, as a retriever would surface them), the fact the question asks
  about first when the engine may read the answer (as a snippet leads with the match);
- noisy, in kinds a user picks (`noise_kinds`):
  ``irrelevant`` (true facts of entities the query does not name),
  ``false`` (the named entities' attributes, every one with a wrong value of the same
  attribute: plausible but false),
  ``partial`` (the named entities' documents with some facts true and the others,
  always including the one the question asks about, false).

The interface is `SimulatedEngine`'s: the env's noise curriculum sets
`QueryContext.noisy`, `include_answer` says whether the engine may read the question
and gold answers (to pick the fact to falsify and drop a noisy document that would
still hold the answer), and `search_envs.registration.make_synth_sim_env(generator=...)` swaps this engine for
an LLM simulator ("transformers", "openai", "vllm") without touching anything else.
Results are a pure function of (seed, query, question, answers, mode, k), so training
and evaluation are repeatable; `stats` counts each kind served.
"""

from __future__ import annotations

import random
import re
import zlib
from collections.abc import Sequence
from typing import Any

from search_envs.engines.base import SearchEngine
from search_envs.rewards import substring_match
from search_envs.synthworld import _FACT_SENTENCES, Entity, World, WorldConfig, generate_world
from search_envs.types import Document, QueryContext

NOISE_KINDS = ("irrelevant", "false", "partial")


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _stable_rng(*parts: Any) -> random.Random:
    """An RNG seeded by the content (crc32 of the parts), the same on every machine and hash seed."""
    return random.Random(zlib.crc32("\x1f".join(map(str, parts)).encode("utf-8")))


def fact_sentence(entity: Entity, attr: str, value: Any) -> str:
    """One sentence stating `attr = value` of `entity`, in SynthWorld's own templates
    (the template is fixed per entity and attribute, so a true and a false document
    differ only in the value)."""
    templates = _FACT_SENTENCES[attr]
    template = templates[zlib.crc32(f"{entity.id}|{attr}".encode()) % len(templates)]
    article = "an" if str(value)[0] in "aeiou" else "a"
    sentence = template.format(n=entity.name, v=value, av=f"{article} {value}")
    return sentence[0].upper() + sentence[1:]


class SynthSimEngine(SearchEngine):
    """Useful or noisy documents about a SynthWorld, per `QueryContext.noisy`.

    Args:
        world: a `World`, or `WorldConfig` fields as a dict (None: the default world).
        noise_kinds: the noisy kinds to draw from, uniformly per noisy query
            (any of "irrelevant", "false", "partial").
        include_answer: read the question and gold answers (as ZeroSearch's prompt
            does in training): a partial document then falsifies the fact that holds
            the answer, and `drop_leaking_noisy` can check. False: the engine sees
            only the query; a partial document falsifies a random half of the facts.
        drop_leaking_noisy: drop a noisy document that contains a gold answer (only
            possible when the answer is part of a name the query mentions).
        seed: varies the noisy draws (wrong values, kinds, irrelevant entities).
    """

    name = "synth_sim"

    def __init__(
        self,
        world: World | dict[str, Any] | None = None,
        *,
        noise_kinds: Sequence[str] | str = NOISE_KINDS,
        include_answer: bool = True,
        drop_leaking_noisy: bool = True,
        seed: int = 0,
    ) -> None:
        if isinstance(noise_kinds, str):
            noise_kinds = (noise_kinds,)
        noise_kinds = tuple(noise_kinds)
        unknown = [k for k in noise_kinds if k not in NOISE_KINDS]
        if unknown or not noise_kinds:
            raise ValueError(f"noise_kinds must be a non-empty subset of {NOISE_KINDS}, got {noise_kinds!r}")
        self.world = world if isinstance(world, World) else generate_world(WorldConfig(**(world or {})))
        self.noise_kinds = noise_kinds
        self.include_answer = include_answer
        self.drop_leaking_noisy = drop_leaking_noisy
        self.seed = seed
        self.stats = {"useful": 0, "irrelevant": 0, "false": 0, "partial": 0, "dropped_leaking": 0, "no_entity": 0}
        self._names: list[tuple[tuple[str, ...], Entity]] = []  # (name words, entity), longest first
        self._by_word: dict[str, list[Entity]] = {}
        for e in self.world.entities:
            self._names.append((tuple(_words(e.name)), e))
            if "alias" in e.attrs:
                self._names.append((tuple(w for w in _words(e.attrs["alias"]) if w != "the"), e))
            for w in set(_words(e.name)) - {"the", "of"}:
                self._by_word.setdefault(w, []).append(e)
        self._names.sort(key=lambda item: -len(item[0]))
        self._values: dict[str, list[Any]] = {}
        for e in self.world.entities:
            for attr, value in e.attrs.items():
                self._values.setdefault(attr, []).append(value)
        self._values = {a: sorted(set(v), key=str) for a, v in self._values.items()}

    # -- what a query names ------------------------------------------------------------------
    def named_entities(self, query: str, k: int) -> list[Entity]:
        """Entities whose full name or nickname occurs in the query (longest names first),
        then entities sharing the most name words with it (near-namesakes), at most k."""
        words = _words(query)
        text = f" {' '.join(words)} "
        found: list[Entity] = []
        for name, entity in self._names:
            if name and f" {' '.join(name)} " in text and entity not in found:
                found.append(entity)
        if len(found) < k:
            overlap: dict[str, tuple[int, Entity]] = {}
            for w in dict.fromkeys(words):
                for e in self._by_word.get(w, ()):
                    if e not in found:
                        overlap[e.id] = (overlap.get(e.id, (0, e))[0] + 1, e)
            ranked = sorted(overlap.values(), key=lambda item: (-item[0], item[1].id))
            found += [e for _, e in ranked]
        return found[:k]

    # -- documents -------------------------------------------------------------------------
    def _document(self, entity: Entity, values: dict[str, Any], kind: str, rank: int) -> Document:
        text = " ".join(fact_sentence(entity, attr, value) for attr, value in values.items())
        return Document(id=f"synthsim-{kind}-{entity.id}", title=entity.name, text=text, score=1.0 / (rank + 1))

    def _wrong_value(self, attr: str, true_value: Any, answers: Sequence[str], rng: random.Random) -> Any:
        pool = [v for v in self._values[attr]
                if v != true_value and not (answers and substring_match(str(v), answers))]
        return rng.choice(pool) if pool else true_value

    def _facts(self, entity: Entity, answers: Sequence[str]) -> dict[str, Any]:
        """The entity's facts, the one the question asks about first (when the answer is
        known), as a search snippet leads with the sentence that matches."""
        asked = self._answer_attrs(entity, answers)
        return {a: entity.attrs[a] for a in sorted(entity.attrs, key=lambda a: a not in asked)}

    def _falsified(self, entity: Entity, attrs: set[str], answers: Sequence[str], rng: random.Random) -> dict[str, Any]:
        return {a: self._wrong_value(a, v, answers, rng) if a in attrs else v
                for a, v in self._facts(entity, answers).items()}

    def _answer_attrs(self, entity: Entity, answers: Sequence[str]) -> set[str]:
        return {a for a, v in entity.attrs.items() if answers and substring_match(str(v), answers)}

    def _noisy(self, kind: str, named: list[Entity], answers: Sequence[str], k: int,
               rng: random.Random) -> list[Document]:
        if kind == "irrelevant" or not named:
            taken = {e.id for e in named}
            pool = [e for e in self.world.entities if e.id not in taken]
            rng.shuffle(pool)
            out = []
            for e in pool:
                doc = self._document(e, dict(e.attrs), "irrelevant", len(out))
                if not (answers and substring_match(f"{doc.title} {doc.text}", answers)):
                    out.append(doc)
                if len(out) == k:
                    break
            return out
        docs = []
        for rank, e in enumerate(named):
            if kind == "false":
                docs.append(self._document(e, self._falsified(e, set(e.attrs), answers, rng), "false", rank))
                continue
            false = self._answer_attrs(e, answers)
            if not false:  # the question is about another entity, or not known: a random half
                false = set(rng.sample(list(e.attrs), max(1, len(e.attrs) // 2)))
            docs.append(self._document(e, self._falsified(e, false, answers, rng), "partial", rank))
        return docs

    def search(self, queries: Sequence[str], k: int, contexts: Sequence[QueryContext] | None = None) -> list[list[Document]]:
        if contexts is not None and len(contexts) != len(queries):
            raise ValueError(f"got {len(contexts)} contexts for {len(queries)} queries")
        results: list[list[Document]] = [[] for _ in queries]
        if k < 1:
            return results
        for i, raw in enumerate(queries):
            query = " ".join(str(raw or "").split())
            if not query:
                continue
            context = contexts[i] if contexts is not None else QueryContext()
            question, answers = (context.question, tuple(context.answers)) if self.include_answer else ("", ())
            named = self.named_entities(query, k)
            self.stats["no_entity"] += not named
            if not context.noisy:
                results[i] = [self._document(e, self._facts(e, answers), "useful", r) for r, e in enumerate(named)]
                self.stats["useful"] += 1
                continue
            rng = _stable_rng(self.seed, query, question, answers, k)
            kind = self.noise_kinds[rng.randrange(len(self.noise_kinds))]
            docs = self._noisy(kind, named, answers, k, rng)
            if self.drop_leaking_noisy and answers:
                kept = [d for d in docs if not substring_match(f"{d.title} {d.text}", answers)]
                self.stats["dropped_leaking"] += len(docs) - len(kept)
                docs = kept
            self.stats[kind] += 1
            results[i] = docs
        return results
