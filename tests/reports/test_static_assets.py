"""Report pages draw charts with Chart.js served by affnet itself (copied from the npm package by
`make install`), never from a CDN, and the chart and date-range partials escape whatever they hold."""

from __future__ import annotations

import json
import re
from datetime import date
from html.parser import HTMLParser
from types import SimpleNamespace

import pytest

from server.core.settings import ROOT

HOSTILE_SPEC = {
    "type": "bar",
    "labels": ["2026-11-01", "<script>alert('x')</script>", "Bob's & Alice's"],
    "series": [
        {"label": "Clicks </canvas><script>", "data": [1, 2, 3], "axis": "count"},
        {"label": "Earnings (EUR) ' \" &amp;", "data": [12.5, None, 0.1], "axis": "money"},
    ],
    "stacked": False,
}


class Elements(HTMLParser):
    """Every start tag with its attributes, as a browser would read them (entities decoded)."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.tags if name == tag]


def macros(app, template: str):
    """A partial's macros, rendered by the app's own Jinja environment (autoescaped, as in pages)."""
    env = app.template_engine.engine
    assert env.autoescape is True
    return env.get_template(template).module


async def test_chart_js_is_served_by_affnet_itself(client):
    response = await client.get("/static/vendor/chart.umd.js")
    assert response.status_code == 200, "static/vendor/chart.umd.js is missing: run `make install`"
    assert "javascript" in response.headers["content-type"]
    assert "Chart" in response.text
    assert (ROOT / "static" / "vendor" / "chart.js.LICENSE.md").is_file()


@pytest.mark.parametrize("path", ["/static/charts.js", "/static/reports.js"])
async def test_the_report_scripts_are_served(client, path):
    response = await client.get(path)
    assert response.status_code == 200
    assert "javascript" in response.headers["content-type"]


async def test_a_chart_spec_survives_hostile_labels_intact_and_inert(app):
    html = str(macros(app, "partials/chart.html").chart(HOSTILE_SPEC, "Clicks <script> & 'earnings'", height=300))

    assert "<script" not in html
    assert "</canvas><script>" not in html
    canvases = Elements(html).all("canvas")
    assert len(canvases) == 1
    canvas = canvases[0]
    assert json.loads(canvas["data-chart"]) == HOSTILE_SPEC
    assert canvas["role"] == "img"
    assert canvas["aria-label"] == "Clicks <script> & 'earnings'"
    assert canvas["height"] == "300"


async def test_the_chart_scripts_macro_loads_chart_js_before_charts_js(app):
    html = str(macros(app, "partials/chart.html").chart_scripts())
    sources = [attrs["src"] for attrs in Elements(html).all("script")]
    assert sources == ["/static/vendor/chart.umd.js", "/static/charts.js"]
    assert all("defer" in attrs for attrs in Elements(html).all("script"))


async def test_the_range_form_is_a_labelled_get_form_that_keeps_the_period(app):
    period = SimpleNamespace(start=date(2026, 11, 1), end=date(2026, 11, 30), tz_name="Asia/Tokyo")
    html = str(
        macros(app, "partials/report_range.html").range_form(
            period, ["UTC", "Europe/Paris"], action="/publisher/reports?x=<'>"
        )
    )
    page = Elements(html)

    form = page.all("form")[0]
    assert form["method"] == "get" and form["action"] == "/publisher/reports?x=<'>"
    inputs = {attrs["name"]: attrs for attrs in page.all("input")}
    assert inputs["from"]["type"] == "date" and inputs["from"]["value"] == "2026-11-01"
    assert inputs["to"]["type"] == "date" and inputs["to"]["value"] == "2026-11-30"
    # The period's zone is kept (and selected) even when it is not among the offered zones.
    options = page.all("option")
    assert [o["value"] for o in options] == ["Asia/Tokyo", "UTC", "Europe/Paris"]
    assert [o["value"] for o in options if "selected" in o] == ["Asia/Tokyo"]
    # Every field has a real <label for>.
    ids = {attrs["id"] for tag, attrs in page.tags if tag in ("input", "select")}
    assert {attrs["for"] for attrs in page.all("label")} == ids
    presets = [attrs["data-preset"] for attrs in page.all("button") if "data-preset" in attrs]
    assert presets == ["today", "last-7-days", "last-30-days", "this-month", "last-month"]


def test_no_template_or_script_loads_anything_from_another_origin():
    remote = r"""["']?\s*(?:https?:)?//"""
    tag_source = re.compile(rf"<script\b[^>]*\bsrc\s*=\s*{remote}|<link\b[^>]*\bhref\s*=\s*{remote}", re.I)
    css_source = re.compile(rf"@import\s+(?:url\(\s*)?{remote}|url\(\s*{remote}", re.I)
    # A string literal in script code (comments dropped) holding a remote script or stylesheet.
    strings_or_comments = re.compile(
        r"""("(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'|`(?:\\.|[^`\\])*`)"""
        r"""|/\*[\s\S]*?\*/|//[^\n]*"""
    )
    remote_asset = re.compile(r"""^["'`](?:https?:)?//[^"'`]*\.(?:m?js|css)(?:[?#][^"'`]*)?["'`]$""", re.I)

    offenders = []
    for path in sorted((ROOT / "templates").rglob("*.html")):
        if tag_source.search(path.read_text()):
            offenders.append(path)
    for path in sorted((ROOT / "static").glob("*.css")):
        if css_source.search(path.read_text()):
            offenders.append(path)
    for path in sorted((ROOT / "static").glob("*.js")):
        literals = [m.group(1) for m in strings_or_comments.finditer(path.read_text()) if m.group(1)]
        if any(remote_asset.match(s) for s in literals):
            offenders.append(path)
    assert offenders == [], "load scripts and styles from /static (npm package + make install), not a CDN"


def test_chart_js_4_and_pdf_js_are_the_pinned_dependencies():
    """Chart.js draws the reports' charts; pdf.js reads documents' PDFs back in the browser check
    (tests/e2e/test_document_pdfs.py). Both pinned, both served from /static/vendor."""
    package = json.loads((ROOT / "package.json").read_text())
    lock = json.loads((ROOT / "package-lock.json").read_text())
    assert package["private"] is True
    assert sorted(package["dependencies"]) == ["chart.js", "pdfjs-dist"]
    assert lock["packages"][""]["dependencies"] == package["dependencies"]
    assert lock["packages"]["node_modules/chart.js"]["version"].startswith("4.")
    assert lock["packages"]["node_modules/pdfjs-dist"]["version"] == package["dependencies"]["pdfjs-dist"]
