"""The Slicer module's non-Slicer logic (BrainMetSegLib.slicer_bridge package), tested headless."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from BrainMetSegLib import slicer_bridge as sb
from BrainMetSegLib.errors import ModelError
from BrainMetSegLib.lesion_vocabulary import LESION_COLUMNS
from BrainMetSegLib.progress import ProgressEvent
from BrainMetSegLib.slicer_bridge import requirements as sb_requirements

# ---------------------------------------------------------------- dependencies


def test_missing_requirements_never_touches_protected():
    installed = {r.distribution: "999" for r in sb.REQUIREMENTS}
    assert sb.missing_requirements(installed) == []
    installed["monai"] = None
    installed["connected_components_3d"] = "3.1"   # too old, name spelled differently
    installed.pop("deepbet")
    missing = {r.distribution for r in sb.missing_requirements(installed)}
    assert missing == {"monai", "deepbet"} | ({"connected-components-3d"})
    extra = (*sb.REQUIREMENTS, sb.Requirement("torch", "torch", ">=9"),
             sb.Requirement("simpleitk", "SimpleITK", ">=9"))
    got = {r.distribution for r in sb.missing_requirements({"torch": None, "SimpleITK": "2.0"}, extra)}
    assert "torch" not in got and "simpleitk" not in got


def test_constraints_and_pip_commands(tmp_path):
    text = sb.constraints_text({"torch": "2.4.1+cu121", "simpleitk": "2.4.0"})
    assert text.splitlines() == ["torch==2.4.1+cu121", "SimpleITK==2.4.0"]
    assert "torch<0" in sb.constraints_text({"SimpleITK": "2.4.0"})
    missing = [r for r in sb.REQUIREMENTS if r.distribution in ("monai", "deepbet", "scipy")]
    cmds = sb.pip_install_commands(missing, tmp_path / "c.txt")
    assert cmds[0] == ["monai>=1.4", "scipy>=1.11", "-c", str(tmp_path / "c.txt")]
    assert cmds[1] == ["--no-deps", "deepbet>=1.0.2", "-c", str(tmp_path / "c.txt")]
    assert sb.pip_install_commands([], "c.txt") == []
    for cmd in cmds:  # never installs torch or SimpleITK
        assert not any(a.lower().startswith(("torch", "simpleitk")) for a in cmd)


def test_torch_problem_and_installed_versions():
    assert sb.torch_problem(None) == "PyTorch is not installed"
    assert "older" in sb.torch_problem("2.0.1")
    assert sb.torch_problem("2.4.1+cu121") is None
    versions = sb.installed_versions(["numpy", "surely-not-installed-xyz"])
    assert versions["numpy"] == np.__version__
    assert versions["surely-not-installed-xyz"] is None
    assert sb_requirements._satisfies_simple("2.4.1+cu121", ">=2.2,<3")
    assert not sb_requirements._satisfies_simple("1.13.0", ">=2.2")


# ---------------------------------------------------------------- one run


def test_run_folder_lifecycle(tmp_path):
    with sb.RunFolder(tmp_path) as run:
        assert run.path.parent == tmp_path and run.inputs.is_dir()
        p = run.input_path("t1ce")
        assert p == run.inputs / "t1ce.nrrd"
        with pytest.raises(ValueError):
            run.input_path("pd")
        run.outputs.mkdir()
        (run.outputs / "lesion_labels.nrrd").write_bytes(b"x")
        found = run.collect_outputs({"labels": str(run.outputs / "lesion_labels.nrrd")})
        assert found["labels"].read_bytes() == b"x"
        assert run.collect_outputs({"labels": "lesion_labels.nrrd"})["labels"] == found["labels"]
        with pytest.raises(FileNotFoundError, match="probability"):
            run.collect_outputs({"probability": str(run.outputs / "probability.nrrd")})
        outside = tmp_path / "elsewhere.nrrd"
        outside.write_bytes(b"y")
        with pytest.raises(ValueError, match="outside"):
            run.collect_outputs({"labels": str(outside)})
        with pytest.raises(ValueError, match="outside"):  # a relative path climbing out
            run.collect_outputs({"labels": "../../elsewhere.nrrd"})
        path = run.path
    assert not path.exists()
    assert outside.exists()
    kept = sb.RunFolder(tmp_path, keep=True)
    kept.cleanup()
    assert kept.path.exists()


def test_segment_command():
    opts = sb.RunOptions(model="brainmetseg-demo", device="cpu", threshold=0.45, min_volume_mm3=5,
                         brain_mask="none")
    cmd = sb.segment_command("/opt/PythonSlicer", {"t1ce": "/t/in.nrrd", "flair": "/t/f.nrrd",
                                                   "t2": None}, "/t/out", opts)
    assert cmd[:5] == ["/opt/PythonSlicer", "-m", "BrainMetSegLib", "segment", "/t/in.nrrd"]
    pairs = dict(zip(cmd[5::2], cmd[6::2], strict=False))
    assert pairs["-o"] == "/t/out" and pairs["--progress"] == "json"
    assert pairs["--device"] == "cpu" and pairs["--brain-mask"] == "none"
    assert pairs["--threshold"] == "0.45" and pairs["--min-volume"] == "5"
    assert pairs["--flair"] == "/t/f.nrrd" and "--t2" not in cmd and "--t1" not in cmd
    assert pairs["--model"] == "brainmetseg-demo" and pairs["--format"] == "nrrd"
    assert "--outline-threshold" not in cmd  # unset: the card's
    outlined = sb.segment_command("py", {"t1ce": "a.nrrd"}, "o",
                                  sb.RunOptions(threshold=0.9, min_volume_mm3=10, outline_threshold=0.35))
    assert dict(zip(outlined[5::2], outlined[6::2], strict=False))["--outline-threshold"] == "0.35"
    default = sb.segment_command("py", {"t1ce": "a.nrrd"}, "o", sb.RunOptions())
    assert "--threshold" not in default and "--model" not in default
    for bad in (sb.RunOptions(device="gpu"), sb.RunOptions(threshold=1.0),
                sb.RunOptions(min_volume_mm3=-1), sb.RunOptions(brain_mask="bet"),
                sb.RunOptions(outline_threshold=0.0), sb.RunOptions(threshold=0.5, outline_threshold=0.6)):
        with pytest.raises(ValueError):
            sb.segment_command("py", {"t1ce": "a.nrrd"}, "o", bad)
    with pytest.raises(ValueError, match="CE-T1"):
        sb.segment_command("py", {"flair": "a.nrrd"}, "o", sb.RunOptions())
    # the CLI parser accepts every option the module passes
    from BrainMetSegLib.cli import build_parser

    args = build_parser(("segment",)).parse_args(cmd[3:])
    assert args.threshold == 0.45 and args.min_volume == 5 and args.flair == "/t/f.nrrd"
    assert build_parser(("segment",)).parse_args(outlined[3:]).outline_threshold == 0.35


def test_subprocess_environment():
    env = sb.subprocess_environment({"PYTHONPATH": os.pathsep.join(["/a", "/b"])}, "/lib")
    assert env["PYTHONPATH"].split(os.pathsep) == ["/lib", "/a", "/b"]
    assert env["PYTHONUNBUFFERED"] == "1"
    assert (sb.library_parent() / "BrainMetSegLib" / "__init__.py").is_file()
    assert sb.python_slicer_executable(lambda name: None) == sys.executable
    assert sb.python_slicer_executable(lambda name: "/x/" + name) == "/x/PythonSlicer"


# ---------------------------------------------------------------- output parsing


def test_parse_result_line():
    line = json.dumps({"type": "result", "case": "c1", "lesions": 3,
                       "outputs": {"labels": "/o/lesion_labels.nrrd", "probability": "/o/p.nrrd"}})
    res = sb.parse_result_line(line + "\n")
    assert res == sb.RunResult("c1", {"labels": "/o/lesion_labels.nrrd", "probability": "/o/p.nrrd"}, 3)
    for other in ("", "hello", "{not json", json.dumps({"type": "progress", "stage": "x"}),
                  json.dumps({"type": "result", "outputs": ["a"]}),
                  json.dumps({"type": "result", "outputs": {}, "lesions": "many"}), "[1, 2]"):
        assert sb.parse_result_line(other) is None


def test_output_monitor_progress_result_and_errors():
    mon = sb.OutputMonitor()
    assert mon.status_text == "Starting..."
    seen = []
    for stage in ("read", "preprocess", "load_model", "inference", "postprocess"):
        for f in (0.0, 0.5, 1.0):
            ev = mon.feed_stdout(ProgressEvent(stage, f, f"{stage} {f}").to_json() + "\n")
            assert isinstance(ev, ProgressEvent)
            seen.append(mon.overall_fraction)
    assert seen == sorted(seen) and 0.5 < seen[-1] < 1.0
    assert mon.status_text == "postprocess: postprocess 1.0"
    mon.feed_stdout(ProgressEvent("inference", 0.2).to_json())  # late / repeated event: no going back
    assert mon.overall_fraction == seen[-1]
    assert mon.feed_stdout("some library warning") is None
    res = mon.feed_stdout(json.dumps({"type": "result", "case": "c", "lesions": 2, "outputs": {}}))
    assert isinstance(res, sb.RunResult) and mon.result is res
    assert mon.overall_fraction == 1.0 and "2 lesion" in mon.status_text
    assert mon.log == ["some library warning"]

    from BrainMetSegLib.errors import InputError
    from BrainMetSegLib.progress import error_json

    bad = sb.OutputMonitor()
    bad.feed_stderr("brainmetseg segment: error: /t/in.nrrd: image is 2D; a 3D CE-T1 is needed.\n")
    report = bad.feed_stdout(error_json(InputError("/t/in.nrrd: image is 2D; a 3D CE-T1 is needed."), "c1"))
    bad.feed_stderr("/usr/lib/python3/warnings.py:1: UserWarning: error: not the library's\n")
    assert (report.kind, report.exit_code, report.case) == ("InputError", 2, "c1")
    assert bad.errors == [report]
    assert bad.error_message(2) == "/t/in.nrrd: image is 2D; a 3D CE-T1 is needed."
    assert sb.OutputMonitor().feed_stdout('{"type": "error", "kind": "NoSuchKind"}') is None
    crash = sb.OutputMonitor()
    crash.feed_stderr("Traceback (most recent call last):")
    crash.feed_stderr("MemoryError: cannot allocate")
    assert crash.error_message(1) == "MemoryError: cannot allocate"
    assert "exit code 5 (out of memory)" in sb.OutputMonitor().error_message(5)
    assert "without reporting" in sb.OutputMonitor().error_message(0)


# ---------------------------------------------------------------- process control


@pytest.mark.skipif(os.name == "nt", reason="POSIX process groups")
def test_kill_process_tree_ends_children(tmp_path):
    """Cancel must end the launcher and the Python process it started."""
    pidfile = tmp_path / "child.pid"
    script = textwrap.dedent(f"""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        open({str(pidfile)!r}, "w").write(str(child.pid))
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], **sb.popen_kwargs())
    deadline = time.monotonic() + 20
    while not (pidfile.exists() and pidfile.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(pidfile.read_text())
    sb.kill_process_tree(proc.pid, timeout=2)
    assert proc.wait(timeout=5) != 0
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        # reaped by init once orphaned; a zombie counts as ended
        try:
            with open(f"/proc/{child}/stat") as fh:
                if fh.read().split()[2] == "Z":
                    break
        except FileNotFoundError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("grandchild process survived kill_process_tree")
    sb.kill_process_tree(proc.pid)  # already gone: no error


# ---------------------------------------------------------------- GPUs and models


def test_parse_nvidia_smi():
    text = "NVIDIA GeForce RTX 3090, 24576\nTesla T4, 15360\n\ngarbage line\nbad, mem\n"
    gpus = sb.parse_nvidia_smi(text)
    assert gpus == [sb.GpuInfo("NVIDIA GeForce RTX 3090", 24576), sb.GpuInfo("Tesla T4", 15360)]
    assert str(gpus[0]) == "NVIDIA GeForce RTX 3090 (24.0 GB)"
    assert sb.detect_gpus(lambda name: None) == []


def test_model_choices_and_card(tmp_path):
    entries = [{"name": "brainmetseg-demo", "path": "Models/demo"},
               {"name": "big", "url": "https://x", "sha256": "0"}, {"name": "brainmetseg-demo"}]
    choices = sb.model_choices(entries, [str(tmp_path / "mine"), str(tmp_path / "mine")])
    assert choices == [("brainmetseg-demo", "brainmetseg-demo"), ("big (download)", "big"),
                       (f"mine ({tmp_path / 'mine'})", str(tmp_path / "mine"))]
    with pytest.raises(FileNotFoundError):
        sb.read_model_card(tmp_path)
    (tmp_path / "model.json").write_text(json.dumps({"name": "m", "version": "1", "architecture": "basicunet"}))
    with pytest.raises(ModelError, match="architecture"):  # cards are checked field by field on reading
        sb.read_model_card(tmp_path)
    (tmp_path / "model.json").write_text(json.dumps({"name": "m", "version": "1", "architecture": "BasicUNet"}))
    assert sb.read_model_card(tmp_path)["name"] == "m"


def test_batch_manifest_and_command(tmp_path):
    from BrainMetSegLib.cli import build_parser
    from BrainMetSegLib.commands.segment import read_manifest

    (tmp_path / "a.nii.gz").write_bytes(b"")
    items = [tmp_path / "a.nii.gz", {"t1ce": str(tmp_path / "b.nrrd"), "flair": "rel/f.nrrd",
                                     "case_id": "patient-2"}]
    manifest = sb.write_manifest(items, tmp_path / "m.csv")
    cases = read_manifest(str(manifest))
    assert cases[0].t1ce == str((tmp_path / "a.nii.gz").resolve())
    assert cases[1].id == "patient-2"
    assert cases[1].flair == str(Path("rel/f.nrrd").resolve())  # relative to the working folder
    for bad in ([], [{"flair": "x"}], [{"t1ce": "x", "pd": "y"}]):
        with pytest.raises(ValueError):
            sb.write_manifest(bad, tmp_path / "bad.csv")
    cmd = sb.batch_command("py", manifest, tmp_path / "out", sb.RunOptions(device="cpu"), overwrite=True)
    args = build_parser(("segment",)).parse_args(cmd[3:])
    assert args.manifest == str(manifest) and args.overwrite and args.inputs == []
    assert args.progress == "json" and args.device == "cpu"


# ---------------------------------------------------------------- the real CLI, as the module runs it


def _small_ce_t1(path):
    rng = np.random.default_rng(0)
    k, j, i = np.mgrid[:40, :48, :48]
    arr = rng.normal(100, 5, (40, 48, 48)).astype(np.float32)
    for (ck, cj, ci), r in (((16, 18, 18), 6), ((26, 32, 30), 4)):
        arr[np.sqrt((k - ck) ** 2 + (j - cj) ** 2 + (i - ci) ** 2) < r] += 200
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((1.0, 1.0, 1.2))
    img.SetOrigin((-24.0, -24.0, -24.0))
    sitk.WriteImage(img, str(path))
    return img


def _cli_run(tmp_path, inputs=None, **kw):
    run_folder = sb.RunFolder(tmp_path)
    if inputs is None:
        _small_ce_t1(run_folder.input_path("t1ce"))
        inputs = {"t1ce": str(run_folder.input_path("t1ce"))}
    cmd = sb.segment_command(sys.executable, inputs, run_folder.outputs,
                             sb.RunOptions(device="cpu", brain_mask="none", threshold=0.5))
    env = dict(os.environ)
    env.update(sb.subprocess_environment(env))
    return sb.CliRun(cmd, env, run_folder, cwd=tmp_path, **kw)


def test_cli_run_end_to_end(tmp_path):
    """The module's run: CLI subprocess, JSON progress, result line, outputs collected, folder removed."""
    progress, completed = [], []

    def on_success(run):
        found = run.run_folder.collect_outputs(run.monitor.result.outputs)
        labels = sitk.ReadImage(str(found["labels"]))
        rows = json.loads(found["table_json"].read_text())["lesions"]
        return labels, rows

    run = _cli_run(tmp_path, on_success=on_success, on_progress=lambda f, t: progress.append((f, t)),
                   on_complete=completed.append)
    assert run.status == "running"
    run.wait()
    assert run.status == "done", run.error_message + "\n" + "\n".join(run.monitor.log[-20:])
    assert completed == [run] and run.returncode == 0
    labels, rows = run.value
    n = run.monitor.result.lesions
    assert len(rows) == n == int(sitk.GetArrayViewFromImage(labels).max())
    assert labels.GetSize() == (48, 48, 40) and labels.GetSpacing() == (1.0, 1.0, 1.2)
    assert all(set(r) == {c.name for c in LESION_COLUMNS} for r in rows)
    fractions = [f for f, _ in progress]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any("inference" in t for _, t in progress)
    assert not run.run_folder.path.exists()
    assert not run.poll()


def test_cli_run_cancel_kills_and_cleans_up(tmp_path):
    run = _cli_run(tmp_path, on_success=lambda run: pytest.fail("cancelled run imported results"))
    deadline = time.monotonic() + 60
    while run.poll() and run.monitor.last_event is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert run.monitor.last_event is not None, "no progress before the deadline"
    run.cancel()
    run.wait()
    assert run.status == "cancelled"
    assert run.process.poll() is not None and run.monitor.result is None
    assert not run.run_folder.path.exists()


def test_cli_run_wait_gives_up_at_its_deadline():
    run = sb.CliRun([sys.executable, "-c", "import time; time.sleep(60)"])
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match="still running"):
        run.wait(timeout=0.5)
    assert time.monotonic() - t0 < 20
    assert run.status == "cancelled" and run.process.poll() is not None


def test_cli_run_failure_reports_library_message(tmp_path):
    missing = tmp_path / "nope.nrrd"
    run = _cli_run(tmp_path, inputs={"t1ce": str(missing)}).wait()
    assert run.status == "failed" and run.returncode != 0
    assert "nope.nrrd" in run.error_message
    assert "Traceback" not in run.error_message
    assert [e.kind for e in run.monitor.errors] == ["InputError"]
    assert run.returncode == run.monitor.errors[0].exit_code == 2


def test_bridge_and_test_fixtures_import_without_torch():
    """What the Slicer module needs before its dependencies are installed imports without
    torch, and so does the suite's conftest (pure-Python tests need no torch)."""
    script = textwrap.dedent("""
        import sys
        sys.modules["torch"] = None  # any 'import torch' now raises ImportError
        sys.path.insert(0, "Testing")
        import conftest
        from BrainMetSegLib import slicer_bridge, progress, errors, sequences
        assert "torch" not in [m for m in sys.modules if sys.modules[m] is not None]
    """)
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.run([sys.executable, "-c", script], cwd=root, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
