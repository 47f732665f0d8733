"""Coverage reports: counts checked by hand, the report files, and the `vocab` commands."""

import json

import pytest
import sentencepiece as spm

from aya_t5x import cli
from aya_t5x.testing import vocabularies
from aya_t5x.vocab import coverage, vocabulary


@pytest.fixture(scope="module")
def base(tmp_path_factory):
  folder = tmp_path_factory.mktemp("coverage")
  text = vocabularies.write_sentences(folder / "base.txt")
  return vocabulary.train_sentencepiece([text], folder / "base.model", vocab_size=300,
                                        model_type="bpe")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  folder = tmp_path_factory.mktemp("coverage_text")
  english = folder / "en.txt"
  english.write_text("\n".join(s for s in vocabularies.multilingual_sentences(70)
                               if s.startswith(("the", "a ", "cat", "sees", "small", "house",
                                                "near", "river", "and", "children", "read",
                                                "books"))) + "\n", encoding="utf-8")
  return {"en": english,
          "dv": vocabularies.write_sentences(folder / "dv.txt", 30, seed=3, new_script=True)}


def test_words_of_spaced_and_spaceless_scripts():
  assert coverage.count_words("the cat  sees") == 3
  assert coverage.count_words("猫看见河") == 4  # a character of Han is a word
  assert coverage.count_words("ภาษา ไทย") == 7
  assert coverage.count_words("abc中def 1") == 4  # abc, 中, def, 1
  assert coverage.count_words("") == 0


def test_measure_counts_pieces_unknowns_and_uncovered_characters(base):
  processor = spm.SentencePieceProcessor(model_file=str(base))
  lines = ["the cat", "ދިވެހި ދ", "", "Ω"]
  result = coverage.measure(processor, lines)
  ids = [processor.encode(line) for line in lines if line]
  assert result.lines == 3 and result.words == 5
  assert result.pieces == sum(map(len, ids))
  assert result.unknown_pieces == sum(i == 2 for row in ids for i in row) >= 3
  assert result.characters == len("thecatދިވެހިދΩ")
  # ދ appears twice; every Thaana letter and Ω are uncovered, Latin is not.
  assert result.uncovered_characters["ދ"] == 2 and result.uncovered_characters["Ω"] == 1
  assert not {"t", "h", "e"} & set(result.uncovered_characters)
  assert list(result.uncovered_characters)[0] == "ދ"  # most frequent first


def test_report_command_writes_json_markdown_and_png(base, files, tmp_path, capsys):
  code = cli.main(["vocab", "report", "--vocabulary", str(base), "--text", f"en={files['en']}",
                   "--text", f"dv={files['dv']}", "--output", str(tmp_path / "report")])
  assert code == 0
  report = json.loads((tmp_path / "report" / "vocab_report.json").read_text())
  assert set(report) == {"en", "dv"}
  for entry in report.values():
    assert {"pieces_per_word", "unknown_share", "uncovered_characters"} <= set(entry)
  assert report["en"]["unknown_share"] == 0 and report["en"]["pieces_per_word_vs_english"] == 1
  assert report["dv"]["unknown_share"] > 0.3 and "ދ" in report["dv"]["uncovered_characters"]
  assert report["dv"]["pieces_per_word_vs_english"] == pytest.approx(
      report["dv"]["pieces_per_word"] / report["en"]["pieces_per_word"])
  markdown = (tmp_path / "report" / "vocab_report.md").read_text()
  assert "| dv |" in markdown and "U+078B THAANA LETTER DHAALU" in markdown
  assert (tmp_path / "report" / "vocab_report.png").read_bytes()[:4] == b"\x89PNG"
  assert "dv:" in capsys.readouterr().out


def test_train_extend_and_report_from_the_command_line(files, tmp_path, capsys):
  model = tmp_path / "m.model"
  assert cli.main(["vocab", "train", "--text", str(files["en"]), "--output", str(model),
                   "--vocab_size", "60", "--model_type", "bpe"]) == 0
  processor = spm.SentencePieceProcessor(model_file=str(model))
  assert (processor.pad_id(), processor.eos_id(), processor.unk_id()) == (0, 1, 2)
  assert cli.main(["vocab", "extend", "--vocabulary", str(model), "--text", str(files["dv"]),
                   "--pieces", "80", "--output", str(tmp_path / "x.model")]) == 0
  out = capsys.readouterr().out
  assert "text: before" in out and "text: after  " in out and "0.0% unknown" in out
  assert "resize-checkpoint" in out


def test_bad_text_flags_are_named(base, tmp_path, capsys):
  bad = tmp_path / "bad.txt"
  bad.write_bytes(b"fine\n\xff\xfe\n")
  assert cli.main(["vocab", "report", "--vocabulary", str(base), "--text", f"xx={bad}",
                   "--output", str(tmp_path / "r")]) == 2
  assert "bad.txt:2: not UTF-8" in capsys.readouterr().err
  with pytest.raises(SystemExit):
    cli.main(["vocab", "report", "--vocabulary", str(base), "--output", str(tmp_path / "r")])
  assert "give --text LANG=FILE" in capsys.readouterr().err


def test_report_reads_a_registered_task(base, tmp_path):
  import seqio
  import tensorflow as tf

  sentences = vocabularies.new_script_sentences(20, seed=5)
  name = "vocab_report_test_dv"
  if name not in seqio.TaskRegistry.names():
    seqio.TaskRegistry.add(
        name, source=seqio.FunctionDataSource(
            lambda split, shuffle_files, seed=None: tf.data.Dataset.from_tensor_slices(
                {"inputs": sentences, "targets": sentences[::-1]}), splits=["train"]),
        preprocessors=[seqio.preprocessors.tokenize],
        output_features={k: seqio.Feature(vocabulary.sentencepiece_vocabulary(str(base)))
                         for k in ("inputs", "targets")})
  assert cli.main(["vocab", "report", "--vocabulary", str(base), "--task", f"dv={name}",
                   "--max_examples", "5", "--output", str(tmp_path)]) == 0
  report = json.loads((tmp_path / "vocab_report.json").read_text())
  assert report["dv"]["lines"] == 10  # 5 examples, inputs and targets
  assert report["dv"]["unknown_share"] > 0.3
