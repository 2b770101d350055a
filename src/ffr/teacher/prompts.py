"""Teacher prompts (paper App. A): error analysis, negative prompt, tool use, final patch format.

One module renders every message the model-backed teacher sends, so a prompt change is a
one-file diff whose effect shows in the snapshot tests. `PROMPT_VERSION` is recorded with
every patch and is part of the service's cache key: bump it whenever a rendered message
changes, or old cached patches would be served for the new prompt.

The layers of the paper's leakage control (App. A.2, "Handling Directly-Observable
Queries") map to:
1. query-type constraints in the error-analysis prompt (`QUERY_TYPE_RULES`: never name
   colours, counts, attribute values, option letters);
2. the negative prompt with BAD / GOOD pairs in the style of paper Table 1 and the
   "blind test" rule;
3. the structured output (`PATCH_JSON_SCHEMA`): error types, a key-frame *range*,
   short temporal markers, regions, one guidance sentence — no free answer field.
Per-error-type mitigations follow paper Table 6 (`ERROR_TYPE_GUIDE`).

GT mode (paper Eq. 5, full package) shows the gold answer to the teacher only to
diagnose; the no-GT mode (reduced package) omits it and says so.
"""
from __future__ import annotations

import json
from typing import Optional, Sequence

from ffr.patch import MAX_GUIDANCE_CHARS, MAX_MARKER_CHARS, MAX_MARKERS, MAX_REGIONS

PROMPT_VERSION = "ffr-teacher-v1"

ERROR_TYPE_GUIDE = {
    # paper Table 6: description; mitigation applied in the patch
    "temporal": ("wrong temporal order or event sequence",
                 "point to a frame window and use before/after wording without naming the events' outcome"),
    "spatial": ("wrong interpretation of frame content",
                "point to frames and region coordinates; never name the objects, colours or attributes"),
    "misconception": ("misinterpretation of what the question asks",
                      "clarify the task focus (e.g. 'which action' vs 'which object') without revealing the target"),
}

QUERY_TYPE_RULES = (
    "Query-type constraints (strict):\n"
    "- Never state or hint at the correct option, its letter, or its text; never rule options in or out.\n"
    "- Never name colours, counts, quantities, sizes, distances, directions, attribute values or text that "
    "the question asks about, even if they are plainly visible.\n"
    "- Never describe the final state or outcome of the event the question asks about.\n"
    "- For counting questions, point to where the objects appear, never how many there are.\n"
    "- For numerical, regression or OCR questions, never write a number or text that could be the answer."
)

NEGATIVE_PROMPT = (
    "What you must NOT write (BAD) and what to write instead (GOOD):\n"
    "- BAD: \"The person moves from left to right.\"  GOOD: \"Track the subject's movement direction across "
    "the key frames.\"\n"
    "- BAD: \"The event happens before the person sits down.\"  GOOD: \"Compare the order of the two events "
    "inside the key-frame window.\"\n"
    "- BAD: \"The answer is C / the yellow sphere.\"  GOOD: \"Check which paths the static cylinder "
    "intersects.\"\n"
    "- BAD: \"The object picked up is a red metal cube.\"  GOOD: \"Observe the colour and material of the "
    "object involved in the interaction.\"\n"
    "- BAD: \"There are 3 cups on the table.\"  GOOD: \"Count the cups again across the marked frames.\"\n"
    "Blind test: before answering, imagine someone who cannot see the video reads only your patch, the "
    "question and the options. If they could infer the answer, your patch is too specific: make it "
    "less specific. Point to WHERE and WHEN to look, never to WHAT is there."
)


def error_analysis_prompt(use_gt: bool) -> str:
    """System prompt: the teacher's role, the error taxonomy (Table 6) and the no-leak rules."""
    types = "\n".join(f"- {name}: {desc}. Mitigation: {mitigation}."
                      for name, (desc, mitigation) in ERROR_TYPE_GUIDE.items())
    reference = ("You are given the reference answer ONLY to diagnose the error; it must never appear in, "
                 "or be inferable from, your patch." if use_gt else
                 "You are NOT given the reference answer: diagnose from the video, the question and the "
                 "student's reasoning alone.")
    return (
        "You are a teacher for a small video-language student model. The student watched frames of a "
        "video, answered a question, and got it wrong. Find the missing spatio-temporal evidence and "
        "return a minimal evidence patch that helps the student re-examine the video and fix its own "
        f"reasoning, without giving the answer away. {reference}\n\n"
        f"Error types:\n{types}\n\n{QUERY_TYPE_RULES}\n\n{NEGATIVE_PROMPT}"
    )


def tool_use_prompt(protocol: str, coords: str, max_turns: int) -> str:
    """How to call the tools: native function calls (`tools`) or a text action line (`text`)."""
    box = ("relative coordinates in [0, 1]" if coords == "relative"
           else "coordinates on a 0-1000 grid of the frame's width and height")
    tools = (
        "Tools over the ORIGINAL video (use them to check your diagnosis; at most "
        f"{max(1, max_turns - 1)} tool calls, then answer):\n"
        "- select_frames(indices): look again at the student's frames with these 0-based indices (at most 8).\n"
        "- select_time_range(start_s, end_s, n): n frames (at most 8) evenly spread over a time range in "
        "seconds, including times between the student's frames.\n"
        f"- zoom(frame_index, bbox): a crop of one of the student's frames; bbox is [x0, y0, x1, y1] in {box}.\n"
    )
    if protocol == "tools":
        return tools + "Call tools with function calls. When you are done, reply with the patch JSON only."
    return tools + (
        "To call a tool, reply with exactly one line and nothing else:\n"
        'ACTION: {"tool": "<name>", "arguments": {...}}\n'
        "The tool's result comes back in the next message. When you are done, reply with the patch JSON only."
    )


def patch_format_prompt(coords: str, n_frames: int) -> str:
    """The final answer's format (structured output constraint, paper Table 5 'format constraints')."""
    frame_rule = (f"key_frames: [start, end] 0-based indices into the student's {n_frames} frames, a RANGE of "
                  "at least two frames around the evidence (never a single 'answer frame'), or null"
                  if n_frames > 1 else "key_frames: null (the input is a single image)")
    box = "relative [0, 1]" if coords == "relative" else "0-1000 grid"
    return (
        "Answer with one JSON object and nothing else:\n"
        '{"error_types": [...], "key_frames": [start, end], "temporal_markers": [...], '
        '"spatial_regions": [{"frame": i, "box": [x0, y0, x1, y1]}], "guidance": "..."}\n'
        "- error_types: 1 to 3 of \"temporal\", \"spatial\", \"misconception\".\n"
        f"- {frame_rule}.\n"
        f"- temporal_markers: at most {MAX_MARKERS} short phrases (<= {MAX_MARKER_CHARS} characters) naming "
        "moments to watch, e.g. \"when the hand releases the object\".\n"
        f"- spatial_regions: at most {MAX_REGIONS} boxes in {box} coordinates, each on a frame index "
        "(or frame null for the whole clip).\n"
        f"- guidance: ONE sentence (<= {MAX_GUIDANCE_CHARS} characters) on what to re-examine, never what "
        "is there."
    )


def system_prompt(use_gt: bool, protocol: str, coords: str, max_turns: int, n_frames: int) -> str:
    """The full system message: error analysis + negative prompt + tool use + output format."""
    return "\n\n".join([error_analysis_prompt(use_gt), tool_use_prompt(protocol, coords, max_turns),
                        patch_format_prompt(coords, n_frames)])


def case_text(question: str, options: Sequence[str], student_response: str, gold_answer: Optional[str],
              timestamps: Sequence[float]) -> str:
    """The user's case description; the frames follow it as labelled images."""
    lines = [f"Question:\n{question.strip()}"]
    if options and "Options:" not in question:
        lines.append("Options:\n" + "\n".join(options))
    lines.append(f"Student's response (wrong):\n{student_response.strip() or '(empty)'}")
    if gold_answer is not None:
        lines.append(f"Reference answer (for your diagnosis only, never reveal it): {gold_answer}")
    if timestamps:
        span = f"{len(timestamps)} frames, 0-based indices 0-{len(timestamps) - 1}, " \
               f"{timestamps[0]:.1f}-{timestamps[-1]:.1f} s"
        lines.append(f"The student saw these {span}:")
    else:
        lines.append("The student saw this image:")
    return "\n\n".join(lines)


def frame_label(index: int, t: Optional[float]) -> str:
    """Text label placed before each frame image: 'Frame 3 (t=1.5s):'."""
    return f"Frame {index} (t={t:.1f}s):" if t is not None else f"Frame {index}:"


REASK = ("Your last reply was not a valid patch ({problem}). Reply again with the patch JSON object only, "
         "in the format described above.")

LEAK_FEEDBACK = ("Your patch reveals the answer: {reason}. Rewrite it so that someone who cannot see the video "
                 "could not infer the answer (blind test): remove or generalise \"{span}\". Reply with the "
                 "patch JSON object only.")

FINAL_ASK = "Tool budget used up. Reply now with the patch JSON object only."


def patch_json_schema(coords: str) -> dict:
    """JSON schema of the final patch, for servers that support `response_format: json_schema`."""
    upper = 1.0 if coords == "relative" else 1000.0
    number = {"type": "number", "minimum": 0, "maximum": upper}
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["error_types", "key_frames", "temporal_markers", "spatial_regions", "guidance"],
        "properties": {
            "error_types": {"type": "array", "minItems": 1, "maxItems": 3,
                            "items": {"type": "string", "enum": list(ERROR_TYPE_GUIDE)}},
            "key_frames": {"type": ["array", "null"], "items": {"type": "integer", "minimum": 0},
                           "minItems": 2, "maxItems": 2},
            "temporal_markers": {"type": "array", "maxItems": MAX_MARKERS,
                                 "items": {"type": "string", "maxLength": MAX_MARKER_CHARS}},
            "spatial_regions": {"type": "array", "maxItems": MAX_REGIONS, "items": {
                "type": "object", "additionalProperties": False, "required": ["frame", "box"],
                "properties": {"frame": {"type": ["integer", "null"], "minimum": 0},
                               "box": {"type": "array", "items": number, "minItems": 4, "maxItems": 4}}}},
            "guidance": {"type": "string", "maxLength": MAX_GUIDANCE_CHARS},
        },
    }


def tool_schemas(coords: str) -> list[dict]:
    """OpenAI `tools` definitions of the three video tools."""
    box_desc = ("[x0, y0, x1, y1] relative to the frame, each in [0, 1]" if coords == "relative"
                else "[x0, y0, x1, y1] on a 0-1000 grid of the frame")
    integer_list = {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1, "maxItems": 8}

    def fn(name: str, description: str, properties: dict) -> dict:
        return {"type": "function", "function": {
            "name": name, "description": description,
            "parameters": {"type": "object", "properties": properties, "required": list(properties),
                           "additionalProperties": False}}}

    return [
        fn("select_frames", "Look again at some of the student's frames (0-based indices, at most 8).",
           {"indices": integer_list}),
        fn("select_time_range", "n frames (at most 8) evenly spread over [start_s, end_s] seconds of the video.",
           {"start_s": {"type": "number", "minimum": 0}, "end_s": {"type": "number", "minimum": 0},
            "n": {"type": "integer", "minimum": 1, "maximum": 8}}),
        fn("zoom", "A magnified crop of one of the student's frames.",
           {"frame_index": {"type": "integer", "minimum": 0},
            "bbox": {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4,
                     "description": box_desc}}),
    ]


def schema_fingerprint(coords: str) -> str:
    """Stable text of the schemas, folded into the cache tag with PROMPT_VERSION."""
    return json.dumps([patch_json_schema(coords), tool_schemas(coords)], sort_keys=True)
