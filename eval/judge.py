"""Optional LLM judge: a small client for an OpenAI-compatible ``/chat/completions`` endpoint.

Benchmarks whose official scorer needs an LLM (MMVU's GPT-4o judge, TempCompass's fallback and
captioning judge) take ``judge=`` in ``score``; without one those items score None (unjudged).
Any server speaking the OpenAI chat API works (OpenAI, vLLM, SGLang, a local proxy).

Transient failures (connection errors, HTTP 429/5xx) are retried with exponential backoff by
urllib3's ``Retry``; anything still failing raises :class:`JudgeError` naming the endpoint, so a
score is never invented for an item the judge could not see.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

logger = logging.getLogger(__name__)

RETRY_STATUS = (429, 500, 502, 503, 504)


class JudgeError(RuntimeError):
    """The judge endpoint failed or answered with something that is not a chat completion."""


@dataclass
class OpenAIJudge:
    """Chat-completions client.

    ``base_url`` is the API root (``http://host:port/v1``); requests go to
    ``{base_url}/chat/completions``. ``temperature`` is the default for calls that do not set it.
    """

    base_url: str
    model: str
    api_key: str | None = None
    timeout_s: float = 60.0
    max_retries: int = 3
    backoff_s: float = 0.5
    temperature: float = 0.0
    n_calls: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"judge base_url must be http(s)://..., got {self.base_url!r}")
        self._session = requests.Session()
        retry = Retry(total=self.max_retries, backoff_factor=self.backoff_s, status_forcelist=RETRY_STATUS,
                      allowed_methods=frozenset({"POST"}), raise_on_status=False)
        adapter = HTTPAdapter(max_retries=retry)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def complete(self, messages: list[dict], max_tokens: int = 128, temperature: float | None = None,
                 json_mode: bool = False) -> str:
        """The assistant text of one completion for ``messages``.

        ``json_mode`` asks for ``response_format={"type": "json_object"}`` (structured replies).
        Raises JudgeError on a non-2xx status after retries, a timeout/connection failure, or a
        body without ``choices[0].message.content``.
        """
        payload = {"model": self.model, "messages": messages, "max_tokens": max_tokens,
                   "temperature": self.temperature if temperature is None else temperature}
        if json_mode:
            payload["response_format"] = {"type": "json_object"}
        try:
            resp = self._session.post(self.url, json=payload, headers=self._headers(), timeout=self.timeout_s)
        except requests.RequestException as exc:
            raise JudgeError(f"judge request to {self.url} failed: {exc}") from exc
        self.n_calls += 1
        if not resp.ok:
            raise JudgeError(f"judge {self.url} answered HTTP {resp.status_code}: {resp.text[:300]}")
        try:
            content = resp.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise JudgeError(f"judge {self.url} returned no choices[0].message.content: {resp.text[:300]}") from exc
        if content is None:
            raise JudgeError(f"judge {self.url} returned a null message content")
        return str(content)

    def close(self) -> None:
        self._session.close()
