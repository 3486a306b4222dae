"""`halo bench report` rendered by a real headless Chromium: the DOM holds the charts and the
screenshot shows them."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: `make test` installs it (scripts/ensure-test-tools)")
        pytest.skip("chromium is not installed (`make test` installs it with apt-get when root)")
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'chromium-profile'}", *args],
        capture_output=True, text=True, timeout=180)


def test_report_renders_in_chromium(halo, smoke_model, tmp_path):
    done = halo("bench", "run", "-m", str(smoke_model.path), "--pp", "16", "--tg", "4", "--reps", "2",
                "--kv-types", "f16,q8_0", "--depths", "0,64", "--ctx-prompt", "16", "--json")
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    out = tmp_path / "report"
    done = halo("bench", "report", run["path"], "-o", str(out))
    assert done.returncode == 0, done.stderr
    page = out / "index.html"
    assert done.stdout.strip() == str(page)
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["bars-pp16.png", "bars-tg4.png", "depth-pp.png", "depth-tg.png"]
    assert all((out / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    html = page.read_text()
    # self-contained: nothing is loaded from anywhere (the SVGs' xmlns URIs are names, not loads)
    assert not re.search(r"""(src|href)=["']?(https?:|//|file:)""", html) and "<script" not in html
    assert "<link" not in html
    # every row names its test group: the standard tg4 and the depth-0 tg4 are two rows
    assert "<th>group</th>" in html
    assert re.findall(r"<td>(std|ctx)</td><td>f16</td><td>tg4</td>", html) == ["std", "ctx"]

    dom = chromium(tmp_path, "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr
    figures = dom.stdout.split('<figure class="chart"')[1:]
    assert len(figures) == 4 and all("<svg" in f for f in figures)
    assert 'id="depth-tg"' in dom.stdout and "tg4 @ d64" in dom.stdout
    assert dom.stdout.count("<tr>") == 1 + len(run["results"])

    shot = tmp_path / "shot.png"
    result = chromium(tmp_path, "--window-size=1200,3000", f"--screenshot={shot}", page.as_uri())
    assert result.returncode == 0 and shot.is_file(), result.stderr
    from PIL import Image

    image = Image.open(shot).convert("RGB")
    colors = {c for _n, c in image.getcolors(maxcolors=1 << 20)}
    assert (31, 119, 180) in colors and (255, 127, 14) in colors  # the two KV series' bars
    assert len(colors) > 50  # a rendered page, not a blank one
