"""Search-o1-style agentic search (Li et al., 2025) in the env's own tag format.

The LM plays the protocol directly (as an `LMPolicy` would) with Search-o1's
extra guidance, and with Search-o1's Reason-in-Documents step: every search
result is first condensed by the LM into the few facts relevant to the current
reasoning, and the model's context shows that condensed text instead of the raw
documents. The env still returns (and scores) the raw results. On the last turn
the answer tag is opened for the model so the episode ends with an answer.
"""

from __future__ import annotations

from .common import Baseline, question_of, turns_taken
from search_envs.policies.base import History, prompt_of
from search_envs.generation import cut_at_stop

GUIDANCE = (
    "\nYou may search several times; each search should ask for one fact. Search results are long, so "
    "keep only what helps. Answer as soon as you know the answer.\n"
)
CONDENSE_PROMPT = (
    "Question: {q}\nReasoning so far: {reasoning}\nSearched documents:\n{docs}\n\n"
    "Write the facts from the documents that help answer the question, in one or two short sentences. "
    "If nothing helps, write \"No helpful information found.\"\nFacts:"
)


class SearchO1(Baseline):
    name = "search_o1"

    def __init__(self, *args, max_new_tokens: int = 64, condense_tokens: int = 48, **kwargs) -> None:
        super().__init__(*args, max_new_tokens=max_new_tokens, **kwargs)
        self.condense_tokens = condense_tokens
        self._condensed: dict[tuple[str, str], str] = {}

    def reset(self) -> None:
        self._condensed.clear()

    def _condense(self, batch: list[History]) -> list[int]:
        """Condense every observation not condensed yet (one batched call)."""
        todo: dict[tuple[str, str], tuple[int, str]] = {}
        for i, h in enumerate(batch):
            q = question_of(h)
            reasoning = ""
            for role, text in h[1:]:
                if role == "observation" and (q, text) not in self._condensed and not text.lstrip().startswith("My previous"):
                    todo[(q, text)] = (i, CONDENSE_PROMPT.format(q=q, reasoning=reasoning[-600:], docs=text[:3000]))
                elif role == "action":
                    reasoning += text
        tokens = [0] * len(batch)
        keys = list(todo)
        outs = self.ask([todo[k][1] for k in keys], max_new_tokens=self.condense_tokens, stop=("\n",))
        for key, out in zip(keys, outs):
            self._condensed[key] = " ".join(out.text.split()) or "No helpful information found."
            tokens[todo[key][0]] += out.tokens
        return tokens

    def _context(self, history: History) -> str:
        protocol = self.protocol_for(history)
        q = question_of(history)
        parts = []
        for role, text in history[1:]:
            if role == "observation" and (q, text) in self._condensed:
                parts.append(protocol.wrap(self._condensed[(q, text)]))
            else:
                parts.append(text)
        return "".join(parts)

    def act(self, batch: list[History]) -> list[str]:
        self.last_tokens = self._condense(batch)
        forced = [turns_taken(h) >= self.max_turns - 1 for h in batch]
        conversations = []
        for h, force in zip(batch, forced):
            context = self._context(h) + ("\n<answer>" if force else "")
            conversations.append(
                [{"role": "user", "content": prompt_of(h) + GUIDANCE}, {"role": "assistant", "content": context}]
            )
        stop = self.protocol_for(batch[0]).stop_strings
        outs = self.generator.complete(conversations, stop=stop, max_new_tokens=self.max_new_tokens, continue_last=True)
        actions = []
        for j, (o, force) in enumerate(zip(outs, forced)):
            self.last_tokens[j] += o.tokens
            text = o.text
            if force:
                text = "<answer>" + cut_at_stop(text, ("</answer>",))
                if not text.endswith("</answer>"):
                    text = text.split("\n")[0] + "</answer>"
            actions.append(text)
        return actions
