"""The language table against independent references: TFDS's mC4 list, ISO 639, Joshi groups."""

import ast
import collections
import inspect

import pytest
from iso639 import Lang

from aya_t5x.data import languages


def _tfds_mc4_languages() -> list[str]:
  # Read the list from TFDS's source without importing TFDS's c4 builder (slow, needs beam).
  import tensorflow_datasets.text.c4 as c4_module

  source = inspect.getsource(c4_module)
  start = source.index("MC4_LANGUAGES = [")
  end = source.index("]", start)
  return ast.literal_eval(source[start + len("MC4_LANGUAGES = "):end + 1])


def test_table_is_mc4s_101_languages():
  mc4 = [code for code in _tfds_mc4_languages() if not code.endswith("-Latn")]
  table = languages.all_languages()
  assert len(table) == 101
  assert sorted(lang.mc4_code for lang in table) == sorted(mc4)


def test_iso_codes_agree_with_iso639():
  for lang in languages.all_languages():
    iso = Lang(lang.iso639_3)
    assert iso.pt1 == lang.iso639_1, lang
    assert Lang(lang.code).pt3 == lang.iso639_3, lang


def test_groups_follow_joshi_classes_and_the_paper_counts():
  counts = collections.Counter(lang.group for lang in languages.all_languages())
  # Aya: 101 languages "of which over 50% are considered as lower-resourced".
  assert counts == {"HR": 24, "MR": 26, "LR": 51}
  for lang in languages.all_languages():
    assert lang.group == languages.group_of(lang.joshi_class)
  # Joshi et al.'s class 5 ("the winners") as listed in the paper.
  winners = {lang.code for lang in languages.all_languages() if lang.joshi_class == 5}
  assert winners == {"ar", "zh", "en", "fr", "de", "ja", "es"}


@pytest.mark.parametrize("query, code", [
    ("sw", "sw"), ("swa", "sw"), ("swh", "sw"), ("Swahili", "sw"), ("swahili", "sw"),
    ("fre", "fr"), ("fra", "fr"), ("iw", "he"), ("heb", "he"), ("arb_Arab", "ar"),
    ("ary", "ar"), ("zh-Hans", "zh"), ("cmn_Hani", "zh"), ("zsm_Latn", "ms"), ("pt-BR", "pt"),
    ("tgl_Latn", "fil"), ("nob", "no"), ("pes_Arab", "fa"), ("npi_Deva", "ne"),
    ("Standard Arabic", "ar"), ("Scottish Gaelic", "gd"), ("ceb", "ceb"), ("haw", "haw"),
])
def test_lookup_by_any_code_or_name(query, code):
  assert languages.get_language(query).code == code


def test_unknown_codes_suggest_the_closest():
  with pytest.raises(languages.UnknownLanguageError) as e:
    languages.get_language("swahilli")
  assert "sw (Swahili)" in str(e.value)
  with pytest.raises(languages.UnknownLanguageError) as e:
    languages.get_language("que")  # Quechua: a real language, not one of mT5's
  assert "outside mT5's 101" in str(e.value)
  with pytest.raises(languages.UnknownLanguageError) as e:
    languages.get_language("xx")
  assert "not a known language" in str(e.value) and "languages.csv" in str(e.value)


def test_languages_in_group():
  assert {lang.code for lang in languages.languages_in_group("HR")} >= {"en", "hi", "vi"}
  assert "sw" in {lang.code for lang in languages.languages_in_group("LR")}
  with pytest.raises(ValueError, match="HR, MR, LR"):
    languages.languages_in_group("high")


def test_malformed_table_names_file_and_line(tmp_path):
  bad = tmp_path / "languages.csv"
  bad.write_text(languages.TABLE.read_text(encoding="utf-8").replace(",5,HR,", ",5,LR,", 1),
                 encoding="utf-8")
  with pytest.raises(ValueError, match=r"languages.csv:4: group LR does not match"):
    languages._read_table(bad)


# ----------------------------------------------------------------------------- added


@pytest.mark.parametrize("query, code", [
    ("isiZulu", "zu"), ("Kiswahili", "sw"), ("Chichewa", "ny"), ("zu-Latn", "zu"),
    ("swh_Latn", "sw"),
])
def test_common_names_and_tags_resolve(query, code):
  assert languages.get_language(query).code == code


@pytest.mark.parametrize("given, script, code, expected_script", [
    ("tn", "Latn", "tn", "Latn"), ("tsn", "Latn", "tn", "Latn"),
    ("Setswana", "latn", "tn", "Latn"), ("ff-Adlm", "", "ff", "Adlm"),
    ("tzm-Tfng", "", "tzm", "Tfng"), ("dv_thaa", "", "dv", "Thaa"),
])
def test_added_codes_are_normalised_against_iso639(given, script, code, expected_script):
  language = languages.new_language(given, name="X", script=script, group="lr")
  assert (language.code, language.script, language.group) == (code, expected_script, "LR")
  iso = Lang(language.iso639_3)
  assert iso.pt1 == language.iso639_1 and (iso.pt1 or iso.pt3) == code


def test_an_added_language_is_known_everywhere_and_keeps_its_group():
  assert languages.find_language("tn") is None
  languages.add_user_languages([languages.new_language("tsn", name="Tswana", script="Latn",
                                                       group="LR")])
  for query in ("tn", "tsn", "Tswana", "Setswana", "tn-Latn"):
    assert languages.get_language(query).code == "tn"
  assert not languages.is_mt5_language("tn") and languages.is_mt5_language("sw")
  assert len(languages.all_languages()) == 101  # mT5's table is unchanged
  with pytest.raises(ValueError, match="one of mT5's 101 languages already"):
    languages.check_addable(languages.new_language("sw", name="Swahili again",
                                                   script="Latn", group="LR"))


@pytest.mark.parametrize("given, message", [
    ("tn", "--script must be an ISO 15924 code"),
    ("ff-Adlm", "the tag says script Adlm, --script says Latn"),
    ("12", "give an ISO 639-1/639-3 code"),
])
def test_bad_added_languages_name_the_field(given, message):
  script = "Latn" if given != "tn" else "Latin"
  with pytest.raises(ValueError, match=message):
    languages.new_language(given, name="X", script=script, group="LR")


def test_the_unknown_code_message_names_close_languages_by_code_and_name_and_the_fix():
  with pytest.raises(languages.UnknownLanguageError) as e:
    languages.get_language("tn")
  message = str(e.value)
  assert "Tswana (ISO 639 tsn)" in message
  assert "aya-t5x languages add tn --name \"Tswana\"" in message
  with pytest.raises(languages.UnknownLanguageError) as e:
    languages.get_language("Swahilli")  # by name
  assert "sw (Swahili)" in str(e.value) and "languages add CODE" in str(e.value)
  with pytest.raises(languages.UnknownLanguageError) as e:
    languages.get_language("zuu")  # by code
  assert "zu (Zulu)" in str(e.value)


def test_an_added_language_is_an_aya_source_language(tmp_path):
  """Ayacucho Quechua (`quy` records of the Aya Dataset) is dropped until it is added."""
  import aya_t5x.mixtures  # noqa: F401  (the recipe's schemes)
  import aya_t5x.tasks  # noqa: F401  (the source specs)
  from aya_t5x.data import registration, report, schemes
  from tests.data import fixtures

  path, expected = fixtures.write_aya_dataset(tmp_path)
  before = registration.plan_source_tasks("aya_dataset", path)
  assert "aya_dataset.quy" not in {t.name for t in before.tasks}
  languages.add_user_languages([languages.new_language("quy", name="Quechua", script="Latn",
                                                       group="LR")])
  plan = schemes.plan_aya_mixture("human_heavy", {"aya_dataset": path},
                              allow_missing_sources=True)
  (quechua,) = [t for t in plan.source_tasks["aya_dataset"].tasks if t.language == "quy"]
  assert quechua.sizes["train"] == expected["removed_not_mt5"]
  assert quechua.resource_group == "LR"
  result = report.mixture_report(plan, steps=10, batch=4)
  (row,) = [r for r in result["languages"] if r["language"] == "quy"]
  assert (row["name"], row["group"]) == ("Quechua", "LR")
