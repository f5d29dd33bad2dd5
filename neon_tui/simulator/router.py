"""A Neon-like PostgreSQL router on loopback: route by TLS SNI (passing TLS through untouched) or by
``options=endpoint=<id>`` on plaintext connections, and answer routing failures with Neon's texts."""

from __future__ import annotations

import asyncio
import ssl
import struct
from typing import Awaitable, Callable

SSL_REQUEST, GSS_REQUEST, CANCEL_REQUEST = 80877103, 80877104, 80877102
MAX_STARTUP = 10_000
READ_TIMEOUT = 30.0  # seconds a client may take to send each part of its startup or TLS hello

# Neon proxy's user-facing texts (neondatabase/neon proxy/src/auth; https://neon.com/docs/connect/connection-errors).
MISSING_ENDPOINT = ("Endpoint ID is not specified. Either please upgrade the postgres client library (libpq) for SNI "
                    "support or pass the endpoint ID (first part of the domain name) as a parameter: "
                    "'?options=endpoint%3D<endpoint-id>'. See more at https://neon.tech/sni")
UNKNOWN_ENDPOINT = ("The requested endpoint could not be found, or you don't have access to it. "
                    "Please check the provided ID and try again.")
COMPUTE_FAILED = "Couldn't connect to compute node"


def ip_not_allowed(ip: str) -> str:
    return (f"This IP address {ip} is not allowed to connect to this endpoint. Please add it to the allowed list "
            "in the Neon console. Make sure to check for IPv4 or IPv6 addresses.")


def password_failed(user: str) -> str:
    return f"password authentication failed for user '{user}'"


class RouteError(Exception):
    """A connection the router refuses itself, with the SQLSTATE and text a client sees."""

    def __init__(self, sqlstate: str, message: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.message = message


def error_response(sqlstate: str, message: str) -> bytes:
    fields = b""
    for tag, value in ((b"S", "FATAL"), (b"V", "FATAL"), (b"C", sqlstate), (b"M", message)):
        fields += tag + value.encode() + b"\0"
    fields += b"\0"
    return b"E" + struct.pack("!I", len(fields) + 4) + fields


def endpoint_from_host(host: str) -> str:
    """First label of the host name, without Neon's ``-pooler`` suffix."""
    label = host.split(".", 1)[0].lower()
    return label[: -len("-pooler")] if label.endswith("-pooler") else label


def parse_sni(handshake: bytes) -> str | None:
    """The server_name of a TLS ClientHello handshake message, or None."""
    try:
        if handshake[0] != 1:
            return None
        pos = 4 + 2 + 32
        pos += 1 + handshake[pos]
        pos += 2 + struct.unpack_from("!H", handshake, pos)[0]
        pos += 1 + handshake[pos]
        end = pos + 2 + struct.unpack_from("!H", handshake, pos)[0]
        pos += 2
        while pos + 4 <= end:
            ext_type, ext_len = struct.unpack_from("!HH", handshake, pos)
            pos += 4
            if ext_type == 0:
                list_end = pos + 2 + struct.unpack_from("!H", handshake, pos)[0]
                p = pos + 2
                while p + 3 <= list_end:
                    name_type, name_len = handshake[p], struct.unpack_from("!H", handshake, p + 1)[0]
                    if name_type == 0:
                        return handshake[p + 3:p + 3 + name_len].decode("ascii", "replace")
                    p += 3 + name_len
                return None
            pos += ext_len
    except (IndexError, struct.error):
        return None
    return None


def parse_startup(body: bytes) -> dict[str, str]:
    """Parameters of a v3 startup packet (body after the length word)."""
    parts = body[4:].split(b"\0")
    params: dict[str, str] = {}
    for key, value in zip(parts[0::2], parts[1::2]):
        if not key:
            break
        params[key.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
    return params


def build_startup(params: dict[str, str]) -> bytes:
    body = struct.pack("!I", 196608)
    for key, value in params.items():
        body += key.encode() + b"\0" + value.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def take_endpoint_option(params: dict[str, str]) -> str | None:
    """Remove ``endpoint=<id>`` (or ``endpoint%3D<id>``) from options; PostgreSQL would reject it."""
    options = params.get("options")
    if not options:
        return None
    found, kept = None, []
    for token in options.split():
        for prefix in ("endpoint=", "endpoint%3D", "endpoint%3d", "--endpoint="):
            if token.startswith(prefix):
                found = token[len(prefix):]
                break
        else:
            kept.append(token)
    if found is None:
        return None
    if kept:
        params["options"] = " ".join(kept)
    else:
        del params["options"]
    return found


# resolve(endpoint_id, client_ip) -> cluster port; raises RouteError
Resolver = Callable[[str, str], Awaitable[int]]


class Router:
    """asyncio server; one task per client connection, all in the owner's event loop."""

    def __init__(self, resolve: Resolver, cancel_ports: Callable[[], list[int]], cert: str, key: str,
                 host: str = "127.0.0.1", release: Callable[[str], None] | None = None) -> None:
        self.resolve = resolve
        self.release = release  # called once for every successful resolve, when that connection ends
        self.cancel_ports = cancel_ports
        self.host = host
        self.port = 0
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self.connections = 0

    async def start(self, port: int = 0) -> None:
        self._server = await asyncio.start_server(self._client, self.host, port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        self.connections += 1
        try:
            await self._serve(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, OSError, asyncio.TimeoutError, ssl.SSLError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _serve(self, reader, writer) -> None:
        peer = (writer.get_extra_info("peername") or ("127.0.0.1",))[0]
        while True:
            head = await asyncio.wait_for(reader.readexactly(8), READ_TIMEOUT)
            length, code = struct.unpack("!II", head)
            if not 8 <= length <= MAX_STARTUP:
                return
            rest = await asyncio.wait_for(reader.readexactly(length - 8), READ_TIMEOUT)
            if code == GSS_REQUEST:
                writer.write(b"N")
                await writer.drain()
                continue
            if code == SSL_REQUEST:
                writer.write(b"S")
                await writer.drain()
                await self._tls(reader, writer, peer)
                return
            if code == CANCEL_REQUEST:
                await self._cancel(head + rest)
                return
            if code >> 16 == 3:
                await self._plain(reader, writer, peer, head[4:] + rest)
            return

    # --- TLS: read the ClientHello, route by SNI, pass the stream through -----------------------------
    async def _tls(self, reader, writer, peer: str) -> None:
        raw, handshake = b"", b""
        while len(handshake) < 4 or len(handshake) < 4 + int.from_bytes(handshake[1:4], "big"):
            header = await asyncio.wait_for(reader.readexactly(5), READ_TIMEOUT)
            if header[0] != 0x16:
                return
            record = await asyncio.wait_for(reader.readexactly(int.from_bytes(header[3:5], "big")), READ_TIMEOUT)
            raw += header + record
            handshake += record
            if len(raw) > 64_000:
                return
        sni = parse_sni(handshake)
        try:
            if not sni:
                raise RouteError("08004", MISSING_ENDPOINT)
            endpoint = endpoint_from_host(sni)
            port = await self.resolve(endpoint, peer)
        except RouteError as exc:
            await self._tls_error(reader, writer, raw, exc.sqlstate, exc.message)
            return
        try:
            await self._tls_upstream(reader, writer, raw, port)
        finally:
            self._released(endpoint)

    def _released(self, endpoint: str) -> None:
        if self.release is not None:
            self.release(endpoint)

    async def _tls_upstream(self, reader, writer, raw: bytes, port: int) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await self._tls_error(reader, writer, raw, "XX000", COMPUTE_FAILED)
            return
        try:
            up_writer.write(struct.pack("!II", 8, SSL_REQUEST))
            await up_writer.drain()
            if await asyncio.wait_for(up_reader.readexactly(1), READ_TIMEOUT) != b"S":
                await self._tls_error(reader, writer, raw, "XX000", COMPUTE_FAILED)
                return
            up_writer.write(raw)
            await up_writer.drain()
            await _splice(reader, writer, up_reader, up_writer)
        finally:
            up_writer.close()

    async def _tls_error(self, reader, writer, hello: bytes, sqlstate: str, message: str) -> None:
        """Terminate TLS with the router's own certificate (the ClientHello is already read) and send a
        FATAL ErrorResponse inside it."""
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = self.ctx.wrap_bio(incoming, outgoing, server_side=True)
        incoming.write(hello)

        async def flush() -> None:
            data = outgoing.read()
            if data:
                writer.write(data)
                await writer.drain()

        async def feed() -> bool:
            await flush()
            chunk = await asyncio.wait_for(reader.read(65536), READ_TIMEOUT)
            if not chunk:
                return False
            incoming.write(chunk)
            return True

        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                if not await feed():
                    return
        await flush()
        buf = b""
        while len(buf) < 4 or len(buf) < struct.unpack("!I", buf[:4])[0]:
            if len(buf) >= 4 and struct.unpack("!I", buf[:4])[0] > MAX_STARTUP:
                break  # a startup packet larger than any real one: answer with the error anyway
            try:
                buf += tls.read(65536)
            except ssl.SSLWantReadError:
                if not await feed():
                    return
        tls.write(error_response(sqlstate, message))
        await flush()

    # --- plaintext: route by options=endpoint=<id> -----------------------------------------------------
    async def _plain(self, reader, writer, peer: str, body: bytes) -> None:
        params = parse_startup(body)
        user = params.get("user", "")
        try:
            endpoint = take_endpoint_option(params)
            if not endpoint:
                raise RouteError("08004", MISSING_ENDPOINT)
            port = await self.resolve(endpoint.lower(), peer)
        except RouteError as exc:
            writer.write(error_response(exc.sqlstate, exc.message))
            await writer.drain()
            return
        try:
            await self._plain_upstream(reader, writer, params, user, port)
        finally:
            self._released(endpoint.lower())

    async def _plain_upstream(self, reader, writer, params: dict, user: str, port: int) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            writer.write(error_response("XX000", COMPUTE_FAILED))
            await writer.drain()
            return
        try:
            up_writer.write(build_startup(params))
            await up_writer.drain()
            client_to_server = asyncio.ensure_future(_pipe(reader, up_writer))
            try:
                # Relay the authentication exchange message by message so a password failure can carry
                # Neon's wording, then splice the rest.
                while True:
                    head = await up_reader.readexactly(5)
                    msg = head + await up_reader.readexactly(struct.unpack("!I", head[1:5])[0] - 4)
                    if head[:1] == b"E" and b"C28P01\0" in msg:
                        msg = error_response("28P01", password_failed(user))
                    writer.write(msg)
                    await writer.drain()
                    if head[:1] == b"E" or (head[:1] == b"R" and msg[5:9] == b"\0\0\0\0"):
                        break
                await _pipe(up_reader, writer)
            finally:
                client_to_server.cancel()
                await asyncio.gather(client_to_server, return_exceptions=True)
        finally:
            up_writer.close()

    async def _cancel(self, packet: bytes) -> None:
        """A CancelRequest names a backend pid we cannot map through TLS: offer it to every running
        cluster (only the one holding that pid and secret key acts on it)."""
        for port in self.cancel_ports():
            try:
                _, w = await asyncio.open_connection("127.0.0.1", port)
                w.write(packet)
                await w.drain()
                w.close()
            except OSError:
                pass


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            if writer.can_write_eof():
                writer.write_eof()
        except (OSError, RuntimeError):
            pass


async def _splice(a_reader, a_writer, b_reader, b_writer) -> None:
    one = asyncio.ensure_future(_pipe(a_reader, b_writer))
    two = asyncio.ensure_future(_pipe(b_reader, a_writer))
    try:
        await asyncio.wait({one, two}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (one, two):
            task.cancel()
        await asyncio.gather(one, two, return_exceptions=True)
