"""A local Durable Functions backend: SQLite task hub, replay through the real Python SDK."""
