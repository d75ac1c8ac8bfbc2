#!/usr/bin/env python3
"""Renders the CSVs of a benchmark run as Markdown tables.

Usage:
  bench/tables.py [OUT_DIR]        print the tables of a run (default
                                   build-bench/bench-out): compare.csv,
                                   go_builds.csv, shim_replay.csv if present
  bench/tables.py --update FILE..  rewrite every generated table in FILEs
  bench/tables.py --check FILE..   exit 1 when one of them is stale (ctest
                                   docs_tables_current runs it on the READMEs)

A generated table sits between a marker naming its kind and CSV (path from
the repository root) and an end marker; the text between is replaced:

  <!-- tables.py compare bench/results/RUN/compare.csv -->
  | ... |
  <!-- end tables.py -->

Kinds: compare, go_builds, shim, headline (the top-concurrency row of each
mix of a compare.csv, ratios only: the README's one small table), nodes
(bench/nodes.sh), go_profiles (a go_builds.csv run with --profile: one row
per target and profile, the three peers' warm-remote seconds side by side)
and go_headline (the same, fewer columns, for the README), go_pair (a
go_builds.csv run with --baseline_shim: this shim against the baseline,
same server and profile, with go-tool-cache).
"""

import csv
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def num(v, digits=1):
    if v in (None, ""):
        return "-"
    try:
        return "%.*f" % (digits, float(v))
    except ValueError:
        return v


def md(header, rows):
    out = ["| " + " | ".join(header) + " |",
           "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def compare(path):
    rows = list(csv.DictReader(open(path)))
    header = ["mix", "streams", "Cairn ops/s", "b-r ops/s", "ops ratio",
              "Cairn MB/s", "b-r MB/s", "Cairn p50 ms", "b-r p50 ms",
              "Cairn p99 ms", "b-r p99 ms", "p99 ratio", "Cairn RSS MiB",
              "b-r RSS MiB", "Cairn CPU us/op", "b-r CPU us/op", "runs"]
    body = []
    for r in rows:
        ms = lambda k: num(float(r[k]) / 1000, 2) if r.get(k) else "-"
        body.append([
            r["mix"], r["concurrency"],
            num(r["cairn:ops_per_s"]), num(r["bazel-remote:ops_per_s"]),
            num(r["ratio:ops_per_s"], 2),
            num(r["cairn:mb_per_s"]), num(r["bazel-remote:mb_per_s"]),
            ms("cairn:p50_us"), ms("bazel-remote:p50_us"),
            ms("cairn:p99_us"), ms("bazel-remote:p99_us"),
            num(r["ratio:p99_us"], 2),
            num(r["cairn:server_peak_rss_mib"]),
            num(r["bazel-remote:server_peak_rss_mib"]),
            num(r["cairn:server_cpu_us_per_op"], 0),
            num(r["bazel-remote:server_cpu_us_per_op"], 0),
            "%s/%s" % (r.get("cairn:n") or 0, r.get("bazel-remote:n") or 0)])
    return md(header, body)


def go_builds(path):
    rows = list(csv.DictReader(open(path)))
    header = ["target", "scenario", "runs", "median s", "min s", "max s",
              "vs warm local", "speed-up vs no cache", "gets", "local hits",
              "remote hits", "misses", "puts"]
    body = [[r["target"], r["scenario"], r["runs"], r["median_s"], r["min_s"],
             r["max_s"], num(r["vs_warm_local"], 2),
             num(r["speedup_vs_nocache"], 2)] +
            [r[k] or "-" for k in ("gets", "local_hits", "remote_hits",
                                   "misses", "puts")] for r in rows]
    return md(header, body)


def _profile_rows(path):
    """Yields (target, profile, {scenario: row}, nocache s, warm local s)."""
    rows = list(csv.DictReader(open(path)))
    for t in dict.fromkeys(r["target"] for r in rows):
        base = {r["scenario"]: float(r["median_s"]) for r in rows
                if r["target"] == t and r["scenario"] in ("nocache",
                                                          "warm_local")}
        for p in dict.fromkeys(r["profile"] for r in rows
                               if r["target"] == t):
            by = {r["scenario"]: r for r in rows
                  if r["target"] == t and r["profile"] == p}
            if "warm_cairn" in by:
                yield t, p, by, base.get("nocache"), base.get("warm_local")


def _secs(by, scenario):
    return float(by[scenario]["median_s"]) if scenario in by else None


def _mb(by, scenario):
    r = by.get(scenario)
    if not r or not r["wire_bytes"]:
        return "-"
    return "%.1f" % (int(r["wire_bytes"]) / 1e6)


def go_profiles(path):
    header = ["target", "profile", "Cairn warm s", "/ warm local",
              "bazel-remote+shim s", "go-tool-cache s",
              "Cairn vs go-tool-cache", "speed-up over no cache",
              "wire MB Cairn / b-r / go-tool-cache", "body MB"]
    body = []
    for t, p, by, nc, wl in _profile_rows(path):
        c, b, g = (_secs(by, s) for s in ("warm_cairn", "warm_bazel-remote",
                                          "warm_go-tool-cache"))
        body.append([
            t, p, num(c, 2), num(c / wl, 2) if wl else "-", num(b, 2),
            num(g, 2), ("%.2fx faster" % (g / c) if g >= c else
                        "%.2fx slower" % (c / g)) if g else "-",
            num(nc / c, 1) if nc else "-",
            " / ".join(_mb(by, s) for s in ("warm_cairn", "warm_bazel-remote",
                                            "warm_go-tool-cache")),
            "%.1f" % (int(by["warm_cairn"]["bytes_down"] or 0) / 1e6)])
    return md(header, body)


def go_headline(path):
    header = ["profile", "warm remote s: Cairn / b-r+shim / go-tool-cache",
              "Cairn / warm local", "Cairn speed-up over no cache",
              "Cairn wire / outputs"]
    body = []
    for t, p, by, nc, wl in _profile_rows(path):
        c, b, g = (_secs(by, s) for s in ("warm_cairn", "warm_bazel-remote",
                                          "warm_go-tool-cache"))
        wire = by["warm_cairn"]["wire_bytes"]
        plain = by["warm_cairn"]["bytes_down"]
        body.append([
            "%s %s" % (t, p), " / ".join(num(x, 2) for x in (c, b, g)),
            num(c / wl, 2) if wl else "-", num(nc / c, 1) if nc else "-",
            "%d%%" % round(100 * int(wire) / int(plain))
            if wire and plain and int(plain) else "-"])
    return md(header, body)


def go_pair(path):
    header = ["target", "profile", "Cairn warm s (/ warm local)",
              "baseline shim s (/ warm local)", "go-tool-cache s",
              "Cairn vs go-tool-cache", "wire MB Cairn / baseline", "RPCs"]
    body = []
    for t, p, by, nc, wl in _profile_rows(path):
        c, b, g = (_secs(by, s) for s in ("warm_cairn", "warm_cairn_base",
                                          "warm_go-tool-cache"))
        ratio = lambda x: "%s (%s)" % (num(x, 2), num(x / wl, 2) if wl and x
                                       else "-")
        body.append([
            t, p, ratio(c), ratio(b), num(g, 2),
            ("%.2fx faster" % (g / c) if g >= c else
             "%.2fx slower" % (c / g)) if g else "-",
            " / ".join(_mb(by, s) for s in ("warm_cairn", "warm_cairn_base")),
            by["warm_cairn"].get("rpcs") or "-"])
    return md(header, body)


def shim(path):
    rows = list(csv.DictReader(open(path)))
    header = ["server", "phase", "n", "unexpected", "p50 us", "p90 us",
              "p99 us", "mean us"]
    return md(header, [[r[k] for k in ("server", "phase", "n", "unexpected",
                                        "p50_us", "p90_us", "p99_us",
                                        "mean_us")] for r in rows])


def headline(path):
    rows = list(csv.DictReader(open(path)))
    top = {}
    for r in rows:  # Keeps the row with the most streams of each mix.
        if r["mix"] not in top or int(r["concurrency"]) > int(
                top[r["mix"]]["concurrency"]):
            top[r["mix"]] = r
    header = ["mix", "streams", "throughput Cairn / b-r",
              "p99 latency Cairn / b-r", "server CPU per op Cairn / b-r"]
    return md(header, [[r["mix"], r["concurrency"],
                        num(r["ratio:ops_per_s"], 2),
                        num(r["ratio:p99_us"], 2),
                        num(r["ratio:server_cpu_us_per_op"], 2)]
                       for r in top.values()])


NODE_METRICS = {
    "hit_blobs": ("second node, right after the first wrote: blobs present", "%"),
    "hit_ac": ("second node, right after the first wrote: action results hit", "%"),
    "find_requests": ("bucket requests for FindMissingBlobs of 1000 known digests", ""),
    "puts_per_object": ("bucket PUTs per distinct object (two clients wrote the same 1200)", ""),
    "go_cold": ("Go build, cold machine through A (fills the bucket)", "s"),
    "go_cold_node": ("Go build, fresh machine through a cold node (empty local tier, warm bucket), median", "s"),
    "go_warm_single": ("Go build, fresh machine through W (warm single node, no bucket), median", "s"),
    "go_warm_node": ("Go build, fresh machine through A (warm node), median", "s"),
    "go_ratio": ("Go: cold node / warm node (W when measured, else A)", ""),
    "bazel_cold": ("Bazel build (206 genrules), first, through A (fills the bucket)", "s"),
    "bazel_cold_node": ("Bazel build after `bazel clean`, through a cold node, median", "s"),
    "bazel_warm_single": ("Bazel build after `bazel clean`, through W (warm single node), median", "s"),
    "bazel_ratio": ("Bazel: cold node / W", ""),
}


def nodes(path):
    rows = list(csv.DictReader(open(path)))
    body = []
    for r in rows:
        label, unit = NODE_METRICS.get(r["metric"], (r["metric"], ""))
        body.append([label, (r["cairn"] + " " + unit).strip(),
                     (r["bazel-remote"] + " " + unit).strip() if r["bazel-remote"] else "-",
                     r["load"]])
    return md(["measure", "Cairn tiered", "bazel-remote + S3 proxy",
               "load average"], body)


KINDS = {"compare": compare, "go_builds": go_builds, "shim": shim,
         "headline": headline, "nodes": nodes, "go_profiles": go_profiles,
         "go_headline": go_headline, "go_pair": go_pair}
BLOCK = re.compile(r"(<!-- tables\.py (\w+) (\S+) -->\n)(.*?)"
                   r"(<!-- end tables\.py -->)", re.S)


def regenerate(text):
    """Returns `text` with every generated table rendered afresh."""
    def one(m):
        kind, csv_path = m.group(2), m.group(3)
        if kind not in KINDS:
            sys.exit("tables.py: unknown kind %r" % kind)
        table = KINDS[kind](os.path.join(ROOT, csv_path))
        return m.group(1) + table + "\n" + m.group(5)
    return BLOCK.sub(one, text)


def update(files, check):
    stale = []
    for name in files:
        text = open(name).read()
        fresh = regenerate(text)
        if fresh != text:
            stale.append(name)
            if not check:
                with open(name, "w") as f:
                    f.write(fresh)
    if check and stale:
        sys.exit("tables.py: stale tables in %s; run bench/tables.py "
                 "--update %s" % (", ".join(stale), " ".join(files)))
    print("tables.py: %s %s" % ("checked" if check else "updated",
                                 ", ".join(files)))


def main():
    if len(sys.argv) > 2 and sys.argv[1] in ("--update", "--check"):
        return update(sys.argv[2:], sys.argv[1] == "--check")
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        ROOT, "build-bench", "bench-out")
    for name, fn in (("compare.csv", compare), ("go_builds.csv", go_builds),
                     ("shim_replay.csv", shim)):
        p = os.path.join(out, name)
        if os.path.exists(p):
            print("### " + name + "\n")
            print(fn(p) + "\n")


if __name__ == "__main__":
    main()
