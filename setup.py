"""Installable package for the FFR / R1-V video GRPO codebase.

All third-party versions are pinned here, in one place. Extras:
  train  - the multi-GPU run stack (DeepSpeed, wandb, decord).
  flash  - FlashAttention-2 (needs a CUDA toolchain; GPU nodes only).
  test   - the CPU test stack (pytest; DeepSpeed for the 2-process ZeRO-3 tests).
`requirements.txt` installs the GPU run stack through these extras.
"""
from setuptools import setup

CORE = [
    "torch==2.14.1",
    "torchvision==0.29.1",
    "transformers==5.24.0",
    "accelerate==1.15.0",
    "tokenizers==0.23.3",
    "numpy==2.4.6",
    "pillow==12.1.0",
    "pyyaml==6.0.4",
    "av==18.1.0",
    "qwen-vl-utils==0.0.14",
    "rouge-score==0.1.2",
    "jiwer==4.0.0",
    "rapidfuzz==3.14.6",
    "pydantic==2.14.4",
    "requests==2.34.2",
    "fastapi==0.165.0",
    "uvicorn==0.54.0",
    "tqdm==4.70.1",
    "matplotlib==3.11.2",
    "openai==3.51.0",
]
DEEPSPEED = "deepspeed==0.19.8"
EXTRAS = {
    "train": [DEEPSPEED, "wandb==0.31.0", "decord==0.6.0"],
    "flash": ["flash-attn==2.8.3"],
    # rich: `transformers serve` (the real OpenAI-compatible server the teacher tests start) needs it.
    "test": [DEEPSPEED, "pytest==9.2.0", "pytest-timeout==2.4.0", "rich==15.0.0"],
}

setup(
    name="ffr-video-rl",
    version="0.1.0",
    description="FFR (Find, Fix, Reason): teacher-patched GRPO for video reasoning, on an R1-V trainer",
    python_requires=">=3.10",
    package_dir={"": "src", "eval": "eval"},
    packages=["r1v", "r1v.trainer", "r1v.prepare", "r1v.toy", "ffr", "ffr.teacher", "ffr.inspect", "eval",
              "eval.benchmarks"],
    install_requires=CORE,
    extras_require=EXTRAS,
)
