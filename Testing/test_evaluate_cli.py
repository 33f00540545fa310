"""``brainmetseg evaluate`` end to end on a tiny synthetic cohort written to disk."""

from __future__ import annotations

import csv
import json
import math
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from BrainMetSegLib.cli import main
from BrainMetSegLib.evaluate.pairing import find_cases

SHAPE = (20, 28, 28)


def _write(a, path, spacing=(1.0, 1.0, 1.0)):
    img = sitk.GetImageFromArray(a)
    img.SetSpacing(spacing)
    sitk.WriteImage(img, str(path))


def _ball(c, r):
    z, y, x = np.ogrid[:SHAPE[0], :SHAPE[1], :SHAPE[2]]
    return (z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 <= r * r


def make_cohort(root, n=6, seed=0):
    """n cases: GT balls, a probability map that finds most of them plus false positives,
    label maps at 0.5, brain masks, images, run.json, clinical CSV."""
    rng = np.random.default_rng(seed)
    for d in ("pred", "gt", "brain", "img"):
        (root / d).mkdir(parents=True, exist_ok=True)
    brain = _ball((10, 14, 14), 12)
    rows = []
    for i in range(n):
        cid = f"case{i:02d}"
        gt = np.zeros(SHAPE, np.uint8)
        prob = rng.uniform(0, 0.05, SHAPE).astype(np.float32)
        for _ in range(i % 4):  # 0..3 lesions: case00 and case04 have none
            c = rng.integers(5, np.array(SHAPE) - 5)
            r = rng.uniform(1.0, 3.5)
            gt[_ball(c, r)] = 1
            if rng.random() < 0.8:
                prob[_ball(c + rng.integers(-1, 2, 3), r)] = rng.uniform(0.55, 0.95)
        if i % 2:
            prob[_ball(rng.integers(4, np.array(SHAPE) - 4), 1.5)] = rng.uniform(0.4, 0.9)
        (root / "pred" / cid).mkdir()
        _write((prob > 0.5).astype(np.uint16), root / "pred" / cid / "lesion_labels.nii.gz")
        _write(prob, root / "pred" / cid / "probability.nii.gz")
        (root / "pred" / cid / "run.json").write_text(json.dumps(
            {"model": {"name": "toy", "version": "1.0"}, "timings_s": {"read": 1.0, "inference": 2.0 + i}}))
        _write(gt, root / "gt" / f"{cid}.nii.gz")
        _write(brain.astype(np.uint8), root / "brain" / f"{cid}.nii.gz")
        _write((100 * brain + 80 * gt + rng.normal(0, 5, SHAPE)).astype(np.float32),
               root / "img" / f"{cid}_0000.nii.gz")
        rows.append({"case_id": cid, "sex": "F" if i % 2 else "M", "age": 50 + 4 * i})
    with open(root / "clinical.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root


def cli(*args):
    return main(["evaluate", *map(str, args), "--progress", "none"])


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return make_cohort(tmp_path_factory.mktemp("cohort"))


@pytest.fixture(scope="module")
def full_run(cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    code = cli("--pred", cohort / "pred", "--gt", cohort / "gt", "--brain-masks", cohort / "brain",
               "--images", cohort / "img", "--clinical", cohort / "clinical.csv", "--subgroup", "sex",
               "--subgroup", "age:60", "--select-threshold", "--overwrite", "-o", out)
    assert code == 0
    return out


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_outputs_and_report(full_run):
    names = {p.name for p in full_run.iterdir()}
    assert {"per_case.csv", "per_lesion.csv", "cohort_summary.csv", "cohort_summary.json", "froc.csv",
            "threshold_sweep.csv", "suggested_threshold.json", "report.html"} <= names
    cases = read_csv(full_run / "per_case.csv")
    assert [r["case_id"] for r in cases] == [f"case{i:02d}" for i in range(6)]
    assert float(cases[3]["seconds"]) == pytest.approx(6.0)  # run.json timings summed
    assert cases[3]["model"] == "toy 1.0"
    empty_case = cases[0]
    assert empty_case["gt_lesions"] == "0" and empty_case["lesion_sensitivity"] == ""  # NaN -> blank
    summary = json.loads((full_run / "cohort_summary.json").read_text())
    assert summary["cases_evaluated"] == 6 and summary["conventions"]
    assert [s["stratum"] for s in summary["strata_by_lesion_count"]] == ["no lesion", "1-3", "4-10", ">10"]
    assert {g["column"] for g in summary["subgroups"]} == {"sex", "age"}
    assert "delong_auc" in summary["subgroups"][0]
    sel = json.loads((full_run / "suggested_threshold.json").read_text())
    assert 0 <= sel["suggested_threshold"] < 1 and sel["criterion"] == "lesion-f1"
    html = (full_run / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 8
    assert "http://" not in html and "https://" not in html and "<script" not in html
    for text in ("model toy 1.0", "median (IQR)", "Detection by lesion size", "FROC", "Worst cases", "Conventions",
                 "Mann-Whitney", "DeLong"):
        assert text in html
    lesions = read_csv(full_run / "per_lesion.csv")
    n_gt = sum(int(r["gt_lesions"]) for r in cases)
    assert sum(r["kind"] == "gt" for r in lesions) == n_gt


def test_refuses_to_overwrite(full_run, cohort, capsys):
    code = cli("--pred", cohort / "pred", "--gt", cohort / "gt", "-o", full_run)
    assert code == 4
    assert "already exists" in capsys.readouterr().err


def test_missing_partner_named(cohort, tmp_path, capsys):
    root = tmp_path / "c"
    shutil.copytree(cohort, root)
    (root / "gt" / "case02.nii.gz").unlink()
    code = cli("--pred", root / "pred", "--gt", root / "gt", "-o", tmp_path / "o", "--no-report")
    err = capsys.readouterr().err
    assert code == 2 and "case case02" in err and "no ground truth" in err
    code = cli("--pred", root / "pred", "--gt", root / "gt", "-o", tmp_path / "o", "--no-report",
               "--skip-missing")
    assert code == 0
    assert len(read_csv(tmp_path / "o" / "per_case.csv")) == 5


def test_geometry_mismatch_names_both_files(cohort, tmp_path, capsys):
    root = tmp_path / "c"
    shutil.copytree(cohort, root)
    gt = sitk.ReadImage(str(root / "gt" / "case01.nii.gz"))
    gt.SetSpacing((1.0, 1.0, 2.0))
    sitk.WriteImage(gt, str(root / "gt" / "case01.nii.gz"))
    code = cli("--pred", root / "pred", "--gt", root / "gt", "-o", tmp_path / "o", "--no-report")
    err = capsys.readouterr().err
    assert code == 2
    assert "case01/lesion_labels.nii.gz" in err and "gt/case01.nii.gz" in err and "geometry" in err
    assert len(read_csv(tmp_path / "o" / "per_case.csv")) == 5  # the others were evaluated


def _replace_map(root, cid: str, which: str, array) -> None:
    path = root / "pred" / cid / "lesion_labels.nii.gz" if which == "pred" else root / "gt" / f"{cid}.nii.gz"
    _write(array, path)


@pytest.mark.parametrize(("which", "make", "says"), [
    ("pred", lambda prob, gt: prob, "non-integer values"),  # the probability map given as the labels
    ("gt", lambda prob, gt: gt.astype(np.int16) - 1, "negative values"),
    ("gt", lambda prob, gt: np.arange(gt.size, dtype=np.int32).reshape(gt.shape) % 2000, "1999 distinct"),
])
def test_a_map_that_cannot_be_labels_is_refused_naming_it(cohort, tmp_path, capsys, which, make, says):
    """A probability map as the prediction would count every voxel above 0 as one lesion found
    (lesion sensitivity and PPV 1.0 on the bundled sample); an image as the truth, thousands of
    lesions. Every case refused: exit 2, the file named, and no output folder left."""
    root = tmp_path / "c"
    shutil.copytree(cohort, root)
    for cid in [p.name for p in (root / "pred").iterdir()]:
        prob = sitk.GetArrayFromImage(sitk.ReadImage(str(root / "pred" / cid / "probability.nii.gz")))
        gt = sitk.GetArrayFromImage(sitk.ReadImage(str(root / "gt" / f"{cid}.nii.gz")))
        _replace_map(root, cid, which, make(prob, gt))
    code = cli("--pred", root / "pred", "--gt", root / "gt", "-o", tmp_path / "o", "--no-report")
    err = capsys.readouterr().err
    named = "case01/lesion_labels.nii.gz" if which == "pred" else "gt/case01.nii.gz"
    assert code == 2 and "no case could be evaluated" in err and named in err and says in err, err
    assert not (tmp_path / "o").exists()


def test_flat_layout_and_manifest_pair_the_same(cohort, tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    rows = []
    for d in sorted((cohort / "pred").iterdir()):
        shutil.copy(d / "lesion_labels.nii.gz", flat / f"{d.name}.nii.gz")
        shutil.copy(d / "probability.nii.gz", flat / f"{d.name}_probability.nii.gz")
        rows.append(f"{d.name},{flat / (d.name + '.nii.gz')},{cohort / 'gt' / (d.name + '.nii.gz')},"
                    f"flat/{d.name}_probability.nii.gz")
    cases, problems = find_cases(flat, cohort / "gt")
    assert len(cases) == 6 and not problems and all(c.probability is not None for c in cases)
    manifest = tmp_path / "m.csv"
    manifest.write_text("case_id,pred,gt,probability\n" + "\n".join(rows) + "\n")
    mcases, _ = find_cases(manifest=manifest)
    assert [(c.case_id, c.probability.name) for c in mcases] == [(c.case_id, c.probability.name) for c in cases]
    a, b = tmp_path / "a", tmp_path / "b"
    assert cli("--pred", flat, "--gt", cohort / "gt", "-o", a, "--no-report") == 0
    assert cli("--manifest", manifest, "-o", b, "--no-report") == 0
    assert (a / "per_case.csv").read_text() == (b / "per_case.csv").read_text()


def test_threshold_rethresholds_probabilities(cohort, tmp_path):
    base, strict = tmp_path / "base", tmp_path / "strict"
    assert cli("--pred", cohort / "pred", "--gt", cohort / "gt", "-o", base, "--no-report", "--match", "brats") == 0
    assert cli("--pred", cohort / "pred", "--gt", cohort / "gt", "-o", strict, "--no-report",
               "--threshold", "0.99") == 0
    b = read_csv(base / "per_case.csv")
    s = read_csv(strict / "per_case.csv")
    assert all(r["pred_lesions"] == "0" for r in s)  # nothing above 0.99
    assert any(r["pred_lesions"] != "0" for r in b)
    assert all(r["match_rule"] == "brats" for r in b)
    assert s[0]["prediction_source"] == "probability > 0.99"


def test_json_progress(cohort, tmp_path, capsys):
    code = main(["evaluate", "--pred", str(cohort / "pred"), "--gt", str(cohort / "gt"), "-o",
                 str(tmp_path / "j"), "--no-report", "--progress", "json"])
    assert code == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert lines[0]["type"] == "progress" and lines[-1]["type"] == "result" and lines[-1]["cases"] == 6


def test_bad_arguments(cohort, tmp_path, capsys):
    assert cli("--pred", cohort / "pred", "--gt", cohort / "gt", "-o", tmp_path / "x", "--threshold", "1.5") == 2
    assert cli("--pred", cohort / "pred", "--gt", cohort / "gt", "-o", tmp_path / "x", "--subgroup", "sex") == 2
    assert cli("--pred", cohort / "nope", "--gt", cohort / "gt", "-o", tmp_path / "x") == 2
    assert cli("--pred", cohort / "pred", "--gt", cohort / "gt", "-o", tmp_path / "x", "--clinical",
               cohort / "clinical.csv", "--subgroup", "weight") == 2
    err = capsys.readouterr().err
    assert "threshold" in err and "--clinical" in err and "not found" in err and "weight" in err
    assert not math.isnan(0.0)


@pytest.mark.parametrize(("extra", "says"), [
    (["--min-volume", "nan"], "must be a finite number"),
    (["--min-volume", "5"], "a minimum volume needs a detection threshold"),  # was quietly unused
    (["--clinical", "CLINICAL", "--subgroup", "age:nan"], "the cut must be a number"),
])
def test_options_that_would_be_meaningless_or_unused_are_refused(cohort, tmp_path, capsys, extra, says):
    extra = [str(cohort / "clinical.csv") if e == "CLINICAL" else e for e in extra]
    assert cli("--pred", cohort / "pred", "--gt", cohort / "gt", "-o", tmp_path / "x", "--no-report", *extra) == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_threshold_without_a_probability_map_fails_the_case_instead_of_being_ignored(cohort, tmp_path, capsys):
    """--threshold with a prediction that has no probability map beside it: the label map would
    have been scored as given, under a table that says 'label map > 0'."""
    root = tmp_path / "c"
    shutil.copytree(cohort, root)
    (root / "pred" / "case01" / "probability.nii.gz").unlink()
    code = cli("--pred", root / "pred", "--gt", root / "gt", "-o", tmp_path / "o", "--no-report", "--threshold", "0.5")
    err = capsys.readouterr().err
    assert code == 2 and "case01/lesion_labels.nii.gz: --threshold re-thresholds a probability map" in err, err
    assert [r["case_id"] for r in read_csv(tmp_path / "o" / "per_case.csv")] == [
        f"case{i:02d}" for i in range(6) if i != 1]


def test_a_thumbnail_shows_the_ce_t1_only_on_the_truths_own_grid(cohort, tmp_path):
    """An image of the same size but another spacing is not the CE-T1 of this truth: the
    thumbnail falls back to the probability map (it was drawn on it before)."""
    from BrainMetSegLib.evaluate.pairing import CaseFiles
    from BrainMetSegLib.evaluate.thumbnails import _background

    gt = sitk.ReadImage(str(cohort / "gt" / "case01.nii.gz"))
    image = sitk.ReadImage(str(cohort / "img" / "case01_0000.nii.gz"))
    probability = np.zeros(SHAPE, np.float32)
    files = CaseFiles("case01", cohort / "gt" / "case01.nii.gz", image=cohort / "img" / "case01_0000.nii.gz")
    assert _background(files, gt, probability)[1] == "CE-T1"
    image.SetSpacing((1.0, 1.0, 3.0))
    sitk.WriteImage(image, str(tmp_path / "other.nii.gz"))
    files = CaseFiles("case01", cohort / "gt" / "case01.nii.gz", image=tmp_path / "other.nii.gz")
    assert _background(files, gt, probability)[1] == "probability map"
