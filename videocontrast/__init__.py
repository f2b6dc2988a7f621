"""videocontrast: contrastive self-supervised learning of video representations.

videoSimCLR and videoMoCo v1/v2 on 3D CNNs, evaluated by linear probe, fine-tuning, kNN and retrieval.
"""

__version__ = "0.1.0"
