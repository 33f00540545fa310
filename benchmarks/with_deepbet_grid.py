"""Run another benchmark script with deepbet's network on a GRID^3 crop instead of the library's
default (:data:`BrainMetSegLib.skullstrip.DEEPBET_GRID`), to compare grids in the same way:

    python benchmarks/with_deepbet_grid.py 256 benchmarks/robustness.py -n 20 --seed 6000 -o WORK256 ...
    python benchmarks/with_deepbet_grid.py 256 benchmarks/bench_pipeline.py --model demo --skip-baseline ...

The grid reaches every deepbet call of the pipeline (axis-aligned and oblique scans, thin and thick:
it replaces the pipeline's own choice, 256 for scans its thick-slice weights run); run.json's
``brain_mask_run.deepbet_grid`` records it. The library's two cube constants are set to it too,
so robustness.py's cache key (``-deepbet<thin>-<thick>``) names the cube that ran.
"""

import functools
import runpy
import sys

import BrainMetSegLib.skullstrip as skullstrip


def _forced(deepbet_mask, grid: int):
    @functools.wraps(deepbet_mask)
    def forced(*args, **kwargs):
        return deepbet_mask(*args, **{**kwargs, "grid": grid})

    return forced


def main() -> None:
    if len(sys.argv) < 3 or not sys.argv[1].isdigit():
        raise SystemExit(__doc__)
    grid = int(sys.argv[1])
    if grid % skullstrip.DEEPBET_DIVISOR:
        raise SystemExit(f"with_deepbet_grid.py: {grid} is not a multiple of {skullstrip.DEEPBET_DIVISOR}")
    # looked up at each call; the grid is forced, over the pipeline's own choice (256 for thick scans)
    skullstrip.deepbet_mask = _forced(skullstrip.deepbet_mask, grid)
    skullstrip.DEEPBET_GRID = skullstrip.DEEPBET_GRID_THICK = grid  # read by benchmarks' cache keys
    sys.argv = sys.argv[2:]
    runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
