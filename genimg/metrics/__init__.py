"""Evaluation: sample quality in feature space (FID, KID, precision/recall, density/coverage,
IS), likelihood (ELBO, IWAE) and reconstruction scores. Feature extractors live in
``genimg.metrics.extractors``; the command line is ``python -m genimg.evaluate``."""

from genimg.metrics.feature_stats import FeatureStats
from genimg.metrics.fid import fid_from_features, frechet_distance
from genimg.metrics.inception_score import inception_score
from genimg.metrics.kid import kernel_inception_distance
from genimg.metrics.prdc import precision_recall_density_coverage
from genimg.metrics.refstats import (
    REQUIRED_KEY_PARTS,
    array_tree_checksum,
    cached_reference_stats,
    reference_key,
)

__all__ = [
    "REQUIRED_KEY_PARTS",
    "FeatureStats",
    "array_tree_checksum",
    "cached_reference_stats",
    "fid_from_features",
    "frechet_distance",
    "inception_score",
    "kernel_inception_distance",
    "precision_recall_density_coverage",
    "reference_key",
]
