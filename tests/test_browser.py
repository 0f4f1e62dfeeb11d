"""The built book as a reader sees it: every page of the smoke book in headless Chromium at 1280 px
(tools/browser_check.py says what is checked).

Needs the `playwright` package (the `test` extra) and a Chromium (`apt-get install chromium`; `.ci/run`
installs it); no browser is downloaded. Without them these tests FAIL. A developer may skip them by hand
with LESIONLIB_SKIP_BROWSER=1; LESIONLIB_BOOK_HTML=_build/html checks an already built book (e.g. the
quick one) instead of building the smoke book.

The smoke book is the session's `smoke_book` (tests/conftest.py), built once for this test and for
tests/test_book.py's strict-build test.
"""
import base64
import os
import time
from pathlib import Path

import pytest

from browser_check import check_site, missing_requirements


@pytest.fixture(scope="session")
def chromium():
    if os.environ.get("LESIONLIB_SKIP_BROWSER") == "1":
        pytest.skip("LESIONLIB_SKIP_BROWSER=1: the browser checks of the book are skipped")
    why = missing_requirements()
    if why:
        pytest.fail(f"the browser check cannot run: {why}", pytrace=False)


@pytest.fixture(scope="session")
def book_html(chromium, request):
    """$LESIONLIB_BOOK_HTML, or the session's smoke book (pages executed, `jupyter-book build -W`)."""
    given = os.environ.get("LESIONLIB_BOOK_HTML")
    if given:
        html = Path(given)
        assert (html / "index.html").is_file(), f"LESIONLIB_BOOK_HTML={given}: no index.html there"
        return html
    out, _ = request.getfixturevalue("smoke_book")
    return out / "_build" / "html"


@pytest.mark.browser
def test_every_page_of_the_book_renders_cleanly_in_chromium(book_html):
    t0 = time.perf_counter()
    defects = check_site(book_html)
    seconds = time.perf_counter() - t0
    assert not defects, (f"{len(defects)} defects in {book_html} (checked in {seconds:.0f} s):\n"
                         + "\n".join(defects))


# ---- the checker itself, on a tiny site with every defect planted --------------------------------------

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


def _page(body: str, head: str = "") -> str:
    """A page shaped like sphinx-book-theme's: a content column `article.bd-article` 600 px wide."""
    return f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>t</title>
<style>body {{ margin: 0 }} main {{ width: 800px }} article.bd-article {{ width: 600px }}
.output {{ overflow-x: auto }}</style>{head}</head>
<body><main id="main-content"><article class="bd-article" role="main">{body}</article></main></body></html>"""


CLEAN_A = """<section id="first"><h1>A</h1><p><a href="b.html">b</a> <a href="b.html#second">b's section</a>
<a href="#first">here</a> <a href="sub/">folder</a> <a href="https://example.org/x">outside</a>
<a href="mailto:a@b.c">mail</a></p><img src="dot.png" alt="dot">
<table><caption>narrow</caption><tr><th>x</th></tr><tr><td>1</td></tr></table>
<div class="cell_output docutils container"><div class="output text_plain"><pre>0.93</pre></div>
<div class="output stderr"><pre>UserWarning: small sample</pre></div></div></section>"""
CLEAN_B = """<section id="second"><h1>B</h1><a href="a.html#first">back</a>
<div class="cell_output docutils container"><div class="output text_html"><p>Figure 1</p></div></div></section>"""


def _site(root: Path, a: str = CLEAN_A, b: str = CLEAN_B, head_a: str = "") -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "index.html").write_text('<meta http-equiv="Refresh" content="0; url=a.html" />')
    (root / "a.html").write_text(_page(a, head_a))
    (root / "b.html").write_text(_page(b))
    (root / "sub" / "index.html").write_text(_page('<p><a href="../a.html">up</a></p>'))
    (root / "dot.png").write_bytes(PNG)
    return root


def test_a_clean_site_has_no_defects(chromium, tmp_path):
    assert check_site(_site(tmp_path)) == []


def test_the_checker_reports_each_planted_defect_with_its_page(chromium, tmp_path):
    wide = ('<table style="width: 3000px"><caption>too wide</caption><tr><th>x</th></tr></table>'
            '<div class="output text_html"><table><tr><th>scrolled</th><th style="min-width: 900px">y</th></tr>'
            '</table></div>')
    broken = ('<img src="missing.png"><a href="nothing.html">x</a> <a href="b.html#no-such-id">y</a> '
              '<a href="#nor-here">z</a> <a href="../../../etc/passwd">out</a>')
    scripts = "<script>console.error('planted console error')</script><script>undefinedFn()</script>"
    outputs = """<div class="cell_output docutils container">
<div class="output text_plain"><pre>&lt;pandas.io.formats.style.Styler object at 0x7f00&gt;</pre></div>
<div class="output text_plain"><pre>&lt;Figure size 640x480 with 1 Axes&gt;</pre></div></div>
<div class="cell_output docutils container"><div class="output traceback highlight-ipythontb">
<pre>ValueError                                Traceback (most recent call last)
Cell In[3], line 1
ValueError: planted</pre></div></div>
<div class="cell_output docutils container"><div class="output stderr"><pre>KeyError: 'f2'</pre></div></div>
<div class="cell_output docutils container"><div class="output error"><pre>NameError: name 'x' is not defined</pre>
</div></div>"""
    root = _site(tmp_path, a=CLEAN_A + wide + broken, b=CLEAN_B + outputs, head_a=scripts)
    (root / "index.html").write_text('<meta http-equiv="Refresh" content="0; url=gone.html" />')
    defects = check_site(root)
    expected = [
        # (a)
        ("a.html: (a) the page is 3", "px wide, wider than the 1280 px viewport"),
        ("a.html: (a) table 'too wide' extends", "px beyond the right edge of the content column"),
        ("a.html: (a) table 'scrolled | y' extends", "px beyond"),
        # (b)
        ("a.html: (b) image did not load: 'missing.png'",),
        ("a.html: (b) request failed: missing.png", "ERR_FILE_NOT_FOUND"),
        # (c)
        ("a.html: (c) link 'nothing.html': nothing.html does not exist",),
        ("a.html: (c) link 'b.html#no-such-id': no element with id 'no-such-id' in b.html",),
        ("a.html: (c) link '#nor-here': no element with id 'nor-here' in a.html",),
        ("a.html: (c) link '../../../etc/passwd' leads out of the built book",),
        ("index.html: (c) link 'gone.html': gone.html does not exist",),
        # (d)
        ("a.html: (d) console error: planted console error",),
        ("a.html: (d) uncaught JavaScript error: undefinedFn is not defined",),
        # (e)
        ("b.html: (e) an object repr in an output: '<pandas.io.formats.style.Styler object at 0x7f00>'",),
        ("b.html: (e) an object repr in an output: '<Figure size 640x480 with 1 Axes>'",),
        ("b.html: (e) a traceback in an output: 'ValueError",),
        ("b.html: (e) stderr output with an error: \"KeyError: 'f2'\"",),
        ("b.html: (e) an error output: \"NameError: name 'x' is not defined\"",),
    ]
    for parts in expected:
        assert any(all(p in d for p in parts) for d in defects), (parts, defects)
    assert len(defects) == len(expected), "\n".join(defects)
    assert not any(d.startswith(("sub/", "b.html: (c)", "b.html: (d)")) for d in defects), defects
