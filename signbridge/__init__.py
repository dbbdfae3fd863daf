"""signbridge: Lightning training systems for sign-language and text-image recognition.

Import what you need from the subpackages (``signbridge.tasks``, ``signbridge.data``, ``signbridge.models``,
``signbridge.hands``); this top level stays light so that detector worker processes start quickly.
"""

__version__ = "0.1.0"
