"""Prompting baselines without a trained searcher: direct answer, chain-of-thought,
single-retrieval RAG, and IRCoT-style interleaved retrieval and reasoning.

Each turns the LM's reply into an action in the env's protocol, so all of them
run on any search environment and are scored by the env like any agent.
"""

from __future__ import annotations

from .common import Baseline, documents_text, question_of, short_answer, thoughts, turns_taken
from search_envs.policies.base import History

DIRECT_PROMPT = "Answer the question with a short answer of a few words, without explanation.\nQuestion: {q}\nAnswer:"
COT_PROMPT = (
    "Answer the question. Reason step by step in two or three short sentences, then finish with "
    "\"So the answer is: <short answer>.\"\nQuestion: {q}\n"
)
RAG_PROMPT = (
    "Use the documents to answer the question with a short answer of a few words, without explanation.\n"
    "Documents:\n{docs}\n\nQuestion: {q}\nAnswer:"
)
IRCOT_PROMPT = (
    "Documents:\n{docs}\n\nAnswer the question by reasoning step by step, one short sentence per step. "
    "When you know the answer, write \"So the answer is: <short answer>.\"\n"
    "Question: {q}\nReasoning so far: {cot}\nNext sentence:"
)


class DirectAnswer(Baseline):
    """Closed-book: the LM answers at once, no search."""

    name = "direct"

    def act(self, batch: list[History]) -> list[str]:
        outs = self.ask([DIRECT_PROMPT.format(q=question_of(h)) for h in batch])
        self.last_tokens = [o.tokens for o in outs]
        return [self.answer(h, short_answer(o.text)) for h, o in zip(batch, outs)]


class ChainOfThought(Baseline):
    """Closed-book with reasoning first; the reasoning goes in the <think> block."""

    name = "cot"

    def __init__(self, *args, max_new_tokens: int = 96, **kwargs) -> None:
        super().__init__(*args, max_new_tokens=max_new_tokens, **kwargs)

    def act(self, batch: list[History]) -> list[str]:
        prompts = [COT_PROMPT.format(q=question_of(h)) for h in batch]
        outs = self.ask(prompts, stop=("\n\n\n",))
        self.last_tokens = [o.tokens for o in outs]
        # Replies that ran out of tokens before stating the answer are continued
        # after "So the answer is:" with a short second call.
        unfinished = [j for j, o in enumerate(outs) if "answer is" not in o.text.lower()]
        finals = self.generator.complete(
            [[{"role": "user", "content": prompts[j]},
              {"role": "assistant", "content": outs[j].text.rstrip() + " So the answer is:"}] for j in unfinished],
            stop=("\n",), max_new_tokens=16, continue_last=True,
        ) if unfinished else []
        answers = [short_answer(o.text) for o in outs]
        for j, f in zip(unfinished, finals):
            self.last_tokens[j] += f.tokens
            answers[j] = short_answer(f.text)
        return [
            self.answer(h, a, thought=o.text.split("So the answer is")[0]) for h, a, o in zip(batch, answers, outs)
        ]


class RAG(Baseline):
    """Retrieve once with the question as the query (one search action), then answer
    from the top-k documents the env returned."""

    name = "rag"

    def act(self, batch: list[History]) -> list[str]:
        actions, ask = self.search_question_first(batch)
        outs = self.ask([RAG_PROMPT.format(docs=documents_text(batch[i]), q=question_of(batch[i])) for i in ask])
        self.last_tokens = [0] * len(batch)
        for i, o in zip(ask, outs):
            actions[i] = self.answer(batch[i], short_answer(o.text))
            self.last_tokens[i] = o.tokens
        return [actions[i] for i in range(len(batch))]


class IRCoT(Baseline):
    """IRCoT (Trivedi et al., 2023): retrieve with the question, then alternate one
    reasoning sentence with a retrieval that uses that sentence as the query, until
    the sentence states the answer or the turn budget is nearly spent."""

    name = "ircot"

    def __init__(self, *args, max_new_tokens: int = 48, **kwargs) -> None:
        super().__init__(*args, max_new_tokens=max_new_tokens, **kwargs)

    def act(self, batch: list[History]) -> list[str]:
        actions, step = self.search_question_first(batch)
        self.last_tokens = [0] * len(batch)
        prompts = [
            IRCOT_PROMPT.format(docs=documents_text(batch[i]), q=question_of(batch[i]), cot=" ".join(thoughts(batch[i])))
            for i in step
        ]
        outs = self.ask(prompts, stop=("\n",))
        final: list[int] = []
        for i, o in zip(step, outs):
            self.last_tokens[i] = o.tokens
            sentence = " ".join(o.text.split())
            last_turn = turns_taken(batch[i]) >= self.max_turns - 1
            if "answer is" in sentence.lower():
                actions[i] = self.answer(batch[i], short_answer(sentence), thought=sentence)
            elif last_turn or not sentence:
                final.append(i)
            else:
                actions[i] = self.search(batch[i], sentence, thought=sentence)
        answers = self.ask([RAG_PROMPT.format(docs=documents_text(batch[i]), q=question_of(batch[i])) for i in final])
        for i, o in zip(final, answers):
            self.last_tokens[i] += o.tokens
            actions[i] = self.answer(batch[i], short_answer(o.text))
        return [actions[i] for i in range(len(batch))]
