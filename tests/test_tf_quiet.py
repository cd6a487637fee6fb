"""stages.tf_quiet, which the stages import first: oneDNN on every CPU unless the user says."""

import sys

import pytest

from tests.conftest import REPO, run

pytestmark = pytest.mark.slow  # real processes: runs after the unit-level tests

RECORDED = "import stages.tf_quiet; from stages.environment import environment as e; print(e(0))"


def recorded_onednn(setting: str | None) -> bool:
    """What a stage's environment record says of oneDNN, with TF_ENABLE_ONEDNN_OPTS as given
    (None: unset, as the suite's processes start)."""
    env = {} if setting is None else {"TF_ENABLE_ONEDNN_OPTS": setting}
    output = run([sys.executable, "-c", RECORDED], cwd=REPO, env=env).stdout
    return "'onednn': True" in output


def test_the_stages_turn_onednn_on_on_any_cpu_unless_the_user_turned_it_off() -> None:
    assert recorded_onednn(None) is True  # whatever TensorFlow's own default on this CPU
    assert recorded_onednn("0") is False  # the user's own setting wins


def test_tf_quiet_sets_onednn_on_before_tensorflow_loads() -> None:
    """Where TensorFlow turns oneDNN on by itself, the record cannot tell; the variable can."""
    check = "import os, sys, stages.tf_quiet; print(os.environ['TF_ENABLE_ONEDNN_OPTS'])"
    assert run([sys.executable, "-c", check], cwd=REPO).stdout.split()[-1] == "1"
