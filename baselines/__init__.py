"""Baseline policies for any search environment (see docs/policies.md).

LM baselines prompt SmolLM2-135M-Instruct by default; pass `generator=` (a
`search_envs.generation.TransformersGenerator` or `OpenAIGenerator`) to use another model.
"""

from .prompting import RAG, ChainOfThought, DirectAnswer, IRCoT
from .sanity import OracleRetrieval, RandomPolicy
from .search_o1 import SearchO1
from .synth import MajorityAnswer, SynthTeacher

BASELINES = {
    cls.name: cls for cls in (DirectAnswer, ChainOfThought, RAG, IRCoT, SearchO1, RandomPolicy, OracleRetrieval,
                              SynthTeacher, MajorityAnswer)
}


def register_policies() -> None:
    """The `search_envs.policies` plugin: make every baseline playable by name."""
    from search_envs.policies.registry import register_baseline

    for cls in BASELINES.values():
        register_baseline(cls)


__all__ = [
    "BASELINES",
    "ChainOfThought",
    "DirectAnswer",
    "IRCoT",
    "MajorityAnswer",
    "OracleRetrieval",
    "RAG",
    "RandomPolicy",
    "SearchO1",
    "SynthTeacher",
    "register_policies",
]
