#!/usr/bin/env python3
"""A token server for docker-registry's `auth: token` mode, for tests only.

It answers GET /token?service=S&scope=repository:NAME:ACTIONS the way the
distribution spec's token authentication describes: a JWT signed (RS256)
with KEY, whose header carries CERT as `x5c` so that the registry, which
trusts CERT through its `rootcertbundle`, can check it. Access granted:
  - to USER with the right password (HTTP Basic): every action asked for;
  - to anyone else without credentials: `pull` on repositories under
    PUBLIC/, nothing elsewhere (the registry then answers 401);
  - wrong credentials: HTTP 401 from this server.
Each request is logged as one line to LOG ("scope=... as=anonymous|USER|bad")
so tests can check who asked for what. Standard library only, plus the
openssl command for the signature.

usage: token_server.py PORT KEY CERT ISSUER SERVICE USER:PASSWORD PUBLIC LOG
"""

import base64
import http.server
import json
import subprocess
import sys
import time
import urllib.parse
import uuid


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def cert_der_b64(path: str) -> str:
    """The PEM body is the standard base64 of the DER that x5c wants."""
    lines = open(path).read().splitlines()
    body = [l for l in lines if l and not l.startswith("-----")]
    return "".join(body)


class Settings:
    def __init__(self, argv):
        (port, self.key, cert, self.issuer, self.service, cred, self.public,
         self.log) = argv
        self.port = int(port)
        self.x5c = cert_der_b64(cert)
        self.user, _, self.password = cred.partition(":")


S = None


def sign(payload: bytes) -> bytes:
    return subprocess.run(
        ["openssl", "dgst", "-sha256", "-sign", S.key],
        input=payload, capture_output=True, check=True).stdout


def token(subject: str, access: list) -> str:
    now = int(time.time())
    header = {"typ": "JWT", "alg": "RS256", "x5c": [S.x5c]}
    claims = {
        "iss": S.issuer, "sub": subject, "aud": S.service,
        "exp": now + 300, "nbf": now - 10, "iat": now,
        "jti": str(uuid.uuid4()), "access": access,
    }
    signing_input = (b64url(json.dumps(header).encode()) + "." +
                     b64url(json.dumps(claims).encode()))
    return signing_input + "." + b64url(sign(signing_input.encode()))


def who(header: str):
    """'anonymous', the user, or None for wrong credentials."""
    if not header:
        return "anonymous"
    kind, _, value = header.partition(" ")
    if kind.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(value).decode().partition(":")
    except Exception:
        return None
    if user == S.user and password == S.password:
        return user
    return None


def grant(subject: str, scopes: list) -> list:
    out = []
    for scope in scopes:
        parts = scope.split(":")
        if len(parts) < 3 or parts[0] != "repository":
            continue
        name, actions = ":".join(parts[1:-1]), parts[-1].split(",")
        if subject == "anonymous":
            public = name.startswith(S.public + "/")
            actions = [a for a in actions if a == "pull"] if public else []
        out.append({"type": "repository", "name": name, "actions": actions})
    return out


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        query = urllib.parse.parse_qs(url.query)
        scopes = query.get("scope", [])
        subject = who(self.headers.get("Authorization", ""))
        with open(S.log, "a") as log:
            log.write("path=%s service=%s scope=%s as=%s\n" % (
                url.path, ",".join(query.get("service", [])),
                " ".join(scopes), subject or "bad"))
        if url.path != "/token":
            return self.reply(404, {"errors": [{"code": "NOT_FOUND"}]})
        if query.get("service", [S.service]) != [S.service]:
            return self.reply(400, {"errors": [{"code": "UNKNOWN_SERVICE"}]})
        if subject is None:
            return self.reply(401, {"errors": [{"code": "UNAUTHORIZED"}]})
        t = token(subject, grant(subject, scopes))
        self.reply(200, {"token": t, "access_token": t, "expires_in": 300})

    def reply(self, code: int, body: dict):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def main():
    global S
    if len(sys.argv) != 9:
        sys.exit(__doc__)
    S = Settings(sys.argv[1:])
    server = http.server.ThreadingHTTPServer(("127.0.0.1", S.port), Handler)
    server.serve_forever()


if __name__ == "__main__":
    main()
