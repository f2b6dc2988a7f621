"""The linear probe with the test split extracted before the fit (eager) vs during it (overlapped), side by side.

Not a test. Runs `videocontrast linear --checkpoint random --config cpu-small` on ucf101-mini in this process,
alternating the two modes, a fresh feature cache each run, and prints the wall time after imports and the time
spent extracting features::

    PYTHONPATH=. python bench/bench_linear_overlap.py [--repeats 2]
"""
import argparse
import os
import tempfile
import time

from videocontrast import cli
from videocontrast.eval import run

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--repeats", type=int, default=2)
parser.add_argument("--data", default="../shared/data/ucf101-mini")
args = parser.parse_args()

real_probe, real_extract = run.linear_probe, run.extract_features
mode, spent = {"m": "overlap"}, {"t": 0.0}


def timed_extract(*a, **k):
    t0 = time.perf_counter()
    try:
        return real_extract(*a, **k)
    finally:
        spent["t"] += time.perf_counter() - t0


def probe(train, test, *a, **k):
    if mode["m"] == "eager" and callable(test):
        test = test()  # what run_linear did before: both splits first, then the fit
    return real_probe(train, test, *a, **k)


run.extract_features, run.linear_probe = timed_extract, probe
for _ in range(args.repeats):
    for m in ("eager", "overlap"):
        mode["m"], spent["t"] = m, 0.0
        os.environ["VIDEOCONTRAST_CACHE"] = tempfile.mkdtemp()
        t0 = time.perf_counter()
        cli.main(["linear", "--checkpoint", "random", "--config", "cpu-small", "--dataset", "ucf101",
                  "--root", f"{args.data}/videos", "--splits", f"{args.data}/ucfTrainTestlist",
                  "--out", tempfile.mkdtemp()])
        print(f"{m:8s} wall after imports {time.perf_counter() - t0:5.1f} s, feature extraction {spent['t']:5.1f} s",
              flush=True)
