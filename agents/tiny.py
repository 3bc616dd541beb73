"""A tiny word-level tokenizer and a tiny Llama built from a config, for fast
CPU tests and smoke runs of the trainer (no download, a few seconds to train)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

WORD_PATTERN = r"</?[A-Za-z_|]+>|\w+|[^\w\s]"
"""Tags such as <search> and </answer> are single words, so stop strings are single tokens."""

SPECIAL_TOKENS = ("<pad>", "<unk>", "<eos>")

CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }} : {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant :{% endif %}"
)
"""A minimal chat template, so the tiny tokenizer works wherever a chat model is expected."""


def word_tokenizer(texts: Iterable[str], extra_words: Iterable[str] = ()):
    """A `PreTrainedTokenizerFast` whose vocabulary is every word of `texts`
    (tags, words and punctuation marks), decoding with single spaces."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    # "abcdef" is the probe transformers' StopStringCriteria tokenises to clean a vocabulary.
    words = set(extra_words) | {"user", "assistant", ":", "abcdef"}
    for text in texts:
        words.update(re.findall(WORD_PATTERN, text))
    vocab = {w: i for i, w in enumerate([*SPECIAL_TOKENS, *sorted(words - set(SPECIAL_TOKENS))])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(WORD_PATTERN), behavior="isolated")]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="<eos>", padding_side="left"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def bpe_tokenizer(texts: Iterable[str], vocab_size: int = 1000, added_words: Iterable[str] = ()):
    """A byte-level BPE `PreTrainedTokenizerFast` trained on `texts` (exact round trip).
    Unlike `word_tokenizer`, an unseen name splits into pieces seen in training, so a
    tiny model can copy names of held-out entities. `added_words` (e.g. protocol tags)
    become single tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(list(texts), trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="<eos>", padding_side="left"
    )
    tokenizer.add_tokens(list(added_words))
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def tiny_llama(vocab_size: int, hidden_size: int = 32, layers: int = 2, heads: int = 2, seed: int = 0,
               max_positions: int = 2048):
    """A randomly initialised LlamaForCausalLM with a few thousand parameters."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_positions,
        pad_token_id=0,
        bos_token_id=None,
        eos_token_id=2,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with `n` torch threads: for tiny matrices on a busy CPU, one thread is many
    times faster than several threads fighting over shared cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
