"""Evidence patch schema, converters, rendering snapshots and evidence -> patch mapping."""
import pytest
from pydantic import ValidationError

from ffr.patch import (NO_GT_GUIDANCE, EvidencePatch, KeyFrameRange, Region, check_patch_frames,
                       evidence_to_patch, norm1000_to_relative, normalize_regions, pixel_to_relative,
                       render_patch, span_to_frame_range)

# 16 frames sampled at 2 fps: frame i at i * 0.5 s.
TS = [i * 0.5 for i in range(16)]
QUESTION = ("Which object was put down by the person?\nOptions:\nA. The clothes\nB. The book\n"
            "C. The shoe\nD. The dish")
GUIDANCE = "Track hand movements and which object is placed down."
MARKERS = ["when the person's hand releases the object", "moment of placement on surface"]


def make_patch(**overrides):
    fields = dict(
        error_types=["temporal", "spatial"],
        key_frames={"start": 3, "end": 7},
        temporal_markers=MARKERS,
        spatial_regions=[{"frame": 4, "box": [100, 200, 500, 600], "coords": "norm1000"},
                         {"box": [0.0, 0.5, 0.25, 1.0], "coords": "relative"}],
        guidance=GUIDANCE,
    )
    fields.update(overrides)
    return EvidencePatch(**fields)


def error_locs(exc_info):
    return [tuple(e["loc"]) for e in exc_info.value.errors()]


# ---------------------------------------------------------------- schema


def test_valid_patch_and_json_round_trip():
    patch = make_patch()
    assert patch.key_frames == KeyFrameRange(start=3, end=7)
    assert patch.spatial_regions[0].box == (100.0, 200.0, 500.0, 600.0)
    assert EvidencePatch.model_validate_json(patch.model_dump_json()) == patch


def test_key_frames_list_keeps_its_span():
    # The paper's case study writes key frames as [13, 14, 15].
    assert make_patch(key_frames=[13, 14, 15]).key_frames == KeyFrameRange(start=13, end=15)
    assert make_patch(key_frames=[9]).key_frames == KeyFrameRange(start=9, end=9)


@pytest.mark.parametrize("overrides, loc, message", [
    (dict(error_types=[]), ("error_types",), "at least 1"),
    (dict(error_types=["temporal", "temporal"]), ("error_types",), "unique"),
    (dict(error_types=["causal"]), ("error_types", 0), "temporal"),
    (dict(key_frames={"start": 7, "end": 3}), ("key_frames",), "start (7) must be <= end (3)"),
    (dict(key_frames={"start": -1, "end": 3}), ("key_frames", "start"), "greater than or equal to 0"),
    (dict(key_frames=[]), ("key_frames",), "at least one int"),
    (dict(temporal_markers=["m"] * 6), ("temporal_markers",), "at most 5"),
    (dict(temporal_markers=["ok", "x" * 81]), ("temporal_markers", 1), "at most 80 characters"),
    (dict(temporal_markers=["ok", "  "]), ("temporal_markers", 1), "must not be empty"),
    (dict(guidance="Look at the hand. Then count."), ("guidance",), "one sentence"),
    (dict(guidance="x" * 201), ("guidance",), "at most 200 characters"),
    (dict(guidance="Look at\nthe hand."), ("guidance",), "single line"),
    (dict(guidance=""), ("guidance",), "must not be empty"),
    (dict(spatial_regions=[{"box": [0.5, 0.1, 0.4, 0.9], "coords": "relative"}]),
     ("spatial_regions", 0), "x0 < x1"),
    (dict(spatial_regions=[{"box": [0.1, 0.1, 1.4, 0.9], "coords": "relative"}]),
     ("spatial_regions", 0), "outside [0, 1.0]"),
    (dict(spatial_regions=[{"box": [0, 0, 1001, 10], "coords": "norm1000"}]),
     ("spatial_regions", 0), "outside [0, 1000.0]"),
    (dict(spatial_regions=[{"box": [0.1, 0.1, 0.4, 0.9]}]), ("spatial_regions", 0, "coords"), "required"),
    (dict(spatial_regions=[{"box": [0.1, 0.1, 0.4], "coords": "relative"}]),
     ("spatial_regions", 0, "box", 3), "Field required"),
    (dict(answer="B"), ("answer",), "Extra inputs are not permitted"),
])
def test_validation_errors_name_the_field(overrides, loc, message):
    with pytest.raises(ValidationError) as exc_info:
        make_patch(**overrides)
    assert loc in error_locs(exc_info)
    assert message in str(exc_info.value)


def test_patch_is_immutable():
    with pytest.raises(ValidationError):
        make_patch().guidance = "Something else."


# ---------------------------------------------------------------- converters


def test_coordinate_converters():
    assert norm1000_to_relative([100, 200, 500, 600]) == (0.1, 0.2, 0.5, 0.6)
    assert pixel_to_relative([64, 48, 320, 240], 640, 480) == (0.1, 0.1, 0.5, 0.5)
    assert pixel_to_relative([-2, 0, 650, 480], 640, 480) == (0.0, 0.0, 1.0, 1.0)  # clipped overhang
    with pytest.raises(ValueError, match="frame_size"):
        pixel_to_relative([0, 0, 1, 1], 0, 480)


def test_region_to_relative_and_normalize():
    pixel = Region(frame=2, box=(64, 48, 320, 240), coords="pixel")
    assert pixel.to_relative((640, 480)) == Region(frame=2, box=(0.1, 0.1, 0.5, 0.5), coords="relative")
    with pytest.raises(ValueError, match="spatial_regions: pixel coordinates need frame_size"):
        pixel.to_relative()
    patch = normalize_regions(make_patch())
    assert [r.coords for r in patch.spatial_regions] == ["relative", "relative"]
    assert patch.spatial_regions[0].box == (0.1, 0.2, 0.5, 0.6)


def test_check_patch_frames_names_the_field():
    check_patch_frames(make_patch(), 8)  # end 7 < 8 frames: fine
    with pytest.raises(ValueError, match=r"key_frames: end index 7 is out of range for 7 sampled frames"):
        check_patch_frames(make_patch(), 7)
    patch = make_patch(key_frames=None, spatial_regions=[{"frame": 9, "box": [0, 0, 1, 1], "coords": "relative"}])
    with pytest.raises(ValueError, match=r"spatial_regions\[0\].frame: index 9"):
        check_patch_frames(patch, 8)


# ---------------------------------------------------------------- rendering snapshots

HEADER = "Evidence to re-examine before answering:\n"
FOCUS = "- Error focus: temporal (order or timing of events); spatial (what the frames show)\n"
FRAMES = "- Key frames: frames 3\u20137 (1.5 s \u2013 3.5 s)\n"
MARKER_LINE = ('- Temporal markers: "when the person\'s hand releases the object"; '
               '"moment of placement on surface"\n')
REGION_LINE = ("- Regions (percent of width / height): frame 4 (2.0 s): x 10\u201350%, y 20\u201360%; "
               "x 0\u201325%, y 50\u2013100%\n")
GUIDE = "- Guidance: Track hand movements and which object is placed down.\n\n"


def test_render_full_visual_context():
    text = render_patch(QUESTION, make_patch(), TS, visual_context=True)
    assert text == HEADER + FOCUS + FRAMES + MARKER_LINE + REGION_LINE + GUIDE + QUESTION


def test_render_no_visual_context_drops_frames_and_regions():
    text = render_patch(QUESTION, make_patch(), TS, visual_context=False)
    assert text == HEADER + FOCUS + MARKER_LINE + GUIDE + QUESTION


def test_render_without_regions():
    text = render_patch(QUESTION, make_patch(spatial_regions=[]), TS, visual_context=True)
    assert text == HEADER + FOCUS + FRAMES + MARKER_LINE + GUIDE + QUESTION


def test_render_without_markers():
    text = render_patch(QUESTION, make_patch(temporal_markers=[]), TS, visual_context=True)
    assert text == HEADER + FOCUS + FRAMES + REGION_LINE + GUIDE + QUESTION


def test_render_misconception_only_patch():
    patch = EvidencePatch(error_types=["misconception"],
                          guidance="Clarify whether the question asks about the action or the object.")
    for visual_context in (True, False):
        assert render_patch("How many?", patch, TS, visual_context) == (
            "Evidence to re-examine before answering:\n"
            "- Error focus: misconception (what the question asks)\n"
            "- Guidance: Clarify whether the question asks about the action or the object.\n"
            "\n"
            "How many?")


def test_render_single_frame_and_pixel_region():
    patch = make_patch(error_types=["spatial"], key_frames=[5], temporal_markers=[],
                       spatial_regions=[{"frame": 5, "box": [64, 48, 320, 240], "coords": "pixel"}])
    text = render_patch("Q?", patch, TS, True, frame_size=(640, 480))
    assert text == ("Evidence to re-examine before answering:\n"
                    "- Error focus: spatial (what the frames show)\n"
                    "- Key frames: frame 5 (2.5 s)\n"
                    "- Regions (percent of width / height): frame 5 (2.5 s): x 10\u201350%, y 10\u201350%\n"
                    "- Guidance: Track hand movements and which object is placed down.\n"
                    "\n"
                    "Q?")
    with pytest.raises(ValueError, match="frame_size"):
        render_patch("Q?", patch, TS, True)


def test_render_keeps_question_verbatim_and_checks_inputs():
    for visual_context in (True, False):
        assert render_patch(QUESTION, make_patch(), TS, visual_context).endswith("\n\n" + QUESTION)
    with pytest.raises(ValueError, match="key_frames: end index 7"):
        render_patch(QUESTION, make_patch(), TS[:5], True)
    with pytest.raises(ValueError, match="question_text"):
        render_patch("  ", make_patch(), TS, True)


# ---------------------------------------------------------------- evidence -> patch

EVIDENCE = {"time_span": [1.5, 3.5], "region": [0.1, 0.2, 0.5, 0.6], "error_type": "spatial",
            "markers": ["when the ball first touches the wall"], "guidance": "Follow the ball near the wall."}


@pytest.mark.parametrize("span, start, end", [
    ([1.5, 3.5], 3, 7),    # both ends on sampled frames (1.5 s = frame 3, 3.5 s = frame 7)
    ([1.6, 3.4], 3, 7),    # covering range: last frame <= 1.6 s is 3, first frame >= 3.4 s is 7
    ([1.7, 1.9], 3, 4),    # event between two samples: the two frames around it
    ([2.0, 2.0], 3, 5),    # one frame (4) widened by a neighbour on each side
    ([0.0, 0.0], 0, 1),    # widened, clipped at the first frame
    ([9.0, 12.0], 14, 15),  # beyond the last sample (7.5 s): clamped to frame 15, widened
])
def test_span_to_frame_range(span, start, end):
    assert span_to_frame_range(span, TS) == KeyFrameRange(start=start, end=end)


def test_span_to_frame_range_uneven_timestamps():
    ts = [0.0, 0.4, 1.1, 2.0, 3.2]
    # last frame <= 0.5 s is 1 (0.4 s); first frame >= 1.5 s is 3 (2.0 s)
    assert span_to_frame_range([0.5, 1.5], ts) == KeyFrameRange(start=1, end=3)


def test_evidence_to_patch_with_gt():
    patch = evidence_to_patch(EVIDENCE, TS, use_gt=True)
    assert patch == EvidencePatch(
        error_types=["spatial"], key_frames={"start": 3, "end": 7},
        temporal_markers=["when the ball first touches the wall"],
        spatial_regions=[{"frame": None, "box": [0.1, 0.2, 0.5, 0.6], "coords": "relative"}],
        guidance="Follow the ball near the wall.")


def test_evidence_to_patch_without_gt_drops_answer_derived_fields():
    patch = evidence_to_patch(EVIDENCE, TS, use_gt=False)
    assert patch == EvidencePatch(error_types=["spatial"], key_frames={"start": 3, "end": 7},
                                  guidance=NO_GT_GUIDANCE["spatial"])
    assert patch.temporal_markers == [] and patch.spatial_regions == []


def test_evidence_to_patch_optional_fields():
    evidence = {k: v for k, v in EVIDENCE.items() if k not in ("region", "markers")}
    patch = evidence_to_patch(evidence, TS, use_gt=True)
    assert patch.spatial_regions == [] and patch.temporal_markers == []


@pytest.mark.parametrize("change, message", [
    ({"time_span": None}, "evidence.time_span: missing"),
    ({"time_span": [3.0, 1.0]}, "evidence.time_span: expected 0 <= t0 <= t1"),
    ({"time_span": [1.0]}, "evidence.time_span: expected [t0, t1]"),
    ({"error_type": "causal"}, "evidence.error_type"),
    ({"region": [0.5, 0.2, 0.1, 0.6]}, "evidence.region"),
    ({"markers": "a marker"}, "evidence.markers"),
    ({"guidance": "First look. Then count."}, "one sentence"),
])
def test_evidence_to_patch_errors(change, message):
    evidence = dict(EVIDENCE)
    for key, value in change.items():
        if value is None:
            del evidence[key]
        else:
            evidence[key] = value
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        evidence_to_patch(evidence, TS, use_gt=True)


def test_evidence_to_patch_checks_timestamps():
    with pytest.raises(ValueError, match="timestamps: need at least one"):
        evidence_to_patch(EVIDENCE, [], use_gt=True)
    with pytest.raises(ValueError, match="strictly increasing"):
        evidence_to_patch(EVIDENCE, [0.0, 1.0, 1.0], use_gt=True)
