"""The real agent CLIs (installed once) and the scripted model server, for the tests that drive replicas."""

from tests.agents.test_real_clis import agent_tools, model  # noqa: F401 - fixtures
