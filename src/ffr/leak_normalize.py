"""Text normalisation that strips simple disguises before the leak gates (`ffr.leakage`) run.

A teacher (or a prompt-injected student answer echoed by it) can hide the gold answer from
plain regexes with look-alike characters, spelled-out letters or digits standing in for
letters. Each function here removes one family of disguise and returns ordinary text; the
gates then apply their rules to the result. Every function is pure and total on `str`.

- `fold`: Unicode NFKC (full-width "Ａ" -> "A", "３" -> "3", ligatures, superscripts),
  zero-width and soft-hyphen characters removed, Cyrillic / Greek / Latin look-alikes
  mapped to ASCII (`CONFUSABLES`), dash variants to "-". Case is kept: the option-letter
  gate needs it to tell the article "a" from the option "A".
- `join_spelled`: "b-l-u-e", "S.T.O.P", "t h r e e" -> "blue", "STOP", "three" (three or
  more single characters, one separator throughout, at least one letter: "3-5-7" stays).
- `deleet`: digits and symbols standing for letters inside a word ("ST0P" -> "STOP",
  "thr33" -> "three", "$TOP" -> "STOP"); tokens without a letter ("3", "$5") are kept.
  "1" stands for "i" ("f1ve") or "l" ("b1ue"): the caller picks, or tries both.
- `skeleton`: lower case of `deleet`, with a capital "I" inside a lower-case word read as
  "l" ("bIue"), so "b1ue", "bIue" and "blue" compare equal. Use it on both sides of a
  comparison, never to display text. "i" and "l" are not merged in general: "tall" and
  "tail" must stay apart.
- `roman_numerals`: values of upper-case Roman numerals of two or more letters in I/V/X
  ("III" -> 3, "XII" -> 12); single letters ("I", "V", "X") are words or labels too often.
- `extract_numbers`: every number a text states, as digits, number words or such numerals.

The map is small and explicit on purpose: it covers the look-alikes that render like ASCII
letters in common fonts, which is what a disguise relies on. Rarer scripts are out of scope.
"""
from __future__ import annotations

import re
import unicodedata

# Characters that render as nothing: a word split by one still reads as the word.
_INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u180e\u200b\u200c\u200d\u2060\ufeff"), None)

CONFUSABLES: dict[str, str] = {
    # Cyrillic, upper then lower case
    "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P", "С": "C",
    "Т": "T", "У": "Y", "Х": "X", "І": "I", "Ј": "J", "Ѕ": "S", "Ӏ": "I", "Ԛ": "Q", "Ԝ": "W",
    "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "і": "i", "ј": "j",
    "ѕ": "s", "ԁ": "d", "ԛ": "q", "ԝ": "w", "һ": "h", "ӏ": "l", "к": "k",
    # Greek, upper then lower case
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N",
    "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X",
    "α": "a", "ο": "o", "ν": "v", "ι": "i", "κ": "k", "ρ": "p", "υ": "u", "χ": "x", "ϲ": "c", "ϳ": "j",
    # Latin look-alikes NFKC leaves alone
    "ı": "i", "ɑ": "a", "ɡ": "g", "ʏ": "y", "ɪ": "i",
    # Dash variants, so ranges and spelled forms use one separator
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2015": "-", "\u2212": "-",
}
_CONFUSABLE_TABLE = str.maketrans(CONFUSABLES) | _INVISIBLE

# One separator, used throughout the run (backreference), between single characters.
_SPELLED = re.compile(r"(?<![^\W_])[^\W_](?P<sep>\s?[-._*/\u00b7]\s?| )[^\W_](?:(?P=sep)[^\W_])+(?![^\W_])")
_SEPARATORS = re.compile(r"[\s\-._*/\u00b7]")

# Stand-ins for letters inside words; "1" is added per call (see `deleet`).
_LEET = {"0": "o", "3": "e", "4": "a", "5": "s", "7": "t", "$": "s", "@": "a"}
_LEET_ONE = {one: str.maketrans(_LEET | {"1": one}) for one in ("i", "l")}
_TOKEN = re.compile(r"[A-Za-z0-9$@]+")
_HAS_LETTER = re.compile(r"[A-Za-z]")
_HAS_LEET = re.compile(r"[013457$@]")

_ROMAN = re.compile(r"(?<![\w-])(?=[IVX]{2,}(?![\w-]))(X{0,3})(IX|IV|V?I{0,3})(?![\w-])")
_ROMAN_VALUES = {"I": 1, "II": 2, "III": 3, "IV": 4, "V": 5, "VI": 6, "VII": 7, "VIII": 8, "IX": 9, "": 0}


def fold(text: str) -> str:
    """NFKC, invisible characters removed, look-alikes (`CONFUSABLES`) mapped to ASCII; case kept."""
    return unicodedata.normalize("NFKC", text).translate(_CONFUSABLE_TABLE)


def join_spelled(text: str) -> str:
    """Join runs of >= 3 single characters with one separator ("b-l-u-e" -> "blue"); digit-only runs stay."""
    def join(m: re.Match) -> str:
        run = m.group(0)
        if not _HAS_LETTER.search(run):
            return run  # "3-5-7" or "1.2.3" are numbers or frame lists, not a spelled word
        return _SEPARATORS.sub("", run)
    return _SPELLED.sub(join, text)


def deleet(text: str, one: str = "i") -> str:
    """Map digits / "$" / "@" to letters inside tokens that also hold a letter ("ST0P" -> "STOP").

    `one` ("i" or "l") is the letter "1" stands for; raises KeyError for anything else.
    """
    table = _LEET_ONE[one]

    def swap(m: re.Match) -> str:
        token = m.group(0)
        if _HAS_LETTER.search(token) and _HAS_LEET.search(token):
            return token.translate(table)
        return token
    return _TOKEN.sub(swap, text)


def skeleton(text: str, one: str = "l") -> str:
    """Lower-case `deleet(text, one)`, a capital "I" inside a lower-case word read as "l": a comparison key."""
    return re.sub(r"(?<=[a-z])I(?=[a-z])", "l", deleet(text, one)).lower()


def roman_numerals(text: str) -> list[float]:
    """Values of upper-case I/V/X Roman numerals of >= 2 letters ("III" -> 3.0), in order."""
    return [float(10 * len(m.group(1)) + _ROMAN_VALUES[m.group(2)]) for m in _ROMAN.finditer(text)
            if m.group(0)]


# Numbers as a gold answer or a patch may state them; compared by value in `ffr.leakage`.
_DIGITS = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)(?!\d)")
_UNITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
          "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
         "ninety": 90}
_WORD_VALUES = {w: float(i) for i, w in enumerate(_UNITS)} | {w: float(v) for w, v in _TENS.items()}
# Multiplicative adverbs are counts too ("flashes thrice"). "once" is left out: as a
# conjunction ("once the door opens") it is far more common in guidance than as a count.
_WORD_VALUES |= {"dozen": 12.0, "twice": 2.0, "thrice": 3.0}
_NUMBER_WORD = re.compile(
    r"\b(" + "|".join(_TENS) + r")(?:[\s-](" + "|".join(_UNITS[1:10]) + r"))?\b"
    r"|\b(" + "|".join(_UNITS + ["dozen", "twice", "thrice"]) + r")\b",
    re.IGNORECASE)


def extract_numbers(text: str) -> list[float]:
    """Numbers in `text`: digits ("3", "12.5", "1,000"), then words ("three", "twenty-one", "dozen",
    "twice", "thrice"), then upper-case Roman numerals of two or more letters ("III", "XII")."""
    values = [float(m.group(1).replace(",", "")) for m in _DIGITS.finditer(text)]
    for m in _NUMBER_WORD.finditer(text):
        if m.group(1):
            values.append(_WORD_VALUES[m.group(1).lower()] + (_WORD_VALUES[m.group(2).lower()] if m.group(2) else 0))
        else:
            values.append(_WORD_VALUES[m.group(3).lower()])
    return values + roman_numerals(text)
