"""The replay trainer end to end on the tiny Qwen2.5-VL and synthetic videos (CPU): rows are replayed
from the second visit of a prompt with their stored rewards and behaviour log-probs, and a run
killed after a checkpoint resumes with the buffer the uninterrupted run has."""
import math

import pytest
import torch
from transformers import TrainerCallback

from r1v.data import load_records
from r1v.trainer.batch import RowSource
from r1v.trainer.replay import BUFFER_FILE, ReplayConfig, ReplayTrainer
from r1v.vision import VisionConfig

VISION = VisionConfig(max_frames=4, video_max_pixels=3136, video_min_pixels=3136, image_max_pixels=12544)
pytestmark = pytest.mark.slow


def digit_reward(completions, **_):
    """Dense toy reward (share of digit characters) so advantages are non-zero."""
    return [sum(ch.isdigit() for ch in c) / max(len(c), 1) for c in completions]


def _args(out_dir, **kw):
    base = dict(output_dir=str(out_dir), num_generations=4, max_completion_length=8, per_device_train_batch_size=1,
                max_steps=2, logging_steps=1, save_steps=2, report_to="none", use_cpu=True, learning_rate=1e-3,
                beta=0.04, seed=0, dataloader_num_workers=0, log_completions=False, replay_strategy="highest_k",
                replay_k=2, replay_min_cache=4, replay_max_cache=4)
    base.update(kw)
    return ReplayConfig(**base)


class Recording(ReplayTrainer):
    """Keeps every generated batch and a copy of the buffer's entries before each push."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.batches, self.before_push = [], []

    def compute_old_and_ref_logps(self, rollouts):
        self.before_push.append({k: list(q) for k, q in self.replay_buffer.fifos.items()})
        super().compute_old_and_ref_logps(rollouts)
        self.batches.append(rollouts)


def _trainer(ckpt, records, args, callbacks=()):
    return Recording(ckpt, [digit_reward, "format"], args, records, vision_config=VISION, torch_dtype="float32",
                     callbacks=list(callbacks))


def _one_video(synthetic_dir):
    # One record: every step revisits the same prompt, so step 2 replays step 1's rollouts.
    return [r for r in load_records(synthetic_dir / "train.jsonl") if r["data_type"] == "video"][:1]


def test_second_visit_replays_stored_rows(tiny_qwen25_ckpt, synthetic_dir, tmp_path):
    trainer = _trainer(tiny_qwen25_ckpt, _one_video(synthetic_dir), _args(tmp_path / "out"))
    trainer.train()
    first, second = trainer.batches
    assert first.source.tolist() == [int(RowSource.ON_POLICY)] * 4  # empty buffer: nothing to replay
    assert second.source.tolist() == [int(RowSource.ON_POLICY)] * 4 + [int(RowSource.REPLAY)] * 2
    assert second.group_ids.tolist() == [0] * 6
    # highest_k over step 1's four rollouts, stored before step 2's push, with stored rewards and log-probs.
    (stored,) = trainer.before_push[1].values()
    expect = sorted(stored, key=lambda e: e.reward, reverse=True)[:2]
    assert second.completions_text[4:] == [e.text for e in expect]
    for i, e in enumerate(expect):
        n = e.completion_ids.numel()
        assert torch.equal(second.completion_ids[4 + i, :n], e.completion_ids)
        assert torch.equal(second.behaviour_logps[4 + i, :n], e.behaviour_logps)
        assert torch.equal(second.rewards[4 + i].float(), e.rewards)
        assert int(second.completion_mask[4 + i].sum()) == n
    # Step 1's stored rows are its on-policy rollouts, with their rewards as scored.
    assert [e.text for e in stored] == first.completions_text
    assert [e.reward for e in stored] == pytest.approx(first.reward.tolist())
    # Split advantages: the two replayed rows are standardised among themselves.
    # Two rows a, b: mean (a + b) / 2, unbiased std |a - b| / sqrt(2), so |A| = (|a - b| / 2) / (std + eps).
    gap = abs(float(second.reward[4] - second.reward[5]))
    expect_adv = (gap / 2) / (gap / math.sqrt(2) + 1e-4)
    assert second.advantages[4:].abs().tolist() == pytest.approx([expect_adv] * 2, rel=1e-4, abs=1e-6)
    # FIFO of 4: 8 pushed, the 4 of step 2 kept.
    (fifo,) = trainer.replay_buffer.fifos.values()
    assert [e.text for e in fifo] == second.completions_text[:4] and trainer.replay_buffer.pushed == {
        next(iter(trainer.replay_buffer.fifos)): 8}
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert [h["replay/rows_per_prompt"] for h in logs] == [0.0, 2.0]
    assert all(math.isfinite(h["loss"]) for h in logs) and logs[-1]["replay/buffer_entries"] == 4.0
    assert (tmp_path / "out" / "checkpoint-2" / BUFFER_FILE).exists()


class Killed(Exception):
    pass


class KillAfterSave(TrainerCallback):
    """Stops the run right after a checkpoint is published, as a kill at that point would."""

    def on_save(self, args, state, control, **kwargs):
        raise Killed(state.global_step)


def test_kill_and_resume_gives_the_same_buffer(tiny_qwen25_ckpt, synthetic_dir, tmp_path):
    records = _one_video(synthetic_dir)
    whole = _trainer(tiny_qwen25_ckpt, records, _args(tmp_path / "whole", max_steps=3, save_steps=2))
    whole.train()

    killed = _trainer(tiny_qwen25_ckpt, records, _args(tmp_path / "run", max_steps=3, save_steps=2),
                      callbacks=[KillAfterSave()])
    with pytest.raises(Killed):
        killed.train()
    texts = lambda fifos: {k: [(e.text, e.reward) for e in q] for k, q in fifos.items()}
    assert texts(killed.replay_buffer.fifos) == texts(whole.before_push[2])  # the same run up to the kill
    resumed = _trainer(tiny_qwen25_ckpt, records, _args(tmp_path / "run", max_steps=3, save_steps=2))
    resumed.train(resume_from_checkpoint=True)
    assert resumed.state.global_step == 3 and len(resumed.batches) == 1
    # The resumed step saw the checkpoint's buffer: the one the killed run had at step 2.
    assert texts(resumed.before_push[0]) == texts(whole.before_push[2])
    # ... so it replays exactly what the uninterrupted run replayed at step 3 (rows, stored log-probs, rewards).
    after, before = resumed.batches[0], whole.batches[2]
    assert after.source.tolist() == before.source.tolist() and after.completions_text[4:] == before.completions_text[4:]
    assert torch.equal(after.behaviour_logps[4:], before.behaviour_logps[4:])
    assert torch.equal(after.rewards[4:], before.rewards[4:])
    # Pushed once more after the resume: 4 (step 1) + 4 (step 2) restored, + 4 (step 3).
    assert list(resumed.replay_buffer.pushed.values()) == [12] == list(whole.replay_buffer.pushed.values())


def test_resume_refuses_a_checkpoint_without_a_buffer(tiny_qwen25_ckpt, synthetic_dir, tmp_path):
    records = _one_video(synthetic_dir)
    first = _trainer(tiny_qwen25_ckpt, records, _args(tmp_path / "out", max_steps=2, save_steps=2))
    first.train()
    (tmp_path / "out" / "checkpoint-2" / BUFFER_FILE).unlink()
    again = _trainer(tiny_qwen25_ckpt, records, _args(tmp_path / "out", max_steps=3, save_steps=3))
    with pytest.raises(FileNotFoundError, match=BUFFER_FILE):
        again.train(resume_from_checkpoint=True)


def test_a_schedule_too_short_to_replay_is_warned(tiny_qwen25_ckpt, synthetic_dir, tmp_path, caplog):
    records = _one_video(synthetic_dir) * 4  # 4 prompts with one key; 2 steps visit each record < 1 time
    with caplog.at_level("WARNING", logger="r1v.trainer.replay"):
        trainer = _trainer(tiny_qwen25_ckpt, records, _args(tmp_path / "out", replay_min_cache=8, replay_max_cache=8))
    assert trainer.warn_if_nothing_replays() == pytest.approx(0.5)
    assert "nothing will be replayed" in caplog.text and "visit 3" in caplog.text
