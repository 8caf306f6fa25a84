#!/usr/bin/env python3
"""Write a tiny llama-architecture GGUF model with random weights, for tests.

    make_tiny_model.py OUT.gguf [--seed N] [--no-chat-template]

The test suite serves the file with a real llama.cpp `llama-server` (built by
scripts/install-llama-server.sh) to exercise the OpenAI-compatible API end to
end: /v1/chat/completions, streaming, usage, context overflow. The model knows
nothing; what matters is that llama.cpp loads it, tokenizes any UTF-8 text,
applies its chat template and generates tokens quickly on one CPU thread.

What is in the file:

* architecture "llama": 2 layers, n_embd 64, 4 heads of 16, feed-forward 128,
  a training context of 4096 tokens, all tensors F32 (under 0.5 MB in all);
* a byte-level BPE tokenizer ("gpt2" model, "default" pre-tokenizer): the 256
  byte tokens (in the GPT-2 byte-to-unicode spelling), so that any UTF-8 text
  tokenizes, a few merges of common English pairs, and three control tokens,
  <|endoftext|>, <|im_start|> and <|im_end|> (the end-of-generation token);
* a ChatML chat template (`tokenizer.chat_template`), left out with
  --no-chat-template (llama-server then falls back to its built-in default,
  which is also ChatML).

What the model generates: gibberish made only of printable ASCII (space to
'~'). One dimension of the residual stream (dimension 0) is a constant that no
layer reads or writes; the output rows of every other token (control bytes,
bytes >= 0x7f, the control tokens) carry a large negative weight on it, so
their logits sit hundreds of units below the rest. As a result:

* the answer is always valid UTF-8 (no U+FFFD, no split multi-byte chars);
* the model never emits <|im_end|>, so a generation always runs until
  `max_tokens` (finish_reason "length") or a `stop` string, never a natural
  end. A test that wants finish_reason "stop" can pass a stop string such as
  " " that the gibberish soon contains.

Output is a pure function of the seed: the same seed writes the same bytes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

import gguf

# --- model shape --------------------------------------------------------------

N_EMBD = 64
N_LAYER = 2
N_HEAD = 4
N_HEAD_KV = 4
HEAD_DIM = N_EMBD // N_HEAD
N_FF = 128
N_CTX_TRAIN = 4096
RMS_EPS = 1e-5
ROPE_THETA = 10000.0

# Dimension 0 of the residual stream is the constant "carrier" described above.
CARRIER = 0
CARRIER_VALUE = 8.0
# Weight on the carrier of each suppressed token's output row.
SUPPRESS_WEIGHT = -100.0

# --- tokenizer ----------------------------------------------------------------

# Merges, in rank order; each joins two tokens that exist already into a new one.
MERGES = [
    (" ", "t"), ("h", "e"), (" t", "he"), ("i", "n"), ("e", "r"), (" ", "a"),
    ("o", "n"), ("r", "e"), ("a", "t"), ("e", "n"), ("in", "g"), (" ", "s"),
    ("o", "r"), ("e", "s"), (" ", "c"), ("a", "n"), (" ", "o"), ("i", "s"),
]
ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def byte_to_unicode() -> dict[int, str]:
    """The GPT-2 byte-level alphabet: every byte becomes one printable character.

    Bytes that are printable in Latin-1 keep their own character; the others
    (controls, space, 0x7f-0xa0, 0xad) take the code points from U+0100 on,
    in byte order. So a space is spelt 'Ġ' (U+0120) and a newline 'Ċ'.
    """
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def build_vocab() -> tuple[list[str], list[int], list[str], list[bool]]:
    """Tokens, their types, the merges (as 'left right' strings) and, for each
    token, whether the model may generate it (printable ASCII only)."""
    b2u = byte_to_unicode()

    def spell(text: str) -> str:
        return "".join(b2u[b] for b in text.encode("utf-8"))

    tokens: list[str] = []
    types: list[int] = []
    allowed: list[bool] = []

    # Ids 0..255: the byte tokens, in byte order.
    for b in range(256):
        tokens.append(b2u[b])
        types.append(gguf.TokenType.NORMAL)
        allowed.append(0x20 <= b <= 0x7E)

    merges: list[str] = []
    for left, right in MERGES:
        assert spell(left) in tokens and spell(right) in tokens, (left, right)
        merges.append(f"{spell(left)} {spell(right)}")
        tokens.append(spell(left + right))
        types.append(gguf.TokenType.NORMAL)
        allowed.append(True)  # made of printable ASCII bytes

    for special in (ENDOFTEXT, IM_START, IM_END):
        tokens.append(special)
        types.append(gguf.TokenType.CONTROL)
        allowed.append(False)

    assert len(set(tokens)) == len(tokens), "duplicate token"
    return tokens, types, merges, allowed


# --- weights ------------------------------------------------------------------


def make_tensors(rng: np.random.Generator, allowed: list[bool]) -> dict[str, np.ndarray]:
    """Random F32 weights, shaped as numpy (rows = output features).

    gguf-py writes each array with its axes reversed, which is the ggml
    layout llama.cpp expects (e.g. token_embd is n_embd x n_vocab in ggml).
    """
    n_vocab = len(allowed)

    def normal(*shape: int, std: float) -> np.ndarray:
        return rng.normal(0.0, std, size=shape).astype(np.float32)

    def hide_carrier_input(w: np.ndarray) -> np.ndarray:
        # The layer does not read the carrier dimension...
        w[:, CARRIER] = 0.0
        return w

    def hide_carrier_output(w: np.ndarray) -> np.ndarray:
        # ...nor write to it, so it stays CARRIER_VALUE to the end.
        w[CARRIER, :] = 0.0
        return w

    t: dict[str, np.ndarray] = {}

    embd = normal(n_vocab, N_EMBD, std=1.0)
    embd[:, CARRIER] = CARRIER_VALUE
    t["token_embd.weight"] = embd

    for i in range(N_LAYER):
        p = f"blk.{i}."
        t[p + "attn_norm.weight"] = np.ones(N_EMBD, dtype=np.float32)
        t[p + "attn_q.weight"] = hide_carrier_input(normal(N_HEAD * HEAD_DIM, N_EMBD, std=0.3))
        t[p + "attn_k.weight"] = hide_carrier_input(normal(N_HEAD_KV * HEAD_DIM, N_EMBD, std=0.3))
        t[p + "attn_v.weight"] = hide_carrier_input(normal(N_HEAD_KV * HEAD_DIM, N_EMBD, std=0.3))
        t[p + "attn_output.weight"] = hide_carrier_output(normal(N_EMBD, N_HEAD * HEAD_DIM, std=0.1))
        t[p + "ffn_norm.weight"] = np.ones(N_EMBD, dtype=np.float32)
        t[p + "ffn_gate.weight"] = hide_carrier_input(normal(N_FF, N_EMBD, std=0.3))
        t[p + "ffn_up.weight"] = hide_carrier_input(normal(N_FF, N_EMBD, std=0.3))
        t[p + "ffn_down.weight"] = hide_carrier_output(normal(N_EMBD, N_FF, std=0.1))

    t["output_norm.weight"] = np.ones(N_EMBD, dtype=np.float32)

    # Logits: allowed tokens get random rows that ignore the carrier; the
    # others see only the carrier, with a large negative weight.
    out = normal(n_vocab, N_EMBD, std=0.3)
    for tok, ok in enumerate(allowed):
        out[tok, CARRIER] = 0.0 if ok else SUPPRESS_WEIGHT
        if not ok:
            out[tok, 1:] = 0.0
    t["output.weight"] = out
    return t


# --- file ---------------------------------------------------------------------


def write_model(path: Path, seed: int, chat_template: bool = True) -> None:
    tokens, types, merges, allowed = build_vocab()
    tensors = make_tensors(np.random.default_rng(seed), allowed)

    arch = gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA]
    w = gguf.GGUFWriter(path, arch)

    w.add_name(f"casescope-tiny-random (seed {seed})")
    w.add_file_type(gguf.LlamaFileType.ALL_F32)

    w.add_context_length(N_CTX_TRAIN)
    w.add_embedding_length(N_EMBD)
    w.add_block_count(N_LAYER)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD_KV)
    w.add_rope_dimension_count(HEAD_DIM)
    w.add_rope_freq_base(ROPE_THETA)
    w.add_layer_norm_rms_eps(RMS_EPS)
    w.add_vocab_size(len(tokens))

    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(tokens.index(ENDOFTEXT))
    w.add_eos_token_id(tokens.index(IM_END))
    w.add_eot_token_id(tokens.index(IM_END))
    w.add_pad_token_id(tokens.index(ENDOFTEXT))
    w.add_add_bos_token(False)
    w.add_add_eos_token(False)
    if chat_template:
        w.add_chat_template(CHAT_TEMPLATE)

    for name, data in tensors.items():
        w.add_tensor(name, data)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the GGUF file to write")
    parser.add_argument("--seed", type=int, default=0, help="RNG seed (default 0)")
    parser.add_argument(
        "--no-chat-template", action="store_true", help="write no tokenizer.chat_template"
    )
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_model(args.out, args.seed, chat_template=not args.no_chat_template)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
