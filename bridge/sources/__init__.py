"""Calendar backends: the `CalendarSource` protocol (base.py), the `ChangeDetection` protocol (watching.py), their
Graph and EWS implementations, and `configured.py`, which builds them from the configuration.

SDK model objects never leave this package; everything it returns is a value from `bridge.domain`.
"""
