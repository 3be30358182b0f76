"""copilot-pool: share a pool of GitHub Copilot accounts through mitmproxy.

Everything here except `addon` is the pure core and imports nothing from mitmproxy.
"""
