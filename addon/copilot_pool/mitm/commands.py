"""The pool's commands (mitmproxy console `:`, mitmweb's command bar). Names use [a-z.] only, the only names
mitmweb's command route accepts. A command that cannot do what it was asked raises CommandError."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from mitmproxy import command, exceptions

from ..observe.status import command_lines
from ..runtime.accounts_file import AccountsFileError
from ..runtime.service import PoolService, UnknownAccount


class PoolCommands:
    def __init__(self, service: PoolService, reload: Callable[[], None], passthrough: Callable[[], bool]) -> None:
        self.service = service
        self._reload = reload
        self._passthrough = passthrough

    def register(self, loader) -> None:
        for name in dir(self):
            method = getattr(self, name)
            if hasattr(method, "command_name"):
                loader.add_command(method.command_name, method)

    def _account(self, name: str):
        try:
            return self.service.account(name)
        except UnknownAccount as e:
            raise exceptions.CommandError(str(e)) from None

    @command.command("pool.status")
    def status(self) -> Sequence[str]:
        """One line per account: state, in flight, last used, cooldown, token expiry, served, 429s; then where the
        state is kept."""
        if self._passthrough():
            return ["pool: no accounts configured; all traffic passes through"]
        return command_lines(self.service.pool, self.service.state.status())

    @command.command("pool.reload")
    def reload(self) -> str:
        """Re-read the accounts file now."""
        try:
            self._reload()
        except AccountsFileError as e:
            raise exceptions.CommandError(f"reload failed, pool unchanged: {e}") from None
        return f"pool: {len(self.service.pool.accounts)} account(s)"

    @command.command("pool.refresh")
    def refresh(self, name: str) -> str:
        """Re-exchange one account's Copilot token now."""
        self._account(name)
        self.service.spawn(self.service.refresh(name, reason="pool.refresh"))
        return f"pool: refreshing {name}'s token"

    @command.command("pool.cooldown")
    def cooldown(self, name: str, seconds: int) -> str:
        """Cool an account for SECONDS from now (0 ends its cooldown)."""
        if seconds < 0:
            raise exceptions.CommandError("seconds must be 0 or more")
        self._account(name)
        self.service.set_cooldown(name, seconds)
        return f"pool: {name} cooling for {seconds}s" if seconds else f"pool: {name}'s cooldown ended"

    @command.command("pool.disable")
    def disable(self, name: str) -> str:
        """Take an account out of the pool until pool.enable (or its entry in the accounts file changes)."""
        self._account(name)
        self.service.disable(name)
        return f"pool: {name} disabled"

    @command.command("pool.enable")
    def enable(self, name: str) -> str:
        """Put a disabled account back into the pool."""
        self._account(name)
        account = self.service.enable(name)
        return f"pool: {name} {account.base_state.value}"
