"""Matrix-vector kernels for packed 4-bit and 8-bit weights with float32 activations (one decode step, batch 1).

The shipped SmolLM2 weights come from a GGUF file whose Linear layers are Q4_1 (blocks of 32: ``w = d * q + m``,
``q`` in 0..15) and whose embedding is Q8_0 (``w = d * q``, ``q`` in -127..127); the fp32 model is their exact
dequantization. :mod:`agent.generation.packing` recovers those blocks bit for bit, and these kernels multiply them
by a float32 vector, accumulating in float32 — the same function as the fp32 ``nn.Linear``, up to the order of the
additions — while reading 5-8x fewer bytes than fp32 weights. (torch's own int4/int8 weight-only kernels either
round the activations to bfloat16 or have no vectorised float32 path on CPU.)

The C source below is compiled once per machine with the system C compiler (``cc``, about one second) into
``<cache>/kernels-<hash>.so`` and loaded with :mod:`ctypes`. It has AVX-512 and AVX2 paths; on a machine with
neither, or without a C compiler, :func:`load_kernels` returns None and decoding uses the float32 weights.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

log = logging.getLogger(__name__)

SOURCE = r"""
#include <stdint.h>
#include <immintrin.h>

int simd_level(void) {
#if defined(__AVX512F__) && defined(__AVX512BW__)
    return 512;
#elif defined(__AVX2__) && defined(__FMA__)
    return 256;
#else
    return 0;
#endif
}

#if defined(__AVX2__) && defined(__FMA__)
static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}
#endif

/* y[n] = sum_k W[n,k] x[k] with W[n, 32b + j] = d[n,b] * q + m[n,b]; q is the low nibble of byte 16b + j
   for j < 16 and the high nibble of byte 16b + j - 16 otherwise; dm holds (d, m) pairs per row and block. */
void q4_gemv(const uint8_t *qs, const float *dm, const float *x, float *y, int n_rows, int k) {
    int nb = k / 32;
    float xs[nb];
    for (int b = 0; b < nb; b++) { float s = 0; for (int j = 0; j < 32; j++) s += x[32 * b + j]; xs[b] = s; }
    for (int n = 0; n < n_rows; n++) {
        const uint8_t *p = qs + (size_t)n * nb * 16;
        const float *r = dm + (size_t)n * nb * 2;
        float macc = 0;
#if defined(__AVX512F__) && defined(__AVX512BW__)
        const __m128i low = _mm_set1_epi8(0x0F);
        __m512 acc = _mm512_setzero_ps();
        for (int b = 0; b < nb; b++) {
            __m128i v = _mm_loadu_si128((const __m128i *)(p + 16 * b));
            __m512 flo = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(v, low)));
            __m512 fhi = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(v, 4), low)));
            __m512 t = _mm512_mul_ps(flo, _mm512_loadu_ps(x + 32 * b));
            t = _mm512_fmadd_ps(fhi, _mm512_loadu_ps(x + 32 * b + 16), t);
            acc = _mm512_fmadd_ps(_mm512_set1_ps(r[2 * b]), t, acc);
            macc += r[2 * b + 1] * xs[b];
        }
        y[n] = _mm512_reduce_add_ps(acc) + macc;
#elif defined(__AVX2__) && defined(__FMA__)
        const __m128i low = _mm_set1_epi8(0x0F);
        __m256 acc = _mm256_setzero_ps();
        for (int b = 0; b < nb; b++) {
            __m128i v = _mm_loadu_si128((const __m128i *)(p + 16 * b));
            __m128i lo = _mm_and_si128(v, low), hi = _mm_and_si128(_mm_srli_epi16(v, 4), low);
            const float *xb = x + 32 * b;
            __m256 t = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo)), _mm256_loadu_ps(xb));
            t = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8))), _mm256_loadu_ps(xb + 8), t);
            t = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi)), _mm256_loadu_ps(xb + 16), t);
            t = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8))), _mm256_loadu_ps(xb + 24), t);
            acc = _mm256_fmadd_ps(_mm256_set1_ps(r[2 * b]), t, acc);
            macc += r[2 * b + 1] * xs[b];
        }
        y[n] = hsum256(acc) + macc;
#endif
    }
}

/* y[n] = sum_k W[n,k] x[k] with W[n, 32b + j] = d[n,b] * q[n, 32b + j] (int8). */
void q8_gemv(const int8_t *q, const float *d, const float *x, float *y, int n_rows, int k) {
    int nb = k / 32;
    for (int n = 0; n < n_rows; n++) {
        const int8_t *p = q + (size_t)n * k;
        const float *r = d + (size_t)n * nb;
#if defined(__AVX512F__) && defined(__AVX512BW__)
        __m512 acc = _mm512_setzero_ps();
        for (int b = 0; b < nb; b++) {
            __m512 f0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(p + 32 * b))));
            __m512 f1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(p + 32 * b + 16))));
            __m512 t = _mm512_mul_ps(f0, _mm512_loadu_ps(x + 32 * b));
            t = _mm512_fmadd_ps(f1, _mm512_loadu_ps(x + 32 * b + 16), t);
            acc = _mm512_fmadd_ps(_mm512_set1_ps(r[b]), t, acc);
        }
        y[n] = _mm512_reduce_add_ps(acc);
#elif defined(__AVX2__) && defined(__FMA__)
        __m256 acc = _mm256_setzero_ps();
        for (int b = 0; b < nb; b++) {
            __m256 t = _mm256_setzero_ps();
            for (int c = 0; c < 4; c++) {
                __m128i v = _mm_loadl_epi64((const __m128i *)(p + 32 * b + 8 * c));
                t = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)), _mm256_loadu_ps(x + 32 * b + 8 * c), t);
            }
            acc = _mm256_fmadd_ps(_mm256_set1_ps(r[b]), t, acc);
        }
        y[n] = hsum256(acc);
#endif
    }
}

/* ---- one whole decode step of a Llama/Qwen2 decoder stack (all projections packed Q4_1) ---- */
#include <math.h>

static float dotf(const float *a, const float *b, int n) {
    int i = 0;
    float s = 0;
#if defined(__AVX512F__)
    __m512 acc = _mm512_setzero_ps();
    for (; i + 16 <= n; i += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc);
    s = _mm512_reduce_add_ps(acc);
#elif defined(__AVX2__) && defined(__FMA__)
    __m256 acc = _mm256_setzero_ps();
    for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
    s = hsum256(acc);
#endif
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

typedef struct { const uint8_t *q; const float *s, *bias, *down, *up; int n, k, r; } proj_t;
typedef struct { const float *norm_in, *norm_post; proj_t qkv, o, gate_up, down; float *keys, *values; } layer_t;
typedef struct { int n_layers, hidden, n_heads, n_kv, hd, inter, total; float eps, scale; } dims_t;

/* y = W x + bias + up (down x): the packed base, its bias, the unmerged LoRA (tmp: r floats). */
static void project(const proj_t *p, const float *x, float *y, float *tmp) {
    q4_gemv(p->q, p->s, x, y, p->n, p->k);
    if (p->bias) for (int i = 0; i < p->n; i++) y[i] += p->bias[i];
    if (p->r) {
        for (int j = 0; j < p->r; j++) tmp[j] = dotf(p->down + (size_t)j * p->k, x, p->k);
        for (int i = 0; i < p->n; i++) y[i] += dotf(p->up + (size_t)i * p->r, tmp, p->r);
    }
}

static void rmsnorm(const float *x, const float *w, float *out, int n, float eps) {
    float ss = 0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    float r = 1.0f / sqrtf(ss / n + eps);
    for (int i = 0; i < n; i++) out[i] = w[i] * (x[i] * r);
}

/* rotate-half RoPE of one head in place; cos/sin (hd,) of this position */
static void rope(float *v, const float *cs, const float *sn, int hd) {
    int half = hd / 2;
    for (int i = 0; i < half; i++) {
        float a = v[i], b = v[i + half];
        v[i] = a * cs[i] - b * sn[i];
        v[i + half] = b * cs[i + half] + a * sn[i + half];
    }
}

/* x (hidden,): the residual stream of the token at position pos, through all layers (in place). */
void decode_layers(const dims_t *d, const layer_t *layers, float *x, int pos, const float *cs, const float *sn,
                   float *scratch) {
    int hd = d->hd, nq = d->n_heads * hd, nk = d->n_kv * hd, group = d->n_heads / d->n_kv, len = pos + 1;
    float *h = scratch, *y = h + d->hidden, *att = y + nq + 2 * nk, *sc = att + nq, *gu = sc + d->total;
    float *out = gu + 2 * d->inter, *tmp = out + d->hidden;
    for (int l = 0; l < d->n_layers; l++) {
        const layer_t *L = layers + l;
        rmsnorm(x, L->norm_in, h, d->hidden, d->eps);
        project(&L->qkv, h, y, tmp);
        for (int j = 0; j < d->n_heads + d->n_kv; j++) rope(y + j * hd, cs, sn, hd);
        for (int j = 0; j < d->n_kv; j++) {
            for (int i = 0; i < hd; i++) {
                L->keys[((size_t)j * d->total + pos) * hd + i] = y[nq + j * hd + i];
                L->values[((size_t)j * d->total + pos) * hd + i] = y[nq + nk + j * hd + i];
            }
        }
        for (int qh = 0; qh < d->n_heads; qh++) {
            const float *q = y + qh * hd;
            const float *K = L->keys + (size_t)(qh / group) * d->total * hd;
            const float *V = L->values + (size_t)(qh / group) * d->total * hd;
            float mx = -INFINITY, sum = 0;
            for (int t = 0; t < len; t++) { sc[t] = dotf(q, K + (size_t)t * hd, hd) * d->scale; if (sc[t] > mx) mx = sc[t]; }
            for (int t = 0; t < len; t++) { sc[t] = expf(sc[t] - mx); sum += sc[t]; }
            float *o = att + qh * hd;
            for (int i = 0; i < hd; i++) o[i] = 0;
            for (int t = 0; t < len; t++) {
                float p = sc[t] / sum;
                const float *v = V + (size_t)t * hd;
                for (int i = 0; i < hd; i++) o[i] += p * v[i];
            }
        }
        project(&L->o, att, out, tmp);
        for (int i = 0; i < d->hidden; i++) x[i] += out[i];
        rmsnorm(x, L->norm_post, h, d->hidden, d->eps);
        project(&L->gate_up, h, gu, tmp);
        for (int i = 0; i < d->inter; i++) { float g = gu[i]; gu[i] = g / (1.0f + expf(-g)) * gu[d->inter + i]; }
        project(&L->down, gu, out, tmp);
        for (int i = 0; i < d->hidden; i++) x[i] += out[i];
    }
}
"""

_lock = threading.Lock()
_loaded: dict[str, ctypes.CDLL | None] = {}


def default_cache_dir() -> Path:
    """Where compiled kernels are kept: ``$MOMENTS_HOME/kernels`` (default ``~/.cache/moments/kernels``)."""
    return Path(os.environ.get("MOMENTS_HOME", "~/.cache/moments")).expanduser() / "kernels"


def _cpu_key() -> str:
    """The compiled file is built with ``-march=native``: key it by this CPU (model name and flags)."""
    info = ""
    try:
        info = "\n".join(line for line in Path("/proc/cpuinfo").read_text().splitlines()
                         if line.startswith(("model name", "flags")))[:4000]
    except OSError:
        pass
    return hashlib.sha256(f"{platform.machine()}\n{info}\n{SOURCE}".encode()).hexdigest()[:16]


#: Target flags: ``native`` (this CPU: AVX-512 where it has it) or ``avx2`` (the AVX2 path, for tests).
MARCH = {"native": ("-march=native",), "avx2": ("-mavx2", "-mfma")}


def _compile(target: Path, march: str = "native") -> bool:
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        log.warning("no C compiler (cc) found: packed-weight decoding is off, decoding uses fp32 weights "
                    "(install gcc to enable it)")
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        src, out = Path(tmp) / "kernels.c", Path(tmp) / "kernels.so"
        src.write_text(SOURCE)
        cmd = [compiler, "-O3", *MARCH[march], "-shared", "-fPIC", "-o", str(out), str(src)]
        try:
            proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.SubprocessError) as exc:
            log.warning("compiling the decode kernels failed (%s): decoding uses fp32 weights", exc)
            return False
        if proc.returncode != 0:
            log.warning("compiling the decode kernels failed (%s): decoding uses fp32 weights", proc.stderr[-400:])
            return False
        os.replace(out, target)  # atomic: another process never loads a half-written file
    return True


def load_kernels(cache_dir: Path | None = None, march: str = "native") -> ctypes.CDLL | None:
    """The compiled kernels (compiled on first use), or None when this machine cannot run them."""
    target = (cache_dir or default_cache_dir()) / f"kernels-{march}-{_cpu_key()}.so"
    with _lock:
        if str(target) in _loaded:
            return _loaded[str(target)]
        lib = None
        if target.is_file() or _compile(target, march):
            lib = ctypes.CDLL(str(target))
            lib.simd_level.restype = ctypes.c_int
            for fn in (lib.q4_gemv, lib.q8_gemv):
                fn.restype = None
                fn.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int, ctypes.c_int]
            lib.decode_layers.restype = None
            lib.decode_layers.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_int] + [ctypes.c_void_p] * 3
            if lib.simd_level() == 0:
                log.warning("this CPU has neither AVX-512 nor AVX2: decoding uses fp32 weights")
                lib = None
        _loaded[str(target)] = lib
        return lib
