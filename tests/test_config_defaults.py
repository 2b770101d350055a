"""A bare ``python -m r1v.grpo`` (no --config) is the paper's run (App. D.4), and bad GRPO
hyperparameters are refused with an error naming the field."""
import math

import pytest

from ffr.train import FFRGRPOConfig
from r1v.config import GRPOConfig, GRPOScriptArguments, ModelConfig, parse_config

TYPES = (GRPOScriptArguments, GRPOConfig, ModelConfig)

# Paper App. D.4.
PAPER = {"learning_rate": 5e-6, "weight_decay": 0.01, "per_device_train_batch_size": 1,
         "gradient_accumulation_steps": 1, "max_grad_norm": 5.0, "num_train_epochs": 1.0, "temperature": 1.0,
         "top_p": 0.95, "beta": 0.04, "num_generations": 8, "max_completion_length": 1024,
         "max_prompt_length": 16384}


@pytest.mark.parametrize("config_type", [GRPOConfig, FFRGRPOConfig])
def test_bare_run_uses_the_paper_values(tmp_path, config_type):
    _, train, _ = parse_config((GRPOScriptArguments, config_type, ModelConfig), ["--output_dir", str(tmp_path)])
    assert {k: getattr(train, k) for k in PAPER} == PAPER
    assert str(train.lr_scheduler_type.value) == "cosine"
    assert (train.loss_type, train.advantage_scope, train.epsilon, train.epsilon_high) == ("grpo", "group", 0.2, 0.2)


def test_bf16_is_on_where_supported_and_off_on_cpu(tmp_path, monkeypatch):
    import r1v.config as config

    monkeypatch.setattr(config, "is_torch_bf16_gpu_available", lambda: False)
    assert parse_config(TYPES, ["--output_dir", str(tmp_path)])[1].bf16 is False
    assert parse_config(TYPES, ["--output_dir", str(tmp_path), "--use_cpu", "true"])[1].bf16 is False
    # Explicit values always win: CPU bf16 on request, --bf16 alone meaning true.
    assert parse_config(TYPES, ["--output_dir", str(tmp_path), "--use_cpu", "true", "--bf16"])[1].bf16 is True
    monkeypatch.setattr(config, "is_torch_bf16_gpu_available", lambda: True)
    assert GRPOConfig(output_dir=str(tmp_path), use_cpu=True).bf16 is False
    assert GRPOConfig(output_dir=str(tmp_path), use_cpu=True, fp16=False).bf16 is False
    assert GRPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=True).bf16 is True


def test_bf16_default_resolves_true_on_a_bf16_gpu(tmp_path, monkeypatch):
    import transformers.training_args as targs

    import r1v.config as config

    # Pretend a bf16-capable accelerator (TrainingArguments checks the same helper).
    monkeypatch.setattr(config, "is_torch_bf16_gpu_available", lambda: True)
    monkeypatch.setattr(targs, "is_torch_bf16_gpu_available", lambda: True)
    assert GRPOConfig(output_dir=str(tmp_path)).bf16 is True
    assert GRPOConfig(output_dir=str(tmp_path), fp16=False, bf16=False).bf16 is False


@pytest.mark.parametrize("field, value", [
    ("beta", -0.01), ("beta", math.nan),
    ("epsilon", 0.0), ("epsilon", -0.2),
    ("epsilon_high", 0.1),  # below epsilon = 0.2
    ("temperature", 0.0), ("temperature", -1.0),
    ("top_p", 0.0), ("top_p", 1.5), ("top_p", -0.1),
    ("num_generations", 1), ("num_generations", 0),
    ("max_completion_length", 0),
    ("loss_type", "sum"), ("advantage_scope", "world"),
])
def test_bad_hyperparameters_are_rejected_naming_the_field(tmp_path, field, value):
    with pytest.raises(ValueError, match=rf"^{field}: "):
        GRPOConfig(output_dir=str(tmp_path), use_cpu=True, **{field: value})
    with pytest.raises(ValueError, match=rf"^{field}: "):
        parse_config(TYPES, ["--output_dir", str(tmp_path), "--use_cpu", "true", f"--{field}", str(value)])


@pytest.mark.parametrize("kw", [dict(beta=0.0), dict(top_p=1.0), dict(epsilon=0.2, epsilon_high=0.28),
                                dict(num_generations=2), dict(temperature=0.01), dict(loss_type="dr_grpo"),
                                dict(advantage_scope="batch"), dict(loss_type="bnpo")])
def test_boundary_values_are_accepted(tmp_path, kw):
    cfg = GRPOConfig(output_dir=str(tmp_path), use_cpu=True, **kw)
    assert all(getattr(cfg, k) == v for k, v in kw.items())
