"""A small OpenID Connect provider for the SSO tests, run as its own process (authlib signs its tokens).

    python tests/sso/provider.py --port N --users users.json --client-id ID --client-secret S

Serves discovery, a login page (the authorization endpoint), the token endpoint (client_secret_post),
userinfo and the JWKS. Users: {"<username>": {"password", "email", "name", "groups", "flaw"}} where
`flaw` makes the ID token bad on purpose: "signature" (signed by a key not in the JWKS, same kid),
"audience" (issued for another client), "expired" (exp in the past).
"""
from __future__ import annotations

import argparse
import html
import json
import secrets
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlparse

from authlib.jose import JsonWebKey, jwt

KID = "test-key-1"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--users", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--client-secret", required=True)
    args = parser.parse_args()
    issuer = f"http://127.0.0.1:{args.port}"

    def load_users() -> dict:  # re-read on every login: a test changes a user's groups between logins
        with open(args.users) as fh:
            return json.load(fh)
    key = JsonWebKey.generate_key("RSA", 2048, {"kid": KID, "alg": "RS256", "use": "sig"}, is_private=True)
    forger = JsonWebKey.generate_key("RSA", 2048, {"kid": KID, "alg": "RS256", "use": "sig"}, is_private=True)
    codes: dict[str, dict] = {}
    tokens: dict[str, dict] = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def _send(self, status: int, body: str | bytes, content_type: str = "application/json", headers=None):
            data = body.encode() if isinstance(body, str) else body
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _form(self) -> dict[str, str]:
            length = int(self.headers.get("Content-Length") or 0)
            return {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}

        def do_GET(self) -> None:
            url = urlparse(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            if url.path == "/.well-known/openid-configuration":
                self._send(200, json.dumps({
                    "issuer": issuer,
                    "authorization_endpoint": f"{issuer}/authorize",
                    "token_endpoint": f"{issuer}/token",
                    "userinfo_endpoint": f"{issuer}/userinfo",
                    "jwks_uri": f"{issuer}/jwks",
                    "response_types_supported": ["code"],
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                }))
            elif url.path == "/jwks":
                self._send(200, json.dumps({"keys": [key.as_dict(is_private=False)]}))
            elif url.path == "/authorize":
                if query.get("client_id") != args.client_id:
                    self._send(400, "unknown client", "text/plain")
                    return
                hidden = "".join(
                    f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">' for k, v in query.items()
                )
                self._send(200, f"""<!doctype html><html><head><title>Test IdP – sign in</title></head>
<body style="font-family: sans-serif; margin: 3em"><h1>Test identity provider</h1>
<p>Sign in to continue to <b>{html.escape(args.client_id)}</b>.</p>
<form method="post" action="/authorize">{hidden}
<p><label>Username <input id="username" name="username"></label></p>
<p><label>Password <input id="password" name="password" type="password"></label></p>
<p><button id="sign-in" type="submit">Sign in</button></p></form></body></html>""", "text/html")
            elif url.path == "/userinfo":
                token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                claims = tokens.get(token)
                if claims is None:
                    self._send(401, json.dumps({"error": "invalid_token"}))
                    return
                self._send(200, json.dumps(claims))
            else:
                self._send(404, "not found", "text/plain")

        def do_POST(self) -> None:
            url = urlparse(self.path)
            form = self._form()
            if url.path == "/authorize":
                user = load_users().get(form.get("username", ""))
                if user is None or user["password"] != form.get("password"):
                    self._send(401, "<p id='bad-login'>Wrong username or password.</p>", "text/html")
                    return
                code = secrets.token_urlsafe(16)
                codes[code] = {"username": form["username"], "nonce": form.get("nonce"),
                               "redirect_uri": form["redirect_uri"]}
                target = form["redirect_uri"] + "?" + urlencode({"code": code, "state": form.get("state", "")})
                self._send(302, "", "text/plain", {"Location": target})
            elif url.path == "/token":
                grant = codes.pop(form.get("code", ""), None)
                if (form.get("client_id"), form.get("client_secret")) != (args.client_id, args.client_secret):
                    self._send(401, json.dumps({"error": "invalid_client"}))
                    return
                if grant is None or grant["redirect_uri"] != form.get("redirect_uri"):
                    self._send(400, json.dumps({"error": "invalid_grant"}))
                    return
                username = grant["username"]
                user = load_users()[username]
                now = int(time.time())
                flaw = user.get("flaw")
                claims = {
                    "iss": issuer,
                    "sub": f"sub-{username}",
                    "aud": "another-client" if flaw == "audience" else args.client_id,
                    "iat": now - (7200 if flaw == "expired" else 0),
                    "exp": now - 3600 if flaw == "expired" else now + 300,
                    "nonce": grant["nonce"],
                    "email": user.get("email"),
                    "name": user.get("name"),
                    "groups": user.get("groups", []),
                }
                signer = forger if flaw == "signature" else key
                id_token = jwt.encode({"alg": "RS256", "kid": KID}, claims, signer).decode()
                access = secrets.token_urlsafe(16)
                tokens[access] = {k: claims[k] for k in ("sub", "email", "name", "groups")}
                self._send(200, json.dumps({"access_token": access, "token_type": "Bearer", "expires_in": 300,
                                            "id_token": id_token}))
            else:
                self._send(404, "not found", "text/plain")

    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
