"""Preference pairs as SeqIO tasks: one task per language (`name.sw`) and a mixture `name`.

A task's examples have the string features `inputs` (the prompt), `chosen` and `rejected`,
tokenized with the run's vocabulary and ended by EOS, and, when the file holds precomputed
reference log-probabilities (`aya-t5x preference reference-logprobs`), the float features
`chosen_reference_logps` and `rejected_reference_logps` (one per target token, EOS
included). Registration scans the file once: bad records are skipped and counted (see
`pairs.check_record`), and reference log-probs whose pair digest does not match their
record's texts, or that come from different references in one file, are refused.

`aya-t5x tasks add NAME --kind preference --path FILE` writes a manifest entry with
`"kind": "preference"`; `aya_t5x.data.manifest.load_manifest` hands such entries here.
"""

from __future__ import annotations

import collections
import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from aya_t5x.data import generator_datasets, languages
from aya_t5x.data import manifest as manifest_lib
from aya_t5x.preference import pairs as pairs_lib
from aya_t5x.preference.pairs import ReferenceMismatchError

SIDES = ("chosen", "rejected")
REFERENCE_FEATURES = tuple(f"{side}_reference_logps" for side in SIDES)


@dataclasses.dataclass(frozen=True, kw_only=True)
class PreferenceTasks:
  name: str
  tasks: Mapping[str, int]           # task -> pairs
  mixture: str | None
  fingerprint: str | None            # of the reference, when log-probs are precomputed
  skipped: pairs_lib.Skipped


_REGISTERED: dict[str, PreferenceTasks] = {}


def is_pair_task(name: str) -> bool:
  """Whether `name` is a preference task or a mixture of them (registered here)."""
  return any(name == p.name or name in p.tasks for p in _REGISTERED.values())


def reference_fingerprint(name: str) -> str | None:
  """The reference fingerprint of a registered preference task or mixture."""
  for registered in _REGISTERED.values():
    if name == registered.name or name in registered.tasks:
      return registered.fingerprint
  return None


def reference_of(record: Mapping[str, Any], pair: pairs_lib.Pair, where: str
                 ) -> dict[str, Any] | None:
  """The record's precomputed reference, checked against the pair's texts."""
  reference = record.get("reference")
  if reference is None:
    return None
  if not isinstance(reference, Mapping) or not {"digest", "fingerprint", *SIDES} <= set(
      reference):
    raise ReferenceMismatchError(
        f"{where}: field 'reference' must hold digest, fingerprint, chosen and rejected "
        "(as `aya-t5x preference reference-logprobs` writes it)")
  if reference["digest"] != pair.digest():
    raise ReferenceMismatchError(
        f"{where}: the reference log-probs were computed for other texts (digest "
        f"{reference['digest']} != {pair.digest()}); rerun `aya-t5x preference "
        "reference-logprobs` on this file")
  return dict(reference)


def scan(path: str | os.PathLike, *, language: str | None = None,
         keys: Mapping[str, str] | None = None) -> tuple[dict[str, int], str | None,
                                                         pairs_lib.Skipped]:
  """(pairs per language, reference fingerprint or None, skipped) of a pairs file."""
  skipped = pairs_lib.Skipped()
  sizes: collections.Counter = collections.Counter()
  fingerprints: dict[str | None, str] = {}
  for where, record, pair in pairs_lib.read_pairs(path, language=language, keys=keys,
                                                   skipped=skipped):
    reference = reference_of(record, pair, where)
    fingerprints.setdefault(None if reference is None else reference["fingerprint"], where)
    if len(fingerprints) > 1:
      (a, at), (b, bt) = list(fingerprints.items())[:2]
      raise ReferenceMismatchError(
          f"{path}: records carry reference log-probs of different references ({a} at {at}, "
          f"{b} at {bt}); every pair needs the same reference, or none")
    sizes[pair.language] += 1
  fingerprint = next(iter(fingerprints), None)
  return dict(sizes), fingerprint, skipped


def output_features(vocabulary, with_reference: bool) -> dict[str, Any]:
  import seqio
  import tensorflow as tf

  features = {name: seqio.Feature(vocabulary=vocabulary, add_eos=True, required=True)
              for name in ("inputs", *SIDES)}
  if with_reference:
    for name in REFERENCE_FEATURES:
      features[name] = seqio.Feature(vocabulary=seqio.PassThroughVocabulary(size=0),
                                     add_eos=False, dtype=tf.float32, required=True)
  return features


def _dataset_fn(path: str, language: str, file_language: str | None,
                keys: Mapping[str, str] | None, with_reference: bool):
  def dataset_fn(split: str, shuffle_files: bool, seed: int | None = None):
    import tensorflow as tf

    del split, shuffle_files, seed  # one split; seqio shuffles after

    def generate():
      for where, record, pair in pairs_lib.read_pairs(path, language=file_language,
                                                      keys=keys):
        if pair.language != language:
          continue
        example = {"inputs": pair.prompt, "chosen": pair.chosen, "rejected": pair.rejected}
        if with_reference:
          reference = reference_of(record, pair, where)
          for side in SIDES:
            example[f"{side}_reference_logps"] = reference[side]
        yield example

    text = tf.TensorSpec(shape=(), dtype=tf.string)
    signature = {"inputs": text, "chosen": text, "rejected": text}
    if with_reference:
      signature.update({name: tf.TensorSpec(shape=(None,), dtype=tf.float32)
                        for name in REFERENCE_FEATURES})
    return generator_datasets.from_generator(generate, output_signature=signature)

  return dataset_fn


def register_preference_tasks(name: str, path: str | os.PathLike, *, vocabulary,
                              language: str | None = None,
                              keys: Mapping[str, str] | None = None) -> PreferenceTasks:
  """Registers `name.<lang>` per language of the file, and the mixture `name` over them
  (rates by pair counts) when there are several."""
  import seqio

  path = str(path)
  file_language = languages.get_language(language).code if language else None
  sizes, fingerprint, skipped = scan(path, language=file_language, keys=keys)
  if not sizes:
    raise ValueError(f"{path}: no usable preference pair; "
                     + ("; ".join(skipped.lines()) or "the file is empty"))
  tasks = {}
  for lang, count in sorted(sizes.items()):
    task = f"{name}.{lang}"
    if task in seqio.TaskRegistry.names():
      seqio.TaskRegistry.remove(task)
    seqio.TaskRegistry.add(
        task, source=seqio.FunctionDataSource(
            _dataset_fn(path, lang, file_language, keys, fingerprint is not None),
            splits=["train"], num_input_examples={"train": count}),
        preprocessors=[seqio.preprocessors.tokenize, seqio.preprocessors.append_eos],
        output_features=output_features(vocabulary, fingerprint is not None), metric_fns=[])
    tasks[task] = count
  mixture = None
  if len(tasks) > 1:
    mixture = name
    if mixture in seqio.MixtureRegistry.names():
      seqio.MixtureRegistry.remove(mixture)
    seqio.MixtureRegistry.add(mixture, [(t, float(n)) for t, n in tasks.items()])
  registered = PreferenceTasks(name=name, tasks=tasks, mixture=mixture,
                               fingerprint=fingerprint, skipped=skipped)
  _REGISTERED[name] = registered
  return registered


def describe(registered: PreferenceTasks) -> list[str]:
  """What `tasks add --kind preference` prints: tasks, counts, skipped reasons."""
  lines = [f"{task}: {count} pairs" for task, count in registered.tasks.items()]
  if registered.mixture:
    lines.append(f"mixture {registered.mixture} over {len(registered.tasks)} languages")
  lines.append("reference log-probs: " + (f"precomputed ({registered.fingerprint})"
                                          if registered.fingerprint else "none"))
  return lines + registered.skipped.lines()


def manifest_keys(entry: Mapping[str, Any]) -> dict[str, str] | None:
  """Field renames of a manifest entry: its inputs_key is the prompt's field."""
  prompt = entry.get("inputs_key")
  return {"prompt": prompt} if prompt and prompt != "inputs" else None


def register_manifest_entry(entry: Mapping[str, Any], vocabulary) -> PreferenceTasks:
  """`load_manifest`'s registrar for entries of kind 'preference'."""
  keys = manifest_keys(entry)
  if entry.get("language_key"):
    keys = {**(keys or {}), "language": entry["language_key"]}
  return register_preference_tasks(entry["name"], entry["path"], vocabulary=vocabulary,
                                   language=entry.get("language"), keys=keys)


manifest_lib.register_task_kind("preference", register_manifest_entry)
