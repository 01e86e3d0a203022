"""The checks of the plugin's declaration and of the capture, registered first in ``CHECKS``.

The layout, gradient and map checks follow in
:mod:`dexar_plugins.testing.explanation_checks`. Each takes a
:class:`~dexar_plugins.testing.subject.ConformanceSubject`, raises
:class:`~dexar_plugins.testing.subject.ConformanceFailure` naming itself when the
adapter is wrong, and leaves the model as it found it.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import attrs
import torch

from dexar_core.errors import DexarError
from dexar_core.interfaces import (
    AttentionCapture,
    GradientExtractor,
    ModelAdapter,
    VisualTokenLocator,
)
from dexar_core.records import TeacherForcedPass
from dexar_core.values import AdapterSpec
from dexar_plugins.loading import ENTRY_POINT_GROUP
from dexar_plugins.manager import Catalog, Registration
from dexar_plugins.testing.reference import relative_error
from dexar_plugins.testing.subject import ConformanceFailure, ConformanceSubject, conformance_check
from dexar_plugins.testing.tolerance import float32_tolerance

OUTPUT_TOLERANCE = 1e-5
"""Largest change of the logits under a capture, relative to their largest magnitude."""

ROW_SUM_TOLERANCE = 1e-5
"""Largest distance of a captured attention row's sum from 1 (more for very long rows: a
float32 sum of K probabilities is off by about ``sqrt(K)`` ulps, see
:func:`~dexar_plugins.testing.tolerance.float32_tolerance`)."""

UNDER_TEST = "<under test>"
"""Plugin and distribution name of a spec given directly rather than installed."""


def _fail(check: str, message: str) -> ConformanceFailure:
    return ConformanceFailure(check, message)


# --- the plugin's declaration -----------------------------------------------------------


@conformance_check("the AdapterSpec is valid and its factory builds a matching ModelAdapter")
def check_spec_is_valid(subject: ConformanceSubject) -> None:
    """The spec passes its own validation and its factory returns fresh, named adapters."""
    name, spec = "spec_is_valid", subject.spec
    if not isinstance(spec, AdapterSpec):
        raise _fail(name, f"the spec is a {type(spec).__name__}, not a dexar AdapterSpec.")
    try:
        attrs.validate(spec)
        attrs.evolve(spec)  # runs the converters, validators and cross-field checks again
    except DexarError as error:
        raise _fail(name, f"the AdapterSpec {spec.name!r} is invalid: {error}") from error
    adapter = spec.factory()
    if not isinstance(adapter, ModelAdapter):
        raise _fail(
            name,
            f"the factory of adapter {spec.name!r} returned {type(adapter).__name__}; it "
            "must return a dexar_core.interfaces.ModelAdapter.",
        )
    if adapter.name != spec.name:
        raise _fail(
            name,
            f"the factory of adapter {spec.name!r} built an adapter named "
            f"{adapter.name!r}; ModelAdapter.name must equal AdapterSpec.name.",
        )
    if spec.factory() is adapter:
        raise _fail(name, f"the factory of adapter {spec.name!r} returns one shared object.")
    parts = {
        "capture": AttentionCapture,
        "locator": VisualTokenLocator,
        "gradients": GradientExtractor,
    }
    for attribute, interface in parts.items():
        value = getattr(adapter, attribute, None)
        if not isinstance(value, interface):
            raise _fail(
                name,
                f"adapter {spec.name!r}: {attribute} is {type(value).__name__}, not a "
                f"{interface.__name__}.",
            )
    if not isinstance(subject.adapter, type(adapter)):
        raise _fail(
            name,
            f"the case's LoadedModel.adapter is a {type(subject.adapter).__name__}, not what "
            f"the factory builds ({type(adapter).__name__}).",
        )


@conformance_check("an installed entry point in the 'dexar' group registers the adapter")
def check_entry_point_loads(subject: ConformanceSubject) -> None:
    """The adapter is registered by a plugin loaded from a ``dexar`` entry point."""
    name, spec, catalog = "entry_point_loads", subject.spec, subject.catalog
    registration = catalog.adapters.get(spec.name)
    if registration is None:
        conflict = catalog.conflict("adapter", spec.name)
        if conflict is not None:
            raise _fail(name, conflict.message)
        failures = "; ".join(failure.message for failure in catalog.failures)
        raise _fail(
            name,
            f"no installed plugin registers an adapter named {spec.name!r}. Declare the "
            f"plugin under [project.entry-points.{ENTRY_POINT_GROUP}] in pyproject.toml and "
            "install the distribution (pip install -e .)."
            + (f" Plugins that failed to load: {failures}" if failures else ""),
        )
    entry_points = importlib.metadata.entry_points(
        group=ENTRY_POINT_GROUP, name=registration.plugin
    )
    if not entry_points:
        raise _fail(
            name,
            f"adapter {spec.name!r} comes from plugin {registration.plugin!r}, which is no "
            f"entry point of the {ENTRY_POINT_GROUP!r} group.",
        )
    plugin = next(iter(entry_points)).load()
    hook = getattr(plugin, "dexar_adapters", None)
    names = [item.name for item in hook()] if callable(hook) else []
    if spec.name not in names:
        raise _fail(
            name,
            f"entry point {registration.plugin!r} loads {plugin!r}, whose dexar_adapters() "
            f"returns {names} without {spec.name!r}.",
        )
    installed = registration.spec
    if (installed.model_types, installed.architectures) != (spec.model_types, spec.architectures):
        raise _fail(
            name,
            f"the installed adapter {spec.name!r} ({registration.distribution} "
            f"{registration.version}) serves {installed.model_types}/{installed.architectures} "
            f"but the spec under test serves {spec.model_types}/{spec.architectures}; "
            "reinstall the distribution.",
        )


def _catalog_with(catalog: Catalog, spec: AdapterSpec) -> Catalog:
    """The catalog with ``spec`` registered under its name (replacing an installed one)."""
    if spec.name in catalog.adapters and catalog.adapters[spec.name].spec == spec:
        return catalog
    adapters = dict(catalog.adapters)
    adapters[spec.name] = Registration(
        spec=spec, plugin=UNDER_TEST, distribution=UNDER_TEST, version=""
    )
    return attrs.evolve(catalog, adapters=adapters)


@conformance_check("the registry chooses this adapter for the case's model and its config")
def check_registry_resolves_model(subject: ConformanceSubject) -> None:
    """``resolve_adapter`` picks the adapter among all installed ones."""
    from dexar_plugins.registry import resolve_adapter

    name, spec = "registry_resolves_model", subject.spec
    catalog = _catalog_with(subject.catalog, spec)
    model = subject.loaded.model
    for label, target in (("model", model), ("config", model.config)):
        chosen = resolve_adapter(target, catalog=catalog)
        if chosen.name != spec.name:
            raise _fail(
                name,
                f"for the case's {label} ({type(target).__name__}, model_type "
                f"{getattr(model.config, 'model_type', None)!r}) the registry chose adapter "
                f"{chosen.name!r} (priority {chosen.priority}) instead of {spec.name!r} "
                f"(priority {spec.priority}); claim the model type or class in the spec, "
                "or raise its priority.",
            )


# --- the capture ----------------------------------------------------------------------


def _logits(output: Any) -> torch.Tensor:
    logits = getattr(output, "logits", None)
    if logits is None:
        logits = output[0] if isinstance(output, (tuple, list)) else output
    return logits.detach().float()


def _full_inputs(forced: TeacherForcedPass) -> dict[str, Any]:
    """The teacher-forced inputs asking for the logits at every position."""
    inputs = dict(forced.inputs)
    if "logits_to_keep" in inputs:
        inputs["logits_to_keep"] = 0
    return inputs


@conformance_check("the model's logits are unchanged while a capture is active")
def check_capture_is_transparent(subject: ConformanceSubject) -> None:
    """Capturing every explained layer leaves the forward's logits as they were."""
    name, model, forced = "capture_is_transparent", subject.loaded.model, subject.forced
    inputs = _full_inputs(forced)
    with torch.no_grad():
        plain = _logits(model(**inputs))
    with subject.adapter.capture.capture(model, subject.layers, forced.query_rows) as leaves:
        captured = _logits(model(**inputs))
    missing = sorted(set(subject.layers) - set(leaves.leaves))
    if missing:
        raise _fail(name, f"the capture recorded no attention for layers {missing}.")
    if captured.shape != plain.shape:
        raise _fail(name, f"logits of shape {tuple(captured.shape)}, not {tuple(plain.shape)}.")
    error = relative_error(captured.numpy(), plain.numpy())
    if not error <= OUTPUT_TOLERANCE:
        raise _fail(
            name,
            f"the logits changed by {error:.2e} (relative) under the capture; at most "
            f"{OUTPUT_TOLERANCE:g} is allowed. The recomputed rows must equal the model's own.",
        )


_HOOK_FIELDS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
)


def _module_state(model: Any) -> dict[str, Any]:
    """Every hook, flag and attention setting a capture could leave behind."""
    from torch.nn.modules import module as torch_module

    hooks: dict[str, tuple[Any, ...]] = {}
    for path, module in model.named_modules():
        hooks[path or "<model>"] = (
            *(tuple(getattr(module, field, {}).items()) for field in _HOOK_FIELDS),
            module.training,
        )
    configs = {
        id(module.config): module.config
        for module in model.modules()
        if getattr(module, "config", None) is not None
    }
    return {
        "hooks": hooks,
        "global hooks": tuple(
            tuple(getattr(torch_module, field, {}).items())
            for field in (
                "_global_forward_hooks",
                "_global_forward_pre_hooks",
                "_global_backward_hooks",
                "_global_backward_pre_hooks",
            )
        ),
        "requires_grad": tuple(parameter.requires_grad for parameter in model.parameters()),
        "attention implementations": tuple(
            sorted(
                (type(config).__name__, str(getattr(config, "_attn_implementation", None)))
                for config in configs.values()
            )
        ),
        "grad mode": torch.is_grad_enabled(),
    }


def _differences(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    found = []
    for path, state in after["hooks"].items():
        if before["hooks"].get(path) != state:
            found.append(f"hooks or training flag of module {path!r}")
    for key in ("global hooks", "requires_grad", "attention implementations", "grad mode"):
        if before[key] != after[key]:
            found.append(f"{key} ({before[key]!r} became {after[key]!r})"[:300])
    return found


class _ForwardExploded(RuntimeError):
    """Raised inside the forward by the check, to see that the capture cleans up."""


@contextmanager
def _exploding_last_layer(subject: ConformanceSubject) -> Iterator[None]:
    def explode(module: Any, args: Any, output: Any) -> None:
        raise _ForwardExploded("the conformance kit raised inside the forward")

    parts = subject.adapter.decoder_parts(subject.loaded.model)
    handle = parts.layers[-1].register_forward_hook(explode)
    try:
        yield
    finally:
        handle.remove()


@conformance_check(
    "captures and explanation passes remove every hook, also when the forward raises"
)
def check_capture_leaves_nothing_behind(subject: ConformanceSubject) -> None:
    """Hooks, parameter flags and attention implementations are restored on every exit."""
    from dexar_core.engine import attention_gradients

    name, model, forced = "capture_leaves_nothing_behind", subject.loaded.model, subject.forced
    with torch.no_grad():  # transformers installs its own output hooks on the first call
        reference = _logits(model(**forced.inputs))
    before = _module_state(model)
    with subject.adapter.capture.capture(model, subject.layers, forced.query_rows):
        model(**forced.inputs)
    left = _differences(before, _module_state(model))
    if left:
        raise _fail(name, f"after a capture, these changed: {'; '.join(left)}.")
    layout = subject.adapter.layout_for_answer(
        subject.loaded, subject.prepared, forced, subject.layout
    )
    attention_gradients(
        subject.loaded, forced, layout.with_length(forced.key_length), subject.layers
    )
    left = _differences(before, _module_state(model))
    if left:
        raise _fail(name, f"after an explanation pass, these changed: {'; '.join(left)}.")
    with _exploding_last_layer(subject):
        before = _module_state(model)
        try:
            with subject.adapter.capture.capture(model, subject.layers, forced.query_rows):
                model(**forced.inputs)
        except _ForwardExploded:
            pass
        else:
            raise _fail(name, "the capture swallowed an exception raised inside the forward.")
        left = _differences(before, _module_state(model))
    if left:
        raise _fail(
            name,
            f"after a forward that raised inside the capture, these changed: {'; '.join(left)}.",
        )
    with torch.no_grad():
        after = _logits(model(**forced.inputs))
    if relative_error(after.numpy(), reference.numpy()) > OUTPUT_TOLERANCE:
        raise _fail(name, "the model computes different logits after the captures.")


@conformance_check("captured attention rows are non-negative leaves summing to 1 over visible keys")
def check_attention_rows_are_distributions(subject: ConformanceSubject) -> None:
    """Each captured row is a probability distribution, zero at the keys it cannot see."""
    name, model, forced = "attention_rows_are_distributions", subject.loaded.model, subject.forced
    rows = len(forced.query_rows)
    capture = subject.adapter.capture.capture(model, subject.layers, forced.query_rows)
    with capture as captured, torch.no_grad():
        model(**forced.inputs)
    for layer in subject.layers:
        leaf = captured.leaves.get(layer)
        if leaf is None:
            raise _fail(name, f"no attention rows were captured for layer {layer}.")
        where = f"layer {layer}"
        if not (leaf.is_leaf and leaf.requires_grad):
            raise _fail(name, f"{where}: the captured rows are not autograd leaves.")
        if leaf.ndim != 3 or leaf.shape[1] != rows or leaf.shape[2] != forced.key_length:
            raise _fail(
                name,
                f"{where}: rows of shape {tuple(leaf.shape)}; expected [heads, {rows}, "
                f"{forced.key_length}] (heads, query rows, keys).",
            )
        values = leaf.detach().float()
        if not torch.isfinite(values).all():
            raise _fail(name, f"{where}: the rows hold NaN or infinite values.")
        if (values < 0).any():
            raise _fail(name, f"{where}: the rows hold negative probabilities.")
        sums = values.sum(dim=-1)
        worst = float((sums - 1).abs().max())
        allowed = max(ROW_SUM_TOLERANCE, float32_tolerance(1.0, terms=forced.key_length))
        if worst > allowed:
            raise _fail(name, f"{where}: a row sums to 1 {worst:+.2e} off; rows must sum to 1.")
        visible = captured.visible.get(layer)
        if visible is None or tuple(visible.shape) != (rows, forced.key_length):
            raise _fail(name, f"{where}: no [rows, keys] visibility mask was recorded.")
        hidden_mass = float((values * ~visible.bool()).abs().max())
        if hidden_mass > 0:
            raise _fail(name, f"{where}: probability {hidden_mass:.2e} at keys the row cannot see.")
