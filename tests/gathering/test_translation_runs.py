"""Translating datasets: caps with a seeded sample per language, resumable shards, hosts,
dropped outputs counted, SeqIO task input, and registration of the output in one step."""

import json
from collections import Counter

import pytest

from aya_t5x import cli
from aya_t5x.data import manifest as manifest_lib
from aya_t5x.data import registration
from aya_t5x.gathering import translation_runs as runs
from aya_t5x.gathering.translation import DictionaryBackend
from tests.data.fixtures import write_jsonl

SENTENCES = {f"Sentence number {i}.": (f"Sentensi namba {i}.", f"Gbolohun nomba {i}.")
             for i in range(40)}
TABLE = {("en", "sw"): {k: v[0] for k, v in SENTENCES.items()},
         ("en", "yo"): {k: v[1] for k, v in SENTENCES.items()}}


def _records(n=12, datasets=("dolly",)):
  return [(f"in.jsonl:{i + 1}", {"inputs": f"Sentence number {i}.",
                                 "targets": f"Sentence number {(i + 1) % 40}. Sentence number "
                                            f"{(i + 2) % 40}.",
                                 "dataset": datasets[i % len(datasets)], "extra": i})
          for i in range(n)]


def _read_all(folder):
  return {p.name: p.read_text() for p in sorted((folder / runs.DATA_DIR).glob("*.jsonl"))}


def test_caps_sample_each_language_separately_and_leave_dolly_uncapped():
  records = _records(30, datasets=("dolly_v2", "xsum", "squad"))
  caps = runs.Caps(max_per_language=4, uncapped=("Dolly",), dataset_key="dataset", seed=1)
  units, _ = runs.plan_units(records, fields=("inputs", "targets"), source_language="English",
                             target_languages=["sw", "yo"], caps=caps)
  counts = Counter((u.target_language, u.record["dataset"]) for u in units)
  assert counts == {(lang, d): (10 if d == "dolly_v2" else 4)
                    for lang in ("sw", "yo") for d in ("dolly_v2", "xsum", "squad")}
  chosen = {lang: {u.source_id for u in units if u.target_language == lang and
                   u.record["dataset"] != "dolly_v2"} for lang in ("sw", "yo")}
  assert chosen["sw"] != chosen["yo"]  # a different sample per language
  again, _ = runs.plan_units(records, fields=("inputs", "targets"), source_language="en",
                             target_languages=["sw", "yo"], caps=caps)
  assert [u.key for u in again] == [u.key for u in units]  # seeded: the same plan
  other, _ = runs.plan_units(records, fields=("inputs", "targets"), source_language="en",
                             target_languages=["sw", "yo"],
                             caps=runs.Caps(max_per_language=4, dataset_key="dataset", seed=2))
  assert {u.key for u in other} != {u.key for u in units}
  assert [u.key for u in units[:2]] == ["00000000.sw", "00000001.sw"]  # input order
  with pytest.raises(ValueError, match="include the source language en"):
    runs.plan_units(records, fields=("inputs",), source_language="en",
                    target_languages=["sw", "eng"])


def test_bad_records_name_file_and_line_or_are_counted(tmp_path):
  path = write_jsonl(tmp_path / "in.jsonl", [{"inputs": "a", "targets": "b"},
                                             {"inputs": 3, "targets": "b"}],
                     extra_lines=[b"{broken"])
  with pytest.raises(ValueError, match=r"in.jsonl:3: broken JSON.*--tolerant"):
    runs.read_input(path)
  records, skipped = runs.read_input(path, tolerant=True)
  assert skipped.count == 1 and len(records) == 2
  with pytest.raises(ValueError, match=r"in.jsonl:2: field 'inputs' is int, not text"):
    runs.plan_units(records, fields=("inputs", "targets"), source_language="en",
                    target_languages=["sw"])
  units, more = runs.plan_units(records, fields=("inputs", "targets"), source_language="en",
                                target_languages=["sw"], tolerant=True)
  assert len(units) == 1 and more.count == 1


class Stop(Exception):
  pass


def _run(units, folder, *, stop_at=None, host_index=0, host_count=1, settings=None):
  worker = runs.translation_worker(DictionaryBackend(TABLE), ("inputs", "targets"),
                                   batch_size=3)
  calls = []

  def stopping(shard):
    calls.append(len(calls))
    if stop_at is not None and len(calls) == stop_at:
      raise Stop  # killed while this shard was being translated
    return worker(shard)

  return runs.run_shards(units, folder, stopping, settings=settings or {"step": "test"},
                         num_shards=4, host_index=host_index, host_count=host_count,
                         log=lambda line: None)


def test_a_stopped_run_resumes_where_it_stopped_and_equals_an_uninterrupted_run(tmp_path):
  units, _ = runs.plan_units(_records(), fields=("inputs", "targets"), source_language="en",
                             target_languages=["sw", "yo"])
  whole = _run(units, tmp_path / "whole")
  assert whole.complete and whole.ran == (0, 1, 2, 3)
  with pytest.raises(Stop):
    _run(units, tmp_path / "resumed", stop_at=2)  # stops inside shard 1, after shard 0
  assert [p.name for p in (tmp_path / "resumed" / runs.DATA_DIR).iterdir()] == \
      ["part-00000-of-00004.jsonl"]  # nothing half-written
  resumed = _run(units, tmp_path / "resumed")
  assert resumed.ran == (1, 2, 3) and resumed.complete
  assert _read_all(tmp_path / "resumed") == _read_all(tmp_path / "whole")
  assert resumed.written == whole.written == {"sw": 12, "yo": 12}
  with pytest.raises(ValueError, match=r"other settings \(step: 'test' there, 'other' now"):
    _run(units, tmp_path / "whole", settings={"step": "other"})


def test_hosts_take_their_own_shards(tmp_path):
  units, _ = runs.plan_units(_records(), fields=("inputs", "targets"), source_language="en",
                             target_languages=["sw", "yo"])
  first = _run(units, tmp_path / "shared", host_index=0, host_count=2)
  assert first.ran == (0, 2) and not first.complete
  second = _run(units, tmp_path / "shared", host_index=1, host_count=2)
  assert second.ran == (1, 3) and second.complete
  _run(units, tmp_path / "single")
  assert _read_all(tmp_path / "shared") == _read_all(tmp_path / "single")
  with pytest.raises(ValueError, match="host_index=2, host_count=2"):
    _run(units, tmp_path / "shared", host_index=2, host_count=2)


def test_output_records_and_dropped_translations_are_counted(tmp_path):
  table = {("en", "sw"): {"Good.": "Nzuri.", "Copy me.": "copy  ME.", "Unknown.": "<unk> x.",
                          "Fine.": "Sawa."}}
  records = [(f"in:{i}", {"inputs": text, "targets": "Fine.", "id": f"r{i}"})
             for i, text in enumerate(["Good.", "Copy me.", "Unknown.", "Missing.", "Good."])]
  units, _ = runs.plan_units(records, fields=("inputs", "targets"), source_language="en",
                             target_languages=["sw"], id_key="id")
  summary = runs.run_shards(units, tmp_path, runs.translation_worker(
      DictionaryBackend(table), ("inputs", "targets")), settings={}, log=lambda line: None)
  assert summary.written == {"sw": 2}
  assert summary.dropped == {"sw": {"copy": 1, "unk": 1, "empty": 1}}
  rows = [json.loads(line) for line in
          (tmp_path / runs.DATA_DIR / "part-00000-of-00001.jsonl").read_text().splitlines()]
  assert rows[0] == {"inputs": "Nzuri.", "targets": "Sawa.", "id": "r0.sw", "source_id": "r0",
                     "language": "sw", "source_language": "en",
                     "original": {"inputs": "Good.", "targets": "Fine."}}
  report, markdown = runs.format_summary(summary, title="T", backend="dictionary")
  assert report["languages"] == [{"language": "sw", "planned": 5, "written": 2,
                                  "dropped": {"copy": 1, "unk": 1, "empty": 1}}]
  assert "| sw | 5 | 2 | 1 | 1 | 1 | 0.400 |" in markdown


def test_cli_translates_a_seqio_task_and_registers_the_output(tmp_path, small_vocabulary,
                                                              capsys):
  import seqio

  source = write_jsonl(tmp_path / "src.jsonl",
                       [{"q": f"Sentence number {i}.", "a": f"Sentence number {i + 1}."}
                        for i in range(6)])
  registration.register_jsonl_task("translate_src_en", source, vocabulary=small_vocabulary,
                                   language="en", inputs_key="q", targets_key="a")
  records, _ = runs.read_input(task="translate_src_en")
  assert [r for _, r in records][0] == {"inputs": "Sentence number 0.",
                                        "targets": "Sentence number 1."}
  (tmp_path / "d.json").write_text(json.dumps({f"en-{lang}": entries for (_, lang), entries
                                               in TABLE.items()}))
  manifest, out = tmp_path / "tasks.json", tmp_path / "out"
  args = ["translate", "--task", "translate_src_en", "--target_languages", "sw,yo",
          "--output", str(out), "--backend", "dictionary", "--dictionary",
          str(tmp_path / "d.json"), "--examples_per_shard", "5", "--register", "src_tr",
          "--manifest", str(manifest)]
  assert cli.main(args) == 0
  printed = capsys.readouterr().out
  assert "SeqIO task(s) src_tr.sw, src_tr.yo" in printed
  assert (out / "translation_report.md").exists() and (out / "translation_report.json").exists()
  assert len(list((out / runs.DATA_DIR).glob("*.jsonl"))) == 3
  assert cli.main(args[:-4]) == 0  # a second run finds every shard done
  assert "this run" not in capsys.readouterr().out
  manifest_lib.load_manifest(str(manifest), small_vocabulary)
  task = seqio.get_mixture_or_task("src_tr.sw")
  got = [(small_vocabulary.decode(ex["inputs"].tolist()),
          small_vocabulary.decode(ex["targets"].tolist()))
         for ex in task.get_dataset(None, split="train", shuffle=False).as_numpy_iterator()]
  assert got == [(f"Sentensi namba {i}.", f"Sentensi namba {i + 1}.") for i in range(6)]


def test_the_translate_and_retranslate_steps_are_library_calls(tmp_path):
  from aya_t5x.gathering import roundtrip, translation

  data = tmp_path / "dolly.jsonl"
  data.write_text('{"inputs": "Hello there.", "targets": "Good day."}\n'
                  '{"inputs": "The cat sleeps.", "targets": "It is tired."}\n')
  backend = translation.DictionaryBackend({
      ("en", "sw"): {"Hello there.": "Habari.", "Good day.": "Siku njema.",
                "The cat sleeps.": "Paka analala.", "It is tired.": "Amechoka."},
      ("sw", "en"): {"Habari.": "Hello there.", "Siku njema.": "Good day.",
                "Paka analala.": "The cat sleeps.", "Amechoka.": "He is tired."}})
  result = runs.translate_dataset(backend, tmp_path / "sw", input_path=str(data),
                                  fields=["inputs", "targets"], source_language="en",
                                  target_languages=["sw"])
  assert result.summary.complete and result.summary.written == {"sw": 2}
  assert result.report_paths["markdown"] == tmp_path / "sw" / "translation_report.md"
  back = roundtrip.retranslate_dataset(backend, tmp_path / "sw", tmp_path / "back",
                                       scorer=roundtrip.RoundTripScorer())
  assert sorted(back.reports) == ["retranslation", "roundtrip"]
  scored = {r["original"]["targets"]: r["roundtrip"]["chrf"]
            for r in roundtrip.read_scored(back.summary.data_dir)}
  assert scored["Good day."] == 100.0 and scored["It is tired."] < 100.0
  with pytest.raises(ValueError, match="contains the input"):
    roundtrip.retranslate_dataset(backend, tmp_path / "back", tmp_path,
                                  scorer=roundtrip.RoundTripScorer())
