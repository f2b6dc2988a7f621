"""Frozen-encoder feature extraction and an on-disk cache, so re-running a probe costs no forward pass.

A feature set is a dict of NumPy arrays (the layout every evaluation in ``videocontrast.eval`` consumes):

- ``feats``: float32 ``(N_clips, D)`` -- encoder output for every clip,
- ``labels``: int64 ``(N_clips,)`` -- the clip's video label (``-1`` when unlabeled),
- ``video_ids``: int64 ``(N_clips,)`` -- the dataset index of the clip's video,
- ``paths``: ``list[str]`` of length ``V``, aligned with ``np.unique(video_ids)`` (sorted ids).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..fileio import atomic_write_text


def _as_int_tensor(x: Any, n: int, field: str) -> torch.Tensor:
    t = torch.as_tensor(x).reshape(-1).long().cpu()
    if t.numel() != n:
        raise ValueError(f"loader batch field '{field}' has {t.numel()} entries for a batch of {n} videos")
    return t


def extract_features(
    encoder: nn.Module,
    loader: Iterable[Mapping[str, Any]],
    transform: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device | str,
    amp_dtype: torch.dtype | None = None,
    progress: bool | None = None,
    desc: str | None = None,
) -> dict[str, Any]:
    """Run a frozen encoder over every clip of every video.

    Args:
        encoder: maps ``(B, C, T, H, W)`` float to ``(B, D)`` (extra trailing dims are flattened). It is run in
            eval mode under ``torch.inference_mode``; its ``training`` flag is restored afterwards.
        loader: yields dicts with ``video`` uint8 ``(B, V, T, C, H, W)`` (V clips per video from the evaluation
            sampler; a 5-d ``(B, T, C, H, W)`` batch means V = 1), ``label`` ``(B,)``, ``index`` ``(B,)`` and
            ``path`` (``B`` strings).
        transform: ``(B*V, T, C, H, W)`` on ``device`` -> float ``(B*V, C, T, H, W)`` model input
            (e.g. ``transforms.spatial.ClipEval``).
        device: where the forward pass runs.
        amp_dtype: e.g. ``torch.bfloat16`` to run under autocast; features are returned as float32 regardless.
        progress: a tqdm bar on stderr counting videos (of ``len(loader.dataset)`` when known): True always,
            False never, None (default) only when stderr is a terminal -- so a command run by hand shows it and
            tests and logs redirected to a file do not.
        desc: the bar's label (default ``"features"``), e.g. ``"train features"``.

    Videos a loader marks as unreadable (``valid`` False, as evaluation datasets do for a file that probes but
    does not decode) are left out, warned about with their count, and listed in the result's ``unreadable``
    (dicts with ``path`` and ``reason``).

    Returns:
        A feature set (see module docstring); clips of one video are consecutive rows.
    """
    device = torch.device(device)
    was_training = encoder.training
    encoder.eval()
    feats, labels, ids = [], [], []
    paths: dict[int, str] = {}
    unreadable: list[dict[str, str]] = []
    dataset = getattr(loader, "dataset", None)
    total = len(dataset) if dataset is not None and hasattr(dataset, "__len__") else None
    bar = tqdm(total=total, desc=desc or "features", unit="video", disable=None if progress is None else not progress,
               dynamic_ncols=True, mininterval=1.0)
    try:
        with torch.inference_mode():
            for batch in loader:
                bar.update(_batch_size(batch))
                batch = _valid_part(batch, unreadable)
                if batch is None:
                    continue
                video = batch["video"]
                if video.dim() == 5:
                    video = video.unsqueeze(1)
                if video.dim() != 6:
                    raise ValueError(f"expected batch['video'] as (B, V, T, C, H, W), got shape {tuple(video.shape)}")
                b, v = video.shape[:2]
                x = video.reshape(b * v, *video.shape[2:]).to(device, non_blocking=True)  # (B*V, T, C, H, W)
                x = transform(x)  # (B*V, C, T, H, W) float
                with torch.autocast(device_type=device.type, dtype=amp_dtype or torch.float32,
                                    enabled=amp_dtype is not None):
                    out = encoder(x)
                feats.append(out.reshape(b * v, -1).float().cpu())  # (B*V, D)
                label = _as_int_tensor(batch["label"], b, "label")
                index = _as_int_tensor(batch["index"], b, "index")
                # Clip j of video i is row i*V + j, so each per-video value repeats V times in a row.
                labels.append(label.repeat_interleave(v))
                ids.append(index.repeat_interleave(v))
                batch_paths = batch.get("path", [""] * b)
                if isinstance(batch_paths, str):
                    batch_paths = [batch_paths]
                for i, p in zip(index.tolist(), batch_paths):
                    paths.setdefault(int(i), str(p))
    finally:
        bar.close()
        encoder.train(was_training)
    if unreadable:
        names = ", ".join(f"{d['path']} ({d['reason']})" for d in unreadable[:5])
        more = f" and {len(unreadable) - 5} more" if len(unreadable) > 5 else ""
        warnings.warn(f"extract_features: left out {len(unreadable)} video(s) that could not be decoded: "
                      f"{names}{more}", RuntimeWarning, stacklevel=2)
    if not feats:
        if unreadable:
            raise ValueError(f"extract_features: none of the {len(unreadable)} videos could be decoded")
        raise ValueError("extract_features: the loader yielded no batches (empty dataset?)")
    video_ids = torch.cat(ids).numpy()
    return {
        "feats": torch.cat(feats).numpy().astype(np.float32, copy=False),
        "labels": torch.cat(labels).numpy(),
        "video_ids": video_ids,
        "paths": [paths[int(i)] for i in np.unique(video_ids)],
        "unreadable": unreadable,
    }


def same_clips(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two clip-level sets (features or predictions: ``video_ids``, ``labels`` per row) cover the same
    clips in the same order, so that row i of one can be compared with, or joined to, row i of the other."""
    return bool(np.array_equal(a["video_ids"], b["video_ids"]) and np.array_equal(a["labels"], b["labels"]))


def _batch_size(batch: Mapping[str, Any]) -> int:
    video = batch.get("video")
    return int(video.shape[0]) if isinstance(video, torch.Tensor) and video.dim() > 0 else 1


def _valid_part(batch: Mapping[str, Any], unreadable: list[dict[str, str]]) -> Mapping[str, Any] | None:
    """The batch without the videos marked ``valid=False`` (their path and reason go to ``unreadable``);
    None when nothing is left. Batches without a ``valid`` field are returned as they are."""
    if "valid" not in batch:
        return batch
    valid = torch.as_tensor(batch["valid"]).reshape(-1).bool().cpu()
    if bool(valid.all()):
        return batch
    paths = batch.get("path", [""] * len(valid))
    errors = batch.get("error", [""] * len(valid))
    if isinstance(paths, str):
        paths, errors = [paths], [errors]
    for i in torch.nonzero(~valid).reshape(-1).tolist():
        unreadable.append({"path": str(paths[i]), "reason": str(errors[i]) or "unreadable"})
    if not bool(valid.any()):
        return None
    keep = torch.nonzero(valid).reshape(-1)
    out: dict[str, Any] = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == len(valid):
            out[key] = value[keep]
        elif isinstance(value, (list, tuple)) and len(value) == len(valid):
            out[key] = [value[i] for i in keep.tolist()]
        else:
            out[key] = value
    return out


def file_sha1(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """SHA-1 of a file's bytes (used to key cached features by the checkpoint's content, not its name)."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        while block := f.read(chunk_size):
            h.update(block)
    return h.hexdigest()


def weights_fingerprint(checkpoint: str | Path | None, seed: int = 0, arch: str | None = None) -> str:
    """``"sha1:<hex>"`` of a checkpoint file, or for a randomly initialised encoder ``"random:<seed>"``
    (``"random:<arch>:<seed>"`` with ``arch``, a description of the architecture: width and depth change the
    network a seed draws)."""
    if checkpoint is None:
        return f"random:{arch}:{seed}" if arch is not None else f"random:{seed}"
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint '{path}' does not exist; pass checkpoint=None for random weights")
    return f"sha1:{file_sha1(path)}"


def feature_key(
    weights: str, dataset: str, root: str | Path, split: int | str, subset: str, clip_len: int,
    clips_per_video: int, size: int | tuple[int, int], **extra: Any,
) -> dict[str, Any]:
    """The fields that determine a feature set, as a :class:`FeatureCache` key.

    ``weights`` is :func:`weights_fingerprint`'s output; ``extra`` holds anything else that changes the features
    (e.g. ``backbone="r3d_18"``, ``stride=2``, ``layer="pooled"``).
    """
    return {"weights": weights, "dataset": dataset, "root": str(Path(root).resolve()), "split": split,
            "subset": subset, "clip_len": clip_len, "clips_per_video": clips_per_video,
            "size": list(size) if isinstance(size, tuple) else size, **extra}


class FeatureCache:
    """Feature sets stored as ``<dir>/<sha1 of key>.npz`` (+ a ``.json`` with the readable key).

    The key should name everything that changes the features, e.g.::

        {"weights": weights_fingerprint(ckpt), "dataset": "ucf101", "root": "...", "split": 1, "subset": "train",
         "clip_len": 16, "clips_per_video": 10, "size": 112}
    """

    _ARRAYS = ("feats", "labels", "video_ids")

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)

    @staticmethod
    def key(key_parts: Mapping[str, Any]) -> str:
        """SHA-1 of the key's canonical JSON (sorted keys, so dict order does not matter)."""
        text = json.dumps(dict(key_parts), sort_keys=True, default=str)
        return hashlib.sha1(text.encode("utf-8")).hexdigest()

    def path(self, key_parts: Mapping[str, Any]) -> Path:
        return self.dir / f"{self.key(key_parts)}.npz"

    def load_or_compute(self, key_parts: Mapping[str, Any], fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Return the cached feature set for ``key_parts``, or call ``fn()`` once, store its result and return it.

        A corrupt or mismatching cache file is recomputed (with a warning) rather than trusted.
        """
        path = self.path(key_parts)
        key_json = json.dumps(dict(key_parts), sort_keys=True, default=str)
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    if str(z["key"]) != key_json:
                        raise ValueError("stored key differs from the requested key")
                    out: dict[str, Any] = {name: z[name] for name in self._ARRAYS}
                    out["paths"] = [str(p) for p in z["paths"]]
                return out
            except Exception as err:  # noqa: BLE001 -- any unreadable cache file is just recomputed
                warnings.warn(f"feature cache file '{path}' is unreadable ({err}); recomputing", stacklevel=2)
        result = fn()
        missing = [name for name in (*self._ARRAYS, "paths") if name not in result]
        if missing:
            raise ValueError(f"FeatureCache: the compute function's result lacks {missing}")
        self.dir.mkdir(parents=True, exist_ok=True)
        arrays = {name: np.asarray(result[name]) for name in self._ARRAYS}
        # Write to a temporary file in the same folder and rename: a crash never leaves a half-written .npz.
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".tmp-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, key=np.array(key_json), paths=np.array(list(result["paths"]), dtype=str), **arrays)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        atomic_write_text(path.with_suffix(".json"), key_json + "\n")
        return result
