# The public API: type checkers read it, and lazy_loader (in __init__.py) imports each name from its module on
# first use.
from .bootstrap import bootstrap_intervals as bootstrap_intervals
from .bootstrap import resampled_scalars as resampled_scalars
from .calibration import calibrated as calibrated
from .calibration import calibration_record as calibration_record
from .calibration import fit_temperature as fit_temperature
from .compare import PairedTest as PairedTest
from .compare import delong_test as delong_test
from .compare import mcnemar_test as mcnemar_test
from .config import CalibrationConfig as CalibrationConfig
from .config import EvaluationConfig as EvaluationConfig
from .config import GuardConfig as GuardConfig
from .config import ThresholdConfig as ThresholdConfig
from .console import print_evaluation as print_evaluation
from .efficiency import Efficiency as Efficiency
from .efficiency import count_macs as count_macs
from .efficiency import measure_efficiency as measure_efficiency
from .efficiency import time_inference as time_inference
from .evaluate import Evaluation as Evaluation
from .evaluate import evaluate_run as evaluate_run
from .features import backbone_identity as backbone_identity
from .features import cached_features as cached_features
from .features import probe_logits as probe_logits
from .features import run_backbone_identity as run_backbone_identity
from .features import weights_identity as weights_identity
from .metrics import LOWER_IS_BETTER as LOWER_IS_BETTER
from .metrics import SCALARS as SCALARS
from .metrics import brier_score as brier_score
from .metrics import classification_metrics as classification_metrics
from .metrics import decisions as decisions
from .metrics import expected_calibration_error as expected_calibration_error
from .metrics import ranking_scores as ranking_scores
from .ood import FeatureGuard as FeatureGuard
from .ood import MahalanobisScore as MahalanobisScore
from .ood import fit_guard as fit_guard
from .ood import load_guard as load_guard
from .predict import predict_logits as predict_logits
from .predict import predict_probabilities as predict_probabilities
from .predict import predict_run_logits as predict_run_logits
from .predict import predict_with_features as predict_with_features
from .threshold import choose_threshold as choose_threshold

__all__ = [
    "CalibrationConfig",
    "Efficiency",
    "Evaluation",
    "EvaluationConfig",
    "FeatureGuard",
    "GuardConfig",
    "LOWER_IS_BETTER",
    "MahalanobisScore",
    "PairedTest",
    "SCALARS",
    "ThresholdConfig",
    "backbone_identity",
    "bootstrap_intervals",
    "brier_score",
    "cached_features",
    "calibrated",
    "calibration_record",
    "choose_threshold",
    "classification_metrics",
    "count_macs",
    "decisions",
    "delong_test",
    "evaluate_run",
    "expected_calibration_error",
    "fit_guard",
    "fit_temperature",
    "load_guard",
    "mcnemar_test",
    "measure_efficiency",
    "predict_logits",
    "predict_probabilities",
    "predict_run_logits",
    "predict_with_features",
    "print_evaluation",
    "probe_logits",
    "ranking_scores",
    "resampled_scalars",
    "run_backbone_identity",
    "time_inference",
    "weights_identity",
]
