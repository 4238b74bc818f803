#!/usr/bin/env python3
"""Side by side on one GPU: this library's CUDA backend against flash-linear-attention (FLA) 0.6.0 and FlashQLA.

For the shapes of the performance anchors (chunked forward, forward + backward and decode tables), the script generates
inputs (bf16 q, k, v; keys L2-normalised; beta in [0, 2); log-gates g < 0; for training a bf16 dL/do; fixed seeds),
rounds them to bf16 once, and runs on exactly those values:
  - ours, through bench/cuda/dp_run (it reads the inputs from raw files and writes o, the final state or the gradients,
    and its time);
  - FLA's chunk_delta_rule, chunk_gated_delta_rule, chunk_gated_delta_product, fused_recurrent_delta_rule and
    fused_recurrent_gated_delta_rule (FLA_FLASH_QLA=0, so FLA runs its own kernels);
  - FlashQLA's chunk_gated_delta_rule when it is importable.
Times are medians of triton.testing.do_bench (L2 flushed before each call; dp_run does the same) after warm-up. The
accuracy check compares o with an fp64 recurrence computed in torch on the GPU (token by token) on the same rounded
inputs: the relative RMS error ||o - o_ref|| / ||o_ref||, on the anchors' accuracy shapes by default.

Training (`--only training`): forward + backward of L = sum(o * dL/do) with no initial or final state, ours (dp_run
--mode training: forward() then backward()) beside FLA's chunked kernels and FlashQLA through autograd (.backward()).
Gradient accuracy: the relative RMS error of dq, dk, dv, dbeta and dg against autograd through the same fp64
recurrence, on B=2, T=1024, H=4, K=V=128. An implementation that raises (FLA refuses its gated backward on Hopper with
Triton 3.4-3.7.0) is reported as refused with the error's first line. `--backward-algorithms` picks our rows: one per
backward CudaAlgorithm, and `kept` for the chunked backward reading the states the forward kept
(CudaBackend::keep_forward_states, as a training loop runs it). `--dp-extra-args` passes further options to every
dp_run call (e.g. --dp-extra-args="--keep-preambles --value-splits 2").

One command on the device, from the repository root, after building dp_run (bench/cuda/README.md):
  python3 bench/gpu_compare.py --dp-run build/gpu/bench/cuda/dp_run --out compare.json
`--dry-run` prints the plan without torch or a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

# Ceilings measured on an H200 (the project's performance anchors): device-to-device copy counting bytes read and
# written, and dense bf16 matrix products on random data.
COPY_BYTES_PER_SECOND = 4.3e12
BF16_FLOPS_PER_SECOND = 790e12
CHUNK = 64  # micro-steps per chunk in the FLOP count

# name: (n_h, gated)
MODELS = {
    "DeltaNet": (1, False),
    "GatedDeltaNet": (1, True),
    "GatedDeltaProduct_nh2": (2, True),
    "GatedDeltaProduct_nh3": (3, True),
}
DECODE_MODELS = ("DeltaNet", "GatedDeltaNet")

# Chunked forward table of the anchors: (B, T, H, K = V).
CHUNKED_SHAPES = [(8, 4096, 16, 128), (1, 16384, 8, 128), (4, 2048, 8, 128), (4, 2048, 8, 64)]
# Forward + backward table of the anchors: the first three chunked shapes, so --shapes picks from both lists alike.
TRAINING_SHAPES = CHUNKED_SHAPES[:3]
# Decode: (B, H, K = V), one token.
DECODE_SHAPES = [(1, 16, 128), (64, 16, 128), (256, 16, 128)]
# Accuracy shapes of the anchors: (B, T, H, K, models).
ACCURACY_SHAPES = [
    (2, 1024, 4, 128, tuple(MODELS)),
    (2, 2048, 4, 128, ("DeltaNet", "GatedDeltaProduct_nh2")),
]
# Gradient accuracy: the forward's first accuracy shape (the fp64 autograd reference keeps every state it needs, so
# longer or wider shapes outgrow the GPU's memory).
TRAINING_ACCURACY_SHAPES = [(2, 1024, 4, 128, tuple(MODELS))]
GRADIENTS = ("dq", "dk", "dv", "dbeta", "dg")  # dg of gated models only
# Our backward in training runs (--backward-algorithms): dp_run's options for each. A CudaAlgorithm, or `kept`: the
# chunked backward reading the states the forward kept (CudaBackend::keep_forward_states on both calls).
BACKWARD_ALGORITHMS = {
    "automatic": ("--backward-algorithm", "automatic"),
    "recurrent": ("--backward-algorithm", "recurrent"),
    "chunked": ("--backward-algorithm", "chunked"),
    "kept": ("--backward-algorithm", "chunked", "--keep-forward-states"),
}


def chunked_bytes(B, T, H, K, V, n_h, gated, with_initial_state=False):
    """Bytes a chunked forward must move at least: q and o per token, k, v, beta per micro-step, g per token (bf16),
    the final state written (and the initial one read) once in fp32."""
    R = T * n_h
    token_data = B * T * H * (K + V + (1 if gated else 0)) + B * R * H * (K + V + 1)
    states = B * H * K * V * (2 if with_initial_state else 1)
    return 2 * token_data + 4 * states


def chunked_flops(B, T, H, K, V, n_h):
    """FLOPs of the chunked algorithm with chunks of 64 micro-steps (the anchors' count, ~180 kFLOP per token and head
    at K = V = 128): 3 C K + 3 K V + 2 C V multiply-adds per micro-step."""
    return B * T * n_h * H * 2 * (3 * CHUNK * K + 3 * K * V + 2 * CHUNK * V)


def training_bytes(B, T, H, K, V, n_h, gated):
    """Bytes forward + backward must move at least (bf16, no state in or out): the forward reads q, k, v, beta, g and
    writes o; the backward reads them and dL/do again and writes a gradient of each."""
    R = T * n_h
    token_data = B * T * H * (K + (1 if gated else 0)) + B * R * H * (K + V + 1)
    outputs = B * T * H * V
    return 2 * (3 * token_data + 2 * outputs)


def training_flops(B, T, H, K, V, n_h):
    """FLOPs of forward + backward counted as three forwards: every product of the forward has two in the backward
    (one per factor). Recomputing the states in the backward is not counted."""
    return 3 * chunked_flops(B, T, H, K, V, n_h)


def decode_bytes(B, H, K, V, n_h, gated):
    """One token: the fp32 state read and written once, the token's bf16 data read once, o written once."""
    return 2 * 4 * B * H * K * V + 2 * B * H * (K + n_h * (K + V + 1) + (1 if gated else 0) + V)


def roofline_ms(num_bytes, flops):
    return 1e3 * max(num_bytes / COPY_BYTES_PER_SECOND, flops / BF16_FLOPS_PER_SECOND)


def run_cost(run):
    """(bytes, FLOPs) of a run for its roofline."""
    n_h, gated = MODELS[run["model"]]
    B, T, H, K, V = run["B"], run["T"], run["H"], run["K"], run["V"]
    if run["kind"] == "decode":
        return decode_bytes(B, H, K, V, n_h, gated), 0
    if run["kind"] == "training":
        return training_bytes(B, T, H, K, V, n_h, gated), training_flops(B, T, H, K, V, n_h)
    return chunked_bytes(B, T, H, K, V, n_h, gated), chunked_flops(B, T, H, K, V, n_h)


def plan(args):
    """The list of runs: dicts with kind, shape and model."""
    runs = []
    if args.only in ("all", "chunked"):
        shapes = CHUNKED_SHAPES[:1] if args.quick else CHUNKED_SHAPES
        if args.shapes:
            shapes = [CHUNKED_SHAPES[int(i)] for i in args.shapes.split(",")]
        for B, T, H, K in shapes:
            for name in args.models:
                accuracy = args.accuracy == "all"
                runs.append(dict(kind="chunked", B=B, T=T, H=H, K=K, V=K, model=name, accuracy=accuracy))
        if args.accuracy != "none":
            for B, T, H, K, names in ACCURACY_SHAPES:
                for name in names:
                    if name in args.models:
                        runs.append(dict(kind="chunked", B=B, T=T, H=H, K=K, V=K, model=name, accuracy=True))
    if args.only in ("all", "decode"):
        shapes = DECODE_SHAPES[:2] if args.quick else DECODE_SHAPES
        for B, H, K in shapes:
            for name in DECODE_MODELS:
                if name in args.models:
                    runs.append(dict(kind="decode", B=B, T=1, H=H, K=K, V=K, model=name,
                                     accuracy=args.accuracy != "none"))
    if args.only in ("all", "training"):
        shapes = TRAINING_SHAPES[:1] if args.quick else TRAINING_SHAPES
        if args.shapes:
            shapes = [CHUNKED_SHAPES[int(i)] for i in args.shapes.split(",")]
            shapes = [shape for shape in shapes if shape in TRAINING_SHAPES]
        for B, T, H, K in shapes:  # timed only: the fp64 autograd reference would not fit at these shapes
            for name in args.models:
                runs.append(dict(kind="training", B=B, T=T, H=H, K=K, V=K, model=name, accuracy=False))
        if args.accuracy != "none":
            for B, T, H, K, names in TRAINING_ACCURACY_SHAPES:
                for name in names:
                    if name in args.models:
                        runs.append(dict(kind="training", B=B, T=T, H=H, K=K, V=K, model=name, accuracy=True))
    return runs


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dp-run", default="build/gpu/bench/cuda/dp_run", help="path of the dp_run executable")
    parser.add_argument("--out", default=None, help="write all results as JSON here")
    parser.add_argument("--only", choices=("all", "chunked", "decode", "training"), default="all")
    parser.add_argument("--models", default=",".join(MODELS),
                        help="comma-separated subset of " + ", ".join(MODELS))
    parser.add_argument("--accuracy", choices=("anchors", "all", "none"), default="anchors",
                        help="anchors: the anchors' accuracy shapes, decode and the gradients' shape; all: every "
                        "timed forward shape too (training: the gradients' shape only)")
    parser.add_argument("--quick", action="store_true",
                        help="first chunked and training shape and two decode shapes only")
    parser.add_argument("--shapes", default="", help="comma-separated indices of the chunked shapes to run "
                        "(0.." + str(len(CHUNKED_SHAPES) - 1) + "; training runs those of 0.." +
                        str(len(TRAINING_SHAPES) - 1) + "; default all)")
    parser.add_argument("--backward-algorithms", default="automatic",
                        help="comma-separated backward of ours in training runs, one row each: a CudaAlgorithm "
                        "(automatic, recurrent, chunked), or kept: the chunked backward reading the states the forward "
                        "kept (dp_run --keep-forward-states; the row is 'ours (chunked, kept states)')")
    parser.add_argument("--dp-sequence-splits", type=int, default=None, metavar="N",
                        help="pass --sequence-splits N to every dp_run call (CudaBackend::sequence_splits of our "
                        "forward and backward: 0 automatic, 1 never, N >= 2 runs of chunks per sequence; default: "
                        "not passed)")
    parser.add_argument("--dp-extra-args", default=None, metavar="ARGS",
                        help="further options appended to every dp_run call, one string split as a shell would "
                        "(e.g. --dp-extra-args=\"--keep-preambles --value-splits 2\"; write it with '=' when the "
                        "string starts with '-'; dp_run's forward and decode modes ignore the training flags; "
                        "default: none)")
    parser.add_argument("--warmup-ms", type=float, default=100.0, help="do_bench warm-up")
    parser.add_argument("--rep-ms", type=float, default=300.0, help="do_bench measuring time")
    parser.add_argument("--iters", type=int, default=30, help="timed calls of dp_run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dry-run", action="store_true", help="print the plan and exit (no torch needed)")
    args = parser.parse_args(argv)
    args.models = [m for m in args.models.split(",") if m]
    unknown = [m for m in args.models if m not in MODELS]
    if unknown:
        parser.error("unknown models: " + ", ".join(unknown))
    algorithms = [a for a in args.backward_algorithms.split(",") if a]
    if not algorithms or any(a not in BACKWARD_ALGORITHMS for a in algorithms):
        parser.error("--backward-algorithms takes " + ", ".join(BACKWARD_ALGORITHMS) + "; got " +
                     args.backward_algorithms)
    args.backward_algorithms = algorithms
    if args.dp_sequence_splits is not None and args.dp_sequence_splits < 0:
        parser.error("--dp-sequence-splits takes 0 or a count >= 1, got " + str(args.dp_sequence_splits))
    try:
        args.dp_extra_arg_list = shlex.split(args.dp_extra_args) if args.dp_extra_args else []
    except ValueError as error:
        parser.error(f"--dp-extra-args: {error}")
    if args.shapes:
        bad = [i for i in args.shapes.split(",") if not i.isdigit() or int(i) >= len(CHUNKED_SHAPES)]
        if bad:
            parser.error("--shapes: indices 0.." + str(len(CHUNKED_SHAPES) - 1) + ", got " + ", ".join(bad))
    return args


def fmt(x, spec=".3f"):
    return "-" if x is None else format(x, spec)


def fmt_percent(x):
    return "-" if x is None else f"{100 * x:.3f}%"


# ---------------------------------------------------------------------------------------------------------------------
# Everything below needs torch and a GPU.

def make_inputs(torch, run, seed):
    """bf16 inputs of a run, already rounded: the fp64 reference and every implementation read the same values."""
    import torch.nn.functional as F

    B, T, H, K, V = run["B"], run["T"], run["H"], run["K"], run["V"]
    n_h, gated = MODELS[run["model"]]
    R = T * n_h
    gen = torch.Generator(device="cuda").manual_seed(seed)
    dev = dict(device="cuda", generator=gen)
    q = torch.randn(B, T, H, K, **dev).bfloat16()
    k = F.normalize(torch.randn(B, R, H, K, **dev), p=2, dim=-1).bfloat16()
    v = torch.randn(B, R, H, V, **dev).bfloat16()
    beta = (2 * torch.rand(B, R, H, **dev)).bfloat16().clamp_(0, 2)
    g = F.logsigmoid(torch.rand(B, T, H, **dev)).bfloat16() if gated else None
    h0 = 0.1 * torch.randn(B, H, K, V, **dev) if run["kind"] == "decode" else None
    d_o = torch.randn(B, T, H, V, **dev).bfloat16() if run["kind"] == "training" else None
    return dict(q=q, k=k, v=v, beta=beta, g=g, h0=h0, do=d_o, n_h=n_h, scale=K ** -0.5)


def recurrence_fp64(torch, q, k, v, beta, g, h0, n_h, scale):
    """The recurrence token by token (README, "The recurrence") on fp64 tensors: o [B,T,H,V] and the final state.
    Out of place, so that autograd can differentiate it."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    S = h0 if h0 is not None else torch.zeros(B, H, K, V, dtype=torch.float64, device=q.device)
    o = []
    for t in range(T):
        if g is not None:
            S = S * torch.exp(g[:, t])[..., None, None]
        for j in range(n_h):
            r = t * n_h + j
            kr = k[:, r]
            u = torch.einsum("bhk,bhkv->bhv", kr, S)
            w = beta[:, r, :, None] * (v[:, r] - u)
            S = S + kr[..., None] * w[..., None, :]
        o.append(scale * torch.einsum("bhk,bhkv->bhv", q[:, t], S))
    return torch.stack(o, dim=1), S


def reference_fp64(torch, x):
    """The fp64 recurrence on a run's inputs: o [B,T,H,V] and the final state."""
    q, k, v, beta = (t.double() for t in (x["q"], x["k"], x["v"], x["beta"]))
    g = x["g"].double() if x["g"] is not None else None
    h0 = x["h0"].double() if x["h0"] is not None else None
    return recurrence_fp64(torch, q, k, v, beta, g, h0, x["n_h"], x["scale"])


def reference_fp64_training(torch, x):
    """o and the gradients of L = sum(o * dL/do) by autograd through the fp64 recurrence: {o, dq, dk, dv, dbeta[, dg]}.
    Autograd keeps every state (B H K V fp64 per micro-step): about 6 GB at B=2, T=1024, H=4, K=V=128, n_h=3."""
    leaves = {name: x[name].double().requires_grad_() for name in ("q", "k", "v", "beta", "g") if x[name] is not None}
    with torch.enable_grad():
        o, _ = recurrence_fp64(torch, leaves["q"], leaves["k"], leaves["v"], leaves["beta"], leaves.get("g"), None,
                               x["n_h"], x["scale"])
        o.backward(x["do"].double())
    reference = {"d" + name: leaf.grad for name, leaf in leaves.items()}
    reference["o"] = o.detach()
    return reference


def relative_rms(torch, o, ref):
    d = o.double() - ref
    return (d.norm() / ref.norm()).item()


def write_inputs(torch, x, workdir):
    """The run's inputs as dp_run reads them: raw bf16 token data (and dL/do for training), the fp32 initial state."""

    def save(name, t, dtype):
        t.contiguous().view(dtype).cpu().numpy().tofile(os.path.join(workdir, name))

    for name in ("q", "k", "v", "beta", "g", "do"):
        if x[name] is not None:
            save(name + ".bin", x[name], torch.int16)
    if x["h0"] is not None:
        save("h0.bin", x["h0"].float(), torch.int32)


def read_output(torch, workdir, name, shape, dtype):
    """A file dp_run wrote, as a cuda tensor of `shape` (bf16 read through int16)."""
    import numpy as np

    raw = np.fromfile(os.path.join(workdir, name), dtype=np.int16 if dtype == torch.bfloat16 else np.float32)
    t = torch.from_numpy(raw)
    return (t.view(torch.bfloat16) if dtype == torch.bfloat16 else t).reshape(shape).cuda()


def call_dp_run(args, run, x, workdir, mode, *options):
    """dp_run on the inputs in `workdir`; returns the fields of its output line or raises with its last error line."""
    B, T, H, K, V = run["B"], run["T"], run["H"], run["K"], run["V"]
    n_h, gated = MODELS[run["model"]]
    command = [args.dp_run, "--dir", workdir, "--mode", mode,
               "--B", str(B), "--T", str(T), "--H", str(H), "--K", str(K), "--V", str(V), "--nh", str(n_h),
               "--gated", "1" if gated else "0", "--h0", "1" if x["h0"] is not None else "0",
               "--iters", str(args.iters), *options]
    if args.dp_sequence_splits is not None:
        command += ["--sequence-splits", str(args.dp_sequence_splits)]
    command += args.dp_extra_arg_list  # last: dp_run takes an option's last value
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError((done.stderr or done.stdout).strip().splitlines()[-1] if (done.stderr or done.stdout)
                           else f"dp_run exited with {done.returncode}")
    return dict(f.split("=", 1) for f in done.stdout.split() if "=" in f)


def run_ours(torch, args, run, x, workdir):
    """dp_run on raw files; returns (ms, o, final_state, path) or raises."""
    B, T, H, K, V = run["B"], run["T"], run["H"], run["K"], run["V"]
    write_inputs(torch, x, workdir)
    fields = call_dp_run(args, run, x, workdir, "decode" if run["kind"] == "decode" else "forward")
    o = read_output(torch, workdir, "o.bin", (B, T, H, V), torch.bfloat16)
    ht = read_output(torch, workdir, "ht.bin", (B, H, K, V), torch.float32)
    return float(fields["ms"]), o, ht, fields.get("path", "?")


def run_ours_training(torch, args, run, x, workdir, algorithm):
    """dp_run --mode training on the inputs already in `workdir`, with our backward `algorithm` (a key of
    BACKWARD_ALGORITHMS); returns (its output fields, {o, dq, dk, dv, dbeta[, dg]}) or raises. Gradients are read on
    accuracy runs only."""
    B, T, H, K, V = run["B"], run["T"], run["H"], run["K"], run["V"]
    n_h, gated = MODELS[run["model"]]
    R = T * n_h
    fields = call_dp_run(args, run, x, workdir, "training", "--gradients", "1" if run["accuracy"] else "0",
                         *BACKWARD_ALGORITHMS[algorithm])
    outputs = dict(o=read_output(torch, workdir, "o.bin", (B, T, H, V), torch.bfloat16))
    if run["accuracy"]:
        shapes = dict(dq=(B, T, H, K), dk=(B, R, H, K), dv=(B, R, H, V), dbeta=(B, R, H), dg=(B, T, H))
        for name in GRADIENTS:
            if name != "dg" or gated:
                outputs[name] = read_output(torch, workdir, name + ".bin", shapes[name], torch.bfloat16)
    return fields, outputs


def theirs(torch, fla, qla, run, x):
    """{name: callable returning (o, final_state)} of the implementations that take this run."""
    n_h, gated = MODELS[run["model"]]
    q, k, v, beta, g, h0 = x["q"], x["k"], x["v"], x["beta"], x["g"], x["h0"]
    g32 = g.float() if g is not None else None
    calls = {}
    if fla is not None:
        if run["kind"] == "decode":
            if gated:
                calls["FLA fused_recurrent_gated"] = lambda: fla["fused_recurrent_gated_delta_rule"](
                    q, k, v, g=g32, beta=beta, initial_state=h0, output_final_state=True)
            else:
                calls["FLA fused_recurrent"] = lambda: fla["fused_recurrent_delta_rule"](
                    q, k, v, beta, initial_state=h0, output_final_state=True)
        elif n_h == 1 and not gated:
            calls["FLA chunk"] = lambda: fla["chunk_delta_rule"](q, k, v, beta, initial_state=h0,
                                                                 output_final_state=True)
        elif n_h == 1:
            calls["FLA chunk_gated"] = lambda: fla["chunk_gated_delta_rule"](q, k, v, g32, beta, initial_state=h0,
                                                                             output_final_state=True)
        else:
            calls["FLA chunk_gated_product"] = lambda: fla["chunk_gated_delta_product"](
                q, k, v, g32, beta, num_householder=n_h, initial_state=h0, output_final_state=True)
    if qla is not None and run["kind"] == "chunked" and n_h == 1 and gated and run["K"] == 128 and run["V"] == 128:
        calls["FlashQLA"] = lambda: qla.chunk_gated_delta_rule(q=q, k=k, v=v, g=g32, beta=beta, initial_state=h0,
                                                               output_final_state=True)
    return calls


def theirs_training(fla, qla, run):
    """{name: callable(q, k, v, beta, g) returning o} of the implementations that take this training run; the
    arguments are autograd leaves; no initial state, no final state asked for."""
    n_h, gated = MODELS[run["model"]]
    calls = {}
    if fla is not None:
        if n_h == 1 and not gated:
            calls["FLA chunk"] = lambda q, k, v, beta, g: fla["chunk_delta_rule"](q, k, v, beta)[0]
        elif n_h == 1:
            calls["FLA chunk_gated"] = lambda q, k, v, beta, g: fla["chunk_gated_delta_rule"](q, k, v, g, beta)[0]
        else:
            calls["FLA chunk_gated_product"] = lambda q, k, v, beta, g: fla["chunk_gated_delta_product"](
                q, k, v, g, beta, num_householder=n_h)[0]
    if qla is not None and n_h == 1 and gated and run["K"] == 128 and run["V"] == 128:
        calls["FlashQLA"] = lambda q, k, v, beta, g: qla.chunk_gated_delta_rule(q=q, k=k, v=v, g=g, beta=beta)[0]
    return calls


def training_leaves(x):
    """Fresh autograd leaves of a training run's inputs (g in fp32, as FLA and FlashQLA take it; None when ungated)."""
    leaves = {name: x[name].detach().clone().requires_grad_() for name in ("q", "k", "v", "beta")}
    leaves["g"] = x["g"].float().requires_grad_() if x["g"] is not None else None
    return leaves


def training_errors(torch, outputs, reference):
    """Relative RMS error of o and of every gradient the reference has (None where the implementation gave none)."""
    return {name: relative_rms(torch, outputs[name], reference[name]) if outputs.get(name) is not None else None
            for name in ("o",) + GRADIENTS if name in reference}


def worst_gradient_error(errors):
    values = [e for name, e in (errors or {}).items() if name != "o" and e is not None]
    return max(values) if values else None


def first_line(error):
    text = str(error).strip()
    return f"{error.__class__.__name__}: {text.splitlines()[0] if text else ''}"


def forward_rows(torch, triton, args, run, x, reference, bound, fla, qla, have_ours, scratch_root):
    """Rows of a chunked or decode run: ours, then every other implementation that takes it."""
    rows = []
    ours_ms = None
    if have_ours:
        workdir = tempfile.mkdtemp(prefix="dp_compare_", dir=scratch_root)
        try:
            ours_ms, o, ht, path = run_ours(torch, args, run, x, workdir)
            error = relative_rms(torch, o, reference[0]) if reference is not None else None
            rows.append(dict(impl=f"ours ({path})", ms=ours_ms, error=error, fraction=bound / ours_ms))
        except Exception as failure:  # noqa: BLE001 - report and continue with the other implementations
            rows.append(dict(impl="ours", ms=None, error=None, fraction=None, failure=str(failure)))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    else:
        rows.append(dict(impl="ours", ms=None, error=None, fraction=None))
    for name, call in theirs(torch, fla, qla, run, x).items():
        try:
            with torch.inference_mode():
                o, _ = call()  # first call compiles (Triton / TileLang): outside the timing
                torch.cuda.synchronize()
                error = relative_rms(torch, o, reference[0]) if reference is not None else None
                ms = triton.testing.do_bench(call, warmup=args.warmup_ms, rep=args.rep_ms, return_mode="median")
            rows.append(dict(impl=name, ms=ms, error=error, fraction=bound / ms,
                             ratio=(ms / ours_ms) if ours_ms else None))
        except Exception as failure:  # noqa: BLE001
            rows.append(dict(impl=name, ms=None, error=None, fraction=None, failure=str(failure)[:200]))
    return rows


def training_rows(torch, triton, args, run, x, reference, bound, fla, qla, have_ours, scratch_root):
    """Rows of a training run: ours once per --backward-algorithms entry, then FLA and FlashQLA through autograd.
    A row's `error` is its largest gradient error, `errors` has o and each gradient."""
    rows = []
    ours_ms = None
    if have_ours:
        workdir = tempfile.mkdtemp(prefix="dp_compare_", dir=scratch_root)
        try:
            write_inputs(torch, x, workdir)
            for algorithm in args.backward_algorithms:
                try:
                    fields, outputs = run_ours_training(torch, args, run, x, workdir, algorithm)
                    ms = float(fields["ms"])
                    ours_ms = ours_ms or ms
                    errors = training_errors(torch, outputs, reference) if reference is not None else None
                    path = fields.get("path", "?")
                    impl = f"ours ({path}, kept states)" if algorithm == "kept" else f"ours ({path}, bwd {algorithm})"
                    rows.append(dict(impl=impl, ms=ms,
                                     forward_ms=float(fields["forward_ms"]), backward_ms=float(fields["backward_ms"]),
                                     backward_algorithm=algorithm, error=worst_gradient_error(errors), errors=errors,
                                     fraction=bound / ms))
                except Exception as failure:  # noqa: BLE001 - report and continue with the other implementations
                    rows.append(dict(impl=f"ours (bwd {algorithm})", ms=None, error=None, fraction=None,
                                     backward_algorithm=algorithm, failure=str(failure)))
        except Exception as failure:  # noqa: BLE001
            rows.append(dict(impl="ours", ms=None, error=None, fraction=None, failure=str(failure)))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    else:
        rows.append(dict(impl="ours", ms=None, error=None, fraction=None))
    for name, call in theirs_training(fla, qla, run).items():
        leaves = training_leaves(x)

        def step(call=call, leaves=leaves):
            o = call(**leaves)
            o.backward(x["do"])
            return o

        try:
            o = step()  # first call compiles (Triton / TileLang): outside the timing
            torch.cuda.synchronize()
            errors = None
            if reference is not None:
                outputs = {"d" + n: leaf.grad for n, leaf in leaves.items() if leaf is not None}
                outputs["o"] = o.detach()
                errors = training_errors(torch, outputs, reference)
            del o
            ms = triton.testing.do_bench(step, warmup=args.warmup_ms, rep=args.rep_ms, return_mode="median",
                                         grad_to_none=[leaf for leaf in leaves.values() if leaf is not None])
            rows.append(dict(impl=name, ms=ms, error=worst_gradient_error(errors), errors=errors,
                             fraction=bound / ms, ratio=(ms / ours_ms) if ours_ms else None))
        except Exception as failure:  # noqa: BLE001 - FLA refuses its gated backward on Hopper with Triton 3.4-3.7.0
            rows.append(dict(impl=name, ms=None, error=None, fraction=None, refused=True,
                             failure="refused: " + first_line(failure)))
        del leaves
    return rows


def print_rows(run, rows):
    for row in rows:
        note = f"  ({row['failure']})" if row.get("failure") else ""
        if row.get("forward_ms") is not None:
            note = f"  fwd {row['forward_ms']:.4f} + bwd {row['backward_ms']:.4f} ms" + note
        if row.get("errors"):
            note = "  " + " ".join(f"{name} {fmt_percent(e)}" for name, e in row["errors"].items()) + note
        print(f"{run['kind']:8s} {run['B']:4d} {run['T']:6d} {run['H']:3d} {run['K']:4d} {run['model']:22s} "
              f"{row['impl']:36s} {fmt(row['ms'], '.4f'):>9s} {fmt(row.get('ratio'), '.2f'):>11s} "
              f"{fmt(row['fraction'], '.2f'):>8s} {fmt_percent(row['error']):>9s}{note}", flush=True)


def import_fla():
    os.environ.setdefault("FLA_FLASH_QLA", "0")  # else FLA silently dispatches its gated kernels to FlashQLA
    try:
        from fla.ops.delta_rule import chunk_delta_rule, fused_recurrent_delta_rule
        from fla.ops.gated_delta_product import chunk_gated_delta_product
        from fla.ops.gated_delta_rule import chunk_gated_delta_rule, fused_recurrent_gated_delta_rule
    except Exception as error:  # noqa: BLE001 - any import failure means "not available"
        print(f"FLA: not installed ({error.__class__.__name__}: {error})")
        return None
    import fla

    print(f"FLA: {getattr(fla, '__version__', '?')} (FLA_FLASH_QLA={os.environ['FLA_FLASH_QLA']})")
    return dict(chunk_delta_rule=chunk_delta_rule, fused_recurrent_delta_rule=fused_recurrent_delta_rule,
                chunk_gated_delta_rule=chunk_gated_delta_rule, chunk_gated_delta_product=chunk_gated_delta_product,
                fused_recurrent_gated_delta_rule=fused_recurrent_gated_delta_rule)


def import_flash_qla():
    try:
        import flash_qla
    except Exception as error:  # noqa: BLE001
        print(f"FlashQLA: not installed ({error.__class__.__name__})")
        return None
    print(f"FlashQLA: {getattr(flash_qla, '__version__', '?')}")
    return flash_qla


def main(argv=None):
    args = parse_args(argv)
    runs = plan(args)
    if args.dry_run:
        for run in runs:
            nbytes, flops = run_cost(run)
            print(f"{run['kind']:8s} B={run['B']:<4d} T={run['T']:<6d} H={run['H']:<3d} K=V={run['K']:<4d} "
                  f"{run['model']:22s} accuracy={run['accuracy']!s:5s} roofline {roofline_ms(nbytes, flops):.4f} ms")
        return 0

    import torch
    import triton.testing

    if not torch.cuda.is_available():
        print("no CUDA device")
        return 1
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, triton {triton.__version__}")
    fla = import_fla()
    qla = import_flash_qla()
    have_ours = os.path.exists(args.dp_run)
    if not have_ours:
        print(f"ours: {args.dp_run} not found (columns for ours print '-')")
    scratch_root = "/dev/shm" if os.path.isdir("/dev/shm") else None

    results = []
    header = (f"{'kind':8s} {'B':>4s} {'T':>6s} {'H':>3s} {'K':>4s} {'model':22s} {'impl':36s} {'ms':>9s} "
              f"{'theirs/ours':>11s} {'roofline':>8s} {'rel RMS':>9s}")
    print(header)
    print("-" * len(header))
    if any(run["kind"] == "training" for run in runs):
        print("(training: ms of forward + backward; rel RMS the largest gradient's, then o's and each gradient's)")
    for index, run in enumerate(runs):
        nbytes, flops = run_cost(run)
        bound = roofline_ms(nbytes, flops)
        x = make_inputs(torch, run, args.seed + index)
        if run["kind"] == "training":
            reference = reference_fp64_training(torch, x) if run["accuracy"] else None
            rows = training_rows(torch, triton, args, run, x, reference, bound, fla, qla, have_ours, scratch_root)
        else:
            reference = None
            if run["accuracy"]:
                with torch.inference_mode():
                    reference = reference_fp64(torch, x)
            rows = forward_rows(torch, triton, args, run, x, reference, bound, fla, qla, have_ours, scratch_root)
        print_rows(run, rows)
        results.append(dict(run=run, roofline_ms=bound, bytes=nbytes, flops=flops, rows=rows))
        del x, reference
        torch.cuda.empty_cache()
        if args.out:  # after every run, so that a run stopped at a time limit keeps what it measured
            with open(args.out, "w") as out:
                metadata = dict(date=time.strftime("%Y-%m-%d %H:%M"), device=torch.cuda.get_device_name())
                if args.dp_sequence_splits is not None:  # only when passed: the default output stays as it was
                    metadata["dp_sequence_splits"] = args.dp_sequence_splits
                if args.dp_extra_args:  # likewise
                    metadata["dp_extra_args"] = args.dp_extra_args
                json.dump(dict(**metadata,
                               ceilings=dict(copy_bytes_per_second=COPY_BYTES_PER_SECOND,
                                             bf16_flops_per_second=BF16_FLOPS_PER_SECOND),
                               results=results), out, indent=1)

    if args.out:
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
