"""Metrics against sacrebleu, rouge-score and transformers' SQuAD metric, in every script."""

import logging
import re
import string

import pytest
from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.tokenizers import tokenizer_spm

from aya_t5x.evaluation import metrics, text
from aya_t5x.testing.vocabularies import multilingual_sentences
from aya_t5x.vocab import vocabulary

HINDI = "भारत की राजधानी नई दिल्ली है। यह एक बहुत बड़ा शहर है।"
CHINESE = "北京是中国的首都。它是一座很大的城市。"


def test_words_keep_marks_with_their_letters_and_split_unspaced_scripts():
  assert text.words("हिंदी भाषा, का इतिहास।") == ["हिंदी", "भाषा", "का", "इतिहास"]
  assert text.words("我爱北京。It's 3 cats!") == ["我", "爱", "北", "京", "it", "s", "3", "cats"]
  # Thai vowel signs and tone marks stay with their consonant.
  assert text.words("สวัสดี") == ["ส", "วั", "ส", "ดี"]
  assert text.sentences("One. Two! 第一。第二。 नमस्ते। दूसरा") == [
      "One.", "Two!", "第一。", "第二。", "नमस्ते।", "दूसरा"]


@pytest.mark.parametrize("summary", [HINDI, CHINESE, "สวัสดีครับ วันนี้อากาศดี"])
def test_identical_summaries_in_any_script_score_100(summary):
  assert metrics.rouge_lsum([summary], [summary])["rougeLsum"] == pytest.approx(100.0)
  # rouge-score's own tokenizer drops every non-ASCII letter: the failure this avoids.
  own = rouge_scorer.RougeScorer(["rougeLsum"]).score(summary, summary)["rougeLsum"]
  assert own.fmeasure == 0.0


def test_english_rouge_lsum_equals_rouge_score():
  pairs = [("The cat sat on the mat. It was happy.", "The cat was on the mat. It looked happy."),
           ("Rain fell all day in the north.", "It rained in the north! Roads flooded."),
           ("Prices rose 3 percent in May.", "In May, prices went up by 3 percent.")]
  scorer = rouge_scorer.RougeScorer(["rougeLsum"])
  expected = [scorer.score(t.replace(". ", ".\n").replace("! ", "!\n"),
                           p.replace(". ", ".\n").replace("! ", "!\n"))["rougeLsum"].fmeasure
              for t, p in pairs]
  got = metrics.rouge_lsum([t for t, _ in pairs], [p for _, p in pairs])["rougeLsum"]
  assert got == pytest.approx(100 * sum(expected) / len(expected), abs=1e-9)
  assert 0 < got < 100


def test_rouge_gives_partial_credit_in_chinese():
  score = metrics.rouge_lsum([CHINESE], ["北京是中国的城市。"])["rougeLsum"]
  assert 30 < score < 90


@pytest.fixture(scope="module")
def flores_spm(tmp_path_factory):
  folder = tmp_path_factory.mktemp("spm")
  corpus = folder / "text.txt"
  corpus.write_text("\n".join(multilingual_sentences(300)), encoding="utf-8")
  return vocabulary.train_sentencepiece([corpus], folder / "flores200.model", vocab_size=300)


HYPOTHESES = ["the cat sees a small house", "mtoto anasoma kitabu leo", "猫看见河边的小房子",
              ""]
REFERENCES = ["the cat sees a house near the river", "mtoto anasoma kitabu nyumbani",
              "猫看见小房子", "кошка видит дом"]


def test_spbleu_equals_sacrebleus_flores200_tokenizer(flores_spm, tmp_path, monkeypatch):
  result = metrics.TranslationMetrics(target_language="sw", spm_model=str(flores_spm))(
      REFERENCES, HYPOTHESES)
  # sacrebleu itself, with its flores200 model file taken from a local folder.
  (tmp_path / "models").mkdir()
  (tmp_path / "models" / "flores200sacrebleuspm").write_bytes(flores_spm.read_bytes())
  monkeypatch.setattr(tokenizer_spm, "SACREBLEU_DIR", str(tmp_path))
  expected = BLEU(tokenize="flores200").corpus_score(HYPOTHESES, [REFERENCES]).score
  assert result["spbleu"] == pytest.approx(expected, abs=1e-9)
  assert 0 < result["spbleu"] < 100
  assert result["chrf++"] == pytest.approx(
      CHRF(word_order=2).corpus_score(HYPOTHESES, [REFERENCES]).score, abs=1e-9)
  assert result["spbleu_tokenizer"].textdata == "flores200"


@pytest.mark.parametrize("language, tokenizer", [("sw", "13a"), ("zh", "char"), ("th", "char")])
def test_without_the_model_bleu_falls_back_to_a_named_tokenizer(language, tokenizer, caplog):
  with caplog.at_level(logging.WARNING):
    result = metrics.TranslationMetrics(target_language=language)(REFERENCES, HYPOTHESES)
  assert result["spbleu_tokenizer"].textdata == tokenizer
  assert result["spbleu"] == pytest.approx(
      BLEU(tokenize=tokenizer).corpus_score(HYPOTHESES, [REFERENCES]).score, abs=1e-9)
  assert "no FLORES-200 SentencePiece model" in caplog.text and repr(tokenizer) in caplog.text


def test_a_missing_spbleu_model_is_an_error_naming_it(tmp_path):
  with pytest.raises(FileNotFoundError, match=r"nowhere\.model not found .*--spbleu_model"):
    metrics.TranslationMetrics(target_language="sw", spm_model=str(tmp_path / "nowhere.model"))(
        ["a"], ["a"])


def test_squad_f1_and_exact_match_equal_the_squad_script_in_english():
  from transformers.data.metrics import squad_metrics

  golds = [["the Eiffel Tower", "Eiffel Tower"], ["in 1889"], ["Paris, France"], ["blue"]]
  predictions = ["Eiffel tower!", "1889", "paris", "The sky is blue today"]
  result = metrics.squad(golds, predictions)
  f1 = [max(squad_metrics.compute_f1(g, p) for g in gs) for gs, p in zip(golds, predictions)]
  em = [max(squad_metrics.compute_exact(g, p) for g in gs) for gs, p in zip(golds, predictions)]
  assert result["f1"] == pytest.approx(100 * sum(f1) / len(f1))
  assert result["exact_match"] == pytest.approx(100 * sum(em) / len(em))


def squad_v11_normalize(answer: str) -> str:
  """The SQuAD v1.1 evaluation script's `normalize_answer`, from its published rules:
  lower case; delete every ASCII punctuation character; replace the words a, an, the with
  a space; collapse whitespace."""
  answer = answer.lower()
  answer = "".join(c for c in answer if c not in set(string.punctuation))
  answer = re.sub(r"\b(a|an|the)\b", " ", answer)
  return " ".join(answer.split())


EXACT_MATCH_CASES = [  # (target, prediction, whether SQuAD counts it a hit)
    ("Eiffel Tower", "Eiffel Tower", True),
    ("Eiffel Tower", "eiffel tower", True),          # case
    ("Eiffel Tower", "the Eiffel Tower.", True),     # article, punctuation
    ("Paris, France", "Paris France", True),         # punctuation inside
    ("in 1889", "  in   1889 ", True),               # spacing
    ("an apple", "apple", True),                     # article
    ("A-team", "ateam", True),                       # punctuation deleted, not a space
    ("theatre", "atre", False),                      # 'the' only as a word
    ("Eiffel Tower", "Eiffel", False),
    ("1889", "1899", False),
    ("blue", "The sky is blue", False),
    ("moja", "", False),
]


@pytest.mark.parametrize("target,prediction,hit", EXACT_MATCH_CASES)
def test_exact_match_hits_and_misses_as_the_squad_script_normalises(target, prediction, hit):
  assert (squad_v11_normalize(target) == squad_v11_normalize(prediction)) == hit  # the case
  assert metrics.exact_match([target], [prediction]) == {"exact_match": 100.0 * hit}


def test_exact_match_is_the_share_of_hits_over_a_corpus():
  targets, predictions, hits = zip(*EXACT_MATCH_CASES)
  expected = 100.0 * sum(squad_v11_normalize(t) == squad_v11_normalize(p)
                         for t, p in zip(targets, predictions)) / len(targets)
  assert expected == pytest.approx(100.0 * sum(hits) / len(hits))
  assert metrics.exact_match(list(targets), list(predictions))["exact_match"] == (
      pytest.approx(expected))


def test_squad_in_scripts_without_spaces_compares_characters():
  # 東京 against 東京都: precision 1, recall 2/3, F1 0.8; punctuation of any script ignored.
  assert metrics.squad([["東京都"]], ["東京。"]) == {"f1": pytest.approx(80.0),
                                                     "exact_match": 0.0}
  assert metrics.squad([["กรุงเทพ"]], ["กรุงเทพ"])["exact_match"] == 100.0


def test_empty_predictions_score_zero_without_failing():
  targets = ["tano tatu", "moja"]
  assert metrics.exact_match(targets, ["", ""]) == {"exact_match": 0.0}
  assert metrics.chrf(targets, ["", ""]) == {"chrf": 0.0}
  assert metrics.rouge_lsum(targets, ["", "  "]) == {"rougeLsum": 0.0}
  assert metrics.squad([["moja"], ["mbili"]], ["", ""]) == {"f1": 0.0, "exact_match": 0.0}
  result = metrics.TranslationMetrics(target_language="sw")(targets, ["", ""])
  assert (result["spbleu"], result["chrf++"]) == (0.0, 0.0)


def test_rank_classification_is_the_median_over_templates():
  # Two examples x three templates x two options; the correct option is the first.
  targets, scores = [], []
  choices = {0: (1.0, 0.0), 1: (1.0, 0.0), 2: (0.0, 1.0)}  # template -> example 0's scores
  for template, first in choices.items():
    for example in (0, 1):
      for option in (0, 1):
        targets.append(metrics.RankTarget(example, template, option == 0))
        # Example 1 is right in template 0 only; ties go to the first option.
        second = {0: -1.0, 1: 0.0, 2: 5.0}[template] if example == 1 else first[1]
        scores.append((first[0] if example == 0 else 0.0) if option == 0 else second)
  result = metrics.rank_classification(targets, scores)
  assert result["accuracy_template_0"] == 100.0
  assert result["accuracy_template_1"] == 100.0  # a tie picks the first option
  assert result["accuracy_template_2"] == 0.0
  assert result["accuracy"] == 100.0  # the median of 100, 100, 0
