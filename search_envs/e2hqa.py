"""E2HQA (WebDancer, Wu et al. 2025, arXiv:2505.22648): make easy questions harder by
replacing an entity of the question with a description of it found by searching for it,
several times over, while the answer stays the same.

One round, for every question at once: pick an entity of the question (a capitalised span,
not part of the answer and not already a description), search for it, and ask a
`Describer` for a short description that identifies it without naming it; a description that
names the entity or gives away the answer is refused (the round leaves that question as it
was and records why). `synthesize` runs `iterations` rounds.

`SearchLLMDescriber` describes from the real corpus through any `search_envs.generation`
backend (transformers, openai-compatible server, vLLM); `CorpusDescriptionDescriber` uses the
embedded Wikipedia's own short descriptions (no LLM); `SynthWorldDescriber` is exact over a
SynthWorld (its facts are known): the description is checked to pick out exactly one entity of
the world, so the rewritten question keeps exactly one answer, and it nests (round 2 describes an
entity named inside round 1's description: multi-hop questions). The `Describer` protocol is the
extension point: implement `describe` and pass it to `synthesize`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Protocol as TypingProtocol

from search_envs.ramp import _STOP_ENTITIES as _STOP_WORDS
from search_envs.ramp import candidate_spans
from search_envs.rewards import normalize_answer
from search_envs.types import Task

MAX_DESCRIPTION_WORDS = 25


@dataclass(frozen=True)
class DescribeRequest:
    """Describe `entity` (found in `question`, whose answer is `answers`) without naming it."""

    entity: str
    question: str
    answers: tuple[str, ...]
    replaced: tuple[str, ...] = ()
    """Entities earlier rounds replaced: a description must not bring them back."""


class Describer(TypingProtocol):
    """Descriptions for a batch of requests: (description, evidence) or None when it has none.
    The evidence (a document id, a fact) is kept in the task's provenance. A describer with a
    true `nests` attribute may also be asked for entities inside earlier descriptions."""

    def describe(self, requests: Sequence[DescribeRequest]) -> list[tuple[str, str] | None]: ...


DESCRIBE_PROMPT = (
    "Here is a passage about \"{entity}\":\n{passage}\n\n"
    "Write one short noun phrase (at most 20 words) that identifies \"{entity}\" without naming it, "
    "so that it could replace \"{entity}\" in a question. Do not use the words \"{entity}\"{answer_rule}. "
    "Reply with the phrase only.\nPhrase:"
)


class SearchLLMDescriber:
    """Searches `engine` for the entity and has `generator` (a `search_envs.generation.Generator`)
    write the description from the passage whose title best matches the entity."""

    def __init__(self, engine, generator, k: int = 3, max_new_tokens: int = 40) -> None:
        self.engine, self.generator, self.k, self.max_new_tokens = engine, generator, k, max_new_tokens

    def describe(self, requests: Sequence[DescribeRequest]) -> list[tuple[str, str] | None]:
        if not requests:
            return []
        results = self.engine.search([r.entity for r in requests], self.k)
        prompts, evidence = [], []
        for r, docs in zip(requests, results):
            if not docs:
                prompts.append(None)
                evidence.append("")
                continue
            target = normalize_answer(r.entity)
            doc = next((d for d in docs if normalize_answer(d.title) == target), docs[0])
            answer_rule = "".join(f' or "{a}"' for a in r.answers[:3])
            prompts.append([{"role": "user", "content": DESCRIBE_PROMPT.format(
                entity=r.entity, passage=doc.text[:1200], answer_rule=answer_rule)}])
            evidence.append(doc.id)
        asked = [p for p in prompts if p is not None]
        replies = iter(self.generator.complete(asked, stop=("\n",), max_new_tokens=self.max_new_tokens,
                                               continue_last=False, return_exceptions=True))
        out: list[tuple[str, str] | None] = []
        for p, ev in zip(prompts, evidence):
            reply = next(replies) if p is not None else None
            text = getattr(reply, "text", None)
            out.append((clean_description(text), ev) if text else None)
        return out


class CorpusDescriptionDescriber:
    """LLM-free: an entity that is an article title of the embedded Wikipedia gets that article's
    own short description ("the German inventor (1858–1913)") when searching `engine` for the
    entity and its description finds the article (the evidence). Exact but narrow: only
    entities that are article titles get one. The search includes the description because the
    name alone is a poor query for a common name (for "France", the top 10 of a BM25 search
    are articles titled "... of France"), and which of those ranks first depends on the scorer."""

    def __init__(self, engine, k: int = 10) -> None:
        from search_envs.data import embedded_articles

        self.engine, self.k = engine, k
        self.descriptions = {normalize_answer(a.title): a.description for a in embedded_articles() if a.description}

    def describe(self, requests: Sequence[DescribeRequest]) -> list[tuple[str, str] | None]:
        out: list[tuple[str, str] | None] = [None] * len(requests)
        wanted = [(i, normalize_answer(r.entity)) for i, r in enumerate(requests)]
        wanted = [(i, target, self.descriptions[target]) for i, target in wanted if target in self.descriptions]
        if not wanted:
            return out
        queries = [f"{requests[i].entity} {description}" for i, _, description in wanted]
        for (i, target, description), docs in zip(wanted, self.engine.search(queries, self.k)):
            doc = next((d for d in docs if normalize_answer(d.title) == target), None)
            if doc is not None:
                out[i] = (f"the {description}", doc.id)
        return out


_SYNTH_CLAUSES = {
    "birth_year": "born in {v}", "birthplace": "native to {v}", "occupation": "working as {av}",
    "employer": "employed by the {v}", "country": "located in {v}", "founded": "founded in {v}",
    "headquarters": "headquartered in {v}", "author": "written by {v}", "published": "first published in {v}",
    "language": "whose people speak {v}",
}
"""How a SynthWorld fact reads inside a description (a work's genre is its noun instead)."""
_SYNTH_NOUNS = {"person": "person", "city": "city", "country": "country", "org": "organisation", "work": "work"}
_SYNTH_LINKS = ("birthplace", "employer", "country", "headquarters", "author")
"""Facts whose value is another entity: preferred, so that a later round can describe it."""


class SynthWorldDescriber:
    """Exact, LLM-free: searches `engine` (over the world's corpus, `synthworld.corpus_path`) for
    the entity's name, takes the entity's own passage among the hits (best ranked first) and
    describes the entity by facts that passage states ("the person born in 1850 and employed by
    the Dalen Institute") that pick out this entity alone among the world's entities of its
    kind: first the sets with a fact naming another entity (so the next round can describe that
    one: nested, multi-hop descriptions), fewest facts first, then the others. Facts naming an answer or a replaced entity are never
    used; the nickname is not (it is a name). The evidence is that passage's id."""

    nests = True

    def __init__(self, world, engine, k: int = 10, max_facts: int = 3) -> None:
        self.world, self.engine, self.k, self.max_facts = world, engine, k, max_facts
        self.by_name = {e.name: e for e in world.entities}

    def _entity(self, span: str, question: str):
        """The world entity `span` names, unless it is part of a longer name in the question
        ("Kelon" in the title "The Silent Harbor of Kelon")."""
        e = self.by_name.get(span) or self.by_name.get(f"The {span}")
        if e is None or any(span in n and n != e.name and n in question for n in self.by_name):
            return None
        return e

    def _matches(self, kind: str, facts: Sequence[tuple[str, object]]) -> int:
        return sum(e.kind == kind and all(e.attrs.get(a) == v for a, v in facts) for e in self.world.entities)

    def description(self, entity, passage_id: str, avoid: Sequence[str]) -> str | None:
        """The shortest unique description from the facts `passage_id` states, or None."""
        def mentions_avoided(attr: str) -> bool:
            text = f" {normalize_answer(str(entity.attrs[attr]))} "
            return any((g := normalize_answer(a)) and (f" {g} " in text or text in f" {g} ") for a in avoid)

        usable = [a for a in entity.attrs if a != "alias" and entity.fact_passage.get(a) == passage_id
                  and not mentions_avoided(a)]
        combos = [c for n in range(1, min(self.max_facts, len(usable)) + 1) for c in combinations(usable, n)]
        combos.sort(key=lambda c: (not any(a in _SYNTH_LINKS for a in c), len(c)))  # stable: attribute order
        for combo in combos:
            facts = [(a, entity.attrs[a]) for a in combo]
            if self._matches(entity.kind, facts) != 1:
                continue
            noun = entity.attrs["genre"] if "genre" in combo else _SYNTH_NOUNS[entity.kind]
            clauses = []
            for a, v in facts:
                if a != "genre":
                    clauses.append(_SYNTH_CLAUSES[a].format(v=v, av=f"{'an' if str(v)[0] in 'aeiou' else 'a'} {v}"))
            return " ".join([f"the {noun}", " and ".join(clauses)]).strip()
        return None

    def describe(self, requests: Sequence[DescribeRequest]) -> list[tuple[str, str] | None]:
        out: list[tuple[str, str] | None] = [None] * len(requests)
        found = [(i, e) for i, r in enumerate(requests) if (e := self._entity(r.entity, r.question)) is not None]
        if not found:
            return out
        hits = self.engine.search([e.name for _, e in found], self.k)
        for (i, e), docs in zip(found, hits):
            r = requests[i]
            for doc in docs:
                if doc.id.rpartition("-")[0] != e.id:
                    continue
                text = self.description(e, doc.id, (*r.answers, *r.replaced))
                if text is not None:
                    out[i] = (text, doc.id)
                    break
        return out


def clean_description(text: str) -> str:
    """The first line, without quotes, a 'Phrase:' label or a final period."""
    line = text.strip().split("\n")[0].strip()
    if line.lower().startswith("phrase:"):
        line = line[len("phrase:"):].strip()
    return line.strip("\"'“”` ").rstrip(".").strip()


@dataclass
class Rewrite:
    entity: str
    description: str
    evidence: str


@dataclass
class Synthesis:
    """One question's history: its rewrites in order, and the reasons rounds were refused."""

    task: Task
    question: str
    rewrites: list[Rewrite] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    tried: list[str] = field(default_factory=list)
    """Entities a round failed to describe: not picked again."""


def pick_entity(question: str, answers: Sequence[str], avoid: Sequence[str], rng: random.Random) -> str | None:
    """A capitalised span of the question (RAMP's span finder) that is not an answer, does not
    contain one, and is not inside any text of `avoid` (earlier descriptions, failed entities);
    None when there is none."""
    golds = [normalize_answer(a) for a in answers if normalize_answer(a)]
    spans = candidate_spans(question, title="")["entity"]
    options = []
    for start, end in spans:
        entity = question[start:end]
        norm = normalize_answer(entity)
        if not norm or any(g in norm or norm in g for g in golds):
            continue
        if any(entity in text for text in avoid):
            continue
        options.append(entity)
    return rng.choice(options) if options else None


def check_description(description: str, entity: str, answers: Sequence[str], replaced: Sequence[str] = ()) -> str | None:
    """Why a description is refused, or None: empty, too long, names the entity, an answer or an
    entity an earlier round replaced."""
    norm = normalize_answer(description)
    if not norm:
        return "empty description"
    if len(description.split()) > MAX_DESCRIPTION_WORDS:
        return "description too long"
    words = set(norm.split())
    if any(w in words for w in normalize_answer(entity).split() if len(w) > 2 and w not in _STOP_WORDS):
        return "description names the entity"
    if any((g := normalize_answer(a)) and f" {g} " in f" {norm} " for a in answers):
        return "description gives the answer away"
    if any((g := normalize_answer(a)) and f" {g} " in f" {norm} " for a in replaced):
        return "description names an entity replaced earlier"
    return None


def replace_entity(question: str, entity: str, description: str) -> str:
    """The question with its first `entity` replaced by `description`, without doubling an
    article ("the the ...") when the entity already followed one (lower-cased inside the
    sentence: a capital "The" belonged to the name)."""
    at = question.find(entity)
    before = question[:at]
    if before.lower().endswith(("the ", "a ", "an ")) and description.lower().startswith(("the ", "a ", "an ")):
        description = description.split(" ", 1)[1]
        if before.endswith(" The "):  # the article was part of the name ("The Silent Harbor"): no longer
            before = before[:-4] + "the "
    return before + description + question[at + len(entity):]


def synthesize(tasks: Sequence[Task], describer: Describer, iterations: int = 2, seed: int = 0) -> list[Synthesis]:
    """`iterations` rounds of entity replacement over `tasks` (batched per round). With a
    describer that `nests`, an entity inside an earlier description may be picked (its
    description then nests in the other: a multi-hop question)."""
    if iterations < 1:
        raise ValueError("iterations must be >= 1")
    rng = random.Random(seed)
    nests = bool(getattr(describer, "nests", False))
    states = [Synthesis(t, t.question) for t in tasks]
    for round_no in range(iterations):
        picks: list[tuple[Synthesis, str]] = []
        for s in states:
            avoid = s.tried if nests else [r.description for r in s.rewrites] + s.tried
            entity = pick_entity(s.question, s.task.answers, avoid, rng)
            if entity is None:
                s.refused.append(f"round {round_no + 1}: no entity left to replace")
            else:
                picks.append((s, entity))
        answers = describer.describe([DescribeRequest(e, s.question, s.task.answers, tuple(r.entity for r in s.rewrites))
                                      for s, e in picks])
        for (s, entity), got in zip(picks, answers):
            if got is None:
                s.tried.append(entity)
                s.refused.append(f"round {round_no + 1}: nothing found for {entity!r}")
                continue
            description, evidence = got
            reason = check_description(description, entity, s.task.answers, [r.entity for r in s.rewrites])
            if reason:
                s.tried.append(entity)
                s.refused.append(f"round {round_no + 1}: {reason} ({entity!r})")
                continue
            s.question = replace_entity(s.question, entity, description)
            s.rewrites.append(Rewrite(entity, description, evidence))
    return states


def to_task(s: Synthesis) -> Task:
    """The rewritten task. A task that lists its gold `evidence` (SynthWorld) keeps it, plus each
    rewrite's evidence passage, and its `hops` grow by one per new passage, so that answer recall and
    the oracle stay exact; its `search_path` (the original names) is dropped."""
    metadata = {k: v for k, v in s.task.metadata.items() if k != "search_path"}
    if isinstance(metadata.get("evidence"), list):
        evidence = list(dict.fromkeys([*metadata["evidence"], *(r.evidence for r in s.rewrites)]))
        if isinstance(metadata.get("hops"), int):
            metadata["hops"] += len(evidence) - len(metadata["evidence"])
        metadata["evidence"] = evidence
    metadata.update(original_question=s.task.question, original_id=s.task.id, rewrites=[vars(r) for r in s.rewrites])
    return Task(f"{s.task.id}-e2h{len(s.rewrites)}", s.question, s.task.answers, source="e2hqa", metadata=metadata)


def write_tasks(syntheses: Sequence[Synthesis], path: str | Path, keep_unchanged: bool = False) -> int:
    """FlashRAG jsonl ({"id", "question", "golden_answers", "metadata"}) of the questions that got at
    least one rewrite (all of them with keep_unchanged); `load_tasks(path)` reads it back."""
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for s in syntheses:
            if not s.rewrites and not keep_unchanged:
                continue
            t = to_task(s)
            record = {"id": t.id, "question": t.question, "golden_answers": list(t.answers),
                      "metadata": {**t.metadata, "refused": s.refused}}
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            n += 1
    return n
