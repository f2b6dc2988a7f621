"""Where the wall time of ``videocontrast linear`` goes: decode, forward, classifier fit, the rest.

Not a test. Runs the real command in this process with timers around its parts::

    PYTHONPATH=. python bench/profile_linear.py --checkpoint random --config cpu-small --dataset ucf101 \\
        --root ../shared/data/ucf101-mini/videos --splits ../shared/data/ucf101-mini/ucfTrainTestlist \\
        --out /tmp/linear-profile

(any ``videocontrast linear`` arguments). Printed, in seconds of wall time:

  decode+forward   extract_features (both splits): the loader's decode (waiting for batches) and the encoder
  forward          the encoder's forward calls alone (inside decode+forward)
  fit              eval.linear._fit_select: the C search by cross-validation and the refit
  probe rest       the rest of linear_probe (predictions, metrics, the confusion-matrix PNG)
  total            the whole command, imports and start-up included
and the issue-12 target ratio total / (decode+forward) (goal <= 1.5).
"""

from __future__ import annotations

import sys
import time

t_start = time.perf_counter()

import os  # noqa: E402
import tempfile  # noqa: E402

# A fresh feature cache: a cached feature set would skip the decode and forward being measured.
os.environ["VIDEOCONTRAST_CACHE"] = tempfile.mkdtemp(prefix="profile-linear-")

import torch  # noqa: E402

from videocontrast import cli  # noqa: E402
from videocontrast.eval import features, linear, run  # noqa: E402

spent = {"decode+forward": 0.0, "forward": 0.0, "fit": 0.0, "probe": 0.0}


def timed(key: str, fn):
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[key] += time.perf_counter() - t0
    return wrapper


def extract(encoder, *args, **kwargs):
    handle_pre = encoder.register_forward_pre_hook(lambda m, a: spent.__setitem__("_t", time.perf_counter()))
    handle_post = encoder.register_forward_hook(
        lambda m, a, o: spent.__setitem__("forward", spent["forward"] + time.perf_counter() - spent["_t"]))
    try:
        return _extract(encoder, *args, **kwargs)
    finally:
        handle_pre.remove(), handle_post.remove()


_extract = timed("decode+forward", features.extract_features)
run.extract_features = extract
linear._fit_select = timed("fit", linear._fit_select)
run.linear_probe = timed("probe", linear.linear_probe)


def main() -> None:
    code = cli.main(["linear", *sys.argv[1:]])
    total = time.perf_counter() - t_start
    df = spent["decode+forward"]
    print(f"\nprofile of `videocontrast linear {' '.join(sys.argv[1:])}` (torch threads: {torch.get_num_threads()})")
    for name, value in [("decode+forward", df), ("  of which forward", spent["forward"]),
                        ("  of which decode/loader", df - spent["forward"]), ("fit (C search + refit)", spent["fit"]),
                        ("probe rest (metrics, PNG)", spent["probe"] - spent["fit"]),
                        ("other (imports, start-up, model)", total - df - spent["probe"]), ("total", total)]:
        print(f"{name:<34} {value:7.1f} s")
    print(f"total / (decode+forward) = {total / df:.2f}   (issue 12 goal: <= 1.5)")
    sys.exit(code)


if __name__ == "__main__":
    main()
