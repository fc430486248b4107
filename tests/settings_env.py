"""Test settings: this test process reads a given environment as its mlpipe settings."""

from __future__ import annotations

from collections.abc import Iterator

from shared.settings import reset_settings


def use_settings(env: dict[str, str], monkeypatch) -> Iterator[None]:
    """For fixtures (`yield from`): set `env`, read settings afresh, and afresh again after the test."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    reset_settings()
    yield
    reset_settings()
