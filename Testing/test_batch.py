"""Cohort runs: shards, resuming with --skip-existing, summarize, and log-friendly progress."""

import csv
import io
import json

import pytest
import SimpleITK as sitk

from BrainMetSegLib import outputs
from BrainMetSegLib.batch import Shard, parse_shard
from BrainMetSegLib.cli import main
from BrainMetSegLib.errors import InputError
from BrainMetSegLib.models import ModelPackage
from BrainMetSegLib.progress import ProgressEvent, stage_lines, tqdm_bar
from conftest import make_volume


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """A 7-case manifest of small volumes (rows deliberately not in case-id order)."""
    folder = tmp_path_factory.mktemp("cohort")
    ids = ["p3", "p0", "p6", "p1", "p5", "p2", "p4"]
    for n, cid in enumerate(ids):
        sitk.WriteImage(make_volume((24, 28, 32), seed=n), str(folder / f"{cid}.nii.gz"))
    manifest = folder / "cases.csv"
    manifest.write_text("case_id,t1ce\n" + "".join(f"{c},{c}.nii.gz\n" for c in ids))
    return manifest, sorted(ids), ids


def segment(manifest, out, model, *extra):
    return main(["segment", "--manifest", str(manifest), "-o", str(out), "--model", str(model.folder),
                 "--brain-mask", "none", "--device", "cpu", "--progress", "none", *map(str, extra)])


def summary_rows(path):
    return list(csv.DictReader(path.open()))


def test_shards_of_seven_cases_cover_each_exactly_once(tiny_model, cohort, tmp_path, capsys):
    manifest, ids, _ = cohort
    out = tmp_path / "out"
    for i in range(3):
        assert segment(manifest, out, tiny_model, "--shard", f"{i}/3") == 0
    taken = [r["case_id"] for i in range(3) for r in summary_rows(out / f"summary.shard-{i}-of-3.csv")]
    assert sorted(taken) == ids  # each case in exactly one shard
    assert [len(summary_rows(out / f"summary.shard-{i}-of-3.csv")) for i in range(3)] == [3, 2, 2]
    assert all((out / cid / "run.json").is_file() for cid in ids)
    capsys.readouterr()
    assert main(["summarize", str(out), "--manifest", str(manifest)]) == 0
    merged = summary_rows(out / "cohort_summary.csv")
    assert [r["case_id"] for r in merged] == ids and {r["status"] for r in merged} == {"ok"}
    assert "7 done" in capsys.readouterr().out


def test_split_is_independent_of_row_order_and_checked():
    ids = [f"c{i}" for i in range(7)]
    for n in (1, 2, 3, 7, 9):
        shards = [Shard(i, n).take(ids, key=str) for i in range(n)]
        assert sorted(sum(shards, [])) == ids
        assert [Shard(i, n).take(ids[::-1], key=str) for i in range(n)] == shards
    for bad in ("3/3", "-1/3", "0/0", "a/b", "1"):
        with pytest.raises(InputError, match="shard"):
            parse_shard(bad)


def test_shard_from_slurm_environment():
    env = {"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "1",
           "SLURM_ARRAY_TASK_MAX": "7", "SLURM_ARRAY_TASK_STEP": "2"}  # sbatch --array=1-7:2
    assert parse_shard("slurm", env) == Shard(2, 4)
    assert parse_shard("slurm", {"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "3"}) == Shard(0, 3)
    with pytest.raises(InputError, match="SLURM_ARRAY_TASK_ID is not set"):
        parse_shard("slurm", {})
    gaps = {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "1",
            "SLURM_ARRAY_TASK_MAX": "8"}  # sbatch --array=1,3,8
    with pytest.raises(InputError, match="evenly spaced"):
        parse_shard("slurm", gaps)


def test_slurm_shard_on_the_command_line(tiny_model, cohort, tmp_path, monkeypatch):
    manifest, ids, _ = cohort
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "2")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "3")
    loads = []
    real_load = ModelPackage.load_network
    monkeypatch.setattr(ModelPackage, "load_network", lambda self, *a: loads.append(1) or real_load(self, *a))
    assert segment(manifest, tmp_path / "o", tiny_model, "--shard", "slurm") == 0
    assert [r["case_id"] for r in summary_rows(tmp_path / "o" / "summary.shard-2-of-3.csv")] == ids[2::3]
    # the network is built at most once per process, not once per case (not at all where OpenVINO
    # runs it from its cached export: lazy_network)
    assert len(loads) <= 1


def test_interrupted_run_resumes(tiny_model, cohort, tmp_path, monkeypatch, capsys):
    manifest, _, ids = cohort  # unsharded runs go in the manifest's order
    out = tmp_path / "out"
    real_commit, calls = outputs.commit, []

    def dies_in_third_case(staged):
        calls.append(staged)
        if len(calls) == 3:  # third case: the maps are renamed into place, then the process dies
            real_commit(staged[:2])
            raise KeyboardInterrupt
        real_commit(staged)

    monkeypatch.setattr(outputs, "commit", dies_in_third_case)
    assert segment(manifest, out, tiny_model) == 130
    monkeypatch.undo()
    done, half = ids[:2], ids[2]
    assert (out / half / "lesion_labels.nii.gz").is_file() and not (out / half / "run.json").exists()
    stamps = {cid: (out / cid / "run.json").stat().st_mtime_ns for cid in done}
    rows = summary_rows(out / "summary.csv")  # written after every case: the two done cases are there
    assert [r["case_id"] for r in rows] == done

    # without --skip-existing nothing is replaced: the finished and the half-written case fail
    # ("already exists"), the cases never started are done
    assert segment(manifest, out, tiny_model) == 1
    assert not (out / half / "run.json").exists()
    capsys.readouterr()
    assert segment(manifest, out, tiny_model, "--skip-existing") == 0
    err = capsys.readouterr().err
    rows = {r["case_id"]: r["status"] for r in summary_rows(out / "summary.csv")}
    assert rows == {**{c: "skipped" for c in ids}, half: "ok"}
    assert {cid: (out / cid / "run.json").stat().st_mtime_ns for cid in done} == stamps  # not redone
    assert f"case {half}: interrupted earlier; redoing" in err
    run = json.loads((out / half / "run.json").read_text())
    assert run["case"] == half and (out / half / "probability.nii.gz").is_file()


def test_changed_threshold_redoes_the_case(tiny_model, volume_file, tmp_path, capsys):
    manifest = tmp_path / "one.csv"
    manifest.write_text(f"case_id,t1ce\nonly,{volume_file}\n")
    out = tmp_path / "out"
    assert segment(manifest, out, tiny_model, "--threshold", "0.5") == 0
    run_json = out / "only" / "run.json"
    first = run_json.read_bytes()
    assert segment(manifest, out, tiny_model, "--threshold", "0.5", "--skip-existing") == 0
    assert run_json.read_bytes() == first  # same settings: skipped
    capsys.readouterr()

    # another threshold: not replaced without --overwrite, and the message says why
    assert segment(manifest, out, tiny_model, "--threshold", "0.3", "--skip-existing") == 1
    assert "threshold_used 0.5 -> 0.3" in capsys.readouterr().err
    assert run_json.read_bytes() == first
    assert segment(manifest, out, tiny_model, "--threshold", "0.3", "--skip-existing", "--overwrite") == 0
    assert json.loads(run_json.read_text())["settings"]["threshold_used"] == 0.3
    assert summary_rows(out / "summary.csv")[0]["status"] == "ok"


def test_changed_input_or_missing_output_redoes_the_case(tiny_model, tmp_path, capsys):
    scan = tmp_path / "scan.nii.gz"
    sitk.WriteImage(make_volume((24, 28, 32)), str(scan))
    manifest = tmp_path / "one.csv"
    manifest.write_text(f"case_id,t1ce\nonly,{scan}\n")
    out = tmp_path / "out"
    assert segment(manifest, out, tiny_model) == 0
    (out / "only" / "lesions.csv").unlink()
    capsys.readouterr()
    assert segment(manifest, out, tiny_model, "--skip-existing") == 1
    assert "lesions.csv missing" in capsys.readouterr().err
    assert segment(manifest, out, tiny_model, "--skip-existing", "--overwrite") == 0
    sitk.WriteImage(make_volume((24, 28, 32), seed=9), str(scan))
    assert segment(manifest, out, tiny_model, "--skip-existing") == 1
    assert "changed since" in capsys.readouterr().err


def test_summarize_reports_failed_and_missing(tiny_model, cohort, tmp_path, capsys):
    manifest, ids, _ = cohort
    out = tmp_path / "out"
    bad = tmp_path / "flat.nii.gz"
    sitk.WriteImage(sitk.Image([20, 20, 20], sitk.sitkFloat32), str(bad))
    part = tmp_path / "part.csv"
    part.write_text(f"case_id,t1ce\n{ids[0]},{manifest.parent / (ids[0] + '.nii.gz')}\n{ids[1]},{bad}\n")
    assert segment(part, out, tiny_model) == 1
    capsys.readouterr()
    assert main(["summarize", str(out), "--manifest", str(manifest)]) == 1
    printed = capsys.readouterr().out
    status = {r["case_id"]: r["status"] for r in summary_rows(out / "cohort_summary.csv")}
    assert status == {ids[0]: "ok", ids[1]: "failed", **{c: "missing" for c in ids[2:]}}
    assert "1 failed" in printed and f"{len(ids) - 2} missing" in printed
    assert main(["summarize", str(tmp_path / "nowhere")]) == 2


def test_summarize_replaces_its_own_table_but_no_other_file(tiny_model, cohort, tmp_path, capsys):
    """-o naming a case's run.json had replaced the run record with the table; now refused (exit 4,
    the file untouched) unless --overwrite; the table summarize wrote before is replaced each time."""
    manifest, ids, _ = cohort
    out = tmp_path / "out"
    part = tmp_path / "part.csv"
    part.write_text(f"case_id,t1ce\n{ids[0]},{manifest.parent / (ids[0] + '.nii.gz')}\n")
    assert segment(part, out, tiny_model) == 0
    case = out / ids[0]
    record = (case / "run.json").read_bytes()
    assert main(["summarize", str(out), "-o", str(case / "run.json"), "--quiet"]) == 4
    assert (case / "run.json").read_bytes() == record and "--overwrite" in capsys.readouterr().err
    for _ in range(2):  # its own table: replaced
        assert main(["summarize", str(out), "-o", str(tmp_path / "table.csv"), "--quiet"]) == 0
    assert [r["status"] for r in summary_rows(tmp_path / "table.csv")] == ["ok"]
    assert main(["summarize", str(out), "-o", str(case / "run.json"), "--quiet", "--overwrite"]) == 0


def test_progress_in_a_log_has_no_carriage_returns(tiny_model, volume_file, tmp_path, capsys):
    # under pytest stderr is captured, not a terminal: the default bar must turn into lines
    code = main(["segment", str(volume_file), "-o", str(tmp_path / "o"), "--model", str(tiny_model.folder),
                 "--brain-mask", "none"])
    err = capsys.readouterr().err
    assert code == 0 and "\r" not in err
    assert "inference: inference (auto mode) done" in err and "postprocess:" in err


def test_stage_lines_one_line_per_stage():
    buf = io.StringIO()
    emit = stage_lines(buf, every_s=3600)
    for stage in ("read", "inference"):
        emit(ProgressEvent(stage, 0.0, "start"))
        emit(ProgressEvent(stage, 0.5, "half"))
        emit(ProgressEvent(stage, 1.0, f"{stage} done"))
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2 and lines[1].endswith("inference: inference done") and "\r" not in buf.getvalue()
    assert tqdm_bar().__qualname__.startswith("stage_lines")  # stderr is not a terminal here


def test_a_busy_case_does_not_stop_the_other_shards_cases(tiny_model, cohort, tmp_path, capsys):
    manifest, ids, _ = cohort
    out = tmp_path / "out"
    # another process holds the whole folder (a single-case run) and one case folder
    with outputs.output_folder_lock(out), outputs.output_folder_lock(out / ids[0]):
        assert segment(manifest, out, tiny_model, "--shard", "0/2") == 1
    rows = {r["case_id"]: r for r in summary_rows(out / "summary.shard-0-of-2.csv")}
    assert rows[ids[0]]["status"] == "failed" and "another brainmetseg run" in rows[ids[0]]["message"]
    assert all(rows[c]["status"] == "ok" for c in ids[2::2])
