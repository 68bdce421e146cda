"""Test-wide rules.

- Optional test dependencies (torch, spikingjelly, safetensors: the dev extra) are imported through
  ``require``. Outside CI a missing one skips the test, or the whole module when called at import time;
  under ``CI=true`` it is a failure. A test marked ``torch`` gets ``require_torch()`` before it runs.
- Under ``CI=true`` no test may be skipped at all, whatever the reason: ``pytest_runtest_makereport`` and
  ``pytest_collectreport`` below turn every skip into a failure, so a stray ``pytest.skip`` or
  ``skipif`` cannot quietly hide a check that CI is supposed to run.
"""
import importlib
import os

import pytest

ON_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(module: str, why: str = "pip install -e '.[dev]'"):
    """Import ``module`` for a test that needs it; fail under CI, skip (test or module) elsewhere."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if ON_CI:
            pytest.fail(f"{module} is required on CI ({why}) but is not importable: {exc}", pytrace=False)
        pytest.skip(f"{module} not installed ({why})", allow_module_level=True)


def require_torch():
    """Import torch for a reference-side test (see ``require``)."""
    return require("torch")


def _skip_is_failure(report):
    if ON_CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.longrepr = f"skipped under CI=true (every test must run in CI): {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _skip_is_failure(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _skip_is_failure(outcome.get_result())


def pytest_runtest_setup(item):
    # a test marked `torch` needs the reference side, whatever it imports inside
    if item.get_closest_marker("torch") is not None:
        require_torch()


def in_threads(fn, n: int = 2, timeout: float = 120.0) -> list:
    """fn(i) for i in range(n), each in its own Python thread at once; their results in order. A thread
    that raises fails the test with its error; one still running after `timeout` seconds fails it too."""
    import threading
    got, errors = {}, []

    def run(i):
        try:
            got[i] = fn(i)
        except Exception as e:   # noqa: BLE001 - raised below, in the test's thread
            errors.append(e)

    ths = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for t in ths:
        t.start()
    for t in ths:
        t.join(timeout)
    if errors:
        raise errors[0]
    assert not any(t.is_alive() for t in ths), f"a thread still runs after {timeout} s"
    return [got[i] for i in range(n)]
