"""Reads `perf script -F tid,time,ip,sym` (with call stacks) on stdin and prints the time in
which only one thread ran, by what it ran (see idle_profile.sh)."""
import argparse
import collections
import re
import sys


def read_samples(lines):
    """(time, tid, [frames, leaf first]) per sample."""
    samples, current = [], None
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            if current:
                samples.append(current)
            current = None
        elif not line[:1].isspace():
            m = re.match(r"\s*(\d+)\s+([\d.]+):", line)
            current = (float(m.group(2)), int(m.group(1)), []) if m else None
        elif current is not None:
            parts = line.strip().split(None, 1)
            current[2].append(parts[-1])
    if current:
        samples.append(current)
    return samples


def label(frames):
    """The innermost two da3 / burn-flex / gemm frames, else the leaf."""
    keys = []
    for f in frames:
        if re.search(r"da3::|burn_flex::|gemm", f):
            keys.append(re.sub(r"::h[0-9a-f]{16}$", "", re.sub(r"<.*?>", "", f))[:90])
            if len(keys) == 2:
                break
    return " <- ".join(keys) if keys else (frames[0][:60] if frames else "?")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=997)
    ap.add_argument("--bin-samples", type=float, default=2)
    ap.add_argument("--top", type=int, default=20)
    args = ap.parse_args()
    samples = read_samples(sys.stdin)
    gemm = [t for t, _, frames in samples if any("gemm" in f for f in frames)]
    if not gemm:
        sys.exit("no GEMM samples: is this a da3-bench flex run?")
    t0, t1 = min(gemm), max(gemm)
    width = args.bin_samples / args.rate
    bins = collections.defaultdict(dict)
    for t, tid, frames in samples:
        if t0 <= t <= t1:
            bins[int((t - t0) / width)][tid] = frames
    count = int((t1 - t0) / width) + 1
    running = collections.Counter(min(len(bins.get(b, {})), 2) for b in range(count))
    alone = collections.Counter(label(next(iter(d.values()))) for d in bins.values() if len(d) == 1)
    print(f"window {t1 - t0:.2f} s in {count} bins of {width * 1000:.1f} ms: both cores busy in {running[2]}, "
          f"one in {running[1]} ({running[1] * width * 1000:.0f} ms), none in {running[0]}")
    print("one core idle while the other ran:")
    for key, n in alone.most_common(args.top):
        print(f"  {n * width * 1000:7.1f} ms  {key}")


if __name__ == "__main__":
    main()
