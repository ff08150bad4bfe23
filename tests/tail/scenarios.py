#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Scenario tests for goro-tail, driven through the binary (ctest: tail.<scenario>).

    scenarios.py --scenario NAME --binary PATH [--workdir DIR] [--keep]
    scenarios.py --list                   scenario names, one per line (CMake reads this)
    scenarios.py --scenario all --binary PATH

Every line a writer produces carries its identity:

    <stream>|<gen>|<seq>|<write time, CLOCK_MONOTONIC ns>|<padding>

<stream> names one logical log (one per followed name), <gen> the file it was
written to (it changes when the log is rotated, deleted or truncated), <seq>
counts 0, 1, 2, ... per stream across generations. The checker verifies that
every seq of every stream arrives exactly once (no gap, no duplicate), that the
lines of one file arrive in file order, and that nothing else (a torn or merged
line) appears. goro-tail's stdout is read incrementally; every wait is a
deadline on "the expected lines have arrived", never a fixed sleep, except
where the test must not write (around a truncation, see copytruncate).

Sizes scale with GORO_STRESS_SCALE (default 1; the sanitizer presets use 0.1);
GORO_TAIL_TEST_TIMEOUT (default 60 s) is how long any wait for output may take.
Python 3 standard library only. Exit status 0 = pass, 1 = fail, 77 = skipped
(ctest's SKIP_RETURN_CODE), which is also what a scenario listed in KNOWN_BUGS
returns when it fails (GORO_TAIL_KNOWN_BUGS=fail turns that into a failure).
"""

import argparse
import errno
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

SCALE = float(os.environ.get("GORO_STRESS_SCALE", "1") or "1")
# How long to wait for expected output before failing. Generous: the machine
# may be running other tests (ctest -j2 on two cores, sanitizers, ...).
TIMEOUT = float(os.environ.get("GORO_TAIL_TEST_TIMEOUT", "60"))
# The spec's limit for exiting after SIGINT/SIGTERM.
EXIT_LIMIT = 1.0


def scaled(n, minimum=1):
    return max(minimum, int(n * SCALE))


class Failure(Exception):
    pass


class Skip(Exception):
    pass


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---- Lines ---------------------------------------------------------------------------

LINE_RE = re.compile(rb"^(?:(?P<path>.*?): )?(?P<stream>[A-Za-z0-9_.-]+)\|(?P<gen>\d+)\|(?P<seq>\d+)\|(?P<ts>\d+)\|(?P<pad>[^|\n]*)$")


def make_line(stream, gen, seq, pad=24, ts=None):
    if ts is None:
        ts = time.monotonic_ns()
    body = f"{stream}|{gen}|{seq}|{ts}|"
    fill = (f"{seq:x}" * (pad // 4 + 2))[:pad] if pad else ""
    return (body + fill + "\n").encode()


class Writer:
    """One logical log: appends numbered lines to `path`, remembers what went where."""

    def __init__(self, path, stream="s", pad=24):
        self.path = path
        self.stream = stream
        self.pad = pad
        self.gen = 0
        self.seq = 0
        self.fd = None
        self.bytes = 0
        self.open()

    def open(self, truncate=False):
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if truncate else 0)
        self.fd = os.open(self.path, flags, 0o644)

    def lines(self, n):
        ts = time.monotonic_ns()
        out = []
        for _ in range(n):
            out.append(make_line(self.stream, self.gen, self.seq, self.pad, ts))
            self.seq += 1
        return b"".join(out)

    def write(self, n):
        data = self.lines(n)
        write_all(self.fd, data)
        self.bytes += len(data)
        return len(data)

    def write_raw(self, data):
        write_all(self.fd, data)
        self.bytes += len(data)

    def reopen(self):
        """The application reopens its log by name (after a rotation)."""
        os.close(self.fd)
        self.gen += 1
        self.open()

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def write_all(fd, data):
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


# ---- Running goro-tail ---------------------------------------------------------------

class Tail:
    """goro-tail as a child process; a thread reads its stdout incrementally."""

    def __init__(self, binary, args, workdir, env=None, name="tail", read=True):
        self.cmd = [binary] + list(args)
        self.err_path = os.path.join(workdir, f"{name}.stderr")
        self.err_file = open(self.err_path, "wb")
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        log("run: " + " ".join(self.cmd) + (f"  (env {env})" if env else ""))
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=self.err_file,
                                     stdin=subprocess.DEVNULL, env=full_env)
        self.lines = []          # complete lines, without '\n'
        self.arrival = []        # (index of first line of a chunk, CLOCK_MONOTONIC ns)
        self.tail_bytes = b""    # bytes after the last '\n' (a torn line if non-empty at EOF)
        self.out_bytes = 0
        self.cond = threading.Condition()
        self.eof = False
        self.exit_time = None
        self.reader = threading.Thread(target=self._read, daemon=True)
        if read:
            self.reader.start()

    def start_reading(self):
        """For Tail(read=False): until now nobody read stdout (a stuck consumer)."""
        self.reader.start()

    def _read(self):
        fd = self.proc.stdout.fileno()
        pending = b""
        while True:
            chunk = os.read(fd, 1 << 20)
            now = time.monotonic_ns()
            if not chunk:
                with self.cond:
                    self.tail_bytes = pending
                    self.eof = True
                    self.cond.notify_all()
                return
            data = pending + chunk
            parts = data.split(b"\n")
            pending = parts.pop()
            with self.cond:
                self.out_bytes += len(chunk)
                if parts:
                    self.arrival.append((len(self.lines), now))
                    self.lines.extend(parts)
                self.cond.notify_all()

    def count(self):
        with self.cond:
            return len(self.lines)

    def wait_lines(self, n, timeout=None, what=None):
        """Wait until at least n lines have arrived; fail after the deadline."""
        return self.wait_for(lambda: len(self.lines) >= n, timeout,
                             what or f"{n} lines (have {{have}})")

    def wait_for(self, pred, timeout=None, what="output"):
        deadline = time.monotonic() + (TIMEOUT if timeout is None else timeout)
        with self.cond:
            while not pred():
                if self.eof:
                    raise Failure(f"goro-tail exited (status {self.proc.poll()}) while waiting for "
                                  f"{what.format(have=len(self.lines))}; stderr:\n{self.stderr()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Failure(f"timed out waiting for {what.format(have=len(self.lines))}; "
                                  f"stderr so far:\n{self.stderr()}")
                self.cond.wait(min(left, 0.5))
        return True

    def quiet_for(self, seconds):
        """Return the lines that arrive within `seconds` (used to assert 'nothing more')."""
        start = self.count()
        time.sleep(seconds)
        with self.cond:
            return self.lines[start:]

    def send_signal(self, sig=signal.SIGTERM):
        self.sent = time.monotonic()
        self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, limit=None, expect_rc=0, allow_torn=False):
        """Signal, wait for exit; check exit status and (optionally) the time to exit."""
        if self.proc.poll() is None:
            self.send_signal(sig)
            try:
                self.proc.wait(timeout=max(10.0, (limit or 0) * 5))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise Failure(f"goro-tail did not exit within 10 s of {sig.name}")
            self.exit_time = time.monotonic() - self.sent
        if not self.reader.is_alive() and self.reader.ident is None:
            self.reader.start()
        self.reader.join(timeout=10)
        self.err_file.close()
        rc = self.proc.returncode
        if expect_rc is not None and rc != expect_rc:
            raise Failure(f"goro-tail exited with status {rc}, expected {expect_rc}; stderr:\n{self.stderr()}")
        if limit is not None and self.exit_time is not None and self.exit_time > limit:
            raise Failure(f"goro-tail took {self.exit_time:.3f} s to exit after {sig.name} (limit {limit} s)")
        if self.tail_bytes and not allow_torn:
            raise Failure(f"stdout ends with a torn line: {self.tail_bytes[:80]!r}")
        return rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.reader.join(timeout=5)
        if not self.err_file.closed:
            self.err_file.close()

    def stderr(self):
        try:
            with open(self.err_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def stats(self):
        return parse_stats(self.stderr())

    def rss_kib(self):
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return None


def parse_stats(text):
    """Best-effort parse of --stats output: every '<name>: <number>' / '<name>=<number>'."""
    stats = {}
    for m in re.finditer(r"([A-Za-z][A-Za-z0-9 _/-]*?)\s*[:=]\s*([0-9]+(?:\.[0-9]+)?)\b", text):
        key = m.group(1).strip().lower().replace(" ", "_").replace("-", "_")
        stats[key] = float(m.group(2))
    return stats


def check_stats(t, **want):
    """--stats on stderr at exit: live fibers 0, and each counter in `want` (a number, or a
    (min, max) pair) as given."""
    st = t.stats()
    live = [v for k, v in st.items() if "live" in k and "fiber" in k]
    if not live:
        raise Failure(f"--stats: no live-fibers counter in stderr: {t.stderr()[-500:]!r}")
    if live[-1] != 0:
        raise Failure(f"--stats: {live[-1]:.0f} fibers live at exit (want 0): {t.stderr()[-500:]!r}")
    for key, v in want.items():
        if key not in st:
            raise Failure(f"--stats: no '{key}' counter: {t.stderr()[-500:]!r}")
        lo, hi = v if isinstance(v, tuple) else (v, v)
        if not lo <= st[key] <= hi:
            raise Failure(f"--stats: {key}={st[key]:g}, want {lo if lo == hi else (lo, hi)}")
    return st


# ---- The checker ---------------------------------------------------------------------

def check(lines, expected, prefixes=None, allow_missing=None, label=""):
    """expected: {stream: number of lines written}. prefixes: {stream: set of allowed
    'PATH' prefixes} when -H is on (None: no prefix expected). Raises Failure with a
    precise account; returns {stream: [seq...]} as delivered."""
    seen = {s: [] for s in expected}
    per_file = {}
    bad = []
    bad_prefix = []
    for i, raw in enumerate(lines):
        m = LINE_RE.match(raw)
        if not m or m.group("stream").decode() not in expected:
            bad.append((i, raw))
            continue
        stream = m.group("stream").decode()
        gen, seq = int(m.group("gen")), int(m.group("seq"))
        path = m.group("path")
        if prefixes is not None:
            if path is None or path.decode(errors="replace") not in prefixes[stream]:
                bad_prefix.append((i, raw))
        elif path is not None:
            bad.append((i, raw))
            continue
        seen[stream].append(seq)
        per_file.setdefault((stream, gen), []).append(seq)
    problems = []
    if bad:
        problems.append(f"{len(bad)} malformed (torn, merged or foreign) lines, e.g. " +
                        "; ".join(f"#{i}: {r[:100]!r}" for i, r in bad[:3]))
    if bad_prefix:
        problems.append(f"{len(bad_prefix)} lines with a wrong or missing 'PATH: ' prefix, e.g. " +
                        "; ".join(f"#{i}: {r[:100]!r}" for i, r in bad_prefix[:3]))
    for stream, n in expected.items():
        seqs = seen[stream]
        counts = {}
        for s in seqs:
            counts[s] = counts.get(s, 0) + 1
        dups = sorted(s for s, c in counts.items() if c > 1)
        missing = [s for s in range(n) if s not in counts]
        extra = sorted(s for s in counts if s >= n)
        if allow_missing is not None:
            missing = [s for s in missing if s not in allow_missing.get(stream, ())]
        if missing:
            problems.append(f"stream {stream}: {len(missing)} of {n} lines missing: {ranges(missing)}")
        if dups:
            problems.append(f"stream {stream}: {len(dups)} lines duplicated: {ranges(dups)}")
        if extra:
            problems.append(f"stream {stream}: {len(extra)} lines never written: {ranges(extra)}")
    for (stream, gen), seqs in sorted(per_file.items()):
        for a, b in zip(seqs, seqs[1:]):
            if b <= a:
                problems.append(f"stream {stream} file #{gen}: out of file order: {a} then {b}")
                break
    if problems:
        raise Failure((label + ": " if label else "") + "\n  ".join(problems))
    return seen


def ranges(nums, limit=8):
    out, start, prev = [], None, None
    for x in nums:
        if start is None:
            start = prev = x
        elif x == prev + 1:
            prev = x
        else:
            out.append((start, prev))
            start = prev = x
    if start is not None:
        out.append((start, prev))
    text = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in out[:limit])
    return text + (f", ... ({len(out)} ranges)" if len(out) > limit else "")


def wait_last(t, w, timeout=None):
    """Wait for the last line `w` wrote (lines of one file arrive in order)."""
    key = f"{w.stream}|{w.gen}|{w.seq - 1}|".encode()
    t.wait_for(lambda: any(key in l for l in t.lines[-64:]), timeout, f"line {key.decode()}")


def wait_gen(t, w, timeout=None):
    """Wait for a line of the file `w` writes to now: goro-tail has that file open. A file
    that is created and deleted (or renamed away) before any follower could open it is
    lost to every follower; the scenarios give each file that chance, as real logs do."""
    key = f"{w.stream}|{w.gen}|".encode()
    t.wait_for(lambda: any(key in l for l in t.lines[-256:]), timeout, f"a line of {key.decode()}")


def read_text(path, limit=300):
    try:
        with open(path, "rb") as f:
            return f.read(limit).decode(errors="replace")
    except OSError as e:
        return f"<{e.strerror}>"


# ---- Scenarios -----------------------------------------------------------------------

SCENARIOS = {}

# Scenarios that fail because of a known goro-tail bug: a failure is reported and the
# test exits 77 (ctest: skipped) so the suite stays green; a pass says the bug looks
# fixed (then remove it here). GORO_TAIL_KNOWN_BUGS=fail makes them fail normally.
KNOWN_BUGS = {
    # "scenario": "what goro-tail gets wrong",
}


def scenario(fn):
    SCENARIOS[fn.__name__] = fn
    return fn


class Ctx:
    def __init__(self, binary, workdir):
        self.binary = binary
        self.dir = workdir
        self.tails = []

    def path(self, name):
        return os.path.join(self.dir, name)

    def tail(self, *args, env=None, name=None, read=True):
        t = Tail(self.binary, args, self.dir, env=env, name=name or f"tail{len(self.tails)}", read=read)
        self.tails.append(t)
        return t

    def cleanup(self):
        for t in self.tails:
            t.kill()


@scenario
def append_100k(c):
    """100,000 lines appended (half before start: default is from the start) -> all, once, in order."""
    n = scaled(100_000, 1000)
    log_path = c.path("app.log")
    w = Writer(log_path, "a")
    w.write(n // 2)
    t = c.tail("--stats", log_path)
    t.wait_lines(1)
    left = n - n // 2
    while left:
        k = min(left, 997)            # uneven batches, one write() each
        w.write(k)
        left -= k
    t.wait_lines(n)
    t.stop(limit=EXIT_LIMIT * 3)
    check(t.lines, {"a": n})
    check_stats(t, lines=n, bytes=w.bytes, files=1, rotations=0, truncations=0)
    log(f"ok: {n} lines")


def continuous_writer(w, stop_evt, batch=20, pause=0.001):
    """Write batches until stop_evt is set; the writer object is shared with the rotator,
    who takes w.lock around rotations."""
    while not stop_evt.is_set():
        with w.lock:
            w.write(batch)
        time.sleep(pause)


@scenario
def rename_rotation(c):
    """Rename-rotation five times under continuous writes; the application keeps writing
    to the renamed file for a moment before it reopens (as real loggers do)."""
    log_path = c.path("app.log")
    w = Writer(log_path, "r")
    w.lock = threading.Lock()
    w.write(100)
    t = c.tail("--stats", "--rotate-wait", "5", log_path)
    t.wait_lines(100)
    stop = threading.Event()
    th = threading.Thread(target=continuous_writer, args=(w, stop), daemon=True)
    th.start()
    rotations = 5
    per_rotation = max(0.1, 0.4 * min(1.0, SCALE))
    try:
        for i in range(1, rotations + 1):
            time.sleep(per_rotation)
            wait_gen(t, w)
            with w.lock:
                half = w.lines(1)
                w.write_raw(half[:9])  # a partial line, completed after the rename
                os.rename(log_path, f"{log_path}.{i}")
                w.write_raw(half[9:])
                w.write(25)           # late lines into the renamed file (same fd)
            time.sleep(0.02)
            with w.lock:
                w.write(25)
                w.reopen()            # new file under the followed name
                w.write(10)
    finally:
        time.sleep(per_rotation)
        stop.set()
        th.join()
    n = w.seq
    t.wait_lines(n)
    t.stop(limit=EXIT_LIMIT * 3)
    check(t.lines, {"r": n})
    check_stats(t, lines=n, rotations=rotations, truncations=0)
    log(f"ok: {n} lines across {rotations + 1} files")


def copytruncate_once(log_path, i):
    """What logrotate's copytruncate does: copy the log aside, truncate it in place."""
    shutil.copyfile(log_path, f"{log_path}.{i}")
    os.truncate(log_path, 0)


@scenario
def copytruncate(c):
    """copytruncate done honestly: the writer pauses around copy+truncate, after goro-tail
    has delivered everything written so far (a line written between the copy and the
    truncate is lost by ANY follower; copytruncate_window measures that window)."""
    log_path = c.path("app.log")
    w = Writer(log_path, "c")
    t = c.tail("--stats", log_path)
    rounds = 4
    per_round = scaled(5000, 200)
    for i in range(1, rounds + 1):
        for _ in range(per_round // 50):
            w.write(50)
            time.sleep(0.0005)
        # --- writer pauses: let the follower catch up, copy, truncate, let it notice ---
        t.wait_lines(w.seq)
        copytruncate_once(log_path, i)
        w.gen += 1
        time.sleep(0.3)               # nothing written while the follower detects the truncation
    w.write(100)
    t.wait_lines(w.seq)
    t.stop(limit=EXIT_LIMIT * 3)
    check(t.lines, {"c": w.seq})
    check_stats(t, lines=w.seq, truncations=rounds, rotations=0)
    log(f"ok: {w.seq} lines, {rounds} copytruncates")


@scenario
def copytruncate_window(c):
    """copytruncate by a separate actor while the writer never pauses: prints how many
    lines fell into the copy..truncate window (inherent loss) and how many goro-tail lost
    beyond that. Informational: never fails on loss."""
    log_path = c.path("app.log")
    w = Writer(log_path, "w")
    w.lock = threading.Lock()
    t = c.tail(log_path)
    stop = threading.Event()
    th = threading.Thread(target=continuous_writer, args=(w, stop, 10, 0.0005), daemon=True)
    th.start()
    rounds = 4
    window = set()   # seqs written after the copy started and before the truncate finished
    for i in range(1, rounds + 1):
        time.sleep(0.3)
        with w.lock:
            before_copy = w.seq
        copytruncate_once(log_path, i)
        with w.lock:
            after_trunc = w.seq
            w.gen += 1
        copied = set()
        with open(f"{log_path}.{i}", "rb") as f:
            for raw in f:
                m = LINE_RE.match(raw.rstrip(b"\n"))
                if m:
                    copied.add(int(m.group("seq")))
        window |= {s for s in range(before_copy, after_trunc) if s not in copied}
    time.sleep(0.3)
    stop.set()
    th.join()
    n = w.seq
    last = f"w|{w.gen}|{n - 1}|".encode()
    try:   # the last line written; lines of one file come in order, so the rest is in
        t.wait_for(lambda: any(l.startswith(last) for l in t.lines[-50:]), timeout=10,
                   what="the last line written")
    except Failure as e:
        log(f"note: {e}")
    t.quiet_for(0.2)
    t.stop(limit=EXIT_LIMIT * 3)
    got = set()
    dups = 0
    torn = 0
    for raw in t.lines:
        m = LINE_RE.match(raw)
        if not m:
            torn += 1
            continue
        s = int(m.group("seq"))
        dups += s in got
        got.add(s)
    lost = [s for s in range(n) if s not in got]
    in_window = [s for s in lost if s in window]
    beyond = [s for s in lost if s not in window]
    log(f"copytruncate window (writer never pauses, {rounds} rounds, {n} lines): "
        f"{len(window)} lines written between copy and truncate (lost by any follower), "
        f"goro-tail lost {len(in_window)} of them; {len(beyond)} other lines lost "
        f"{'(' + ranges(beyond) + ') ' if beyond else ''}(in the copy, but not yet read when "
        f"the truncate landed: any follower that far behind loses them); "
        f"{dups} duplicated; {torn} malformed")


@scenario
def delete_recreate(c):
    """The log is deleted and recreated three times while the writer keeps its old fd a
    moment longer (lines written to the deleted file must still arrive)."""
    log_path = c.path("app.log")
    w = Writer(log_path, "d")
    t = c.tail("--stats", log_path)
    per = scaled(3000, 100)
    for i in range(3):
        w.write(per)
        wait_gen(t, w)
        os.unlink(log_path)
        w.write(20)                   # into the deleted file
        time.sleep(0.05)
        w.write(20)
        w.reopen()                    # recreated under the same name
        w.write(per // 2)
    t.wait_lines(w.seq)
    t.stop(limit=EXIT_LIMIT * 3)
    check(t.lines, {"d": w.seq})
    check_stats(t, lines=w.seq, rotations=3)
    log(f"ok: {w.seq} lines across 4 files")


@scenario
def late_file(c):
    """A PATH that does not exist yet: warning on stderr, followed once it appears."""
    log_path = c.path("late.log")
    t = c.tail(log_path)
    t0 = time.monotonic()
    while not t.stderr().strip():
        if t.proc.poll() is not None:
            raise Failure(f"goro-tail exited (status {t.proc.returncode}) on a missing PATH; stderr:\n{t.stderr()}")
        if time.monotonic() - t0 > 5:
            raise Failure("no warning on stderr about the missing PATH within 5 s")
        time.sleep(0.02)
    log(f"warning: {t.stderr().strip().splitlines()[0]}")
    n = scaled(2000, 100)
    w = Writer(log_path, "l")
    w.write(n // 2)
    t.wait_lines(1)
    w.write(n - n // 2)
    t.wait_lines(n)
    t.stop(limit=EXIT_LIMIT * 3)
    check(t.lines, {"l": n})
    log(f"ok: {n} lines from a file created after start")


@scenario
def partial_line(c):
    """A line written in pieces appears once, whole, only after its newline."""
    log_path = c.path("app.log")
    w = Writer(log_path, "p")
    w.write(10)
    t = c.tail(log_path)
    t.wait_lines(10)
    for k in range(3):
        line = w.lines(1)
        pieces = [line[:7], line[7:15], line[15:]]
        for piece in pieces[:-1]:
            w.write_raw(piece)
            early = t.quiet_for(0.25)
            if early:
                raise Failure(f"a partial line was printed before its newline: {early[:3]!r}")
        w.write_raw(pieces[-1])
        t.wait_lines(w.seq)
    w.write(5)
    t.wait_lines(w.seq)
    # A partial line at shutdown is not printed.
    w.write_raw(b"p|0|999999|0|never-completed")
    late = t.quiet_for(0.3)
    if late:
        raise Failure(f"a partial line was printed: {late!r}")
    t.stop(limit=EXIT_LIMIT * 3)
    check(t.lines, {"p": w.seq})
    log(f"ok: {w.seq} lines, 3 written in pieces; the unfinished last line was held back")


@scenario
def slow_consumer(c):
    """A 50 MB burst into a slow processing stage (--workers 1, GORO_TAIL_SLOW_STAGE_US):
    blocking backpressure, nothing lost, order kept."""
    log_path = c.path("burst.log")
    total = scaled(50 << 20, 1 << 20)
    pad = 1000
    w = Writer(log_path, "b", pad=pad)
    w.write(1)
    t = c.tail("--stats", "--workers", "1", log_path, env={"GORO_TAIL_SLOW_STAGE_US": "20"})
    t.wait_lines(1)
    per_write = 256
    t0 = time.monotonic()
    while w.bytes < total:
        w.write(per_write)
    n = w.seq
    peak = 0
    deadline = time.monotonic() + TIMEOUT * 2
    while True:
        peak = max(peak, t.rss_kib() or 0)
        try:
            t.wait_lines(n, timeout=0.2)
            break
        except Failure:
            if time.monotonic() > deadline or t.eof:
                raise
    dt = time.monotonic() - t0
    t.stop(limit=EXIT_LIMIT * 3)
    check(t.lines, {"b": n})
    check_stats(t, lines=n, bytes=w.bytes)
    # Blocking backpressure: the reader waits for the stage instead of buffering the burst.
    if total >= 32 << 20 and peak * 1024 > total // 2:
        raise Failure(f"peak RSS {peak / 1024:.1f} MiB for a {total >> 20} MiB burst: "
                      f"the burst was buffered, not backpressured")
    log(f"ok: {w.bytes / 1e6:.1f} MB, {n} lines through a slow stage in {dt:.1f} s; "
        f"peak RSS seen {peak / 1024:.1f} MiB")


def long_line_content(size):
    # Position-stamped so a misplaced piece is visible: "<offset 8 hex>:" blocks of 32 bytes.
    blocks = []
    for off in range(0, size, 32):
        blocks.append(f"{off:08x}:".encode() + b"-" * 23)
    return b"".join(blocks)[:size]


def check_long_line(t, payload, before, after, max_piece):
    """Output is: `before` numbered lines, the long line (whole or split into pieces of at
    most max_piece bytes that join back to it), `after` numbered lines."""
    lines = t.lines
    head = lines[:before]
    check(head, {"L": before}, label="lines before the long line")
    rest = lines[before:]
    pieces = []
    while rest and not LINE_RE.match(rest[0]):
        pieces.append(rest.pop(0))
    check(rest, {"L": before + after}, allow_missing={"L": set(range(before))},
          label="lines after the long line")
    joined = b"".join(pieces)
    if joined != payload:
        i = next((k for k in range(min(len(joined), len(payload))) if joined[k] != payload[k]),
                 min(len(joined), len(payload)))
        raise Failure(f"the {len(payload)}-byte line came out as {len(pieces)} pieces, "
                      f"{len(joined)} bytes in all, first difference at byte {i}: "
                      f"got {joined[i:i + 40]!r}, want {payload[i:i + 40]!r}")
    if max_piece is not None and any(len(p) > max_piece for p in pieces):
        raise Failure(f"a piece is longer than --max-line {max_piece}: "
                      f"{max(len(p) for p in pieces)} bytes")
    return pieces


@scenario
def long_line(c):
    """A 1 MB line with the default --max-line: delivered in full (whole, or split into
    pieces that join back to it), surrounded lines intact."""
    size = 1 << 20
    payload = long_line_content(size)
    log_path = c.path("long.log")
    w = Writer(log_path, "L")
    w.write(5)
    t = c.tail(log_path)
    t.wait_lines(5)
    w.write_raw(payload[: size // 3])
    w.write_raw(payload[size // 3:] + b"\n")
    w.write(5)
    t.wait_for(lambda: sum(1 for l in t.lines if l.startswith(b"L|")) >= 10, what="10 numbered lines")
    t.stop(limit=EXIT_LIMIT * 3)
    pieces = check_long_line(t, payload, 5, 5, None)
    log(f"ok: 1 MiB line delivered as {len(pieces)} piece(s) with the default --max-line")


@scenario
def long_line_split(c):
    """A 1 MB line with --max-line 4096: split into pieces of at most 4096 bytes that join
    back to it (never dropped); --stats runs too."""
    size = 1 << 20
    payload = long_line_content(size)
    log_path = c.path("long.log")
    w = Writer(log_path, "L")
    w.write(5)
    t = c.tail("--max-line", "4096", "--stats", log_path)
    t.wait_lines(5)
    w.write_raw(payload + b"\n")
    w.write(5)
    t.wait_for(lambda: sum(1 for l in t.lines if l.startswith(b"L|")) >= 10, what="10 numbered lines")
    t.stop(limit=EXIT_LIMIT * 3)
    pieces = check_long_line(t, payload, 5, 5, 4096)
    want = -(-size // 4096)
    if len(pieces) != want:
        raise Failure(f"expected {want} pieces of 4096 bytes, got {len(pieces)}")
    check_stats(t, split_lines=1)
    log(f"ok: split into {len(pieces)} pieces; stats: {t.stderr().strip()!r}")


@scenario
def many_files(c):
    """50 files written interleaved, -H: every line once, in order per file, right prefix."""
    nfiles = 50
    per = scaled(1000, 50)
    writers = [Writer(c.path(f"f{i:02d}.log"), f"m{i:02d}") for i in range(nfiles)]
    for w in writers:
        w.write(per // 4)
    t = c.tail("-H", "--stats", *[w.path for w in writers])
    t.wait_lines(1)
    left = per - per // 4
    while left:
        k = min(left, 37)
        for w in writers:
            w.write(k)
        left -= k
    total = nfiles * per
    t.wait_lines(total)
    t.stop(limit=EXIT_LIMIT * 3)
    check(t.lines, {w.stream: per for w in writers},
          prefixes={w.stream: {w.path} for w in writers})
    check_stats(t, lines=total, files=nfiles)
    log(f"ok: {nfiles} files x {per} lines")


@scenario
def truncate_zero(c):
    """The file is truncated to zero in place three times (each time after its lines were
    delivered), then written again: the new lines arrive, nothing repeats."""
    log_path = c.path("app.log")
    w = Writer(log_path, "t")
    t = c.tail("--stats", log_path)
    per = scaled(3000, 100)
    gone = set()
    for i in range(3):
        w.write(per)
        t.wait_lines(w.seq)
        if i == 1:
            # A held partial line whose bytes the truncation takes away: never glued to
            # the first line written after the truncation. goro-tail prints such a
            # fragment on its own (it was read: "never drop"), counted as unterminated.
            gone.add(w.seq)
            fragment = w.lines(1)[:12]
            w.write_raw(fragment)
            t.quiet_for(0.1)
        os.ftruncate(w.fd, 0)
        w.gen += 1
        time.sleep(0.3)               # nothing written while the follower detects the truncation
        w.write(10)                   # fewer bytes than before
        wait_last(t, w)
    t.stop(limit=EXIT_LIMIT * 3)
    lines = [l for l in t.lines if l != fragment]
    flushed = len(t.lines) - len(lines)
    if flushed > 1:
        raise Failure(f"the truncated partial line {fragment!r} was printed {flushed} times")
    check(lines, {"t": w.seq}, allow_missing={"t": gone})
    check_stats(t, lines=len(t.lines), truncations=3, rotations=0, unterminated=flushed)
    log(f"ok: {w.seq} lines, 3 truncations")


def burst_writer(w, stop_evt, batch=500):
    while not stop_evt.is_set():
        w.write(batch)


@scenario
def sigterm_burst(c):
    """SIGTERM in the middle of a burst: exit 0 within 1 s, every printed line whole, and
    what was printed is exactly the file's first lines (no gap, no repeat)."""
    log_path = c.path("burst.log")
    w = Writer(log_path, "k", pad=100)
    t = c.tail(log_path)
    stop = threading.Event()
    th = threading.Thread(target=burst_writer, args=(w, stop), daemon=True)
    th.start()
    try:
        t.wait_lines(scaled(50_000, 2000))
        t.stop(limit=EXIT_LIMIT)
    finally:
        stop.set()
        th.join()
    got = len(t.lines)
    check(t.lines, {"k": got})
    log(f"ok: exited in {t.exit_time:.3f} s, {got} of {w.seq} lines printed, all whole, a prefix")


@scenario
def restart_state(c):
    """--state: stop (SIGTERM) and restart three times, once mid-burst, lines and a partial
    line written while stopped: across all runs every line exactly once, the partial line
    printed whole by the next run."""
    log_path = c.path("app.log")
    state = c.path("tail.state")
    w = Writer(log_path, "s")
    all_lines = []
    # run 1: some lines, then a partial line at shutdown.
    w.write(scaled(2000, 100))
    t = c.tail("--state", state, log_path, name="run1")
    t.wait_lines(w.seq)
    line = w.lines(1)
    w.write_raw(line[:10])
    t.quiet_for(0.2)
    t.stop(limit=EXIT_LIMIT * 3)
    all_lines += t.lines
    if not os.path.exists(state):
        raise Failure("no state file after SIGTERM")
    check(all_lines, {"s": w.seq - 1})
    # while stopped: finish the partial line, add more.
    w.write_raw(line[10:])
    w.write(scaled(2000, 100))
    # run 2: catch up, then a burst cut by SIGTERM.
    t = c.tail("--state", state, log_path, name="run2")
    t.wait_lines(w.seq - len(all_lines))
    stop = threading.Event()
    th = threading.Thread(target=burst_writer, args=(w, stop, 200), daemon=True)
    th.start()
    try:
        t.wait_lines(w.seq - len(all_lines) + scaled(5000, 200))
        t.stop(limit=EXIT_LIMIT * 3)
    finally:
        stop.set()
        th.join()
    all_lines += t.lines
    w.write(100)
    # run 3: the rest.
    t = c.tail("--state", state, log_path, name="run3")
    t.wait_lines(w.seq - len(all_lines))
    t.stop(limit=EXIT_LIMIT * 3)
    all_lines += t.lines
    check(all_lines, {"s": w.seq})
    log(f"ok: {w.seq} lines over 3 runs, none lost or repeated")


@scenario
def poll_mode(c):
    """--poll 50 (no inotify): appends, a rename rotation, a delete+recreate, a truncation
    and a file that starts matching the glob later, all followed by polling."""
    d = c.path("logs")
    os.mkdir(d)
    log_path = os.path.join(d, "app.log")
    w = Writer(log_path, "o")
    t = c.tail("--stats", "-H", "--poll", "50", os.path.join(d, "*.log"))
    per = scaled(3000, 100)
    w.write(per)
    t.wait_lines(w.seq)
    os.rename(log_path, os.path.join(d, "app.old"))    # not matched by *.log
    w.write(30)
    w.reopen()
    w.write(per)
    wait_gen(t, w)
    os.unlink(log_path)
    w.write(10)
    w.reopen()
    w.write(per)
    wait_last(t, w)
    os.ftruncate(w.fd, 0)
    w.gen += 1
    time.sleep(0.3)
    w.write(10)
    late = Writer(os.path.join(d, "late.log"), "olate")
    late.write(per)
    t.wait_lines(w.seq + late.seq)
    t.stop(limit=EXIT_LIMIT * 3)
    check(t.lines, {"o": w.seq, "olate": late.seq}, prefixes={"o": {log_path}, "olate": {late.path}})
    check_stats(t, lines=w.seq + late.seq, rotations=2, truncations=1)
    log(f"ok: {w.seq + late.seq} lines with --poll 50")


def run_expect_error(c, args, what, state=None, must_mention=None):
    state_before = None
    if state:
        st = os.stat(state)
        with open(state, "rb") as f:
            state_before = (f.read(), st.st_mtime_ns, st.st_size)
    log("run: " + " ".join([c.binary] + args))
    try:
        p = subprocess.run([c.binary] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, timeout=10)
    except subprocess.TimeoutExpired:
        raise Failure(f"{what}: goro-tail kept running (expected an error exit)")
    err = p.stderr.decode(errors="replace").strip()
    if p.returncode == 0:
        raise Failure(f"{what}: exit status 0, expected non-zero; stderr: {err!r}")
    if p.returncode < 0:
        raise Failure(f"{what}: killed by signal {-p.returncode}; stderr: {err!r}")
    if not err:
        raise Failure(f"{what}: no message on stderr")
    if must_mention and must_mention not in err:
        raise Failure(f"{what}: the message does not name {must_mention!r}: {err!r}")
    if p.stdout:
        raise Failure(f"{what}: unexpected stdout {p.stdout[:200]!r}")
    if state:
        st = os.stat(state)
        with open(state, "rb") as f:
            after = (f.read(), st.st_mtime_ns, st.st_size)
        if after != state_before:
            raise Failure(f"{what}: the state file was modified")
    log(f"ok: {what}: status {p.returncode}: {err.splitlines()[0] if err else ''}")


@scenario
def bad_input(c):
    """Bad option, bad value, --must-exist on a missing path, corrupt state file: clear
    message, non-zero exit, the state file never overwritten."""
    log_path = c.path("app.log")
    Writer(log_path, "x").write(10)
    state = c.path("tail.state")
    with open(state, "wb") as f:
        f.write(b"\x00garbage, not a goro-tail state file\n{{{\n")
    run_expect_error(c, ["--no-such-option", log_path], "unknown option", must_mention="--no-such-option")
    run_expect_error(c, ["--poll", "soon", log_path], "bad --poll value")
    run_expect_error(c, ["--workers", "-3", log_path], "bad --workers value")
    run_expect_error(c, [], "no PATH")
    missing = c.path("missing.log")
    run_expect_error(c, ["--must-exist", missing], "--must-exist with a missing PATH", must_mention="missing.log")
    run_expect_error(c, ["--state", state, log_path], "corrupt state file", state=state)
    run_expect_error(c, ["--state", state, "--bogus", log_path], "bad option with --state", state=state)
    corrupt = {
        "state file of plain text": b"this is not a state file\n",
        "state file entry with a bad number": b"goro-tail-state 1\nfile 1 2 x - %2Ftmp%2Fa\nend 1\n",
        "state file cut short (no trailer)": b"goro-tail-state 1\nfile 2049 1234 10 - %2Ftmp%2Fa\n",
        "state file with a wrong trailer count": b"goro-tail-state 1\nfile 2049 1234 10 - %2Ftmp%2Fa\nend 2\n",
        "state file of a future version": b"goro-tail-state 2\nend 0\n",
    }
    for what, text in corrupt.items():
        with open(state, "wb") as f:
            f.write(text)
        run_expect_error(c, ["--state", state, log_path], what, state=state)


@scenario
def glob_late(c):
    """A glob PATH: files that start matching later are picked up (-H names each)."""
    d = c.path("logs")
    os.mkdir(d)
    first = Writer(os.path.join(d, "a.log"), "ga")
    per = scaled(2000, 100)
    first.write(per // 2)
    Writer(os.path.join(d, "ignored.txt"), "zz").write(5)
    t = c.tail("-H", "--stats", os.path.join(d, "*.log"))
    t.wait_lines(per // 2)
    later = [Writer(os.path.join(d, f"{n}.log"), f"g{n}") for n in ("b", "c")]
    for w in later:
        w.write(per // 2)
    sub = Writer(os.path.join(d, "d.log.tmp"), "zz2")   # must not match *.log
    sub.write(5)
    first.write(per - per // 2)
    for w in later:
        w.write(per - per // 2)
    total = 3 * per
    t.wait_lines(total)
    t.quiet_for(0.2)
    t.stop(limit=EXIT_LIMIT * 3)
    ws = [first] + later
    check(t.lines, {w.stream: per for w in ws}, prefixes={w.stream: {w.path} for w in ws})
    check_stats(t, lines=total, files=3)
    log(f"ok: 3 files ({per} lines each), 2 created after start")



@scenario
def from_end(c):
    """--from-end: files present at start begin at their end (old lines never printed);
    a file that appears later (glob) is read from its start."""
    d = c.path("logs")
    os.mkdir(d)
    old = Writer(os.path.join(d, "a.log"), "old")
    old.write(scaled(2000, 100))
    t = c.tail("--from-end", "-H", os.path.join(d, "*.log"))
    # Readiness: no output tells us goro-tail has reached the end, so append probe lines
    # (a stream of their own) until one comes out; from then on nothing may be missed.
    probe_seq = 0
    deadline = time.monotonic() + TIMEOUT
    while not t.count():
        if time.monotonic() > deadline or t.proc.poll() is not None:
            raise Failure(f"no probe line arrived with --from-end; stderr:\n{t.stderr()}")
        write_all(old.fd, make_line("probe", 0, probe_seq))
        probe_seq += 1
        time.sleep(0.05)
    t.quiet_for(0.1)                    # the rest of the probes
    new = Writer(old.path, "new")       # same file, its own stream
    later = Writer(os.path.join(d, "b.log"), "late")
    per = scaled(2000, 100)
    pre = len(t.lines)
    later.write(per // 2)
    new.write(per)
    later.write(per - per // 2)
    t.wait_lines(pre + 2 * per)
    t.stop(limit=EXIT_LIMIT * 3)
    lines = [l for l in t.lines if b"probe|" not in l]
    check(lines, {"new": per, "late": per}, prefixes={"new": {old.path}, "late": {later.path}})
    log(f"ok: old lines skipped, {per} new lines and a late file's {per} lines (from its start)")


@scenario
def sigterm_slow_restart(c):
    """SIGINT mid-burst while a slow stage (--workers 1) has lines queued, with --state:
    exit 0 within 1 s, every line printed was whole; the next run (SIGTERM) prints exactly
    the rest -- the checkpoint matches what was printed."""
    log_path = c.path("burst.log")
    state = c.path("tail.state")
    w = Writer(log_path, "q", pad=200)
    t = c.tail("--workers", "1", "--state", state, log_path, env={"GORO_TAIL_SLOW_STAGE_US": "100"},
               name="run1")
    stop = threading.Event()
    th = threading.Thread(target=burst_writer, args=(w, stop, 100), daemon=True)
    th.start()
    try:
        t.wait_lines(scaled(3000, 300))
        t.stop(sig=signal.SIGINT, limit=EXIT_LIMIT)
    finally:
        stop.set()
        th.join()
    first = list(t.lines)
    check(first, {"q": len(first)}, label="run 1 (must be a prefix)")
    log(f"run 1: {len(first)} of {w.seq} lines, exited in {t.exit_time:.3f} s after SIGINT")
    w.write(100)
    t = c.tail("--workers", "1", "--state", state, log_path, name="run2")
    t.wait_lines(w.seq - len(first))
    t.quiet_for(0.2)
    t.stop(limit=EXIT_LIMIT)
    check(first + t.lines, {"q": w.seq}, label="runs 1+2")
    log(f"ok: {w.seq} lines over 2 runs, none lost or repeated")


@scenario
def restart_replaced(c):
    """--state when the file changed while goro-tail was stopped: rotated away (a new file
    under the name) -> the new file is read from its start; truncated and rewritten longer
    than the old offset -> read from the start, not from the stale offset."""
    log_path = c.path("app.log")
    state = c.path("tail.state")
    w = Writer(log_path, "x")
    w.write(scaled(3000, 100))
    t = c.tail("--state", state, log_path, name="run1")
    t.wait_lines(w.seq)
    t.stop(limit=EXIT_LIMIT * 3)
    got = list(t.lines)
    # Stopped: rename-rotated, a new (shorter) file under the name.
    os.rename(log_path, log_path + ".1")
    w.reopen()
    w.write(50)
    t = c.tail("--state", state, log_path, name="run2")
    t.wait_lines(50)
    t.quiet_for(0.2)
    t.stop(limit=EXIT_LIMIT * 3)
    got += t.lines
    check(got, {"x": w.seq}, label="after a rotation while stopped")
    # Stopped: truncated in place, then rewritten past the old offset (same inode).
    os.ftruncate(w.fd, 0)
    w.gen += 1
    n0 = w.seq
    w.write(500)
    t = c.tail("--state", state, log_path, name="run3")
    t.wait_lines(w.seq - n0)
    t.quiet_for(0.2)
    t.stop(limit=EXIT_LIMIT * 3)
    got += t.lines
    check(got, {"x": w.seq}, label="after a truncate+rewrite while stopped")
    log(f"ok: {w.seq} lines over 3 runs across a rotation and a truncation while stopped")



@scenario
def workers_order(c):
    """--workers 4 with a slow stage, 3 files written interleaved, -H: the pool may run
    lines in any order, the output must still be in file order, every line once."""
    writers = [Writer(c.path(f"w{i}.log"), f"o{i}") for i in range(3)]
    t = c.tail("-H", "--stats", "--workers", "4", *[w.path for w in writers],
               env={"GORO_TAIL_SLOW_STAGE_US": "30"})
    per = scaled(10000, 500)
    left = per
    while left:
        k = min(left, 113)
        for w in writers:
            w.write(k)
        left -= k
    t.wait_lines(3 * per)
    t.stop(limit=EXIT_LIMIT * 3)
    check(t.lines, {w.stream: per for w in writers}, prefixes={w.stream: {w.path} for w in writers})
    check_stats(t, lines=3 * per)
    log(f"ok: 3 files x {per} lines through 4 workers, in file order")



@scenario
def stuck_stdout(c):
    """Nobody reads goro-tail's stdout (the pipe fills) when SIGTERM comes: it still exits
    0 within 1 s, what reached the pipe is whole lines, and with --state the next run
    prints exactly the rest (the checkpoint counts only what was really written)."""
    log_path = c.path("app.log")
    state = c.path("tail.state")
    w = Writer(log_path, "u", pad=100)
    w.write(scaled(100_000, 20_000))      # ~13 MB at scale 1: far more than a pipe holds
    t = c.tail("--state", state, log_path, name="run1", read=False)
    time.sleep(0.5)                       # let it fill the pipe and block (no output to wait on)
    t.send_signal(signal.SIGTERM)
    try:
        t.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        t.kill()
        raise Failure("goro-tail did not exit within 10 s of SIGTERM with a stuck stdout")
    took = time.monotonic() - t.sent
    t.start_reading()
    t.stop(limit=None, allow_torn=True)   # collects what was in the pipe; checks rc 0
    problems = []
    # 1.5 s, not 1: goro-tail waits most of its 1 s for stdout to drain before giving up,
    # and a loaded machine must not make this test flaky.
    if took > EXIT_LIMIT * 1.5:
        problems.append(f"goro-tail took {took:.3f} s to exit after SIGTERM with a stuck stdout")
    first = list(t.lines)
    if t.tail_bytes:
        problems.append(f"the pipe ends with a torn line ({len(first)} whole lines, then "
                        f"{t.tail_bytes[:40]!r}...)")
    check(first, {"u": len(first)}, label="run 1 (must be a prefix)")
    state1 = read_text(state)
    log(f"run 1: {len(first)} whole lines, exit after {took:.3f} s, torn tail {t.tail_bytes[:60]!r}, "
        f"stderr: {t.stderr().strip()!r}, state: {state1!r}")
    w.write(100)
    t = c.tail("--state", state, log_path, name="run2")
    t.wait_lines(w.seq - len(first))
    t.quiet_for(0.2)
    t.stop(limit=EXIT_LIMIT * 3)
    try:
        check(first + t.lines, {"u": w.seq}, label="runs 1+2")
    except Failure as e:
        problems.append(f"{e} (state after run 1: {state1!r})")
    if problems:
        raise Failure("\n  ".join(problems))
    log(f"ok: run 1 got {len(first)} lines into a stuck pipe, exited in {took:.3f} s; "
        f"run 2 printed the other {len(t.lines)}")


@scenario
def restart_many(c):
    """--state with a glob of 10 files (-H): stop mid-stream, write to every file and add a
    new one while stopped, restart: every line of every file exactly once."""
    d = c.path("logs")
    os.mkdir(d)
    state = c.path("tail.state")
    ws = [Writer(os.path.join(d, f"f{i}.log"), f"n{i}") for i in range(10)]
    per = scaled(1000, 100)
    for w in ws:
        w.write(per)
    pattern = os.path.join(d, "*.log")
    t = c.tail("-H", "--state", state, pattern, name="run1")
    t.wait_lines(len(ws) * per)
    for w in ws:
        w.write(per // 2)
    t.wait_lines(len(ws) * per + per // 4)     # somewhere in the middle of the new lines
    t.stop(limit=EXIT_LIMIT * 3)
    first = list(t.lines)
    for w in ws:
        w.write(per // 2)
    ws.append(Writer(os.path.join(d, "new.log"), "nnew"))
    ws[-1].write(per)
    total = sum(w.seq for w in ws)
    t = c.tail("-H", "--state", state, pattern, name="run2")
    t.wait_lines(total - len(first))
    t.quiet_for(0.2)
    t.stop(limit=EXIT_LIMIT * 3)
    check(first + t.lines, {w.stream: w.seq for w in ws}, prefixes={w.stream: {w.path} for w in ws})
    log(f"ok: {total} lines in {len(ws)} files over 2 runs")



@scenario
def glob_rotation(c):
    """A glob that also matches the rotated names (logs/*): after app.log -> app.log.N the
    renamed file is the same file goro-tail is already reading, not a new one to print again."""
    d = c.path("logs")
    os.mkdir(d)
    log_path = os.path.join(d, "app.log")
    w = Writer(log_path, "gr")
    per = scaled(2000, 100)
    w.write(per)
    t = c.tail("--stats", os.path.join(d, "*"))
    for i in range(1, 4):
        wait_gen(t, w)
        os.rename(log_path, f"{log_path}.{i}")
        w.write(20)                    # late lines into the renamed file
        w.reopen()
        w.write(per)
    t.wait_lines(w.seq)
    t.quiet_for(0.3)                   # a re-read of a renamed file would show up here
    t.stop(limit=EXIT_LIMIT * 3)
    check(t.lines, {"gr": w.seq})
    log(f"ok: {w.seq} lines, 3 rotations whose new names match the glob, nothing repeated")


@scenario
def odd_bytes(c):
    """Lines are bytes: empty lines, CR, NUL, tabs, invalid UTF-8 and a 4095/4096/4097-byte
    line come out exactly as written (with -H: after the 'PATH: ' prefix)."""
    log_path = c.path("odd.log")
    lines = [b"", b"plain", b"with\rcr", b"nul\x00byte", b"\ttab\t", b"\xff\xfe invalid utf-8 \xc3",
             b"", b"x" * 4095, b"y" * 4096, b"z" * 4097, b"   leading spaces", b"end"]
    data = b"".join(l + b"\n" for l in lines)
    with open(log_path, "wb") as f:
        f.write(data)
    t = c.tail(log_path, name="plain")
    t.wait_lines(len(lines))
    t.quiet_for(0.2)
    t.stop(limit=EXIT_LIMIT * 3)
    if t.lines != lines:
        diff = next(i for i in range(max(len(lines), len(t.lines)))
                    if i >= len(lines) or i >= len(t.lines) or lines[i] != t.lines[i])
        raise Failure(f"line {diff}: want {lines[diff][:60] if diff < len(lines) else None!r}, "
                      f"got {t.lines[diff][:60] if diff < len(t.lines) else None!r}")
    t = c.tail("-H", log_path, name="prefixed")
    t.wait_lines(len(lines))
    t.quiet_for(0.2)
    t.stop(limit=EXIT_LIMIT * 3)
    want = [log_path.encode() + b": " + l for l in lines]
    if t.lines != want:
        diff = next(i for i in range(max(len(want), len(t.lines)))
                    if i >= len(want) or i >= len(t.lines) or want[i] != t.lines[i])
        raise Failure(f"-H line {diff}: want {want[diff][:80] if diff < len(want) else None!r}, "
                      f"got {t.lines[diff][:80] if diff < len(t.lines) else None!r}")
    log(f"ok: {len(lines)} odd lines byte-exact, with and without -H")



@scenario
def slow_rotation(c):
    """Backpressure outlasting --rotate-wait: the slow stage is still seconds behind when the
    log is renamed (and the renamed file deleted): the old file is read to its end anyway,
    then the new one; nothing lost."""
    log_path = c.path("app.log")
    w = Writer(log_path, "sr", pad=60)
    t = c.tail("--stats", "--workers", "1", "--rotate-wait", "1", log_path,
               env={"GORO_TAIL_SLOW_STAGE_US": "1000"})
    n_old = scaled(60_000, 6000)       # 32 lines per stage task, 1 ms each: ~2 s of backlog
    w.write(n_old)
    wait_gen(t, w)
    os.rename(log_path, log_path + ".1")
    w.write(50)
    os.unlink(log_path + ".1")         # gone by name too: only goro-tail's fd keeps it
    w.reopen()
    w.write(1000)
    behind = w.seq - t.count()
    t.wait_lines(w.seq, timeout=TIMEOUT * 2)
    t.stop(limit=EXIT_LIMIT * 3)
    check(t.lines, {"sr": w.seq})
    log(f"ok: {w.seq} lines; the follower was {behind} lines behind at the rotation")



@scenario
def restart_glob_rotated(c):
    """--state with a glob that matches rotated names: while goro-tail is stopped the log
    gets more lines, is renamed (app.log -> app.log.1, still matched) and a new app.log
    starts. The restart resumes app.log.1 at its checkpoint (found by inode, not name) and
    reads the new app.log from its start: nothing lost, nothing repeated."""
    d = c.path("logs")
    os.mkdir(d)
    state = c.path("tail.state")
    log_path = os.path.join(d, "app.log")
    w = Writer(log_path, "rg")
    w.write(scaled(3000, 100))
    pattern = os.path.join(d, "*")
    t = c.tail("--state", state, pattern, name="run1")
    t.wait_lines(w.seq)
    t.stop(limit=EXIT_LIMIT * 3)
    first = list(t.lines)
    w.write(200)                        # unread, then rotated away while stopped
    os.rename(log_path, log_path + ".1")
    w.write(20)
    w.reopen()
    w.write(300)
    t = c.tail("--state", state, pattern, name="run2")
    t.wait_lines(w.seq - len(first))
    t.quiet_for(0.3)
    t.stop(limit=EXIT_LIMIT * 3)
    check(first + t.lines, {"rg": w.seq})
    log(f"ok: {w.seq} lines over 2 runs with a rotation (to a matching name) while stopped")


# ---- Main ----------------------------------------------------------------------------

@scenario
def inotify_overflow(c):
    """inotify queue overflows (GORO_TAIL_FAULT_OVERFLOW_EVERY=3: every 3rd read of the
    inotify fd is dropped and handled as IN_Q_OVERFLOW) under continuous appends to 5
    files, a rename rotation and a late file: the rescans lose nothing."""
    writers = [Writer(c.path(f"f{i}.log"), f"o{i}") for i in range(5)]
    for w in writers:
        w.lock = threading.Lock()
        w.write(50)
    late_path = c.path("late.log")
    t = c.tail("--stats", "--rotate-wait", "5", *(w.path for w in writers), late_path,
               env={"GORO_TAIL_FAULT_OVERFLOW_EVERY": "3"})
    t.wait_lines(250)
    stop = threading.Event()

    def write_all_files():
        while not stop.is_set():
            for w in writers:
                with w.lock:
                    w.write(10)
            time.sleep(0.002)

    th = threading.Thread(target=write_all_files, daemon=True)
    th.start()
    late = None
    span = max(0.3, 1.0 * min(1.0, SCALE))
    try:
        time.sleep(span / 2)
        r = writers[0]
        wait_gen(t, r)
        with r.lock:                  # rename rotation of f0.log
            os.rename(r.path, f"{r.path}.1")
            r.write(20)               # into the renamed file (same fd)
            r.reopen()
            r.write(10)
        time.sleep(span / 2)
        late = Writer(late_path, "ol")  # a PATH that appears during the run
        late.write(scaled(500, 50))
        time.sleep(span / 2)
        wait_gen(t, r)
        late.write(scaled(500, 50))
    finally:
        stop.set()
        th.join()
    expected = {w.stream: w.seq for w in writers}
    expected[late.stream] = late.seq
    total = sum(expected.values())
    t.wait_lines(total)
    t.stop(limit=EXIT_LIMIT * 3)
    check(t.lines, expected)
    st = check_stats(t, lines=total, rotations=1)
    if st.get("overflows", 0) < 1:
        raise Failure(f"--stats: overflows={st.get('overflows')}, want > 0 (the hook did not fire?)")
    if "overflow" not in t.stderr():
        raise Failure("no overflow warning on stderr")
    log(f"ok: {total} lines from 7 files, {st['overflows']:.0f} injected overflows")


def unreadable_run(c, tag, env_value, bad_first):
    """One goro-tail on good.log and bad-<tag>.log, where GORO_TAIL_FAULT_EACCES=env_value
    makes bad-<tag>.log fail for a while. Returns a function that checks the end."""
    good = Writer(c.path(f"good-{tag}.log"), f"g{tag}")
    bad = Writer(c.path(f"bad-{tag}.log"), f"b{tag}")
    good.write(bad_first)
    bad.write(bad_first)
    t = c.tail("--stats", good.path, bad.path, env={"GORO_TAIL_FAULT_EACCES": env_value},
               name=f"tail-{tag}")
    return t, good, bad


def unreadable_meanwhile(t, good, bad, verb):
    # The warning names the file...
    warning = f"{bad.path}: cannot {verb}: {os.strerror(errno.EACCES)}"
    t.wait_for(lambda: warning in t.stderr(), timeout=10, what=f"warning {warning!r}")
    # ...and the other file flows meanwhile: these lines arrive before any line of the
    # unreadable file (whose first lines were written before goro-tail started).
    # The file may recover (its retry is due within 1 s) before those lines are
    # delivered on a loaded machine; goro-tail says "readable again" before it
    # delivers any of its lines, so bad lines ahead of the good ones are a
    # failure only without that message: the file was never unreadable.
    n_meanwhile = scaled(200, 20)
    good.write(n_meanwhile)
    wait_last(t, good)
    recovered = f"{bad.path}: readable again" in t.stderr()
    first_bad = next((i for i, l in enumerate(t.lines) if l.startswith(f"{bad.stream}|".encode())), None)
    last_good = max(i for i, l in enumerate(t.lines) if l.startswith(f"{good.stream}|".encode()))
    if first_bad is not None and first_bad < last_good:
        if not recovered:
            raise Failure(f"{bad.path}: lines arrived (#{first_bad}) before the other file's lines "
                          f"written meanwhile (#{last_good}) with no recovery reported: was it ever unreadable?")
        log(f"{bad.path} recovered before the lines written meanwhile were delivered (loaded machine)")


def unreadable_finish(t, good, bad):
    """The fault clears: everything of both files, once."""
    bad.write(scaled(200, 20))
    good.write(scaled(200, 20))
    t.wait_lines(good.seq + bad.seq)
    if "readable again" not in t.stderr():
        raise Failure(f"no 'readable again' on stderr: {t.stderr()[-500:]!r}")
    t.stop(limit=EXIT_LIMIT * 3)
    check(t.lines, {good.stream: good.seq, bad.stream: bad.seq})
    check_stats(t, lines=good.seq + bad.seq)


@scenario
def unreadable_file(c):
    """A file that cannot be opened (GORO_TAIL_FAULT_EACCES: its first 2 opens fail) and
    one whose reads fail after it was opened (skip 1, then 2 reads fail): a warning naming
    the file, the other file keeps flowing, then every line of both exactly once."""
    n = scaled(500, 50)
    # Two goro-tails side by side (the retries are 1 s apart each): the open path...
    t_open, g_open, b_open = unreadable_run(c, "open", "bad-open.log:2", n)
    # ...and the read path (the tracker's open is let through, the follower's reads fail).
    t_read, g_read, b_read = unreadable_run(c, "read", "bad-read.log:2:1", n)
    unreadable_meanwhile(t_open, g_open, b_open, "open")
    unreadable_meanwhile(t_read, g_read, b_read, "read")
    unreadable_finish(t_open, g_open, b_open)
    unreadable_finish(t_read, g_read, b_read)
    log(f"ok: {g_open.seq + b_open.seq} + {g_read.seq + b_read.seq} lines, both files whole")


def run_one(name, binary, workdir, keep):
    d = tempfile.mkdtemp(prefix=f"goro-tail-{name}-", dir=workdir)
    c = Ctx(binary, d)
    log(f"== tail.{name}: {SCENARIOS[name].__doc__.split(chr(10))[0].strip()}  (dir {d}, scale {SCALE})")
    t0 = time.monotonic()
    ok = False
    try:
        SCENARIOS[name](c)
        ok = True
        log(f"PASS tail.{name} ({time.monotonic() - t0:.1f} s)")
        if name in KNOWN_BUGS:
            log(f"note: tail.{name} is listed in KNOWN_BUGS but passed: the bug looks fixed, "
                f"remove it from KNOWN_BUGS in {os.path.basename(__file__)}")
        return 0
    except Skip as e:
        log(f"SKIP tail.{name}: {e}")
        ok = True
        return 77
    except Failure as e:
        log(f"FAIL tail.{name}: {e}")
        if name in KNOWN_BUGS and os.environ.get("GORO_TAIL_KNOWN_BUGS") != "fail":
            log(f"KNOWN BUG (reported as skipped; GORO_TAIL_KNOWN_BUGS=fail to fail): {KNOWN_BUGS[name]}")
            ok = True
            return 77
        return 1
    finally:
        c.cleanup()
        if ok and not keep:
            shutil.rmtree(d, ignore_errors=True)
        elif not ok:
            for t in c.tails:
                err = t.stderr().strip()
                if err:
                    log(f"{os.path.basename(t.err_path)}: {err[-2000:]}")
            log(f"files kept in {d}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", help="scenario name, or 'all'")
    ap.add_argument("--binary", help="path to goro-tail")
    ap.add_argument("--workdir", default=None, help="where to make temp dirs (default: $TMPDIR)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir even on success")
    ap.add_argument("--list", action="store_true", help="print scenario names")
    a = ap.parse_args()
    if a.list:
        print("\n".join(SCENARIOS))
        return 0
    if not a.scenario or not a.binary:
        ap.error("--scenario and --binary are required")
    if not os.access(a.binary, os.X_OK):
        ap.error(f"{a.binary}: not an executable")
    names = list(SCENARIOS) if a.scenario == "all" else [a.scenario]
    for n in names:
        if n not in SCENARIOS:
            ap.error(f"unknown scenario {n!r}; --list shows them")
    if a.workdir:
        os.makedirs(a.workdir, exist_ok=True)
    results = [run_one(n, os.path.abspath(a.binary), a.workdir, a.keep) for n in names]
    if 1 in results:
        return 1
    return 77 if results == [77] else 0


if __name__ == "__main__":
    sys.exit(main())
