"""Token-exact rollouts: stop strings, masks that line up with the text, and a
gradient check that environment tokens contribute nothing to the loss."""

from __future__ import annotations

import pytest
import torch

from search_envs.agents.config import TrainConfig
from search_envs.agents.objectives import entropy_from_logits, token_logprobs
from search_envs.agents.rollout import HFRolloutGenerator, StopOnStrings, collect_rollouts, encode_prompt, truncate_at_stop
from search_envs.agents.tiny import tiny_llama, torch_threads, word_tokenizer
from search_envs.agents.train import actor_loss, pad_batch
from search_envs.protocols import SearchR1Protocol


@pytest.fixture(autouse=True)
def one_torch_thread():
    with torch_threads(1):
        yield


def runs(ids: list[int], mask: list[int]) -> list[tuple[int, list[int]]]:
    """Maximal runs of equal mask value: [(mask, ids), ...]."""
    out: list[tuple[int, list[int]]] = []
    for t, m in zip(ids, mask):
        if out and out[-1][0] == m:
            out[-1][1].append(t)
        else:
            out.append((m, [t]))
    return out


def tiny_search_tokenizer(env):
    p = env.envs[0].protocol
    texts = [p.prompt(t.question) for t in list(env.envs[0].tasks)[:40]]
    texts += [p.error_observation("no <search> or <answer> block"), p.error_observation("empty search query")]
    return word_tokenizer(texts, extra_words=["<information>", "</information>", "Doc", "Title"])


# --- stop strings -----------------------------------------------------------------------------
def test_truncate_at_stop_keeps_the_stop_token_and_drops_the_rest():
    tok = word_tokenizer(["think hard <search> capital of France </search> more words <answer> x </answer>"])
    ids = tok.encode("think hard <search> capital of France </search> more words", add_special_tokens=False)
    cut = truncate_at_stop(ids, tok, ("</search>", "</answer>"), eos={tok.eos_token_id})
    assert tok.decode(cut) == "think hard <search> capital of France </search>"
    # EOS ends the action too (and is kept: the policy generated it)
    with_eos = ids[:2] + [tok.eos_token_id] + ids[2:]
    assert truncate_at_stop(with_eos, tok, ("</search>",), eos={tok.eos_token_id}) == ids[:2] + [tok.eos_token_id]
    assert truncate_at_stop(ids[:3], tok, ("</search>",), eos=set()) == ids[:3]


@pytest.mark.slow
def test_truncate_at_stop_with_byte_level_bpe():
    from transformers import AutoTokenizer

    from search_envs.models import default_model_path

    tok = AutoTokenizer.from_pretrained(str(default_model_path()))
    text = "<think> I need the capital. </think>\n<search> capital of France </search>\n\n<information> leaked"
    ids = tok.encode(text, add_special_tokens=False)
    cut = truncate_at_stop(ids, tok, ("</search>", "</answer>"), eos=set())
    decoded = tok.decode(cut)
    assert "</search>" in decoded and "<information>" not in decoded
    assert decoded.startswith("<think> I need")
    # the last kept token is the one that completes the stop string
    assert "</search>" not in tok.decode(cut[:-1])


def test_generator_stops_each_sequence_at_its_stop_string():
    tok = word_tokenizer(["a b c d e f g h i j k l m n o p q r s t u v w x y z"])
    tok.eos_token = None  # no EOS: only the stop string can end a sequence early
    model = tiny_llama(len(tok), seed=3)
    contexts = [tok.encode("a b c", add_special_tokens=False), tok.encode("x y", add_special_tokens=False)]
    torch.manual_seed(0)  # sampling draws the same tokens with the same seed, stop criterion or not
    free = HFRolloutGenerator(model, tok, (), temperature=1.0).generate(contexts, max_new_tokens=8)
    assert all(len(row) == 8 for row in free)
    # pick, for the first sequence, a word that first appears at its 3rd generated token
    words = [tok.decode([t]) for t in free[0]]
    k = next(i for i in range(2, 8) if words[i] not in words[:i] and words[i] not in ("<eos>", "<pad>"))
    torch.manual_seed(0)
    stopped = HFRolloutGenerator(model, tok, (words[k],), temperature=1.0).generate(contexts, max_new_tokens=8)
    assert stopped[0] == free[0][: k + 1]
    other = [tok.decode([t]) for t in free[1]]
    expected = next((i + 1 for i, w in enumerate(other) if w == words[k]), 8)
    assert stopped[1] == free[1][:expected]


def test_left_padding_does_not_change_generations():
    tok = word_tokenizer(["a b c d e f g h i j k l m n o p q r s t u v w x y z"])
    model = tiny_llama(len(tok), seed=5)
    contexts = [tok.encode("a b c d e f", add_special_tokens=False), tok.encode("x", add_special_tokens=False)]
    together = HFRolloutGenerator(model, tok, (), temperature=0.0, batch_size=2).generate(contexts, max_new_tokens=6)
    alone = HFRolloutGenerator(model, tok, (), temperature=0.0, batch_size=1).generate(contexts, max_new_tokens=6)
    assert together == alone


def test_stop_criterion_ignores_stop_strings_in_the_prompt():
    tok = word_tokenizer(["please write </search> now"])
    ids = torch.tensor([tok.encode("please write </search> now", add_special_tokens=False)])
    assert StopOnStrings(tok, ("</search>",), prompt_width=ids.shape[1]).__call__(ids).tolist() == [False]
    assert StopOnStrings(tok, ("</search>",), prompt_width=1).__call__(ids).tolist() == [True]


# --- masks on real multi-turn rollouts -----------------------------------------------------------
@pytest.fixture(scope="module")
def wiki_vec():
    from search_envs.vector import make_vec

    env = make_vec("SearchEnvs/WikiBM25-v0", 4, tasks="ramp:train", max_turns=3)
    yield env
    env.close()


def check_mask_lines_up(traj, tok, prompt_ids, skip_special: bool):
    """mask==1 runs decode to the actions, mask==0 runs to the prompt then the observations."""
    parts = runs(traj.input_ids, traj.policy_mask)
    assert parts[0] == (0, prompt_ids)
    policy = [tok.decode(ids, skip_special_tokens=skip_special) for m, ids in parts if m == 1]
    env_runs = [tok.decode(ids) for m, ids in parts[1:] if m == 0]
    assert policy == traj.actions
    assert env_runs == traj.observations
    assert len(policy) == len(traj.actions) and len(env_runs) in (len(policy), len(policy) - 1)


@pytest.mark.slow
def test_tiny_policy_multiturn_rollout_masks_and_gradients(wiki_vec):
    tok = tiny_search_tokenizer(wiki_vec)
    model = tiny_llama(len(tok), seed=1)
    tasks = list(wiki_vec.envs[0].tasks)[:2]
    ids = [t.id for t in tasks for _ in range(2)]
    gen = HFRolloutGenerator(model, tok, SearchR1Protocol.stop_strings, temperature=1.0)
    trajs = collect_rollouts(gen, tok, wiki_vec, ids, [0, 0, 1, 1], use_chat_template=False, max_response_length=10)
    assert all(t.done for t in trajs)
    multi = [t for t in trajs if len(t.actions) > 1]
    assert multi, "random actions are invalid, so episodes must go on with error observations"
    for t in trajs:
        check_mask_lines_up(t, tok, encode_prompt(tok, wiki_vec.envs[0].protocol.prompt(
            wiki_vec.envs[0].tasks.by_id(t.task_id).question), False), skip_special=True)
    # the env saw exactly the decoded policy tokens (episodes that ended at the last step keep their transcript)
    checked = 0
    for i, t in enumerate(trajs):
        ep = wiki_vec.envs[i].episode
        if ep.task.id == t.task_id and len(t.actions) == ep.turns:
            assert [x for role, x in ep.transcript if role == "action"] == t.actions
            checked += 1
    assert checked > 0

    # Gradient check: advantages of 1 on EVERY position; the mask alone must zero the env tokens.
    cfg = TrainConfig(algo="grpo", kl_coef=0.001, entropy_coef=0.001)
    for masked in (True, False):
        batch = pad_batch(multi, mask_retrieved_tokens=masked, pad_id=tok.pad_token_id)
        logits = model(input_ids=batch["ids"], attention_mask=batch["attn"]).logits
        logits.retain_grad()
        logp = token_logprobs(logits[:, :-1], batch["ids"][:, 1:])
        ent = entropy_from_logits(logits[:, :-1])
        loss, _ = actor_loss(cfg, logp, ent, logp.detach() - 0.05, logp.detach() - 0.3,
                             torch.ones_like(logp), batch["mask"])
        loss.backward()
        grad = logits.grad[:, :-1].abs().sum(-1)  # gradient reaching the prediction of each target token
        for row, t in enumerate(multi):
            n = len(t.input_ids)
            target_policy = torch.tensor(t.policy_mask[1:n], dtype=torch.bool)
            env_after_prompt = ~target_policy
            env_after_prompt[: t.prompt_length - 1] = False
            assert env_after_prompt.any()
            assert (grad[row, : n - 1][target_policy] > 0).all()
            assert (grad[row, : t.prompt_length - 1] == 0).all()  # the prompt is never trained on
            env_grad = grad[row, : n - 1][env_after_prompt]
            if masked:
                assert (env_grad == 0).all()
            else:
                assert (env_grad > 0).all()  # the ablation trains on retrieved tokens
        model.zero_grad()


@pytest.mark.slow
def test_smollm2_chat_rollout_lines_up_with_text(wiki_vec):
    from search_envs.models import load_causal_lm

    model, tok = load_causal_lm(None, device="cpu")
    tasks = list(wiki_vec.envs[0].tasks)[2:4]
    ids = [t.id for t in tasks for _ in range(2)]
    gen = HFRolloutGenerator(model, tok, SearchR1Protocol.stop_strings, temperature=1.0)
    torch.manual_seed(0)
    trajs = collect_rollouts(gen, tok, wiki_vec, ids, [0, 0, 1, 1], max_response_length=24, max_obs_length=10_000)
    protocol = wiki_vec.envs[0].protocol
    for t in trajs:
        prompt = protocol.prompt(wiki_vec.envs[0].tasks.by_id(t.task_id).question)
        chat = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                       tokenize=False)
        prompt_ids = encode_prompt(tok, prompt)
        assert tok.decode(prompt_ids) == chat  # the chat template, with the generation prompt
        check_mask_lines_up(t, tok, prompt_ids, skip_special=True)
        # byte-level BPE is lossless: observations come back character for character
        for obs in t.observations:
            assert obs.startswith("\n") and ("<information>" in obs or "invalid" in obs)
        # every action but the last stops at (the token completing) a stop string, an EOS or the length limit
        for a, (m, run_ids) in zip(t.actions, [r for r in runs(t.input_ids, t.policy_mask) if r[0] == 1]):
            hit = [s for s in protocol.stop_strings if s in a]
            if hit:
                assert not any(s in tok.decode(run_ids[:-1]) for s in hit)
            else:
                assert run_ids[-1] == tok.eos_token_id or len(run_ids) == 24
    assert any(len(t.actions) > 1 for t in trajs)
