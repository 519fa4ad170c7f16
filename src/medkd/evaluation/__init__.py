"""Evaluation: metrics from predicted probabilities, validation-chosen thresholds, bootstrap intervals.

Public API: evaluate_run, Evaluation, classification_metrics, ranking_scores, choose_threshold, predict_logits,
predict_probabilities, bootstrap_intervals (each draw scored by resampled_scalars), delong_test, mcnemar_test,
measure_efficiency, time_inference, count_macs, temperature scaling (fit_temperature, calibrated, run_temperature),
expected_calibration_error, EvaluationConfig, ThresholdConfig, CalibrationConfig, SCALARS; the out-of-distribution
guard (GuardConfig, fit_guard, load_guard, FeatureGuard, MahalanobisScore); a frozen backbone's cached features
(cached_features, backbone_identity, run_backbone_identity, probe_logits).
"""

import lazy_loader

# Submodules load on first use: `import medkd.evaluation` costs nothing until a name is used
# (the public API and its types are in __init__.pyi).
__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
