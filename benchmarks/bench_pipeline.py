"""Time and peak memory of each pipeline stage, and our sliding window against MONAI's.

    python benchmarks/bench_pipeline.py [--precision fp32|bf16] [--skip-baseline]

Input: real anatomy (Colin27 with skull from Debian's mricron-data when installed,
else nilearn's MNI152 T1) placed on a 1 mm 256 x 256 x 176 grid. Network: the
paper's FlexibleUNet with a ResNet-34 encoder and decoder dropout 0.5, random
weights (speed does not depend on the weights). Baseline, run in the same process:
MONAI ``sliding_window_inference`` with default settings (roi 128^3, sw_batch_size 1,
constant blending, fp32) and the paper's 50 % overlap on the full, uncropped volume at
the model spacing. Peak memory is the process's resident set size sampled every 10 ms.
Nothing here is a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from BrainMetSegLib.architectures import build_network
from BrainMetSegLib.geometry import Grid, resample
from BrainMetSegLib.models import ModelCard, save_package
from BrainMetSegLib.outputs import write_result
from BrainMetSegLib.pipeline import SegmentConfig, Segmenter

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
    """MONAI defaults on the full uncropped volume at model spacing: seconds, windows."""
    from monai.inferers import sliding_window_inference

    from BrainMetSegLib.geometry import axis_aligned_grid
    from BrainMetSegLib.inference import count_windows

    arr = sitk.GetArrayFromImage(resample(image, axis_aligned_grid(image, spacing)))
    arr = (arr - arr.mean()) / arr.std()
    x = torch.from_numpy(arr[None, None].astype(np.float32))
    t0 = time.perf_counter()
    with torch.inference_mode():
        sliding_window_inference(x, (128, 128, 128), 1, net, overlap=0.5)
    return time.perf_counter() - t0, count_windows(arr.shape, (128,) * 3, 0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--brain-mask", default="deepbet")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bmsbench-"))
    image = anatomy_on_grid()
    path = work / "ce_t1.nii.gz"
    sitk.WriteImage(image, str(path))
    package = paper_model(work / "model")
    with RssSampler() as rss:
        def track(event):
            rss.phase = event.stage

        segmenter = Segmenter(SegmentConfig(model=str(package.folder), device="cpu",
                                            precision=args.precision, brain_mask=args.brain_mask),
                              package)
        t0 = time.perf_counter()
        result = segmenter.run(str(path), track)
        rss.phase = "write"
        t1 = time.perf_counter()
        write_result(result, work / "out", ".nii.gz")
        timings = {**result.timings_s, "write": round(time.perf_counter() - t1, 3)}
        total = time.perf_counter() - t0
        report = {"input": {"source": COLIN.name if COLIN.is_file() else "MNI152", "size": image.GetSize(),
                            "spacing_mm": image.GetSpacing()},
                  "network": "FlexibleUNet resnet34 dropout 0.5 (random weights), "
                             f"{sum(p.numel() for p in segmenter.net.parameters()) / 1e6:.1f} M params",
                  "threads": torch.get_num_threads(), "precision": args.precision,
                  "stages_s": timings, "total_s": round(total, 2),
                  "peak_rss_mib": {k: round(v) for k, v in rss.peaks.items()},
                  "lesions_found_by_random_net": result.n_lesions}
        if not args.skip_baseline:
            rss.phase = "baseline"
            seconds, windows = baseline_monai(segmenter.net, image, package.card.spacing_mm)
            ours = timings["inference"]
            report["baseline_monai_full_volume"] = {"seconds": round(seconds, 2), "windows": windows}
            report["speedup_vs_monai_full_volume"] = round(seconds / ours, 2)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
