"""The speed benchmark's quick mode with the PyTorch peer: `make bench` runs it on the repo's
split (the suite's own test, tests/test_benchmark.py, runs it without the peer)."""

import json
import math
import sys
from pathlib import Path

from tests.conftest import REPO, run


def test_quick_benchmark_times_the_pytorch_peer_too(tmp_path: Path) -> None:
    output = tmp_path / "train_speed.json"
    command = [sys.executable, "-m", "benchmarks.train_speed", "--quick", "--timed-epochs", "2"]
    result = run(command + ["--variants", "small", "--output", str(output)], cwd=REPO)
    assert "| small |" in result.stdout
    [small] = json.loads(output.read_text())["rows"]
    for key in ("torch_seconds_per_epoch", "torch_train_seconds_per_epoch", "torch_ratio"):
        assert math.isfinite(small[key]) and small[key] > 0, (key, small)
    assert 0 < small["torch_train_seconds_per_epoch"] < small["torch_seconds_per_epoch"]
    ratio = small["seconds_per_epoch"] / small["torch_seconds_per_epoch"]
    assert math.isclose(small["torch_ratio"], ratio, rel_tol=0.01)
