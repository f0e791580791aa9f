/* Native RowBinary encoder for collector rows: collectors/rowbinary.py documents the contract and holds
 * the reference (encode_rows_py); the output must be byte-identical to it, and every case the reference
 * refuses (returns None) this one refuses too. Optional: without it the reference does the work.
 *
 * encode_rows(rows, spec, stamp) -> bytes | None
 *   rows: sequence of dicts; spec: tuple of (name, kind, nullable, arg, default, is_stamp) tuples.
 *   Holds the GIL throughout (it reads Python objects); no Python object is created per value.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "RowBinary is little-endian: this encoder copies native values (build skipped, Python fallback)"
#endif

enum { K_STR = 1, K_DT64, K_F64, K_UINT, K_INT, K_BOOL, K_ARR_STR, K_MAP_STR };

#define MAX_COLUMNS 256
#define MAX_US (INT64_MAX / 1000) /* DateTime64(9) ticks fit Int64 */

typedef struct {
    PyObject *name;    /* borrowed from spec */
    PyObject *dflt;    /* borrowed from spec */
    int kind;
    int nullable;
    int arg;
    int is_stamp;
} Col;

typedef struct {
    char *p;
    Py_ssize_t len;
    Py_ssize_t cap;
} Buf;

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
    if (put_uvarint(b, (uint64_t)n) < 0 || put_bytes(b, s, n) < 0)
        return -1;
    return 0;
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

static int put_value(Buf *b, const Col *c, PyObject *v) {
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
    case K_ARR_STR: {
        if (!PyList_Check(v) && !PyTuple_Check(v))
            return 1;
        Py_ssize_t n = PySequence_Fast_GET_SIZE(v);
        PyObject **items = PySequence_Fast_ITEMS(v);
        if (put_uvarint(b, (uint64_t)n) < 0)
            return -1;
        for (Py_ssize_t i = 0; i < n; i++) {
            int r = put_str(b, items[i]);
            if (r)
                return r;
        }
        return 0;
    }
    case K_MAP_STR: {
        if (!PyDict_Check(v))
            return 1;
        if (put_uvarint(b, (uint64_t)PyDict_GET_SIZE(v)) < 0)
            return -1;
        Py_ssize_t pos = 0;
        PyObject *k, *x;
        while (PyDict_Next(v, &pos, &k, &x)) {
            int r = put_str(b, k);
            if (r)
                return r;
            r = put_str(b, x);
            if (r)
                return r;
        }
        return 0;
    }
    default:
        return 1;
    }
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
        if (!PyTuple_Check(e) || PyTuple_GET_SIZE(e) != 6 || !PyUnicode_Check(PyTuple_GET_ITEM(e, 0))) {
            PyErr_SetString(PyExc_TypeError, "spec entries are (name, kind, nullable, arg, default, is_stamp)");
            return -1;
        }
        Col *c = &cols[i];
        c->name = PyTuple_GET_ITEM(e, 0);
        c->kind = (int)PyLong_AsLong(PyTuple_GET_ITEM(e, 1));
        c->nullable = PyObject_IsTrue(PyTuple_GET_ITEM(e, 2));
        c->arg = (int)PyLong_AsLong(PyTuple_GET_ITEM(e, 3));
        c->dflt = PyTuple_GET_ITEM(e, 4);
        c->is_stamp = PyObject_IsTrue(PyTuple_GET_ITEM(e, 5));
        if (PyErr_Occurred() || c->nullable < 0 || c->is_stamp < 0)
            return -1;
        if (c->kind < K_STR || c->kind > K_MAP_STR || c->arg < 0 || c->arg > 9) {
            PyErr_SetString(PyExc_ValueError, "unknown column kind in spec");
            return -1;
        }
        if ((c->kind == K_UINT || c->kind == K_INT) && c->arg != 1 && c->arg != 2 && c->arg != 4 && c->arg != 8) {
            PyErr_SetString(PyExc_ValueError, "integer width must be 1, 2, 4 or 8");
            return -1;
        }
    }
    *ncols = n;
    return 0;
}

static PyObject *encode_rows(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *rows, *spec, *stamp;
    if (!PyArg_ParseTuple(args, "OOO:encode_rows", &rows, &spec, &stamp))
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
    Buf b = {NULL, 0, 0};
    int refused = 0;
    for (Py_ssize_t i = 0; i < nrows && !refused; i++) {
        PyObject *row = items[i];
        if (!PyDict_Check(row)) {
            refused = 1;
            break;
        }
        for (Py_ssize_t j = 0; j < ncols; j++) {
            const Col *c = &cols[j];
            PyObject *v = PyDict_GetItemWithError(row, c->name);
            if (v == NULL) {
                if (PyErr_Occurred())
                    goto error;
                v = c->dflt;
            }
            if (c->is_stamp && v == Py_None)
                v = stamp;
            if (v == Py_None) {
                if (!c->nullable) {
                    refused = 1;
                    break;
                }
                if (put_byte(&b, 1) < 0)
                    goto error;
                continue;
            }
            if (c->nullable && put_byte(&b, 0) < 0)
                goto error;
            int r = put_value(&b, c, v);
            if (r < 0)
                goto error;
            if (r > 0) {
                refused = 1;
                break;
            }
        }
    }
    Py_DECREF(seq);
    if (refused) {
        PyMem_Free(b.p);
        Py_RETURN_NONE;
    }
    PyObject *out = PyBytes_FromStringAndSize(b.p ? b.p : "", b.len);
    PyMem_Free(b.p);
    return out;
error:
    Py_DECREF(seq);
    PyMem_Free(b.p);
    return NULL;
}

static PyMethodDef methods[] = {
    {"encode_rows", encode_rows, METH_VARARGS, "encode_rows(rows, spec, stamp) -> bytes | None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_rowbinary_native", NULL, -1, methods};

PyMODINIT_FUNC PyInit__rowbinary_native(void) {
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL)
        return NULL;
    return PyModule_Create(&module);
}
