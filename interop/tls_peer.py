#!/usr/bin/env python3
"""An independent wss:// peer for ws6455: Python's `websockets` over OpenSSL (`ssl`).

    tls_peer.py client URL CAFILE       # talk to a ws6455 server over TLS 1.3, then 1.2
    tls_peer.py server PORT CERT KEY    # an echo server on 127.0.0.1:PORT for our client

The client checks text (non-ASCII, empty), binary of 1 B, 16 KiB + 1 (two TLS records)
and 1 MiB, and a clean close with an application code; it exits non-zero on any
difference. Every wait is bounded.
"""
import asyncio
import ssl
import sys

from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

TIMEOUT = 20


async def run_client(url, cafile, maximum_version):
    context = ssl.create_default_context(cafile=cafile)
    context.maximum_version = maximum_version
    async with connect(url, ssl=context, max_size=None, open_timeout=TIMEOUT) as ws:
        version = ws.transport.get_extra_info("ssl_object").version()
        messages = ["héllo wss ✓", "", bytes([7]), bytes(range(256)) * 64 + b"!",
                    bytes(i * 31 % 256 for i in range(1 << 20))]
        for sent in messages:
            await ws.send(sent)
            got = await asyncio.wait_for(ws.recv(), TIMEOUT)
            if got != sent:
                raise SystemExit(f"FAIL: sent {type(sent).__name__} of {len(sent)}, "
                                 f"got {type(got).__name__} of {len(got)}")
        await asyncio.wait_for(ws.close(code=4000, reason="done"), TIMEOUT)
        if ws.close_code != 4000:
            raise SystemExit(f"FAIL: close code {ws.close_code}")
    print(f"PASS: python websockets client over {version}: {len(messages)} echoes, close 4000")


async def echo(ws):
    async for message in ws:
        await ws.send(message)


async def run_server(port, cert, key):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    async with serve(echo, "127.0.0.1", port, ssl=context, max_size=None):
        print(f"python wss echo server on 127.0.0.1:{port}", flush=True)
        await asyncio.sleep(120)  # bounded: the script that started us kills us sooner


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "client":
        # TLS 1.3 (what anything recent negotiates), then 1.2 (older clients).
        for version in [ssl.TLSVersion.MAXIMUM_SUPPORTED, ssl.TLSVersion.TLSv1_2]:
            asyncio.run(asyncio.wait_for(run_client(sys.argv[2], sys.argv[3], version), 60))
    elif len(sys.argv) == 5 and sys.argv[1] == "server":
        asyncio.run(run_server(int(sys.argv[2]), sys.argv[3], sys.argv[4]))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
