"""Report lines that said nothing of a gap (a new-user trial, session 16).

A bulk fit of 11 materials in KFold(5) printed ``per-fold R²: … over 4 folds`` beside
``cv_n_splits 5`` and ``coverage on held-out groups —``, each without a reason.
"""

from __future__ import annotations

import math

from matstore.models.report import coverage_text, per_fold_r2_text


def test_per_fold_line_says_how_many_folds_have_no_r2_and_why() -> None:
    report = {"folds": [{"nested_r2": 0.5}, {"nested_r2": None}, {"nested_r2": 0.7}, {"nested_r2": 0.6}]}
    assert per_fold_r2_text(report).endswith(
        "over 3 folds (metrics cv_r2_mean): each fold's held-out rows against their own mean, so a fold holding out "
        "one material scores only its spread within that material; 1 of 4 folds have none (a failed fit, or "
        "held-out rows too few or too alike for an R² of their own)")
    assert per_fold_r2_text(report).startswith("per-fold R²: mean 0.6, from 0.5 to 0.7")
    assert "have none" not in per_fold_r2_text({"folds": [{"nested_r2": 0.5}]})


def test_coverage_without_a_calibrated_fold_says_why() -> None:
    interval = {"held_out_coverage": math.nan, "half_width": 173.0, "level": 0.9}
    assert coverage_text(interval) == "— (no fold leaves enough rows outside it for a 90% interval of its own)"
    assert coverage_text({"held_out_coverage": None, "error": "10 rows are too few", "level": 0.9}) == "—"
    assert coverage_text({"held_out_coverage": 0.875, "level": 0.9}) == "88%"


def test_the_dashboard_shows_a_positive_targets_interval_from_zero_as_predict_does() -> None:
    from matstore.dashboard.predict_form import positive_lower_bound

    assert positive_lower_bound("c44", -30.59) == 0.0  # GPa: C44 > 0 in a stable crystal
    assert positive_lower_bound("c44", 12.5) == 12.5
    assert positive_lower_bound("surface_stress", -1.0) == -1.0  # τ takes either sign
