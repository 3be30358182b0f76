#!/usr/bin/env python3
"""Reading a request's `model` on the hot path: core/bodies.py's `model_of` against `json.loads` of the same
58 KB chat body (110 messages), with the key first (as the editors send it) and last. Best of 5 timeit runs.

    .venv/bin/python benchmarks/bodies.py
"""

from __future__ import annotations

import json
import timeit

from copilot_pool.core.bodies import model_of


def run() -> dict:
    messages = [{"role": "user", "content": "x" * 500 + str(i)} for i in range(110)]
    bodies = {
        "model first": json.dumps({"model": "gpt-5", "messages": messages, "stream": True}).encode(),
        "model last": json.dumps({"messages": messages, "stream": True, "model": "gpt-5"}).encode(),
    }
    results = {}
    for name, body in bodies.items():
        assert model_of(body) == "gpt-5"
        read = min(timeit.repeat(lambda body=body: model_of(body), number=2000, repeat=5)) / 2000
        parsed = min(timeit.repeat(lambda body=body: json.loads(body), number=200, repeat=5)) / 200
        results[name] = {
            "kb": round(len(body) / 1000),
            "model_of_us": round(read * 1e6, 1),
            "json_loads_us": round(parsed * 1e6),
        }
    return {"benchmark": "bodies", "results": results}


if __name__ == "__main__":
    for name, r in run()["results"].items():
        print(f"{name}: {r['kb']} KB body, model_of {r['model_of_us']} µs, json.loads {r['json_loads_us']} µs")
