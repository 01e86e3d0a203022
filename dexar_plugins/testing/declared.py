"""A conformance case declared as data: a tiny model's builder, its options, the image.

A plugin manifest (:mod:`dexar_plugins.manifest`) declares most adapters' cases as an
``[adapters.conformance]`` table; :class:`DeclaredCase` is what the table becomes, the
zero-argument ``AdapterSpec.conformance`` that builds the tiny model and hands it to
:meth:`~dexar_plugins.testing.subject.ConformanceCase.from_model`. Importing this module
is light: torch and the model code are imported when the case is built.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from dexar_plugins.testing.subject import ConformanceCase


def _frozen_mapping(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(value))


@attrs.frozen(kw_only=True)
class DeclaredCase:
    """The conformance case of a tiny model and one noise image, built when called.

    Attributes:
        builder: returns ``(model, processor)``, a tiny model the adapter serves.
        options: the builder's keyword arguments.
        adapter: the spec's factory of the adapter under test.
        model_id: the name the case's ``LoadedModel`` carries.
        image_size: ``(height, width)`` of the noise image.
        case_options: the other ``ConformanceCase.from_model`` arguments (``prompt``,
            ``answer``, ``expected_failures``); absent ones keep its defaults.
    """

    builder: Callable[..., tuple[Any, Any]]
    options: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen_mapping)
    adapter: Callable[[], Any]
    model_id: str
    image_size: tuple[int, int]
    case_options: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen_mapping)

    def with_options(self, **options: Any) -> DeclaredCase:
        """The same case on a variant of the tiny model: these builder options changed.

        Example:
            ``spec.conformance.with_options(gemma2=True)()`` builds the PaliGemma
            example's case on a PaliGemma 2.
        """
        return attrs.evolve(self, options={**self.options, **options})

    def __call__(self) -> ConformanceCase:
        """Build the tiny model, a fresh adapter and the case."""
        from dexar_plugins.testing.subject import ConformanceCase

        model, processor = self.builder(**self.options)
        return ConformanceCase.from_model(
            model,
            processor,
            self.adapter(),
            model_id=self.model_id,
            image_size=self.image_size,
            **self.case_options,
        )
