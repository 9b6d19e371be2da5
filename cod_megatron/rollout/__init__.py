"""Rollout: the lifecycle runner (solve/update alternation over a pack) and, later, the engines behind it."""
