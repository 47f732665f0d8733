"""Benchmarks as SeqIO tasks: registered without data, rows from published files, errors."""

import json

import numpy as np
import pytest
import seqio

import aya_t5x.tasks.evaluation  # noqa: F401  (the benchmarks, as the eval gin files import them)
from aya_t5x.evaluation import eval_sets
from aya_t5x.evaluation import suite as suite_lib
from aya_t5x.tasks import eval_flores, eval_mmlu, eval_xcopa
from tests.evaluation import fixtures

BYTES = seqio.ByteVocabulary()

# FLORES-200's published language codes (its README), to check the mapping against.
FLORES_200_CODES = set("""
ace_Arab ace_Latn acm_Arab acq_Arab aeb_Arab afr_Latn ajp_Arab aka_Latn amh_Ethi apc_Arab
arb_Arab arb_Latn ars_Arab ary_Arab arz_Arab asm_Beng ast_Latn awa_Deva ayr_Latn azb_Arab
azj_Latn bak_Cyrl bam_Latn ban_Latn bel_Cyrl bem_Latn ben_Beng bho_Deva bjn_Arab bjn_Latn
bod_Tibt bos_Latn bug_Latn bul_Cyrl cat_Latn ceb_Latn ces_Latn cjk_Latn ckb_Arab crh_Latn
cym_Latn dan_Latn deu_Latn dik_Latn dyu_Latn dzo_Tibt ell_Grek eng_Latn epo_Latn est_Latn
eus_Latn ewe_Latn fao_Latn fij_Latn fin_Latn fon_Latn fra_Latn fur_Latn fuv_Latn gla_Latn
gle_Latn glg_Latn grn_Latn guj_Gujr hat_Latn hau_Latn heb_Hebr hin_Deva hne_Deva hrv_Latn
hun_Latn hye_Armn ibo_Latn ilo_Latn ind_Latn isl_Latn ita_Latn jav_Latn jpn_Jpan kab_Latn
kac_Latn kam_Latn kan_Knda kas_Arab kas_Deva kat_Geor knc_Arab knc_Latn kaz_Cyrl kbp_Latn
kea_Latn khm_Khmr kik_Latn kin_Latn kir_Cyrl kmb_Latn kmr_Latn kon_Latn kor_Hang lao_Laoo
lij_Latn lim_Latn lin_Latn lit_Latn lmo_Latn ltg_Latn ltz_Latn lua_Latn lug_Latn luo_Latn
lus_Latn lvs_Latn mag_Deva mai_Deva mal_Mlym mar_Deva min_Arab min_Latn mkd_Cyrl plt_Latn
mlt_Latn mni_Beng khk_Cyrl mos_Latn mri_Latn mya_Mymr nld_Latn nno_Latn nob_Latn npi_Deva
nso_Latn nus_Latn nya_Latn oci_Latn gaz_Latn ory_Orya pag_Latn pan_Guru pap_Latn pes_Arab
pol_Latn por_Latn prs_Arab pbt_Arab quy_Latn ron_Latn run_Latn rus_Cyrl sag_Latn san_Deva
sat_Olck scn_Latn shn_Mymr sin_Sinh slk_Latn slv_Latn smo_Latn sna_Latn snd_Arab som_Latn
sot_Latn spa_Latn als_Latn srd_Latn srp_Cyrl ssw_Latn sun_Latn swe_Latn swh_Latn szl_Latn
tam_Taml tat_Cyrl tel_Telu tgk_Cyrl tgl_Latn tha_Thai tir_Ethi taq_Latn taq_Tfng tpi_Latn
tsn_Latn tso_Latn tuk_Latn tum_Latn tur_Latn twi_Latn tzm_Tfng uig_Arab ukr_Cyrl umb_Latn
urd_Arab uzn_Latn vec_Latn vie_Latn war_Latn wol_Latn xho_Latn ydd_Hebr yor_Latn yue_Hant
zho_Hans zho_Hant zsm_Latn zul_Latn""".split())


def rows_of(task_name, split):
  task = seqio.get_mixture_or_task(task_name)
  return list(task.get_dataset(None, split=split, shuffle=False).as_numpy_iterator())


def text(value):
  return value.decode("utf-8")


def test_tasks_register_without_data_and_fail_clearly_when_read(tmp_path):
  mixture = eval_sets.register_benchmark("xnli", vocabulary=BYTES, data_dir=tmp_path)
  names = [t.name for t in seqio.get_mixture_or_task(mixture).tasks]
  assert len(names) == 15 and "aya_eval.xnli.sw" in names
  with pytest.raises(FileNotFoundError, match=rf"{tmp_path}/xnli/xnli\.dev\.tsv not found; "
                     r"expected XNLI-1\.0's xnli\.<split>\.tsv"):
    rows_of("aya_eval.xnli.sw", "validation")
  # No folder at all: the message says how to give one.
  eval_sets.register_benchmark("xnli", vocabulary=BYTES)
  with pytest.raises(FileNotFoundError, match=r"no data folder; pass --data_dir ROOT \(with "
                     r"xnli/ inside\), --data xnli=PATH, or set AYA_EVAL_DATA"):
    rows_of("aya_eval.xnli.sw", "validation")


def test_suite_plan_lists_missing_files_or_skips_them(tmp_path):
  fixtures.write_xnli(tmp_path)
  entries = [suite_lib.EvalTask(benchmark="xnli"), suite_lib.EvalTask(benchmark="xwinograd")]
  suite = suite_lib.EvalSuite(name="t", tasks=entries, vocabulary=BYTES, data_dir=str(tmp_path))
  with pytest.raises(FileNotFoundError) as error:
    suite_lib.plan(suite)
  message = str(error.value)
  assert "XWinograd: 6 file(s) not found" in message and "XNLI" not in message
  assert f"{tmp_path}/xwinograd/test/jp.jsonl" in message and "--allow_missing" in message
  # The one XNLI file holds only en and sw: the other 13 languages have no examples.
  with pytest.raises(ValueError) as error:
    suite_lib.plan(suite_lib.EvalSuite(name="t", tasks=entries[:1], vocabulary=BYTES,
                                       data_dir=str(tmp_path)))
  message = str(error.value)
  assert f"aya_eval.xnli.fr: no examples in {tmp_path}/xnli/xnli.dev.tsv" in message
  assert "aya_eval.xnli.sw" not in message and "--allow_missing" in message
  plan = suite_lib.plan(suite_lib.EvalSuite(name="t", tasks=entries, vocabulary=BYTES,
                                            data_dir=str(tmp_path), allow_missing=True))
  assert [task.name for task in plan.tasks] == ["aya_eval.xnli.en", "aya_eval.xnli.sw"]
  assert len(plan.skipped) == 13 + 6
  assert ("aya_eval.xwinograd.en", ) == plan.skipped[13][:1]


def test_a_benchmark_needs_the_vocabulary_and_a_known_name():
  with pytest.raises(ValueError, match="mixtures/vocabulary.gin"):
    suite_lib.plan(suite_lib.EvalSuite(name="t", tasks=[suite_lib.EvalTask(benchmark="xcopa")]))
  with pytest.raises(ValueError, match="unknown benchmark 'xcoap'. Did you mean xcopa"):
    suite_lib.plan(suite_lib.EvalSuite(name="t", tasks=[suite_lib.EvalTask(benchmark="xcoap")],
                                       vocabulary=BYTES))


@fixtures.needs_real_xcopa
def test_xcopa_rows_from_the_real_files():
  eval_sets.register_benchmark("xcopa", vocabulary=BYTES, data_dir=fixtures.XCOPA_ROOT)
  rows = rows_of("aya_eval.xcopa.sw", "validation")
  templates = len(eval_xcopa.TEMPLATES)
  assert len(rows) == 100 * templates * 2
  first = json.loads((fixtures.XCOPA_DIR / "val.sw.jsonl").read_text().splitlines()[0])
  for row in rows[:2 * templates]:
    assert int(row["idx"]) == 0
    assert text(row["targets_pretokenized"]) == first[f"choice{int(row['option']) + 1}"]
    assert bool(row["is_correct"]) == (int(row["option"]) == first["label"])
    assert first["premise"] in text(row["inputs_pretokenized"])
    assert list(row["targets"]) == list(BYTES.encode(first[f"choice{int(row['option']) + 1}"])
                                        ) + [1]
  # Exactly one correct option per example and template.
  correct = {}
  for row in rows:
    key = (int(row["idx"]), int(row["template"]))
    correct[key] = correct.get(key, 0) + bool(row["is_correct"])
  assert set(correct.values()) == {1} and len(correct) == 100 * templates


def test_rank_rows_of_the_other_held_out_sets(tmp_path):
  fixtures.write_xnli(tmp_path)
  fixtures.write_xstorycloze(tmp_path)
  fixtures.write_xwinograd(tmp_path)
  for name in ("xnli", "xstorycloze", "xwinograd"):
    eval_sets.register_benchmark(name, vocabulary=BYTES, data_dir=tmp_path)
  xnli = rows_of("aya_eval.xnli.sw", "validation")
  correct = [text(r["targets_pretokenized"]) for r in xnli if r["is_correct"]]
  assert correct[:4] == ["False", "No", "No", "No"]  # example 0 is a contradiction
  story = rows_of("aya_eval.xstorycloze.sw", "validation")
  assert {text(r["targets_pretokenized"]) for r in story if r["is_correct"] and r["idx"] == 1
          } == {fixtures.STORIES[1][1][1]}
  ja = rows_of("aya_eval.xwinograd.ja", "test")  # read from jp.jsonl
  assert {text(r["targets_pretokenized"]) for r in ja if r["is_correct"]} == {"スーツケース"}


def test_mmlu_five_shots_from_dev_and_the_question_last(tmp_path):
  fixtures.write_mmlu(tmp_path, tests=2, shots=6)
  eval_sets.register_benchmark("mmlu", vocabulary=BYTES, data_dir=tmp_path)
  rows = rows_of("aya_eval.mmlu.id", "test")
  assert [text(r["targets_pretokenized"]) for r in rows[:4]] == ["A", "B", "C", "D"]
  assert [bool(r["is_correct"]) for r in rows[:4]] == [False, True, False, False]
  prompt = text(rows[4]["inputs_pretokenized"])
  assert prompt.startswith(eval_mmlu.HEADER)
  for shot in range(5):  # the first five dev records, answered
    record = fixtures.mmlu_record(100 + shot, "ABCD"[shot % 4])
    assert f"{record['instruction']}\nA. " in prompt
    assert f"Answer: {'ABCD'[shot % 4]}\n\n" in prompt
  assert fixtures.mmlu_record(105)["instruction"] not in prompt  # only five shots
  assert prompt.endswith("Soal 1: berapa 2 + 1?\nA. 1\nB. 3\nC. nol\nD. seratus\nAnswer:")


def test_generative_rows_flores_xlsum_tydiqa(tmp_path):
  fixtures.write_flores(tmp_path)
  fixtures.write_xlsum(tmp_path)
  fixtures.write_tydiqa(tmp_path)
  for name in ("flores_x_en", "flores_en_x", "xlsum", "tydiqa"):
    eval_sets.register_benchmark(name, vocabulary=BYTES, data_dir=tmp_path)
  x_en = rows_of("aya_eval.flores_x_en.sw", "devtest")
  assert [(text(r["inputs_pretokenized"]), text(r["targets_pretokenized"])) for r in x_en] == [
      (f"Translate to English: {s}", e)
      for s, e in zip(fixtures.FLORES["swh_Latn"], fixtures.FLORES["eng_Latn"])]
  en_x = rows_of("aya_eval.flores_en_x.zh", "devtest")
  assert text(en_x[0]["inputs_pretokenized"]) == "Translate to Chinese: The cat sleeps."
  assert text(en_x[0]["targets_pretokenized"]) == "猫在睡觉。"
  summaries = rows_of("aya_eval.xlsum.hi", "validation")
  assert [text(r["targets_pretokenized"]) for r in summaries] == [r["summary"] for r in
                                                                  fixtures.XLSUM]
  assert text(summaries[0]["inputs_pretokenized"]).endswith(fixtures.XLSUM[0]["text"])
  sw = rows_of("aya_eval.tydiqa.sw", "validation")  # only the swahili- ids
  assert len(sw) == 1 and [text(a) for a in sw[0]["answers"]] == ["Nairobi",
                                                                   "Nairobi ni mji mkuu"]
  assert text(sw[0]["inputs_pretokenized"]).startswith("Question: Mji mkuu wa Kenya ni upi?")
  assert len(rows_of("aya_eval.tydiqa.ja", "validation")) == 1


def test_flores_files_must_be_line_aligned(tmp_path):
  folder = fixtures.write_flores(tmp_path)
  (folder / "swh_Latn.devtest").write_text("Paka analala.\n", encoding="utf-8")
  eval_sets.register_benchmark("flores_x_en", vocabulary=BYTES, data_dir=tmp_path)
  with pytest.raises(Exception, match="has 1 lines but .*eng_Latn.devtest has 3"):
    rows_of("aya_eval.flores_x_en.sw", "devtest")


def test_every_flores_language_has_a_published_flores_200_code():
  codes = [eval_flores.flores_code(c) for c in eval_flores.LANGUAGES]
  assert len(codes) == len(set(codes)) == 95
  assert set(codes) <= FLORES_200_CODES, set(codes) - FLORES_200_CODES


def test_data_folder_order_paths_then_root_then_environment(tmp_path, monkeypatch):
  bench = eval_sets.get_benchmark("flores_x_en")
  monkeypatch.setenv(eval_sets.DATA_ENV, str(tmp_path / "env"))
  assert eval_sets.data_folder(bench) == tmp_path / "env" / "flores200"
  assert eval_sets.data_folder(bench, tmp_path) == tmp_path / "flores200"
  assert eval_sets.data_folder(bench, tmp_path, {"flores200": "/x"}).as_posix() == "/x"
  assert eval_sets.language_name("zh_hant") == "Chinese (Traditional)"


def test_rank_rows_layout():
  rows = eval_sets.rank_rows([{"q": "a"}, {"q": "b"}],
                              [lambda r: (r["q"], ["x", "y", "z"], 2)])
  assert [(r["idx"], r["option"], r["is_correct"]) for r in rows] == [
      (0, 0, False), (0, 1, False), (0, 2, True), (1, 0, False), (1, 1, False), (1, 2, True)]
  assert np.all([r["template"] == 0 for r in rows])
