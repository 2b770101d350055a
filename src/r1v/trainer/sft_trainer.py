"""``Qwen2VLSFTTrainer``: supervised fine-tuning of a Qwen2.5-VL / Qwen3-VL student on CoT records.

Why the transformers ``Trainer`` and not TRL's ``SFTTrainer``: TRL is neither installed nor
pinned here, and its VL path builds prompts with its own chat-template and vision handling,
while SFT must see exactly the prompts GRPO sees (``r1v.prompts`` text, ``r1v.vision`` frame
policy, ``r1v.inputs`` encoding with ``mm_token_type_ids`` and video metadata). A collator
(``r1v.sft_data.SFTCollator``) does that, and this class adds four things to ``Trainer``:

* every global batch holds one modality (``RepeatBlockSampler`` grouped by ``data_type``): under
  ZeRO-3 a rank whose micro-batch mixed images and videos would run the vision tower twice while
  another runs it once, and their parameter gathers would deadlock;
* the loss is the token-level cross-entropy on the labelled (assistant) tokens only, computed
  from the last ``L - P + 1`` positions (``logits_to_keep``; P = first labelled column) so the
  prompt's thousands of visual tokens never materialise vocabulary-sized logits; it is summed
  and divided by the labelled-token count of the whole optimizer step when the Trainer provides
  it (``num_items_in_batch``), else averaged over this micro-batch;
* metrics ``data/skipped_media``, ``data/skipped_too_long`` and ``sft/target_tokens``, merged over
  ranks like the GRPO trainer's;
* checkpoints are saved and resumed like GRPO's (``r1v.trainer.checkpoints.AtomicCheckpointMixin``):
  written under ``.tmp-checkpoint-N`` and renamed once complete, and ``resume_from_checkpoint=True``
  takes the newest complete one, so a run killed mid-save never resumes from torn weights.
"""
from __future__ import annotations

import logging
from typing import Optional, Union

import torch
import torch.nn.functional as F
from transformers import AutoProcessor, PreTrainedModel, Trainer

from r1v.sft_data import IGNORE_INDEX, SFTCollator
from r1v.trainer.checkpoints import AtomicCheckpointMixin
from r1v.trainer.utils import prepare_student
from r1v.trainer.utils import MetricStore, RecordDataset, RepeatBlockSampler, gather_object_list, merge_metric_states
from r1v.vision import VisionConfig

logger = logging.getLogger(__name__)


class Qwen2VLSFTTrainer(AtomicCheckpointMixin, Trainer):
    """SFT on Video-R1 CoT records (``process`` + ``solution``) with assistant-only loss.

    model: a checkpoint path / hub id or a loaded model. args: ``r1v.sft.SFTConfig``
    (``TrainingArguments`` + ``max_length``). train_dataset: a list of records (absolute media
    ``path``) or a ``RecordDataset``.
    """

    def __init__(self, model: Union[str, PreTrainedModel], args, train_dataset, processing_class=None,
                 vision_config: Optional[VisionConfig] = None, callbacks=None, optimizers=(None, None),
                 torch_dtype: str = "bfloat16", attn_implementation: str = "sdpa", freeze_vision_tower: bool = False):
        model, model_id = prepare_student(model, torch_dtype, attn_implementation, freeze_vision_tower,
                                          args.activation_checkpointing)
        if processing_class is None:
            processing_class = AutoProcessor.from_pretrained(model_id)
        if not isinstance(train_dataset, torch.utils.data.Dataset):
            train_dataset = RecordDataset(train_dataset)
        collator = SFTCollator(processing_class, vision_config, args.max_length)
        self.vision_config = collator.vision_config
        super().__init__(model=model, args=args, data_collator=collator, train_dataset=train_dataset,
                         processing_class=processing_class, callbacks=callbacks, optimizers=optimizers)
        self.metrics = MetricStore()

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        block = self.args.per_device_train_batch_size * self.accelerator.num_processes * self.args.gradient_accumulation_steps
        groups = [r.get("data_type", "video") for r in dataset.records] if isinstance(dataset, RecordDataset) else None
        return RepeatBlockSampler(len(dataset), block, 1, shuffle=True, seed=self.args.seed, groups=groups)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Cross-entropy of the labelled tokens (see the module docstring for the normalisation)."""
        inputs = dict(inputs)
        stats = inputs.pop("sft_stats", None) or {}
        labels = inputs.pop("labels")
        for key, value in stats.items():
            self.metrics.add(f"data/{key}", float(value))
        labelled = labels != IGNORE_INDEX
        self.metrics.add("sft/target_tokens", float(labelled.sum()))
        cols = labelled.any(dim=0).nonzero()
        first = int(cols[0]) if len(cols) else labels.shape[1] - 1
        keep = labels.shape[1] - first + 1  # positions first-1 .. L-1; the last one predicts nothing
        outputs = model(**inputs, logits_to_keep=keep, use_cache=False)
        logits = outputs.logits[:, :-1, :]
        targets = labels[:, first:]
        # Ignored positions add 0 (and keep the graph whole, so every rank runs the same backward).
        total = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                ignore_index=IGNORE_INDEX, reduction="sum")
        if num_items_in_batch is not None:
            loss = total / torch.clamp(torch.as_tensor(num_items_in_batch, device=total.device), min=1)
            if self.args.average_tokens_across_devices:
                loss = loss * self.accelerator.num_processes  # DDP/ZeRO average the gradients over ranks
        else:
            loss = total / labelled.sum().clamp(min=1)
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: Optional[float] = None) -> None:
        """Add the SFT metrics (averaged over steps and ranks) to the Trainer's logs."""
        states = gather_object_list(self.accelerator, self.metrics.state())
        self.metrics.clear()
        super().log({**logs, **merge_metric_states(states)}, start_time)

