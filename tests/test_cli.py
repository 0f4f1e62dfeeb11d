from lesionlib.cli import main
from lesionlib.data import load_lesions


def test_prepare_phantom_writes_the_shared_format(tmp_path, capsys):
    assert main(["data", "prepare", "phantom", "--organ", "brain", "--n", "6", "--image-size", "16",
                 "--out", str(tmp_path)]) == 0
    ds = load_lesions(tmp_path / "brain")
    assert len(ds) == 6 and ds.image_size == 16
    assert "6 lesions" in capsys.readouterr().out


def test_bad_input_is_one_clear_error_and_exit_2(tmp_path, capsys):
    assert main(["data", "prepare", "brain", "--dir", str(tmp_path / "none"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lesionlib: error:") and "Traceback" not in err
    assert not (tmp_path / "brain").exists()  # nothing half-written
    assert main(["grid", "--profile", "nope"]) == 2


def test_python_dash_m_lesionlib_runs_the_command_line():
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-m", "lesionlib", "grid", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "--profile" in done.stdout


def test_each_source_takes_only_its_own_flags(tmp_path, capsys):
    import pytest
    with pytest.raises(SystemExit) as done:  # the organ of brain data is brain: --organ is phantom's flag
        main(["data", "prepare", "brain", "--organ", "lung", "--dir", str(tmp_path), "--out", str(tmp_path)])
    assert done.value.code == 2 and "unrecognized arguments: --organ lung" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["data", "prepare", "lung", "--out", str(tmp_path)])  # lung needs its DICOM folder
    assert "--lidc-dir" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["data", "prepare", "phantom", "--help"])
    assert "--lidc-dir" not in (h := capsys.readouterr().out) and "--seed" in h and "--out" in h


def test_grid_lists_its_sections_and_refuses_others(capsys):
    import pytest

    from lesionlib.pages import GRID
    with pytest.raises(SystemExit):
        main(["grid", "--help"])
    shown = " ".join(capsys.readouterr().out.split())  # argparse wraps the list
    assert all(f" {p.section}," in shown or f" {p.section} " in shown for p in GRID)
    with pytest.raises(SystemExit) as done:
        main(["grid", "--sections", "fig9"])
    assert done.value.code == 2 and "invalid choice: 'fig9'" in capsys.readouterr().err


def test_make_help_lists_every_target_with_what_it_does():
    import re
    import subprocess
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    phony = re.search(r"^\.PHONY: (.+)$", (root / "Makefile").read_text(), re.M).group(1).split()
    done = subprocess.run(["make", "--no-print-directory", "-C", str(root), "help"], capture_output=True, text=True)
    listed = dict(re.findall(r"^  make (\S+) +(.+)$", done.stdout, re.M))
    assert done.returncode == 0 and set(listed) == set(phony) and all(len(v) > 10 for v in listed.values()), listed


def test_error_hints_name_the_folder_to_write_once(tmp_path):
    """The hints' commands must work as printed: `--out DATA_DIR`, not `--out DATA_DIR/organ` (doubled organ)."""
    import pytest
    from lesionlib.data import build_lesions, load_lesions
    with pytest.raises(FileNotFoundError) as err:
        build_lesions("prepared", "brain", data_dir=str(tmp_path))
    assert f"--out {tmp_path}`" in str(err.value)
    with pytest.raises(Exception) as err:
        load_lesions(tmp_path / "lung")
    assert "{path}" not in str(err.value) and f"--out {tmp_path}`" in str(err.value)


def test_cache_prune_deletes_only_runs_no_named_profile_needs(tmp_path, capsys):
    from lesionlib.cache import spec_key
    from lesionlib.figures import book_runs
    from lesionlib.profile import load_profile
    runs = tmp_path / "runs"
    needed = spec_key(book_runs(load_profile("smoke"))[0])
    for key in (needed, "0" * 24, "1" * 24):  # one run the smoke book needs, two of nothing current
        (runs / key).mkdir(parents=True)
        (runs / key / "result.json").write_text("{}")
    assert main(["cache", "prune", "--profile", "smoke", "--cache", str(tmp_path), "--dry-run"]) == 0
    assert "would delete 2 of 3 runs" in capsys.readouterr().out
    assert len(list(runs.iterdir())) == 3  # a dry run deletes nothing
    assert main(["cache", "prune", "--profile", "smoke", "--cache", str(tmp_path)]) == 0
    assert "deleted 2 of 3 runs" in capsys.readouterr().out
    assert [p.name for p in runs.iterdir()] == [needed]
    assert main(["cache", "prune", "--profile", "nope", "--cache", str(tmp_path)]) == 2  # nothing deleted
    assert [p.name for p in runs.iterdir()] == [needed]
