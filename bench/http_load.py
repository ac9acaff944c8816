"""A closed-loop HTTP/1.1 load generator, as `wrk` would drive a server: N keep-alive connections.

Each connection sends its next request as soon as the previous answer is read, so N is the number
of concurrent clients. Bodies are encoded before the clock starts and answers are read by
`content-length` without parsing them, so the generator costs the server's machine as little CPU
as a C tool would (no `wrk` can be installed here). It runs in its own process (`python
bench/http_load.py ...`, or `run_load` from a benchmark) so it never shares the server's GIL.

Prints one JSON object: per-request latencies (seconds), status counts and wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import time
import urllib.parse
from collections import Counter

_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)


def _request(url: str, body: bytes) -> bytes:
    parts = urllib.parse.urlsplit(url)
    head = (
        f"POST {parts.path} HTTP/1.1\r\nhost: {parts.netloc}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


async def _client(url: str, requests: list[bytes], count: int, offset: int, latencies: list, statuses: Counter):
    parts = urllib.parse.urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        for i in range(count):
            start = time.perf_counter()
            writer.write(requests[(offset + i) % len(requests)])
            head = await reader.readuntil(b"\r\n\r\n")
            length = _LENGTH.search(head)
            await reader.readexactly(int(length[1]) if length else 0)
            latencies.append(time.perf_counter() - start)
            statuses[int(head[9:12])] += 1
    finally:
        writer.close()


async def _load(url: str, bodies: list[bytes], clients: int, requests_per_client: int) -> dict:
    requests = [_request(url, body) for body in bodies]
    latencies: list[float] = []
    statuses: Counter = Counter()
    start = time.perf_counter()
    await asyncio.gather(
        *(
            _client(url, requests, requests_per_client, i * requests_per_client, latencies, statuses)
            for i in range(clients)
        )
    )
    wall = time.perf_counter() - start
    return {"latencies": latencies, "statuses": dict(statuses), "wall_s": wall}


def run_load(url: str, bodies_path: str, clients: int, requests_per_client: int) -> dict:
    """Runs the generator in a child process against `url` (a `:predict` URL).

    Args:
        url: the full URL to POST to.
        bodies_path: a file of JSON request bodies, one per line (used round-robin).
        clients: concurrent keep-alive connections.
        requests_per_client: requests each connection sends.
    """
    command = [sys.executable, __file__, url, bodies_path, str(clients), str(requests_per_client)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url", help="the URL to POST to")
    parser.add_argument("bodies", help="a file of request bodies, one JSON document per line")
    parser.add_argument("clients", type=int)
    parser.add_argument("requests", type=int, help="requests per client")
    args = parser.parse_args()
    with open(args.bodies, "rb") as file:
        bodies = [line.rstrip(b"\n") for line in file if line.strip()]
    try:
        from uvloop import run
    except ImportError:
        run = asyncio.run
    print(json.dumps(run(_load(args.url, bodies, args.clients, args.requests))))


if __name__ == "__main__":
    main()
