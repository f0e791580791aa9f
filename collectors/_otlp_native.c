/* Native decoder for OTLP ExportTraceServiceRequest protobuf bodies (collectors/otlp.py's fast path).
 *
 * Walks the protobuf wire format directly and builds exactly what collectors.otlp.decode_traces_protobuf
 * builds through upb: a list of Span objects (ids as lowercase hex, attributes as plain Python values,
 * events as SpanEvent objects, resource attributes shared per ResourceSpans). It follows upb's rules where
 * they decide acceptance: unknown fields (and known fields with an unexpected wire type) are skipped, the
 * last occurrence of a scalar wins, repeated occurrences of a singular sub-message merge, string fields
 * must be valid UTF-8, tags must be well-formed with a non-zero field number, and sub-messages nest at
 * most 101 levels (the request is level 1), upb's default depth limit.
 *
 * Memory safety on hostile input: every read goes through a (p, end) cursor and is bounds-checked; lengths
 * are checked against the bytes left before use; recursion is bounded by the nesting limit.
 * Errors raise ValueError with a one-line reason; the Python wrapper turns it into MalformedPayload (400).
 * Runs with the GIL held (it builds Python objects); the input buffer is read only.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

#define MAX_LEVEL 101

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} Cur;

/* --- configured classes: Span and SpanEvent (slots dataclasses), filled through their slot offsets --- */
#define N_SPAN_FIELDS 14
#define N_EVENT_FIELDS 3
static PyTypeObject *span_type = NULL;
static PyTypeObject *event_type = NULL;
static Py_ssize_t span_off[N_SPAN_FIELDS];
static Py_ssize_t event_off[N_EVENT_FIELDS];

/* --- interned attribute keys and short values: repeated on every span, so one str object each ---------- */
#define KEY_CACHE_SIZE 1024
#define KEY_CACHE_MAXLEN 64
typedef struct {
    Py_ssize_t len;
    PyObject *str; /* owned */
    char bytes[KEY_CACHE_MAXLEN];
} KeySlot;
static KeySlot key_cache[KEY_CACHE_SIZE];

static int fail(const char *msg) {
    PyErr_SetString(PyExc_ValueError, msg);
    return -1;
}

static PyObject *decode_str(const uint8_t *s, Py_ssize_t n) {
    PyObject *o = PyUnicode_DecodeUTF8((const char *)s, n, NULL);
    if (o == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
        PyErr_Clear();
        PyErr_SetString(PyExc_ValueError, "a string field had invalid UTF-8");
    }
    return o;
}

/* The cache slot's hash of a key: eight bytes a step (a byte-a-step hash was an eighth of decoding's
 * instructions); any hash is correct, since a slot's bytes are compared before its str is used. */
static inline uint32_t key_hash(const uint8_t *s, Py_ssize_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (uint64_t)n, w;
    for (; n >= 8; s += 8, n -= 8) {
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xFF51AFD7ED558CCDull;
        h ^= h >> 32;
    }
    if (n > 0) {
        w = 0;
        for (Py_ssize_t i = 0; i < n; i++)
            w |= (uint64_t)s[i] << (8 * i);
        h = (h ^ w) * 0xFF51AFD7ED558CCDull;
    }
    h ^= h >> 29;
    h *= 0xC4CEB9FE1A85EC53ull;
    return (uint32_t)(h ^ (h >> 32));
}

/* A str for short repeated text (attribute keys, enum-like values): cached by content. New reference. */
static PyObject *cached_str(const uint8_t *s, Py_ssize_t n) {
    if (n > KEY_CACHE_MAXLEN)
        return decode_str(s, n);
    KeySlot *slot = &key_cache[key_hash(s, n) & (KEY_CACHE_SIZE - 1)];
    if (slot->str != NULL && slot->len == n && memcmp(slot->bytes, s, (size_t)n) == 0) {
        Py_INCREF(slot->str);
        return slot->str;
    }
    PyObject *o = decode_str(s, n);
    if (o == NULL)
        return NULL;
    Py_XSETREF(slot->str, Py_NewRef(o));
    slot->len = n;
    memcpy(slot->bytes, s, (size_t)n);
    return o;
}

static int validate_str(const uint8_t *s, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++)
        if (s[i] & 0x80) {
            PyObject *o = decode_str(s, n);
            if (o == NULL)
                return -1;
            Py_DECREF(o);
            return 0;
        }
    return 0;
}

static PyObject *hex_str(const uint8_t *s, Py_ssize_t n) {
    static const char digits[] = "0123456789abcdef";
    PyObject *o = PyUnicode_New(2 * n, 127);
    if (o == NULL)
        return NULL;
    Py_UCS1 *d = PyUnicode_1BYTE_DATA(o);
    for (Py_ssize_t i = 0; i < n; i++) {
        d[2 * i] = (Py_UCS1)digits[s[i] >> 4];
        d[2 * i + 1] = (Py_UCS1)digits[s[i] & 15];
    }
    return o;
}

/* --- wire primitives --------------------------------------------------------------------------------- */

static int rd_varint(Cur *c, uint64_t *out) {
    if (c->p < c->end && !(*c->p & 0x80)) {
        *out = *c->p++;
        return 0;
    }
    uint64_t v = 0;
    for (int i = 0; i < 10; i++) {
        if (c->p >= c->end)
            return fail("truncated varint");
        uint8_t b = *c->p++;
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return fail("varint longer than 10 bytes");
}

/* A tag; field number 0 is refused, except inside an unknown group, where upb skips it by wire type. */
static int rd_tag_in(Cur *c, uint32_t *field, uint32_t *wt, int in_group) {
    uint64_t t;
    if (rd_varint(c, &t) < 0)
        return -1;
    if (t > 0xFFFFFFFFu)
        return fail("field tag out of range");
    *field = (uint32_t)(t >> 3);
    *wt = (uint32_t)(t & 7);
    if (*field == 0 && !in_group)
        return fail("field number 0");
    return 0;
}

static int rd_tag(Cur *c, uint32_t *field, uint32_t *wt) { return rd_tag_in(c, field, wt, 0); }

static int rd_len(Cur *c, Cur *sub) {
    uint64_t n;
    if (rd_varint(c, &n) < 0)
        return -1;
    if (n > (uint64_t)(c->end - c->p))
        return fail("length-delimited field runs past the end of its message");
    sub->p = c->p;
    sub->end = c->p + n;
    c->p += n;
    return 0;
}

static int rd_fixed64(Cur *c, uint64_t *out) {
    if (c->end - c->p < 8)
        return fail("truncated fixed64");
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | c->p[i];
    c->p += 8;
    *out = v;
    return 0;
}

static int skip_field(Cur *c, uint32_t field, uint32_t wt, int level) {
    uint64_t v;
    Cur sub;
    switch (wt) {
    case 0:
        return rd_varint(c, &v);
    case 1:
        if (c->end - c->p < 8)
            return fail("truncated fixed64");
        c->p += 8;
        return 0;
    case 2:
        return rd_len(c, &sub);
    case 5:
        if (c->end - c->p < 4)
            return fail("truncated fixed32");
        c->p += 4;
        return 0;
    case 3: {
        if (level + 1 > MAX_LEVEL)
            return fail("messages nested too deeply");
        for (;;) {
            uint32_t f, w;
            if (c->p >= c->end)
                return fail("unterminated group");
            if (rd_tag_in(c, &f, &w, 1) < 0)
                return -1;
            if (w == 4) {
                if (f != field)
                    return fail("mismatched end-group tag");
                return 0;
            }
            if (skip_field(c, f, w, level + 1) < 0)
                return -1;
        }
    }
    case 4:
        return fail("unexpected end-group tag");
    default:
        return fail("invalid wire type");
    }
}

#define ENTER(level)                                                                                       \
    do {                                                                                                   \
        if ((level) > MAX_LEVEL)                                                                           \
            return fail("messages nested too deeply");                                                     \
    } while (0)

/* --- AnyValue / KeyValue ------------------------------------------------------------------------------- */

enum { K_NONE = 0, K_SCALAR, K_ARRAY, K_KVLIST };
typedef struct {
    int kind;
    PyObject *val; /* owned, NULL when kind == K_NONE */
} AnyState;

static int parse_kv_into(Cur msg, PyObject *dict, int level);

static void any_set(AnyState *st, int kind, PyObject *v) {
    Py_XSETREF(st->val, v);
    st->kind = kind;
}

/* Parse one AnyValue occurrence (at `level`) into st, merging like protobuf does. */
static int parse_any(Cur c, AnyState *st, int level) {
    ENTER(level);
    while (c.p < c.end) {
        uint32_t f, wt;
        if (rd_tag(&c, &f, &wt) < 0)
            return -1;
        uint64_t v;
        Cur sub;
        PyObject *o;
        if (f == 1 && wt == 2) {
            if (rd_len(&c, &sub) < 0)
                return -1;
            Py_ssize_t n = sub.end - sub.p;
            o = n <= 24 ? cached_str(sub.p, n) : decode_str(sub.p, n);
            if (o == NULL)
                return -1;
            any_set(st, K_SCALAR, o);
        } else if (f == 2 && wt == 0) {
            if (rd_varint(&c, &v) < 0)
                return -1;
            any_set(st, K_SCALAR, Py_NewRef(v ? Py_True : Py_False));
        } else if (f == 3 && wt == 0) {
            if (rd_varint(&c, &v) < 0)
                return -1;
            if ((o = PyLong_FromLongLong((long long)(int64_t)v)) == NULL)
                return -1;
            any_set(st, K_SCALAR, o);
        } else if (f == 4 && wt == 1) {
            double d;
            if (rd_fixed64(&c, &v) < 0)
                return -1;
            memcpy(&d, &v, sizeof d);
            if ((o = PyFloat_FromDouble(d)) == NULL)
                return -1;
            any_set(st, K_SCALAR, o);
        } else if (f == 5 && wt == 2) { /* ArrayValue { repeated AnyValue values = 1; } */
            if (rd_len(&c, &sub) < 0)
                return -1;
            ENTER(level + 1);
            if (st->kind != K_ARRAY) {
                if ((o = PyList_New(0)) == NULL)
                    return -1;
                any_set(st, K_ARRAY, o);
            }
            while (sub.p < sub.end) {
                uint32_t f2, wt2;
                if (rd_tag(&sub, &f2, &wt2) < 0)
                    return -1;
                if (f2 == 1 && wt2 == 2) {
                    Cur el;
                    if (rd_len(&sub, &el) < 0)
                        return -1;
                    AnyState est = {K_NONE, NULL};
                    if (parse_any(el, &est, level + 2) < 0) {
                        Py_XDECREF(est.val);
                        return -1;
                    }
                    PyObject *item = est.val ? est.val : Py_NewRef(Py_None);
                    int r = PyList_Append(st->val, item);
                    Py_DECREF(item);
                    if (r < 0)
                        return -1;
                } else if (skip_field(&sub, f2, wt2, level + 1) < 0) {
                    return -1;
                }
            }
        } else if (f == 6 && wt == 2) { /* KeyValueList { repeated KeyValue values = 1; } */
            if (rd_len(&c, &sub) < 0)
                return -1;
            ENTER(level + 1);
            if (st->kind != K_KVLIST) {
                if ((o = PyDict_New()) == NULL)
                    return -1;
                any_set(st, K_KVLIST, o);
            }
            while (sub.p < sub.end) {
                uint32_t f2, wt2;
                if (rd_tag(&sub, &f2, &wt2) < 0)
                    return -1;
                if (f2 == 1 && wt2 == 2) {
                    Cur kv;
                    if (rd_len(&sub, &kv) < 0)
                        return -1;
                    if (parse_kv_into(kv, st->val, level + 2) < 0)
                        return -1;
                } else if (skip_field(&sub, f2, wt2, level + 1) < 0) {
                    return -1;
                }
            }
        } else if (f == 7 && wt == 2) {
            if (rd_len(&c, &sub) < 0)
                return -1;
            if ((o = PyBytes_FromStringAndSize((const char *)sub.p, sub.end - sub.p)) == NULL)
                return -1;
            any_set(st, K_SCALAR, o);
        } else if (f == 8 && wt == 0) {
            /* string_value_strindex (profiles only): the upb path renders it as an empty dict */
            if (rd_varint(&c, &v) < 0)
                return -1;
            if ((o = PyDict_New()) == NULL)
                return -1;
            any_set(st, K_SCALAR, o);
        } else if (skip_field(&c, f, wt, level) < 0) {
            return -1;
        }
    }
    return 0;
}

/* KeyValue at `level` → dict[key] = value (later keys overwrite earlier ones, as the upb path does). */
static int parse_kv_into(Cur c, PyObject *dict, int level) {
    ENTER(level);
    const uint8_t *key = NULL;
    Py_ssize_t key_len = 0;
    AnyState st = {K_NONE, NULL};
    while (c.p < c.end) {
        uint32_t f, wt;
        Cur sub;
        if (rd_tag(&c, &f, &wt) < 0)
            goto error;
        if (f == 1 && wt == 2) {
            if (rd_len(&c, &sub) < 0 || (key && validate_str(key, key_len) < 0))
                goto error; /* a superseded occurrence must still be valid UTF-8 (upb checks each) */
            key = sub.p;
            key_len = sub.end - sub.p;
        } else if (f == 2 && wt == 2) {
            if (rd_len(&c, &sub) < 0 || parse_any(sub, &st, level + 1) < 0)
                goto error;
        } else if (skip_field(&c, f, wt, level) < 0) {
            goto error;
        }
    }
    PyObject *k = cached_str(key ? key : (const uint8_t *)"", key_len);
    if (k == NULL)
        goto error;
    int r = PyDict_SetItem(dict, k, st.val ? st.val : Py_None);
    Py_DECREF(k);
    Py_XDECREF(st.val);
    return r;
error:
    Py_XDECREF(st.val);
    return -1;
}

/* Repeated KeyValue field `kv_field` of a message: dict filled in place (created on first use). */
static int attrs_field(Cur *c, PyObject **dict, int level) {
    Cur sub;
    if (rd_len(c, &sub) < 0)
        return -1;
    if (*dict == NULL && (*dict = PyDict_New()) == NULL)
        return -1;
    return parse_kv_into(sub, *dict, level + 1);
}

/* A message whose strings must be valid and whose attributes are parsed but not kept (links, scope). */
static int validate_attrs_msg(Cur c, int level, uint32_t attrs_field_no, const uint32_t *str_fields, int n_str) {
    ENTER(level);
    PyObject *scratch = NULL;
    while (c.p < c.end) {
        uint32_t f, wt;
        if (rd_tag(&c, &f, &wt) < 0)
            goto error;
        int is_str = 0;
        for (int i = 0; i < n_str; i++)
            is_str |= str_fields[i] == f;
        if (wt == 2 && f == attrs_field_no) {
            if (attrs_field(&c, &scratch, level) < 0)
                goto error;
        } else if (wt == 2 && is_str) {
            Cur s;
            if (rd_len(&c, &s) < 0 || validate_str(s.p, s.end - s.p) < 0)
                goto error;
        } else if (skip_field(&c, f, wt, level) < 0) {
            goto error;
        }
    }
    Py_XDECREF(scratch);
    return 0;
error:
    Py_XDECREF(scratch);
    return -1;
}

/* --- Span ------------------------------------------------------------------------------------------- */

static PyObject *new_slots(PyTypeObject *tp, const Py_ssize_t *off, PyObject **vals, int n) {
    /* takes the references in vals (all non-NULL) whatever happens */
    PyObject *o = tp->tp_alloc(tp, 0);
    if (o == NULL) {
        for (int i = 0; i < n; i++)
            Py_DECREF(vals[i]);
        return NULL;
    }
    for (int i = 0; i < n; i++)
        *(PyObject **)((char *)o + off[i]) = vals[i];
    return o;
}

static PyObject *parse_event(Cur c, int level) {
    if (level > MAX_LEVEL)
        return fail("messages nested too deeply"), NULL;
    uint64_t t = 0;
    const uint8_t *name = NULL;
    Py_ssize_t name_len = 0;
    PyObject *attrs = NULL;
    while (c.p < c.end) {
        uint32_t f, wt;
        Cur sub;
        if (rd_tag(&c, &f, &wt) < 0)
            goto error;
        if (f == 1 && wt == 1) {
            if (rd_fixed64(&c, &t) < 0)
                goto error;
        } else if (f == 2 && wt == 2) {
            if (rd_len(&c, &sub) < 0 || (name && validate_str(name, name_len) < 0))
                goto error;
            name = sub.p;
            name_len = sub.end - sub.p;
        } else if (f == 3 && wt == 2) {
            if (attrs_field(&c, &attrs, level) < 0)
                goto error;
        } else if (skip_field(&c, f, wt, level) < 0) {
            goto error;
        }
    }
    PyObject *vals[N_EVENT_FIELDS];
    vals[0] = cached_str(name ? name : (const uint8_t *)"", name_len);
    if (vals[0] == NULL)
        goto error;
    if ((vals[1] = PyLong_FromUnsignedLongLong(t)) == NULL) {
        Py_DECREF(vals[0]);
        goto error;
    }
    if (attrs == NULL && (attrs = PyDict_New()) == NULL) {
        Py_DECREF(vals[0]);
        Py_DECREF(vals[1]);
        return NULL;
    }
    vals[2] = attrs;
    return new_slots(event_type, event_off, vals, N_EVENT_FIELDS);
error:
    Py_XDECREF(attrs);
    return NULL;
}

typedef struct {
    PyObject *resource; /* borrowed */
    PyObject *scope_name;
    PyObject *scope_version;
} SpanCtx;

static const uint32_t LINK_STRS[] = {3};

static PyObject *parse_span(Cur c, const SpanCtx *ctx, int level) {
    if (level > MAX_LEVEL)
        return fail("messages nested too deeply"), NULL;
    Cur tid = {NULL, NULL}, sid = {NULL, NULL}, pid = {NULL, NULL}, name = {NULL, NULL}, smsg = {NULL, NULL};
    uint64_t kind = 0, start = 0, end = 0, code = 0;
    PyObject *attrs = NULL, *events = NULL;
    while (c.p < c.end) {
        uint32_t f, wt;
        Cur sub;
        if (rd_tag(&c, &f, &wt) < 0)
            goto error;
        if (wt == 2) {
            switch (f) {
            case 1:
                if (rd_len(&c, &tid) < 0)
                    goto error;
                continue;
            case 2:
                if (rd_len(&c, &sid) < 0)
                    goto error;
                continue;
            case 3: /* trace_state: not kept, but must be valid UTF-8 */
                if (rd_len(&c, &sub) < 0 || validate_str(sub.p, sub.end - sub.p) < 0)
                    goto error;
                continue;
            case 4:
                if (rd_len(&c, &pid) < 0)
                    goto error;
                continue;
            case 5:
                if ((name.p && validate_str(name.p, name.end - name.p) < 0) || rd_len(&c, &name) < 0)
                    goto error;
                continue;
            case 9:
                if (attrs_field(&c, &attrs, level) < 0)
                    goto error;
                continue;
            case 11: {
                if (rd_len(&c, &sub) < 0)
                    goto error;
                if (events == NULL && (events = PyList_New(0)) == NULL)
                    goto error;
                PyObject *ev = parse_event(sub, level + 1);
                if (ev == NULL)
                    goto error;
                int r = PyList_Append(events, ev);
                Py_DECREF(ev);
                if (r < 0)
                    goto error;
                continue;
            }
            case 13:
                if (rd_len(&c, &sub) < 0 || validate_attrs_msg(sub, level + 1, 4, LINK_STRS, 1) < 0)
                    goto error;
                continue;
            case 15: { /* Status { string message = 2; StatusCode code = 3; } — occurrences merge */
                if (rd_len(&c, &sub) < 0)
                    goto error;
                if (level + 1 > MAX_LEVEL) {
                    fail("messages nested too deeply");
                    goto error;
                }
                while (sub.p < sub.end) {
                    uint32_t f2, wt2;
                    if (rd_tag(&sub, &f2, &wt2) < 0)
                        goto error;
                    if (f2 == 2 && wt2 == 2) {
                        if ((smsg.p && validate_str(smsg.p, smsg.end - smsg.p) < 0) || rd_len(&sub, &smsg) < 0)
                            goto error;
                    } else if (f2 == 3 && wt2 == 0) {
                        if (rd_varint(&sub, &code) < 0)
                            goto error;
                    } else if (skip_field(&sub, f2, wt2, level + 1) < 0) {
                        goto error;
                    }
                }
                continue;
            }
            default:
                break;
            }
        } else if (wt == 0 && f == 6) {
            if (rd_varint(&c, &kind) < 0)
                goto error;
            continue;
        } else if (wt == 1 && (f == 7 || f == 8)) {
            if (rd_fixed64(&c, f == 7 ? &start : &end) < 0)
                goto error;
            continue;
        }
        if (skip_field(&c, f, wt, level) < 0)
            goto error;
    }
    PyObject *vals[N_SPAN_FIELDS];
    int n = 0;
#define PUT(expr)                                                                                          \
    do {                                                                                                   \
        if ((vals[n] = (expr)) == NULL)                                                                    \
            goto build_error;                                                                              \
        n++;                                                                                               \
    } while (0)
    PUT(hex_str(tid.p, tid.end - tid.p));
    PUT(hex_str(sid.p, sid.end - sid.p));
    PUT(hex_str(pid.p, pid.end - pid.p));
    PUT(name.p ? cached_str(name.p, name.end - name.p) : PyUnicode_New(0, 0));
    PUT(PyLong_FromLong((long)(int32_t)(uint32_t)kind));
    PUT(PyLong_FromUnsignedLongLong(start));
    PUT(PyLong_FromUnsignedLongLong(end));
    PUT(attrs ? attrs : PyDict_New());
    attrs = NULL;
    PUT(events ? events : PyList_New(0));
    events = NULL;
    PUT(PyLong_FromLong((long)(int32_t)(uint32_t)code));
    PUT(smsg.p ? decode_str(smsg.p, smsg.end - smsg.p) : PyUnicode_New(0, 0));
    PUT(Py_NewRef(ctx->resource));
    PUT(Py_NewRef(ctx->scope_name));
    PUT(Py_NewRef(ctx->scope_version));
#undef PUT
    return new_slots(span_type, span_off, vals, N_SPAN_FIELDS);
build_error:
    for (int i = 0; i < n; i++)
        Py_DECREF(vals[i]);
error:
    Py_XDECREF(attrs);
    Py_XDECREF(events);
    return NULL;
}

/* --- ScopeSpans / ResourceSpans / request ------------------------------------------------------------- */

static const uint32_t SCOPE_STRS[] = {1, 2};
static const uint32_t ENTITY_STRS[] = {1, 2, 3, 4};

static int parse_scope_spans(Cur c, PyObject *resource, PyObject *out, int level) {
    ENTER(level);
    /* pass 1: the scope (it may follow the spans on the wire; occurrences merge) and schema_url */
    const uint8_t *sn = NULL, *sv = NULL;
    Py_ssize_t sn_len = 0, sv_len = 0;
    Cur w = c;
    while (w.p < w.end) {
        uint32_t f, wt;
        Cur sub;
        if (rd_tag(&w, &f, &wt) < 0)
            return -1;
        if (f == 1 && wt == 2) {
            if (rd_len(&w, &sub) < 0 || validate_attrs_msg(sub, level + 1, 3, SCOPE_STRS, 2) < 0)
                return -1;
            while (sub.p < sub.end) { /* validated above: read name and version */
                uint32_t f2, wt2;
                Cur s2;
                if (rd_tag(&sub, &f2, &wt2) < 0)
                    return -1;
                if ((f2 == 1 || f2 == 2) && wt2 == 2) {
                    if (rd_len(&sub, &s2) < 0)
                        return -1;
                    if (f2 == 1) {
                        sn = s2.p;
                        sn_len = s2.end - s2.p;
                    } else {
                        sv = s2.p;
                        sv_len = s2.end - s2.p;
                    }
                } else if (skip_field(&sub, f2, wt2, level + 1) < 0) {
                    return -1;
                }
            }
        } else if (f == 3 && wt == 2) {
            if (rd_len(&w, &sub) < 0 || validate_str(sub.p, sub.end - sub.p) < 0)
                return -1;
        } else if (skip_field(&w, f, wt, level) < 0) {
            return -1;
        }
    }
    SpanCtx ctx = {resource, NULL, NULL};
    ctx.scope_name = sn ? cached_str(sn, sn_len) : PyUnicode_New(0, 0);
    if (ctx.scope_name == NULL)
        return -1;
    ctx.scope_version = sv ? cached_str(sv, sv_len) : PyUnicode_New(0, 0);
    if (ctx.scope_version == NULL) {
        Py_DECREF(ctx.scope_name);
        return -1;
    }
    /* pass 2: the spans, in order */
    int rc = 0;
    while (c.p < c.end) {
        uint32_t f, wt;
        Cur sub;
        if (rd_tag(&c, &f, &wt) < 0) {
            rc = -1;
            break;
        }
        if (f == 2 && wt == 2) {
            if (rd_len(&c, &sub) < 0) {
                rc = -1;
                break;
            }
            PyObject *s = parse_span(sub, &ctx, level + 1);
            if (s == NULL) {
                rc = -1;
                break;
            }
            rc = PyList_Append(out, s);
            Py_DECREF(s);
            if (rc < 0)
                break;
        } else if (skip_field(&c, f, wt, level) < 0) {
            rc = -1;
            break;
        }
    }
    Py_DECREF(ctx.scope_name);
    Py_DECREF(ctx.scope_version);
    return rc;
}

static int parse_resource_spans(Cur c, PyObject *out, int level) {
    ENTER(level);
    PyObject *resource = NULL;
    Cur w = c;
    while (w.p < w.end) { /* pass 1: resource attributes (occurrences merge) and schema_url */
        uint32_t f, wt;
        Cur sub;
        if (rd_tag(&w, &f, &wt) < 0)
            goto error;
        if (f == 1 && wt == 2) {
            if (rd_len(&w, &sub) < 0)
                goto error;
            if (level + 1 > MAX_LEVEL) {
                fail("messages nested too deeply");
                goto error;
            }
            while (sub.p < sub.end) { /* Resource { attributes = 1; dropped = 2; entity_refs = 3; } */
                uint32_t f2, wt2;
                Cur s2;
                if (rd_tag(&sub, &f2, &wt2) < 0)
                    goto error;
                if (f2 == 1 && wt2 == 2) {
                    if (attrs_field(&sub, &resource, level + 1) < 0)
                        goto error;
                } else if (f2 == 3 && wt2 == 2) {
                    if (rd_len(&sub, &s2) < 0 || validate_attrs_msg(s2, level + 2, 0, ENTITY_STRS, 4) < 0)
                        goto error;
                } else if (skip_field(&sub, f2, wt2, level + 1) < 0) {
                    goto error;
                }
            }
        } else if (f == 3 && wt == 2) {
            if (rd_len(&w, &sub) < 0 || validate_str(sub.p, sub.end - sub.p) < 0)
                goto error;
        } else if (skip_field(&w, f, wt, level) < 0) {
            goto error;
        }
    }
    if (resource == NULL && (resource = PyDict_New()) == NULL)
        return -1;
    while (c.p < c.end) { /* pass 2: scope spans, in order */
        uint32_t f, wt;
        Cur sub;
        if (rd_tag(&c, &f, &wt) < 0)
            goto error;
        if (f == 2 && wt == 2) {
            if (rd_len(&c, &sub) < 0 || parse_scope_spans(sub, resource, out, level + 1) < 0)
                goto error;
        } else if (skip_field(&c, f, wt, level) < 0) {
            goto error;
        }
    }
    Py_DECREF(resource);
    return 0;
error:
    Py_XDECREF(resource);
    return -1;
}

static PyObject *decode_traces(PyObject *self, PyObject *arg) {
    (void)self;
    if (span_type == NULL || event_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "configure() was not called");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *out = PyList_New(0);
    if (out == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    Cur c = {(const uint8_t *)view.buf, (const uint8_t *)view.buf + view.len};
    while (c.p < c.end) {
        uint32_t f, wt;
        Cur sub;
        if (rd_tag(&c, &f, &wt) < 0)
            goto error;
        if (f == 1 && wt == 2) {
            if (rd_len(&c, &sub) < 0 || parse_resource_spans(sub, out, 2) < 0)
                goto error;
        } else if (skip_field(&c, f, wt, 1) < 0) {
            goto error;
        }
    }
    PyBuffer_Release(&view);
    return out;
error:
    PyBuffer_Release(&view);
    Py_DECREF(out);
    return NULL;
}

/* configure(span_cls, event_cls, span_fields, event_fields): the slot names in the order this file fills
 * them. Every name must be a plain object slot of its class. */
static int slot_offsets(PyObject *cls, PyObject *names, Py_ssize_t *off, Py_ssize_t n) {
    if (!PyType_Check(cls) || !PyTuple_Check(names) || PyTuple_GET_SIZE(names) != n) {
        PyErr_SetString(PyExc_TypeError, "expected a class and a tuple of its slot names");
        return -1;
    }
    PyTypeObject *tp = (PyTypeObject *)cls;
    if (tp->tp_alloc == NULL || tp->tp_itemsize != 0) {
        PyErr_SetString(PyExc_TypeError, "unsupported class layout");
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *d = PyObject_GetAttr(cls, PyTuple_GET_ITEM(names, i));
        if (d == NULL)
            return -1;
        int ok = Py_IS_TYPE(d, &PyMemberDescr_Type) &&
                 ((PyMemberDescrObject *)d)->d_member->type == T_OBJECT_EX &&
                 ((PyMemberDescrObject *)d)->d_common.d_type == tp;
        if (ok)
            off[i] = ((PyMemberDescrObject *)d)->d_member->offset;
        Py_DECREF(d);
        if (!ok) {
            PyErr_Format(PyExc_TypeError, "%R is not an object slot of %R", PyTuple_GET_ITEM(names, i), cls);
            return -1;
        }
    }
    return 0;
}

static PyObject *configure(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *sc, *ec, *sf, *ef;
    if (!PyArg_ParseTuple(args, "OOOO", &sc, &ec, &sf, &ef))
        return NULL;
    if (slot_offsets(sc, sf, span_off, N_SPAN_FIELDS) < 0 || slot_offsets(ec, ef, event_off, N_EVENT_FIELDS) < 0)
        return NULL;
    Py_INCREF(sc);
    Py_INCREF(ec);
    Py_XSETREF(span_type, (PyTypeObject *)sc);
    Py_XSETREF(event_type, (PyTypeObject *)ec);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"decode_traces", decode_traces, METH_O,
     "decode_traces(body) -> list[Span]: an ExportTraceServiceRequest; ValueError when malformed."},
    {"configure", configure, METH_VARARGS,
     "configure(span_cls, event_cls, span_fields, event_fields): the classes decode_traces builds."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_otlp_native",
                                    "Native OTLP trace protobuf decoder (see collectors/otlp.py).", -1, methods};

PyMODINIT_FUNC PyInit__otlp_native(void) { return PyModule_Create(&module); }
