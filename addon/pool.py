"""Entry point: `mitmdump -s addon/pool.py --set pool_accounts=accounts.json`.

mitmproxy puts this file's folder on sys.path while loading it, so the package beside it imports.
"""

from copilot_pool.addon import CopilotPool

addons = [CopilotPool()]
