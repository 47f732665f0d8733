"""Templates: rendering named fields, per-language choice, and the recipe's pruning rules."""

import pytest

from aya_t5x.data import templates
from aya_t5x.data.templates import Template, TemplateError, TemplateSet

TWEET = Template(id="tweet",
                 inputs="Classify the sentiment of the following tweet: {{tweet}}",
                 targets="I would classify the given tweet as: {{ label }}")


def test_render_fills_named_fields():
  assert TWEET.fields == ("tweet", "label")
  assert TWEET.render({"tweet": "I love rain", "label": "positive", "extra": 1}) == (
      "Classify the sentiment of the following tweet: I love rain",
      "I would classify the given tweet as: positive")


def test_missing_field_and_bad_placeholder_are_named():
  with pytest.raises(TemplateError, match=r"'tweet' needs field\(s\) label; the record has "
                                          "tweet"):
    TWEET.render({"tweet": "x"})
  with pytest.raises(TemplateError, match="bad placeholder"):
    Template(inputs="{{two words}}", targets="{{x}}")


def test_template_set_picks_per_language_deterministically():
  sw = [Template(id=f"sw{i}", language="sw", inputs=f"Swali {i}: {{{{q}}}}", targets="{{a}}")
        for i in range(3)]
  en = [Template(id="en0", inputs="Question: {{q}}", targets="{{a}}")]
  chosen = TemplateSet.from_templates(sw + en, seed=0)
  record = {"q": "habari?", "a": "nzuri"}
  picks = {chosen.render(record, "sw", key=str(i))[2] for i in range(30)}
  assert picks == {"sw0", "sw1", "sw2"}  # every template is used
  assert chosen.render(record, "sw", key="7") == chosen.render(record, "sw", key="7")
  assert chosen.render(record, "fr", key="1")[2] == "en0"  # the English fallback
  with pytest.raises(TemplateError, match="languages with templates: en, sw"):
    TemplateSet.from_templates(sw + en, fallback=None).for_language("fr")


def test_prune_templates_by_the_recipe_rules():
  candidates = [
      Template(id="keep", inputs="Write a detailed answer to the question: {{q}}",
               targets="The answer is: {{a}}"),
      Template(id="bare_label", inputs="Question: {{q}} yes or no?", targets="{{a}}"),
      Template(id="empty", inputs="{{q}}", targets=""),
      Template(id="near_copy", inputs="Write a detailed answer to the question {{q}}",
               targets="The answer is: {{a}}"),
      Template(id="sw_ok", language="sw", inputs="Jibu swali hili kwa kina: {{q}}",
               targets="Jibu ni: {{a}}"),
      Template(id="sw_fixed", language="sw", inputs="Sema ndiyo: {{q}}", targets="Ndiyo"),
  ]
  samples = [{"q": f"Is {i} even?", "a": "yes" if i % 2 == 0 else "no"} for i in range(4)]
  kept, report = templates.prune_templates(candidates, samples=samples)
  assert [t.id for t in kept] == ["keep", "sw_ok"]
  assert report.removed == {"bare_label": "empty or very short target",
                            "empty": "empty or very short target",
                            "near_copy": "near-duplicate of keep",
                            "sw_fixed": "empty or very short target"}
  figures = report.to_dict()
  assert figures["english"]["templates_removed"] == 3
  assert figures["english"]["templates_removed_pct"] == 75.0
  assert figures["multilingual"]["templates_removed_pct"] == 50.0
  # Without samples only a fixed target can be judged: a bare {{a}} may be a long answer.
  kept, _ = templates.prune_templates(candidates)
  assert [t.id for t in kept] == ["keep", "bare_label", "sw_ok"]


def test_longer_instruction_wins_a_near_duplicate():
  short = Template(id="short", inputs="Summarise the text: {{t}}",
                   targets="Here is a summary: {{s}}")
  longer = Template(id="longer", inputs="Summarise the text below: {{t}}",
                    targets="Here is a summary: {{s}}")
  kept, report = templates.prune_templates([short, longer], templates.PruningRules(
      near_duplicate=0.8))
  assert [t.id for t in kept] == ["longer"]
  assert report.removed == {"short": "near-duplicate of longer"}


def test_word_count_handles_unsegmented_scripts():
  assert templates.word_count("Yes") == 1
  assert templates.word_count("   ") == 0
  assert templates.word_count("这是一个很长的中文句子没有空格分开") >= 3
