"""Launch scripts assemble the right torchrun command (checked with a stand-in interpreter)."""
import os
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_script(tmp_path, script, *args, **env):
    fake = tmp_path / "fakepy"
    record = tmp_path / "argv.txt"
    fake.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$@" > "{record}"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    full_env = {**os.environ, "PYTHON": str(fake), "OUTPUT_DIR": str(tmp_path / "run"), "CHECK_TEACHER": "0", **env}
    subprocess.run(["bash", str(ROOT / "local_scripts" / script), *args], env=full_env, check=True,
                   capture_output=True, text=True, timeout=60)
    return record.read_text().splitlines()


def flag(argv, name):
    return argv[argv.index(name) + 1]


def test_grpo_script_launches_r1v_with_paper_config(tmp_path):
    argv = run_script(tmp_path, "train_grpo_video.sh", "--max_steps", "5", NPROC_PER_NODE="2")
    assert argv[:3] == ["-m", "torch.distributed.run", "--nproc_per_node"] and argv[3] == "2"
    assert flag(argv, "-m") == "torch.distributed.run" and "r1v.grpo" in argv
    assert flag(argv, "--config").endswith("local_scripts/configs/grpo_paper.yaml")
    assert flag(argv, "--deepspeed").endswith("local_scripts/zero3.json")
    assert flag(argv, "--model_name_or_path") == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert argv[-2:] == ["--max_steps", "5"]  # passthrough comes last, so it wins
    assert (tmp_path / "run" / "train.log").exists()


@pytest.mark.parametrize("script, env, expect", [
    ("train_ffr_video_r1_sft.sh", {}, {"--ffr_patch_tax": "0.3"}),
    ("train_ffr_videorft_sft.sh", {}, {"--model_name_or_path": "QiWang98/VideoRFT-SFT"}),
    ("train_ffr_no_gt.sh", {}, {"--ffr_use_gt": "false"}),
    ("train_ffr_no_visual_context.sh", {}, {"--ffr_visual_context": "false"}),
    ("train_ffr_patch_tax.sh", {"PATCH_TAX": "0.7"}, {"--ffr_patch_tax": "0.7"}),
])
def test_ffr_scripts_set_their_row(tmp_path, script, env, expect):
    argv = run_script(tmp_path, script, "--seed", "1", TEACHER_URL="http://127.0.0.1:9", **env)
    assert "ffr.train" in argv and flag(argv, "--ffr_enable") == "true"
    assert flag(argv, "--teacher_url") == "http://127.0.0.1:9"
    for name, value in expect.items():
        assert flag(argv, name) == value
    assert argv[-2:] == ["--seed", "1"]


@pytest.mark.parametrize("script, model, out_name", [
    ("traces_qwen3_32b.sh", "Qwen/Qwen3-VL-32B-Instruct", "qwen3_32b.jsonl"),
    ("traces_qwen3_235b.sh", "Qwen/Qwen3-VL-235B-A22B-Instruct", "qwen3_235b.jsonl"),
])
def test_teacher_trace_scripts_call_the_trace_cli(tmp_path, script, model, out_name):
    out = tmp_path / "sft" / out_name
    argv = run_script(tmp_path, script, "--limit", "3", BASE_URL="http://127.0.0.1:9/v1", OUT=str(out),
                      API_KEY_FILE=str(tmp_path / "key"))
    assert argv[:2] == ["-m", "r1v.teacher_traces"]
    assert flag(argv, "--model") == model and flag(argv, "--base-url") == "http://127.0.0.1:9/v1"
    assert flag(argv, "--out") == str(out) and flag(argv, "--max-frames") == "16"
    assert flag(argv, "--data").endswith("data/mix4k.jsonl")
    assert flag(argv, "--api-key-file") == str(tmp_path / "key")
    assert argv[-2:] == ["--limit", "3"] and out.parent.is_dir()


def test_sft_script_launches_r1v_sft_with_its_config(tmp_path):
    argv = run_script(tmp_path, "sft_video_r1.sh", "--max_steps", "5", NPROC_PER_NODE="2")
    assert argv[:4] == ["-m", "torch.distributed.run", "--nproc_per_node", "2"] and "r1v.sft" in argv
    assert flag(argv, "--config").endswith("local_scripts/configs/sft_video_r1.yaml")
    assert flag(argv, "--deepspeed").endswith("local_scripts/zero2.json")
    assert flag(argv, "--model_name_or_path") == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert flag(argv, "--dataset_name").endswith("data/Video-R1/Video-R1-COT-165k.json")
    assert argv[-2:] == ["--max_steps", "5"]
    # The SFT-on-teacher rows: same script, the trace file and Video-R1-SFT, ZeRO-3 on request.
    argv = run_script(tmp_path, "sft_video_r1.sh", DATASET="/d/qwen3_32b.jsonl", MODEL_PATH="Video-R1/SFT",
                      DS_CONFIG="/x/zero3.json")
    assert flag(argv, "--dataset_name") == "/d/qwen3_32b.jsonl" and flag(argv, "--model_name_or_path") == "Video-R1/SFT"
    assert flag(argv, "--deepspeed") == "/x/zero3.json"


def test_tgrpo_script_launches_r1v_tgrpo_with_paper_config(tmp_path):
    argv = run_script(tmp_path, "train_tgrpo_video.sh", "--len_control", "false")
    assert "r1v.tgrpo" in argv and flag(argv, "--config").endswith("local_scripts/configs/grpo_paper.yaml")
    assert flag(argv, "--deepspeed").endswith("local_scripts/zero3.json")
    assert flag(argv, "--model_name_or_path") == "Video-R1/Qwen2.5-VL-7B-COT-SFT"
    assert flag(argv, "--temporal") == "true"
    assert argv[-2:] == ["--len_control", "false"]  # passthrough comes last, so it wins


def test_luffy_script_launches_r1v_luffy_with_its_traces(tmp_path):
    argv = run_script(tmp_path, "train_luffy.sh", "--luffy_advantage", "split", TRACES="/d/traces.jsonl")
    assert "r1v.luffy" in argv and flag(argv, "--config").endswith("local_scripts/configs/grpo_paper.yaml")
    assert flag(argv, "--model_name_or_path") == "Video-R1/Qwen2.5-VL-7B-COT-SFT"
    assert flag(argv, "--luffy_traces") == "/d/traces.jsonl" and flag(argv, "--luffy_num_traces") == "1"
    assert flag(argv, "--beta") == "0.0"  # LUFFY runs without KL; the shared config sets 0.04
    assert argv[-2:] == ["--luffy_advantage", "split"]


def test_replay_script_launches_r1v_replay_with_repos_settings(tmp_path):
    argv = run_script(tmp_path, "train_replay.sh", "--replay_strategy", "recent_k")
    assert "r1v.replay" in argv and flag(argv, "--config").endswith("local_scripts/configs/grpo_paper.yaml")
    assert flag(argv, "--model_name_or_path") == "Video-R1/Qwen2.5-VL-7B-COT-SFT"
    for name, value in {"--replay_k": "8", "--replay_min_cache": "16", "--replay_max_cache": "16",
                        "--replay_adv_norm": "split", "--replay_coef": "1.0", "--num_train_epochs": "3"}.items():
        assert flag(argv, name) == value
    assert argv[-2:] == ["--replay_strategy", "recent_k"]  # passthrough comes last, so it wins
    from r1v.replay import parse_args

    i = argv.index("--config")
    configs = parse_args(argv[i:] + ["--bf16", "false", "--use_cpu", "true"])  # the launched flags parse
    assert configs[1].replay_strategy == "recent_k" and configs[1].num_train_epochs == 3


@pytest.mark.parametrize("module, config", [("r1v.sft", "sft_video_r1.yaml"), ("r1v.tgrpo", "grpo_paper.yaml"),
                                            ("r1v.luffy", "grpo_paper.yaml"), ("r1v.replay", "grpo_paper.yaml"),
                                            ("r1v.judge_grpo", "grpo_paper.yaml")])
def test_script_configs_parse_into_their_entry_points(tmp_path, module, config):
    """Every key of the YAML a script passes is a field of that entry point (a typo would fail the launch)."""
    import importlib

    entry = importlib.import_module(module)
    configs = entry.parse_args(["--config", str(ROOT / "local_scripts" / "configs" / config),
                                "--model_name_or_path", "m", "--output_dir", str(tmp_path), "--bf16", "false",
                                "--use_cpu", "true"])
    assert configs[1].max_grad_norm == 5.0 and configs[0].max_frames == 16


def test_majority_vote_script_launches_grpo_with_the_vote_reward(tmp_path):
    argv = run_script(tmp_path, "train_majority_vote.sh", "--max_steps", "5")
    assert "r1v.grpo" in argv and flag(argv, "--config").endswith("local_scripts/configs/grpo_paper.yaml")
    assert flag(argv, "--model_name_or_path") == "Video-R1/Qwen2.5-VL-7B-COT-SFT"
    i = argv.index("--reward_funcs")
    assert argv[i + 1:i + 3] == ["majority_vote", "format"] and argv[-2:] == ["--max_steps", "5"]


def test_judge_script_passes_the_endpoint_and_needs_it(tmp_path):
    argv = run_script(tmp_path, "train_judge_reward.sh", "--judge_num_frames", "4", JUDGE_BASE_URL="http://127.0.0.1:9/v1",
                      JUDGE_MODEL="judge-m", JUDGE_API_KEY_FILE=str(tmp_path / "judge.key"))
    assert "r1v.judge_grpo" in argv and flag(argv, "--judge_base_url") == "http://127.0.0.1:9/v1"
    assert flag(argv, "--judge_model") == "judge-m" and flag(argv, "--judge_api_key_file") == str(tmp_path / "judge.key")
    i = argv.index("--reward_funcs")
    assert argv[i + 1:i + 3] == ["judge", "format"] and argv[-2:] == ["--judge_num_frames", "4"]
    argv = run_script(tmp_path, "train_judge_reward.sh", JUDGE_BASE_URL="http://h/v1", JUDGE_MODEL="m")
    assert "--judge_api_key_file" not in argv  # no key file: no flag (a local endpoint)
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUDGE_")}
    done = subprocess.run(["bash", str(ROOT / "local_scripts" / "train_judge_reward.sh")], env={**env, "PYTHON": "true"},
                          capture_output=True, text=True, timeout=30)
    assert done.returncode != 0 and "JUDGE_BASE_URL" in done.stderr


@pytest.mark.parametrize("teacher, expect", [
    ("annotation", {"--backend": "annotation"}),
    ("glm45v_api", {"--backend": "openai", "--protocol": "text", "--box-coords": "norm1000", "--model": "glm-4.5v"}),
    ("gpt4o", {"--backend": "openai", "--protocol": "tools", "--json-mode": "json_schema"}),
    ("vllm", {"--backend": "openai", "--base-url": "http://127.0.0.1:8000/v1", "--protocol": "tools"}),
])
def test_serve_teacher_presets(tmp_path, teacher, expect):
    key = tmp_path / "upstream.key"
    key.write_text("k")
    argv = run_script(tmp_path, "serve_teacher.sh", "--max-turns", "5", TEACHER=teacher,
                      TEACHER_ALLOWED_ROOT=str(tmp_path), TEACHER_UPSTREAM_KEY_FILE=str(key))
    assert argv[:2] == ["-m", "ffr.teacher.service"] and flag(argv, "--allowed-root") == str(tmp_path)
    for name, value in expect.items():
        assert flag(argv, name) == value
    # the model endpoint's key, under the name that cannot be mistaken for the trainer's --teacher_api_key_file
    assert flag(argv, "--upstream-api-key-file") == str(key) and "--teacher-api-key-file" not in argv
    assert argv[-2:] == ["--max-turns", "5"]


def test_serve_teacher_refuses_an_api_preset_without_a_key_and_unknown_presets(tmp_path):
    for teacher in ("glm45v_api", "nonsense"):
        env = {**os.environ, "PYTHON": "true", "TEACHER": teacher, "TEACHER_ALLOWED_ROOT": str(tmp_path)}
        env.pop("TEACHER_UPSTREAM_KEY_FILE", None)
        done = subprocess.run(["bash", str(ROOT / "local_scripts" / "serve_teacher.sh")], env=env,
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 2 and teacher in done.stderr


def test_toy_replication_script_runs_the_protocol(tmp_path):
    argv = run_script(tmp_path, "toy_replication.sh", "--seeds", "0", "1", "2", "3", TOY_OUT=str(tmp_path / "toy"))
    assert argv[:2] == ["-m", "r1v.toy.replicate"]
    assert flag(argv, "--protocol").endswith("experiments/toy/protocol_v2.yaml")
    assert flag(argv, "--out") == str(tmp_path / "toy") and flag(argv, "--cache").endswith(".cache/toy")
    assert flag(argv, "--warm-student").endswith("experiments/toy/v2/warm_student")
    assert (ROOT / "experiments" / "toy" / "v2" / "warm_student" / "model.safetensors").is_file()
    assert argv[-5:] == ["--seeds", "0", "1", "2", "3"]
    rebuilt = run_script(tmp_path, "toy_replication.sh", WARM_STUDENT="")
    assert "--warm-student" not in rebuilt
    assert flag(rebuilt, "--out").endswith("runs/toy_v2")  # the default folder is named after the protocol
    v4 = run_script(tmp_path, "toy_replication.sh", PROTOCOL=str(ROOT / "experiments" / "toy" / "protocol_v4.yaml"))
    assert flag(v4, "--out").endswith("runs/toy_v4") and flag(v4, "--protocol").endswith("protocol_v4.yaml")
