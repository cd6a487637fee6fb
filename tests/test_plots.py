"""Plots offline: `dvc plots show` and `dvc plots diff` pages rendered in headless Chromium.

Chromium comes from Debian's package (`make test` installs it), driven by Playwright, with
networking off. Each test saves a screenshot beside its pytest temporary folder.
"""

import contextlib
import re
import struct
import sys
from pathlib import Path

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

from tests.conftest import REPO, SEEDS, dvc, repo_params, run

pytestmark = pytest.mark.slow  # real processes: runs after the unit-level tests

VARIANTS = tuple(repo_params()["models"])
# Validation accuracy and loss per epoch, test accuracy over seeds, a confusion matrix a variant.
CHARTS = 3 + len(VARIANTS)
PICTURES = ("val_accuracy.png", "val_loss.png", "confusion_wide.png", "seeds.png")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
DRAWN = """expected => document.querySelectorAll('.vega-embed .marks').length >= expected
    && [...document.images].every(image => image.complete)"""
STATE = """() => ({
    charts: document.querySelectorAll('.vega-embed').length,
    drawn: [...document.querySelectorAll('.vega-embed')]
        .filter(chart => chart.querySelector('svg.marks, canvas.marks')).length,
    images: document.images.length,
    loaded: [...document.images].filter(image => image.complete && image.naturalWidth > 0).length,
})"""


def render_in_chromium(page: Path, expected_charts: int, workdir: Path) -> dict:
    """Open a local page with networking off; count the charts drawn and the images loaded."""
    requested: list[str] = []
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            workdir / "profile",
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS,
            offline=True,
        )
        try:
            tab = browser.new_page()
            tab.on("request", lambda request: requested.append(request.url))
            tab.on("pageerror", lambda error: errors.append(str(error)))
            tab.goto(page.as_uri())
            with contextlib.suppress(PlaywrightTimeout):  # the counts below say what is missing
                tab.wait_for_function(DRAWN, arg=expected_charts, timeout=30_000)
            state = tab.evaluate(STATE)
            tab.screenshot(path=workdir / "screenshot.png", full_page=True)
        finally:
            browser.close()
    return {**state, "requested": requested, "errors": errors}


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", header[16:24])


def assert_rendered_offline(state: dict, charts: int, images: int) -> None:
    assert state["errors"] == []
    assert state["charts"] == charts
    assert state["drawn"] == charts
    assert state["images"] == images
    assert state["loaded"] == images
    assert all(url.startswith(("file:", "data:", "blob:")) for url in state["requested"])


def test_plots_template_inlines_vega_and_has_no_remote_scripts(tiny_project: Path) -> None:
    template = (tiny_project / "reports" / "plots_template.html").read_text()
    assert template.count("{plot_divs}") == 1
    assert "{scripts}" not in template
    assert "window.vegaEmbed=" in template
    assert not re.search(r"<script[^>]*\bsrc=", template)


def test_plots_show_renders_every_chart_and_image_in_chromium_offline(
    tiny_project: Path, tmp_path: Path
) -> None:
    dvc("plots", "show", "-o", str(tmp_path / "show"), cwd=tiny_project)
    page = tmp_path / "show" / "index.html"
    assert not re.search(r"<script[^>]*\bsrc=", page.read_text())

    state = render_in_chromium(page, expected_charts=CHARTS, workdir=tmp_path)

    assert_rendered_offline(state, charts=CHARTS, images=2 * len(VARIANTS))
    width, height = png_size(tmp_path / "screenshot.png")
    assert width > 600 and height > 1000


def test_docs_render_writes_the_readme_pictures(tiny_copy: Path) -> None:
    run([sys.executable, "-m", "docs.render"], cwd=tiny_copy)
    for name in PICTURES:
        width, height = png_size(tiny_copy / "docs" / name)
        assert width > 300 and height > 300


def test_two_experiments_compared_with_dvc(seed_study: Path, tmp_path: Path) -> None:
    """The README's recipe on two experiments of the seed study, which differ in `train.seed`
    and retrained `wide` alone: exp show, the diffs, plots diff."""
    project = seed_study
    first, second = (f"seed-wide-s{seed}" for seed in SEEDS)
    seeds_changed = rf"train\.seed\s+{SEEDS[0]}\s+{SEEDS[1]}"
    changed = dvc("exp", "show", "--only-changed", "--csv", cwd=project).stdout
    header = changed.splitlines()[0].split(",")
    assert "train.seed" in header and "models.small.epochs" not in header
    assert re.search(seeds_changed, dvc("params", "diff", first, second, cwd=project).stdout)
    assert re.search(seeds_changed, dvc("exp", "diff", first, second, cwd=project).stdout)
    metrics_diff = dvc("metrics", "diff", first, second, cwd=project).stdout
    assert re.search(r"metrics/wide\.json\s+test\.accuracy", metrics_diff)
    assert "metrics/small.json" not in metrics_diff

    dvc("plots", "diff", first, second, "-o", str(tmp_path / "diff"), cwd=project)
    page = tmp_path / "diff" / "index.html"
    html = page.read_text()
    assert f'"rev": "{first}"' in html and f'"rev": "{second}"' in html
    state = render_in_chromium(page, expected_charts=CHARTS, workdir=tmp_path)
    assert_rendered_offline(state, charts=CHARTS, images=4 * len(VARIANTS))


def test_repo_readme_shows_the_docs_pictures() -> None:
    readme = (REPO / "README.md").read_text()
    for name in PICTURES:
        assert f"](docs/{name})" in readme
        assert png_size(REPO / "docs" / name)[0] > 300


def test_a_fresh_clone_shows_the_committed_results_after_install(tmp_path: Path) -> None:
    """What `make install` does after `git clone`: the page template, then `dvc plots show`."""
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(REPO), str(clone)], cwd=tmp_path)
    dvc("repro", "plots_template", cwd=clone)
    assert run(["git", "status", "--porcelain"], cwd=clone).stdout == ""
    dvc("plots", "show", "-o", str(tmp_path / "show"), cwd=clone)
    html = (tmp_path / "show" / "index.html").read_text()
    assert "Test accuracy over seeds" in html and '"variant": "wide_dropout"' in html
    shown = dvc("metrics", "show", cwd=clone).stdout
    assert all(f"metrics/{variant}.json" in shown for variant in VARIANTS)
