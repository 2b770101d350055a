"""Snapshot tests of the teacher's rendered messages (paper App. A prompts).

The snapshots under tests/fixtures/teacher_prompts/ are named by `PROMPT_VERSION`: changing a
prompt without bumping the version fails here, because cached patches are keyed by the version.
To accept a deliberate change: bump PROMPT_VERSION, run ``python tests/test_teacher_prompts.py``
(writes the snapshots of the current version) and review the new files in the diff.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from ffr.teacher import prompts

SNAPSHOTS = Path(__file__).parent / "fixtures" / "teacher_prompts"
CASE = dict(question="Which object is picked up first?Options:\nA. the cup\nB. the box\n",
            options=["A. the cup", "B. the box"], student_response="<think>the cup</think><answer>A</answer>",
            timestamps=[0.0, 0.5, 1.0, 1.5])


def rendered(use_gt: bool, protocol: str, coords: str) -> str:
    system = prompts.system_prompt(use_gt, protocol, coords, max_turns=4, n_frames=4)
    case = prompts.case_text(gold_answer="B" if use_gt else None, **CASE)
    return f"### system\n{system}\n\n### user\n{case}\n"


def snapshot_name(use_gt: bool, protocol: str, coords: str) -> str:
    return f"{prompts.PROMPT_VERSION}-{'gt' if use_gt else 'nogt'}-{protocol}-{coords}.txt"


VARIANTS = [(True, "tools", "relative"), (False, "tools", "relative"), (True, "text", "norm1000")]


@pytest.mark.parametrize("use_gt,protocol,coords", VARIANTS)
def test_rendered_messages_match_the_snapshot(use_gt, protocol, coords):
    name = snapshot_name(use_gt, protocol, coords)
    path = SNAPSHOTS / name
    text = rendered(use_gt, protocol, coords)
    assert path.exists(), f"no snapshot {name}: bump PROMPT_VERSION deliberately and write it (module docstring)"
    assert text == path.read_text(encoding="utf-8"), f"{name}: prompt changed without a PROMPT_VERSION bump"


def test_modes_differ_where_they_must():
    gt, no_gt = rendered(True, "tools", "relative"), rendered(False, "tools", "relative")
    assert "Reference answer (for your diagnosis only" in gt and "Reference answer" not in no_gt
    assert "NOT given the reference answer" in no_gt
    for text in (gt, no_gt):  # the three leakage layers of App. A are all there
        assert "Query-type constraints" in text and "Blind test" in text and "BAD:" in text and "GOOD:" in text
        assert "a RANGE of at least two frames" in text
    assert "ACTION:" in rendered(True, "text", "norm1000") and "ACTION:" not in gt
    assert "0-1000 grid" in rendered(True, "text", "norm1000")


def test_schemas_are_valid_json_and_match_the_patch_model():
    schema = prompts.patch_json_schema("relative")
    assert set(schema["required"]) == {"error_types", "key_frames", "temporal_markers", "spatial_regions", "guidance"}
    tools = prompts.tool_schemas("relative")
    assert [t["function"]["name"] for t in tools] == ["select_frames", "select_time_range", "zoom"]
    json.dumps(tools)  # serialisable as sent


if __name__ == "__main__":
    for variant in VARIANTS:
        (SNAPSHOTS / snapshot_name(*variant)).write_text(rendered(*variant), encoding="utf-8")
        print("wrote", SNAPSHOTS / snapshot_name(*variant))
