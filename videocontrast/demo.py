"""``videocontrast demo``: the whole system end to end in one command.

Generate (or read) a dataset, pretrain videoSimCLR, then evaluate the pretrained encoder and the same
architecture at random initialisation with the linear probe, kNN and retrieval, and write
``OUT/results.json`` plus ``OUT/report.html``. It says plainly when pretraining did not beat random init.

A demo folder holds one demo: rerunning the same command reuses (or continues) its pretraining and says so; a
demo with other settings is refused (``--fresh`` starts over in the folder, or choose another ``--out``).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from .build import dataset_root, eval_loader
from .config import Config, ConfigError
from .engine.device import resolve_device
from .engine.run import RunFolderError, refused_changes, run_lock, stored_run
from .engine.train import pretrain
from .eval.metrics import video_labels
from .eval.report import html_page, image_html, table_html
from .eval.retrieval import video_embeddings
from .eval.run import class_names, features, knn_monitor, resolve_encoder, run_knn, run_linear, run_retrieve

# What a demo writes into its folder (and `--fresh` removes; nothing else there is touched).
DEMO_OUTPUTS = ("pretrain", "pretrained", "random_init", "cache", "results.json", "report.html", "loss.png",
                "embeddings.png")
SUMMARY_KEYS = ("linear_top1", "linear_top5", "linear_video_top1", "knn_top1", "knn_video_top1",
                "R@1", "R@5", "R@10")


def _summary(linear: dict, knn: dict, retr: dict) -> dict[str, float]:
    return {"linear_top1": linear["top1"], "linear_top5": linear.get("top5"),
            "linear_video_top1": linear.get("video_top1"), "knn_top1": knn["top1"],
            "knn_video_top1": knn.get("video_top1"), "R@1": retr["R@1"], "R@5": retr["R@5"],
            "R@10": retr.get("R@10")}


def quick_config(cfg: Config) -> Config:
    """The ``--quick`` variant: fewer synthetic clips and epochs (about 2 minutes on 2 cores)."""
    cfg.data.synthetic_videos_per_class = min(cfg.data.synthetic_videos_per_class, 24)
    cfg.train.epochs = min(cfg.train.epochs, 60)
    cfg.train.time_limit_s = cfg.train.time_limit_s or 90.0
    cfg.optim.batch_size = min(cfg.optim.batch_size, 32)
    cfg.eval.cv_folds = min(cfg.eval.cv_folds, 3)
    return cfg


def _loss_curve(history: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=110)
    ax.plot([h["epoch"] for h in history], [h["loss"] for h in history], marker="o")
    ax.set_xlabel("epoch")
    ax.set_ylabel("contrastive loss")
    ax.set_title("pretraining loss")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _embedding_plot(sets: dict[str, dict[str, Any]], classes: list[str], path: Path) -> Path:
    """2-D PCA of the test videos' embeddings, coloured by class, one panel per encoder."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA  # heavy, and only the report needs it

    fig, axes = plt.subplots(1, len(sets), figsize=(5 * len(sets), 4.2), dpi=110, squeeze=False)
    for ax, (name, feats) in zip(axes[0], sets.items()):
        emb = video_embeddings(feats["feats"], feats["video_ids"])
        labels = video_labels(np.asarray(feats["labels"]), np.asarray(feats["video_ids"]))
        xy = PCA(n_components=2, random_state=0).fit_transform(emb)
        cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
        for c in np.unique(labels):
            m = labels == c
            ax.scatter(xy[m, 0], xy[m, 1], s=14, color=cmap(int(c) % cmap.N), label=classes[int(c)])
        ax.set_title(f"{name}: test videos (PCA)")
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def verdict(results: dict[str, Any]) -> str:
    p, r = results["pretrained"], results["random_init"]
    margin = 100 * (p["linear_top1"] - r["linear_top1"])
    if margin > 2:
        return (f"Pretraining helped: linear-probe top-1 {100 * p['linear_top1']:.1f}% vs "
                f"{100 * r['linear_top1']:.1f}% for random init (+{margin:.1f} points).")
    return (f"Pretraining did NOT clearly beat random init here: linear-probe top-1 {100 * p['linear_top1']:.1f}% "
            f"vs {100 * r['linear_top1']:.1f}% ({margin:+.1f} points). Train longer (train.epochs) or on more data.")


def write_report(out: Path, results: dict[str, Any]) -> Path:
    rows = [{"encoder": name, **{k: (f"{100 * v:.1f}%" if isinstance(v, float) else "-")
                                 for k, v in results[name].items() if k in SUMMARY_KEYS}}
            for name in ("pretrained", "random_init")]
    t = results["timings"]
    sections = [
        ("Result", f"<p><b>{verdict(results)}</b></p>" + table_html(rows)),
        ("Pretraining loss", image_html("loss.png", "pretraining loss per epoch")),
        ("Embeddings", image_html("embeddings.png", "PCA of test-video embeddings")),
        ("Retrieval (pretrained encoder)",
         '<p><a href="pretrained/retrieval.html">full retrieval page</a></p>'
         + image_html("pretrained/img/retrieval.png", "nearest training videos of test queries")),
        ("How these numbers were obtained",
         "<pre>" + json.dumps({"protocol": results.get("protocol"), "timings_s": t}, indent=2) + "</pre>"),
    ]
    path = out / "report.html"
    path.write_text(html_page("videocontrast demo", sections))
    return path


def clear_demo(out: Path) -> list[str]:
    """Remove a previous demo's outputs from ``out`` (only :data:`DEMO_OUTPUTS`); returns the names removed."""
    removed = []
    for name in DEMO_OUTPUTS:
        p = out / name
        if p.is_dir():
            with run_lock(p) if name == "pretrain" else contextlib.nullcontext():  # not while another run trains
                shutil.rmtree(p)
        elif p.exists():
            p.unlink()
        else:
            continue
        removed.append(name)
    return removed


def run_demo(cfg: Config, out: Path, quick: bool = False, quiet: bool = False, fresh: bool = False) -> dict[str, Any]:
    """The demo into ``out``; ``fresh`` first removes a previous demo there.

    Raises:
        ConfigError: ``out`` holds a demo run with other settings (and ``fresh`` is False).
        RunFolderError: ``out`` is a pretraining run folder, in use, not writable or full.
    """
    if quick:
        cfg = quick_config(cfg)
    out = Path(out)
    if (out / "checkpoints" / "last.pt").exists():
        raise RunFolderError(f"'{out}' holds a pretrain run ({out / 'checkpoints' / 'last.pt'}), not a demo; "
                             "choose another --out")
    with run_lock(out):
        previous = None if fresh else stored_run(out / "pretrain")
        if previous is not None:
            refused = refused_changes(previous.config, cfg)
            if refused:
                raise ConfigError(f"'{out}' holds a demo run with different settings "
                                  f"({'; '.join(map(str, refused))}); rerun with --fresh to start over or choose "
                                  "another --out")
        t0 = time.perf_counter()
        root = dataset_root(cfg)  # generates the synthetic set once
        for subset in ("train", "test"):  # fail before pretraining (and before --fresh removes anything)
            eval_loader(cfg, subset)
        data_s = time.perf_counter() - t0
        if fresh:
            removed = clear_demo(out)
            if removed and not quiet:
                print(f"--fresh: removed the previous demo in {out} ({', '.join(removed)})", flush=True)
        elif previous is not None and previous.checkpoint is not None and not quiet:
            where, done = out / "pretrain", previous.epochs_done
            print(f"reusing the finished pretraining run in {where} ({done} epochs)" if done >= cfg.train.epochs
                  else f"continuing the pretraining run in {where} from epoch {done} of {cfg.train.epochs}",
                  flush=True)
        return _run_demo(cfg, out, quiet, root, t0, data_s)


def _run_demo(cfg: Config, out: Path, quiet: bool, root: Path, t0: float, data_s: float) -> dict[str, Any]:
    timings: dict[str, float] = {"data": data_s}
    device = resolve_device(cfg.train.device)
    t = time.perf_counter()
    run = pretrain(cfg, out / "pretrain", resume=True, quiet=quiet, monitor=knn_monitor(cfg, device))
    timings["pretrain"] = time.perf_counter() - t
    results: dict[str, Any] = {}
    feature_sets: dict[str, dict] = {}
    cache = out / "cache"
    for name, spec in (("pretrained", run["checkpoint"]), ("random_init", "random")):
        t = time.perf_counter()
        enc = resolve_encoder(spec, run["config"], device, out / name)
        edir = out / name
        edir.mkdir(parents=True, exist_ok=True)
        lin = run_linear(enc, device, edir, cache)
        knn = run_knn(enc, device, edir, cache)
        retr = run_retrieve(enc, device, edir, cache)
        results[name] = {**_summary(lin, knn, retr), "protocol": {"linear": lin["protocol"], "knn": knn["protocol"],
                                                                  "retrieval": retr["protocol"]}}
        feature_sets[name] = features(enc, "test", device, cache)
        timings[f"eval_{name}"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    results["margin_linear_top1"] = results["pretrained"]["linear_top1"] - results["random_init"]["linear_top1"]
    results["verdict"] = verdict(results)
    results["config"] = run["config"].to_dict()
    results["dataset_root"] = str(root)
    results["pretrain"] = {"epochs": run["epochs"], "steps": run["steps"], "history": run["history"]}
    results["timings"] = timings
    results["protocol"] = results["pretrained"]["protocol"]["linear"]
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    _loss_curve(run["history"], out / "loss.png")
    _embedding_plot(feature_sets, class_names(run["config"]), out / "embeddings.png")
    report = write_report(out, results)
    if not quiet:
        rows = [f"{'':12} " + " ".join(f"{k:>12}" for k in ("linear_top1", "knn_top1", "R@1", "R@5"))]
        for name in ("pretrained", "random_init"):
            rows.append(f"{name:12} " + " ".join(f"{100 * results[name][k]:11.1f}%"
                                                  for k in ("linear_top1", "knn_top1", "R@1", "R@5")))
        print("\n".join(rows))
        print(results["verdict"])
        print(f"total {timings['total']:.0f}s; report: {report}; results: {out / 'results.json'}")
    return results
