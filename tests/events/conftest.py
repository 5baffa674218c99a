"""The real engine as a subprocess with a fake `claude` (see tests/engine/conftest.py)."""

from tests.engine.conftest import fake_tools, home, make_engine  # noqa: F401 - fixtures
