#!/usr/bin/env python3
"""Write the poison messages of a chaos scenario as JSON: malformed bodies (each carries a unique
`poison-NNN` marker where the body can carry one) and ghost job ids (well-formed, but no such
job exists). Every entry says which dead-letter reason the worker must give it.

usage: poison.py SCENARIO MALFORMED GHOSTS > poison.json
"""

import json
import sys

VALID_OTHER = "01ARZ3NDEKTSV4RRFFQ69G5FAV"


def malformed(n):
    out = []
    templates = [
        lambda m: f"not json at all {m}".encode(),
        lambda m: f'{{"job_id": 42, "m": "{m}"}}'.encode(),
        lambda m: f'{{"job": "dcy_{VALID_OTHER}", "m": "{m}"}}'.encode(),
        lambda m: f"mem_{VALID_OTHER} {m}".encode(),
        lambda m: f'{{"job_id": "epi_{VALID_OTHER}", "m": "{m}"}}'.encode(),
        lambda m: f"dcy_{VALID_OTHER.lower()} {m}".encode(),
        lambda m: f"dcy_8ZZZZZZZZZZZZZZZZZZZZZZZZZ {m}".encode(),
        lambda m: f"{m} ".encode() + b"x" * 5000,  # over the 4 KiB limit
        lambda m: b"\xff\xfe\xfd " + m.encode(),  # not UTF-8
        lambda m: ("{" + m).encode(),  # truncated JSON
        lambda m: f'["dcy_{VALID_OTHER}", "{m}"]'.encode(),
        lambda m: f'{{"job_id": null, "m": "{m}"}}'.encode(),
    ]
    for i in range(n):
        marker = f"poison-{i:03d}"
        body = b"" if i == 0 else templates[i % len(templates)](marker)
        out.append({
            "hex": body.hex(),
            "marker": "" if i == 0 else marker,  # the empty body cannot carry one
            "reason": "malformed_message",
            "job_id": None,
        })
    return out


def ghosts(scenario, n):
    out = []
    for k in range(n):
        jid = "dcy_7%02X%023X" % (scenario, k)
        out.append({
            "hex": json.dumps({"job_id": jid}).encode().hex(),
            "marker": "",
            "reason": "job_not_found",
            "job_id": jid,
        })
    return out


def main():
    scenario, n_bad, n_ghost = (int(a) for a in sys.argv[1:4])
    json.dump(malformed(n_bad) + ghosts(scenario, n_ghost), sys.stdout, indent=0)


if __name__ == "__main__":
    main()
