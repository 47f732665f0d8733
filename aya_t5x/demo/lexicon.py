"""The demo's ten small languages: words and sentence patterns, written for this project.

Each language has number words (1-9), six colours, eight animals and a handful of
patterns (how a counted, coloured animal is said, "I see ...", "how many ...?", "which
colour are the ...?"). The grammar is a toy: no plural or agreement, one word order per
language. What matters for the demo is that every language has its own words, its own
order and, for Tamil, its own script, so that per-language scores mean something.

The ten span mT5's resource groups (RECIPE.md §3, Joshi classes): English, French and
German (HR); Indonesian, Filipino and Tamil (MR); Swahili, Haitian Creole, Yoruba and
Hausa (LR).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

COLOURS = ("red", "blue", "green", "black", "white", "yellow")
ANIMALS = ("dog", "cat", "bird", "fish", "cow", "goat", "horse", "chicken")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Lexicon:
  """One language of the demo.

  Attributes:
    code: mT5 language code (`aya_t5x.data.languages`).
    numbers: the words for 1..9.
    colours, animals: words in the order of `COLOURS` and `ANIMALS`.
    phrase: how "{n} {colour} {animal}" is said, with those three placeholders.
    see: "I see {things}."; `and_word` joins two things.
    how_many: "How many {animal}?"
    which_colour: "What colour are the {animal}, {a} or {b}?"
  """

  code: str
  numbers: tuple[str, ...]
  colours: tuple[str, ...]
  animals: tuple[str, ...]
  phrase: str
  see: str
  and_word: str
  how_many: str
  which_colour: str

  def __post_init__(self):
    for field, size in (("numbers", 9), ("colours", len(COLOURS)),
                        ("animals", len(ANIMALS))):
      if len(getattr(self, field)) != size:
        raise ValueError(f"demo lexicon {self.code}: {field} needs {size} words")


def _words(text: str) -> tuple[str, ...]:
  return tuple(text.split("|"))


LEXICONS: Mapping[str, Lexicon] = {lex.code: lex for lex in (
    Lexicon(code="en", numbers=_words("one|two|three|four|five|six|seven|eight|nine"),
            colours=_words("red|blue|green|black|white|yellow"),
            animals=_words("dogs|cats|birds|fish|cows|goats|horses|chickens"),
            phrase="{n} {colour} {animal}", see="I see {things}.", and_word="and",
            how_many="How many {animal}?",
            which_colour="What colour are the {animal}, {a} or {b}?"),
    Lexicon(code="fr", numbers=_words("un|deux|trois|quatre|cinq|six|sept|huit|neuf"),
            colours=_words("rouges|bleus|verts|noirs|blancs|jaunes"),
            animals=_words("chiens|chats|oiseaux|poissons|vaches|chèvres|chevaux|poules"),
            phrase="{n} {animal} {colour}", see="Je vois {things}.", and_word="et",
            how_many="Combien de {animal} ?",
            which_colour="De quelle couleur sont les {animal}, {a} ou {b} ?"),
    Lexicon(code="de", numbers=_words("eins|zwei|drei|vier|fünf|sechs|sieben|acht|neun"),
            colours=_words("rote|blaue|grüne|schwarze|weiße|gelbe"),
            animals=_words("Hunde|Katzen|Vögel|Fische|Kühe|Ziegen|Pferde|Hühner"),
            phrase="{n} {colour} {animal}", see="Ich sehe {things}.", and_word="und",
            how_many="Wie viele {animal}?",
            which_colour="Welche Farbe haben die {animal}, {a} oder {b}?"),
    Lexicon(code="id",
            numbers=_words("satu|dua|tiga|empat|lima|enam|tujuh|delapan|sembilan"),
            colours=_words("merah|biru|hijau|hitam|putih|kuning"),
            animals=_words("anjing|kucing|burung|ikan|sapi|kambing|kuda|ayam"),
            phrase="{n} {animal} {colour}", see="Saya melihat {things}.", and_word="dan",
            how_many="Berapa {animal}?", which_colour="Apa warna {animal}, {a} atau {b}?"),
    Lexicon(code="fil",
            numbers=_words("isa|dalawa|tatlo|apat|lima|anim|pito|walo|siyam"),
            colours=_words("pula|asul|berde|itim|puti|dilaw"),
            animals=_words("aso|pusa|ibon|isda|baka|kambing|kabayo|manok"),
            phrase="{n} {colour} na {animal}", see="Nakikita ko ang {things}.",
            and_word="at", how_many="Ilan ang {animal}?",
            which_colour="Anong kulay ang {animal}, {a} o {b}?"),
    Lexicon(code="ta",
            numbers=_words("ஒன்று|இரண்டு|மூன்று|நான்கு|ஐந்து|ஆறு|ஏழு|எட்டு|ஒன்பது"),
            colours=_words("சிவப்பு|நீல|பச்சை|கருப்பு|வெள்ளை|மஞ்சள்"),
            animals=_words("நாய்கள்|பூனைகள்|பறவைகள்|மீன்கள்|பசுக்கள்|ஆடுகள்|குதிரைகள்|கோழிகள்"),
            phrase="{n} {colour} {animal}", see="நான் {things} பார்க்கிறேன்.",
            and_word="மற்றும்", how_many="எத்தனை {animal}?",
            which_colour="{animal} என்ன நிறம், {a} அல்லது {b}?"),
    Lexicon(code="sw", numbers=_words("moja|mbili|tatu|nne|tano|sita|saba|nane|tisa"),
            colours=_words("wekundu|bluu|kijani|weusi|weupe|njano"),
            animals=_words("mbwa|paka|ndege|samaki|ng'ombe|mbuzi|farasi|kuku"),
            phrase="{animal} {colour} {n}", see="Ninaona {things}.", and_word="na",
            how_many="{animal} wangapi?", which_colour="{animal} wana rangi gani, {a} au {b}?"),
    Lexicon(code="ht", numbers=_words("en|de|twa|kat|senk|sis|sèt|uit|nèf"),
            colours=_words("wouj|ble|vèt|nwa|blan|jòn"),
            animals=_words("chen|chat|zwazo|pwason|bèf|kabrit|chwal|poul"),
            phrase="{n} {animal} {colour}", see="Mwen wè {things}.", and_word="ak",
            how_many="Konbyen {animal}?", which_colour="Ki koulè {animal} yo, {a} oswa {b}?"),
    Lexicon(code="yo",
            numbers=_words("ọkan|meji|mẹta|mẹrin|marun|mẹfa|meje|mẹjọ|mẹsan"),
            colours=_words("pupa|bulu|alawọ ewe|dudu|funfun|ofeefee"),
            animals=_words("aja|ologbo|ẹyẹ|ẹja|maalu|ewurẹ|ẹṣin|adiẹ"),
            phrase="{animal} {colour} {n}", see="Mo ri {things}.", and_word="ati",
            how_many="{animal} melo?", which_colour="Àwọ̀ wo ni {animal}, {a} tàbí {b}?"),
    Lexicon(code="ha",
            numbers=_words("ɗaya|biyu|uku|huɗu|biyar|shida|bakwai|takwas|tara"),
            colours=_words("ja|shuɗi|kore|baƙi|fari|rawaya"),
            animals=_words("karnuka|kuliyoyi|tsuntsaye|kifaye|shanu|awaki|dawakai|kaji"),
            phrase="{animal} {colour} {n}", see="Ina ganin {things}.", and_word="da",
            how_many="{animal} nawa?", which_colour="Wane launi ne {animal}, {a} ko {b}?"),
)}

LANGUAGES = tuple(LEXICONS)
