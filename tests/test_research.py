"""ReSearch's protocol and reward against its released code (vendored below), on thousands of
random responses, and through the real env over BM25 on the embedded Wikipedia."""

from __future__ import annotations

import random
import re
import string
from collections import Counter
from typing import List, Union

import pytest

from search_envs import SearchEnv, Task
from search_envs.protocols import last_boxed, make_protocol, research_format_ok
from search_envs.rewards import EpisodeOutcome, make_reward, research_f1


# ---------------------------------------------------------------------------------------------
# Reference code: ReSearch (https://github.com/Agent-RL/ReSearch), MIT License, commit
# c820a43d05b5e7fa409efb8ea76e295daa854717, src/verl/utils/reward_score/re_search.py, verbatim
# except the prints (none) and the second return value of compute_score (dropped).
def validate_format(text: str) -> tuple[bool, str]:
    if text.count('<think>') != text.count('</think>'):
        return False, "<think> </think> not paired"
    if text.count('<think>') == 0 or text.count('</think>') == 0:
        return False, "<think> or </think> not found"
    if text.count('<answer>') != 1 or text.count('</answer>') != 1:
        return False, "<answer> or </answer> not found"
    current_pos = 0
    while True:
        search_pos = text.find('<search>', current_pos)
        if search_pos == -1:
            break
        result_pos = text.find('<result>', search_pos)
        search_end_pos = text.find('</search>', search_pos)
        result_end_pos = text.find('</result>', result_pos)
        if -1 in (result_pos, search_end_pos, result_end_pos):
            return False, "search/result tags are incomplete"
        if not (search_pos < search_end_pos < result_pos < result_end_pos):
            return False, "search/result tags are nested in the wrong order"
        current_pos = result_end_pos
    answer_start = text.find('<answer>')
    answer_end = text.find('</answer>')
    if answer_start > answer_end:
        return False, "<answer> must be before </answer>"
    answer_content = text[answer_start:answer_end]
    if '\\boxed{' not in answer_content or '}' not in answer_content:
        return False, "answer is missing \\boxed{} format"
    return True, "format is correct"


def extract_answer(text: str):
    text = text.strip()
    pattern = r"<answer>(.*?)</answer>"
    match = re.search(pattern, text, re.DOTALL)
    if not match:
        return None
    return match.group(1)


def remove_boxed(s):
    if "\\boxed " in s:
        left = "\\boxed "
        assert s[:len(left)] == left
        return s[len(left):]
    left = "\\boxed{"
    assert s[:len(left)] == left
    assert s[-1] == "}"
    return s[len(left):-1]


def last_boxed_only_string(string):
    idx = string.rfind("\\boxed")
    if "\\boxed " in string:
        return "\\boxed " + string.split("\\boxed ")[-1].split("$")[0]
    if idx < 0:
        idx = string.rfind("\\fbox")
        if idx < 0:
            return None
    i = idx
    right_brace_idx = None
    num_left_braces_open = 0
    while i < len(string):
        if string[i] == "{":
            num_left_braces_open += 1
        if string[i] == "}":
            num_left_braces_open -= 1
            if num_left_braces_open == 0:
                right_brace_idx = i
                break
        i += 1
    if right_brace_idx is None:
        retval = None
    else:
        retval = string[idx:right_brace_idx + 1]
    return retval


def normalize_answer(s):
    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def get_f1_score(prediction: str, ground_truths: Union[str, List[str]]):
    if isinstance(ground_truths, str):
        ground_truths = [ground_truths]
    final_metric = {"f1": 0, "precision": 0, "recall": 0}
    for ground_truth in ground_truths:
        normalized_prediction = normalize_answer(prediction)
        normalized_ground_truth = normalize_answer(ground_truth)
        if normalized_prediction in ["yes", "no", "noanswer"] and normalized_prediction != normalized_ground_truth:
            continue
        if normalized_ground_truth in ["yes", "no", "noanswer"] and normalized_prediction != normalized_ground_truth:
            continue
        prediction_tokens = normalized_prediction.split()
        ground_truth_tokens = normalized_ground_truth.split()
        common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
        num_same = sum(common.values())
        if num_same == 0:
            continue
        precision = 1.0 * num_same / len(prediction_tokens)
        recall = 1.0 * num_same / len(ground_truth_tokens)
        f1 = (2 * precision * recall) / (precision + recall)
        final_metric["precision"] = max(precision, final_metric["precision"])
        final_metric["recall"] = max(recall, final_metric["recall"])
        final_metric["f1"] = max(f1, final_metric["f1"])
    return final_metric['f1']


def compute_score(tokenizer, solution_str, ground_truth) -> float:
    if "<|im_start|>assistant\n" in solution_str:
        solution_str_split = solution_str.split("<|im_start|>assistant\n")
    else:
        solution_str_split = solution_str.split("Assistant:")
    response = solution_str_split[1]
    valid_template, reason = validate_format(response)
    if not valid_template:
        return 0
    if response.endswith(tokenizer.eos_token):
        response = response[:-len(tokenizer.eos_token)]
    else:
        return 0
    answer_part = extract_answer(response)
    if answer_part is not None:
        try:
            answer = remove_boxed(last_boxed_only_string(answer_part))
        except Exception:
            return 0
    else:
        return 0
    f1_score = get_f1_score(answer, ground_truth)
    if f1_score > 0:
        return f1_score
    else:
        return 0.1


class EosTokenizer:
    eos_token = "<|endoftext|>"


# ---------------------------------------------------------------------------------------------
WORDS = ["paris", "the", "yes", "no", "city", "france", "a", "capital", "noanswer", "of", "lyon", "Paris,"]
PIECES = ["<think>", "</think>", "<search>", "</search>", "<result>", "</result>", "<answer>", "</answer>",
          "\\boxed{", "}", "{", "\\boxed ", "\\fbox{", "$", " paris ", " the city ", " x "]


def random_text(rng: random.Random, pieces, n) -> str:
    return "".join(rng.choice(pieces) for _ in range(rng.randint(0, n)))


def test_format_check_matches_validate_format():
    rng = random.Random(0)
    template = ("<think> a </think> <search> q </search> <result>\nr\n</result> <think> b </think> "
                "<answer> The final answer is \\[ \\boxed{Paris} \\] </answer>")
    assert research_format_ok(template) and validate_format(template)[0]
    for _ in range(5000):
        text = random_text(rng, PIECES, 14)
        assert research_format_ok(text) == validate_format(text)[0], text
        # mutations of a valid response hit the rarer branches
        cut = rng.randrange(len(template))
        mutated = template[:cut] + rng.choice(PIECES) + template[cut + rng.randint(0, 8):]
        assert research_format_ok(mutated) == validate_format(mutated)[0], mutated


def test_boxed_extraction_matches_remove_boxed():
    rng = random.Random(1)
    for _ in range(5000):
        text = random_text(rng, PIECES, 10)
        try:
            expected = remove_boxed(last_boxed_only_string(text))
        except Exception:
            expected = None
        assert last_boxed(text) == expected, text


def test_research_f1_matches_get_f1_score():
    rng = random.Random(2)
    assert research_f1("yes", ["yes it is"]) == 0.0  # the yes/no rule; plain F1 says 0.5
    for _ in range(5000):
        pred = " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 4)))
        golds = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 3))) for _ in range(rng.randint(1, 3))]
        assert research_f1(pred, golds) == pytest.approx(get_f1_score(pred, golds)), (pred, golds)


def test_reward_preset_values():
    reward = make_reward("research")
    ok = EpisodeOutcome("Paris", ("Paris",), True, 1)
    assert reward(ok) == 1.0
    assert reward(EpisodeOutcome("Lyon", ("Paris",), True, 1)) == pytest.approx(0.1)  # right format, wrong answer
    assert reward(EpisodeOutcome("Paris", ("Paris",), False, 1)) == 0.0  # broken format: nothing
    assert reward(EpisodeOutcome(None, ("Paris",), True, 1)) == 0.0  # no answer (truncated)
    assert reward(EpisodeOutcome("the city of Paris", ("Paris",), True, 0)) == pytest.approx(0.5)


TASKS = [Task("paris", "What is the capital of France?", ("Paris",)),
         Task("hamlet", "Who wrote the tragedy Hamlet?", ("William Shakespeare", "Shakespeare"))]


def test_protocol_parse():
    proto = make_protocol("research")
    a = proto.parse("<think> I should look <search> a <search> capital of France </search>")
    assert (a.kind, a.queries) == ("search", ["capital of France"])  # the last <search> before </search>
    a = proto.parse("<think> ok </think> <answer> The final answer is \\[ \\boxed{Paris} \\] </answer>")
    assert (a.kind, a.answer, a.format_ok) == ("answer", "Paris", True)
    a = proto.parse("<answer> Paris </answer>")
    assert (a.kind, a.answer, a.format_ok) == ("answer", "Paris", False)  # no \boxed{}: a format error
    assert proto.parse("<search>  </search>").kind == "invalid"
    assert proto.parse("just text").kind == "invalid"


def test_env_reward_equals_compute_score_on_random_episodes(bm25_engine):
    """Random episodes through the real env (BM25 over the embedded Wikipedia): the env's reward
    equals ReSearch's compute_score on the same response."""
    rng = random.Random(3)
    env = SearchEnv(bm25_engine, TASKS, protocol="research", reward="research", max_turns=4, top_k=2)
    turns = ["<think> find it </think> <search> capital of France </search>",
             "<think> find <search> Hamlet author </search>",
             " </think> <think> more </think>",
             "<think> ok </think> <answer> The final answer is \\[ \\boxed{Paris} \\] </answer>",
             "<think> ok </think> <answer> \\boxed{William Shakespeare} </answer>",
             "<answer> \\boxed{Shakespeare} </answer>",
             "<think> x </think> <answer> Lyon </answer>",
             "<think> x </think> <answer> \\boxed{Lyon} </answer>",
             "<think> x </think> <answer> \\boxed{yes} </answer>"]
    seen = set()
    for episode in range(150):
        prompt, _ = env.reset(seed=episode)
        done = False
        while not done:
            _, reward, terminated, truncated, info = env.step(rng.choice(turns))
            done = terminated or truncated
        response = env.render_text()[len(prompt):]
        expected = compute_score(EosTokenizer(), "Assistant:" + response + EosTokenizer.eos_token, info["answers"]) \
            if terminated else 0  # truncated: ReSearch's "over length"
        assert reward == pytest.approx(expected), response
        seen.add(round(reward, 2))
    assert {0.0, 0.1, 1.0} <= seen
    # the observation is ReSearch's: ' <result>\n"Title"\ntext\n\n"Title"\ntext\n</result>'
    env.reset(seed=0, options={"task_id": "paris"})
    obs, *_ = env.step("<think> a </think> <search> capital of France </search>")
    assert obs.startswith(' <result>\n"') and obs.endswith("\n</result>") and obs.count('\n\n"') == 1
