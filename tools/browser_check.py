"""Open every page of a built Jupyter Book in headless Chromium and list what a reader would see broken.

`check_site(html_dir)` returns one message per defect, each naming the page (relative to `html_dir`) and
the defect:

  (a) layout: the page is wider than the 1280 px viewport, or a <table> in the article sticks out of the
      content column (`article.bd-article`, else `main`), by how many px;
  (b) an <img> that did not load, or a file:// request that failed (a missing stylesheet, script, image);
  (c) a broken internal link: a relative or file:// href whose file does not exist, whose #fragment names
      no element of the target page, or which leads out of the built book;
  (d) a JavaScript console error or an uncaught exception;
  (e) an executed output that is a traceback, an error block, stderr with 'Error', or an object repr
      (`<pandas.io.formats.style.Styler object at 0x...>`, `<Figure size ...>`, `<matplotlib...>`).

Pages are opened as file:// URLs (no server): the book is static, its scripts load with <script> tags and
fetch nothing, so nothing that file:// forbids (fetch/XHR across files) is needed. Requests to any other
scheme (a CDN's MathJax, thebe) are aborted, so the check is the same with or without a network; the
browser's "Failed to load resource" console lines for those are not defects.

Used by tests/test_browser.py and tools/screenshots.py; also runnable by hand: `python tools/browser_check.py _build/html`.
"""
from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

WIDTH, HEIGHT = 1280, 900
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
INSTALL_HINT = ("install the browser check's requirements: `pip install playwright` (in .venv: "
                "`pip install -e '.[test]'`; no `playwright install` needed, it drives the system's Chromium) "
                "and Chromium (`sudo apt-get install chromium`, or set LESIONLIB_CHROMIUM to a Chromium/Chrome "
                "executable); or, by hand only, skip the browser checks with LESIONLIB_SKIP_BROWSER=1")

# (e) what an executed output must not show
TRACEBACK = re.compile(r"Traceback \(most recent call last\)")
REPRS = [re.compile(p) for p in (r"<[\w.]+ object at 0x[0-9a-fA-F]+>", r"<Figure size [^>\n]*>",
                                 r"<matplotlib[^>\n]*>", r"<Axes(?:Subplot)?: [^>\n]*>")]
ERROR_WORD = re.compile(r"\b\w*Error\b")

# Runs in the page once it has loaded: everything the checks need, as plain data.
_PROBE = r"""async () => {
  const imgs = [...document.images];
  for (const img of imgs) if (img.loading === "lazy") img.loading = "eager";  // load what is below the fold too
  await Promise.all(imgs.map(img => img.complete ? null : new Promise(done => {
    img.addEventListener("load", done); img.addEventListener("error", done); setTimeout(done, 5000);
  })));
  const describe = el => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "")
    + (typeof el.className === "string" && el.className.trim() ? "." + el.className.trim().split(/\s+/).join(".") : "");
  const text = el => (el ? el.textContent : "").replace(/\s+/g, " ").trim();
  const column = document.querySelector("article.bd-article") || document.querySelector("main")
    || document.body;
  const right = column.getBoundingClientRect().right;
  const tables = [...column.querySelectorAll("table")].map(t => {
    const r = t.getBoundingClientRect();
    const head = t.querySelector("thead tr") || t.querySelector("tr");
    const cells = head ? [...head.children].map(text).filter(Boolean) : [];
    const label = text(t.querySelector("caption")) || cells.slice(0, 6).join(" | ") || text(t.querySelector("td"));
    const section = t.closest("section[id]");
    return {right: r.right, width: r.width, label: label.slice(0, 80),
            where: [section ? "section #" + section.id : "", t.id ? "table #" + t.id : ""].filter(Boolean).join(", ")};
  });
  const viewport = window.innerWidth, scroll = document.documentElement.scrollWidth;
  let widest = null;
  if (scroll > viewport) {
    let max = viewport;
    for (const el of document.body.querySelectorAll("*")) {
      const r = el.getBoundingClientRect().right + window.scrollX;
      if (r > max) { max = r; widest = describe(el) + ` (right edge ${Math.round(r)} px)`; }
    }
  }
  const outputs = [...document.querySelectorAll(".output, .cell_output")]
    .filter(el => el.matches(".output") || !el.querySelector(".output"))
    .map(el => ({cls: typeof el.className === "string" ? el.className : "", text: el.textContent}));
  return {
    scrollWidth: scroll, innerWidth: viewport, columnRight: right, column: describe(column), widest, tables,
    brokenImages: imgs.filter(i => i.complete && i.naturalWidth === 0).map(i => i.getAttribute("src") || ""),
    links: [...document.querySelectorAll("a[href]")].map(a => ({raw: a.getAttribute("href"), url: a.href})),
    ids: [...document.querySelectorAll("[id]")].map(e => e.id)
      .concat([...document.querySelectorAll("a[name]")].map(a => a.getAttribute("name"))),
    outputs,
  };
}"""

_REFRESH = re.compile(r"""<meta\s+http-equiv=["']?refresh["']?\s+content=["']?\d+\s*;\s*url=([^"'>\s]+)""", re.I)
_ID_ATTR = re.compile(r"""\b(?:id|name)\s*=\s*["']([^"']+)["']""", re.I)


def find_chromium() -> str | None:
    """$LESIONLIB_CHROMIUM, else chromium / chromium-browser / google-chrome on the PATH."""
    env = os.environ.get("LESIONLIB_CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def missing_requirements() -> str | None:
    """Why the browser check cannot run here (None when it can)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the Python package `playwright` is not installed; " + INSTALL_HINT
    if find_chromium() is None:
        return "no Chromium executable found; " + INSTALL_HINT
    return None


def _pages(root: Path) -> list[Path]:
    """Every HTML page of the build (not the copied sources, images or theme files under `_*/`)."""
    return sorted(p for p in root.rglob("*.html") if not p.relative_to(root).parts[0].startswith("_"))


def _file_ids(path: Path, cache: dict) -> set:
    """The ids (and a[name]s) of an HTML file, read from its source: for link targets no page visit saw."""
    if path not in cache:
        try:
            cache[path] = set(_ID_ATTR.findall(path.read_text(errors="replace")))
        except OSError:
            cache[path] = set()
    return cache[path]


def _rel(root: Path, path: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _url_path(url: str) -> Path:
    return Path(unquote(urlsplit(url).path))


def _check_links(root: Path, name: str, links, ids: dict, seen: dict) -> list[str]:
    """(c) each relative or file:// link: its file exists inside the build, its #fragment has an element."""
    out = []
    for link in links:
        raw, url = link["raw"].strip(), link["url"]
        if not raw or not url.startswith("file:"):
            continue  # http(s), mailto, javascript: ... are not the build's
        target, fragment = _url_path(url), unquote(urlsplit(url).fragment)
        where = f"{name}: (c) link {raw!r}"
        if target != root and root not in target.parents:
            out.append(f"{where} leads out of the built book (to {target})")
            continue
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            out.append(f"{where}: {_rel(root, target)} does not exist")
            continue
        if fragment and target.suffix == ".html":
            known = ids[target] if target in ids else _file_ids(target, seen)
            if fragment not in known:
                out.append(f"{where}: no element with id {fragment!r} in {_rel(root, target)}")
    return out


def _check_layout(name: str, probe: dict) -> list[str]:
    """(a) no horizontal scrolling of the page, no table beyond the content column."""
    out = []
    if probe["scrollWidth"] > probe["innerWidth"]:
        culprit = f"; widest element: {probe['widest']}" if probe["widest"] else ""
        out.append(f"{name}: (a) the page is {probe['scrollWidth']} px wide, wider than the "
                   f"{probe['innerWidth']} px viewport by {probe['scrollWidth'] - probe['innerWidth']} px{culprit}")
    for t in probe["tables"]:
        excess = t["right"] - probe["columnRight"]
        if t["width"] > 0 and excess > 0.5:
            where = f" ({t['where']})" if t["where"] else ""
            out.append(f"{name}: (a) table {t['label']!r}{where} extends {excess:.0f} px beyond the right edge "
                       f"of the content column ({probe['column']}, {probe['columnRight']:.0f} px)")
    return out


def _check_outputs(name: str, outputs) -> list[str]:
    """(e) tracebacks, error blocks, stderr with 'Error', and object reprs in executed outputs."""
    out = []
    for o in outputs:
        cls, text = set(o["cls"].split()), o["text"]
        first = next((ln.strip() for ln in text.splitlines() if ERROR_WORD.search(ln)), text.strip()[:120])[:160]
        if TRACEBACK.search(text):
            out.append(f"{name}: (e) a traceback in an output: {first!r}")
        elif cls & {"traceback", "error"}:
            out.append(f"{name}: (e) an error output: {first!r}")
        elif "stderr" in cls and ERROR_WORD.search(text):
            out.append(f"{name}: (e) stderr output with an error: {first!r}")
        for pattern in REPRS:
            for m in pattern.finditer(text):
                out.append(f"{name}: (e) an object repr in an output: {m.group(0)[:160]!r}")
    return out


def check_site(html_dir, width: int = WIDTH, height: int = HEIGHT, executable: str | None = None) -> list[str]:
    """Open every page of the built book `html_dir` in headless Chromium; return its defects (none: [])."""
    from playwright.sync_api import sync_playwright

    root = Path(html_dir).resolve()
    if not (root / "index.html").is_file() and not _pages(root):
        return [f"{root}: no HTML pages (is this a built book's html folder?)"]
    executable = executable or find_chromium()
    if executable is None:
        raise RuntimeError("no Chromium executable found; " + INSTALL_HINT)
    defects, links, ids, seen = [], {}, {}, {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": width, "height": height})
            blocked = set()

            def block(route):
                blocked.add(route.request.url)
                route.abort()

            # hermetic: nothing but the build's own files (and inline data) is loaded
            context.route(lambda url: not url.startswith(("file:", "data:", "blob:", "about:")), block)
            for path in _pages(root):
                name = _rel(root, path)
                refresh = _REFRESH.search(path.read_text(errors="replace")[:2000])
                if refresh:  # a redirect page (index.html): only its target is checked, as a link
                    links[path] = (name, [{"raw": refresh.group(1), "url": urljoin(path.as_uri(), refresh.group(1))}])
                    continue
                defects += _visit(context, root, path, name, blocked, links, ids)
        finally:
            browser.close()
    for name, page_links in links.values():
        defects += _check_links(root, name, page_links, ids, seen)
    # one message per defect, grouped by page
    return sorted(dict.fromkeys(defects), key=lambda message: message.partition(": ")[0])


def _visit(context, root: Path, path: Path, name: str, blocked: set, links: dict, ids: dict) -> list[str]:
    out, console, errors, failed = [], [], [], []
    page = context.new_page()
    page.on("console", lambda msg: msg.type == "error" and console.append((msg.text, msg.location or {})))
    page.on("pageerror", lambda err: errors.append(err.message))
    page.on("requestfailed", lambda req: req.url.startswith("file:") and failed.append((req.url, req.failure)))
    try:
        page.goto(path.as_uri(), wait_until="load")
        probe = page.evaluate(_PROBE)
        page.wait_for_timeout(100)  # late messages of deferred scripts
    finally:
        page.close()
    out += _check_layout(name, probe)
    out += [f"{name}: (b) image did not load: {src!r}" for src in probe["brokenImages"]]
    out += [f"{name}: (b) request failed: {_rel(root, _url_path(url))} ({why})" for url, why in failed]
    for text, location in console:
        where = location.get("url", "")
        if text.startswith("Failed to load resource") and (where in blocked or where in dict(failed)):
            continue  # an aborted request elsewhere than the build, or a failed file reported under (b)
        at = where and (_rel(root, _url_path(where)) if where.startswith("file:") else where)
        at = f" (at {at}:{location.get('lineNumber')})" if at else ""
        out.append(f"{name}: (d) console error: {text[:300]}{at}")
    out += [f"{name}: (d) uncaught JavaScript error: {message[:300]}" for message in errors]
    out += _check_outputs(name, probe["outputs"])
    links[path] = (name, probe["links"])
    ids[path] = set(probe["ids"])
    return out


if __name__ == "__main__":
    import time

    t0 = time.perf_counter()
    found = check_site(sys.argv[1] if len(sys.argv) > 1 else "_build/html")
    print("\n".join(found) or "no defects", f"\n({len(found)} defects, {time.perf_counter() - t0:.1f} s)")
    sys.exit(1 if found else 0)
