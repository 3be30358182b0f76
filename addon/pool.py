"""Entry point: `mitmdump -s addon/pool.py --set pool_accounts=accounts.json --set listen_host=127.0.0.1`.

mitmproxy puts this file's folder on sys.path while loading it, so the package beside it imports.
"""

from copilot_pool import redact
from copilot_pool.addon import CopilotPool
from copilot_pool.guard import Guard
from copilot_pool.statewatch import StateWatch
from copilot_pool.statuspage import StatusPage

redact.install()  # before anything logs: the addon's log lines never carry a token

pool = CopilotPool()
addons = [Guard(), pool, StatusPage(pool), StateWatch(pool)]
