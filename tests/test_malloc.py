"""glibc malloc is told to keep freed tile arrays (fractally.malloc)."""

from __future__ import annotations

import platform

import pytest

from fractally.malloc import keep_freed_memory


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the settings are glibc's; elsewhere they do nothing")
def test_glibc_takes_the_malloc_settings() -> None:
    assert keep_freed_memory()


def test_the_settings_are_applied_by_every_entry_point() -> None:
    """The CLI (render, serve, worker) and both kinds of app factory call it."""
    import inspect

    from fractally import cli, web
    from functions.api import app

    for fn in (cli.main, web.function_app, app.create_app):
        assert "keep_freed_memory()" in inspect.getsource(fn), fn.__qualname__
