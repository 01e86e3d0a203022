"""The float32 comparison helper: scaled to the reference, strict enough to catch a bug."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dexar_plugins.testing.tolerance import (
    FLOAT32_EPS,
    assert_float32_close,
    float32_tolerance,
)


def test_the_tolerance_is_ulps_of_the_largest_entry_times_the_root_of_the_sum_length():
    expected = np.array([-4.0, 1e-9, 2.0], np.float32)
    assert float32_tolerance(expected, terms=16, ulps=8) == pytest.approx(8 * FLOAT32_EPS * 4 * 4)
    assert float32_tolerance(np.zeros(3), terms=100) == 0.0
    with pytest.raises(ValueError, match="at least 1"):
        float32_tolerance(expected, terms=0)


def test_small_entries_may_differ_by_the_rounding_of_the_large_ones():
    # the failure seen on another CPU: entries of 3e-5 beside entries of 1, off by 1.6e-5
    # of their own size, which an elementwise rtol of 1e-6 rejects
    expected = np.array([1.0, 3e-5, -0.5], np.float32)
    actual = expected * np.array([1.0, 1 + 1.6e-5, 1.0], np.float32)
    assert_float32_close(actual, expected, terms=32)
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(actual, expected, rtol=1e-6)


def test_an_error_of_a_real_bug_fails():
    expected = np.linspace(-1, 1, 64, dtype=np.float32)
    actual = expected.copy()
    actual[5] += 1e-4  # 1e-4 of the largest entry: ten times the engine's stated bound
    with pytest.raises(AssertionError, match=r"at \(5,\)"):
        assert_float32_close(actual, expected, terms=128)


def test_nan_and_shape_mismatches_fail_and_tensors_are_accepted():
    expected = np.ones((2, 3), np.float32)
    with pytest.raises(AssertionError):
        assert_float32_close(np.full((2, 3), np.nan), expected)
    with pytest.raises(AssertionError, match="shape"):
        assert_float32_close(np.ones(6), expected)
    assert_float32_close(torch.ones(2, 3, requires_grad=True), expected)
