#!/usr/bin/env python3
"""A tiny AMQP 0-9-1 client (standard library only) for the chaos suite.

The product's own commands only publish well-formed job ids, and the machine has no Python AMQP
library, so this speaks just enough of the protocol to:

  publish  -- publish raw bodies (poison messages) to an exchange in confirm mode, one at a
              time, and print the index of every body the broker confirmed (basic.ack);
  counts   -- print `name ready consumers` for queues (passive queue.declare), or `name -1 -1`
              for a queue that does not exist.

Exit codes: 0 all done, 1 something was not confirmed / the broker failed, 2 usage.
"""

import argparse
import json
import socket
import struct
import sys
import urllib.parse

FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT = 1, 2, 3, 8
FRAME_END = b"\xce"


class AmqpError(Exception):
    pass


def shortstr(s):
    b = s.encode() if isinstance(s, str) else s
    if len(b) > 255:
        raise ValueError("shortstr too long")
    return struct.pack("B", len(b)) + b


def longstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack(">I", len(b)) + b


class Conn:
    def __init__(self, url, timeout):
        u = urllib.parse.urlparse(url)
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or 5672
        self.user = urllib.parse.unquote(u.username or "guest")
        self.password = urllib.parse.unquote(u.password or "guest")
        vhost = urllib.parse.unquote(u.path[1:]) if u.path and u.path != "/" else "/"
        self.vhost = vhost or "/"
        self.sock = socket.create_connection((self.host, self.port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = b""
        self.frame_max = 131072
        self.channel = 0
        self.handshake()

    # -- framing ---------------------------------------------------------------------------
    def recv_exact(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AmqpError("connection closed by broker")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_frame(self):
        while True:
            ftype, ch, size = struct.unpack(">BHI", self.recv_exact(7))
            payload = self.recv_exact(size)
            if self.recv_exact(1) != FRAME_END:
                raise AmqpError("bad frame end")
            if ftype == FRAME_HEARTBEAT:
                continue
            return ftype, ch, payload

    def send_frame(self, ftype, ch, payload):
        self.sock.sendall(struct.pack(">BHI", ftype, ch, len(payload)) + payload + FRAME_END)

    def send_method(self, ch, cls, meth, args=b""):
        self.send_frame(FRAME_METHOD, ch, struct.pack(">HH", cls, meth) + args)

    def read_method(self):
        """Next method frame as (channel, class, method, args); raises on a close."""
        while True:
            ftype, ch, payload = self.read_frame()
            if ftype != FRAME_METHOD:
                continue  # content of a basic.return: ignore
            cls, meth = struct.unpack(">HH", payload[:4])
            args = payload[4:]
            if (cls, meth) == (10, 50):  # connection.close
                code = struct.unpack(">H", args[:2])[0]
                text = args[3 : 3 + args[2]].decode(errors="replace")
                self.send_method(0, 10, 51)
                raise AmqpError(f"connection closed by broker: {code} {text}")
            if (cls, meth) == (20, 40):  # channel.close
                code = struct.unpack(">H", args[:2])[0]
                text = args[3 : 3 + args[2]].decode(errors="replace")
                self.send_method(ch, 20, 41)
                raise ChannelClosed(code, text)
            return ch, cls, meth, args

    def expect(self, cls, meth):
        ch, c, m, args = self.read_method()
        if (c, m) != (cls, meth):
            raise AmqpError(f"expected {cls}.{meth}, got {c}.{m}")
        return args

    # -- connection --------------------------------------------------------------------------
    def handshake(self):
        self.sock.sendall(b"AMQP\x00\x00\x09\x01")
        self.expect(10, 10)  # connection.start
        props = b""  # empty client-properties table
        response = b"\x00" + self.user.encode() + b"\x00" + self.password.encode()
        self.send_method(
            0, 10, 11,
            struct.pack(">I", len(props)) + props + shortstr("PLAIN") + longstr(response)
            + shortstr("en_US"),
        )
        args = self.expect(10, 30)  # connection.tune
        channel_max, frame_max, _hb = struct.unpack(">HIH", args[:8])
        self.frame_max = frame_max or 131072
        self.send_method(0, 10, 31, struct.pack(">HIH", channel_max or 2047, self.frame_max, 0))
        self.send_method(0, 10, 40, shortstr(self.vhost) + shortstr("") + b"\x00")
        self.expect(10, 41)

    def open_channel(self):
        self.channel += 1
        self.send_method(self.channel, 20, 10, shortstr(""))
        self.expect(20, 11)
        return self.channel

    def close(self):
        try:
            self.send_method(0, 10, 50, struct.pack(">H", 200) + shortstr("bye") + struct.pack(">HH", 0, 0))
            self.expect(10, 51)
        except Exception:
            pass
        self.sock.close()


class ChannelClosed(AmqpError):
    def __init__(self, code, text):
        super().__init__(f"channel closed by broker: {code} {text}")
        self.code = code


def publish(args):
    bodies = json.load(open(args.bodies))
    todo = [int(i) for i in args.only.split(",")] if args.only else list(range(len(bodies)))
    ok = 0
    try:
        c = Conn(args.url, args.timeout)
        ch = c.open_channel()
        c.send_method(ch, 85, 10, b"\x00")  # confirm.select
        c.expect(85, 11)
        tag = 0
        for i in todo:
            entry = bodies[i]
            raw = bytes.fromhex(entry["hex"] if isinstance(entry, dict) else entry)
            c.send_method(ch, 60, 40, struct.pack(">H", 0) + shortstr(args.exchange)
                          + shortstr(args.routing_key) + b"\x01")  # mandatory
            # content-type (bit 15) + delivery-mode (bit 12) = persistent
            props = shortstr("application/json") + b"\x02"
            c.send_frame(FRAME_HEADER, ch, struct.pack(">HHQH", 60, 0, len(raw), 0x9000) + props)
            step = c.frame_max - 8
            for off in range(0, len(raw), step):
                c.send_frame(FRAME_BODY, ch, raw[off : off + step])
            tag += 1
            returned = False
            while True:
                _, cls, meth, a = c.read_method()
                if (cls, meth) == (60, 50):  # basic.return (unroutable); its ack follows
                    returned = True
                    continue
                if (cls, meth) == (60, 80):  # basic.ack
                    t = struct.unpack(">Q", a[:8])[0]
                    if t >= tag:
                        break
                    continue
                if (cls, meth) == (60, 120):  # basic.nack
                    raise AmqpError(f"broker nacked body {i}")
            if returned:
                raise AmqpError(f"body {i} was returned as unroutable")
            print(i, flush=True)
            ok += 1
        c.close()
    except (OSError, AmqpError) as e:
        print(f"amqp.py publish: {e} ({ok}/{len(todo)} confirmed)", file=sys.stderr)
        return 1
    return 0


def counts(args):
    try:
        c = Conn(args.url, args.timeout)
        ch = c.open_channel()
        for q in args.queues:
            c.send_method(ch, 50, 10, struct.pack(">H", 0) + shortstr(q) + b"\x01"
                          + struct.pack(">I", 0))  # passive
            try:
                a = c.expect(50, 11)
                name_len = a[0]
                ready, consumers = struct.unpack(">II", a[1 + name_len : 9 + name_len])
                print(q, ready, consumers)
            except ChannelClosed:
                print(q, -1, -1)
                ch = c.open_channel()
        c.close()
    except (OSError, AmqpError) as e:
        print(f"amqp.py counts: {e}", file=sys.stderr)
        return 1
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5673/%2f")
    p.add_argument("--timeout", type=float, default=5.0)
    sub = p.add_subparsers(dest="cmd", required=True)
    pp = sub.add_parser("publish")
    pp.add_argument("--exchange", required=True)
    pp.add_argument("--routing-key", required=True)
    pp.add_argument("--bodies", required=True,
                    help='JSON list of hex-encoded bodies, or of objects with a "hex" field')
    pp.add_argument("--only", help="comma-separated indexes to publish (default all)")
    pc = sub.add_parser("counts")
    pc.add_argument("queues", nargs="+")
    a = p.parse_args()
    return publish(a) if a.cmd == "publish" else counts(a)


if __name__ == "__main__":
    sys.exit(main())
