"""Leakage gates: BAD vs GOOD patch texts in the style of the paper's Tables 1 and 6."""
import pytest

from ffr.leakage import extract_numbers, parse_options, patch_leaks, text_leaks
from ffr.patch import EvidencePatch

MC = "multiple choice"
PUT_DOWN = ["A. The clothes", "B. The book", "C. The shoe", "D. The dish"]
DIRECTION = ["A. left to right", "B. right to left", "C. toward the camera", "D. it does not move"]
ORDER = ["A. after the person sits down", "B. before the person sits down"]
COLLIDE = ["A. the red cube", "B. the green cylinder", "C. the yellow sphere", "D. nothing"]
ATTRIBUTE = ["A. a blue plastic ball", "B. a red metal cube", "C. a green rubber cone"]
CAUSE = ["A. it runs out of speed", "B. it hits the wall", "C. a person catches it"]
COUNT = ["A. 2", "B. 3", "C. 4", "D. 5"]

# (case id, patch text, gold answer, options, problem type, expected reason fragment or None for GOOD)
CASES = [
    # Table 1, Counting
    ("count-bad", "There are exactly 3 people in frame 15.", "3", [], "numerical", "gold number 3"),
    ("count-bad-word", "Three people appear once the door opens.", "3", [], "numerical", "gold number 3"),
    ("count-good", "Recount the subjects within the frame range [13, 17].", "13", [], "numerical", None),
    ("count-mc-bad", "Notice the 3 cups on the table.", "B", COUNT, MC, "gold number 3"),
    ("count-mc-good", "Count each cup separately across the clip.", "B", COUNT, MC, None),
    # Table 1, Dynamics
    ("dyn-bad", "The person moves from left to right.", "A", DIRECTION, MC, "gold answer text"),
    ("dyn-good", "Track and analyze the subject's movement direction across the provided clip.", "A",
     DIRECTION, MC, None),
    # Table 1, Temporal
    ("temp-bad", "The event happens before the person sits down.", "B", ORDER, MC, "gold answer text"),
    ("temp-good", "Examine the temporal relationship and causal sequence between the two identified events.",
     "B", ORDER, MC, None),
    # Table 1, Spatial
    ("spat-bad", "The answer is C / the yellow sphere.", "C", COLLIDE, MC, "states the answer"),
    ("spat-bad-text", "Focus on the yellow sphere near the ramp.", "C", COLLIDE, MC, "gold answer text"),
    ("spat-good", "Identify paths intersected by the static cylinder to determine potential collisions.", "C",
     COLLIDE, MC, None),
    # Table 1, Attribute
    ("attr-bad", "The object being picked up is a red metal cube.", "B", ATTRIBUTE, MC, "gold answer text"),
    ("attr-good", "Observe the visual features (color/material) of the object involved in the interaction.",
     "B", ATTRIBUTE, MC, None),
    # Table 1, Logic
    ("logic-bad", "The ball stops because it hits the wall.", "B", CAUSE, MC, "gold answer text"),
    ("logic-good", "Analyze the interaction between the moving object and its surrounding environment.", "B",
     CAUSE, MC, None),
    # Case study (Table 13): the put-down object
    ("case-bad", "The book is what the person puts down.", "B", PUT_DOWN, MC, "gold answer text"),
    ("case-good", "Track hand movements and which object is placed down.", "B", PUT_DOWN, MC, None),
    ("case-marker-good", "when the person's hand releases the object", "B", PUT_DOWN, MC, None),
    # Table 6, misconception: restating the question with the answer implied
    ("misc-bad", "The question asks which object, and the book fits.", "B", PUT_DOWN, MC, "gold answer text"),
    ("misc-good", "Clarify whether the question asks about the action or the object involved.", "B",
     PUT_DOWN, MC, None),
    # Option letters
    ("letter-bad", "Option B fits the hand movement best.", "B", PUT_DOWN, MC, "gold option letter B"),
    ("letter-paren-bad", "Compare the hand positions; (B) matches.", "B", PUT_DOWN, MC, "gold option letter B"),
    ("letter-other-bad", "Option A cannot be right here.", "B", PUT_DOWN, MC, "option letter A"),
    ("letter-article-good", "A person enters first; watch the hands afterwards.", "A", PUT_DOWN, MC, None),
    ("letter-modal-bad", "Your choice should have been B; look at the release again.", "B", PUT_DOWN, MC,
     "gold option letter B"),
    ("letter-would-be-bad", "The answer would be B if you watch the release.", "B", PUT_DOWN, MC,
     "states the answer"),
    ("letter-verb-bad", "Pick B after watching the release again.", "B", PUT_DOWN, MC, "gold option letter B"),
    ("letter-verb-other-bad", "Do not go with D; the dish never leaves the sink.", "B", PUT_DOWN, MC,
     "option letter D"),
    ("letter-verb-article-good", "Select a frame where the hand opens and compare it with the next one.", "B",
     PUT_DOWN, MC, None),
    ("phrase-bad", "Re-check the frames; the correct option is visible there.", "B", PUT_DOWN, MC,
     "states the answer"),
    # Numerical / regression / OCR / free-form
    ("regr-bad", "The distance is about 2.5 meters.", "2.5", [], "regression", "gold number 2.5"),
    ("regr-good", "Compare the table width with the known size of the door.", "2.5", [], "regression", None),
    ("num-frame-ref-good", "Watch frames 2-5 closely.", "5", [], "numerical", None),
    ("ocr-bad", "Read the sign that says EXIT.", "EXIT", [], "OCR", "gold answer text"),
    ("ocr-good", "Read the text on the sign above the door.", "EXIT", [], "OCR", None),
    ("free-bad", "He is repairing a bicycle wheel in the garage.", "repairing a bicycle wheel", [],
     "free-form", "gold answer text"),
    ("free-good", "Focus on what his hands are doing with the tool.", "repairing a bicycle wheel", [],
     "free-form", None),
    ("yesno-good", "Check whether there is no contact between the two objects.", "no", [], "free-form", None),
]


@pytest.mark.parametrize("text, gold, options, problem_type, expected", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_leak_table(text, gold, options, problem_type, expected):
    reason = text_leaks(text, gold, options, problem_type)
    if expected is None:
        assert reason is None
    else:
        assert reason is not None and expected in reason


def test_patch_leaks_names_the_field():
    good = EvidencePatch(error_types=["temporal"], key_frames=[13, 14, 15],
                         temporal_markers=["when the person's hand releases the object"],
                         guidance="Track hand movements and which object is placed down.")
    assert patch_leaks(good, "B", PUT_DOWN, MC) is None
    bad_marker = good.model_copy(update={"temporal_markers": ["hand lifts", "the book touches the shelf"]})
    reason = patch_leaks(bad_marker, "B", PUT_DOWN, MC)
    assert reason.startswith("temporal_markers[1]: names the gold answer text 'The book'")
    bad_guidance = good.model_copy(update={"guidance": "The answer is B."})
    assert patch_leaks(bad_guidance, "B", PUT_DOWN, MC).startswith("guidance: states the answer")


def test_key_frame_indices_are_not_checked_as_numbers():
    # Frames 3-7 are pointers the patch is meant to carry, even when the gold count is 3.
    patch = EvidencePatch(error_types=["spatial"], key_frames={"start": 3, "end": 7},
                          guidance="Count every cup in the indicated frames.")
    assert patch_leaks(patch, "3", [], "numerical") is None


def test_fuzzy_threshold_is_a_parameter():
    text = "The subject goes from the left to the right side."  # near-paraphrase of "left to right"
    assert text_leaks(text, "A", DIRECTION, MC) is None
    assert "gold answer text" in text_leaks(text, "A", DIRECTION, MC, fuzzy_threshold=60.0)


def test_extract_numbers():
    assert extract_numbers("twenty-one cups, three cats, 1,000 dogs, 2.5 m and a dozen eggs") == \
        [1000.0, 2.5, 21.0, 3.0, 12.0]
    assert extract_numbers("someone at the front") == []  # "one" inside a word is not a number


def test_parse_options():
    assert parse_options(["A. red", "(B) blue", "C: green"]) == {"A": "red", "B": "blue", "C": "green"}
    with pytest.raises(ValueError, match=r"options\[1\]"):
        parse_options(["A. red", "blue"])


@pytest.mark.parametrize("gold, options, problem_type, message", [
    ("<answer>B</answer>", PUT_DOWN, MC, "gold_answer: pass the extracted answer"),
    ("E", PUT_DOWN, MC, "gold_answer: letter E is not among the options"),
    ("the book", PUT_DOWN, MC, "gold_answer: expected an option letter"),
    ("", [], "numerical", "gold_answer: must be a non-empty string"),
    ("3", [], "counting", "problem_type"),
])
def test_bad_arguments_raise(gold, options, problem_type, message):
    with pytest.raises(ValueError, match=message):
        text_leaks("Look again.", gold, options, problem_type)
