"""ONNX Runtime (Python) peer benchmark for the model service's embedders.

    target/py-model/bin/python scripts/model/ort_bench.py [--seconds 3] [--rounds 1] [--threads 2]

Runs model.onnx (f32) and model.int8.onnx (int8) from build_onnx.py on
services/model/fixtures/bench_texts.json, per bucket (short/medium/long) and
batch size (1, 8, 32). It is the yardstick for the Rust backends, so it
measures the same thing they do: one timed call = tokenize the batch
(truncate at 256, pad to the longest text) + run the session. The session is
configured like the service's: intra-op threads = --threads, one inter-op
thread, sequential execution, all graph optimisations.

Each cell warms up, then runs for --seconds. With --rounds N every cell runs
once per round, cells interleaved, and the medians over rounds are reported:
on a shared 2-core VM a single pass drifts with whatever else is running.

Output: a table on stderr, and one JSON object per cell on stdout with
backend, bucket, batch, texts_per_s, p50_ms, p99_ms, calls (plus
tokens_per_s, threads, rounds and per-round texts_per_s).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BACKENDS = {"f32": "model.onnx", "int8": "model.int8.onnx"}
BUCKETS = ("short", "medium", "long")


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--model-dir", default=os.environ.get("LIVESEG_MODEL_DIR", os.path.join(REPO, "models", "all-MiniLM-L6-v2"))
    )
    ap.add_argument("--texts", default=os.path.join(REPO, "services", "model", "fixtures", "bench_texts.json"))
    ap.add_argument("--threads", type=int, default=2, help="ORT intra-op threads (and tokenizer threads)")
    ap.add_argument("--seconds", type=float, default=3.0, help="timed duration per cell and round")
    ap.add_argument("--warmup", type=float, default=0.5, help="warm-up seconds per cell and round")
    ap.add_argument("--rounds", type=int, default=1, help="interleaved rounds; medians are reported")
    ap.add_argument("--backends", default="f32,int8")
    ap.add_argument("--buckets", default=",".join(BUCKETS))
    ap.add_argument("--batches", default="1,8,32")
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    # The tokenizers library parallelises encode_batch on a rayon pool sized
    # to all cores by default; cap it like the ORT pool so the benchmark uses
    # the thread budget it claims. Must be set before tokenizers is imported.
    os.environ.setdefault("RAYON_NUM_THREADS", str(args.threads))
    import numpy as np
    import onnxruntime as ort

    sys.path.insert(0, HERE)
    from reference import make_tokenizer

    tok = make_tokenizer(args.model_dir)  # truncation 256, no fixed padding
    tok.enable_padding(pad_id=0, pad_token="[PAD]")  # no length: pad to the batch's longest
    with open(args.texts, encoding="utf-8") as f:
        corpus = json.load(f)

    backends = args.backends.split(",")
    buckets = args.buckets.split(",")
    batches = [int(b) for b in args.batches.split(",")]

    sessions = {}
    for be in backends:
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        t0 = time.perf_counter()
        sessions[be] = ort.InferenceSession(
            os.path.join(args.model_dir, BACKENDS[be]), so, providers=["CPUExecutionProvider"]
        )
        print(f"loaded {BACKENDS[be]} in {(time.perf_counter() - t0) * 1e3:.0f} ms", file=sys.stderr)

    def embed_call(sess, texts: list[str]) -> int:
        encs = tok.encode_batch(texts)
        ids = np.array([e.ids for e in encs], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encs], dtype=np.int64)
        sess.run(["embeddings"], {"input_ids": ids, "attention_mask": mask})
        return int(mask.sum())

    def run_cell(be: str, bucket: str, batch: int) -> dict:
        sess, texts = sessions[be], corpus[bucket]
        # Consecutive, wrapping windows over the bucket, so every text is used.
        windows = [[texts[(s + j) % len(texts)] for j in range(batch)] for s in range(0, len(texts), batch)]
        end = time.perf_counter() + args.warmup
        i = 0
        while time.perf_counter() < end or i < 2:
            embed_call(sess, windows[i % len(windows)])
            i += 1
        lat, tokens = [], 0
        start = time.perf_counter()
        end = start + args.seconds
        i = 0
        while time.perf_counter() < end or i < 3:
            t0 = time.perf_counter()
            tokens += embed_call(sess, windows[i % len(windows)])
            lat.append(time.perf_counter() - t0)
            i += 1
        wall = time.perf_counter() - start
        ms = np.array(lat) * 1e3
        return {
            "texts_per_s": len(lat) * batch / wall,
            "tokens_per_s": tokens / wall,
            "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)),
            "calls": len(lat),
        }

    cells = [(be, bu, b) for be in backends for bu in buckets for b in batches]
    per_round: dict[tuple, list[dict]] = {c: [] for c in cells}
    for r in range(args.rounds):
        for c in cells:
            res = run_cell(*c)
            per_round[c].append(res)
            print(
                f"round {r + 1}/{args.rounds} {c[0]:4s} {c[1]:6s} bs{c[2]:<3d} "
                f"{res['texts_per_s']:8.1f} texts/s  p50 {res['p50_ms']:7.2f} ms  p99 {res['p99_ms']:7.2f} ms",
                file=sys.stderr,
            )

    results = {}

    def med(rs: list[dict], k: str) -> float:
        return statistics.median(x[k] for x in rs)

    for c, rs in per_round.items():
        results[c] = {
            "backend": c[0],
            "bucket": c[1],
            "batch": c[2],
            "texts_per_s": round(med(rs, "texts_per_s"), 1),
            "p50_ms": round(med(rs, "p50_ms"), 3),
            "p99_ms": round(med(rs, "p99_ms"), 3),
            "calls": sum(x["calls"] for x in rs),
            "tokens_per_s": round(med(rs, "tokens_per_s")),
            "threads": args.threads,
            "rounds": args.rounds,
            "texts_per_s_rounds": [round(x["texts_per_s"], 1) for x in rs],
        }
        print(json.dumps(results[c]), flush=True)

    mean_tokens = corpus.get("tokens", {})
    print(
        f"\nONNX Runtime {ort.__version__}, {args.threads} intra-op threads, {args.seconds:g} s per cell, "
        f"{args.rounds} round(s){' (medians)' if args.rounds > 1 else ''}; texts/s (p50 / p99 ms per call), "
        "tokenization included",
        file=sys.stderr,
    )
    head = f"{'backend':7s} {'bucket':14s}" + "".join(f" {'bs' + str(b):>26s}" for b in batches)
    print(head, file=sys.stderr)
    for be in backends:
        for bu in buckets:
            label = f"{bu} ({mean_tokens[bu]:.0f} tok)" if bu in mean_tokens else bu
            row = f"{be:7s} {label:14s}"
            for b in batches:
                x = results[(be, bu, b)]
                row += f" {x['texts_per_s']:9.1f} ({x['p50_ms']:6.1f} / {x['p99_ms']:6.1f})"
            print(row, file=sys.stderr)


if __name__ == "__main__":
    main()
