#!/usr/bin/env python3
"""CPU cost of NAT keep-alive pings (issue 17): start sipreg on one core, register
BINDINGS UDP bindings from a few dozen sockets (kept open, never read, so pings land
in their receive buffers and the kernel drops the rest: no ICMP), let the pinger run
one interval, then read the server's CPU (utime, stime from /proc) and its
`sipreg_nat_pings_sent_total` over WINDOW seconds. Run once per ping method and once
with pings off (the baseline: same table, timers only); `options-answered` forks a
process that answers every OPTIONS from the socket it reached (200, the Via, From, To,
Call-ID and CSeq echoed), so the server also parses and matches the answers.

usage: perf/nat_ping_cost.py SIPREG_BINARY [BINDINGS] [INTERVAL_S] [WINDOW_S] [CPU]
                             [off,crlf,options,options-answered]
"""

import multiprocessing
import os
import selectors
import socket
import subprocess
import sys
import time
import urllib.request

SOCKETS = 64
WINDOW_REGISTERS = 256  # REGISTERs in flight at most while filling the table


def free_port(kind):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def metric(admin, name):
    text = urllib.request.urlopen(f"http://{admin}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return int(float(line.split()[-1]))
    return 0


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])  # utime, stime


def fill(server, n):
    socks = []
    for _ in range(SOCKETS):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        socks.append(s)
    answered, sent = 0, 0
    start = time.time()
    while answered < n:
        while sent < n and sent - answered < WINDOW_REGISTERS:
            s = socks[sent % SOCKETS]
            local = s.getsockname()
            msg = (
                f"REGISTER sip:example.com SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {local[0]}:{local[1]};branch=z9hG4bK-f{sent};rport\r\n"
                f"Max-Forwards: 70\r\nTo: <sip:nat{sent}@example.com>\r\n"
                f"From: <sip:nat{sent}@example.com>;tag=f{sent}\r\n"
                f"Call-ID: fill-{sent}\r\nCSeq: 1 REGISTER\r\n"
                f"Contact: <sip:u{sent}@192.168.1.20:5060>\r\nExpires: 3600\r\n"
                f"Content-Length: 0\r\n\r\n"
            )
            s.sendto(msg.encode(), server)
            sent += 1
        progress = False
        for s in socks:
            try:
                while True:
                    s.recv(65536)
                    answered += 1
                    progress = True
            except BlockingIOError:
                pass
        if not progress:
            time.sleep(0.001)
            if time.time() - start > 300:
                sys.exit(f"filled {answered} of {n} in 300 s; giving up")
    return socks, time.time() - start


def answer(socks):
    """Answer every OPTIONS on `socks` (runs in a child process until killed)."""
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    echo = (b"Via:", b"From:", b"To:", b"Call-ID:", b"CSeq:")
    while True:
        for key, _ in sel.select():
            s = key.fileobj
            try:
                while True:
                    data, sender = s.recvfrom(65536)
                    if not data.startswith(b"OPTIONS "):
                        continue
                    head = [l for l in data.split(b"\r\n") if l.startswith(echo)]
                    reply = b"SIP/2.0 200 OK\r\n" + b"\r\n".join(head) + b"\r\nContent-Length: 0\r\n\r\n"
                    s.sendto(reply, sender)
            except BlockingIOError:
                pass


def run(binary, bindings, interval, window, cpu, method):
    port, admin_port = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
    admin = f"127.0.0.1:{admin_port}"
    args = [binary, "--listen", f"127.0.0.1:{port}", "--cpus", cpu, "--admin", admin,
            "--no-persist", "--log-level", "warn", "--stats-interval", "0",
            "--nat-ping-interval", str(interval if method != "off" else 0)]
    if method != "off":
        ping = "options" if method == "options-answered" else method
        args += ["--nat-ping-method", ping, "--nat-ping-max-lost", "100"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                metric(admin, "sipreg_ready")
                break
            except OSError:
                time.sleep(0.1)
        socks, took = fill(("127.0.0.1", port), bindings)
        answerer = None
        if method == "options-answered":
            answerer = multiprocessing.Process(target=answer, args=(socks,), daemon=True)
            answerer.start()
        time.sleep(interval + 1)  # one whole round, so every binding is in the walk
        answers0 = metric(admin, "sipreg_nat_ping_answers_total")
        pings0, (u0, s0), t0 = metric(admin, "sipreg_nat_pings_sent_total"), cpu_ticks(proc.pid), time.time()
        time.sleep(window)
        pings1, (u1, s1), t1 = metric(admin, "sipreg_nat_pings_sent_total"), cpu_ticks(proc.pid), time.time()
        answers = (metric(admin, "sipreg_nat_ping_answers_total") - answers0) / (t1 - t0)
        if answerer is not None:
            answerer.kill()
        hz = os.sysconf("SC_CLK_TCK")
        secs = t1 - t0
        user, system = (u1 - u0) / hz / secs * 100, (s1 - s0) / hz / secs * 100
        rate = (pings1 - pings0) / secs
        print(f"{method:8} bindings={bindings} interval={interval}s fill={took:.1f}s "
              f"pings/s={rate:.0f} cpu user={user:.2f}% sys={system:.2f}% "
              f"total={user + system:.2f}% over {secs:.1f}s answers/s={answers:.0f}", flush=True)
        for s in socks:
            s.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main():
    binary = sys.argv[1]
    bindings = int(sys.argv[2]) if len(sys.argv) > 2 else 200_000
    interval = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    window = int(sys.argv[4]) if len(sys.argv) > 4 else 20
    cpu = sys.argv[5] if len(sys.argv) > 5 else "1"
    methods = sys.argv[6].split(",") if len(sys.argv) > 6 else ["off", "crlf", "options"]
    print(f"load average before: {os.getloadavg()}", flush=True)
    for method in methods:
        run(binary, bindings, interval, window, cpu, method)


if __name__ == "__main__":
    main()
