"""Evaluation: per-position reward of lifecycles (CoD-Deploy and Ralph loop), with confidence intervals and plots."""
