"""Retries on UNAVAILABLE (a server that starts late) and the bearer token, each with a
server of its own."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import mobilesam_client as mc
from conftest import Server, free_port, server_paths

PATIENT = mc.Retry(attempts=400, initial_backoff=0.1, max_backoff=0.5)


def test_no_server_is_unavailable_after_the_retries():
    port = free_port()
    start = time.monotonic()
    with mc.Client(f"127.0.0.1:{port}", retry=mc.Retry(attempts=3, initial_backoff=0.05, max_backoff=0.1)) as c:
        with pytest.raises(mc.Unavailable):
            c.session(b"\x89PNG not really")
        with pytest.raises(mc.Unavailable):
            c.model_info()
    assert time.monotonic() - start < 30


def test_session_waits_for_a_server_that_starts_late(images):
    server_paths()  # skip without a server binary
    port = free_port()
    result: dict = {}

    def open_session():
        try:
            with mc.Client(f"127.0.0.1:{port}", retry=PATIENT, timeout=300) as c:
                with c.session(images["frame_0"]) as s:
                    result["masks"] = s.predict(points=[120, 80])
        except BaseException as e:  # noqa: BLE001
            result["error"] = e

    opener = threading.Thread(target=open_session)
    opener.start()
    time.sleep(1.5)  # the client is retrying by now
    server = Server(addr=f"127.0.0.1:{port}")
    try:
        opener.join(300)
        assert "error" not in result, result.get("error")
        assert len(result["masks"].objects) == 1
    finally:
        assert server.stop() == 0


def test_async_session_and_model_info_wait_for_a_late_server(images):
    server_paths()
    port = free_port()

    async def main():
        async with mc.AsyncClient(f"127.0.0.1:{port}", retry=PATIENT, timeout=300) as c:
            async with c.session(images["frame_0"]) as s:
                assert len((await s.predict(points=[120, 80])).objects) == 1
            return await c.model_info()

    holder: dict = {}
    thread = threading.Thread(target=lambda: holder.setdefault("info", asyncio.run(main())))
    thread.start()
    time.sleep(1.5)
    server = Server(addr=f"127.0.0.1:{port}")
    try:
        thread.join(300)
        assert holder["info"].name == "mobile_sam"
    finally:
        assert server.stop() == 0


def test_bearer_token(tmp_path, images):
    server_paths()
    token_file = tmp_path / "token"
    token_file.write_text("py-client-s3cret\n")
    server = Server(extra_args=("--auth-token-file", str(token_file)))
    try:
        with mc.Client(server.addr, token="py-client-s3cret") as c:
            assert c.model_info().name == "mobile_sam"
            with c.session(images["frame_0"]) as s:
                assert len(s.predict(points=[120, 80]).objects) == 1
        with mc.Client(server.addr, token="wrong") as c:
            with pytest.raises(mc.Unauthenticated):
                c.model_info()
            with pytest.raises(mc.Unauthenticated):
                c.session(images["frame_0"])
        with mc.Client(server.addr) as c:
            with pytest.raises(mc.Unauthenticated):
                c.model_info()
    finally:
        assert server.stop() == 0
