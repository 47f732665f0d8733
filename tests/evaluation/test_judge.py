"""Pairwise judging against a real local HTTP server, verdict parsing, Wilson intervals, and
the local aya_t5x judge against Hugging Face greedy generation."""

import dataclasses
import http.server
import json
import re
import socket
import threading
import time

import pytest
import seqio
import torch

from aya_t5x import cli, reporting, testing
from aya_t5x.checkpoints import hf
from aya_t5x.evaluation import predict
from aya_t5x.evaluation.judging import backends, generation, pairwise
from aya_t5x.testing.models import hf_reference_model, hf_state_dict_numpy

KEY = "sekret-test-key"
MODEL = "judge-1"
_ANSWERS = re.compile(r"Answer \(A\):\n(.*)\n\nAnswer \(B\):\n(.*)\n\nWhich answer", re.S)


class _Judge(http.server.BaseHTTPRequestHandler):
  """A chat-completions server that checks each request and judges by marker words.

  GOOD marks a good answer; GARBLE gets a reply without a verdict, REJECT an HTTP 400,
  BADJSON a body that is not JSON, FLAKY a 503 on its first request, SLOW a first reply
  later than the client's timeout. Anything wrong with a request is recorded in
  `server.problems` and answered with 422.
  """

  def log_message(self, *args):
    pass

  def _send(self, status, body, headers=()):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    self.send_response(status)
    self.send_header("Content-Type", "application/json")
    self.send_header("Content-Length", str(len(data)))
    for name, value in headers:
      self.send_header(name, value)
    self.end_headers()
    self.wfile.write(data)

  def do_POST(self):  # noqa: N802 (the http.server API)
    server = self.server
    body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
    problems = []
    if self.path != "/v1/chat/completions":
      problems.append(f"path {self.path}")
    if self.headers.get("Authorization") != f"Bearer {server.key}":
      self._send(401, {"error": {"message": "invalid api key"}})
      return
    if self.headers.get("Content-Type") != "application/json" or body.get("model") != MODEL:
      problems.append(f"headers or model {body.get('model')}")
    messages = body.get("messages", [])
    if [m.get("role") for m in messages] != ["system", "user"]:
      problems.append(f"roles {[m.get('role') for m in messages]}")
    user = messages[-1].get("content", "") if messages else ""
    match = _ANSWERS.search(user)
    if server.expect_system and messages[0].get("content") != server.expect_system:
      problems.append("system prompt")
    if match is None and server.expect_system == pairwise.PAIRWISE_SYSTEM:
      problems.append("no answers in the user message")
    if problems:
      server.problems.extend(problems)
      self._send(422, {"error": problems})
      return
    with server.lock:
      server.requests.append(user)
      first_time = user not in server.seen
      server.seen.add(user)
    if "FLAKY" in user and first_time:
      self._send(503, {"error": "busy"}, [("Retry-After", "0")])
      return
    if "SLOW" in user and first_time:
      time.sleep(0.6)
    if "REJECT" in user:
      self._send(400, {"error": {"message": "content policy"}})
      return
    if "BADJSON" in user:
      self._send(200, b"<html>not json</html>")
      return
    if "GARBLE" in user:
      reply = "Both answers have merits and I cannot decide."
    else:
      a, b = ("GOOD" in part for part in match.groups())
      verdict = "TIE" if a == b else "Answer (A)" if a else "Answer (B)"
      reply = f"Answer (A) is {'fine' if a else 'weak'}.\nPreferred: {verdict}"
    self._send(200, {"choices": [{"index": 0, "message": {"role": "assistant",
                                                           "content": reply}}]})


class _Server(http.server.ThreadingHTTPServer):
  def handle_error(self, request, client_address):
    pass  # the SLOW case's client has hung up by the time its reply is written


@pytest.fixture
def server():
  httpd = _Server(("127.0.0.1", 0), _Judge)
  httpd.key, httpd.expect_system = KEY, pairwise.PAIRWISE_SYSTEM
  httpd.problems, httpd.requests, httpd.seen, httpd.lock = [], [], set(), threading.Lock()
  thread = threading.Thread(target=httpd.serve_forever, daemon=True)
  thread.start()
  yield httpd
  httpd.shutdown()
  httpd.server_close()


def endpoint(server, **kwargs):
  fields = dict(base_url=f"http://127.0.0.1:{server.server_address[1]}/v1", model=MODEL,
                api_key_env="AYA_TEST_JUDGE_KEY", timeout_s=5.0, max_retries=2,
                backoff_s=0.01, concurrency=3)
  return backends.EndpointConfig(**(fields | kwargs))


# id: (language, model A's answer, model B's answer, A's expected outcome)
CASES = {
    "1": ("sw", "GOOD jibu", "jibu", "win"),
    "2": ("sw", "GOOD jibu", "jibu baya", "win"),
    "3": ("sw", "GOOD FLAKY", "jibu", "win"),     # retried after a 503
    "4": ("sw", "jibu", "GOOD jibu", "loss"),
    "5": ("yo", "GOOD idahun", "GOOD idahun", "tie"),
    "6": ("yo", "GARBLE", "idahun", "unparseable"),
    "7": ("yo", "REJECT", "idahun", "failed"),      # HTTP 400: counted, not fatal
    "8": ("yo", "BADJSON", "idahun", "failed"),     # 200 without a completion body
    "9": ("yo", "idahun", "GOOD SLOW", "loss"),     # the first reply times out, the retry works
}


def write_generations(tmp_path):
  a = [{"id": k, "prompt": f"Swali {k}", "completion": ca, "language": lang}
       for k, (lang, ca, _, _) in CASES.items()]
  a.append({"id": "10", "prompt": "only in A", "completion": "x", "language": "sw"})
  # B as `aya-t5x infer` writes it ("inputs"), plus a language field and a broken line.
  b = [json.dumps({"id": k, "inputs": f"Swali {k}", "completion": cb, "language": lang})
       for k, (lang, _, cb, _) in CASES.items()]
  (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in a) + "\n")
  (tmp_path / "b.jsonl").write_text("\n".join(b[:4] + ["{not json"] + b[4:]) + "\n")
  return tmp_path / "a.jsonl", tmp_path / "b.jsonl"


def test_pairwise_win_rates_over_http_undo_the_random_order(server, tmp_path, monkeypatch):
  monkeypatch.setenv("AYA_TEST_JUDGE_KEY", KEY)
  a, b = write_generations(tmp_path)
  joined = generation.join_generations(generation.read_generations(a),
                                       generation.read_generations(b))
  assert joined.only_a == ["10"] and len(joined.skipped) == 1
  judge = backends.HttpJudge(endpoint(server, timeout_s=0.3))
  report = pairwise.pairwise_win_rates(judge, joined, tmp_path / "out", seed=5,
                                      name_a="aya", name_b="mt0")
  assert server.problems == []

  records = {r["id"]: r for r in map(json.loads, (tmp_path / "out/judgments.jsonl").open())}
  # The seed shows model A first and second among the wins and among the losses.
  for outcome in ("win", "loss"):
    assert {records[k]["model_a_shown_as"] for k, case in CASES.items()
            if case[3] == outcome} == {"A", "B"}
  for key, (_, _, _, outcome) in CASES.items():
    record = records[key]
    assert record["model_a_shown_as"] == ("A" if pairwise.shown_first(5, key) else "B")
    if outcome in ("win", "loss"):
      won = record["verdict"] == record["model_a_shown_as"]
      assert won == (outcome == "win"), key
  sw, yo = report["languages"]["sw"], report["languages"]["yo"]
  assert (sw["win"], sw["tie"], sw["loss"], sw["judged"]) == (3, 0, 1, 4)
  assert sw["win_rate"] == 0.75 and sw["win_rate_ci95"] == reporting.wilson_interval(3, 4)
  assert (yo["win"], yo["tie"], yo["loss"], yo["unparseable"], yo["failed"]) == (0, 1, 1, 1, 2)
  assert report["overall"]["pairs"] == 9 and report["unmatched"]["only_a"] == 1
  assert report["skipped_lines"] == 1
  saved = json.loads((tmp_path / "out/win_rates.json").read_text())
  assert saved["languages"]["sw"]["win"] == 3
  markdown = (tmp_path / "out/win_rates.md").read_text()
  assert "| sw | 4 | 75.0% | 0.0% | 25.0% |" in markdown

  # A rerun resumes: only the two failed items are asked again (a longer timeout, so
  # that a busy machine cannot add retries to the count; the judge is the same).
  before = len(server.requests)
  judge = backends.HttpJudge(endpoint(server))
  again = pairwise.pairwise_win_rates(judge, joined, tmp_path / "out", seed=5)
  assert len(server.requests) - before == 2
  assert again["languages"] == report["languages"]
  # Another seed means other prompts: the folder belongs to another run.
  with pytest.raises(ValueError, match="another judge or prompt"):
    pairwise.pairwise_win_rates(judge, joined, tmp_path / "out", seed=6)


def test_cli_judges_over_http_and_names_a_missing_key(server, tmp_path, monkeypatch, capsys):
  a, b = write_generations(tmp_path)

  def args(out):
    return ["judge", "pairwise", "--a", str(a), "--b", str(b), "--output_dir", str(out),
            "--judge_url", f"http://127.0.0.1:{server.server_address[1]}",
            "--judge_model", MODEL, "--api_key_env", "AYA_TEST_JUDGE_KEY",
            "--judge_timeout", "0.3", "--judge_retries", "2"]

  monkeypatch.delenv("AYA_TEST_JUDGE_KEY", raising=False)
  assert cli.main(args(tmp_path / "out")) == 2
  assert "AYA_TEST_JUDGE_KEY" in capsys.readouterr().err
  monkeypatch.setenv("AYA_TEST_JUDGE_KEY", KEY)
  assert cli.main(args(tmp_path / "out")) == 0
  assert "| sw | 4 | 75.0% |" in capsys.readouterr().out
  assert server.problems == []
  monkeypatch.setenv("AYA_TEST_JUDGE_KEY", "wrong")
  assert cli.main(args(tmp_path / "out2")) == 2
  err = capsys.readouterr().err
  assert "HTTP 401" in err and f"127.0.0.1:{server.server_address[1]}/v1/chat" in err


def test_unreachable_endpoint_is_an_error_naming_the_url(tmp_path):
  with socket.socket() as s:  # a port that nothing listens on
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  judge = backends.HttpJudge(backends.EndpointConfig(
      base_url=f"http://127.0.0.1:{port}", model=MODEL, max_retries=1, backoff_s=0.01))
  with pytest.raises(backends.JudgeUnavailableError,
                     match=rf"127\.0\.0\.1:{port}/v1/chat/completions failed 2 attempt"):
    judge.complete(pairwise.pairwise_prompt("q", "a", "b"))


def test_endpoint_urls_and_options_are_checked():
  assert backends.EndpointConfig(base_url="http://h:1", model="m").url == \
      "http://h:1/v1/chat/completions"
  assert backends.EndpointConfig(base_url="https://api.x.org/v1/", model="m").url == \
      "https://api.x.org/v1/chat/completions"
  with pytest.raises(ValueError, match="not an http"):
    backends.EndpointConfig(base_url="localhost:8000", model="m")
  with pytest.raises(ValueError, match="concurrency"):
    backends.EndpointConfig(base_url="http://h", model="m", concurrency=0)


@pytest.mark.parametrize("reply, verdict", [
    ("Preferred: Answer (A)", "A"),
    ("reasons...\npreferred: answer (b)", "B"),
    ("Preferred: TIE", "TIE"),
    ("**Preferred:** Answer (B)", "B"),
    ("Preferred: Answer B.", "B"),
    ("Preferred: Tie.", "TIE"),
    ("A is better.", None),
    ("Preferred: Answer (C)", None),
    ("Preferred: Answer (A)\nOn reflection... Preferred: Answer (B)", None),
    ("Preferred:", None),
    ("", None),
    (None, None),
    (["Preferred: Answer (A)"], None),
    ("Preferred: Answers (A)", None),
    ("x" * 10_000, None),
])
def test_malformed_verdicts_are_unparseable_never_errors(reply, verdict):
  assert pairwise.parse_preference(reply) == verdict


def test_generations_with_mismatched_prompts_or_no_language_are_errors(tmp_path):
  (tmp_path / "a.jsonl").write_text(json.dumps({"id": 1, "prompt": "p", "completion": "c"}))
  with pytest.raises(ValueError, match=r"a\.jsonl:1: no 'language' field"):
    generation.read_generations(tmp_path / "a.jsonl")
  (tmp_path / "b.jsonl").write_text(json.dumps({"id": 1, "prompt": "q", "completion": "c"}))
  a = generation.read_generations(tmp_path / "a.jsonl", language="sw")
  b = generation.read_generations(tmp_path / "b.jsonl", language="sw")
  with pytest.raises(ValueError, match="differ in prompt"):
    generation.join_generations(a, b)
  (tmp_path / "c.jsonl").write_text("\n".join(
      json.dumps({"line": 1, "inputs": "p", "completion": c}) for c in "xy"))
  with pytest.raises(ValueError, match="repeats"):
    generation.read_generations(tmp_path / "c.jsonl", language="sw")


def test_local_judge_decodes_the_prompt_greedily_like_hugging_face(tmp_path):
  config = dataclasses.replace(testing.TINY, vocab_size=259)  # seqio.ByteVocabulary
  reference = hf_reference_model(config, seed=1)
  params = hf.params_from_hf_state_dict(hf_state_dict_numpy(reference), config)
  vocabulary = seqio.ByteVocabulary()
  # Byte-level prompts are ~1,000 tokens: a 256-token limit keeps their ends (and the test
  # quick), as a local judge keeps the answers and the verdict format.
  judge = backends.LocalJudge(
      params, config, vocabulary, description="tiny", max_decode_length=8,
      batching=predict.Batching(batch_size=2, max_input_length=256, truncate="left"))
  prompts = [pairwise.pairwise_prompt("Taja namba", "moja", "mbili"),
             pairwise.pairwise_prompt("Swali refu zaidi kuliko jingine", "ndiyo", "hapana")]
  replies = dict(judge.complete_all(prompts))
  for i, prompt in enumerate(prompts):
    ids = list(vocabulary.encode(f"{prompt.system}\n\n{prompt.user}"))[-255:] + [1]
    with torch.no_grad():
      out = reference.generate(input_ids=torch.tensor([ids]), max_new_tokens=8,
                               decoder_start_token_id=0, eos_token_id=1, pad_token_id=0,
                               do_sample=False)[0, 1:].tolist()
    out = out[:out.index(1)] if 1 in out else out
    assert replies[i] == vocabulary.decode([t for t in out if t > 1])
  assert judge.truncated == 2

  # A random model's replies carry no verdict: counted as unparseable, nothing fails.
  gens = generation.GenerationFile(path="x", skipped={}, generations=[
      generation.Generation(id="1", prompt="Taja namba", completion="moja", language="sw",
                         where="x:1")])
  report = pairwise.pairwise_win_rates(judge, generation.join_generations(gens, gens),
                                      tmp_path / "local")
  assert report["overall"]["unparseable"] == 1 and report["overall"]["judged"] == 0


def test_retry_after_is_read_in_seconds_or_as_an_http_date():
  import email.utils

  now = 1_700_000_000.0
  assert backends._retry_after_seconds("7", now=now) == 7.0
  assert backends._retry_after_seconds(email.utils.formatdate(now + 30, usegmt=True),
                                      now=now) == 30.0
  assert backends._retry_after_seconds(email.utils.formatdate(now - 30, usegmt=True),
                                      now=now) == 0.0
  assert backends._retry_after_seconds("soon", now=now) is None
  assert backends._retry_after_seconds(None) is None
