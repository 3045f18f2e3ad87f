/*
 * golden_check.c -- a plain C99 port of tmac's table-lookup matmul, checked against the golden
 * files written by `tmac golden export DIR`.
 *
 *   build:  cc -std=c99 -O2 -ffp-contract=off -o golden_check golden_check.c -lm
 *   run:    ./golden_check DIR            (reads DIR/INDEX.txt, one case file per line)
 *           ./golden_check DIR FILE...    (only these case files of DIR)
 *
 * For every case it reads the inputs (quantize.codes/scales/zeros -- or affine.offsets for the
 * affine form, w = scale * code + offset --, input.x) and the parameters
 * (safetensors __metadata__), recomputes every stage from docs/numerics.md with its own code --
 * blocks, padding, bit planes, table indices, the packed kernel layout, mirrored float tables,
 * int8 table quantization, lookup, shift-accumulate, the float epilogue, and the
 * dequantize-then-multiply baseline -- and compares each with the file's tensor by the rule in
 * the metadata ("compare.<tensor>": "exact" = integers equal, floats equal bit for bit).
 * It prints one PASS/FAIL line per case; a failure names the tensor, the first differing index
 * and both values. Exit status: 0 all passed, 1 a case failed, 2 unusable input.
 *
 * Floats: IEEE binary32, round to nearest even, no fused multiply-add (hence -ffp-contract=off;
 * x86-64 and AArch64 evaluate float in float, FLT_EVAL_METHOD 0). Every sum runs from 0.0 in
 * increasing index. Nothing here depends on the host byte order: the file is little-endian and
 * is decoded byte by byte.
 *
 * The reader trusts nothing: header length, offsets and shapes are checked against the file
 * size, and the case parameters against the tensor shapes, before any array is indexed.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TENSORS 64
#define MAX_META 128
#define MAX_NAME 128
#define MAX_DIMS 8
#define MAX_FILE_BYTES (256u << 20)
#define MAX_HEADER_BYTES (1u << 20)

/* ---- the safetensors container ------------------------------------------------------------ */

typedef struct {
    char name[MAX_NAME];
    char dtype[8];
    int ndim;
    uint64_t shape[MAX_DIMS];
    uint64_t begin, end; /* relative to the data region */
} Tensor;

typedef struct {
    char key[MAX_NAME];
    char value[MAX_NAME];
} Meta;

typedef struct {
    unsigned char *bytes; /* the whole file */
    size_t size;
    const unsigned char *data; /* the data region */
    size_t data_size;
    Tensor tensors[MAX_TENSORS];
    int n_tensors;
    Meta meta[MAX_META];
    int n_meta;
    char error[256];
} File;

typedef struct { /* a tiny JSON cursor over the header */
    const char *p, *end;
    char *error;
} Cursor;

static int fail(Cursor *c, const char *what) {
    if (!c->error[0]) snprintf(c->error, 256, "header: %s at byte %ld", what, (long)(c->end - c->p));
    return 0;
}

static void skip_ws(Cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\n' || *c->p == '\r' || *c->p == '\t')) c->p++;
}

static int expect(Cursor *c, char ch) {
    skip_ws(c);
    if (c->p >= c->end || *c->p != ch) return fail(c, "unexpected character");
    c->p++;
    return 1;
}

/* A JSON string into out (at most cap - 1 bytes; \uXXXX outside ASCII becomes '?'). */
static int parse_string(Cursor *c, char *out, size_t cap) {
    size_t n = 0;
    if (!expect(c, '"')) return 0;
    while (c->p < c->end && *c->p != '"') {
        char ch = *c->p++;
        if ((unsigned char)ch < 0x20) return fail(c, "control character in string");
        if (ch == '\\') {
            if (c->p >= c->end) return fail(c, "unterminated escape");
            ch = *c->p++;
            switch (ch) {
            case 'n': ch = '\n'; break;
            case 't': ch = '\t'; break;
            case 'r': ch = '\r'; break;
            case 'b': ch = '\b'; break;
            case 'f': ch = '\f'; break;
            case '"': case '\\': case '/': break;
            case 'u': {
                unsigned v = 0;
                for (int i = 0; i < 4; i++) {
                    if (c->p >= c->end) return fail(c, "short \\u escape");
                    char h = *c->p++;
                    v = v * 16 + (unsigned)(h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10
                                            : h >= 'A' && h <= 'F' ? h - 'A' + 10 : 99);
                    if (v > 0xFFFF) return fail(c, "bad \\u escape");
                }
                ch = v < 0x80 ? (char)v : '?';
                break;
            }
            default: return fail(c, "bad escape");
            }
        }
        if (n + 1 >= cap) return fail(c, "string too long");
        out[n++] = ch;
    }
    if (c->p >= c->end) return fail(c, "unterminated string");
    c->p++;
    out[n] = 0;
    return 1;
}

/* A non-negative JSON integer below 2^53. */
static int parse_uint(Cursor *c, uint64_t *out) {
    skip_ws(c);
    uint64_t v = 0;
    int digits = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        v = v * 10 + (uint64_t)(*c->p++ - '0');
        if (++digits > 15) return fail(c, "integer too large");
    }
    if (!digits) return fail(c, "expected a non-negative integer");
    *out = v;
    return 1;
}

/* [int, int, ...] with at most cap elements. */
static int parse_uint_array(Cursor *c, uint64_t *out, int cap, int *count) {
    *count = 0;
    if (!expect(c, '[')) return 0;
    skip_ws(c);
    if (c->p < c->end && *c->p == ']') { c->p++; return 1; }
    for (;;) {
        if (*count >= cap) return fail(c, "array too long");
        if (!parse_uint(c, &out[(*count)++])) return 0;
        skip_ws(c);
        if (c->p < c->end && *c->p == ',') { c->p++; continue; }
        return expect(c, ']');
    }
}

static int parse_tensor(Cursor *c, Tensor *t) {
    int seen = 0, count;
    char key[32];
    uint64_t offsets[2];
    if (!expect(c, '{')) return 0;
    for (;;) {
        if (!parse_string(c, key, sizeof key) || !expect(c, ':')) return 0;
        if (!strcmp(key, "dtype")) {
            if (!parse_string(c, t->dtype, sizeof t->dtype)) return 0;
            seen |= 1;
        } else if (!strcmp(key, "shape")) {
            if (!parse_uint_array(c, t->shape, MAX_DIMS, &t->ndim)) return 0;
            seen |= 2;
        } else if (!strcmp(key, "data_offsets")) {
            if (!parse_uint_array(c, offsets, 2, &count)) return 0;
            if (count != 2 || offsets[0] > offsets[1]) return fail(c, "data_offsets must be [begin, end]");
            t->begin = offsets[0];
            t->end = offsets[1];
            seen |= 4;
        } else {
            return fail(c, "unknown key in a tensor entry");
        }
        skip_ws(c);
        if (c->p < c->end && *c->p == ',') { c->p++; continue; }
        if (!expect(c, '}')) return 0;
        return seen == 7 ? 1 : fail(c, "tensor entry lacks dtype, shape or data_offsets");
    }
}

static int parse_metadata(Cursor *c, File *f) {
    if (!expect(c, '{')) return 0;
    skip_ws(c);
    if (c->p < c->end && *c->p == '}') { c->p++; return 1; }
    for (;;) {
        if (f->n_meta >= MAX_META) return fail(c, "too many metadata entries");
        Meta *m = &f->meta[f->n_meta++];
        if (!parse_string(c, m->key, sizeof m->key) || !expect(c, ':')
            || !parse_string(c, m->value, sizeof m->value)) return 0;
        skip_ws(c);
        if (c->p < c->end && *c->p == ',') { c->p++; continue; }
        return expect(c, '}');
    }
}

static size_t dtype_size(const char *dtype) {
    if (!strcmp(dtype, "U8") || !strcmp(dtype, "I8")) return 1;
    if (!strcmp(dtype, "U16") || !strcmp(dtype, "I16")) return 2;
    if (!strcmp(dtype, "U32") || !strcmp(dtype, "I32") || !strcmp(dtype, "F32")) return 4;
    return 0;
}

static int parse_header(File *f, const char *text, size_t len) {
    Cursor cur = {text, text + len, f->error}, *c = &cur;
    char key[MAX_NAME];
    if (!expect(c, '{')) return 0;
    skip_ws(c);
    if (c->p < c->end && *c->p == '}') c->p++;
    else for (;;) {
        if (!parse_string(c, key, sizeof key) || !expect(c, ':')) return 0;
        if (!strcmp(key, "__metadata__")) {
            if (!parse_metadata(c, f)) return 0;
        } else {
            if (f->n_tensors >= MAX_TENSORS) return fail(c, "too many tensors");
            Tensor *t = &f->tensors[f->n_tensors++];
            memset(t, 0, sizeof *t);
            strcpy(t->name, key);
            if (!parse_tensor(c, t)) return 0;
        }
        skip_ws(c);
        if (c->p < c->end && *c->p == ',') { c->p++; continue; }
        if (!expect(c, '}')) return 0;
        break;
    }
    skip_ws(c);
    if (c->p != c->end) return fail(c, "trailing bytes after the header object");
    /* every tensor: known dtype, size = prod(shape) * itemsize, inside the data region */
    for (int i = 0; i < f->n_tensors; i++) {
        Tensor *t = &f->tensors[i];
        size_t item = dtype_size(t->dtype);
        uint64_t n = item;
        if (!item) { snprintf(f->error, 256, "tensor %s: unknown dtype %s", t->name, t->dtype); return 0; }
        for (int d = 0; d < t->ndim; d++) {
            if (t->shape[d] && n > UINT64_C(1) << 40) { n = UINT64_MAX; break; }
            n *= t->shape[d];
        }
        if (t->end - t->begin != n || t->end > f->data_size) {
            snprintf(f->error, 256, "tensor %s: data_offsets [%llu, %llu] do not match its shape "
                     "or run past the %llu-byte data region", t->name, (unsigned long long)t->begin,
                     (unsigned long long)t->end, (unsigned long long)f->data_size);
            return 0;
        }
        for (int j = 0; j < i; j++)
            if (!strcmp(f->tensors[j].name, t->name)) {
                snprintf(f->error, 256, "tensor %s: duplicate name", t->name);
                return 0;
            }
    }
    return 1;
}

static uint64_t le64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static int read_file(const char *path, File *f) {
    memset(f, 0, sizeof *f);
    FILE *fp = fopen(path, "rb");
    if (!fp) { snprintf(f->error, 256, "cannot open"); return 0; }
    long size = (fseek(fp, 0, SEEK_END) == 0) ? ftell(fp) : -1;
    if (size < 0 || (unsigned long)size > MAX_FILE_BYTES) {
        snprintf(f->error, 256, "cannot size the file or it exceeds %u bytes", MAX_FILE_BYTES);
        fclose(fp);
        return 0;
    }
    rewind(fp);
    f->size = (size_t)size;
    f->bytes = malloc(f->size ? f->size : 1);
    if (!f->bytes || fread(f->bytes, 1, f->size, fp) != f->size) {
        snprintf(f->error, 256, "cannot read");
        fclose(fp);
        return 0;
    }
    fclose(fp);
    if (f->size < 8) { snprintf(f->error, 256, "truncated: %zu bytes", f->size); return 0; }
    uint64_t header_len = le64(f->bytes);
    if (header_len > MAX_HEADER_BYTES || header_len > f->size - 8) {
        snprintf(f->error, 256, "header length %llu is too large for a %zu-byte file",
                 (unsigned long long)header_len, f->size);
        return 0;
    }
    f->data = f->bytes + 8 + header_len;
    f->data_size = f->size - 8 - (size_t)header_len;
    return parse_header(f, (const char *)f->bytes + 8, (size_t)header_len);
}

static const char *meta(const File *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (!strcmp(f->meta[i].key, key)) return f->meta[i].value;
    return NULL;
}

static const Tensor *find(const File *f, const char *name) {
    for (int i = 0; i < f->n_tensors; i++)
        if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}

/* ---- element access (little-endian, independent of the host) ------------------------------ */

static uint32_t le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static float f32_of_bits(uint32_t u) { float v; memcpy(&v, &u, 4); return v; }
static uint32_t bits_of_f32(float v) { uint32_t u; memcpy(&u, &v, 4); return u; }

/* Element i of a tensor as raw bits (U8/I8: the byte, I32/F32: the 32-bit pattern). */
static uint32_t raw(const File *f, const Tensor *t, size_t i) {
    const unsigned char *p = f->data + t->begin;
    size_t item = dtype_size(t->dtype);
    if (item == 1) return p[i];
    if (item == 2) return (uint32_t)p[2 * i] | (uint32_t)p[2 * i + 1] << 8;
    return le32(p + 4 * i);
}

/* A required input tensor with exactly this dtype and shape; NULL (and a message) otherwise. */
static const Tensor *input(const File *f, const char *name, const char *dtype, int ndim,
                           const uint64_t *shape, char *why) {
    const Tensor *t = find(f, name);
    if (!t) { snprintf(why, 256, "input %s missing", name); return NULL; }
    int ok = !strcmp(t->dtype, dtype) && t->ndim == ndim;
    for (int d = 0; ok && d < ndim; d++) ok = t->shape[d] == shape[d];
    if (!ok) { snprintf(why, 256, "input %s has the wrong dtype or shape", name); return NULL; }
    return t;
}

/* ---- comparison by the manifest's rule ---------------------------------------------------- */

typedef struct {
    const File *f;
    const char *case_name;
    int checked, failed;
} Check;

/* Compare `count` computed values (raw bits as above) with the file's tensor `name`. */
static void compare(Check *k, const char *name, const char *dtype, int ndim, const uint64_t *shape,
                    const uint32_t *got) {
    char key[MAX_NAME + 16];
    const Tensor *t = find(k->f, name);
    snprintf(key, sizeof key, "compare.%s", name);
    const char *rule = meta(k->f, key);
    if (!t) { printf("  %s: tensor %s missing from the file\n", k->case_name, name); k->failed++; return; }
    int ok = !strcmp(t->dtype, dtype) && t->ndim == ndim;
    uint64_t count = 1;
    for (int d = 0; d < ndim; d++) { ok = ok && t->shape[d] == shape[d]; count *= shape[d]; }
    if (!ok) { printf("  %s: tensor %s: dtype or shape differs\n", k->case_name, name); k->failed++; return; }
    if (!rule || strcmp(rule, "exact")) {
        printf("  %s: tensor %s: unknown compare rule %s\n", k->case_name, name, rule ? rule : "(none)");
        k->failed++;
        return;
    }
    k->checked++;
    for (uint64_t i = 0; i < count; i++) {
        uint32_t want = raw(k->f, t, (size_t)i), have = got[i];
        if (!strcmp(dtype, "I8")) have &= 0xFF;
        if (want == have) continue;
        char idx[160] = "";
        uint64_t digits[MAX_DIMS], rest = i;
        for (int d = ndim - 1; d >= 0; d--) { digits[d] = rest % shape[d]; rest /= shape[d]; }
        for (int d = 0; d < ndim; d++)     /* flat index -> "i0, i1, ..." */
            snprintf(idx + strlen(idx), sizeof idx - strlen(idx), "%s%llu", d ? ", " : "",
                     (unsigned long long)digits[d]);
        if (!strcmp(dtype, "F32"))
            printf("  %s: tensor %s: first difference at [%s]: expected %.9g (0x%08x), got %.9g (0x%08x)\n",
                   k->case_name, name, idx, f32_of_bits(want), want, f32_of_bits(have), have);
        else if (!strcmp(dtype, "I8") || !strcmp(dtype, "I32"))
            printf("  %s: tensor %s: first difference at [%s]: expected %ld, got %ld\n", k->case_name, name,
                   idx, (long)(!strcmp(dtype, "I8") ? (int8_t)want : (int32_t)want),
                   (long)(!strcmp(dtype, "I8") ? (int8_t)have : (int32_t)have));
        else
            printf("  %s: tensor %s: first difference at [%s]: expected %lu, got %lu\n", k->case_name, name,
                   idx, (unsigned long)want, (unsigned long)have);
        k->failed++;
        return;
    }
}

static void compare_f32(Check *k, const char *name, int ndim, const uint64_t *shape, const float *v, size_t n) {
    uint32_t *bits = malloc((n ? n : 1) * sizeof *bits);
    for (size_t i = 0; i < n; i++) bits[i] = bits_of_f32(v[i]);
    compare(k, name, "F32", ndim, shape, bits);
    free(bits);
}

static void compare_int(Check *k, const char *name, const char *dtype, int ndim, const uint64_t *shape,
                        const int32_t *v, size_t n) {
    uint32_t *bits = malloc((n ? n : 1) * sizeof *bits);
    for (size_t i = 0; i < n; i++) bits[i] = (uint32_t)v[i];
    compare(k, name, dtype, ndim, shape, bits);
    free(bits);
}

/* ---- the port: docs/numerics.md, plainly ------------------------------------------------- */

static int meta_int(const File *f, const char *key, long lo, long hi, long *out) {
    const char *s = meta(f, key);
    char *end;
    if (!s) return 0;
    long v = strtol(s, &end, 10);
    if (*end || end == s || v < lo || v > hi) return 0;
    *out = v;
    return 1;
}

#define AT3(a, d1, d2, i, j, l) a[((size_t)(i) * (d1) + (j)) * (d2) + (l)]

typedef struct {        /* a case's parameters, checked against its tensors */
    long bits, M, K, N, W, A;
    const char *lut, *scheme, *name;
} Params;

/* Every stage of the lookup path (docs/numerics.md), from padded codes (M x Kp) and x (N x Kp). */
static void check_lut(Check *k, const Params *p, const uint8_t *codes, const float *x,
                      const float *scale, const float *zero, int affine) {
    const long bits = p->bits, M = p->M, K = p->K, N = p->N, W = p->W, A = p->A;
    const char *lut = p->lut;
    long Kp = (K + 3) / 4 * 4, G = Kp / 4;
    long NG = K / W, Weff = W < K ? W : Kp, Aeff = A < Kp ? A : Kp;
    long B = Weff < Aeff ? Weff : Aeff;
    long nb = (Kp + B - 1) / B, nA = (G - 1) * 4 / A + 1;
    uint64_t s_mk[] = {M, K}, s_mg[] = {M, NG};
    size_t m_, n_, k_, g, b, i, j;
    int32_t *bstart = malloc(nb * sizeof(int32_t)), *bstop = malloc(nb * sizeof(int32_t));
    int32_t *bwg = malloc(nb * sizeof(int32_t)), *bag = malloc(nb * sizeof(int32_t));
    for (b = 0; b < (size_t)nb; b++) {
        bstart[b] = (int32_t)(b * B);
        bstop[b] = (int32_t)((b + 1) * B < (size_t)Kp ? (b + 1) * B : (size_t)Kp);
        bwg[b] = (int32_t)(b * B / Weff);
        bag[b] = (int32_t)(b * B / Aeff);
    }
    uint64_t s_b[] = {nb};
    compare_int(k, "blocks.start", "I32", 1, s_b, bstart, nb);
    compare_int(k, "blocks.stop", "I32", 1, s_b, bstop, nb);
    compare_int(k, "blocks.weight_group", "I32", 1, s_b, bwg, nb);
    compare_int(k, "blocks.act_group", "I32", 1, s_b, bag, nb);
    uint64_t s_nkp[] = {N, Kp};
    compare_f32(k, "pad.x", 2, s_nkp, x, (size_t)N * Kp);

    /* bit planes and table indices: idx_i(m, g) = sum_t bit_i(codes[m, 4g + t]) << t */
    int32_t *planes = malloc((size_t)bits * M * Kp * sizeof(int32_t));
    int32_t *idx = malloc((size_t)bits * M * G * sizeof(int32_t));
    for (i = 0; i < (size_t)bits; i++)
        for (m_ = 0; m_ < (size_t)M; m_++) {
            for (k_ = 0; k_ < (size_t)Kp; k_++) AT3(planes, M, Kp, i, m_, k_) = codes[m_ * Kp + k_] >> i & 1;
            for (g = 0; g < (size_t)G; g++) {
                int v = 0;
                for (int t = 0; t < 4; t++) v |= (codes[m_ * Kp + 4 * g + t] >> i & 1) << t;
                AT3(idx, M, G, i, m_, g) = v;
            }
        }
    uint64_t s_pl[] = {bits, M, Kp}, s_ix[] = {bits, M, G};
    compare_int(k, "bitplanes.planes", "U8", 3, s_pl, planes, (size_t)bits * M * Kp);
    compare_int(k, "bitplanes.indices", "U8", 3, s_ix, idx, (size_t)bits * M * G);

    /* the kernel layout: data[R][u][i][s][4r + q], low nibble row 64R+32s+r, high +16 */
    long Mt = (M + 63) / 64, U = (K + 15) / 16;
    size_t n_packed = (size_t)Mt * U * bits * 2 * 64;
    int32_t *packed = malloc(n_packed * sizeof(int32_t));
    size_t o = 0;
    for (long R = 0; R < Mt; R++)
        for (long u = 0; u < U; u++)
            for (i = 0; i < (size_t)bits; i++)
                for (int s = 0; s < 2; s++)
                    for (int r = 0; r < 16; r++)
                        for (int q = 0; q < 4; q++) {
                            long lo_row = 64 * R + 32 * s + r, hi_row = lo_row + 16, gg = 4 * u + q;
                            int lo = lo_row < M && gg < G ? AT3(idx, M, G, i, lo_row, gg) : 0;
                            int hi = hi_row < M && gg < G ? AT3(idx, M, G, i, hi_row, gg) : 0;
                            packed[o++] = lo | hi << 4;
                        }
    uint64_t s_pk[] = {Mt, U, bits, 2, 64};
    compare_int(k, "layout.packed", "U8", 5, s_pk, packed, n_packed);

    /* mirrored float tables: odd j computed, T[15 - j] = (-T[j]) + 0.0 */
    float *T = malloc((size_t)N * G * 16 * sizeof(float));
    for (n_ = 0; n_ < (size_t)N; n_++)
        for (g = 0; g < (size_t)G; g++) {
            const float *xq = &x[n_ * Kp + 4 * g];
            for (j = 1; j < 16; j += 2) {
                float e = (j & 1 ? 1.0f : -1.0f) * xq[0];
                e = e + (j & 2 ? 1.0f : -1.0f) * xq[1];
                e = e + (j & 4 ? 1.0f : -1.0f) * xq[2];
                e = e + (j & 8 ? 1.0f : -1.0f) * xq[3];
                e = e + 0.0f;
                AT3(T, G, 16, n_, g, j) = e;
                AT3(T, G, 16, n_, g, 15 - j) = (-e) + 0.0f;
            }
        }
    uint64_t s_t[] = {N, G, 16};
    compare_f32(k, "tables.float", 3, s_t, T, (size_t)N * G * 16);

    float *lutv = malloc((size_t)N * M * nb * sizeof(float));
    if (!strcmp(lut, "int8")) {
        float *tsc = malloc((size_t)N * nA * sizeof(float)), *tinv = malloc((size_t)N * nA * sizeof(float));
        int32_t *qT = malloc((size_t)N * G * 16 * sizeof(int32_t));
        for (n_ = 0; n_ < (size_t)N; n_++) {
            for (long a = 0; a < nA; a++) {
                float best = 0.0f;
                for (g = 0; g < (size_t)G; g++) {
                    if ((long)(4 * g) / A != a) continue;
                    const float *xq = &x[n_ * Kp + 4 * g];
                    float s = ((fabsf(xq[0]) + fabsf(xq[1])) + fabsf(xq[2])) + fabsf(xq[3]);
                    if (s > best) best = s;
                }
                tsc[n_ * nA + a] = best / 127.0f;
                tinv[n_ * nA + a] = tsc[n_ * nA + a] > 0.0f ? 1.0f / tsc[n_ * nA + a] : 0.0f;
            }
            for (g = 0; g < (size_t)G; g++)
                for (j = 0; j < 16; j++) {
                    float v = rintf(AT3(T, G, 16, n_, g, j) * tinv[n_ * nA + 4 * g / A]);
                    AT3(qT, G, 16, n_, g, j) = (int32_t)(v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v);
                }
        }
        uint64_t s_ts[] = {N, nA};
        compare_f32(k, "tables.scales", 2, s_ts, tsc, (size_t)N * nA);
        compare_f32(k, "tables.inv_scales", 2, s_ts, tinv, (size_t)N * nA);
        compare_int(k, "tables.int8", "I8", 3, s_t, qT, (size_t)N * G * 16);
        /* lookup, per-plane integer sums S_i, shift-accumulate P = sum_i 2^i S_i */
        int32_t *S = malloc((size_t)N * bits * M * nb * sizeof(int32_t));
        int32_t *P = malloc((size_t)N * M * nb * sizeof(int32_t));
        for (n_ = 0; n_ < (size_t)N; n_++)
            for (m_ = 0; m_ < (size_t)M; m_++)
                for (b = 0; b < (size_t)nb; b++) {
                    int32_t p = 0;
                    for (i = 0; i < (size_t)bits; i++) {
                        int32_t s = 0;
                        for (g = bstart[b] / 4; g < (size_t)bstop[b] / 4; g++)
                            s += AT3(qT, G, 16, n_, g, AT3(idx, M, G, i, m_, g));
                        S[((n_ * bits + i) * M + m_) * nb + b] = s;
                        p += s * (1 << i);
                    }
                    P[(n_ * M + m_) * nb + b] = p;
                    AT3(lutv, M, nb, n_, m_, b) = (float)p * (tsc[n_ * nA + bag[b]] * 0.5f);
                }
        uint64_t s_s[] = {N, bits, M, nb}, s_p[] = {N, M, nb};
        compare_int(k, "sums.plane_int", "I32", 4, s_s, S, (size_t)N * bits * M * nb);
        compare_int(k, "sums.combined", "I32", 3, s_p, P, (size_t)N * M * nb);
        free(tsc); free(tinv); free(qT); free(S); free(P);
    } else {
        /* float tables: F_i from 0.0 in increasing g; lut = 0.0 + F_0*0.5 + F_1*1 + F_2*2 + F_3*4 */
        float *F = malloc((size_t)N * bits * M * nb * sizeof(float));
        for (n_ = 0; n_ < (size_t)N; n_++)
            for (m_ = 0; m_ < (size_t)M; m_++)
                for (b = 0; b < (size_t)nb; b++) {
                    float l = 0.0f, w = 0.5f;
                    for (i = 0; i < (size_t)bits; i++, w *= 2.0f) {
                        float s = 0.0f;
                        for (g = bstart[b] / 4; g < (size_t)bstop[b] / 4; g++)
                            s = s + AT3(T, G, 16, n_, g, AT3(idx, M, G, i, m_, g));
                        F[((n_ * bits + i) * M + m_) * nb + b] = s;
                        l = l + s * w;
                    }
                    AT3(lutv, M, nb, n_, m_, b) = l;
                }
        uint64_t s_s[] = {N, bits, M, nb};
        compare_f32(k, "sums.plane_float", 4, s_s, F, (size_t)N * bits * M * nb);
        free(F);
    }
    uint64_t s_l[] = {N, M, nb};
    compare_f32(k, "lut.values", 3, s_l, lutv, (size_t)N * M * nb);

    /* epilogue: xsum; zero-point form: offset = c - zero, block = lut + offset * xsum,
     * y = 0 + scale * block in block order; affine form (zero holds the offsets m):
     * code_dot = lut + c * xsum, block = scale * code_dot + m * xsum, y = 0 + block */
    float *xsum = malloc((size_t)N * nb * sizeof(float)), *off = malloc((size_t)M * NG * sizeof(float));
    float *blk = malloc((size_t)N * M * nb * sizeof(float)), *y = malloc((size_t)N * M * sizeof(float));
    float *cdot = malloc((size_t)N * M * nb * sizeof(float));
    float half_range = (float)((1 << bits) - 1) / 2.0f;
    for (i = 0; i < (size_t)(M * NG); i++) off[i] = half_range - zero[i];
    for (n_ = 0; n_ < (size_t)N; n_++)
        for (b = 0; b < (size_t)nb; b++) {
            float s = 0.0f;
            for (k_ = bstart[b]; k_ < (size_t)bstop[b]; k_++) s = s + x[n_ * Kp + k_];
            xsum[n_ * nb + b] = s;
        }
    for (n_ = 0; n_ < (size_t)N; n_++)
        for (m_ = 0; m_ < (size_t)M; m_++) {
            float acc = 0.0f;
            for (b = 0; b < (size_t)nb; b++) {
                size_t gi = m_ * NG + bwg[b];
                float xs = xsum[n_ * nb + b], l = AT3(lutv, M, nb, n_, m_, b);
                if (affine) {
                    float cd = l + half_range * xs;
                    float v = scale[gi] * cd + zero[gi] * xs;
                    AT3(cdot, M, nb, n_, m_, b) = cd;
                    AT3(blk, M, nb, n_, m_, b) = v;
                    acc = acc + v;
                } else {
                    float v = l + off[gi] * xs;
                    AT3(blk, M, nb, n_, m_, b) = v;
                    acc = acc + scale[gi] * v;
                }
            }
            y[n_ * M + m_] = acc;
        }
    uint64_t s_xs[] = {N, nb}, s_y[] = {N, M};
    compare_f32(k, "epilogue.xsum", 2, s_xs, xsum, (size_t)N * nb);
    if (affine) {
        compare_f32(k, "affine.code_dot", 3, s_l, cdot, (size_t)N * M * nb);
        compare_f32(k, "affine.block", 3, s_l, blk, (size_t)N * M * nb);
    } else {
        compare_f32(k, "epilogue.offsets", 2, s_mg, off, (size_t)M * NG);
        compare_f32(k, "epilogue.block", 3, s_l, blk, (size_t)N * M * nb);
    }
    compare_f32(k, "output.lut_matmul", 2, s_y, y, (size_t)N * M);

    /* the baseline: w = (float(code) - zero) * scale, or float(code) * scale + m (affine);
     * y = sum_k w * x from 0.0 in increasing k */
    float *wd = malloc((size_t)M * K * sizeof(float));
    for (m_ = 0; m_ < (size_t)M; m_++)
        for (k_ = 0; k_ < (size_t)K; k_++) {
            size_t gi = m_ * NG + k_ / W;
            float c = (float)codes[m_ * Kp + k_];
            wd[m_ * K + k_] = affine ? c * scale[gi] + zero[gi] : (c - zero[gi]) * scale[gi];
        }
    for (n_ = 0; n_ < (size_t)N; n_++)
        for (m_ = 0; m_ < (size_t)M; m_++) {
            float acc = 0.0f;
            for (k_ = 0; k_ < (size_t)K; k_++) acc = acc + wd[m_ * K + k_] * x[n_ * Kp + k_];
            y[n_ * M + m_] = acc;
        }
    compare_f32(k, "dequantize.w", 2, s_mk, wd, (size_t)M * K);
    compare_f32(k, "output.dequant_matmul", 2, s_y, y, (size_t)N * M);
    if (find(k->f, "output.int4_dequant_matmul"))    /* the same baseline, another kernel */
        compare_f32(k, "output.int4_dequant_matmul", 2, s_y, y, (size_t)N * M);
    free(bstart); free(bstop); free(bwg); free(bag); free(planes); free(idx); free(packed);
    free(T); free(lutv); free(xsum); free(off); free(blk); free(cdot); free(y); free(wd);
}

/* M0E4: fp16 pattern 0x3C00 | q << 6, widened to float32 by the usual fp16 -> fp32 rule,
 * w = (v * a) + b (two roundings), y = sum_k w * x from 0.0 in increasing k. */
static float fp16_to_f32(uint32_t h) {  /* normal numbers only (all M0E4 values are) */
    uint32_t sign = h >> 15 & 1, exponent = h >> 10 & 31, mantissa = h & 1023;
    return f32_of_bits(sign << 31 | (exponent - 15 + 127) << 23 | mantissa << 13);
}

static void check_dequant_y(Check *k, const char *name, const float *w, const float *x,
                            long M, long K, long N, long Kp) {
    float *y = malloc((size_t)N * M * sizeof *y);
    uint64_t s_y[] = {N, M};
    for (long n = 0; n < N; n++)
        for (long m = 0; m < M; m++) {
            float acc = 0.0f;
            for (long kk = 0; kk < K; kk++) acc = acc + w[m * K + kk] * x[n * Kp + kk];
            y[n * M + m] = acc;
        }
    compare_f32(k, name, 2, s_y, y, (size_t)N * M);
    free(y);
}

static int check_m0e4(Check *k, const Params *p, const uint8_t *codes, const float *x, char *why) {
    long M = p->M, K = p->K, NG = p->K / p->W, Kp = (p->K + 3) / 4 * 4;
    uint64_t s_mg[] = {M, NG}, s_mk[] = {M, K};
    const Tensor *ta = input(k->f, "m0e4.a", "F32", 2, s_mg, why);
    const Tensor *tb = ta ? input(k->f, "m0e4.b", "F32", 2, s_mg, why) : NULL;
    if (!tb) return 0;
    int32_t *pattern = malloc((size_t)M * K * sizeof *pattern);
    float *v = malloc((size_t)M * K * sizeof *v), *w = malloc((size_t)M * K * sizeof *w);
    for (long m = 0; m < M; m++)
        for (long kk = 0; kk < K; kk++) {
            size_t e = (size_t)m * K + kk, gi = (size_t)m * NG + kk / p->W;
            pattern[e] = 0x3C00 | codes[m * Kp + kk] << 6;
            v[e] = fp16_to_f32((uint32_t)pattern[e]);
            w[e] = v[e] * f32_of_bits(raw(k->f, ta, gi)) + f32_of_bits(raw(k->f, tb, gi));
        }
    compare_int(k, "m0e4.fp16_bits", "U16", 2, s_mk, pattern, (size_t)M * K);
    compare_f32(k, "m0e4.values", 2, s_mk, v, (size_t)M * K);
    compare_f32(k, "m0e4.w", 2, s_mk, w, (size_t)M * K);
    check_dequant_y(k, "output.m0e4_dequant_matmul", w, x, M, K, p->N, Kp);
    free(pattern); free(v); free(w);
    return 1;
}

/* E2M1: code bits s ee m; e = 0: m * 0.5, else (1 + m/2) * 2^(e-1); sign bit 3 (8 is -0.0). */
static int check_e2m1(Check *k, const Params *p, const uint8_t *codes, const float *x, char *why) {
    long M = p->M, K = p->K, NG = p->K / p->W, Kp = (p->K + 3) / 4 * 4;
    uint64_t s_mg[] = {M, NG}, s_mk[] = {M, K};
    const Tensor *ts = input(k->f, "e2m1.scales", "F32", 2, s_mg, why);
    if (!ts) return 0;
    float *v = malloc((size_t)M * K * sizeof *v), *w = malloc((size_t)M * K * sizeof *w);
    for (long m = 0; m < M; m++)
        for (long kk = 0; kk < K; kk++) {
            size_t e = (size_t)m * K + kk;
            int c = codes[m * Kp + kk], ex = c >> 1 & 3, man = c & 1;
            float magnitude = ex == 0 ? man * 0.5f : (1.0f + man * 0.5f) * (float)(1 << ex) * 0.5f;
            v[e] = c & 8 ? -magnitude : magnitude;
            w[e] = v[e] * f32_of_bits(raw(k->f, ts, (size_t)m * NG + kk / p->W));
        }
    compare_f32(k, "e2m1.values", 2, s_mk, v, (size_t)M * K);
    compare_f32(k, "e2m1.w", 2, s_mk, w, (size_t)M * K);
    check_dequant_y(k, "output.e2m1_dequant_matmul", w, x, M, K, p->N, Kp);
    free(v); free(w);
    return 1;
}

static int check_case(const char *path, const char *case_label) {
    File *f = malloc(sizeof *f);
    char why[256] = "";
    Params p;
    int result = 2;
    uint8_t *codes = NULL;
    float *x = NULL, *scale = NULL, *zero = NULL;
    if (!f) return 2;
    if (!read_file(path, f)) { printf("FAIL %s: %s\n", case_label, f->error); goto out; }
    p.lut = meta(f, "lut"), p.scheme = meta(f, "scheme"), p.name = meta(f, "name");
    if (!meta_int(f, "bits", 1, 8, &p.bits) || !meta_int(f, "m", 1, 1 << 16, &p.M)
        || !meta_int(f, "k", 1, 1 << 16, &p.K) || !meta_int(f, "n", 1, 1 << 12, &p.N)
        || !meta_int(f, "group_size", 1, p.K, &p.W) || !meta_int(f, "act_group_size", 4, 1 << 16, &p.A)
        || !p.lut || (strcmp(p.lut, "int8") && strcmp(p.lut, "float32") && strcmp(p.lut, "none"))
        || !p.name || !p.scheme) {
        printf("FAIL %s: missing or invalid parameters in __metadata__\n", case_label);
        goto out;
    }
    long M = p.M, K = p.K, N = p.N, W = p.W, A = p.A, Kp = (K + 3) / 4 * 4, NG = K / W;
    long Weff = W < K ? W : Kp, Aeff = A < Kp ? A : Kp;
    long B = Weff < Aeff ? Weff : Aeff, wider = Weff < Aeff ? Aeff : Weff;
    if (K % W || A % 4 || (W < K && W % 4) || (wider % B && wider != Kp)) {
        printf("FAIL %s: group sizes do not nest (group %ld, act group %ld, K %ld)\n", case_label, W, A, K);
        goto out;
    }
    uint64_t s_mk[] = {M, K}, s_mg[] = {M, NG}, s_nk[] = {N, K};
    const Tensor *tc = input(f, "quantize.codes", "U8", 2, s_mk, why);
    const Tensor *tx = tc ? input(f, "input.x", "F32", 2, s_nk, why) : NULL;
    if (!tx) { printf("FAIL %s: %s\n", case_label, why); goto out; }
    codes = calloc((size_t)M * Kp, 1);              /* padded with code 0 */
    x = calloc((size_t)N * Kp, sizeof *x);          /* padded with 0.0 */
    for (long m = 0; m < M; m++)
        for (long kk = 0; kk < K; kk++) {
            codes[m * Kp + kk] = (uint8_t)raw(f, tc, (size_t)m * K + kk);
            if (codes[m * Kp + kk] >> p.bits) { printf("FAIL %s: a code exceeds %ld bits\n", case_label, p.bits); goto out; }
        }
    for (long n = 0; n < N; n++)
        for (long kk = 0; kk < K; kk++) x[n * Kp + kk] = f32_of_bits(raw(f, tx, (size_t)n * K + kk));

    Check chk = {f, p.name, 0, 0}, *k = &chk;
    if (strcmp(p.lut, "none")) {
        int affine = find(f, "affine.offsets") != NULL;   /* affine form: zero holds the offsets m */
        const Tensor *ts = input(f, "quantize.scales", "F32", 2, s_mg, why);
        const Tensor *tz = ts ? input(f, affine ? "affine.offsets" : "quantize.zeros", "F32", 2, s_mg, why) : NULL;
        if (!tz) { printf("FAIL %s: %s\n", case_label, why); goto out; }
        scale = malloc((size_t)M * NG * sizeof *scale);
        zero = malloc((size_t)M * NG * sizeof *zero);
        for (long i = 0; i < M * NG; i++) { scale[i] = f32_of_bits(raw(f, ts, i)); zero[i] = f32_of_bits(raw(f, tz, i)); }
        check_lut(k, &p, codes, x, scale, zero, affine);
    }
    if ((!strcmp(p.scheme, "m0e4") && !check_m0e4(k, &p, codes, x, why))
        || (!strcmp(p.scheme, "e2m1") && !check_e2m1(k, &p, codes, x, why))) {
        printf("FAIL %s: %s\n", case_label, why);
        goto out;
    }
    printf("%s %s: %d tensors checked, %d differ\n", k->failed ? "FAIL" : "PASS", p.name, k->checked, k->failed);
    result = k->failed ? 1 : 0;
out:
    free(codes); free(x); free(scale); free(zero);
    free(f->bytes);
    free(f);
    return result;
}

int main(int argc, char **argv) {
    char path[4096], line[1024];
    int worst = 0, cases = 0, failed = 0;
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR [CASE_FILE...]\n", argv[0]);
        return 2;
    }
    if (argc > 2) {
        for (int a = 2; a < argc; a++) {
            snprintf(path, sizeof path, "%s/%s", argv[1], argv[a]);
            int r = check_case(path, argv[a]);
            cases++, failed += r != 0, worst = r > worst ? r : worst;
        }
    } else {
        snprintf(path, sizeof path, "%s/INDEX.txt", argv[1]);
        FILE *index = fopen(path, "r");
        if (!index) { fprintf(stderr, "cannot open %s\n", path); return 2; }
        while (fgets(line, sizeof line, index)) {
            line[strcspn(line, "\r\n")] = 0;
            if (!line[0]) continue;
            if (strchr(line, '/') || line[0] == '.') { printf("FAIL %s: not a plain file name\n", line); worst = 2; continue; }
            snprintf(path, sizeof path, "%s/%s", argv[1], line);
            int r = check_case(path, line);
            cases++, failed += r != 0, worst = r > worst ? r : worst;
        }
        fclose(index);
    }
    printf("%d cases, %d failed\n", cases, failed);
    return cases ? worst : 2;
}
