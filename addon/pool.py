"""Entry point: `mitmdump -s addon/pool.py --set pool_accounts=accounts.json --set listen_host=127.0.0.1`.

mitmproxy puts this file's folder on sys.path while loading it, so the package beside it imports.
"""

from copilot_pool.mitm.addon import CopilotPool
from copilot_pool.observe import redact

redact.install()  # before anything logs: the addon's log lines never carry a token

addons = [CopilotPool()]
