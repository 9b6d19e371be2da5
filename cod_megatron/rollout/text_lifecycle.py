"""Text-level entry point of the lifecycle runner (see :mod:`cod_megatron.rollout.lifecycle`)."""

from cod_megatron.rollout.lifecycle import TextEpisodeTrace, TextLifecycle, run_text_lifecycle

__all__ = ["TextEpisodeTrace", "TextLifecycle", "run_text_lifecycle"]
