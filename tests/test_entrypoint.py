"""Config parsing (YAML + CLI overrides) and the ``python -m r1v.grpo`` entry point."""
import json

import pytest

from r1v.config import GRPOConfig, GRPOScriptArguments, ModelConfig, parse_config, write_run_config

TYPES = (GRPOScriptArguments, GRPOConfig, ModelConfig)


def test_yaml_then_cli_override(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("num_generations: 6\nbeta: 0.1\nreward_funcs: [accuracy]\nmax_frames: 8\nuse_cpu: true\n")
    script, train, model = parse_config(TYPES, ["--config", str(cfg), "--output_dir", str(tmp_path / "o"),
                                                "--beta", "0.0", "--model_name_or_path", "m"])
    assert train.num_generations == 6 and train.beta == 0.0  # CLI wins over the YAML
    assert script.reward_funcs == ["accuracy"] and script.max_frames == 8
    assert model.model_name_or_path == "m" and train.epsilon_high == train.epsilon


def test_unknown_key_is_an_error(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("num_generation: 6\n")  # typo
    with pytest.raises(ValueError, match="num_generation"):
        parse_config(TYPES, ["--config", str(cfg), "--output_dir", str(tmp_path)])


@pytest.mark.parametrize("flag, value", [("--loss_type", "nope"), ("--advantage_scope", "world"),
                                         ("--num_generations", "1"), ("--num_iterations", "0")])
def test_invalid_values_are_rejected(tmp_path, flag, value):
    with pytest.raises(ValueError):
        parse_config(TYPES, ["--output_dir", str(tmp_path), flag, value, "--use_cpu", "true"])


def test_run_config_records_fields_and_commit(tmp_path):
    configs = parse_config(TYPES, ["--output_dir", str(tmp_path), "--use_cpu", "true", "--beta", "0.02"])
    path = write_run_config(str(tmp_path), configs)
    data = json.loads(path.read_text())
    assert data["GRPOConfig"]["beta"] == 0.02 and data["GRPOScriptArguments"]["fps"] == 2.0
    assert "git_commit" in data  # None outside a git checkout, a sha (+dirty) inside


def test_main_trains_and_writes_outputs(tiny_qwen25_ckpt, synthetic_dir, tmp_path):
    from r1v.grpo import main

    out = tmp_path / "run"
    main(["--config", "local_scripts/configs/demo_tiny.yaml", "--model_name_or_path", tiny_qwen25_ckpt,
          "--dataset_name", str(synthetic_dir / "train.jsonl"), "--output_dir", str(out), "--max_steps", "2",
          "--save_steps", "2", "--max_completion_length", "8"])
    resolved = json.loads((out / "run_config.json").read_text())
    assert resolved["GRPOConfig"]["max_steps"] == 2 and resolved["ModelConfig"]["model_name_or_path"] == tiny_qwen25_ckpt
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2]
    assert (out / "checkpoint-2").is_dir() and (out / "model.safetensors").exists()
    assert (out / "preprocessor_config.json").exists() or (out / "processor_config.json").exists()


def test_gradient_checkpointing_defaults_to_non_reentrant(tmp_path):
    _, train, _ = parse_config(TYPES, ["--output_dir", str(tmp_path), "--use_cpu", "true",
                                       "--activation_checkpointing", "true"])
    assert train.activation_checkpointing_kwargs == {"use_reentrant": False}
    assert train.gradient_checkpointing  # the deprecated alias mirrors the new name


# ---------------------------------------------------------------------------------------------
# Command-line papercuts and secrets in run_config.json
# ---------------------------------------------------------------------------------------------
def test_config_flag_forms(tmp_path, capsys):
    from r1v.grpo import main

    cfg = tmp_path / "run.yaml"
    cfg.write_text("num_generations: 6\nuse_cpu: true\n")
    _, train, _ = parse_config(TYPES, [f"--config={cfg}", "--output_dir", str(tmp_path)])
    assert train.num_generations == 6
    for argv, match in [(["--output_dir", "o", "--config"], "--config needs a YAML file path"),
                        (["--config", "--output_dir", "o"], "--config needs a YAML file path"),
                        (["--config="], "--config= needs a YAML file path"),
                        (["--config", str(cfg), "--config", str(cfg)], "more than once"),
                        (["--config", str(tmp_path / "nope.yaml")], "nope.yaml does not exist")]:
        with pytest.raises((ValueError, FileNotFoundError), match=match):
            parse_config(TYPES, argv)
    with pytest.raises(SystemExit) as exc:  # the CLI says it in one line, without a traceback
        main(["--output_dir", "o", "--config"])
    assert exc.value.code == 2
    assert "r1v.grpo: error: --config needs a YAML file path" in capsys.readouterr().err


def test_yaml_null(tmp_path, caplog):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("max_prompt_length: null\nepsilon_high: null\nreward_weights: ~\ndata_root:\nbeta: null\n"
                   "use_cpu: true\n")
    script, train, _ = parse_config(TYPES, ["--config", str(cfg), "--output_dir", str(tmp_path)])
    assert train.max_prompt_length is None  # Optional field: None (no limit), not its default 16384
    assert train.epsilon_high == train.epsilon and script.reward_weights is None and script.data_root is None
    assert train.beta == 0.04 and "beta is null but cannot be None" in caplog.text  # keeps the default
    _, train, _ = parse_config(TYPES, ["--config", str(cfg), "--output_dir", str(tmp_path), "--max_prompt_length", "9"])
    assert train.max_prompt_length == 9  # the CLI still wins over a YAML null
    cfg.write_text("max_prompt_lenght: null\n")
    with pytest.raises(ValueError, match="unknown key 'max_prompt_lenght'"):
        parse_config(TYPES, ["--config", str(cfg), "--output_dir", str(tmp_path)])


@pytest.mark.parametrize("flags, match", [(["--max_steps", "0"], "max_steps: must be a positive number"),
                                          (["--max_steps", "-2"], "max_steps: must be a positive number"),
                                          (["--num_train_epochs", "0"], "num_train_epochs: must be > 0"),
                                          (["--skipped_prompts_max_frac", "1.5"], "skipped_prompts_max_frac: must lie in"),
                                          (["--skipped_prompts_patience", "0"], "skipped_prompts_patience: must be >= 1")])
def test_runs_that_train_nothing_are_refused(tmp_path, flags, match):
    with pytest.raises(ValueError, match=match):
        parse_config(TYPES, ["--output_dir", str(tmp_path), "--use_cpu", "true", *flags])


SECRET = "sk-very-secret-value"


@pytest.mark.parametrize("spelling", [["--teacher_api_key", SECRET], ["--teacher-api-key", SECRET],
                                      [f"--teacher_api_key={SECRET}"], [f"--teacher-api-key={SECRET}"]])
def test_run_config_never_holds_the_teacher_key(tmp_path, monkeypatch, spelling):
    from ffr.train import FFRGRPOConfig, redact_argv

    types = (GRPOScriptArguments, FFRGRPOConfig, ModelConfig)
    argv = ["--output_dir", str(tmp_path), "--use_cpu", "true", *spelling, "--teacher_url", "http://h:1"]
    configs = parse_config(types, argv)
    assert configs[1].teacher_api_key == SECRET  # every spelling is accepted by the parser
    assert SECRET not in " ".join(redact_argv(["prog", *argv]))
    monkeypatch.setattr("sys.argv", ["ffr.train", *argv])
    text = write_run_config(str(tmp_path), configs).read_text()  # the key is still in the config object here
    assert SECRET not in text
    data = json.loads(text)
    assert data["FFRGRPOConfig"]["teacher_api_key"] == "***" and "***" in " ".join(data["argv"])


HUB = "hf_hub-secret-value"


@pytest.mark.parametrize("entry", ["r1v.grpo", "r1v.tgrpo", "r1v.luffy", "r1v.sft", "ffr.train"])
@pytest.mark.parametrize("spelling", [["--hub_token", HUB], ["--hub-token", HUB], [f"--hub_token={HUB}"],
                                      [f"--hub-token={HUB}"]])
def test_run_config_never_holds_any_secret(tmp_path, monkeypatch, entry, spelling):
    """Every entry point redacts every secret field (hub_token too), in the fields and in argv."""
    import importlib

    from r1v.trainer.tgrpo import TGRPOConfig

    types = {"r1v.grpo": TYPES, "r1v.tgrpo": (GRPOScriptArguments, TGRPOConfig, ModelConfig)}
    argv = ["--model_name_or_path", "m", "--output_dir", str(tmp_path), "--use_cpu", "true", *spelling]
    monkeypatch.setattr("sys.argv", [entry, *argv])
    if entry in ("r1v.sft", "r1v.luffy"):
        configs = importlib.import_module(entry).parse_args(argv)
    elif entry == "ffr.train":
        from ffr.train import FFRGRPOConfig
        configs = parse_config((GRPOScriptArguments, FFRGRPOConfig, ModelConfig), argv)
    else:
        configs = parse_config(types[entry], argv)
    assert configs[1].hub_token == HUB
    text = write_run_config(str(tmp_path), configs).read_text()
    assert HUB not in text
    data = json.loads(text)
    assert data[type(configs[1]).__name__]["hub_token"] == "***" and "***" in " ".join(data["argv"])


def test_parse_cli_scrubs_sys_argv_for_trackers(tmp_path, monkeypatch):
    from r1v import tgrpo

    argv = ["--model_name_or_path", "m", "--output_dir", str(tmp_path), "--use_cpu", "true", "--hub_token", HUB]
    monkeypatch.setattr("sys.argv", ["r1v.tgrpo", *argv])
    tgrpo.parse_args(argv)
    import sys
    assert HUB not in " ".join(sys.argv) and sys.argv[-1] == "***"


@pytest.mark.parametrize("name, secret", [("hub_token", True), ("teacher_api_key", True), ("--judge-api-key", True),
                                          ("wandb_secret", True), ("db_password", True),
                                          ("teacher_api_key_file", False), ("max_tokens", False),
                                          ("len_control_max_tokens", False), ("hub_model_id", False),
                                          ("output_dir", False)])
def test_secret_field_rule(name, secret):
    from r1v.config import is_secret_field

    assert is_secret_field(name) is secret
