"""Mutation check: break one behaviour at a time in a scratch copy; do the tests catch it?

    python -m tools.mutations [--only NAME ...]

Each mutation replaces one exact piece of the code (it must occur once) in a fresh copy of
the working tree and runs only the tests that should catch it. The unmodified copy must pass
those tests first. Prints `caught` or `survived` per mutation; exits non-zero if any survived.
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

CODE = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutation:
    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


MUTATIONS = (
    Mutation(
        "unpickler hands out any numpy callable",
        "stages/fetch.py",
        '        raise pickle.UnpicklingError(f"refused to load {module}.{name}")',
        '        if module.startswith("numpy"):\n'
        "            return super().find_class(module, name)\n"
        '        raise pickle.UnpicklingError(f"refused to load {module}.{name}")',
        ("tests/test_fetch.py::test_hostile_pickle_is_refused_without_side_effects",),
    ),
    Mutation(
        "unpickler skips an array's byte count",
        "stages/fetch.py",
        "            or len(data) != math.prod(shape) * dtype.dtype.itemsize\n",
        "",
        ("tests/test_fetch.py::test_hostile_build_states_are_refused_without_a_crash",),
    ),
    Mutation(
        "test split written from the validation rows",
        "stages/split.py",
        '"test": (raw["x_test"], raw["y_test"]),',
        '"test": (x_validation, y_validation),',
        ("tests/test_split.py",),
    ),
    Mutation(
        "the split ignores its seed",
        "stages/split.py",
        "random_state=params.seed,",
        "random_state=None,",
        (
            "tests/test_split.py::"
            "test_split_is_a_deterministic_function_of_the_raw_file_and_its_params",
        ),
    ),
    Mutation(
        "train ignores its seed",
        "stages/training.py",
        "    configure_tensorflow(train_params)\n",
        '    train_params = train_params.model_copy(update={"seed": 42})\n'
        "    configure_tensorflow(train_params)\n",
        (
            "tests/test_train.py::"
            "test_train_is_a_deterministic_function_of_the_split_and_its_params",
        ),
    ),
    # The mirror loader's limits, one each (docs/data.md; tests/test_loader_limits.py).
    Mutation(
        "the loader takes any module's _reconstruct",
        "stages/fetch.py",
        "if (module, name) in RECONSTRUCT:",
        'if name == "_reconstruct":',
        ("tests/test_loader_limits.py",),
    ),
    Mutation(
        "the loader takes numpy.dtypes' names",
        "stages/fetch.py",
        'if (module, name) == ("numpy", "dtype"):',
        'if module.startswith("numpy") and name.startswith("dtype"):',
        ("tests/test_loader_limits.py",),
    ),
    Mutation(
        "the loader takes numpy.matrix for ndarray",
        "stages/fetch.py",
        'if (module, name) == ("numpy", "ndarray"):',
        'if module == "numpy" and name in ("ndarray", "matrix"):',
        ("tests/test_loader_limits.py",),
    ),
    Mutation(
        "the loader lets ndarray be called",
        "stages/fetch.py",
        '        raise pickle.UnpicklingError("refused a direct call of numpy.ndarray")',
        "        return None",
        ("tests/test_loader_limits.py",),
    ),
    Mutation(
        "the loader takes half floats",
        "stages/fetch.py",
        "if spec not in PLAIN_DTYPES or",
        'if spec not in PLAIN_DTYPES | {"f2"} or',
        ("tests/test_loader_limits.py",),
    ),
    Mutation(
        "the loader takes any align and copy",
        "stages/fetch.py",
        "align not in (0, 1) or copy not in (0, 1)",
        "align not in (0, 1, 2) or copy not in (0, 1, 2)",
        ("tests/test_loader_limits.py",),
    ),
    Mutation(
        "the loader drops the dtype state's length",
        "stages/fetch.py",
        "            or len(state) != 8\n",
        "",
        ("tests/test_loader_limits.py",),
    ),
    Mutation(
        "the loader takes dtype state version 4",
        "stages/fetch.py",
        "or state[0] != 3",
        "or state[0] not in (3, 4)",
        ("tests/test_loader_limits.py",),
    ),
    Mutation(
        "the loader takes a swapped byte order",
        "stages/fetch.py",
        "or state[1] not in BYTE_ORDERS",
        'or state[1] not in BYTE_ORDERS | {"S"}',
        ("tests/test_loader_limits.py",),
    ),
    Mutation(
        "the loader takes a dtype's size, alignment and flags",
        "stages/fetch.py",
        "or state[2:] != PLAIN_DTYPE_STATE",
        "or state[2:5] != PLAIN_DTYPE_STATE[:3]",
        ("tests/test_loader_limits.py",),
    ),
    Mutation(
        "the loader takes a dtype state twice",
        "stages/fetch.py",
        "            self.dtype is not None\n            or",
        "            False\n            or",
        ("tests/test_loader_limits.py",),
    ),
    Mutation(
        "the loader reconstructs from any type",
        "stages/fetch.py",
        "if array_type is not ARRAY_TYPE or shape != (0,)",
        "if shape != (0,)",
        ("tests/test_loader_limits.py",),
    ),
    Mutation(
        "the loader reconstructs any one-element shape",
        "stages/fetch.py",
        "or shape != (0,) or",
        "or shape not in ((0,), (1,)) or",
        ("tests/test_loader_limits.py",),
    ),
    Mutation(
        "the loader reconstructs with another code",
        "stages/fetch.py",
        'code not in (b"b", "b")',
        'code not in (b"b", "b", b"c")',
        ("tests/test_loader_limits.py",),
    ),
    Mutation(
        "the loader drops the array state's length",
        "stages/fetch.py",
        " or len(state) != 5:",
        ":",
        ("tests/test_loader_limits.py",),
    ),
    Mutation(
        "the loader takes array state version 2",
        "stages/fetch.py",
        "version != 1",
        "version not in (1, 2)",
        ("tests/test_loader_limits.py",),
    ),
    Mutation(
        "the loader takes a dtype without its state",
        "stages/fetch.py",
        "            or dtype.dtype is None\n",
        "",
        ("tests/test_loader_limits.py",),
    ),
    Mutation(
        "the loader takes a Fortran flag of 2",
        "stages/fetch.py",
        "fortran not in (False, True)",
        "fortran not in (False, True, 2)",
        ("tests/test_loader_limits.py",),
    ),
    Mutation(
        "the loader takes five dimensions",
        "stages/fetch.py",
        "not 1 <= len(shape) <= 4",
        "not 1 <= len(shape) <= 5",
        ("tests/test_loader_limits.py",),
    ),
    Mutation(
        "the loader takes a size of -1",
        "stages/fetch.py",
        "n >= 0 for n in shape",
        "n >= -1 for n in shape",
        ("tests/test_loader_limits.py",),
    ),
    Mutation(
        "the loader takes a bytearray",
        "stages/fetch.py",
        "or not isinstance(data, bytes)",
        "or not isinstance(data, bytes | bytearray)",
        ("tests/test_loader_limits.py",),
    ),
    Mutation(
        "the loader takes more bytes than the shape needs",
        "stages/fetch.py",
        "or len(data) != math.prod(shape) * dtype.dtype.itemsize",
        "or len(data) < math.prod(shape) * dtype.dtype.itemsize",
        ("tests/test_loader_limits.py",),
    ),
    Mutation(
        "the loader takes an array state twice",
        "stages/fetch.py",
        "if self.array is not None or not isinstance",
        "if not isinstance",
        ("tests/test_loader_limits.py",),
    ),
    Mutation(
        "the loader hands out stand-ins without their state",
        "stages/fetch.py",
        "    if isinstance(value, ArrayStandIn | DtypeStandIn):\n        raise",
        "    if False:\n        raise",
        ("tests/test_loader_limits.py",),
    ),
    Mutation(
        "the loader takes a memo index one past the opcodes",
        "stages/fetch.py",
        "int(argument) > count",
        "int(argument) > count + 1",
        ("tests/test_loader_limits.py",),
    ),
    Mutation(
        "the loader takes four parts",
        "stages/fetch.py",
        "len(parts) == 3",
        "len(parts) >= 3",
        ("tests/test_loader_limits.py",),
    ),
    Mutation(
        "the loader takes pairs of three",
        "stages/fetch.py",
        "and len(pair) == 2)",
        "and len(pair) >= 2)",
        ("tests/test_loader_limits.py",),
    ),
    Mutation(
        "the loader takes rows of 785 pixels",
        "stages/fetch.py",
        "and images.shape[1] == 28 * 28",
        "and images.shape[1] >= 28 * 28",
        ("tests/test_loader_limits.py",),
    ),
    Mutation(
        "the loader takes more labels than images",
        "stages/fetch.py",
        "and labels.shape == images.shape[:1]",
        "and labels.ndim == 1",
        ("tests/test_loader_limits.py",),
    ),
    Mutation(
        "the loader takes pixels off the 1/256 steps",
        "stages/fetch.py",
        "if not np.array_equal(images.reshape(pixels.shape).astype(np.float32) / 256, pixels):",
        "if False:",
        ("tests/test_loader_limits.py",),
    ),
    Mutation(
        "evaluation reads the validation split",
        "stages/evaluation.py",
        'x_test, y_test = load_split("test")',
        'x_test, y_test = load_split("validation")',
        ("tests/test_evaluate.py",),
    ),
    Mutation(
        "the report ignores a variant",
        "stages/report.py",
        "    variants = list(params.models)\n",
        "    variants = list(params.models)[:-1]\n",
        (
            "tests/test_report.py::"
            "test_report_is_a_deterministic_function_of_every_variants_results_and_its_params",
        ),
    ),
    Mutation(
        "checkpoint saves every epoch, not the best",
        "stages/training.py",
        'save_best_only=model_params.checkpoint == "best"',
        "save_best_only=False",
        ("tests/test_train.py::test_checkpoint_keeps_the_best_epoch_not_the_last",),
    ),
    Mutation(
        "op determinism off",
        "stages/training.py",
        "    tf.config.experimental.enable_op_determinism()\n",
        "",
        ("tests/test_train.py::test_fit_turns_op_determinism_on",),
    ),
    Mutation(
        "a stage started with Ctrl-C ignored stops ignoring it",
        "stages/errors.py",
        "    if previous_handler is signal.default_int_handler:",
        "    if True:",
        ("tests/test_faults.py::test_a_stage_started_with_ctrl_c_ignored_keeps_ignoring_it",),
    ),
    Mutation(
        "train's own module dropped from its deps",
        "dvc.yaml",
        "        - stages/train.py\n",
        "",
        ("tests/test_dvc_yaml.py",),
    ),
    Mutation(
        "precision and recall swapped",
        "stages/evaluation.py",
        "precision, recall, f1, _ = precision_recall_fscore_support(",
        "recall, precision, f1, _ = precision_recall_fscore_support(",
        ("tests/test_evaluate.py",),
    ),
    Mutation(
        "models loaded without safe mode",
        "stages/evaluation.py",
        "safe_mode=True",
        "safe_mode=False",
        ("tests/test_faults.py::test_evaluate_refuses_a_model_with_a_lambda_layer",),
    ),
    Mutation(
        "cosine decay over one epoch instead of all",
        "stages/models.py",
        "decay_steps=params.epochs * steps_per_epoch",
        "decay_steps=steps_per_epoch",
        ("tests/test_train.py::test_cosine_schedule_decays_from_the_rate_to_zero_over_all_steps",),
    ),
    Mutation(
        "steps_per_execution changes the arithmetic",
        "stages/training.py",
        "training_batches(*train, model_params.batch_size, train_params.seed)",
        "training_batches(\n"
        "            *train,\n"
        "            model_params.batch_size * train_params.steps_per_execution // 128,\n"
        "            train_params.seed,\n"
        "        )",
        ("tests/test_train.py::test_speed_settings_leave_the_weights_unchanged",),
    ),
    Mutation(
        "every epoch in the same order",
        "stages/training.py",
        "reshuffle_each_iteration=True",
        "reshuffle_each_iteration=False",
        ("tests/test_train.py::test_training_batches_reshuffle_every_epoch_from_the_seed",),
    ),
    Mutation(
        "canonical .keras keeps the save date",
        "stages/keras_file.py",
        '        metadata.pop("date_saved", None)\n',
        "",
        ("tests/test_keras_file.py",),
    ),
    Mutation(
        "McNemar's test one-sided",
        "stages/report.py",
        "binomtest(only_a, discordant, 0.5)",
        'binomtest(only_a, discordant, 0.5, alternative="greater")',
        ("tests/test_report.py",),
    ),
    Mutation(
        "rotation read as a fraction of half a turn",
        "stages/models.py",
        "turn = params.augment_rotation / 360",
        "turn = params.augment_rotation / 180",
        ("tests/test_models.py",),
    ),
    Mutation(
        "convolution keys accepted under a dense layout",
        "stages/params.py",
        "            for field in CONV_KEYS:",
        "            for field in ():",
        ("tests/test_params.py",),
    ),
    Mutation(
        "every multi_worker worker writes the outputs",
        "stages/training.py",
        "    if not is_chief(params.train):",
        "    if False:",
        ("tests/test_distribute.py::test_two_workers_train_like_one_and_only_the_chief_writes",),
    ),
    Mutation(
        "a lost multi_worker peer ends in a traceback",
        "stages/training.py",
        "        raise lost_peer(error) from None",
        "        raise",
        (
            "tests/test_distribute.py::"
            "test_a_lost_worker_ends_the_chief_with_one_line_and_nothing_written",
        ),
    ),
    Mutation(
        "the Keras fix patches any Keras version",
        "stages/keras_compat.py",
        "    if keras.__version__ not in VERIFIED_KERAS:\n        raise",
        "    if False:\n        raise",
        ("tests/test_distribute.py::test_the_multi_worker_fix_refuses_an_unverified_keras",),
    ),
    Mutation(
        "stale seed records counted",
        "stages/report.py",
        'if r["fingerprint"] == fingerprints.get(r["variant"], "-") and r["seed"] in seeds',
        'if r["variant"] in fingerprints and r["seed"] in seeds',
        ("tests/test_report.py",),
    ),
    Mutation(
        "the fingerprint blind to the code",
        "stages/fingerprint.py",
        '"files": {path: sha256_bytes(read(path)) for path in fingerprinted_files(definitions)},',
        '"files": {},',
        ("tests/test_report.py",),
    ),
    Mutation(
        "p-values left unadjusted",
        "stages/stats.py",
        "running = max(running, min(1.0, (len(ranked) - rank) * p_value))",
        "running = p_value",
        ("tests/test_report.py",),
    ),
    Mutation(
        "above 2016 on the mean alone",
        "stages/report.py",
        "if prediction_interval(values, confidence)[0] > reference:",
        "if mean_std(values)[0] > reference:",
        ("tests/test_report.py",),
    ),
    Mutation(
        "below 2016 on the mean alone",
        "stages/report.py",
        "if mean_interval(values, confidence)[1] < reference:",
        "if mean_std(values)[0] < reference:",
        ("tests/test_report.py",),
    ),
    Mutation(
        "the 2016 verdicts' intervals uncorrected across the variants",
        "stages/report.py",
        "confidence = 1 - ALPHA / len(studied)",
        "confidence = 1 - ALPHA",
        ("tests/test_report.py",),
    ),
    Mutation(
        "p-values printed to any precision",
        "stages/report.py",
        'return f"< {P_FLOOR:g}" if p_value < P_FLOOR else f"{p_value:.2g}"',
        'return f"{p_value:.2g}"',
        ("tests/test_report.py",),
    ),
    Mutation(
        "the fingerprint blind to the libraries",
        "stages/fingerprint.py",
        '"libraries": {name: libraries[name] for name in FINGERPRINTED_LIBRARIES},',
        '"libraries": {},',
        ("tests/test_report.py",),
    ),
    Mutation(
        "unlike records pooled",
        "stages/records.py",
        'return record["threads"], tuple(environment.get("cpu_flags", ())), python',
        'return 0, (), ""',
        ("tests/test_records.py",),
    ),
    Mutation(
        "groups that differ pooled",
        "stages/records.py",
        "return self.holm_p is not None and self.holm_p < ALPHA",
        "return False",
        ("tests/test_records.py",),
    ),
    Mutation(
        "a verdict blind to the interval",
        "stages/reproduction.py",
        '"inside": low <= run.test_accuracy <= high,',
        '"inside": True,',
        ("tests/test_reproduction.py",),
    ),
    Mutation(
        "the verdicts' intervals uncorrected across the variants",
        "stages/reproduction.py",
        "return 1 - ALPHA / max(judged, 1)",
        "return 1 - ALPHA",
        ("tests/test_reproduction.py",),
    ),
    Mutation(
        "a run recorded twice counted twice",
        "stages/records.py",
        '    if repeated:\n        raise StageError(\n            f"{path} holds',
        '    if False:\n        raise StageError(\n            f"{path} holds',
        ("tests/test_records.py",),
    ),
    Mutation(
        "a sweep run evaluates on the test set",
        "tools/experiments.py",
        'target = f"evaluate@{run.variant}" if run.evaluates else f"train@{run.variant}"',
        'target = f"evaluate@{run.variant}"',
        (
            "tests/test_studies.py::test_sweep_ranks_recipes_by_validation_and_never_reads_the_test_set",
        ),
    ),
    Mutation(
        "a study's Ctrl-C stops every study's runs on a worker",
        "tools/task.py",
        'marks.glob(f"{study}-*.run")',
        'marks.glob("*.run")',
        (
            "tests/test_cluster.py::test_ctrl_c_of_one_study_leaves_another_studys_runs_of_the_same_commit_alone",
        ),
    ),
    Mutation(
        "a stopped task runs on",
        "tools/task.py",
        '    return (marks / f"{study}.stopped").exists()',
        "    return False",
        ("tests/test_cluster.py::test_ctrl_c_while_a_task_runs_git_stops_it_before_its_run",),
    ),
    Mutation(
        "a run pushed over an experiment of the same name",
        "tools/study.py",
        "    check_names(todo, base)\n",
        "",
        (
            "tests/test_study_failures.py::test_a_users_experiment_named_like_a_run_is_refused_and_never_overwritten",
        ),
    ),
    Mutation(
        "a stale remote-tracking ref taken for the commit on origin",
        "tools/study.py",
        '"--quiet", "--prune", "origin"',
        '"--quiet", "origin"',
        (
            "tests/test_cluster.py::test_what_the_workers_could_not_run_fails_in_one_line_before_any_task",
        ),
    ),
    Mutation(
        "another remote's branch taken for the commit on origin",
        "tools/study.py",
        '"--contains", base, "refs/remotes/origin"',
        '"--contains", base, "refs/remotes"',
        (
            "tests/test_cluster.py::test_what_the_workers_could_not_run_fails_in_one_line_before_any_task",
        ),
    ),
    Mutation(
        "a run outlives its worker",
        "tools/run.py",
        "    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)\n",
        "",
        ("tests/test_cluster.py::test_a_worker_killed_while_it_trains_costs_no_run",),
    ),
    Mutation(
        "uncommitted docs refuse a study",
        "tools/study.py",
        'NOT_READ_BY_RUNS = (":!reports", ":!docs", ":!*.md")',
        'NOT_READ_BY_RUNS = (":!reports/seeds.json",)',
        (
            "tests/test_study_failures.py::test_a_users_experiment_named_like_a_run_is_refused_and_never_overwritten",
        ),
    ),
)


def copy_tree(destination: Path) -> None:
    """The working tree as git sees it (tracked and untracked, not ignored), committed in a new
    repo there: some tests read the committed files."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=CODE,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = CODE / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    identity = ["-c", "user.name=mutations", "-c", "user.email=mutations@localhost"]
    for command in (["init", "-q"], ["add", "-A"], [*identity, "commit", "-q", "-m", "copy"]):
        subprocess.run(["git", *command], cwd=destination, check=True)


def run_tests(folder: Path, tests: tuple[str, ...]) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    return subprocess.run(command, cwd=folder, capture_output=True, text=True)


def apply(mutation: Mutation, folder: Path) -> None:
    path = folder / mutation.path
    text = path.read_text()
    if text.count(mutation.old) != 1:
        raise SystemExit(f"{mutation.name}: the text to replace is not in {mutation.path} once")
    path.write_text(text.replace(mutation.old, mutation.new))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="+", help="names (or parts of names) to run")
    args = parser.parse_args()
    chosen = [m for m in MUTATIONS if not args.only or any(o in m.name for o in args.only)]

    survived = []
    with tempfile.TemporaryDirectory(prefix="mutations-") as scratch:
        pristine = Path(scratch) / "pristine"
        copy_tree(pristine)
        tests = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
        baseline = run_tests(pristine, tests)
        if baseline.returncode != 0:
            print(baseline.stdout[-3000:])
            raise SystemExit("the unmodified code fails the chosen tests; fix that first")
        for mutation in chosen:
            folder = Path(scratch) / "mutant"
            shutil.copytree(pristine, folder)
            apply(mutation, folder)
            caught = run_tests(folder, mutation.tests).returncode != 0
            print(f"{'caught' if caught else 'SURVIVED'}: {mutation.name}", flush=True)
            if not caught:
                survived.append(mutation.name)
            shutil.rmtree(folder)
    print(f"{len(chosen) - len(survived)} of {len(chosen)} mutations caught")
    sys.exit(1 if survived else 0)


if __name__ == "__main__":
    main()
