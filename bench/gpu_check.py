"""Ready for a GPU: run the thesis setting's CUDA training path end to end within 8 minutes and print what it achieves.

    bench/gpu_check.sh --out results.json          # 1 GPU, then torchrun on all GPUs when 2+ are visible
    python bench/gpu_check.py --out results.json    # one process, the thesis preset (ucf101-simclr)
    python bench/gpu_check.py --print-config        # the resolved settings as JSON; runs nothing
    python bench/gpu_check.py --device cpu --smoke  # the same sequence, shrunk, on the CPU (~15-30 s)

Settings come from a preset (--preset NAME, default ucf101-simclr: hara_r3d_18, 16x224x224 crops of frames decoded
at 240, global batch 128, 8 loader workers per process, bf16 on CUDA); the shape flags (--backbone, --clip-len,
--size, --decode-size, --batch, --workers, --steps, --pipeline-steps, --precision) replace the preset's values only
when given. --batch is the GLOBAL batch (optim.batch_size, all processes together, as in the preset); each process
gets batch / processes. --smoke shrinks everything (r3d_small, 4x32x32, batch 4, 1 worker, 2 steps, compile off)
but keeps the preset's method, optimiser and augmentation. The data are always the project's synthetic motion videos
(or --root: real videos), written to a temporary folder at the preset's decode size: a few distinct videos per class,
hard-linked to as many training files as the pipeline's epoch needs (pipeline steps x batch), so that the measured
epoch is a whole one and rendering takes seconds, not minutes.

Sub-checks, in order, each under its own time budget; a failing one is reported (FAIL + one-line reason) and the
others still run; the exit code is 1 if any failed. The JSON (--out) is rewritten after every sub-check:

  env                  device, torch/CUDA versions, bf16 support, process count
  distributed          all_reduce and SimCLR's gather_with_grad across processes (NCCL under torchrun; 1 process
                       otherwise: nothing to check)
  augment              the batched ClipAugment on the device: uint8 (B, T, C, H, W) -> float (B, C, T, H, W)
  model_step_eager     the engine's own train_one_epoch on synthetic in-memory uint8 clips already on the device
  model_step_compiled  (augmented there), bf16 autocast (fp32 on the CPU unless --precision bf16),
                       channels_last_3d; torch.compile off, then on
  synthetic_data       the synthetic motion dataset written to a temporary folder (or --root: real videos)
  pipeline_eager       the real engine pretrain() on that dataset (decode, loader workers, temporal views,
  pipeline_compiled    augmentation on the device, model step), two short epochs, the second one measured

Time: the budgets (BUDGETS, 430 s in all) plus start-up fit --time-limit (default 480 s on the GPU, none with
--smoke): when they do not, every budget is scaled down to fit, and no check may run past the time left.
bench/gpu_check.sh gives its first pass half of 480 s when a second (torchrun) pass follows, and that pass the rest.

Reported per row: two-view clips/s (all processes together), pipeline / model-step ratio (same compile setting),
achieved TFLOP/s per process (FlopCounterMode on one eager step; the compiled step does the same FLOPs), peak GPU
memory (torch.cuda.max_memory_allocated; on the CPU the process's peak RSS instead). One table at the end, also
written as JSON (--out), with the resolved settings in its "meta".
"""

from __future__ import annotations

import time

T_START = time.time()  # the run's clock (--time-limit) starts before torch is imported

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without `pip install -e`

import numpy as np  # noqa: E402
import torch  # noqa: E402

from videocontrast import dist  # noqa: E402

CHECKS = ("env", "distributed", "augment", "model_step_eager", "model_step_compiled", "synthetic_data",
          "pipeline_eager", "pipeline_compiled")
ROW_KEYS = ("check", "status", "reason", "time_s", "clips_per_s", "ratio", "tflops", "peak_mem_gib")
# Seconds each sub-check may take on the GPU (430 in all: with start-up, under the default --time-limit of 480;
# --smoke halves them, --budget-scale / --time-limit scale them); past it the check is stopped and FAILs.
BUDGETS = {"env": 15, "distributed": 30, "augment": 25, "model_step_eager": 50, "model_step_compiled": 120,
           "synthetic_data": 40, "pipeline_eager": 60, "pipeline_compiled": 90}
TIME_LIMIT_S = 480  # default --time-limit on the GPU: the check finishes within 8 minutes
RESERVE_S = 10  # of the time limit, kept for the table, the JSON and the clean-up after the last check
HARD_GRACE_S = 30  # a check stuck in native code (a collective, a CUDA sync) past budget + this ends the process
DEFAULT_PRESET = "ucf101-simclr"
UNIQUE_VIDEOS_PER_CLASS = 24  # distinct synthetic videos rendered per class at most (train + test); the rest links
# --smoke: everything shrunk (the preset's method, optimiser and augmentation kept)
SMOKE = dict(backbone="r3d_small", clip_len=4, size=32, decode_size=40, batch=4, workers=1, steps=2, warmup=1,
             pipeline_steps=2, max_shift=2, width=8, compile=False)
# Not in a preset: the timed steps of the model-step checks and the warm-up steps before them
RUN_DEFAULTS = dict(steps=10, warmup=3, compile=True)


class CheckTimeout(Exception):
    pass


class Skip(Exception):
    """A sub-check that does not apply (compile off in smoke mode)."""


def log(msg: str) -> None:
    if dist.is_main_process():
        print(f"[gpu_check] {msg}", flush=True)


def peak_mem_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # Linux: KiB


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def elapsed_s() -> float:
    return time.time() - T_START


# ----------------------------------------------------------------------------- settings


def resolve(args) -> None:
    """Fill in the run's settings on ``args``: a flag given on the command line, else --smoke's shrunk value, else
    the preset's (RUN_DEFAULTS for what a preset does not say: the timed steps, compile on)."""
    from videocontrast.config import load_config

    base = load_config(args.preset, ["data.dataset=synthetic", "data.root=null"])  # its shapes only
    fallback = dict(backbone=base.model.backbone, clip_len=base.data.clip_len, size=base.data.size,
                    decode_size=base.data.decode_size, batch=base.optim.batch_size, workers=base.data.num_workers,
                    max_shift=base.aug.max_shift, width=base.model.width, precision=base.train.precision,
                    pipeline_steps=None, **RUN_DEFAULTS)
    if args.smoke:
        fallback.update(SMOKE)
    args.from_flags = [k for k in fallback if getattr(args, k, None) is not None]
    for k, v in fallback.items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)
    args.notes = []
    if args.decode_size < args.size and "decode_size" not in args.from_flags:
        args.decode_size = args.size  # e.g. --smoke --size 48: frames are decoded at least at the crop size
    if args.pipeline_steps is None:
        # two rounds of loader workers: each worker makes whole batches, so a shorter epoch mostly waits for the
        # first ones, and its clips/s would say little about a real epoch
        args.pipeline_steps = max(4, 2 * args.workers)
    args.stride, args.input = base.data.stride, base.data.input
    args.precision_setting = args.precision
    if args.precision == "auto":  # engine.device.autocast_dtype's rule, made explicit for the record
        args.precision = "bf16" if args.device == "cuda" else "fp32"
    args.world = int(os.environ.get("WORLD_SIZE", "1"))
    if args.batch % args.world:
        fixed = max(args.world, args.batch // args.world * args.world)
        args.notes.append(f"global batch {args.batch} is not divisible by {args.world} processes: {fixed} instead")
        args.batch = fixed
    if args.time_limit is None:
        args.time_limit = 0.0 if args.smoke else float(TIME_LIMIT_S)
    if args.smoke and args.budget_scale == 1.0:
        args.budget_scale = 0.5
    # The synthetic dataset: training files for exactly `pipeline_steps` steps of the global batch (a whole epoch:
    # no batches left in flight that the measured epoch would first wait for), made of at most
    # UNIQUE_VIDEOS_PER_CLASS rendered videos per class and hard links to them.
    from videocontrast.data.synthetic import SYNTHETIC_CLASSES, _split_sizes

    args.train_videos = args.pipeline_steps * args.batch
    per_class = args.train_videos // len(SYNTHETIC_CLASSES)
    args.videos_per_class = next((v for v in range(UNIQUE_VIDEOS_PER_CLASS, 2, -1)
                                  if _split_sizes(v, 0.25)[0] <= per_class), 2)
    args.video_size = args.decode_size + args.decode_size % 2  # yuv420p: even sides
    args.video_frames = (args.clip_len + 2 * args.max_shift) * args.stride + (args.input == "residual")


def planned_budgets(args, at_s: float) -> dict[str, float]:
    """Each sub-check's budget for a run whose checks start ``at_s`` seconds after the process did: --budget as
    given, the others BUDGETS x --budget-scale, all scaled down to fit --time-limit (less RESERVE_S) if needed."""
    scale = args.budget_scale
    if args.time_limit:
        room = args.time_limit - at_s - RESERVE_S
        total = sum(BUDGETS[c] * scale for c in CHECKS if c not in args.budget) + sum(args.budget.values())
        if total > room:
            scale *= max(room, 0.0) / total
    return {c: round(args.budget.get(c, BUDGETS[c] * scale), 1) for c in CHECKS}


def settings(args) -> dict[str, Any]:
    """The resolved settings, as printed (--print-config) and recorded in the JSON's meta."""
    return {"preset": args.preset, "backbone": args.backbone, "clip": f"{args.clip_len}x{args.size}x{args.size}",
            "clip_len": args.clip_len, "size": args.size, "decode_size": args.decode_size, "stride": args.stride,
            "batch": args.batch, "batch_per_process": args.batch // args.world, "world_size": args.world,
            "workers": args.workers, "precision": args.precision, "precision_setting": args.precision_setting,
            "steps": args.steps, "warmup": args.warmup, "pipeline_steps": args.pipeline_steps,
            "compile": args.compile, "smoke": args.smoke, "device_arg": args.device,
            "data": (f"--root {args.root} ({args.dataset})" if args.root else
                     f"synthetic: {args.train_videos} training files from {args.videos_per_class} videos/class "
                     f"({args.video_size}px, {args.video_frames} frames)"),
            "time_limit_s": args.time_limit, "from_flags": args.from_flags, "notes": args.notes}


def make_config(args, compile_: bool, root: Path | None = None):
    """The run's Config: the preset with the resolved shapes, 2 short epochs, the synthetic dataset at ``root``."""
    from videocontrast.config import load_config

    dev = "cpu" if args.device == "cpu" else "auto"  # auto: cuda:LOCAL_RANK under torchrun
    ov = [f"train.device={dev}", f"train.precision={args.precision}", f"train.compile={str(compile_).lower()}",
          "train.epochs=2", f"train.max_steps_per_epoch={args.pipeline_steps}", "train.log_every=1000",
          "train.save_every=1000", "train.keep_every=0", "train.knn_every=0", "train.time_limit_s=0",
          f"optim.batch_size={args.batch}", "optim.accum_steps=1", f"data.num_workers={args.workers}",
          f"aug.max_shift={args.max_shift}", f"model.backbone={args.backbone}", f"data.clip_len={args.clip_len}",
          f"data.size={args.size}", f"data.decode_size={args.decode_size}"]
    if args.backbone == "r3d_small":
        ov.append(f"model.width={args.width}")
        if args.smoke:
            ov.append("model.head_hidden=128")
    if args.root:
        ov += [f"data.dataset={args.dataset}", f"data.root={args.root}"]
        if args.splits:
            ov.append(f"data.splits={args.splits}")
    else:
        ov += ["data.dataset=synthetic", f"data.root={root}", f"data.synthetic_videos_per_class={args.videos_per_class}",
               f"data.synthetic_frames={args.video_frames}", f"data.synthetic_size={args.video_size}"]
    return load_config(args.preset, ov)


def fill_training_set(root: Path, total: int) -> tuple[int, int]:
    """Hard-link (copy where links fail) each class's rendered training videos until ``root/train`` holds ``total``
    files, spread evenly over the classes. Returns (rendered, added) file counts."""
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    rendered = added = 0
    for i, name in enumerate(classes):
        folder = root / "train" / name
        videos = sorted(p for p in folder.glob("*.mp4") if not p.name.startswith("link_"))
        rendered += len(videos)
        want = total // len(classes) + (i < total % len(classes))
        for k in range(max(0, want - len(videos))):
            src = videos[k % len(videos)]
            dst = folder / f"link_{k:05d}_{src.name}"
            if dst.exists():
                continue
            try:
                os.link(src, dst)
            except OSError:
                shutil.copyfile(src, dst)
            added += 1
    return rendered, added


class MemLoader:
    """What train_one_epoch iterates: the same in-memory uint8 (B, 2, T, C, H, W) batch, ``steps`` times."""

    def __init__(self, clips: torch.Tensor, steps: int):
        self.clips, self.steps, self.batch_size = clips, steps, clips.shape[0]

    def __iter__(self):
        for _ in range(self.steps):
            yield {"video": self.clips}


# ----------------------------------------------------------------------------- sub-checks


class Checker:
    def __init__(self, args):
        self.args = args
        self.info = dist.init_distributed()
        self.world = self.info.world_size
        self.batch = args.batch // self.world  # clips per process
        self.device = torch.device("cpu") if args.device == "cpu" else self.info.device
        if args.device == "cuda" and self.device.type != "cuda":
            self.device = torch.device("cuda")  # let the env check say why it is not there
        self.rows: list[dict[str, Any]] = []
        self.meta: dict[str, Any] = settings(args)
        self.meta["world_size"] = self.world
        self.flops_per_step: float | None = None
        self.model_rate: dict[str, float] = {}
        self.tmp = self._shared_tmp()

    def _shared_tmp(self) -> Path:
        """One temporary folder for all processes (rank 0 makes it, the others are told its name)."""
        path = [tempfile.mkdtemp(prefix="vc-gpu-check-") if dist.is_main_process() else None]
        if self.world > 1:
            torch.distributed.broadcast_object_list(path, src=0)
        return Path(path[0])

    # -- runner

    def run(self, name: str, fn: Callable[[], dict[str, Any]], budget: float) -> None:
        row = {k: None for k in ROW_KEYS}
        row.update(check=name)
        gc.collect()  # the previous check's model and optimiser state
        if self.device.type == "cuda" and torch.cuda.is_available():
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
        log(f"{name} ... (budget {budget:.0f} s)")
        t0 = time.perf_counter()
        hard = threading.Timer(budget + HARD_GRACE_S, self._hard_abort, args=(name, budget))
        hard.daemon = True
        hard.start()
        old = signal.signal(signal.SIGALRM, self._alarm)
        self.timed_out = False
        signal.setitimer(signal.ITIMER_REAL, budget)
        try:
            if name in self.args.inject_fail:
                raise RuntimeError(f"injected failure (--inject-fail {name})")
            if name in self.args.inject_hang:
                while True:
                    time.sleep(0.1)
            row.update(fn())
            row["status"] = "OK"
        except Skip as e:
            row.update(status="SKIP", reason=str(e))
        except CheckTimeout:
            row.update(status="FAIL", reason=f"timed out after {budget:.0f} s")
        except Exception as e:  # noqa: BLE001 -- a failing sub-check is reported, the others still run
            first = (str(e).strip().splitlines() or [""])[0]
            row.update(status="FAIL", reason=f"{type(e).__name__}: {first}"[:300])
            if isinstance(e, torch.cuda.OutOfMemoryError):
                row["reason"] = (f"OutOfMemoryError at {self.batch} clips/process: a smaller --batch (global) may "
                                 f"fit; {first}")[:300]
            if self.timed_out:  # the alarm's exception came back wrapped (e.g. in torch.compile's InductorError)
                row["reason"] = f"timed out after {budget:.0f} s"
            if self.args.verbose:
                traceback.print_exc()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
            hard.cancel()
        row["time_s"] = round(time.perf_counter() - t0, 2)
        if row["status"] == "OK" and row["peak_mem_gib"] is None:
            try:
                row["peak_mem_gib"] = round(peak_mem_gib(self.device), 3)
            except Exception:  # noqa: BLE001 -- no CUDA: the env check says so
                pass
        row["status"] = self._agree(row["status"])
        self.rows.append(row)
        figures = ", ".join(f"{label} {row[k]}" for k, label in (("clips_per_s", "clips/s"), ("ratio", "ratio"),
                                                                ("tflops", "TFLOP/s"), ("peak_mem_gib", "peak GiB"))
                            if row[k] is not None)
        log(f"{name}: {row['status']}{' (' + row['reason'] + ')' if row['reason'] else ''} in {row['time_s']} s"
            + (f" [{figures}]" if figures else ""))
        self.write()

    def _alarm(self, signum, frame):
        self.timed_out = True
        raise CheckTimeout()

    def _agree(self, status: str) -> str:
        """A check FAILs everywhere if it failed on any process."""
        if self.world == 1:
            return status
        try:
            flag = torch.tensor([1.0 if status == "FAIL" else 0.0], device=self.info.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            return "FAIL" if flag.item() > 0 else status
        except Exception:  # noqa: BLE001
            return "FAIL"

    def _hard_abort(self, name: str, budget: float) -> None:
        """Stuck in native code past the budget (the alarm cannot interrupt it): report and end the process."""
        self.rows.append({**{k: None for k in ROW_KEYS}, "check": name, "status": "FAIL",
                          "reason": f"stuck past its {budget:.0f} s budget (in native code); process ended",
                          "time_s": budget + HARD_GRACE_S})
        for rest in CHECKS[CHECKS.index(name) + 1:]:
            self.rows.append({**{k: None for k in ROW_KEYS}, "check": rest, "status": "FAIL",
                              "reason": "not run: an earlier check hung"})
        self.finish()
        os._exit(1)

    # -- the checks

    def env(self) -> dict[str, Any]:
        a = self.args
        self.meta.update(peak_mem=("torch.cuda.max_memory_allocated" if self.device.type == "cuda"
                                   else "peak RSS of the process"), torch=torch.__version__,
                         python=platform.python_version(), world_size=self.world, device=str(self.device),
                         cuda=torch.version.cuda, host=platform.node(), cpus=os.cpu_count())
        # Loader workers hand batches over in shared memory: workers x the engine's prefetch of them at once
        from videocontrast.engine.loader import SharedMemoryError, prefetch_factor, shared_memory_free

        batch_bytes = self.batch * 2 * a.clip_len * 3 * a.decode_size ** 2 * 4 // 3  # uint8, 4:3 frames
        free = shared_memory_free()
        try:
            prefetch = prefetch_factor(batch_bytes, a.workers, free) if a.workers else 0
            shm_note = ""
        except SharedMemoryError as e:
            prefetch, shm_note = 0, f"; {e}"
        self.meta.update(shm_free_gib=None if free is None else round(free / 2 ** 30, 1),
                         loader_batch_gib=round(batch_bytes / 2 ** 30, 3), loader_prefetch=prefetch,
                         loader_in_flight_gib=round(batch_bytes * prefetch * a.workers / 2 ** 30, 1))
        if self.device.type != "cuda":
            return {"reason": f"CPU, {torch.get_num_threads()} threads, world {self.world}{shm_note}"}
        if not torch.cuda.is_available():
            raise RuntimeError("CUDA is not available to torch (torch.cuda.is_available() is False)")
        props = torch.cuda.get_device_properties(self.device)
        self.meta.update(gpu=props.name, gpu_count=torch.cuda.device_count(),
                         gpu_mem_gib=round(props.total_memory / 2 ** 30, 1), capability=f"{props.major}.{props.minor}",
                         cudnn=torch.backends.cudnn.version())
        if a.precision in ("auto", "bf16") and not torch.cuda.is_bf16_supported():
            raise RuntimeError(f"{props.name} does not support bf16 autocast")
        return {"reason": f"{props.name} x{torch.cuda.device_count()}, CUDA {torch.version.cuda}, world {self.world}, "
                          f"{os.cpu_count()} CPUs{shm_note}"}

    def distributed(self) -> dict[str, Any]:
        if self.world == 1:
            return {"reason": "1 process: no process group to check"}
        backend = torch.distributed.get_backend()
        if self.device.type == "cuda" and backend != "nccl":
            raise RuntimeError(f"backend is {backend}, expected nccl on CUDA")
        d = self.info.device
        r = dist.get_rank()
        x = torch.full((4,), float(r + 1), device=d)
        total = dist.all_reduce_mean(x)
        want = (self.world + 1) / 2
        if not torch.allclose(total, torch.full_like(total, want)):
            raise RuntimeError(f"all_reduce_mean gave {total.tolist()}, expected {want}")
        v = torch.full((2, 3), float(r), device=d, requires_grad=True)
        g = dist.gather_with_grad(v)
        if g.shape[0] != 2 * self.world:
            raise RuntimeError(f"gather_with_grad shape {tuple(g.shape)}")
        (g * (torch.arange(g.shape[0], device=d)[:, None] + 1.0)).sum().backward()
        # every rank's sum depends on our slice: its grad is world x our rows' weights
        want_grad = self.world * (torch.arange(2, device=d) + 2 * r + 1.0)[:, None].expand(2, 3)
        if not torch.allclose(v.grad, want_grad):
            raise RuntimeError(f"gather_with_grad backward gave {v.grad[:, 0].tolist()}, expected {want_grad[:, 0].tolist()}")
        dist.barrier()
        return {"reason": f"{backend}, world {self.world}"}

    def _clips(self, cfg) -> torch.Tensor:
        """Synthetic uint8 (B, 2, T, C, H, W) two-view clips on the device, at the decode size (4:3, like UCF101)."""
        d = cfg.data
        h, w = d.decode_size, d.decode_size * 4 // 3
        g = torch.Generator(device=self.device).manual_seed(dist.get_rank())
        return torch.randint(0, 256, (self.batch, 2, d.clip_len, 3, h, w), dtype=torch.uint8, device=self.device,
                             generator=g)

    def augment(self) -> dict[str, Any]:
        from videocontrast.build.components import build_augment

        cfg = make_config(self.args, False, self.tmp / "synthetic")
        aug = build_augment(cfg).to(self.device)
        clips = self._clips(cfg)[:, 0]  # (B, T, C, H, W)
        g = torch.Generator(device=self.device).manual_seed(0)
        out = aug(clips, generator=g)
        a = self.args
        frames = a.clip_len - (cfg.data.input == "residual")  # residual input: frame differences, one fewer
        want = (self.batch, 3, frames, a.size, a.size)
        if tuple(out.shape) != want or out.dtype != torch.float32 or out.device.type != self.device.type:
            raise RuntimeError(f"augment gave {tuple(out.shape)} {out.dtype} on {out.device}, expected {want} "
                               f"float32 on {self.device}")
        if not torch.isfinite(out).all():
            raise RuntimeError("augment output has NaN/inf")
        reps = max(2, self.args.steps)
        sync(self.device)
        t = time.perf_counter()
        for _ in range(reps):
            aug(clips, generator=g)
        sync(self.device)
        rate = reps * self.batch / (time.perf_counter() - t)
        return {"reason": f"one view: {rate:.0f} clips/s per process on {self.device.type}"}

    def _train_state(self, cfg, compile_: bool, total_steps: int):
        """A TrainState as engine.train.fit builds it (DDP, channels_last_3d, bf16 autocast, torch.compile)."""
        from torch import nn

        from videocontrast.build.components import build_augment, method_from_config
        from videocontrast.engine.device import autocast_dtype
        from videocontrast.engine.optim import build_optimizer
        from videocontrast.engine.train import MetricsLog, TrainState
        from videocontrast.methods import MoCo

        torch.manual_seed(0)
        model = method_from_config(cfg).to(self.device)
        if cfg.train.channels_last:
            model = model.to(memory_format=torch.channels_last_3d)
        moco = isinstance(model, MoCo)
        if self.world > 1:
            model = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        o = cfg.optim
        opt = build_optimizer(model, o.name, o.lr, o.weight_decay, o.momentum)
        amp = autocast_dtype(cfg.train.precision, self.device)
        if compile_:
            model = torch.compile(model)
        return TrainState(model=model, optimizer=opt, scaler=torch.amp.GradScaler(self.device.type,
                                                                                  enabled=amp == torch.float16),
                          augment=build_augment(cfg).to(self.device), device=self.device, amp=amp,
                          lr_schedule=np.full(total_steps, o.lr),
                          momentum_schedule=np.full(total_steps, cfg.method.momentum) if moco else None,
                          steps_per_epoch=total_steps, accum_steps=1, labels=False, seed=0,
                          channels_last=cfg.train.channels_last,
                          log_every=10 ** 9, log=MetricsLog(self.tmp, enabled=False))

    def model_step(self, compile_: bool) -> dict[str, Any]:
        from torch.utils.flop_counter import FlopCounterMode

        from videocontrast.engine.train import train_one_epoch

        if compile_ and not self.args.compile:
            raise Skip("compile off (--smoke or --no-compile); --compile turns it on")
        a = self.args
        cfg = make_config(a, compile_, self.tmp / "synthetic")
        clips = self._clips(cfg)
        state = self._train_state(cfg, compile_, 1 + a.warmup + a.steps)
        if self.flops_per_step is None and not compile_:
            with FlopCounterMode(display=False) as fc:
                train_one_epoch(state, MemLoader(clips, 1))
            self.flops_per_step = float(fc.get_total_flops())
        else:
            train_one_epoch(state, MemLoader(clips, 1))  # compiles here
        state.steps_per_epoch = a.warmup + a.steps
        if a.warmup:
            train_one_epoch(state, MemLoader(clips, a.warmup))
        sync(self.device)
        res = train_one_epoch(state, MemLoader(clips, a.steps))
        if not math.isfinite(res["loss"]):
            raise RuntimeError(f"loss is {res['loss']}")
        rate = res["clips_per_s"]
        self.model_rate["compiled" if compile_ else "eager"] = rate
        out = {"clips_per_s": round(rate, 2), "reason": f"loss {res['loss']:.3f}"}
        if self.flops_per_step:
            out["tflops"] = round(self.flops_per_step * rate / self.world / self.batch / 1e12, 4)
        return out

    def synthetic_data(self) -> dict[str, Any]:
        from videocontrast.data.synthetic import generate_synthetic

        a = self.args
        if a.root:
            return {"reason": f"--root {a.root} ({a.dataset})"}
        cfg = make_config(a, False, self.tmp / "synthetic")
        d = cfg.data
        counts = [0, 0]
        if dist.is_main_process():
            generate_synthetic(d.root, videos_per_class=d.synthetic_videos_per_class, num_frames=d.synthetic_frames,
                               size=d.synthetic_size, seed=d.synthetic_seed, appearances=d.synthetic_appearances,
                               workers=max(1, min(16, os.cpu_count() or 1)))
            counts = list(fill_training_set(Path(d.root), a.train_videos))
        dist.barrier()
        n = sum(1 for _ in Path(d.root).glob("train/*/*.mp4"))
        if n < a.train_videos:
            raise RuntimeError(f"{n} training files, fewer than the {a.train_videos} the pipeline's epoch needs")
        self.meta.update(train_files=n, rendered_train_videos=counts[0])
        return {"reason": f"{n} training files for {a.pipeline_steps} steps of {a.batch}: {counts[0]} rendered "
                          f"({d.synthetic_size}px, {d.synthetic_frames} frames) + {counts[1]} hard links"}

    def pipeline(self, compile_: bool) -> dict[str, Any]:
        from videocontrast.engine.train import pretrain

        if compile_ and not self.args.compile:
            raise Skip("compile off (--smoke or --no-compile); --compile turns it on")
        cfg = make_config(self.args, compile_, self.tmp / "synthetic")
        out = self.tmp / f"run-{'compiled' if compile_ else 'eager'}"
        res = pretrain(cfg, out, quiet=True)
        last = res["history"][-1]
        if not math.isfinite(last["loss"]):
            raise RuntimeError(f"loss is {last['loss']}")
        rate = last["clips_per_s"]
        row = {"clips_per_s": round(rate, 2),
               "reason": f"loss {last['loss']:.3f}, {cfg.data.num_workers} workers/process, second epoch "
                         f"({self.args.pipeline_steps} steps)"}
        model = self.model_rate.get("compiled" if compile_ else "eager")
        if model:
            row["ratio"] = round(rate / model, 3)
        if self.flops_per_step:
            row["tflops"] = round(self.flops_per_step * rate / self.world / self.batch / 1e12, 4)
        if dist.is_main_process():
            shutil.rmtree(out, ignore_errors=True)  # the checkpoint
        return row

    # -- all of it

    def all(self) -> int:
        a = self.args
        plan = {"env": self.env, "distributed": self.distributed, "augment": self.augment,
                "model_step_eager": lambda: self.model_step(False),
                "model_step_compiled": lambda: self.model_step(True),
                "synthetic_data": self.synthetic_data,
                "pipeline_eager": lambda: self.pipeline(False),
                "pipeline_compiled": lambda: self.pipeline(True)}
        budgets = planned_budgets(a, elapsed_s())
        self.meta.update(budgets_s=budgets, started_at_s=round(elapsed_s(), 1))
        log("settings " + json.dumps({k: self.meta[k] for k in ("preset", "backbone", "clip", "decode_size", "batch",
                                                                "batch_per_process", "workers", "precision",
                                                                "steps", "pipeline_steps", "compile")}))
        log(f"budgets (s): {budgets} = {sum(budgets.values()):.0f} s"
            + (f", time limit {a.time_limit:.0f} s from process start" if a.time_limit else ""))
        for name in CHECKS:
            why = None
            if name != "env" and self.rows[0]["status"] == "FAIL":
                why = "not run: the env check failed"
            elif name.startswith("pipeline") and self.rows[CHECKS.index("synthetic_data")]["status"] == "FAIL":
                why = "not run: the synthetic_data check failed"
            budget = budgets[name]
            if why is None and a.time_limit:
                budget = min(budget, a.time_limit - elapsed_s() - RESERVE_S)
                if budget < 1:
                    why = f"not run: the --time-limit of {a.time_limit:.0f} s is spent"
            if why is None:
                self.run(name, plan[name], budget)
            else:
                self.rows.append({**{k: None for k in ROW_KEYS}, "check": name, "status": "FAIL", "reason": why})
                log(f"{name}: FAIL ({why})")
                self.write()
        self.meta["total_s"] = round(elapsed_s(), 1)
        return self.finish()

    def result(self) -> dict[str, Any]:
        failed = [r["check"] for r in self.rows if r["status"] == "FAIL"]
        return {"meta": self.meta, "rows": self.rows, "flops_per_step_per_process": self.flops_per_step,
                "failed": failed, "ok": not failed}

    def write(self) -> None:
        if self.args.out and dist.is_main_process():
            path = Path(self.args.out)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(json.dumps(self.result(), indent=2) + "\n")
            tmp.replace(path)

    def finish(self) -> int:
        self.write()
        if dist.is_main_process():
            print(table(self.result()), flush=True)
            shutil.rmtree(self.tmp, ignore_errors=True)
        return 0 if self.result()["ok"] else 1


def table(res: dict[str, Any]) -> str:
    m = res["meta"]
    mem = "peak GPU GiB" if str(m.get("device", "")).startswith("cuda") else "peak RSS GiB"
    head = ["check", "status", "clips/s", "ratio", "TFLOP/s", mem, "time s", "note"]

    def fmt(v, spec):
        return "-" if v is None else format(v, spec)

    lines = [[r["check"], r["status"], fmt(r["clips_per_s"], ".1f"), fmt(r["ratio"], ".2f"),
              fmt(r["tflops"], ".3f"), fmt(r["peak_mem_gib"], ".2f"), fmt(r["time_s"], ".1f"), r["reason"] or ""]
             for r in res["rows"]]
    widths = [max(len(h), *(len(l[i]) for l in lines)) for i, h in enumerate(head[:-1])]
    out = [f"gpu_check: preset {m.get('preset')}: {m.get('backbone')} {m.get('clip')} (decoded at "
           f"{m.get('decode_size')}), batch {m.get('batch')} = {m.get('batch_per_process')}/process x world "
           f"{m.get('world_size')}, {m.get('workers')} workers/process, {m.get('precision')} on "
           f"{m.get('gpu', m.get('device'))}, torch {m.get('torch')}{' (smoke)' if m.get('smoke') else ''}"
           + (f", {m['total_s']} s in all" if m.get("total_s") is not None else ""),
           "  ".join(h.ljust(w) for h, w in zip(head, widths)) + "  " + head[-1]]
    out += ["  ".join(c.ljust(w) for c, w in zip(l, widths)) + "  " + l[-1] for l in lines]
    out.append(("OK: every check passed" if res["ok"] else f"FAILED: {', '.join(res['failed'])}")
               + " (clips/s: two-view clips per second, all processes; ratio: pipeline / model step)")
    return "\n".join(out)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default=DEFAULT_PRESET,
                   help=f"the run's settings (a videocontrast preset or YAML file; default {DEFAULT_PRESET}, the "
                        "thesis setting); the shape flags below replace its values only when given")
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--smoke", action="store_true",
                   help="the same sequence shrunk (r3d_small, 4x32x32 from 40, batch 4, 1 worker, 2 steps, compile "
                        "off unless --compile); the preset's method, optimiser and augmentation are kept")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="run the torch.compile checks (default: on, off with --smoke)")
    p.add_argument("--out", help="write the results as JSON here (rewritten after every sub-check)")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved settings and the run's Config as JSON and exit (runs nothing)")
    p.add_argument("--root", help="real videos for the pipeline instead of the synthetic dataset")
    p.add_argument("--dataset", default="folder", help="dataset kind of --root (folder, ucf101, hmdb51)")
    p.add_argument("--splits", help="split-file folder for ucf101/hmdb51 --root")
    p.add_argument("--backbone", help="default: the preset's (hara_r3d_18; r3d_small with --smoke)")
    p.add_argument("--clip-len", type=int, help="frames per clip (default: the preset's, 16; 4 with --smoke)")
    p.add_argument("--size", type=int,
                   help="crop side fed to the network (default: the preset's, 224; 32 with --smoke)")
    p.add_argument("--decode-size", type=int,
                   help="short side frames are decoded at (default: the preset's, 240; 40 with --smoke)")
    p.add_argument("--batch", type=int,
                   help="GLOBAL batch, all processes together (optim.batch_size; default: the preset's, 128; 4 with "
                        "--smoke); each process gets batch / processes")
    p.add_argument("--workers", type=int, help="loader workers per process (default: the preset's, 8; 1 with --smoke)")
    p.add_argument("--steps", type=int, help="timed model steps (default 10; 2 with --smoke)")
    p.add_argument("--warmup", type=int, help="untimed model steps before them (default 3; 1 with --smoke)")
    p.add_argument("--pipeline-steps", type=int,
                   help="steps of each pipeline epoch (default 2 x workers, at least 4; 2 with --smoke)")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"],
                   help="default: the preset's (auto: bf16 on CUDA, fp32 on the CPU; CPU bf16 autocast of the 3D "
                        "convolutions is not deterministic in torch 2.14 and gave a NaN loss in about one run in "
                        "three here)")
    p.add_argument("--time-limit", type=float,
                   help=f"seconds for the whole run from process start (default {TIME_LIMIT_S}; none with --smoke; "
                        "0: none): the budgets are scaled down to fit and no check runs past it")
    p.add_argument("--budget-scale", type=float, default=1.0, help="multiply every sub-check's time budget")
    p.add_argument("--budget", action="append", default=[], metavar="CHECK=SECONDS",
                   help="one sub-check's time budget (repeatable)")
    p.add_argument("--inject-fail", action="append", default=[], metavar="CHECK",
                   help="make CHECK fail (tests the reporting)")
    p.add_argument("--inject-hang", action="append", default=[], metavar="CHECK",
                   help="make CHECK hang until its budget stops it (tests the time budget)")
    p.add_argument("--verbose", action="store_true", help="print the traceback of a failing check")
    a = p.parse_args(argv)
    try:
        a.budget = {k: float(v) for k, v in (b.split("=", 1) for b in a.budget)}
    except ValueError:
        p.error("--budget takes CHECK=SECONDS")
    for name in [*a.budget, *a.inject_fail, *a.inject_hang]:
        if name not in CHECKS:
            p.error(f"unknown check {name!r}; one of {', '.join(CHECKS)}")
    for name in ("clip_len", "size", "decode_size", "batch", "workers", "steps", "warmup", "pipeline_steps"):
        v = getattr(a, name)
        if v is not None and v < (0 if name in ("workers", "warmup") else 1):
            p.error(f"--{name.replace('_', '-')} must be >= {0 if name in ('workers', 'warmup') else 1}, got {v}")
    from videocontrast.config import ConfigError

    try:
        resolve(a)
        make_config(a, False, Path(tempfile.gettempdir()) / "synthetic")  # validated now, not in every check
    except ConfigError as e:
        p.error(str(e))
    return a


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.print_config:
        cfg = make_config(args, args.compile, Path("<temporary folder>") / "synthetic")
        print(json.dumps({"settings": settings(args), "budgets_s": planned_budgets(args, elapsed_s()),
                          "config": cfg.to_dict()}, indent=2))
        return 0
    if args.device == "cpu":
        os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    checker = Checker(args)
    return checker.all()


if __name__ == "__main__":
    sys.exit(main())
