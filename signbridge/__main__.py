"""``python -m signbridge``: the same as the ``signbridge`` command."""

from .cli import console_main

console_main()
