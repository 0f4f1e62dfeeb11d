"""Profiles: one schema (each parameter's default, help and check on its `Profile` field), shipped profiles
that give only their differences, and profiles that load from an installed lesionlib outside a checkout."""
import shutil
import subprocess
import sys
import zipfile
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from lesionlib.profile import PROFILES, Profile, ProfileError, load_profile, profile_values, show_profile

ROOT = Path(__file__).resolve().parents[1]
CHECKED = [f.name for f in fields(Profile) if f.metadata["check"] is not None]


def test_every_parameter_has_a_default_and_says_what_it_means():
    helps = Profile.help()
    assert set(helps) == set(Profile.keys()) == set(Profile.defaults())
    short = [k for k, h in helps.items() if len(h) < 12]
    assert not short, short
    # the defaults are the paper's settings: on phantom data (no data folder needed) they validate as they are
    assert Profile.from_mapping({"data_source": "phantom", "data_dir": None}).epochs == Profile.defaults()["epochs"]


@pytest.mark.parametrize("key", CHECKED)
def test_each_parameters_own_check_refuses_a_bad_value_and_names_it(key):
    with pytest.raises(ProfileError, match=rf"parameter '{key}' must .*, got 'not-a-value'"):
        Profile.from_mapping({"data_source": "phantom", "data_dir": None, key: "not-a-value"})


def test_shipped_profiles_write_only_what_differs_from_the_defaults():
    defaults = Profile.defaults()
    for path in sorted(PROFILES.glob("*.yaml")):
        written = yaml.safe_load(path.read_text())
        base = written.pop("base", None)
        under = profile_values(str(base)) if base else defaults
        same = [k for k, v in written.items() if k != "profile" and v == under[k]]
        assert not same, f"{path.name} restates {same}"
    assert (ROOT / "params").resolve() == PROFILES  # the checkout's params/ is the package's profiles


def test_profile_show_prints_a_complete_profile_that_loads_back(tmp_path):
    shown = show_profile("quick")
    assert all(f"\n{k}: " in shown for k in Profile.keys())
    assert "#* " in shown.split("\nworkers:")[1].splitlines()[0]  # quick sets workers: marked
    assert "#  " in shown.split("\nlr:")[1].splitlines()[0]  # the paper's lr: not marked
    (tmp_path / "mine.yaml").write_text(shown)
    assert profile_values(str(tmp_path / "mine.yaml")) == profile_values("quick")


def test_an_installed_lesionlib_loads_its_profiles_outside_any_checkout(tmp_path):
    # built from a clean copy of the sources: a build folder or egg-info left in the checkout would hide a
    # missing package-data entry
    src = tmp_path / "src"
    shutil.copytree(ROOT / "lesionlib", src / "lesionlib", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    wheels = tmp_path / "wheels"
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(wheels), str(src)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    (wheel,) = wheels.glob("lesionlib-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:  # a pure-Python wheel installs by unpacking it
        assert "lesionlib/profiles/quick.yaml" in z.namelist()
        z.extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = ("import lesionlib, lesionlib.profile as p; P = p.load_profile('quick'); "
            "print(lesionlib.__file__, P.profile, P.workers, p.cache_root())")
    run = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, capture_output=True, text=True,
                         env={"PYTHONPATH": str(site), "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr[-3000:]
    where, name, workers, cache = run.stdout.split()
    assert where.startswith(str(site)) and name == "quick" and workers == str(load_profile("quick").workers)
    assert cache == str(tmp_path / ".cache" / "lesionlib")  # no checkout: the user's cache folder


def test_the_method_pages_parameter_table_comes_from_the_schema():
    from lesionlib.report import parameter_table

    table = parameter_table(load_profile("quick"))
    assert list(table.index) == list(Profile.keys())
    assert table.loc["workers", "this profile"] == "2" and table.loc["workers", "the paper's"] == "0"
    assert table.loc["lr", "the paper's"] == ""  # quick keeps the paper's learning rate
    assert table.loc["lr", "what it means"] == Profile.help()["lr"]
