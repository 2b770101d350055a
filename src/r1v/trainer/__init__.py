"""GRPO trainer for Qwen-VL video students (R1-V semantics): ``r1v.trainer.grpo_trainer.Qwen2VLGRPOTrainer``."""
