"""What the word-level toy domains (HiddenKey, CodeLock) share: one word = one token of the toy model.

Their special words and how a response becomes words: cut to ``MAX_ACTION_CHARS``, split at most ``cap`` times (so
any input costs bounded work), stopped at the first ``<eos>``, out-of-vocabulary words read as ``<unk>``.
"""

from __future__ import annotations

from cod_envs.base import MAX_ACTION_CHARS

SPECIAL: tuple[str, ...] = ("<pad>", "<bos>", "<eos>", "<unk>")
EOS, UNK, NONE = "<eos>", "<unk>", "none"


def response_words(text: str, cap: int, vocabulary: frozenset[str]) -> list[str]:
    """The response as the model's tokens: at most ``cap`` words, cut before the first ``<eos>``; OOV -> ``<unk>``."""
    out: list[str] = []
    for word in text[:MAX_ACTION_CHARS].split(None, cap)[:cap]:
        if word == EOS:
            break
        out.append(word if word in vocabulary else UNK)
    return out
