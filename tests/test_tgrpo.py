"""T-GRPO (Video-R1): the bonus rules against hand-computed cases, the shuffled round, a tiny 1-process run."""
import json
import math

import pytest
import torch

from r1v import tgrpo
from r1v.data import load_records
from r1v.trainer.tgrpo import TGRPOConfig, TGRPOTrainer, length_bonus, shuffle_clip, temporal_bonus
from r1v.trainer.utils import RepeatBlockSampler
from r1v.inputs import make_dummy_visual
from r1v.vision import VisionConfig

VISION = VisionConfig(max_frames=4, video_max_pixels=3136, video_min_pixels=3136, image_max_pixels=12544)
T = torch.tensor


@pytest.mark.parametrize("ordered, shuffled, bonus, applied", [
    # mean 0.5 >= 0.8 x 0.5: the two correct ordered rollouts earn 0.3
    ([1, 1, 0, 0], [1, 0], [0.3, 0.3, 0, 0], True),
    # mean 0.25 < 0.8 x 0.5: nothing
    ([1, 0, 0, 0], [1, 0], [0, 0, 0, 0], False),
    # equality counts (0.4 >= 0.8 x 0.5)
    ([1, 1, 0, 0, 0], [1, 0], [0.3, 0.3, 0, 0, 0], True),
    # all wrong everywhere: the rule holds (0 >= 0) but nobody is correct
    ([0, 0, 0, 0], [0, 0], [0, 0, 0, 0], True),
    # all right everywhere: 1 >= 0.8, Video-R1 still pays the bonus
    ([1, 1, 1, 1], [1, 1], [0.3, 0.3, 0.3, 0.3], True),
    # graded accuracies: mean 0.1875 >= 0.16; "correct" is > 0.1, so 0.05 and exactly 0.1 earn nothing
    ([0.05, 0.5, 0.2, 0.1], [0.2, 0.2], [0, 0.3, 0.3, 0], True),
])
def test_temporal_bonus_hand_cases(ordered, shuffled, bonus, applied):
    got, was_applied = temporal_bonus(T([ordered], dtype=torch.float32), T([shuffled], dtype=torch.float32))
    assert got[0].tolist() == pytest.approx(bonus)
    assert was_applied.tolist() == [applied]


def test_temporal_bonus_is_per_prompt_and_configurable():
    ordered = T([[1.0, 0.0], [1.0, 0.0]])
    shuffled = T([[0.0, 0.0], [1.0, 1.0]])
    got, applied = temporal_bonus(ordered, shuffled, bonus=0.5, ratio=0.4)
    assert applied.tolist() == [True, True] and got.tolist() == [[0.5, 0.0], [0.5, 0.0]]
    got, applied = temporal_bonus(ordered, shuffled)  # ratio 0.8: the second prompt fails (0.5 < 0.8)
    assert applied.tolist() == [True, False] and torch.allclose(got, T([[0.3, 0.0], [0.0, 0.0]]))


def test_length_bonus_hand_cases():
    acc = T([[1.0, 1.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0], [0.1, 0.5, 0.5, 0.0]])
    lengths = T([[320, 600, 400, 512], [400, 400, 400, 400], [400, 319, 330, 400]])
    got = length_bonus(acc, lengths)
    # row 0: three correct, lengths 320 and 512 are inside [320, 512], 600 is not; row 1: one correct only;
    # row 2: 0.1 is not correct, two correct rollouts, only the 330-token one is long enough
    assert torch.allclose(got, T([[0.2, 0, 0, 0.2], [0, 0, 0, 0], [0, 0, 0.2, 0]]))


def test_shuffle_clip_permutes_frames_only():
    clip = make_dummy_visual(VISION)  # 4 distinct frames
    for seed in range(20):  # 4 frames: the identity would come up about once in 24 draws
        out = shuffle_clip(clip, torch.Generator().manual_seed(seed))
        assert out.timestamps == clip.timestamps and out.sampled_fps == clip.sampled_fps
        assert not torch.equal(out.frames, clip.frames)
        order = [next(j for j in range(4) if torch.equal(out.frames[i], clip.frames[j])) for i in range(4)]
        assert sorted(order) == [0, 1, 2, 3]


def test_shipped_sampler_keeps_every_global_batch_single_modality(synthetic_dir):
    """What makes T-GRPO's extra generate rank-symmetric: the base sampler groups blocks by data_type."""
    groups = [r["data_type"] for r in load_records(synthetic_dir / "train.jsonl")]
    assert set(groups) == {"video", "image"}
    block = 2  # 2 ranks x 1 prompt
    order = list(RepeatBlockSampler(len(groups), block, 1, shuffle=True, seed=3, groups=groups))
    blocks = [order[i:i + block] for i in range(0, len(order), block)]
    assert blocks and all(len({groups[i] for i in b}) == 1 for b in blocks)
    assert {groups[b[0]] for b in blocks} == {"video", "image"}


def accuracy(completions, **_):
    """Stand-in for the accuracy reward; ScriptedTGRPO overwrites its values."""
    return [0.0] * len(completions)


class ScriptedTGRPO(TGRPOTrainer):
    """Accuracy scripted per rollout: ordered groups score ``ordered``, shuffled rollouts ``shuffled``."""

    ordered = [1.0, 1.0, 0.0, 0.0]
    shuffled = 0.5

    def score_completions(self, rollouts):
        out = super().score_completions(rollouts)
        n = out.shape[0]
        if rollouts.prompts.meta[0].get("tgrpo_shuffled"):
            out[:, self._acc] = self.shuffled
        else:
            out[:, self._acc] = T(self.ordered).repeat(n // len(self.ordered))
        return out


def _args(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path / "out"), num_generations=4, max_completion_length=8,
                per_device_train_batch_size=2, max_steps=2, logging_steps=1, save_strategy="no", report_to="none",
                use_cpu=True, learning_rate=1e-3, beta=0.0, seed=0, dataloader_num_workers=0, log_completions=False)
    base.update(kw)
    return TGRPOConfig(**base)


@pytest.mark.parametrize("shuffled, expect_applied", [(0.5, True), (1.0, False)])
def test_shuffled_round_and_bonus_on_video_prompts(tiny_qwen25_ckpt, synthetic_dir, tmp_path, shuffled,
                                                   expect_applied):
    records = [r for r in load_records(synthetic_dir / "train.jsonl") if r["data_type"] == "video"][:2]
    trainer = ScriptedTGRPO(tiny_qwen25_ckpt, [accuracy, "format"], _args(tmp_path), records, vision_config=VISION,
                            torch_dtype="float32")
    trainer.shuffled = shuffled
    rollouts = trainer.generate_and_score(records)
    assert trainer.tgrpo_calls == {"shuffled": 1}
    assert rollouts.completion_ids.shape[0] == 8  # only the ordered rollouts enter the loss
    info = rollouts.extras["tgrpo"]
    assert info["video_rows"] == [0, 1] and info["shuffled_acc"].shape == (2, 2)
    assert (info["shuffled_acc"] == shuffled).all()
    bonus = rollouts.extras["reward"] - rollouts.rewards.sum(dim=1)
    expected = T([0.3, 0.3, 0.0, 0.0] * 2) if expect_applied else torch.zeros(8)
    assert bonus.tolist() == pytest.approx(expected.tolist(), abs=1e-6)
    state = trainer.metrics.state()
    assert state["tgrpo/temporal_applied"] == (2.0 * expect_applied, 2)
    assert state["tgrpo/shuffled_accuracy"] == (pytest.approx(2 * shuffled), 2)


def test_image_prompts_make_no_shuffled_round(tiny_qwen25_ckpt, synthetic_dir, tmp_path):
    records = [r for r in load_records(synthetic_dir / "train.jsonl") if r["data_type"] == "image"][:2]
    args = _args(tmp_path, len_control=True, len_control_min_tokens=1, len_control_max_tokens=8)
    trainer = ScriptedTGRPO(tiny_qwen25_ckpt, [accuracy, "format"], args, records, vision_config=VISION,
                            torch_dtype="float32")
    rollouts = trainer.generate_and_score(records)
    assert not trainer.tgrpo_calls and "tgrpo" not in rollouts.extras
    # Length control still applies: two correct rollouts per group, each 1-8 tokens long.
    lengths = rollouts.completion_mask.sum(dim=1)
    expected = [0.2 if acc > 0.1 and 1 <= n <= 8 else 0.0 for acc, n in zip(ScriptedTGRPO.ordered * 2, lengths.tolist())]
    bonus = rollouts.extras["reward"] - rollouts.rewards.sum(dim=1)
    assert bonus.tolist() == pytest.approx(expected, abs=1e-6) and sum(expected) > 0


def test_accuracy_reward_is_required(tiny_qwen25_ckpt, synthetic_dir, tmp_path):
    records = load_records(synthetic_dir / "train.jsonl")[:2]
    with pytest.raises(ValueError, match="accuracy"):
        TGRPOTrainer(tiny_qwen25_ckpt, ["format"], _args(tmp_path), records, vision_config=VISION,
                     torch_dtype="float32")


def test_tgrpo_entry_point_trains_on_a_video_image_mix(tiny_qwen25_ckpt, synthetic_dir, tmp_path):
    out = tmp_path / "run"
    argv = ["--model_name_or_path", tiny_qwen25_ckpt, "--dataset_name", str(synthetic_dir / "train.jsonl"),
            "--output_dir", str(out), "--max_steps", "4", "--num_generations", "4", "--max_completion_length", "8",
            "--per_device_train_batch_size", "2", "--beta", "0.0", "--learning_rate", "1e-3", "--save_strategy", "no",
            "--logging_steps", "1", "--report_to", "none", "--use_cpu", "true", "--torch_dtype", "float32",
            "--seed", "1", "--len_control", "true", "--max_frames", "4", "--video_max_pixels", "3136",
            "--video_min_pixels", "3136", "--max_pixels", "12544", "--log_completions", "false"]
    trainer = tgrpo.run(tgrpo.parse_args(argv))
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 4 and all(math.isfinite(h["loss"]) for h in logs)
    assert trainer.tgrpo_calls["shuffled"] >= 1 and "dummy" not in trainer.tgrpo_calls
    assert any("tgrpo/temporal_applied" in h for h in logs) and all("tgrpo/len_bonus" in h for h in logs)
    config = json.loads((out / "run_config.json").read_text())["TGRPOConfig"]
    assert config["temporal"] is True and config["shuffled_num_generations"] == 2 and config["len_control"] is True


@pytest.mark.parametrize("flags, name", [(["--temporal_ratio", "-1"], "temporal_ratio"),
                                         (["--shuffled_num_generations", "0"], "shuffled_num_generations"),
                                         (["--len_control_min_tokens", "600"], "len_control_min_tokens"),
                                         (["--temporal_bonus", "nan"], "temporal_bonus"),
                                         (["--temporal_bonus", "inf"], "temporal_bonus"),
                                         (["--accuracy_threshold", "nan"], "accuracy_threshold"),
                                         (["--accuracy_threshold", "1.0"], "accuracy_threshold"),
                                         (["--accuracy_threshold", "-0.5"], "accuracy_threshold")])
def test_cli_rejects_bad_tgrpo_values(tmp_path, capsys, flags, name):
    with pytest.raises(SystemExit) as exc:
        tgrpo.parse_args(["--model_name_or_path", "m", "--output_dir", str(tmp_path), "--use_cpu", "true", *flags])
    assert exc.value.code == 2 and name in capsys.readouterr().err
