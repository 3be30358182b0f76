"""Which models an account can serve, from its own `/models` answer, and the catalogue the pool shows clients.

Accounts differ (plan, policy, `billing.restricted_to`): a request for model M on endpoint E goes only to an
account whose catalogue lists M with E among its `supported_endpoints` (when the entry has that field). An
account whose catalogue is not known yet is taken to serve everything, as before catalogues existed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .parse import json_object

# The request paths whose model is routed, and the endpoint name `/models` entries use for each.
MODEL_ENDPOINTS = {
    "/chat/completions": "/chat/completions",
    "/v1/chat/completions": "/chat/completions",
    "/responses": "/responses",
    "/v1/messages": "/v1/messages",
    "/embeddings": "/embeddings",
}


def websocket_endpoint(path: str) -> str:
    """`GET /responses` upgraded to a WebSocket is `ws:/responses` in `supported_endpoints`."""
    return f"ws:{path}"


@dataclass(frozen=True, slots=True)
class Catalogue:
    entries: dict[str, dict]  # model id -> its `/models` entry, as the account's answer gave it
    fetched_at: float  # pool clock

    def serves(self, model: str | None, endpoint: str | None) -> bool:
        """The model on the endpoint; with no model, any model on the endpoint (a WebSocket before its first
        message)."""
        if model is None:
            return endpoint is None or any(_lists(entry, endpoint) for entry in self.entries.values())
        entry = self.entries.get(model)
        return entry is not None and (endpoint is None or _lists(entry, endpoint))

    @property
    def websocket_paths(self) -> set[str]:
        """The paths any entry may be called on as a WebSocket (`ws:/responses` -> `/responses`)."""
        return {
            e.removeprefix("ws:")
            for entry in self.entries.values()
            for e in entry.get("supported_endpoints") or ()
            if isinstance(e, str) and e.startswith("ws:")
        }


def _lists(entry: dict, endpoint: str) -> bool:
    endpoints = entry.get("supported_endpoints")
    if not isinstance(endpoints, list):
        return not endpoint.startswith("ws:")  # no field: the HTTP endpoints, never a WebSocket
    return endpoint in endpoints


def parse_models(body: bytes, now: float) -> Catalogue | None:
    """A `/models` answer (`{"data": [{"id": ..., ...}, ...]}`) as a catalogue; None when it is not one."""
    data = json_object(body).get("data")
    if not isinstance(data, list):
        return None
    entries = {e["id"]: e for e in data if isinstance(e, dict) and isinstance(e.get("id"), str)}
    return Catalogue(entries, now)


def merged(catalogues: Iterable[Catalogue]) -> dict:
    """One `/models` answer for the whole pool: one entry per model id (the first account's, with the union of
    every account's `supported_endpoints`), so a client's model picker shows every model some account serves."""
    entries: dict[str, dict] = {}
    for catalogue in catalogues:
        for model, entry in catalogue.entries.items():
            seen = entries.get(model)
            if seen is None:
                entries[model] = dict(entry)
                continue
            union = [*(seen.get("supported_endpoints") or [])]
            union += [e for e in entry.get("supported_endpoints") or [] if e not in union]
            if union:
                seen["supported_endpoints"] = union
            if entry.get("model_picker_enabled"):
                seen["model_picker_enabled"] = True
    return {"object": "list", "data": list(entries.values())}
