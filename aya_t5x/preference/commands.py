"""The `preference` subcommands of `aya-t5x` and `tasks add --kind preference`.

    aya-t5x preference pairs --from_annotations annotations.db --output pairs.jsonl
    aya-t5x preference pairs --judgments out/judgments.jsonl --generations_a A.jsonl \
        --generations_b B.jsonl --output pairs.jsonl
    aya-t5x preference reference-logprobs --pairs pairs.jsonl --checkpoint /runs/sft \
        --vocabulary spm.model --inputs_length 1024 --output scored.jsonl
    aya-t5x preference generate --prompts prompts.jsonl --checkpoint /runs/dpo1 \
        --vocabulary spm.model --num_samples 4 --output round2.jsonl \
        (--reward programmatic | --judge_url URL --judge_model NAME | --judge_checkpoint C)
    aya-t5x tasks add my_pairs --kind preference --path pairs.jsonl

See docs/preference.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from aya_t5x.atomic_files import write_text_atomically
from aya_t5x.command_flags import add_gin_flags, parse_gin


def _write_report(output: str, report: dict[str, Any]) -> Path:
  return write_text_atomically(str(output) + ".report.json",
                               json.dumps(report, indent=1, ensure_ascii=False) + "\n")


def _pairs(args: argparse.Namespace) -> int:
  from aya_t5x.preference import pairs as pairs_lib

  if bool(args.from_annotations) == bool(args.judgments):
    raise ValueError("give one source: --from_annotations DB (the annotation platform's "
                     "database) or --judgments FILE with --generations_a and --generations_b")
  if args.from_annotations:
    from aya_t5x.annotation.export import ExportRules
    from aya_t5x.annotation.store import Store

    rules = pairs_lib.PairRules(min_rating_gap=args.min_rating_gap, min_votes=args.min_votes,
                                max_pairs_per_language=args.max_pairs_per_language,
                                min_pairs_per_language=args.min_pairs_per_language)
    export_rules = ExportRules(min_edit_distance=args.min_edit_distance,
                               min_language_contributions=args.min_language_contributions)
    with Store(args.from_annotations) as store:
      made = pairs_lib.pairs_from_annotations(store, rules, export_rules)
  else:
    if not (args.generations_a and args.generations_b):
      raise ValueError("--judgments needs --generations_a and --generations_b (the two files "
                       "`aya-t5x judge pairwise` compared, as --a and --b)")
    made = pairs_lib.pairs_from_judgments(args.judgments, args.generations_a,
                                          args.generations_b, language=args.language)
  written = pairs_lib.write_pairs(made.pairs, args.output)
  report = _write_report(args.output, made.report)
  print(f"wrote {written} pairs to {args.output} (report: {report})")
  for row in made.report.get("languages", []):
    if isinstance(row, dict):
      dropped = ", ".join(f"{k}: {v}" for k, v in row["dropped"].items()) or "none"
      print(f"  {row['language']}: {row['pairs']} pairs; dropped prompts: {dropped}")
  for line in made.report.get("skipped_lines", []):
    print(f"  {line}")
  return 0


def _reference_logprobs(args: argparse.Namespace) -> int:
  from aya_t5x import gin_config
  from aya_t5x.checkpoints import loading
  from aya_t5x.preference import reference
  from aya_t5x.vocab import vocabulary

  loading.check_exists(args.checkpoint)
  parse_gin(args)
  config = loading.model_config(args.checkpoint, gin_config.configured_model_or_none())
  params = loading.load_params(args.checkpoint, config)
  vocab = vocabulary.sentencepiece_vocabulary(args.vocabulary)
  if vocab.vocab_size > config.vocab_size:
    raise reference.ReferenceMismatchError(
        f"--vocabulary has {vocab.vocab_size} ids but {args.checkpoint} has "
        f"{config.vocab_size} embedding rows: give the checkpoint's own vocabulary")
  result = reference.write_reference_logprobs(
      params, config, vocab, args.vocabulary, args.pairs, args.output,
      inputs_length=args.inputs_length, batch_size=args.batch_size, language=args.language)
  print(f"wrote {result.written} pairs with reference log-probs to {args.output} "
        f"(fingerprint {result.fingerprint}); train with "
        "--gin.PREFERENCE_REFERENCE=\"'precomputed'\" and "
        f"--gin.TASK_FEATURE_LENGTHS=\"{{'inputs': {args.inputs_length}, ...}}\"")
  for line in result.skipped.lines():
    print(f"  {line}")
  return 0


def _generate(args: argparse.Namespace) -> int:
  from aya_t5x import decoding, gin_config
  from aya_t5x.checkpoints import loading
  from aya_t5x.evaluation import judge_commands
  from aya_t5x.preference import online, rewards
  from aya_t5x.preference import pairs as pairs_lib
  from aya_t5x.vocab import vocabulary

  if args.num_samples < 2:
    raise ValueError(f"--num_samples must be at least 2 (a best and a worst), got "
                     f"{args.num_samples}")
  judged_by_reward = bool(args.reward)
  if judged_by_reward == bool(args.judge_url or args.judge_checkpoint):
    raise ValueError("rank the answers with one of --reward NAME, --judge_url (with "
                     "--judge_model) or --judge_checkpoint")
  if not args.vocabulary:
    raise ValueError("--vocabulary is required (the checkpoint's SentencePiece model)")
  reward = rewards.get_reward(args.reward) if judged_by_reward else None
  skipped = pairs_lib.Skipped()
  prompts = online.read_prompts(args.prompts, language=args.language, skipped=skipped)
  if not prompts:
    raise ValueError(f"{args.prompts}: no usable prompt; " + "; ".join(skipped.lines()))
  loading.check_exists(args.checkpoint)
  parse_gin(args)
  config = loading.model_config(args.checkpoint, gin_config.configured_model_or_none())
  params = loading.load_params(args.checkpoint, config)
  vocab = vocabulary.sentencepiece_vocabulary(args.vocabulary)
  options = decoding.DecodingOptions(method="sample", temperature=args.temperature,
                                     top_k=args.top_k, top_p=args.top_p,
                                     max_decode_length=args.max_decode_length)
  answers = online.sample_answers(params, config, vocab, prompts,
                                  num_samples=args.num_samples, options=options,
                                  batch_size=args.batch_size,
                                  max_input_length=args.max_input_length, seed=args.seed)
  if reward is not None:
    scores = [online.scores_by_reward(reward, p, a) for p, a in zip(prompts, answers,
                                                                     strict=True)]
    outcomes = {}
  else:
    judge = judge_commands._judge(args)
    scores, outcomes = online.scores_by_judge(judge, prompts, answers, seed=args.seed)
  made = online.best_and_worst(prompts, answers, scores)
  made.report.update(judge_outcomes=dict(outcomes), prompts_skipped=skipped.as_dict())
  written = pairs_lib.write_pairs(made.pairs, args.output)
  report = _write_report(args.output, made.report)
  print(f"wrote {written} pairs from {len(prompts)} prompts x {args.num_samples} samples to "
        f"{args.output} (report: {report})")
  for line in skipped.lines() + made.report["skipped_lines"]:
    print(f"  {line}")
  return 0


def tasks_add(args: argparse.Namespace) -> int:
  """`aya-t5x tasks add NAME --kind preference --path FILE`: check, then add to the manifest."""
  from aya_t5x.data import languages, manifest
  from aya_t5x.preference import tasks

  if args.template_inputs or args.template_targets or args.targets_key != "targets":
    raise ValueError("--template_* and --targets_key are for input/target examples; a "
                     "preference file has prompt, chosen, rejected and language fields "
                     "(--inputs_key renames the prompt's)")
  entry = {"name": args.name, "path": str(Path(args.path).resolve()), "kind": "preference",
           "language": args.language, "language_key": args.language_key,
           "inputs_key": args.inputs_key if args.inputs_key != "inputs" else None,
           "dataset": args.dataset}
  if args.language:
    languages.get_language(args.language)  # an unknown language: one line, nothing written
  keys = tasks.manifest_keys(entry) or {}
  if args.language_key:
    keys["language"] = args.language_key
  sizes, fingerprint, skipped = tasks.scan(
      args.path, language=args.language and languages.get_language(args.language).code,
      keys=keys or None)
  if not sizes:
    raise ValueError(f"{args.path}: no usable preference pair (fields prompt, chosen, "
                     "rejected, language); " + ("; ".join(skipped.lines()) or "empty file"))
  manifest.add_task_of_kind(args.manifest, entry, replace=args.replace)
  print(f"added preference task {args.name} to {args.manifest}")
  for lang, count in sorted(sizes.items()):
    print(f"  {args.name}.{lang}: {count} pairs")
  print("  reference log-probs: " + (f"precomputed ({fingerprint})" if fingerprint else
                                     "none (train with a live reference, or SimPO)"))
  for line in skipped.lines():
    print(f"  {line}")
  train_on = args.name if len(sizes) > 1 else f"{args.name}.{next(iter(sizes))}"
  print(f"Train on it with --gin_file runs/preference.gin --gin_file mixtures/vocabulary.gin "
        f"--gin.TASK_MANIFEST=\"'{args.manifest}'\" "
        f"--gin.MIXTURE_OR_TASK_NAME=\"'{train_on}'\"")
  return 0


def add_commands(subparsers: Any) -> None:
  """Adds `preference {pairs,reference-logprobs,generate}`."""
  preference = subparsers.add_parser(
      "preference", help="preference pairs, reference log-probs and the online round",
      description="Preference tuning (DPO, IPO, SimPO) of an SFT model; docs/preference.md.")
  actions = preference.add_subparsers(dest="preference_command", required=True,
                                      metavar="ACTION")
  pairs = actions.add_parser(
      "pairs", help="pairs from the annotation platform's ratings or the judge's verdicts",
      description="Writes {prompt, chosen, rejected, language} JSONL and a .report.json "
                  "beside it (per-language counts, what was dropped and why).")
  pairs.add_argument("--from_annotations", help="the annotation platform's database")
  pairs.add_argument("--judgments", help="judgments.jsonl of `aya-t5x judge pairwise`")
  pairs.add_argument("--generations_a", help="the --a file the judge compared")
  pairs.add_argument("--generations_b", help="the --b file the judge compared")
  pairs.add_argument("--language", help="language of generations without a language field")
  pairs.add_argument("--output", required=True)
  pairs.add_argument("--min_rating_gap", type=float, default=1.0,
                     help="the best and worst answers' score gap a pair needs (1-5 scale)")
  pairs.add_argument("--min_votes", type=int, default=3,
                     help="votes an unrated answer needs to be scored by its approval")
  pairs.add_argument("--max_pairs_per_language", type=int, help="largest gaps kept first")
  pairs.add_argument("--min_pairs_per_language", type=int, default=1)
  pairs.add_argument("--min_edit_distance", type=int, default=5,
                     help="the export's rule for re-annotations")
  pairs.add_argument("--min_language_contributions", type=int, default=50,
                     help="the export's rule for languages")
  pairs.set_defaults(handler=_pairs)

  scored = actions.add_parser(
      "reference-logprobs", help="score pairs with the reference model, into the data",
      description="Writes the pairs again with each answer's per-token reference "
                  "log-probs, the pair digest and the reference fingerprint, so that "
                  "training needs no reference model in memory.")
  scored.add_argument("--pairs", required=True)
  scored.add_argument("--checkpoint", required=True, help="the reference (the SFT model)")
  scored.add_argument("--vocabulary", required=True, help="its SentencePiece model")
  scored.add_argument("--inputs_length", type=int, required=True,
                      help="TASK_FEATURE_LENGTHS['inputs'] of the training run")
  scored.add_argument("--language", help="language of records without a language field")
  scored.add_argument("--batch_size", type=int, default=16)
  scored.add_argument("--output", required=True)
  add_gin_flags(scored)
  scored.set_defaults(handler=_reference_logprobs)

  from aya_t5x.evaluation import judge_commands

  generate = actions.add_parser(
      "generate", help="the online round: sample answers, rank them, keep best and worst",
      description="Samples --num_samples answers per prompt from --checkpoint, ranks them "
                  "with a reward function (--reward) or a judge (HTTP or local), and "
                  "writes each prompt's best against its worst as pairs.")
  generate.add_argument("--prompts", required=True,
                        help="JSONL/parquet: prompt (or inputs), language, optional id and "
                             "targets (for reference-based rewards)")
  generate.add_argument("--checkpoint", required=True, help="the policy to sample from")
  generate.add_argument("--num_samples", type=int, default=4)
  generate.add_argument("--reward", help="a reward function: " + ", ".join(
      ("no_repetition", "reference_chrf", "programmatic")) + ", or package.module:function")
  generate.add_argument("--language", help="language of prompts without a language field")
  generate.add_argument("--temperature", type=float, default=1.0)
  generate.add_argument("--top_k", type=int, default=0)
  generate.add_argument("--top_p", type=float, default=1.0)
  generate.add_argument("--max_decode_length", type=int, default=256)
  generate.add_argument("--max_input_length", type=int, default=1024)
  generate.add_argument("--seed", type=int, default=0, help="sampling and the judge's order")
  generate.add_argument("--output", required=True)
  judge_commands._add_judge_flags(generate)
  generate.set_defaults(handler=_generate)
