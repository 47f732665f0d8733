"""Judges and running them: the `Judge` protocol, an OpenAI-compatible HTTP judge, a local
aya_t5x model as judge, and `run_judge`, which asks a judge for many items and appends each
judgment to a JSONL file as it arrives, so that a rerun into the same folder resumes.

`HttpJudge` asks any `/chat/completions` endpoint (httpx: timeouts, retries with backoff,
Retry-After honoured); `LocalJudge` decodes the prompt greedily with an aya_t5x model.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import email.utils
import hashlib
import json
import os
import random
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol


class JudgeUnavailableError(ConnectionError):
  """The judge cannot be asked at all (unreachable, refused the key or the model)."""


class JudgeItemError(Exception):
  """One prompt failed (rejected by the endpoint, or an unreadable response); it is counted."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class JudgePrompt:
  system: str
  user: str


class Judge(Protocol):
  """What the win-rate and harmfulness runners need from a judge."""

  description: str  # names the judge in reports and in the resume check

  def complete_all(self, prompts: Sequence[JudgePrompt]
                   ) -> Iterator[tuple[int, str | JudgeItemError]]:
    """Yields (index into prompts, reply or the item's error) as each reply arrives."""
    ...


# ----------------------------------------------------------------------------------------
# Judges
# ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class EndpointConfig:
  """An OpenAI-compatible chat endpoint.

  base_url: where `/chat/completions` lives, e.g. "https://api.openai.com/v1" or
    "http://localhost:8000/v1"; a bare host ("http://localhost:8000") gets "/v1".
  model: the judge model's name at that endpoint.
  api_key_env: the environment variable holding the key (sent as a Bearer token); None
    for endpoints without authentication. The key itself never appears in reports.
  timeout_s: per request. max_retries: further attempts after a timeout, a connection
    error, HTTP 429 or 5xx, with exponential backoff from backoff_s (capped at
    max_backoff_s; a Retry-After header is honoured). concurrency: requests in flight.
  """

  base_url: str
  model: str
  api_key_env: str | None = None
  timeout_s: float = 120.0
  max_retries: int = 5
  backoff_s: float = 2.0
  max_backoff_s: float = 60.0
  concurrency: int = 4
  temperature: float = 0.0
  max_tokens: int = 512

  def __post_init__(self):
    parsed = urllib.parse.urlparse(self.base_url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
      raise ValueError(f"judge base URL {self.base_url!r} is not an http(s) URL; give one "
                       "like https://api.openai.com/v1 or http://localhost:8000/v1")
    if not self.model:
      raise ValueError("judge model name is empty; give the model the endpoint serves")
    if self.timeout_s <= 0 or self.max_retries < 0 or self.concurrency < 1:
      raise ValueError(f"judge endpoint: need timeout_s > 0, max_retries >= 0 and "
                       f"concurrency >= 1, got {self.timeout_s}, {self.max_retries}, "
                       f"{self.concurrency}")

  @property
  def url(self) -> str:
    base = self.base_url.rstrip("/")
    if urllib.parse.urlparse(base).path in ("", "/"):
      base += "/v1"
    return base + "/chat/completions"


_RETRIED_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
_FATAL_STATUS = frozenset({401, 403, 404})


class HttpJudge:
  """Asks an OpenAI-compatible endpoint, `concurrency` requests at a time (httpx).

  One `httpx.Client` (a connection pool sized to `concurrency`) serves every request;
  retries, backoff and `Retry-After` (seconds or an HTTP date) are handled here, since
  httpx retries only failed connections.
  """

  def __init__(self, endpoint: EndpointConfig):
    import httpx

    self.endpoint = endpoint
    self.description = f"{endpoint.model} at {endpoint.url}"
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if endpoint.api_key_env:
      key = os.environ.get(endpoint.api_key_env)
      if not key:
        raise ValueError(f"environment variable {endpoint.api_key_env} (named as the judge's "
                         "API key variable) is unset or empty; export it first")
      headers["Authorization"] = f"Bearer {key}"
    self._client = httpx.Client(
        headers=headers, timeout=endpoint.timeout_s,
        limits=httpx.Limits(max_connections=endpoint.concurrency,
                            max_keepalive_connections=endpoint.concurrency))

  def close(self) -> None:
    self._client.close()

  def complete(self, prompt: JudgePrompt) -> str:
    """The reply's text; raises JudgeItemError or JudgeUnavailableError."""
    import httpx

    cfg = self.endpoint
    body = {"model": cfg.model, "temperature": cfg.temperature, "max_tokens": cfg.max_tokens,
            "messages": [{"role": "system", "content": prompt.system},
                         {"role": "user", "content": prompt.user}]}
    reason, retry_after = "", None
    for attempt in range(cfg.max_retries + 1):
      if attempt:
        time.sleep(self._delay(attempt, retry_after))
      try:
        response = self._client.post(cfg.url, json=body)
      except httpx.TransportError as e:  # timeouts, refused or reset connections
        reason, retry_after = str(e) or type(e).__name__, None
        continue
      if response.is_success:
        return _reply_text(response.content)
      detail = response.content[:300].decode("utf-8", "replace").strip()
      if response.status_code in _FATAL_STATUS:
        raise JudgeUnavailableError(
            f"judge endpoint {cfg.url} answered HTTP {response.status_code} ({detail}); check "
            f"the URL, the model name {cfg.model!r} and the API key variable")
      if response.status_code not in _RETRIED_STATUS:
        raise JudgeItemError(f"HTTP {response.status_code}: {detail}")
      reason = f"HTTP {response.status_code} {detail}"
      retry_after = response.headers.get("Retry-After")
    raise JudgeUnavailableError(
        f"judge endpoint {cfg.url} failed {cfg.max_retries + 1} attempt(s); last: {reason}. "
        "Check that the server runs and the URL is right (--judge_url), or raise "
        "--judge_timeout / --judge_retries")

  def _delay(self, attempt: int, retry_after: str | None) -> float:
    wait = _retry_after_seconds(retry_after)
    if wait is not None:
      return min(wait, self.endpoint.max_backoff_s)
    backoff = self.endpoint.backoff_s * 2 ** (attempt - 1)
    # Jitter spreads concurrent retries apart.
    return min(backoff, self.endpoint.max_backoff_s) * random.uniform(0.5, 1.0)

  def complete_all(self, prompts: Sequence[JudgePrompt]
                   ) -> Iterator[tuple[int, str | JudgeItemError]]:
    with concurrent.futures.ThreadPoolExecutor(self.endpoint.concurrency) as pool:
      futures = {pool.submit(self.complete, p): i for i, p in enumerate(prompts)}
      try:
        for future in concurrent.futures.as_completed(futures):
          try:
            yield futures[future], future.result()
          except JudgeItemError as e:
            yield futures[future], e
      finally:
        for future in futures:
          future.cancel()


def _retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
  """A `Retry-After` header in seconds: a number of seconds or an HTTP date (RFC 9110)."""
  if not value:
    return None
  try:
    return max(float(value), 0.0)
  except ValueError:
    pass
  try:
    when = email.utils.parsedate_to_datetime(value)
  except (TypeError, ValueError):
    return None
  if when.tzinfo is None:
    when = when.replace(tzinfo=datetime.UTC)
  return max(when.timestamp() - (time.time() if now is None else now), 0.0)


def _reply_text(payload: bytes) -> str:
  try:
    content = json.loads(payload)["choices"][0]["message"]["content"]
  except (ValueError, KeyError, IndexError, TypeError) as e:
    raise JudgeItemError(f"not a chat completion response: {payload[:200]!r}") from e
  if not isinstance(content, str):
    raise JudgeItemError(f"message content is {type(content).__name__}, not text")
  return content


class LocalJudge:
  """An aya_t5x model as the judge: system and user text joined, decoded greedily.

  Prompts longer than the batching's `max_input_length` keep their end (the answers and
  the format reminder); `truncated` counts them. Replies are yielded a few batches at a
  time, so that a long run's judgments reach the judgments file as it goes.
  """

  def __init__(self, params: Any, config, vocabulary, *, description: str,
               batching=None, max_decode_length: int = 128):
    from aya_t5x.evaluation import predict

    self.params, self.config, self.vocabulary = params, config, vocabulary
    self.description = description
    self.batching = batching or predict.Batching(batch_size=8, max_input_length=2048,
                                                 truncate="left")
    self.max_decode_length = max_decode_length
    self.truncated = 0

  def complete_all(self, prompts: Sequence[JudgePrompt]
                   ) -> Iterator[tuple[int, str | JudgeItemError]]:
    import numpy as np

    from aya_t5x import decoding
    from aya_t5x.evaluation import predict

    options = decoding.DecodingOptions(method="greedy", max_decode_length=self.max_decode_length)
    chunk = 4 * self.batching.batch_size
    for start in range(0, len(prompts), chunk):
      inputs = [np.asarray(list(self.vocabulary.encode(f"{p.system}\n\n{p.user}"))
                           + [decoding.EOS_ID], np.int32) for p in prompts[start:start + chunk]]
      outputs, cut = predict.generate(self.params, self.config, inputs, self.batching, options)
      self.truncated += cut.inputs
      for offset, ids in enumerate(outputs):
        yield start + offset, self.vocabulary.decode([int(t) for t in ids if t > decoding.EOS_ID])


# ----------------------------------------------------------------------------------------
# Running a judge with resumption
# ----------------------------------------------------------------------------------------


def _digest(*parts: str) -> str:
  return hashlib.blake2b("\x1f".join(parts).encode("utf-8"), digest_size=12).hexdigest()


def run_judge(judge: Judge, items: Sequence[tuple[str, JudgePrompt, dict[str, Any]]],
              path: str | os.PathLike, parse) -> dict[str, dict[str, Any]]:
  """Judges each (key, prompt, fields) item; returns key -> record, appended to `path`.

  A record is `fields` plus the judge's `reply`, the parsed `verdict` (`parse(reply)`, None
  when unparseable) and `error` (when the item failed). Records already in `path` for the
  same key, judge and prompt are reused (failed ones are asked again); a record of the
  same key with another prompt or judge means the folder belongs to another run.
  """
  path = Path(path)
  done: dict[str, dict[str, Any]] = {}
  digests = {key: _digest(judge.description, prompt.system, prompt.user)
             for key, prompt, _ in items}
  if path.exists():
    with open(path, encoding="utf-8") as f:
      for number, line in enumerate(f, start=1):
        try:
          record = json.loads(line)
        except ValueError:
          continue  # a line cut short by an interrupted run; it is judged again
        key = record.get("key")
        if key in digests and record.get("digest") != digests[key]:
          raise ValueError(f"{path}:{number}: item {key!r} was judged with another judge or "
                           "prompt; write to a new --output_dir (or delete the file)")
        if key in digests and record.get("error") is None:
          done[key] = record
  todo = [(key, prompt, fields) for key, prompt, fields in items if key not in done]
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, "a", encoding="utf-8") as out:
    for index, reply in judge.complete_all([prompt for _, prompt, _ in todo]):
      key, _, fields = todo[index]
      failed = isinstance(reply, JudgeItemError)
      record = {"key": key, **fields, "judge": judge.description, "digest": digests[key],
                "reply": None if failed else reply,
                "verdict": None if failed else parse(reply),
                "error": str(reply) if failed else None}
      out.write(json.dumps(record, ensure_ascii=False) + "\n")
      out.flush()
      done[key] = record
  return done
