#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""goro-tail vs GNU tail on the same machine, same run (bench/tail/run.sh calls this).

  throughput   a SIZE_MB file of numbered lines: `tail -n +1 FILE > /dev/null` (reads to
               EOF and exits), `tail -n +1 -F FILE` and `goro-tail FILE` (they follow
               forever: time from start to the last byte on stdout, then SIGTERM)
  latency      a writer appends one timestamped line every INTERVAL ms; p50/p99 of
               (arrival on the follower's stdout - write time): GNU `tail -F`
               (inotify), GNU `tail -F ---disable-inotify -s 0.1`, goro-tail (inotify),
               goro-tail --poll 100
  idle CPU     each follower on 50 files that do not change: utime+stime from
               /proc/PID/stat over IDLE_S seconds

Prints a markdown table. Python 3 standard library only.
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True   # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "tail"))
import scenarios as sc  # noqa: E402  (line format, Writer, Tail runner)

sc.log = lambda msg: None
TICK = os.sysconf("SC_CLK_TCK")


def note(msg):
    print(f"bench/tail: {msg}", file=sys.stderr, flush=True)


def make_file(path, size):
    """Numbered lines of ~100 bytes up to `size` bytes."""
    pad = "x" * 70
    seq = 0
    written = 0
    with open(path, "wb", buffering=1 << 20) as f:
        while written < size:
            chunk = "".join(f"big|0|{s}|0|{pad}\n" for s in range(seq, seq + 10000)).encode()
            seq += 10000
            f.write(chunk)
            written += len(chunk)
    return written, seq


def time_to_bytes(cmd, total, timeout):
    """Start cmd, count stdout bytes until `total`, return seconds (then SIGTERM)."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    fd = p.stdout.fileno()
    got = 0
    elapsed = None
    deadline = t0 + timeout
    try:
        while got < total and time.monotonic() < deadline:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            got += len(chunk)
        if got >= total:
            elapsed = time.monotonic() - t0
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        try:
            # drain so a flush on exit cannot block
            while os.read(fd, 1 << 20):
                pass
        except OSError:
            pass
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    return elapsed, got


def time_to_exit(cmd, timeout):
    t0 = time.monotonic()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout, check=True)
    return time.monotonic() - t0


def median(xs):
    xs = sorted(x for x in xs if x is not None)
    return xs[len(xs) // 2] if xs else None


def throughput(goro, work, size_mb, reps):
    path = os.path.join(work, "big.log")
    note(f"writing a {size_mb} MB file ...")
    total, lines = make_file(path, size_mb << 20)
    subprocess.run(["cat", path], stdout=subprocess.DEVNULL, check=True)  # warm the page cache
    rows = []
    cases = [
        ("GNU `tail -n +1 FILE > /dev/null` (to EOF, exits)", None, ["tail", "-n", "+1", path]),
        ("GNU `tail -n +1 -F FILE` (to last byte)", ["tail", "-n", "+1", "-F", path], None),
        ("goro-tail FILE (to last byte)", [goro, path], None),
    ]
    for name, follow_cmd, exit_cmd in cases:
        times = []
        for _ in range(reps):
            if exit_cmd:
                times.append(time_to_exit(exit_cmd, 600))
            else:
                t, got = time_to_bytes(follow_cmd, total, 600)
                if t is None:
                    note(f"{name}: only {got} of {total} bytes arrived")
                times.append(t)
        m = median(times)
        rows.append((name, m, None if m is None else total / m / 1e6, None if m is None else lines / m / 1e6))
        note(f"{name}: {m}")
    os.unlink(path)
    return rows, total, lines


def latency(cmd, work, count, interval_ms, name):
    d = tempfile.mkdtemp(dir=work)
    path = os.path.join(d, "lat.log")
    w = sc.Writer(path, "lat", pad=40)
    t = sc.Tail(cmd[0], cmd[1:] + [path], d, name="lat")
    try:
        w.write(1)
        t.wait_lines(1, timeout=30)
        for _ in range(count):
            time.sleep(interval_ms / 1000.0)
            w.write(1)
        t.wait_lines(count + 1, timeout=30)
    except sc.Failure as e:
        note(f"{name}: {e}")
    finally:
        t.kill()
        w.close()
    arrival = t.arrival + [(len(t.lines), None)]
    lats, ai = [], 0
    for i, raw in enumerate(t.lines):
        while arrival[ai + 1][0] <= i:
            ai += 1
        m = sc.LINE_RE.match(raw)
        if m and i > 0:
            lats.append((arrival[ai][1] - int(m.group("ts"))) / 1e6)
    lats.sort()
    shutil.rmtree(d, ignore_errors=True)
    if not lats:
        return None, None, 0
    pct = lambda p: lats[min(len(lats) - 1, int(round(p / 100 * (len(lats) - 1))))]
    return pct(50), pct(99), len(lats)


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)


def sched_ns(pid):
    """On-CPU nanoseconds of every live thread (/proc/PID/task/*/schedstat): finer than ticks."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def idle_cpu(cmd, work, nfiles, seconds, name):
    d = tempfile.mkdtemp(dir=work)
    paths = []
    for i in range(nfiles):
        p = os.path.join(d, f"f{i:02d}.log")
        with open(p, "wb") as f:
            f.write(b"".join(sc.make_line(f"f{i}", 0, s) for s in range(10)))
        paths.append(p)
    proc = subprocess.Popen(cmd + paths, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL)
    try:
        time.sleep(1.0)   # settle: initial reads done
        if proc.poll() is not None:
            note(f"{name}: exited early ({proc.returncode})")
            return None
        c0, s0, t0 = cpu_ticks(proc.pid), sched_ns(proc.pid), time.monotonic()
        time.sleep(seconds)
        c1, s1, t1 = cpu_ticks(proc.pid), sched_ns(proc.pid), time.monotonic()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(d, ignore_errors=True)
    cpu_ms = (c1 - c0) * 1000.0 / TICK
    sched_ms = (s1 - s0) / 1e6
    # ms over the window (ticks), % of one core, ms from schedstat
    return cpu_ms, cpu_ms / (t1 - t0) / 10.0, sched_ms


def fmt(x, spec):
    return "n/a" if x is None else format(x, spec)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--goro-tail", required=True)
    ap.add_argument("--size-mb", type=int, default=500)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--lat-count", type=int, default=1000)
    ap.add_argument("--lat-interval-ms", type=float, default=5.0)
    ap.add_argument("--idle-files", type=int, default=50)
    ap.add_argument("--idle-s", type=float, default=10.0)
    ap.add_argument("--only", default="throughput,latency,idle")
    a = ap.parse_args()
    goro = os.path.abspath(a.goro_tail)
    only = set(a.only.split(","))
    work = tempfile.mkdtemp(prefix="goro-tail-bench-")
    gnu = shutil.which("tail")
    out = []
    try:
        if "throughput" in only:
            rows, total, lines = throughput(goro, work, a.size_mb, a.reps)
            out.append(f"\n### Throughput: {total / 1e6:.0f} MB, {lines} lines, page cache warm, "
                       f"median of {a.reps}\n")
            out.append("| follower | seconds | MB/s | M lines/s |")
            out.append("|---|---:|---:|---:|")
            for name, s, mbs, mls in rows:
                out.append(f"| {name} | {fmt(s, '.2f')} | {fmt(mbs, '.0f')} | {fmt(mls, '.2f')} |")
        followers = [
            ("GNU `tail -F` (inotify)", [gnu, "-F", "-n", "+1"]),
            ("GNU `tail -F ---disable-inotify -s 0.1`", [gnu, "-F", "-n", "+1", "---disable-inotify", "-s", "0.1"]),
            ("goro-tail (inotify)", [goro]),
            ("goro-tail --poll 100", [goro, "--poll", "100"]),
        ]
        if "latency" in only:
            out.append(f"\n### Follow latency: one line every {a.lat_interval_ms:g} ms, "
                       f"{a.lat_count} lines, write() to arrival on the follower's stdout\n")
            out.append("| follower | p50 ms | p99 ms | lines |")
            out.append("|---|---:|---:|---:|")
            for name, cmd in followers:
                note(f"latency: {name} ...")
                p50, p99, n = latency(cmd, work, a.lat_count, a.lat_interval_ms, name)
                out.append(f"| {name} | {fmt(p50, '.3f')} | {fmt(p99, '.3f')} | {n} |")
        if "idle" in only:
            out.append(f"\n### CPU while idle-following {a.idle_files} files, {a.idle_s:g} s "
                       f"(utime+stime from /proc, {TICK} ticks/s)\n")
            out.append("| follower | utime+stime ms | % of one core | on-CPU ms (schedstat) |")
            out.append("|---|---:|---:|---:|")
            for name, cmd in followers:
                note(f"idle CPU: {name} ...")
                r = idle_cpu(cmd, work, a.idle_files, a.idle_s, name)
                out.append(f"| {name} | {fmt(r and r[0], '.0f')} | {fmt(r and r[1], '.3f')} | "
                           f"{fmt(r and r[2], '.2f')} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
