"""The adapter conformance suite: the checks every dexar adapter must pass.

An adapter author gives a :class:`ConformanceCase` (a tiny model of the architecture the
adapter serves, loaded as :func:`dexar_core.api.load` would return it, an image and a
prompt) and runs the checks in one of three ways:

* in their tests, by subclassing :class:`AdapterConformance` (one test per check, with
  ``expected_failures = {check_name: reason}`` for the checks known to fail);
* from the command line, ``dexar plugins --check NAME``, which builds the case from the
  ``conformance`` factory of the installed adapter's :class:`AdapterSpec`;
* from Python, :func:`run_checks` on a :class:`ConformanceSubject`.

Each check raises :class:`ConformanceFailure`, whose message starts with the check's
name, and leaves the model as it found it. The checks (see :data:`CHECKS`):

``spec_is_valid``, ``entry_point_loads``, ``registry_resolves_model``,
``capture_is_transparent``, ``capture_leaves_nothing_behind``,
``attention_rows_are_distributions``, ``grids_cover_visual_positions``,
``gradients_equal_reference``, ``heatmap_invariants``.

This module needs torch and transformers; pytest is imported only by the test methods.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar

import numpy as np

from dexar_core.errors import DexarError
from dexar_core.values import AdapterSpec
from dexar_plugins.loading import PluginSettings
from dexar_plugins.manager import Catalog, build_catalog
from dexar_plugins.testing.checks import OUTPUT_TOLERANCE, ROW_SUM_TOLERANCE
from dexar_plugins.testing.explanation_checks import (
    GRADIENT_TOLERANCE,
    image_dependent_positions,
)
from dexar_plugins.testing.subject import (
    CHECKS,
    Check,
    CheckResult,
    ConformanceCase,
    ConformanceFailure,
    ConformanceSubject,
)

__all__ = [
    "CHECKS",
    "GRADIENT_TOLERANCE",
    "OUTPUT_TOLERANCE",
    "ROW_SUM_TOLERANCE",
    "AdapterConformance",
    "Check",
    "CheckResult",
    "ConformanceCase",
    "ConformanceFailure",
    "ConformanceSubject",
    "image_dependent_positions",
    "installed_subject",
    "run_check",
    "run_checks",
]


# --- running the suite ---------------------------------------------------------------------


def run_check(name: str, subject: ConformanceSubject) -> None:
    """Run one check by name; raise :class:`ConformanceFailure` when it fails.

    Raises:
        KeyError: for a name that is no check (the message lists them).
    """
    if name not in CHECKS:
        raise KeyError(f"no conformance check named {name!r}; the checks are {list(CHECKS)}.")
    CHECKS[name].run(subject)


def run_checks(
    subject: ConformanceSubject,
    *,
    expected_failures: Mapping[str, str] | None = None,
    only: Sequence[str] | None = None,
) -> list[CheckResult]:
    """Run the checks in order and return one result each; never raises for a failure.

    Args:
        subject: the adapter under test.
        expected_failures: checks known to fail, with the reason (merged over the
            case's own ``expected_failures`` when the case builds).
        only: run just these checks (default: all of :data:`CHECKS`).
    """
    known = dict(expected_failures or {})
    # When the case fails to build, each check that needs it reports why.
    with contextlib.suppress(Exception):
        known = {**subject.case.expected_failures, **known}
    results = []
    for check in CHECKS.values():
        if only is not None and check.name not in only:
            continue
        try:
            check.run(subject)
        except ConformanceFailure as failure:
            if check.name in known:
                results.append(
                    CheckResult(check=check.name, status="xfail", message=known[check.name])
                )
            else:
                results.append(CheckResult(check=check.name, status="failed", message=str(failure)))
            continue
        if check.name in known:
            message = (
                f"expected to fail ({known[check.name]}) but passed; remove it from "
                "expected_failures"
            )
            results.append(CheckResult(check=check.name, status="xpass", message=message))
        else:
            results.append(CheckResult(check=check.name, status="passed"))
    return results


def installed_subject(adapter_name: str, catalog: Catalog | None = None) -> ConformanceSubject:
    """The subject for an installed adapter, its case built by its spec's ``conformance``.

    Raises:
        InputError: no installed adapter has this name.
        DexarError: the adapter's spec gives no ``conformance`` factory.
    """
    catalog = build_catalog(PluginSettings()) if catalog is None else catalog
    spec = catalog.adapter(adapter_name)
    if spec.conformance is None:
        raise DexarError(
            f"adapter {adapter_name!r} does not say how to build a tiny model to check: its "
            "AdapterSpec has no conformance factory. Give AdapterSpec(conformance=...) a "
            "zero-argument function returning a ConformanceCase (see docs/adapters.md)."
        )
    return ConformanceSubject(spec, spec.conformance, catalog)


class AdapterConformance:
    """The suite as a test class: subclass it (named ``Test...``) in your adapter's tests.

    Set ``adapter_name``; override :meth:`build_case` when the adapter's spec has no
    ``conformance`` factory or the tests want another case; list known failures in
    ``expected_failures`` (``{check_name: reason}``), which become expected failures
    (strict: a listed check that passes fails the test). Each check is one test method,
    ``test_<check name>``; the case is built once per class.

    Example:
        >>> class TestMyAdapter(AdapterConformance):
        ...     adapter_name = "myvlm"
        ...     expected_failures = {"heatmap_invariants": "maps are not normalised yet"}
    """

    adapter_name: ClassVar[str]
    expected_failures: ClassVar[Mapping[str, str]] = {}
    _conformance_catalog: ClassVar[Catalog]
    _conformance_subject: ClassVar[ConformanceSubject]

    def adapter_spec(self) -> AdapterSpec:
        """The spec under test: by default the installed adapter named ``adapter_name``."""
        return self.catalog().adapter(self.adapter_name)

    def catalog(self) -> Catalog:
        """The installed plugins (built once per class)."""
        cls = type(self)
        if "_conformance_catalog" not in cls.__dict__:
            # Cached on the subclass: pytest makes one instance per test method.
            cls._conformance_catalog = build_catalog(PluginSettings())
        return cls.__dict__["_conformance_catalog"]

    def build_case(self) -> ConformanceCase:
        """The case: by default what the spec's ``conformance`` factory builds."""
        spec = self.adapter_spec()
        if spec.conformance is None:
            raise DexarError(
                f"adapter {spec.name!r} has no conformance factory; override build_case() "
                "in the test class or give AdapterSpec(conformance=...)."
            )
        return spec.conformance()

    def image_dependent_positions(self, subject: ConformanceSubject) -> np.ndarray:
        """Key positions where the image enters (see :func:`image_dependent_positions`)."""
        return image_dependent_positions(subject)

    def subject(self) -> ConformanceSubject:
        """The subject under test, built once per class."""
        cls = type(self)
        if "_conformance_subject" not in cls.__dict__:
            subject = ConformanceSubject(
                self.adapter_spec(),
                self.build_case,
                self.catalog(),
                dependent_positions=self.image_dependent_positions,
            )
            cls._conformance_subject = subject
        return cls.__dict__["_conformance_subject"]

    def run_conformance_check(self, name: str) -> None:
        """Run one check as a test, honouring ``expected_failures``."""
        import pytest

        reason = self.expected_failures.get(name)
        try:
            run_check(name, self.subject())
        except ConformanceFailure as failure:
            if reason is not None:
                pytest.xfail(f"{reason} ({failure})")
            raise
        if reason is not None:
            pytest.fail(
                f"conformance check {name!r} is listed in expected_failures ({reason}) but "
                "passed; remove it from expected_failures.",
                pytrace=False,
            )


def _check_test(check: Check) -> Callable[[AdapterConformance], None]:
    """The test method of one check, ``test_<check name>``, documented by its summary."""

    def test(self: AdapterConformance) -> None:
        self.run_conformance_check(check.name)

    test.__name__ = test.__qualname__ = f"test_{check.name}"
    test.__doc__ = f"Conformance check ``{check.name}``: {check.summary}."
    return test


# One test method per check, made from CHECKS, so a new check is a new test.
for _check in CHECKS.values():
    setattr(AdapterConformance, f"test_{_check.name}", _check_test(_check))
