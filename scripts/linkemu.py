#!/usr/bin/env python3
"""A userspace link emulator: a netem replacement at the IP layer (issue 7).

It owns two TUN devices, one in each of two network namespaces, joined as a
point-to-point link (A: 10.x.y.1 <-> B: 10.x.y.2), and forwards every IP packet
between them through a model of a real link, independently in each direction:

  enqueue (tail drop when the queue holds more than --queue-bytes)
    -> serialization at --rate bit/s (one packet after another)
    -> random loss with probability --loss (the packet used the link, then is lost)
    -> one-way propagation delay --delay-ms
    -> written into the other namespace's TUN device.

TCP on either side therefore sees a real bottleneck, delay and loss, and retransmits.
It also counts the bytes on the wire: every IP packet serialized (IP, TCP and MQTT
headers, ACKs and retransmissions included; no link-layer framing).

Control, one command per line on stdin, one JSON line per answer on stdout:
  stats                    counters per direction ("up" = A -> B, "down" = B -> A)
  reset                    zero the counters
  set rate=BPS ratedown=BPS delay=MS loss=P queue=BYTES   (any subset) change the link
  quit
Its first stdout line is {"ready": ...} once both devices are up and addressed.

Needs root (CAP_NET_ADMIN), /dev/net/tun and iproute2; the namespaces must exist
(ip netns add). Python 3.8+, standard library only.
"""

import argparse
import collections
import ctypes
import fcntl
import json
import os
import random
import select
import struct
import subprocess
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
CLONE_NEWNET = 0x40000000

libc = ctypes.CDLL(None, use_errno=True)


def setns(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


def open_tun(name):
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def ip(ns, *args):
    subprocess.run(["ip", "-n", ns, *args], check=True, capture_output=True)


class Direction:
    """One direction of the link: a bounded FIFO, a serializer and a delay line."""

    def __init__(self, link, out_fd, down=False):
        self.link = link
        self.down = down
        self.out_fd = out_fd
        self.serializing = collections.deque()  # (departure time, packet)
        self.flight = collections.deque()  # (arrival time, packet)
        self.last_departure = 0.0
        self.queued_bytes = 0
        self.zero()

    def zero(self):
        self.c = {
            "packets": 0,  # serialized onto the wire
            "bytes": 0,
            "lost": 0,  # random loss
            "dropped": 0,  # queue full (tail drop)
            "delivered": 0,
            "maxQueueBytes": 0,
        }

    def offer(self, pkt, now):
        n = len(pkt)
        if self.queued_bytes + n > self.link.queue_bytes:
            self.c["dropped"] += 1
            return
        start = max(now, self.last_departure)
        rate = self.link.rate_down if self.down else self.link.rate
        self.last_departure = start + n * 8.0 / rate
        self.serializing.append((self.last_departure, pkt))
        self.queued_bytes += n
        self.c["maxQueueBytes"] = max(self.c["maxQueueBytes"], self.queued_bytes)

    def advance(self, now):
        while self.serializing and self.serializing[0][0] <= now:
            t, pkt = self.serializing.popleft()
            self.queued_bytes -= len(pkt)
            self.c["packets"] += 1
            self.c["bytes"] += len(pkt)
            if self.link.loss > 0 and self.link.rng.random() < self.link.loss:
                self.c["lost"] += 1
                continue
            self.flight.append((t + self.link.delay, pkt))
        while self.flight and self.flight[0][0] <= now:
            _, pkt = self.flight.popleft()
            try:
                os.write(self.out_fd, pkt)
                self.c["delivered"] += 1
            except BlockingIOError:
                self.c["dropped"] += 1

    def next_event(self):
        ts = [q[0][0] for q in (self.serializing, self.flight) if q]
        return min(ts) if ts else None


class Link:
    def __init__(self, rate, rate_down, delay_ms, loss, queue_bytes, seed):
        self.rate = float(rate)
        self.rate_down = float(rate_down or rate)
        self.delay = delay_ms / 1000.0
        self.loss = float(loss)
        self.queue_bytes = int(queue_bytes)
        self.rng = random.Random(seed)

    def describe(self):
        return {
            "rateBps": self.rate,
            "rateDownBps": self.rate_down,
            "delayMs": self.delay * 1000.0,
            "loss": self.loss,
            "queueBytes": self.queue_bytes,
        }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ns-a", required=True, help="namespace of side A (the device)")
    ap.add_argument("--ns-b", required=True, help="namespace of side B (the edge)")
    ap.add_argument("--if-a", default="sflink0")
    ap.add_argument("--if-b", default="sflink1")
    ap.add_argument("--addr-a", required=True)
    ap.add_argument("--addr-b", required=True)
    ap.add_argument("--rate", type=float, required=True, help="bit/s, A -> B (and B -> A unless --rate-down)")
    ap.add_argument("--rate-down", type=float, default=0.0, help="bit/s, B -> A (0: same as --rate)")
    ap.add_argument("--delay-ms", type=float, default=0.0, help="one-way delay, each direction")
    ap.add_argument("--loss", type=float, default=0.0, help="loss probability, each direction")
    ap.add_argument("--queue-bytes", type=int, default=0, help="queue limit (0: 0.5 s of rate, >= 32 KiB)")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()

    queue = a.queue_bytes or max(32768, int(a.rate / 8 * 0.5))
    link = Link(a.rate, a.rate_down, a.delay_ms, a.loss, queue, a.seed)
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    setns(f"/var/run/netns/{a.ns_a}")
    fa = open_tun(a.if_a)
    setns(f"/var/run/netns/{a.ns_b}")
    fb = open_tun(a.if_b)
    if libc.setns(home, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns back")
    os.close(home)
    for ns, dev, me, peer in ((a.ns_a, a.if_a, a.addr_a, a.addr_b), (a.ns_b, a.if_b, a.addr_b, a.addr_a)):
        ip(ns, "link", "set", "lo", "up")
        ip(ns, "addr", "add", me, "peer", peer, "dev", dev)
        ip(ns, "link", "set", dev, "up")

    up = Direction(link, fb)  # A -> B
    down = Direction(link, fa, down=True)  # B -> A
    out = sys.stdout

    def say(obj):
        out.write(json.dumps(obj) + "\n")
        out.flush()

    say({"ready": True, "link": link.describe(), "a": [a.ns_a, a.if_a, a.addr_a], "b": [a.ns_b, a.if_b, a.addr_b]})
    stdin = sys.stdin.fileno()
    os.set_blocking(stdin, False)
    buf = b""
    running = True
    while running:
        now = time.monotonic()
        up.advance(now)
        down.advance(now)
        nxt = [t for t in (up.next_event(), down.next_event()) if t is not None]
        timeout = max(0.0, min(nxt) - time.monotonic()) if nxt else 1.0
        r, _, _ = select.select([fa, fb, stdin], [], [], timeout)
        now = time.monotonic()
        for fd, d in ((fa, up), (fb, down)):
            if fd in r:
                for _ in range(256):
                    try:
                        pkt = os.read(fd, 65536)
                    except BlockingIOError:
                        break
                    d.offer(pkt, now)
        if stdin in r:
            chunk = os.read(stdin, 4096)
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                words = line.decode().split()
                if not words:
                    continue
                cmd = words[0]
                if cmd == "stats":
                    say({"up": dict(up.c), "down": dict(down.c), "link": link.describe()})
                elif cmd == "reset":
                    up.zero()
                    down.zero()
                    say({"reset": True})
                elif cmd == "set":
                    for kv in words[1:]:
                        k, v = kv.split("=", 1)
                        if k == "rate":
                            link.rate = float(v)
                        elif k == "ratedown":
                            link.rate_down = float(v)
                        elif k == "delay":
                            link.delay = float(v) / 1000.0
                        elif k == "loss":
                            link.loss = float(v)
                        elif k == "queue":
                            link.queue_bytes = int(v)
                        else:
                            say({"error": f"unknown setting {k}"})
                    say({"link": link.describe()})
                elif cmd == "quit":
                    running = False
                else:
                    say({"error": f"unknown command {cmd}"})
    os.close(fa)
    os.close(fb)


if __name__ == "__main__":
    main()
