"""Probe: the plain grasp U-Net's TD update (config/grasp_plain.yaml's network, batch 16, one
torch thread) in float32 and under bfloat16 autocast (oneDNN's bf16 convolutions; weights, loss
and optimizer stay float32), alternating in one process. A speed probe only: q_grasp trains in
float32, and what bf16 does to learning is not measured here.

    python benchmarks/probe_unet_bf16.py [--rounds 3] [--updates 40]
        [--out benchmarks/results/unet_bf16_probe.json]
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from q_grasp.learning.networks import UNetQMap  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--updates", type=int, default=40)
    parser.add_argument("--out", type=Path,
                        default=ROOT / "benchmarks" / "results" / "unet_bf16_probe.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = UNetQMap(4, 8, 64, 64, base_channels=8, depth=3, coord_channels=False)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    obs = torch.rand(16, 4, 64, 64)
    actions = torch.randint(0, 8 * 64 * 64, (16,))
    target = torch.rand(16)

    def update(bf16: bool) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            q, _ = net.q_taken_and_max(obs, actions, with_max=False)
        loss = F.huber_loss(q.float(), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    cpu_ms: dict[str, list[float]] = {"float32": [], "bfloat16": []}
    for _ in range(args.rounds):
        for name in cpu_ms:
            for _ in range(3):
                update(name == "bfloat16")
            t0 = time.process_time()
            for _ in range(args.updates):
                update(name == "bfloat16")
            cpu_ms[name].append(1e3 * (time.process_time() - t0) / args.updates)
            print(f"{name}: {cpu_ms[name][-1]:.1f} CPU-ms per update", flush=True)
    medians = {k: round(statistics.median(v), 1) for k, v in cpu_ms.items()}
    print(f"median: float32 {medians['float32']} ms, bfloat16 {medians['bfloat16']} ms "
          f"({medians['float32'] / medians['bfloat16']:.2f}x)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "date": datetime.date.today().isoformat(),
        "command": "python benchmarks/probe_unet_bf16.py " + " ".join(sys.argv[1:]),
        "torch": torch.__version__, "cpu_ms_per_update": cpu_ms, "median_cpu_ms": medians,
    }, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
