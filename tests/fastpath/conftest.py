"""The container fixtures (``bb``: a private root with busybox, leak check on teardown)."""

from tests.containers.conftest import bb  # noqa: F401
