#!/usr/bin/env python3
"""The chaos suite's checker: the database is the truth.

  check.py scenario DIR   -- judge one scenario from its directory (params.env, manifest.txt,
                             poison.json, exits.log, queues_*.txt, dead.json) and its database;
                             write DIR/result.json and print one line
  check.py table OUT      -- print the table of every scenario under OUT (sN/result.json);
                             exit 1 when any count is non-zero

Counts (all must be zero):
  lost       jobs not terminal at the end, plus ids the producer created that are not in the table
  dup        jobs with more than one summary memory or more than one set of supersession edges
  fx         effects not exactly once: a completed job without its one summary and one edge per
             source, a failed job with effects, or an orphan summary memory
  stuck      jobs still in_progress past their lease (a subset of lost)
  wrong_fail healthy jobs that ended failed/cancelled, or missing-source jobs that did not end
             failed with decay.compress.source_missing
  wrong_dl   dead letters that are not expected poison (a healthy id, an unknown body, or a poison
             message with the wrong reason)
  miss_dl    poison messages that are not in the dead-letter queue
  ready/unack messages left in the main queue after the workers stopped (plus unacked ones while
             every job was terminal and the workers idle)
  unclean    SIGTERMed workers that exited non-zero or left jobs in_progress, and workers that
             exited without being signalled
  stalled    (scenario 7) held up behind the slow job, just before its lock is released: probe
             jobs published 9 s earlier that are not terminal, plus worker statements piled up
             on the slow job's lock besides the one settling it (redeliveries and duplicates
             waiting with their delivery unacked, each holding a concurrency permit)

hit says whether the fault really happened (a kill landed, the heartbeat fired, a consumer timed
out...); a scenario whose fault did not hit fails.

Times: recover_s runs from the end of the last fault until every job created before it is
terminal; drain_s from the moment both the faults and the producer are done until every job is
terminal, the main queue and the retry tiers are empty and every expected dead letter is parked.
"""

import json
import os
import subprocess
import sys

COUNTS = ["lost", "dup", "fx", "stuck", "wrong_fail", "wrong_dl", "miss_dl", "ready", "unack",
          "unclean", "stalled"]


def params(d):
    p = {}
    with open(os.path.join(d, "params.env")) as f:
        for line in f:
            line = line.rstrip("\n")
            if "=" in line:
                k, v = line.split("=", 1)
                p[k] = v
    return p


def psql(p, sql):
    out = subprocess.run(
        ["psql", "-X", "-q", "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-h", p["PGHOST"], "-p",
         p["PGPORT"], "-U", "postgres", "-d", p["DB"], "-c", sql],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    return [line.split("\t") for line in out.splitlines() if line != ""]


def scalar(p, sql):
    return int(psql(p, sql)[0][0])


def read_lines(path):
    try:
        with open(path) as f:
            return [l.strip() for l in f if l.strip()]
    except FileNotFoundError:
        return []


def queue_counts(path, queue):
    """(ready, unacked) of `queue` in a `rabbitmqctl list_queues name messages_ready
    messages_unacknowledged` listing; None when the listing is missing."""
    lines = read_lines(path)
    if not lines:
        return None
    for l in lines:
        parts = l.split()
        if len(parts) >= 3 and parts[0] == queue:
            return int(parts[1]), int(parts[2])
    return None


MISSING = "operator:chaos-missing"


def judge(d):
    p = params(d)
    r = {"scenario": int(p["SCENARIO"]), "name": p["NAME"], "notes": []}
    notes = r["notes"]

    # ---- jobs -----------------------------------------------------------------------------
    states = dict((s, int(n)) for s, n in psql(p, "SELECT state, count(*) FROM decay_jobs GROUP BY 1"))
    r["jobs"] = sum(states.values())
    r["states"] = states
    manifest = set(read_lines(os.path.join(d, "manifest.txt")))
    present = set(row[0] for row in psql(p, "SELECT id FROM decay_jobs"))
    never_inserted = sorted(manifest - present)
    unknown = len(present - manifest)
    if unknown:
        notes.append(f"{unknown} job(s) in the table the producer did not record (kept; judged like the rest)")
    nonterminal = psql(p, "SELECT id, state, claimed_by, lease_expires_at < now() FROM decay_jobs "
                          "WHERE state IN ('pending','in_progress') ORDER BY id")
    r["lost"] = len(nonterminal) + len(never_inserted)
    r["lost_ids"] = [x[0] for x in nonterminal][:20] + never_inserted[:20]
    r["stuck"] = sum(1 for x in nonterminal if x[1] == "in_progress" and x[3] == "t")

    r["dup"] = scalar(p, """
        SELECT count(*) FROM decay_jobs j
         WHERE (SELECT count(*) FROM memories m WHERE m.produced_by_job_id = j.id) > 1
            OR (SELECT count(DISTINCT s.summary_memory_id) FROM memory_supersessions s
                 WHERE s.decay_job_id = j.id) > 1""")
    r["fx"] = scalar(p, """
        SELECT count(*) FROM decay_jobs j
         WHERE (j.state = 'completed' AND j.kind <> 'expired_principle_review' AND (
                   j.result_memory_id IS NULL
                OR (SELECT count(*) FROM memories m
                     WHERE m.produced_by_job_id = j.id AND m.id = j.result_memory_id) <> 1
                OR (SELECT count(*) FROM memory_supersessions s
                     WHERE s.decay_job_id = j.id AND s.summary_memory_id = j.result_memory_id)
                   <> jsonb_array_length(j.source_ids_json)))
            OR (j.state <> 'completed' AND (
                   EXISTS (SELECT 1 FROM memories m WHERE m.produced_by_job_id = j.id)
                OR EXISTS (SELECT 1 FROM memory_supersessions s WHERE s.decay_job_id = j.id)))""")
    r["fx"] += scalar(p, """
        SELECT count(*) FROM memories m
         WHERE m.memory_type = 'summary'
           AND NOT EXISTS (SELECT 1 FROM decay_jobs j
                            WHERE j.id = m.produced_by_job_id AND j.state = 'completed'
                              AND j.result_memory_id = m.id)""")
    healthy_bad = psql(p, f"""
        SELECT id, state, coalesce(failure_code, '') FROM decay_jobs
         WHERE created_by <> '{MISSING}' AND state IN ('failed', 'cancelled') ORDER BY id""")
    missing_bad = psql(p, f"""
        SELECT id, state, coalesce(failure_code, '') FROM decay_jobs
         WHERE created_by = '{MISSING}' AND state IN ('completed', 'failed', 'cancelled')
           AND NOT (state = 'failed' AND failure_code = 'decay.compress.source_missing')""")
    r["wrong_fail"] = len(healthy_bad) + len(missing_bad)
    r["wrong_fail_ids"] = [" ".join(x) for x in (healthy_bad + missing_bad)[:20]]
    n_missing = scalar(p, f"SELECT count(*) FROM decay_jobs WHERE created_by = '{MISSING}'")
    if n_missing:
        notes.append(f"{n_missing} missing-source job(s)")
    maxatt = psql(p, "SELECT coalesce(max(attempts), 0), count(*) FILTER (WHERE attempts > 1) FROM decay_jobs")[0]
    r["max_attempts"] = int(maxatt[0])
    r["reclaimed"] = int(maxatt[1])

    # ---- dead letters ---------------------------------------------------------------------
    try:
        poison = json.load(open(os.path.join(d, "poison.json")))
    except FileNotFoundError:
        poison = []
    try:
        dead = json.load(open(os.path.join(d, "dead.json")))["dead_letters"]
        dead_ok = True
    except (FileNotFoundError, ValueError, KeyError):
        dead, dead_ok = [], False
        notes.append("dead-letter listing unavailable")
    by_marker = {e["marker"]: i for i, e in enumerate(poison) if e["marker"]}
    by_job = {e["job_id"]: i for i, e in enumerate(poison) if e["job_id"]}
    empty = [i for i, e in enumerate(poison) if e["reason"] == "malformed_message" and not e["marker"]]
    seen = {}
    wrong = []
    for l in dead:
        body = l.get("body") or ""
        idx = None
        if l.get("job_id") in by_job:
            idx = by_job[l["job_id"]]
        else:
            for marker, i in by_marker.items():
                if marker in body:
                    idx = i
                    break
            if idx is None and body == "" and empty:
                idx = empty[0]
        if idx is None:
            wrong.append(f"{l.get('job_id') or body[:40]!r} reason={l.get('reason')}")
            continue
        if l.get("reason") != poison[idx]["reason"]:
            wrong.append(f"poison #{idx} with reason {l.get('reason')} (expected {poison[idx]['reason']})")
        seen[idx] = seen.get(idx, 0) + 1
    r["wrong_dl"] = len(wrong)
    r["wrong_dl_detail"] = wrong[:20]
    r["miss_dl"] = len([i for i in range(len(poison)) if i not in seen]) if dead_ok else len(poison)
    r["poison"] = len(poison)
    dl_dups = sum(n - 1 for n in seen.values())
    if dl_dups:
        notes.append(f"{dl_dups} poison message(s) dead-lettered more than once (at-least-once; info)")

    # ---- queues ---------------------------------------------------------------------------
    base = p["BASE"]
    post = queue_counts(os.path.join(d, "queues_post.txt"), base)
    pre = queue_counts(os.path.join(d, "queues_pre.txt"), base)
    if post is None:
        r["ready"], r["unack"] = 1, 0
        notes.append("no queue listing after stop (counted as 1 ready)")
    else:
        r["ready"], r["unack"] = post
    if pre is not None and pre[1] and p.get("DRAINED") == "1":
        r["unack"] += pre[1]
        notes.append(f"{pre[1]} delivery(ies) unacked while idle before the stop")
    retry_left = 0
    for l in read_lines(os.path.join(d, "queues_post.txt")):
        parts = l.split()
        if len(parts) >= 3 and parts[0].startswith(base + ".retry."):
            retry_left += int(parts[1]) + int(parts[2])
    if retry_left:
        notes.append(f"{retry_left} message(s) still in retry tiers after the stop")

    # ---- worker exits ---------------------------------------------------------------------
    unclean, kills, terms, crashes = [], 0, 0, 0
    for l in read_lines(os.path.join(d, "exits.log")):
        f = dict(kv.split("=", 1) for kv in l.split()[1:] if "=" in kv)
        who = l.split()[0]
        sig = f.get("sig", "none")
        if sig == "KILL":
            kills += 1
        elif sig == "TERM":
            terms += 1
            if f.get("rc") != "0" or f.get("inprog") not in ("0",):
                unclean.append(f"{who} TERM rc={f.get('rc')} inprog={f.get('inprog')}")
        else:
            crashes += 1
            unclean.append(f"{who} exited unsignalled rc={f.get('rc')}")
    r["unclean"] = len(unclean)
    r["unclean_detail"] = unclean[:20]
    r["kills"], r["terms"] = kills, terms
    r["stalled"] = int(p.get("STALLED") or 0)

    # ---- timing and notes -----------------------------------------------------------------
    if p.get("T_CAUGHT_UP"):
        r["recover_s"] = round(max(0.0, float(p["T_CAUGHT_UP"]) - float(p["T_FAULT_HEALED"])), 1)
    else:
        r["recover_s"] = None
        notes.append("jobs created before the last fault ended were not all terminal in time")
    if p.get("DRAINED") == "1":
        r["drain_s"] = round(float(p["T_DRAINED"]) - float(p["T_HEAL"]), 1)
    else:
        r["drain_s"] = None
        notes.append(f"did not drain within {p.get('DRAIN_TIMEOUT')} s")
    for k in ("NOTE_FAULTS", "NOTE_PRODUCER", "NOTE_BROKER", "NOTE_WORKERS"):
        if p.get(k):
            notes.append(p[k])
    if r["reclaimed"]:
        notes.append(f"{r['reclaimed']} job(s) claimed more than once (max attempts {r['max_attempts']})")
    r["hit"] = p.get("EXERCISED", "1") == "1"
    notes.insert(0, ("fault hit: " if r["hit"] else "FAULT NOT EXERCISED: ")
                 + p.get("EXERCISED_WHY", ""))
    r["pass"] = (all(r[c] == 0 for c in COUNTS) and r["drain_s"] is not None
                 and r["recover_s"] is not None and r["hit"])
    return r


def row(r):
    drain = "-" if r["drain_s"] is None else f"{r['drain_s']:.1f}"
    rec = "-" if r.get("recover_s") is None else f"{r['recover_s']:.1f}"
    cells = [f"{r['scenario']} {r['name']}", str(r["jobs"]), str(r["poison"])]
    cells += [str(r[c]) for c in COUNTS]
    cells += ["yes" if r.get("hit", True) else "NO", rec, drain, "PASS" if r["pass"] else "FAIL"]
    return cells


HEADER = ["scenario", "jobs", "poison"] + COUNTS + ["hit", "recover_s", "drain_s", "result"]


def table(out):
    results = []
    for name in sorted(os.listdir(out), key=lambda n: (len(n), n)):
        f = os.path.join(out, name, "result.json")
        if name.startswith("s") and os.path.exists(f):
            results.append(json.load(open(f)))
    rows = [HEADER] + [row(r) for r in results]
    print("| " + " | ".join(HEADER) + " |")
    print("|" + "|".join("---" for _ in HEADER) + "|")
    for rr in rows[1:]:
        print("| " + " | ".join(rr) + " |")
    print()
    for r in results:
        extra = list(r["notes"])
        for k in ("lost_ids", "wrong_fail_ids", "wrong_dl_detail", "unclean_detail"):
            if r.get(k):
                extra.append(f"{k}: {', '.join(r[k][:5])}{' ...' if len(r[k]) > 5 else ''}")
        print(f"s{r['scenario']} {r['name']}: " + "; ".join(extra))
    bad = [r for r in results if not r["pass"]]
    print()
    print(f"{len(results) - len(bad)} passed, {len(bad)} failed")
    return 1 if bad or not results else 0


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("scenario", "table"):
        print(__doc__, file=sys.stderr)
        return 2
    if sys.argv[1] == "table":
        return table(sys.argv[2])
    d = sys.argv[2]
    r = judge(d)
    with open(os.path.join(d, "result.json"), "w") as f:
        json.dump(r, f, indent=1)
    print(" ".join(f"{h}={c}" for h, c in zip(HEADER, row(r))))
    return 0 if r["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
