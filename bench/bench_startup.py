"""Start-up time of the command line against importing torch, side by side in one run (timings here vary 2x
between hours, so only the ratio means something).

    python bench/bench_startup.py [--repeats 5]

Each command runs in a fresh interpreter; the median of ``--repeats`` runs is printed for each, and the ratio
of ``videocontrast --help`` (and ``import videocontrast.config``) to ``import torch``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "import torch": [sys.executable, "-c", "import torch"],
    "import videocontrast.config": [sys.executable, "-c", "import videocontrast.config"],
    "videocontrast --help": [sys.executable, "-m", "videocontrast", "--help"],
}


def seconds(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    for cmd in COMMANDS.values():  # warm the file cache once
        seconds(cmd)
    # Interleaved, so a slow minute hits every command alike.
    runs: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.repeats):
        for name, cmd in COMMANDS.items():
            runs[name].append(seconds(cmd))
    med = {name: statistics.median(v) for name, v in runs.items()}
    for name, s in med.items():
        print(f"{name:30s} {s:6.3f} s (median of {args.repeats})")
    torch_s = med["import torch"]
    for name in ("videocontrast --help", "import videocontrast.config"):
        print(f"{name} / import torch = {med[name] / torch_s:.2f}")


if __name__ == "__main__":
    main()
