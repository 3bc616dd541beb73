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


def search_r1_prompt(question: str) -> str:
    """Search-R1's prompt (PeterGriffinJin/Search-R1, commit a14dc3a4ffc6fe88c1e95038d9738e21ba3f7a06,
    scripts/data_process/qa_search_train_merge.py: `process_fn`'s question clean-up and `make_prefix`,
    template "base"; Apache License 2.0), verbatim."""
    example = {"question": question}
    example['question'] = example['question'].strip()
    if example['question'][-1] != '?':
        example['question'] += '?'
    question = example['question']
    prefix = f"""Answer the given question. \
You must conduct reasoning inside <think> and </think> first every time you get new information. \
After reasoning, if you find you lack some knowledge, you can call a search engine by <search> query </search> and it will return the top searched results between <information> and </information>. \
You can search as many times as your want. \
If you find no further external knowledge needed, you can directly provide the answer inside <answer> and </answer>, without detailed illustrations. For example, <answer> Beijing </answer>. Question: {question}\n"""
    return prefix


def test_search_r1_prompt_is_search_r1s_with_its_question_mark():
    questions = ["Who wrote Hamlet?", "who wrote hamlet", "  Name the capital of France.  ", "x", "Is it? no",
                 "what is 2+2 ?", "Fill in the [mask]: Paris is the capital of [mask]", "Où est Zürich\t"]
    for question in questions:
        assert search_r1.prompt(question) == search_r1_prompt(question), question
    assert search_r1.prompt("who wrote hamlet").endswith("Question: who wrote hamlet?\n")


def test_zerosearch_renders_documents_as_zerosearch():
    """ZeroSearch's observation (Alibaba-NLP/ZeroSearch, commit 2d4cdca033ee2c11b1fcfc7fc448b902d7cf8bf5,
    llm_agent/generation.py `retrieve_from_wiki` and `execute_predictions`; Apache License 2.0)."""
    docs = [Document("1", "hamlet author", "Hamlet was written by Shakespeare."), Document("2", "", "Another doc.")]
    doc_texts = '\n'.join([f"Doc {i + 1}: {doc['text']}" for i, doc in enumerate([{"text": d.text} for d in docs])])
    zs = make_protocol("zerosearch")
    assert zs.observation(["q"], [docs]) == f'\n\n<information>{doc_texts.strip()}</information>\n\n'
    assert zs.prompt("Who?") == search_r1.prompt("Who?") and zs.parse("<search> q </search>").queries == ["q"]


def test_search_r1_error_observation():
    text = search_r1.error_observation("empty search query")
    assert "invalid (empty search query)" in text and "<search> and </search>" in text


# --- R1-Searcher ---------------------------------------------------------------------------


def test_r1_searcher_parsing_is_r1_searchers_one_query():
    # one query: the last begin tag before the stop, double quotes removed, whitespace collapsed
    action = r1.parse('<think>hmm</think><|begin_of_query|> x <|begin_of_query|> "Nobel" prize\t 1903 \t\t<|end_of_query|> t')
    assert (action.kind, action.queries, action.format_ok) == ("search", ["Nobel prize 1903"], True)
    # whichever stop string comes first ends the turn; the answer is after the last <answer>
    assert r1.parse("<answer> a <answer> Marie Curie </answer><|begin_of_query|>q<|end_of_query|>").answer == "Marie Curie"
    assert r1.parse("<|begin_of_query|>q<|end_of_query|><answer>x</answer>").queries == ["q"]
    assert r1.parse("<|begin_of_query|>\t \t\"<|end_of_query|>").error == "empty search query"
    assert r1.parse("<|begin_of_query|> never closed").kind == "invalid"
    assert r1.parse("no tag <|end_of_query|>").kind == "invalid"
    assert r1.parse("<search>q</search>").kind == "invalid"
    # writing the environment's document tags is a format error (R1-Searcher's counts would not match)
    assert not r1.parse("<|begin_of_documents|>\n(1)x<|end_of_documents|><answer>y</answer>").format_ok


def test_r1_searcher_reads_queries_and_answers_as_its_code_on_generated_turns():
    """R1-Searcher (RUCAIBox/R1-Searcher, commit 631167cbb3c2464f805730e3e364a690f5b136d4; MIT License,
    Copyright (c) 2024 Huatong Song): the query as `_generate_vllm_with_retrieve` reads it
    (OpenRLHF-RAG/openrlhf/trainer/ppo_utils/experience_maker.py) and the answer as its reward
    server does (train/reward_server_qwen_zero.py `extract_answer_math`), on text cut at the stop."""
    import random

    def r1_query(generated_text):
        query = generated_text.split("<|begin_of_query|>")[-1].split("<|end_of_query|>")[0]
        query = query.replace('"',"").strip()
        query = " ".join(query.split())
        return query

    def r1_answer(s):
        return s.split("<answer>")[-1].split("</answer>")[0].strip()

    rng = random.Random(0)
    pieces = ["<|begin_of_query|>", "<answer>", " Marie ", '"Curie"', "\t", "\n", "<think>", "</think>", " 1903 ",
              "'s", " ", "…", "Zürich"]
    checked = 0
    for _ in range(3000):
        body = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 10)))
        stop = rng.choice(["<|end_of_query|>", "</answer>"])
        action = r1.parse(body + stop + " after")
        if stop == "<|end_of_query|>" and "<|begin_of_query|>" in body and r1_query(body):
            assert action.kind == "search" and action.queries == [r1_query(body)], body
            checked += 1
        elif stop == "</answer>" and "<answer>" in body:
            assert action.kind == "answer" and action.answer == r1_answer(body + stop), body
            checked += 1
        else:
            assert action.kind == "invalid", body
    assert checked > 600


def test_r1_searcher_multi_query_is_a_separate_protocol():
    multi = make_protocol("r1_searcher_multi")
    action = multi.parse("<|begin_of_query|> Nobel prize\t 1903 physics \t\t<|end_of_query|> trailing")
    assert (action.kind, action.queries) == ("search", ["Nobel prize", "1903 physics"])
    many = "\t".join(f"k{i}" for i in range(20))
    assert multi.parse(f"<|begin_of_query|>{many}<|end_of_query|>").queries == [f"k{i}" for i in range(MAX_QUERIES_PER_CALL)]
    assert "keyword_1\tkeyword_2" in multi.prompt("q")


def test_r1_searcher_layout():
    docs = [Document("1", "Marie Curie", "Physicist and chemist."), Document("2", "Pierre Curie", "Physicist.")]
    obs = r1.observation(["curie"], [docs])
    assert obs == ("\n\n<|begin_of_documents|>\n(1)Marie Curie   Physicist and chemist.\n(2)Pierre Curie   Physicist.\n"
                   "<|end_of_documents|>\n\n")
    assert r1.observation(["nothing"], [[]]) == "\n\n<|begin_of_documents|>\nNone<|end_of_documents|>\n\n"
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
