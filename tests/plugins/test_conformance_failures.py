"""The conformance suite fails, naming the check, on deliberately broken adapters."""

from __future__ import annotations

import textwrap

import pytest
from broken_adapters import (
    CroppedGridAdapter,
    LeakyAdapter,
    Renamed,
    WrongGradientsAdapter,
    subject_for,
)

from dexar_core.values import AdapterSpec
from dexar_llava.adapter import LlavaAdapter
from dexar_plugins.testing import conformance
from dexar_plugins.testing.conformance import (
    CHECKS,
    AdapterConformance,
    ConformanceFailure,
    run_check,
    run_checks,
)


def failure_of(check, subject):
    with pytest.raises(ConformanceFailure) as raised:
        run_check(check, subject)
    assert raised.value.check == check
    assert str(raised.value).startswith(f"conformance check {check!r} failed:")
    return str(raised.value)


def test_a_hook_left_behind_fails_the_cleanup_check():
    message = failure_of("capture_leaves_nothing_behind", subject_for(LeakyAdapter))
    assert "after a capture" in message and "'<model>'" in message


def test_a_grid_missing_visual_positions_fails_the_coverage_check():
    message = failure_of("grids_cover_visual_positions", subject_for(CroppedGridAdapter))
    assert "no grid cell names" in message


def test_wrong_gradients_fail_the_reference_check():
    message = failure_of("gradients_equal_reference", subject_for(WrongGradientsAdapter))
    assert "relative error" in message and "naive reference" in message


def _no_model_types():
    spec = AdapterSpec(name="llava", model_types=("llava",), factory=LlavaAdapter)
    object.__setattr__(spec, "model_types", ())  # what a hand-edited spec could hold
    return spec


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (AdapterSpec(name="llava", model_types=("llava",), factory=Renamed), "must equal"),
        (AdapterSpec(name="llava", model_types=("llava",), factory=dict), "must return a"),
        (_no_model_types(), "serves no model"),
    ],
    ids=["adapter-name-differs", "factory-returns-no-adapter", "serves-no-model"],
)
def test_an_invalid_spec_fails_the_spec_check(spec, expected):
    message = failure_of("spec_is_valid", subject_for(LlavaAdapter, spec))
    assert expected in message


def test_an_adapter_no_entry_point_installs_fails_the_entry_point_check():
    spec = AdapterSpec(name="nowhere", model_types=("llava",), factory=LlavaAdapter)
    message = failure_of("entry_point_loads", subject_for(LlavaAdapter, spec))
    assert "no installed plugin registers an adapter named 'nowhere'" in message


def test_run_checks_reports_expected_failures_and_stale_ones():
    subject = subject_for(CroppedGridAdapter)
    results = run_checks(
        subject,
        expected_failures={
            "grids_cover_visual_positions": "grids drop a row",
            "spec_is_valid": "claimed, but the spec is fine",
        },
        only=["spec_is_valid", "grids_cover_visual_positions"],
    )
    by_check = {result.check: result for result in results}
    assert by_check["grids_cover_visual_positions"].status == "xfail"
    assert by_check["grids_cover_visual_positions"].ok
    assert by_check["spec_is_valid"].status == "xpass"
    assert not by_check["spec_is_valid"].ok


def test_every_check_is_a_test_method_of_the_class():
    methods = {name for name in vars(AdapterConformance) if name.startswith("test_")}
    assert methods == {f"test_{name}" for name in CHECKS}
    assert conformance.__doc__ is not None
    assert all(f"``{name}``" in conformance.__doc__ for name in CHECKS)


def test_the_test_class_names_the_failed_check_and_honours_expected_failures(tmp_path):
    (tmp_path / "test_broken_adapter.py").write_text(
        textwrap.dedent(
            """
            from broken_adapters import Renamed, subject_for
            from dexar_plugins.testing.conformance import AdapterConformance


            class TestRenamedAdapter(AdapterConformance):
                adapter_name = "llava"
                expected_failures = {"entry_point_loads": "the test adapter is not installed"}

                def subject(self):
                    return subject_for(Renamed)
            """
        )
    )
    reports = []

    class Collect:
        def pytest_runtest_logreport(self, report):
            if report.when == "call":
                reports.append(report)

    code = pytest.main(
        [
            str(tmp_path),
            "-q",
            "-p",
            "no:cacheprovider",
            "-k",
            "spec_is_valid or entry_point_loads",
        ],
        plugins=[Collect()],
    )
    outcomes = {report.nodeid.rsplit("::", 1)[1]: report for report in reports}
    assert code == 1
    assert outcomes["test_spec_is_valid"].failed
    assert "conformance check 'spec_is_valid' failed" in outcomes["test_spec_is_valid"].longreprtext
    assert outcomes["test_entry_point_loads"].skipped  # an xfail is reported as skipped
    assert "not installed" in outcomes["test_entry_point_loads"].wasxfail


def test_the_pytest_plugin_marks_the_conformance_tests_only():
    from dexar_plugins.testing import pytest_plugin

    class Item:
        def __init__(self, cls):
            self.cls, self.markers = cls, []

        def add_marker(self, marker):
            self.markers.append(marker)

    class TestSomeAdapter(AdapterConformance):
        adapter_name = "some"

    items = [Item(TestSomeAdapter), Item(None), Item(int)]
    pytest_plugin.pytest_collection_modifyitems(items)
    assert [item.markers for item in items] == [[pytest_plugin.MARKER], [], []]
