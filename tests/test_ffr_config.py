"""FFRArguments: paper defaults, validation naming the field, mixin behaviour, redaction."""
import dataclasses
import json
import logging

import pytest

from ffr.config import FFRArguments, ffr_config_dict, ffr_field_names, validate_ffr_config


def test_defaults_follow_the_paper():
    cfg = FFRArguments()
    assert cfg.ffr_enable is False  # vanilla GRPO unless switched on
    assert cfg.ffr_patch_tax == 0.3  # App. D.4, Table 8
    assert cfg.ffr_format_weight == 1.0
    assert cfg.ffr_correct_threshold == 1.0  # Eq. 4: R(o, y) = 1
    assert cfg.ffr_use_gt is True and cfg.ffr_visual_context is True
    assert cfg.ffr_extra_visual == "none"


def test_every_field_is_prefixed_defaulted_and_documented():
    for f in dataclasses.fields(FFRArguments):
        assert f.name.startswith(("ffr_", "teacher_")), f.name
        assert f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING, f.name
        assert len(f.metadata.get("help", "")) > 20, f.name
    assert ffr_field_names()[0] == "ffr_enable" and "teacher_cache" in ffr_field_names()


@pytest.mark.parametrize("field, value", [
    ("ffr_patch_tax", -0.1),
    ("ffr_patch_tax", 1.5),
    ("ffr_patch_tax", float("nan")),
    ("ffr_format_weight", -1.0),
    ("ffr_correct_threshold", 0.0),
    ("ffr_correct_threshold", 1.2),
    ("ffr_extra_visual", "crops"),
    ("ffr_extra_visual_max_images", -1),
    ("ffr_extra_visual_max_images", 2.5),
    ("ffr_use_gt", "false"),  # a string from a hand-written YAML is not a bool
    ("teacher_url", "localhost:8000"),
    ("teacher_api_key", ""),
    ("teacher_timeout_s", 0),
    ("teacher_step_deadline_s", -5.0),
    ("teacher_max_concurrency", 0),
    ("teacher_max_retries", -1),
    ("teacher_backoff_s", -0.5),
    ("teacher_breaker_failures", 0),
    ("teacher_breaker_cooldown_s", float("inf")),
    ("teacher_cache", 1),
    ("teacher_max_failed_steps", -1),
    ("teacher_max_failed_steps", 2.0),
    ("teacher_on_failed_steps", "ignore"),
])
def test_bad_values_raise_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"^{field}: "):
        FFRArguments(**{field: value})


def test_cross_field_rules():
    with pytest.raises(ValueError, match="^teacher_url: is required when ffr_enable is true"):
        FFRArguments(ffr_enable=True)
    assert FFRArguments(ffr_enable=True, teacher_url="http://127.0.0.1:8000").ffr_enable
    with pytest.raises(ValueError, match="^ffr_extra_visual_max_images: must be >= 1"):
        FFRArguments(ffr_extra_visual="dense_frames", ffr_extra_visual_max_images=0)
    with pytest.raises(ValueError, match="^ffr_extra_visual: must be 'none' when ffr_visual_context is false"):
        FFRArguments(ffr_extra_visual="region_crops", ffr_visual_context=False)
    assert FFRArguments(ffr_extra_visual="region_crops").ffr_extra_visual_max_images == 4


def test_short_step_deadline_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="ffr.config"):
        FFRArguments(ffr_enable=True, teacher_url="http://t:1", teacher_timeout_s=60, teacher_step_deadline_s=30)
    assert "teacher_step_deadline_s" in caplog.text


def test_validate_after_mutation():
    cfg = FFRArguments()
    cfg.ffr_patch_tax = 2.0
    with pytest.raises(ValueError, match="^ffr_patch_tax: must lie in"):
        validate_ffr_config(cfg)


@dataclasses.dataclass
class _TrainerArgsStandIn:
    """Stands in for transformers.TrainingArguments: defaulted fields and its own __post_init__."""

    output_dir: str = "out"
    learning_rate: float = 5e-6

    def __post_init__(self):
        if self.learning_rate <= 0:
            raise ValueError("learning_rate: must be positive")
        self.post_init_ran = True


@dataclasses.dataclass
class _MixedConfig(FFRArguments, _TrainerArgsStandIn):
    num_generations: int = 8


def test_mixin_by_multiple_inheritance_chains_post_init():
    cfg = _MixedConfig(ffr_patch_tax=0.1, learning_rate=1e-5, num_generations=4)
    assert (cfg.ffr_patch_tax, cfg.learning_rate, cfg.num_generations) == (0.1, 1e-5, 4)
    assert cfg.post_init_ran  # the parent's __post_init__ still runs
    with pytest.raises(ValueError, match="^ffr_patch_tax"):
        _MixedConfig(ffr_patch_tax=5.0)
    with pytest.raises(ValueError, match="^learning_rate"):
        _MixedConfig(learning_rate=0.0)


def test_config_dict_redacts_the_api_key():
    cfg = FFRArguments(ffr_enable=True, teacher_url="https://t.example", teacher_api_key="sk-secret")
    out = ffr_config_dict(cfg)
    assert list(out) == ffr_field_names()
    assert out["teacher_api_key"] == "***" and out["teacher_url"] == "https://t.example"
    assert "sk-secret" not in json.dumps(out)
    assert "sk-secret" not in repr(cfg)
    assert ffr_config_dict(FFRArguments())["teacher_api_key"] is None
