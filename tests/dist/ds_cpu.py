"""Shared set-up of the 2-process DeepSpeed ZeRO-3 CPU workers (imported first by each worker).

Importing this module makes torch single-threaded and stops DeepSpeed from JIT-building its
shared-memory comm op (ZeRO-3 never uses it; the build takes 1-2 minutes on a fresh machine).
"""
import importlib

import torch

torch.set_num_threads(1)
importlib.import_module("deepspeed.comm.torch").build_shm_op = lambda: None

DS_CONFIG = {
    "zero_optimization": {
        "stage": 3,
        # A hidden-64 model would otherwise keep every parameter whole: no per-layer gathers, and
        # an uncoordinated generate would finish cleanly (a hang test would pass falsely).
        "stage3_param_persistence_threshold": 0,
        "stage3_prefetch_bucket_size": 0,
        "reduce_bucket_size": 4096,
    },
    "train_micro_batch_size_per_gpu": "auto",
    "gradient_accumulation_steps": "auto",
    "gradient_clipping": "auto",
    "bf16": {"enabled": False},
}


def finish() -> None:
    """End a worker whose results are written: every rank waits for the others, then leaves at once.

    The interpreter's own teardown can abort a rank after a successful run: C++ threads left by the
    gloo process group and DeepSpeed meet their destructors ("terminate called without an active
    exception", exit -6), failing the test at random; it was seen with and without
    ``destroy_process_group``. Nothing is left to do after the barrier, so the process exits
    without that teardown.
    """
    import os
    import sys

    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
