"""Float64 numpy reference of sentence-transformers all-MiniLM-L6-v2.

This is the formula the model service must reproduce, written independently
of any inference runtime so that the Rust backends (candle, ort) and the ONNX
graph from build_onnx.py can all be checked against one thing:

    tokenize (truncate at 256 tokens incl. [CLS]/[SEP], no fixed padding)
    -> BERT encoder (6 layers, hidden 384, 12 heads, exact erf GELU,
       post-LayerNorm, attention mask)
    -> mean over the positions where attention_mask == 1
    -> L2 normalisation

Everything is computed in float64 from the float32 weights, so the only
error left in a float32 implementation is its own rounding.

Usage as a module (scripts/model/ is the working directory or on sys.path):

    import reference
    reference.load("models/all-MiniLM-L6-v2")
    vecs = reference.embed(["hello", "world"])   # (2, 384) float64

Usage as a script prints the cross-check against candle's BERT example:

    target/py-model/bin/python scripts/model/reference.py <model_dir>
"""

from __future__ import annotations

import json
import math
import os
import sys

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

# sentence-transformers' max_seq_length for this model
# (sentence_bert_config.json). The shipped tokenizer.json says 128 and pads
# every text to 128, which is the Hugging Face tokenizer's setting, not the
# embedding model's; both must be overridden.
MAX_TOKENS = 256

# np.vectorize-style wrapper: numpy has no erf and scipy is not a dependency.
# math.erf is correctly rounded enough for a float64 reference; it is slow
# (~0.1 us per element), which is fine for golden files.
_erf = np.frompyfunc(math.erf, 1, 1)


def gelu(x: np.ndarray) -> np.ndarray:
    """Exact GELU, as BERT's "gelu" (not the tanh approximation)."""
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64))


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    """tanh approximation; only for the candle README cross-check below."""
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)  # biased, as torch
    return (x - mu) / np.sqrt(var + eps) * w + b


def make_tokenizer(model_dir: str) -> Tokenizer:
    """The shipped tokenizer with sentence-transformers' settings."""
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tok.enable_truncation(MAX_TOKENS)
    tok.no_padding()  # callers pad to the longest text of a batch
    return tok


class Reference:
    def __init__(self, model_dir: str):
        with open(os.path.join(model_dir, "config.json")) as f:
            cfg = json.load(f)
        assert cfg["hidden_act"] == "gelu", cfg["hidden_act"]
        assert cfg.get("position_embedding_type", "absolute") == "absolute"
        self.n_layers = cfg["num_hidden_layers"]
        self.n_heads = cfg["num_attention_heads"]
        self.hidden = cfg["hidden_size"]
        self.eps = float(cfg["layer_norm_eps"])
        raw = load_file(os.path.join(model_dir, "model.safetensors"))
        self.w = {k: v.astype(np.float64) for k, v in raw.items() if v.dtype == np.float32}
        self.tok = make_tokenizer(model_dir)

    def tokenize(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """ids, type ids, mask as int64 [batch, longest]; right-padded with 0."""
        encs = self.tok.encode_batch(list(texts))
        n = max(len(e.ids) for e in encs)
        ids = np.zeros((len(encs), n), np.int64)
        tt = np.zeros((len(encs), n), np.int64)
        mask = np.zeros((len(encs), n), np.int64)
        for i, e in enumerate(encs):
            ids[i, : len(e.ids)] = e.ids
            tt[i, : len(e.ids)] = e.type_ids
            mask[i, : len(e.ids)] = e.attention_mask
        return ids, tt, mask

    def _linear(self, x: np.ndarray, name: str) -> np.ndarray:
        # torch Linear stores weight as [out, in]
        return x @ self.w[name + ".weight"].T + self.w[name + ".bias"]

    def hidden_states(self, ids: np.ndarray, tt: np.ndarray, mask: np.ndarray, act=gelu) -> np.ndarray:
        """Last encoder layer, [batch, seq, hidden] float64."""
        w, eps = self.w, self.eps
        b, n = ids.shape
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][np.arange(n)][None]
            + w["embeddings.token_type_embeddings.weight"][tt]
        )
        x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
        h, d = self.n_heads, self.hidden // self.n_heads
        keep = mask.astype(bool)[:, None, None, :]  # [b, 1, 1, key]
        for i in range(self.n_layers):
            p = f"encoder.layer.{i}."

            def heads(t):
                return t.reshape(b, n, h, d).transpose(0, 2, 1, 3)

            q = heads(self._linear(x, p + "attention.self.query"))
            k = heads(self._linear(x, p + "attention.self.key"))
            v = heads(self._linear(x, p + "attention.self.value"))
            s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d)
            # Padded keys get exactly zero weight; [CLS] is never masked, so
            # no row is all -inf.
            s = np.where(keep, s, -np.inf)
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            ctx = (s @ v).transpose(0, 2, 1, 3).reshape(b, n, h * d)
            a = self._linear(ctx, p + "attention.output.dense")
            x = layer_norm(
                a + x,
                w[p + "attention.output.LayerNorm.weight"],
                w[p + "attention.output.LayerNorm.bias"],
                eps,
            )
            f = self._linear(act(self._linear(x, p + "intermediate.dense")), p + "output.dense")
            x = layer_norm(f + x, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
        return x

    def embed(self, texts: list[str], batch_size: int = 16) -> np.ndarray:
        """Unit-norm sentence embeddings, [len(texts), hidden] float64.

        Batches are padded to their longest text; results do not depend on
        the batching (make_golden.py checks this).
        """
        out = []
        for lo in range(0, len(texts), batch_size):
            ids, tt, mask = self.tokenize(texts[lo : lo + batch_size])
            x = self.hidden_states(ids, tt, mask)
            m = mask[..., None].astype(np.float64)
            # sentence-transformers Pooling: clamp(min=1e-9) on the count.
            pooled = (x * m).sum(1) / np.maximum(m.sum(1), 1e-9)
            # torch.nn.functional.normalize: eps 1e-12 on the norm.
            norm = np.linalg.norm(pooled, axis=1, keepdims=True)
            out.append(pooled / np.maximum(norm, 1e-12))
        if not out:
            return np.zeros((0, self.hidden))
        return np.concatenate(out)

    def token_counts(self, texts: list[str]) -> list[int]:
        """Tokens per text after truncation, incl. [CLS] and [SEP]."""
        return [len(e.ids) for e in self.tok.encode_batch(list(texts))]


_default: Reference | None = None


def load(model_dir: str) -> Reference:
    """Loads the model as the module default (for embed()) and returns it."""
    global _default
    _default = Reference(model_dir)
    return _default


def embed(texts: list[str]) -> np.ndarray:
    if _default is None:
        raise RuntimeError("call reference.load(model_dir) first")
    return _default.embed(texts)


# candle-examples/examples/bert/README.md: `--prompt "Here is a test
# sentence"` with sentence-transformers/all-MiniLM-L6-v2 prints the last
# hidden state, [1, 7, 384]; first and last three values of rows 0, 1, 2 and
# of the last three rows (4 decimals).
CANDLE_README = {
    0: ([0.0798, -0.0665, -0.0247], [-0.1082, -0.1000, -0.2751]),
    1: ([0.4218, 0.2690, 0.2740], [0.3889, 1.3503, 0.9908]),
    2: ([0.0466, 0.3041, -0.1143], [0.4427, 0.6926, -0.1515]),
    -3: ([0.3396, 0.4320, -0.4408], [0.9212, 0.2331, -0.6777]),
    -2: ([0.2789, 0.7539, 0.4306], [-0.0095, 0.3375, -1.7529]),
    -1: ([0.6737, 0.7882, 0.0548], [0.1836, 0.7299, -0.6617]),
}


def cross_check(ref: Reference) -> float:
    """Prints our hidden states next to candle's README; returns max |diff|.

    The README output was evidently produced with the tanh GELU (candle's
    BERT used to map "gelu" to it): with the exact GELU the values agree to
    about 1e-3, with the tanh one to the README's 4-decimal rounding. So the
    README is an anchor for the weights, tokenizer and wiring, not for the
    activation; tests using it need a tolerance of about 2e-3.
    """
    ids, tt, mask = ref.tokenize(["Here is a test sentence"])
    x = ref.hidden_states(ids, tt, mask)[0]
    xt = ref.hidden_states(ids, tt, mask, act=gelu_tanh)[0]
    print(f"'Here is a test sentence' -> {ids.shape[1]} tokens: {ids[0].tolist()}")
    worst = worst_tanh = 0.0
    for row, (head, tail) in CANDLE_README.items():
        ours = np.concatenate([x[row, :3], x[row, -3:]])
        ours_t = np.concatenate([xt[row, :3], xt[row, -3:]])
        theirs = np.array(head + tail)
        worst = max(worst, float(np.abs(ours - theirs).max()))
        worst_tanh = max(worst_tanh, float(np.abs(ours_t - theirs).max()))
        print(f"  row {row:2d}: exact  " + " ".join(f"{v:8.4f}" for v in ours))
        print("          tanh   " + " ".join(f"{v:8.4f}" for v in ours_t))
        print("          candle " + " ".join(f"{v:8.4f}" for v in theirs))
    print(f"  max |exact GELU - candle README| = {worst:.2e}")
    print(f"  max |tanh GELU  - candle README| = {worst_tanh:.2e} (README prints 4 decimals)")
    return worst


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} <model_dir>")
    cross_check(load(sys.argv[1]))
