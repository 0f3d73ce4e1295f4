"""The operator dashboard (`GET /dashboard`) in a real browser: Debian's headless chromium driven by
selenium through chromedriver.

Under load the page lists every stream (status, destination, configuration) and draws the nine charts of
the selected one; once the producer stops and the stream is flushed, every current value it shows is the
server's counter exactly (IncomingRecords and DeliveredRecords = the records the producer got
acknowledged). The selection lives in the URL hash (`#stream=NAME`), survives a reload, follows a click on
a row, and falls back to another stream when the selected one is deleted. With no stream the page says how
to create one and picks up a new stream by itself; it embeds every asset (no URL of another host); when
the server stops answering it shows an error banner and keeps polling.

A screenshot of the page under load is saved as `dashboard.png` in $SPILLWAY_ARTIFACTS (default:
`target/test-artifacts/`).
"""

import json
import os
import re
import urllib.request
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from conftest import ROOT, FollowingProducers, create_s3_stream, eventually, flush

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WIDGETS = ["incoming-records", "incoming-bytes", "delivery", "freshness", "bytes-delivered", "processing",
           "processing-duration", "stored", "errors"]
# Every counter of the JSON's `totals` the page shows as a current value (`data-metric`).
SHOWN = ["IncomingRecords", "IncomingBytes", "ThrottledRecords", "DeliveredRecords", "DeliveredBytes",
         "DeliverySuccess", "DeliveryFailures", "FailedRecords", "DataFreshness", "ProcessingInvocations",
         "ProcessingErrors", "ProcessingDurationSum", "ProcessingDurationCount", "StoredObjects", "StoredBytes",
         "ErrorObjects", "ErrorBytes"]
BATCH = 50


@pytest.fixture
def browser(tmp_path):
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        pytest.skip(f"the dashboard test needs Debian's chromium and chromium-driver; missing: {', '.join(missing)} "
                    "(scripts/test installs them)")
    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1400,1000", f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: selenium-manager never runs (it would try to download a driver).
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


class Producer(FollowingProducers):
    """Batches of BATCH numbered JSON records, with a short pause between batches."""

    pause = 0.02

    def _batch(self, i, n, rng):
        return [f"{i}-{n + k}" for k in range(BATCH)]

    def _record(self, item, rng):
        return json.dumps({"id": item, "pad": "x" * rng.randint(0, 64)}).encode() + b"\n"


def open_dashboard(driver, server, suffix=""):
    driver.get(f"{server.endpoint}/dashboard{suffix}")
    eventually(lambda: driver.execute_script("return document.body.dataset.ready") == "1",
               "the dashboard's first render")


def shown_values(driver):
    """{metric: (data-value, text)} of the selected stream's current values."""
    return driver.execute_script("""
        const out = {};
        for (const e of document.querySelectorAll('#detail [data-metric]')) {
          out[e.dataset.metric] = [e.dataset.value, e.textContent];
        }
        return out;""")


def shown(driver, metric):
    return float(shown_values(driver)[metric][0])


def stream_rows(driver):
    """[(name, status, row text, selected)] of the stream list, in order."""
    return driver.execute_script("""
        return [...document.querySelectorAll('#stream-table tbody tr')].map(tr => [tr.dataset.stream,
            tr.querySelector('.badge').textContent, tr.textContent, tr.classList.contains('selected')]);""")


def selected(driver):
    return driver.execute_script("""
        return [document.body.dataset.selected, document.getElementById('selected-name').textContent,
                [...document.querySelectorAll('#stream-table tr.selected')].map(tr => tr.dataset.stream)];""")


def charts(driver):
    """{widget: {title, lines: [[metric, points drawn, largest value drawn]], nodata}}: what each chart draws."""
    return driver.execute_script("""
        const out = {};
        for (const w of document.querySelectorAll('[data-widget]')) {
          const lines = [...w.querySelectorAll('svg path.line')].map(p => {
            const points = (p.getAttribute('d') || '').match(/[ML]/g) || [];
            return [p.dataset.line, p.getAttribute('visibility') === 'hidden' ? 0 : points.length, +p.dataset.max];
          });
          out[w.dataset.widget] = {title: w.querySelector('h3').textContent, lines,
                                   nodata: w.querySelector('svg .nodata').textContent};
        }
        return out;""")


def dashboard_json(server, stream):
    with urllib.request.urlopen(f"{server.endpoint}/_spillway/dashboard?stream={stream}", timeout=10) as r:
        return json.loads(r.read())


def severe_console_messages(driver):
    try:
        logs = driver.get_log("browser")
    except Exception:  # noqa: BLE001 - a driver without the log endpoint: nothing to check
        return []
    return [entry["message"] for entry in logs if entry.get("level") == "SEVERE"]


def artifact_dir():
    d = Path(os.environ.get("SPILLWAY_ARTIFACTS") or ROOT / "target" / "test-artifacts")
    d.mkdir(parents=True, exist_ok=True)
    return d


def test_dashboard_under_load_shows_exact_counters_and_nine_charts(server, firehose, browser):
    create_s3_stream(firehose, "clicks", Prefix="clicks/")
    create_s3_stream(firehose, "orders", bucket="orders-bucket", Prefix="orders/",
                     BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 60})
    open_dashboard(browser, server)
    # The server's default selection is the first stream by name.
    eventually(lambda: selected(browser) == ["clicks", "clicks", ["clicks"]], "clicks selected by default")

    producer = Producer("clicks", seed=7)
    producer.follow(server)
    producer.start()
    try:
        # Live under load: the page's IncomingRecords grows through several renders, and the server has
        # taken enough samples for every rate chart to have points.
        seen, renders = set(), set()

        def live():
            seen.add(shown(browser, "IncomingRecords"))
            renders.add(browser.execute_script("return document.body.dataset.updated"))
            lines = charts(browser)["incoming-records"]["lines"]
            return len(seen - {0.0}) >= 3 and len(renders) >= 4 and lines[0][1] >= 3 and producer.count() >= 500

        eventually(live, "the dashboard to follow the producer", timeout=60)
        under_load = charts(browser)
    finally:
        producer.stop()
    acked = producer.count()
    assert acked >= 500

    # While records flow, the IncomingRecords chart draws a positive rate.
    assert under_load["incoming-records"]["lines"][0][2] > 0, under_load["incoming-records"]

    flush(server, "clicks")

    def settled():
        v = shown_values(browser)
        return (float(v["IncomingRecords"][0]) == acked and float(v["DeliveredRecords"][0]) == acked
                and float(v["StoredObjects"][0]) >= 1 and float(v["StoredBytes"][0]) > 0
                and float(v["DataFreshness"][0]) == 0)

    eventually(settled, f"the dashboard to show {acked} records incoming and delivered", timeout=60)
    values = shown_values(browser)
    assert values["IncomingRecords"][1] == f"{acked:,}"
    assert values["DeliveredRecords"][1] == f"{acked:,}"
    assert re.fullmatch(r"\d{1,3}(,\d{3})*", values["StoredBytes"][1]), values["StoredBytes"]

    # Every value shown is the server's total (nothing changes any more: no producer, nothing buffered).
    def same_as_server():
        totals = next(s for s in dashboard_json(server, "clicks")["streams"] if s["name"] == "clicks")["totals"]
        v = shown_values(browser)
        assert sorted(v) == sorted(SHOWN), sorted(v)
        return all(float(v[m][0]) == totals[m] for m in SHOWN)

    eventually(same_as_server, "every current value to equal the server's totals")
    # Every stream carries its ARN (shown for the selected one) and its configuration as a summary only: the page
    # polls every few seconds and never needs the whole DescribeDeliveryStream answer.
    by_name = {s["name"]: s for s in dashboard_json(server, "clicks")["streams"]}
    assert by_name["orders"]["arn"].endswith(":deliverystream/orders"), by_name["orders"]
    assert all("description" not in s for s in by_name.values()), by_name
    assert by_name["clicks"]["arn"] in browser.find_element(By.ID, "selected-sub").text

    # The stream list: both streams, ACTIVE, with their destination and configuration.
    rows = stream_rows(browser)
    assert [(name, status) for name, status, _, _ in rows] == [("clicks", "ACTIVE"), ("orders", "ACTIVE")], rows
    assert "arn:aws:s3:::test-bucket" in rows[0][2] and "clicks/" in rows[0][2]
    assert "arn:aws:s3:::orders-bucket" in rows[1][2] and "orders/" in rows[1][2] and "1 MiB or 60 s" in rows[1][2]

    # Nine widgets, each drawing its chart; the processing duration has nothing to average (no processor).
    drawn = charts(browser)
    assert sorted(drawn) == sorted(WIDGETS)
    for widget, chart in drawn.items():
        if widget == "processing-duration":
            assert chart["lines"][0][1] == 0 and chart["nodata"], chart
        else:
            assert all(points >= 2 for _, points, _ in chart["lines"]), (widget, chart)
    assert drawn["delivery"]["title"] == "DeliveryToS3.Records"
    assert drawn["freshness"]["title"] == "DeliveryToS3.DataFreshness"
    assert drawn["bytes-delivered"]["title"] == "DeliveryToS3.Bytes"
    assert not browser.find_element(By.ID, "error-banner").is_displayed()

    shot = artifact_dir() / "dashboard.png"
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # The selection is in the URL hash: set it, reload with it, change it with a click on a row.
    browser.get(f"{server.endpoint}/dashboard#stream=orders")
    eventually(lambda: selected(browser) == ["orders", "orders", ["orders"]], "orders selected by the hash")
    eventually(lambda: shown(browser, "IncomingRecords") == 0, "the counters of orders")
    browser.refresh()
    eventually(lambda: browser.execute_script("return document.body.dataset.ready") == "1", "the reload")
    eventually(lambda: selected(browser) == ["orders", "orders", ["orders"]], "orders selected after a reload")
    browser.find_element(By.CSS_SELECTOR, '#stream-table tr[data-stream="clicks"]').click()
    eventually(lambda: selected(browser) == ["clicks", "clicks", ["clicks"]], "clicks selected by a click")
    assert browser.execute_script("return location.hash") == "#stream=clicks"
    eventually(lambda: shown(browser, "IncomingRecords") == acked, "the counters of clicks again")

    # The selected stream is deleted between two polls: the page shows what is left.
    browser.get(f"{server.endpoint}/dashboard#stream=orders")
    eventually(lambda: selected(browser)[0] == "orders", "orders selected again")
    firehose.delete_delivery_stream(DeliveryStreamName="orders")
    eventually(lambda: [r[0] for r in stream_rows(browser)] == ["clicks"], "orders to leave the list")
    eventually(lambda: selected(browser) == ["clicks", "clicks", ["clicks"]], "the page to fall back to clicks")
    assert "orders" in browser.find_element(By.ID, "notice").text

    assert severe_console_messages(browser) == []


def test_dashboard_without_streams_is_self_contained_and_reports_errors(server, firehose, browser):
    for path in ("/dashboard", "/dashboard/"):
        with urllib.request.urlopen(f"{server.endpoint}{path}", timeout=10) as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/html")
            html = r.read().decode()
    # No asset from the network: no URL of any host (an SVG namespace is a name, never fetched), and no
    # src/href/url()/@import that leaves the page.
    hosts = {m.group(1) for m in re.finditer(r"https?://([^/\s\"'<>)]+)", html)}
    assert hosts <= {"www.w3.org"}, hosts
    for ref in re.findall(r"""(?:src|href)\s*=\s*["']?([^"'\s>]+)""", html, re.I):
        assert not re.match(r"(https?:)?//", ref, re.I), ref
    assert not re.search(r"@import|url\(\s*[\"']?(https?:)?//", html, re.I)

    open_dashboard(browser, server)
    empty = browser.find_element(By.ID, "empty")
    assert empty.is_displayed()
    assert "no delivery streams yet" in empty.text.lower()
    assert "create-delivery-stream" in empty.text and server.endpoint in empty.text
    assert not browser.find_element(By.ID, "detail").is_displayed()
    assert severe_console_messages(browser) == []

    # A new stream shows up by itself, selected.
    create_s3_stream(firehose, "first")
    eventually(lambda: selected(browser) == ["first", "first", ["first"]], "the new stream on the page")
    assert not browser.find_element(By.ID, "empty").is_displayed()
    assert [r[0] for r in stream_rows(browser)] == ["first"]

    # The server goes away: a visible error, and the page keeps polling.
    server.kill()
    banner = browser.find_element(By.ID, "error-banner")
    eventually(banner.is_displayed, "the error banner")
    assert "/_spillway/dashboard" in banner.text
    eventually(lambda: int(browser.execute_script("return document.body.dataset.errors || 0")) >= 3,
               "the page to keep polling")
