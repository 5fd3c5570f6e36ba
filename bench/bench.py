#!/usr/bin/env python3
"""ratefetch against the tools users would pick instead, side by side, on 127.0.0.1 only.

Run through `bench/run`, which installs the peers first. Writes bench/RESULTS.md and
bench/rate.png. Every figure is measured in this run, on this machine; nothing is copied from
elsewhere. Environment: RUNS (default 3), QUICK=1 (smaller lists, for trying the script).
"""

import datetime
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RATEFETCH = ROOT / "target" / "release" / "ratefetch"
DELAY_SERVER = ROOT / "target" / "release" / "examples" / "delay_server"
VENV = BENCH / ".venv"
RUNS = int(os.environ.get("RUNS", "3"))
QUICK = os.environ.get("QUICK") == "1"
WORK = Path(tempfile.mkdtemp(prefix="ratefetch-bench-"))

HOST = "127.0.0.1"
PORT_PLAIN = 18080  # throughput: no access log, so nginx spends nothing on logging
PORT_LOGGED = list(range(18081, 18091))  # one logged port per tool where arrivals matter
PORT_DELAY = 18200

THROUGHPUT_N = 20_000 if QUICK else 100_000
SLOW_PEER_N = 2_000 if QUICK else 10_000  # Scrapy: about 1,000 req/s
PROCESS_PEER_N = 500 if QUICK else 2_000  # xargs/parallel: a process per URL
MEMORY_LINES = 1_000_000 if QUICK else 10_000_000
MEMORY_SECONDS = 5 if QUICK else 20


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def have(tool):
    return shutil.which(tool) is not None


# ---------------------------------------------------------------- servers


NGINX_CONF = """
worker_processes 2;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    log_format arrival '$msec $status $request_uri';
    access_log off;
    sendfile on;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    server {{
        listen {host}:{plain} backlog=4096 reuseport;
        root {work}/www;
        location = /__status {{ stub_status; }}
    }}
{logged}
}}
"""


def start_nginx():
    www = WORK / "www"
    www.mkdir()
    # A small static page with a title, ~600 bytes, like a typical small API/HTML answer.
    (www / "small.html").write_text(
        "<!doctype html><html><head><title>bench page</title></head><body>"
        + "x" * 512
        + "</body></html>\n"
    )
    logged = "\n".join(
        f"    server {{ listen {HOST}:{p} backlog=4096; root {WORK}/www;"
        f" access_log {WORK}/access-{p}.log arrival; }}"
        for p in PORT_LOGGED
    )
    conf = WORK / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(work=WORK, host=HOST, plain=PORT_PLAIN, logged=logged)
    )
    subprocess.run(["nginx", "-c", str(conf), "-p", str(WORK)], check=True)
    wait_port(PORT_PLAIN)
    return conf


def stop_nginx(conf):
    subprocess.run(["nginx", "-c", str(conf), "-p", str(WORK), "-s", "stop"], check=False)


def wait_port(port, timeout=10):
    import socket

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection((HOST, port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"bench: nothing listens on {HOST}:{port}")


def nginx_requests():
    """nginx's total request counter (all ports), from stub_status."""
    import urllib.request

    body = urllib.request.urlopen(f"http://{HOST}:{PORT_PLAIN}/__status", timeout=5).read().decode()
    return int(body.splitlines()[2].split()[2])


def delay_served():
    """Requests the delay server has answered so far."""
    import urllib.request

    return int(urllib.request.urlopen(f"http://{HOST}:{PORT_DELAY}/__count", timeout=5).read())


def clear_log(port):
    path = WORK / f"access-{port}.log"
    # nginx keeps the file open: truncate in place.
    if path.exists():
        with open(path, "r+") as f:
            f.truncate(0)


def arrivals(port):
    """Arrival times (seconds, ms resolution) of successful requests at a logged port."""
    path = WORK / f"access-{port}.log"
    times = []
    for line in path.read_text().splitlines():
        parts = line.split(" ", 2)
        if len(parts) >= 2:
            times.append(float(parts[0]))
    times.sort()
    return times


# ---------------------------------------------------------------- measuring


def timed(cmd, stdin=None, env=None, timeout=900):
    """Runs cmd under /usr/bin/time; returns wall seconds, CPU seconds, peak RSS (KiB)."""
    out = WORK / "time.txt"
    full = ["/usr/bin/time", "-f", "%e %U %S %M", "-o", str(out)] + cmd
    start = time.monotonic()
    with open(stdin, "rb") if stdin else open(os.devnull, "rb") as inp:
        p = subprocess.run(
            full,
            stdin=inp,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            timeout=timeout,
        )
    wall_outer = time.monotonic() - start
    fields = out.read_text().strip().splitlines()[-1].split()
    wall, user, sys_, rss = float(fields[0]), float(fields[1]), float(fields[2]), int(fields[3])
    if p.returncode not in (0, 130):
        err = p.stderr.decode(errors="replace")[-400:]
        log(f"  warning: {cmd[0]} exited {p.returncode}: {err}")
    return {"wall": max(wall, 1e-9) if wall > 0 else wall_outer, "cpu": user + sys_, "rss_kib": rss}


def median(values):
    return statistics.median(values) if values else float("nan")


def write_list(name, urls):
    path = WORK / name
    with open(path, "w") as f:
        for u in urls:
            f.write(u + "\n")
    return path


def curl_config(name, urls):
    path = WORK / name
    with open(path, "w") as f:
        for u in urls:
            f.write(f'url = "{u}"\noutput = "/dev/null"\n')
    return path


def version(cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        text = (out.stdout or out.stderr).strip().splitlines()
        return text[0] if text else "?"
    except Exception:
        return "not installed"


SCRAPY_SPIDER = '''
import scrapy, sys

class ListSpider(scrapy.Spider):
    name = "list"
    custom_settings = {"LOG_LEVEL": "ERROR", "ROBOTSTXT_OBEY": False, "TELNETCONSOLE_ENABLED": False,
                       "COOKIES_ENABLED": False, "RETRY_ENABLED": False, "HTTPCACHE_ENABLED": False}

    def start_requests(self):  # Scrapy < 2.13
        with open(self.list_path) as f:
            for line in f:
                yield scrapy.Request(line.strip(), dont_filter=True)

    async def start(self):  # Scrapy >= 2.13 no longer calls start_requests by itself
        for request in self.start_requests():
            yield request

    def parse(self, response):
        pass
'''


def scrapy_cmd(list_path, concurrency, delay=None):
    spider = WORK / "list_spider.py"
    spider.write_text(SCRAPY_SPIDER)
    cmd = [
        str(VENV / "bin" / "scrapy"),
        "runspider",
        str(spider),
        "-a",
        f"list_path={list_path}",
        "-s",
        f"CONCURRENT_REQUESTS={concurrency}",
        "-s",
        f"CONCURRENT_REQUESTS_PER_DOMAIN={concurrency}",
    ]
    if delay is not None:
        cmd += ["-s", f"DOWNLOAD_DELAY={delay}", "-s", "RANDOMIZE_DOWNLOAD_DELAY=False"]
    return cmd


def have_scrapy():
    return (VENV / "bin" / "scrapy").exists()


def have_oha():
    return have("oha")


# ---------------------------------------------------------------- scenarios


def scenario_throughput(results):
    log(f"a) throughput: {THROUGHPUT_N} URLs, no rate limit, concurrency 64")
    base = f"http://{HOST}:{PORT_PLAIN}/small.html"
    urls = [f"{base}?i={i}" for i in range(THROUGHPUT_N)]
    big = write_list("through.txt", urls)
    small = write_list("through-small.txt", urls[:SLOW_PEER_N])
    tiny = write_list("through-tiny.txt", urls[:PROCESS_PEER_N])
    cfg = curl_config("through.curl", urls)
    n, ns, nt = THROUGHPUT_N, SLOW_PEER_N, PROCESS_PEER_N
    tools = [
        ("ratefetch", n, [str(RATEFETCH), str(big), "-r", "unlimited", "-c", "64", "-q", "-o", str(WORK / "out.csv")], None),
        ("curl -Z --parallel-max 64", n, ["curl", "-s", "-Z", "--parallel-max", "64", "-K", str(cfg)], None),
        ("wget2 --max-threads 64", n, ["wget2", "-q", "--no-config", "--tries=1", "--max-threads=64", "-i", str(big), "-O", "/dev/null"], None),
        ("hey -c 64 (one URL)", n, ["hey", "-n", str(n), "-c", "64", base], None),
    ]
    if have_oha():
        tools.append(("oha -c 64 (one URL)", n, ["oha", "--no-tui", "-n", str(n), "-c", "64", base], None))
    tools += [
        ("xargs -P 64 curl", nt, ["xargs", "-P", "64", "-n", "1", "curl", "-s", "-o", "/dev/null"], tiny),
        ("parallel -j 64 curl", nt, ["parallel", "-j", "64", "curl", "-s", "-o", "/dev/null", "{}"], tiny),
    ]
    if have_scrapy():
        tools.append(("scrapy (64 concurrent)", ns, scrapy_cmd(small, 64), None))
    rows = {}
    for run in range(RUNS):
        for name, count, cmd, stdin in tools:
            before = nginx_requests()
            m = timed(cmd, stdin=stdin)
            served = nginx_requests() - before - 1  # minus the status request itself
            rows.setdefault(name, {"n": count, "rps": [], "cpu10k": [], "rss": [], "served": []})
            # Only requests the server answered count.
            rows[name]["rps"].append(served / m["wall"])
            rows[name]["cpu10k"].append(m["cpu"] / max(served, 1) * 10_000)
            rows[name]["rss"].append(m["rss_kib"] / 1024)
            rows[name]["served"].append(served)
        # wrk: the ceiling of this server, not a list fetcher.
        out = subprocess.run(
            ["/usr/bin/time", "-f", "%U %S", "wrk", "-t", "2", "-c", "64", "-d", "5s", base],
            capture_output=True, text=True,
        )
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out.stdout).group(1))
        total = int(re.search(r"(\d+) requests in", out.stdout).group(1))
        user, sys_ = map(float, out.stderr.strip().splitlines()[-1].split())
        rows.setdefault("wrk -t2 -c64 (ceiling)", {"n": total, "rps": [], "cpu10k": [], "rss": [], "served": []})
        rows["wrk -t2 -c64 (ceiling)"]["rps"].append(rps)
        rows["wrk -t2 -c64 (ceiling)"]["cpu10k"].append((user + sys_) / total * 10_000)
        log(f"  run {run + 1}/{RUNS} done")
    results["throughput"] = rows


def window_max(times, width):
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= width - 1e-9:
            start += 1
        best = max(best, end - start + 1)
    return best


def scenario_rate(results):
    cases = [(200, 2000), (50, 1000)]
    if QUICK:
        cases = [(200, 600), (50, 200)]
    results["rate"] = {}
    for rate, count in cases:
        log(f"b) rate accuracy: {count} URLs at {rate}/s, burst 1 (tools side by side, one port each)")
        per_tool = {}
        for run in range(RUNS):
            procs = []
            tools = []
            ports = iter(PORT_LOGGED)

            def add(name, make):
                port = next(ports)
                clear_log(port)
                base = f"http://{HOST}:{port}/small.html"
                urls = [f"{base}?i={i}" for i in range(count)]
                tools.append((name, port, make(port, base, urls)))

            add("ratefetch", lambda p, b, u: [str(RATEFETCH), str(write_list(f"rate-{p}.txt", u)), "-r", f"{rate}/s", "--burst", "1", "-c", "16", "-q", "-o", str(WORK / f"rate-{p}.csv")])
            add("curl --rate (serial)", lambda p, b, u: ["curl", "-s", "--rate", f"{rate}/s", "-K", str(curl_config(f"rate-{p}.curl", u))])
            add("hey -q (1 worker)", lambda p, b, u: ["hey", "-n", str(count), "-c", "1", "-q", str(rate), b])
            if have_oha():
                add("oha -q (16 workers)", lambda p, b, u: ["oha", "--no-tui", "-n", str(count), "-c", "16", "-q", str(rate), b])
            add("wget2 --wait (1 thread)", lambda p, b, u: ["wget2", "-q", "--no-config", "--tries=1", "--max-threads=1", f"--wait={1 / rate:.4f}", "-i", str(write_list(f"rate-{p}.txt", u)), "-O", "/dev/null"])
            if have_scrapy():
                add("scrapy DOWNLOAD_DELAY", lambda p, b, u: scrapy_cmd(write_list(f"rate-{p}.txt", u), 16, delay=1 / rate))
            for name, port, cmd in tools:
                procs.append((name, port, subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
            for name, port, p in procs:
                p.wait(timeout=600)
            # ratefetch once more with the machine to itself: how much of the side-by-side
            # figure is the neighbours' CPU.
            port = next(ports)
            clear_log(port)
            cmd = [str(RATEFETCH), str(write_list(f"rate-{port}.txt", [f"http://{HOST}:{port}/small.html?i={i}" for i in range(count)])),
                   "-r", f"{rate}/s", "--burst", "1", "-c", "16", "-q", "-o", str(WORK / f"rate-{port}.csv")]
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
            procs.append(("ratefetch, alone", port, None))
            time.sleep(0.5)  # let nginx write its last log lines
            for name, port, _ in procs:
                t = arrivals(port)
                if len(t) < 2:
                    continue
                span = t[-1] - t[0]
                d = per_tool.setdefault(name, {"mean": [], "w1s": [], "w100": [], "n": [], "series": None})
                d["mean"].append((len(t) - 1) / span if span > 0 else float("inf"))
                d["w1s"].append(window_max(t, 1.0))
                d["w100"].append(window_max(t, 0.1))
                d["n"].append(len(t))
                if d["series"] is None:
                    d["series"] = [x - t[0] for x in t]
            log(f"  run {run + 1}/{RUNS} done")
        results["rate"][(rate, count)] = per_tool


def scenario_latency(results):
    n = 2000
    log(f"c) latency-bound: {n} URLs on a 100 ms server, concurrency 100, no rate limit")
    server = subprocess.Popen([str(DELAY_SERVER), f"{HOST}:{PORT_DELAY}", "100ms"], stderr=subprocess.DEVNULL)
    try:
        wait_port(PORT_DELAY)
        base = f"http://{HOST}:{PORT_DELAY}/"
        urls = [f"{base}?i={i}" for i in range(n)]
        lst = write_list("latency.txt", urls)
        cfg = curl_config("latency.curl", urls)
        tools = [
            ("ratefetch", [str(RATEFETCH), str(lst), "-r", "unlimited", "-c", "100", "-q", "-o", str(WORK / "lat.csv")], None),
            ("curl -Z --parallel-max 100", ["curl", "-s", "-Z", "--parallel-max", "100", "-K", str(cfg)], None),
            ("wget2 --max-threads 100", ["wget2", "-q", "--no-config", "--tries=1", "--max-threads=100", "-i", str(lst), "-O", "/dev/null"], None),
            ("hey -c 100 (one URL)", ["hey", "-n", str(n), "-c", "100", base], None),
            ("xargs -P 100 curl", ["xargs", "-P", "100", "-n", "1", "curl", "-s", "-o", "/dev/null"], lst),
        ]
        if have_oha():
            tools.append(("oha -c 100 (one URL)", ["oha", "--no-tui", "-n", str(n), "-c", "100", base], None))
        if have_scrapy():
            tools.append(("scrapy (100 concurrent)", scrapy_cmd(lst, 100), None))
        rows = {}
        for run in range(RUNS):
            for name, cmd, stdin in tools:
                before = delay_served()
                m = timed(cmd, stdin=stdin)
                served = delay_served() - before
                rows.setdefault(name, []).append((served / m["wall"], served))
            log(f"  run {run + 1}/{RUNS} done")
        results["latency"] = rows
    finally:
        server.terminate()
        server.wait()


def rss_kib(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def scenario_memory(results):
    port = PORT_LOGGED[-1]
    log(f"d) memory: a {MEMORY_LINES}-line list at 1000/s, first {MEMORY_SECONDS} s")
    base = f"http://{HOST}:{port}/small.html"
    lst = WORK / "huge.txt"
    with open(lst, "w") as f:
        for i in range(MEMORY_LINES):
            f.write(f"{base}?i={i}\n")
    cfg = WORK / "huge.curl"
    with open(cfg, "w") as f:
        for i in range(MEMORY_LINES):
            f.write(f'url = "{base}?i={i}"\noutput = "/dev/null"\n')
    tools = [
        ("ratefetch", [str(RATEFETCH), str(lst), "-r", "1000/s", "-q", "-o", str(WORK / "huge.csv")]),
        ("curl --rate 1000/s (serial)", ["curl", "-s", "--rate", "1000/s", "-K", str(cfg)]),
        ("wget2 -i", ["wget2", "-q", "--no-config", "--tries=1", "--max-threads=16", "-i", str(lst), "-O", "/dev/null"]),
    ]
    rows = {}
    for run in range(RUNS):
        for name, cmd in tools:
            clear_log(port)
            t0 = time.time()
            p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            samples = []
            end = time.monotonic() + MEMORY_SECONDS
            while time.monotonic() < end and p.poll() is None:
                r = rss_kib(p.pid)
                if r is not None:
                    samples.append(r)
                time.sleep(0.1)
            p.send_signal(signal.SIGINT)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            time.sleep(0.3)
            t = arrivals(port)
            first = (t[0] - t0) * 1000 if t else float("nan")
            d = rows.setdefault(name, {"peak": [], "at5": [], "first_ms": [], "requests": []})
            d["peak"].append(max(samples) / 1024 if samples else float("nan"))
            at5 = samples[min(len(samples) - 1, 50)] / 1024 if samples else float("nan")
            d["at5"].append(at5)
            d["first_ms"].append(first)
            d["requests"].append(len(t))
        log(f"  run {run + 1}/{RUNS} done")
    results["memory"] = rows
    lst.unlink()
    cfg.unlink()


def scenario_cpu(results):
    n = 4000 if QUICK else 20_000
    rate = 2000
    log(f"e) CPU cost: {n} requests at a fixed {rate}/s (tools side by side, one port each)")
    rows = {}
    for run in range(RUNS):
        ports = iter(PORT_LOGGED)
        tools = []

        def add(name, make):
            port = next(ports)
            base = f"http://{HOST}:{port}/small.html"
            urls = [f"{base}?i={i}" for i in range(n)]
            tools.append((name, make(port, base, urls)))

        add("ratefetch", lambda p, b, u: [str(RATEFETCH), str(write_list(f"cpu-{p}.txt", u)), "-r", f"{rate}/s", "-q", "-o", str(WORK / f"cpu-{p}.csv")])
        add("curl --rate (serial)", lambda p, b, u: ["curl", "-s", "--rate", f"{rate}/s", "-K", str(curl_config(f"cpu-{p}.curl", u))])
        add("hey -q (20 workers x 100/s)", lambda p, b, u: ["hey", "-n", str(n), "-c", "20", "-q", str(rate // 20), b])
        if have_oha():
            add("oha -q", lambda p, b, u: ["oha", "--no-tui", "-n", str(n), "-c", "16", "-q", str(rate), b])
        procs = []
        for name, cmd in tools:
            out = WORK / f"cpu-time-{len(procs)}.txt"
            full = ["/usr/bin/time", "-f", "%e %U %S", "-o", str(out)] + cmd
            procs.append((name, out, subprocess.Popen(full, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
        for name, out, p in procs:
            p.wait(timeout=600)
            wall, user, sys_ = map(float, out.read_text().strip().splitlines()[-1].split())
            d = rows.setdefault(name, {"cpu10k": [], "rps": []})
            d["cpu10k"].append((user + sys_) / n * 10_000)
            d["rps"].append(n / wall)
        log(f"  run {run + 1}/{RUNS} done")
    results["cpu"] = rows


# ---------------------------------------------------------------- report


def plot(results, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib missing: no plot")
        return False
    cases = list(results["rate"].items())
    tools = sorted({t for _, per in cases for t in per})
    fig, axes = plt.subplots(len(tools), len(cases), figsize=(6 * len(cases), 1.7 * len(tools)), squeeze=False, sharex="col")
    for c, ((rate, count), per) in enumerate(cases):
        for r, tool in enumerate(tools):
            ax = axes[r][c]
            series = (per.get(tool) or {}).get("series")
            if series:
                bins = int(series[-1] / 0.1) + 1
                counts = [0] * bins
                for x in series:
                    counts[min(int(x / 0.1), bins - 1)] += 1
                ax.bar([i * 0.1 for i in range(bins)], counts, width=0.1, align="edge", color="#3a6ea5")
            limit = rate * 0.1 + 1
            ax.axhline(limit, color="#c0392b", linewidth=0.8, linestyle="--")
            ax.set_ylim(0, max(limit * 2.2, 5))
            ax.set_ylabel(tool, rotation=0, ha="right", va="center", fontsize=8)
            if r == 0:
                ax.set_title(f"{count} URLs at {rate}/s, burst 1: requests per 100 ms at the server\n(dashed: ceil(0.1·R) + B)", fontsize=9)
            if r == len(tools) - 1:
                ax.set_xlabel("seconds since the first request")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return True


def fmt(x, digits=0):
    if x != x:  # NaN
        return "–"
    return f"{x:,.{digits}f}"


def machine():
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} CPUs ({cpu}), {mem:.0f} GiB RAM, Linux {platform.release()}"


def write_results(results, plotted):
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    versions = {
        "ratefetch": version([str(RATEFETCH), "--version"]),
        "curl": version(["curl", "--version"]),
        "wget2": version(["wget2", "--version"]),
        "hey": "hey (Debian package " + version(["dpkg-query", "-W", "-f", "${Version}", "hey"]) + ")",
        "oha": version(["oha", "--version"]) if have_oha() else "not installed",
        "wrk": version(["wrk", "--version"]),
        "GNU parallel": version(["parallel", "--version"]),
        "nginx": version(["nginx", "-v"]),
        "Scrapy": version([str(VENV / "bin" / "scrapy"), "version"]) if have_scrapy() else "not installed",
    }
    out = []
    w = out.append
    w("# ratefetch benchmarks\n")
    w(f"Generated by `bench/run` on {now}; {RUNS} runs of every tool, medians shown.  ")
    w(f"Machine: {machine()}.  ")
    w("Everything talks to 127.0.0.1 only: nginx (static ~600-byte page) and `examples/delay_server` (100 ms per request).\n")
    w("Versions: " + "; ".join(f"{k}: `{v}`" for k, v in versions.items()) + "\n")

    t = results["throughput"]
    wrk = median(t["wrk -t2 -c64 (ceiling)"]["rps"])
    rf = median(t["ratefetch"]["rps"])
    w("## a) Throughput: no rate limit, concurrency 64\n")
    w(f"{THROUGHPUT_N:,} URLs on nginx (tools marked * got fewer, shown: they start a process per URL, or are slow). "
      "req/s is requests nginx answered (its stub_status counter) ÷ wall time, start-up included; "
      "CPU is user + system seconds per 10k requests.\n")
    w("| tool | URLs | req/s | CPU s / 10k | peak RSS MiB |")
    w("|---|---:|---:|---:|---:|")
    for name, d in t.items():
        star = "*" if d["n"] < THROUGHPUT_N and not name.startswith("wrk") else ""
        short = min(d["served"]) if d["served"] else d["n"]
        note = "" if short >= d["n"] else f" (as few as {short:,} answered)"
        w(f"| {name}{star}{note} | {d['n']:,} | {fmt(median(d['rps']))} | {fmt(median(d['cpu10k']), 2)} | {fmt(median(d['rss']), 1) if d['rss'] else '–'} |")
    faster = [p for p in ("curl -Z --parallel-max 64", "wget2 --max-threads 64") if p in t]
    beat = all(rf > median(t[p]["rps"]) for p in faster)
    w("")
    w(f"Target: faster than wget2 and curl -Z — **{'met' if beat else 'missed'}**; "
      f"at least 70% of wrk — ratefetch reaches **{rf / wrk:.0%}** of wrk's {fmt(wrk)} req/s "
      f"(**{'met' if rf >= 0.7 * wrk else 'missed'}**).\n")

    w("## b) Rate accuracy, measured at the server\n")
    w("Each tool fetches from its own nginx port whose access log records `$msec` (1 ms resolution); the tools run side by side "
      "(at most ~1,200 req/s in all, but six clients and nginx share 2 cores), then ratefetch runs once more alone "
      "(\"ratefetch, alone\"). Windows slide over every arrival.\n")
    for (rate, count), per in results["rate"].items():
        lim1, lim100 = rate + 1, -(-rate // 10) + 1
        w(f"**{count:,} URLs at {rate}/s, burst 1** — targets: mean within 1% of {rate}; worst 1 s window ≤ {lim1}; worst 100 ms window ≤ {lim100}.\n")
        w("| tool | requests | mean rate | error | worst 1 s | worst 100 ms | targets |")
        w("|---|---:|---:|---:|---:|---:|---|")
        for name, d in per.items():
            mean = median(d["mean"])
            err = (mean - rate) / rate
            w1, w100 = max(d["w1s"]), max(d["w100"])
            ok = abs(err) <= 0.01 and w1 <= lim1 and w100 <= lim100
            w(f"| {name} | {int(median(d['n'])):,} | {mean:.2f}/s | {err:+.2%} | {w1} | {w100} | {'met' if ok else 'missed'} |")
        w("")
    w("(worst windows are the worst over all runs, not medians.)\n")
    if plotted:
        w("![requests per 100 ms at the server](rate.png)\n")

    w("## c) Latency-bound: 2,000 URLs, 100 ms per request, concurrency 100\n")
    w("Little's law caps any client with 100 requests in flight at 1,000 req/s here.\n")
    w("Counted at the server: only requests it answered.\n")
    w("| tool | req/s | share of 1,000 |")
    w("|---|---:|---:|")
    for name, v in results["latency"].items():
        m = median([r for r, _ in v])
        short = min(n for _, n in v)
        note = "" if short >= 2000 else f" (as few as {short:,} answered)"
        w(f"| {name}{note} | {fmt(m)} | {m / 1000:.1%} |")
    lat = median([r for r, _ in results["latency"]["ratefetch"]]) / 1000
    w(f"\nTarget ≥ 97% — ratefetch **{lat:.1%}** (**{'met' if lat >= 0.97 else 'missed'}**).\n")

    w(f"## d) Memory: a {MEMORY_LINES:,}-line list at 1,000/s, first {MEMORY_SECONDS} s\n")
    w("RSS sampled every 100 ms from /proc; first request = from process start to the first arrival at nginx.\n")
    w("| tool | peak RSS MiB | RSS at 5 s MiB | first request ms | requests served |")
    w("|---|---:|---:|---:|---:|")
    for name, d in results["memory"].items():
        w(f"| {name} | {fmt(median(d['peak']), 1)} | {fmt(median(d['at5']), 1)} | {fmt(median(d['first_ms']))} | {fmt(median(d['requests']))} |")
    m = results["memory"]["ratefetch"]
    w(f"\nTarget: flat and under 30 MB, first request within 100 ms — ratefetch peak **{median(m['peak']):.1f} MiB**, "
      f"first request **{median(m['first_ms']):.0f} ms** "
      f"(**{'met' if median(m['peak']) < 30 and median(m['first_ms']) <= 100 else 'missed'}**).\n")

    w("## e) CPU cost at a fixed 2,000 req/s\n")
    w("CPU seconds (user + system) per 10,000 requests; tools side by side on their own ports.\n")
    w("| tool | CPU s / 10k | achieved req/s |")
    w("|---|---:|---:|")
    for name, d in results["cpu"].items():
        w(f"| {name} | {fmt(median(d['cpu10k']), 3)} | {fmt(median(d['rps']))} |")
    w("")
    notes = BENCH / "NOTES.md"
    if notes.exists():
        w(notes.read_text())
    (BENCH / "RESULTS.md").write_text("\n".join(out) + "\n")


def main():
    if not RATEFETCH.exists() or not DELAY_SERVER.exists():
        raise SystemExit("bench: build first (bench/run does: cargo build --release --example delay_server)")
    log(f"work dir {WORK}; {RUNS} runs; {'QUICK' if QUICK else 'full'} sizes")
    conf = start_nginx()
    results = {}
    started = time.monotonic()
    try:
        scenario_throughput(results)
        scenario_rate(results)
        scenario_latency(results)
        scenario_memory(results)
        scenario_cpu(results)
    finally:
        stop_nginx(conf)
    plotted = plot(results, BENCH / "rate.png")
    write_results(results, plotted)
    shutil.rmtree(WORK, ignore_errors=True)
    log(f"done in {time.monotonic() - started:.0f} s: bench/RESULTS.md")


if __name__ == "__main__":
    main()
