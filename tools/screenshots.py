"""Screenshots of built book pages, as a reader first sees them (1280 x 800), for the README and docs/.

    python tools/screenshots.py _build/html docs/screenshots book/intro book/fig1_brain_to_lung

Uses Playwright with the system's Chromium (Debian's `chromium` package); nothing is downloaded.
"""
from __future__ import annotations

import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

from browser_check import CHROMIUM_ARGS, INSTALL_HINT, find_chromium  # tools/ is this script's folder


def shoot(html: Path, out: Path, pages: list[str], width: int = 1280, height: int = 800) -> list[Path]:
    """One PNG of the first screen of each page (`book/intro` -> `<out>/intro.png`)."""
    out.mkdir(parents=True, exist_ok=True)
    done = []
    with sync_playwright() as p:
        executable = find_chromium()
        if executable is None:
            raise SystemExit("no Chromium executable found; " + INSTALL_HINT)
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": width, "height": height})
        for name in pages:
            page.goto((html / f"{name}.html").resolve().as_uri())
            page.wait_for_load_state("networkidle")
            png = out / f"{Path(name).name}.png"
            page.screenshot(path=str(png))
            done.append(png)
        browser.close()
    return done


if __name__ == "__main__":
    html, out, *names = sys.argv[1:]
    for png in shoot(Path(html), Path(out), names):
        print(png)
