"""cod-megatron: Connect-the-Dots long-lifecycle agent RL on megatron-core."""

__version__ = "0.1.0"
