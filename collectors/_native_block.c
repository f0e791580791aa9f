/* ClickHouse Native block encoder for collector rows: collectors/native.py documents the contract and the
 * layout and holds the reference (encode_block_py); the output must be byte-identical to it, and every
 * case the reference refuses (returns None) this one refuses too. Optional: without it the reference does
 * the work.
 *
 * encode_block(rows, spec, stamp) -> bytes | None
 *   rows: sequence of dicts; spec: tuple of (name, kind, nullable, arg, default, is_stamp, head, lc).
 *   Reads Python objects with the GIL held; no Python object is created per value. Column by column: the
 *   values of one column are gathered (borrowed references: nothing runs Python code that could drop them
 *   meanwhile), then written; a LowCardinality column's dictionary is a small open-addressing table keyed
 *   by the strings' cached hashes. Strings of DEFER_MIN bytes or more (prompts, completions) get their
 *   length and room only; their bytes, and the rest of the block, are copied into the result by
 *   finish_block(), with the GIL released for a large block (each source str held meanwhile).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "Native blocks are little-endian: this encoder copies native values (build skipped, Python fallback)"
#endif

enum { K_STR = 1, K_DT64, K_F64, K_UINT, K_INT, K_BOOL, K_ARR_STR, K_MAP_STR };

#define MAX_COLUMNS 256
#define MAX_US (INT64_MAX / 1000) /* DateTime64(9) ticks fit Int64 */

enum { LC_VALUES = 1, LC_KEYS = 2 };

typedef struct {
    PyObject *name; /* borrowed from spec */
    PyObject *dflt; /* borrowed from spec */
    const char *head; /* the column's name and type as written (borrowed bytes from spec) */
    Py_ssize_t headlen;
    int kind;
    int nullable;
    int arg;
    int is_stamp;
    int lc;
} Col;

/* A string's bytes whose copy into the block is left for later: `len` bytes of `src` (the UTF-8 of `owner`,
 * held by a strong reference meanwhile) go at offset `at` of the block. */
typedef struct {
    Py_ssize_t at, len;
    const char *src;
    PyObject *owner;
} Copy;

typedef struct {
    char *p;
    Py_ssize_t len;
    Py_ssize_t cap;
    /* deferred copies (only in the block's own buffer): strings of at least DEFER_MIN bytes are laid out
     * (length and room) while the GIL is held and copied after it is released (see finish_block) */
    int defer;
    Copy *copies;
    Py_ssize_t ncopies, capcopies, deferred;
} Buf;

#define DEFER_MIN 256
/* Below this many bytes in all, the block is finished with the GIL held: not worth a hand-over. */
#define RELEASE_BYTES (256 * 1024)

static int buf_reserve(Buf *b, Py_ssize_t extra) {
    if (b->len + extra <= b->cap)
        return 0;
    Py_ssize_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra) {
        if (cap > PY_SSIZE_T_MAX / 2) {
            PyErr_NoMemory();
            return -1;
        }
        cap *= 2;
    }
    char *p = PyMem_Realloc(b->p, (size_t)cap);
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

static inline int put_bytes(Buf *b, const void *src, Py_ssize_t n) {
    if (buf_reserve(b, n) < 0)
        return -1;
    memcpy(b->p + b->len, src, (size_t)n);
    b->len += n;
    return 0;
}

static inline int put_byte(Buf *b, unsigned char c) {
    if (buf_reserve(b, 1) < 0)
        return -1;
    b->p[b->len++] = (char)c;
    return 0;
}

static inline int put_uvarint(Buf *b, uint64_t n) {
    if (buf_reserve(b, 10) < 0)
        return -1;
    while (n >= 0x80) {
        b->p[b->len++] = (char)((n & 0x7F) | 0x80);
        n >>= 7;
    }
    b->p[b->len++] = (char)n;
    return 0;
}

/* Result codes of the value writers: 0 written, 1 refused (caller returns None), -1 Python error. */

static int put_str(Buf *b, PyObject *v) {
    if (!PyUnicode_Check(v))
        return 1;
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(v, &n);
    if (s == NULL) {
        if (PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) {
            PyErr_Clear();
            return 1;
        }
        return -1;
    }
    if (b->defer && n >= DEFER_MIN) {
        if (put_uvarint(b, (uint64_t)n) < 0 || buf_reserve(b, n) < 0)
            return -1;
        if (b->ncopies == b->capcopies) {
            Py_ssize_t cap = b->capcopies ? b->capcopies * 2 : 1024;
            Copy *c = PyMem_Realloc(b->copies, (size_t)cap * sizeof(Copy));
            if (c == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            b->copies = c;
            b->capcopies = cap;
        }
        Copy *c = &b->copies[b->ncopies++];
        c->at = b->len;
        c->len = n;
        c->src = s;
        c->owner = Py_NewRef(v);
        b->len += n; /* room only: the bytes are copied by finish_block */
        b->deferred += n;
        return 0;
    }
    if (put_uvarint(b, (uint64_t)n) < 0 || put_bytes(b, s, n) < 0)
        return -1;
    return 0;
}

static void drop_copies(Buf *b) {
    for (Py_ssize_t i = 0; i < b->ncopies; i++)
        Py_DECREF(b->copies[i].owner);
    PyMem_Free(b->copies);
    b->copies = NULL;
    b->ncopies = b->capcopies = b->deferred = 0;
}

/* The block as bytes: the laid-out buffer with the deferred strings copied into their room. The copying
 * (most of a block's bytes: prompts and completions) runs with the GIL released when there is enough of
 * it, so other request threads run meanwhile; the new bytes object is ours alone until returned, and
 * every source str is held. */
static PyObject *finish_block(Buf *b) {
    PyObject *out = PyBytes_FromStringAndSize(NULL, b->len);
    if (out == NULL) {
        drop_copies(b);
        return NULL;
    }
    char *dst = PyBytes_AS_STRING(out);
    const char *p = b->p;
    const Copy *copies = b->copies;
    Py_ssize_t n = b->ncopies, total = b->len;
    PyThreadState *ts = total >= RELEASE_BYTES ? PyEval_SaveThread() : NULL;
    Py_ssize_t done = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        const Copy *c = &copies[i];
        if (c->at > done)
            memcpy(dst + done, p + done, (size_t)(c->at - done));
        memcpy(dst + c->at, c->src, (size_t)c->len);
        done = c->at + c->len;
    }
    if (total > done)
        memcpy(dst + done, p + done, (size_t)(total - done));
    if (ts != NULL)
        PyEval_RestoreThread(ts);
    drop_copies(b);
    return out;
}

/* days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil) */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d) {
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const int64_t yoe = y - era * 400;
    const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int put_dt64(Buf *b, PyObject *v, int precision) {
    if (!PyDateTime_Check(v))
        return 1;
    PyObject *tz = PyDateTime_DATE_GET_TZINFO(v);
    if (tz != Py_None && tz != PyDateTime_TimeZone_UTC)
        return 1;
    int64_t days = days_from_civil(PyDateTime_GET_YEAR(v), PyDateTime_GET_MONTH(v), PyDateTime_GET_DAY(v));
    int64_t secs = days * 86400 + PyDateTime_DATE_GET_HOUR(v) * 3600 + PyDateTime_DATE_GET_MINUTE(v) * 60 +
                   PyDateTime_DATE_GET_SECOND(v);
    if (secs < 0 || secs > MAX_US / 1000000)
        return 1;
    int64_t us = secs * 1000000 + PyDateTime_DATE_GET_MICROSECOND(v);
    if (us > MAX_US)
        return 1;
    int64_t ticks = us;
    for (int i = 6; i < precision; i++)
        ticks *= 10;
    for (int i = precision; i < 6; i++)
        ticks /= 10;
    return put_bytes(b, &ticks, 8) < 0 ? -1 : 0;
}

static int put_f64(Buf *b, PyObject *v) {
    double f;
    if (PyBool_Check(v))
        return 1;
    if (PyFloat_Check(v)) {
        f = PyFloat_AS_DOUBLE(v);
    } else if (PyLong_Check(v)) {
        f = PyLong_AsDouble(v);
        if (f == -1.0 && PyErr_Occurred()) {
            if (PyErr_ExceptionMatches(PyExc_OverflowError)) {
                PyErr_Clear();
                return 1;
            }
            return -1;
        }
    } else {
        return 1;
    }
    if (!isfinite(f))
        return 1;
    return put_bytes(b, &f, 8) < 0 ? -1 : 0;
}

static int put_int(Buf *b, PyObject *v, int is_unsigned, int width) {
    if (!PyLong_Check(v) || PyBool_Check(v))
        return 1;
    if (is_unsigned && width == 8) {
        unsigned long long u = PyLong_AsUnsignedLongLong(v);
        if (u == (unsigned long long)-1 && PyErr_Occurred()) {
            if (PyErr_ExceptionMatches(PyExc_OverflowError)) {
                PyErr_Clear();
                return 1;
            }
            return -1;
        }
        uint64_t x = u;
        return put_bytes(b, &x, 8) < 0 ? -1 : 0;
    }
    int overflow = 0;
    long long s = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (s == -1 && PyErr_Occurred())
        return -1;
    if (overflow)
        return 1;
    if (is_unsigned) {
        if (s < 0 || (width < 8 && (unsigned long long)s >= (1ULL << (8 * width))))
            return 1;
    } else if (width < 8) {
        long long lim = 1LL << (8 * width - 1);
        if (s < -lim || s >= lim)
            return 1;
    }
    int64_t x = (int64_t)s;
    return put_bytes(b, &x, width) < 0 ? -1 : 0; /* little-endian: the low bytes first */
}

static int put_u64(Buf *b, uint64_t x) { return put_bytes(b, &x, 8); }

/* One scalar value (not None) of a column: the same bytes RowBinary would write. */
static int put_scalar(Buf *b, const Col *c, PyObject *v) {
    switch (c->kind) {
    case K_STR:
        return put_str(b, v);
    case K_DT64:
        return put_dt64(b, v, c->arg);
    case K_F64:
        return put_f64(b, v);
    case K_UINT:
        return put_int(b, v, 1, c->arg);
    case K_INT:
        return put_int(b, v, 0, c->arg);
    case K_BOOL:
        if (!PyBool_Check(v))
            return 1;
        return put_byte(b, v == Py_True ? 1 : 0) < 0 ? -1 : 0;
    default:
        return 1;
    }
}

/* What a Nullable column holds under a NULL: the kind's zero (an empty string, 0, false, 0 ticks). */
static int put_zero(Buf *b, const Col *c) {
    static const char zeros[8] = {0};
    switch (c->kind) {
    case K_STR:
    case K_BOOL:
        return put_byte(b, 0);
    case K_DT64:
    case K_F64:
        return put_bytes(b, zeros, 8);
    default: /* K_UINT, K_INT */
        return put_bytes(b, zeros, c->arg);
    }
}

typedef struct {
    PyObject *s; /* borrowed */
    Py_hash_t h;
    uint32_t idx;
    int used;
} Slot;

/* Doubles an open-addressing table (load kept at one half), re-placing its slots by their hashes. */
static int grow_table(Slot **table, size_t *cap) {
    size_t old = *cap, cap2 = old * 2, mask = cap2 - 1;
    Slot *t = PyMem_Calloc(cap2, sizeof(Slot));
    if (t == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i < old; i++) {
        Slot *e = &(*table)[i];
        if (!e->used)
            continue;
        size_t j = (size_t)e->h & mask;
        while (t[j].used)
            j = (j + 1) & mask;
        t[j] = *e;
    }
    PyMem_Free(*table);
    *table = t;
    *cap = cap2;
    return 0;
}

/* A LowCardinality(String) column's data after its version prefix (native.py: _lc_column): the
 * dictionary in first-seen order, then one index a value. Nothing for no values. */
static int put_lc(Buf *b, PyObject **vals, Py_ssize_t m) {
    if (m == 0)
        return 0;
    if (m > (Py_ssize_t)UINT32_MAX / 2) {
        PyErr_SetString(PyExc_OverflowError, "too many values for one block");
        return -1;
    }
    /* Sized for the distinct values seen, not for every value: most LowCardinality columns have a handful
     * in a block, and a table for m values (24 bytes a slot, zeroed) cost more than the lookups. */
    size_t cap = 64;
    size_t mask = cap - 1;
    Slot *table = PyMem_Calloc(cap, sizeof(Slot));
    uint32_t *ids = PyMem_Malloc((size_t)m * sizeof(uint32_t));
    Buf keys = {NULL, 0, 0};
    int rc = -1;
    uint32_t count = 0;
    if (table == NULL || ids == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < m; i++) {
        PyObject *v = vals[i];
        if (!PyUnicode_Check(v)) {
            rc = 1;
            goto done;
        }
        Py_hash_t h = PyObject_Hash(v); /* cached in the str after the first time */
        if (h == -1)
            goto done;
        size_t j = (size_t)h & mask;
        for (;;) {
            Slot *e = &table[j];
            if (!e->used) {
                int r = put_str(&keys, v); /* refuses a lone surrogate */
                if (r) {
                    rc = r;
                    goto done;
                }
                e->s = v;
                e->h = h;
                e->idx = count++;
                e->used = 1;
                ids[i] = e->idx;
                if ((size_t)count * 2 > cap && grow_table(&table, &cap) < 0)
                    goto done;
                mask = cap - 1;
                break;
            }
            if (e->s == v || (e->h == h && PyUnicode_Compare(e->s, v) == 0)) {
                ids[i] = e->idx;
                break;
            }
            j = (j + 1) & mask;
        }
    }
    int width = count <= 0x100 ? 1 : count <= 0x10000 ? 2 : 4;
    uint64_t code = width == 1 ? 0 : width == 2 ? 1 : 2;
    if (put_u64(b, code | 0x600) < 0 || put_u64(b, count) < 0 || put_bytes(b, keys.p, keys.len) < 0 ||
        put_u64(b, (uint64_t)m) < 0 || buf_reserve(b, m * width) < 0)
        goto done;
    char *p = b->p + b->len;
    if (width == 1) {
        for (Py_ssize_t i = 0; i < m; i++)
            p[i] = (char)ids[i];
    } else if (width == 2) {
        for (Py_ssize_t i = 0; i < m; i++) {
            uint16_t x = (uint16_t)ids[i];
            memcpy(p + 2 * i, &x, 2);
        }
    } else {
        memcpy(p, ids, (size_t)m * 4);
    }
    b->len += m * width;
    rc = 0;
done:
    PyMem_Free(table);
    PyMem_Free(ids);
    PyMem_Free(keys.p);
    return rc;
}

/* Strings as a column: LowCardinality (lc) or plain. 0 written, 1 refused, -1 error. */
static int put_strings(Buf *b, PyObject **vals, Py_ssize_t m, int lc) {
    if (lc)
        return put_lc(b, vals, m);
    for (Py_ssize_t i = 0; i < m; i++) {
        int r = put_str(b, vals[i]);
        if (r)
            return r;
    }
    return 0;
}

typedef struct {
    PyObject **p;
    Py_ssize_t len;
    Py_ssize_t cap;
} Vec;

static int vec_push(Vec *v, PyObject *o) {
    if (v->len == v->cap) {
        Py_ssize_t cap = v->cap ? v->cap * 2 : 256;
        PyObject **p = PyMem_Realloc(v->p, (size_t)cap * sizeof(PyObject *));
        if (p == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        v->p = p;
        v->cap = cap;
    }
    v->p[v->len++] = o;
    return 0;
}

/* One column's data (after its head) for the gathered values; None only where the column is nullable. */
static int put_column(Buf *b, const Col *c, PyObject **vals, Py_ssize_t n) {
    static const uint64_t version = 1;
    if (c->nullable) {
        if (buf_reserve(b, n) < 0)
            return -1;
        for (Py_ssize_t i = 0; i < n; i++)
            b->p[b->len++] = vals[i] == Py_None ? 1 : 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            int r = vals[i] == Py_None ? put_zero(b, c) : put_scalar(b, c, vals[i]);
            if (r)
                return r;
        }
        return 0;
    }
    if (c->kind == K_STR) {
        if ((c->lc & LC_VALUES) && put_bytes(b, &version, 8) < 0)
            return -1;
        return put_strings(b, vals, n, c->lc & LC_VALUES);
    }
    if (c->kind == K_ARR_STR || c->kind == K_MAP_STR) {
        int is_map = c->kind == K_MAP_STR;
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *v = vals[i];
            if (is_map ? !PyDict_Check(v) : !(PyList_Check(v) || PyTuple_Check(v)))
                return 1;
        }
        if (is_map && (c->lc & LC_KEYS) && put_bytes(b, &version, 8) < 0)
            return -1;
        if ((c->lc & LC_VALUES) && put_bytes(b, &version, 8) < 0)
            return -1;
        Vec keys = {NULL, 0, 0}, items = {NULL, 0, 0};
        int rc = -1;
        uint64_t total = 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *v = vals[i];
            if (is_map) {
                Py_ssize_t pos = 0;
                PyObject *k, *x;
                while (PyDict_Next(v, &pos, &k, &x))
                    if (vec_push(&keys, k) < 0 || vec_push(&items, x) < 0)
                        goto out;
                total += (uint64_t)PyDict_GET_SIZE(v);
            } else {
                Py_ssize_t m = PySequence_Fast_GET_SIZE(v);
                PyObject **src = PySequence_Fast_ITEMS(v);
                for (Py_ssize_t j = 0; j < m; j++)
                    if (vec_push(&items, src[j]) < 0)
                        goto out;
                total += (uint64_t)m;
            }
            if (put_u64(b, total) < 0)
                goto out;
        }
        if (is_map) {
            rc = put_strings(b, keys.p, keys.len, c->lc & LC_KEYS);
            if (rc)
                goto out;
        }
        rc = put_strings(b, items.p, items.len, c->lc & LC_VALUES);
    out:
        PyMem_Free(keys.p);
        PyMem_Free(items.p);
        return rc;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        int r = put_scalar(b, c, vals[i]);
        if (r)
            return r;
    }
    return 0;
}

static int parse_spec(PyObject *spec, Col *cols, Py_ssize_t *ncols) {
    if (!PyTuple_Check(spec)) {
        PyErr_SetString(PyExc_TypeError, "spec must be a tuple");
        return -1;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(spec);
    if (n > MAX_COLUMNS) {
        PyErr_SetString(PyExc_ValueError, "too many columns");
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *e = PyTuple_GET_ITEM(spec, i);
        if (!PyTuple_Check(e) || PyTuple_GET_SIZE(e) != 8 || !PyUnicode_Check(PyTuple_GET_ITEM(e, 0)) ||
            !PyBytes_Check(PyTuple_GET_ITEM(e, 6))) {
            PyErr_SetString(PyExc_TypeError,
                            "spec entries are (name, kind, nullable, arg, default, is_stamp, head, lc)");
            return -1;
        }
        Col *c = &cols[i];
        c->name = PyTuple_GET_ITEM(e, 0);
        c->kind = (int)PyLong_AsLong(PyTuple_GET_ITEM(e, 1));
        c->nullable = PyObject_IsTrue(PyTuple_GET_ITEM(e, 2));
        c->arg = (int)PyLong_AsLong(PyTuple_GET_ITEM(e, 3));
        c->dflt = PyTuple_GET_ITEM(e, 4);
        c->is_stamp = PyObject_IsTrue(PyTuple_GET_ITEM(e, 5));
        c->head = PyBytes_AS_STRING(PyTuple_GET_ITEM(e, 6));
        c->headlen = PyBytes_GET_SIZE(PyTuple_GET_ITEM(e, 6));
        c->lc = (int)PyLong_AsLong(PyTuple_GET_ITEM(e, 7));
        if (PyErr_Occurred() || c->nullable < 0 || c->is_stamp < 0)
            return -1;
        if (c->kind < K_STR || c->kind > K_MAP_STR || c->arg < 0 || c->arg > 9 || c->lc < 0 || c->lc > 3) {
            PyErr_SetString(PyExc_ValueError, "unknown column kind in spec");
            return -1;
        }
        if ((c->kind == K_UINT || c->kind == K_INT) && c->arg != 1 && c->arg != 2 && c->arg != 4 && c->arg != 8) {
            PyErr_SetString(PyExc_ValueError, "integer width must be 1, 2, 4 or 8");
            return -1;
        }
        if (c->nullable && (c->kind == K_ARR_STR || c->kind == K_MAP_STR || c->lc)) {
            PyErr_SetString(PyExc_ValueError, "a Nullable column is a plain scalar");
            return -1;
        }
    }
    *ncols = n;
    return 0;
}

static PyObject *encode_block(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *rows, *spec, *stamp;
    if (!PyArg_ParseTuple(args, "OOO:encode_block", &rows, &spec, &stamp))
        return NULL;
    Col cols[MAX_COLUMNS];
    Py_ssize_t ncols = 0;
    if (parse_spec(spec, cols, &ncols) < 0)
        return NULL;
    PyObject *seq = PySequence_Fast(rows, "rows must be a sequence");
    if (seq == NULL)
        return NULL;
    Py_ssize_t nrows = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    if (nrows == 0) {
        Py_DECREF(seq);
        return PyBytes_FromStringAndSize("", 0);
    }
    for (Py_ssize_t i = 0; i < nrows; i++) {
        if (!PyDict_Check(items[i])) {
            Py_DECREF(seq);
            Py_RETURN_NONE;
        }
    }
    /* Gathered row by row (each row's dict is read while it is in cache), written column by column. */
    PyObject **vals = NULL;
    Buf b = {NULL, 0, 0};
    b.defer = 1;
    int refused = 0;
    if ((size_t)nrows > SIZE_MAX / sizeof(PyObject *) / (size_t)(ncols ? ncols : 1) ||
        (vals = PyMem_Malloc((size_t)nrows * (size_t)(ncols ? ncols : 1) * sizeof(PyObject *))) == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    for (Py_ssize_t i = 0; i < nrows && !refused; i++) {
        for (Py_ssize_t j = 0; j < ncols; j++) {
            const Col *c = &cols[j];
            PyObject *v = PyDict_GetItemWithError(items[i], c->name);
            if (v == NULL) {
                if (PyErr_Occurred())
                    goto error;
                v = c->dflt;
            }
            if (c->is_stamp && v == Py_None)
                v = stamp;
            if (v == Py_None && !c->nullable) {
                refused = 1;
                break;
            }
            vals[j * nrows + i] = v;
        }
    }
    if (!refused && (put_uvarint(&b, (uint64_t)ncols) < 0 || put_uvarint(&b, (uint64_t)nrows) < 0))
        goto error;
    for (Py_ssize_t j = 0; j < ncols && !refused; j++) {
        const Col *c = &cols[j];
        if (put_bytes(&b, c->head, c->headlen) < 0)
            goto error;
        int r = put_column(&b, c, vals + j * nrows, nrows);
        if (r < 0)
            goto error;
        refused = r > 0;
    }
    Py_DECREF(seq);
    PyMem_Free(vals);
    if (refused) {
        drop_copies(&b);
        PyMem_Free(b.p);
        Py_RETURN_NONE;
    }
    PyObject *out = finish_block(&b);
    PyMem_Free(b.p);
    return out;
error:
    Py_DECREF(seq);
    PyMem_Free(vals);
    drop_copies(&b);
    PyMem_Free(b.p);
    return NULL;
}

static PyMethodDef methods[] = {
    {"encode_block", encode_block, METH_VARARGS, "encode_block(rows, spec, stamp) -> bytes | None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_native_block", NULL, -1, methods};

PyMODINIT_FUNC PyInit__native_block(void) {
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL)
        return NULL;
    return PyModule_Create(&module);
}
