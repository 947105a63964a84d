#!/usr/bin/env python3
"""An independent peer for ws6455: Python's `websockets` (over OpenSSL's `ssl` for wss).

    python_peer.py client URL [--ca FILE] [--expect-deflate]
        talk to a ws6455 server: echoes of text (non-ASCII, empty), binary of 1 B,
        16 KiB + 1 (two TLS records), 1 MiB, compressible text, then close 4000. With
        --ca (wss), once over TLS 1.3 and once over TLS 1.2. With --expect-deflate the
        server must have accepted permessage-deflate (websockets offers it by default).
    python_peer.py server PORT [--cert CERT --key KEY]
        an echo server on 127.0.0.1:PORT (permessage-deflate on, as websockets does by
        default; wss with --cert/--key), for our client.

Exits non-zero on any difference. Every wait is bounded.
"""
import argparse
import asyncio
import ssl

from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

TIMEOUT = 20


async def run_client(url, context, expect_deflate):
    async with connect(url, ssl=context, max_size=None, open_timeout=TIMEOUT) as ws:
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions") or ""
        if expect_deflate and not extensions.startswith("permessage-deflate"):
            raise SystemExit(f"FAIL: permessage-deflate not accepted ({extensions!r})")
        messages = ["héllo ✓", "", bytes([7]), bytes(range(256)) * 64 + b"!",
                    bytes(i * 31 % 256 for i in range(1 << 20)),
                    "the same words again and again " * 4000]
        for sent in messages:
            await ws.send(sent)
            got = await asyncio.wait_for(ws.recv(), TIMEOUT)
            if got != sent:
                raise SystemExit(f"FAIL: sent {type(sent).__name__} of {len(sent)}, "
                                 f"got {type(got).__name__} of {len(got)}")
        await asyncio.wait_for(ws.close(code=4000, reason="done"), TIMEOUT)
        if ws.close_code != 4000:
            raise SystemExit(f"FAIL: close code {ws.close_code}")
    tls = f" over {context.maximum_version.name}" if context else ""
    print(f"PASS: python websockets client{tls}: {len(messages)} echoes, close 4000, "
          f"extensions {extensions or 'none'}")


async def echo(ws):
    async for message in ws:
        await ws.send(message)


async def run_server(port, context):
    async with serve(echo, "127.0.0.1", port, ssl=context, max_size=None):
        print(f"python echo server on 127.0.0.1:{port}", flush=True)
        await asyncio.sleep(120)  # bounded: the script that started us kills us sooner


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="role", required=True)
    client = sub.add_parser("client")
    client.add_argument("url")
    client.add_argument("--ca")
    client.add_argument("--expect-deflate", action="store_true")
    server = sub.add_parser("server")
    server.add_argument("port", type=int)
    server.add_argument("--cert")
    server.add_argument("--key")
    args = parser.parse_args()
    if args.role == "client":
        if args.ca:
            # TLS 1.3 (what anything recent negotiates), then 1.2 (older clients).
            for version in [ssl.TLSVersion.MAXIMUM_SUPPORTED, ssl.TLSVersion.TLSv1_2]:
                context = ssl.create_default_context(cafile=args.ca)
                context.maximum_version = version
                asyncio.run(asyncio.wait_for(
                    run_client(args.url, context, args.expect_deflate), 60))
        else:
            asyncio.run(asyncio.wait_for(run_client(args.url, None, args.expect_deflate), 60))
    else:
        context = None
        if args.cert:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(args.cert, args.key)
        asyncio.run(run_server(args.port, context))


if __name__ == "__main__":
    main()
