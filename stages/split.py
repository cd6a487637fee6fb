"""Stage split: stratified train/validation split of the 60k training set; test is official."""

from sklearn.model_selection import train_test_split

from stages.dataset import load_raw, split_manifest
from stages.errors import run_stage
from stages.files import save_arrays, write_json
from stages.params import load_params
from stages.paths import MANIFEST_FILE, split_file


def main() -> None:
    params = load_params().split
    raw = load_raw()
    x_train, x_validation, y_train, y_validation = train_test_split(
        raw["x_train"],
        raw["y_train"],
        test_size=params.validation_size,
        stratify=raw["y_train"],
        random_state=params.seed,
    )
    splits = {
        "train": (x_train, y_train),
        "validation": (x_validation, y_validation),
        "test": (raw["x_test"], raw["y_test"]),
    }
    for name, (images, labels) in splits.items():
        save_arrays(split_file(name), x=images, y=labels)
    write_json(MANIFEST_FILE, split_manifest(splits))
    print(", ".join(f"{name}: {len(labels)}" for name, (_, labels) in splits.items()))


if __name__ == "__main__":
    run_stage(main)
