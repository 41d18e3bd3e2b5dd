"""A thief holding a real agent's credential: what can it do on the broker?

It plays someone who copied one agent's `.creds` file off its PC and now talks to the broker directly. It is
written against nats-py, an independent NATS client, so that no kanade code is involved on the client side: what
it is refused, the broker refused, not kanade's own client being polite.

Usage:

    stolen_credential.py --url nats://127.0.0.1:4222 --ca ca.pem [--creds agent.creds] [--inbox-prefix _INBOX_pc-1]

with a JSON list of probes on stdin, each one of:

    {"publish": "<subject>"}         publish one message
    {"subscribe": "<subject>"}       subscribe to a subject (wildcards allowed)
    {"request": "<subject>", "data": "<text>"}
                                     a request, e.g. to the JetStream API: allowed only if a reply comes
    {"connect": "plaintext"}         the credential over a plain TCP connection, without TLS
    {"connect": "tls_without_credential"}
                                     TLS with the CA pinned, but no credential
    {"connect": "tls_with_credential"}
                                     TLS with the CA pinned and the credential (the control of the two above)

and prints one JSON line per probe, in order:

    {"probe": <the probe>, "outcome": "allowed" | "refused" | "error", "detail": "...", "violation": true|false}

`violation` is true when the broker answered with a permissions violation naming the probe's subject: a refusal
that is the broker's word, not a lost message. `error` means the probe could not be tried at all (the thief's own
connection failed, say), which is neither an allowed nor a refused action.

Every step has a timeout, and the whole run has one: the script never hangs.
"""

import argparse
import asyncio
import base64
import json
import ssl
import sys
import urllib.parse

import nats
import nats.errors
import nkeys

# Per step (a connect, a round trip, waiting for a reply), and for the whole run.
STEP_TIMEOUT = 10.0
RUN_TIMEOUT = 120.0


def read_creds(path):
    """The user JWT and the nkey seed of a `.creds` file."""
    jwt, seed, want = None, None, None
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if "BEGIN NATS USER JWT" in line:
                want = "jwt"
            elif "BEGIN USER NKEY SEED" in line:
                want = "seed"
            elif line and not line.startswith("--") and want:
                if want == "jwt":
                    jwt = line
                else:
                    seed = line
                want = None
    if not jwt or not seed:
        raise ValueError(f"no JWT and seed in {path}")
    return jwt, seed


def tls_context(ca):
    """A TLS context that trusts the fleet's CA and nothing else."""
    return ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)


class Thief:
    def __init__(self, args):
        self.args = args
        self.errors = []
        self.nc = None

    def violation(self, verb, subject):
        """The permissions violation the broker reported for `verb` ("publish" or "subscription") on `subject`,
        if any. nats-py lower-cases the server's `-ERR` text."""
        needle = f'permissions violation for {verb} to "{subject.lower()}"'
        return next((str(e) for e in self.errors if needle in str(e).lower()), None)

    def errors_text(self):
        return "; ".join(str(e) for e in self.errors) or "none"

    async def connect(self, creds):
        async def on_error(e):
            self.errors.append(e)

        async def quiet(*_):
            pass

        options = dict(
            servers=[self.args.url],
            tls=tls_context(self.args.ca),
            connect_timeout=STEP_TIMEOUT,
            allow_reconnect=False,
            max_reconnect_attempts=0,
            error_cb=on_error,
            disconnected_cb=quiet,
            closed_cb=quiet,
            name="stolen-credential",
        )
        if creds:
            options["user_credentials"] = creds
        if self.args.inbox_prefix:
            options["inbox_prefix"] = self.args.inbox_prefix
        return await asyncio.wait_for(nats.connect(**options), STEP_TIMEOUT * 2)

    async def session(self):
        """The thief's connection with the credential, made on first use."""
        if self.nc is None:
            self.nc = await self.connect(self.args.creds)
        return self.nc

    async def round_trip(self):
        """A PING/PONG: the broker answers any `-ERR` for what was sent before it first."""
        await asyncio.wait_for(self.nc.flush(timeout=STEP_TIMEOUT), STEP_TIMEOUT * 2)

    async def publish(self, subject):
        nc = await self.session()
        await nc.publish(subject, b"stolen")
        await self.round_trip()
        violation = self.violation("publish", subject)
        if violation:
            return "refused", True, f"broker said: {violation}"
        return "allowed", False, "published, no permissions violation after a round trip"

    async def subscribe(self, subject):
        nc = await self.session()
        sub = await nc.subscribe(subject)
        await self.round_trip()
        violation = self.violation("subscription", subject)
        try:
            await sub.unsubscribe()
        except Exception:  # noqa: BLE001 - the probe's answer is already known
            pass
        if violation:
            return "refused", True, f"broker said: {violation}"
        return "allowed", False, "subscribed, no permissions violation after a round trip"

    async def request(self, subject, data):
        nc = await self.session()
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox, max_msgs=1)
        await nc.publish(subject, data.encode(), reply=inbox)
        await self.round_trip()
        try:
            violation = self.violation("publish", subject)
            if violation:
                return "refused", True, f"broker said: {violation}"
            violation = self.violation("subscription", inbox)
            if violation:
                return "error", False, f"the reply inbox was refused: {violation}"
            try:
                reply = await sub.next_msg(timeout=STEP_TIMEOUT)
            except nats.errors.TimeoutError:
                return "refused", False, f"no reply in {STEP_TIMEOUT}s (errors: {self.errors_text()})"
            return "allowed", False, f"reply: {reply.data.decode(errors='replace')[:300]}"
        finally:
            try:
                await sub.unsubscribe()
            except Exception:  # noqa: BLE001 - the probe's answer is already known
                pass

    async def connect_probe(self, kind):
        if kind == "plaintext":
            return await self.plaintext()
        creds = {"tls_without_credential": None, "tls_with_credential": self.args.creds}
        if kind not in creds:
            return "error", False, f"unknown connect probe {kind!r}"
        try:
            nc = await self.connect(creds[kind])
        except Exception as e:  # noqa: BLE001 - any failure to connect is the answer
            return "refused", False, f"{type(e).__name__}: {e}"
        await nc.close()
        return "allowed", False, "connected"

    async def plaintext(self):
        """The credential, complete with the nonce signed, over plain TCP: everything a client sends, but no TLS.
        nats-py always upgrades to TLS when the server asks, so this talks the protocol by hand."""
        if not self.args.creds:
            return "error", False, "the plaintext probe needs --creds"
        jwt, seed = read_creds(self.args.creds)
        url = urllib.parse.urlparse(self.args.url)
        reader, writer = await asyncio.wait_for(asyncio.open_connection(url.hostname, url.port), STEP_TIMEOUT)
        try:
            line = await asyncio.wait_for(reader.readline(), STEP_TIMEOUT)
            if not line.startswith(b"INFO "):
                return "refused", False, f"no INFO: {line[:200]!r}"
            info = json.loads(line[5:])
            sig = nkeys.from_seed(seed.encode()).sign(info.get("nonce", "").encode())
            connect = {
                "verbose": False,
                "pedantic": False,
                "tls_required": False,
                "jwt": jwt,
                "sig": base64.urlsafe_b64encode(sig).decode().rstrip("="),
                "name": "stolen-credential-plaintext",
                "lang": "python-raw",
                "version": "0",
                "protocol": 1,
                "headers": True,
                "no_responders": True,
            }
            writer.write(b"CONNECT " + json.dumps(connect).encode() + b"\r\nPING\r\n")
            await writer.drain()
            seen = b""
            while True:
                try:
                    chunk = await asyncio.wait_for(reader.read(4096), STEP_TIMEOUT)
                except asyncio.TimeoutError:
                    return "refused", False, f"no PONG in {STEP_TIMEOUT}s, got {seen[:200]!r}"
                if not chunk:
                    return "refused", False, f"the broker closed the connection, got {seen[:200]!r}"
                seen += chunk
                if b"PONG" in seen:
                    return "allowed", False, "PONG over plain TCP"
                if b"-ERR" in seen and b"\r\n" in seen.split(b"-ERR", 1)[1]:
                    return "refused", False, f"broker said: {seen[:200]!r}"
        except (ConnectionError, OSError) as e:
            return "refused", False, f"{type(e).__name__}: {e}"
        finally:
            writer.close()

    async def probe(self, probe):
        if "publish" in probe:
            return await self.publish(probe["publish"])
        if "subscribe" in probe:
            return await self.subscribe(probe["subscribe"])
        if "request" in probe:
            return await self.request(probe["request"], probe.get("data", ""))
        if "connect" in probe:
            return await self.connect_probe(probe["connect"])
        return "error", False, "unknown probe"

    async def run(self, probes):
        try:
            for probe in probes:
                try:
                    outcome, violation, detail = await self.probe(probe)
                except Exception as e:  # noqa: BLE001 - reported, never raised: the caller reads every line
                    outcome, violation, detail = "error", False, f"{type(e).__name__}: {e}"
                report(probe, outcome, violation, detail)
        finally:
            if self.nc is not None and not self.nc.is_closed:
                try:
                    await asyncio.wait_for(self.nc.close(), STEP_TIMEOUT)
                except Exception:  # noqa: BLE001 - leaving anyway
                    pass


def report(probe, outcome, violation, detail):
    line = {"probe": probe, "outcome": outcome, "violation": violation, "detail": detail}
    print(json.dumps(line), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--creds")
    parser.add_argument("--inbox-prefix")
    args = parser.parse_args()
    probes = json.load(sys.stdin)
    try:
        asyncio.run(asyncio.wait_for(Thief(args).run(probes), RUN_TIMEOUT))
    except asyncio.TimeoutError:
        print(f"stolen_credential.py: gave up after {RUN_TIMEOUT}s", file=sys.stderr)
        sys.exit(3)


if __name__ == "__main__":
    main()
