"""The live page in a real browser: headless Chromium opens `evrt serve --web` on a shipped recording; the
prediction it shows follows the gestures and the event image is not blank.

EVRT_SCREENSHOT=docs/live_page.png makes the test also save a screenshot of the page there."""
import asyncio
import json
import os
import subprocess
import sys
import time

import pytest

from conftest import ON_CI

if ON_CI:
    import aiohttp  # noqa: F401
else:
    pytest.importorskip("aiohttp")

from cdp import Browser, find_chromium

HERE = os.path.dirname(os.path.abspath(__file__))
REC = os.path.join(HERE, "..", "examples", "data", "dvsgesture_synth", "user06_fluorescent_led.aedat")
TIMEOUT = 120

# what the page shows, read through the DOM and the canvas pixels
PROBE = """(() => {
  const c = document.getElementById('events');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let lit = 0;
  for (let i = 0; i < d.length; i += 4) if (d[i] || d[i + 1] || d[i + 2]) lit++;
  return {pred: document.getElementById('pred').textContent, lit: lit, w: c.width, h: c.height,
          bars: document.querySelectorAll('#probs .bar').length,
          layers: document.querySelectorAll('#layers tbody tr').length,
          status: document.getElementById('status').textContent};
})()"""


def _wait_url(proc, deadline):
    lines = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if '"live page: ' in line:
            return json.loads(line)["msg"].split(": ", 1)[1], lines
    proc.kill()
    pytest.fail("serve --web did not start: " + "".join(lines)[-2000:])


async def _watch_page(url, serve, seconds):
    seen, shot = [], None
    async with Browser() as b:
        await b.goto(url)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and serve.poll() is None:
            try:
                s = await b.eval(PROBE)
            except RuntimeError:  # the page is still loading
                s = None
            if s:
                seen.append(s)
                # the screenshot: well into the recording, with a full timeline and events on screen
                if shot is None and s["lit"] > 0 and s["layers"] > 3 and len(seen) >= 40:
                    shot = await b.screenshot()
            await asyncio.sleep(0.2)
    return seen, shot


def test_live_page_in_headless_chromium():
    if find_chromium() is None:
        if ON_CI:
            pytest.fail("chromium is required on CI (.ci/run installs Debian's chromium)")
        pytest.skip("chromium not installed (apt-get install chromium)")
    serve = subprocess.Popen([sys.executable, "-m", "evrt", "serve", "--camera", f"file:{REC}?speed=1.5", "--model",
                              "sdt-synth-gesture", "--web", "127.0.0.1:0", "--quiet", "--json", "--metrics-every", "0"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        url, _ = _wait_url(serve, time.monotonic() + TIMEOUT)
        assert url.startswith("http://127.0.0.1:")
        seen, shot = asyncio.run(_watch_page(url, serve, TIMEOUT))
    finally:
        serve.kill()
        serve.wait(10)
    shown = [s["pred"] for s in seen if s["pred"] not in ("", "–")]
    changes = sum(a != b for a, b in zip(shown, shown[1:]))
    assert len(set(shown)) >= 3 and changes >= 3, shown  # the shown prediction follows the gestures
    assert max(s["lit"] for s in seen) > 50 and all((s["w"], s["h"]) == (128, 128) for s in seen if s["lit"])
    assert max(s["bars"] for s in seen) == 11 and max(s["layers"] for s in seen) > 3
    assert shot is not None and shot[:8] == b"\x89PNG\r\n\x1a\n"
    out = os.environ.get("EVRT_SCREENSHOT")
    if out:
        with open(out, "wb") as f:
            f.write(shot)
