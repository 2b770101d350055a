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
