"""The measured figures in the prose of docs/ are what their committed sources give.

Each case is a doc, the exact text that holds the figure, and a function that writes that text
from the source file; the test fails when the doc or the source moves without the other. Line
breaks in a doc count as spaces. Generated blocks (`<!-- NAME:start -->`) are left to the
commands that write them, but for docs/scaling.md's projection, which is computed from committed
records alone, and the benchmarks' tables (the README's speed table, docs/performance.md's stage
table, docs/studies.md's study benchmark), from their committed results; python.md's fresh
clones are checked by tests/test_fresh_clone.py.
"""

import json
import math
import re
import subprocess
import tomllib
from collections.abc import Callable, Iterable

import pytest

from benchmarks.cluster import projection
from benchmarks.onednn import cpu_label
from benchmarks.onednn import markdown as onednn_markdown
from benchmarks.pipeline import markdown as pipeline_markdown
from benchmarks.profile_epoch import table as profile_table
from benchmarks.startup import markdown as startup_markdown
from benchmarks.studies import OUTSIDE_TARGET, PATH_TARGET, STAGES_TARGET, execution_path
from benchmarks.studies import markdown as studies_markdown
from benchmarks.train_speed import history_table
from benchmarks.train_speed import table as speed_table
from stages.files import parse_yaml
from stages.report import readme_block
from tests.conftest import REPO
from tools.mutations import MUTATIONS

# The commit that retrained the committed run on an Intel Xeon; its parent holds the AMD run.
RETRAINED = "cbc166e"
MNIST_TRAINING_IMAGES = 60_000
WORDS = {3: "three", 10: "ten", 13: "thirteen"}


def read_json(path: str) -> dict:
    return json.loads((REPO / path).read_text())


def committed_text(commit: str, path: str) -> str:
    """`path` as `commit` has it."""
    command = ["git", "show", f"{commit}:{path}"]
    return subprocess.run(command, cwd=REPO, check=True, capture_output=True, text=True).stdout


def committed(path: str) -> dict:
    """HEAD's `path`: a `make repro` on another CPU rewrites the workspace's."""
    return json.loads(committed_text("HEAD", path))


def params() -> dict:
    return parse_yaml((REPO / "params.yaml").read_text())


SPEED = "benchmarks/results/train_speed.json"


def train_speed() -> dict[str, dict]:
    return {row["variant"]: row for row in read_json(SPEED)["rows"]}


def pipeline() -> dict:
    return read_json("benchmarks/results/pipeline.json")


def stage_seconds() -> dict[str, float]:
    return {row["stage"]: row["seconds"] for row in pipeline()["stages"]}


def profile(variant: str) -> dict:
    results = read_json("benchmarks/results/profile_epoch.json")
    return next(v for v in results["variants"] if v["variant"] == variant)


def op_share(variant: str, *ops: str) -> str:
    shares = {row["op"]: row["share"] for row in profile(variant)["ops"]}
    return f"{100 * sum(shares[op] for op in ops):.0f} %"


def cluster() -> dict:
    return read_json("benchmarks/results/cluster.json")


def history(variant: str) -> dict:
    """The committed run's train record: HEAD's, as a local `make repro` rewrites its timings."""
    return committed(f"history/{variant}.json")


def cpu_name(record: dict) -> str:
    return re.sub(r"\(R\)| Processor", "", record["environment"]["cpu"]).strip()


def lock_pin(lock: str, package: str) -> str:
    return re.search(rf"^{package}==(\S+)", (REPO / "requirements" / lock).read_text(), re.M)[1]


def model_md5s(lock_text: str) -> dict[str, str]:
    stages = parse_yaml(lock_text)["stages"]
    return {
        out["path"]: out["md5"]
        for stage in stages.values()
        for out in stage.get("outs", [])
        if out["path"].startswith("models/")
    }


def training_images() -> int:
    return MNIST_TRAINING_IMAGES - params()["split"]["validation_size"]


def batches(images: int, batch_size: int) -> int:
    return math.ceil(images / batch_size)


def met(value: float, target: float) -> str:
    return "yes" if value <= target else "no"


# studies.md


def study_benchmarks() -> list[dict]:
    return list(read_json("benchmarks/results/studies.json").values())


def on_every_cpu(holds: list[bool]) -> str:
    return "on every CPU" if all(holds) else "on some CPUs only" if any(holds) else "on no CPU"


def stages_target() -> str:
    runs = study_benchmarks()
    met_on = on_every_cpu([r["wall_over_stages_per_job"] <= STAGES_TARGET for r in runs])
    return f"The first target is met {met_on}"


def path_target() -> str:
    runs = study_benchmarks()
    met_on = on_every_cpu([execution_path(r) <= PATH_TARGET for r in runs])
    return f"The execution path's target is met {met_on}"


def per_run_target() -> str:
    """Missed where a run's time outside its epochs is over the target; the stages alone miss it
    where the train stage outside its epochs and the evaluate stage add up to more."""
    runs = study_benchmarks()
    missed_on = on_every_cpu([r["overhead_seconds_per_run"] > OUTSIDE_TARGET for r in runs])
    stages = [r["overhead_seconds_by_part"] for r in runs]
    alone = all(part["train_start_and_save"] + part["evaluate"] > OUTSIDE_TARGET for part in stages)
    verb = "miss" if alone else "do not miss"
    return f"The second is missed {missed_on}, and the stages alone {verb} it"


def slower_cpu() -> str:
    runs = study_benchmarks()
    slower = max(runs, key=lambda r: r["training_seconds"])
    outside = slower["overhead_seconds_per_run"] == max(r["overhead_seconds_per_run"] for r in runs)
    return (
        "the slower CPU of the table takes longer both in the epochs and "
        f"{'outside them' if outside else 'not outside them'}"
    )


# performance.md


def ratio_row(variant: str, target: float, against: str) -> str:
    key, label = {"keras": ("ratio", "the Keras baseline"), "torch": ("torch_ratio", "PyTorch")}[
        against
    ]
    ratio = train_speed()[variant][key]
    return f"| `{variant}` ≤ {target}× {label} | {ratio:.2f}× | {met(ratio, target)} |"


def onednn_rows(max_isa: str | None = None) -> dict[str, dict]:
    """The committed oneDNN benchmark's rows, by variant, of this doc's CPU kind (its speed
    table's), under `max_isa`'s cap where given."""
    cpu = cpu_label(read_json(SPEED)["machine"], max_isa)
    return {r["variant"]: r for r in read_json("benchmarks/results/onednn.json")[cpu]["rows"]}


def avx2_cnn_row() -> str:
    ratio = onednn_rows("AVX2")["cnn"]["on_over_off"]
    return (
        "| `cnn` on an AVX2 CPU ≤ 0.65× its epoch at TensorFlow's default | no AVX2 CPU yet; "
        f"its stand-in below: {ratio:.2f}× | not judged |"
    )


def avx2_stand_in() -> str:
    capped, uncapped = (onednn_rows(cap)["cnn"]["on_over_off"] for cap in ("AVX2", None))
    return (
        f"Capped, oneDNN takes `cnn`'s epoch to {capped:.2f} of its time without, against "
        f"{uncapped:.2f} uncapped"
    )


def stages_2016_row() -> str:
    variants = params()["report"]["reference_accuracy"]
    names = ["split", "report"] + [f"{s}@{v}" for s in ("train", "evaluate") for v in variants]
    seconds = sum(stage_seconds()[name] for name in names)
    return (
        f"| the {WORDS[len(variants)]} 2016 variants, split to report, ≤ 3 minutes "
        f"| {seconds:.0f} s | {met(seconds, 180)} |"
    )


def cnn_stage_row() -> str:
    seconds = stage_seconds()["train@cnn"]
    return f"| `train@cnn` ≤ 3 minutes | {seconds:.0f} s | {met(seconds, 180)} |"


def no_op_row() -> str:
    seconds = pipeline()["no_op_repro_seconds"]
    return f"| no-op `dvc repro` ≤ 1.5 s | {seconds:.2f} s | {met(seconds, 1.5)} |"


def memory_row() -> str:
    peak = pipeline()["peak_mb"]
    return f"| peak memory ≤ 1.5 GB per stage | {peak:,} MB | {met(peak, 1500)} |"


def small_parameters() -> str:
    return f"{read_json('metrics/small.json')['params']:,} parameters"


def small_epoch() -> str:
    batch_size = params()["models"]["small"]["batch_size"]
    row = train_speed()["small"]
    return (
        f"{batches(training_images(), batch_size)} batches of {batch_size} in "
        f"{row['seconds_per_epoch']:.2f} s, validation included, against "
        f"{row['torch_seconds_per_epoch']:.2f} s for the peer"
    )


def small_profile() -> str:
    median = sorted(profile("small")["epoch_seconds"])[1]
    return (
        f"median epoch {median:.2f} s under the profiler), {op_share('small', 'Dataset')} of "
        f"the op time is tf.data's (`Dataset`: the shuffle of {training_images():,} indices"
    )


def small_profile_rest() -> str:
    return (
        f"{op_share('small', '_MklSoftmax')} the output layer's softmax, and "
        f"{op_share('small', '_MklMatMul', '_MklNativeFusedMatMul')} the matrix multiplies"
    )


def wide_recipes() -> str:
    models = params()["models"]
    wide, dropout = models["wide"], models["wide_dropout"]
    for key in ("weight_decay", "lr_schedule", "label_smoothing"):
        assert wide[key] == dropout[key], key
    names = {"adam": "Adam", "rmsprop": "RMSprop", "sgd": "SGD"}
    return (
        f"decoupled weight decay ({wide['weight_decay']}), a {wide['lr_schedule']} schedule and "
        f"label smoothing ({wide['label_smoothing']}) on their optimizer "
        f"({names[dropout['optimizer']]} for `wide_dropout`, {names[wide['optimizer']]} for `wide`)"
    )


def wide_baselines() -> str:
    dropout, wide = (
        train_speed()[v]["baseline_seconds_per_epoch"] for v in ("wide_dropout", "wide")
    )
    return f"Why `wide_dropout`'s baseline takes {dropout:.2f} s an epoch and `wide`'s {wide:.2f} s"


def stages_2016() -> str:
    s = {stage: f"{seconds:.0f}" for stage, seconds in stage_seconds().items()}
    evaluations = [s[f"evaluate@{v}"] for v in ("small", "wide_dropout", "wide")]
    return (
        f"{s['train@small']} s of `small` ({params()['models']['small']['epochs']} epochs), "
        f"{s['train@wide_dropout']} and {s['train@wide']} s of the wide models, evaluations of "
        f"{evaluations[0]}, {evaluations[1]} and {evaluations[2]} s, {s['split']} and "
        f"{s['report']} s for split and report"
    )


def longest_stage() -> str:
    seconds = stage_seconds()
    longest = max(seconds, key=seconds.get)
    epochs = params()["models"][longest.split("@")[1]]["epochs"]
    return f"`{longest}` is the longest stage: {epochs} epochs"


def cnn_training() -> str:
    record = history("cnn")
    return (
        f"which the committed run trained in {record['timing']['seconds']:.0f} s "
        f"(`history/cnn.json`, on an {cpu_name(record)})"
    )


def steps_per_execution() -> str:
    steps = params()["train"]["steps_per_execution"]
    return f"`train.steps_per_execution: {steps}` runs {steps} batches"


def validation_batches() -> str:
    p = params()
    size, batch = p["split"]["validation_size"], p["train"]["validation_batch_size"]
    models = p["models"]
    return (
        f"`train.validation_batch_size: {batch}` validates in {batches(size, batch)} batches "
        f"instead of {batches(size, models['small']['batch_size'])} (small) or "
        f"{batches(size, models['wide']['batch_size'])} (wide)"
    )


def profiled_epochs() -> str:
    epochs = read_json("benchmarks/results/profile_epoch.json")["epochs"]
    return f"and then {WORDS[epochs]} epochs under TensorFlow's profiler"


def wide_optimizers() -> str:
    names = {"adam": "Adam", "rmsprop": "RMSprop", "sgd": "SGD"}
    models = params()["models"]
    return (
        f"Much of the rest is Keras 3's optimizer ({names[models['wide']['optimizer']]} for "
        f"`wide`, {names[models['wide_dropout']['optimizer']]} for `wide_dropout`)"
    )


def softmax_call() -> str:
    seconds = {row["op"]: row["seconds"] for row in profile("small")["ops"]}["_MklSoftmax"]
    calls = batches(training_images(), params()["models"]["small"]["batch_size"])
    return f"about {1000 * seconds / calls:.1f} ms a call"


def cnn_transform() -> str:
    return f"(`ImageProjectiveTransformV3`) {op_share('cnn', 'ImageProjectiveTransformV3')}"


def wall_time_target() -> str:
    ratio = cluster()["cluster_over_queue"]
    return f"The wall-time target is {'met' if ratio <= 1.1 else 'missed'}"


def reused_clone() -> dict:
    return cluster()["dask_workers_2"]["task_overhead_seconds"]["clone_reused"]


def experiment_overhead() -> str:
    return (
        f"`dvc exp run` outside the epochs takes {reused_clone()['experiment']:.1f} s, as it does "
        "for the queue's runs"
    )


def cluster_overhead() -> str:
    task = reused_clone()
    waited = "no worker waited" if task["waited"] == 0 else "workers waited"
    return f"is about {task['task'] - task['experiment']:.0f} s a task, and {waited}"


def cluster_training() -> str:
    results = cluster()
    return (
        f"Training took {results['dask_workers_2']['training_seconds']:.0f} s on the cluster "
        f"against {results['queue_jobs_2']['training_seconds']:.0f} s in the queue"
    )


def speed_rounds() -> str:
    rounds = read_json("benchmarks/results/train_speed.json")["rounds"]
    return f"over {WORDS[rounds]} rounds of fresh processes"


# scaling.md


def distribute_tolerance(name: str) -> float:
    text = (REPO / "tests/test_distribute.py").read_text()
    return float(re.search(rf"^{name} = (\S+)", text, re.M)[1])


def ceiling_size() -> str:
    size = re.search(
        r"size=\d+ if args.quick else (\d+)", (REPO / "benchmarks/train_speed.py").read_text()
    )[1]
    return f"numpy float32 matrix multiply on {size} × {size} matrices"


def mflops(variant: str, words: str) -> str:
    flops = committed(f"metrics/{variant}.json")["flops_per_image"]
    return f"{flops / 1e6:.1f} MFLOPs {words}"


def optimizer_passes() -> str:
    """A wide model's largest kernel: the flattened image into the first hidden layer."""
    units = params()["models"]["wide"]["hidden_units"][0]
    return f"up to {28 * 28 * units:,} floats"


def softmax_shape() -> str:
    return f"oneDNN's softmax on {params()['models']['small']['batch_size']} × 10 values"


def cluster_targets() -> str:
    text = (REPO / "benchmarks/cluster.py").read_text()
    ratio = re.search(r"\(target ≤ (\S+)\)", text)[1]
    seconds = re.search(r"clone exists: ≤ (\d+) s\)", text)[1]
    return (
        f"Targets: the cluster at most {ratio} × the other study's wall time, and at most "
        f"{seconds} s"
    )


def recipe_2016_rate() -> str:
    [rate] = {recipe["learning_rate"] for recipe in params()["report"]["recipe_2016"].values()}
    return f"RMSprop at a constant {rate}"


def study_bounds() -> str:
    from tools.task import GIT_SECONDS, RUN_SECONDS

    return f"a worker's Git command over {GIT_SECONDS} s, and a run over {RUN_SECONDS // 3600} h"


def scaling_bounds() -> str:
    from tools.task import GIT_SECONDS, RUN_SECONDS

    return f"A worker's Git command has {GIT_SECONDS} s, a run {RUN_SECONDS // 3600} h"


def no_worker(doc_form: str) -> Callable[[], str]:
    def phrase() -> str:
        from tools.study import WORKERS_SECONDS

        return doc_form.format(WORKERS_SECONDS)

    return phrase


def stop_seconds() -> str:
    from tools.task import STOP_SECONDS

    return f"then SIGKILL after {STOP_SECONDS} s"


def stage_poll() -> str:
    from tools.run import STAGE_POLL

    return f"its looks every {STAGE_POLL} s"


def sweep_records() -> str:
    return f"the fourth run's {len(committed('reports/sweep.json'))} validation accuracies"


def connect_seconds() -> str:
    from tools.study import CONNECT_SECONDS

    return f"answering within {CONNECT_SECONDS} s"


def projected_workers() -> str:
    from benchmarks.cluster import PROJECTED_WORKERS

    return f"On paper: {listed(PROJECTED_WORKERS)} workers"


def slower_paths(commit: str) -> str:
    """Which paths of today's speed table are slower than at `commit`."""
    old = {r["variant"]: r for r in json.loads(committed_text(commit, SPEED))["rows"]}
    keys = {"project": "seconds_per_epoch", "baseline": "baseline_seconds_per_epoch"}
    keys["PyTorch peer"] = "torch_seconds_per_epoch"
    faster = [
        f"`{variant}`'s {path}"
        for variant, row in train_speed().items()
        for path, key in keys.items()
        if row[key] <= old[variant][key]
    ]
    return "is slower in every path" + (f" but {listed(faster)}" if faster else "")


def class_counts() -> str:
    from stages.mnist import TEST_CLASS_COUNTS, TRAIN_CLASS_COUNTS

    return f"(train `{list(TRAIN_CLASS_COUNTS)}`, test `{list(TEST_CLASS_COUNTS)}`)"


def threshold(path: str, pattern: str) -> float:
    """The number that a test's assertion compares with: `pattern`'s group in tests/`path`."""
    return float(re.search(pattern, (REPO / "tests" / path).read_text())[1])


def tiny_models() -> str:
    from tests.conftest import TINY_SETTINGS

    [units] = {*TINY_SETTINGS["models.wide.hidden_units"]}
    first, second = TINY_SETTINGS["models.cnn.conv_filters"]
    return f"({units} units, a `cnn` of {first} and {second} filters"


def tiny_accuracy() -> str:
    bar = threshold(
        "test_pipeline.py", r'metrics\(project, "small"\)\["test"\]\["accuracy"\] > (\S+)'
    )
    return f"than {100 * bar:.0f} % test accuracy after one epoch of `small`"


def chief_accuracy() -> str:
    bar = threshold("test_distribute.py", r'best_val_accuracy\(chief, "wide"\) > (\S+)')
    return f"the chief's model reaches {100 * bar:.0f} % validation accuracy"


def train_seed() -> str:
    return f"the others keep seed {params()['train']['seed']} in its"


def mirrored_tolerance() -> str:
    return f"accuracy within {100 * distribute_tolerance('TOLERANCE'):g} pp of the one-device run"


def weight_tolerance() -> str:
    tolerance = re.sub(r"e-0*", "e-", f"{distribute_tolerance('WEIGHT_TOLERANCE'):g}")
    return f"within the test's {tolerance}"


def pulled_megabytes() -> str:
    stages = parse_yaml(committed_text("HEAD", "dvc.lock"))["stages"]
    size = sum(out["size"] for name in ("fetch", "split") for out in stages[name]["outs"])
    return f"({size / 1e6:.0f} MB in `dvc.lock`)"


# reproducibility.md and python.md: the Intel Xeon's retrain against the AMD EPYC run before it


def before(path: str) -> dict:
    return json.loads(committed_text(f"{RETRAINED}~1", path))


def retrained(path: str) -> dict:
    return json.loads(committed_text(RETRAINED, path))


def models_kept() -> dict[str, bool]:
    """Per variant, in params.yaml's order: is the Xeon's model the AMD EPYC's of before?"""
    old = model_md5s(committed_text(f"{RETRAINED}~1", "dvc.lock"))
    new = model_md5s(committed_text(RETRAINED, "dvc.lock"))
    return {v: old[f"models/{v}.keras"] == new[f"models/{v}.keras"] for v in params()["models"]}


def byte_identical() -> str:
    same = [variant for variant, kept in models_kept().items() if kept]
    return f"{listed(f'`{variant}`' for variant in same)} came out byte-identical"


def machines() -> str:
    old, new = before("history/wide.json"), retrained("history/wide.json")
    assert old["environment"]["threads"] == new["environment"]["threads"]
    avx512 = ["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16"]
    assert old["environment"]["cpu_flags"] == avx512  # the doc's "AMD EPYC with AVX-512"
    assert new["environment"]["cpu_flags"] == [*avx512, "amx_tile"]  # "Intel Xeon with AMX"
    return (
        f"trained on a {old['environment']['cores']}-core {cpu_name(old)}, then again at the same "
        f"params and thread count on a {new['environment']['cores']}-core {cpu_name(new)}"
    )


def wide_epochs() -> str:
    old, new = before("metrics/wide.json"), retrained("metrics/wide.json")
    return (
        f"its best epoch is {new['validation']['best_epoch']} on the "
        f"{cpu_name(retrained('history/wide.json'))} against "
        f"{old['validation']['best_epoch']} on the {cpu_name(before('history/wide.json'))}"
    )


def wide_test_figures() -> tuple[str, str]:
    """`wide`'s test accuracy and loss, the Xeon's retrain against the AMD EPYC run before."""
    old, new = before("metrics/wide.json")["test"], retrained("metrics/wide.json")["test"]
    accuracy = f"{100 * new['accuracy']:.2f} %"
    if accuracy != f"{100 * old['accuracy']:.2f} %":
        accuracy += f" against {100 * old['accuracy']:.2f} %"
    else:
        accuracy += " on both"
    return accuracy, f"{new['loss']:.5f} against {old['loss']:.5f}"


def wide_test() -> str:
    accuracy, loss = wide_test_figures()
    return f"its test accuracy {accuracy}, its test loss {loss}"


def committed_threads() -> str:
    threads = {history(v)["environment"]["threads"] for v in params()["models"]}
    assert len(threads) == 1, threads
    return f"the committed run ran at {threads.pop()}"


def requires_python() -> str:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return f'`requires-python = "{project["requires-python"]}"`'


def pythons() -> list[str]:
    """The CPython versions that the Makefile accepts, oldest first."""
    versions = re.search(r"^PYTHONS := (.+)$", (REPO / "Makefile").read_text(), re.M)[1].split()
    return sorted(versions, key=lambda v: tuple(map(int, v.split("."))))


def listed(items: Iterable[object], last: str = "and") -> str:
    """`a`, `a and b`, `a, b and c` (or with another word before the last)."""
    *first, final = map(str, items)
    return f"{', '.join(first)} {last} {final}" if first else final


def makefile_pythons() -> str:
    return f"CPython **{listed(pythons())}**"


def readme_pythons() -> str:
    return f"CPython {listed(pythons(), 'or')}"


def model_cells(variant: str) -> str:
    """A variant's size and schedule: the committed run's parameter count, params' batch and
    epochs."""
    model = params()["models"][variant]
    count = committed(f"metrics/{variant}.json")["params"]
    return f"{count:,} params; batch {model['batch_size']}, {model['epochs']} epochs"


def cnn_blocks() -> str:
    cnn = params()["models"]["cnn"]
    first, second = cnn["conv_filters"]
    size, pooling = cnn["kernel_size"], cnn["pooling"]
    return f"two `Conv2D` blocks ({first} and {second} filters of {size}×{size}, {pooling} pooling)"


def pipeline_pins() -> str:
    def pinned(package: str) -> str:
        return lock_pin("pipeline.txt", package)

    return (
        f"TensorFlow {pinned('tensorflow-cpu')} as `tensorflow-cpu`, Keras {pinned('keras')}, "
        f"NumPy {pinned('numpy')}, DVC {pinned('dvc')}"
    )


def tensorflow_minor() -> str:
    return f"TensorFlow {lock_pin('pipeline.txt', 'tensorflow-cpu').rsplit('.', 1)[0]} among"


def mutation_count() -> str:
    return f"(all {len(MUTATIONS)};"


def pin(lock: str, package: str, prefix: str = "", suffix: str = "") -> Callable[[], str]:
    return lambda: f"{prefix}{lock_pin(lock, package)}{suffix}"


def flops_ratios() -> str:
    """Each training FLOPs count against the old 6 per multiply-add, from the models."""
    from benchmarks.flops import training_flops_per_image
    from stages.models import build_model, flops_per_image
    from stages.params import load_params

    models = {
        v: build_model(load_params(REPO / "params.yaml").model(v)) for v in ("small", "wide", "cnn")
    }
    ratio = {v: training_flops_per_image(m) / (3 * flops_per_image(m)) for v, m in models.items()}
    return (
        f"That is {ratio['small']:.2f} × the old count of 6 per multiply-add for `small`, "
        f"{ratio['wide']:.2f} × for the wide variants and {ratio['cnn']:.2f} × for `cnn`"
    )


def ceiling_fractions() -> str:
    rows = train_speed()
    wide, cnn = (round(100 * rows[v]["ceiling_fraction"]) for v in ("wide", "cnn"))
    return f"`wide` and `cnn` reach {wide} and {cnn} % of numpy's matrix-multiply ceiling"


PERFORMANCE = [
    ("is slower in every path but `cnn`'s baseline", lambda: slower_paths("2ca7609")),
    ("numpy float32 matrix multiply on 4096 × 4096 matrices", ceiling_size),
    ("0.1 MFLOPs an image", lambda: mflops("small", "an image")),
    ("7.7 MFLOPs per image (forward)", lambda: mflops("cnn", "per image (forward)")),
    ("up to 401,408 floats", optimizer_passes),
    ("oneDNN's softmax on 64 × 10 values", softmax_shape),
    (
        "Targets: the cluster at most 1.1 × the other study's wall time, and at most 15 s",
        cluster_targets,
    ),
    (
        "That is 0.86 × the old count of 6 per multiply-add for `small`, 0.80 × for the wide "
        "variants and 0.96 × for `cnn`",
        flops_ratios,
    ),
    ("`wide` and `cnn` reach 46 and 62 % of numpy's matrix-multiply ceiling", ceiling_fractions),
    (
        "PyTorch 2.13.0 is the `bench` extra",
        pin("bench.txt", "torch", "PyTorch ", " is the `bench` extra"),
    ),
    (
        "Keras 3.15.1's path for arrays",
        pin("pipeline.txt", "keras", "Keras ", "'s path for arrays"),
    ),
    (
        "| `small` ≤ 0.45× the Keras baseline | 0.43× | yes |",
        lambda: ratio_row("small", 0.45, "keras"),
    ),
    (
        "| `wide_dropout` ≤ 0.6× the Keras baseline | 0.77× | no |",
        lambda: ratio_row("wide_dropout", 0.6, "keras"),
    ),
    ("| `wide` ≤ 0.6× the Keras baseline | 0.64× | no |", lambda: ratio_row("wide", 0.6, "keras")),
    ("| `small` ≤ 0.77× PyTorch | 0.58× | yes |", lambda: ratio_row("small", 0.77, "torch")),
    (
        "| `wide_dropout` ≤ 0.77× PyTorch | 0.85× | no |",
        lambda: ratio_row("wide_dropout", 0.77, "torch"),
    ),
    (
        "| `cnn` on an AVX2 CPU ≤ 0.65× its epoch at TensorFlow's default | no AVX2 CPU yet; "
        "its stand-in below: 0.71× | not judged |",
        avx2_cnn_row,
    ),
    (
        "Capped, oneDNN takes `cnn`'s epoch to 0.71 of its time without, against 0.59 uncapped",
        avx2_stand_in,
    ),
    ("| `wide` ≤ 0.77× PyTorch | 0.86× | no |", lambda: ratio_row("wide", 0.77, "torch")),
    ("| `cnn` ≤ 0.77× PyTorch | 0.66× | yes |", lambda: ratio_row("cnn", 0.77, "torch")),
    ("| the three 2016 variants, split to report, ≤ 3 minutes | 195 s | no |", stages_2016_row),
    ("| `train@cnn` ≤ 3 minutes | 145 s | yes |", cnn_stage_row),
    ("| no-op `dvc repro` ≤ 1.5 s | 1.24 s | yes |", no_op_row),
    ("| peak memory ≤ 1.5 GB per stage | 1,158 MB | yes |", memory_row),
    ("9,474 parameters", small_parameters),
    ("782 batches of 64 in 0.67 s, validation included, against 1.16 s for the peer", small_epoch),
    (
        "median epoch 0.72 s under the profiler), 39 % of the op time is tf.data's (`Dataset`: the "
        "shuffle of 50,000 indices",
        small_profile,
    ),
    ("14 % the output layer's softmax, and 26 % the matrix multiplies", small_profile_rest),
    (
        "decoupled weight decay (0.1), a cosine schedule and label smoothing (0.1) on their "
        "optimizer (Adam for `wide_dropout`, RMSprop for `wide`)",
        wide_recipes,
    ),
    ("Why `wide_dropout`'s baseline takes 2.91 s an epoch and `wide`'s 2.76 s", wide_baselines),
    (
        "75 s of `small` (120 epochs), 53 and 43 s of the wide models, evaluations of 7, 6 and 6 "
        "s, 2 and 3 s for split and report",
        stages_2016,
    ),
    ("`train@cnn` is the longest stage: 15 epochs", longest_stage),
    (
        "which the committed run trained in 147 s (`history/cnn.json`, on an AMD EPYC)",
        cnn_training,
    ),
    ("`train.steps_per_execution: 128` runs 128 batches", steps_per_execution),
    (
        "`train.validation_batch_size: 1000` validates in 10 batches instead of 157 (small) or 79 "
        "(wide)",
        validation_batches,
    ),
    ("and then three epochs under TensorFlow's profiler", profiled_epochs),
    (
        "Much of the rest is Keras 3's optimizer (RMSprop for `wide`, Adam for `wide_dropout`)",
        wide_optimizers,
    ),
    ("about 0.2 ms a call", softmax_call),
    ("(`ImageProjectiveTransformV3`) 6 %", cnn_transform),
    ("The wall-time target is met", wall_time_target),
    (
        "`dvc exp run` outside the epochs takes 14.2 s, as it does for the queue's runs",
        experiment_overhead,
    ),
    ("is about 2 s a task, and no worker waited", cluster_overhead),
    ("Training took 267 s on the cluster against 242 s in the queue", cluster_training),
    ("over three rounds of fresh processes", speed_rounds),
]
SCALING = [
    ("that has had none for 30 s", no_worker("that has had none for {} s")),
    ("A worker's Git command has 300 s, a run 6 h", scaling_bounds),
    ("answering within 5 s", connect_seconds),
    ("On paper: 2, 8 and 32 workers", projected_workers),
    ("the pinned Keras 3.15.1", pin("pipeline.txt", "keras", "the pinned Keras ")),
    (
        '"tensorflow[and-cuda]==2.21.0"',
        pin("pipeline.txt", "tensorflow-cpu", '"tensorflow[and-cuda]==', '"'),
    ),
    ("accuracy within 0.5 pp of the one-device run", mirrored_tolerance),
    ("within the test's 1e-5", weight_tolerance),
    ("(110 MB in `dvc.lock`)", pulled_megabytes),
]
REPRODUCIBILITY = [
    (
        "trained on a 2-core AMD EPYC, then again at the same params and thread count on a 2-core "
        "Intel Xeon",
        machines,
    ),
    ("`small`, `wide_dropout` and `cnn` came out byte-identical", byte_identical),
    ("its best epoch is 13 on the Intel Xeon against 18 on the AMD EPYC", wide_epochs),
    ("its test accuracy 98.71 % on both, its test loss 0.14446 against 0.14384", wide_test),
    ("the committed run ran at 2", committed_threads),
]
PYTHON = [
    ("CPython **3.11, 3.12 and 3.13**", makefile_pythons),
    ('`requires-python = ">=3.11,<3.14"`', requires_python),
    ("TensorFlow 2.21 among", tensorflow_minor),
    ("one lock serves 3.11, 3.12 and 3.13", lambda: f"one lock serves {listed(pythons())}"),
    ("TensorFlow 2.21.0 as `tensorflow-cpu`, Keras 3.15.1, NumPy 2.4.6, DVC 3.67.1", pipeline_pins),
    (
        "PyTorch 2.13.0, the speed benchmark's peer",
        pin("bench.txt", "torch", "PyTorch ", ", the speed benchmark's peer"),
    ),
]
TESTS = [
    ("(all 74;", mutation_count),
    ("(64 units, a `cnn` of 8 and 16 filters", tiny_models),
    ("than 90 % test accuracy after one epoch of `small`", tiny_accuracy),
    ("the others keep seed 42 in its", train_seed),
    ("the chief's model reaches 90 % validation accuracy", chief_accuracy),
    ("run's within 1e-5", lambda: weight_tolerance().replace("within the test's", "run's within")),
]
DATA = [
    (
        "(train `[5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]`, test `[980, 1135, "
        "1032, 1010, 982, 892, 958, 1028, 974, 1009]`)",
        class_counts,
    )
]
PLOTS = [
    (
        "The installed dvc-render (1.0.2)",
        pin("pipeline.txt", "dvc-render", "The installed dvc-render (", ")"),
    )
]
TUNING = [("the fourth run's 48 validation accuracies", sweep_records)]
README = [
    ("CPython 3.11, 3.12 or 3.13", readme_pythons),
    ("9,474 params; batch 64, 120 epochs", lambda: model_cells("small")),
    ("669,706 params; batch 128, 20 epochs", lambda: model_cells("wide_dropout")),
    ("184,586 params; batch 128, 15 epochs", lambda: model_cells("cnn")),
    ("two `Conv2D` blocks (32 and 64 filters of 5×5, max pooling)", cnn_blocks),
]


def seed_study_threads() -> str:
    """How many of each variant's counted seed-study records ran at each thread count."""
    names = {r["name"] for r in committed("reports/seeds_current.json")}
    records = [r for r in committed("reports/seeds.json") if r["name"] in names]
    counts = {
        threads: len([r for r in records if r["threads"] == threads]) // len(params()["models"])
        for threads in sorted({r["threads"] for r in records})
    }
    assert sum(counts.values()) == len(params()["report"]["seeds"]), counts
    (one, at_one), (two, at_two) = counts.items()
    return f"the committed records ran {WORDS[at_one]} at {one} thread and {WORDS[at_two]} at {two}"


STUDIES = [
    ("the committed records ran ten at 1 thread and three at 2", seed_study_threads),
    ("RMSprop at a constant 0.001", recipe_2016_rate),
    ("has had no worker for 30 s ends", no_worker("has had no worker for {} s ends")),
    ("had no worker for 30 s: ...`", no_worker("had no worker for {} s: ...`")),
    ("a worker's Git command over 300 s, and a run over 6 h", study_bounds),
    ("then SIGKILL after 10 s", stop_seconds),
    ("its looks every 0.2 s", stage_poll),
    ("(target: at most 1.1 ×", lambda: f"(target: at most {STAGES_TARGET} ×"),
    ("(target: at most 12 s)", lambda: f"(target: at most {OUTSIDE_TARGET} s)"),
    ("more than 12 s by themselves", lambda: f"more than {OUTSIDE_TARGET} s by themselves"),
    ("Meeting 12 s would", lambda: f"Meeting {OUTSIDE_TARGET} s would"),
    ("The execution path's target is met on every CPU", path_target),
    ("(target: at most 5 s)", lambda: f"(target: at most {PATH_TARGET} s)"),
    ("The first target is met on every CPU", stages_target),
    ("The second is missed on every CPU, and the stages alone miss it", per_run_target),
    (
        "the slower CPU of the table takes longer both in the epochs and outside them",
        slower_cpu,
    ),
]
CASES = [
    (doc, snippet, expected)
    for doc, cases in (
        ("performance.md", PERFORMANCE),
        ("scaling.md", SCALING),
        ("reproducibility.md", REPRODUCIBILITY),
        ("python.md", PYTHON),
        ("tests.md", TESTS),
        ("studies.md", STUDIES),
        ("README.md", README),
        ("plots.md", PLOTS),
        ("data.md", DATA),
        ("tuning.md", TUNING),
    )
    for snippet, expected in cases
]  # fmt: skip


def prose(doc: str) -> str:
    """The doc with its line breaks and indents read as single spaces."""
    path = REPO / doc if doc == "README.md" else REPO / "docs" / doc
    return " ".join(path.read_text().split())


@pytest.mark.parametrize(("doc", "snippet", "expected"), CASES, ids=[c[1][:50] for c in CASES])
def test_a_figure_in_the_docs_is_what_its_source_gives(
    doc: str, snippet: str, expected: Callable[[], object]
) -> None:
    assert snippet in prose(doc), f"docs/{doc} no longer says: {snippet}"
    assert snippet == expected(), f"docs/{doc} says {snippet!r}; its source gives {expected()!r}"


def test_only_wide_changed_between_the_two_machines() -> None:
    """The docs name three byte-identical models and `wide` as the one that moved."""
    assert [variant for variant, kept in models_kept().items() if not kept] == ["wide"]


def test_the_scaling_projection_is_what_the_committed_records_give() -> None:
    """docs/scaling.md's projection: benchmarks.cluster's own table from cluster.json and the
    committed records (reports/seeds.json, reports/sweep.json); regenerate it after a study."""
    doc = (REPO / "docs/scaling.md").read_text()
    assert readme_block("cluster-projection").search(doc)[2] == projection(cluster())


def test_the_study_benchmark_block_is_what_its_committed_results_give() -> None:
    """docs/studies.md's study benchmark: benchmarks.studies's own tables from studies.json."""
    doc = (REPO / "docs/studies.md").read_text()
    results = json.loads((REPO / "benchmarks/results/studies.json").read_text())
    assert readme_block("study-benchmark").search(doc)[2] == studies_markdown(results)


def test_the_onednn_and_startup_blocks_are_what_their_committed_results_give() -> None:
    """docs/performance.md's oneDNN and start-up tables, from their results files."""
    doc = (REPO / "docs/performance.md").read_text()
    onednn = read_json("benchmarks/results/onednn.json")
    assert readme_block("onednn-benchmark").search(doc)[2] == onednn_markdown(onednn)
    startup = read_json("benchmarks/results/startup.json")
    assert readme_block("startup-benchmark").search(doc)[2] == startup_markdown(startup)


def test_the_speed_table_is_what_its_committed_results_give() -> None:
    """The README's speed table, with the CPU, date and commit of its run, from
    benchmarks/results/train_speed.json; `--restate --readme README.md` rewrites it."""
    results = read_json("benchmarks/results/train_speed.json")
    readme = (REPO / "README.md").read_text()
    expected = speed_table(results["rows"], results["matmul_ceiling_gflops"], results["machine"])
    assert readme_block("speed-benchmark").search(readme)[2] == expected


def test_the_speed_history_is_what_its_committed_results_give() -> None:
    """docs/performance.md's table of every full speed run by CPU kind; the latest is the
    README's."""
    history = read_json("benchmarks/results/train_speed_history.json")
    assert history[-1] == read_json("benchmarks/results/train_speed.json")
    doc = (REPO / "docs/performance.md").read_text()
    assert readme_block("speed-history").search(doc)[2] == history_table(history)


def test_the_stage_table_is_what_its_committed_results_give() -> None:
    """docs/performance.md's stage table, with the CPU, date and commit of its run."""
    doc = (REPO / "docs/performance.md").read_text()
    assert readme_block("pipeline-benchmark").search(doc)[2] == pipeline_markdown(pipeline())


def test_the_op_profile_is_what_its_committed_results_give() -> None:
    """docs/performance.md's op profile, with the CPU, date and commit of its run."""
    results = read_json("benchmarks/results/profile_epoch.json")
    doc = (REPO / "docs/performance.md").read_text()
    expected = profile_table(results["variants"], results["machine"])
    assert readme_block("profile-benchmark").search(doc)[2] == expected


def test_the_cluster_benchmark_block_is_what_its_committed_results_give() -> None:
    """docs/performance.md's cluster table: the queue-era results of benchmarks/cluster.json,
    in the format of the commit that made them (today's benchmarks.cluster writes another)."""
    results = cluster()
    queue, dask = results["queue_jobs_2"], results["dask_workers_2"]
    block = readme_block("cluster-benchmark").search((REPO / "docs/performance.md").read_text())[2]
    for label, run in (
        ("DVC's queue, `--jobs 2`", queue),
        ("2 Dask workers, `--nthreads 1`", dask),
    ):
        assert (
            f"| {label} | {run['wall_seconds']:.0f} s | {run['training_seconds']:.0f} s "
            f"| {run['overhead_seconds_per_run']:.1f} s |"
        ) in block
    assert f"{results['runs']} runs ({', '.join(results['variants'])}; " in block
    assert f"on {results['cpu']}: the cluster took {results['cluster_over_queue']:.2f}×" in block
    steps = ("waited", "git", "pull", "experiment", "push", "task")
    for label, key in (("first on a worker (clones)", "first_on_worker"),
                       ("later (clone reused)", "clone_reused")):  # fmt: skip
        cells = " | ".join(f"{dask['task_overhead_seconds'][key][step]:.1f} s" for step in steps)
        assert f"| {label} | {cells} |" in block
