"""Triton (and Transformer Engine glue) kernels; imported as ``cod_kernels``."""
