#!/usr/bin/env python3
"""ratefetch against the tools users would pick instead, side by side, on 127.0.0.1 only.

Run through `bench/run`, which installs the peers first. Writes bench/RESULTS.md and
bench/rate.png. Every figure is measured in this run, on this machine; nothing is copied from
elsewhere. Environment: RUNS (default 3), QUICK=1 (smaller lists, for trying the script),
ONLY=f,g (run only these scenarios, a–n, and put their sections into the existing RESULTS.md
in place of theirs, keeping the rest; FRESH=1 writes a file of these sections alone instead),
BASELINE=/path/to/an/older/ratefetch (every ratefetch measurement also runs that binary,
interleaved, and the report compares the two; `bench/baseline` builds one from a git rev),
RATEFETCH=/path (the binary under test; default: the release build in $CARGO_TARGET_DIR or
target/).

Scenarios: a throughput, b rate accuracy, c latency-bound (100 in flight), d memory, e CPU at a
fixed rate, f retries, g host-sorted lists, h per-host pace, i shared limits in Redis, j HTTPS
keep-alive (a local CA made with openssl), k many hosts (508 loopback addresses, HTTP and
HTTPS, and names put in /etc/hosts for the run), l latency-bound at 1,000 in flight, m a picture
of a crawl (`audit --plot`), n announced limits (express-rate-limit's headers emulated, the real
Flask-Limiter and slowapi from PyPI in bench/.venv-limiters). The bare
reqwest loop (`examples/bare_loop`) is the HTTP stack's ceiling in a, c, f, j, k and l.
"""

import csv
import datetime
import json
import os
import platform
import random
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
TARGET = ROOT / os.environ.get("CARGO_TARGET_DIR", "target")  # an absolute value replaces ROOT
RATEFETCH = Path(os.environ.get("RATEFETCH") or TARGET / "release" / "ratefetch").resolve()
DELAY_SERVER = TARGET / "release" / "examples" / "delay_server"
BARE_LOOP = TARGET / "release" / "examples" / "bare_loop"  # reqwest alone: the HTTP stack's ceiling
BASELINE = Path(os.environ["BASELINE"]).resolve() if os.environ.get("BASELINE") else None
ONLY = {x.strip() for x in os.environ.get("ONLY", "").split(",") if x.strip()}
VENV = BENCH / ".venv"
RUNS = int(os.environ.get("RUNS", "3"))
QUICK = os.environ.get("QUICK") == "1"
WORK = Path(tempfile.mkdtemp(prefix="ratefetch-bench-"))

HOST = "127.0.0.1"
PORT_PLAIN = 18080  # throughput: no access log, so nginx spends nothing on logging
PORT_LOGGED = list(range(18081, 18091))  # one logged port per tool where arrivals matter
PORT_DELAY = 18200
PORT_HOSTS = 18300  # one server on 127.0.0.1-9: each address is a host of its own
PORT_REDIS = 18400  # the bench's own redis-server (scenario i), besides its unix socket
HOST_ADDRS = [f"127.0.0.{i}" for i in range(1, 10)]
PORT_TLS = 18500  # j: nginx with TLS on 127.0.0.1 (a local CA's certificate, IP SAN)
PORT_MANY = 18600  # k: the many-hosts server over HTTP, on the wildcard address, loopback only
PORT_MANY_TLS = 18601  # k: the same over HTTPS (one certificate whose SANs name every address)
PORT_LIMIT_REQ = {50: 18700, 200: 18701}  # b: nginx limit_req (a server-side GCRA) at these rates
# k: 508 addresses, each a host of its own (all of 127.0.0.0/8 is loopback on Linux).
MANY_ADDRS = [f"127.0.{a}.{b}" for a in (1, 2) for b in range(1, 255)]
MANY_DOMAIN = "bench.test"  # k's names: h1.bench.test … in /etc/hosts for the run
HOSTS_FILE = Path("/etc/hosts")
HOSTS_MARK = ("# ratefetch-bench begin (bench/bench.py scenario k; removed after the run)", "# ratefetch-bench end")

THROUGHPUT_N = 20_000 if QUICK else 100_000
SLOW_PEER_N = 2_000 if QUICK else 10_000  # Scrapy: about 1,000 req/s
PROCESS_PEER_N = 500 if QUICK else 2_000  # xargs/parallel: a process per URL
MEMORY_LINES = 1_000_000 if QUICK else 10_000_000
MEMORY_SECONDS = 5 if QUICK else 20
RETRY_N = THROUGHPUT_N  # f: 1% answer 429, 1% answer 404
TLS_N = 10_000 if QUICK else 50_000  # j
MANY_N = 2_000 if QUICK else 10_000  # k: ~20 requests per host
LATENCY_N = 20_000 if QUICK else 100_000  # l: 1,000 in flight on the 100 ms server
LATENCY_C = 1000
CURL_PARALLEL_MAX = 300  # curl caps --parallel-max at 300 (MAX_PARALLEL in tool_getparam.c)
# "No worse than the baseline": the new binary may be this much worse before it counts.
TOL_REL = 0.05  # throughput, wall time, CPU
TOL_RSS = 0.10  # peak RSS
TOL_FIRST_MS = 10  # first request, ms
TOL_RATE_PT = 0.2  # rate error, percentage points


def variants():
    """The ratefetch binaries to measure, in the order they run: the baseline first."""
    out = []
    if BASELINE:
        out.append(("ratefetch (baseline)", BASELINE))
    out.append(("ratefetch", RATEFETCH))
    return out


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def have(tool):
    return shutil.which(tool) is not None


# ---------------------------------------------------------------- servers


NGINX_CONF = """
worker_processes 2;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
# k keeps connections to 508 hosts open (idle in the clients' pools): room for them.
worker_rlimit_nofile {nofile};
events {{ worker_connections 16384; }}
http {{
    log_format arrival '$msec $status $request_uri';
    log_format hostarrival '$msec $server_addr $status $request_uri';
    access_log off;
    sendfile on;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    server {{
        listen {host}:{plain} backlog=4096 reuseport;
        root {work}/www;
        location = /__status {{ stub_status; }}
        location /r429/ {{ return 429; }}
        location /n404/ {{ return 404; }}
    }}
    # b: a real server-side GCRA, nginx limit_req with a small burst, at its stated rate.
    limit_req_zone $server_port zone=gcra50:1m rate=50r/s;
    limit_req_zone $server_port zone=gcra200:1m rate=200r/s;
    limit_req_status 429;
    server {{ listen {host}:{limit50} backlog=4096; root {work}/www; access_log {work}/access-{limit50}.log arrival;
             location / {{ limit_req zone=gcra50 burst=1 nodelay; }} }}
    server {{ listen {host}:{limit200} backlog=4096; root {work}/www; access_log {work}/access-{limit200}.log arrival;
             location / {{ limit_req zone=gcra200 burst=1 nodelay; }} }}
    server {{
{host_listens}
        root {work}/www;
        access_log {work}/access-hosts.log hostarrival;
        location /r429/ {{ return 429; }}
    }}
{logged}
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:bench:20m;
    server {{
        # j: HTTPS keep-alive, one host. HTTP/1.1 only (no http2): keep-alive like a and k.
        listen {host}:{tls} ssl backlog=4096 reuseport;
        ssl_certificate {work}/tls/server.pem;
        ssl_certificate_key {work}/tls/server.key;
        root {work}/www;
    }}
    server {{
        # k: every 127.x address is loopback on Linux, so one wildcard listen answers them
        # all; anything else is refused.
        listen {many} backlog=4096 reuseport;
        listen {many_tls} ssl backlog=4096 reuseport;
        ssl_certificate {work}/tls/many.pem;
        ssl_certificate_key {work}/tls/many.key;
        allow 127.0.0.0/8;
        deny all;
        root {work}/www;
    }}
}}
"""


OPENSSL_CNF = """
[req]
distinguished_name = dn
prompt = no
[dn]
CN = ratefetch bench CA
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
authorityKeyIdentifier = keyid
subjectAltName = {sans}
"""


def make_certs():
    """A local CA (WORK/tls/ca.pem) and two server certificates it signs, ECDSA P-256: j's
    for 127.0.0.1 (an IP SAN), k's for 127.0.0.1, every address of MANY_ADDRS and
    *.bench.test (k's names). Returns the CA's path."""
    tls = WORK / "tls"
    tls.mkdir(exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def ssl(*args, sans="IP:127.0.0.1"):
        cnf = tls / "openssl.cnf"
        cnf.write_text(OPENSSL_CNF.format(sans=sans))
        subprocess.run(["openssl", *args], check=True, cwd=tls, capture_output=True)

    ssl("req", "-x509", "-config", "openssl.cnf", "-extensions", "ca", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "7")
    many = ", ".join(["IP:127.0.0.1"] + [f"IP:{a}" for a in MANY_ADDRS] + [f"DNS:*.{MANY_DOMAIN}"])
    for name, sans in (("server", "IP:127.0.0.1"), ("many", many)):
        ssl("req", "-new", "-config", "openssl.cnf", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        ssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", str(random.getrandbits(63)),
            "-days", "7", "-extfile", "openssl.cnf", "-extensions", "server", "-out", f"{name}.pem", sans=sans)
    return tls / "ca.pem"


def start_nginx():
    make_certs()
    # Started as root, nginx's workers run as nobody: they must be able to read the pages.
    WORK.chmod(0o755)
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
        NGINX_CONF.format(
            work=WORK,
            host=HOST,
            plain=PORT_PLAIN,
            logged=logged,
            tls=PORT_TLS,
            nofile=open_files_hard(),
            many=PORT_MANY,
            many_tls=PORT_MANY_TLS,
            limit50=PORT_LIMIT_REQ[50],
            limit200=PORT_LIMIT_REQ[200],
            host_listens="\n".join(f"        listen {a}:{PORT_HOSTS} backlog=4096;" for a in HOST_ADDRS),
        )
    )
    subprocess.run(["nginx", "-c", str(conf), "-p", str(WORK)], check=True)
    wait_port(PORT_PLAIN)
    return conf


def open_files_hard():
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)


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


def nginx_counters():
    """nginx's total (accepted connections, requests) counters (all ports), from stub_status."""
    import urllib.request

    body = urllib.request.urlopen(f"http://{HOST}:{PORT_PLAIN}/__status", timeout=5).read().decode()
    accepts, _, requests = map(int, body.splitlines()[2].split()[:3])
    return accepts, requests


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


def host_arrivals():
    """(arrival time, server address) of every request at the many-hosts server, in order."""
    out = []
    for line in (WORK / "access-hosts.log").read_text().splitlines():
        parts = line.split(" ", 2)
        if len(parts) >= 2:
            out.append((float(parts[0]), parts[1]))
    out.sort()
    return out


def clear_host_log():
    path = WORK / "access-hosts.log"
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


def timed(cmd, stdin=None, env=None, timeout=900, ok=(0, 130)):
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
    if ok is not None and p.returncode not in ok:
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


BARE = "bare reqwest loop (ceiling)"  # examples/bare_loop: ratefetch's client alone


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
        (label, n, [str(binary), str(big), "-r", "unlimited", "-c", "64", "-q", "-o", str(WORK / "out.csv")], None)
        for label, binary in variants()
    ]
    # Without the CSV: what the report costs, next to the HTTP stack's own ceiling.
    tools += [
        (f"{label} -o /dev/null", n, [str(binary), str(big), "-r", "unlimited", "-c", "64", "-q", "-o", "/dev/null"], None)
        for label, binary in variants()
    ]
    tools.append((BARE, n, [str(BARE_LOOP), "-c", "64", str(big)], None))
    tools += [
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
    cases = [(200, 2000), (50, 2000)]
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
            # figure is the neighbours' CPU. With a baseline, the baseline alone first.
            audits = {}
            for label, binary in variants():
                port = next(ports)
                clear_log(port)
                reqlog = WORK / f"rate-{port}.log"
                reqlog.unlink(missing_ok=True)
                cmd = [str(binary), str(write_list(f"rate-{port}.txt", [f"http://{HOST}:{port}/small.html?i={i}" for i in range(count)])),
                       "-r", f"{rate}/s", "--burst", "1", "-c", "16", "-q", "-o", str(WORK / f"rate-{port}.csv"),
                       "--log-requests", str(reqlog)]
                subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
                procs.append((f"{label}, alone", port, None))
                audits[f"{label}, alone"] = audit_held(reqlog)
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
                if name in audits:
                    d.setdefault("audit", []).append(audits[name])
                if d["series"] is None:
                    d["series"] = [x - t[0] for x in t]
            log(f"  run {run + 1}/{RUNS} done")
        results["rate"][(rate, count)] = per_tool
    scenario_fast_rate(results)
    scenario_limit_req(results)


def audit_held(reqlog):
    """Whether `ratefetch audit LOG` (no flags: the limits from the log's header) holds."""
    if not reqlog.exists():
        return None
    done = subprocess.run([str(RATEFETCH), "audit", str(reqlog)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return done.returncode == 0


def scenario_fast_rate(results):
    """b, higher rates: within the burst the GCRA catches up exactly (mean within 0.5%); at burst 1 a
    late send is lost for good, so the mean and the mean lateness are reported without a target."""
    cases = [(2000, 10, 10_000), (10_000, 50, 50_000), (2000, 1, 10_000), (10_000, 1, 50_000)]
    if QUICK:
        cases = [(r, b, n // 5) for r, b, n in cases]
    rows = {}
    port = PORT_LOGGED[0]
    for rate, burst, count in cases:
        log(f"b) higher rates: {count} URLs at {rate}/s, burst {burst} (ratefetch alone)")
        for label, binary in variants():
            d = rows.setdefault((rate, burst, count, label), {"mean": [], "late": [], "audit": [], "n": []})
            for run in range(RUNS):
                clear_log(port)
                reqlog = WORK / "fast.log"
                reqlog.unlink(missing_ok=True)
                urls = [f"http://{HOST}:{port}/small.html?i={i}" for i in range(count)]
                cmd = [str(binary), str(write_list("fast.txt", urls)), "-r", f"{rate}/s", "--burst", str(burst), "-c", "64",
                       "-q", "-o", "/dev/null", "--log-requests", str(reqlog)]
                subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
                time.sleep(0.5)  # let nginx write its last log lines
                t = arrivals(port)
                if len(t) < 2 or t[-1] <= t[0]:
                    continue
                # nginx's $msec has 1 ms resolution: the mean over the whole run is exact to ~1 ms / span.
                mean = (len(t) - 1) / (t[-1] - t[0])
                d["mean"].append(mean)
                d["late"].append(max(0.0, 1 / mean - 1 / rate) * 1e6)
                d["audit"].append(audit_held(reqlog))
                d["n"].append(len(t))
    results["rate_fast"] = rows


def scenario_limit_req(results):
    """b, a real server-side GCRA: nginx limit_req (burst=1, nodelay) at the rate ratefetch is given
    must refuse nothing (429s counted in its access log)."""
    count = {50: 500, 200: 2000}
    if QUICK:
        count = {50: 100, 200: 400}
    rows = {}
    for rate, port in PORT_LIMIT_REQ.items():
        log(f"b) nginx limit_req at {rate}r/s burst=1: {count[rate]} URLs at -r {rate}/s")
        for label, binary in variants():
            d = rows.setdefault((rate, label), {"n": [], "refused": []})
            for run in range(RUNS):
                clear_log(port)
                time.sleep(1.0)  # let limit_req's state for the port drain between runs
                urls = [f"http://{HOST}:{port}/small.html?i={i}" for i in range(count[rate])]
                cmd = [str(binary), str(write_list("limitreq.txt", urls)), "-r", f"{rate}/s", "-c", "16", "-q", "-o", "/dev/null",
                       "--retries", "0"]
                subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
                time.sleep(0.5)
                lines = (WORK / f"access-{port}.log").read_text().splitlines()
                d["n"].append(len(lines))
                d["refused"].append(sum(1 for line in lines if line.split(" ")[1:2] == ["429"]))
    results["limit_req"] = rows


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
            (label, [str(binary), str(lst), "-r", "unlimited", "-c", "100", "-q", "-o", str(WORK / "lat.csv")], None)
            for label, binary in variants()
        ]
        tools += [
            ("curl -Z --parallel-max 100", ["curl", "-s", "-Z", "--parallel-max", "100", "-K", str(cfg)], None),
            ("wget2 --max-threads 100", ["wget2", "-q", "--no-config", "--tries=1", "--max-threads=100", "-i", str(lst), "-O", "/dev/null"], None),
            ("bare reqwest loop -c 100", [str(BARE_LOOP), "-c", "100", str(lst)], None),
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
    tools = [(label, [str(binary), str(lst), "-r", "1000/s", "-q", "-o", str(WORK / "huge.csv")]) for label, binary in variants()]
    tools += [
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
    n = 4000 if QUICK else 10_000
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

        add("ratefetch --burst 10 -c 20", lambda p, b, u: [str(RATEFETCH), str(write_list(f"cpu-{p}.txt", u)), "-r", f"{rate}/s", "--burst", "10", "-c", "20", "-q", "-o", str(WORK / f"cpu-{p}.csv")])
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
        # At burst 1 (the alarm and its spin), alone after the side-by-side run, so that
        # its spin does not weigh on its neighbours' figures.
        port = PORT_LOGGED[-1]
        lst = write_list("cpu-burst1.txt", [f"http://{HOST}:{port}/small.html?i={i}" for i in range(n)])
        m = timed([str(RATEFETCH), str(lst), "-r", f"{rate}/s", "--burst", "1", "-c", "20", "-q", "-o", str(WORK / "cpu-burst1.csv")])
        d = rows.setdefault("ratefetch --burst 1 -c 20, alone", {"cpu10k": [], "rps": []})
        d["cpu10k"].append(m["cpu"] / n * 10_000)
        d["rps"].append(n / m["wall"])
        if BASELINE:
            # The baseline and the new binary each alone, one after the other.
            port = PORT_LOGGED[-1]
            lst = write_list("cpu-alone.txt", [f"http://{HOST}:{port}/small.html?i={i}" for i in range(n)])
            for label, binary in variants():
                m = timed([str(binary), str(lst), "-r", f"{rate}/s", "--burst", "10", "-c", "20", "-q", "-o", str(WORK / "cpu-alone.csv")])
                d = rows.setdefault(f"{label}, alone", {"cpu10k": [], "rps": []})
                d["cpu10k"].append(m["cpu"] / n * 10_000)
                d["rps"].append(n / m["wall"])
        log(f"  run {run + 1}/{RUNS} done")
    results["cpu"] = rows


BARE_F = "bare reqwest loop (one attempt per URL; ceiling)"


def scenario_retries(results):
    n = RETRY_N
    k = n // 100
    log(f"f) retries on a realistic list: {n} URLs, {k} answer 429 (no Retry-After), {k} answer 404, concurrency 64")
    order = list(range(n))
    random.Random(9).shuffle(order)
    r429, n404 = set(order[:k]), set(order[k : 2 * k])
    base = f"http://{HOST}:{PORT_PLAIN}"
    urls = [
        f"{base}/r429/{i}" if i in r429 else f"{base}/n404/{i}" if i in n404 else f"{base}/small.html?i={i}"
        for i in range(n)
    ]
    lst = write_list("retries.txt", urls)
    tools = []
    for retries in (2, 0):
        for label, binary in variants():
            extra = [] if retries == 2 else ["--retries", "0"]
            name = f"{label} --retries {retries}" + (" (default)" if retries == 2 else "")
            tools.append((name, label, retries, [str(binary), str(lst), "-r", "unlimited", "-c", "64", "-q", "-o", str(WORK / "retries.csv")] + extra))
    # wget2 has no backoff to compare: --tries=1 is one attempt per URL. (With its default
    # --tries it sends a 429 URL once too; 1.99 has no --retry-on-http-error.)
    # The HTTP stack alone, one attempt per URL: the ceiling of `--retries 0`.
    tools.append((BARE_F, None, 0, [str(BARE_LOOP), "-c", "64", str(lst)]))
    tools.append(("wget2 --max-threads 64 --tries=1", None, 0, ["wget2", "-q", "--no-config", "--tries=1", "--max-threads=64", "-i", str(lst), "-O", "/dev/null"]))
    rows = {}
    for run in range(RUNS):
        for name, label, retries, cmd in tools:
            before = nginx_requests()
            m = timed(cmd, ok=None)  # 404s and 429s make every tool exit non-zero
            served = nginx_requests() - before - 1
            d = rows.setdefault(name, {"label": label, "retries": retries, "wall": [], "served": []})
            d["wall"].append(m["wall"])
            d["served"].append(served)
        log(f"  run {run + 1}/{RUNS} done")
    results["retries"] = {"n": n, "k": k, "rows": rows}


def host_sorted_cases():
    # (label, hosts, URLs per host, per-host rate /s)
    per_c = 2_500 if QUICK else 5_000  # either way more than a lookahead of 4,096 jobs in all, 256 per host
    return [("a", 8, 10, 2), ("b", 3, 20, 5), ("c", 4, per_c, 500)]


def scenario_host_sorted(results):
    out = {}
    for case, hosts, per, rate in host_sorted_cases():
        ideal = (per - 1) / rate
        log(f"g{case}) host-sorted list: {hosts} hosts x {per} URLs, --per-host-rate {rate}/s -c 16 (ideal {ideal:.2f} s)")
        addrs = HOST_ADDRS[:hosts]
        urls = [f"http://{a}:{PORT_HOSTS}/small.html?i={i}" for a in addrs for i in range(per)]
        lst = write_list(f"hosts-{case}.txt", urls)
        rows = {}
        for run in range(RUNS):
            for label, binary in variants():
                clear_host_log()
                cmd = [str(binary), str(lst), "--per-host-rate", f"{rate}/s", "-c", "16", "-r", "unlimited", "-q", "-o", str(WORK / "hosts.csv")]
                t0 = time.time()
                start = time.monotonic()
                subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=900)
                wall = time.monotonic() - start
                time.sleep(0.3)  # nginx's last log lines
                arr = host_arrivals()
                last = [t for t, a in arr if a == addrs[-1]]
                d = rows.setdefault(label, {"wall": [], "last_first_ms": [], "span": [], "served": []})
                d["wall"].append(wall)
                d["last_first_ms"].append((last[0] - t0) * 1000 if last else float("nan"))
                d["span"].append(arr[-1][0] - arr[0][0] if len(arr) > 1 else float("nan"))
                d["served"].append(len(arr))
            log(f"  run {run + 1}/{RUNS} done")
        out[case] = {"hosts": hosts, "per": per, "rate": rate, "ideal": ideal, "rows": rows}
    results["hosts"] = out


def scenario_host_pace(results):
    seconds = 2 if QUICK else 4
    port = PORT_LOGGED[0]
    out = {}
    for rate in (100, 500, 1000):
        count = rate * seconds + 1
        log(f"h) per-host pace: {count} URLs on one host, --per-host-rate {rate}/s -r unlimited -c 32")
        lst = write_list("pace.txt", [f"http://{HOST}:{port}/small.html?i={i}" for i in range(count)])
        rows = {}
        for run in range(RUNS):
            for label, binary in variants():
                clear_log(port)
                cmd = [str(binary), str(lst), "--per-host-rate", f"{rate}/s", "-r", "unlimited", "-c", "32", "-q", "-o", str(WORK / "pace.csv")]
                subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
                time.sleep(0.3)
                t = arrivals(port)
                d = rows.setdefault(label, {"mean": [], "w1s": [], "w100": [], "n": []})
                span = t[-1] - t[0] if len(t) > 1 else 0
                d["mean"].append((len(t) - 1) / span if span > 0 else float("nan"))
                d["w1s"].append(window_max(t, 1.0))
                d["w100"].append(window_max(t, 0.1))
                d["n"].append(len(t))
            log(f"  run {run + 1}/{RUNS} done")
        out[rate] = {"count": count, "rows": rows}
    results["pace"] = out


SHARED_RATE = 200
SHARED_PROCS = 4
SHARED_N = 1_200 if QUICK else 4_000  # the 4 processes' list: 20 s at 200/s (6 s QUICK)
SHARED_ALONE_N = SHARED_N // 2  # one process alone, with --redis and without
GRANT_N = 5_000 if QUICK else 20_000  # the cost of a grant: -r unlimited -c 64
GRANT_RUNS = RUNS if QUICK or RUNS == 1 else max(RUNS, 5)  # ~1 s each, and noisy: a few more


class Redis:
    """A redis-server of the bench's own: a unix socket in WORK and a TCP port on 127.0.0.1,
    no persistence; stopped by `stop`."""

    def __init__(self):
        self.socket = WORK / "redis.sock"
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(PORT_REDIS), "--bind", HOST, "--unixsocket", str(self.socket),
             "--unixsocketperm", "700", "--save", "", "--appendonly", "no", "--logfile", str(WORK / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.socket.exists() and self.cli("PING").strip() == "PONG":
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise SystemExit(f"bench: redis-server did not start (see {WORK / 'redis.log'})")

    def unix_url(self):
        return f"redis+unix://{self.socket}"

    def tcp_url(self):
        return f"redis://{HOST}:{PORT_REDIS}"

    def cli(self, *args):
        out = subprocess.run(["redis-cli", "-s", str(self.socket), *args], capture_output=True, text=True, timeout=10)
        return out.stdout

    def info(self):
        """INFO's fields (cpu, commandstats) as a dict of strings."""
        fields = {}
        for section in ("cpu", "commandstats"):
            for line in self.cli("INFO", section).splitlines():
                if ":" in line and not line.startswith("#"):
                    k, v = line.strip().split(":", 1)
                    fields[k] = v
        return fields

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def redis_cpu(info):
    """redis-server's CPU seconds so far (user + system, all its threads)."""
    return float(info.get("used_cpu_user", "nan")) + float(info.get("used_cpu_sys", "nan"))


def redis_calls(info):
    """(calls, µs spent) per command so far, from INFO commandstats
    (`cmdstat_evalsha:calls=3,usec=41,…`). Commands that a script runs count here too."""
    out = {}
    for k, v in info.items():
        if k.startswith("cmdstat_"):
            calls, usec = re.search(r"calls=(\d+)", v), re.search(r"usec=(\d+)", v)
            if calls and usec:
                out[k[len("cmdstat_"):]] = (int(calls.group(1)), int(usec.group(1)))
    return out


def windows_over(times, width, limit):
    """How many windows [t, t + width) that start at an arrival hold more than `limit`."""
    over, end = 0, 0
    for start, t in enumerate(times):
        end = max(end, start)
        while end < len(times) and times[end] - t < width - 1e-9:
            end += 1
        over += end - start > limit
    return over


def shard_arrivals(port):
    """(arrival time, index) of every request at a logged port, in order; the index is the
    `?i=` of the URL."""
    out = []
    for line in (WORK / f"access-{port}.log").read_text().splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3:
            m = re.search(r"[?&]i=(\d+)", parts[2])
            out.append((float(parts[0]), int(m.group(1)) if m else -1))
    out.sort()
    return out


def scenario_shared(results):
    if not have("redis-server") or not have("redis-cli"):
        log("i) shared limits in Redis: skipped, redis-server is not installed (bench/run installs it)")
        results["shared"] = None
        return
    redis = Redis()
    load = os.getloadavg()[0]
    try:
        results["shared"] = {
            "version": version(["redis-server", "--version"]),
            "rate": shared_rate(redis),
            "grant": grant_cost(redis),
        }
        # Other work on the machine shows in the windows: say how busy it was.
        results["shared"]["load"] = (load, os.getloadavg()[0])
    finally:
        redis.stop()


def shared_rate(redis):
    """Part 1: 4 processes on one shared limit at 200/s, the union measured at the server;
    against the same 4 with local limits only, and one process alone with and without it."""
    rate, k = SHARED_RATE, SHARED_PROCS
    port = PORT_LOGGED[0]
    log(f"i) shared rate: {k} processes x --shard k/{k} of {SHARED_N} URLs, -r {rate}/s --burst 1 -c 16, "
        f"with --redis and without; then one process alone, with --redis and without ({SHARED_ALONE_N} URLs)")
    base = f"http://{HOST}:{port}/small.html"
    lst = write_list("shared.txt", [f"{base}?i={i}" for i in range(1, SHARED_N + 1)])
    alone = write_list("shared-alone.txt", [f"{base}?i={i}" for i in range(1, SHARED_ALONE_N + 1)])
    limit = ["-r", f"{rate}/s", "--burst", "1", "-c", "16", "-q"]
    cases = [
        (f"{k} processes, --redis (one shared limit)", k, lst, True),
        (f"{k} processes, local limits only (contrast)", k, lst, False),
        ("1 process, --redis", 1, alone, True),
        ("1 process, local limit only", 1, alone, False),
    ]
    rows = {}
    for run in range(RUNS):
        for name, procs, path, shared in cases:
            clear_log(port)
            key = ["--redis", redis.unix_url(), "--limit-key", f"bench-rate-{run}-{procs}"] if shared else []
            started, logs = [], []
            for s in range(1, procs + 1):
                shard = ["--shard", f"{s}/{procs}"] if procs > 1 else []
                # The shared runs log their requests, with each grant's time on Redis' clock.
                reqlog = WORK / f"shared-{s}.jsonl"
                reqlog.unlink(missing_ok=True)
                logged = ["--log-requests", str(reqlog)] if shared else []
                logs += [reqlog] if shared else []
                cmd = [str(RATEFETCH), str(path), *limit, *key, *shard, *logged, "-o", str(WORK / f"shared-{s}.csv")]
                started.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
            for p in started:
                _, err = p.communicate(timeout=900)
                if p.returncode != 0:
                    log(f"  warning: ratefetch exited {p.returncode}: {err.decode(errors='replace')[-400:]}")
            time.sleep(0.5)  # nginx's last log lines
            arr = shard_arrivals(port)
            t = [a for a, _ in arr]
            d = rows.setdefault(name, {"procs": procs, "shared": shared, "n": [], "mean": [], "w1s": [], "w100": [], "per": [],
                                       "grant_w1s": [], "grant_w100": [], "lag_ms": [], "send_lag_ms": [], "audit": [],
                                       "over100": []})
            d["over100"].append(windows_over(t, 0.1, -(-rate // 10) + 1))
            if shared:
                # The grants themselves (Redis' clock), the lag from grant to arrival at
                # nginx (one machine, one clock), and `ratefetch audit` over the logs.
                granted, send_lag = {}, []
                for reqlog in logs:
                    for line in reqlog.read_text().splitlines():
                        rec = json.loads(line)
                        if "granted" in rec and "index" in rec:
                            g = datetime.datetime.fromisoformat(rec["granted"]).timestamp()
                            granted[rec["index"]] = g
                            send_lag.append((datetime.datetime.fromisoformat(rec["t"]).timestamp() - g) * 1000)
                g = sorted(granted.values())
                d["grant_w1s"].append(window_max(g, 1.0))
                d["grant_w100"].append(window_max(g, 0.1))
                d["lag_ms"] += [(a - granted[i]) * 1000 for a, i in arr if i in granted]
                d["send_lag_ms"] += send_lag
                audit = subprocess.run([str(RATEFETCH), "audit", *map(str, logs)], capture_output=True, text=True, timeout=120)
                d["audit"].append((audit.returncode, audit.stdout.strip()))
            span = t[-1] - t[0] if len(t) > 1 else 0
            d["n"].append(len(t))
            d["mean"].append((len(t) - 1) / span if span > 0 else float("nan"))
            d["w1s"].append(window_max(t, 1.0))
            d["w100"].append(window_max(t, 0.1))
            # Each process's own mean rate: index i belongs to shard (i - 1) mod N + 1.
            per = []
            for s in range(procs):
                ts = [a for a, i in arr if (i - 1) % procs == s]
                sp = ts[-1] - ts[0] if len(ts) > 1 else 0
                per.append((len(ts) - 1) / sp if sp > 0 else float("nan"))
            d["per"].append(per)
        log(f"  run {run + 1}/{RUNS} done")
    return {"rate": rate, "count": SHARED_N, "alone": SHARED_ALONE_N, "rows": rows}


def grant_cost(redis):
    """Part 2: what a grant costs. -r unlimited at c=64 on the unlogged port, without --redis
    (a local limit) and with it (the grant still runs for every request, it just never
    waits): req/s, ratefetch's CPU, redis-server's CPU and its commands, per request."""
    n = GRANT_N
    log(f"i) cost of a grant: {n} URLs, -r unlimited -c 64, local vs --redis (unix socket, TCP)")
    lst = write_list("grant.txt", [f"http://{HOST}:{PORT_PLAIN}/small.html?i={i}" for i in range(n)])
    cases = [
        ("local limit (no --redis)", None),
        ("--redis, unix socket", redis.unix_url()),
        (f"--redis, TCP {HOST}", redis.tcp_url()),
    ]
    rows = {}
    for run in range(GRANT_RUNS):
        for name, url in cases:
            key = ["--redis", url, "--limit-key", f"bench-grant-{run}"] if url else []
            cmd = [str(RATEFETCH), str(lst), "-r", "unlimited", "-c", "64", "-q", *key, "-o", str(WORK / "grant.csv")]
            before, info0 = nginx_requests(), redis.info()
            m = timed(cmd)
            info1 = redis.info()
            served = nginx_requests() - before - 1  # minus the status request itself
            c0, c1 = redis_calls(info0), redis_calls(info1)
            calls = {c: (n1 - c0.get(c, (0, 0))[0], u1 - c0.get(c, (0, 0))[1]) for c, (n1, u1) in c1.items()}
            calls = {c: v for c, v in calls.items() if v[0] > 0}
            calls.pop("info", None)  # the bench's own INFO
            evalsha, usec = calls.get("evalsha", (0, 0))
            d = rows.setdefault(name, {"rps": [], "cpu10k": [], "redis10k": [], "evalsha": [], "script_us": [], "served": [], "calls": None})
            d["rps"].append(served / m["wall"])
            d["cpu10k"].append(m["cpu"] / max(served, 1) * 10_000)
            d["redis10k"].append((redis_cpu(info1) - redis_cpu(info0)) / max(served, 1) * 10_000)
            d["evalsha"].append(evalsha / max(served, 1))
            d["script_us"].append(usec / evalsha if evalsha else float("nan"))
            d["served"].append(served)
            d["calls"] = {c: n for c, (n, _) in calls.items()}
        log(f"  run {run + 1}/{GRANT_RUNS} done")
    return {"n": n, "runs": GRANT_RUNS, "rows": rows}


# ---------------------------------------------------------------- j, k, l: issue 12


def run_timed(cmd, timeout=600, env=None):
    """As `timed`, for the scenarios j–l: the tool runs in a session of its own, and one that
    overruns `timeout` (or is interrupted) is killed with everything it started; None then."""
    out = WORK / "time.txt"
    out.unlink(missing_ok=True)
    full = ["/usr/bin/time", "-f", "%e %U %S %M", "-o", str(out)] + [str(c) for c in cmd]
    p = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                         start_new_session=True)
    try:
        _, err = p.communicate(timeout=timeout)
    except BaseException as e:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()
        if isinstance(e, subprocess.TimeoutExpired):
            log(f"  warning: {cmd[0]} overran {timeout} s: killed")
            return None
        raise
    if p.returncode != 0:
        log(f"  warning: {Path(str(cmd[0])).name} exited {p.returncode}: {err.decode(errors='replace')[-300:].strip()}")
    try:
        fields = out.read_text().strip().splitlines()[-1].split()
        wall, user, sys_, rss = float(fields[0]), float(fields[1]), float(fields[2]), int(fields[3])
    except (OSError, IndexError, ValueError):
        return None
    return {"wall": max(wall, 1e-3), "cpu": user + sys_, "rss_kib": rss, "rc": p.returncode}


def nginx_run(rows, name, cmd, timeout=600):
    """One run of `cmd` against nginx: req/s, CPU per 10k requests, peak RSS, and the
    connections it opened (stub_status' accepts), counted at the server."""
    a0, r0 = nginx_counters()
    m = run_timed(cmd, timeout)
    a1, r1 = nginx_counters()
    served, conns = r1 - r0 - 1, a1 - a0 - 1  # minus the status request after (and its connection)
    d = rows.setdefault(name, {"rps": [], "cpu10k": [], "rss": [], "served": [], "conns": []})
    if m is None:
        return
    d["rps"].append(served / m["wall"])
    d["cpu10k"].append(m["cpu"] / max(served, 1) * 10_000)
    d["rss"].append(m["rss_kib"] / 1024)
    d["served"].append(served)
    d["conns"].append(conns)


def raise_nofile():
    """The open-file soft limit up to the hard limit, for this process and its children."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def curl_tls(ca):
    return ["--cacert", str(ca)]


def list_tools(lst, cfg, ca, c=64, out="tools.csv"):
    """ratefetch (every variant), the bare loop, curl -Z and wget2 on one list, with `ca` as
    the only trusted root if given."""
    rf_tls = ["--cacert", str(ca)] if ca else []
    tools = [
        (label, [binary, lst, *rf_tls, "-r", "unlimited", "-c", str(c), "-q", "-o", WORK / out])
        for label, binary in variants()
    ]
    tools += [
        (BARE, [BARE_LOOP, *rf_tls, "-c", str(c), lst]),
        (f"curl -Z --parallel-max {c}", ["curl", "-s", "-Z", "--parallel-max", str(c), *(curl_tls(ca) if ca else []), "-K", cfg]),
        (f"wget2 --max-threads {c}", ["wget2", "-q", "--no-config", "--tries=1", f"--max-threads={c}",
                                      *([f"--ca-certificate={ca}"] if ca else []), "-i", lst, "-O", "/dev/null"]),
    ]
    return tools


def scenario_https(results):
    n = TLS_N
    ca = WORK / "tls" / "ca.pem"
    log(f"j) HTTPS keep-alive: {n} URLs on nginx with TLS (a local CA, --cacert), concurrency 64")
    urls = [f"https://{HOST}:{PORT_TLS}/small.html?i={i}" for i in range(n)]
    lst, cfg = write_list("https.txt", urls), curl_config("https.curl", urls)
    tools = list_tools(lst, cfg, ca, out="https.csv")
    rows = {}
    for run in range(RUNS):
        for name, cmd in tools:
            nginx_run(rows, name, cmd)
        log(f"  run {run + 1}/{RUNS} done")
    results["https"] = {"n": n, "rows": rows}


def strip_hosts_block(text):
    out, inside = [], False
    for line in text.splitlines(keepends=True):
        if line.strip() == HOSTS_MARK[0]:
            inside = True
        elif line.strip() == HOSTS_MARK[1]:
            inside = False
        elif not inside:
            out.append(line)
    return "".join(out)


def hosts_install(pairs):
    """Puts `pairs` (address, name) into /etc/hosts between marker lines; returns the text to
    put back. A block left by a run that was killed is removed first."""
    original = HOSTS_FILE.read_text()
    clean = strip_hosts_block(original)
    if clean != original:
        log("  /etc/hosts held a block from an earlier run that did not finish: removed")
    (WORK / "hosts.orig").write_text(clean)
    block = [HOSTS_MARK[0]] + [f"{a} {name}" for a, name in pairs] + [HOSTS_MARK[1]]
    HOSTS_FILE.write_text(clean.rstrip("\n") + "\n" + "\n".join(block) + "\n")  # in place: it may be a bind mount
    return clean


def many_name(i):
    return f"h{i + 1}.{MANY_DOMAIN}"


def scenario_many_hosts(results):
    n, hosts = MANY_N, len(MANY_ADDRS)
    ca = WORK / "tls" / "ca.pem"
    raise_nofile()
    log(f"k) many hosts: {n} URLs over {hosts} addresses ({MANY_ADDRS[0]}–{MANY_ADDRS[-1]}), shuffled, concurrency 64, "
        "HTTP and HTTPS; names in /etc/hosts for ratefetch and the bare loop")
    picks = [i % hosts for i in range(n)]
    random.Random(12).shuffle(picks)
    names_ok = os.access(HOSTS_FILE, os.W_OK)
    cases = {}
    for proto, port, tls in (("HTTP", PORT_MANY, None), ("HTTPS", PORT_MANY_TLS, ca)):
        scheme = proto.lower()
        by_ip = [f"{scheme}://{MANY_ADDRS[h]}:{port}/small.html?i={i}" for i, h in enumerate(picks)]
        by_name = [f"{scheme}://{many_name(h)}:{port}/small.html?i={i}" for i, h in enumerate(picks)]
        one = [f"{scheme}://{HOST}:{port}/small.html?i={i}" for i in range(n)]
        lst = write_list(f"many-{scheme}.txt", by_ip)
        tools = list_tools(lst, curl_config(f"many-{scheme}.curl", by_ip), tls, out="many.csv")
        rf_tls = ["--cacert", str(tls)] if tls else []
        if names_ok:
            names = write_list(f"many-{scheme}-names.txt", by_name)
            tools += [
                (f"{label}, names", [binary, names, *rf_tls, "-r", "unlimited", "-c", "64", "-q", "-o", WORK / "many.csv"])
                for label, binary in variants()
            ]
            tools.append((f"{BARE}, names", [BARE_LOOP, *rf_tls, "-c", "64", names]))
        # The reference: the same count of URLs to one host, over the same server block.
        ref = write_list(f"many-{scheme}-one.txt", one)
        tools += [
            (f"{label}, one host (reference)", [binary, ref, *rf_tls, "-r", "unlimited", "-c", "64", "-q", "-o", WORK / "many.csv"])
            for label, binary in variants()
        ]
        tools.append((f"{BARE}, one host (reference)", [BARE_LOOP, *rf_tls, "-c", "64", ref]))
        cases[proto] = {"tools": tools, "rows": {}}
    restore = hosts_install([(a, many_name(i)) for i, a in enumerate(MANY_ADDRS)]) if names_ok else None
    try:
        for run in range(RUNS):
            for proto, case in cases.items():
                for name, cmd in case["tools"]:
                    nginx_run(case["rows"], name, cmd)
            log(f"  run {run + 1}/{RUNS} done")
    finally:
        if restore is not None:
            HOSTS_FILE.write_text(restore)
            log("  /etc/hosts restored")
    results["many"] = {"n": n, "hosts": hosts, "names": names_ok,
                       "cases": {proto: case["rows"] for proto, case in cases.items()}}


def scenario_latency_many(results):
    n, c = LATENCY_N, LATENCY_C
    nofile = raise_nofile()
    log(f"l) latency-bound at {c} in flight: {n} URLs on the 100 ms server (open files: {nofile})")
    server = subprocess.Popen([str(DELAY_SERVER), f"{HOST}:{PORT_DELAY}", "100ms"], stderr=subprocess.DEVNULL)
    try:
        wait_port(PORT_DELAY)
        base = f"http://{HOST}:{PORT_DELAY}/"
        urls = [f"{base}?i={i}" for i in range(n)]
        lst, cfg = write_list("latency-many.txt", urls), curl_config("latency-many.curl", urls)
        tools = [
            (label, c, [binary, lst, "-r", "unlimited", "-c", str(c), "-q", "-o", WORK / "lat-many.csv"])
            for label, binary in variants()
        ]
        tools += [
            (f"bare reqwest loop -c {c}", c, [BARE_LOOP, "-c", str(c), lst]),
            (f"curl -Z --parallel-max {c}", min(c, CURL_PARALLEL_MAX), ["curl", "-s", "-Z", "--parallel-max", str(c), "-K", cfg]),
            (f"wget2 --max-threads {c}", c, ["wget2", "-q", "--no-config", "--tries=1", f"--max-threads={c}", "-i", lst, "-O", "/dev/null"]),
            (f"hey -c {c} (one URL)", c, ["hey", "-n", str(n), "-c", str(c), base]),
        ]
        if have_oha():
            tools.append((f"oha -c {c} (one URL)", c, ["oha", "--no-tui", "-n", str(n), "-c", str(c), base]))
        rows = {}
        for run in range(RUNS):
            for name, inflight, cmd in tools:
                import threading

                samples, stop = [], threading.Event()
                before = delay_served()

                def sample():
                    while not stop.is_set():
                        samples.append((time.monotonic(), delay_served() - before))
                        stop.wait(0.05)

                sampler = threading.Thread(target=sample, daemon=True)
                sampler.start()
                try:
                    m = run_timed(cmd, timeout=300)
                finally:
                    stop.set()
                    sampler.join()
                served = delay_served() - before
                d = rows.setdefault(name, {"inflight": inflight, "rps": [], "steady": [], "served": [], "cpu10k": [], "rss": []})
                if m is None:
                    continue
                d["rps"].append(served / m["wall"])
                d["steady"].append(steady_rate(samples, served))
                d["served"].append(served)
                d["cpu10k"].append(m["cpu"] / max(served, 1) * 10_000)
                d["rss"].append(m["rss_kib"] / 1024)
            log(f"  run {run + 1}/{RUNS} done")
        results["latency_many"] = {"n": n, "c": c, "rows": rows}
    finally:
        server.terminate()
        server.wait()


def steady_rate(samples, served):
    """The rate between the samples where 10% and 90% of the run's requests had been answered
    (the delay server's own count): no ramp-up, no tail."""
    lo = next(((t, k) for t, k in samples if k >= 0.1 * served), None)
    hi = next(((t, k) for t, k in reversed(samples) if k <= 0.9 * served), None)
    if not lo or not hi or hi[0] <= lo[0]:
        return float("nan")
    return (hi[1] - lo[1]) / (hi[0] - lo[0])



# ---------------------------------------------------------------- n: announced limits (issue 21)


ANNOUNCED_N = 60 if QUICK else 200  # n: requests per run, at 20 per 3 s: ten windows (QUICK: three)
ANNOUNCED_LIMIT, ANNOUNCED_WINDOW = 20, 3
PORT_ANNOUNCED = 18850  # n: one port per server, the first free ones from 18850 on
LIMITERS_VENV = BENCH / ".venv-limiters"  # n: Flask-Limiter and slowapi from PyPI (bench/run installs them)
LIMITERS = {"Flask-Limiter": "flask-limiter", "limits": "limits", "Flask": "flask", "slowapi": "slowapi", "uvicorn": "uvicorn",
            "FastAPI": "fastapi"}

# express-rate-limit 8's MemoryStore and headers (source/memory-store.ts, source/headers.ts, source/rate-limit.ts) on the
# standard library: npm is not reachable from the bench's machine, so the real middleware cannot be installed. One client
# (the key "127.0.0.1"), `standardHeaders: 'draft-6' | 'draft-7' | 'draft-8'` or `legacyHeaders` alone. Each arrival is
# logged as "time status window".
EXPRESS_SERVER = """
import base64, hashlib, math, sys, threading, time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

style, port, limit, window_ms, log_path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
lock = threading.Lock()
client = {"hits": 0, "reset_ms": 0, "window": -1}  # MemoryStore's record of the one client
# draft-8: the default identifier, and the partition key of "127.0.0.1" (sha256, 12 hex digits, base64)
name = f"{limit}-in-{window_ms / 1000:g}sec"
pk = base64.b64encode(hashlib.sha256(b"127.0.0.1").hexdigest()[:12].encode()).decode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        with lock:
            now_ms = int(time.time() * 1000)  # Date.now()
            if client["reset_ms"] <= now_ms:  # MemoryStore.increment: a window opens at the first hit after the last
                client.update(hits=0, reset_ms=now_ms + window_ms, window=client["window"] + 1)
            client["hits"] += 1  # refused hits count too
            hits, reset_ms, window = client["hits"], client["reset_ms"], client["window"]
            refused = hits > limit
            with open(log_path, "a") as f:
                f.write(f"{now_ms / 1000:.3f} {429 if refused else 200} {window}\\n")
        remaining = max(limit - hits, 0)
        now_ms = int(time.time() * 1000)
        reset = max(0, math.ceil((reset_ms - now_ms) / 1000))  # getResetSeconds
        w = math.ceil(window_ms / 1000)
        headers = [("Date", formatdate(now_ms / 1000, usegmt=True))]  # Node's own, whole seconds rounded down
        if style == "draft-6":
            headers += [("RateLimit-Policy", f"{limit};w={w}"), ("RateLimit-Limit", str(limit)), ("RateLimit-Remaining", str(remaining))]
            if reset:  # `if (resetSeconds)`
                headers.append(("RateLimit-Reset", str(reset)))
        elif style == "draft-7":
            headers += [("RateLimit-Policy", f"{limit};w={w}"), ("RateLimit", f"limit={limit}, remaining={remaining}, reset={reset}")]
        elif style == "draft-8":
            headers += [("RateLimit-Policy", f'"{name}"; q={limit}; w={w}; pk=:{pk}:'), ("RateLimit", f'"{name}"; r={remaining}; t={reset}')]
        else:  # legacy
            headers += [("X-RateLimit-Limit", str(limit)), ("X-RateLimit-Remaining", str(remaining)),
                        ("X-RateLimit-Reset", str(math.ceil(reset_ms / 1000)))]
        body = b"ok"
        if refused:
            headers.append(("Retry-After", str(reset)))
            body = b"Too many requests, please try again later."
        self.send_response_only(429 if refused else 200)
        for k, v in headers + [("Content-Length", str(len(body)))]:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # 5 by default: a burst of connections would wait for SYN retries


Server(("127.0.0.1", port), Handler).serve_forever()
"""

# The real Flask-Limiter (in-memory storage, one limit for every path), on werkzeug's threaded server. Each arrival is
# logged as "time status X-RateLimit-Reset" (the time taken as the request comes in, before the limiter's).
FLASK_SERVER = """
import logging, sys, threading, time
from flask import Flask
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

strategy, port, limit, log_path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
app = Flask(__name__)
Limiter(get_remote_address, app=app, default_limits=[limit], strategy=strategy, headers_enabled=True, storage_uri="memory://")


@app.route("/<path:page>")
def page(page):
    return "ok"


lock = threading.Lock()
inner = app.wsgi_app


def logged(environ, start_response):
    t = time.time()

    def start(status, headers, exc_info=None):
        reset = next((v for k, v in headers if k.lower() == "x-ratelimit-reset"), "-")
        with lock, open(log_path, "a") as f:
            f.write(f"{t:.6f} {status.split()[0]} {reset}\\n")
        return start_response(status, headers, exc_info)

    return inner(environ, start)


app.wsgi_app = logged
logging.getLogger("werkzeug").setLevel(logging.ERROR)
app.run(host="127.0.0.1", port=port, threaded=True)
"""

# The real slowapi on uvicorn, logged the same way.
SLOWAPI_SERVER = """
import sys, time
import uvicorn
from fastapi import FastAPI, Request, Response
from slowapi import Limiter, _rate_limit_exceeded_handler
from slowapi.errors import RateLimitExceeded
from slowapi.util import get_remote_address

port, limit, log_path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
# key_style="endpoint": one limit for the route (by default each path has its own)
limiter = Limiter(key_func=get_remote_address, headers_enabled=True, key_style="endpoint")
app = FastAPI()
app.state.limiter = limiter
app.add_exception_handler(RateLimitExceeded, _rate_limit_exceeded_handler)


@app.get("/{page:path}")
@limiter.limit(limit)
def page(page: str, request: Request, response: Response):  # slowapi writes its headers into `response`
    return "ok"


def logged(inner):
    async def asgi(scope, receive, send):
        if scope["type"] != "http":
            return await inner(scope, receive, send)
        t = time.time()

        async def start(message):
            if message["type"] == "http.response.start":
                reset = next((v.decode() for k, v in message.get("headers", []) if k.lower() == b"x-ratelimit-reset"), "-")
                with open(log_path, "a") as f:
                    f.write(f"{t:.6f} {message['status']} {reset}\\n")
            await send(message)

        await inner(scope, receive, start)

    return asgi


uvicorn.run(logged(app), host="127.0.0.1", port=port, log_level="error")
"""


def free_port(start):
    """The first port from `start` on that can be bound at HOST (other work on this machine may hold some)."""
    import socket

    for port in range(start, start + 100):
        with socket.socket() as s:
            try:
                s.bind((HOST, port))
                return port
            except OSError:
                continue
    raise SystemExit(f"bench: no free port in {start}–{start + 99}")


def limiters_python():
    """The venv's python when Flask-Limiter and slowapi are installed in it, else None."""
    py = LIMITERS_VENV / "bin" / "python"
    if not py.exists():
        return None
    ok = subprocess.run([str(py), "-c", "import flask_limiter, slowapi, uvicorn, fastapi"], capture_output=True, timeout=60)
    return py if ok.returncode == 0 else None


def limiters_versions(py):
    code = "import importlib.metadata as m, sys; print('; '.join(f'{k} {m.version(v)}' for k, v in " + repr(LIMITERS) + ".items()))"
    out = subprocess.run([str(py), "-c", code], capture_output=True, text=True, timeout=60)
    return out.stdout.strip() or "?"


def announced_servers():
    """(name, moving window?, command for a port and a log file) of each server of scenario n."""
    limit, w = ANNOUNCED_LIMIT, ANNOUNCED_WINDOW
    express = WORK / "express_server.py"
    express.write_text(EXPRESS_SERVER)
    servers = [(f"express-rate-limit {style} (emulated)", False,
                lambda port, path, s=style: [sys.executable, express, s, port, limit, w * 1000, path])
               for style in ("draft-6", "draft-7", "draft-8", "legacy")]
    py = limiters_python()
    if py:
        flask, slowapi = WORK / "flask_server.py", WORK / "slowapi_server.py"
        flask.write_text(FLASK_SERVER)
        slowapi.write_text(SLOWAPI_SERVER)
        servers += [
            ("Flask-Limiter fixed window", False, lambda port, path: [py, flask, "fixed-window", port, f"{limit} per {w} second", path]),
            ("Flask-Limiter moving window", True, lambda port, path: [py, flask, "moving-window", port, f"{limit} per {w} second", path]),
            ("slowapi (reset a second late)", False, lambda port, path: [py, slowapi, port, f"{limit}/{w}second", path]),
        ]
    return servers, py


def announced_modes():
    """(mode, ratefetch's arguments, ideal wall seconds) of scenario n. Ideal: every window whole, the next one opened
    the moment the last ends; at 10/s the last window's requests take (L − 1) / 10 s more."""
    windows = -(-ANNOUNCED_N // ANNOUNCED_LIMIT)
    whole = (windows - 1) * ANNOUNCED_WINDOW
    return [
        ("-r unlimited -c 8", ["-r", "unlimited", "-c", "8"], whole),
        ("default rate (10/s)", [], whole + (min(ANNOUNCED_N, ANNOUNCED_LIMIT) - 1) / 10),
        (f"reference: -c 8 --quota {ANNOUNCED_LIMIT}/{ANNOUNCED_WINDOW}s --ignore-ratelimit-headers",
         ["-r", "unlimited", "-c", "8", "--quota", f"{ANNOUNCED_LIMIT}/{ANNOUNCED_WINDOW}s", "--ignore-ratelimit-headers"], whole),
    ]


def announced_windows(arrivals, moving):
    """Accepted requests per server window, in order, from a server's log of (time, status, window key). A fixed
    window is keyed by what the server logs for it (express: its number; Flask-Limiter and slowapi: the reset it
    announced, one per window). The moving window has no windows of its own: these are the ones a fixed window would
    have opened on the same accepted arrivals (each at the first more than the window after the last opened)."""
    accepted = sorted((t, key) for t, status, key in arrivals if status == "200")
    counts = []
    if moving:
        opened = None
        for t, _ in accepted:
            if opened is not None and t - opened <= ANNOUNCED_WINDOW:
                counts[-1] += 1
            else:
                opened = t
                counts.append(1)
        return counts
    per = {}
    for _, key in accepted:
        per[key] = per.get(key, 0) + 1
    return list(per.values())


def scenario_announced(results):
    """n) Announced limits used whole: 200 requests against servers that allow 20 per 3 s and say so in the headers
    of real middlewares; ratefetch at `-r unlimited -c 8` and at its default rate, and a reference run that ignores
    the headers and keeps the same quota itself."""
    servers, py = announced_servers()
    modes = announced_modes()
    skipped = None if py else ("Flask-Limiter and slowapi are not installed in bench/.venv-limiters (bench/run installs them "
                               "from PyPI; it was not reachable or the install failed): only the express-rate-limit emulation ran.")
    log(f"n) announced limits: {ANNOUNCED_N} requests at {ANNOUNCED_LIMIT} per {ANNOUNCED_WINDOW} s, {len(servers)} servers"
        + (f"; {skipped}" if skipped else ""))
    rows = {}
    port = PORT_ANNOUNCED - 1
    for server, moving, command in servers:
        port = free_port(port + 1)
        path = WORK / f"announced-{port}.log"
        path.write_text("")
        urls = [f"http://{HOST}:{port}/item/{k}" for k in range(ANNOUNCED_N)]
        lst = write_list(f"announced-{port}.txt", urls)
        with open(WORK / f"announced-{port}.err", "w") as err:
            proc = subprocess.Popen([str(c) for c in command(port, path)], stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                    start_new_session=True)
        try:
            wait_port(port, timeout=60)
            time.sleep(0.5)
            if proc.poll() is not None:  # what answered is not ours
                raise SystemExit(f"bench: the {server} server exited: {(WORK / f'announced-{port}.err').read_text()[-400:]}")
            for run in range(RUNS):
                for mode, args, ideal in modes:
                    for label, binary in variants():
                        path.write_text("")  # the servers append a line per arrival
                        out = WORK / f"announced-{port}.csv"
                        out.unlink(missing_ok=True)
                        m = run_timed([binary, lst, *args, "-q", "-o", out], timeout=600)
                        time.sleep(0.3)  # the last log lines
                        arrivals = [tuple(line.split(" ", 2)) for line in path.read_text().splitlines() if line.count(" ") == 2]
                        arrivals = [(float(t), status, key) for t, status, key in arrivals]
                        report = []
                        if out.exists():
                            with open(out, newline="") as f:
                                report = list(csv.DictReader(f))
                        counts = announced_windows(arrivals, moving)
                        whole = counts[:-1] or counts
                        d = rows.setdefault((server, mode, label), {"ideal": ideal, "wall": [], "refused": [], "not_ok": [], "rows": [],
                                                                    "windows": [], "mean": [], "min": []})
                        if m is not None:
                            d["wall"].append(m["wall"])
                        d["refused"].append(sum(1 for _, status, _ in arrivals if status == "429"))
                        d["not_ok"].append(sum(1 for r in report if r.get("status") != "200"))
                        d["rows"].append(len(report))
                        d["windows"].append(len(counts))
                        d["mean"].append(statistics.mean(whole) if whole else float("nan"))
                        d["min"].append(min(whole) if whole else float("nan"))
                        log(f"  {server}, {mode}, {label}: {m['wall'] if m else float('nan'):.1f} s (ideal {ideal:.1f}), "
                            f"{d['refused'][-1]} refused, per window {counts}")
                        # Every window over before the next run: it starts from a fresh one.
                        time.sleep(ANNOUNCED_WINDOW + 0.5)
            log(f"  {server} done")
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
    results["announced"] = {"rows": rows, "skipped": skipped, "versions": limiters_versions(py) if py else None}


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


def commit():
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "?"
    except Exception:
        return "?"


def baseline_rev():
    """The rev `bench/baseline` built the baseline from (a REV file beside it), if known."""
    rev = BASELINE.parent / "REV"
    return f"commit {rev.read_text().strip()[:12]}" if rev.exists() else "rev unknown"


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
        "redis-server": version(["redis-server", "--version"]) if have("redis-server") else "not installed",
        "OpenSSL (j, k certificates)": version(["openssl", "version"]),
    }
    if BASELINE:
        versions = {"ratefetch (baseline)": version([str(BASELINE), "--version"]), **versions}
    out = []
    w = out.append
    w("# ratefetch benchmarks\n")
    w(f"Generated by `bench/run` on {now} at commit {commit()}; {RUNS} runs of every tool, medians shown.  ")
    if ONLY:
        w(f"Scenarios run: {', '.join(sorted(ONLY))} (ONLY); {'QUICK sizes' if QUICK else 'full sizes'}.  ")
    elif QUICK:
        w("QUICK sizes (smaller lists than the targets are stated for).  ")
    if BASELINE:
        w(f"Baseline: `{BASELINE}` ({baseline_rev()}); every ratefetch measurement also runs the baseline, just before the new binary.  ")
    w(f"Machine: {machine()}.  ")
    w("Everything talks to loopback only: nginx on 127.0.0.1 (static ~600-byte page; scenario g also on 127.0.0.2–9, one host per address; "
      "j over TLS; k on 127.0.1.1–127.0.2.254 through a wildcard listen that refuses all but 127.0.0.0/8), "
      "`examples/delay_server` (100 ms per request), `examples/bare_loop` (ratefetch's reqwest client alone, the HTTP stack's "
      "ceiling) and, in scenario i, a redis-server of the bench's own.\n")
    w("Versions: " + "; ".join(f"{k}: `{v}`" for k, v in versions.items()) + "\n")

    # Each section on its own, keyed by its scenario letter ("baseline" for the comparison),
    # so that a partial run can put its sections into the last full run's file.
    sections = []
    for key, result, report in (
        ("a", "throughput", report_throughput),
        ("b", "rate", lambda r, w: report_rate(r, w, plotted)),
        ("c", "latency", report_latency),
        ("d", "memory", report_memory),
        ("e", "cpu", report_cpu),
        ("f", "retries", report_retries),
        ("g", "hosts", report_hosts),
        ("h", "pace", report_pace),
        ("i", "shared", report_shared),
        ("j", "https", report_https),
        ("k", "many", report_many_hosts),
        ("l", "latency_many", report_latency_many),
        ("m", "picture", report_picture),
        ("n", "announced", report_announced),
    ):
        if result in results:
            lines = []
            report(results, lines.append)
            sections.append((key, lines))
    if BASELINE:
        lines = []
        report_baseline(results, lines.append)
        sections.append(("baseline", lines))
    path = BENCH / "RESULTS.md"
    if ONLY and path.exists() and os.environ.get("FRESH") != "1":
        path.write_text(merge_results(path.read_text(), sections, now))
        return
    for _, lines in sections:
        out.extend(lines)
    notes = BENCH / "NOTES.md"
    if notes.exists() and not ONLY:
        w(notes.read_text())
    path.write_text("\n".join(out) + "\n")


PARTIAL_NOTE = ("Sections marked *regenerated on its own* come from a later run of only those scenarios "
                "(`ONLY=…`); each says when.  ")


def section_key(heading):
    """The key of a RESULTS.md section from its `## ` heading: the scenario letter, "baseline",
    or None (the notes)."""
    m = re.match(r"## ([a-z])\) ", heading)
    if m:
        return m.group(1)
    return "baseline" if heading.startswith("## No worse than the baseline") else None


def merge_results(old, sections, now):
    """The RESULTS.md text `old` with the sections of this partial run in place of theirs (a
    new scenario goes in letter order among the scenarios, before the notes); every other
    section, the header and the notes stay as they were. Each section put in says it was
    regenerated on its own, when, at which commit."""
    lines = old.rstrip("\n").split("\n")
    starts = [i for i, line in enumerate(lines) if line.startswith("## ")] + [len(lines)]
    head = lines[: starts[0]]
    parts = [(section_key(lines[a]), lines[a:b]) for a, b in zip(starts, starts[1:])]
    stamp = (f"*Regenerated on its own: `ONLY={','.join(sorted(ONLY))}{' QUICK=1' if QUICK else ''} RUNS={RUNS} bench/run` "
             f"on {now} at commit {commit()}; machine: {machine()}. The other sections are from the runs the header names.*")
    for key, new in sections:
        new = "\n".join(new).rstrip("\n").split("\n")  # a report's lines may hold line breaks
        new = new[:2] + [stamp, ""] + new[2:] + [""]  # under the heading and its blank line
        keys = [k for k, _ in parts]
        if key in keys:
            parts[keys.index(key)] = (key, new)
            continue
        # After the last scenario that comes before it (the baseline after every scenario).
        at = 0
        for i, k in enumerate(keys):
            if k is not None and (key == "baseline" or (k != "baseline" and k < key)):
                at = i + 1
        parts.insert(at, (key, new))
    if PARTIAL_NOTE not in head:
        gen = next((i for i, line in enumerate(head) if line.startswith("Generated by")), len(head) - 1)
        head.insert(gen + 1, PARTIAL_NOTE)
    body = head + [line for _, part in parts for line in part]
    return "\n".join(body).rstrip("\n") + "\n"


def report_throughput(results, w):
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
    report_ceiling(t, w, [label for label, _ in variants()] + [f"{label} -o /dev/null" for label, _ in variants()])


def ceiling_share(rows, name):
    """(share of the bare loop's req/s, multiple of its CPU per request) of row `name`."""
    bare, d = rows[BARE], rows[name]
    return median(d["rps"]) / median(bare["rps"]), median(d["cpu10k"]) / median(bare["cpu10k"])


def report_ceiling(rows, w, names, what="req/s"):
    """The issue 12 targets against the bare reqwest loop (`examples/bare_loop`, ratefetch's
    client with nothing around it): ≥ 90% of its req/s, CPU per request ≤ 1.25× its own."""
    if BARE not in rows:
        return
    bare = rows[BARE]
    w(f"Against the {BARE} (`examples/bare_loop`: one `reqwest::Client` built as ratefetch builds it, "
      f"N tasks each GET and read the body, nothing else; {fmt(median(bare['rps']))} {what}, "
      f"{median(bare['cpu10k']):.2f} CPU s / 10k). Targets: ≥ 90% of its {what}, CPU per request ≤ 1.25× its own.\n")
    for name in names:
        if name not in rows:
            continue
        share, cpu = ceiling_share(rows, name)
        w(f"- {name}: **{share:.0%}** of the loop's {what} (**{'met' if share >= 0.9 else 'missed'}**), "
          f"CPU per request **{cpu:.2f}×** the loop's (**{'met' if cpu <= 1.25 else 'missed'}**).")
    w("")



def report_rate(results, w, plotted):
    w("## b) Rate accuracy, measured at the server\n")
    w("Each tool fetches from its own nginx port whose access log records `$msec` (1 ms resolution); the tools run side by side "
      "(at most ~1,200 req/s in all, but six clients and nginx share 2 cores), then ratefetch runs once more alone "
      "(\"ratefetch, alone\"; with a baseline, the baseline alone just before it). Windows slide over every arrival.\n")
    for (rate, count), per in results["rate"].items():
        lim1, lim100 = rate + 1, -(-rate // 10) + 1
        w(f"**{count:,} URLs at {rate}/s, burst 1** — targets: mean within 0.5% of {rate}; worst 1 s window ≤ {lim1}; worst 100 ms window ≤ {lim100}; "
          "for ratefetch alone, its own log passes `ratefetch audit` with no flags.\n")
        w("| tool | requests | mean rate | error | worst 1 s | worst 100 ms | audit | targets |")
        w("|---|---:|---:|---:|---:|---:|---|---|")
        for name, d in per.items():
            mean = median(d["mean"])
            err = (mean - rate) / rate
            w1, w100 = max(d["w1s"]), max(d["w100"])
            audits = d.get("audit") or []
            held = "" if not audits else ("held" if all(a for a in audits) else "BROKEN")
            ok = abs(err) <= 0.005 and w1 <= lim1 and w100 <= lim100 and held != "BROKEN"
            w(f"| {name} | {int(median(d['n'])):,} | {mean:.2f}/s | {err:+.2%} | {w1} | {w100} | {held} | {'met' if ok else 'missed'} |")
        w("")
    w("(worst windows are the worst over all runs, not medians.)\n")
    report_fast_rate(results, w)
    if plotted:
        w("![requests per 100 ms at the server](rate.png)\n")



def report_fast_rate(results, w):
    if results.get("rate_fast"):
        w("**Higher rates, ratefetch alone** (`-c 64`, one nginx port, mean from the server's log; lateness = mean gap − period). "
          "Targets: within the burst, mean within 0.5% of the rate; at burst 1 the mean and the mean lateness are reported "
          "without a target (a send that leaves late is not caught up on). \"audit\": `ratefetch audit LOG` with no flags held in every run.\n")
        w("| rate | burst | tool | requests | mean rate | error | mean lateness | audit | target |")
        w("|---:|---:|---|---:|---:|---:|---:|---|---|")
        for (rate, burst, count, label), d in results["rate_fast"].items():
            if not d["mean"]:
                continue
            mean = median(d["mean"])
            err = (mean - rate) / rate
            target = ("met" if abs(err) <= 0.005 else "missed") if burst > 1 else "—"
            held = "held" if all(a for a in d["audit"]) else "BROKEN"
            w(f"| {rate}/s | {burst} | {label} | {int(median(d['n'])):,} | {mean:.1f}/s | {err:+.2%} | {median(d['late']):.0f} µs | {held} | {target} |")
        w("")
    if results.get("limit_req"):
        w("**A server-side GCRA:** nginx `limit_req rate=R burst=1 nodelay` (429 when over), ratefetch at `-r R --retries 0`. "
          "Target: nothing refused.\n")
        w("| rate | tool | requests | refused (429) | target |")
        w("|---:|---|---:|---:|---|")
        for (rate, label), d in results["limit_req"].items():
            refused = max(d["refused"]) if d["refused"] else 0
            w(f"| {rate}/s | {label} | {int(median(d['n'])):,} | {refused} | {'met' if refused == 0 else 'missed'} |")
        w("\n(refused: the most in any run.)\n")


def report_latency(results, w):
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



def report_memory(results, w):
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



def report_cpu(results, w):
    w("## e) CPU cost at a fixed 2,000 req/s\n")
    w("CPU seconds (user + system of the whole process) per 10,000 requests; tools side by side on their own ports. "
      "Target: ratefetch at `--burst 10 -c 20` uses at most 1.25× hey's CPU per request (hey: 20 workers at `-q 100`).\n")
    w("| tool | CPU s / 10k | achieved req/s |")
    w("|---|---:|---:|")
    for name, d in results["cpu"].items():
        w(f"| {name} | {fmt(median(d['cpu10k']), 3)} | {fmt(median(d['rps']))} |")
    hey = results["cpu"].get("hey -q (20 workers x 100/s)")
    ours = results["cpu"].get("ratefetch --burst 10 -c 20")
    if hey and ours:
        ratio = median(ours["cpu10k"]) / median(hey["cpu10k"])
        w(f"\nratefetch `--burst 10 -c 20` uses **{ratio:.2f}×** hey's CPU per request (**{'met' if ratio <= 1.25 else 'missed'}**).")
    if BASELINE:
        w("\n(\"alone\": the baseline and the new binary each on its own after the side-by-side run.)")
    w("")


def report_retries(results, w):
    r = results["retries"]
    n, k, rows = r["n"], r["k"], r["rows"]
    w(f"## f) Retries on a realistic list: {n:,} URLs, 1% answer 429, 1% answer 404, concurrency 64\n")
    w(f"{k:,} URLs answer 429 without Retry-After and {k:,} answer 404 (nginx `return`), spread over the list at random "
      "(the same list every run); the rest are the static page. `-r unlimited -c 64`, once with the default `--retries 2` "
      "(backoff 500 ms base, full jitter: at most 0.5 + 1.0 s for a URL that is refused twice) and once with `--retries 0`. "
      "Wall time from start to exit; requests are those nginx answered (stub_status). "
      "`wget2 --tries=1` makes one attempt per URL; it does not retry a 429 anyway (with its default `--tries` it sends a "
      "429 URL once too, and wget2 1.99 has no `--retry-on-http-error`), so it has no backoff to compare and is there for scale.\n")
    w("| tool | retries | requests answered | wall s | list lines / s |")
    w("|---|---:|---:|---:|---:|")
    for name, d in rows.items():
        wall = median(d["wall"])
        w(f"| {name} | {d['retries']} | {fmt(median(d['served']))} | {wall:.2f} | {fmt(n / wall)} |")
    w("")
    w(f"(expected requests: {n:,} with no retries; {n + 2 * k:,} with 2 retries, each 429 sent three times.)\n")
    for label, _ in variants():
        r2 = rows.get(f"{label} --retries 2 (default)")
        r0 = rows.get(f"{label} --retries 0")
        if not r2 or not r0:
            continue
        t2, t0 = median(r2["wall"]), median(r0["wall"])
        diff = t2 - t0
        verdict = "PASS" if diff <= 1.5 else "MISS"
        w(f"Target ({label}): the default retries add no more than their own backoff chain, ≤ 1.5 s over `--retries 0` — "
          f"{t2:.2f} s − {t0:.2f} s = **{diff:+.2f} s** (**{verdict}**).  ")
        if BARE_F in rows:
            share = median(rows[BARE_F]["wall"]) / t0
            w(f"{label} `--retries 0` goes at **{share:.0%}** of the bare reqwest loop's list lines / s on the same list "
              f"(one attempt per URL, nothing else; target ≥ 90%: **{'met' if share >= 0.9 else 'missed'}**).  ")
    w("")


def report_hosts(results, w):
    w("## g) Host-sorted lists under --per-host-rate\n")
    w("Each address 127.0.0.1–9 is a host of its own (per-host limits key on the host name); the list holds all URLs of "
      "the first host, then all of the second, and so on. `--per-host-rate R -c 16 -r unlimited`. Ideal wall time: "
      "(URLs per host − 1) / R, every host paced from the start at once. Wall time from start to exit; "
      "\"last host's first request\" is when the list's last host got its first request (nginx `$msec`), ms after start; "
      "ideal ≈ 0. Target: wall within 10% of ideal.\n")
    w("| case | tool | URLs | ideal s | wall s | vs ideal | server span s | last host's first request ms | target |")
    w("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for case, c in results["hosts"].items():
        ideal = c["ideal"]
        desc = f"{case}) {c['hosts']} hosts × {c['per']:,} at {c['rate']}/s"
        for label, d in c["rows"].items():
            wall = median(d["wall"])
            ok = abs(wall - ideal) <= 0.1 * ideal
            served = min(d["served"])
            urls = c["hosts"] * c["per"]
            note = "" if served >= urls else f" (as few as {served:,} answered)"
            w(f"| {desc} | {label}{note} | {urls:,} | {ideal:.2f} | {wall:.2f} | {wall / ideal - 1:+.0%} | "
              f"{median(d['span']):.2f} | {fmt(median(d['last_first_ms']))} | {'PASS' if ok else 'MISS'} |")
    w("")


PICTURE_RATE, PICTURE_HOST_RATE = 150, 40
# The audit reads the workers' clock reads: a worker woken late on a busy 2-core machine makes
# two sends look closer than they were (by its lateness).
PICTURE_TOLERANCE = "10ms"


def scenario_picture(results):
    """m) A picture of a crawl, drawn by `ratefetch audit --plot` from the run's own request
    log: nine hosts of unequal size (the busiest has nine times the rarest's URLs), 2% of the
    URLs answer 429, -r 150/s --per-host-rate 40/s. Written to bench/rate.svg for the README."""
    per = 30 if QUICK else 80
    urls = []
    for rank, addr in enumerate(HOST_ADDRS):
        urls += [f"http://{addr}:{PORT_HOSTS}/small.html?i={i}" for i in range((len(HOST_ADDRS) - rank) * per)]
    rng = random.Random(13)
    rng.shuffle(urls)
    for i in rng.sample(range(len(urls)), len(urls) // 50):
        urls[i] = urls[i].replace("/small.html?", "/r429/")
    lst = write_list("picture.txt", urls)
    reqlog = WORK / "picture.jsonl"
    log(f"m) picture: {len(urls)} URLs over {len(HOST_ADDRS)} hosts, -r {PICTURE_RATE}/s --per-host-rate {PICTURE_HOST_RATE}/s")
    m = timed([str(RATEFETCH), str(lst), "-r", f"{PICTURE_RATE}/s", "--per-host-rate", f"{PICTURE_HOST_RATE}/s", "-c", "32",
               "--retries", "1", "--backoff", "200ms", "-q", "--log-requests", str(reqlog), "-o", str(WORK / "picture.csv")])
    svg = BENCH / "rate.svg"
    strict = subprocess.run([str(RATEFETCH), "audit", str(reqlog)], capture_output=True, text=True, timeout=120)
    out = subprocess.run([str(RATEFETCH), "audit", str(reqlog), "--tolerance", PICTURE_TOLERANCE, "--plot", str(svg), "--plot-hosts", "5"],
                         capture_output=True, text=True, timeout=120)
    results["picture"] = {"n": len(urls), "wall": m["wall"], "audit": out.stdout.strip().splitlines(),
                          "code": out.returncode, "svg": svg.exists(), "strict": strict.stdout.strip().splitlines()}


def report_picture(results, w):
    p = results["picture"]
    w("## m) A picture of a crawl: `ratefetch audit --plot`\n")
    w(f"{p['n']:,} URLs over {len(HOST_ADDRS)} hosts of unequal size (2% answer 429, retried once), "
      f"`-r {PICTURE_RATE}/s --per-host-rate {PICTURE_HOST_RATE}/s -c 32 --log-requests`, {p['wall']:.1f} s; then "
      f"`ratefetch audit requests.jsonl --tolerance {PICTURE_TOLERANCE} --plot bench/rate.svg`:\n")
    w("```text")
    for line in p["audit"]:
        w(line.replace(str(BENCH) + "/", "bench/"))
    w("```\n")
    w(f"The audit checks the send times the workers read from the clock; on this machine nginx, the "
      f"bench and ratefetch's workers share 2 cores, and a worker woken late makes two sends look "
      f"closer than they were, hence `--tolerance {PICTURE_TOLERANCE}`. With the default 1 ms tolerance:\n")
    w("```text")
    for line in p["strict"][1:]:
        w(line)
    w("```\n")
    w("![requests per second over time](rate.svg)\n" if p["svg"] else "(no plot was written: see the audit's output)\n")


def report_pace(results, w):
    w("## h) Per-host pace accuracy\n")
    w("One host, `--per-host-rate R -r unlimited -c 32`; rate measured at the server (nginx `$msec`): "
      "(requests − 1) ÷ (last − first arrival). Target: within 1% of R.\n")
    w("| R | tool | requests | mean rate | error | worst 1 s | worst 100 ms | target |")
    w("|---:|---|---:|---:|---:|---:|---:|---|")
    for rate, c in results["pace"].items():
        for label, d in c["rows"].items():
            mean = median(d["mean"])
            err = (mean - rate) / rate
            ok = abs(err) <= 0.01
            w(f"| {rate}/s | {label} | {int(median(d['n'])):,} | {mean:.2f}/s | {err:+.2%} | {max(d['w1s'])} | {max(d['w100'])} | "
              f"{'PASS' if ok else 'MISS'} |")
    w("\n(worst windows are the worst over all runs, not medians.)\n")


def report_shared(results, w):
    s = results["shared"]
    w("## i) Shared limits in Redis: 4 processes on one key, and the cost of a grant\n")
    if s is None:
        w("Skipped: `redis-server` is not installed (bench/run installs the Debian package).\n")
        return
    r = s["rate"]
    rate, lim1, lim100 = r["rate"], r["rate"] + 1, -(-r["rate"] // 10) + 1
    w(f"The bench starts its own `{s['version']}` (no persistence; a unix socket, and TCP on {HOST}:{PORT_REDIS}). "
      f"Four ratefetch processes start at once, each `-r {rate}/s --burst 1 -c 16 --shard k/4` on one list of "
      f"{r['count']:,} URLs to one nginx port whose access log records `$msec` (as in b); the windows slide over every "
      "arrival of the four together. Once with `--redis … --limit-key …` (one shared limit: the union must keep "
      f"B + R·T, {lim1} in 1 s and {lim100} in 100 ms, and a mean of {rate}/s), once without (the contrast: four local "
      f"limits, {4 * rate}/s together), then one process alone on {r['alone']:,} URLs, with `--redis` and without. "
      "\"per process\" is each process's own mean rate, told apart by its URLs' index. "
      f"Load average (1 min) {s['load'][0]:.2f} at the start of the scenario, {s['load'][1]:.2f} at its end.\n")
    w("| case | requests | mean rate (union) | vs 200/s | worst 1 s | worst 100 ms | per process | targets |")
    w("|---|---:|---:|---:|---:|---:|---|---|")
    for name, d in r["rows"].items():
        mean = median(d["mean"])
        w1, w100 = max(d["w1s"]), max(d["w100"])
        per = " / ".join(f"{median([p[i] for p in d['per']]):.1f}" for i in range(d["procs"])) if d["procs"] > 1 else "–"
        if d["shared"] or d["procs"] == 1:
            ok = abs(mean / rate - 1) <= 0.01 and w1 <= lim1 and w100 <= lim100
            verdict = "met" if ok else "missed"
        else:
            verdict = f"contrast: {mean / rate:.1f} × the limit"
        w(f"| {name} | {int(median(d['n'])):,} | {mean:.2f}/s | {mean / rate - 1:+.2%} | {w1} | {w100} | {per} | {verdict} |")
    w("\n(worst windows are the worst over all runs, not medians.)\n")
    for name, d in r["rows"].items():
        if not d["shared"] or not d["lag_ms"]:
            continue
        lag, send = sorted(d["lag_ms"]), sorted(d["send_lag_ms"])
        pct = lambda xs: f"median {xs[len(xs) // 2]:.1f} ms, 99% within {xs[int(len(xs) * 0.99)]:.1f} ms, the slowest {xs[-1]:.1f} ms"
        audits = d["audit"]
        held = sum(1 for code, _ in audits if code == 0)
        last = audits[-1][1].splitlines()
        over = sum(d["over100"])
        w(f"{name}: at the server, {over} of the {sum(d['n']):,} 100 ms windows that start at an arrival (all runs) "
          f"held more than {lim100}. "
          f"At the grants themselves (each request's `granted` time on Redis' clock, from `--log-requests`) "
          f"the worst 1 s window holds {max(d['grant_w1s'])} and the worst 100 ms {max(d['grant_w100'])}. "
          f"From grant to send (the log's `t`, this machine's clock): {pct(send)}; from grant to arrival at nginx "
          f"(`$msec`, 1 ms steps): {pct(lag)}. "
          f"`ratefetch audit` over the {d['procs']} logs: limits held in {held} of {len(audits)} runs"
          + (f" (last: \"{last[-1]}\")" if last else "") + ".")
        if max(d["grant_w1s"]) <= lim1 and max(d["grant_w100"]) <= lim100 and (max(d["w1s"]) > lim1 or max(d["w100"]) > lim100):
            w("So Redis granted within B + R·T; what the server saw over it are sends that left late after their grant "
              "(a worker woken late on a busy 2-core machine) next to one that left on time.")
        w("")

    g = s["grant"]
    rows = g["rows"]
    w(f"**The cost of a grant**: {g['n']:,} URLs on the unlogged nginx port, `-r unlimited -c 64`, without `--redis` "
      f"(the local limit) and with it, interleaved, {g['runs']} runs each (a run takes about a second), medians; with `-r unlimited` the grant script still runs before every request "
      "(`fetch.rs` asks for a grant whenever `--redis` is given), it only never waits. "
      "req/s: requests nginx answered ÷ wall time; ratefetch CPU from `/usr/bin/time` (user + system); redis-server "
      "CPU from `INFO cpu` (`used_cpu_user` + `used_cpu_sys`, before and after); Redis commands from "
      "`INFO commandstats` (before and after, the bench's own `INFO` left out).\n")
    w("| ratefetch | req/s | ratefetch CPU s / 10k | redis-server CPU s / 10k | together CPU s / 10k | EVALSHA per request | µs in Redis per EVALSHA |")
    w("|---|---:|---:|---:|---:|---:|---:|")
    for name, d in rows.items():
        cpu, rcpu = median(d["cpu10k"]), median(d["redis10k"])
        w(f"| {name} | {fmt(median(d['rps']))} | {cpu:.2f} | {rcpu:.2f} | {cpu + rcpu:.2f} | {median(d['evalsha']):.3f} | "
          f"{fmt(median(d['script_us']), 1)} |")
    for name, d in rows.items():
        if d["calls"]:
            listed = ", ".join(f"{c.upper().replace('|', ' ')} {v:,}" for c, v in sorted(d["calls"].items()))
            w(f"\nEvery Redis command of the last \"{name}\" run ({d['served'][-1]:,} requests), from `INFO commandstats`: "
              f"{listed}. `INFO commandstats` counts the commands a script runs too: TIME and most GETs and SETs are the grant "
              "script's own, inside Redis; what a process sends is one EVALSHA per request, and at its start one SET NX + GET "
              "(pipelined), two SCRIPT LOADs and two CONFIG GETs (`src/shared.rs`).")
            break
    local = rows.get("local limit (no --redis)")
    unix = rows.get("--redis, unix socket")
    if local and unix:
        extra = median(unix["cpu10k"]) - median(local["cpu10k"])
        w(f"\nA grant costs one round trip (EVALSHA) per request; over the local limit, ratefetch spends "
          f"**{extra:+.2f} CPU s per 10k requests** and redis-server **{median(unix['redis10k']):.2f}** (unix socket), "
          f"and the run goes at {median(unix['rps']) / median(local['rps']):.0%} of the local limit's req/s, "
          "on this machine where ratefetch, nginx and redis-server share 2 cores.\n")
    else:
        w("")


def tool_table(rows, w, first_col=None):
    """req/s, CPU s / 10k, peak RSS, connections and requests per connection of nginx runs."""
    head = f"| {first_col} " if first_col else ""
    w(f"{head}| tool | req/s | CPU s / 10k | peak RSS MiB | connections | requests / connection |")
    w(("|---" if first_col else "") + "|---|---:|---:|---:|---:|---:|")
    for key, name, d in rows:
        if not d["served"]:
            w(f"{'| ' + key + ' ' if first_col else ''}| {name} (did not finish) | – | – | – | – | – |")
            continue
        served, conns = median(d["served"]), median(d["conns"])
        expected = d.get("n")
        note = f" (as few as {min(d['served']):,} answered)" if expected and min(d["served"]) < expected else ""
        w(f"{'| ' + key + ' ' if first_col else ''}| {name}{note} | {fmt(median(d['rps']))} | {fmt(median(d['cpu10k']), 2)} | "
          f"{fmt(median(d['rss']), 1)} | {fmt(conns)} | {fmt(served / max(conns, 1), 1)} |")


def beats_peers(rows, name, peers):
    """Whether row `name` goes at least as fast as the best of `peers` (those measured), and that best."""
    have_ = [(median(rows[p]["rps"]), p) for p in peers if p in rows and rows[p]["rps"]]
    if name not in rows or not rows[name]["rps"] or not have_:
        return None, None
    best = max(have_)
    return median(rows[name]["rps"]) >= best[0], best


def report_https(results, w):
    r = results["https"]
    n, rows = r["n"], r["rows"]
    for d in rows.values():
        d["n"] = n
    w(f"## j) HTTPS keep-alive: {n:,} URLs, one host, concurrency 64\n")
    w(f"nginx with TLS on {HOST}:{PORT_TLS} (TLS 1.2/1.3, HTTP/1.1: no http2 on the listen, so every client keeps a "
      "pool of connections as in a), a certificate for the IP address (IP SAN, ECDSA P-256) signed by a CA the bench makes "
      "with `openssl`; every tool trusts that CA only (`--cacert`, `--ca-certificate=`). req/s is requests nginx answered "
      "÷ wall time, start-up and handshakes included; connections are nginx's accepted connections (stub_status).\n")
    tool_table([(None, name, d) for name, d in rows.items()], w)
    w("")
    peers = ["curl -Z --parallel-max 64", "wget2 --max-threads 64"]
    ok, best = beats_peers(rows, "ratefetch", peers)
    if ok is not None:
        rf = median(rows["ratefetch"]["rps"])
        w(f"Target: ratefetch ≥ the best of curl -Z and wget2 — {fmt(rf)} against {best[1]}'s {fmt(best[0])} req/s "
          f"(**{'met' if ok else 'missed'}**).  ")
    if "throughput" in results and "ratefetch" in results["throughput"] and "ratefetch" in rows:
        plain = median(results["throughput"]["ratefetch"]["rps"])
        w(f"Over TLS ratefetch goes at {median(rows['ratefetch']['rps']) / plain:.0%} of its plain-HTTP req/s in a.  ")
    w("")
    report_ceiling(rows, w, [label for label, _ in variants()])


def report_many_hosts(results, w):
    r = results["many"]
    n, hosts = r["n"], r["hosts"]
    w(f"## k) Many hosts: {n:,} URLs over {hosts} addresses, concurrency 64, HTTP and HTTPS\n")
    w(f"One nginx server block listens on the wildcard address (ports {PORT_MANY} and {PORT_MANY_TLS}, `allow 127.0.0.0/8; "
      f"deny all`); on Linux every 127.x address is loopback, so {MANY_ADDRS[0]}–{MANY_ADDRS[-1]} are {hosts} hosts to "
      f"every client (a pool, a connection, a handshake each). The list spreads the URLs over them at random "
      f"(~{n / hosts:.0f} per host, the same order every run). HTTPS: one certificate whose SANs name every address and "
      f"`*.{MANY_DOMAIN}`, signed by the bench's CA. \"names\": the same list with h1.{MANY_DOMAIN} … h{hosts}.{MANY_DOMAIN}, "
      "put in /etc/hosts for the run (and taken out after it): every new connection resolves its name with getaddrinfo "
      "on a blocking thread. \"one host (reference)\": the same number of URLs to 127.0.0.1 on the same port, keep-alive "
      "all the way: what the hosts cost.\n")
    if not r["names"]:
        w("(/etc/hosts was not writable: no \"names\" rows.)\n")
    table = []
    for proto, rows in r["cases"].items():
        for name, d in rows.items():
            d["n"] = n
            table.append((proto, name, d))
    tool_table(table, w, "protocol")
    w("")
    for proto, rows in r["cases"].items():
        ok, best = beats_peers(rows, "ratefetch", ["curl -Z --parallel-max 64", "wget2 --max-threads 64"])
        if ok is None:
            continue
        rf = median(rows["ratefetch"]["rps"])
        parts = [f"**{proto}**: target ratefetch ≥ the best of curl -Z and wget2 — {fmt(rf)} against {best[1]}'s "
                 f"{fmt(best[0])} req/s (**{'met' if ok else 'missed'}**)"]
        if BARE in rows and rows[BARE]["rps"]:
            share, cpu = ceiling_share(rows, "ratefetch")
            parts.append(f"{share:.0%} of the bare loop's req/s, {cpu:.2f}× its CPU per request")
        ref = rows.get("ratefetch, one host (reference)")
        if ref and ref["rps"]:
            parts.append(f"the {hosts} hosts cost ratefetch {1 - rf / median(ref['rps']):.0%} of its one-host req/s "
                         f"({fmt(median(ref['rps']))}: {fmt(median(ref['served']) / max(median(ref['conns']), 1), 0)} "
                         f"requests per connection there, {fmt(median(rows['ratefetch']['served']) / max(median(rows['ratefetch']['conns']), 1), 1)} here)")
        other = results.get("https" if proto == "HTTPS" else "throughput")
        other = other["rows"] if other and "rows" in other else other
        if other and "ratefetch" in other and other["ratefetch"]["rps"]:
            parts.append(f"{rf / median(other['ratefetch']['rps']):.0%} of its keep-alive req/s in {'j' if proto == 'HTTPS' else 'a'}")
        for label in ("ratefetch", BARE):
            named = rows.get(f"{label}, names")
            if named and named["rps"] and rows.get(label, {}).get("rps"):
                parts.append(f"{label} on names: {median(named['rps']) / median(rows[label]['rps']):.0%} of its req/s on addresses")
        w("; ".join(parts) + ".\n")


def report_latency_many(results, w):
    r = results["latency_many"]
    n, c, rows = r["n"], r["c"], r["rows"]
    little = c / 0.1
    w(f"## l) Latency-bound at {c:,} in flight: {n:,} URLs, 100 ms per request\n")
    w(f"`examples/delay_server` answers every request after 100 ms (tokio's 1 ms timer: 100–101 ms), so Little's law "
      f"caps a client with {c:,} requests in flight at {fmt(little)} req/s. req/s: requests the server answered (its own "
      "count) ÷ wall time, start-up and tail included; steady state: the server's count sampled every 50 ms, the rate "
      "between 10% and 90% of the run's requests. The share is of Little's law for the tool's own requests in flight "
      f"(curl caps `--parallel-max` at {CURL_PARALLEL_MAX}).\n")
    w("| tool | in flight | requests answered | req/s | steady-state req/s | share of Little's law | CPU s / 10k | peak RSS MiB |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|")
    shares = {}
    for name, d in rows.items():
        if not d["served"]:
            w(f"| {name} (did not finish) | {d['inflight']:,} | – | – | – | – | – | – |")
            continue
        steady = median(d["steady"])
        share = steady / (d["inflight"] / 0.1)
        if d["inflight"] == c:
            shares[name] = share
        note = f" (as few as {min(d['served']):,})" if min(d["served"]) < n else ""
        w(f"| {name} | {d['inflight']:,} | {fmt(median(d['served']))}{note} | {fmt(median(d['rps']))} | {fmt(steady)} | "
          f"{share:.1%} | {fmt(median(d['cpu10k']), 2)} | {fmt(median(d['rss']), 1)} |")
    w("")
    if "ratefetch" in shares:
        rf = shares["ratefetch"]
        peers = {k: v for k, v in shares.items() if not k.startswith("ratefetch") and v == v}
        best = max(peers.items(), key=lambda kv: kv[1]) if peers else None
        w(f"Target: ≥ 95% of Little's law ({fmt(little)} req/s) in the steady state — ratefetch **{rf:.1%}** "
          f"(**{'met' if rf >= 0.95 else 'missed'}**)"
          + (f"; within a point of the best peer at {c:,} in flight ({best[0]}, {best[1]:.1%}) — **{(rf - best[1]) * 100:+.1f} pt** "
             f"(**{'met' if rf >= best[1] - 0.01 else 'missed'}**)" if best else "") + ".\n")



ANNOUNCED_TARGET, ANNOUNCED_TARGET_LATE = 1.10, 1.40  # n: wall ÷ ideal; slowapi announces its reset a second late


def report_announced(results, w):
    a = results["announced"]
    w(f"## n) Announced limits: used whole, against the middlewares' own headers\n")
    w(f"{ANNOUNCED_N} URLs on one host whose server allows {ANNOUNCED_LIMIT} requests per {ANNOUNCED_WINDOW} s and says so in "
      "its headers, as the middleware named does: express-rate-limit's four header forms (draft-6 `RateLimit-Limit/-Remaining/"
      "-Reset`, draft-7 `RateLimit: limit=, remaining=, reset=`, draft-8 `RateLimit: \"name\"; r=; t=`, legacy `X-RateLimit-*` "
      "with an epoch reset rounded up), emulated in Python from its source (npm is not reachable here); the real "
      "Flask-Limiter with a fixed and a moving window (`X-RateLimit-Reset: int(T + 1)`, `Retry-After` on every response) and "
      "the real slowapi (`X-RateLimit-Reset: 1 + T`, a second late), from PyPI"
      + (f" ({a['versions']})" if a.get("versions") else "") + ". "
      "Fixed windows open at the first request after the last one ended; the moving window accepts a request when fewer "
      f"than {ANNOUNCED_LIMIT} were accepted in the {ANNOUNCED_WINDOW} s before it. Modes: `-r unlimited -c 8` (ideal "
      f"{announced_modes()[0][2]:.1f} s: every window whole, each opened the moment the last ends), the default rate 10/s "
      f"(ideal {announced_modes()[1][2]:.1f} s), and a reference at `-r unlimited -c 8` that ignores the headers and keeps the "
      "same quota itself (a sliding window on the client's send times: a server's window opens when its first request "
      "arrives, which may be later than it was sent by a connection's set-up, so the reference may be refused a few). "
      "Wall time from start to exit; refusals are the server's 429s (the rows are what the report says: all 200 unless a "
      "retry gave up); per window: the accepted requests of each window the server opened but the last (the moving window: "
      "the windows a fixed one would have opened on the same arrivals). "
      f"Target: within {ANNOUNCED_TARGET - 1:.0%} of ideal with no refusal; slowapi, whose reset is a second late, within "
      f"{ANNOUNCED_TARGET_LATE:.1f}× the ideal.\n")
    if a.get("skipped"):
        w(f"**{a['skipped']}**\n")
    w("| server | mode | tool | ideal s | wall s | vs ideal | 429 at server | rows not 200 | windows | mean / window | min / window | target |")
    w("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for (server, mode, label), d in a["rows"].items():
        wall, ideal = median(d["wall"]), d["ideal"]
        ratio = wall / ideal if ideal else float("nan")
        bound = ANNOUNCED_TARGET_LATE if server.startswith("slowapi") else ANNOUNCED_TARGET
        refused, not_ok = max(d["refused"]), max(d["not_ok"])
        ok = ratio <= bound and refused == 0 and not_ok == 0 and min(d["rows"]) == ANNOUNCED_N
        rows_note = "" if min(d["rows"]) == ANNOUNCED_N else f" ({min(d['rows'])} rows)"
        w(f"| {server} | {mode} | {label} | {ideal:.1f} | {wall:.1f} | {ratio:.2f}× | {refused} | {not_ok}{rows_note} | "
          f"{fmt(median(d['windows']))} | {fmt(median(d['mean']), 1)} | {fmt(min((x for x in d['min'] if x == x), default=float('nan')))} | {'met' if ok else '**missed**'} |")
    w("")
    w("(medians over the runs; refusals and the smallest window are the worst of all runs.)\n")


def report_baseline(results, w):
    base = "ratefetch (baseline)"
    rows = []

    def rel(scenario, measure, old, new, higher_better, tol, digits=0):
        if old != old or new != new or old == 0:
            return
        ratio = new / old
        ok = ratio >= 1 - tol if higher_better else ratio <= 1 + tol
        bound = f"≥ {1 - tol:.0%}" if higher_better else f"≤ {1 + tol:.0%}"
        rows.append((scenario, measure, fmt(old, digits), fmt(new, digits), f"{ratio:.0%}", bound, ok))

    def absolute(scenario, measure, old, new, tol, unit, digits=2):
        if old != old or new != new:
            return
        ok = new <= old + tol
        rows.append((scenario, measure, f"{old:.{digits}f}{unit}", f"{new:.{digits}f}{unit}", f"{new - old:+.{digits}f}{unit}",
                     f"≤ +{tol}{unit}", ok))

    if "throughput" in results and base in results["throughput"]:
        t = results["throughput"]
        rel("a", "req/s", median(t[base]["rps"]), median(t["ratefetch"]["rps"]), True, TOL_REL)
    for (rate, count), per in results.get("rate", {}).items():
        o, nw = per.get(f"{base}, alone"), per.get("ratefetch, alone")
        if o and nw:
            absolute("b", f"rate error (abs.) at {rate}/s, alone", abs(median(o["mean"]) / rate - 1) * 100, abs(median(nw["mean"]) / rate - 1) * 100,
                     TOL_RATE_PT, " pt")
    if "latency" in results and base in results["latency"]:
        lat = results["latency"]
        rel("c", "req/s", median([r for r, _ in lat[base]]), median([r for r, _ in lat["ratefetch"]]), True, TOL_REL)
    if "memory" in results and base in results["memory"]:
        m = results["memory"]
        rel("d", "peak RSS MiB", median(m[base]["peak"]), median(m["ratefetch"]["peak"]), False, TOL_RSS, 1)
        absolute("d", "first request", median(m[base]["first_ms"]), median(m["ratefetch"]["first_ms"]), TOL_FIRST_MS, " ms", 0)
    if "cpu" in results and f"{base}, alone" in results["cpu"]:
        c = results["cpu"]
        rel("e", "CPU s / 10k at 2,000/s, alone", median(c[f"{base}, alone"]["cpu10k"]), median(c["ratefetch, alone"]["cpu10k"]), False, TOL_REL, 3)
    if "retries" in results:
        r = results["retries"]["rows"]
        for retries, suffix in ((2, " (default)"), (0, "")):
            o, nw = r.get(f"{base} --retries {retries}{suffix}"), r.get(f"ratefetch --retries {retries}{suffix}")
            if o and nw:
                rel("f", f"wall s, --retries {retries}", median(o["wall"]), median(nw["wall"]), False, TOL_REL, 2)
    for case, c in results.get("hosts", {}).items():
        o, nw = c["rows"].get(base), c["rows"].get("ratefetch")
        if o and nw:
            rel("g", f"{case}) wall s", median(o["wall"]), median(nw["wall"]), False, TOL_REL, 2)
    for rate, c in results.get("pace", {}).items():
        o, nw = c["rows"].get(base), c["rows"].get("ratefetch")
        if o and nw:
            absolute("h", f"rate error (abs.) at {rate}/s", abs(median(o["mean"]) / rate - 1) * 100, abs(median(nw["mean"]) / rate - 1) * 100,
                     TOL_RATE_PT, " pt")

    w("## No worse than the baseline\n")
    w(f"The baseline and the new binary ran interleaved (baseline, new, baseline, new, …) in this one run, same lists, "
      f"same server; medians. Tolerance: throughput ≥ {1 - TOL_REL:.0%} of the baseline's, wall time and CPU ≤ {1 + TOL_REL:.0%}, "
      f"peak RSS ≤ {1 + TOL_RSS:.0%}, first request ≤ baseline + {TOL_FIRST_MS} ms, rate error ≤ baseline's + {TOL_RATE_PT} "
      "percentage points. Scenario b compares the two \"alone\" runs (the side-by-side run has the new binary only); "
      "scenario e compares each binary run alone after the side-by-side run.\n")
    w("| scenario | measure | baseline | new | new vs baseline | tolerance | no worse |")
    w("|---|---|---:|---:|---:|---:|---|")
    for scenario, measure, old, new, ratio, bound, ok in rows:
        w(f"| {scenario} | {measure} | {old} | {new} | {ratio} | {bound} | {'yes' if ok else '**no**'} |")
    worse = [f"{r[0]} {r[1]}" for r in rows if not r[6]]
    w("")
    w(f"Verdict: **{'no worse' if not worse else 'worse in ' + '; '.join(worse)}**.\n")


def main():
    if not RATEFETCH.exists() or not DELAY_SERVER.exists() or not BARE_LOOP.exists():
        raise SystemExit("bench: build first (bench/run does: cargo build --release --example delay_server --example bare_loop)")
    # A SIGTERM unwinds like ^C: nginx stops and /etc/hosts is put back (the `finally`s).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    log(f"work dir {WORK}; {RUNS} runs; {'QUICK' if QUICK else 'full'} sizes")
    if BASELINE and not BASELINE.exists():
        raise SystemExit(f"bench: no baseline binary at {BASELINE} (bench/baseline builds one)")
    scenarios = {
        "a": scenario_throughput,
        "b": scenario_rate,
        "c": scenario_latency,
        "d": scenario_memory,
        "e": scenario_cpu,
        "f": scenario_retries,
        "g": scenario_host_sorted,
        "h": scenario_host_pace,
        "i": scenario_shared,
        "j": scenario_https,
        "k": scenario_many_hosts,
        "l": scenario_latency_many,
        "m": scenario_picture,
        "n": scenario_announced,
    }
    unknown = ONLY - scenarios.keys()
    if unknown:
        raise SystemExit(f"bench: unknown scenario(s) in ONLY: {', '.join(sorted(unknown))} (known: a–n)")
    if BASELINE:
        log(f"baseline {BASELINE}: every ratefetch measurement runs it too, interleaved")
    conf = WORK / "nginx.conf"
    results = {}
    started = time.monotonic()
    try:
        start_nginx()
        for key, scenario in scenarios.items():
            if not ONLY or key in ONLY:
                scenario(results)
    finally:
        stop_nginx(conf)
    plotted = plot(results, BENCH / "rate.png") if "rate" in results else False
    write_results(results, plotted)
    shutil.rmtree(WORK, ignore_errors=True)
    log(f"done in {time.monotonic() - started:.0f} s: bench/RESULTS.md")


if __name__ == "__main__":
    main()
