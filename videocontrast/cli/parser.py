"""The command line's parser: every command, flag and help text. Torch-free: choices and help come from the
torch-free name lists (names, search.index, reproduce.thesis), so `videocontrast --help` answers at once."""

from __future__ import annotations

import argparse
import functools

from ..config import list_presets
from ..search.index import INDEX_KINDS
from ..names import (CURATE_STRATEGIES, DATASET_NAMES, DEFAULT_VAL_FRACTION, EXPORT_FORMATS, METHODS,
                     RECALL_KS, SCALES)
from ..reproduce.thesis import TABLE_NAMES


EPILOG = {
    "demo": "example: videocontrast demo --quick\n"
            "         videocontrast demo --dataset ucf101 --root UCF101/ --splits ucfTrainTestlist/ --split 1",
    "pretrain": "example: videocontrast pretrain --method simclr --dataset ucf101 --root UCF101/ --split 1 \\\n"
                "             --epochs 100 --out runs/simclr --config ucf101-simclr optim.lr=3e-4\n"
                "multi-GPU: torchrun --nproc_per_node=8 -m videocontrast pretrain ... (same flags)",
    "linear": "example: videocontrast linear --checkpoint runs/simclr/checkpoints/last.pt --dataset ucf101 "
              "--root UCF101/ --out runs/simclr/linear",
    "finetune": "example: videocontrast finetune --checkpoint runs/simclr/checkpoints/last.pt --dataset hmdb51 "
                "--root HMDB51/ --splits testTrainMulti_7030_splits/ --out runs/simclr/ft eval.finetune_epochs=150",
    "knn": "example: videocontrast knn --checkpoint random --config cpu-small --out runs/random/knn",
    "retrieve": "example: videocontrast retrieve --checkpoint runs/simclr/checkpoints/last.pt --dataset ucf101 "
                "--root UCF101/ --out runs/simclr/retrieval   (writes retrieval.html)",
    "embed": "example: videocontrast embed --checkpoint runs/mine/checkpoints/last.pt --root my_videos/ "
             "--out my_videos.emb\n"
             "         videocontrast embed --checkpoint last.pt --root manifest.csv --per-clip --out clips.emb   "
             "(CSV: path[,label][,start,end])\n"
             "         torchrun --nproc_per_node=2 -m videocontrast embed ... (same flags; run again to resume)",
    "search": "example: videocontrast search my_videos.emb query.mp4 -k 5 --html results.html\n"
              "         videocontrast search my_videos.emb row:17 --label Knitting   "
              "(a row of the folder; only rows labelled Knitting)\n"
              "         videocontrast search my_videos.emb queries/ --prefix /data/2024/   (a folder of queries)",
    "serve": "example: videocontrast serve my_videos.emb   then open http://127.0.0.1:8000/\n"
             "         videocontrast serve my_videos.emb --queue curated/queue.txt\n"
             "         (tabs: Browse, Duplicates, Outliers, Queue: what `videocontrast curate` finds, as previews)",
    "curate": "example: videocontrast curate duplicates my_videos.emb --auto --out curated/\n"
              "         videocontrast curate outliers my_videos.emb --top 20 --out curated/\n"
              "         videocontrast curate select my_videos.emb --budget 50 --strategy diverse --out curated/\n"
              "         (docs/curate.md: what each writes and how it was measured)",
    "export": "example: videocontrast export runs/simclr/checkpoints/last.pt --out r3d_18_simclr.safetensors\n"
              "         an r3d_18, r2plus1d_18 or mc3_18 then loads into torchvision.models.video.<backbone>() with\n"
              "         model.fc = torch.nn.Identity(); other backbones as the \"load\" code in the .json says",
    "data": "example: videocontrast data info --dataset ucf101 --root UCF101/ --split 1 --json\n"
            "         videocontrast data preview --out preview/",
    "ablate": "example: videocontrast ablate --config cpu-small --grid aug.temporal=none,shift "
              "aug.spatial_mode=chunk,frame --epochs 5 --out runs/ablation",
    "reproduce": "example: videocontrast reproduce table1 --ucf101 UCF101/videos --hmdb51 HMDB51/videos --out repro/\n"
                 "         videocontrast reproduce table3 --ucf101 UCF101/videos --kinetics r3d18_K_200ep.pth "
                 "--out repro/\n"
                 "         videocontrast reproduce fig6 --ucf101 UCF101/videos --scale smoke "
                 "--out /tmp/repro   (minutes)\n"
                 "tables and figures: " + ", ".join(TABLE_NAMES) + "; CONFIG.md lists each one's runs and numbers",
}


def _positive_int(text: str, most: int = 10**9, least: int = 1) -> int:
    """argparse type of --epochs, -k, --clips: a whole number from 1 (0 is an error, not "the preset's value") to
    ``most`` (far past any real use: what would otherwise fail deep inside with a size error, naming no flag)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= {least}, not {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be at least {least}, got {value}")
    if value > most:
        shown = text if len(text) <= 30 else text[:27] + "..."
        raise argparse.ArgumentTypeError(f"must be at most {most:,}, got {shown}")
    return value


def _dataset_flags(p: argparse.ArgumentParser, required_root: bool = False) -> None:
    g = p.add_argument_group("dataset")
    g.add_argument("--dataset", choices=DATASET_NAMES, default=None,
                   help="dataset kind (default: the config's, synthetic for the demo)")
    g.add_argument("--root", default=None, required=required_root, help="folder with the videos (class subfolders)")
    g.add_argument("--splits", default=None,
                   help="folder with the official split files (ucf101, hmdb51), or the train.txt/test.txt a run "
                        "wrote for a folder of class subfolders without train/ and test/ (e.g. runs/demo/splits)")
    g.add_argument("--split", type=int, default=None, choices=[1, 2, 3], help="official split number")


def _device_flag(p: argparse.ArgumentParser, default: str) -> None:
    """--device of every command. ``default`` is what None means there: "auto" (training: the GPU if any) or
    "cpu" (embedding and search, where a query should not wait for a GPU to start)."""
    choices = "auto | cpu | cuda | cuda:N" if default == "auto" else "cpu | cuda | cuda:N"
    note = "auto, the GPU if any" if default == "auto" else default
    p.add_argument("--device", default=None, help=f"{choices} (default: {note})")


def _moved_checkpoint_flag(p: argparse.ArgumentParser) -> None:
    """--checkpoint of search and serve: only needed to embed a query video when the weights moved."""
    p.add_argument("--checkpoint", default=None,
                   help="the weights the folder was built with, if they moved (default: the path stored in "
                        "meta.json; the file's SHA-1 must match); used to embed query videos")


def _config_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None, help="preset name (see `videocontrast pretrain --help`) or YAML file")
    _device_flag(p, "auto")
    p.add_argument("overrides", nargs="*", default=[], help="config overrides, e.g. optim.lr=0.01 aug.temporal=drop")


def _val_flag(p: argparse.ArgumentParser, help_: str | None = None) -> None:
    p.add_argument("--val", nargs="?", const=str(DEFAULT_VAL_FRACTION), default=None, metavar="F",
                   help=help_ or "score on a validation split carved out of the training videos (a fraction F, "
                        f"default {DEFAULT_VAL_FRACTION:g}, grouped by source, stratified by class, seeded by "
                        "train.seed) instead of the test split; written to OUT/val_split.txt")


def _subset_flags(p: argparse.ArgumentParser, val: bool) -> None:
    g = p.add_argument_group("training subsets (written to OUT/labelled_split.txt and reused)")
    g.add_argument("--labels-per-class", default=None, metavar="N",
                   help="train on N labelled videos per class, chosen by train.seed (the same for every encoder)")
    g.add_argument("--label-fraction", default=None, metavar="F",
                   help="train on a fraction F of each class's videos (round(F * n), at least 1)")
    g.add_argument("--labelled", default=None, metavar="FILE",
                   help="train on the training videos this list file names (a path a line, e.g. the queue.txt of "
                        "`videocontrast curate select`)")
    if val:
        _val_flag(g)


CHECKPOINT_HELP = ("checkpoint path, a file written by `videocontrast export`, `random` (the --config architecture, "
                   "random init), or a state-dict file of external weights (architecture from --config)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="videocontrast",
        description="Contrastive self-supervised video representation learning (videoSimCLR, videoMoCo v1/v2) "
                    "with linear probe, fine-tuning, kNN and retrieval evaluation.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Start with `videocontrast demo` (no download; about 10 minutes on 2 CPU cores, `--quick` about 3).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_, description=help_, epilog=EPILOG.get(name),
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    p = add("demo", "the main job: pretrain videoSimCLR, evaluate it against random init (same input and RGB) and "
                    "supervised training from scratch, write an HTML report")
    _dataset_flags(p)
    _config_flags(p)
    p.add_argument("--out", default="runs/demo", help="run folder (default: runs/demo)")
    p.add_argument("--quick", action="store_true",
                   help="a short version (about 3 minutes on 2 cores): 24 videos per class, at most 60 epochs or 60 s "
                        "of pretraining (and as long for the supervised baseline)")
    _val_flag(p, "score every encoder on a validation split carved out of the training videos (a fraction F, "
                 f"default {DEFAULT_VAL_FRACTION:g}, grouped by source, seeded by train.seed; OUT/val/) instead of the "
                 "test split, which is then never read: for choosing a recipe; the supervised baselines train on "
                 "the other training videos")
    p.add_argument("--fresh", action="store_true",
                   help="start over in OUT: remove a previous demo there, only what OUT/demo.json records as a "
                        "demo's (a rerun without it reuses that demo's pretraining; a demo with other settings is "
                        "refused)")

    p = add("pretrain", "contrastive pretraining (same command under torchrun)")
    p.add_argument("--method", choices=list(METHODS), default=None,
                   help="contrastive method (default: the config's method.name, simclr unless the preset says "
                        "otherwise)")
    _dataset_flags(p)
    p.add_argument("--epochs", type=_positive_int, default=None,
                   help="pretraining epochs (default: the config's train.epochs); with --resume it may only grow "
                        "(the lr schedule is recomputed over the new total)")
    p.add_argument("--out", required=True, help="run folder: config.yaml, metrics.jsonl, checkpoints/last.pt")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/checkpoints/last.pt if it exists, with the settings stored there; flags "
                        "and overrides may change only epochs (more), logging, saving, time limit, device, workers")
    _config_flags(p)
    p.epilog = (p.epilog or "") + f"\npresets: {', '.join(list_presets())}"

    for name, help_ in (("linear", "linear probe: L2 logistic regression on frozen features"),
                        ("finetune", "fine-tune the whole network (backbone lr = head lr x 0.1)"),
                        ("knn", "kNN classifier on frozen features (cosine, weighted votes)"),
                        ("retrieve", f"video retrieval R@{'/'.join(map(str, RECALL_KS))} (test queries training "
                                     "videos) + HTML")):
        p = add(name, help_)
        p.add_argument("--checkpoint", required=True,
                       help="checkpoint path, `random`, `supervised`, or a state-dict file of external weights")
        _dataset_flags(p)
        p.add_argument("--out", required=True, help="output folder (results.json)")
        if name != "retrieve":
            _subset_flags(p, val=name != "finetune")
        _config_flags(p)

    p = add("embed", "embed a folder, list file or CSV manifest of videos into a searchable folder")
    p.add_argument("--checkpoint", required=True, help=CHECKPOINT_HELP)
    p.add_argument("--root", required=True,
                   help="folder of videos (searched recursively), a list file (path [label] a line) or a CSV "
                        "manifest path[,label][,start,end]")
    p.add_argument("--out", required=True, help="output folder (embeddings.npy, table.parquet, meta.json, "
                                                "index.faiss); an unfinished one is resumed")
    p.add_argument("--clips", type=functools.partial(_positive_int, most=1024), default=4,
                   help="clips per video, mean-pooled (default: 4)")
    p.add_argument("--per-clip", action="store_true", help="one row per clip, with its time span")
    p.add_argument("--dtype", choices=("float32", "float16"), default="float32", help="of embeddings.npy")
    p.add_argument("--batch-size", type=functools.partial(_positive_int, most=65536), default=32,
                   help="clips per forward pass (default: 32)")
    p.add_argument("--workers", type=functools.partial(_positive_int, least=0, most=256), default=0,
                   help="decoding processes per rank (default: 0)")
    p.add_argument("--index", choices=(*INDEX_KINDS, "none"), default="auto",
                   help="FAISS index: auto (exact up to 50,000 rows, IVF above), flat, ivf, ivfpq, hnsw, none")
    p.add_argument("--config", default=None, help="preset or YAML: the architecture for `random` and external weights")
    _device_flag(p, "auto")
    p.add_argument("overrides", nargs="*", default=[], help="config overrides, e.g. model.backbone=r3d_18")

    p = add("search", "find the rows of an embedding folder nearest to a query")
    p.add_argument("index", help="folder written by `videocontrast embed`")
    p.add_argument("query", help="a video file, a row of the folder (row:N), or a folder of query videos")
    p.add_argument("-k", type=_positive_int, default=5,
                   help="number of results (default: 5; at most the folder's rows)")
    p.add_argument("--label", default=None, help="only rows with this label")
    p.add_argument("--prefix", default=None, help="only rows whose path is under this folder")
    p.add_argument("--html", default=None, help="write an HTML page with frames of the (first query's) results")
    _moved_checkpoint_flag(p)
    _device_flag(p, "cpu")

    p = add("curate", "curate an embedding folder: near-duplicate groups, outliers, a labelling queue")
    how = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    def curate(name: str, help_: str) -> argparse.ArgumentParser:
        q = how.add_parser(name, help=help_, description=help_, epilog=EPILOG.get(f"curate {name}"),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        q.add_argument("index", metavar="EMB", help="folder written by `videocontrast embed`")
        q.add_argument("--out", required=True, help="folder for the CSV, list file and page")
        return q

    q = curate("duplicates", "groups of near-duplicate videos and a keep list with one video per group")
    what = q.add_mutually_exclusive_group(required=True)
    what.add_argument("--threshold", type=float, default=None,
                      help="cosine similarity at or above which two videos are near-duplicates, in [-1, 1]")
    what.add_argument("--auto", action="store_true",
                      help="choose the threshold from the neighbour similarities (Otsu's method) and say it")
    q = curate("outliers", "videos ranked by how far they are from their nearest neighbours")
    q.add_argument("--top", type=_positive_int, default=20, help="outliers shown on the page (default: 20)")
    q = curate("select", "a labelling queue of N videos, as a list file --labelled and embed --root accept")
    q.add_argument("--budget", type=lambda t: _positive_int(t, least=0), required=True,
                   help="videos to queue (1 to the folder's rows)")
    q.add_argument("--strategy", choices=CURATE_STRATEGIES, default="diverse",
                   help="diverse: greedy k-center; typical: TypiClust, dense regions first; random: to compare "
                        "(default: diverse)")
    q.add_argument("--seed", type=int, default=0, help="seed of typical's k-means and of random (default: 0)")

    p = add("serve", "a local web page to browse and search an embedding folder, with its near-duplicates, "
                     "outliers and labelling queue")
    p.add_argument("index", help="folder written by `videocontrast embed`")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0: any free port)")
    p.add_argument("--max-upload-mb", type=float, default=200.0,
                   help="largest video a query may upload, in MB (default: 200)")
    _moved_checkpoint_flag(p)
    _device_flag(p, "cpu")
    p.add_argument("--queue", default=None, metavar="FILE",
                   help="the labelling queue the page's Queue tab shows, in its order: the queue.txt or queue.csv "
                        "of `videocontrast curate select`, or any list file (a path a line; relative paths "
                        "against the file's folder) (default: computed on the page: diverse, typical or random)")

    p = add("export", "write the backbone alone (torchvision state dict, safetensors or ONNX) plus a JSON of its input")
    p.add_argument("checkpoint", help=CHECKPOINT_HELP)
    p.add_argument("--out", required=True,
                   help="weights file to write (.pt or .safetensors); the JSON description goes beside it "
                        "(the whole name plus .json, e.g. m.safetensors.json)")
    p.add_argument("--format", choices=EXPORT_FORMATS, default=None,
                   help="torchvision: a plain state dict (torch.load(weights_only=True)); safetensors; onnx: the "
                        "network for onnxruntime, dynamic batch (pip install 'videocontrast[onnx]') (default: "
                        "safetensors for a .safetensors name, onnx for an .onnx name, else torchvision)")
    p.add_argument("--config", default=None, help="preset or YAML: the architecture for `random` and external weights")
    p.add_argument("overrides", nargs="*", default=[], help="config overrides, e.g. model.backbone=r3d_18")

    p = add("data", "inspect a dataset: counts, missing/unreadable files, or a preview of augmented views")
    p.add_argument("action", choices=["info", "preview"])
    _dataset_flags(p)
    p.add_argument("--json", action="store_true", help="info: print one JSON object")
    p.add_argument("--out", default=None, help="preview: output folder for the PNG grid")
    _config_flags(p)

    p = add("ablate", "run a grid over config fields; table (md, csv) and bar chart; resumable")
    _dataset_flags(p)
    p.add_argument("--grid", nargs="+", required=True, help="field=v1,v2,... (one per axis)")
    p.add_argument("--epochs", type=_positive_int, default=None,
                   help="pretraining epochs of every cell (default: the config's train.epochs)")
    p.add_argument("--out", required=True)
    p.add_argument("--eval", default="linear,knn", help="evaluations per cell: linear,knn,retrieve")
    _val_flag(p)
    p.add_argument("--config", default=None)
    _device_flag(p, "auto")
    p.add_argument("overrides", nargs="*", default=[])

    p = add("reproduce", "run a thesis table or figure; writes OUT/<table>.md/.csv (ours / thesis) and a PNG")
    p.add_argument("table", metavar="TABLE", help=f"one of {', '.join(TABLE_NAMES)}")
    p.add_argument("--ucf101", default=None, help="folder of UCF101's class folders (required)")
    p.add_argument("--ucf101-splits", default=None, help="ucfTrainTestlist folder (default: next to --ucf101)")
    p.add_argument("--hmdb51", default=None, help="folder of HMDB51's class folders (absent: its cells say not run)")
    p.add_argument("--hmdb51-splits", default=None, help="HMDB51 split-file folder (default: next to --hmdb51)")
    p.add_argument("--kinetics", default=None,
                   help="Kinetics checkpoint (Hara et al.'s format or ours) for the Kinetics rows (tables 2, 3, "
                        "figs 4, 5)")
    p.add_argument("--scale", default="full", help=f"{' | '.join(SCALES)} (smoke: the same chain in minutes)")
    _device_flag(p, "auto")
    p.add_argument("--out", required=True, help="folder for the runs and the tables (resumable)")
    return parser
