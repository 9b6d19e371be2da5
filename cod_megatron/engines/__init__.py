"""Rollout engines behind one interface: the embedded (transformers) engine, SGLang servers (``sglang/``), text
policies (OpenAI-compatible endpoints), the judge adapter, and their start-up under Ray or in-process.

The interface names are re-exported here; the engines themselves load from their modules (``engines.embedded``
imports torch, ``engines.startup`` the config), so importing this package stays light.
"""

from cod_megatron.engines.interface import (
    EngineRequest,
    Generation,
    InferenceEngine,
    RolloutEngine,
    SamplingParams,
    TextPolicyEngine,
)

__all__ = [
    "EngineRequest",
    "Generation",
    "InferenceEngine",
    "RolloutEngine",
    "SamplingParams",
    "TextPolicyEngine",
]
