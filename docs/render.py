"""Render DVC's own charts of the current results to PNG for the README.

    python -m docs.render    (or `make docs`)

It asks `dvc plots show --json` for the Vega-Lite specs that `dvc plots show` draws, with the
data filled in from the workspace (the committed results on a clean checkout), and renders the
chosen charts with vl-convert.
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import vl_convert

from stages.errors import StageError, run_stage
from stages.files import atomic_output
from stages.plots_template import VEGA_LITE_VERSION

DOCS_DIR = Path("docs")
CHARTS = {
    "Validation accuracy per epoch": DOCS_DIR / "val_accuracy.png",
    "Validation loss per epoch": DOCS_DIR / "val_loss.png",
    "plots/wide/predictions.csv": DOCS_DIR / "confusion_wide.png",
    "Test accuracy over seeds": DOCS_DIR / "seeds.png",
}


def vega_lite_specs() -> dict[str, dict]:
    """Each vega plot that `dvc plots show` would draw, by its id, as a Vega-Lite spec."""
    with tempfile.TemporaryDirectory() as copies:  # where DVC copies the image plots
        shown = subprocess.run(
            [sys.executable, "-m", "dvc", "plots", "show", "--json", "-o", copies],
            capture_output=True,
            text=True,
        )
    if shown.returncode != 0:
        raise StageError(
            f"dvc plots show failed: {shown.stderr.strip().splitlines()[-1]}",
            "run it yourself to see why",
        )
    plots = json.loads(shown.stdout)["data"]
    return {
        plot_id: renders[0]["content"]
        for plot_id, renders in plots.items()
        if renders and renders[0]["type"] == "vega"
    }


def main() -> None:
    specs = vega_lite_specs()
    for plot_id, path in CHARTS.items():
        if plot_id not in specs:
            raise StageError(
                f"dvc plots show has no plot {plot_id!r}; it has {sorted(specs)}",
                "update CHARTS in docs/render.py",
            )
        png = vl_convert.vegalite_to_png(specs[plot_id], scale=2, vl_version=VEGA_LITE_VERSION)
        with atomic_output(path) as temporary:
            temporary.write_bytes(png)
        print(f"wrote {path}")


if __name__ == "__main__":
    run_stage(main)
