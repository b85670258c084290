"""The two report pages as a reader sees them (#23): rendered by a headless Chromium when one is
installed (Debian's `chromium`; skipped otherwise), every image must load, nothing may make
the page wider than the window, and no table may need scrolling sideways."""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys

import pytest

from apps.web.browser import find_chromium

BROWSER = find_chromium()
CHECK = """<script>
window.addEventListener("load", () => {
  const broken = [...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.alt);
  const root = document.documentElement;
  const clipped = [...document.querySelectorAll("table")].filter(t => t.scrollWidth > t.clientWidth + 1).length;
  document.body.setAttribute("data-check", JSON.stringify({broken, images: document.images.length, clipped,
                                                           overflow: root.scrollWidth - root.clientWidth}));
});
</script>"""


def rendered_check(page, tmp_path) -> dict:
    """What the browser found on `page`: broken images, image count, horizontal overflow in px."""
    probe = tmp_path / f"probe-{page.name}"
    probe.write_text(page.read_text().replace("</body>", CHECK + "</body>"))
    done = subprocess.run([BROWSER, "--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900",
                           "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    found = re.search(r'data-check="([^"]*)"', done.stdout)
    assert found, done.stderr[-2000:]
    return json.loads(html.unescape(found.group(1)))


@pytest.mark.skipif(BROWSER is None, reason="no headless Chromium here (apt install chromium)")
def test_report_pages_load_every_image_and_fit_the_window(fp32_artifacts, tiny_checkpoint, synth_root, tmp_path):
    out = tmp_path / "report"
    cli = [sys.executable, "-m", "lagchand_edge"]
    artifacts = [str(result.path) for result in fp32_artifacts.values()]
    profile = subprocess.run([*cli, "profile", *artifacts, "--checkpoint", str(tiny_checkpoint), "--runs", "3", "--warmup", "1",
                              "--out", str(out)], capture_output=True, text=True)
    drift = subprocess.run([*cli, "drift", *artifacts, "--checkpoint", str(tiny_checkpoint), "--data", str(synth_root), "--out", str(out)],
                           capture_output=True, text=True)
    assert profile.returncode == 0 and drift.returncode == 0, profile.stderr + drift.stderr
    # profile ran before drift: profile.html has latency and ops charts, report.html also accuracy vs latency
    for page, images in (("report.html", 3), ("profile.html", 2)):
        found = rendered_check(out / page, tmp_path)
        assert found["images"] >= images and found["broken"] == [] and found["overflow"] <= 0 and found["clipped"] == 0, (page, found)
    # the main job's profile also times MediaPipe's models (`--anchor`), whose names are the widest cells, and rows from devices
    from lagchand_edge.profile.report import write_profile_report

    session = json.loads((out / "profile.json").read_text())
    eager = session["results"][0]
    session["results"] += [dict(eager, artifact=f"mediapipe:{name}", precision="float (MediaPipe)", anchor=True)
                           for name in ("hand_landmark_full", "hand_landmark_lite")]
    device = {k: v for k, v in eager.items() if k != "speedup_vs_eager"} | {"merged": True, "label": "iPhone 15 Pro (iOS 18.1)"}
    xcode = dict(eager["record"], runtime="coreml (Xcode performance report, cpuAndNeuralEngine)")  # the longest runtime cell
    session["results"] += [dict(device, artifact="coreml-int8@iPhone 15 Pro (iOS 18.1)", record=xcode,
                                speedup_vs_device_fp32={"baseline": "coreml-fp32@iPhone 15 Pro (iOS 18.1)", "ratio": 2.5}),
                           dict(device, artifact="model.tflite@pixel8", label="pixel8", tie_note="no artifact profiled here has its sha256")]
    (tmp_path / "anchors").mkdir()
    write_profile_report(session, tmp_path / "anchors")
    found = rendered_check(tmp_path / "anchors" / "profile.html", tmp_path)
    assert found["overflow"] <= 0 and found["clipped"] == 0, found
