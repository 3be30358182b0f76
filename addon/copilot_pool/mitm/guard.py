"""Guard rails at start-up: never an open proxy that spends the pool's accounts for anyone, no readable secrets.

Refuses to start when a proxy mode listens on a non-loopback address without `proxyauth` (unless
`pool_allow_open_proxy`), and warns when the accounts file is readable by group or others.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import stat

from mitmproxy import exceptions
from mitmproxy.proxy.mode_specs import ProxyMode

from .. import LOGGER_NAME

log = logging.getLogger(LOGGER_NAME)

AUTHENTICATED_MODES = {"regular", "upstream", "socks5"}  # where proxyauth asks clients for proxy credentials
NO_LISTENER_MODES = {"local", "tun", "osproxy", "dns"}  # no HTTP listener anyone could reach
WATCHED = {"listen_host", "mode", "proxyauth", "pool_allow_open_proxy", "server"}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # "" means every interface; any other name may resolve anywhere


def exposure_problem(modes: list[str], listen_host: str, proxyauth: bool) -> str | None:
    """Why these settings would expose the pool to anyone who can reach the port, or None."""
    for spec in modes:
        try:
            mode = ProxyMode.parse(spec)
        except ValueError:
            continue  # mitmproxy itself rejects a bad mode spec
        if mode.type_name in NO_LISTENER_MODES:
            continue
        host = mode.listen_host(listen_host)
        if is_loopback(host) or (proxyauth and mode.type_name in AUTHENTICATED_MODES):
            continue
        where = host or "every interface"
        why = (
            "without proxyauth"
            if mode.type_name in AUTHENTICATED_MODES
            else f"in {mode.type_name} mode, where proxyauth cannot protect it"
        )
        return (
            f"pool: refusing to run: mode {spec!r} listens on {where} {why}, so anyone who reaches that port spends "
            "the pool's Copilot accounts. Listen on loopback (--set listen_host=127.0.0.1), require proxy credentials "
            "(--set proxyauth=USER:PASS), or accept the risk (--set pool_allow_open_proxy=true)."
        )
    return None


def readable_by_others(path: str) -> int | None:
    """The file's permission bits when group or others may read it, else None (also when it cannot be read)."""
    try:
        mode = stat.S_IMODE(os.stat(os.path.expanduser(path)).st_mode)
    except OSError:
        return None
    return mode if mode & (stat.S_IRGRP | stat.S_IROTH) else None


class Guard:
    def check(self, options, updated: set[str], running: bool) -> None:
        """At start-up an exposure is logged as an error, which makes mitmproxy exit before it listens; at run
        time it is raised, so mitmproxy rolls the change back."""
        if updated & WATCHED and not options.pool_allow_open_proxy and options.server:  # -n: nothing listens
            problem = exposure_problem(list(options.mode), options.listen_host, bool(options.proxyauth))
            if problem and running:
                raise exceptions.OptionsError(problem)
            if problem:
                log.error(problem)
        if "pool_accounts" in updated and options.pool_accounts:
            mode = readable_by_others(options.pool_accounts)
            if mode is not None:
                log.warning(
                    f"pool: accounts file {options.pool_accounts} is readable by group or others (mode {mode:04o}); "
                    f"it holds GitHub tokens: chmod 600 {options.pool_accounts}"
                )
