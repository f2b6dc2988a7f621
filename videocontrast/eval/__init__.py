"""Evaluation of learned video features: linear probe, kNN, retrieval (R@k), fine-tuning and HTML reports.

Every evaluation returns a dict of metrics (fractions in [0, 1]) plus a ``protocol`` dict saying how they were
obtained.
"""

from videocontrast.eval.features import FeatureCache, extract_features, feature_key, file_sha1, weights_fingerprint
from videocontrast.eval.finetune import finetune
from videocontrast.eval.knn import knn_classify
from videocontrast.eval.linear import linear_probe
from videocontrast.eval.metrics import (
    confusion_matrix_png,
    per_class_accuracy,
    topk_accuracy,
    video_labels,
    video_level,
)
from videocontrast.eval.report import html_page, image_html, retrieval_report, table_html
from videocontrast.eval.retrieval import nearest_neighbours, recall_at_k, retrieve, video_embeddings

__all__ = [
    "FeatureCache",
    "confusion_matrix_png",
    "extract_features",
    "feature_key",
    "file_sha1",
    "finetune",
    "html_page",
    "image_html",
    "knn_classify",
    "linear_probe",
    "nearest_neighbours",
    "per_class_accuracy",
    "recall_at_k",
    "retrieval_report",
    "retrieve",
    "table_html",
    "topk_accuracy",
    "video_embeddings",
    "video_labels",
    "video_level",
    "weights_fingerprint",
]
