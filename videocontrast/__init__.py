"""videocontrast: contrastive self-supervised learning of video representations.

videoSimCLR and videoMoCo v1/v2 on 3D CNNs, evaluated by linear probe, fine-tuning, kNN and retrieval.

    import videocontrast as vc
    encoder = vc.load_encoder("runs/demo/pretrain/checkpoints/last.pt")
    emb = vc.embed_videos(encoder, ["a.mp4", "b.avi"])
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy (api imports torch), so `videocontrast --help` and `import videocontrast.config` do not pay for torch's
    # import: tests/test_imports.py checks that neither loads it.
    if name in ("load_encoder", "embed_videos"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'videocontrast' has no attribute {name!r}")


__all__ = ["__version__", "embed_videos", "load_encoder"]
