"""Model packages that differ from a base package only in the network weights, made from one
training run's kept checkpoints (``brainmetseg train --keep-every N``), to price checkpoint
averaging (docs/training/candidate_stage.md):

- ``last``: the newest kept checkpoint;
- ``mean<K>``: the element-wise mean of the K newest (one network; free at inference);
- ``ensemble<K>``: the K newest as an ensemble (logits averaged; K forwards per case).

Everything else (card, operating point, outline threshold, candidate scorer) is the base
package's, so a difference in the figures is the weights'.

Usage::

    python docs/training/checkpoint_variants.py RUN/checkpoints -o VARIANTS \
        --base Resources/Models/brainmetseg-demo --mean 3 5 --ensemble 3
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from safetensors.torch import load_file, save_file

from BrainMetSegLib.checksums import sha256_file
from BrainMetSegLib.train.averaging import average_states, kept_checkpoints
from BrainMetSegLib.train.checkpoint import network_tensors


def _package(base: Path, out: Path, suffix: str, states: list[dict], epochs: list[int]) -> None:
    if out.exists():
        raise SystemExit(f"{out} exists; remove it or choose another -o.")
    shutil.copytree(base, out)
    card = json.loads((out / "model.json").read_text())
    (out / card["weights"]).unlink()
    members = []
    for k, state in enumerate(states):
        name = "model.safetensors" if k == 0 else f"model_{k}.safetensors"
        save_file({key: value.contiguous() for key, value in state.items()}, str(out / name))
        members.append({"weights": name, "sha256": sha256_file(out / name)})
    card.update(version=f"{card['version']}+{suffix}", weights=members[0]["weights"], sha256=members[0]["sha256"],
                ensemble=members if len(members) > 1 else [])
    card["provenance"] = {**card.get("provenance", {}),
                          "checkpoint_variant": f"{suffix}: kept checkpoints of epochs {epochs}"}
    (out / "model.json").write_text(json.dumps(card, indent=1) + "\n")
    print(f"{out}: {suffix}, epochs {epochs}")


def _network(path: Path) -> dict:
    return network_tensors(load_file(str(path)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", type=Path)
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--base", type=Path, default=Path("Resources/Models/brainmetseg-demo"))
    p.add_argument("--mean", type=int, nargs="*", default=[5])
    p.add_argument("--ensemble", type=int, nargs="*", default=[])
    args = p.parse_args()
    kept = kept_checkpoints(args.checkpoints)
    if len(kept) < max([1, *args.mean, *args.ensemble]):
        raise SystemExit(f"{args.checkpoints}: {len(kept)} kept checkpoints, too few.")
    args.output.mkdir(parents=True, exist_ok=True)
    epoch, path = kept[-1]
    _package(args.base, args.output / "last", "last", [_network(path)], [epoch])
    for k in args.mean:
        chosen = kept[-k:]
        _package(args.base, args.output / f"mean{k}", f"mean{k}", [average_states([q for _, q in chosen])],
                 [e for e, _ in chosen])
    for k in args.ensemble:
        chosen = kept[-k:]
        _package(args.base, args.output / f"ensemble{k}", f"ensemble{k}", [_network(q) for _, q in chosen],
                 [e for e, _ in chosen])


if __name__ == "__main__":
    main()
