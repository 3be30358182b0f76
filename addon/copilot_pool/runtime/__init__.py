"""The asyncio runtime: background work on mitmproxy's event loop, on an injected clock."""
