"""Helpers for the integration tests: a sandbard process, an HTTP client,
PostgreSQL and Docker helpers. Standard library only."""
