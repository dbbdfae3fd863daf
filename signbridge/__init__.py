"""signbridge: Lightning training systems for sign-language and text-image recognition.

Import what you need from the subpackages (``signbridge.tasks``, ``signbridge.data``, ``signbridge.models``,
``signbridge.hands``); this top level stays light so that detector worker processes start quickly.
"""

__version__ = "0.1.0"


def _destroy_process_group_at_exit() -> None:
    # A ddp_spawn worker exits with its process group still alive, and tearing gloo down during interpreter
    # shutdown sometimes aborts the worker ("terminate called without an active exception", SIGABRT) after a
    # successful run. Destroying the group while Python is still intact avoids that; a no-op everywhere else.
    import sys

    dist = sys.modules.get("torch.distributed")  # never import torch here: detector workers do not need it
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


import atexit  # noqa: E402

atexit.register(_destroy_process_group_at_exit)
