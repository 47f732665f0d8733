"""The `judge` and `safety` subcommands of `aya-t5x` (wired in by `aya_t5x.cli`).

    aya-t5x judge pairwise --a A.jsonl --b B.jsonl --output_dir out/ \
        --judge_url http://localhost:8000/v1 --judge_model NAME [--api_key_env VAR]
    aya-t5x safety harmful --generations G.jsonl --output_dir out/ (judge flags)
    aya-t5x safety toxicity --scores S.jsonl --output_dir out/
    aya-t5x safety winomt --gold en.txt --translations es=es.txt --detector es=lexicon_es.tsv \
        [--pro en_pro.txt --anti en_anti.txt] --output_dir out/
    aya-t5x safety toxicity-detection --input T.jsonl --checkpoint CKPT --vocabulary SPM \
        --gin_file models/mt5_small.gin --output_dir out/
    aya-t5x safety distill-filter --input teacher.jsonl --output pairs.jsonl [--preamble TEXT]

The judge is an OpenAI-compatible endpoint (--judge_url, --judge_model, --api_key_env)
or an aya_t5x checkpoint (--judge_checkpoint, --vocabulary, --gin_file for its size).
See docs/judging_and_safety.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from aya_t5x import reporting
from aya_t5x.command_flags import add_gin_flags, parse_gin


def _load_model(args: argparse.Namespace, checkpoint: str):
  """(params, config, vocabulary) of a checkpoint, sized by the gin flags or itself."""
  from aya_t5x import gin_config
  from aya_t5x.checkpoints import loading
  from aya_t5x.vocab import vocabulary

  if not args.vocabulary:
    raise ValueError("a local model needs --vocabulary (the checkpoint's SentencePiece model)")
  loading.check_exists(checkpoint)
  parse_gin(args)
  config = loading.model_config(checkpoint, gin_config.configured_model_or_none())
  return (loading.load_params(checkpoint, config), config,
          vocabulary.sentencepiece_vocabulary(args.vocabulary))


def _judge(args: argparse.Namespace):
  from aya_t5x.evaluation.judging import backends

  if bool(args.judge_url) == bool(args.judge_checkpoint):
    raise ValueError("choose one judge: --judge_url with --judge_model (an OpenAI-compatible "
                     "endpoint), or --judge_checkpoint (an aya_t5x model)")
  if args.judge_url:
    if not args.judge_model:
      raise ValueError("--judge_url needs --judge_model (the model name the endpoint serves)")
    return backends.HttpJudge(backends.EndpointConfig(
        base_url=args.judge_url, model=args.judge_model, api_key_env=args.api_key_env,
        timeout_s=args.judge_timeout, max_retries=args.judge_retries,
        concurrency=args.judge_concurrency, max_tokens=args.judge_max_tokens))
  from aya_t5x.evaluation import predict

  params, config, vocabulary = _load_model(args, args.judge_checkpoint)
  return backends.LocalJudge(
      params, config, vocabulary, description=f"aya_t5x {args.judge_checkpoint}",
      batching=predict.Batching(batch_size=args.batch_size,
                                max_input_length=args.judge_max_input_length,
                                truncate="left"),
      max_decode_length=args.judge_max_decode_length)


def _add_judge_flags(parser: argparse.ArgumentParser) -> None:
  group = parser.add_argument_group(
      "judge", "an OpenAI-compatible endpoint (--judge_url, --judge_model), or an aya_t5x "
      "checkpoint (--judge_checkpoint, --vocabulary, --gin_file for its size)")
  group.add_argument("--judge_url", help="base URL, e.g. http://localhost:8000/v1; "
                     "/chat/completions is appended")
  group.add_argument("--judge_model", help="the judge model's name at the endpoint")
  group.add_argument("--api_key_env", help="environment variable holding the API key")
  group.add_argument("--judge_timeout", type=float, default=120.0, help="seconds per request")
  group.add_argument("--judge_retries", type=int, default=5,
                     help="retries after timeouts, connection errors, HTTP 429 and 5xx")
  group.add_argument("--judge_concurrency", type=int, default=4, help="requests in flight")
  group.add_argument("--judge_max_tokens", type=int, default=512)
  group.add_argument("--judge_checkpoint", help="an aya_t5x / T5X / HF checkpoint or run")
  group.add_argument("--vocabulary", help="SentencePiece model of the local judge")
  group.add_argument("--judge_max_input_length", type=int, default=2048)
  group.add_argument("--judge_max_decode_length", type=int, default=128)
  group.add_argument("--batch_size", type=int, default=8)
  add_gin_flags(parser)


def _run_judged(run) -> Any:
  from aya_t5x.evaluation.judging import backends

  try:
    return run()
  except backends.JudgeUnavailableError as e:
    # Judgments received so far are already in the folder; a rerun resumes from them.
    raise ValueError(f"{e} (judgments received so far are kept; rerun to resume)") from e


def _pairwise(args: argparse.Namespace) -> int:
  from aya_t5x.evaluation.judging import generation, pairwise

  a = generation.read_generations(args.a, language=args.language)
  b = generation.read_generations(args.b, language=args.language)
  joined = generation.join_generations(a, b)
  if not joined.pairs:
    raise ValueError(f"{args.a} and {args.b} share no ids; they must answer the same prompts")
  report = _run_judged(lambda: pairwise.pairwise_win_rates(
      _judge(args), joined, args.output_dir, seed=args.seed,
      name_a=args.name_a or Path(args.a).stem, name_b=args.name_b or Path(args.b).stem))
  print(pairwise.format_win_rates(report))
  print(f"wrote {Path(args.output_dir) / 'win_rates.json'}, win_rates.md and judgments.jsonl")
  return 0


def _harmful(args: argparse.Namespace) -> int:
  from aya_t5x.evaluation.judging import generation, harmful

  generations = generation.read_generations(args.generations, language=args.language)
  report = _run_judged(lambda: harmful.harmful_rates(_judge(args), generations,
                                                    args.output_dir))
  print((Path(args.output_dir) / "harmful_rates.md").read_text(encoding="utf-8"))
  overall = report["overall"]
  print(f"harmful: {overall['harmful']} of {overall['labelled']} labelled answers "
        f"({overall['unparseable']} unparseable, {overall['failed']} failed)")
  return 0


def _toxicity(args: argparse.Namespace) -> int:
  from aya_t5x.evaluation.judging import toxicity

  report = toxicity.toxicity_metrics(
      toxicity.read_toxicity_scores(args.scores, language=args.language),
      threshold=args.threshold)
  markdown = toxicity.format_toxicity(report)
  reporting.write_report(args.output_dir, "toxicity", report, markdown)
  print(markdown)
  return 0


def _pairs(values: list[str], flag: str) -> dict[str, str]:
  out = {}
  for value in values:
    language, sep, path = value.partition("=")
    if not sep or not language or not path:
      raise ValueError(f"{flag} {value!r}: expected LANGUAGE=PATH, e.g. es=translations.es.txt")
    out[language] = path
  return out


def _winomt(args: argparse.Namespace) -> int:
  from aya_t5x.evaluation.judging import gender_bias

  translations = _pairs(args.translations, "--translations")
  detectors = _pairs(args.detector, "--detector")
  missing = sorted(set(translations) - set(detectors))
  if missing:
    raise ValueError(f"no --detector for {', '.join(missing)}; give LANGUAGE=LEXICON_FILE "
                     "or LANGUAGE=module:callable for each translated language")
  examples = gender_bias.read_winomt(args.gold, pro=args.pro, anti=args.anti)
  report = {"what": "winomt", "gold": args.gold, "languages": {
      language: gender_bias.winomt_metrics(examples, gender_bias.read_translations(path),
                                      gender_bias.load_gender_detector(detectors[language]))
      for language, path in sorted(translations.items())}}
  markdown = gender_bias.format_winomt(report)
  reporting.write_report(args.output_dir, "winomt", report, markdown)
  print(markdown)
  return 0


def _toxicity_detection(args: argparse.Namespace) -> int:
  from aya_t5x.evaluation import predict
  from aya_t5x.evaluation.judging import detection

  examples = detection.read_detection_examples(args.input, text_key=args.text_key,
                                            label_key=args.label_key, language=args.language)
  params, config, vocabulary = _load_model(args, args.checkpoint)
  template = args.template or detection.DETECTION_TEMPLATE
  scores = detection.yes_no_scores(
      params, config, vocabulary, [text for text, _, _ in examples], template=template,
      yes=args.yes, no=args.no,
      batching=predict.Batching(batch_size=args.batch_size,
                                max_input_length=args.max_input_length))
  report = detection.toxicity_detection(examples, scores)
  rows = [[lang, r["examples"], r["toxic"], "-" if r["auc"] is None else f"{r['auc']:.3f}"]
          for lang, r in [*report["languages"].items(), ("**all**", report["overall"])]]
  markdown = "\n\n".join([
      "# Toxicity detection", f"Score: log P({args.yes!r}) - log P({args.no!r}) after the "
      f"prompt {template!r}.",
      reporting.markdown_table(["language", "examples", "toxic", "AUC"], rows)]) + "\n"
  reporting.write_report(args.output_dir, "toxicity_detection", report, markdown)
  print(markdown)
  return 0


def _distill_filter(args: argparse.Namespace) -> int:
  from aya_t5x.data import filters

  path = Path(args.input)
  if not path.is_file():
    raise FileNotFoundError(f"teacher answers file {path} does not exist (JSONL, e.g. from "
                            "aya-t5x infer on the prompts with the safety preamble)")
  records, unreadable = [], 0
  for line in path.read_text(encoding="utf-8").splitlines():
    if line.strip():
      try:
        record = json.loads(line)
      except ValueError:
        unreadable += 1
        continue
      if isinstance(record, dict):
        records.append(record)
      else:
        unreadable += 1
  preamble = args.preamble
  if args.preamble_file:
    preamble = Path(args.preamble_file).read_text(encoding="utf-8").strip()
  kept, dropped = filters.filter_distillation_answers(
      records, prompt_key=args.prompt_key, answer_key=args.answer_key, preamble=preamble,
      answer_filter=filters.SafetyDistillationFilter(min_chars=args.min_chars,
                                                    max_chars=args.max_chars))
  if unreadable:
    dropped["not a JSON object"] += unreadable
  output = Path(args.output)
  output.parent.mkdir(parents=True, exist_ok=True)
  partial = output.with_name(output.name + ".partial")
  with open(partial, "w", encoding="utf-8") as f:
    for record in kept:
      f.write(json.dumps(record, ensure_ascii=False) + "\n")
  partial.replace(output)
  total = len(records) + unreadable
  print(f"kept {len(kept)} of {total} answers in {output}; dropped "
        f"{total - len(kept)} ({100 * (total - len(kept)) / max(total, 1):.1f}%)")
  for reason, count in dropped.most_common():
    print(f"  {count:6d}  {reason}")
  return 0


def add_commands(subparsers: Any) -> None:
  """Adds `judge pairwise` and `safety {harmful,toxicity,winomt,toxicity-detection,
  distill-filter}` to an argparse subparsers object."""
  judge = subparsers.add_parser("judge", help="LLM-judge win rates of two models' answers")
  actions = judge.add_subparsers(dest="judge_command", required=True, metavar="ACTION")
  pairwise = actions.add_parser(
      "pairwise", help="win/tie/loss rates of model A against model B per language",
      description="Shows a judge each prompt with both answers in a seeded random order "
                  "(RECIPE.md §5) and reports A's win, tie and loss rates per language.")
  pairwise.add_argument("--a", required=True, help="model A's generations (JSONL)")
  pairwise.add_argument("--b", required=True, help="model B's generations (JSONL)")
  pairwise.add_argument("--name_a", help="model A's name in reports (file name by default)")
  pairwise.add_argument("--name_b")
  pairwise.add_argument("--language", help="language of records without a language field")
  pairwise.add_argument("--seed", type=int, default=0, help="seeds the answer order")
  pairwise.add_argument("--output_dir", required=True)
  _add_judge_flags(pairwise)
  pairwise.set_defaults(handler=_pairwise)

  safety = subparsers.add_parser("safety", help="safety metrics and distillation filters")
  actions = safety.add_subparsers(dest="safety_command", required=True, metavar="ACTION")
  harmful = actions.add_parser("harmful", help="judge-rated share of harmful answers")
  harmful.add_argument("--generations", required=True, help="answers to adversarial prompts")
  harmful.add_argument("--language", help="language of records without a language field")
  harmful.add_argument("--output_dir", required=True)
  _add_judge_flags(harmful)
  harmful.set_defaults(handler=_harmful)

  toxicity = actions.add_parser(
      "toxicity", help="expected maximum toxicity and toxicity probability from scores",
      description="Per-sample toxicity scores (from a classifier you run) in, the "
                  "RealToxicityPrompts metrics per language out.")
  toxicity.add_argument("--scores", required=True,
                        help='JSONL: {"id", "language", "toxicity": score or [scores]}')
  toxicity.add_argument("--language", help="language of records without a language field")
  toxicity.add_argument("--threshold", type=float, default=0.5)
  toxicity.add_argument("--output_dir", required=True)
  toxicity.set_defaults(handler=_toxicity)

  winomt = actions.add_parser("winomt", help="Wino-MT gender accuracy, ΔG and ΔS")
  winomt.add_argument("--gold", required=True, help="Wino-MT en.txt (or a file like it)")
  winomt.add_argument("--pro", help="en_pro.txt, to mark pro-stereotypical sentences")
  winomt.add_argument("--anti", help="en_anti.txt, to mark anti-stereotypical sentences")
  winomt.add_argument("--translations", action="append", default=[], required=True,
                      metavar="LANG=PATH", help="one translation per gold line (text or "
                      "aya-t5x infer JSONL); repeat per language")
  winomt.add_argument("--detector", action="append", default=[], metavar="LANG=SPEC",
                      help="gender lexicon (profession<TAB>form<TAB>gender) or "
                      "module:callable, per language")
  winomt.add_argument("--output_dir", required=True)
  winomt.set_defaults(handler=_winomt)

  detection = actions.add_parser(
      "toxicity-detection", help="AUC of log P(yes) - log P(no) against toxicity labels")
  detection.add_argument("--input", required=True, help='JSONL: {"text", "label", "language"}')
  detection.add_argument("--checkpoint", required=True)
  detection.add_argument("--vocabulary", help="SentencePiece model of the checkpoint")
  detection.add_argument("--text_key", default="text")
  detection.add_argument("--label_key", default="label")
  detection.add_argument("--language", help="language of records without a language field")
  detection.add_argument("--template", help="the question, with {text} (default: 'Is the "
                         "following text toxic? Answer yes or no.\n\nText: {text}')")
  detection.add_argument("--yes", default="yes")
  detection.add_argument("--no", default="no")
  detection.add_argument("--batch_size", type=int, default=16)
  detection.add_argument("--max_input_length", type=int, default=1024)
  detection.add_argument("--output_dir", required=True)
  add_gin_flags(detection)
  detection.set_defaults(handler=_toxicity_detection)

  distill = actions.add_parser(
      "distill-filter", help="safety context distillation: filter the teacher's answers",
      description="Drops answers shorter than --min_chars or longer than --max_chars and "
                  "repetitive ones (RECIPE.md §6), strips the preamble from the prompts, "
                  "and writes {inputs, targets} JSONL for `aya-t5x tasks add`.")
  distill.add_argument("--input", required=True, help="teacher outputs (aya-t5x infer JSONL)")
  distill.add_argument("--output", required=True)
  distill.add_argument("--prompt_key", default="inputs")
  distill.add_argument("--answer_key", default="completion")
  distill.add_argument("--preamble", help="text the prompts start with, removed")
  distill.add_argument("--preamble_file", help="the preamble, read from a file")
  distill.add_argument("--min_chars", type=int, default=20)
  distill.add_argument("--max_chars", type=int, default=1000)
  distill.set_defaults(handler=_distill_filter)
