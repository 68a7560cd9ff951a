"""The tray icon and the dashboard window: an HTTP client of the agent; imports nothing from ``agent``."""
