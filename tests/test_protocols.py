"""Action protocols: parsing (well-formed, malformed, hostile) and the text they
send back, checked against a real Search-R1 rollout."""

from __future__ import annotations

import json
import re

import pytest

from search_envs.protocols import (
    MAX_QUERIES_PER_CALL,
    MAX_QUERY_CHARS,
    PROTOCOLS,
    Protocol,
    R1SearcherProtocol,
    SearchR1Protocol,
    ToolCallProtocol,
    first_block,
    format_results,
    make_protocol,
)
from search_envs.types import Document

search_r1, r1, tool = SearchR1Protocol(), R1SearcherProtocol(), ToolCallProtocol()


def call(name: str, **arguments) -> str:
    return f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"


# --- Search-R1 -----------------------------------------------------------------------------


def test_search_r1_well_formed():
    action = search_r1.parse("<think>I need the capital.</think>\n<search> capital  of\nFrance </search>")
    assert (action.kind, action.queries, action.format_ok) == ("search", ["capital of France"], True)
    action = search_r1.parse("<think>done</think> <answer> Paris </answer>")
    assert (action.kind, action.answer, action.format_ok) == ("answer", "Paris", True)
    assert search_r1.is_answer_wellformed("<answer>x</answer>")
    assert not search_r1.is_answer_wellformed("<search>x</search>")


def test_search_r1_first_block_wins_and_rest_is_ignored():
    action = search_r1.parse("<search>q1</search> <answer>a</answer> <search>q2</search>")
    assert (action.kind, action.queries) == ("search", ["q1"])
    assert search_r1.parse("<answer>a</answer><search>q</search>").answer == "a"
    # an unclosed <search> does not hide a later complete block
    action = search_r1.parse("<search> dangling <answer> b </answer>")
    assert (action.kind, action.answer) == ("answer", "b")
    # a tag inside another block is its text (as in Search-R1's regex)
    assert search_r1.parse("<search>a <answer>b</answer> c</search>").queries == ["a <answer>b</answer> c"]
    assert search_r1.parse("<search><search>q</search></search>").queries == ["<search>q"]


def test_search_r1_malformed():
    for text in ("", "just text", "<search>no end", "</search>q<search>", "<answer>open", "<Search>q</Search>"):
        action = search_r1.parse(text)
        assert action.kind == "invalid" and not action.format_ok and "no <search> or <answer>" in action.error
    empty = search_r1.parse("<search>  \n\t </search>")
    assert (empty.kind, empty.error) == ("invalid", "empty search query")
    unbalanced = search_r1.parse("<think> thinking without end <search>q</search>")
    assert unbalanced.kind == "search" and not unbalanced.format_ok
    # <think> after the action block does not count
    assert search_r1.parse("<search>q</search><think>").format_ok


def test_search_r1_unicode_and_long_queries():
    assert search_r1.parse("<search> Zürich 東京 — ещё 🙂 </search>").queries == ["Zürich 東京 — ещё 🙂"]
    assert search_r1.parse("<answer> Ünïcode ✓ </answer>").answer == "Ünïcode ✓"
    long_query = search_r1.parse("<search>" + "word " * 20_000 + "</search>").queries[0]
    assert len(long_query) == MAX_QUERY_CHARS and long_query.startswith("word word")


def test_search_r1_prompt_and_observation_match_real_rollout(shared_data):
    """Search-R1's own rollout: same prompt text, same parse, same <information> layout."""
    rollout = (shared_data / "fixtures" / "search_r1_rollouts_case.txt").read_text(encoding="utf-8")
    question = "paul walkers cars in fast and furious list?"
    assert search_r1.prompt(question) in rollout
    assistant = rollout.split("<|im_start|>assistant\n", 1)[1].split("<|im_start|>", 1)[0]
    action = search_r1.parse(assistant)
    assert action.queries == ["Paul Walker's cars in Fast and Furious"] and action.format_ok
    block = re.search(r"\n\n<information>(.*?)</information>\n\n", assistant, re.DOTALL)
    docs = [
        Document(str(i), m.group(1), m.group(2))
        for i, m in enumerate(re.finditer(r'^Doc \d+\(Title: "(.*?)"\) (.*)$', block.group(1), re.MULTILINE))
    ]
    assert len(docs) == 3 and docs[0].title == "Paul Walker"
    assert search_r1.observation(action.queries, [docs]) == block.group(0)
    # the rollout's final answer parses from the text after the last observation
    assert search_r1.parse(assistant.rsplit("</information>", 1)[1]).answer == "Charger"


def test_search_r1_error_observation():
    text = search_r1.error_observation("empty search query")
    assert "invalid (empty search query)" in text and "<search> and </search>" in text


# --- R1-Searcher ---------------------------------------------------------------------------


def test_r1_searcher_parsing():
    action = r1.parse("<think>hmm</think><|begin_of_query|> Nobel prize\t 1903 physics \t\t<|end_of_query|> trailing")
    assert (action.kind, action.queries) == ("search", ["Nobel prize", "1903 physics"])
    many = "\t".join(f"k{i}" for i in range(20))
    assert r1.parse(f"<|begin_of_query|>{many}<|end_of_query|>").queries == [f"k{i}" for i in range(MAX_QUERIES_PER_CALL)]
    assert r1.parse("<answer> Marie Curie </answer><|begin_of_query|>q<|end_of_query|>").answer == "Marie Curie"
    assert r1.parse("<|begin_of_query|>\t \t<|end_of_query|>").error == "empty search query"
    assert r1.parse("<|begin_of_query|> never closed").kind == "invalid"
    assert r1.parse("<search>q</search>").kind == "invalid"


def test_r1_searcher_layout():
    docs = [Document("1", "Marie Curie", "Physicist and chemist.")]
    obs = r1.observation(["curie"], [docs])
    assert obs == '\n\n<|begin_of_documents|>\nDoc 1(Title: "Marie Curie") Physicist and chemist.\n<|end_of_documents|>\n\n'
    assert "User:Who won?\nAssistant: <think>" in r1.prompt(" Who won? ")
    assert "<|begin_of_query|>" in r1.error_observation("x")


# --- tool calls (DeepResearcher) -----------------------------------------------------------------


def test_tool_call_web_search():
    action = tool.parse("<think>x</think>" + call("web_search", query=["q1", " q2 ", ""]) + " ignored")
    assert (action.kind, action.queries) == ("search", ["q1", "q2"])
    assert tool.parse(call("web_search", query="one query")).queries == ["one query"]
    assert tool.parse(call("search", query_list=["a"])).queries == ["a"]
    assert tool.parse(call("web_search", query=["Zürich", 42])).queries == ["Zürich", "42"]
    assert tool.parse(call("web_search", query=[f"q{i}" for i in range(30)])).queries == [f"q{i}" for i in range(8)]


def test_tool_call_browse_webpage():
    action = tool.parse(call("browse_webpage", url_list=["https://en.wikipedia.org/wiki/Paris", " "]))
    assert (action.kind, action.urls) == ("browse", ["https://en.wikipedia.org/wiki/Paris"])
    assert tool.parse(call("browse_webpage", urls="https://x.org")).urls == ["https://x.org"]
    assert "non-empty 'url_list'" in tool.parse(call("browse_webpage", url_list=[])).error


@pytest.mark.parametrize(
    "body, error",
    [
        ('{"name": "web_search", "arguments": {"query": ["a"]}', "not valid JSON"),
        ("", "not valid JSON"),
        ('["web_search", "a"]', 'must be {"name": ..., "arguments": {...}}'),
        ('{"name": "web_search", "arguments": "a"}', 'must be {"name"'),
        ('{"name": "web_search", "arguments": {}}', "needs a non-empty 'query' list"),
        ('{"name": "web_search", "arguments": {"query": ["  "]}}', "needs a non-empty 'query' list"),
        ('{"name": "delete_files", "arguments": {}}', "unknown tool 'delete_files'"),
        ("[" * 100_000 + "]" * 100_000, "not valid JSON"),
    ],
)
def test_tool_call_errors(body, error):
    action = tool.parse(f"<tool_call>{body}</tool_call>")
    assert action.kind == "invalid" and not action.format_ok and error in action.error
    assert len(action.error) < 200


def test_tool_call_layout_and_answer():
    assert tool.parse("<answer> 42 </answer>" + call("web_search", query=["q"])).answer == "42"
    docs = [[Document("1", "A", "text a")], []]
    obs = tool.observation(["qa", "qb"], docs)
    assert obs == '\n<tool_response>\nQuery: qa\nDoc 1(Title: "A") text a\n\nQuery: qb\nNo results found.\n</tool_response>\n'
    assert tool.error_observation("bad").startswith("\n<tool_response>\nError: bad.")


# --- shared -------------------------------------------------------------------------------------


def test_format_results():
    docs = [Document("1", "X", "first"), Document("2", 'Y "quoted"', "second")]
    assert format_results(["q"], [docs]) == 'Doc 1(Title: "X") first\nDoc 2(Title: "Y "quoted"") second'
    assert format_results(["q"], [[]]) == "No results found."


@pytest.mark.timeout(10)
@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_100kb_hostile_actions_parse_quickly(name):
    """Unclosed opening tags made the regex parser quadratic (seconds per action)."""
    protocol = make_protocol(name)
    for opener in ("<search>", "<answer>", "<tool_call>", "<|begin_of_query|>", "<think>"):
        text = opener * (100_000 // len(opener))
        action = protocol.parse(text)
        # DeepResearcher's protocols end the episode without an answer instead
        assert action.kind == "invalid" or (action.kind == "answer" and action.answer is None)
        closer = opener.replace("<", "</", 1) if not opener.startswith("<|") else "<|end_of_query|>"
        assert protocol.parse(text + closer).kind in ("search", "answer", "invalid")
    huge_answer = protocol.parse(protocol.answer_action("x" * 100_000))
    assert huge_answer.kind == "answer" and len(huge_answer.answer) == 100_000


def test_first_block():
    tags = (("<a>", "</a>"), ("<b>", "</b>"))
    assert first_block("<b>1</b><a>2</a>", tags) == (1, "1")
    assert first_block("<a>1<b>2</b>", tags) == (1, "2")
    assert first_block("<a><a>x</a>", tags) == (0, "<a>x")
    assert first_block("</a><a>", tags) is None


def test_make_protocol():
    assert isinstance(make_protocol("search_r1"), SearchR1Protocol)
    custom = ToolCallProtocol()
    assert make_protocol(custom) is custom
    with pytest.raises(ValueError, match="unknown protocol 'xml'.*search_r1"):
        make_protocol("xml")
    for cls in PROTOCOLS.values():
        assert issubclass(cls, Protocol) and cls.stop_strings
        assert any(marker in cls().prompt("Q?") for marker in ("Question", "User:Q?", "User: Q?."))
