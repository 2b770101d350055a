"""Patch inspector arithmetic on fixed inputs: box percentages, key-frame marks, frame lookup."""
from __future__ import annotations

import pytest

from ffr.inspect import LogLine
from ffr.inspect.geometry import (box_percent, frame_marks, key_range_label, nearest_frames,
                                  out_of_range)
from ffr.patch import EvidencePatch, KeyFrameRange, Region


def _patch(key=None, regions=()):
    return EvidencePatch(error_types=["spatial"], key_frames=key, spatial_regions=list(regions),
                         guidance="Look at the marked area.")


def test_box_percent_relative_norm1000_and_pixel():
    assert box_percent(Region(box=(0.1, 0.2, 0.5, 0.6), coords="relative"), None) == (10.0, 20.0, 40.0, 40.0)
    assert box_percent(Region(box=(100, 250, 400, 750), coords="norm1000"), None) == (10.0, 25.0, 30.0, 50.0)
    # 56 x 84 frame: x 14..42 -> 25..75 %, y 21..63 -> 25..75 %.
    assert box_percent(Region(box=(14, 21, 42, 63), coords="pixel"), (56, 84)) == (25.0, 25.0, 50.0, 50.0)
    # One decimal place more than a pixel needs is kept (2 decimals), not truncated to an int.
    assert box_percent(Region(box=(1, 1, 2, 2), coords="pixel"), (3, 3)) == (33.33, 33.33, 33.33, 33.33)


def test_pixel_box_without_frame_size_is_not_drawn_and_overhang_is_clipped():
    pixel = Region(frame=0, box=(10, 10, 20, 20), coords="pixel")
    assert box_percent(pixel, None) is None
    assert frame_marks(_patch(regions=[pixel]), 2, None)[0].boxes == []
    # A box overhanging the frame by a pixel is clipped to the frame (as ffr.patch does for the student).
    assert box_percent(Region(box=(0, 0, 101, 50), coords="pixel"), (100, 100)) == (0.0, 0.0, 100.0, 50.0)


def test_key_range_and_region_frames():
    patch = _patch(KeyFrameRange(start=1, end=2), [
        Region(frame=3, box=(0.0, 0.0, 0.5, 0.5), coords="relative"),
        Region(frame=None, box=(0.5, 0.5, 1.0, 1.0), coords="relative"),
    ])
    marks = frame_marks(patch, 4)
    assert [m.in_key_range for m in marks] == [False, True, True, False]
    # R0 names frame 3; R1 names no frame, so it is drawn on each key frame (1 and 2), dashed.
    assert [[(b.region, b.whole_clip) for b in m.boxes] for m in marks] == [
        [], [(1, True)], [(1, True)], [(0, False)]]
    assert (marks[3].boxes[0].left, marks[3].boxes[0].width) == (0.0, 50.0)


def test_region_without_frame_and_without_range_covers_every_frame():
    marks = frame_marks(_patch(None, [Region(box=(0.2, 0.2, 0.4, 0.4), coords="relative")]), 3)
    assert [len(m.boxes) for m in marks] == [1, 1, 1]
    assert not any(m.in_key_range for m in marks)


def test_indices_beyond_the_frames_mark_nothing_and_are_reported():
    patch = _patch(KeyFrameRange(start=2, end=6), [Region(frame=9, box=(0, 0, 1, 1), coords="relative")])
    marks = frame_marks(patch, 4)
    assert [m.in_key_range for m in marks] == [False, False, True, True]
    assert all(not m.boxes for m in marks)
    assert out_of_range(patch, 4) == ["key_frames end 6", "spatial_regions[0].frame 9"]
    assert out_of_range(patch, 10) == []
    assert frame_marks(None, 2)[1].in_key_range is False


def test_key_range_label():
    ts = [0.0, 0.5, 1.0, 1.5]
    assert key_range_label(KeyFrameRange(start=1, end=2), ts) == "frames 1\u20132 (0.50\u20131.00 s)"
    assert key_range_label(KeyFrameRange(start=3, end=3), ts) == "frame 3 (1.50 s)"
    assert key_range_label(KeyFrameRange(start=2, end=4), ts) == "frames 2\u20134 (beyond the 4 frames shown)"
    assert key_range_label(None, ts) == "none"


def test_nearest_frames_maps_logged_times_onto_decoded_frames():
    # load_frames_at collapses duplicates: 4 logged times, 3 decoded frames.
    assert nearest_frames([0.0, 0.74, 1.375, 2.125], [0.0, 0.75, 2.125]) == [0, 1, 1, 2]
    assert nearest_frames([5.0, -1.0], [0.0, 1.0]) == [1, 0]
    assert nearest_frames([0.5], [0.0, 1.0]) == [0]  # a tie goes to the earlier frame
    with pytest.raises(ValueError):
        nearest_frames([0.0], [])


@pytest.mark.parametrize("row, cls", [
    ({"status": "ok", "outcome": "fixed"}, "fixed"),
    ({"status": "ok", "outcome": "improved"}, "not_fixed"),
    ({"status": "ok", "outcome": "not_fixed"}, "not_fixed"),
    ({"status": "ok", "outcome": "leak_local"}, "leak"),
    ({"status": "leak", "outcome": "no_patch"}, "leak"),
    ({"status": "error", "outcome": "no_patch"}, "no_patch"),
    ({"status": "ok", "outcome": "invalid_patch"}, "no_patch"),
    ({"status": "ok", "outcome": "mined"}, "mined"),
])
def test_outcome_classes(row, cls):
    assert LogLine("f:1", row, None).outcome_class == cls
