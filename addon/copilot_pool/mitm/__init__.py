"""The mitmproxy layer: the only package that imports mitmproxy."""
