"""Stage plots_template: an HTML template for `dvc plots show` that renders with no network.

DVC's default page loads vega, vega-lite and vega-embed from a CDN. This template inlines the
same libraries from the installed vl-convert-python package and leaves out `{scripts}`, so the
CDN tags never appear. `.dvc/config` points `plots.html_template` at the file written here.
"""

import vl_convert

from stages.errors import StageError, run_stage
from stages.files import write_text
from stages.paths import TEMPLATE_FILE

# DVC's plot templates are written for Vega-Lite 5, as are the CDN scripts it would load.
VEGA_LITE_VERSION = "5.21"

PAGE = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<title>DVC Plots</title>
<script>
{bundle}
</script>
<style>
table { border-spacing: 15px; }
</style>
</head>
<body>
{plot_divs}
</body>
</html>
"""


def page(bundle: str) -> str:
    """The template: dvc-render replaces `{plot_divs}` (and nothing else here) with the charts."""
    placeholders = ("{plot_divs}", "{scripts}", "{refresh_tag}")
    if "</script" in bundle.lower() or any(name in bundle for name in placeholders):
        raise StageError(
            "this vl-convert-python's JavaScript bundle cannot be inlined in a <script> element",
            "pin the version that last worked in the locks (requirements/)",
        )
    return PAGE.replace("{bundle}", bundle)


def main() -> None:
    bundle = vl_convert.javascript_bundle(vl_version=VEGA_LITE_VERSION)
    write_text(TEMPLATE_FILE, page(bundle))
    print(f"wrote {TEMPLATE_FILE}: vega-lite {VEGA_LITE_VERSION}, {len(bundle):,} bytes of JS")


if __name__ == "__main__":
    run_stage(main)
