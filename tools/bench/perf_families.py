#!/usr/bin/env python3
"""Reads `perf report --children --sort symbol --stdio -g none` on stdin (see profile.sh) and
sums the SELF time of the symbols of each kernel family, as a share of all samples.

Self time, because DWARF unwinding does not get from a Rayon worker thread back to the da3
function that started the parallel op: inclusive shares of da3's own functions (backbone,
head) undercount everything that runs on workers. The stage split comes from
`da3-bench --profile` (timed stages) instead.
"""

import re
import sys

FAMILIES = [
    ("GEMM microkernels (linear, 1x1 conv, attention, Winograd products)", r"^gemm_f32::microkernel"),
    ("GEMM packing and driver (gemm-common)", r"^gemm_common|^gemm::|gemm_f32::gemm"),
    ("Winograd transforms (da3 3x3 conv)", r"da3::kernels::winograd"),
    ("attention softmax (da3: max, exp)", r"da3::kernels::attention"),
    ("LayerNorm (da3)", r"da3::kernels::layer_norm"),
    ("GELU (da3)", r"da3::kernels::activation"),
    ("RoPE, resize, broadcast, concat (da3)", r"da3::kernels::(rope|resize|broadcast|concat|conv)"),
    ("burn-flex attention loop (scores, online softmax)", r"burn_flex::ops::attention"),
    ("exp / erf (libm)", r"__expf|expf|erff|erfc"),
    ("layout copies (to_contiguous, strided iteration)", r"to_contiguous|StridedIter|strided_index"),
    ("memset / memmove", r"__memset|__memmove|__memcpy"),
    ("other burn-flex ops", r"burn_flex::"),
    ("unnamed closures (rayon tasks, inlined kernels)", r"FnMut<A> for &F>::call_mut|ForEachConsumer|LocalKey"),
    ("kernel (page faults, scheduling)", r"^\[k\]"),
]


def main():
    rows = []
    for line in sys.stdin:
        m = re.match(r"\s*([\d.]+)%\s+([\d.]+)%\s+\[(.)\]\s+(.*)$", line)
        if m:
            rows.append((float(m.group(2)), f"[{m.group(3)}] {m.group(4).strip()}"))
    if not rows:
        sys.exit("no perf report lines on stdin")
    taken = set()
    print("self time by family (share of all samples of the run, loading included):")
    for label, pattern in FAMILIES:
        share = 0.0
        for i, (self_pct, sym) in enumerate(rows):
            name = sym[4:]
            if i not in taken and (re.search(pattern, name) or (pattern == r"^\[k\]" and sym.startswith("[k]"))):
                share += self_pct
                taken.add(i)
        print(f"  {label:50s} {share:5.1f}%")
    rest = sum(s for i, (s, _) in enumerate(rows) if i not in taken)
    print(f"  {'rest (other symbols)':50s} {rest:5.1f}%")


if __name__ == "__main__":
    main()
