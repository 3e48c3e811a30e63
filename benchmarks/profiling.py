"""py-spy on a running hub: record a profile of the measured stretch and summarise it as the
functions that take the most samples, on their own ("self") and with what they call ("total")."""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path

from benchmarks import harness as h


class Profiler:
    """Records one profile at a time with `py-spy record --format raw` (collapsed stacks)."""

    def __init__(self, out_dir: Path, workdir: Path) -> None:
        self.out_dir = out_dir
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.name = ""
        self.raw: Path | None = None
        self.seconds = 0
        self.summaries: dict[str, Path] = {}

    @staticmethod
    def available() -> str | None:
        return shutil.which("py-spy") or (
            str(h.BIN / "py-spy") if (h.BIN / "py-spy").exists() else None
        )

    def start(self, pid: int, name: str, seconds: float) -> None:
        exe = self.available()
        if exe is None:
            h.say("py-spy is not installed (`.venv/bin/pip install py-spy`): no profile")
            return
        self.name = name
        self.seconds = max(1, round(seconds))
        self.raw = self.workdir / f"profile-{name}.txt"
        self.proc = subprocess.Popen(
            [
                *(exe, "record", "--pid", str(pid), "--rate", "200", "--format", "raw"),
                *("--duration", str(max(1, round(seconds))), "--threads", "-o", str(self.raw)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        if self.proc is None or self.raw is None:
            return
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            self.proc.wait(5)
        self.proc = None
        if self.raw.exists():
            out = self.out_dir / f"profile-{self.name}.txt"
            out.write_text(summarise(self.raw.read_text(), self.name, self.seconds))
            self.summaries[self.name] = out
            h.say(f"profile written to {out}")


def _frame(f: str, lines: bool) -> str:
    # py-spy frames look like "function (path/to/module.py:123)"; keep the function and the
    # module path from the package on (and the line, if asked)
    name, _, where = f.partition(" (")
    where = where.rstrip(")")
    for marker in ("site-packages/", "src/", "lib/python3.11/"):
        if marker in where:
            where = where.split(marker, 1)[1]
            break
    if not lines:
        where = where.rsplit(":", 1)[0]
    return f"{name} ({where})"


def summarise(collapsed: str, title: str, seconds: float = 0, top: int = 30) -> str:
    self_fn: Counter[str] = Counter()
    self_line: Counter[str] = Counter()
    total_fn: Counter[str] = Counter()
    by_thread: Counter[str] = Counter()
    per_thread_self: dict[str, Counter[str]] = {}
    samples = 0
    for line in collapsed.splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        samples += count
        frames = stack.split(";")
        thread = frames[0] if frames[0].startswith(("thread", "process")) else "?"
        if frames[0].startswith("process"):
            frames = frames[1:]
            thread = frames[0] if frames and frames[0].startswith("thread") else "?"
        if thread != "?":
            frames = frames[1:]
        # name threads by their outermost Python frame: the event loop or a worker thread
        kind = "event loop" if frames and "<module>" in frames[0] else "other threads"
        by_thread[kind] += count
        fns = [_frame(f, False) for f in frames] or ["?"]
        self_fn[fns[-1]] += count
        per_thread_self.setdefault(kind, Counter())[fns[-1]] += count
        self_line[_frame(frames[-1], True) if frames else "?"] += count
        for f in set(fns):
            total_fn[f] += count
    pct = lambda n: f"{n / max(1, samples):6.1%}"  # noqa: E731
    out = [f"# py-spy profile: {title}", f"active samples: {samples} (200 Hz, idle excluded)", ""]
    out += ["## samples by thread"] + [f"{pct(n)}  {t}" for t, n in by_thread.most_common()]
    if seconds:
        busy = by_thread["event loop"] / (200 * seconds)
        out.append(f"the event loop was busy {busy:.0%} of the {seconds:.0f} s recorded")
    ours = Counter({f: n for f, n in total_fn.items() if ("switchboard/" in f or "logging/" in f)})
    out += ["", "## total, switchboard code and logging: functions on the stack (inclusive)"]
    out += [f"{pct(n)}  {f}" for f, n in ours.most_common(top)]
    out += ["", "## total: all functions on the stack (inclusive)"]
    out += [f"{pct(n)}  {f}" for f, n in total_fn.most_common(top)]
    for kind, counts in sorted(per_thread_self.items()):
        out += ["", f"## self, {kind}: functions where the samples were"]
        out += [f"{pct(n)}  {f}" for f, n in counts.most_common(top)]
    out += ["", "## self, by line"]
    out += [f"{pct(n)}  {f}" for f, n in self_line.most_common(top)]
    return "\n".join(out) + "\n"
