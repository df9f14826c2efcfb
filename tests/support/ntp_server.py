#!/usr/bin/env python3
"""A minimal SNTP server (RFC 4330) for the emulated board's clock test.

    python3 tests/support/ntp_server.py --port 0

Binds 127.0.0.1 (the emulated board reaches it as 10.0.2.2 through QEMU's
user network). Once it serves, prints exactly one line on stdout,
`READY PORT`, and flushes it. Every request (mode 3, client) gets one mode 4
answer with the host's clock as a stratum 1 server; every answer is counted
on stderr so a failing test shows whether the board asked at all. SIGTERM or
SIGINT stops it with exit status 0.

Why stratum 1 with reference "LOCL": busybox ntpd ignores servers that say
they are unsynchronised (leap indicator 3 or stratum 0/16), and it needs a
reference time in the past and small root delay and dispersion to trust the
answer; the host's clock is the truth in this test.
"""

import argparse
import signal
import socket
import struct
import sys
import time

NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900-01-01 to 1970-01-01


def ntp_time(t):
    """Unix seconds as a 64-bit NTP timestamp (32.32 fixed point)."""
    secs = int(t) + NTP_EPOCH_OFFSET
    frac = int((t - int(t)) * (1 << 32)) & 0xFFFFFFFF
    return (secs << 32) | frac


def answer(request, received):
    """The mode 4 answer to `request` (at least 48 bytes), or None."""
    if len(request) < 48:
        return None
    first = request[0]
    version = (first >> 3) & 7
    mode = first & 7
    if mode != 3 or version < 1:
        return None
    client_transmit = request[40:48]
    poll = request[2]
    leap = 0
    head = (leap << 6) | (version << 3) | 4
    now = time.time()
    return struct.pack(
        "!BBbbII4sQ8sQQ",
        head,
        1,  # stratum 1: a primary server
        poll,
        -20,  # precision: about a microsecond
        0,  # root delay
        1 << 10,  # root dispersion: 1/64 s in 16.16 fixed point
        b"LOCL",
        ntp_time(now - 16),  # reference time: last set 16 s ago
        client_transmit,  # originate = the client's transmit, as sent
        ntp_time(received),
        ntp_time(time.time()),
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", args.port))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"READY {sock.getsockname()[1]}", flush=True)
    served = 0
    try:
        while True:
            request, peer = sock.recvfrom(512)
            received = time.time()
            reply = answer(request, received)
            if reply is None:
                print(f"ntp_server: ignored {len(request)} bytes from {peer}", file=sys.stderr, flush=True)
                continue
            sock.sendto(reply, peer)
            served += 1
            print(f"ntp_server: answer {served} to {peer}", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
