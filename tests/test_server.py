"""Process settings for serving the app: torch threads per concurrent request, one malloc arena."""

from __future__ import annotations

import pytest

from teaching import server


def test_each_concurrent_request_gets_its_share_of_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(server.torch, "set_num_threads", calls.append)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    for cores, expected in ((2, 1), (16, 16 // server.CONCURRENCY), (1, 1), (None, 1)):
        monkeypatch.setattr(server.os, "cpu_count", lambda cores=cores: cores)
        assert server.configure_threads() == expected and calls[-1] == expected
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's choice stands
    n = len(calls)
    assert server.configure_threads() == 0 and len(calls) == n


def test_one_malloc_arena_on_glibc_unless_the_user_chose(monkeypatch: pytest.MonkeyPatch) -> None:
    import platform

    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert server.single_malloc_arena() is False  # the user's setting stands
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert server.single_malloc_arena() is True
