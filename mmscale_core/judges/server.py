"""Any OpenAI-compatible chat server as a prompted judge (vLLM ``serve``, llama.cpp's server, a hosted API).

One ``POST {URL}/chat/completions`` per query, ``URL`` being the base URL as
servers print it (``http://127.0.0.1:8000/v1``): a user message with the image
as a JPEG data URL and the prompt text, greedy (``temperature`` 0). The API
key comes from ``OPENAI_API_KEY`` when set, never from the command line or a
file, and is sent as a bearer token.

A busy or flaky server is expected, not fatal: timeouts, connection errors,
429 and 5xx answers are retried with exponential backoff (a 429's
``Retry-After`` is honoured, capped at ``max_wait``); after the last attempt
the row gets an ``error`` and no prediction, and the run goes on. Other 4xx
answers (a wrong model name, a bad request) are not retried. How many queries
are in flight at once is the caller's bound (:func:`mmscale_core.judges.runner.run_queries`).
"""

from __future__ import annotations

import base64
import io
import os
import threading
import time
from dataclasses import dataclass

import httpx
from PIL import Image

from mmscale_core.models.base import resize_max_side

API_KEY_ENV = "OPENAI_API_KEY"
IMAGE_MAX_SIDE = 768
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
EXCERPT = 200


def image_data_url(image: Image.Image, max_side: int = IMAGE_MAX_SIDE) -> str:
    """``data:image/jpeg;base64,...`` of the image, longer side at most ``max_side``."""
    buffer = io.BytesIO()
    resize_max_side(image.convert("RGB"), max_side).save(buffer, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to the backoff


def _content(payload: object) -> str:
    """The answer text of a chat completion, or ValueError saying what is missing."""
    try:
        content = payload["choices"][0]["message"]["content"]  # type: ignore[index]
    except (KeyError, IndexError, TypeError):
        raise ValueError("no choices[0].message.content in the response") from None
    if content is None:
        return ""
    if isinstance(content, list):  # some servers answer with content parts
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    if not isinstance(content, str):
        raise ValueError(f"choices[0].message.content is a {type(content).__name__}, not text")
    return content


@dataclass
class ServerJudge:
    """The client of one model on one server; :meth:`complete` is thread-safe."""

    url: str
    model: str
    max_tokens: int = 16
    timeout: float = 60.0
    retries: int = 4  # attempts after the first
    backoff: float = 1.0  # seconds before the first retry, doubled each time
    max_wait: float = 60.0

    def __post_init__(self):
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(API_KEY_ENV)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self.endpoint = self.url.rstrip("/") + "/chat/completions"
        self._client = httpx.Client(headers=headers, timeout=self.timeout)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._client.close()

    def body(self, prompt: str, image_url: str) -> dict:
        return {"model": self.model, "temperature": 0, "max_tokens": self.max_tokens,
                "messages": [{"role": "user", "content": [
                    {"type": "image_url", "image_url": {"url": image_url}},
                    {"type": "text", "text": prompt}]}]}

    def complete(self, prompt: str, image_url: str, sleep=time.sleep) -> tuple[str, str | None]:
        """(answer text, None) or ("", the error after the last attempt)."""
        body = self.body(prompt, image_url)
        error = "no attempt made"
        for attempt in range(self.retries + 1):
            wait = min(self.max_wait, self.backoff * 2 ** attempt)
            try:
                response = self._client.post(self.endpoint, json=body)
            except httpx.TimeoutException:
                error = f"timeout after {self.timeout:g} s"
            except httpx.TransportError as err:
                error = f"connection error: {type(err).__name__}: {str(err)[:EXCERPT]}"
            else:
                if response.status_code == 200:
                    try:
                        return _content(response.json()), None
                    except ValueError as err:  # not JSON, or not a chat completion: a server bug, not retried
                        return "", f"unexpected response ({err}): {response.text[:EXCERPT]!r}"
                error = f"HTTP {response.status_code}: {response.text[:EXCERPT]!r}"
                if response.status_code not in RETRY_STATUS:
                    return "", error
                given = _retry_after(response)
                if given is not None:
                    wait = min(self.max_wait, given)
            if attempt < self.retries:
                sleep(wait)
        return "", f"{error} (after {self.retries + 1} attempts)"
