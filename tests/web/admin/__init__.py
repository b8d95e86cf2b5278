"""Tests of the admin page: over HTTP (test_session.py, test_mailboxes.py) and in a real browser (test_browser.py)."""
