"""Exchange presence bridge: keeps a workforce system in step with people's Exchange calendars."""

__version__ = "0.1.0"
