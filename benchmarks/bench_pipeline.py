"""Time and peak memory of each pipeline stage, ours against MONAI's default, in one process.

    python benchmarks/bench_pipeline.py [--model paper|demo] [--package FOLDER] [--precision auto|fp32|bf16|int8]
        [--backend auto|torch|openvino] [--cold-cache]
        [--inference-mode auto|whole|paper] [--before] [--skip-baseline] [--repeat N]
        [--mirror none|lr|all] [--grid-shifts N] [--backend-cache FOLDER] [--image CE_T1] [--json OUT]

Input: real anatomy (Colin27 with skull from Debian's mricron-data when installed,
else nilearn's MNI152 T1) placed on a 1 mm 256 x 256 x 176 grid (no lesion: the candidate stage
has nothing to measure), or the scan ``--image`` names. Network: ``paper`` =
the paper's FlexibleUNet with a ResNet-34 encoder and decoder dropout 0.5, random
weights (speed does not depend on the weights); ``demo`` = the bundled demo model (or the
package ``--package`` names). ``--precision int8`` runs the package's int8 network.

Runs, all in this process so machine load hits them alike:
- ``ours``: the pipeline as configured (default: auto mode, auto precision);
- ``before`` (with --before): the pipeline as it was before whole-volume inference:
  the paper's sliding window over the brain box (card patch, 50 % overlap), fp32;
- ``baseline``: MONAI ``sliding_window_inference`` with default settings (roi 128^3,
  sw_batch_size 1, constant blending, fp32) and the paper's 50 % overlap on the full,
  uncropped volume at the model spacing.
With OpenVINO (``--backend openvino``, or ``auto`` where it picks it) the network is exported
into a fresh cache folder before the timed run (seconds recorded as ``openvino_export``), and so
is deepbet's brain network when deepbet runs through it; the timed run reads both from there and
compiles them, as every run after a machine's first does;
``--cold-cache`` times the first run instead (export inside the timed inference).
Peak memory is the process's resident set size sampled every 10 ms, per stage. The CPU's
model and flags, the threads, the malloc in use and the load average are recorded: the
machine this was written on is shared, so compare the in-process ratios, not the seconds.
Nothing here is a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from BrainMetSegLib.architectures import build_network
from BrainMetSegLib.geometry import Grid, resample
from BrainMetSegLib.models import ModelCard, load_package, save_package
from BrainMetSegLib.options import GRID_SHIFTS, Backend, Device, InferenceMode, Mirroring, Precision, values
from BrainMetSegLib.outputs import write_result
from BrainMetSegLib.pipeline import SegmentConfig, Segmenter
from BrainMetSegLib.precision import cpu_features

COLIN = Path("/usr/share/mricron/templates/ch2.nii.gz")


class RssSampler:
    """Peak resident memory (MiB) of this process per labelled phase."""

    def __init__(self, every_s: float = 0.01):
        self.every_s, self.phase, self.peaks = every_s, "start", {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._page = os.sysconf("SC_PAGE_SIZE")

    def rss_mib(self) -> float:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * self._page / 2**20

    def _run(self):
        while not self._stop.is_set():
            rss = self.rss_mib()
            self.peaks[self.phase] = max(self.peaks.get(self.phase, 0.0), rss)
            time.sleep(self.every_s)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def demo_case(prefix: str, backend_cache: str | None) -> tuple[Path, Segmenter]:
    """The anatomy input written to a new temporary folder, and a CPU :class:`Segmenter` of the
    bundled demo model (the other benchmarks' common start)."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    path = work / "ce_t1.nii.gz"
    sitk.WriteImage(anatomy_on_grid(), str(path))
    package = load_package("brainmetseg-demo")
    return path, Segmenter(SegmentConfig(model=str(package.folder), device="cpu", backend_cache=backend_cache),
                           package)


def anatomy_on_grid() -> sitk.Image:
    """A real T1 head/brain resampled onto a 1 mm 256 x 256 x 176 grid (centred)."""
    if COLIN.is_file():
        source = sitk.ReadImage(str(COLIN), sitk.sitkFloat32)
    else:
        import nibabel as nib
        from nilearn.datasets import load_mni152_template

        tmp = Path(tempfile.mkdtemp()) / "mni.nii.gz"
        nib.save(load_mni152_template(resolution=1), tmp)
        source = sitk.ReadImage(str(tmp), sitk.sitkFloat32)
    size = np.array([256, 256, 176])
    centre = np.mean(Grid.of(source).corners_lps(), axis=0)
    grid = Grid(tuple(int(s) for s in size), (1.0, 1.0, 1.0), tuple((centre - (size - 1) / 2).tolist()))
    return resample(source, grid)


def paper_model(folder: Path):
    card = ModelCard(name="paper-resnet34-random", version="bench", architecture="FlexibleUNet",
                     architecture_args={"backbone": "resnet34", "dropout": 0.5}, trained=False)
    torch.manual_seed(0)
    return save_package(build_network(card.architecture, 1, 1, card.architecture_args), card, folder)


def baseline_monai(net, image: sitk.Image, spacing) -> tuple[float, int]:
    """MONAI defaults on the full uncropped volume at model spacing, fp32: seconds, windows."""
    from monai.inferers import sliding_window_inference

    from BrainMetSegLib.geometry import axis_aligned_grid
    from BrainMetSegLib.inference import count_windows

    net = net.to(memory_format=torch.contiguous_format)  # as a default user would have it
    arr = sitk.GetArrayFromImage(resample(image, axis_aligned_grid(image, spacing)))
    arr = (arr - arr.mean()) / arr.std()
    x = torch.from_numpy(arr[None, None].astype(np.float32))
    t0 = time.perf_counter()
    with torch.inference_mode():
        sliding_window_inference(x, (128, 128, 128), 1, net, overlap=0.5)
    return time.perf_counter() - t0, count_windows(arr.shape, (128,) * 3, 0.5)


def window_seconds(net, n: int) -> float:
    """Median seconds of ``n`` forwards of one 128^3 window, fp32 (MONAI's default window)."""
    x = torch.randn(1, 1, 128, 128, 128)
    net = net.to(memory_format=torch.contiguous_format)
    times = []
    with torch.inference_mode():
        for _ in range(n):
            t0 = time.perf_counter()
            net(x)
            times.append(time.perf_counter() - t0)
    return float(np.median(times))


def run_pipeline(name: str, config: SegmentConfig, package, net, path: Path, work: Path,
                 rss: RssSampler) -> dict:
    """One whole pipeline run (read to write); per-stage seconds and peak RSS."""
    def track(event):
        rss.phase = f"{name}:{event.stage}"

    segmenter = Segmenter(config, package)
    segmenter._net = net
    t0 = time.perf_counter()
    result = segmenter.run(str(path), track)
    rss.phase = f"{name}:write"
    t1 = time.perf_counter()
    write_result(result, work / f"out_{name}", ".nii.gz")
    timings = {**result.timings_s, "write": round(time.perf_counter() - t1, 3)}
    plan = result.provenance["inference_run"]
    rss.phase = "idle"
    return {"stages_s": timings, "total_s": round(time.perf_counter() - t0, 2),
            "peak_rss_mib": {k.split(":", 1)[1]: round(v) for k, v in rss.peaks.items()
                             if k.startswith(name + ":")},
            "inference_plan": {k: plan[k] for k in ("mode", "shape_xyz", "roi_xyz", "windows", "overlap",
                                                    "estimated_mib", "budget_mib", "bytes_per_voxel")},
            "precision": plan["precision"], "backend": plan.get("backend"), "mirror": plan.get("mirror"),
            "grid_shifts": (plan.get("grid_shifts") or {}).get("grids", 1), "lesions": result.n_lesions}


def warm_openvino_cache(args, package, net, cache: Path) -> dict | None:
    """Export the network, and deepbet's when it runs, into ``cache`` untimed when the run will
    use OpenVINO (None otherwise), then forget the compiled copies, so the timed run reads the
    cache as a machine's later runs do."""
    from BrainMetSegLib import openvino_backend
    from BrainMetSegLib.architectures import size_divisor
    from BrainMetSegLib.backends import choose_backend
    from BrainMetSegLib.precision import choose_precision
    from BrainMetSegLib.skullstrip import _deepbet, _with_openvino

    autocast = choose_precision(args.precision, Device.CPU, int8_available=bool(package.card.int8_network)).autocast
    if args.cold_cache or choose_backend(args.backend, Device.CPU, autocast).used != Backend.OPENVINO:
        return None
    card = package.card
    t0 = time.perf_counter()
    _, record = openvino_backend.openvino_forward(net, len(card.input_sequences),
                                                  size_divisor(card.architecture, card.architecture_args),
                                                  package.network_identity(), cache)
    record = {**record, "seconds": round(time.perf_counter() - t0, 2)}
    if args.brain_mask == "deepbet":
        t0 = time.perf_counter()
        info: dict = {}
        _with_openvino(_deepbet(Device.CPU), str(cache), info)
        record["deepbet"] = {**info.get("deepbet_backend", {}), "seconds": round(time.perf_counter() - t0, 2)}
    openvino_backend._COMPILED.clear()
    return record


def import_seconds() -> float:
    """Wall time of importing the library's pipeline (torch, MONAI, SimpleITK) in a fresh process."""
    code = "import time; t=time.perf_counter(); import BrainMetSegLib.pipeline, monai.inferers; " \
           "print(time.perf_counter()-t)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    return round(float(out.stdout.strip().splitlines()[-1]), 2)


def machine() -> dict:
    return {"cpu": cpu_features().as_dict(), "torch": torch.__version__,
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "ld_preload": os.environ.get("LD_PRELOAD", ""), "load_average_at_start": os.getloadavg(),
            "uptime_at_start": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="paper", choices=("paper", "demo"))
    parser.add_argument("--package", metavar="FOLDER", help="with --model demo: this package folder instead of "
                        "the bundled demo (e.g. one with int8 networks)")
    parser.add_argument("--precision", default=Precision.AUTO.value, choices=values(Precision))
    parser.add_argument("--backend", default=Backend.AUTO.value, choices=values(Backend))
    parser.add_argument("--cold-cache", action="store_true",
                        help="OpenVINO: time a machine's first run (export inside the timed run)")
    parser.add_argument("--inference-mode", default=InferenceMode.AUTO.value, choices=values(InferenceMode))
    parser.add_argument("--brain-mask", default="deepbet")
    parser.add_argument("--before", action="store_true",
                        help="also run the pipeline as before: paper sliding window, fp32")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--baseline-windows", type=int, metavar="N",
                        help="time only N 128^3 windows of the baseline and extrapolate to its window "
                             "count (for slow machines; the network is ~100 %% of its time)")
    parser.add_argument("--crop-margin", type=float, default=None, metavar="MM",
                        help="crop margin around the dilated brain for 'ours' (default: the pipeline's)")
    parser.add_argument("--backend-cache", metavar="FOLDER",
                        help="OpenVINO cache to use (default: a fresh one; the untimed export fills it either way)")
    parser.add_argument("--mirror", default=Mirroring.NONE.value, choices=values(Mirroring),
                        help="test-time mirroring for 'ours' (to price it)")
    parser.add_argument("--grid-shifts", type=int, default=1, choices=GRID_SHIFTS,
                        help="test-time grid shifts for 'ours' (to price them)")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="run 'ours' N times in this process: runs 2..N are a cohort's next cases "
                             "(compiled networks and deepbet kept), reported as ours_2 ... ours_N")
    parser.add_argument("--image", metavar="CE_T1", help="time this scan instead of the lesion-free anatomy (e.g. "
                        "Resources/Sample/sample_ce_t1.nii.gz: a case with lesions, whose candidate stage has work)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    report = {"machine": machine(), "import_s_fresh_process": import_seconds()}
    work = Path(tempfile.mkdtemp(prefix="bmsbench-"))
    image = sitk.ReadImage(args.image) if args.image else anatomy_on_grid()
    path = work / "ce_t1.nii.gz"
    sitk.WriteImage(image, str(path))
    package = paper_model(work / "model") if args.model == "paper" else load_package(args.package or "brainmetseg-demo")
    report["input"] = {"source": args.image or (COLIN.name if COLIN.is_file() else "MNI152"), "size": image.GetSize(),
                       "spacing_mm": image.GetSpacing()}
    with RssSampler() as rss:
        rss.phase = "load"
        t0 = time.perf_counter()
        net = package.load_network("cpu")
        report["model_load_s"] = round(time.perf_counter() - t0, 2)
        report["network"] = (f"{package.card.name}: {package.card.architecture} "
                             f"{package.card.architecture_args} "
                             f"({sum(p.numel() for p in net.parameters()) / 1e6:.2f} M params)")
        report["threads"] = torch.get_num_threads()
        if args.brain_mask == "deepbet":  # its TorchScript load is a once-per-process cost
            from BrainMetSegLib.skullstrip import _deepbet

            t0 = time.perf_counter()
            _deepbet("cpu")
            report["deepbet_load_s"] = round(time.perf_counter() - t0, 2)
        base = dict(model=str(package.folder), device="cpu", brain_mask=args.brain_mask,
                    backend_cache=args.backend_cache or str(work / "openvino_cache"))
        rss.phase = "openvino_export"
        report["openvino_export"] = warm_openvino_cache(args, package, net, Path(base["backend_cache"]))
        margin = {} if args.crop_margin is None else {"crop_margin_mm": args.crop_margin}
        report["crop_margin_mm_ours"] = margin.get("crop_margin_mm", SegmentConfig().crop_margin_mm)
        runs = {"ours": SegmentConfig(**base, precision=args.precision, inference_mode=args.inference_mode,
                                      backend=args.backend, mirror=args.mirror, grid_shifts=args.grid_shifts,
                                      **margin)}
        if args.before:
            runs["before"] = SegmentConfig(**base, precision="fp32", inference_mode="paper", backend="torch")
        for name, config in runs.items():
            report[name] = run_pipeline(name, config, package, net, path, work, rss)
            print(name, json.dumps(report[name]), flush=True)
        for k in range(2, args.repeat + 1):
            report[f"ours_{k}"] = run_pipeline(f"ours_{k}", runs["ours"], package, net, path, work, rss)
            print(f"ours_{k}", json.dumps(report[f"ours_{k}"]), flush=True)
        if not args.skip_baseline:
            rss.phase = "baseline"
            if args.baseline_windows:
                from BrainMetSegLib.geometry import axis_aligned_grid
                from BrainMetSegLib.inference import count_windows

                grid = axis_aligned_grid(image, package.card.spacing_mm)
                windows = count_windows(grid.size_xyz[::-1], (128,) * 3, 0.5)
                per_window = window_seconds(net, args.baseline_windows)
                seconds = per_window * windows
                report["baseline_monai_full_volume"] = {
                    "seconds": round(seconds, 2), "windows": windows, "extrapolated": True,
                    "seconds_per_window_median": round(per_window, 2), "windows_timed": args.baseline_windows}
                if not args.before:  # the paper's windows over the brain box, fp32, at the same rate
                    paper = count_windows(report["ours"]["inference_plan"]["shape_xyz"][::-1], (128,) * 3, 0.5)
                    report["before_inference_extrapolated"] = {"windows": paper,
                                                               "seconds": round(per_window * paper, 2)}
            else:
                seconds, windows = baseline_monai(net, image, package.card.spacing_mm)
                report["baseline_monai_full_volume"] = {"seconds": round(seconds, 2), "windows": windows,
                                                        "peak_rss_mib": round(rss.peaks["baseline"])}
            for name in runs:
                report[f"inference_speedup_{name}_vs_monai_full_volume"] = round(
                    seconds / report[name]["stages_s"]["inference"], 2)
        if args.before:
            report["total_speedup_ours_vs_before"] = round(report["before"]["total_s"]
                                                           / report["ours"]["total_s"], 2)
    report["machine"]["load_average_at_end"] = os.getloadavg()
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
