"""The megatron-core policy: layer spec, model builder, log-probs, loss path, trainer, CPU accommodations."""
