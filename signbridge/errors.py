"""Errors about the user's input; the CLI prints them as one line and exits non-zero."""

from __future__ import annotations

from collections.abc import Iterator


class InputError(ValueError):
    """Bad input (a file, a folder, a setting); the message names the file or setting and the problem."""


def check_range(name: str, value: float, low: float | None = None, high: float | None = None,
                low_open: bool = False, high_open: bool = False) -> None:
    """An ``InputError`` naming the setting ``name`` when ``value`` is below ``low`` (or not above it, with
    ``low_open``) or above ``high`` (or not below it, with ``high_open``): settings are checked where they are
    defined, before any work starts."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"{name} must be a number, got {value!r}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        if low is not None and high is not None:
            bounds = f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        elif low is not None:
            bounds = f"above {low}" if low_open else f"at least {low}"
        else:
            bounds = f"below {high}" if high_open else f"at most {high}"
        raise InputError(f"{name} must be {bounds}, got {value}")


def error_chain(error: BaseException) -> Iterator[BaseException]:
    """``error`` and the errors it was raised from or while handling (``__cause__``, else ``__context__``), each
    once: libraries re-raise what went wrong underneath as their own errors."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__
