"""A Sphinx extension for the book's HTML build (named in `_config.yml`, `sphinx.extra_extensions`).

sphinx-thebe registers its inline configuration script once per `env-before-read-docs`, which Jupyter
Book 1 fires twice, so every page declared `const THEBE_JS_URL` twice and the browser raised
"Identifier 'THEBE_JS_URL' has already been declared". Sphinx removes duplicate script *files*, not
duplicate inline scripts: this removes those.
"""
from __future__ import annotations


def dedupe_scripts(app, pagename, templatename, context, doctree) -> None:
    """Keep the first of any scripts with the same file and attributes (inline body included)."""
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, keep = set(), []
    for js in scripts:
        # an inline script has filename None or "" depending on who added it
        key = (str(getattr(js, "filename", js) or ""), tuple(sorted(getattr(js, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            keep.append(js)
    scripts[:] = keep


def setup(app):
    app.connect("html-page-context", dedupe_scripts, priority=900)  # after every other extension added its scripts
    return {"parallel_read_safe": True, "parallel_write_safe": True}
