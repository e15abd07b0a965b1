"""An asyncio ``Protocol`` echo server, on asyncio's own loop or (``--loop uvloop``) on uvloop.

``python -m muxtop.bench.servers.asyncio_echo --port P [--loop uvloop]`` serves until SIGTERM or
Ctrl-C. The transport buffers what the kernel does not take; past its high-water mark it calls
``pause_writing`` and we stop reading that client, like muxtop's backpressure.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from muxtop.bench.servers import BACKLOG


class EchoProtocol(asyncio.Protocol):
    transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def pause_writing(self) -> None:
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.transport.resume_reading()


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    # asyncio and uvloop both set TCP_NODELAY on accepted TCP sockets themselves.
    server = await loop.create_server(EchoProtocol, host, port, backlog=BACKLOG)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    args = p.parse_args(argv)
    loop_factory = None
    if args.loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            from muxtop.extras import install_hint  # only then: the baseline server stays small

            print(f"uvloop is not installed: {install_hint('bench')}", file=sys.stderr)
            return 2
        loop_factory = uvloop.new_event_loop
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(serve(args.host, args.port))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
