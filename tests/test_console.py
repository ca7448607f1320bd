"""The web console, over real HTTP and in a real headless Chromium (Debian's chromium + chromium-driver, Selenium).

The app is served by a real HTTP server on a free port. A person signs in with an employee JWT,
filters and pages the Security section, downloads the CSV, opens seats and effective rights; a
viewer without the right is refused; no page shows data without a sign-in. Screenshots go to
``$SIDECAR_SCREENSHOT_DIR`` when set (that is how docs/console-*.png were made), else a temp dir.
The browser tests skip only when Chromium or its driver is not installed (`.ci/run` installs
them).
"""

from __future__ import annotations

import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait
from werkzeug.serving import make_server

from tests.audit_support import read_log, report, seed, shipped
from tests.conftest import Api, free_port, make_settings, make_tokens, wait_until

SECRET = "console-test-jwt-secret-0123456789abcdef"
CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
needs_chromium = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)),
    reason="Debian chromium and chromium-driver are not installed (.ci/run installs them)")
PAGES = ("/console/", "/console/chains/ch-1/security", "/console/locations/l-1/security.csv",
         "/console/chains/ch-1/seats", "/console/locations/l-1/rights?employee=e-1")


def token(employee: str, *, mfa: bool = True, ttl: int = 3600) -> str:
    claims: dict[str, Any] = {"sub": employee, "exp": int(time.time()) + ttl}
    if mfa:
        claims["amr"] = ["pwd", "mfa"]
    return jwt.encode(claims, SECRET, algorithm="HS256")


@pytest.fixture
def served(tmp_path: Path, app_factory) -> Iterator[tuple[str, Api]]:
    settings = make_settings(tmp_path, jwt_secret=SECRET)
    app = app_factory(settings)
    api = Api(app, make_tokens(settings))
    seed(api)
    for employee, name in (("boss", "Boris Owner"), ("e-1", "Eva Stylist"), ("sec", "Sergei Security"),
                           ("idle", "Ivan Idle")):
        api.put(f"/v1/employees/{employee}", {"active": True, "name": name})
    api.put("/v1/locations/l-1/employees/idle", {"roles": ["viewer"]})
    for n in range(70):
        report(api, action="clients.export_finished" if n % 10 == 0 else "appointment.edited",
               outcome="success", request_id=f"seeded-{n}", device={"id": f"d-{n % 3}", "name": "Front desk"})
    api.check("e-1", "l-1", "client:delete")
    shipped(api)
    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    # shutdown() waits for the loop's next poll: 0.5 s by default, at every teardown
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}", api
    finally:
        server.shutdown()
        server.server_close()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def fetch(url: str, *, data: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, Any, str]:
    request = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data else "GET")
    try:
        with urllib.request.build_opener(NoRedirect).open(request, timeout=10) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read().decode()


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


# -- without a browser: the HTTP rules ------------------------------------------------------------------
def test_every_page_without_identity_is_a_401_sign_in_page_with_no_data(served) -> None:
    base, _ = served
    for path in PAGES:
        status, headers, body = fetch(base + path)
        assert status == 401, path
        assert 'id="signin"' in body and "Eva" not in body and "clients.export_finished" not in body
        csp = headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "script-src" not in csp
        assert headers["X-Frame-Options"] == "DENY" and headers["Cache-Control"] == "no-store"
        assert headers["Content-Type"].startswith("text/html")
    for bad in ("Bearer not-a-jwt", f"Bearer {token('boss', ttl=-3600)}", "Basic Ym9zczpwdw=="):
        status, _, body = fetch(base + "/console/chains/ch-1/security", headers={"Authorization": bad})
        assert status == 401 and "Eva" not in body, bad
    forged = jwt.encode({"sub": "boss", "exp": int(time.time()) + 60}, "another-secret-of-at-least-32-bytes!!",
                        algorithm="HS256")
    assert fetch(base + "/console/", headers={"Authorization": f"Bearer {forged}"})[0] == 401


def test_the_proxy_bearer_header_and_the_cookie_session(served) -> None:
    base, _ = served
    boss = {"Authorization": f"Bearer {token('boss')}"}
    status, _, body = fetch(base + "/console/chains/ch-1/security", headers=boss)
    assert status == 200 and "Eva Stylist" in body
    form = f"token={token('boss')}".encode()
    status, headers, _ = fetch(base + "/console/session", data=form, headers=FORM)
    assert status == 303 and headers["Location"] == "/console/"
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # plain http: a browser would not keep a Secure cookie
    behind_tls = fetch(base + "/console/session", data=form, headers={**FORM, "X-Forwarded-Proto": "https"})[1]
    assert "; Secure" in behind_tls["Set-Cookie"]
    session = cookie.split(";", 1)[0]
    assert fetch(base + "/console/chains/ch-1/seats", headers={"Cookie": session})[0] == 200
    # a cross-site form cannot sign someone in (login CSRF), nor sign them out
    for site in ({"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}, {"Origin": "http://evil.example"},
                 {"Sec-Fetch-Site": "same-site"}):
        assert fetch(base + "/console/session", data=form, headers={**FORM, **site})[0] == 403, site
        assert fetch(base + "/console/session/end", data=b"x=1", headers={**FORM, **site, "Cookie": session})[0] == 403
    assert fetch(base + "/console/session", data=form, headers={**FORM, "Sec-Fetch-Site": "same-origin",
                                                                "Origin": base})[0] == 303
    assert fetch(base + "/console/session", data=b"token=garbage", headers=FORM)[0] == 401
    status, headers, _ = fetch(base + "/console/session/end", data=b"x=1", headers={**FORM, "Cookie": session})
    assert status == 303 and "sidecar_console=;" in headers["Set-Cookie"]


def test_each_page_needs_its_right_there(served, redis_url) -> None:
    base, _ = served
    sec = {"Authorization": f"Bearer {token('sec')}"}  # system_manager at l-1 only
    assert fetch(base + "/console/locations/l-1/security", headers=sec)[0] == 200
    assert fetch(base + "/console/locations/l-1/seats", headers=sec)[0] == 200
    status, _, body = fetch(base + "/console/locations/l-1/rights?employee=e-1", headers=sec)
    assert status == 200 and "appointment:create" in body
    status, _, body = fetch(base + "/console/chains/ch-1/security", headers=sec)  # not at l-2
    assert status == 403 and "Eva" not in body
    no_mfa = {"Authorization": f"Bearer {token('boss', mfa=False)}"}
    status, _, body = fetch(base + "/console/chains/ch-1/security.csv", headers=no_mfa)
    assert status == 403 and "two-step" in body and "Eva" not in body
    idle = {"Authorization": f"Bearer {token('idle')}"}
    for path in ("/console/locations/l-1/security", "/console/locations/l-1/seats", "/console/locations/l-1/rights",
                 "/console/chains/ch-1/seats"):
        status, _, body = fetch(base + path, headers=idle)
        assert status == 403 and "Eva" not in body and "Boris" not in body, path
    assert fetch(base + "/console/locations/nope/security", headers=sec)[0] == 404
    status, _, body = fetch(base + "/console/locations/l-1/security?since=yesterday", headers=sec)
    assert status == 400 and "since" in body
    # every look, allowed or refused, is in the Security section itself, marked as the console's
    looks = [e for e in read_log(redis_url, "c:ch-1") if e["action"] == "security_log:read"
             and (e["details"] or {}).get("via") == "console"]
    assert {(e["employee"], e["outcome"]) for e in looks} >= {("sec", "allowed"), ("sec", "denied"),
                                                               ("idle", "denied")}
    assert all(e["employee_name"] for e in looks)


def test_csv_over_http_is_the_filtered_log(served) -> None:
    base, _ = served
    boss = {"Authorization": f"Bearer {token('boss')}"}
    query = "category=export&exclude=security_log:export"
    status, headers, body = fetch(base + f"/console/chains/ch-1/security.csv?{query}", headers=boss)
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    assert headers["Content-Disposition"] == 'attachment; filename="security-events-ch-1.csv"'
    lines = body.splitlines()
    assert lines[0].startswith("id,time,location,chain,employee,category") and lines[0].endswith("employee_name")
    assert len(lines) == 1 + 7 and all(",export,clients.export_finished," in line for line in lines[1:])


# -- in Chromium ------------------------------------------------------------------------------------------
@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,1000", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads
    try:
        yield driver
    finally:
        driver.quit()


def shots(tmp_path: Path) -> Path:
    directory = Path(os.environ.get("SIDECAR_SCREENSHOT_DIR") or tmp_path / "shots")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def sign_in(driver: Any, base: str, employee: str, *, mfa: bool = True) -> str:
    driver.get(base + "/console/")
    assert driver.find_element(By.ID, "signin")
    jwt_text = token(employee, mfa=mfa)
    driver.find_element(By.ID, "token").send_keys(jwt_text)
    navigate(driver, By.CSS_SELECTOR, "#signin button")
    return jwt_text


def navigate(driver: Any, by: str, selector: str) -> None:
    """Click what loads a new page, and wait until the new page has replaced the old one."""
    old = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(by, selector).click()
    WebDriverWait(driver, 15).until(expected_conditions.staleness_of(old))
    WebDriverWait(driver, 15).until(lambda d: d.execute_script("return document.readyState") == "complete")


def rows(driver: Any) -> list[str]:
    return [r.text for r in driver.find_elements(By.CSS_SELECTOR, "#events tbody tr.event")]


def row_ids(driver: Any) -> list[str]:
    return [r.get_attribute("id") for r in driver.find_elements(By.CSS_SELECTOR, "#events tbody tr.event")]


def no_csp_violation(driver: Any) -> None:
    messages = [entry["message"] for entry in driver.get_log("browser")]
    assert not [m for m in messages if "Content Security Policy" in m or "Refused to" in m], messages


@needs_chromium
@pytest.mark.e2e
def test_sign_in_filter_page_download_and_look_around(served, browser, tmp_path: Path) -> None:
    base, _ = served
    out = shots(tmp_path)
    browser.get(base + "/console/chains/ch-1/security")
    assert browser.find_element(By.ID, "signin") and not browser.find_elements(By.ID, "events")
    assert "Eva" not in browser.page_source
    browser.save_screenshot(str(out / "console-signin.png"))

    secret = sign_in(browser, base, "boss")
    visited = [browser.current_url]
    assert browser.current_url == base + "/console/", browser.find_element(By.TAG_NAME, "main").text
    assert browser.find_element(By.ID, "who").text == "Boris Owner (boss) · two-step"
    assert "chain ch-1" in browser.find_element(By.ID, "places").text
    browser.save_screenshot(str(out / "console-home.png"))
    cookie = browser.get_cookie("sidecar_console")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict" and cookie["path"] == "/console"
    assert browser.execute_script("return document.cookie") == ""  # HttpOnly: no script could read it anyway

    navigate(browser, By.CSS_SELECTOR, 'a[href="/console/chains/ch-1/security"]')
    visited.append(browser.current_url)
    first, first_ids = rows(browser), row_ids(browser)
    assert len(first) == 50 and any("Eva Stylist" in r for r in first)
    browser.save_screenshot(str(out / "console-security.png"))
    navigate(browser, By.ID, "older")
    visited.append(browser.current_url)
    second = row_ids(browser)
    assert second and not set(second) & set(first_ids)
    assert "cursor=" in browser.current_url
    navigate(browser, By.ID, "newest")
    visited.append(browser.current_url)
    # this very paging was recorded; events reach the log in batches (within about 50 ms), so a
    # page drawn right away may predate it: look again until it shows
    WebDriverWait(browser, 15, poll_frequency=0.3, ignored_exceptions=[StaleElementReferenceException]).until(
        lambda d: any("security_log:read" in r for r in rows(d)) or d.refresh())

    Select(browser.find_element(By.ID, "category")).select_by_value("security")
    browser.find_element(By.ID, "exclude").click()  # hide page views
    navigate(browser, By.ID, "apply")
    visited.append(browser.current_url)
    assert "exclude=security_log" in browser.current_url
    assert all("security_log:read" not in r for r in rows(browser))

    browser.get(base + "/console/chains/ch-1/security")
    Select(browser.find_element(By.ID, "category")).select_by_value("export")
    browser.find_element(By.ID, "action").send_keys("clients.export_finished")
    navigate(browser, By.ID, "apply")
    visited.append(browser.current_url)
    filtered = rows(browser)
    assert len(filtered) == 7 and all("clients.export_finished" in r for r in filtered)
    assert browser.find_element(By.ID, "exclude").is_selected() is False

    browser.find_element(By.ID, "csv").click()
    wait_until(lambda: list(browser.downloads.glob("*.csv")), timeout_s=30, step_s=0.1)
    (csv_file,) = list(browser.downloads.glob("*.csv"))
    lines = csv_file.read_text().splitlines()
    assert lines[0].startswith("id,time,location,chain,employee,category")
    assert len(lines) == 1 + 7 and all(",export,clients.export_finished," in line for line in lines[1:])

    browser.get(base + "/console/chains/ch-1/seats")
    seats = browser.find_element(By.ID, "seats").text
    assert "Eva Stylist" in seats and "owner_exempt" in seats
    browser.save_screenshot(str(out / "console-seats.png"))

    browser.get(base + "/console/locations/l-1/rights")
    Select(browser.find_element(By.ID, "employee")).select_by_value("e-1")
    navigate(browser, By.ID, "show")
    visited.append(browser.current_url)
    held = browser.find_element(By.ID, "rights").text
    assert "appointment:create" in held and "login:password" in held and "billing:manage" not in held
    browser.save_screenshot(str(out / "console-rights.png"))
    no_csp_violation(browser)
    assert all(secret not in url and "token" not in url for url in visited), visited

    navigate(browser, By.CSS_SELECTOR, ".signout button")
    assert browser.find_element(By.ID, "signin")
    assert browser.get_cookie("sidecar_console") is None
    browser.get(base + "/console/chains/ch-1/security")
    assert browser.find_element(By.ID, "signin") and "Eva" not in browser.page_source


@needs_chromium
@pytest.mark.e2e
def test_a_viewer_without_the_right_is_refused(served, browser, tmp_path: Path) -> None:
    base, _ = served
    sign_in(browser, base, "idle")
    assert "no access" in browser.find_element(By.ID, "places").text
    assert not browser.find_elements(By.CSS_SELECTOR, "#places a")
    browser.get(base + "/console/locations/l-1/security")
    assert "security_log:read" in browser.find_element(By.ID, "message").text
    assert not browser.find_elements(By.ID, "events") and "Eva" not in browser.page_source
    browser.save_screenshot(str(shots(tmp_path) / "console-refused.png"))
    browser.get(base + "/console/chains/ch-1/seats")
    assert "billing:manage" in browser.find_element(By.ID, "message").text and "Boris" not in browser.page_source


def test_ci_installs_chromium() -> None:
    """`.ci/run` installs chromium and chromium-driver when missing, so the browser tests run in CI."""
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    assert "chromium-driver" in ci and "chromium" in ci
