"""Stage evaluate@<variant>: test-set metrics, confusion data and images for one variant.

The params are read and checked before TensorFlow loads, so a bad value fails at once.
"""

import argparse

from stages.errors import run_stage
from stages.params import load_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("variant", help="a key of `models` in params.yaml")
    variant = parser.parse_args().variant
    params = load_params()
    params.model(variant)
    from stages.evaluation import evaluate  # TensorFlow loads here, after the params passed

    evaluate(variant)


if __name__ == "__main__":
    run_stage(main)
