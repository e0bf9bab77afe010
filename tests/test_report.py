"""``classicnets report``: the page of a run, opened in a real (headless) browser.

The run is written the way ``classicnets train`` leaves it (test_evaluate_cli's write_run,
plus metrics.csv and per-class accuracy in summary.json) and its images come from the small
synthetic dataset that stands in for ``build_data`` there. Chromium is Debian's package
(.ci/run installs it when missing); only the browser checks skip without it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import classicnets.data
from classicnets.cli.main import main
from classicnets.engine.reports import write_metrics_csv

from test_evaluate_cli import CLASSES, synthetic_build_data, write_run

SECTION_IDS = ("config", "curves", "accuracy", "confusion", "mistakes", "cam", "tsne", "model")
SMALL = ["--device", "cpu", "--batch-size", "16", "--limit", "24", "--tsne-points", "20", "--cam-per-class", "1",
         "--mistakes", "5", "--quiet"]


def chromium() -> str | None:
    return next((found for name in ("chromium", "chromium-browser", "google-chrome")
                 if (found := shutil.which(name))), None)


def rendered_body(page: Path, profile: Path) -> tuple[dict[str, str], str]:
    """(attributes of <body>, the DOM) after the page's scripts ran, in headless Chromium with
    every host name unresolvable: an image fetched from the network would not load."""
    browser = chromium()
    if browser is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium); the page is not opened")
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={profile}",
               "--virtual-time-budget=10000", "--dump-dom", page.as_uri()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    body = re.search(r"<body([^>]*)>", result.stdout)
    assert body is not None, result.stdout[:2000]
    return dict(re.findall(r'([\w-]+)="([^"]*)"', body.group(1))), result.stdout


def section_states(html: str) -> dict[str, bool]:
    """Section id -> whether it says its inputs are missing."""
    return {match.group(1): "data-missing" in match.group(2)
            for match in re.finditer(r'<section id="([\w-]+)"([^>]*)>', html)}


@pytest.fixture(scope="module")
def full_report(module_tmp_path) -> tuple[Path, str]:
    """A finished run with metrics.csv and per-class accuracy, and its report at the defaults' place."""
    # The run says fashion-mnist (a dataset the registry knows); build_data gives the synthetic images.
    run = write_run(module_tmp_path / "googlenet-toy", dataset="fashion-mnist")
    write_metrics_csv(run / "metrics.csv", [
        {"epoch": epoch, "train_loss": 1.5 / epoch, "train_acc": 0.3 * epoch, "val_loss": 1.4 / epoch,
         "val_acc": 0.25 * epoch, "lr": 0.01, "epoch_seconds": 3.0, "images_per_s": 100.0} for epoch in (1, 2)])
    summary = json.loads((run / "summary.json").read_text())
    summary["per_class_test_accuracy"] = {name: 0.25 for name in CLASSES}
    (run / "summary.json").write_text(json.dumps(summary))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(classicnets.data, "build_data", synthetic_build_data)
        assert main(["report", str(run), *SMALL]) == 0
    page = run / "report.html"
    return page, page.read_text(encoding="utf-8")


def test_report_has_every_section_and_only_embedded_images(full_report):
    _, html = full_report
    assert section_states(html) == {name: False for name in SECTION_IDS}
    # curves, confusion (drawn from the scored images: the run has no confusion_matrix.png),
    # up to 5 mistakes, one Grad-CAM image for each of the 4 classes, t-SNE
    expected = int(re.search(r'data-images-expected="(\d+)"', html).group(1))
    sources = re.findall(r'<img [^>]*src="([^"]*)"', html)
    assert len(sources) == expected and 7 <= expected <= 12
    assert all(src.startswith("data:image/png;base64,") for src in sources)
    assert "http://" not in html and "https://" not in html and "<link" not in html
    assert "25.00%" in html  # per-class accuracy from summary.json
    assert "first 24 test images scored for this report" in html


def test_report_opens_in_a_browser_with_every_image_loaded(full_report, tmp_path):
    page, _ = full_report
    body, dom = rendered_body(page, tmp_path / "profile")
    assert body["data-images-total"] == body["data-images-expected"], body
    assert body["data-images-loaded"] == body["data-images-total"], body
    for name in SECTION_IDS:
        assert f'id="{name}"' in dom


def test_missing_inputs_are_said_in_the_page(tmp_path, capsys):
    """No summary.json (the run has not tested), no metrics.csv, no data: the page still
    comes, saying what is missing; markup in the run's files is shown as text."""
    run = write_run(tmp_path / "unfinished", dataset="fashion-mnist")
    (run / "summary.json").unlink()
    with open(run / "config.yaml", "a", encoding="utf-8") as handle:
        handle.write("# <script>alert(1)</script>\n")
    out = tmp_path / "pages" / "unfinished.html"
    no_data = tmp_path / "no-data"
    no_data.mkdir()
    assert main(["report", str(run), "--out", str(out), "--data-dir", str(no_data), *SMALL]) == 0
    html = out.read_text(encoding="utf-8")
    assert section_states(html) == {"config": False, "curves": True, "accuracy": True, "confusion": True,
                                    "mistakes": True, "cam": True, "tsne": True, "model": False}
    assert "no summary.json: the run has not finished its test" in html
    assert "could not be loaded" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert" not in html
    assert not (run / "report.html").exists()
    capsys.readouterr()
    for name in ("config.yaml", "summary.json", "best.safetensors"):  # summary.json: not written yet, still the run's
        assert main(["report", str(run), "--out", str(run / name), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert f"the run's own {name}" in err and "Traceback" not in err


def test_cli_defaults_are_the_library_defaults():
    from classicnets.analysis.report import ReportOptions
    from classicnets.cli import report

    options = ReportOptions()
    assert (report.DEFAULT_LIMIT, report.DEFAULT_MISTAKES, report.DEFAULT_CAM_PER_CLASS, report.DEFAULT_TSNE_POINTS) \
        == (options.limit, options.mistakes, options.cam_per_class, options.tsne_points)
