"""Strict parsing of environment variables for settings.

Every reader raises :class:`EnvError` with a one-line reason that names the variable, so a
malformed deployment fails at start-up instead of running with a silently wrong value.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Mapping
from typing import overload

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class EnvError(Exception):
    """A configuration variable is missing or malformed."""


class Env:
    """Typed, strict access to a mapping of environment variables (``os.environ`` by default)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ

    def raw(self, name: str) -> str | None:
        """The stripped value, or None when unset or blank."""
        value = self._environ.get(name)
        if value is None or not value.strip():
            return None
        return value.strip()

    @overload
    def str(self, name: builtins.str, default: builtins.str) -> builtins.str: ...

    @overload
    def str(self, name: builtins.str, default: None = None) -> builtins.str | None: ...

    def str(self, name: str, default: str | None = None) -> str | None:
        value = self.raw(name)
        return default if value is None else value

    def bool(self, name: builtins.str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise EnvError(f"{name}={value!r} is not a boolean; use true/false, 1/0, yes/no or on/off.")

    def int(self, name: builtins.str, default: int, *, minimum: int | None = None) -> int:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = int(value, 10)
        except ValueError:
            raise EnvError(f"{name}={value!r} is not an integer.") from None
        if minimum is not None and number < minimum:
            raise EnvError(f"{name}={number} must be at least {minimum}.")
        return number

    def float(
        self, name: builtins.str, default: float, *, minimum: float | None = None, maximum: float | None = None
    ) -> float:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            raise EnvError(f"{name}={value!r} is not a number.") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise EnvError(f"{name}={value!r} must be a finite number.")
        if minimum is not None and number < minimum:
            raise EnvError(f"{name}={number} must be at least {minimum}.")
        if maximum is not None and number > maximum:
            raise EnvError(f"{name}={number} must be at most {maximum}.")
        return number

    def list(self, name: builtins.str, default: list[builtins.str]) -> list[builtins.str]:
        value = self.raw(name)
        if value is None:
            return list(default)
        return [item.strip() for item in value.split(",") if item.strip()]

    def choice(self, name: builtins.str, default: builtins.str, choices: tuple[builtins.str, ...]) -> builtins.str:
        value = self.raw(name)
        if value is None:
            return default
        if value not in choices:
            raise EnvError(f"{name}={value!r} must be one of: {', '.join(choices)}.")
        return value
