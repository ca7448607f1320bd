"""Turn a run's result rows into markdown: one table per cell, one of sidecar/Cerbos ratios.

Each cell (engine, scenario, concurrency) is the median over its reps. Ratios are
sidecar / Cerbos, so above 1 means "the sidecar does more" for req/s and "the sidecar is
slower" for latencies. The pairs compare what each engine answers per request: a
single check of a role-only rule, and a 50-check batch.
"""

from __future__ import annotations

import statistics
from typing import Any

# (sidecar scenario, Cerbos scenario, concurrency)
PAIRS: tuple[tuple[str, str, int], ...] = (
    ("check_single", "single_simple", 1),
    ("check_single", "single_simple", 8),
    ("check_single", "single_cond", 8),
    ("check_batch_50", "batch_50_resources", 8),
)


def cells(rows: list[dict[str, Any]]) -> dict[tuple[str, str, int], dict[str, Any]]:
    """(engine, scenario, conc) -> medians over reps."""
    grouped: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault((row["engine"], row["scenario"], row["conc"]), []).append(row)
    out = {}
    for key, reps in grouped.items():
        rps = [r["wrk"]["rps"] for r in reps]

        def median(field: str, reps: list[dict[str, Any]] = reps) -> float:
            return float(statistics.median(r["wrk"][field] for r in reps))

        out[key] = {
            "reps": len(reps),
            "rps": statistics.median(rps),
            "rps_min": min(rps),
            "rps_max": max(rps),
            "p50_ms": median("p50_us") / 1000,
            "p90_ms": median("p90_us") / 1000,
            "p99_ms": median("p99_us") / 1000,
            "p999_ms": median("p999_us") / 1000,
            "checks_per_s": statistics.median(rps) * reps[0]["checks_per_request"],
            "non_2xx": sum(r["wrk"]["non_2xx"] for r in reps),
            "errors": sum(r["wrk"]["errors"] for r in reps),
            "rss_mb": statistics.median(r["server_rss_kb"] for r in reps) / 1024,
        }
    return out


def _ratio(a: dict[str, Any] | None, b: dict[str, Any] | None, field: str) -> str:
    return f"{a[field] / b[field]:.2f}" if a and b and b[field] else "n/a"


def _setup(result: dict[str, Any]) -> str:
    meta = result["meta"]
    said = [
        f"{meta['machine']}. Servers on CPU 1, wrk on CPU 0 (`-t1 --latency`), {meta['duration_s']:g} s runs "
        f"after a {meta['warmup_s']:g} s warm-up, {meta['reps']} alternating round(s), median shown."
    ]
    if "sidecar" in result:
        threads = f" x {meta['threads']} threads" if meta.get("threads") else ""
        said.append(f"Sidecar: preset `{meta['preset']}`, server {meta.get('server', 'gunicorn')}, "
                    f"{meta['workers']} workers{threads}.")
    if "cerbos" in result:
        said.append("Cerbos: 0.55.0, audit off, log level warn.")
    said.append(f"Load average at start: {' '.join(meta['loadavg_at_start'])}.")
    return " ".join(said)


def _sidecar_facts(meta: dict[str, Any]) -> str:
    """Import time and memory, when the sidecar got that far."""
    if "rss_after_import" not in meta:
        return ""
    records = sum(meta["data"]["records"].values())
    rss = meta["rss_after_load"] if "rss_after_load" in meta else meta["rss_after_import"]
    others = ", ".join(f"{name.split(':')[0]} {kb / 1024:.0f} MB" for name, kb in rss["others_kb"].items())
    return (
        f"Sidecar import: {records:,} records in {meta['import_s']:.1f} s. RSS after the runs: "
        f"master {rss['master_kb'] / 1024:.0f} MB + workers "
        f"{' + '.join(f'{kb / 1024:.0f}' for kb in rss['workers_kb'])} MB"
        + (f"; also {others}" if others else "")
        + " (RSS counts pages shared after fork once per process)."
    )


def markdown(result: dict[str, Any]) -> str:
    rows = [row for part in ("sidecar", "cerbos") for row in result.get(part, {}).get("rows", [])]
    table = cells(rows)
    lines = [
        f"# Sidecar vs Cerbos, {result['meta']['started_utc']}",
        "",
        _setup(result),
        "",
        "| engine | scenario | conc | req/s | min-max | p50 ms | p90 ms | p99 ms | p99.9 ms | checks/s "
        "| non-2xx | errors | RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (engine, scenario, conc), cell in sorted(table.items()):
        lines.append(
            f"| {engine} | {scenario} | {conc} | {cell['rps']:,.0f} | {cell['rps_min']:,.0f}-{cell['rps_max']:,.0f} "
            f"| {cell['p50_ms']:.2f} | {cell['p90_ms']:.2f} | {cell['p99_ms']:.2f} | {cell['p999_ms']:.2f} "
            f"| {cell['checks_per_s']:,.0f} | {cell['non_2xx']} | {cell['errors']} | {cell['rss_mb']:.0f} |"
        )
    lines += [
        "",
        "Ratios sidecar / Cerbos (each pair asks the same number of checks per request; "
        "req/s above 1: the sidecar is faster; p50, p99 above 1: the sidecar is slower):",
        "",
        "| sidecar | Cerbos | conc | sidecar req/s | Cerbos req/s | req/s ratio | p50 ratio | p99 ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for ours, theirs, conc in PAIRS:
        s, c = table.get(("sidecar", ours, conc)), table.get(("cerbos", theirs, conc))
        if s is None and c is None:
            continue
        shown = " | ".join(f"{x['rps']:,.0f}" if x else "n/a" for x in (s, c))
        ratios = " | ".join(_ratio(s, c, field) for field in ("rps", "p50_ms", "p99_ms"))
        lines.append(f"| {ours} | {theirs} | {conc} | {shown} | {ratios} |")
    facts = _sidecar_facts(result.get("sidecar", {}).get("meta", {}))
    if facts:
        lines += ["", facts]
    for part in ("sidecar", "cerbos"):
        failure = result.get(part, {}).get("error")
        if failure:
            lines += ["", f"**{part} failed** at step “{failure['step']}”: `{failure['message'].splitlines()[0]}`"]
    return "\n".join(lines) + "\n"
