"""A tiny byte-level BPE tokenizer with Qwen3- and Llama-3-style chat templates, built offline in milliseconds.

Tests and the CPU recipe need a real ``transformers`` tokenizer with a chat template, and nothing may be downloaded
at run time. This module trains a small byte-level BPE (any text round-trips, as in the real models) on an in-code
corpus and wraps it in ``PreTrainedTokenizerFast`` with the special tokens and a chat template of one family. The real
Qwen3 / Llama 3 tokenizers are used the same way through ``load_tokenizer(local_dir)``.

The two templates are written for this project (not copied) and follow the real ones on every point that the
token-in/token-out renderer relies on: the turn delimiters, the generation prompt and, for Qwen3 with
``enable_thinking=False``, the empty think block ``<think>\\n\\n</think>\\n\\n`` after ``<|im_start|>assistant\\n``.
One deliberate difference: the real Qwen3 template drops think blocks from assistant turns before the last user
message, whereas this one renders every assistant turn as the model saw it when it generated, so that a full
re-render equals the token stream of the rollout (see ``cod_megatron/cod/tokenization.py``).
"""

from __future__ import annotations

import functools
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from cod_megatron.models.decoder_family import TemplateFamily

QWEN3_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
LLAMA3_SPECIAL_TOKENS = (
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
)
THINK_TOKENS = ("<think>", "</think>")
"""Added but not special, as in Qwen3: ``skip_special_tokens`` keeps them."""

QWEN3_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message.role == 'assistant' -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- if enable_thinking is defined and enable_thinking is false -%}"
    "{{- '<think>\\n\\n</think>\\n\\n' -}}{%- endif -%}"
    "{{- message.content + '<|im_end|>\\n' -}}"
    "{%- else -%}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- if enable_thinking is defined and enable_thinking is false -%}"
    "{{- '<think>\\n\\n</think>\\n\\n' -}}{%- endif -%}"
    "{%- endif -%}"
)
"""Qwen3-style ChatML. With ``enable_thinking=False`` every assistant turn opens with the empty think block."""

LLAMA3_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if loop.first -%}{{- bos_token -}}{%- endif -%}"
    "{{- '<|start_header_id|>' + message.role + '<|end_header_id|>\\n\\n' + (message.content | trim) + '<|eot_id|>' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}{%- endif -%}"
)
"""Llama-3-Instruct style: BOS once, header/``<|eot_id|>`` turns, contents trimmed as in the real template."""

_CORPUS = (
    "You are a helpful assistant. Solve the task step by step and put the action inside <answer></answer>.",
    "## Hints that might help\nBelow are some hints that might be helpful, but there is no guarantee.",
    "Hints: null\n## Response length limit\nPlease limit your response to 1000 tokens.",
    "--- Start of updated hints ---\n- Move left twice, then down.\n--- End of updated hints ---",
    "--- Previous hints ---\n--- A new task-solving trajectory ---\nReward: 0.5\nEnvironment feedback: done",
    "Step 1:\nObservation: You are at (0, 0). The goal is at (3, 3).\nAction: <answer>down</answer>",
    "The key was k2. The answer is correct, the answer is wrong, format error. solve update hint distractor",
    "the quick brown fox jumps over the lazy dog 0 1 2 3 4 5 6 7 8 9 up down left right",
)


@functools.lru_cache(maxsize=1)
def _trained_bpe_json(vocab_size: int) -> str:
    """Train the shared byte-level BPE once per process; returned as JSON so each caller gets a fresh object."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[*QWEN3_SPECIAL_TOKENS, *LLAMA3_SPECIAL_TOKENS],
        show_progress=False,
    )
    tok.train_from_iterator(list(_CORPUS) * 4, trainer=trainer)
    tok.add_tokens(list(THINK_TOKENS))
    return tok.to_str()


def build_tiny_tokenizer(family: TemplateFamily = "qwen3", vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """A fresh tokenizer of the given chat-template family; deterministic and offline.

    Both families share one vocabulary (all special tokens of both exist), so ids are comparable across them; only
    the chat template and the bos/eos/pad roles differ.
    """
    backend = Tokenizer.from_str(_trained_bpe_json(vocab_size))
    if family == "qwen3":
        return PreTrainedTokenizerFast(
            tokenizer_object=backend,
            eos_token="<|im_end|>",
            pad_token="<|endoftext|>",
            chat_template=QWEN3_CHAT_TEMPLATE,
        )
    if family == "llama3":
        return PreTrainedTokenizerFast(
            tokenizer_object=backend,
            bos_token="<|begin_of_text|>",
            eos_token="<|eot_id|>",
            pad_token="<|end_of_text|>",
            chat_template=LLAMA3_CHAT_TEMPLATE,
        )
    raise ValueError(f"unknown chat-template family {family!r}; expected 'qwen3' or 'llama3'")


def save_tiny_tokenizer(directory: str | Path, family: TemplateFamily = "qwen3") -> Path:
    """Write the tiny tokenizer as an HF tokenizer directory, loadable by ``load_tokenizer`` like a real model's."""
    path = Path(directory)
    build_tiny_tokenizer(family).save_pretrained(path)
    return path


def load_tokenizer(directory: str | Path) -> PreTrainedTokenizerBase:
    """Load a tokenizer from a local directory only (``local_files_only``): runs must never reach a model hub."""
    return AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
