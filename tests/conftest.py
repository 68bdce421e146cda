import os

import pytest

ON_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_torch():
    """Import torch for a reference-side test. On CI a missing torch fails the test instead of skipping it."""
    try:
        import torch  # noqa: F401
    except ImportError:
        if ON_CI:
            pytest.fail("torch is required on CI (dev extra) but is not importable")
        pytest.skip("torch not installed (pip install -e '.[dev]')")
    return torch
