"""The dashboard in headless Chromium (Debian's `chromium`, driven by Playwright): a developer and
a privacy officer sign in, walk every page, the officer grants an approval, and the developer
then sees the Tier 2 request. Screenshots go to tests/artifacts/ui/."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.ui_helpers import TIER1_TEXT, TIER2_SECRET, seed, serving

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
SHOTS = Path(__file__).parent / "artifacts" / "ui"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which(CHROMIUM) is None and not Path(CHROMIUM).exists(),
                       reason="needs Debian's chromium (scripts/test.sh installs it)"),
]


def _sign_in(page, base: str, key: str) -> None:
    page.goto(f"{base}/ui/login")
    page.fill("input[name=api_key]", key)
    page.click("button:has-text('Sign in')")
    page.wait_for_url(f"{base}/ui/overview")


def _shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_developer_and_privacy_officer_walk_the_dashboard_and_grant_an_approval(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from playwright.sync_api import expect, sync_playwright

    from tuneloop import Project

    monkeypatch.delenv("TUNELOOP_DATABASE_URL", raising=False)
    root = tmp_path / "proj"
    Project.init(root).close()
    s = seed(root)
    SHOTS.mkdir(parents=True, exist_ok=True)
    with serving(root) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        dev = browser.new_context(viewport={"width": 1360, "height": 900}).new_page()
        pia = browser.new_context(viewport={"width": 1360, "height": 900}).new_page()
        try:
            # A page asked for before signing in comes back after it.
            dev.goto(f"{base}/ui/requests")
            expect(dev.locator("h1")).to_have_text("Sign in")
            _shot(dev, "01-sign-in")
            dev.fill("input[name=api_key]", s.keys["dan"])
            dev.click("button:has-text('Sign in')")
            dev.wait_for_url(f"{base}/ui/requests")
            expect(dev.get_by_test_id("whoami")).to_contain_text("dan · developer")

            walk = [("overview", "Overview"), ("evaluations", "Evaluations"),
                    (f"evaluations/{s.eval_run}", f"Evaluation run {s.eval_run}"),
                    (f"evaluations/{s.eval_run}/examples/ex-2", "Example"),
                    (f"compare?a={s.eval_run}&b={s.tier2_eval_run}", "against run"),
                    ("requests", "Request log"), (f"requests/{s.tier1_request}", "Request"),
                    (f"requests/{s.tier2_request}", "Request"), ("review", "Review queue"),
                    (f"review/{s.review_items['req-bad']}", "Review item"),
                    ("approvals", "Approvals")]
            for n, (path, title) in enumerate(walk, start=2):
                dev.goto(f"{base}/ui/{path}")
                expect(dev.locator("h1")).to_contain_text(title)
                assert TIER2_SECRET not in dev.content(), path
                _shot(dev, f"{n:02d}-developer-{re.sub(r'[^a-z0-9-]+', '-', path)}")
            dev.goto(f"{base}/ui/evaluations/{s.eval_run}")
            expect(dev.locator("svg[aria-label=quality-vs-latency]")).to_be_visible()
            dev.goto(f"{base}/ui/requests/{s.tier1_request}")
            expect(dev.locator("main")).to_contain_text(TIER1_TEXT)
            dev.goto(f"{base}/ui/requests/{s.tier2_request}")
            expect(dev.get_by_test_id("withheld")).to_contain_text("approval #1 is pending")
            dev.goto(f"{base}/ui/audit")
            expect(dev.get_by_test_id("error")).to_contain_text("privacy team and admins")

            _sign_in(pia, base, s.keys["pia"])
            pia.goto(f"{base}/ui/audit")
            expect(pia.get_by_test_id("chain")).to_contain_text("Chain verified")
            _shot(pia, "20-privacy-audit")
            pia.goto(f"{base}/ui/requests/{s.tier2_request}")
            expect(pia.get_by_test_id("output")).to_contain_text(TIER2_SECRET)
            expect(pia.locator("main")).to_contain_text("<EMAIL_ADDRESS_1>")
            _shot(pia, "21-privacy-tier2-request")
            pia.goto(f"{base}/ui/approvals")
            row = pia.locator(f"tr[data-approval='{s.pending_approval}']")
            row.locator("input[name=reason]").fill("view only, for the shipping bug")
            _shot(pia, "22-privacy-approvals")
            row.locator("button:has-text('Grant')").click()
            expect(pia.locator(".flash.ok")).to_contain_text(
                f"Approval #{s.pending_approval} granted")
            _shot(pia, "23-privacy-granted")

            dev.goto(f"{base}/ui/requests/{s.tier2_request}")
            expect(dev.get_by_test_id("output")).to_contain_text(TIER2_SECRET)
            _shot(dev, "24-developer-tier2-after-approval")
            dev.goto(f"{base}/ui/approvals")
            expect(dev.locator(f"tr[data-approval='{s.pending_approval}']")).to_contain_text(
                "granted by pia")
            dev.click("button:has-text('Sign out')")
            expect(dev.locator("h1")).to_have_text("Sign in")
            dev.goto(f"{base}/ui/overview")
            expect(dev.locator("h1")).to_have_text("Sign in")
        finally:
            browser.close()
