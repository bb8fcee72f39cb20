"""The device API's /docs renders in a real browser without internet, and follows the token."""
import re
import shutil
import subprocess

import pytest

pytest.importorskip("fastapi")
import httpx  # noqa: E402

from edge_runtime.api import create_app  # noqa: E402
from tests.edge_runtime.api_serving import served  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def seg(tiny_tflite):
    from edge_runtime.model.segmenter import DeviceSegmenter
    return DeviceSegmenter(tiny_tflite, threads=1)


def _rendered_dom(url: str, profile) -> str:
    """The DOM of ``url`` after its scripts ran, in headless Chromium with
    every host name but 127.0.0.1 unresolvable: a CDN asset cannot load."""
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
             "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", f"--user-data-dir={profile}",
             "--virtual-time-budget=20000", "--dump-dom", url]
    return subprocess.run(flags, capture_output=True, text=True, timeout=120).stdout


def _operations(dom: str) -> set[str]:
    """The API paths Swagger UI rendered as operations."""
    return set(re.findall(r'data-path="([^"]+)"', dom))


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (scripts/test.sh installs Debian's chromium)")
def test_docs_render_offline_in_a_real_browser(seg, tmp_path):
    with served(create_app(seg)) as (url, _):
        dom = _rendered_dom(f"{url}/docs", tmp_path / "profile")
    assert 'class="swagger-ui' in dom and "roadseg device API" in dom, dom[:2000]
    assert {"/v1/segment", "/v1/stats", "/v1/stream.mjpg"} <= _operations(dom), _operations(dom)
    assert "cdn.jsdelivr.net" not in dom
    assert "btn authorize" not in dom and "authorization__btn" not in dom  # no token: no Authorize, no padlocks


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (scripts/test.sh installs Debian's chromium)")
def test_docs_with_a_token_open_from_a_signed_url_only(seg, tmp_path):
    with served(create_app(seg, token=TOKEN)) as (url, _):
        assert httpx.get(f"{url}/docs").status_code == 401
        assert httpx.get(f"{url}/openapi.json").status_code == 401
        signed = httpx.post(f"{url}/v1/docs-url", headers={"Authorization": f"Bearer {TOKEN}"}).json()["url"]
        dom = _rendered_dom(f"{url}{signed}", tmp_path / "profile")
        assert {"/v1/segment", "/v1/stats"} <= _operations(dom), dom[:2000]
        assert 'class="btn authorize' in dom  # the page offers the bearer token for the calls themselves
