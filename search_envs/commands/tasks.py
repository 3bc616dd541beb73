"""`search-envs tasks synthesize`: harder questions from easy ones, E2HQA style (WebDancer):
an entity of each question is replaced by a description an LLM writes from what a search for
it finds, `--iterations` times (`--describer synth`: exactly, from a SynthWorld's facts, for
`synth:` tasks). Writes FlashRAG jsonl that `--tasks FILE` reads back."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tasks", help="make task sets (E2HQA: harder questions by entity obfuscation)")
    cmds = p.add_subparsers(dest="tasks_command", required=True)
    s = cmds.add_parser("synthesize", help="E2HQA: replace entities with searched descriptions, iterated",
                        description=__doc__.split("\n")[0])
    s.add_argument("--tasks", required=True, help="task spec of the easy questions (e.g. ramp:test, a jsonl file)")
    s.add_argument("--output", required=True, help="jsonl file to write")
    s.add_argument("--n", type=int, default=None, help="use the first n questions")
    s.add_argument("--iterations", type=int, default=2, help="entity replacements per question")
    s.add_argument("--engine", default="bm25", help="bm25 | dense | hybrid, over the embedded corpus or --index-dir "
                                                   "(--describer synth: over the world's corpus)")
    s.add_argument("--index-dir", default=None)
    s.add_argument("--top-k", type=int, default=None, help="results searched per entity (llm: 3, corpus/synth: 10)")
    s.add_argument("--describer", default="llm", choices=("llm", "corpus", "synth"),
                   help="llm: an LLM writes the description from the search results; corpus: the embedded "
                        "Wikipedia's own short description of the entity's article (no LLM); synth: exact "
                        "descriptions from the facts of the SynthWorld of a synth: --tasks spec, searched over "
                        "its corpus (no LLM; descriptions nest: multi-hop)")
    s.add_argument("--generator", default="transformers", help="transformers | openai | vllm (--describer llm)")
    s.add_argument("--model", default=None, help="model path or name (default: SmolLM2-135M-Instruct, offline)")
    s.add_argument("--base-url", default=None, help="for --generator openai: e.g. http://127.0.0.1:8000/v1")
    s.add_argument("--max-new-tokens", type=int, default=40)
    s.add_argument("--keep-unchanged", action="store_true", help="also write questions no round could rewrite")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=run_synthesize)


def make_generator_from_args(args: argparse.Namespace):
    from search_envs.generation import make_generator

    if args.generator == "openai":
        if not args.base_url or not args.model:
            raise ValueError("--generator openai needs --base-url and --model")
        return make_generator("openai", base_url=args.base_url, model=args.model)
    if args.generator == "vllm":
        return make_generator("vllm", model=args.model)
    return make_generator(args.generator, model_path=args.model, num_threads=1)


def run_synthesize(args: argparse.Namespace) -> int:
    from search_envs.datasets import load_tasks
    from search_envs.e2hqa import CorpusDescriptionDescriber, SearchLLMDescriber, SynthWorldDescriber, synthesize, write_tasks
    from search_envs.engines import open_engine

    world = None
    if args.describer == "synth":
        from search_envs.synthworld import WorldConfig, corpus_path, generate_world, parse_spec

        if not args.tasks.startswith("synth:"):
            raise ValueError("--describer synth needs a synth: task spec, e.g. --tasks synth:train:kinds=single")
        world = generate_world(WorldConfig(**parse_spec(args.tasks)[0]))
    tasks = load_tasks(args.tasks, limit=args.n, seed=args.seed)
    engine = open_engine(args.engine, corpus=corpus_path(world.config) if world else None, index_dir=args.index_dir)
    generator = make_generator_from_args(args) if args.describer == "llm" else None
    try:
        if world is not None:
            describer = SynthWorldDescriber(world, engine, k=args.top_k or 10)
        elif generator is not None:
            describer = SearchLLMDescriber(engine, generator, k=args.top_k or 3, max_new_tokens=args.max_new_tokens)
        else:
            describer = CorpusDescriptionDescriber(engine, k=args.top_k or 10)
        results = synthesize(list(tasks), describer, iterations=args.iterations, seed=args.seed)
    finally:
        if generator is not None:
            generator.close()
        engine.close()
    written = write_tasks(results, args.output, keep_unchanged=args.keep_unchanged)
    rewrites = sum(len(r.rewrites) for r in results)
    print(f"{written} of {len(results)} questions written to {args.output} ({rewrites} entity replacements)")
    return 0
