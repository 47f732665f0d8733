"""Retranslation and round-trip scores: sacrebleu's chrF++ and spBLEU, ranked for review."""

import json
import logging
import shutil

import pytest
import sacrebleu

from aya_t5x import cli
from aya_t5x.gathering import roundtrip
from aya_t5x.gathering import translation_runs as runs
from tests.data.fixtures import write_jsonl

PAIRS = [("The children read books at home.", "where do aliens come from"),
         ("The cat sees a small house near the river.", "The cat sees a house."),
         ("Heartbreak Hotel", "Heartbreak Hotel")]


def test_scores_equal_sacrebleu_with_the_fallback_tokenizers(caplog):
  scorer = roundtrip.RoundTripScorer()
  with caplog.at_level(logging.WARNING):
    for original, back in PAIRS:
      got = scorer.score(original, back, "en")
      assert got["chrf"] == pytest.approx(
          sacrebleu.sentence_chrf(back, [original], word_order=2).score)
      assert got["spbleu"] == pytest.approx(
          sacrebleu.sentence_bleu(back, [original], tokenize="13a").score)
      assert got["tokenizer"] == "13a"
  assert "no FLORES-200 SentencePiece model" in caplog.text
  zh = scorer.score("我们今天去看河边的小房子。", "我们今天去看小房子。", "zh")
  assert zh["tokenizer"] == "char" and zh["spbleu"] == pytest.approx(
      sacrebleu.sentence_bleu("我们今天去看小房子。", ["我们今天去看河边的小房子。"],
                              tokenize="char").score)
  originals, backs = zip(*PAIRS)
  assert scorer.corpus(originals, backs, "en")["spbleu"] == pytest.approx(
      sacrebleu.corpus_bleu(list(backs), [list(originals)], tokenize="13a").score)
  perfect = scorer.score(*PAIRS[2], "en")
  assert (perfect["chrf"], perfect["spbleu"]) == (pytest.approx(100.0), pytest.approx(100.0))


def test_spbleu_with_a_local_model_equals_sacrebleus_flores200_tokenizer(tmp_path, monkeypatch,
                                                                        sentences_file):
  from sacrebleu.tokenizers import tokenizer_spm

  from aya_t5x.vocab import vocabulary

  model = vocabulary.train_sentencepiece([sentences_file], tmp_path / "flores.model",
                                         vocab_size=300)
  # sacrebleu's own flores200 tokenizer, reading the same model from its cache folder.
  (tmp_path / "cache" / "models").mkdir(parents=True)
  shutil.copy(model, tmp_path / "cache" / "models" / "flores200sacrebleuspm")
  monkeypatch.setattr(tokenizer_spm, "SACREBLEU_DIR", str(tmp_path / "cache"))
  scorer = roundtrip.RoundTripScorer(model)
  for original, back in PAIRS[:2]:
    got = scorer.score(original, back, "en")
    assert got["tokenizer"] == "flores200"
    assert got["spbleu"] == pytest.approx(
        sacrebleu.sentence_bleu(back, [original], tokenize="flores200").score)
  with pytest.raises(FileNotFoundError, match="flores200sacrebleuspm"):
    roundtrip.RoundTripScorer(tmp_path / "missing.model")


def test_retranslate_scores_each_round_trip_and_ranks_the_worst_first(tmp_path):
  data = {"en-sw": {"Heartbreak Hotel": "Hoteli ya Moyo", "Good morning.": "Habari za asubuhi.",
                    "where do aliens come from": "wageni wanatoka wapi",
                    "The dog runs.": "Mbwa anakimbia."},
          "sw-en": {"Hoteli ya Moyo": "Heartbreak Hotel", "Habari za asubuhi.": "Good morning.",
                    "wageni wanatoka wapi": "where do guests come from",
                    "Mbwa anakimbia.": "The dog runs."}}
  (tmp_path / "d.json").write_text(json.dumps(data))
  write_jsonl(tmp_path / "in.jsonl", [{"inputs": k, "targets": "Good morning."}
                                      for k in data["en-sw"] if k != "Good morning."])
  backend = ["--backend", "dictionary", "--dictionary", str(tmp_path / "d.json")]
  assert cli.main(["translate", "--input", str(tmp_path / "in.jsonl"), "--target_languages",
                   "sw", "--output", str(tmp_path / "sw"), *backend]) == 0
  assert cli.main(["retranslate", "--input", str(tmp_path / "sw"), "--output",
                   str(tmp_path / "back"), *backend]) == 0
  records = roundtrip.read_scored(tmp_path / "back" / runs.DATA_DIR)
  by_input = {r["original"]["inputs"]: r for r in records}
  hotel = by_input["Heartbreak Hotel"]
  assert hotel["retranslation"] == {"inputs": "Heartbreak Hotel", "targets": "Good morning."}
  assert hotel["roundtrip"]["chrf"] == pytest.approx(100.0)  # a perfect round trip
  aliens = by_input["where do aliens come from"]["roundtrip"]
  assert aliens["chrf"] == pytest.approx(sacrebleu.sentence_chrf(
      "where do guests come from\nGood morning.", ["where do aliens come from\nGood morning."],
      word_order=2).score)
  order = [r["original"]["inputs"] for r in roundtrip.ranked(records)]
  assert order[0] == "where do aliens come from"  # the pre-screen catches this one only
  assert by_input["The dog runs."]["roundtrip"]["chrf"] == pytest.approx(100.0)
  report = json.loads((tmp_path / "back" / "roundtrip_report.json").read_text())
  assert report["lowest"][0]["id"] == by_input["where do aliens come from"]["id"]
  assert report["languages"][0]["tokenizer"] == "13a"
  assert "en->sw->en" in (tmp_path / "back" / "roundtrip_report.md").read_text()
  with pytest.raises(ValueError, match="not a translated record"):
    roundtrip.retranslation_units([("x.jsonl:1", {"inputs": "a"})])
