"""Runs ws6455-server and the peer echo servers under the same load and prints one
table of medians, with ws6455's ratio to the best peer in each column.

Started by benches/compare.sh, which builds everything first. Each run starts a fresh
server process pinned to CPU 0 and the load generator (target/release/loadgen) pinned to
CPU 1; servers take turns within every workload (interleaved, the order rotated each
repetition) so that a noisy spell of the shared machine hits every server alike.
Only 127.0.0.1 is used; every run is bounded in time.
"""
import argparse
import json
import os
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(ROOT, "target", "release")

SERVERS = {
    "ws6455": [os.path.join(RELEASE, "ws6455-server"), "--mode", "echo", "--log", "error",
               "--listen", "{addr}"],
    "tokio-tungstenite 0.30": [os.path.join(RELEASE, "examples", "peer_tokio_tungstenite"),
                               "{addr}"],
    "fastwebsockets 0.10": [os.path.join(RELEASE, "examples", "peer_fastwebsockets"), "{addr}"],
    # The tokio driver over the same core: io-tokio/examples/echo_server.rs.
    "ws6455-tokio": [os.path.join(RELEASE, "examples", "echo_server"), "{addr}"],
}
OURS = "ws6455"
# Ours, each compared with the best of the others.
OUR_SERVERS = (OURS, "ws6455-tokio")

# Workloads: loadgen arguments, and the columns read from one run: (title, key in
# loadgen's output, scale, higher is better).
WORKLOADS = [
    (["--conns", "100", "--size", "64", "--in-flight", "1"], [
        ("100 x 64 B, 1 in flight (msg/s)", "msg_per_s", 1, True),
        ("server CPU us/msg at 1 in flight", "server_cpu_us_per_msg", 1, False)]),
    (["--conns", "100", "--size", "64", "--in-flight", "16"], [
        ("100 x 64 B, 16 in flight (msg/s)", "msg_per_s", 1, True)]),
    (["--conns", "10", "--size", "16384"], [("10 x 16 KiB (msg/s)", "msg_per_s", 1, True)]),
    (["--conns", "2", "--size", str(1 << 20)], [("2 x 1 MiB (GB/s)", "mb_per_s", 1e-3, True)]),
    (["--conns", "2", "--size", str(16 << 20)], [("2 x 16 MiB (GB/s)", "mb_per_s", 1e-3, True)]),
    (["--conns", "1", "--size", "64"], [
        ("p50 latency, 1 conn (us)", "p50_us", 1, False),
        ("p99 latency, 1 conn (us)", "p99_us", 1, False)]),
]
CONNECT = "connect + handshake (conn/s)"
SYSCALLS = [
    ("server syscalls/msg, 1 in flight", WORKLOADS[0][0], False),
    ("server syscalls/msg, 16 in flight", WORKLOADS[1][0], False),
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pinned(cpus, command):
    return (["taskset", "-c", cpus] if shutil.which("taskset") else []) + command


class Server:
    """One fresh server process for one run; killed when the run ends."""

    def __init__(self, name, threads, cpus):
        self.addr = f"127.0.0.1:{free_port()}"
        port = self.addr.rsplit(":", 1)[1]
        command = [part.format(addr=self.addr, port=port) for part in SERVERS[name]]
        if name == OURS and threads > 1:
            command += ["--threads", str(threads)]
        self.process = subprocess.Popen(pinned(cpus, command), stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        host, port = self.addr.split(":")
        while True:
            try:
                socket.create_connection((host, int(port)), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise SystemExit(f"{name} did not start on {self.addr}")
                time.sleep(0.02)
        # The probe connection must not count as an idle connection.
        time.sleep(0.2)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.process.kill()
        self.process.wait()


def loadgen(mode, server, args, seconds, extra, cpus):
    command = pinned(cpus, [os.path.join(RELEASE, "loadgen"), mode, "--url", f"ws://{server.addr}/",
                            "--server-pid", str(server.process.pid), *args, *extra])
    if mode == "echo":
        command += ["--seconds", str(seconds)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        return None
    return dict(pair.split("=", 1) for pair in done.stdout.split())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per run")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (medians are printed)")
    parser.add_argument("--idle-conns", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=1,
                        help="ws6455-server --threads N (N > 1 pins it to CPUs 0-1, shared "
                             "with the load generator: a scaling check, not a fair race)")
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated subset")
    parser.add_argument("--json", help="also write every run's results to this file")
    parser.add_argument("--peer", action="append", default=[], metavar="NAME=COMMAND",
                        help="one more echo server to compare with (repeatable): COMMAND is "
                             "split like a shell command line, {port} and {addr} (127.0.0.1:PORT) "
                             "in it are replaced; e.g. --peer 'uWebSockets=/opt/uws/echo {port}'")
    opts = parser.parse_args()
    for peer in opts.peer:
        name, sep, command = peer.partition("=")
        if not sep or not name or not command.strip():
            raise SystemExit(f"--peer wants NAME=COMMAND, not {peer!r}")
        if name in SERVERS:
            raise SystemExit(f"--peer {name!r}: that name is taken")
        SERVERS[name] = shlex.split(command)
    servers = [s for s in opts.servers.split(",") if s]
    # Peers named on the command line join the chosen servers.
    servers += [p.partition("=")[0] for p in opts.peer if p.partition("=")[0] not in servers]
    for name in servers:
        if name not in SERVERS:
            raise SystemExit(f"unknown server {name!r}; known: {', '.join(SERVERS)}")
    server_cpus = "0" if opts.threads == 1 else "0,1"
    perf = shutil.which("perf") is not None

    results = {name: {} for name in servers}
    failures = []

    def note(name, column, value):
        results[name].setdefault(column, []).append(value)

    for rep in range(opts.reps):
        order = servers[rep % len(servers):] + servers[:rep % len(servers)]
        for args, metrics in WORKLOADS:
            for name in order:
                with Server(name, opts.threads, server_cpus) as server:
                    out = loadgen("echo", server, args, opts.seconds, [], "1")
                if out is None:
                    failures.append(f"{name}: {' '.join(args)}")
                    print(f"  {name}: {' '.join(args)}: run failed", file=sys.stderr)
                    continue
                print(f"  rep {rep + 1} {name:<24} {' '.join(args)}: "
                      f"{out.get('msg_per_s')} msg/s, {out.get('mb_per_s')} MB/s, "
                      f"p50 {out.get('p50_us')} us, server {out.get('server_cpu_us_per_msg')} us/msg",
                      file=sys.stderr)
                for title, key, scale, _ in metrics:
                    if key in out:
                        note(name, title, float(out[key]) * scale)
        if perf:
            for title, args, _ in SYSCALLS:
                for name in order:
                    with Server(name, opts.threads, server_cpus) as server:
                        out = loadgen("echo", server, args, min(opts.seconds, 1.0),
                                      ["--syscalls"], "1")
                    if out is None:
                        failures.append(f"{name}: {title}")
                    elif "server_syscalls_per_msg" in out:
                        note(name, title, float(out["server_syscalls_per_msg"]))
        for name in order:
            with Server(name, opts.threads, server_cpus) as server:
                out = loadgen("idle", server, ["--conns", str(opts.idle_conns)], 0, [], "1")
            if out is None:
                failures.append(f"{name}: idle")
            else:
                if "bytes_per_conn" in out:
                    note(name, f"memory per idle conn ({opts.idle_conns}) (KiB)",
                         float(out["bytes_per_conn"]) / 1024)
                # Opening the idle connections: TCP connect and the opening handshake.
                if "connect_per_s" in out:
                    note(name, CONNECT, float(out["connect_per_s"]))

    columns = [(t, higher) for _, metrics in WORKLOADS for t, _, _, higher in metrics]
    columns += [(t, higher) for t, _, higher in SYSCALLS]
    columns.append((CONNECT, True))
    columns.append((f"memory per idle conn ({opts.idle_conns}) (KiB)", False))
    columns = [(t, h) for t, h in columns if any(t in results[n] for n in servers)]
    medians = {n: {t: statistics.median(v) for t, v in results[n].items()} for n in servers}

    def fmt(value):
        if value is None:
            return "-"
        if value >= 1000:
            return f"{value:,.0f}"
        if value >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"

    peers = [n for n in servers if n not in OUR_SERVERS]
    print(f"\nMedians of {opts.reps} runs, {opts.seconds} s each; server on CPU {server_cpus}, "
          f"load generator on CPU 1; ws6455 --threads {opts.threads}.\n")
    print("| server | " + " | ".join(t for t, _ in columns) + " |")
    print("| --- |" + " --- |" * len(columns))
    for name in servers:
        print(f"| {name} | " + " | ".join(fmt(medians[name].get(t)) for t, _ in columns) + " |")
    for our in [n for n in OUR_SERVERS if n in servers and peers]:
        cells = []
        for title, higher in columns:
            ours = medians[our].get(title)
            values = [medians[p][title] for p in peers if title in medians[p]]
            if ours is None or not values:
                cells.append("-")
                continue
            best = max(values) if higher else min(values)
            cells.append(f"{ours / best:.2f}x" if best else "-")
        print(f"| {our} / best peer | " + " | ".join(cells) + " |")
    if peers and any(n in servers for n in OUR_SERVERS):
        print("\n(ratios: above 1 is better for msg/s and GB/s; below 1 is better for CPU, "
              "latency, syscalls and memory)")
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump({"options": vars(opts), "runs": results}, f, indent=1)
    if failures:
        raise SystemExit(f"{len(failures)} runs failed: {'; '.join(failures)}")


if __name__ == "__main__":
    main()
