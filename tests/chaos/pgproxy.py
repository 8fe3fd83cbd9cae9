#!/usr/bin/env python3
"""A stable endpoint for a PostgreSQL failover, as HAProxy or a cloud endpoint plays it.

  pgproxy.py --listen PORT --target-file FILE [--pid-file FILE]

Every client connection is piped to the `host:port` written in FILE (read when the connection
arrives). On SIGUSR1 the proxy re-reads FILE and closes every open connection, as a proxy does
when it marks its old backend down: clients reconnect, and now reach the new target. While the
target refuses, clients see their connection closed, exactly as with a real endpoint between a
stopped primary and a promoted standby. Runs until SIGTERM.
"""

import argparse
import asyncio
import os
import signal


async def pipe(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


class Proxy:
    def __init__(self, target_file):
        self.target_file = target_file
        self.open = set()

    def target(self):
        with open(self.target_file) as f:
            host, port = f.read().strip().rsplit(":", 1)
        return host, int(port)

    async def handle(self, creader, cwriter):
        try:
            host, port = self.target()
            sreader, swriter = await asyncio.wait_for(asyncio.open_connection(host, port), 3)
        except (OSError, ValueError, asyncio.TimeoutError):
            cwriter.close()
            return
        conn = (cwriter, swriter)
        self.open.add(conn)
        try:
            await asyncio.gather(pipe(creader, swriter), pipe(sreader, cwriter))
        finally:
            self.open.discard(conn)

    def switch(self):
        for cwriter, swriter in list(self.open):
            for w in (cwriter, swriter):
                try:
                    w.transport.abort()
                except Exception:
                    pass
        self.open.clear()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", type=int, required=True)
    ap.add_argument("--target-file", required=True)
    ap.add_argument("--pid-file")
    a = ap.parse_args()
    proxy = Proxy(a.target_file)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", a.listen)
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR1, proxy.switch)
    loop.add_signal_handler(signal.SIGTERM, lambda: stop.done() or stop.set_result(None))
    if a.pid_file:
        with open(a.pid_file, "w") as f:
            f.write(str(os.getpid()))
    async with server:
        await stop
    proxy.switch()


if __name__ == "__main__":
    asyncio.run(main())
