"""``KEY=VALUE`` flags (``--option``, ``--adapter-option``) read into typed values."""

from __future__ import annotations

from typing import Any

from dexar_core.errors import InputError


def parse_option(text: str, flag: str = "--option") -> tuple[str, Any]:
    """``key=value`` with the value read as an int, float, bool, list or string."""
    if "=" not in text:
        raise InputError(f"{flag} expects key=value, got {text!r}.")
    key, raw = text.split("=", 1)
    if not key.strip():
        raise InputError(f"{flag} {text!r} has no key; give key=value, e.g. topk=3.")
    value: Any
    if raw.lower() in ("true", "false"):
        value = raw.lower() == "true"
    elif "," in raw:
        value = [parse_option(f"x={item}")[1] for item in raw.split(",") if item]
    else:
        try:
            value = int(raw)
        except ValueError:
            try:
                value = float(raw)
            except ValueError:
                value = raw
    return key.strip().replace("-", "_"), value


def parse_options(texts: list[str], flag: str = "--option") -> dict[str, Any]:
    """Every ``key=value`` of ``flag``; a key given twice is refused, not silently overridden."""
    options: dict[str, Any] = {}
    for text in texts:
        key, value = parse_option(text, flag)
        if key in options:
            raise InputError(
                f"{flag} {key} is given twice ({options[key]!r} and {value!r}); give it once."
            )
        options[key] = value
    return options
