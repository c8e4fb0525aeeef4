"""Issue 14: honest baselines for imbalanced attributes (majority class of the training split,
balanced accuracy, macro-F1) and binned attributes whose edges are fit on the training split."""

from __future__ import annotations

import numpy as np
import pytest

from audiosae.attribute_library import quantile_edges
from audiosae.attribute_spec import AttributeSpec
from audiosae.probe_fit import confusion_metrics


def test_majority_baseline_and_macro_f1_of_a_probe_that_always_says_the_majority():
    # 98 frames of class 0, 2 of class 1; the probe answers 0 everywhere
    cm = [[98, 0], [2, 0]]
    m = confusion_metrics(cm, train_counts=[900, 100])
    assert m["accuracy"] == pytest.approx(0.98)
    assert m["balanced_accuracy"] == pytest.approx(0.5)
    assert m["macro_f1"] == pytest.approx((2 * 98 / (98 + 100) + 0.0) / 2)
    # the baseline is the training split's majority class answered everywhere: the same numbers
    assert m["majority_accuracy"] == pytest.approx(m["accuracy"])
    assert m["majority_balanced_accuracy"] == pytest.approx(0.5)
    assert m["majority_macro_f1"] == pytest.approx(m["macro_f1"])


def test_a_probe_that_finds_the_rare_class_beats_the_majority_on_balanced_accuracy_not_accuracy():
    cm = [[94, 4], [0, 2]]      # finds both rare frames, 4 false alarms
    m = confusion_metrics(cm, train_counts=[900, 100])
    assert m["accuracy"] < m["majority_accuracy"]               # accuracy says "worse than the majority"
    assert m["balanced_accuracy"] > m["majority_balanced_accuracy"] + 0.4
    assert m["macro_f1"] > m["majority_macro_f1"]


def test_majority_baseline_uses_the_training_majority_not_the_held_out_one():
    # held out: class 1 dominates; training majority was class 0 -> the baseline is poor
    m = confusion_metrics([[10, 0], [0, 90]], train_counts=[70, 30])
    assert m["chance"] == pytest.approx(0.9)                    # the held-out frames' own majority (oracle)
    assert m["majority_accuracy"] == pytest.approx(0.1)


def test_quantile_edges_make_equal_frequency_bins_and_merge_ties():
    rng = np.random.default_rng(0)
    v = rng.normal(-6.0, 1.0, 5000)          # tonal music: log10 flatness far below the fixed -5..0 range
    edges = quantile_edges(v, 10)
    counts = np.histogram(np.clip(v, edges[0], edges[-1]), bins=edges)[0]
    assert len(edges) == 11 and counts.min() >= 0.09 * v.size and counts.max() <= 0.11 * v.size
    ties = np.concatenate([np.zeros(4000), rng.uniform(0, 1, 1000)])
    e2 = quantile_edges(ties, 8)
    assert e2[0] == 0.0 and len(e2) < 9              # 80 % zeros: their quantiles merge into one edge
    assert quantile_edges(np.ones(500), 8) is None   # nothing to split
    assert quantile_edges(v[:10], 8) is None         # too few frames


def test_flatness_bins_fit_on_training_frames_replace_the_fixed_range():
    spec = AttributeSpec().with_attributes(["flatness", "onset_strength"])
    assert spec.class_names("flatness")[0] == "-5..-4.5"          # unfit: the fixed range
    rng = np.random.default_rng(1)
    flat = rng.normal(-6.5, 0.8, 4000)
    flat[:100] = np.nan                                            # silent frames
    fit = spec.fit_extra({"flatness": flat, "onset_strength": rng.exponential(0.3, 4000)})
    names = fit.class_names("flatness")
    assert len(names) == 10 and names != spec.class_names("flatness")
    assert fit.extra["flatness"]["edges"][0] < -8.0 and "3900 training frames" in fit.extra["flatness"]["fit_source"]
    # class values follow the fit edges (within-one-bin / error in the attribute's unit)
    e = fit.extra["flatness"]["edges"]
    assert fit.class_value("flatness", 0) == pytest.approx(0.5 * (e[0] + e[1]))
    # the unfit spec put every one of these frames into its lowest bin; the fit one spreads them
    from audiosae.attribute_registry import get_attribute
    attr = get_attribute("flatness")
    unfit = attr.classify(spec.extra["flatness"], {"flatness": flat}, spec)
    fitted = attr.classify(fit.extra["flatness"], {"flatness": flat}, fit)
    assert np.mean(unfit[unfit >= 0] == 0) > 0.9
    assert np.bincount(fitted[fitted >= 0]).max() < 0.15 * (fitted >= 0).sum()
