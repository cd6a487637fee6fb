"""Where every file of the pipeline lives: dvc.yaml names the same paths."""

from pathlib import Path

RAW_FILE = Path("data/raw/mnist.npz")
SPLIT_DIR = Path("data/split")
MANIFEST_FILE = SPLIT_DIR / "manifest.json"
SPLITS = ("train", "validation", "test")
REPORTS_DIR = Path("reports")
SUMMARY_FILE = REPORTS_DIR / "summary.md"
HISTORY_TABLE_FILE = REPORTS_DIR / "history.csv"  # every variant's history, for DVC plots
CHART_FILE = REPORTS_DIR / "val_accuracy.png"
SEEDS_FILE = REPORTS_DIR / "seeds.json"  # written by `python -m tools.seed_study`
RECIPE_2016_FILE = REPORTS_DIR / "recipe_2016.json"  # the seed study of 2016's own recipe
SEEDS_CURRENT_FILE = REPORTS_DIR / "seeds_current.json"  # its records of today's code and params
TEMPLATE_FILE = REPORTS_DIR / "plots_template.html"


def split_file(name: str) -> Path:
    return SPLIT_DIR / f"{name}.npz"


def model_file(variant: str) -> Path:
    return Path("models") / f"{variant}.keras"


def history_file(variant: str) -> Path:
    return Path("history") / f"{variant}.csv"


def training_file(variant: str) -> Path:
    """The train stage's record: best epoch, epochs run, timings and environment."""
    return Path("history") / f"{variant}.json"


def training_metrics_file(variant: str) -> Path:
    """The train stage's DVC metrics: validation only, so a sweep shows in `dvc exp show`."""
    return Path("metrics/train") / f"{variant}.json"


def metrics_file(variant: str) -> Path:
    return Path("metrics") / f"{variant}.json"


def plots_dir(variant: str) -> Path:
    return Path("plots") / variant
