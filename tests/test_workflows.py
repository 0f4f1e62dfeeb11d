"""The GitHub Actions workflows (.github/workflows) pass actionlint, and the book workflow tests, builds and
deploys the book.

actionlint comes with the `test` extra (a wheel that carries the binary). These tests fail, never skip,
when it is missing, and `test_actionlint_rejects_a_broken_workflow` shows that the linter does reject
defects, so a linter that passes everything cannot make the first test pass.
"""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
BOOK = WORKFLOWS / "book.yml"


def _workflow_files() -> list:
    return sorted(p for p in WORKFLOWS.glob("*") if p.suffix in (".yml", ".yaml")) if WORKFLOWS.is_dir() else []


def _actionlint() -> str:
    """The actionlint executable: the one installed beside this Python (the venv's bin/), else on PATH."""
    here = Path(sys.executable).parent / "actionlint"
    exe = str(here) if here.is_file() else shutil.which("actionlint")
    if not exe:
        pytest.fail("actionlint is not installed: `pip install -e '.[test]'` (or `make setup`) installs it")
    return exe


def _lint(*files) -> subprocess.CompletedProcess:
    exe = _actionlint()  # a missing actionlint fails the test that needs it (pytest.fail), never skips it
    # shellcheck and pyflakes, when on PATH, would add checks of `run:` scripts on some machines and not on
    # others: switched off so that every machine gives the same verdict.
    return subprocess.run([exe, "-no-color", "-shellcheck=", "-pyflakes=", *map(str, files)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_actionlint_passes_on_every_workflow():
    files = _workflow_files()
    assert files, f"no workflow in {WORKFLOWS}"
    res = _lint(*files)
    assert res.returncode == 0, f"actionlint exit code {res.returncode}:\n{res.stdout}{res.stderr}"


def _on(wf: dict) -> dict:
    # YAML 1.1 reads the bare key `on` as the boolean True.
    return wf.get("on", wf.get(True)) or {}


def _steps(wf: dict):
    for name, job in wf.get("jobs", {}).items():
        for step in job.get("steps", []):
            yield name, step


def test_book_workflow_tests_builds_and_deploys_the_book():
    files = _workflow_files()
    assert files, f"no workflow in {WORKFLOWS}"
    wf = yaml.safe_load(BOOK.read_text())
    steps = list(_steps(wf))
    runs = "\n".join(step.get("run", "") for _, step in steps)
    assert "make test" in runs and "make book" in runs

    uses = {step["uses"].split("@")[0]: (job, step) for job, step in steps if "uses" in step}
    upload = uses["actions/upload-pages-artifact"][1]
    assert upload["with"]["path"].rstrip("/") == "_build/html"
    deploy_job = uses["actions/deploy-pages"][0]
    assert wf["jobs"][deploy_job]["permissions"] == {"pages": "write", "id-token": "write"}
    assert wf["jobs"][deploy_job]["environment"]["name"] == "github-pages"

    # Triggers: a push to main, and a manual run whose profiles exist in params/.
    on = _on(wf)
    assert "main" in on["push"]["branches"]
    profile = on["workflow_dispatch"]["inputs"]["profile"]
    assert profile["default"] == "quick"
    for name in profile["options"]:
        assert (ROOT / "params" / f"{name}.yaml").is_file(), name

    # Pull requests are tested and built, never deployed; a failed page's notebook is kept as an artefact.
    assert "main" in on["pull_request"]["branches"]
    assert "pull_request" in wf["jobs"][deploy_job]["if"] and "refs/heads/main" in wf["jobs"][deploy_job]["if"]
    for action in ("actions/configure-pages", "actions/upload-pages-artifact"):
        assert uses[action][1]["if"] == "github.event_name != 'pull_request'", action
    kept = uses["actions/upload-artifact"][1]
    assert kept["if"] == "failure()" and kept["with"]["path"].endswith(".failed.ipynb")

    # The run cache is pruned to this profile's runs after the build, before actions/cache saves it.
    names = [step.get("name", "") for _, step in steps]
    assert names.index("Prune the run cache") > names.index("Build the book")
    assert 'cache prune --profile "$PROFILE"' in runs

    # The run cache and the staged notebooks are cached between builds.
    cached = uses["actions/cache"][1]["with"]["path"]
    assert ".cache/lesionlib" in cached and "_build/stage" in cached


# Each defect is planted in a copy of the real workflow: (text to replace, its replacement).
DEFECTS = {
    "unknown job key": ("    runs-on: ubuntu-latest\n    timeout-minutes", "    runs-onn: ubuntu-latest\n    timeout-minutes"),
    "bad expression": ("${{ steps.deployment.outputs.page_url }}", "${{ steps.deployment.outputs.page_url ) }}"),
    "unknown job in needs": ("needs: build", "needs: biuld"),
    "undefined input": ("${{ inputs.profile || 'quick' }}", "${{ inputs.profiel || 'quick' }}"),
}


@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_actionlint_rejects_a_broken_workflow(tmp_path, defect):
    old, new = DEFECTS[defect]
    text = BOOK.read_text()
    assert old in text, f"the workflow changed: {old!r} is gone, update DEFECTS"
    broken = tmp_path / "book.yml"
    broken.write_text(text.replace(old, new, 1))
    res = _lint(broken)
    # 1 = problems found (2 and 3 would be a usage error or a crash, not a verdict on the file).
    assert res.returncode == 1, f"actionlint missed the {defect} (exit {res.returncode}):\n{res.stdout}{res.stderr}"
    assert "book.yml" in res.stdout
