"""Token-in/token-out multi-turn rendering with an HF chat template (docs/cod.md 2.5, 2.7, 2.8; R2, R11).

An episode is one growing token list: the chat-template prompt (system + first user message + generation prompt),
then each model response exactly as the engine produced it (never decoded and re-tokenised), then only the *new*
template tokens of the next turn: the end-of-turn token (unless the response already ends with it), the next user
message and the generation prompt. A boolean mask marks the model's tokens, so the episode trains as one row (R2)
and training log-probs line up with rollout log-probs token for token.

The new tokens of a turn are found by rendering the conversation with a placeholder in place of the last response
and taking the template text after it, so template quirks before the placeholder (the real Qwen3 template drops think
blocks of earlier turns; Llama 3 adds a BOS) never leak into the delta. What the engine sees at turn k is therefore
exactly ``token_ids`` at that moment; with the real Qwen3 template this keeps the empty think block of earlier turns,
which a per-call re-render (the reference's layout) would drop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

Message = Mapping[str, str]


class ChatTokenizer(Protocol):
    """What the renderer uses of a tokenizer (an HF ``PreTrainedTokenizerBase`` is one; loading it is
    :mod:`cod_megatron.models`' job, so this module stays free of transformers)."""

    eos_token: str | None

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any:
        """The template's rendering (text with ``tokenize=False``)."""
        ...

    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]:
        """Token ids of ``text``."""
        ...

    def decode(self, token_ids: Any, skip_special_tokens: bool = ...) -> str:
        """Text of ``token_ids``."""
        ...

    def convert_tokens_to_ids(self, tokens: Any) -> Any:
        """Id of a token string."""
        ...


_PLACEHOLDER = "\x00cod-response-placeholder\x00"


@dataclass(frozen=True)
class LengthBudget:
    """The three caps of cod.md 2.7 (``max_prompt_tokens``, ``max_response_tokens``, ``max_model_len``)."""

    max_prompt_tokens: int
    max_response_tokens: int
    max_model_len: int

    def max_new_tokens(self, prompt_tokens: int) -> int:
        """Largest response the engine may be asked for after a prompt of this length; <= 0 means no room."""
        if prompt_tokens > self.max_prompt_tokens:
            return 0
        return min(self.max_response_tokens, self.max_model_len - prompt_tokens)

    def check(self, prompt_tokens: int, response_tokens: int = 0) -> BudgetReport:
        """How far a (prompt, response) pair is over each cap; reports instead of raising so runs never crash (R11)."""
        return BudgetReport(
            prompt_over=max(0, prompt_tokens - self.max_prompt_tokens),
            response_over=max(0, response_tokens - self.max_response_tokens),
            total_over=max(0, prompt_tokens + response_tokens - self.max_model_len),
        )


@dataclass(frozen=True)
class BudgetReport:
    """Tokens over each cap (0 = within). The caller truncates or drops with a counted metric (R11)."""

    prompt_over: int = 0
    response_over: int = 0
    total_over: int = 0

    @property
    def exceeded(self) -> bool:
        """True if any cap is exceeded."""
        return bool(self.prompt_over or self.response_over or self.total_over)


class ChatRenderer:
    """Renders chat messages to token ids and computes the per-turn template delta for one tokenizer.

    ``chat_template_kwargs`` are passed to every template call (Qwen3: ``enable_thinking=False``, cod.md 2.5). Every
    encode uses ``add_special_tokens=False`` because the templates already write BOS where the model expects it.
    """

    def __init__(
        self,
        tokenizer: ChatTokenizer,
        *,
        chat_template_kwargs: Mapping[str, Any] | None = None,
        end_of_turn_token: str | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        eot = end_of_turn_token if end_of_turn_token is not None else tokenizer.eos_token
        self.end_of_turn_id: int | None = tokenizer.convert_tokens_to_ids(eot) if eot is not None else None

    def render_text(self, messages: Sequence[Message], *, add_generation_prompt: bool) -> str:
        """The template's text for a conversation (no tokenisation)."""
        return self.tokenizer.apply_chat_template(
            [dict(m) for m in messages],
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
            **self.chat_template_kwargs,
        )

    def encode(self, text: str) -> list[int]:
        """Tokenise template text; special-token strings in it become their ids."""
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def decode_response(self, ids: Sequence[int]) -> str:
        """A response's text for the environment: special tokens (the end-of-turn stop) dropped."""
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def encode_prompt(self, messages: Sequence[Message]) -> list[int]:
        """Prompt ids for the first model call: the messages plus the generation prompt."""
        return self.encode(self.render_text(messages, add_generation_prompt=True))

    def observation_delta(
        self, history: Sequence[Message], response_ids: Sequence[int], new_messages: Sequence[Message]
    ) -> list[int]:
        """Template tokens between the last response and the next one: end of turn, new messages, generation prompt.

        ``history`` is the conversation up to and including the assistant message of ``response_ids`` (its content is
        replaced by a placeholder, so only the template text after it matters). The end-of-turn token is left out when
        the response already ends with it (the engine returns its stop token); a response cut at the cap gets it here.
        """
        if not history or history[-1].get("role") != "assistant":
            raise ValueError("observation_delta: history must end with the assistant message of the response")
        if not new_messages:
            raise ValueError("observation_delta: no new messages to append")
        convo = [*history[:-1], {"role": "assistant", "content": _PLACEHOLDER}, *new_messages]
        text = self.render_text(convo, add_generation_prompt=True)
        if text.count(_PLACEHOLDER) != 1:
            raise ValueError("observation_delta: the chat template dropped or repeated the assistant message")
        delta = self.encode(text[text.index(_PLACEHOLDER) + len(_PLACEHOLDER) :])
        if response_ids and delta and response_ids[-1] == delta[0] and delta[0] == self.end_of_turn_id:
            delta = delta[1:]
        return delta


@dataclass
class TokenConversation:
    """One episode as the engine sees it: a growing id list, the model-token mask and each token's turn index.

    Turn k owns its prompt tokens (the initial prompt for k = 0, the observation delta otherwise) and its response;
    ``turn_ids`` follow ``cod_megatron.cod.episode.Episode``. ``messages`` keeps the text conversation for the
    update-episode trajectory (cod.md 2.6).
    """

    renderer: ChatRenderer
    messages: list[dict[str, str]]
    token_ids: list[int] = field(default_factory=list)
    generated: list[bool] = field(default_factory=list)
    turn_ids: list[int] = field(default_factory=list)
    num_turns: int = 0
    awaiting_response: bool = True
    _last_response: list[int] = field(default_factory=list, repr=False)

    @classmethod
    def start(cls, renderer: ChatRenderer, messages: Sequence[Message]) -> TokenConversation:
        """Encode system + user messages with the generation prompt; the conversation then awaits the first response."""
        ids = renderer.encode_prompt(messages)
        return cls(
            renderer=renderer,
            messages=[dict(m) for m in messages],
            token_ids=ids,
            generated=[False] * len(ids),
            turn_ids=[0] * len(ids),
        )

    @property
    def prompt_ids(self) -> list[int]:
        """What to send to the engine for the next call (a copy)."""
        if not self.awaiting_response:
            raise RuntimeError("the conversation is not awaiting a response; add an observation first")
        return list(self.token_ids)

    def add_response(self, response_ids: Sequence[int], text: str | None = None) -> None:
        """Append the model's ids unchanged; ``text`` (default: decoded without special tokens) goes to ``messages``."""
        if not self.awaiting_response:
            raise RuntimeError("add_response: the previous response has no observation after it yet")
        ids = list(response_ids)
        if text is None:
            text = self.renderer.tokenizer.decode(ids, skip_special_tokens=True)
        self.token_ids += ids
        self.generated += [True] * len(ids)
        self.turn_ids += [self.num_turns] * len(ids)
        self.messages.append({"role": "assistant", "content": text})
        self._last_response = ids
        self.num_turns += 1
        self.awaiting_response = False

    def add_observation(self, content: str | Sequence[Message]) -> list[int]:
        """Append the next user message(s) with only the new template tokens; returns those tokens."""
        if self.awaiting_response:
            raise RuntimeError("add_observation: the model has not answered the last prompt yet")
        new = [{"role": "user", "content": content}] if isinstance(content, str) else [dict(m) for m in content]
        delta = self.renderer.observation_delta(self.messages, self._last_response, new)
        self.token_ids += delta
        self.generated += [False] * len(delta)
        self.turn_ids += [self.num_turns] * len(delta)
        self.messages += new
        self.awaiting_response = True
        return delta

    def check_budget(self, budget: LengthBudget) -> BudgetReport:
        """Caps of cod.md 2.7 for the episode so far: the longest prompt, the longest response and the whole row.

        Awaiting a response, the pending call counts with its prompt only; ``budget.max_new_tokens(len(token_ids))``
        says how many tokens it may still request.
        """
        prompt = len(self.token_ids) if self.awaiting_response else self._last_prompt_len()
        return BudgetReport(
            prompt_over=max(0, prompt - budget.max_prompt_tokens),
            response_over=max(0, max(self._response_lengths(), default=0) - budget.max_response_tokens),
            total_over=max(0, len(self.token_ids) - budget.max_model_len),
        )

    def _response_lengths(self) -> list[int]:
        lengths = [0] * (self.num_turns + 1)
        for g, t in zip(self.generated, self.turn_ids, strict=True):
            lengths[t] += g
        return lengths

    def _last_prompt_len(self) -> int:
        last = len(self.generated) - 1
        while last >= 0 and self.generated[last]:
            last -= 1
        return last + 1


class WordRenderer:
    """One word = one token, for plain-text domains without a chat template (HiddenKey, cod.md 9.8).

    The same surface as :class:`ChatRenderer` where the runner needs it: ``encode`` for a plain-text prompt,
    ``decode_response`` for a response and ``end_of_turn_id`` for the engine's stop. Responses decode with their
    special words kept, so the environment (not the tokenizer) decides that a stray ``<bos>`` is a format error.
    """

    def __init__(self, words: Sequence[str], *, end_of_turn: str = "<eos>", unknown: str = "<unk>", pad: str = "<pad>"):
        self.words = tuple(words)
        self._index = {w: i for i, w in enumerate(self.words)}
        self.end_of_turn_id: int | None = self._index[end_of_turn]
        self.pad_id = self._index[pad]
        self._unk = self._index[unknown]

    @property
    def vocab_size(self) -> int:
        """Number of words (the policy's vocabulary must hold at least this many ids)."""
        return len(self.words)

    def encode(self, text: str) -> list[int]:
        """Ids of the whitespace-separated words; unknown words map to the unknown word."""
        return [self._index.get(w, self._unk) for w in text.split()]

    def decode_response(self, ids: Sequence[int]) -> str:
        """Words joined by spaces; ids outside the vocabulary decode to the unknown word."""
        return " ".join(self.words[i] if 0 <= i < len(self.words) else self.words[self._unk] for i in ids)
