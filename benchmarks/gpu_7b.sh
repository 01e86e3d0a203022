#!/usr/bin/env bash
# DEX-AR explanation cost on one CUDA GPU: a 7B-shaped LLaVA, then the mid-size one (issue 10).
#
#   bash benchmarks/gpu_7b.sh             # on the GPU machine: JSON into $OUT (else benchmarks/results)
#   bash benchmarks/gpu_7b.sh --dry-run   # anywhere, on the CPU: the same commands with 2-layer
#                                         # shapes, 64 image tokens and short answers
#
# Random weights, built directly on the GPU in bfloat16: no download, no slow CPU init.
#   7b   LLaVA-1.5-7B's language model (Llama: 32 layers, hidden 4096, 32 heads, MLP 11008,
#        vocab 32000) with 576 image tokens (336 px, patch 14) from a SMALL vision tower:
#        4 CLIP layers of width 1024 instead of ViT-L/14's 24. The tower runs once, without
#        grad, in both generate and explain, so it adds about the same time to both.
#        Answer lengths 8 and 32; chunking sweep at 32, 128, 256 answer tokens.
#   mid  12 layers, hidden 768, 12 heads, vocab 32000, N = 576 and 2304, T = 8, 32, 128.
# Both engine paths: 'prompt-cache' (the default: the prompt once without grad into a KV
# cache, then the answer rows) and 'full-pass' (one pass over prompt + answer, as for
# encoder-decoders). The straightforward reference runs only where it is predicted to
# finish within 30 s (always at the mid target cell T=32, N=576).
# Each step has a wall-clock limit and writes its JSON after every measured row, so a step
# cut short still leaves its numbers; the whole script stays under about 8 minutes.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD:$PWD/adapters${PYTHONPATH:+:$PYTHONPATH}"

DRY=()
SHORT=()
LIMITS=(300 170)
DEVICE=(--device cuda --dtype bfloat16 --threads 8 --reps 3 --isolation inprocess)
if [[ "${1:-}" == "--dry-run" ]]; then
    DRY=(--dry-run)
    # given last, these override the sizes of each step below
    SHORT=(--image-tokens 64 --answer-lengths 4,8 --chunk-sweep-lengths 8,16)
    LIMITS=(1800 1800)
    DEVICE=(--device cpu --dtype bfloat16 --threads 2 --reps 1 --isolation inprocess)
fi

PY=""
for candidate in "${PYTHON:-}" python3 python; do
    if [[ -n "$candidate" ]] && "$candidate" -c "import torch" >/dev/null 2>&1; then
        PY="$candidate"
        break
    fi
done
if [[ -z "$PY" ]]; then
    echo "gpu_7b.sh: no python with torch found (tried \$PYTHON, python3, python)." >&2
    exit 2
fi

"$PY" - ${DRY[@]+"${DRY[@]}"} <<'EOF' || exit 2
import importlib, sys
missing = []
for name in ("torch", "transformers", "tokenizers", "numpy", "PIL", "attrs", "pluggy"):
    try:
        module = importlib.import_module(name)
        print(f"gpu_7b.sh: {name} {getattr(module, '__version__', '')}")
    except Exception as error:
        missing.append(f"{name} ({type(error).__name__}: {error})")
if missing:
    sys.exit("gpu_7b.sh: missing imports: " + "; ".join(missing) + ". dexar needs torch, "
             "transformers>=5.24,<5.30, tokenizers, numpy, pillow, attrs and pluggy; install "
             "them (pip install -e . from the repository) or put them on PYTHONPATH.")
import transformers
major, minor = (int(part) for part in transformers.__version__.split(".")[:2])
if (major, minor) < (5, 24):
    sys.exit(f"gpu_7b.sh: transformers {transformers.__version__} is too old; dexar's "
             "attention capture needs transformers>=5.24,<5.30.")
import torch
if "--dry-run" not in sys.argv and not torch.cuda.is_available():
    sys.exit("gpu_7b.sh: torch sees no CUDA device; run with --dry-run to check on a CPU.")
if torch.cuda.is_available():
    print(f"gpu_7b.sh: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, "
          f"CUDA {torch.version.cuda}")
import dexar_core.engine.one_pass, dexar_llava.adapter  # noqa: E401,F401  the tree itself imports
EOF

# correctness first: engine vs reference, capture drift, bf16 maps vs float32 (gpu_checks.py)
echo "gpu_7b.sh: $PY benchmarks/gpu_checks.py ${DRY[*]+${DRY[*]}}"
"$PY" benchmarks/gpu_checks.py ${DRY[@]+"${DRY[@]}"} | tee "$OUT/gpu_checks.txt"
[[ ${PIPESTATUS[0]} -eq 0 ]] || echo "gpu_7b.sh: a correctness check failed (see $OUT/gpu_checks.txt)"

step() {
    local limit="$1"
    shift
    echo "gpu_7b.sh: $PY benchmarks/bench_explain.py $*"
    timeout -k 10 "$limit" "$PY" benchmarks/bench_explain.py "$@"
    local code=$?
    [[ $code -eq 0 ]] || echo "gpu_7b.sh: step exited with $code (124: cut at ${limit}s); JSON so far is in $OUT"
}

step "${LIMITS[0]}" "${DEVICE[@]}" ${DRY[@]+"${DRY[@]}"} --sizes 7b --image-tokens 576 --answer-lengths 8,32 \
    --engines prompt-cache,full-pass --naive-limit 30 --naive-always '' \
    --chunk-sweep none,32 --chunk-sweep-cell 7b:576 --chunk-sweep-lengths 32,128,256 \
    --out "$OUT" --tag 7b ${SHORT[@]+"${SHORT[@]}"} ${SHORT:+--chunk-sweep-cell 7b:64}
step "${LIMITS[1]}" "${DEVICE[@]}" ${DRY[@]+"${DRY[@]}"} --sizes mid --image-tokens 576,2304 \
    --answer-lengths 8,32,128 --engines prompt-cache,full-pass --naive-limit 30 \
    --naive-always mid:576:32 --chunk-sweep '' --out "$OUT" --tag mid ${SHORT[@]+"${SHORT[@]}"}
ls -l "$OUT"
