"""Code shared by the scrapers and the API: settings, schema, database access, logging."""

__version__ = "0.1.0"
