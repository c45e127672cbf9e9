"""Turns the raw bench output into a table and bench/results.json.
Every ratio compares numbers taken in the same run of make bench."""
import json, os, platform, re, sys, time

out, dest, mpi_bytes, mpi_files = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

def hyperfine(name):
    p = os.path.join(out, name + ".json")
    if not os.path.exists(p):
        return None
    return {r["command"]: {"min_ms": min(r["times"]) * 1e3, "median_ms": r["median"] * 1e3,
                           "mean_ms": r["mean"] * 1e3, "runs": len(r["times"])}
            for r in json.load(open(p))["results"]}

def pingpong(name):
    best = {}
    for line in open(os.path.join(out, name)).read().splitlines():
        m = re.match(r"pingpong size=(\d+) (latency_us|bandwidth_MBps)=([\d.]+)", line)
        if m:
            size, kind, v = int(m.group(1)), m.group(2), float(m.group(3))
            key = f"{size}"
            better = min if kind == "latency_us" else max
            best[key] = better(best.get(key, v), v)
    return best

def syscalls(name):
    text = open(os.path.join(out, name)).read()
    m = re.search(r"^\s*100\.00\s+\S+\s+\S+\s+(\d+)", text, re.M)
    return int(m.group(1)) if m else None

def synthetic_sizes():
    p = os.path.join(out, "synthetic-files.txt")
    if not os.path.exists(p):
        return []
    n = int(open(p).read())
    return [n // 4, n]

res = {
    "date": time.strftime("%Y-%m-%d"),
    "machine": f"{platform.machine()}, {os.cpu_count()} cores, kernel {platform.release()}",
    "warm_start": hyperfine("warm_start"),
    "oci_run": hyperfine("oci_run"),
    "oci_lifecycle": hyperfine("oci_lifecycle"),
    "oci_exec": hyperfine("oci_exec"),
    "cold_unpack": hyperfine("cold_unpack"),
    "cold_unpack_peak_rss_kb": json.load(open(os.path.join(out, "rss.json"))),
    "concurrent": hyperfine("concurrent"),
    "synthetic": {n: hyperfine(f"synthetic_{n}") for n in synthetic_sizes()},
    "pingpong_native": pingpong("pp-native.txt"),
    "pingpong_hpcc": pingpong("pp-hpcc.txt"),
    "startup_syscalls": {"hpcc": syscalls("strace-hpcc.txt"), "ch-run": syscalls("strace-chrun.txt")},
    "binary_bytes": {"hpcc": int(open(os.path.join(out, "size-hpcc.txt")).read()),
                     "ch-run": int(open(os.path.join(out, "size-chrun.txt")).read())},
    "mpi_image": {"layer_bytes": mpi_bytes, "files": mpi_files},
}

def ratio(a, b):
    return round(a / b, 2) if a and b else None

rows = []
def row(case, value, peer, r, target):
    rows.append((case, value, peer, "-" if r is None else f"{r:.2f}x", target))

w = res["warm_start"]
if w:
    row("warm start, busybox (median)", f"{w['hpcc']['median_ms']:.2f} ms", f"ch-run {w['ch-run']['median_ms']:.2f} ms",
        ratio(w["hpcc"]["median_ms"], w["ch-run"]["median_ms"]), "<= 1.0x ch-run (aim 0.8x)")
    row("  kernel floor: unshare -Urm true", f"{w['unshare']['median_ms']:.2f} ms", "", None, "")
    row("  warm start, 200 MB MPI image", f"{w['hpcc-mpi-image']['median_ms']:.2f} ms", f"busybox {w['hpcc']['median_ms']:.2f} ms",
        ratio(w["hpcc-mpi-image"]["median_ms"], w["hpcc"]["median_ms"]), "~1.0x")
for key, label in (("oci_run", "OCI run (root)"), ("oci_lifecycle", "create+start+delete (root)"),
                   ("oci_exec", "exec into a running container (root)")):
    o = res[key]
    if o:
        row(label, f"{o['hpcc']['median_ms']:.2f} ms", f"crun {o['crun']['median_ms']:.2f} ms, runc {o['runc']['median_ms']:.2f} ms",
            ratio(o["hpcc"]["median_ms"], o["crun"]["median_ms"]), "<= 0.8x crun")
        if "hpcc-memfd-seal" in o:
            row("  hpcc with the memfd seal instead of the overlay", f"{o['hpcc-memfd-seal']['median_ms']:.2f} ms",
                f"overlay seal {o['hpcc']['median_ms']:.2f} ms", ratio(o["hpcc"]["median_ms"], o["hpcc-memfd-seal"]["median_ms"]), "")
        if "crun-wrapper-only" in o:
            row("  crun's hybrid-cgroup wrapper alone", f"{o['crun-wrapper-only']['median_ms']:.2f} ms", "", None, "")
c = res["cold_unpack"]
if c:
    mbps = lambda ms: mpi_bytes / 1e6 / (ms / 1e3)
    rss = res["cold_unpack_peak_rss_kb"]
    row("cold unpack, MPI image (gzip)", f"{c['hpcc']['median_ms']:.0f} ms ({mbps(c['hpcc']['median_ms']):.0f} MB/s, {rss['hpcc']/1024:.0f} MB RSS)",
        f"tar -xzf {c['tar']['median_ms']:.0f} ms ({rss['tar']/1024:.0f} MB RSS), umoci {c['umoci']['median_ms']:.0f} ms ({rss['umoci']/1024:.0f} MB RSS)",
        ratio(c["hpcc"]["median_ms"], c["tar"]["median_ms"]), "<= 0.8x tar, RSS < 50 MB")
    if "hpcc-root" in c:
        row("  the same, as root", f"{c['hpcc-root']['median_ms']:.0f} ms", f"tar -xzf as root {c['tar-root']['median_ms']:.0f} ms",
            ratio(c["hpcc-root"]["median_ms"], c["tar-root"]["median_ms"]), "<= 0.8x tar")
syn = res["synthetic"]
for n, s in syn.items():
    if not s:
        continue
    for comp in ("gzip", "zstd"):
        row(f"cold unpack, synthetic {n:,} x 20 KB files ({comp})", f"{s['hpcc-' + comp]['median_ms']:.0f} ms",
            f"tar {s['tar-' + comp]['median_ms']:.0f} ms", ratio(s["hpcc-" + comp]["median_ms"], s["tar-" + comp]["median_ms"]), "<= 0.8x tar")
sizes = [n for n in syn if syn[n]]
if len(sizes) == 2:
    small, big = sorted(sizes)
    for comp in ("gzip", "zstd"):
        row(f"  growth {small:,} -> {big:,} files ({comp})",
            f"{syn[big]['hpcc-' + comp]['median_ms'] / syn[small]['hpcc-' + comp]['median_ms']:.2f}x time",
            f"{big / small:.0f}x files and bytes", None, "linear")
n = res["concurrent"]
if n:
    for k in ("N2", "N4", "N8", "N16", "N64"):
        row(f"concurrent cold starts {k}", f"{n[k]['median_ms']:.0f} ms", f"N1 {n['N1']['median_ms']:.0f} ms",
            ratio(n[k]["median_ms"], n["N1"]["median_ms"]), "N16, N64 <= 1.3x N1")
pn, ph = res["pingpong_native"], res["pingpong_hpcc"]
if pn and ph:
    row("MPI latency 8 B", f"{ph.get('8', 0):.2f} us", f"native {pn.get('8', 0):.2f} us", ratio(ph.get("8"), pn.get("8")), "")
    for s, label in (("1048576", "1 MiB"), ("4194304", "4 MiB")):
        row(f"MPI bandwidth {label}", f"{ph.get(s, 0):.0f} MB/s", f"native {pn.get(s, 0):.0f} MB/s", ratio(ph.get(s), pn.get(s)), ">= 0.95x native")
s = res["startup_syscalls"]
row("startup syscalls (strace -c -f)", str(s["hpcc"]), f"ch-run {s['ch-run']}", ratio(s["hpcc"], s["ch-run"]), "")
b = res["binary_bytes"]
row("binary size", f"{b['hpcc']/1e6:.1f} MB (static)", f"ch-run {b['ch-run']/1e6:.2f} MB (dynamic)", None, "")

os.makedirs(os.path.dirname(dest), exist_ok=True)
json.dump(res, open(dest, "w"), indent=2)
widths = [max(len(r[i]) for r in rows + [("case", "hpcc", "peer", "ratio", "target")]) for i in range(5)]
fmt = "  ".join("{:<%d}" % w for w in widths)
print()
print(f"make bench, {res['date']}, {res['machine']}")
print(fmt.format("case", "hpcc", "peer", "ratio", "target"))
for r in rows:
    print(fmt.format(*r))
print(f"\nraw numbers: {dest}")
# The same table in Markdown, for README.md's Performance section.
md = os.path.join(os.path.dirname(dest), "table.md")
with open(md, "w") as f:
    f.write(f"From make bench on {res['date']} ({res['machine']}):\n\n")
    f.write("| case | hpcc | peer | ratio | target |\n|---|---|---|---|---|\n")
    for r in rows:
        f.write("| " + " | ".join(c.strip().replace("|", "/") for c in r) + " |\n")
print(f"markdown table: {md}")
