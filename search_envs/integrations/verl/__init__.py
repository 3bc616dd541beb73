"""The environments as a verl agent loop (`pip install 'search-envs[verl]'`, docs/verl.md).

- `agent_loop.SearchEnvAgentLoop`: verl's `AgentLoopBase`, registered as `search_envs_agent`;
  plays one episode of any registered env id per dataset row, token-exactly.
- `reward.compute_score`: verl's `custom_reward_function` form, for trainers without the loop.
- `dataset.export_verl`: task sets as verl parquet (`search-envs data export-verl`).

Only `agent_loop` imports verl; the reward function and the export work without it.
"""

AGENT_NAME = "search_envs_agent"
"""The name a verl config uses for the loop (`agent_name` column, agent_loop_config_path)."""
