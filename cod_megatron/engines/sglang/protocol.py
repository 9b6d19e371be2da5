"""SGLang's HTTP protocol as this project speaks it: the pinned versions, a JSON-over-HTTP client, ``/generate``.

Written against ONE pinned SGLang release, :data:`SGLANG_VERSION` (router: :data:`SGLANG_ROUTER_VERSION`); the
request and response bodies are recorded from that source in ``tests/fixtures/sglang/<version>/`` and checked by
``tests/engines/test_sglang_engine.py``. Nothing here imports sglang, so the client runs (and is tested) on CPU.

* ``/generate`` takes a batch of ``input_ids`` with one ``sampling_params`` object per prompt and answers a list in
  request order. ``sampling_params`` keys are checked against a schema that REJECTS unknown keys, so only
  ``max_new_tokens``, ``temperature``, ``stop_token_ids`` and ``sampling_seed`` are sent. ``sampling_seed`` only takes
  effect when the server runs with ``--enable-deterministic-inference`` (see ``server.SGLangServerConfig``).
  ``meta_info.output_token_logprobs`` is a list of ``[logprob, token_id, text|None]``; ``output_ids`` holds the same
  ids (there is no ``text`` under ``--skip-tokenizer-init``). The log-probs are those of ``softmax(logits / T)``
  unless the server has ``SGLANG_RETURN_ORIGINAL_LOGPROB=1`` set, which must stay off for RL.
* Scoring given tokens (a teacher) is the same ``/generate`` with ``max_new_tokens`` 0 (a prefill-only request) and
  ``logprob_start_len``: ``meta_info.input_token_logprobs`` then holds one ``[logprob, token_id, text|None]`` per
  input token from ``logprob_start_len`` on, the first one's log-prob ``None`` (the scheduler prepends ``None`` and
  drops the last position's, ``SchedulerLogprobResultProcessor._process_input_token_logprobs``). Asking from
  ``len(prompt) - 1`` thus scores every response token. Input log-probs are ``log_softmax`` of the raw logits
  (``srt/layers/logprob_processor.py``): temperature 1, the teacher's own distribution.
"""

from __future__ import annotations

import http.client
import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cod_megatron.engines.interface import EngineRequest, Generation, ScoreRequest

log = logging.getLogger(__name__)

SGLANG_VERSION = "0.5.23"
"""The SGLang release this client speaks to (pin ``sglang==`` this in the ``gpu`` extra)."""
SGLANG_ROUTER_VERSION = "0.3.2"
"""The sglang-router release whose ``/workers`` API :class:`.server.SGLangRouterClient` uses."""

_MAX_SEED = 2**63 - 1  # SamplingParams.verify: sampling_seed must fit an int64


class SGLangError(RuntimeError):
    """A request to an SGLang server or router failed; names the endpoint, the status and the server's message."""

    def __init__(self, endpoint: str, message: str, status: int | None = None):
        self.endpoint, self.status = endpoint, status
        where = f"{endpoint} -> HTTP {status}" if status is not None else endpoint
        super().__init__(f"SGLang {where}: {message}")


# ---- HTTP ---------------------------------------------------------------------------------------------------------


def error_message(body: Any) -> str:
    """The human part of an SGLang / router error body (several shapes exist across endpoints)."""
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and "message" in err:
            return str(err["message"])
        if err is not None:
            return str(err)
        if "message" in body:
            return str(body["message"])
    return str(body)[:2000]


@dataclass
class HttpClient:
    """A small JSON-over-HTTP client (stdlib only) with per-call timeouts and retries of transient failures."""

    base_url: str
    timeout_s: float = 60.0
    retries: int = 3
    backoff_s: float = 0.5
    api_key: str | None = None

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: dict[str, Any] | None = None,
        timeout_s: float | None = None,
        idempotent: bool = True,
    ) -> Any:
        """The decoded JSON (or text, or None for an empty body) of a 2xx answer; raises :class:`SGLangError`.

        A refused connection is retried always (the server never saw the request); timeouts, resets and 502/503/504
        only when ``idempotent``: a weight update or memory release must not run twice.
        """
        url = self.base_url + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        endpoint = f"{method} {path}"
        attempt = 0
        while True:
            req = urllib.request.Request(url, data=data, method=method, headers=headers)
            try:
                with urllib.request.urlopen(req, timeout=timeout_s or self.timeout_s) as resp:
                    return _decode(resp.read(), resp.headers.get("Content-Type", ""))
            except urllib.error.HTTPError as exc:
                payload = _decode(exc.read(), exc.headers.get("Content-Type", "") if exc.headers else "")
                transient = exc.code in (502, 503, 504) and idempotent
                if not transient or attempt >= self.retries:
                    raise SGLangError(endpoint, error_message(payload), exc.code) from None
                reason = f"HTTP {exc.code}"
            except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException, OSError) as exc:
                cause = exc.reason if isinstance(exc, urllib.error.URLError) else exc
                refused = isinstance(cause, ConnectionRefusedError)
                if not (refused or idempotent) or attempt >= self.retries:
                    raise SGLangError(endpoint, f"{type(cause).__name__}: {cause} ({url})") from exc
                reason = repr(cause)
            attempt += 1
            log.warning("%s %s failed (%s); retry %d/%d", method, url, reason, attempt, self.retries)
            time.sleep(self.backoff_s * 2 ** (attempt - 1))


def _decode(raw: bytes, content_type: str) -> Any:
    if not raw:
        return None
    text = raw.decode("utf-8", errors="replace")
    if "json" in content_type or text[:1] in "[{" or text in ("null", "true", "false"):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            pass
    return text


# ---- generation ---------------------------------------------------------------------------------------------------


def generate_body(requests: Sequence[EngineRequest], stop_token_ids: Sequence[int] = ()) -> dict[str, Any]:
    """The ``/generate`` body for a batch: token ids in, one sampling-params object per prompt, log-probs on."""
    params = []
    for r in requests:
        p: dict[str, Any] = {"max_new_tokens": int(r.params.max_new_tokens), "temperature": float(r.params.temperature)}
        if stop_token_ids:
            p["stop_token_ids"] = [int(t) for t in stop_token_ids]
        if r.params.seed is not None:
            p["sampling_seed"] = int(r.params.seed) & _MAX_SEED
        params.append(p)
    return {
        "input_ids": [[int(t) for t in r.prompt_ids] for r in requests],
        "sampling_params": params,
        "return_logprob": True,
    }


def parse_generation(item: dict[str, Any]) -> Generation:
    """One ``/generate`` answer -> :class:`Generation`; an aborted request or inconsistent ids raise."""
    meta = item.get("meta_info") or {}
    rid = meta.get("id", "?")
    finish = meta.get("finish_reason")
    kind = finish.get("type") if isinstance(finish, dict) else finish
    if kind == "abort":
        raise SGLangError("POST /generate", f"request {rid} aborted: {finish.get('message')}")
    if kind not in ("stop", "length"):
        raise SGLangError("POST /generate", f"request {rid}: unexpected finish_reason {finish!r}")
    entries = meta.get("output_token_logprobs")
    if entries is None:
        raise SGLangError("POST /generate", f"request {rid}: no output_token_logprobs (was return_logprob sent?)")
    logprobs, ids = [], []
    for e in entries:
        lp, tok = e[0], e[1]
        if lp is None:
            raise SGLangError("POST /generate", f"request {rid}: missing log-prob for token {tok}")
        logprobs.append(float(lp))
        ids.append(int(tok))
    out_ids = item.get("output_ids")
    # output_ids normally equals the logprob ids; a stop-trimmed variant (one shorter) is accepted, anything else not.
    if out_ids is not None and list(out_ids) != ids and list(out_ids) != ids[:-1]:
        raise SGLangError("POST /generate", f"request {rid}: output_ids {out_ids[:8]}... disagree with log-prob ids")
    return Generation(
        token_ids=ids,
        logprobs=logprobs,
        finish_reason=kind,
        text=item.get("text") or None,
        cached_tokens=int(meta.get("cached_tokens") or 0),
    )


# ---- scoring (a teacher) ------------------------------------------------------------------------------------------


def score_body(requests: Sequence[ScoreRequest]) -> dict[str, Any]:
    """The ``/generate`` body that scores each request's tokens: prefill only, input log-probs from the last prompt
    token on (its own entry comes back ``None``; the next ones score the response tokens)."""
    return {
        "input_ids": [[int(t) for t in r.prompt_ids + r.token_ids] for r in requests],
        "sampling_params": [{"max_new_tokens": 0, "temperature": 1.0} for _ in requests],
        "return_logprob": True,
        "logprob_start_len": [len(r.prompt_ids) - 1 for r in requests],
    }


def parse_scores(item: dict[str, Any], request: ScoreRequest) -> list[float]:
    """One scoring answer -> the log-prob of every response token; an abort, a missing value or other ids raise."""
    meta = item.get("meta_info") or {}
    rid = meta.get("id", "?")
    finish = meta.get("finish_reason")
    if isinstance(finish, dict) and finish.get("type") == "abort":
        raise SGLangError("POST /generate", f"score request {rid} aborted: {finish.get('message')}")
    entries = meta.get("input_token_logprobs")
    if entries is None:
        raise SGLangError("POST /generate", f"score request {rid}: no input_token_logprobs")
    if len(entries) != len(request.token_ids) + 1:
        raise SGLangError(
            "POST /generate",
            f"score request {rid}: {len(entries)} input log-probs for {len(request.token_ids)} tokens (expected one "
            "more: the last prompt token's)",
        )
    ids = [int(e[1]) for e in entries[1:]]
    if ids != [int(t) for t in request.token_ids]:
        raise SGLangError("POST /generate", f"score request {rid}: scored ids {ids[:8]}... are not the request's")
    values = [e[0] for e in entries[1:]]
    if any(v is None for v in values):
        raise SGLangError("POST /generate", f"score request {rid}: a response token has no log-prob")
    return [float(v) for v in values]


__all__ = [
    "SGLANG_ROUTER_VERSION",
    "SGLANG_VERSION",
    "HttpClient",
    "SGLangError",
    "error_message",
    "generate_body",
    "parse_generation",
    "parse_scores",
    "score_body",
]
