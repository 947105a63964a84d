"""Loads interop/browser.html in headless Chromium and waits (bounded, real time) for
its verdict, read through the DevTools protocol. Exit 0 on PASS.

usage: browser_run.py CHROMIUM PAGE_URL [TIMEOUT_SECONDS [BROWSER_FLAG...]]
"""
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

from websockets.asyncio.client import connect


def page_target(port, deadline):
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=2) as r:
                for target in json.load(r):
                    if target.get("type") == "page":
                        return target["webSocketDebuggerUrl"]
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit("chromium did not expose a page target")


async def verdict(debugger_url, deadline):
    async with connect(debugger_url, max_size=2**24) as cdp:
        ident = 0
        while time.monotonic() < deadline:
            ident += 1
            await cdp.send(json.dumps({
                "id": ident,
                "method": "Runtime.evaluate",
                "params": {"expression": "document.getElementById('result') && document.getElementById('result').textContent"},
            }))
            while True:
                reply = json.loads(await cdp.recv())
                if reply.get("id") == ident:
                    break
            text = reply.get("result", {}).get("result", {}).get("value")
            if text and text != "running":
                return text
            await asyncio.sleep(0.2)
    return "FAIL (no verdict in time)"


def main():
    browser, page = sys.argv[1], sys.argv[2]
    timeout = float(sys.argv[3]) if len(sys.argv) > 3 else 60
    deadline = time.monotonic() + timeout
    port = 9223
    # Chromium's helper processes may still write to the profile while it is removed;
    # they are killed as a group and leftovers are not an error.
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        chrome = subprocess.Popen(
            [browser, "--headless", "--no-sandbox", "--disable-gpu",
             f"--remote-debugging-port={port}", f"--user-data-dir={profile}",
             *sys.argv[4:], page],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            text = asyncio.run(verdict(page_target(port, deadline), deadline))
        finally:
            try:
                os.killpg(chrome.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            chrome.wait()
    print(text)
    sys.exit(0 if text.startswith("PASS") else 1)


if __name__ == "__main__":
    main()
