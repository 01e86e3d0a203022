"""The conformance kit's records: the case an author gives, the subject, the results.

See :mod:`dexar_plugins.testing.conformance` for the suite itself.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs
import numpy as np

from dexar_core.errors import DexarError
from dexar_core.interfaces import GenerativeAdapter
from dexar_core.records import LoadedModel, PreparedPrompt, TeacherForcedPass
from dexar_core.values import AdapterSpec, VisualLayout
from dexar_plugins.manager import Catalog, PluginSettings, build_catalog


class ConformanceFailure(AssertionError):
    """A conformance check failed; the message starts with the check's name.

    Attributes:
        check: the name of the check that failed.
    """

    def __init__(self, check: str, message: str) -> None:
        super().__init__(f"conformance check {check!r} failed: {message}")
        self.check = check


def _image_tuple(value: Any) -> tuple[Any, ...]:
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


def _optional_layers(value: Iterable[int] | None) -> tuple[int, ...] | None:
    return None if value is None else tuple(int(index) for index in value)


@attrs.frozen(kw_only=True)
class ConformanceCase:
    """What the checks run: a tiny model the adapter serves, images and a prompt.

    Attributes:
        loaded: the model, its processor and a fresh adapter instance, as
            :func:`dexar_core.api.load` returns them (``LoadedModel.adapter`` is the
            adapter under test).
        images: one image or several (PIL images).
        prompt: the prompt, without template (the adapter applies it).
        answer: the answer explained (teacher-forced); None generates one, which a
            random tiny model may leave empty, so tiny cases give an answer.
        max_new_tokens: the longest generated answer when ``answer`` is None.
        layers: decoder layers to explain; None explains all of them.
        expected_failures: checks known to fail for this adapter, with the reason;
            ``dexar plugins --check`` reports them as ``xfail``.
    """

    loaded: LoadedModel
    images: tuple[Any, ...] = attrs.field(converter=_image_tuple)
    prompt: str
    answer: str | None = None
    max_new_tokens: int = 3
    layers: tuple[int, ...] | None = attrs.field(default=None, converter=_optional_layers)
    expected_failures: Mapping[str, str] = attrs.field(factory=dict, converter=dict)

    @classmethod
    def from_tiny(
        cls, model: Any, processor: Any, adapter: Any, model_id: str, *, size: tuple[int, int]
    ) -> ConformanceCase:
        """The usual case of a tiny model: one noise image of ``size`` (width, height), a
        question about the shapes benchmark and its answer, teacher-forced."""
        from PIL import Image

        width, height = size
        pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
        return cls(
            loaded=LoadedModel(
                model=model, processor=processor, adapter=adapter, model_id=model_id
            ),
            images=Image.fromarray(pixels),
            prompt="what color is the circle?",
            answer="a red circle",
        )


@attrs.frozen(kw_only=True)
class CheckResult:
    """The outcome of one check.

    Attributes:
        check: the check's name.
        status: ``"passed"``, ``"failed"``, ``"xfail"`` (failed, as expected) or
            ``"xpass"`` (expected to fail but passed: a failure of the suite, so that
            stale entries of ``expected_failures`` are removed).
        message: why it failed (or why it was expected to); empty when it passed.
    """

    check: str
    status: str
    message: str = ""

    @property
    def ok(self) -> bool:
        """Whether the result leaves the suite passing."""
        return self.status in ("passed", "xfail")


class ConformanceSubject:
    """An adapter under test: its spec, its case and the catalog it is installed in.

    The case and the intermediate results the checks share (prepared prompt, answer
    ids, teacher-forced inputs, layout) are built once, on first use.

    Args:
        spec: the adapter's spec, as its plugin registers it.
        build_case: zero-argument callable returning the :class:`ConformanceCase`.
        catalog: the installed plugins; a fresh :func:`build_catalog` (lenient) when None.
        dependent_positions: where the image enters the explained keys; None uses
            :func:`dexar_plugins.testing.explanation_checks.image_dependent_positions`.
    """

    def __init__(
        self,
        spec: AdapterSpec,
        build_case: Callable[[], ConformanceCase],
        catalog: Catalog | None = None,
        *,
        dependent_positions: Callable[[ConformanceSubject], np.ndarray] | None = None,
    ) -> None:
        self.spec = spec
        self._build_case = build_case
        self._catalog = catalog
        self.dependent_positions = dependent_positions

    @functools.cached_property
    def catalog(self) -> Catalog:
        """The catalog of installed plugins the entry-point and registry checks read."""
        if self._catalog is not None:
            return self._catalog
        return build_catalog(PluginSettings())

    @functools.cached_property
    def case(self) -> ConformanceCase:
        """The case, built on first use."""
        case = self._build_case()
        if not isinstance(case, ConformanceCase):
            raise DexarError(
                f"the conformance case builder of adapter {self.spec.name!r} returned "
                f"{type(case).__name__}; it must return a "
                "dexar_plugins.testing.conformance.ConformanceCase."
            )
        return case

    @property
    def loaded(self) -> LoadedModel:
        """The case's model, processor and adapter."""
        return self.case.loaded

    @property
    def adapter(self) -> GenerativeAdapter:
        """The adapter under test (the case's): the kit checks generative adapters."""
        return self.case.loaded.adapter

    @functools.cached_property
    def prepared(self) -> PreparedPrompt:
        """The case's prompt and images through ``adapter.prepare``."""
        return self.adapter.prepare(self.loaded, list(self.case.images), self.case.prompt)

    @functools.cached_property
    def answer_ids(self) -> tuple[int, ...]:
        """The explained answer: the case's, encoded, or a generated one."""
        if self.case.answer is not None:
            ids = self.adapter.encode_answer(self.loaded, self.prepared, self.case.answer)
        else:
            ids = self.adapter.generate(self.loaded, self.prepared, self.case.max_new_tokens)
        if not ids:
            raise DexarError(
                f"adapter {self.spec.name!r}: the case's answer is empty; give "
                "ConformanceCase.answer a text the tokenizer encodes."
            )
        return tuple(int(token) for token in ids)

    @functools.cached_property
    def forced(self) -> TeacherForcedPass:
        """The teacher-forced inputs over prompt + answer."""
        return self.adapter.teacher_forced(self.loaded, self.prepared, list(self.answer_ids))

    @functools.cached_property
    def layout(self) -> VisualLayout:
        """The prompt's layout (``locator.locate``), before any answer token."""
        return self.adapter.locator.locate(self.prepared)

    @functools.cached_property
    def layers(self) -> tuple[int, ...]:
        """The explained decoder layers: the case's, or all of them."""
        if self.case.layers is not None:
            return self.case.layers
        return tuple(range(self.adapter.decoder_parts(self.loaded.model).num_layers))


@attrs.frozen
class Check:
    """One conformance check: its name, what it verifies, and the function doing it."""

    name: str
    summary: str
    function: Callable[[ConformanceSubject], None] = attrs.field(repr=False)

    def run(self, subject: ConformanceSubject) -> None:
        """Run the check; raise :class:`ConformanceFailure` naming it when it fails."""
        try:
            self.function(subject)
        except ConformanceFailure:
            raise
        except Exception as error:
            raise ConformanceFailure(self.name, f"{type(error).__name__}: {error}") from error


CHECKS: dict[str, Check] = {}
"""Every check by name, in the order the suite runs them."""


def conformance_check(summary: str) -> Callable[[Callable[[ConformanceSubject], None]], Any]:
    """Register the decorated ``check_<name>(subject)`` function as the check ``<name>``."""

    def register(function: Callable[[ConformanceSubject], None]) -> Any:
        name = function.__name__.removeprefix("check_")
        CHECKS[name] = Check(name, summary, function)
        return function

    return register
