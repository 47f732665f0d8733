"""LLM-as-a-judge: pairwise win rates of two models' generations, by the recipe's rules.

The recipe (RECIPE.md §5) shows a judge the instruction and two answers in random order;
the judge prefers one by asking, in this order, whether an answer is in the requested
language, answers the request, is factually and semantically sound, and is grammatical,
and ends with `Preferred: Answer (A)`, `Preferred: Answer (B)` or `Preferred: TIE`.

A judge is anything with `complete_all(prompts)` (see `Judge`): `HttpJudge` asks any
OpenAI-compatible `/chat/completions` endpoint (standard library only; timeouts,
retries with backoff, on httpx), `LocalJudge` decodes the prompt greedily with an aya_t5x model.

    a = read_generations("model_a.jsonl"); b = read_generations("model_b.jsonl")
    report = pairwise_win_rates(judge, join_generations(a, b), "out/", seed=0)

Every judgment is appended to `judgments.jsonl` as it arrives (which model was shown as
A, the judge's raw reply, the parsed verdict), so a rerun into the same folder resumes;
replies that do not parse are counted as unparseable, never fatal. Win, tie and loss
rates per language come with a Wilson 95% interval, as JSON and markdown.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import datetime
import email.utils
import hashlib
import json
import os
import random
import re
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from aya_t5x import reporting


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
# The recipe's pairwise prompt and its verdicts
# ----------------------------------------------------------------------------------------

PAIRWISE_SYSTEM = """\
You are an impartial judge. You are given an instruction and two answers to it, \
Answer (A) and Answer (B). Decide which answer is better by these criteria, in this \
order of priority; go to the next criterion only when both answers are equally good on \
the previous one:
1. The answer is written in the language the instruction asks for (if it names none, the \
language of the instruction).
2. The answer does what the instruction asks.
3. The answer is factually correct and makes sense.
4. The answer is grammatical and fluent.
The order in which the answers are shown is random and says nothing about their quality.
You may explain your reasoning briefly. The last line of your reply must be exactly one of:
Preferred: Answer (A)
Preferred: Answer (B)
Preferred: TIE"""

PAIRWISE_USER = """\
Instruction:
{instruction}

Answer (A):
{answer_a}

Answer (B):
{answer_b}

Which answer is better? End with "Preferred: Answer (A)", "Preferred: Answer (B)" or \
"Preferred: TIE"."""

_PREFERRED = re.compile(r"preferred\s*\**\s*:\s*\**\s*(?:answer\s*\(?\s*([ab])\b\s*\)?|(tie)\b)",
                        re.IGNORECASE)


def pairwise_prompt(instruction: str, answer_a: str, answer_b: str) -> JudgePrompt:
  return JudgePrompt(system=PAIRWISE_SYSTEM, user=PAIRWISE_USER.format(
      instruction=instruction, answer_a=answer_a, answer_b=answer_b))


def parse_preference(reply: Any) -> str | None:
  """'A', 'B' or 'TIE' from a judge's reply; None when it names none or contradicts itself.

  Accepts the format with any case, markdown bold and without the parentheses
  ("**Preferred:** answer b"); a reply that states two different verdicts is unparseable.
  """
  if not isinstance(reply, str):
    return None
  verdicts = {(letter or tie).upper() for letter, tie in _PREFERRED.findall(reply)}
  return verdicts.pop() if len(verdicts) == 1 else None


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
# Generations
# ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class Generation:
  id: str
  prompt: str
  completion: str
  language: str
  where: str  # file:line


@dataclasses.dataclass(frozen=True, kw_only=True)
class GenerationFile:
  path: str
  generations: list[Generation]
  skipped: dict[str, str]  # file:line -> why


PROMPT_KEYS = ("prompt", "inputs")  # `aya-t5x infer` writes "inputs"
ID_KEYS = ("id", "line")            # and "line", the prompt's line in its input file


def read_generations(path: str | os.PathLike, *, language: str | None = None,
                     completion_key: str = "completion", language_key: str = "language"
                     ) -> GenerationFile:
  """Reads JSONL generations: {"id" or "line", "prompt" or "inputs", "completion", "language"}.

  `language` is used for records without a language field. Unreadable lines and records
  without a prompt or completion are skipped and listed; a record without a language
  (when `language` is None) or a repeated id is an error naming the line.
  """
  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"generations file {path} does not exist (JSONL: id, prompt, "
                            "completion, language per line, e.g. from aya-t5x infer)")
  generations, skipped, seen = [], {}, {}
  with open(path, encoding="utf-8") as f:
    for number, line in enumerate(f, start=1):
      where = f"{path}:{number}"
      if not line.strip():
        continue
      try:
        record = json.loads(line)
        if not isinstance(record, dict):
          raise ValueError("not an object")
      except ValueError as e:
        skipped[where] = f"not a JSON object ({e})"
        continue
      prompt = next((record[k] for k in PROMPT_KEYS if isinstance(record.get(k), str)), None)
      completion = record.get(completion_key)
      if prompt is None or not isinstance(completion, str):
        skipped[where] = (f"needs a string {' or '.join(PROMPT_KEYS)} field and a string "
                          f"{completion_key!r} field")
        continue
      lang = record.get(language_key, language)
      if not isinstance(lang, str) or not lang:
        raise ValueError(f"{where}: no {language_key!r} field; add one to every record or "
                         "give the file's language (--language)")
      key = next((record[k] for k in ID_KEYS if k in record), number)
      key = str(key)
      if key in seen:
        raise ValueError(f"{where}: id {key!r} repeats {seen[key]}; ids must be unique to "
                         "join two models' generations")
      seen[key] = where
      generations.append(Generation(id=key, prompt=prompt, completion=completion,
                                    language=lang, where=where))
  return GenerationFile(path=str(path), generations=generations, skipped=skipped)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Pairs:
  pairs: list[tuple[Generation, Generation]]
  only_a: list[str]  # ids without a partner
  only_b: list[str]
  skipped: dict[str, str]


def join_generations(a: GenerationFile, b: GenerationFile) -> Pairs:
  """Pairs the two models' answers to the same prompt by id (in A's order).

  The same id with a different prompt or language means the files come from different
  prompt sets: that is an error, not a silent mismatch.
  """
  by_id = {g.id: g for g in b.generations}
  pairs, only_a = [], []
  for ga in a.generations:
    gb = by_id.pop(ga.id, None)
    if gb is None:
      only_a.append(ga.id)
      continue
    if ga.prompt.strip() != gb.prompt.strip() or ga.language != gb.language:
      raise ValueError(f"id {ga.id!r}: {ga.where} and {gb.where} differ in prompt or "
                       "language; both files must answer the same prompts (same ids)")
    pairs.append((ga, gb))
  return Pairs(pairs=pairs, only_a=only_a, only_b=list(by_id),
               skipped={**a.skipped, **b.skipped})


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


# ----------------------------------------------------------------------------------------
# Rates and intervals
# ----------------------------------------------------------------------------------------


def shown_first(seed: int, key: str) -> bool:
  """Whether model A is shown as Answer (A) for this item: a fair coin seeded by (seed, id).

  Hashing the id (rather than drawing in file order) gives every item the same order in
  a resumed or reordered run.
  """
  return hashlib.blake2b(f"{seed}\x1f{key}".encode(), digest_size=1).digest()[0] % 2 == 0


def _counts_to_rates(counts: Mapping[str, int]) -> dict[str, Any]:
  judged = counts["win"] + counts["tie"] + counts["loss"]
  row: dict[str, Any] = {"pairs": sum(counts.values()), "judged": judged, **counts}
  for outcome in ("win", "tie", "loss"):
    row[f"{outcome}_rate"] = counts[outcome] / judged if judged else None
  row["win_rate_ci95"] = reporting.wilson_interval(counts["win"], judged)
  row["loss_rate_ci95"] = reporting.wilson_interval(counts["loss"], judged)
  return row


OUTCOMES = ("win", "tie", "loss", "unparseable", "failed")


def pairwise_win_rates(judge: Judge, joined: Pairs, output_dir: str | os.PathLike, *,
                       seed: int = 0, name_a: str = "A", name_b: str = "B") -> dict[str, Any]:
  """Judges every pair and writes win_rates.json, win_rates.md and judgments.jsonl.

  Rates are model A's, over the judged pairs (wins + ties + losses); unparseable replies
  and failed requests are counted beside them. `first_shown_preferred` is the share of
  decisive verdicts that went to whichever answer was shown first (0.5 = no position bias).
  """
  output_dir = Path(output_dir)
  items = []
  for ga, gb in joined.pairs:
    a_first = shown_first(seed, ga.id)
    first, second = (ga, gb) if a_first else (gb, ga)
    items.append((ga.id, pairwise_prompt(ga.prompt, first.completion, second.completion),
                  {"id": ga.id, "language": ga.language,
                   "model_a_shown_as": "A" if a_first else "B"}))
  records = run_judge(judge, items, output_dir / "judgments.jsonl", parse_preference)

  counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
  first_preferred = decisive = 0
  for key, _, fields in items:
    record = records[key]
    verdict = record["verdict"]
    if record["error"] is not None:
      outcome = "failed"
    elif verdict is None:
      outcome = "unparseable"
    elif verdict == "TIE":
      outcome = "tie"
    else:
      decisive += 1
      first_preferred += verdict == "A"
      outcome = "win" if verdict == fields["model_a_shown_as"] else "loss"
    counts[fields["language"]][outcome] += 1
    counts["all"][outcome] += 1
  report = {
      "what": "pairwise_win_rates", "model_a": name_a, "model_b": name_b,
      "judge": judge.description, "seed": seed, "pairs": len(items),
      "unmatched": {"only_a": len(joined.only_a), "only_b": len(joined.only_b),
                    "examples": (joined.only_a + joined.only_b)[:5]},
      "skipped_lines": len(joined.skipped), "skipped_examples": dict(
          list(joined.skipped.items())[:5]),
      "first_shown_preferred": first_preferred / decisive if decisive else None,
      "languages": {lang: _counts_to_rates({o: c[o] for o in OUTCOMES})
                    for lang, c in sorted(counts.items()) if lang != "all"},
      "overall": _counts_to_rates({o: counts["all"][o] for o in OUTCOMES}),
  }
  reporting.write_report(output_dir, "win_rates", report, format_win_rates(report))
  return report


# ----------------------------------------------------------------------------------------
# Reports
# ----------------------------------------------------------------------------------------


def format_win_rates(report: Mapping[str, Any]) -> str:
  percent = reporting.percent
  rows = [[lang, r["judged"], percent(r["win_rate"]), percent(r["tie_rate"]),
           percent(r["loss_rate"]), reporting.percent_interval(r["win_rate_ci95"]),
           r["unparseable"], r["failed"]]
          for lang, r in [*report["languages"].items(), ("**all**", report["overall"])]]
  table = reporting.markdown_table(["language", "judged", "win", "tie", "loss",
                                    "win 95% CI (Wilson)", "unparseable", "failed"], rows)
  return "\n\n".join([
      f"# {report['model_a']} vs {report['model_b']}: win rates of {report['model_a']}",
      f"Judge: {report['judge']}; answer order seeded with {report['seed']}; "
      f"{report['pairs']} pairs ({report['unmatched']['only_a']} ids only in A, "
      f"{report['unmatched']['only_b']} only in B, {report['skipped_lines']} lines skipped). "
      f"First-shown answer preferred in {percent(report['first_shown_preferred'])} of "
      "decisive verdicts.",
      table]) + "\n"
