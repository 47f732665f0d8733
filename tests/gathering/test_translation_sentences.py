"""Sentence splitting per script: where each script ends a sentence, and joining back exactly."""

import pytest

from aya_t5x.gathering.sentences import split_sentences

CASES = [
    ("en", "Hello there. Mr. Smith met J. K. Rowling! Did he? He did.\n\nA new paragraph.",
     ["Hello there.", "Mr. Smith met J. K. Rowling!", "Did he?", "He did.",
      "A new paragraph."]),
    ("en", "Prices rose 3.5 percent. Words like e.g. stay inside, as does Dr. Who here.",
     ["Prices rose 3.5 percent.", "Words like e.g. stay inside, as does Dr. Who here."]),
    ("zh", "你好。我很好！你呢？", ["你好。", "我很好！", "你呢？"]),
    ("ja", "こんにちは。「元気？」はい。", ["こんにちは。", "「元気？」", "はい。"]),
    ("hi", "यह एक वाक्य है। यह दूसरा है।", ["यह एक वाक्य है।", "यह दूसरा है।"]),
    ("bn", "আমি ভাত খাই।তুমি কী খাও?", ["আমি ভাত খাই।", "তুমি কী খাও?"]),
    ("am", "ሰላም ነው። እንዴት ነህ፧ ደህና ነኝ።", ["ሰላም ነው።", "እንዴት ነህ፧", "ደህና ነኝ።"]),
    ("ar", "كيف حالك؟ أنا بخير.", ["كيف حالك؟", "أنا بخير."]),
    ("ur", "آپ کیسے ہیں؟میں ٹھیک ہوں۔", ["آپ کیسے ہیں؟", "میں ٹھیک ہوں۔"]),
    ("th", "สวัสดีครับ วันนี้อากาศดี", ["สวัสดีครับ", "วันนี้อากาศดี"]),
    ("el", "Τι κάνεις; Καλά.", ["Τι κάνεις;", "Καλά."]),
    ("ru", "Привет. как дела? Хорошо.", ["Привет. как дела?", "Хорошо."]),
]


@pytest.mark.parametrize("language,text,expected", CASES)
def test_sentences_per_script_and_exact_join(language, text, expected):
  segmented = split_sentences(text, language)
  assert list(segmented.sentences) == expected
  assert segmented.join(segmented.sentences) == text


@pytest.mark.parametrize("text", ["", "   ", "  One.  Two.\n", "no terminator at all",
                                  "\n\nLeading lines. And trailing ones.\n\n"])
def test_whitespace_around_and_between_is_kept(text):
  segmented = split_sentences(text, "en")
  assert segmented.join(segmented.sentences) == text
  assert all(s == s.strip() and s for s in segmented.sentences)


def test_join_adapts_separators_to_the_target_script():
  chinese = split_sentences("你好。我很好！\n再见。", "zh")
  assert chinese.join(["Hello.", "I am fine!", "Bye."], "en") == "Hello. I am fine!\nBye."
  english = split_sentences("Hello. I am fine!\nBye.", "en")
  assert english.join(["你好。", "我很好！", "再见。"], "zh") == "你好。我很好！\n再见。"
  with pytest.raises(ValueError, match="needs 3 sentences"):
    english.join(["a", "b"])
