"""A text policy backed by any OpenAI-compatible chat endpoint (a served model: SGLang, vLLM, an API).

``OpenAIChatPolicy("http://host:port/v1", model="name")`` is a :data:`cod_envs.base.TextPolicy`: messages in,
the first choice's text out. Standard library only (``urllib``), so evaluation needs nothing extra installed.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass


class EndpointError(RuntimeError):
    """The endpoint did not answer with a usable completion."""


@dataclass
class OpenAIChatPolicy:
    """POST ``{base_url}/chat/completions`` per call; seeded per call when ``seed`` is set."""

    base_url: str
    model: str = "default"
    temperature: float = 1.0
    max_tokens: int = 1024
    timeout_s: float = 120.0
    seed: int | None = None
    api_key_env: str = "OPENAI_API_KEY"

    def __call__(self, messages: list[dict[str, str]]) -> str:
        """The completion text for ``messages``."""
        body = {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        if self.seed is not None:
            body["seed"] = self.seed
        headers = {"Content-Type": "application/json"}
        if key := os.environ.get(self.api_key_env):
            headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(
            self.base_url.rstrip("/") + "/chat/completions",
            data=json.dumps(body).encode(),
            headers=headers,
            method="POST",
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                payload = json.loads(resp.read().decode())
        except (urllib.error.URLError, TimeoutError, json.JSONDecodeError) as e:
            raise EndpointError(f"{self.base_url}: {e}") from e
        try:
            return payload["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError) as e:
            raise EndpointError(f"{self.base_url}: unexpected response {str(payload)[:200]}") from e
