"""Evaluation: metrics from predicted probabilities, validation-chosen thresholds, bootstrap intervals.

Public API: evaluate_run, Evaluation, classification_metrics, ranking_scores, choose_threshold, predict_logits,
predict_probabilities, bootstrap_intervals, delong_test, mcnemar_test, measure_efficiency, time_inference, count_macs,
temperature
scaling (fit_temperature, calibrated, run_temperature), expected_calibration_error,
EvaluationConfig, ThresholdConfig, CalibrationConfig, SCALARS; the out-of-distribution guard (GuardConfig, fit_guard,
load_guard, FeatureGuard, MahalanobisScore); a frozen backbone's cached features (cached_features, backbone_identity,
run_backbone_identity, probe_logits).
"""

from medkd.evaluation.bootstrap import bootstrap_intervals
from medkd.evaluation.compare import PairedTest, delong_test, mcnemar_test
from medkd.evaluation.calibration import calibrated, calibration_record, fit_temperature
from medkd.evaluation.config import CalibrationConfig, EvaluationConfig, GuardConfig, ThresholdConfig
from medkd.evaluation.console import print_evaluation
from medkd.evaluation.efficiency import Efficiency, count_macs, measure_efficiency, time_inference
from medkd.evaluation.evaluate import Evaluation, evaluate_run
from medkd.evaluation.features import (backbone_identity, cached_features, probe_logits, run_backbone_identity,
                                      weights_identity)
from medkd.evaluation.metrics import (LOWER_IS_BETTER, SCALARS, brier_score, classification_metrics, decisions, expected_calibration_error,
                                     ranking_scores)
from medkd.evaluation.ood import FeatureGuard, MahalanobisScore, fit_guard, load_guard
from medkd.evaluation.predict import (predict_logits, predict_probabilities, predict_run_logits, predict_with_features,
                                     run_temperature)
from medkd.evaluation.threshold import choose_threshold

__all__ = ["LOWER_IS_BETTER", "SCALARS", "brier_score", "CalibrationConfig", "Efficiency", "Evaluation", "EvaluationConfig", "FeatureGuard", "GuardConfig", "MahalanobisScore", "PairedTest", "ThresholdConfig",
           "backbone_identity", "bootstrap_intervals", "cached_features", "probe_logits", "run_backbone_identity", "weights_identity", "calibrated", "calibration_record", "choose_threshold", "classification_metrics", "count_macs", "decisions", "delong_test",
           "evaluate_run", "expected_calibration_error", "fit_guard", "fit_temperature", "load_guard", "mcnemar_test", "measure_efficiency",
           "predict_logits", "predict_run_logits", "predict_with_features", "run_temperature",
           "predict_probabilities", "print_evaluation", "ranking_scores", "time_inference"]
