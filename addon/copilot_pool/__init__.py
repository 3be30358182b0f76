"""copilot-pool: share a pool of GitHub Copilot accounts through mitmproxy.

Layers, each importing only from the ones before it:
  core/     pure and synchronous: the account model, the pool and its every state change, strategies,
            classification of answers, header parsing, routing, affinity. No asyncio, I/O or mitmproxy.
  runtime/  asyncio on an injected clock: token keeper, wait queue, file watch, quota poll, the service.
  github.py the HTTP calls to GitHub (token exchange, /copilot_internal/user).
  observe/  what operators see: redaction, status snapshot and its renderings, state log.
  mitm/     the only part that imports mitmproxy: the addon, failover re-sends, commands, status page, guard.
"""

LOGGER_NAME = "copilot_pool"  # every module logs here; observe/redact.py masks tokens on this logger
