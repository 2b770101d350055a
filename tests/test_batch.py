"""PromptBatch row selection / concatenation keeps text and visual tensors consistent."""
import torch

from r1v.trainer.batch import PromptBatch


def _batch():
    # Row 0: a video of 2x1x2 = 4 patches; row 1: an image of 1x1x3 = 3 patches; row 2: a video of 2 patches.
    enc = {
        "input_ids": torch.tensor([[0, 5, 6], [7, 8, 9], [0, 0, 4]]),
        "attention_mask": torch.tensor([[0, 1, 1], [1, 1, 1], [0, 0, 1]]),
        "mm_token_type_ids": torch.tensor([[0, 2, 0], [1, 1, 0], [0, 0, 2]]),
        "pixel_values_videos": torch.arange(6).float().unsqueeze(1),
        "video_grid_thw": torch.tensor([[2, 1, 2], [1, 1, 2]]),
        "second_per_grid_ts": torch.tensor([1.0, 0.5]),
        "pixel_values": torch.arange(10, 13).float().unsqueeze(1),
        "image_grid_thw": torch.tensor([[1, 1, 3]]),
    }
    return PromptBatch.from_encoded(enc, {"video": [1, 0, 1], "image": [0, 1, 0]}, [{"i": 0}, {"i": 1}, {"i": 2}], 0)


def test_select_repeats_rows_and_gathers_their_patches():
    b = _batch().select([2, 0, 2])
    assert b.input_ids.tolist() == [[0, 0, 4], [0, 5, 6], [0, 0, 4]]
    assert b.visual["pixel_values_videos"].squeeze(1).tolist() == [4, 5, 0, 1, 2, 3, 4, 5]
    assert b.visual["video_grid_thw"].tolist() == [[1, 1, 2], [2, 1, 2], [1, 1, 2]]
    assert b.visual["second_per_grid_ts"].tolist() == [0.5, 1.0, 0.5]
    assert "pixel_values" not in b.visual and "image_grid_thw" not in b.visual  # no image rows selected
    assert [m["i"] for m in b.meta] == [2, 0, 2] and b.row_counts == {"video": [1, 1, 1], "image": [0, 0, 0]}


def test_concat_left_pads_to_the_longer_prompt():
    a = _batch().select([1])
    short = PromptBatch(torch.tensor([[3]]), torch.tensor([[1]]), torch.tensor([[0]]), {},
                        {"video": [0], "image": [0]}, [{"i": 9}], pad_token_id=0)
    c = a.concat(short)
    assert c.input_ids.tolist() == [[7, 8, 9], [0, 0, 3]]
    assert c.attention_mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert c.visual["pixel_values"].squeeze(1).tolist() == [10, 11, 12]
    assert c.select([1, 0]).visual["image_grid_thw"].tolist() == [[1, 1, 3]]


def test_row_counts_must_match_processor_output():
    import pytest

    enc = {"input_ids": torch.zeros(1, 2, dtype=torch.long), "attention_mask": torch.ones(1, 2, dtype=torch.long),
           "mm_token_type_ids": torch.zeros(1, 2, dtype=torch.long), "video_grid_thw": torch.tensor([[1, 1, 1]]),
           "pixel_values_videos": torch.zeros(1, 1)}
    with pytest.raises(ValueError, match="row_counts"):
        PromptBatch.from_encoded(enc, {"video": [2]}, [{}], 0)


def test_repeat_block_sampler_blocks_are_single_modality_and_repeated():
    from r1v.trainer.utils import RepeatBlockSampler

    groups = ["video"] * 7 + ["image"] * 5
    sampler = RepeatBlockSampler(12, block_size=2, repeats=3, seed=1, groups=groups)
    order = list(sampler)
    assert len(order) == len(sampler) == (3 + 2) * 2 * 3  # one odd video and one odd image dropped
    blocks = [order[i:i + 2] for i in range(0, len(order), 2)]
    for k in range(0, len(blocks), 3):  # each block three times in a row
        assert blocks[k] == blocks[k + 1] == blocks[k + 2]
        assert len({groups[i] for i in blocks[k]}) == 1
    assert order == list(RepeatBlockSampler(12, 2, 3, seed=1, groups=groups))  # same on every rank
    assert len(set(order)) == 10
