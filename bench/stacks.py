"""Summarize py-spy collapsed stacks (``python -m bench.stacks FILE``): self and inclusive time by frame."""

from __future__ import annotations

import argparse
from collections import Counter


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.stacks", description=__doc__)
    parser.add_argument("file")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--match", help="only stacks containing this text")
    args = parser.parse_args()
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    with open(args.file) as handle:
        for line in handle:
            stack, _, count_text = line.rstrip().rpartition(" ")
            if args.match and args.match not in stack:
                continue
            count = int(count_text)
            total += count
            frames = stack.split(";")
            own[frames[-1]] += count
            for frame in set(frames):
                inclusive[frame] += count
    print(f"{total} samples")
    print("-- self --")
    for frame, count in own.most_common(args.top):
        print(f"{100 * count / total:5.1f}%  {frame}")
    print("-- inclusive --")
    for frame, count in inclusive.most_common(args.top):
        print(f"{100 * count / total:5.1f}%  {frame}")


if __name__ == "__main__":
    main()
