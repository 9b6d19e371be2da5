"""Rollout: the lifecycle runner (solve/update alternation over a pack), the rollout manager and its batcher, the pack
source and the sync/off-policy schedules; the engines they drive live in :mod:`cod_megatron.engines`."""
