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
