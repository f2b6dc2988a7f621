"""Ready for a GPU: run the CUDA training path end to end in a few minutes and print what it achieves.

    bench/gpu_check.sh --out results.json          # torchrun --nproc_per_node=2 when two GPUs are present
    python bench/gpu_check.py --out results.json    # one process
    python bench/gpu_check.py --device cpu --smoke  # the same sequence, shrunk, on the CPU (~30-60 s)

Sub-checks, in order, each under its own time budget; a failing one is reported (FAIL + one-line reason) and the
others still run; the exit code is 1 if any failed:

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

Reported per row: two-view clips/s (all processes together), pipeline / model-step ratio (same compile setting),
achieved TFLOP/s per process (FlopCounterMode on one eager step; the compiled step does the same FLOPs), peak GPU
memory (torch.cuda.max_memory_allocated; on the CPU the process's peak RSS instead). One table at the end, also
written as JSON (--out). Default shape: r3d_18, 16x112x112, batch 32 per process.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import resource
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without `pip install -e`

import numpy as np  # noqa: E402
import torch  # noqa: E402

from videocontrast import dist  # noqa: E402

CHECKS = ("env", "distributed", "augment", "model_step_eager", "model_step_compiled", "synthetic_data",
          "pipeline_eager", "pipeline_compiled")
ROW_KEYS = ("check", "status", "reason", "time_s", "clips_per_s", "ratio", "tflops", "peak_mem_gib")
# Seconds each sub-check may take (GPU defaults; --smoke scales them); past it the check is stopped and FAILs.
BUDGETS = {"env": 30, "distributed": 60, "augment": 60, "model_step_eager": 90, "model_step_compiled": 180,
           "synthetic_data": 120, "pipeline_eager": 120, "pipeline_compiled": 180}
HARD_GRACE_S = 60  # a check stuck in native code (a collective, a CUDA sync) past budget + this ends the process


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


# ----------------------------------------------------------------------------- settings


def make_config(args, world: int, compile_: bool, root: Path | None = None):
    """The run's Config: r3d_18 16x112x112 by default, r3d_small at a tiny size with --smoke."""
    from videocontrast.config import load_config

    dev = "cpu" if args.device == "cpu" else "auto"  # auto: cuda:LOCAL_RANK under torchrun
    ov = [f"train.device={dev}", f"train.precision={args.precision}", "train.channels_last=true",
          f"train.compile={str(compile_).lower()}", "method.name=simclr", "optim.name=adamw", "optim.lr=1e-4",
          "optim.warmup_epochs=0", f"optim.batch_size={args.batch * world}", "train.epochs=2",
          f"train.max_steps_per_epoch={args.steps}", "train.log_every=1000", "train.save_every=1000",
          f"data.num_workers={args.workers}", "data.stride=1", f"aug.max_shift={args.max_shift}",
          f"model.backbone={args.backbone}", f"data.clip_len={args.clip_len}", f"data.size={args.size}",
          f"data.decode_size={args.decode_size}"]
    if args.backbone == "r3d_small":
        ov += [f"model.width={args.width}", "model.head_hidden=128"]
    if args.root:
        ov += [f"data.dataset={args.dataset}", f"data.root={args.root}"]
        if args.splits:
            ov.append(f"data.splits={args.splits}")
    else:
        ov += ["data.dataset=synthetic", f"data.root={root}", f"data.synthetic_videos_per_class={args.videos_per_class}",
               f"data.synthetic_frames={args.clip_len + 2 * args.max_shift}",
               f"data.synthetic_size={args.decode_size}"]
    return load_config(None, ov)


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
        self.device = torch.device("cpu") if args.device == "cpu" else self.info.device
        if args.device == "cuda" and self.device.type != "cuda":
            self.device = torch.device("cuda")  # let the env check say why it is not there
        self.rows: list[dict[str, Any]] = []
        self.meta: dict[str, Any] = {}
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
        log(f"{name}: {row['status']}{' (' + row['reason'] + ')' if row['reason'] else ''} in {row['time_s']} s")
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
                                   else "peak RSS of the process"), torch=torch.__version__, python=platform.python_version(), world_size=self.world,
                         device=str(self.device), smoke=a.smoke, backbone=a.backbone,
                         clip=f"{a.clip_len}x{a.size}x{a.size}", batch_per_process=a.batch, precision=a.precision,
                         steps=a.steps, cuda=torch.version.cuda, host=platform.node())
        if self.device.type != "cuda":
            return {"reason": f"CPU, {torch.get_num_threads()} threads, world {self.world}"}
        if not torch.cuda.is_available():
            raise RuntimeError("CUDA is not available to torch (torch.cuda.is_available() is False)")
        props = torch.cuda.get_device_properties(self.device)
        self.meta.update(gpu=props.name, gpu_count=torch.cuda.device_count(),
                         gpu_mem_gib=round(props.total_memory / 2 ** 30, 1), capability=f"{props.major}.{props.minor}",
                         cudnn=torch.backends.cudnn.version())
        if a.precision in ("auto", "bf16") and not torch.cuda.is_bf16_supported():
            raise RuntimeError(f"{props.name} does not support bf16 autocast")
        return {"reason": f"{props.name} x{torch.cuda.device_count()}, CUDA {torch.version.cuda}, world {self.world}"}

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
        a = self.args
        h, w = a.decode_size, a.decode_size * 4 // 3
        g = torch.Generator(device=self.device).manual_seed(dist.get_rank())
        return torch.randint(0, 256, (a.batch, 2, a.clip_len, 3, h, w), dtype=torch.uint8, device=self.device,
                             generator=g)

    def augment(self) -> dict[str, Any]:
        from videocontrast.build import build_augment

        cfg = make_config(self.args, self.world, False, self.tmp / "synthetic")
        aug = build_augment(cfg).to(self.device)
        clips = self._clips(cfg)[:, 0]  # (B, T, C, H, W)
        g = torch.Generator(device=self.device).manual_seed(0)
        out = aug(clips, generator=g)
        a = self.args
        want = (a.batch, 3, a.clip_len, a.size, a.size)
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
        rate = reps * a.batch / (time.perf_counter() - t)
        return {"reason": f"one view: {rate:.0f} clips/s per process on {self.device.type}"}

    def _train_state(self, cfg, compile_: bool, total_steps: int):
        """A TrainState as engine.train.fit builds it (DDP, channels_last_3d, bf16 autocast, torch.compile)."""
        from torch import nn

        from videocontrast.build import build_augment, method_from_config
        from videocontrast.engine.device import autocast_dtype
        from videocontrast.engine.optim import build_optimizer
        from videocontrast.engine.train import MetricsLog, TrainState

        torch.manual_seed(0)
        model = method_from_config(cfg).to(self.device).to(memory_format=torch.channels_last_3d)
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
                          lr_schedule=np.full(total_steps, o.lr), momentum_schedule=None,
                          steps_per_epoch=total_steps, accum_steps=1, labels=False, seed=0, channels_last=True,
                          log_every=10 ** 9, log=MetricsLog(self.tmp, enabled=False))

    def model_step(self, compile_: bool) -> dict[str, Any]:
        from torch.utils.flop_counter import FlopCounterMode

        from videocontrast.engine.train import train_one_epoch

        if compile_ and not self.args.compile:
            raise Skip("compile off (--smoke); --compile turns it on")
        a = self.args
        cfg = make_config(a, self.world, compile_, self.tmp / "synthetic")
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
            out["tflops"] = round(self.flops_per_step * rate / self.world / a.batch / 1e12, 4)
        return out

    def synthetic_data(self) -> dict[str, Any]:
        from videocontrast.data.synthetic import generate_synthetic

        a = self.args
        if a.root:
            return {"reason": f"--root {a.root} ({a.dataset})"}
        cfg = make_config(a, self.world, False, self.tmp / "synthetic")
        d = cfg.data
        if dist.is_main_process():
            generate_synthetic(d.root, videos_per_class=d.synthetic_videos_per_class, num_frames=d.synthetic_frames,
                               size=d.synthetic_size, seed=d.synthetic_seed, appearances=d.synthetic_appearances,
                               workers=max(1, min(16, os.cpu_count() or 1)))
        dist.barrier()
        n = sum(1 for _ in Path(d.root).glob("train/*/*.mp4"))
        need = a.batch * self.world * a.steps
        return {"reason": f"{n} training videos ({d.synthetic_size}px, {d.synthetic_frames} frames)"
                          + ("" if n >= need else f"; fewer than {need}: fewer steps per epoch")}

    def pipeline(self, compile_: bool) -> dict[str, Any]:
        from videocontrast.engine.train import pretrain

        if compile_ and not self.args.compile:
            raise Skip("compile off (--smoke); --compile turns it on")
        cfg = make_config(self.args, self.world, compile_, self.tmp / "synthetic")
        out = self.tmp / f"run-{'compiled' if compile_ else 'eager'}"
        res = pretrain(cfg, out, quiet=True)
        last = res["history"][-1]
        if not math.isfinite(last["loss"]):
            raise RuntimeError(f"loss is {last['loss']}")
        rate = last["clips_per_s"]
        row = {"clips_per_s": round(rate, 2),
               "reason": f"loss {last['loss']:.3f}, {cfg.data.num_workers} workers/process, second epoch"}
        model = self.model_rate.get("compiled" if compile_ else "eager")
        if model:
            row["ratio"] = round(rate / model, 3)
        if self.flops_per_step:
            row["tflops"] = round(self.flops_per_step * rate / self.world / self.args.batch / 1e12, 4)
        if dist.is_main_process():
            shutil.rmtree(out, ignore_errors=True)  # the checkpoint
        return row

    # -- all of it

    def all(self) -> int:
        s = self.args.budget_scale
        plan = {"env": self.env, "distributed": self.distributed, "augment": self.augment,
                "model_step_eager": lambda: self.model_step(False),
                "model_step_compiled": lambda: self.model_step(True),
                "synthetic_data": self.synthetic_data,
                "pipeline_eager": lambda: self.pipeline(False),
                "pipeline_compiled": lambda: self.pipeline(True)}
        for name in CHECKS:
            if name == "env" or self.rows[0]["status"] != "FAIL":
                self.run(name, plan[name], self.args.budget.get(name, BUDGETS[name] * s))
            else:
                self.rows.append({**{k: None for k in ROW_KEYS}, "check": name, "status": "FAIL",
                                  "reason": "not run: the env check failed"})
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
    out = [f"gpu_check: {m.get('backbone')} {m.get('clip')}, batch {m.get('batch_per_process')}/process x world "
           f"{m.get('world_size')}, {m.get('precision')} on {m.get('gpu', m.get('device'))}, torch {m.get('torch')}"
           f"{' (smoke)' if m.get('smoke') else ''}",
           "  ".join(h.ljust(w) for h, w in zip(head, widths)) + "  " + head[-1]]
    out += ["  ".join(c.ljust(w) for c, w in zip(l, widths)) + "  " + l[-1] for l in lines]
    out.append(("OK: every check passed" if res["ok"] else f"FAILED: {', '.join(res['failed'])}")
               + " (clips/s: two-view clips per second, all processes; ratio: pipeline / model step)")
    return "\n".join(out)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--smoke", action="store_true",
                   help="the same sequence shrunk (r3d_small, tiny clips, a few steps, compile off unless --compile)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="run the torch.compile checks (default: on, off with --smoke)")
    p.add_argument("--out", help="write the results as JSON here")
    p.add_argument("--root", help="real videos for the pipeline instead of the synthetic dataset")
    p.add_argument("--dataset", default="folder", help="dataset kind of --root (folder, ucf101, hmdb51)")
    p.add_argument("--splits", help="split-file folder for ucf101/hmdb51 --root")
    p.add_argument("--backbone", help="default r3d_18 (r3d_small with --smoke)")
    p.add_argument("--batch", type=int, help="clips per process (default 32; 4 with --smoke)")
    p.add_argument("--steps", type=int, help="timed steps (default 10; 2 with --smoke)")
    p.add_argument("--warmup", type=int, help="untimed steps before them (default 3; 1 with --smoke)")
    p.add_argument("--workers", type=int, help="loader workers per process (default: CPUs / processes, <= 8)")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"],
                   help="default bf16 on CUDA, fp32 on the CPU (CPU bf16 autocast of the 3D convolutions is not "
                        "deterministic in torch 2.14 and gave a NaN loss in about one run in three here)")
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
    big = dict(backbone="r3d_18", batch=32, steps=10, warmup=3, clip_len=16, size=112, decode_size=128,
               max_shift=4, width=64, compile=True)
    small = dict(backbone="r3d_small", batch=4, steps=2, warmup=1, clip_len=4, size=32, decode_size=40,
                 max_shift=2, width=8, compile=False)
    for k, v in (small if a.smoke else big).items():
        if getattr(a, k, None) is None:
            setattr(a, k, v)
    if a.precision is None:
        a.precision = "fp32" if a.device == "cpu" else "bf16"
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if a.workers is None:
        a.workers = 1 if a.smoke else max(1, min(8, (os.cpu_count() or 2) // world - 1))
    # enough synthetic training videos for `steps` steps of the global batch (75% of them are training videos)
    a.videos_per_class = max(2, math.ceil(a.batch * world * a.steps / 8 / 0.75) + 1)
    if a.smoke and a.budget_scale == 1.0:
        a.budget_scale = 0.5
    return a


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.device == "cpu":
        os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    checker = Checker(args)
    return checker.all()


if __name__ == "__main__":
    sys.exit(main())
