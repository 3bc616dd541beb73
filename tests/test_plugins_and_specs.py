"""The library does not import its consumers (baselines and the agent are plugins), and every
generator is named by one spec format."""

from __future__ import annotations

import subprocess
import sys

import pytest

from search_envs.generation import OpenAIGenerator, TransformersGenerator, make_generator
from search_envs.policies import registry


def test_importing_the_library_does_not_import_baselines_or_agents():
    code = (
        "import sys, search_envs, search_envs.policies.registry, search_envs.bench, search_envs.cli\n"
        "bad = [m for m in sys.modules if m.startswith(('search_envs.baselines', 'search_envs.agents'))]\n"
        "assert not bad, bad\n"
        "from search_envs.policies import make_policy\n"
        "assert make_policy('random').name == 'random'  # found through the plugin\n"
        "assert 'search_envs.baselines' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_baselines_and_the_agent_register_through_entry_points():
    registry.load_plugins()
    assert {"direct", "cot", "rag", "ircot", "search_o1", "random", "oracle"} <= set(registry.BASELINES)
    assert any(r.__module__ == "search_envs.agents.checkpoint" for r in registry.CHECKPOINT_RESOLVERS)


def test_a_third_party_baseline_registers_the_same_way():
    class Echo:
        name, uses_lm = "echo-test", False

        def __init__(self, generator, protocol=None, **kwargs):
            self.generator, self.protocol = generator, protocol

    registry.register_baseline(Echo)
    try:
        assert isinstance(registry.make_policy("echo-test"), Echo)
    finally:
        registry.BASELINES.pop("echo-test")


def test_one_generator_spec_format():
    hf = make_generator("hf:/models/x", batch_size=2)
    assert isinstance(hf, TransformersGenerator) and hf.model_path == "/models/x" and hf.batch_size == 2
    assert isinstance(make_generator("transformers"), TransformersGenerator)  # the backend's library name still works
    openai = make_generator("openai:http://127.0.0.1:9/v1#m", retries=0)
    assert isinstance(openai, OpenAIGenerator) and openai.name.endswith("m")
    with pytest.raises(ImportError, match="vllm backend"):  # the vLLM backend, which needs a GPU package
        make_generator("vllm:/models/x")
    with pytest.raises(ValueError, match="URL#MODEL"):
        make_generator("openai:http://127.0.0.1:9/v1")
    # a policy name is the same spec
    assert isinstance(registry.lm_generator("hf:/models/x"), TransformersGenerator)
    with pytest.raises(ValueError, match="unknown model"):
        registry.lm_generator("gpt:x")
