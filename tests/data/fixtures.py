"""Small data files in each source's published schema and format, with known contents.

Each writer returns the path and the facts a test checks against (counts per language,
what the filters must remove), computed here from how the data was made, independently
of the code under test.
"""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

# ------------------------------------------------------------------ formats


def write_jsonl(path: Path, records, extra_lines=()) -> Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  with path.open("wb") as f:
    for record in records:
      f.write(json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n")
    for line in extra_lines:
      f.write(line + b"\n")
  return path


def write_parquet(path: Path, records) -> Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  pq.write_table(pa.Table.from_pylist(records), path)
  return path


def write_arrow_stream(path: Path, records) -> Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  table = pa.Table.from_pylist(records)
  with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
    writer.write_table(table)
  return path


def write_save_to_disk(folder: Path, splits: dict) -> Path:
  """The layout `datasets.DatasetDict.save_to_disk` writes (arrow streams, state.json)."""
  folder.mkdir(parents=True, exist_ok=True)
  (folder / "dataset_dict.json").write_text(json.dumps({"splits": list(splits)}))
  for split, records in splits.items():
    sub = folder / split
    write_arrow_stream(sub / "data-00000-of-00001.arrow", records)
    (sub / "dataset_info.json").write_text(json.dumps({"features": {}}))
    (sub / "state.json").write_text(json.dumps({
        "_data_files": [{"filename": "data-00000-of-00001.arrow"}],
        "_fingerprint": "0", "_format_columns": None, "_format_kwargs": {},
        "_format_type": None, "_output_all_columns": False, "_split": split}))
  return folder


# ------------------------------------------------------------------ Aya Dataset

AYA_LANGUAGES = {"eng": "English", "swh": "Swahili", "ary": "Moroccan Arabic",
                 "hin": "Hindi", "quy": "Ayacucho Quechua"}  # Quechua is not an mT5 language


def aya_dataset_record(code: str, i: int, split: str) -> dict:
  return {"inputs": f"Question {i} in {AYA_LANGUAGES[code]} ({split})?",
          "targets": f"Answer number {i} written by a person.",
          "language": AYA_LANGUAGES[code], "language_code": code,
          "annotation_type": "original-annotations" if i % 3 else "re-annotations",
          "user_id": f"user{i % 7}"}


def write_aya_dataset(root: Path) -> tuple[Path, dict]:
  counts = {"eng": 12, "swh": 6, "ary": 4, "hin": 3, "quy": 2}
  train = [aya_dataset_record(c, i, "train") for c, n in counts.items() for i in range(n)]
  test = [aya_dataset_record(c, i, "test") for c in ("eng", "swh") for i in range(2)]
  path = write_save_to_disk(root / "aya_dataset", {"train": train, "test": test})
  expected = {"train": {"en": 12, "sw": 6, "ar": 4, "hi": 3}, "test": {"en": 2, "sw": 2},
              "removed_not_mt5": 2}
  return path, expected


def write_tfds_build(root: Path, splits: dict) -> Path:
  """A TFDS build folder of text features (what `tfds build` writes): record shards,
  dataset_info.json and features.json."""
  import tensorflow_datasets as tfds

  names = sorted({key for records in splits.values() for key in records[0]})
  features = tfds.features.FeaturesDict({name: tfds.features.Text() for name in names})
  builder = tfds.dataset_builders.store_as_tfds_dataset(
      name="aya_fixture", version="1.0.0", features=features, data_dir=str(root),
      disable_shuffling=True,
      split_datasets={split: [(str(i), r) for i, r in enumerate(records)]
                      for split, records in splits.items()})
  return Path(builder.data_dir)


# ------------------------------------------------------------------ Aya Collection


def collection_record(i: int, dataset: str, language: str, script: str, split: str = "train",
                      targets: str | None = None) -> dict:
  return {"id": i, "inputs": f"Instruction {i} for {dataset} in {language}: do the task.",
          "targets": targets or f"A complete answer number {i} for {dataset}.",
          "dataset_name": dataset, "sub_dataset_name": "-", "task_type": "question-answering",
          "template_id": 1 + i % 2, "language": language, "script": script, "split": split}


def write_aya_templated(root: Path) -> tuple[Path, dict]:
  records = [collection_record(i, "Xlel_wd-inst", lang, script)
             for lang, script, n in (("arb", "Arab", 5), ("fra", "Latn", 3))
             for i in range(n)]
  records += [collection_record(100 + i, "Xlel_wd-inst", "fra", "Latn", split="validation")
              for i in range(2)]
  path = write_parquet(root / "aya_templated" / "train-00000.parquet", records)
  return path, {"train": {"ar": 5, "fr": 3}, "validation": {"fr": 2}}


TRANSLATED_CAP = 10


def write_aya_translated(root: Path) -> tuple[Path, dict]:
  records = []
  for lang, script in (("swh", "Latn"), ("zsm", "Latn")):
    records += [collection_record(i, "HotpotQA (T)", lang, script) for i in range(25)]
    records += [collection_record(1000 + i, "Dolly-v2 (T)", lang, script) for i in range(15)]
    records += [collection_record(2000 + i, "Mintaka-inst (T)", lang, script)
                for i in range(4)]
    # Three translations with <unk> per language (two in targets, one in inputs).
    bad = [collection_record(3000 + i, "HotpotQA (T)", lang, script,
                             targets="A <unk> answer.") for i in range(2)]
    unk_inputs = collection_record(3002, "Mintaka-inst (T)", lang, script)
    unk_inputs["inputs"] = "Translate <unk> this."
    records += bad + [unk_inputs]
  path = write_jsonl(root / "aya_translated" / "translated.jsonl", records)
  expected = {"per_language": {"HotpotQA (T)": TRANSLATED_CAP, "Dolly-v2 (T)": 15,
                               "Mintaka-inst (T)": 4},
              "unk_removed": 6, "capped_removed": 2 * (25 - TRANSLATED_CAP)}
  return path, expected


# ------------------------------------------------------------------ xP3x


def xp3x_record(i: int, language: str, dataset: str, template: str, inputs: str,
                targets: str, split: str = "train") -> dict:
  return {"inputs": inputs, "targets": targets, "language": language, "split": split,
          "template": template, "dataset": dataset, "config": "en"}


def write_xp3x(root: Path) -> tuple[Path, dict]:
  """Per language: 4 templates of one dataset. `long` is kept; `short_label` has
  one-word targets; `long_copy` repeats `long`'s instruction with one word less (a
  near-duplicate, and the shorter of the two); `other` is a distinct instruction."""
  records = []
  for language in ("eng_Latn", "fra_Latn"):
    for i in range(6):
      passage = f"passage number {i} about rivers and mountains"
      records.append(xp3x_record(i, language, "paws-x", "long",
                                 f"Read the following passage carefully and then write a "
                                 f"detailed summary of it: {passage}",
                                 f"The passage {i} describes rivers and mountains at length."))
      records.append(xp3x_record(i, language, "paws-x", "long_copy",
                                 f"Read the following passage carefully and write a "
                                 f"detailed summary of it: {passage}",
                                 f"The passage {i} describes rivers and mountains at length."))
      records.append(xp3x_record(i, language, "paws-x", "short_label",
                                 f"Is this paraphrase correct? {passage}", "Yes"))
      records.append(xp3x_record(i, language, "paws-x", "other",
                                 f"{passage}\nQuestion: what is this text about? Answer in a "
                                 "full sentence.", f"It is about rivers and mountains, {i}."))
  records.append(xp3x_record(0, "quy_Latn", "paws-x", "long", "Rimay kayta", "Arí, kayqa allin"))
  path = write_jsonl(root / "xp3x" / "train.jsonl", records)
  expected = {"kept": {"en": 12, "fr": 12}, "templates_removed_pct": 50.0,
              "instances_removed": 24, "not_mt5": 1}
  return path, expected


# ------------------------------------------------------------------ Data Provenance

PROVENANCE_CAP = 20


def write_data_provenance(root: Path) -> tuple[Path, dict]:
  records = [{"inputs": f"Write a poem about the number {i}.", "targets": f"Poem {i} ...",
              "task_name": "poetry_writing", "task_type": "creative writing"}
             for i in range(30)]
  records += [{"inputs": f"Premise {i}. Hypothesis {i}. Entailed?", "targets": "yes",
               "task_name": "snli_style", "task_type": "Textual Entailment"} for i in range(4)]
  records += [{"inputs": f"Translate {i}", "targets": f"Traduction {i}", "task_name": "xnli",
               "task_type": "translation"} for i in range(3)]
  records += [{"inputs": f"Sort list {i} in python", "targets": "sorted(x)",
               "task_name": "python_help", "task_type": "code"} for i in range(2)]
  records += [{"inputs": f"Summarise text {i}.", "targets": f"Summary {i}.",
               "task_name": "summaries", "language": "de"} for i in range(5)]
  path = write_jsonl(root / "data_provenance" / "data.jsonl", records)
  expected = {"kept": {"poetry_writing": PROVENANCE_CAP, "summaries": 5},
              "held_out": 4 + 2, "eval_derived": 3, "capped": 30 - PROVENANCE_CAP}
  return path, expected


# ------------------------------------------------------------------ ShareGPT-Command


def write_sharegpt(root: Path) -> tuple[Path, dict]:
  good = "Please explain how the water cycle works for a school project."
  records = [{"id": "1", "inputs": good, "targets": "Water evaporates ...", "language": "en"},
             {"id": "1", "inputs": "Tafadhali eleza jinsi mzunguko wa maji unavyofanya kazi.",
              "targets": "Maji huvukizwa ...", "language": "sw", "original_inputs": good},
             {"id": "2", "inputs": "Summarise https://example.com/page for me please",
              "targets": "It says ...", "language": "en"},
             {"id": "3", "inputs": "Write " + "very " * 2500 + "long text",
              "targets": "Ok.", "language": "en"},
             {"id": "4", "inputs": "Eleza hili tafadhali", "targets": "Sawa.",
              "language": "sw", "original_inputs": "Bitte erkläre mir das Wetter morgen früh."},
             {"id": "5", "inputs": "What is the capital city of Kenya, and why there?",
              "targets": "Nairobi ...", "language": "en"}]
  path = write_jsonl(root / "sharegpt" / "data.jsonl", records)
  expected = {"kept": {"en": 2, "sw": 1},
              "removed": {"prompt has a URL": 1, "prompt over 10000 characters": 1,
                          "prompt not English": 1}}
  return path, expected


def write_all_sources(root: Path) -> dict:
  """{source name: path} for the six sources (the gin macro AYA_SOURCES)."""
  return {"aya_dataset": str(write_aya_dataset(root)[0]),
          "aya_templated": str(write_aya_templated(root)[0].parent),
          "xp3x": str(write_xp3x(root)[0]),
          "data_provenance": str(write_data_provenance(root)[0]),
          "aya_translated": str(write_aya_translated(root)[0]),
          "sharegpt_command": str(write_sharegpt(root)[0])}
