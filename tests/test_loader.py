"""The training loader's prefetch is sized by bytes, and a setting whose batches cannot fit in shared memory is
one clear error before training (not a worker killed by SIGBUS mid-epoch)."""

from __future__ import annotations

import pytest

from videocontrast.cli import main
from videocontrast.engine import loader
from videocontrast.engine.loader import MAX_PREFETCH, PREFETCH_BYTES, SharedMemoryError, prefetch_factor

GIB = 2 ** 30
THESIS_BATCH = 128 * 2 * 16 * 3 * 240 * 320  # uint8: two 16-frame 240x320 views of 128 clips = 900 MiB


def test_prefetch_by_bytes_hand_worked():
    # the thesis setting, 8 workers, 64 GiB of /dev/shm: 8 x 900 MiB = 7.0 GiB for one batch each, under the
    # 8 GiB budget; two each would be 14 GiB: one. (Before: 4 each, 28 GiB.)
    assert prefetch_factor(THESIS_BATCH, 8, 64 * GIB) == 1
    # the demo's batches (64 clips of 2 x 9 x 40x53) are small: the maximum
    assert prefetch_factor(64 * 2 * 9 * 3 * 40 * 53, 1, 64 * GIB) == MAX_PREFETCH
    # half of the free shared memory is the other bound: 2 workers x 1 GiB in 5 GiB free -> 2.5 GiB -> 1
    assert prefetch_factor(GIB, 2, 5 * GIB) == 1
    assert prefetch_factor(GIB, 2, 9 * GIB) == 2
    # no /dev/shm (macOS): only the byte budget
    assert prefetch_factor(GIB, 1, None) == min(MAX_PREFETCH, PREFETCH_BYTES // GIB)
    # 8 processes of one machine share /dev/shm: 8 x 8 x 900 MiB = 56 GiB fit in 64 GiB, with 1 each
    assert prefetch_factor(THESIS_BATCH, 8, 64 * GIB, processes=8) == 1


def test_batches_that_cannot_fit_in_shared_memory_are_refused_naming_what_to_change():
    with pytest.raises(SharedMemoryError) as e:
        prefetch_factor(THESIS_BATCH, 8, 64 * 2 ** 20)  # a container's default /dev/shm: 64 MiB
    msg = str(e.value)
    assert "7.03 GiB" in msg and "64 MiB free" in msg and "/dev/shm" in msg
    assert "data.num_workers" in msg and "--shm-size" in msg


def _tiny_pretrain(tmp_path, workers: int) -> list[str]:
    """`pretrain` on a few tiny synthetic videos for one epoch, with this many loader workers."""
    return ["pretrain", "--config", "demo", "--out", str(tmp_path / "run"), f"data.root={tmp_path / 'synthetic'}",
            "data.synthetic_videos_per_class=3", "data.synthetic_frames=12", "data.synthetic_size=24",
            "data.clip_len=4", "data.decode_size=20", "data.size=16", f"data.num_workers={workers}",
            "data.cache=none", "model.width=8", "optim.batch_size=8", "train.epochs=1"]


def test_pretrain_with_too_little_shared_memory_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(loader, "shared_memory_free", lambda: 1000)
    code = main(_tiny_pretrain(tmp_path, workers=2))
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert "shared memory (/dev/shm)" in err and "2 worker(s)" in err and "1000 B" not in err
    assert "Traceback" not in err


def test_a_worker_out_of_shared_memory_mid_run_is_one_line_that_says_what_was_kept(tmp_path, monkeypatch, capsys):
    from videocontrast.engine import train as engine

    def sigbus(state, loader_):
        raise RuntimeError("DataLoader worker (pid 123) is killed by signal: Bus error. It is possible that "
                           "dataloader's workers are out of shared memory. Please try to raise your shared memory "
                           "limit.")

    monkeypatch.setattr(engine, "train_one_epoch", sigbus)
    code = main(_tiny_pretrain(tmp_path, workers=0))
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line]  # (the rest is the progress bar)
    assert code == 2 and len(errors) == 1 and errors[0].startswith("videocontrast pretrain: error: "), err
    assert "Traceback" not in err
    assert "ran out of shared memory" in err and "killed by signal: Bus error)" in err and "no checkpoint was written yet" in err
