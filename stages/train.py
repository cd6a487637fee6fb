"""Stage train@<variant>: fit one variant, keeping the epoch with the best validation accuracy.

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
    from stages.training import train  # TensorFlow loads here, after the params passed

    train(variant, params)


if __name__ == "__main__":
    run_stage(main)
