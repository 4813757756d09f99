#!/usr/bin/env python3
"""Times ortho's benchmark cases with PyTorch (and performer-pytorch) on this machine's CPU, for the
"Peers" tables of BENCHMARKS.md. Run it in the same sitting as `ortho bench`:

    python3 -m venv peers && peers/bin/pip install torch performer-pytorch
    peers/bin/python scripts/peers.py --out docs/bench/peers.json

Each case runs once to warm up, then `--repeats` times; the median is reported (seconds). Shapes
and inputs follow crates/ortho-bench/src/cases: Gaussian entries, skew generators of norm about 1,
skew maps' inputs G - G^T of scale 0.3 / n, the isospectral field W' = W [W^T Qs W, Ns]
((G + G^T) / 2 generators) from the identity with dt = 0.01.
"""
import argparse
import json
import platform
import statistics
import time

import torch


def timed(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def skew(batch, n, gen):
    """G - G^T for Gaussian G of scale 0.3 / n (ortho_bench::inputs::skew as the sweep calls it)."""
    g = torch.randn(batch, n, n, generator=gen) * (0.3 / n)
    return g - g.transpose(1, 2)


def commutator(a, b):
    return a @ b - b @ a


def rkmk4(w, qs, ns, dt, steps):
    """RKMK4 as ortho_ref::flow::Flow::step (isospectral field, exponential map)."""

    def field(w):
        return dt * commutator(w.transpose(1, 2) @ qs @ w, ns)

    def advance(w, b):
        return w @ torch.linalg.matrix_exp(b)

    for _ in range(steps):
        b1 = field(w)
        b2 = field(advance(w, b1 / 2))
        b3 = field(advance(w, b2 / 2 + commutator(b1, b2) / 8))
        b4 = field(advance(w, b3))
        w = advance(w, (b1 + 2 * b2 + 2 * b3 + b4) / 6 + commutator(b1, b4) / 12)
    return w


def cases(gen):
    """(name, flops or None, closure)"""
    out = []
    a, b = torch.randn(1024, 1024, generator=gen), torch.randn(1024, 1024, generator=gen)
    out.append(("sgemm 1024^3", 2 * 1024 ** 3, lambda: a @ b))
    for batch, n in [(65536, 3), (65536, 8), (1024, 64)]:
        x = skew(batch, n, gen)
        out.append((f"matrix_exp batch={batch} n={n}", None, lambda x=x: torch.linalg.matrix_exp(x)))
        eye = torch.eye(n).expand(batch, n, n)
        out.append((f"cayley (solve) batch={batch} n={n}", None,
                    lambda x=x, eye=eye: torch.linalg.solve(eye - x / 2, eye + x / 2)))
    for n in [512, 1024]:
        u = torch.randn(n, n, generator=gen)
        tau = 2 / (u * u).sum(0)
        out.append((f"householder_product N=L={n}", None, lambda u=u, tau=tau: torch.linalg.householder_product(u, tau)))
    n, batch = 32, 1024
    qs = torch.randn(n, n, generator=gen)
    ns = torch.randn(n, n, generator=gen)
    qs, ns = (qs + qs.T) / 2, (ns + ns.T) / 2
    w0 = torch.eye(n).expand(batch, n, n).contiguous()
    out.append((f"rkmk4 n={n} batch={batch} steps=5", None, lambda: rkmk4(w0, qs, ns, 0.01, 5)))
    for l in [4096]:
        q, k, v = (torch.randn(1, 1, l, 64, generator=gen) for _ in range(3))
        out.append((f"sdpa L={l} d=64", None, lambda q=q, k=k, v=v: torch.nn.functional.scaled_dot_product_attention(q, k, v)))
        out.append((f"sdpa causal L={l} d=64", None,
                    lambda q=q, k=k, v=v: torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)))
    try:
        from performer_pytorch import FastAttention
    except ImportError:
        return out
    for l in [4096, 16384]:
        q, k, v = (torch.randn(1, 1, l, 64, generator=gen) for _ in range(3))
        for causal in [False, True]:
            attn = FastAttention(dim_heads=64, nb_features=256, causal=causal)
            name = f"performer-pytorch favor+{' causal' if causal else ''} L={l} d=64 m=256"
            out.append((name, None, lambda attn=attn, q=q, k=k, v=v: attn(q, k, v)))
            g = torch.randn(1, 1, l, 64, generator=gen)
            grads = f"performer-pytorch favor+{' causal' if causal else ''} gradients L={l} d=64 m=256"
            out.append((grads, None, lambda attn=attn, q=q, k=k, v=v, g=g: gradients(attn, q, k, v, g)))
    return out


def gradients(attn, q, k, v, g):
    """The forward pass and the gradients of q, k and v for the upstream gradient g (what
    `Engine::favor_backward` computes, less the projection's)."""
    with torch.enable_grad():
        q, k, v = (x.detach().requires_grad_() for x in (q, k, v))
        attn(q, k, v).backward(g)
    return q.grad, k.grad, v.grad


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--filter", default="", help="only cases whose name contains this")
    args = parser.parse_args()
    gen = torch.Generator().manual_seed(0)
    results = []
    with torch.no_grad():
        for name, flops, fn in cases(gen):
            if args.filter not in name:
                continue
            seconds = timed(fn, args.repeats)
            gflops = flops / seconds * 1e-9 if flops else None
            results.append({"case": name, "median_s": seconds, "gflops": gflops})
            print(f"{name:<52} {seconds * 1e3:12.2f} ms" + (f" {gflops:8.2f} GFLOP/s" if gflops else ""), flush=True)
    report = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": f"{platform.processor() or platform.machine()}, {platform.platform()}",
        "date": time.strftime("%Y-%m-%d"),
        "results": results,
    }
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
