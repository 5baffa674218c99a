"""Outbound requests made for a tenant: where the server may connect when it fetches a URL a tenant gave.

Webhook deliveries, skill registries and repository fetches reach URLs that a tenant chose. Left alone,
such a URL could point at cloud metadata (169.254.169.254), at services on the server's private network,
or at this server's own API. The rules (README, "Security model"):

- link-local (169.254.0.0/16, fe80::/10), unspecified (0.0.0.0/8, ::), multicast and reserved addresses
  are never reached, nor this server itself (its own port on a local address, or its `public_url`);
- loopback and private ranges (RFC 1918, ULA, CGNAT, ...) only with `REPLICAS_ALLOW_PRIVATE_OUTBOUND=true`,
  the embedded single-user default; multi-tenant deployments turn it off.

The check is made on the addresses a name resolves to, and the connection goes to an address that was
checked (`GuardedTransport` for httpx, `git_pin_args` for git over http), so a DNS answer that changes
between the check and the connect (rebinding) cannot get around it. `check_url` is the early, DNS-free
check for the moment a tenant's URL is stored.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from urllib.parse import urlsplit

import httpcore
import httpx

from replicas.errors import BadRequest
from replicas.settings import Settings, get_settings

# Resolves a host name to IP address strings; tests substitute one to play a rebinding DNS server.
Resolver = Callable[[str, int], Awaitable[list[str]]]
IPAddress = IPv4Address | IPv6Address

RESOLVE_TIMEOUT_SECONDS = 10.0
_DEFAULT_PORTS = {"http": 80, "https": 443, "ssh": 22, "git": 9418}
_THIS_NETWORK = ip_network("0.0.0.0/8")  # Linux connects 0.x.x.x to this host
_CGNAT = ip_network("100.64.0.0/10")
_NAT64 = ip_network("64:ff9b::/96")  # DNS64 synthesises these for IPv4-only names: judge the IPv4 inside
_GIT_REMOTE_COMMANDS = frozenset({"ls-remote", "clone", "fetch", "pull", "push"})


class OutboundRefused(BadRequest):
    """A request for a tenant would reach an address it must not; `reason` says which and why."""

    default_message = "Outbound request refused"

    def __init__(self, reason: str):
        super().__init__(None, reason)
        self.reason = reason


def _kind(ip: IPAddress, allow_private: bool) -> str | None:
    """What makes `ip` unreachable for a tenant ("a link-local address"), or None when it may be reached."""
    if ip.is_unspecified or (ip.version == 4 and ip in _THIS_NETWORK):
        return "an unspecified address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_loopback:  # before is_reserved: ::1 lies in the reserved ::/8
        return None if allow_private else "a loopback address"
    if ip.is_reserved:
        return "a reserved address"
    if ip.is_private or ip in _CGNAT or getattr(ip, "is_site_local", False) or not ip.is_global:
        return None if allow_private else "a private address"
    return None


def _embedded_ipv4(ip: IPAddress) -> IPv4Address | None:
    if ip.version != 6:
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return IPv4Address(int(ip) & 0xFFFFFFFF) if ip in _NAT64 else None


def address_refusal(address: str | IPAddress, *, allow_private: bool) -> str | None:
    """Why `address` must not be reached ("169.254.169.254 is a link-local address"), or None.

    IPv4-mapped and NAT64 IPv6 addresses are judged by the IPv4 address they carry."""
    ip = ip_address(address) if isinstance(address, str) else address
    embedded = _embedded_ipv4(ip)
    kind = _kind(embedded or ip, allow_private)
    if kind is None:
        return None
    return f"{ip} carries {embedded}, {kind}" if embedded else f"{ip} is {kind}"


def _literal(host: str) -> IPAddress | None:
    try:
        return ip_address(host.strip("[]"))
    except ValueError:
        return None


def _host_port(ip: IPAddress, port: int) -> str:
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


def _is_this_host(ip: IPAddress) -> bool:
    """Whether `ip` is one of this machine's addresses: binding a socket to it succeeds only then."""
    if ip.is_loopback:
        return True
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((str(ip), 0))
    except OSError:
        return False
    return True


async def system_resolver(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to, in the system resolver's order (no duplicates)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class OutboundPolicy:
    """Where requests made for a tenant may connect; built from `Settings`."""

    allow_private: bool
    server_port: int
    # This server by name: `public_url`'s host and port (a tenant URL naming it is this server).
    server_names: frozenset[tuple[str, int]] = frozenset()
    # Whether git may fetch local paths and file:// URLs for a tenant (REPLICAS_ALLOW_LOCAL_REPOSITORIES): the
    # default of git plumbing that is not told otherwise.
    allow_local_repositories: bool = True
    # An egress allow-list (REPLICAS_OUTBOUND_ALLOWED_HOSTS): None lets any host through to the address checks;
    # otherwise only these names (an entry `.example.com` also admits its subdomains) or IP literals, refused
    # before any DNS lookup.
    allowed_hosts: frozenset[str] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> OutboundPolicy:
        names = set()
        if settings.public_url:
            public = urlsplit(settings.public_url)
            if public.hostname:
                names.add((public.hostname.rstrip(".").lower(),
                           public.port or _DEFAULT_PORTS.get(public.scheme, 443)))
        return cls(allow_private=settings.allow_private_outbound, server_port=settings.port,
                   server_names=frozenset(names), allow_local_repositories=settings.allow_local_repositories,
                   allowed_hosts=(None if settings.outbound_allowed_hosts is None else
                                  frozenset(h.strip().rstrip(".").lower() for h in settings.outbound_allowed_hosts)))

    def host_allowed(self, name: str) -> bool:
        """Whether the allow-list (if any) admits `name` (lower case, no trailing dot)."""
        if self.allowed_hosts is None:
            return True
        return name in self.allowed_hosts or any(
            entry.startswith(".") and (name.endswith(entry) or name == entry[1:]) for entry in self.allowed_hosts)

    def refusal(self, address: str | IPAddress, port: int) -> str | None:
        """Why connecting to `address`:`port` is refused, or None when it is allowed."""
        ip = ip_address(address) if isinstance(address, str) else address
        if reason := address_refusal(ip, allow_private=True):
            return reason
        local = _embedded_ipv4(ip) or ip
        if (port == self.server_port and _is_this_host(local)) or (str(local), port) in self.server_names:
            return f"{_host_port(ip, port)} is this server"
        return address_refusal(ip, allow_private=self.allow_private)

    def check_name(self, host: str, port: int) -> IPAddress | None:
        """The checks that need no DNS: this server's public name, and IP literals. Returns the literal."""
        name = host.strip("[]").rstrip(".").lower()
        if (name, port) in self.server_names:
            raise OutboundRefused(f"{name}:{port} is this server")
        if not self.host_allowed(name):
            raise OutboundRefused(f"{name} is not in this server's REPLICAS_OUTBOUND_ALLOWED_HOSTS")
        literal = _literal(name)
        if literal is None and (name == "localhost" or name.endswith(".localhost")):
            # RFC 6761: always loopback. Refused early when loopback is; resolved when used otherwise.
            if reason := self.refusal(IPv4Address("127.0.0.1"), port):
                raise OutboundRefused(f"{reason} (the address of {name})")
            return None
        if literal is not None and (reason := self.refusal(literal, port)):
            raise OutboundRefused(reason)
        return literal

    async def checked_addresses(self, host: str, port: int, resolver: Resolver | None = None) -> list[str]:
        """Resolve `host` and check every address it resolves to; return them, to connect to one of them.

        Raises OutboundRefused when any address is refused (a name that also resolves to a refused address
        is refused as a whole), OSError when the name does not resolve."""
        literal = self.check_name(host, port)
        if literal is not None:
            return [str(literal)]
        name = host.rstrip(".")
        try:
            async with asyncio.timeout(RESOLVE_TIMEOUT_SECONDS):
                addresses = await (resolver or system_resolver)(name, port)
        except TimeoutError:
            raise TimeoutError(f"resolving {name} timed out") from None
        except OSError as exc:
            raise OSError(f"cannot resolve {name}: {exc.strerror or exc}") from None
        if not addresses:
            raise OSError(f"{name} resolves to no address")
        for address in addresses:
            if reason := self.refusal(address, port):
                raise OutboundRefused(f"{reason} (the address of {name})")
        return addresses


# The process's policy, for code that has no Settings at hand (git plumbing, the webhook dispatcher).
_installed: list[OutboundPolicy] = []


def install(settings: Settings) -> OutboundPolicy:
    """Make `settings`' policy the process's (the app's start-up); `uninstall` it at shut-down, when the
    one installed before, if any, applies again."""
    policy = OutboundPolicy.from_settings(settings)
    _installed.append(policy)
    return policy


def uninstall(policy: OutboundPolicy) -> None:
    _installed[:] = [p for p in _installed if p is not policy]


def active_policy() -> OutboundPolicy:
    """The policy of the running app, else the one of the environment's settings."""
    return _installed[-1] if _installed else OutboundPolicy.from_settings(get_settings())


def check_url(url: str, settings: Settings | None = None) -> str:
    """Validate a tenant's URL when it is stored: http(s) with a host, not this server, not a refused IP
    literal (400 otherwise). Names are judged when they are used, on what they resolve to then."""
    # The reasons name no more than the host: a tenant's URL may carry a token.
    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https"):
        raise OutboundRefused("only http:// and https:// URLs can be reached")
    if not parts.hostname:
        raise OutboundRefused("the URL names no host")
    try:
        port = parts.port or _DEFAULT_PORTS[parts.scheme]
    except ValueError:
        raise OutboundRefused("the URL's port is not a valid port number") from None
    policy = OutboundPolicy.from_settings(settings) if settings is not None else active_policy()
    policy.check_name(parts.hostname, port)
    return url


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network layer with the policy in front: resolve, check every address, connect to one."""

    def __init__(self, policy: OutboundPolicy, resolver: Resolver | None):
        self._policy, self._resolver = policy, resolver
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None, socket_options=None) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await self._policy.checked_addresses(host, port, self._resolver)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(str(exc)) from None
        except OSError as exc:  # a name that does not resolve: a connection error, retried like one
            raise httpcore.ConnectError(str(exc)) from None
        failure: Exception | None = None
        for address in addresses:  # the checked addresses only; TLS and Host still name `host`
            try:
                return await self._inner.connect_tcp(address, port, timeout=timeout,
                                                     local_address=local_address, socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure  # type: ignore[misc] - checked_addresses never returns an empty list

    async def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options=None):
        raise OutboundRefused("a unix socket is not an outbound destination")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


@lru_cache(maxsize=1)
def _tls_context() -> ssl.SSLContext:
    # One context for every guarded client: httpx builds a new one per client otherwise (~20 ms of CPU).
    return httpx.create_ssl_context(trust_env=False)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """An httpx transport whose every connection (redirect hops included) goes through the policy.

    httpx 0.2x has no network-backend argument, so the connection pool it builds is replaced by one on
    `_GuardedBackend`; the rest of `AsyncHTTPTransport` (request mapping, errors) is used as is."""

    def __init__(self, policy: OutboundPolicy, *, resolver: Resolver | None = None,
                 limits: httpx.Limits | None = None):
        limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)
        super().__init__(verify=_tls_context(), trust_env=False, limits=limits)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=_tls_context(), max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry, network_backend=_GuardedBackend(policy, resolver))


def guarded_client(policy: OutboundPolicy | None = None, *, resolver: Resolver | None = None,
                   **options) -> httpx.AsyncClient:
    """An httpx client for tenant URLs (`options` as for httpx.AsyncClient). No proxies from the
    environment: a proxy would make the connection, out of the policy's sight."""
    transport = GuardedTransport(policy or active_policy(), resolver=resolver)
    return httpx.AsyncClient(transport=transport, trust_env=False, **options)


def _scp_like(arg: str) -> bool:
    """git's rule: `[user@]host:path`, a colon before any slash, is ssh (`url_is_local_not_ssh`)."""
    colon, slash = arg.find(":"), arg.find("/")
    return colon > 0 and (slash < 0 or colon < slash) and "::" not in arg and not arg.startswith("-")


def _git_remote(args: Sequence[str]) -> str | None:
    """The URL a git command contacts, when it names one among its arguments."""
    if not args or args[0] not in _GIT_REMOTE_COMMANDS:
        return None
    return next((arg for arg in args[1:] if "://" in arg or _scp_like(arg)), None)


def _git_target(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of a network git URL, scp-like `[user@]host:path` included; None for local ones."""
    if "://" not in url:
        return ("ssh", url.split(":", 1)[0].rsplit("@", 1)[-1].strip("[]"), 22) if _scp_like(url) else None
    parts = urlsplit(url)
    scheme = "ssh" if "ssh" in parts.scheme.lower() else parts.scheme.lower()
    if scheme == "file":
        return None
    if scheme not in _DEFAULT_PORTS:
        raise OutboundRefused(f"{scheme}:// is not a protocol for remote repositories")
    if not parts.hostname:
        raise OutboundRefused("the URL names no host")
    try:
        port = parts.port or _DEFAULT_PORTS[scheme]
    except ValueError:
        raise OutboundRefused("the URL's port is not a valid port number") from None
    return scheme, parts.hostname, port


async def git_pin_args(args: Sequence[str], remote: str | None = None, *,
                       policy: OutboundPolicy | None = None, resolver: Resolver | None = None) -> list[str]:
    """Check the host of the remote a git command contacts; return the `git` options that pin it.

    The remote is `remote` (a command that reaches it through a configured remote, `fetch origin`), else
    the network URL among `args` of ls-remote/clone/fetch/pull/push; local commands and local or file://
    URLs get []. Over http(s), curl is told the checked addresses (`http.curloptResolve`, git >= 2.37) and
    follows no redirect (a redirect to another host would be resolved afresh). ssh and git:// hosts are
    checked but not pinned: ssh and git-daemon connections resolve the name themselves.
    Raises OutboundRefused, or OSError when the host does not resolve."""
    url = remote or _git_remote(args)
    target = _git_target(url) if url else None
    if target is None:
        return []
    scheme, host, port = target
    addresses = await (policy or active_policy()).checked_addresses(host, port, resolver)
    if scheme not in ("http", "https"):
        return []
    pinned = ["-c", "http.followRedirects=false"]
    if _literal(host) is None:
        shown = ",".join(f"[{a}]" if ":" in a else a for a in addresses)
        pinned[:0] = ["-c", f"http.curloptResolve={host}:{port}:{shown}"]
    return pinned
