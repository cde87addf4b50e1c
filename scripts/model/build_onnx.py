"""Builds ONNX graphs of all-MiniLM-L6-v2 (encoder + mean pooling + L2
normalisation) straight from model.safetensors, without torch or the hub.

    target/py-model/bin/python scripts/model/build_onnx.py [model_dir]

Writes <model_dir>/model.onnx (float32) and <model_dir>/model.int8.onnx
(dynamic int8, per-channel, weight MatMuls only), then checks both against
the float64 reference (services/model/fixtures/golden.json, produced by
make_golden.py from reference.py).

Graph contract (what the Rust `ort` backend feeds and reads):
  inputs   input_ids       int64 [batch, seq]
           attention_mask  int64 [batch, seq]   1 = token, 0 = padding
  output   embeddings      float32 [batch, 384], unit L2 norm
token_type_ids is not an input: the model is only used on single segments,
where it is all zeros, so its embedding row 0 is a constant inside the graph.
seq must be <= 512 (position table); callers truncate at 256 anyway.
Opset 17, IR version 8, so older ONNX Runtime builds can load it too.

Why hand-built: it is ~100 lines we own, it is exact (float32 rounding only),
and it avoids a torch/optimum install of several GB. The node patterns follow
what the Hugging Face exporter emits (Erf GELU, LayerNormalization), so ONNX
Runtime's graph optimiser fuses them the same way.
"""

from __future__ import annotations

import json
import math
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import reference  # noqa: E402

GOLDEN = os.path.join(REPO, "services", "model", "fixtures", "golden.json")


class Builder:
    def __init__(self):
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.weight_matmuls: list[str] = []  # node names, for int8 quantisation
        self._n = 0

    def const(self, name: str, arr: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def op(self, op_type: str, inputs: list[str], name: str | None = None, **attrs) -> str:
        self._n += 1
        name = name or f"{op_type}_{self._n}"
        out = name + "_out"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=name, **attrs))
        return out

    def linear(self, x: str, w: dict, prefix: str) -> str:
        # torch Linear weight is [out, in]; MatMul wants [in, out].
        wt = self.const(prefix + ".weight", np.ascontiguousarray(w[prefix + ".weight"].T))
        b = self.const(prefix + ".bias", w[prefix + ".bias"])
        name = prefix + ".MatMul"
        self.weight_matmuls.append(name)
        return self.op("Add", [self.op("MatMul", [x, wt], name=name), b])

    def heads(self, x: str, shape: str, perm: list[int]) -> str:
        """[b, s, hidden] -> [b, heads, s, d] (or [b, heads, d, s] for K)."""
        return self.op("Transpose", [self.op("Reshape", [x, shape])], perm=perm)

    def layer_norm(self, x: str, w: dict, prefix: str, eps: float) -> str:
        return self.op(
            "LayerNormalization",
            [
                x,
                self.const(prefix + ".weight", w[prefix + ".weight"]),
                self.const(prefix + ".bias", w[prefix + ".bias"]),
            ],
            axis=-1,
            epsilon=eps,
        )


def build(model_dir: str) -> tuple[onnx.ModelProto, list[str]]:
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    assert cfg["hidden_act"] == "gelu"
    hidden, n_heads, eps = cfg["hidden_size"], cfg["num_attention_heads"], float(cfg["layer_norm_eps"])
    d = hidden // n_heads
    w = {k: v for k, v in load_file(os.path.join(model_dir, "model.safetensors")).items() if v.dtype == np.float32}

    g = Builder()
    f32 = lambda v: np.array(v, np.float32)  # noqa: E731
    i64 = lambda v: np.array(v, np.int64)  # noqa: E731

    # Embeddings: word[ids] + position[0..seq) + token_type[0].
    seq_len = g.op("Gather", [g.op("Shape", ["input_ids"]), g.const("one_i", i64(1))], axis=0)
    positions = g.op("Range", [g.const("zero_i", i64(0)), seq_len, "one_i"])
    x = g.op(
        "Gather", [g.const("embeddings.word_embeddings.weight", w["embeddings.word_embeddings.weight"]), "input_ids"]
    )
    pos_table = g.const("embeddings.position_embeddings.weight", w["embeddings.position_embeddings.weight"])
    x = g.op("Add", [x, g.op("Gather", [pos_table, positions])])
    x = g.op("Add", [x, g.const("token_type_row0", w["embeddings.token_type_embeddings.weight"][0])])
    x = g.layer_norm(x, w, "embeddings.LayerNorm", eps)

    # Additive attention bias [batch, 1, 1, seq]: 0 for tokens, -10000 for
    # padding. exp(-10000) underflows to an exact 0 in float32, so padding
    # gets no weight at all. The node sequence (Unsqueeze, Unsqueeze, Cast,
    # Sub, Mul) is the one the PyTorch exporter emits for BERT; keeping it
    # lets onnxruntime.transformers.optimizer fuse Attention offline, should
    # we want that later (it did not match with the bias built the other
    # way round).
    m4 = g.op("Unsqueeze", ["attention_mask", g.const("axes_1", i64([1]))])
    m4 = g.op("Cast", [g.op("Unsqueeze", [m4, g.const("axes_2", i64([2]))])], to=TensorProto.FLOAT)
    bias = g.op("Mul", [g.op("Sub", [g.const("one_f", f32(1.0)), m4]), g.const("neg_10000", f32(-10000.0))])
    maskf = g.op("Cast", ["attention_mask"], to=TensorProto.FLOAT)

    heads_shape = g.const("heads_shape", i64([0, 0, n_heads, d]))
    merged_shape = g.const("merged_shape", i64([0, 0, hidden]))
    scale = g.const("sqrt_d", f32(math.sqrt(d)))
    sqrt2, half = g.const("sqrt2", f32(math.sqrt(2.0))), g.const("half", f32(0.5))

    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        q = g.heads(g.linear(x, w, p + "attention.self.query"), heads_shape, [0, 2, 1, 3])
        k = g.heads(g.linear(x, w, p + "attention.self.key"), heads_shape, [0, 2, 3, 1])
        v = g.heads(g.linear(x, w, p + "attention.self.value"), heads_shape, [0, 2, 1, 3])
        s = g.op("Add", [g.op("Div", [g.op("MatMul", [q, k]), scale]), bias])
        ctx = g.op("MatMul", [g.op("Softmax", [s], axis=-1), v])
        ctx = g.op("Reshape", [g.op("Transpose", [ctx], perm=[0, 2, 1, 3]), merged_shape])
        a = g.linear(ctx, w, p + "attention.output.dense")
        x = g.layer_norm(g.op("Add", [a, x]), w, p + "attention.output.LayerNorm", eps)
        h = g.linear(x, w, p + "intermediate.dense")
        # Exact GELU: x * 0.5 * (1 + erf(x / sqrt 2)), the pattern ORT fuses.
        h = g.op("Mul", [g.op("Mul", [h, g.op("Add", [g.op("Erf", [g.op("Div", [h, sqrt2])]), "one_f"])]), half])
        f = g.linear(h, w, p + "output.dense")
        x = g.layer_norm(g.op("Add", [f, x]), w, p + "output.LayerNorm", eps)

    # Mean over real tokens (count clamped like sentence-transformers), then
    # L2 normalise with torch's eps.
    m3 = g.op("Unsqueeze", [maskf, "axes_2"])
    axis1 = "axes_1"
    total = g.op("ReduceSum", [g.op("Mul", [x, m3]), axis1], keepdims=0)
    count = g.op("Max", [g.op("ReduceSum", [m3, axis1], keepdims=0), g.const("count_eps", f32(1e-9))])
    pooled = g.op("Div", [total, count])
    norm = g.op("Max", [g.op("ReduceL2", [pooled], axes=[1], keepdims=1), g.const("norm_eps", f32(1e-12))])
    g.nodes.append(helper.make_node("Div", [pooled, norm], ["embeddings"], name="l2_normalise"))

    graph = helper.make_graph(
        g.nodes,
        "all-MiniLM-L6-v2",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["batch", hidden])],
        initializer=g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="liveseg build_onnx.py")
    model.ir_version = 8
    model.doc_string = "sentence-transformers/all-MiniLM-L6-v2: BERT encoder + masked mean pooling + L2 norm"
    # Record inferred shapes (value_info) in the file: ONNX Runtime's
    # SkipLayerNormalization fusion (residual Add + LayerNorm) checks that
    # both Add inputs are known to be [batch, seq, hidden] and silently skips
    # the fusion without them.
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model, full_check=True)
    return model, g.weight_matmuls


def quantize_int8(src: str, dst: str, weight_matmuls: list[str]) -> None:
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    # quantize_dynamic logs a warning recommending quant_pre_process (shape
    # inference). Tried: for weight-only dynamic quantisation of this graph it
    # yields a byte-for-byte equivalent model and identical outputs, and its
    # full form needs sympy, so it is skipped and the warning silenced.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        # Only the 36 weight MatMuls: also quantising the 12 activation-by-
        # activation MatMuls (QK^T, attention x V) costs much more accuracy
        # (mean cosine ~0.95 vs ~0.99, research note section 1.2).
        quantize_dynamic(
            src,
            dst,
            per_channel=True,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul"],
            nodes_to_quantize=weight_matmuls,
        )
    finally:
        root.setLevel(level)


def session(path: str, threads: int = 2):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def run(sess, tok, texts: list[str]) -> tuple[np.ndarray, list[list[int]]]:
    """One batch, padded to its longest text."""
    encs = tok.encode_batch(texts)
    n = max(len(e.ids) for e in encs)
    ids = np.zeros((len(encs), n), np.int64)
    mask = np.zeros((len(encs), n), np.int64)
    for i, e in enumerate(encs):
        ids[i, : len(e.ids)] = e.ids
        mask[i, : len(e.ids)] = 1
    (out,) = sess.run(["embeddings"], {"input_ids": ids, "attention_mask": mask})
    return out.astype(np.float64), [e.ids for e in encs]


def agreement(ours: np.ndarray, ref: np.ndarray) -> tuple[float, float, float]:
    cos = (ours * ref).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(ref, axis=1))
    return float(cos.min()), float(cos.mean()), float(np.abs(ours - ref).max())


def verify(model_dir: str, threads: int) -> None:
    """Prints agreement per variant, one text per call and as one batch.

    The int8 figures differ between the two modes: dynamic quantisation picks
    one activation scale per MatMul input tensor, i.e. over the whole batch,
    so an int8 embedding depends on what else is in the batch.
    """
    if os.path.exists(GOLDEN):
        with open(GOLDEN, encoding="utf-8") as f:
            golden = json.load(f)
        texts = [e["text"] for e in golden]
        ref = np.array([e["embedding"] for e in golden], np.float64)
        ref_ids = [e["ids"] for e in golden]
        src = "golden.json"
    else:  # first run before make_golden.py: compute the reference here (slow)
        import make_golden

        texts = [t for _, t in make_golden.TEXTS]
        ref = reference.load(model_dir).embed(texts)
        ref_ids = [e.ids for e in reference.make_tokenizer(model_dir).encode_batch(texts)]
        src = "reference.py"
    tok = reference.make_tokenizer(model_dir)
    print(f"agreement with the float64 reference ({src}, {len(texts)} texts):")
    print(f"  {'model':16s} {'mode':22s} {'min cos':>10s} {'mean cos':>10s} {'1-min cos':>10s} {'max |diff|':>10s}")
    for fname in ("model.onnx", "model.int8.onnx"):
        sess = session(os.path.join(model_dir, fname), threads)
        single, ids = zip(*(run(sess, tok, [t]) for t in texts), strict=True)
        assert [i[0] for i in ids] == ref_ids, "token ids differ from golden.json"
        # One mixed-length batch padded to 256 checks masking and pooling.
        batch, _ = run(sess, tok, texts)
        for mode, out in (("one text per call", np.concatenate(single)), (f"one batch of {len(texts)}", batch)):
            assert np.all(np.isfinite(out))
            mn, mean, mx = agreement(out, ref)
            print(f"  {fname:16s} {mode:22s} {mn:10.7f} {mean:10.7f} {1 - mn:10.1e} {mx:10.2e}")


def main() -> None:
    model_dir = (
        sys.argv[1]
        if len(sys.argv) > 1
        else os.environ.get("LIVESEG_MODEL_DIR", os.path.join(REPO, "models", "all-MiniLM-L6-v2"))
    )
    threads = int(os.environ.get("LIVESEG_ORT_THREADS", "2"))
    f32_path = os.path.join(model_dir, "model.onnx")
    int8_path = os.path.join(model_dir, "model.int8.onnx")

    model, weight_matmuls = build(model_dir)
    onnx.save(model, f32_path)
    quantize_int8(f32_path, int8_path, weight_matmuls)
    for p in (f32_path, int8_path):
        print(f"wrote {p} ({os.path.getsize(p) / 1e6:.1f} MB)")
    print(f"  {len(model.graph.node)} nodes, {len(weight_matmuls)} weight MatMuls quantised in the int8 variant")
    verify(model_dir, threads)


if __name__ == "__main__":
    main()
