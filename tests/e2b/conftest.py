"""Fixtures of the E2B compatibility suite.

The suite is run by crates/cli/tests/e2b/main.rs inside the network namespace of a real bhatti
daemon, with E2B_API_KEY, E2B_API_URL, E2B_SANDBOX_URL and E2B_DOMAIN pointing at its E2B
facade. It uses only the public, unmodified `e2b` SDK.
"""

import pytest
from e2b import Sandbox


@pytest.fixture
def sbx():
    s = Sandbox.create(timeout=600)
    yield s
    try:
        s.kill()
    except Exception:
        pass
