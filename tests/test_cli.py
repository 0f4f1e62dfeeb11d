from lesionlib.cli import main
from lesionlib.data import load_lesions


def test_prepare_phantom_writes_the_shared_format(tmp_path, capsys):
    assert main(["data", "prepare", "--source", "phantom", "--organ", "brain", "--n", "6", "--image-size", "16",
                 "--out", str(tmp_path)]) == 0
    ds = load_lesions(tmp_path / "brain")
    assert len(ds) == 6 and ds.image_size == 16
    assert "6 lesions" in capsys.readouterr().out


def test_bad_input_is_one_clear_error_and_exit_2(tmp_path, capsys):
    assert main(["data", "prepare", "--source", "brain", "--dir", str(tmp_path / "none"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lesionlib: error:") and "Traceback" not in err
    assert not (tmp_path / "brain").exists()  # nothing half-written
    assert main(["grid", "--profile", "nope"]) == 2


def test_python_dash_m_lesionlib_runs_the_command_line():
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-m", "lesionlib", "grid", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "--profile" in done.stdout


def test_organ_is_refused_where_the_source_decides_it(tmp_path, capsys):
    assert main(["data", "prepare", "--source", "brain", "--organ", "lung", "--dir", str(tmp_path),
                 "--out", str(tmp_path)]) == 2
    assert "--organ lung does not apply to --source brain" in capsys.readouterr().err


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
