# The public API: type checkers read it, and lazy_loader (in __init__.py) imports each name from its module on
# first use.
from .bootstrap import bootstrap_intervals as bootstrap_intervals
from .compare import PairedTest as PairedTest, delong_test as delong_test, mcnemar_test as mcnemar_test
from .calibration import calibrated as calibrated, calibration_record as calibration_record, fit_temperature as fit_temperature
from .config import CalibrationConfig as CalibrationConfig, EvaluationConfig as EvaluationConfig, GuardConfig as GuardConfig, ThresholdConfig as ThresholdConfig
from .console import print_evaluation as print_evaluation
from .efficiency import Efficiency as Efficiency, count_macs as count_macs, measure_efficiency as measure_efficiency, time_inference as time_inference
from .evaluate import Evaluation as Evaluation, evaluate_run as evaluate_run
from .features import backbone_identity as backbone_identity, cached_features as cached_features, probe_logits as probe_logits, run_backbone_identity as run_backbone_identity, weights_identity as weights_identity
from .metrics import LOWER_IS_BETTER as LOWER_IS_BETTER, SCALARS as SCALARS, brier_score as brier_score, classification_metrics as classification_metrics, decisions as decisions, expected_calibration_error as expected_calibration_error, ranking_scores as ranking_scores
from .ood import FeatureGuard as FeatureGuard, MahalanobisScore as MahalanobisScore, fit_guard as fit_guard, load_guard as load_guard
from .predict import predict_logits as predict_logits, predict_probabilities as predict_probabilities, predict_run_logits as predict_run_logits, predict_with_features as predict_with_features
from .threshold import choose_threshold as choose_threshold

__all__ = ["CalibrationConfig", "Efficiency", "Evaluation", "EvaluationConfig", "FeatureGuard", "GuardConfig", "LOWER_IS_BETTER", "MahalanobisScore", "PairedTest", "SCALARS", "ThresholdConfig", "backbone_identity", "bootstrap_intervals", "brier_score", "cached_features", "calibrated", "calibration_record", "choose_threshold", "classification_metrics", "count_macs", "decisions", "delong_test", "evaluate_run", "expected_calibration_error", "fit_guard", "fit_temperature", "load_guard", "mcnemar_test", "measure_efficiency", "predict_logits", "predict_probabilities", "predict_run_logits", "predict_with_features", "print_evaluation", "probe_logits", "ranking_scores", "run_backbone_identity", "time_inference", "weights_identity"]
