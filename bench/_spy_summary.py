"""Summarize a py-spy raw profile (`--format raw --threads`): where the samples went.

`python -m bench._spy_summary FILE [--top N]` prints the samples per thread, the leaf frames
(where the CPU was when sampled) and, inclusive, the source files on the stack, each as a
share of all samples of the main (event loop) thread, or of every thread with `--all`.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from collections.abc import Iterable

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def parse(lines: Iterable[str]) -> list[tuple[str, list[str], int]]:
    """(thread, frames root first, samples) of each line of a raw py-spy profile."""
    out = []
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            continue
        stack, _, count = line.rpartition(" ")
        thread, *frames = stack.split(";")
        name = thread.split(": ", 1)[-1]
        out.append((name, frames, int(count)))
    return out


def frame_file(frame: str) -> str:
    match = _FRAME.match(frame)
    return match.group("file") if match else frame


def frame_func(frame: str) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame
    return f"{match.group('func')} ({match.group('file')})"


def summarize(stacks: list[tuple[str, list[str], int]], top: int, every_thread: bool) -> str:
    threads: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    files: Counter[str] = Counter()
    for thread, frames, count in stacks:
        threads[thread] += count
        if not every_thread and thread != "MainThread":
            continue
        leaves[frame_func(frames[-1]) if frames else "?"] += count
        for name in {frame_file(f) for f in frames}:
            files[name] += count
    total = sum(threads.values())
    scope = total if every_thread else threads["MainThread"]
    lines = [
        f"{total:,} samples; " + ", ".join(f"{t} {n / total:.1%}" for t, n in threads.most_common())
    ]
    lines.append(f"\nleaf frames (share of {'all' if every_thread else 'MainThread'} samples):")
    lines += [f"  {n / scope:6.1%}  {name}" for name, n in leaves.most_common(top)]
    lines.append("\nsource files on the stack (inclusive):")
    lines += [f"  {n / scope:6.1%}  {name}" for name, n in files.most_common(top)]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench._spy_summary")
    parser.add_argument("file")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--all", action="store_true", help="every thread, not only the loop's")
    args = parser.parse_args(argv)
    with open(args.file, encoding="utf-8") as f:
        print(summarize(parse(f), args.top, args.all))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
