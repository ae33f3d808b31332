"""A paced load on the SMS webhook from a process of its own, as the gateway
would send it, so the client's own work is not counted in the worker's
latency (the benchmark's stand-in peers run in the benchmark's process).

    python -m bench.webhook_load URL RATE SECONDS PHONE [SIGNING_KEY]

Sends RATE requests per second for SECONDS (each an SMS whose gateway id is
``bench-<n>``) with aiohttp, one every 1/RATE s whether or not earlier ones
were answered, and prints one JSON object: the latencies in seconds and how
many requests failed. Loopback only; bounded by RATE x SECONDS requests.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import aiohttp

from standins import webhook_body, webhook_headers


async def main(url: str, rate: float, seconds: float, phone: str, key: str | None) -> None:
    total = int(rate * seconds)
    latencies: list[float] = []
    failures = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def one(i: int) -> None:
            nonlocal failures
            body = json.dumps(webhook_body(f"hello {i}?", phone, sms_id=f"bench-{i}")).encode()
            start = time.monotonic()
            try:
                async with session.post(url, data=body, headers=webhook_headers(body, key)) as response:
                    await response.read()
                    failures += response.status != 200
            except (aiohttp.ClientError, asyncio.TimeoutError):
                failures += 1
            latencies.append(time.monotonic() - start)

        tasks = []
        begin = time.monotonic()
        for i in range(total):
            await asyncio.sleep(max(0.0, begin + i / rate - time.monotonic()))
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    print(json.dumps({"latencies": latencies, "failures": failures}))


if __name__ == "__main__":
    url, rate, seconds, phone = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    asyncio.run(main(url, rate, seconds, phone, sys.argv[5] if len(sys.argv) > 5 else None))
