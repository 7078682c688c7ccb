"""Cost of authenticating transitions (HMAC-SHA256, q_grasp.wire.auth) on their throughput:
the whole path of one blob from the policy to the trainer's replay-buffer queue except DDS
(encode, sign, wrap in a UInt8MultiArray, unwrap, check, decode and validate; a signed blob
carries no separate sha256 checksum, as the nodes send it), with the key and without,
alternating A/B in one run so that a machine shared with other jobs drifts alike for both.
DDS only adds time to both sides, so the relative cost over topics is at most the figure
here.

    python benchmarks/bench_auth.py [--rounds 10] [--blobs 200]

Prints a summary and writes benchmarks/results/auth.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

RESULTS = Path(__file__).resolve().parent / "results" / "auth.json"


def batches() -> dict:
    """One transition of each task, shaped and typed as the nodes send them."""
    from q_grasp.tasks.load import load_task
    from q_grasp.wire import TransitionBatch

    rng = np.random.default_rng(0)
    found = {}
    for task in ("grasp", "reacher"):
        spaces = load_task(task).spaces
        shape = (1, *spaces.observation_space.shape)
        found[task] = TransitionBatch(
            observations=rng.random(shape, dtype=np.float32),
            next_observations=rng.random(shape, dtype=np.float32),
            actions=np.zeros(1, np.int64), rewards=np.ones(1, np.float32),
            terminated=np.ones(1, bool), truncated=np.zeros(1, bool),
            num_actions=int(spaces.action_space.n), task=task, actor_id="bench")
    return found


def blobs_per_s(batch, auth, limits, n: int) -> float:
    from q_grasp.messages import msg_to_blob
    from q_grasp.nodes.convert import blob_to_msg
    from q_grasp.wire import TRANSITIONS_SCHEMA, decode_transitions, encode_transitions

    start = time.perf_counter()
    for seq in range(n):  # what the policy and the trainer do with each batch
        batch.sequence = seq
        blob = encode_transitions(batch, checksum=not auth.enabled)
        msg = blob_to_msg(auth.sign(blob), TRANSITIONS_SCHEMA)
        decode_transitions(auth.verify(msg_to_blob(msg, TRANSITIONS_SCHEMA),
                                       limits.max_blob_bytes), limits,
                           authenticated=auth.enabled)
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--blobs", type=int, default=200, help="blobs per measurement")
    args = parser.parse_args()

    from q_grasp.wire import Authenticator, TransitionLimits, encode_transitions

    variants = {"off": Authenticator(None), "on": Authenticator(b"k" * 64)}
    results: dict = {"python": platform.python_version(), "rounds": args.rounds,
                     "blobs": args.blobs, "date": time.strftime("%Y-%m-%d")}
    for task, batch in batches().items():
        limits = TransitionLimits(obs_shape=batch.observations.shape[1:],
                                  num_actions=batch.num_actions, task=task)
        rates: dict[str, list[float]] = {"off": [], "on": []}
        blobs_per_s(batch, variants["on"], limits, args.blobs // 4)  # warm-up
        for r in range(args.rounds):
            order = ("off", "on") if r % 2 == 0 else ("on", "off")  # ABBA: no order bias
            for name in order:
                rates[name].append(blobs_per_s(batch, variants[name], limits, args.blobs))
        off, on = (statistics.median(rates[k]) for k in ("off", "on"))
        # Per-round ratios (the two halves of a round ran side by side).
        ratios = [b / a for a, b in zip(rates["off"], rates["on"])]
        results[task] = {
            "blob_bytes": len(encode_transitions(batch)),
            "off_blobs_per_s": off, "on_blobs_per_s": on,
            "cost_percent_of_medians": 100.0 * (1.0 - on / off),
            "cost_percent_median_of_rounds": 100.0 * (1.0 - statistics.median(ratios)),
            "rates": rates}
        print(f"{task}: {results[task]['blob_bytes']} B blobs, off {off:.0f}/s, on {on:.0f}/s"
              f": cost {results[task]['cost_percent_median_of_rounds']:.2f}% (median of "
              f"{args.rounds} A/B rounds)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
