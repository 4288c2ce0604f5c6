"""Vault unlock time: how long the passphrase's key derivation (Argon2id with the defaults in
workbench/vault/kdf.py) takes here, against the target of 0.2 to 1 s.

    .venv/bin/python -m benchmarks.vault_bench [--repeat N]

Creates a vault in a temporary directory, then times `unlock` N times (each derives the key
anew, as every process that opens the vault does once). Exits non-zero when the median is
outside the target.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from workbench.vault import create, unlock
from workbench.vault.kdf import DEFAULT_PARAMS

TARGET_S = (0.2, 1.0)
PASSPHRASE = "benchmark passphrase"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.vault_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "sandbox.vault"
        create(path, "sandbox", PASSPHRASE)
        times = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            unlock(path, "sandbox", PASSPHRASE)
            times.append(time.perf_counter() - started)
    median = statistics.median(times)
    low, high = TARGET_S
    verdict = "PASS" if low <= median <= high else "FAIL"
    print(f"argon2id {DEFAULT_PARAMS.memory_kib // 1024} MiB, {DEFAULT_PARAMS.iterations} passes, "
          f"{DEFAULT_PARAMS.lanes} lanes")
    print("unlock: " + ", ".join(f"{t:.3f}" for t in times) + f" s; median {median:.3f} s "
          f"(target {low} to {high} s): {verdict}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
