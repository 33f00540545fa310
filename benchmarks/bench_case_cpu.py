"""CPU and wall seconds of a cohort's cases in one process, and the sha256 of each case's outputs,
for interleaved A/B runs of two checkouts on a shared machine (CPU seconds move less with load
than wall seconds; equal hashes show both checkouts wrote the same files).

    python benchmarks/bench_case_cpu.py [--cases 3] [--backend-cache FOLDER] [--json-lines OUT]

Input: the bench's Colin27 head (bench_pipeline.anatomy_on_grid); the bundled demo model, built
once and handed to the pipeline as bench_pipeline does. Each case is ``Segmenter.run`` +
``write_result`` (run.json left out of the hashes: it holds timings). Run it alternately as
``PYTHONPATH=OLD python benchmarks/bench_case_cpu.py`` and from the branch (this file works with
either). Not a pass/fail test.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_pipeline import demo_case  # noqa: E402

import BrainMetSegLib  # noqa: E402
from BrainMetSegLib.outputs import write_result  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=3)
    parser.add_argument("--backend-cache", metavar="FOLDER")
    parser.add_argument("--json-lines", metavar="OUT", help="append this run's line to OUT")
    args = parser.parse_args()
    path, seg = demo_case("bmscase-", args.backend_cache)
    work, package = path.parent, seg.package
    seg._net = package.load_network("cpu")  # as bench_pipeline: the network given, built
    rows = []
    for k in range(args.cases):
        out = work / f"out{k}"
        c0, t0 = time.process_time(), time.perf_counter()
        result = seg.run(str(path))
        t1 = time.perf_counter()
        write_result(result, out, ".nii.gz")
        t2, c2 = time.perf_counter(), time.process_time()
        hashes = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.iterdir())
                  if p.name != "run.json"}
        rows.append({"case": k + 1, "stages_s": {str(getattr(s, "value", s)): v for s, v in result.timings_s.items()},
                     "write_s": round(t2 - t1, 3), "wall_s": round(t2 - t0, 3), "cpu_s": round(c2 - c0, 2),
                     "lesions": result.n_lesions, "output_sha256": hashes})
        shutil.rmtree(out)
    line = json.dumps({"library": BrainMetSegLib.__file__, "load_average_at_end": os.getloadavg(), "cases": rows})
    print(line)
    if args.json_lines:
        with open(args.json_lines, "a") as fh:
            fh.write(line + "\n")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
