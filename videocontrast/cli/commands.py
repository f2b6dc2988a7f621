"""One handler per command: each turns its parsed arguments into a config and calls its module, imported when the
command runs (so the parser and `--help` load no torch)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from ..config import apply_overrides, load_config, validate
from ..names import DEFAULT_VAL_FRACTION, SCALES
from ..reproduce.thesis import TABLE_NAMES


def _subset_overrides(args: argparse.Namespace) -> list[str]:
    """``--val``, ``--labels-per-class``, ``--label-fraction`` as config overrides, each checked first (a bad
    value is one line naming the flag)."""
    from ..data.subsets import parse_count, parse_fraction

    val = getattr(args, "val", None)
    if val is not None and "=" in val:  # `--val optim.lr=...`: the bare flag followed by an override
        args.overrides = [*args.overrides, val]
        val = str(DEFAULT_VAL_FRACTION)
    per_class = getattr(args, "labels_per_class", None)
    fraction = getattr(args, "label_fraction", None)
    if per_class is not None and fraction is not None:
        raise ValueError("--labels-per-class and --label-fraction both given; choose one")
    listed = getattr(args, "labelled", None)
    if listed is not None and (per_class is not None or fraction is not None):
        raise ValueError("--labelled and --labels-per-class/--label-fraction both given; choose one")
    out = []
    if val is not None:
        out.append(f"data.val_fraction={parse_fraction('--val', val, closed=False)}")
    if per_class is not None:
        out.append(f"data.labels_per_class={parse_count('--labels-per-class', per_class)}")
    if fraction is not None:
        out.append(f"data.label_fraction={parse_fraction('--label-fraction', fraction, closed=True)}")
    if listed is not None:
        out.append(f"data.labelled={Path(listed).expanduser().resolve()}")
    return out


def _dataset_overrides(args: argparse.Namespace) -> list[str]:
    out = []
    for flag, key in (("dataset", "data.dataset"), ("root", "data.root"), ("splits", "data.splits"),
                      ("split", "data.split"), ("device", "train.device")):
        value = getattr(args, flag, None)
        if value is not None:
            out.append(f"{key}={value}")
    return out


def _build_config(args: argparse.Namespace, extra: list[str] | None = None):
    return load_config(args.config, [*_dataset_overrides(args), *(extra or []), *args.overrides])


def _optional_config(args: argparse.Namespace):
    """The config of ``--config``/overrides when given (the architecture for ``random``/external weights), else
    None: a checkpoint or an exported file brings its own."""
    return _build_config(args) if args.config or args.overrides else None


def cmd_pretrain(args: argparse.Namespace) -> int:
    from ..engine.device import resolve_device
    from ..engine.run import check_resumable, stored_run
    from ..engine.train import pretrain
    from ..eval.run import knn_monitor

    extra = []
    if args.method is not None:
        extra.append(f"method.name={args.method}")
    if args.epochs is not None:
        extra.append(f"train.epochs={args.epochs}")
    if args.resume:
        check_resumable(args.out)  # a folder of something else (an embedding, a demo) is not continued as a run
    previous = stored_run(args.out) if args.resume and args.config is None else None
    if previous is not None:  # `--resume --out RUN`: the run's own settings, changed only by what is given here
        cfg = apply_overrides(previous.config, [*_dataset_overrides(args), *extra, *args.overrides])
        validate(cfg)
    else:
        cfg = _build_config(args, extra)
    result = pretrain(cfg, args.out, resume=args.resume, monitor=knn_monitor(cfg, resolve_device(cfg.train.device)))
    last = result["history"][-1] if result["history"] else {}
    print(f"done: {result['epochs']} epochs, {result['steps']} steps, final loss {last.get('loss', float('nan')):.4f}"
          f", {result['time_s']:.0f}s -> {result['checkpoint']}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from ..engine.device import resolve_device
    from ..engine.run import check_writable
    from ..eval.run import COMMANDS, format_table, resolve_encoder, training_subsets, write_results

    cfg = _build_config(args, _subset_overrides(args))
    device = resolve_device(cfg.train.device)
    out = Path(args.out)
    check_writable(out)  # created by the command's first write, so a failure on the arguments leaves nothing
    # Chosen from the command's seed and dataset before any encoder exists: the same videos for every encoder.
    subsets = training_subsets(cfg, out)
    enc = resolve_encoder(args.checkpoint, cfg, device, out, subsets)
    run = COMMANDS[args.command]
    results = run(enc, device, out, subsets=subsets)
    path = write_results(out, results)
    print(f"{args.command}: {enc.description}\n{_subset_line(results)}{format_table(results)}\nprotocol: "
          f"{json.dumps(results.get('protocol', {}))}\n-> {path}")
    return 0


def _subset_line(results: dict) -> str:
    """What the scores below are on (a validation split, a label subset), or nothing for all labels on test."""
    s = results.get("subsets") or {}
    lines = []
    if s.get("labels_per_class") or s.get("label_fraction") or s.get("labelled"):
        how = (f"{s['labels_per_class']} per class" if s.get("labels_per_class") else
               f"listed in {s['labelled']}" if s.get("labelled") else f"{100 * s['label_fraction']:g}% of each class")
        lines.append(f"trained on {s['labelled_videos']} labelled videos ({how}, seed {s['seed']}; "
                     f"{s.get('labelled_split', '')})")
    if results.get("evaluated_on") == "validation":
        top1 = results.get("val_top1", results.get("val_R@1"))
        name = "top-1" if "val_top1" in results else "R@1"
        shown = f" {100 * top1:.1f}%" if isinstance(top1, (int, float)) else ""
        lines.append(f"validation {name}{shown} ({results['validation']}; {s.get('val_split', '')}); the test split "
                     "was not used")
    return "".join(line + "\n" for line in lines)


def cmd_data(args: argparse.Namespace) -> int:
    from ..build.components import dataset_root
    from ..data.info import dataset_info
    from ..build.preview import preview

    cfg = _build_config(args)
    if args.action == "info":
        info = dataset_info(cfg.data.dataset, dataset_root(cfg), splits=cfg.data.splits, split=cfg.data.split)
        if args.json:
            print(json.dumps(info, default=str))
        else:
            print(f"dataset {cfg.data.dataset} at {dataset_root(cfg)} (split {cfg.data.split})")
            print(f"classes: {len(info['classes'])}   train: {info['train']}   test: {info['test']}   "
                  f"missing: {info['missing']}   unreadable: {len(info['unreadable'])}")
            for key in ("frames", "fps"):
                if key in info:
                    print(f"{key}: {info[key]}")
            for bad in info["unreadable"][:20]:
                print(f"  unreadable: {bad['path']}: {bad['reason']}")
        return 0
    out = Path(args.out or "preview")
    path = preview(cfg, out)
    print(f"wrote {path}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ..demo.run import run_demo

    preset = args.config or "demo"
    if args.dataset and args.dataset != "synthetic" and not args.config:
        preset = "demo-real"
    subset = _subset_overrides(args)  # --val
    cfg = load_config(preset, [*_dataset_overrides(args), *args.overrides, *subset])
    run_demo(cfg, Path(args.out), quick=args.quick, fresh=args.fresh, command=_demo_command(args))
    return 0


def _demo_command(args: argparse.Namespace) -> str:
    """The command line that reruns this demo, and so continues its pretraining (never with --fresh)."""
    words = ["videocontrast", "demo"]
    for flag in ("dataset", "root", "splits", "split", "config", "device"):
        value = getattr(args, flag, None)
        if value is not None:
            words += [f"--{flag}", str(value)]
    words += ["--out", str(args.out), *(["--quick"] if args.quick else []),
              *_val_words(getattr(args, "val", None)), *args.overrides]
    return shlex.join(words)


def _val_words(val: str | None) -> list[str]:
    """``--val`` as given (a value with '=' was an override after the bare flag, moved to the overrides)."""
    return [] if val is None else ["--val"] if "=" in val else [f"--val={val}"]


def cmd_embed(args: argparse.Namespace) -> int:
    from ..search.embed import embed_collection
    from ..search.query import load_collection

    out = embed_collection(args.checkpoint, args.root, args.out, clips=args.clips, per_clip=args.per_clip,
                           device=args.device, batch_size=args.batch_size, dtype=args.dtype,
                           config=_optional_config(args), num_workers=args.workers,
                           index_kind=None if args.index == "none" else args.index, progress=True)
    if out is not None:  # rank 0 merged the shards
        col = load_collection(out, use_index=False)
        skipped = col.meta.get("unreadable", [])
        print(f"wrote {out}: {len(col)} rows ({'clips' if col.meta['per_clip'] else 'videos'})"
              + (f", {len(skipped)} entries skipped (warnings above; listed in meta.json)" if skipped else ""))
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from ..search.query import search

    notes: list[str] = []
    results = search(args.index, args.query, k=args.k, label=args.label, prefix=args.prefix, html=args.html,
                     device=args.device, checkpoint=args.checkpoint, notes=notes)
    for note in notes:
        print(f"videocontrast search: {note}", file=sys.stderr)
    for query, hits in results:
        if len(results) > 1:
            print(f"query {query}")
        for rank, (path, sim, row) in enumerate(hits, 1):
            print(f"{rank:3d}  {sim:+.4f}  row:{row:<6d} {path}")
    if args.html:
        print(f"wrote {args.html}")
    return 0


def cmd_curate(args: argparse.Namespace) -> int:
    from ..search import curate

    out = Path(args.out)
    if args.action == "duplicates":
        s = curate.run_duplicates(args.index, out, None if args.auto else args.threshold)
        print(f"threshold {s['threshold']:.4f} ({s['chosen_by']}; {s['neighbours']} neighbours a video, "
              f"{s['search']} search): {s['groups']} groups holding {s['rows_in_groups']} of {s['rows']} videos; "
              f"keeping {s['keep']}, dropping {s['dropped']}")
        written = ["duplicates.csv", "keep.txt", "duplicates.json", *([s["page"]] if "page" in s else [])]
    elif args.action == "outliers":
        s = curate.run_outliers(args.index, out, top=args.top)
        print(f"outlier score: {s['score']} ({s['search']} search); most outlying first:")
        for i, path in enumerate(s["top"], 1):
            print(f"{i:3d}  {path}")
        written = ["outliers.csv", "outliers.json", s["page"]]
    else:
        s = curate.run_select(args.index, out, args.budget, args.strategy, args.seed)
        print(f"queued {s['budget']} of {s['rows']} videos by {s['strategy']} ({s['source']}); label them in the "
              f"order of {s['queue']}, then evaluate with --labelled {s['queue']}")
        written = ["queue.txt", "queue.csv", "queue.json"]
    print("-> " + ", ".join(str(out / name) for name in written))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        from ..search.library import Limits
        from ..search.serve import run_server  # starlette/uvicorn: optional dependencies
        import uvicorn  # noqa: F401
    except ImportError:
        print("videocontrast serve: error: the page needs starlette and uvicorn: pip install 'videocontrast[search]'",
              file=sys.stderr)
        return 2
    run_server(args.index, host=args.host, port=args.port, checkpoint=args.checkpoint, device=args.device,
               limits=Limits(max_upload_mb=args.max_upload_mb), queue=args.queue)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ..export import export_backbone

    out, side = export_backbone(args.checkpoint, args.out, args.format, config=_optional_config(args))
    meta = json.loads(side.read_text())
    how = (f"runs with {meta['constructor']}" if meta["format"] == "onnx" else
           f"loads with strict=True into {meta['constructor']}")
    print(f"wrote {out} ({meta['format']}, {meta['backbone']}, feature dim {meta['feature_dim']}; {how})\n"
          f"wrote {side} (input layout, clip length, size, normalisation, config)")
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    from ..eval.ablate import run_ablation

    extra = [f"train.epochs={args.epochs}"] if args.epochs is not None else []
    cfg = _build_config(args, [*extra, *_subset_overrides(args)])
    table = run_ablation(cfg, args.grid, Path(args.out), evals=args.eval.split(","))
    print(table)
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from ..engine.run import check_writable
    from ..reproduce.run import reproduce

    if args.table not in TABLE_NAMES:
        raise ValueError(f"unknown table '{args.table}'; choose one of {', '.join(TABLE_NAMES)}")
    if args.scale not in SCALES:
        raise ValueError(f"--scale '{args.scale}' is not one of {', '.join(SCALES)}")
    if args.ucf101 is None:
        raise ValueError("--ucf101 ROOT is required (the folder of UCF101's class folders)")
    check_writable(Path(args.out))
    paths = reproduce(args.table, args.out, args.ucf101, args.ucf101_splits, args.hmdb51, args.hmdb51_splits,
                      args.kinetics, args.scale, args.device)
    print(paths["md"].read_text(), end="")
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0
