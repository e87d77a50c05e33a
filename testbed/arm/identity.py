"""Token endpoints of the local ARM endpoint: what azure.identity's credentials talk to.

- ``POST /{tenant}/oauth2/v2.0/token`` — Microsoft Entra ID's client-credentials grant, used by
  ``ClientSecretCredential`` (and ``DefaultAzureCredential`` via AZURE_CLIENT_ID/SECRET/TENANT_ID)
  with ``AZURE_AUTHORITY_HOST`` pointing at this server. Checks tenant, client id and secret.
- ``GET /{tenant}/v2.0/.well-known/openid-configuration`` and ``GET /common/discovery/instance``
  — the discovery documents msal (the sync credentials) fetches from the authority host.
- ``GET /msi/token`` — the App Service managed-identity endpoint (``IDENTITY_ENDPOINT`` =
  ``<base>/msi/token``, ``IDENTITY_HEADER`` = the server's identity header secret).

Issued tokens are opaque random strings remembered by `TokenStore`; ARM routes accept only those.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from testbed.arm.routing import json_response

WebHandler = Callable[[web.Request], Awaitable[web.Response]]
TOKEN_LIFETIME = 3600
MANAGED_IDENTITY_PATH = "/msi/token"


@dataclass
class IssuedToken:
    """Who a token was issued to and until when (epoch seconds)."""

    principal: str
    expires_on: float


@dataclass
class TokenStore:
    """The tokens this server issued; ARM requests must carry one of them, unexpired."""

    tokens: dict[str, IssuedToken] = field(default_factory=dict)

    def issue(self, principal: str, lifetime: int = TOKEN_LIFETIME) -> tuple[str, int]:
        """A new token for `principal` and its expiry (epoch seconds)."""
        token = "tb." + secrets.token_urlsafe(32)
        expires_on = int(time.time()) + lifetime
        self.tokens[token] = IssuedToken(principal, expires_on)
        return token, expires_on

    def principal(self, authorization: str | None) -> str | None:
        """The principal of a valid ``Bearer <token>`` header, else None."""
        if not authorization or not authorization.lower().startswith("bearer "):
            return None
        issued = self.tokens.get(authorization[7:].strip())
        if issued is None or issued.expires_on < time.time():
            return None
        return issued.principal


def aad_error(status: int, error: str, code: int, description: str) -> web.Response:
    """Entra ID's error body (what azure.identity surfaces in ClientAuthenticationError)."""
    return json_response(
        {
            "error": error,
            "error_description": f"AADSTS{code}: {description}",
            "error_codes": [code],
            "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
        },
        status=status,
    )


class IdentityEndpoints:
    """Serves the Entra ID and managed-identity token endpoints for one tenant and client."""

    def __init__(
        self,
        store: TokenStore,
        *,
        tenant_id: str,
        client_id: str,
        client_secret: str,
        identity_header: str,
    ) -> None:
        self.store = store
        self.tenant_id = tenant_id
        self.client_id = client_id
        self.client_secret = client_secret
        self.identity_header = identity_header
        self.base_url = ""

    def routes(self) -> list[tuple[str, str, str, WebHandler]]:
        """(method, aiohttp path, operation name, handler) for the server to register."""
        return [
            ("POST", "/{tenant}/oauth2/v2.0/token", "Identity_ClientCredentialsToken", self.token),
            ("POST", "/{tenant}/oauth2/token", "Identity_ClientCredentialsToken", self.token),
            ("GET", "/{tenant}/v2.0/.well-known/openid-configuration", "Identity_Discovery",
             self.openid_configuration),
            ("GET", "/common/discovery/instance", "Identity_Discovery", self.instance_discovery),
            ("GET", MANAGED_IDENTITY_PATH, "Identity_ManagedIdentityToken", self.managed_identity),
        ]

    async def token(self, request: web.Request) -> web.Response:
        """Client-credentials grant: form with client_id, client_secret, grant_type, scope."""
        tenant = request.match_info["tenant"]
        form = {k: str(v) for k, v in (await request.post()).items()}
        if tenant not in (self.tenant_id, "organizations"):
            return aad_error(400, "invalid_request", 90002, f"Tenant '{tenant}' not found.")
        if form.get("grant_type") != "client_credentials":
            return aad_error(400, "unsupported_grant_type", 70003,
                             f"The app requested an unsupported grant type "
                             f"'{form.get('grant_type')}'.")
        if form.get("client_id") != self.client_id:
            return aad_error(400, "unauthorized_client", 700016,
                             f"Application with identifier '{form.get('client_id')}' was not "
                             f"found in the directory '{tenant}'.")
        if form.get("client_secret") != self.client_secret:
            return aad_error(401, "invalid_client", 7000215, "Invalid client secret provided.")
        token, _ = self.store.issue(f"sp:{self.client_id}")
        return json_response(
            {
                "token_type": "Bearer",
                "expires_in": TOKEN_LIFETIME,
                "ext_expires_in": TOKEN_LIFETIME,
                "access_token": token,
            }
        )

    async def openid_configuration(self, request: web.Request) -> web.Response:
        """The tenant's OpenID metadata; msal reads token_endpoint from it."""
        tenant = request.match_info["tenant"]
        base = self.base_url or f"{request.scheme}://{request.host}"
        return json_response(
            {
                "token_endpoint": f"{base}/{tenant}/oauth2/v2.0/token",
                "authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/devicecode",
                "issuer": f"{base}/{tenant}/v2.0",
                "token_endpoint_auth_methods_supported": ["client_secret_post",
                                                          "private_key_jwt"],
                "response_types_supported": ["code", "id_token", "code id_token"],
                "tenant_region_scope": "EU",
            }
        )

    async def instance_discovery(self, request: web.Request) -> web.Response:
        """msal's authority validation: this host is its own (only) alias."""
        host = request.host
        return json_response(
            {
                "tenant_discovery_endpoint": f"https://{host}/{{tenant}}/v2.0/"
                                             ".well-known/openid-configuration",
                "api-version": "1.1",
                "metadata": [{"preferred_network": host, "preferred_cache": host,
                              "aliases": [host]}],
            }
        )

    async def managed_identity(self, request: web.Request) -> web.Response:
        """App Service managed identity: header X-IDENTITY-HEADER, query `resource`."""
        if request.headers.get("X-IDENTITY-HEADER") != self.identity_header:
            return json_response(
                {"error": "invalid_request",
                 "error_description": "X-IDENTITY-HEADER missing or wrong"},
                status=401,
            )
        resource = request.query.get("resource")
        if not resource:
            return json_response(
                {"error": "invalid_request", "error_description": "resource is required"},
                status=400,
            )
        token, expires_on = self.store.issue(f"mi:{self.client_id}")
        return json_response(
            {
                "access_token": token,
                "expires_on": str(expires_on),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": self.client_id,
            }
        )
