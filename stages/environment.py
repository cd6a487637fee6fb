"""Where a result came from: the CPU, its instruction sets, threads and library versions.

The same params give bit-identical results only on the same kind of machine: oneDNN and Eigen
pick their kernels by instruction set, cache sizes and thread count.
"""

import os
import platform
import re
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from tensorflow.python.framework.config import is_op_determinism_enabled
from tensorflow.python.util._pywrap_util_port import IsMklEnabled

# The instruction sets that decide which matmul and element-wise kernels run.
CPU_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")


def cpu() -> tuple[str, list[str]]:
    """The CPU's model name and which of CPU_FLAGS it has, from /proc/cpuinfo where there is one."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown", []
    model = re.search(r"^model name\s*:\s*(.+)$", info, re.MULTILINE)
    flags = re.search(r"^flags\s*:\s*(.+)$", info, re.MULTILINE)
    present = set(flags[1].split()) if flags else set()
    return (model[1].strip() if model else "unknown"), [f for f in CPU_FLAGS if f in present]


def environment(threads: int) -> dict[str, Any]:
    """The machine and software that ran this process; `threads` is train.threads (0: all)."""
    model, flags = cpu()
    cores = len(os.sched_getaffinity(0))
    return {
        "cpu": model,
        "cpu_flags": flags,
        "cores": cores,
        "threads": threads or cores,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "onednn": bool(IsMklEnabled()),
        "op_determinism": bool(is_op_determinism_enabled()),
    }
