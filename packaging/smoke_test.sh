#!/usr/bin/env bash
# Packaging smoke test (not part of the fast suite): build the CPU app, then run it from dist/ the way a user
# would — no virtual environment on PATH, an empty HOME, outside the repository, without network — and check:
#   1. the bundle contains no torch / CUDA libraries and its size (du -sh) is printed;
#   2. `cxrviewer --self-test --require-no-torch` passes (shipped models; timed from process start to result);
#   3. with no classifier shipped: the plain self-test FAILS (a release that cannot analyse is broken), passes
#      with --allow-no-model, and the frozen ONNX Runtime path is proven on a tiny *test* classifier built
#      here (--models; random weights, not a release model);
#   4. the frozen app opens a compressed DICOM of each codec family (pydicom's test files);
#   5. the window opens on the sample study, shows its first image without a traceback and quits 2 s later
#      (offscreen Qt, and the X11 plugin under Xvfb when xvfb-run is present).
#
#   bash packaging/smoke_test.sh              # build + checks
#   SKIP_BUILD=1 bash packaging/smoke_test.sh # checks on the existing dist/cxrviewer
#   CXR_WITH_EXPORTS=0 bash packaging/smoke_test.sh   # the viewer-only build (same 400 MB limit)
# Results (JSON, logs) go to runs/packaging-smoke/. Exit status 0 only when every check passed.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
APP="$ROOT/dist/cxrviewer/cxrviewer"
OUT="$ROOT/runs/packaging-smoke"
mkdir -p "$OUT"
FAILED=0
fail() { echo "FAIL: $*"; FAILED=1; }
pass() { echo "ok:   $*"; }

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    CXR_BUILD=cpu CXR_WITH_EXPORTS="${CXR_WITH_EXPORTS:-1}" bash packaging/build.sh 2>&1 | tee "$OUT/build.log" || { echo "FAIL: build"; exit 1; }
fi
[ -x "$APP" ] || { echo "FAIL: no app at $APP"; exit 1; }

echo "== size"
du -sh "$ROOT/dist/cxrviewer" | tee "$OUT/size.txt"
size_mb=$(du -sm "$ROOT/dist/cxrviewer" | cut -f1)
# The goal: <= 400 MB with every shipped model, for the default build (exports + PACS) and the viewer-only one
# (packaging/slim_bundle.py does most of the cutting; see docs/packaging.md). SIZE_LIMIT_MB overrides.
limit="${SIZE_LIMIT_MB:-400}"
[ "$size_mb" -le "$limit" ] && pass "size ${size_mb} MB <= ${limit} MB" || fail "size ${size_mb} MB > ${limit} MB"
heavy=$(find "$ROOT/dist/cxrviewer" \( -iname "*torch*" -o -iname "libcudart*" -o -iname "libcublas*" \
    -o -path "*/nvidia/*" -o -iname "*triton*" \) | head -5)
[ -z "$heavy" ] && pass "no torch/CUDA files in the CPU bundle" || fail "torch/CUDA files in the bundle: $heavy"

# A clean environment: system PATH only, a throw-away HOME (the app's settings and caches land there), the
# current directory outside the repository, and no network namespace when we may create one.
SANDBOX_HOME="$(mktemp -d)"
trap 'rm -rf "$SANDBOX_HOME"' EXIT
NONET=()
if unshare -n true 2>/dev/null; then
    NONET=(unshare -n)
    pass "runs without network (unshare -n)"
else
    echo "note: unshare -n is not permitted here (needs root or user namespaces): network not cut"
fi
run_clean() { (cd "$SANDBOX_HOME" && env -i PATH=/usr/bin:/bin HOME="$SANDBOX_HOME" LANG=C.UTF-8 "${NONET[@]}" "$@"); }

self_test() {  # self_test NAME EXPECTED_RC ARGS...: run, time, keep the JSON
    local name="$1" expected="$2"
    shift 2
    local t0 t1 rc
    t0=$(date +%s.%N)
    run_clean "$APP" --self-test --require-no-torch "$@" >"$OUT/$name.json" 2>"$OUT/$name.err"
    rc=$?
    t1=$(date +%s.%N)
    local secs
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}')
    if [ "$rc" = "$expected" ]; then
        pass "self-test $name: exit $rc as expected, ${secs} s from start to result ($(head -1 "$OUT/$name.err"))"
    else
        fail "self-test $name: exit $rc, expected $expected (see $OUT/$name.err)"
        sed 's/^/      /' "$OUT/$name.err" | head -20
    fi
}

echo "== self-test (frozen app, clean environment)"
if ls models/*/manifest.json >/dev/null 2>&1 && grep -qs '"kind": "classifier"' models/*/manifest.json; then
    self_test shipped 0
else
    echo "note: models/ ships no classifier: the release self-test must fail; checking both modes"
    self_test shipped-no-classifier 1
    self_test shipped-allow-no-model 0 --allow-no-model
    TEST_MODELS="$OUT/test-models"
    rm -rf "$TEST_MODELS"
    if "$PYTHON" -c "
import sys; from pathlib import Path
sys.path.insert(0, '.')
import torch; torch.set_num_threads(2)
from tests.runtime.models import make_runtime_model_dir
make_runtime_model_dir(Path(sys.argv[1]) / 'tiny-test-classifier')" "$TEST_MODELS" >"$OUT/test-model.log" 2>&1; then
        self_test test-classifier 0 --models "$TEST_MODELS" --device cpu
    else
        fail "could not build the test classifier (see $OUT/test-model.log)"
    fi
fi

echo "== DICOM codecs (frozen app opens pydicom's compressed test files; not committed, copied to runs/)"
CODECS="$OUT/codec-samples"
rm -rf "$CODECS" && mkdir -p "$CODECS"
if "$PYTHON" -c "
import shutil, sys
from pydicom.data import get_testdata_file
names = ['JPEG2000.dcm', 'MR_small_jp2klossless.dcm', 'JPEG-LL.dcm', 'MR_small_RLE.dcm', 'JPEGLSNearLossless_16.dcm',
         'MR_small_jpeg_ls_lossless.dcm', 'SC_jpeg_no_color_transform.dcm']
for name in names:
    shutil.copy(get_testdata_file(name, download=False), sys.argv[1])" "$CODECS" 2>"$OUT/codec-samples.log"; then
    # JPEG 2000 (lossy, lossless), JPEG lossless SV1, RLE, JPEG-LS (lossless, near-lossless), JPEG baseline.
    # (pydicom's 12-bit JPEG-lossy.dcm is left out: no installed plugin decodes it, in the venv either.)
    # These are MR and tiny test images, which the shipped input gate rightly refuses: the frozen classifier
    # alone (copied out of the bundle, --models) analyses and exports them, so every codec is decoded.
    CODEC_MODELS="$OUT/codec-models"
    rm -rf "$CODEC_MODELS" && mkdir -p "$CODEC_MODELS"
    classifier=$(grep -l '"kind": "classifier"' "$ROOT"/dist/cxrviewer/_internal/models/*/manifest.json | head -1)
    if [ -n "$classifier" ]; then
        cp -r "$(dirname "$classifier")" "$CODEC_MODELS/"
        self_test codecs 0 --models "$CODEC_MODELS" --samples "$CODECS"
    else
        self_test codecs 0 --allow-no-model --samples "$CODECS"
    fi
else
    echo "note: pydicom's test files are not available: codecs checked by --self-test's decoder list only"
fi

echo "== window"
window() {  # window NAME PLATFORM [launcher...]
    local name="$1" platform="$2"
    shift 2
    local t0 t1
    t0=$(date +%s.%N)
    run_clean "$@" env QT_QPA_PLATFORM="$platform" "$APP" --demo --smoke-window 2 >"$OUT/window-$name.log" 2>&1
    local rc=$?
    t1=$(date +%s.%N)
    local secs
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}')
    # A traceback anywhere (e.g. the image views failing to import after the first paint) is a failure.
    if [ "$rc" = 0 ] && grep -q "image shown" "$OUT/window-$name.log" && ! grep -q Traceback "$OUT/window-$name.log"; then
        pass "window ($name): $(grep -h 'first paint\|image shown' "$OUT/window-$name.log" | sed 's/cxrviewer: //' | paste -sd ';'), closed 2 s later, exit 0 (${secs} s in all)"
    else
        fail "window ($name): exit $rc (see $OUT/window-$name.log)"
        tail -20 "$OUT/window-$name.log" | sed 's/^/      /'
    fi
}
window offscreen offscreen
if command -v xvfb-run >/dev/null; then
    window xcb xcb /usr/bin/xvfb-run -a -s "-screen 0 1600x1000x24"
else
    echo "note: xvfb-run not found: the X11 (xcb) platform plugin was not exercised"
fi

# Nothing may have been left for an uploader: ONNX Runtime's telemetry writes its device id and event queue
# under ~/.cache/Microsoft unless cxrviewer switched it off (tests/privacy/test_onnxruntime_telemetry.py).
echo "== privacy"
if [ -e "$SANDBOX_HOME/.cache/Microsoft" ]; then
    fail "telemetry files in the clean HOME: $(cd "$SANDBOX_HOME" && find .cache/Microsoft -type f | paste -sd ' ')"
else
    pass "no ONNX Runtime telemetry files (device id, event queue) in the clean HOME"
fi

echo
[ "$FAILED" = 0 ] && echo "packaging smoke test PASSED" || echo "packaging smoke test FAILED"
exit "$FAILED"
