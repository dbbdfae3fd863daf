"""Errors about the user's input; the CLI prints them as one line and exits non-zero."""


class InputError(ValueError):
    """Bad input (a file, a folder, a setting); the message names the file or setting and the problem."""


def check_range(name: str, value: float, low: float | None = None, high: float | None = None,
                high_open: bool = False) -> None:
    """An ``InputError`` naming the setting ``name`` when ``value`` is below ``low`` or above ``high`` (or not below
    it, with ``high_open``): settings are checked where they are defined, before any work starts."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"{name} must be a number, got {value!r}")
    too_high = high is not None and (value >= high if high_open else value > high)
    if (low is not None and value < low) or too_high:
        bounds = (f"in [{low}, {high}{')' if high_open else ']'}" if low is not None and high is not None
                  else f"at least {low}" if low is not None else f"{'below' if high_open else 'at most'} {high}")
        raise InputError(f"{name} must be {bounds}, got {value}")
