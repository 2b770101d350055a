"""TempCompass official scoring rules (llyx97/TempCompass ``eval_*.py``, ``utils/eval_utils.py``).

Split from ``tempcompass.py`` to keep files short. Every rule works on the prediction AFTER the
project's ``<answer>`` extraction and the release's ``.replace('</s>', '').strip()``.

Rule-based parts return 1/0 or None when the rule cannot decide; the release then asks
gpt-3.5-turbo-1106 (``--disable_llm`` would give 0 instead). Here an undecided item goes to the
optional judge, and scores None (unjudged) without one.
"""
from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

# prompt_templates.py of the release (judge instructions; the leading newline is in the source).
_JUDGE_TAIL = (
    "Your task is to determine whether QA model prediction is correct, based on the question and "
    "ground-truth answer. If the prediction is correct, respond \"Correct\". If the prediction is "
    "incorrect, respond \"Incorrect\".\n")
MULTI_CHOICE_JUDGE = ("\nYou will receive a multi-choice question, the ground-truth answer and the prediction "
                      "from a question answering (QA) model. " + _JUDGE_TAIL)
YES_NO_JUDGE = ("\nYou will receive a Yes/No question, the ground-truth answer and the prediction from a "
                "question answering (QA) model. " + _JUDGE_TAIL)
CAPTION_MATCHING_JUDGE = ("\nYou will receive a caption matching question, the ground-truth answer and the "
                          "prediction from a question answering (QA) model. " + _JUDGE_TAIL)
CAPTION_EVALUATION = """
You will receive a video description and a multi-choice question. Your task is to choose the correct answer and briefly explain the reason why you choose the answer. If none of the choice candidates are correct or the video description lacks enough information to answer the question, just answer "None of the choices are correct". Please organize your response in this format:
```
Reasoning: [Your reason to obtain the answer]
Answer: [Your answer]
```

Here are some examples of video description, multi-choice question and the expected answer:
```
Video Description: A person is palying football.
Multi-Choice Question:
What is the person doing in the video?
A. cooking
B. palying football
C. playing basketball
D. reading book
Reasoning: The video description mentions that the person is playing football.
Answer: B. palying football

Video Description: A bird is flying clockwise.
Multi-Choice Question:
In which direction is the bird flying?
A. backwark
B. counter-clockwise
C. clockwise
D. downward
Reasoning: The video description mentions that the bird is flying clockwise
Answer: C. clockwise

Video Description: An air balloon is inflating.
Multi-Choice Question:
What is happening to the air balloon?
A. exploding
B. getting smaller
C. flying
Reasoning: The video description mentions that the air balloon is inflating, while none of the coices can be explained as inflating.
Answer: None of the choices are correct
```
"""
JUDGE_SYSTEM = "You are an AI assistant for question answering."
# The release's request: gpt-3.5-turbo-1106, temperature 1.0, max_tokens 128, up to 10 retries.
JUDGE_TEMPERATURE = 1.0
JUDGE_MAX_TOKENS = 128
JUDGE_MAX_TRIES = 10
_HEADINGS = {"multi-choice": ("Multi-Choice Question", MULTI_CHOICE_JUDGE),
             "yes_no": ("Yes/No Question", YES_NO_JUDGE),
             "caption_matching": ("Caption Matching Question", CAPTION_MATCHING_JUDGE)}


def clean(prediction: str) -> str:
    return prediction.replace("</s>", "").strip()


def multi_choice_rule(pred: str, answer: str) -> float | None:
    """``eval_multi-choice.py``: exact answer, bare A-D, ``X.`` or ``X)`` prefix; else None."""
    if pred == answer:
        return 1.0
    if pred in ["A", "B", "C", "D"]:
        return float(pred == answer[0])
    if any(pred.startswith(p) for p in ["A.", "B.", "C.", "D."]):
        return float(pred.split(".")[0] == answer[0])
    if any(pred.startswith(p) for p in ["A)", "B)", "C)", "D)"]):
        return float(pred.split(")")[0] == answer[0])
    return None


def yes_no_rule(pred: str, answer: str) -> float | None:
    """``eval_yes_no.py``: lowercased prefix ``yes`` / ``no`` (so "Nope" -> no); else None."""
    low = pred.lower()
    if low.startswith("yes"):
        return float(answer == "yes")
    if low.startswith("no"):
        return float(answer == "no")
    return None


def caption_matching_rule(pred: str, question: str, answer: str) -> float | None:
    """``eval_caption_matching.py`` ``eval_rule``: option line, sentence or index; else None.

    Indices are the option labels (``Caption A``, ``Sentence B``, ``Option 2``) followed by the
    same labels without their ``Caption ``/``Sentence ``/``Option `` word (``A``, ``B``, ``2``);
    a prediction matches an index as written or with every ``.`` removed, so ``A``, ``A.``,
    ``Caption A.``, ``2``, ``2.`` and ``Option 2`` are all decided by rule. Later matches
    override earlier ones, exactly as the release's three loops do. The matched string is
    correct iff it equals the gold line, its label, its caption, or its label's second word
    (``Option 2: ...`` -> ``2``); a one-word label, where the release would raise IndexError,
    has no second word to equal.
    """
    option_strs = question.split("\n")[1:]
    option_sents = [opt.split(": ")[1] for opt in option_strs]
    labels = [opt.split(": ")[0] for opt in option_strs]
    option_inds = labels + [_strip_label_word(label) for label in labels]
    matched = None
    for opt in option_strs:
        if opt == pred:
            matched = opt
    for sent in option_sents:
        if sent == pred or (") " in pred and sent == pred.split(") ")[1]):
            matched = sent
    for ind in option_inds:
        if ind == pred or ind == pred.replace(".", ""):
            matched = ind
    if matched is None:
        return None
    gold_label = answer.split(": ")[0]
    gold_label_words = gold_label.split()
    return float(matched == answer or matched == answer.split(":")[0] or matched == answer.split(": ")[1]
                 or (len(gold_label_words) > 1 and matched == gold_label_words[1]))


def _strip_label_word(label: str) -> str:
    """The release's ``.replace('Sentence ', '').replace('Option ', '').replace('Caption ', '')``."""
    return label.replace("Sentence ", "").replace("Option ", "").replace("Caption ", "")


def judge_messages(task: str, question: str, answer: str, pred: str) -> list[dict]:
    """The release's judge request for an item the rules could not decide."""
    heading, instruction = _HEADINGS[task]
    user = f"{instruction}\n{heading}:\n{question}\nGround-Truth Answer: {answer}\nModel Prediction: {pred}"
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]


def rating_from_reply(reply: str) -> float | None:
    """``llm_output_to_rating``: None when the reply holds neither "Correct" nor "Incorrect"."""
    if "Correct" not in reply and "Incorrect" not in reply:
        return None
    if reply.startswith("Correct"):
        return 1.0
    if reply.startswith("Incorrect"):
        return 0.0
    return 1.0 if "Incorrect" not in reply else 0.0


def judged_rating(judge, messages: list[dict]) -> float:
    """Ask until a rating parses (at most ``JUDGE_MAX_TRIES``); the release then gives 0."""
    for _ in range(JUDGE_MAX_TRIES):
        reply = judge.complete(messages, max_tokens=JUDGE_MAX_TOKENS, temperature=JUDGE_TEMPERATURE)
        rating = rating_from_reply(reply.strip())
        if rating is not None:
            return rating
    logger.warning("tempcompass: judge gave no Correct/Incorrect in %d tries; rated 0", JUDGE_MAX_TRIES)
    return 0.0


def captioning_messages(caption: str, mc_question: str) -> list[dict]:
    user = f"{CAPTION_EVALUATION}\nVideo Description:{caption}\nMulti-Choice Question:\n{mc_question}\n"
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]


def captioning_rating(reply: str, mc_answer: str) -> float:
    """``eval_captioning.py`` ``parse_llm_output``: 1 iff the judge's ``Answer:`` letter equals the
    MC answer's and exactly one ``X.`` appears; an empty reply is the release's failed call, -1."""
    if not reply:
        return -1.0
    answer = None
    for line in reply.split("\n"):
        line = line.strip()
        if "Answer" in line:
            answer = line.replace("Answer:", "").strip()
    if answer is None:
        answer = reply
    count = sum(answer.count(p) for p in ["A.", "B.", "C.", "D."])
    return 1.0 if answer.split(". ")[0] == mc_answer.split(". ")[0] and count == 1 else 0.0
