"""The comparison page in a real browser (`make test-browser`, which installs Chromium from
the system's packages): headless Chromium renders report.html; the screenshot is not blank
and the page logs no console error."""

import shutil
import subprocess

import imageio.v3 as iio
import numpy as np
import pytest

pytestmark = pytest.mark.browser


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return name
    pytest.fail("no Chromium on this machine: run `make test-browser`, which installs it")


def test_the_comparison_page_renders_in_chromium_without_console_errors(tmp_path):
    from pi0bench.compare import CompareConfig, compare

    out = tmp_path / "compare"
    compare(CompareConfig(policies=("scripted", "hold"), tasks=("drawer_tidy",), out=out, episodes=2,
                          image_size=32, videos=1))
    shot = tmp_path / "page.png"
    result = subprocess.run(
        [_chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--screenshot={shot}", "--window-size=1200,1600", "--enable-logging=stderr", "--v=0",
         (out / "report.html").as_uri()], capture_output=True, text=True, timeout=120)
    assert shot.is_file(), result.stderr[-2000:]
    # the page has no scripts, so any console line at all is a fault (Chromium logs
    # console.error and uncaught exceptions alike as INFO:CONSOLE lines; checked on a page with both)
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console
    pixels = iio.imread(shot)[..., :3].astype(float)
    assert pixels.std() > 20 and (pixels < 128).mean() > 0.01  # text, tables and figures, not blank
