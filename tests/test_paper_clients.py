"""The papers' own retrieval clients, unchanged, against a real `search-envs serve` on 127.0.0.1.

Reference code vendored here (only here) to check that a trainer written for a paper runs
against our server unchanged and sees what our environments show:

- Search-R1 (https://github.com/PeterGriffinJin/Search-R1, commit a14dc3a4ffc6fe88c1e95038d9738e21ba3f7a06,
  `search_r1/llm_agent/generation.py`, `LLMGenerationManager.batch_search`, `_batch_search`,
  `_passages2string`, and the observation line of `execute_predictions`). Apache License 2.0.
- R1-Searcher (https://github.com/RUCAIBox/R1-Searcher, commit 631167cbb3c2464f805730e3e364a690f5b136d4,
  `OpenRLHF-RAG/openrlhf/trainer/ppo_utils/experience_maker.py`, the retrieval part of
  `_generate_vllm_with_retrieve`). MIT License, Copyright (c) 2024 Huatong Song.
"""

from __future__ import annotations

import copy
import random
import re
from types import SimpleNamespace
from typing import List

import pytest
import requests

from search_envs import SearchEnv, Task
from search_envs.protocols import R1SearcherProtocol, SearchR1Protocol
from search_envs.datasets import load_tasks
from tests.serve_process import Server


# --- vendored: Search-R1 (Apache-2.0), search_r1/llm_agent/generation.py --------------------------
class SearchR1Searcher:
    """LLMGenerationManager's search methods, verbatim; `config` holds search_url and topk."""

    def __init__(self, search_url: str, topk: int = 3) -> None:
        self.config = SimpleNamespace(search_url=search_url, topk=topk)

    def batch_search(self, queries: List[str] = None) -> str:
        """
        Batchified search for queries.
        Args:
            queries: queries to call the search engine
        Returns:
            search results which is concatenated into a string
        """
        results = self._batch_search(queries)['result']

        return [self._passages2string(result) for result in results]

    def _batch_search(self, queries):

        payload = {
            "queries": queries,
            "topk": self.config.topk,
            "return_scores": True
        }

        return requests.post(self.config.search_url, json=payload).json()

    def _passages2string(self, retrieval_result):
        format_reference = ''
        for idx, doc_item in enumerate(retrieval_result):

            content = doc_item['document']['contents']
            title = content.split("\n")[0]
            text = "\n".join(content.split("\n")[1:])
            format_reference += f"Doc {idx+1}(Title: {title}) {text}\n"

        return format_reference


def search_r1_observation(search_result: str) -> str:
    """execute_predictions: the observation appended after a search action."""
    return f'\n\n<information>{search_result.strip()}</information>\n\n'


# --- vendored: R1-Searcher (MIT), experience_maker.py `_generate_vllm_with_retrieve` ---------------
def r1_searcher_retrieve(generated_texts, url_wiki, topk=3):
    """One retrieval round of R1-Searcher's trainer over texts that stopped at <|end_of_query|>
    (vLLM leaves the stop string out). Returns the queries and each text continued with its documents."""
    query_list = []
    continued_texts = []
    for generated_text in generated_texts:
        query = generated_text.split("<|begin_of_query|>")[-1].split("<|end_of_query|>")[0]
        query = query.replace('"',"").strip()
        query = " ".join(query.split())
        if query: #开始检索
            query_list.append(query)
            continued_texts.append({"prompt": generated_text.strip()})
    if len(query_list)!=0:
        response = requests.post(url_wiki, json={"queries": query_list, "k": topk})
        if response.status_code == 200:
            result = response.json()
            answers = result["answers"]
            for k in range(len(answers)):
                retrieve_docs = answers[k]
                continued_text_now = copy.deepcopy(continued_texts[k])
                if len(retrieve_docs)>0:
                    doc_content_list = []
                    for j in range(len(retrieve_docs)):
                        doc_now = re.sub(r'^\d+\s+', '', retrieve_docs[j])
                        doc_content_list.append(f"({j+1}){doc_now}\n")
                    doc_content = ''.join(doc_content_list)
                else:
                    doc_content = "None"
                continued_text_now["prompt"] = continued_text_now["prompt"] + "<|end_of_query|>\n\n"+ "<|begin_of_documents|>\n" +  doc_content + "<|end_of_documents|>\n\n"
                continued_texts[k] = continued_text_now
        else:
            raise Exception("Error in response: the status code is not 200!")
    return query_list, [c["prompt"] for c in continued_texts]


# --- the server, started as a user starts it ------------------------------------------------------
@pytest.fixture(scope="module")
def served(bm25_engine):
    """`search-envs serve --index ...` with its default limits, in a subprocess."""
    with Server(bm25_engine.directory) as server:
        yield server.url


def training_step_queries(n_questions: int = 512, n_agent: int = 5) -> list[str]:
    """What one Search-R1 GRPO step searches: 512 questions x 5 rollouts, each rollout's own
    query: the question, a few keywords of it, a rambling multi-sentence query, and one of a
    few thousand characters (a 500-token turn can be that long)."""
    questions = [t.question for t in load_tasks("ramp:train")]
    rng = random.Random(0)
    queries = []
    for i in range(n_questions):
        q = questions[i % len(questions)]
        words = q.split()
        for j in range(n_agent):
            if j == 0:
                queries.append(q)
            elif j == 1:
                queries.append(" ".join(rng.sample(words, min(4, len(words)))))
            elif j == 2:
                queries.append(f"{q} I need to find who or what this refers to, and when.")
            elif j == 3:
                queries.append(" ".join([q] * 30)[:3000] if i % 64 == 0 else q.lower())
            else:
                queries.append(f"“{words[0]}” — {' '.join(words[1:])}")
    return queries


def test_search_r1_client_runs_a_full_grpo_step_against_search_envs_serve(served, bm25_engine):
    queries = training_step_queries()
    assert len(queries) == 2560 and max(map(len, queries)) >= 2900
    searcher = SearchR1Searcher(f"{served}/retrieve", topk=3)
    results = searcher.batch_search(queries)  # a 413 here was Search-R1's KeyError: 'result'
    assert len(results) == len(queries)
    # the trainer sees exactly what our search_r1 environment shows for the same query
    protocol = SearchR1Protocol()
    local = bm25_engine.search(queries, 3)
    for query, result, docs in zip(queries, results, local):
        assert search_r1_observation(result) == protocol.observation([query], [docs])


def test_default_bound_is_a_clear_413(served):
    r = requests.post(f"{served}/retrieve", json={"queries": ["q"] * 16_385, "topk": 3})
    assert r.status_code == 413 and "16384" in r.json()["detail"] and "max-queries" in r.json()["detail"]
    r = requests.post(f"{served}/queries", json={"queries": ["x" * 16_385], "k": 3})
    assert r.status_code == 413 and "max_query_chars" in r.json()["detail"]
    assert requests.post(f"{served}/retrieve", json={"queries": ["Hamlet"]}).status_code == 200


def test_r1_searcher_client_reads_queries_and_sees_what_the_env_shows(served, bm25_engine):
    rng = random.Random(1)
    questions = [t.question for t in load_tasks("ramp:train")][:60]
    texts = []
    for i, q in enumerate(questions):
        words = q.split()
        query = rng.choice([
            q, "\t".join(words[:4]), f'"{words[0]}"  {" ".join(words[1:3])}', f"  {q}\n\n",
            f"{words[-1]}\t\t“{words[0]}” '{words[1] if len(words) > 1 else ''}'",
        ])
        prefix = "<|begin_of_query|> abandoned " if i % 5 == 0 else ""  # the last begin tag is the query
        texts.append(f"<think> I should look this up. </think>{prefix}<|begin_of_query|> {query} ")
    texts.append("<think>x</think><|begin_of_query|> zzqxw vbnkj <|begin_of_query|> qqqzzx ")  # no hit
    r1_queries, continued = r1_searcher_retrieve(texts, f"{served}/queries", topk=3)
    assert len(r1_queries) == len(texts)

    tasks = [Task(f"t{i}", q, ("-",)) for i, q in enumerate(questions)]
    env = SearchEnv(bm25_engine, tasks, protocol="r1_searcher", top_k=3, max_obs_chars=10**6)
    env.reset(seed=0)
    protocol = R1SearcherProtocol()
    for text, query, full in zip(texts, r1_queries, continued):
        action = text + "<|end_of_query|>"
        assert protocol.parse(action).queries == [query]
        env.reset(seed=0)
        obs, *_ = env.step(action)
        assert full == text.strip() + "<|end_of_query|>" + obs
    assert continued[-1].endswith("<|begin_of_documents|>\nNone<|end_of_documents|>\n\n")
    r = requests.post(f"{served}/queries", json={"queries": ["Hamlet", "capital of France"], "k": 2}).json()
    assert r["queries"] == ["Hamlet", "capital of France"] and [len(a) for a in r["answers"]] == [2, 2]
    assert r["answers"][0][0].startswith(bm25_engine.search(["Hamlet"], 1)[0][0].id + "\tHamlet   ")
