"""Calendar backends: the `CalendarSource` protocol (base.py) and its Graph and EWS implementations.

SDK model objects never leave this package; everything it returns is a value from `bridge.domain`.
"""
