"""A tiny keep-alive HTTP/1.1 server for the load generator's self-test.

    python delay_server.py PORT DELAY_MS [STALL_AT_S STALL_MS]

Every response waits DELAY_MS; optionally, STALL_AT_S seconds after the first request the
whole server stops answering for STALL_MS (what an open-loop generator must see as a tail).
"""

import asyncio
import sys
import time

PORT, DELAY = int(sys.argv[1]), float(sys.argv[2]) / 1000
STALL_AT = float(sys.argv[3]) if len(sys.argv) > 3 else None
STALL = float(sys.argv[4]) / 1000 if len(sys.argv) > 4 else 0.0
first = [None]


async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            n = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    n = int(line.split(b":")[1])
            if n:
                await reader.readexactly(n)
            now = time.monotonic()
            first[0] = first[0] or now
            if STALL_AT is not None:
                begin = first[0] + STALL_AT
                if begin <= now < begin + STALL:
                    await asyncio.sleep(begin + STALL - now)
            if DELAY:
                await asyncio.sleep(DELAY)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", PORT, backlog=1024)
    print("ready", flush=True)
    await server.serve_forever()


asyncio.run(main())
