"""Leak gates against disguised answers (lower case, look-alikes, spelled forms, number words,
letter lists, counts hidden in frame references) and the harmless near-misses they must pass.

Every DISGUISED case slipped through the gates before text was folded (`ffr.leak_normalize`);
every NEAR_MISS is ordinary patch language that a careless normalisation would flag.
"""
import pytest

from ffr.leak_normalize import deleet, fold, join_spelled, roman_numerals, skeleton
from ffr.leakage import extract_numbers, strip_frame_indices, text_leaks

MC = "multiple choice"
PUT_DOWN = ["A. The clothes", "B. The book", "C. The shoe", "D. The dish"]
COLOUR = ["A. red", "B. blue", "C. green", "D. yellow"]
COUNT = ["A. 2", "B. 3", "C. 4", "D. 5"]

# (case id, patch text, gold, options, problem type, expected reason fragment)
DISGUISED = [
    # lower-case option letters
    ("lower-option", "option b fits the hand movement best.", "B", PUT_DOWN, MC, "gold option letter B"),
    ("lower-go-with", "go with b after watching the release.", "B", PUT_DOWN, MC, "gold option letter B"),
    ("lower-article-letter", "Honestly, go with a.", "A", PUT_DOWN, MC, "gold option letter A"),
    ("lower-option-other", "option a is ruled out: the clothes never move.", "B", PUT_DOWN, MC, "option letter A"),
    # look-alike characters
    ("fullwidth-letter", "Option Ｂ fits the hand movement best.", "B", PUT_DOWN, MC, "gold option letter B"),
    ("fullwidth-verb", "Go with Ａ; the clothes are the last thing she moves.", "A", PUT_DOWN, MC,
     "gold option letter A"),
    ("cyrillic-letter", "Option В fits the hand movement best.", "B", PUT_DOWN, MC, "gold option letter B"),
    ("greek-letter", "Pick Β after watching the release.", "B", PUT_DOWN, MC, "gold option letter B"),
    ("cyrillic-number", "There are thrеe people in the hall.", "3", [], "numerical", "gold number 3"),
    ("cyrillic-text", "The ball she throws is bluе.", "B", COLOUR, MC, "gold answer text"),
    ("fullwidth-ocr", "The sign reads ＥＸＩＴ in green.", "EXIT", [], "OCR", "gold answer text"),
    ("fullwidth-number-word", "Exactly ｔｈｒｅｅ people walk in.", "3", [], "numerical", "gold number 3"),
    ("zero-width-text", "The ball she throws is bl\u200bue.", "B", COLOUR, MC, "gold answer text"),
    # spelled or altered forms
    ("spelled-text", "The ball she throws is b-l-u-e.", "B", COLOUR, MC, "gold answer text"),
    ("spelled-ocr", "The sign spells S-T-O-P.", "STOP", [], "OCR", "gold answer text"),
    ("dotted-ocr", "The sign spells S.T.O.P. in white.", "STOP", [], "OCR", "gold answer text"),
    ("spaced-number", "There are t h r e e people in the hall.", "3", [], "numerical", "gold number 3"),
    ("digit-for-letter-ocr", "The sign reads ST0P.", "STOP", [], "OCR", "gold answer text"),
    ("digit-for-letter-text", "The ball she throws is b1ue.", "B", COLOUR, MC, "gold answer text"),
    ("capital-i-for-l", "The ball she throws is bIue.", "B", COLOUR, MC, "gold answer text"),
    ("digit-one-for-i", "She pours m1lk into the cup.", "B", ["A. water", "B. milk"], MC, "gold answer text"),
    ("digit-for-letter-number", "The light flashes thr33 times.", "3", [], "numerical", "gold number 3"),
    # number words beyond digits
    ("thrice", "The light flashes thrice before the car stops.", "3", [], "numerical", "gold number 3"),
    ("twice", "The dog barks twice at the door.", "2", [], "numerical", "gold number 2"),
    ("roman", "III flashes happen before the car stops.", "3", [], "numerical", "gold number 3"),
    ("roman-mc", "Notice the XII cups on the shelf.", "B", ["A. 10", "B. 12", "C. 14"], MC, "gold number 12"),
    # elimination without the word "option"
    ("except-list", "It is everything except B, C and D.", "A", PUT_DOWN, MC, "option letter B"),
    ("bare-list", "B and D never appear in the clip.", "A", PUT_DOWN, MC, "option letter B"),
    ("lower-list", "Neither b nor c leaves the shelf.", "A", PUT_DOWN, MC, "option letter B"),
    ("slash-list", "A/C are handled before she walks in.", "B", PUT_DOWN, MC, "option letter A"),
    ("except-single", "Every object except D is moved at some point.", "A", PUT_DOWN, MC, "option letter D"),
    ("gold-in-list", "Only A or B fit; compare the hands.", "B", PUT_DOWN, MC, "gold option letter B"),
    # a number hidden as a frame reference
    ("frame-repeat", "Look between frames 3 and 3 flashes occur.", "3", [], "numerical", "gold number 3"),
    ("frame-list-noun", "Across frames 2 and 5 flashes occur.", "5", [], "numerical", "gold number 5"),
    ("frame-descending", "Check frames 9, 4 birds land there.", "4", [], "numerical", "gold number 4"),
]

# (case id, patch text, gold, options, problem type): harmless, must pass every gate.
NEAR_MISSES = [
    ("article-after-verb", "Pick a frame where the hand opens and compare it with the next.", "A", PUT_DOWN, MC),
    ("article-after-choose", "Choose a moment when the hand opens, then compare.", "A", PUT_DOWN, MC),
    ("article-after-answer", "The answer a student gives must name an object; watch the hand.", "A", PUT_DOWN, MC),
    ("article-after-except", "Everything except a small cup stays on the table.", "A", PUT_DOWN, MC),
    ("article-go-with", "Go with a slower look at frames 4-6.", "A", PUT_DOWN, MC),
    ("lower-list-markers", "(a) watch the hand; (b) count the objects she holds.", "B", PUT_DOWN, MC),
    ("non-option-letters", "Track the x and y position of her hand.", "B", PUT_DOWN, MC),
    ("pronoun-i", "I would re-watch the release; the hand opens late.", "A", PUT_DOWN, MC),
    ("frame-range-gold-start", "Count the flashes in frames 3-5.", "3", [], "numerical"),
    ("frame-list-verb", "Frames 2 and 5 show the light at its brightest.", "5", [], "numerical"),
    ("frame-list-adverb", "Watch frames 2, 5 and 9 closely.", "9", [], "numerical"),
    ("single-frame-verb", "Frame 5 flashes brighter than frame 7.", "5", [], "numerical"),
    ("once-conjunction", "Once the door opens, count the people who enter.", "1", [], "numerical"),
    ("spelled-digits", "Compare frames 3-5-7 with the first one.", "3", [], "numerical"),
    ("unit-suffix", "The gap next to the 4m mark is the one to measure.", "5", [], "numerical"),
    ("single-roman-letter", "I counted them again from the start.", "1", [], "numerical"),
    ("cyrillic-clean", "Зoom into the sign and read it letter by letter.", "EXIT", [], "OCR"),
    ("i-and-l-differ", "Watch the tall man walking past the dog.", "A", ["A. its tail", "B. its paw"], MC),
    ("mixed-case-word", "Check the McIntosh label on the crate.", "EXIT", [], "OCR"),
]


@pytest.mark.parametrize("text, gold, options, problem_type, expected", [c[1:] for c in DISGUISED],
                         ids=[c[0] for c in DISGUISED])
def test_disguised_leaks_are_caught(text, gold, options, problem_type, expected):
    reason = text_leaks(text, gold, options, problem_type)
    assert reason is not None and expected in reason, reason


@pytest.mark.parametrize("text, gold, options, problem_type", [c[1:] for c in NEAR_MISSES],
                         ids=[c[0] for c in NEAR_MISSES])
def test_near_misses_pass(text, gold, options, problem_type):
    assert text_leaks(text, gold, options, problem_type) is None


def test_gold_answer_and_options_are_folded_too():
    assert "gold option letter B" in text_leaks("Option B fits.", "Ｂ", PUT_DOWN, MC)
    assert "gold answer text" in text_leaks("It is blue.", "B", ["A. red", "B. bluе"], MC)


def test_fold():
    assert fold("Ｏｐｔｉｏｎ Ｂ") == "Option B"
    assert fold("thrеe bluе Β") == "three blue B"  # Cyrillic e, Greek capital beta
    assert fold("bl\u200bue\u00ad") == "blue"
    assert fold("frames 3\u20135") == "frames 3-5"
    assert fold("Aa") == "Aa"  # case is kept for the option-letter gate


def test_join_spelled():
    assert join_spelled("b-l-u-e, S.T.O.P. and t h r e e") == "blue, STOP. and three"
    assert join_spelled("frames 3-5-7 and 1.2.3") == "frames 3-5-7 and 1.2.3"  # digits only: kept
    assert join_spelled("A-B and e.g. x") == "A-B and e.g. x"  # two characters are not a spelled word
    assert join_spelled("b-l.u-e") == "b-l.u-e"  # one separator throughout


def test_deleet_and_skeleton():
    assert deleet("ST0P thr33 $TOP") == "SToP three sTOP"
    assert deleet("3 people, $5, 2.5 m") == "3 people, $5, 2.5 m"  # tokens without a letter are kept
    assert skeleton("b1ue") == skeleton("bIue") == skeleton("blue") == "blue"
    assert skeleton("m1lk", one="i") == "milk" and deleet("f1ve") == "five"
    assert skeleton("tall") != skeleton("tail")


def test_roman_numerals_and_number_words():
    assert roman_numerals("III, XII, XIV, IIII, I, V, X, MIX, IV-V") == [3.0, 12.0, 14.0]
    assert extract_numbers("twice, thrice and III") == [2.0, 3.0, 3.0]
    assert extract_numbers("once the door opens") == []


def test_strip_frame_indices():
    assert strip_frame_indices("Count in frames 3-5 now").split() == ["Count", "in", "now"]
    assert strip_frame_indices("frames 3 and 3 flashes").split() == ["3", "flashes"]
    assert strip_frame_indices("frames 2 and 5 flashes").split() == ["5", "flashes"]
    assert strip_frame_indices("frame 5 flashes").split() == ["flashes"]
    assert strip_frame_indices("frames [13, 17] and frame 2").split() == ["and"]
