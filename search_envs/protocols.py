"""Action protocols: how a policy asks for a search and gives an answer.

A protocol owns the instruction prompt, the parsing of the policy's text into an
`Action`, and the formatting of search results and errors back into text. Add
your own by subclassing `Protocol` and registering it in `PROTOCOLS`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from search_envs.types import Action, Document

MAX_QUERY_CHARS = 512
"""Longer queries are cut: no engine benefits from a 100 KB query."""

MAX_QUERIES_PER_CALL = 8


def _clean_query(query: str) -> str:
    return " ".join(query.split())[:MAX_QUERY_CHARS]


def _clean_queries(queries: Sequence[object]) -> list[str]:
    return [q for q in (_clean_query(str(x)) for x in queries) if q][:MAX_QUERIES_PER_CALL]


def first_block(text: str, tags: Sequence[tuple[str, str]]) -> tuple[int, str] | None:
    """The leftmost complete `open ... close` block over several tag pairs.

    Returns (index of the tag pair, body) or None. Same result as a lazy regex
    `open(.*?)close|...` searched once, but linear time: a 100 KB action full of
    unclosed opening tags makes the regex backtrack quadratically (seconds).
    The earliest opening of a tag is the only one worth trying: if no closing
    tag follows it, none follows a later one either.
    """
    best: tuple[int, int, str] | None = None
    for i, (open_tag, close_tag) in enumerate(tags):
        start = text.find(open_tag)
        if start < 0 or (best is not None and start >= best[0]):
            continue
        end = text.find(close_tag, start + len(open_tag))
        if end >= 0:
            best = (start, i, text[start + len(open_tag) : end])
    return None if best is None else (best[1], best[2])


def format_documents(docs: Sequence[Document]) -> str:
    """Search-R1's document layout: 'Doc 1(Title: "T") text' one per line."""
    return "\n".join(f'Doc {i + 1}(Title: "{d.title}") {d.text}' for i, d in enumerate(docs))


def _no_hits(docs: Sequence[Document]) -> str:
    """An empty result says why: a failed web search (`SearchFailure`) carries `error`."""
    error = getattr(docs, "error", None)
    return f"Search failed: {error}" if error else "No results found."


def format_results(queries: Sequence[str], results: Sequence[Sequence[Document]]) -> str:
    """One block per query; a query with no hit says so instead of vanishing."""
    if len(queries) == 1:
        return format_documents(results[0]) or _no_hits(results[0])
    blocks = []
    for query, docs in zip(queries, results):
        body = format_documents(docs) or _no_hits(docs)
        blocks.append(f"Query: {query}\n{body}")
    return "\n\n".join(blocks)


class Protocol:
    """Base class. Subclasses set the tags and implement `parse`."""

    name: str = "protocol"
    stop_strings: tuple[str, ...] = ()
    """Generation stops after any of these: the env takes over from there."""

    def prompt(self, question: str) -> str:
        raise NotImplementedError

    def parse(self, text: str) -> Action:
        raise NotImplementedError

    def wrap(self, text: str) -> str:
        """Put environment text (results, page contents) in this protocol's tags."""
        raise NotImplementedError

    def observation(self, queries: Sequence[str], results: Sequence[Sequence[Document]]) -> str:
        return self.wrap(format_results(queries, results))

    def error_observation(self, message: str) -> str:
        raise NotImplementedError

    def search_action(self, query: str) -> str:
        """The action text that searches `query`: the inverse of `parse`, for policies
        that decide in code (baselines, the SB3 wrapper)."""
        raise NotImplementedError(f"protocol {self.name!r} cannot write search actions")

    def answer_action(self, answer: str) -> str:
        return f"<answer> {answer} </answer>"

    def is_answer_wellformed(self, text: str) -> bool:
        """Format check for the final action (used by format rewards)."""
        return self.parse(text).kind == "answer"


def search_r1_question(question: str) -> str:
    """The question as Search-R1's data scripts put it in the prompt (`qa_search_*_merge.py`,
    `infer.py`): stripped, with "?" appended when it does not end with one."""
    question = question.strip()
    return question if not question or question.endswith("?") else question + "?"


class SearchR1Protocol(Protocol):
    """Search-R1 tags: <think>, <search>, <information>, <answer>.

    As in Search-R1, the first <search> or <answer> block wins and anything after
    its closing tag is ignored. Deliberate difference: the corrective message says in
    parentheses what was wrong (Search-R1's says only "My previous action is invalid."),
    since the env also uses it for failed searches and unavailable tools.
    """

    name = "search_r1"
    stop_strings = ("</search>", "</answer>")
    _tags = (("<search>", "</search>"), ("<answer>", "</answer>"))

    def prompt(self, question: str) -> str:
        return (
            "Answer the given question. You must conduct reasoning inside <think> and </think> first "
            "every time you get new information. After reasoning, if you find you lack some knowledge, "
            "you can call a search engine by <search> query </search> and it will return the top "
            "searched results between <information> and </information>. You can search as many times "
            "as your want. If you find no further external knowledge needed, you can directly provide "
            "the answer inside <answer> and </answer>, without detailed illustrations. For example, "
            f"<answer> Beijing </answer>. Question: {search_r1_question(question)}\n"
        )

    def parse(self, text: str) -> Action:
        block = first_block(text, self._tags)
        if block is None:
            return Action("invalid", error="no <search> or <answer> block", format_ok=False)
        which, body = block
        format_ok = _think_tags_balanced(text[: text.find(self._tags[which][0])])
        if which == 1:
            return Action("answer", answer=body.strip(), format_ok=format_ok)
        query = _clean_query(body)
        if not query:
            return Action("invalid", error="empty search query", format_ok=False)
        return Action("search", queries=[query], format_ok=format_ok)

    def observation(self, queries: Sequence[str], results: Sequence[Sequence[Document]]) -> str:
        """As Search-R1's `execute_predictions`; a query without hits gets an empty block, as
        there (a failed web search still says why)."""
        if len(queries) == 1 and not results[0] and not getattr(results[0], "error", None):
            return self.wrap("")
        return super().observation(queries, results)

    def search_action(self, query: str) -> str:
        return f"<search> {query} </search>"

    def wrap(self, text: str) -> str:
        return f"\n\n<information>{text.strip()}</information>\n\n"

    def error_observation(self, message: str) -> str:
        return (
            f"\nMy previous action is invalid ({message}). If I want to search, I should put the query "
            "between <search> and </search>. If I want to give the final answer, I should put the "
            "answer between <answer> and </answer>. Let me try again.\n"
        )


class R1SearcherProtocol(Protocol):
    """R1-Searcher, as its trainer reads and writes text (RUCAIBox/R1-Searcher,
    `OpenRLHF-RAG/openrlhf/trainer/ppo_utils/experience_maker.py`, `_generate_vllm_with_retrieve`).

    Generation stops at <|end_of_query|> or </answer>, whichever comes first. A search is
    one query: the text after the *last* <|begin_of_query|> before the stop, with double
    quotes removed and whitespace (tabs too) collapsed. An answer is the text after the
    last <answer> before </answer>. Documents come back as R1-Searcher renders its
    corpus lines, "(1)title   text" one per line, inside <|begin_of_documents|>, so its
    format reward (which counts "<|begin_of_documents|>\n(1)") sees what it expects.
    Deliberate differences: a query is cut at MAX_QUERY_CHARS, and a turn with no query or
    an empty one gets a corrective message instead of ending the episode.
    """

    name = "r1_searcher"
    stop_strings = ("<|end_of_query|>", "</answer>")
    _tags = (("<|begin_of_query|>", "<|end_of_query|>"), ("<answer>", "</answer>"))

    def prompt(self, question: str) -> str:
        """R1-Searcher's base prompt (`openrlhf/datasets/prompts_dataset.py`, no chat template)."""
        return (
            "The User asks a question, and the Assistant solves it.\n"
            "The Assistant first thinks about the reasoning process in the mind and then provides the User with "
            "the final answer.\n"
            "The output format of reasoning process and final answer are enclosed within <think> </think> and "
            "<answer> </answer> tags, respectively, i.e., \"<think> reasoning process here </think>\n\n<answer> "
            "final answer here </answer>\".\n"
            "During the thinking process, **the Assistant can perform searching** for uncertain knowledge if "
            "necessary with the format of \"<|begin_of_query|> search query (only list keywords, such as "
            "**\"keyword_1 keyword_2 ...\"**)<|end_of_query|>\". **A query must involve only a single triple**.\n"
            "Then, the search system will provide the Assistant with the retrieval information with the format "
            "of \"<|begin_of_documents|> ...search results... <|end_of_documents|>\".\n\n"
            f"User:{question.strip()}\nAssistant: <think>"
        )

    def _queries(self, body: str) -> list[str]:
        query = " ".join(body.replace('"', "").split())[:MAX_QUERY_CHARS]
        return [query] if query else []

    def parse(self, text: str) -> Action:
        stops = [(i, text.find(close)) for i, (_, close) in enumerate(self._tags)]
        stops = [(pos, i) for i, pos in stops if pos >= 0]
        if not stops:
            return Action("invalid", error="no <|end_of_query|> or </answer>", format_ok=False)
        end, which = min(stops)
        open_tag = self._tags[which][0]
        segment = text[:end]
        if open_tag not in segment:
            return Action("invalid", error=f"{self._tags[which][1]} without {open_tag}", format_ok=False)
        body = segment.rsplit(open_tag, 1)[1]
        format_ok = "<|begin_of_documents|>" not in segment and "<|end_of_documents|>" not in segment
        if which == 1:
            return Action("answer", answer=body.strip(), format_ok=format_ok)
        queries = self._queries(body)
        if not queries:
            return Action("invalid", error="empty search query", format_ok=False)
        return Action("search", queries=queries, format_ok=format_ok)

    def observation(self, queries: Sequence[str], results: Sequence[Sequence[Document]]) -> str:
        blocks = []
        for query, docs in zip(queries, results):
            lines = "".join(f"({i + 1}){d.title}   {d.text}\n" for i, d in enumerate(docs))
            if not lines:
                error = getattr(docs, "error", None)  # R1-Searcher writes "None" for no hit
                lines = f"None (search failed: {error})" if error else "None"
            blocks.append(lines if len(queries) == 1 else f"Query: {query}\n{lines}")
        return "\n\n<|begin_of_documents|>\n" + "\n".join(blocks) + "<|end_of_documents|>\n\n"

    def search_action(self, query: str) -> str:
        return f"<|begin_of_query|> {query} <|end_of_query|>"

    def wrap(self, text: str) -> str:
        return f"\n\n<|begin_of_documents|>\n{text.strip()}\n<|end_of_documents|>\n\n"

    def error_observation(self, message: str) -> str:
        return (
            f"\nMy previous action is invalid ({message}). To search I write <|begin_of_query|> keywords "
            "<|end_of_query|>; to answer I write <answer> answer </answer>.\n"
        )


class R1SearcherMultiQueryProtocol(R1SearcherProtocol):
    """R1-Searcher's tags, but tab-separated keywords in one query block are separate
    searches (as its v1 evaluation prompt suggests writing them); not R1-Searcher's trainer."""

    name = "r1_searcher_multi"

    def prompt(self, question: str) -> str:
        return super().prompt(question).replace(
            'search query (only list keywords, such as **"keyword_1 keyword_2 ..."**)',
            "keyword_1\tkeyword_2\t... (each tab-separated part is searched on its own)",
        )

    def _queries(self, body: str) -> list[str]:
        return _clean_queries(body.split("\t"))


class ToolCallProtocol(Protocol):
    """JSON tool calls as in DeepResearcher:
    <tool_call>{"name": "web_search", "arguments": {"query": ["q1", "q2"]}}</tool_call>
    and <tool_call>{"name": "browse_webpage", "arguments": {"url_list": [...]}}</tool_call>.
    Results come back in <tool_response>; the answer goes in <answer>.
    """

    name = "tool_call"
    stop_strings = ("</tool_call>", "</answer>")
    _tags = (("<tool_call>", "</tool_call>"), ("<answer>", "</answer>"))
    search_names = ("web_search", "search")
    browse_names = ("browse_webpage",)

    def prompt(self, question: str) -> str:
        return (
            "Answer the given question. Think inside <think> and </think> before every action. You may "
            "call tools by writing one JSON object inside <tool_call> and </tool_call>:\n"
            '- web_search: {"name": "web_search", "arguments": {"query": ["query 1", "query 2"]}} '
            "searches for each query;\n"
            '- browse_webpage: {"name": "browse_webpage", "arguments": {"url_list": ["https://..."]}} '
            "reads pages that appeared in the search results.\n"
            "Results are returned between <tool_response> and </tool_response>. When you know the "
            "answer, write it inside <answer> and </answer> without explanation, e.g. "
            f"<answer> Beijing </answer>.\nQuestion: {question.strip()}\n"
        )

    def parse(self, text: str) -> Action:
        block = first_block(text, self._tags)
        if block is None:
            return Action("invalid", error="no <tool_call> or <answer> block", format_ok=False)
        which, body = block
        if which == 1:
            return Action("answer", answer=body.strip())
        try:
            call = json.loads(body)
        except (ValueError, RecursionError) as exc:  # bad JSON, or an int over Python's 4,300-digit limit
            return Action("invalid", error=f"tool call is not valid JSON: {str(exc)[:80]}", format_ok=False)
        try:
            return self._tool_action(call)
        except (ValueError, TypeError, RecursionError) as exc:  # valid JSON of a shape nobody expected
            return Action("invalid", error=f"tool call could not be read ({type(exc).__name__})", format_ok=False)

    def _tool_action(self, call: object) -> Action:
        if not isinstance(call, dict) or not isinstance(call.get("arguments", {}), dict):
            return Action("invalid", error='tool call must be {"name": ..., "arguments": {...}}', format_ok=False)
        name, args = call.get("name"), call.get("arguments", {})
        if name in self.search_names:
            queries = _as_list(args.get("query", args.get("query_list")))
            cleaned = _clean_queries(queries)
            if not cleaned:
                return Action("invalid", error="web_search needs a non-empty 'query' list", format_ok=False)
            return Action("search", queries=cleaned)
        if name in self.browse_names:
            urls = [str(u).strip() for u in _as_list(args.get("url_list", args.get("urls"))) if str(u).strip()]
            if not urls:
                return Action("invalid", error="browse_webpage needs a non-empty 'url_list'", format_ok=False)
            return Action("browse", urls=urls[:MAX_QUERIES_PER_CALL])
        return Action("invalid", error=f"unknown tool {str(name)[:40]!r}", format_ok=False)

    def search_action(self, query: str) -> str:
        call = {"name": "web_search", "arguments": {"query": [query]}}
        return f"<tool_call>{json.dumps(call, ensure_ascii=False)}</tool_call>"

    def wrap(self, text: str) -> str:
        return f"\n<tool_response>\n{text.strip()}\n</tool_response>\n"

    def error_observation(self, message: str) -> str:
        return self.wrap(f"Error: {message}. Call a tool with valid JSON or give <answer> ... </answer>.")


def _as_list(value: object) -> list:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _think_tags_balanced(text: str) -> bool:
    return text.count("<think>") == text.count("</think>")


class SearchR1BrowseProtocol(SearchR1Protocol):
    """Search-R1 tags plus <browse> url1 url2 </browse> to read result pages
    (urls separated by spaces, commas or new lines); pages come back in
    <information> like search results."""

    name = "search_r1_browse"
    stop_strings = ("</search>", "</browse>", "</answer>")
    _tags = (("<search>", "</search>"), ("<answer>", "</answer>"), ("<browse>", "</browse>"))

    def prompt(self, question: str) -> str:
        return super().prompt(question).replace(
            "You can search as many times as your want.",
            "You can search as many times as your want. To read pages from the search results, write "
            "<browse> url </browse> (several urls separated by spaces) and their text will be returned "
            "between <information> and </information>.",
        )

    def parse(self, text: str) -> Action:
        block = first_block(text, self._tags)
        if block is None or block[0] != 2:
            action = super().parse(text)
            if action.kind == "invalid":
                action.error = "no <search>, <browse> or <answer> block"
            return action
        format_ok = _think_tags_balanced(text[: text.find("<browse>")])
        urls = [u for u in re.split(r"[\s,]+", block[1]) if u][:MAX_QUERIES_PER_CALL]
        if not urls:
            return Action("invalid", error="empty <browse> block: give one or more urls", format_ok=False)
        return Action("browse", urls=urls, format_ok=format_ok)

    def error_observation(self, message: str) -> str:
        return super().error_observation(message).replace(
            "If I want to give", "If I want to read result pages, I should put their urls between <browse> and </browse>. If I want to give"
        )


class ZeroSearchProtocol(SearchR1Protocol):
    """Search-R1's tags and prompt with documents shown as ZeroSearch shows them
    (`llm_agent/generation.py`): "Doc 1: text", one per line, no title (a simulated
    document has none; its title here would be the query)."""

    name = "zerosearch"

    def observation(self, queries: Sequence[str], results: Sequence[Sequence[Document]]) -> str:
        blocks = []
        for query, docs in zip(queries, results):
            body = "\n".join(f"Doc {i + 1}: {d.text}" for i, d in enumerate(docs))
            if not body and getattr(docs, "error", None):
                body = _no_hits(docs)
            blocks.append(body if len(queries) == 1 else f"Query: {query}\n{body}")
        return self.wrap("\n\n".join(blocks))


PROTOCOLS: dict[str, type[Protocol]] = {
    SearchR1Protocol.name: SearchR1Protocol,
    R1SearcherProtocol.name: R1SearcherProtocol,
    R1SearcherMultiQueryProtocol.name: R1SearcherMultiQueryProtocol,
    ToolCallProtocol.name: ToolCallProtocol,
    SearchR1BrowseProtocol.name: SearchR1BrowseProtocol,
    ZeroSearchProtocol.name: ZeroSearchProtocol,
}


def make_protocol(protocol: str | Protocol) -> Protocol:
    """Accept a protocol object or a registered name."""
    if isinstance(protocol, Protocol):
        return protocol
    try:
        return PROTOCOLS[protocol]()
    except KeyError:
        raise ValueError(f"unknown protocol {protocol!r}; choose from {sorted(PROTOCOLS)}") from None


# ----------------------------------------------------------------------------- ReSearch
def last_boxed(text: str) -> str | None:
    """The content of the last \\boxed{...} (or '\\boxed x') in `text`, None when there is none
    or it cannot be read: ReSearch's `last_boxed_only_string` + `remove_boxed`, whose failures
    (an unclosed brace, an \\fbox) it scores as a format error."""
    if "\\boxed " in text:
        return text.split("\\boxed ")[-1].split("$")[0]
    start = text.rfind("\\boxed")
    if start < 0:
        return None  # \fbox alone: remove_boxed's assertion fails in ReSearch
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                boxed = text[start : i + 1]
                return boxed[len("\\boxed{") : -1] if boxed.startswith("\\boxed{") else None
    return None


def research_format_ok(response: str) -> bool:
    """ReSearch's `validate_format` over the whole response (the policy's turns and the results):
    <think> tags paired and present, one <answer> block, every <search> followed by its
    </search>, <result>, </result> in that order, and \\boxed{} in the answer."""
    if response.count("<think>") != response.count("</think>") or response.count("<think>") == 0:
        return False
    if response.count("<answer>") != 1 or response.count("</answer>") != 1:
        return False
    pos = 0
    while (search := response.find("<search>", pos)) >= 0:
        result = response.find("<result>", search)
        search_end = response.find("</search>", search)
        result_end = response.find("</result>", result)
        if -1 in (result, search_end, result_end) or not search < search_end < result < result_end:
            return False
        pos = result_end
    start, end = response.find("<answer>"), response.find("</answer>")
    if start > end:
        return False
    content = response[start:end]
    return "\\boxed{" in content and "}" in content


class ReSearchProtocol(Protocol):
    """ReSearch (Chen et al. 2025; Agent-RL/ReSearch): searches are steps of the reasoning,
    `<search> q </search>` anywhere in the text (inside a <think> too), results come back in
    ` <result>\\n...\\n</result>` as the passages' '"Title"\\ntext' joined by blank lines, and the
    answer is `<answer> ... \\boxed{a} </answer>`. Its format check runs over the whole
    episode (`episode_format_ok`), as its reward does."""

    name = "research"
    stop_strings = ("</search>", "</answer>")

    def prompt(self, question: str) -> str:
        # re_search_template (src/verl/utils/dataset/template.py), the base-model template
        return (
            "A conversation between User and Assistant. The user asks a question, and the assistant solves it. "
            "The assistant first thinks about the reasoning process in the mind and then provides the user with "
            "the answer. During thinking, the assistant can invoke the wikipedia search tool to search for fact "
            "information about specific topics if needed. The reasoning process and answer are enclosed within "
            "<think> </think> and <answer> </answer> tags respectively, and the search query and result are "
            "enclosed within <search> </search> and <result> </result> tags respectively. For example, <think> "
            "This is the reasoning process. </think> <search> search query here </search> <result> search result "
            "here </result> <think> This is the reasoning process. </think> <answer> The final answer is \\[ "
            "\\boxed{answer here} \\] </answer>. In the last part of the answer, the final exact answer is enclosed "
            f"within \\boxed{{}} with latex format. User: {question.strip()}. Assistant:"
        )

    def parse(self, text: str) -> Action:
        search_end, answer_end = text.find("</search>"), text.find("</answer>")
        if search_end >= 0 and (answer_end < 0 or search_end < answer_end):
            # the rollout stops at </search> and searches the last <search> block before it
            start = text.rfind("<search>", 0, search_end)
            query = _clean_query(text[start + len("<search>") : search_end]) if start >= 0 else ""
            if not query:
                return Action("invalid", error="empty search query", format_ok=False)
            return Action("search", queries=[query])
        block = first_block(text, (("<answer>", "</answer>"),))
        if block is None:
            return Action("invalid", error="no <search> or <answer> block", format_ok=False)
        answer = last_boxed(block[1])
        if answer is None:
            return Action("answer", answer=block[1].strip(), format_ok=False)
        return Action("answer", answer=answer.strip())

    def episode_format_ok(self, response: str) -> bool:
        return research_format_ok(response)

    def observation(self, queries: Sequence[str], results: Sequence[Sequence[Document]]) -> str:
        return self.wrap("\n\n".join(d.contents for d in results[0]) or _no_hits(results[0]))

    def wrap(self, text: str) -> str:
        return f" <result>\n{text.strip()}\n</result>"

    def search_action(self, query: str) -> str:
        return f"<think> I need to search for {query}. </think> <search> {query} </search>"

    def answer_action(self, answer: str) -> str:
        return f"<think> I know the answer. </think> <answer> The final answer is \\[ \\boxed{{{answer}}} \\] </answer>"

    def error_observation(self, message: str) -> str:
        return (f"\nMy previous action is invalid ({message}). I should search with <search> query </search> or "
                "answer with <answer> The final answer is \\[ \\boxed{answer} \\] </answer>.\n")


PROTOCOLS[ReSearchProtocol.name] = ReSearchProtocol


# ----------------------------------------------------------------------------- DeepResearcher
DEEPRESEARCHER_WEB_SEARCH = {
    "type": "function",
    "function": {
        "name": "web_search",
        "description": "Search the web for relevant information. You should use this tool if the historical page "
                       "content is not enough to answer the question. Or last search result is not relevant to the "
                       "question.",
        "parameters": {
            "type": "object",
            "properties": {
                "query": {
                    "type": "array",
                    "items": {"type": "string", "description": "The query to search, which helps answer the question"},
                    "description": "The queries to search",
                }
            },
            "required": ["query"],
            "minItems": 1,
            "uniqueItems": True,
        },
    },
}
DEEPRESEARCHER_GOOGLE_SEARCH = {"type": "function", "function": {
    **DEEPRESEARCHER_WEB_SEARCH["function"],
    "description": "Search the web for relevant information from google. You should use this tool if the historical "
                   "page content is not enough to answer the question. Or last search result is not relevant to the "
                   "question."}}
"""The online variant's web_search (TOOLS in generation.py): the same but 'from google'."""
DEEPRESEARCHER_BROWSE = {
    "type": "function",
    "function": {
        "name": "browse_webpage",
        "description": "Browse the webpage and return the content that not appeared in the conversation history. "
                       "You should use this tool if the last action is search and the search result maybe relevant "
                       "to the question.",
        "parameters": {
            "type": "object",
            "properties": {
                "url_list": {
                    "type": "array",
                    "items": {"type": "string", "description": "The chosen url from the search result, do not use "
                                                               "url that not appeared in the search result"},
                    "description": "The chosen urls from the search result.",
                },
            },
            "required": ["url_list"],
        },
    },
}
DEEPRESEARCHER_MAX_QUERIES = 3
"""handler.py: `search_query_list[0:3]  # only perform first 3 search queries`."""


def tags_balanced(text: str, tags: Sequence[str] = ("tool_call", "think", "answer")) -> bool:
    """DeepResearcher's `check_tags_balance`: as many <tag> as </tag>, each <tag> closed after it."""
    for tag in tags:
        start_tag, end_tag = f"<{tag}>", f"</{tag}>"
        if text.count(start_tag) != text.count(end_tag):
            return False
        last = -1
        while (start := text.find(start_tag, last + 1)) >= 0:
            end = text.find(end_tag, start)
            if end < 0:
                return False
            last = end
    return True


class DeepResearcherProtocol(Protocol):
    """DeepResearcher (Zheng et al. 2025; GAIR-NLP/DeepResearcher `scrl/llm_agent/generation.py`): its
    system prompt and tool schemas as Qwen2.5's chat template renders them, every turn opened with
    "<think>" by the environment, `<think> ... </think>` then `<answer>` or a JSON `<tool_call>`
    (`web_search` with a query list, of which the first 3 run; `browse_webpage` with a url list in the
    web variant). As there, an action that is neither ends the episode without an answer, and tool
    results come back as the Python-printed list of {search_query, web_page_info_list: [{title, url,
    quick_summary}]} in <tool_response>. `today` fixes the prompt's date (default: the current day)."""

    name = "deepresearcher"
    stop_strings = ("</tool_call>", "</answer>")
    tools: tuple[dict, ...] = (DEEPRESEARCHER_WEB_SEARCH,)

    def __init__(self, today: str | None = None) -> None:
        from time import gmtime, strftime

        self.today = today or strftime("%Y-%m-%d", gmtime())

    def system_prompt(self) -> str:
        one = len(self.tools) == 1
        tools = ("I will provide you with one tool to help you answer the question:\n* A web search tool to help you "
                 "perform search.\n" if one else
                 "I will provide you with two tools to help you answer the question:\n* A web search tool to help you "
                 "perform google search. \n* A webpage browsing tool to help you get new page content.\n")
        return (
            f"## Background information \n* Today is {self.today}\n* You are Deep AI Research Assistant\n\n"
            "The question I give you is a complex question that requires a *deep research* to answer.\n\n"
            f"{tools}\nYou don't have to answer the question now, but you should first think about the research plan "
            "or what to search next.\n\nYour output format should be one of the following two formats:\n\n<think>\n"
            "YOUR THINKING PROCESS\n</think>\n<answer>\nYOUR ANSWER AFTER GETTING ENOUGH INFORMATION\n</answer>\n\nor"
            "\n\n<think>\nYOUR THINKING PROCESS\n</think>\n<tool_call>\nYOUR TOOL CALL WITH CORRECT FORMAT\n"
            "</tool_call>\n\nYou should always follow the above two formats strictly.\nOnly output the final answer "
            "(in words, numbers or phrase) inside the <answer></answer> tag, without any explanations or extra "
            "information. If this is a yes-or-no question, you should only answer yes or no.\n"
        )

    def prompt(self, question: str) -> str:
        # Qwen2.5's chat template appends the tools to the system message like this
        tools = "\n".join(json.dumps(t, ensure_ascii=False) for t in self.tools)
        return (
            f"{self.system_prompt()}\n\n# Tools\n\nYou may call one or more functions to assist with the user query."
            f"\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{tools}\n"
            "</tools>\n\nFor each function call, return a json object with function name and arguments within "
            "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
            f"<args-json-object>}}\n</tool_call>\n\nQuestion: {question.strip()}\n<think>"
        )

    def parse(self, text: str) -> Action:
        content = "<think>" + text  # the turn began with the "<think>" the environment wrote
        if "<answer>" in content:
            if "</think>" not in content or "</answer>" not in content:
                return _ends_without_answer("unclosed <think> or <answer>")
            answer = content.split("<answer>")[1].split("</answer>")[0]
            return Action("answer", answer=answer.strip(), format_ok=tags_balanced(content.lower()))
        if "<tool_call>" not in content:
            return _ends_without_answer("neither <answer> nor <tool_call>")
        if "</tool_call>" not in content or "</think>" not in content:
            return _ends_without_answer("unclosed <think> or <tool_call>")
        try:
            call = json.loads(content.split("<tool_call>")[1].split("</tool_call>")[0])
            name, args = call["name"], call["arguments"]
        except (ValueError, RecursionError, TypeError, KeyError):
            return _ends_without_answer('a tool call must be JSON {"name": ..., "arguments": {...}}')
        known = [t["function"]["name"] for t in self.tools]
        if name == "web_search" and isinstance(args, dict) and isinstance(args.get("query"), list):
            # the handler runs the first 3 and skips non-strings
            queries = _clean_queries([q for q in args["query"][:DEEPRESEARCHER_MAX_QUERIES] if isinstance(q, str)])
            if queries:
                return Action("search", queries=queries)
            return _ends_without_answer("web_search needs a non-empty query list")
        if name == "browse_webpage" and "browse_webpage" in known and isinstance(args, dict) \
                and isinstance(args.get("url_list"), list) and args["url_list"]:
            return Action("browse", urls=[str(u).strip() for u in args["url_list"]][:MAX_QUERIES_PER_CALL])
        return _ends_without_answer(f"invalid tool call {str(name)[:40]!r}")

    def observation(self, queries: Sequence[str], results: Sequence[Sequence[Document]]) -> str:
        content = [{"search_query": q,
                    "web_page_info_list": [{"title": d.title, "url": d.url or "", "quick_summary": d.text} for d in docs]}
                   for q, docs in zip(queries, results)]
        return self.wrap(str(content))  # the chat template prints the list with Python's str()

    def wrap(self, text: str) -> str:
        return f"\n<tool_response>\n{text.strip()}\n</tool_response>\n<think>"

    def error_observation(self, message: str) -> str:
        return self.wrap(f"Error: {message}")

    def search_action(self, query: str) -> str:
        call = {"name": "web_search", "arguments": {"query": [query]}}
        return f"I will search. </think>\n<tool_call>\n{json.dumps(call, ensure_ascii=False)}\n</tool_call>"

    def answer_action(self, answer: str) -> str:
        return f"I know the answer. </think>\n<answer>{answer}</answer>"

    def is_answer_wellformed(self, text: str) -> bool:
        action = self.parse(text)
        return action.kind == "answer" and action.answer is not None and action.format_ok


class DeepResearcherWebProtocol(DeepResearcherProtocol):
    """DeepResearcher's online-search variant: web_search and browse_webpage."""

    name = "deepresearcher_web"
    tools = (DEEPRESEARCHER_GOOGLE_SEARCH, DEEPRESEARCHER_BROWSE)


def _ends_without_answer(error: str) -> Action:
    """DeepResearcher stops a rollout whose action it cannot parse; its reward is then -1."""
    return Action("answer", answer=None, error=error, format_ok=False)


PROTOCOLS[DeepResearcherProtocol.name] = DeepResearcherProtocol
PROTOCOLS[DeepResearcherWebProtocol.name] = DeepResearcherWebProtocol


# ----------------------------------------------------------------------------- R1-Searcher++
class R1SearcherPPProtocol(SearchR1Protocol):
    """R1-Searcher++ (Song et al. 2025, arXiv:2505.17005): the model says where each piece of
    knowledge comes from: recalled facts go in `<internal> ... </internal>` (no env action),
    an external search is `<external> query </external>`, whose passages come back in
    `<document> ... </document>`; the answer in `<answer>`. Well formed: <think> and <internal>
    tags balanced before the action, no <external> inside an <internal> span, and no <document>
    tag written by the model (documents come only from the retriever; a fabricated one is a format
    error, as in R1-Searcher's format rule). The paper's code is not released (its repository holds
    only the README): the tags follow the paper (Fig. 1, §3), the prompt wording is ours."""

    name = "r1_searcher_pp"
    stop_strings = ("</external>", "</answer>")
    _tags = (("<external>", "</external>"), ("<answer>", "</answer>"))

    def prompt(self, question: str) -> str:
        return (
            "The User asks a question, and the Assistant solves it. The Assistant first thinks about the reasoning "
            "process in the mind and then provides the User with the final answer. The reasoning process and the "
            "final answer are enclosed within <think> </think> and <answer> </answer> tags, respectively. During "
            "thinking, the Assistant can use its own knowledge, written within <internal> </internal>, when it is "
            "sure of it; when it is not, it can search for it with \"<external> query </external>\", and the system "
            "returns the retrieved documents within <document> </document>. Prefer internal knowledge: search only "
            "for what is unknown.\n\n"
            f"User:{question.strip()}\nAssistant: <think>"
        )

    def parse(self, text: str) -> Action:
        action = super().parse(text)  # Search-R1's parse over these tags; the format rule is ours
        if action.kind == "invalid" and action.error.startswith("no "):
            action.error = "no <external> or <answer> block"
        elif action.kind != "invalid":
            opener = "<answer>" if action.kind == "answer" else "<external>"
            before = text[: text.find(opener)]
            action.format_ok = _r1_searcher_pp_spans_ok(before) and "<document>" not in before \
                and "</document>" not in before
        return action

    def search_action(self, query: str) -> str:
        return f"<external> {query} </external>"

    def wrap(self, text: str) -> str:
        return f"\n\n<document>\n{text.strip()}\n</document>\n\n"

    def error_observation(self, message: str) -> str:
        return (f"\nMy previous action is invalid ({message}). To search I write <external> query </external>; "
                "to answer I write <answer> answer </answer>.\n")


def _r1_searcher_pp_spans_ok(text: str) -> bool:
    """<internal> spans closed, not nested, without a search or documents inside (the text
    before the external block that ends an action may still be inside an open <think>)."""
    if not tags_balanced(text, ("internal",)) or text.count("</think>") > text.count("<think>") + 1:
        return False
    depth = 0
    for piece in re.split(r"(</?internal>)", text):
        if piece == "<internal>":
            depth += 1
            if depth > 1:
                return False
        elif piece == "</internal>":
            depth -= 1
        elif depth and ("<external>" in piece or "<document>" in piece):
            return False
    return True


PROTOCOLS[R1SearcherPPProtocol.name] = R1SearcherPPProtocol
