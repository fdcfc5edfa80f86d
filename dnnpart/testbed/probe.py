"""The link probe: a timed upload through a shaped link, so the prediction uses the rate the link achieves.

`python -m dnnpart.testbed.probe sink PORT` (in the server's namespace) answers each upload with one byte once
it has all of it; `python -m dnnpart.testbed.probe send HOST PORT BYTES` (in a device's namespace) measures the
round trip of an empty message, then the upload: rate = payload bits / (upload time - round trip). Both are
bounded in time (socket timeouts) and print one JSON line.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import time

TIMEOUT_S = 60
HEADER = struct.Struct("!Q")
CHUNK = 64 * 1024
PINGS = 5


def _recv_exact(conn: socket.socket, n: int) -> None:
    while n > 0:
        data = conn.recv(min(CHUNK, n))
        if not data:
            raise ConnectionError("the peer closed mid-message")
        n -= len(data)


def sink(port: int, host: str = "0.0.0.0", connections: int = 64) -> None:
    """Serve up to `connections` probe connections, one at a time, then exit (or when the testbed kills it)."""
    with socket.create_server((host, port)) as server:
        print(json.dumps({"listening": port}), flush=True)
        for _ in range(connections):
            conn, _ = server.accept()
            with conn:
                conn.settimeout(TIMEOUT_S)
                try:
                    while True:
                        head = conn.recv(HEADER.size, socket.MSG_WAITALL)
                        if len(head) < HEADER.size:
                            break
                        _recv_exact(conn, HEADER.unpack(head)[0])
                        conn.sendall(b"k")
                except (ConnectionError, TimeoutError):
                    continue


def _message(conn: socket.socket, payload: bytes) -> float:
    t0 = time.perf_counter()
    conn.sendall(HEADER.pack(len(payload)) + payload)
    if conn.recv(1, socket.MSG_WAITALL) != b"k":
        raise ConnectionError("no acknowledgement")
    return time.perf_counter() - t0


def send(host: str, port: int, nbytes: int, attempts: int = 50) -> dict:
    """Measure one link: round trip (fastest of a few empty messages), then one upload of nbytes."""
    for k in range(attempts):  # the sink may still be starting
        try:
            conn = socket.create_connection((host, port), timeout=TIMEOUT_S)
            break
        except OSError:
            if k == attempts - 1:
                raise
            time.sleep(0.1)
    with conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _message(conn, bytes(16 * 1024))  # warm-up: the connection's congestion window opens
        rtt = min(_message(conn, b"") for _ in range(PINGS))
        upload = _message(conn, bytes(nbytes))
    rate = nbytes * 8 / max(upload - rtt, 1e-9) / 1e6
    return {"bytes": nbytes, "rtt_ms": rtt * 1e3, "upload_ms": upload * 1e3, "achieved_mbps": rate}


def probe_bytes(rate_mbps: float, seconds: float = 1.0) -> int:
    """An upload long enough to measure (about `seconds` at the rate), at least 64 KB, at most 16 MB."""
    return int(min(16 << 20, max(64 * 1024, rate_mbps * 1e6 / 8 * seconds)))


def main(argv: list[str]) -> int:
    if argv[:1] == ["sink"]:
        sink(int(argv[1]))
        return 0
    if argv[:1] == ["send"]:
        print(json.dumps(send(argv[1], int(argv[2]), int(argv[3]))), flush=True)
        return 0
    print("usage: python -m dnnpart.testbed.probe sink PORT | send HOST PORT BYTES", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
