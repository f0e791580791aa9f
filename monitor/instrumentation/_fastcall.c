/* The request path of a deferred model call in C: optional accelerator of ``_deferred`` + ``openai``.

Why: between two real SDK calls the caches are cold, and our Python steps around the call (the dispatch
to the wrapper, ``FastPath.begin``, ``OpenAIInstrumentor._complete``) cost 30-50 us of CPU there, though
only about 6 us in a hot loop: every bytecode, frame and code object they touch is a miss. The same
steps in C touch a few hundred bytes of machine code and only the objects they must (benchmarks/README.md,
session 10).

``FastMethod(original, owner, op, fast[, snapshot])`` is what ``Instrumentor._wrap`` puts on the SDK class
instead of the Python ``_method`` when this module is built and the instrumentor has a ``FastPath``. It is
a method descriptor (bound like a function, called without a bound-method object) whose call does, in order:

* switched off (``active``, cleared when the instrumentor uninstruments), or no positional ``self``:
  the original, untouched;
* ``FastPath.begin`` (``_deferred``): a framework model-call slot in the current OTel context sends the
  call to ``owner._eager_call`` (the Python eager path); a sampled-out trace calls the original
  untouched; otherwise a ``PendingCall`` (ids from this module's generator when the provider uses the
  SDK's default ``RandomIdGenerator``, else from the provider's; start time; a copy of the contextvars) is
  made the current span while the original runs;
* the original raised: the stand-in span is detached, ``owner._call_failed`` records the failure (the
  eager span, as the Python path does) and the app's exception is re-raised unchanged;
* it returned: the stand-in is detached; a plain response (``owner._is_plain``, cached per type in
  ``owner._plain``) is snapshotted (``op.snapshot``) with the request's keyword arguments (top-level
  lists copied) and queued for the finisher thread (``snapshot`` replaces ``op.snapshot``: a chat
  completion's is ``ChatSnapshot``, below); anything else (streams, raw responses) goes to
  ``owner._complete_other``.

Internal errors never reach the app: they go to ``owner._internal_error(site, exc)`` (the guard: logs
once, or re-raises under ``LLM_MONITOR_RAISE_INTERNAL``), after which the call continues down the Python
path's fallback. ``PendingCall``'s slots are written by offset (read from its member descriptors by
``configure``), the same values ``PendingCall.__init__`` and ``FastPath.begin`` store.
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#if defined(__linux__) || defined(__APPLE__) || defined(__FreeBSD__) || defined(__OpenBSD__)
#include <sys/random.h>
#define HAVE_KERNEL_ENTROPY 1
#endif

/* ---- configured once by ``_deferred`` (configure()) ---------------------------------------------- */

enum {
    S_TRACE_ID, S_SPAN_ID, S_PARENT, S_FLAGS, S_STATE, S_BUILT, S_CONTEXT, S_START_NS, S_T0, S_END_NS,
    S_TOKEN, S_JOB, S_FINISH, S_OP, S_RESOURCE, S_REQUEST, S_RESPONSE, N_SLOTS
};
static const char *slot_names[N_SLOTS] = {
    "trace_id", "span_id", "parent", "flags", "state", "built", "context", "start_ns", "t0", "end_ns",
    "token", "job", "finish", "op", "resource", "request", "response",
};
static Py_ssize_t slot_off[N_SLOTS];

/* Finisher's slots read on the request path, by offset (configure checks they are object slots). */
enum { F_QUEUE, F_RUNNING, F_MAX_PENDING, F_WAKE_AT, N_FINISHER };
static const char *finisher_names[N_FINISHER] = {"queue", "running", "max_pending", "wake_at"};
static Py_ssize_t finisher_off[N_FINISHER];
static PyObject *deque_type, *deque_append; /* collections.deque and its unbound append */

static PyTypeObject *pending_type;
static PyObject *context_type, *span_key, *slot_key, *current_var, *root_flags, *list_keys,
    *finisher, *empty_tuple;
static PyObject *s_wake, *s_submit,
    *s_get_span_context, *s_generate_trace_id, *s_generate_span_id, *s_eager, *s_failed, *s_other,
    *s_internal, *s_error, *s_is_plain, *s_site_begin, *s_site_detach;
static int configured;

static inline void set_slot(PyObject *obj, int i, PyObject *value) /* new reference to value */
{
    PyObject **p = (PyObject **)((char *)obj + slot_off[i]);
    PyObject *old = *p;
    Py_INCREF(value);
    *p = value;
    Py_XDECREF(old);
}

static inline void set_slot_steal(PyObject *obj, int i, PyObject *value)
{
    PyObject **p = (PyObject **)((char *)obj + slot_off[i]);
    PyObject *old = *p;
    *p = value;
    Py_XDECREF(old);
}

static inline PyObject *get_slot(PyObject *obj, int i) /* borrowed, may be NULL */
{
    return *(PyObject **)((char *)obj + slot_off[i]);
}

static PyObject *now_ns(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return PyLong_FromLongLong((long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
}

static PyObject *perf_counter(void) /* time.perf_counter(): CLOCK_MONOTONIC on Linux, in seconds */
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return PyFloat_FromDouble((double)((long long)ts.tv_sec * 1000000000LL + ts.tv_nsec) / 1e9);
}

/* The offsets of ``type``'s object slots ``names``; -1 with TypeError when one is not such a slot. */
static int member_offsets(PyObject *type, const char **names, int n, Py_ssize_t *out)
{
    for (int i = 0; i < n; i++) {
        PyObject *d = PyDict_GetItemString(((PyTypeObject *)type)->tp_dict, names[i]);
        if (d == NULL || !Py_IS_TYPE(d, &PyMemberDescr_Type) ||
            ((PyMemberDescrObject *)d)->d_member->type != T_OBJECT_EX) {
            PyErr_Format(PyExc_TypeError, "configure: %s has no object slot %s", ((PyTypeObject *)type)->tp_name,
                         names[i]);
            return -1;
        }
        out[i] = ((PyMemberDescrObject *)d)->d_member->offset;
    }
    return 0;
}

static PyObject *configure(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *ptype, *ctype, *skey, *lkey, *var, *flags, *keys, *fin;
    if (!PyArg_ParseTuple(args, "O!OOOOOOO:configure", &PyType_Type, &ptype, &ctype, &skey, &lkey, &var, &flags,
                          &keys, &fin))
        return NULL;
    if (!PyType_Check(ctype) || !PyType_IsSubtype((PyTypeObject *)ctype, &PyDict_Type)) {
        PyErr_SetString(PyExc_TypeError, "configure: the context type must be a dict subclass");
        return NULL;
    }
    if (!PyTuple_Check(keys)) {
        PyErr_SetString(PyExc_TypeError, "configure: list_keys must be a tuple");
        return NULL;
    }
    Py_ssize_t offsets[N_SLOTS], foffsets[N_FINISHER];
    if (member_offsets(ptype, slot_names, N_SLOTS, offsets) < 0 ||
        member_offsets((PyObject *)Py_TYPE(fin), finisher_names, N_FINISHER, foffsets) < 0)
        return NULL;
    PyObject *queue = *(PyObject **)((char *)fin + foffsets[F_QUEUE]);
    if (queue == NULL) {
        PyErr_SetString(PyExc_TypeError, "configure: the finisher has no queue");
        return NULL;
    }
    PyObject *append = PyObject_GetAttrString((PyObject *)Py_TYPE(queue), "append");
    if (append == NULL)
        return NULL;
    Py_XSETREF(deque_type, Py_NewRef((PyObject *)Py_TYPE(queue)));
    Py_XSETREF(deque_append, append);
    memcpy(finisher_off, foffsets, sizeof foffsets);
    /* all checked: commit. The objects are held for the process's life (configure runs once). */
    memcpy(slot_off, offsets, sizeof offsets);
    PyObject *fresh[] = {ptype, ctype, skey, lkey, var, flags, keys, fin};
    PyObject **held[] = {(PyObject **)&pending_type, &context_type, &span_key, &slot_key, &current_var,
                         &root_flags, &list_keys, &finisher};
    for (size_t i = 0; i < sizeof fresh / sizeof fresh[0]; i++) {
        PyObject *old = *held[i];
        *held[i] = Py_NewRef(fresh[i]);
        Py_XDECREF(old);
    }
    configured = 1;
    Py_RETURN_NONE;
}

/* ---- FastMethod --------------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *dict;
    PyObject *original, *owner, *op, *snapshot, *plain, *finish, *inner_ids, *bound, *limit;
    int random_ids;
    char active;                  /* cleared by Instrumentor._restore: a pass-through from then on */
    int low64, always;            /* the sampling bound as a 64-bit compare (limit == 2**64 - 1) */
    unsigned long long ubound;
} FastMethod;

enum { BEGIN_ERROR = -2, BEGIN_EAGER = -1, BEGIN_SAMPLED_OUT = 0, BEGIN_PENDING = 1 };

/* The exception set now as one object (normalized, its traceback attached); clears it. */
static PyObject *take_exception(void)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (value == NULL) { /* cannot happen after a failed call; be safe */
        value = Py_NewRef(Py_None);
    } else if (tb != NULL) {
        PyException_SetTraceback(value, tb);
    }
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
}

/* ``owner._internal_error(site, exc)`` for the exception set now: 0 when it was swallowed (and logged
   once), -1 with the exception set when it propagates (the guard re-raised it: tests). */
static int internal_error(FastMethod *self, PyObject *site)
{
    PyObject *exc = take_exception();
    PyObject *r = PyObject_CallMethodObjArgs(self->owner, s_internal, site, exc, NULL);
    Py_DECREF(exc);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* Ids for the default RandomIdGenerator: xoshiro256** (Blackman & Vigna), seeded from the kernel
   (getentropy) when the module loads and again in every forked child, drawn under the GIL. The SDK's
   generator draws the same uniform bits from ``random``'s Mersenne Twister; two calls into it cost ~2 us
   between two SDK calls (its 2.5 KB state, a temporary buffer per draw), these ~0.1 us. */
static uint64_t rng[4];

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t next_random(void)
{
    uint64_t result = rotl(rng[1] * 5, 7) * 9, t = rng[1] << 17;
    rng[2] ^= rng[0];
    rng[3] ^= rng[1];
    rng[1] ^= rng[2];
    rng[0] ^= rng[3];
    rng[2] ^= t;
    rng[3] = rotl(rng[3], 45);
    return result;
}

static void seed_random(void)
{
    uint64_t seed[4] = {0, 0, 0, 0};
    size_t got = 0;
#ifdef HAVE_KERNEL_ENTROPY
    if (getentropy(seed, sizeof seed) == 0) /* a syscall: safe in a forked child's handler */
        got = sizeof seed;
#endif
    if (got < sizeof seed) { /* no kernel entropy: time and addresses, mixed by splitmix64 */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ (uint64_t)(uintptr_t)&got ^
                     ((uint64_t)getpid() << 40);
        for (int i = 0; i < 4; i++) {
            uint64_t z = (x += 0x9E3779B97F4A7C15ULL);
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
            seed[i] ^= z ^ (z >> 31);
        }
    }
    if (!(seed[0] | seed[1] | seed[2] | seed[3]))
        seed[0] = 1; /* the one state xoshiro cannot leave */
    memcpy(rng, seed, sizeof rng);
}

static PyObject *draw(FastMethod *self, int bytes, PyObject *method)
{
    if (self->random_ids) {
        uint64_t words[2] = {next_random(), bytes > 8 ? next_random() : 0};
        if (words[0] | words[1]) /* a zero draw: the generator's own method, as FastPath.begin */
            return _PyLong_FromByteArray((const unsigned char *)words, (size_t)bytes, 1, 0);
    }
    return PyObject_CallMethodNoArgs(self->inner_ids, method);
}

/* FastPath.begin: *out gets a new PendingCall when BEGIN_PENDING. */
static int begin(FastMethod *self, PyObject **out)
{
    PyObject *ctx = NULL, *parent_ctx = NULL, *trace_id = NULL, *span_id = NULL, *pending = NULL;
    PyObject *flags = root_flags, *state = Py_None, *parent = Py_None, *fresh = NULL, *token = NULL;
    int verdict = BEGIN_ERROR;

    if (PyContextVar_Get(current_var, NULL, &ctx) < 0)
        goto fail;
    if (ctx == NULL || !PyDict_Check(ctx)) {
        verdict = BEGIN_EAGER; /* an unset or foreign current context: let the Python path decide */
        goto done;
    }
    int has = PyDict_Contains(ctx, slot_key);
    if (has < 0)
        goto fail;
    if (has) {
        verdict = BEGIN_EAGER; /* a framework model-call span may adopt this call */
        goto done;
    }
    PyObject *span = PyDict_GetItemWithError(ctx, span_key); /* borrowed */
    if (span == NULL && PyErr_Occurred())
        goto fail;
    if (span != NULL && span != Py_None) {
        parent_ctx = PyObject_CallMethodNoArgs(span, s_get_span_context);
        if (parent_ctx == NULL)
            goto fail;
        if (parent_ctx != Py_None) {
            if (!PyTuple_Check(parent_ctx) || PyTuple_GET_SIZE(parent_ctx) < 6) {
                verdict = BEGIN_EAGER; /* not the API's SpanContext */
                goto done;
            }
            int valid = PyObject_IsTrue(PyTuple_GET_ITEM(parent_ctx, 5));
            if (valid < 0)
                goto fail;
            if (valid) {
                PyObject *f = PyTuple_GET_ITEM(parent_ctx, 3);
                long bits = PyLong_Check(f) ? PyLong_AsLong(f) : -1;
                if (bits == -1 && PyErr_Occurred())
                    goto fail;
                if (bits == -1) {
                    verdict = BEGIN_EAGER;
                    goto done;
                }
                if (!(bits & 1)) {
                    verdict = BEGIN_SAMPLED_OUT;
                    goto done;
                }
                parent = parent_ctx;
                flags = f;
                trace_id = Py_NewRef(PyTuple_GET_ITEM(parent_ctx, 0));
                state = PyTuple_GET_ITEM(parent_ctx, 4);
            }
        }
    }
    if (trace_id == NULL) { /* a root: the ParentBased sampler's root decision on the drawn trace id */
        trace_id = draw(self, 16, s_generate_trace_id);
        if (trace_id == NULL)
            goto fail;
        int out_of_bound;
        if (self->low64) { /* TraceIdRatioBased's limit is 2**64 - 1: compare the low 64 bits */
            unsigned long long low = PyLong_AsUnsignedLongLongMask(trace_id);
            if (low == (unsigned long long)-1 && PyErr_Occurred())
                goto fail;
            out_of_bound = !self->always && low >= self->ubound;
        } else {
            PyObject *masked = PyNumber_And(trace_id, self->limit);
            if (masked == NULL)
                goto fail;
            out_of_bound = PyObject_RichCompareBool(masked, self->bound, Py_GE);
            Py_DECREF(masked);
            if (out_of_bound < 0)
                goto fail;
        }
        if (out_of_bound) {
            verdict = BEGIN_SAMPLED_OUT;
            goto done;
        }
    }
    span_id = draw(self, 8, s_generate_span_id);
    if (span_id == NULL)
        goto fail;

    pending = pending_type->tp_new(pending_type, empty_tuple, NULL);
    if (pending == NULL)
        goto fail;
    PyObject *copied = PyContext_CopyCurrent(); /* before the stand-in is current: the parent's */
    if (copied == NULL)
        goto fail;
    set_slot_steal(pending, S_CONTEXT, copied);
    PyObject *start = now_ns(CLOCK_REALTIME), *t0 = perf_counter();
    if (start == NULL || t0 == NULL) {
        Py_XDECREF(start);
        Py_XDECREF(t0);
        goto fail;
    }
    set_slot_steal(pending, S_START_NS, start);
    set_slot_steal(pending, S_T0, t0);
    set_slot(pending, S_TRACE_ID, trace_id);
    set_slot(pending, S_SPAN_ID, span_id);
    set_slot(pending, S_PARENT, parent);
    set_slot(pending, S_FLAGS, flags);
    set_slot(pending, S_STATE, state);
    set_slot(pending, S_BUILT, Py_None);
    PyObject *zero = PyLong_FromLong(0);
    if (zero == NULL)
        goto fail;
    set_slot_steal(pending, S_END_NS, zero);
    set_slot(pending, S_TOKEN, Py_None);
    set_slot(pending, S_JOB, Py_None);
    set_slot(pending, S_FINISH, Py_None);

    fresh = PyObject_CallNoArgs(context_type); /* Context(ctx, span_key=pending) */
    if (fresh == NULL || PyDict_Merge(fresh, ctx, 1) < 0 || PyDict_SetItem(fresh, span_key, pending) < 0)
        goto fail;
    token = PyContextVar_Set(current_var, fresh);
    if (token == NULL)
        goto fail;
    set_slot_steal(pending, S_TOKEN, token);
    *out = pending;
    pending = NULL;
    verdict = BEGIN_PENDING;
    goto done;
fail:
    verdict = BEGIN_ERROR;
done:
    Py_XDECREF(ctx);
    Py_XDECREF(parent_ctx);
    Py_XDECREF(trace_id);
    Py_XDECREF(span_id);
    Py_XDECREF(pending);
    Py_XDECREF(fresh);
    if (verdict == BEGIN_ERROR)
        verdict = internal_error(self, s_site_begin) < 0 ? BEGIN_ERROR : BEGIN_EAGER;
    return verdict;
}

/* PendingCall.detach: 0, or -1 with an exception set when the guard re-raised. */
static int detach(FastMethod *self, PyObject *pending)
{
    PyObject *token = get_slot(pending, S_TOKEN);
    if (token == NULL || token == Py_None)
        return 0;
    Py_INCREF(token);
    set_slot(pending, S_TOKEN, Py_None);
    int rc = PyContextVar_Reset(current_var, token);
    Py_DECREF(token);
    if (rc < 0)
        return internal_error(self, s_site_detach);
    return 0;
}

static PyObject *kwargs_dict(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *kwargs = PyDict_New();
    if (kwargs == NULL || kwnames == NULL)
        return kwargs;
    Py_ssize_t n = PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (PyDict_SetItem(kwargs, PyTuple_GET_ITEM(kwnames, i), args[nargs + i]) < 0) {
            Py_DECREF(kwargs);
            return NULL;
        }
    }
    return kwargs;
}

/* snapshot_kwargs: the list values apps mutate after the call, copied in place. */
static int snapshot_kwargs(PyObject *kwargs)
{
    Py_ssize_t n = PyTuple_GET_SIZE(list_keys);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *key = PyTuple_GET_ITEM(list_keys, i);
        PyObject *value = PyDict_GetItemWithError(kwargs, key);
        if (value == NULL) {
            if (PyErr_Occurred())
                return -1;
            continue;
        }
        if (PyList_CheckExact(value)) {
            PyObject *copy = PyList_GetSlice(value, 0, PyList_GET_SIZE(value));
            if (copy == NULL)
                return -1;
            int rc = PyDict_SetItem(kwargs, key, copy);
            Py_DECREF(copy);
            if (rc < 0)
                return -1;
        }
    }
    return 0;
}

/* Queue a filled PendingCall for the finisher (the inlined half of Finisher.submit). */
static int enqueue(PyObject *pending)
{
    PyObject *r, *f[N_FINISHER];
    for (int i = 0; i < N_FINISHER; i++)
        f[i] = *(PyObject **)((char *)finisher + finisher_off[i]); /* borrowed; NULL when unset */
    if (f[F_RUNNING] == Py_True && f[F_QUEUE] != NULL && Py_TYPE(f[F_QUEUE]) == (PyTypeObject *)deque_type &&
        f[F_MAX_PENDING] != NULL && PyLong_CheckExact(f[F_MAX_PENDING]) && f[F_WAKE_AT] != NULL &&
        PyLong_CheckExact(f[F_WAKE_AT])) {
        PyObject *queue = f[F_QUEUE];
        Py_ssize_t depth = PyObject_Size(queue);
        Py_ssize_t max = PyLong_AsSsize_t(f[F_MAX_PENDING]), at = PyLong_AsSsize_t(f[F_WAKE_AT]);
        if (depth < 0 || ((max == -1 || at == -1) && PyErr_Occurred()))
            return -1;
        if (depth < max) {
            PyObject *call[2] = {queue, pending};
            r = PyObject_Vectorcall(deque_append, call, 2, NULL);
            if (r == NULL)
                return -1;
            Py_DECREF(r);
            if (depth + 1 == at) {
                r = PyObject_CallMethodNoArgs(finisher, s_wake);
                if (r == NULL)
                    return -1;
                Py_DECREF(r);
            }
            return 0;
        }
    }
    r = PyObject_CallMethodOneArg(finisher, s_submit, pending); /* starts the thread, or drops and counts */
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* After the original returned ``result`` (owned by the caller) and the stand-in was detached: what the
   app gets (a new reference). */
static PyObject *complete(FastMethod *self, PyObject *pending, PyObject *instance, PyObject *kwargs,
                          PyObject *result)
{
    PyObject *type = (PyObject *)Py_TYPE(result);
    PyObject *plain = PyDict_GetItemWithError(self->plain, type); /* borrowed */
    if (plain == NULL) {
        if (PyErr_Occurred())
            goto error;
        PyObject *computed = PyObject_CallMethodOneArg(self->owner, s_is_plain, result);
        if (computed == NULL)
            goto error;
        int is = PyObject_IsTrue(computed);
        Py_DECREF(computed);
        if (is < 0)
            goto error;
        plain = is ? Py_True : Py_False;
        if (PyDict_GET_SIZE(self->plain) < 256 && PyDict_SetItem(self->plain, type, plain) < 0)
            goto error;
    }
    if (plain != Py_True)
        return PyObject_CallMethodObjArgs(self->owner, s_other, self->op, pending, instance, kwargs, result, NULL);
    PyObject *end = now_ns(CLOCK_REALTIME);
    if (end == NULL)
        goto error;
    set_slot_steal(pending, S_END_NS, end);
    set_slot(pending, S_OP, self->op);
    set_slot(pending, S_RESOURCE, instance);
    if (snapshot_kwargs(kwargs) < 0)
        goto error;
    set_slot(pending, S_REQUEST, kwargs);
    if (self->snapshot != Py_None) {
        PyObject *snap = PyObject_CallOneArg(self->snapshot, result);
        if (snap == NULL)
            goto error;
        set_slot_steal(pending, S_RESPONSE, snap);
    } else {
        set_slot(pending, S_RESPONSE, result);
    }
    set_slot(pending, S_FINISH, self->finish);
    if (enqueue(pending) < 0)
        goto error;
    return Py_NewRef(result);
error: { /* our bug: logged once, then the eager span (the Python path's fallback) */
    PyObject *exc = take_exception();
    PyObject *r = PyObject_CallMethodObjArgs(self->owner, s_error, self->op, pending, instance, kwargs, result,
                                             exc, NULL);
    Py_DECREF(exc);
    return r;
}
}

static PyObject *fm_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    FastMethod *self = (FastMethod *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs < 1 || !configured)
        return PyObject_Vectorcall(self->original, args, nargsf, kwnames);
    if (!self->active)
        return PyObject_Vectorcall(self->original, args, nargsf, kwnames);
    PyObject *instance = args[0];
    PyObject *pending = NULL;
    int verdict = begin(self, &pending);
    if (verdict == BEGIN_ERROR)
        return NULL;
    if (verdict == BEGIN_SAMPLED_OUT)
        return PyObject_Vectorcall(self->original, args, nargsf, kwnames);
    if (verdict == BEGIN_EAGER) {
        PyObject *bound = PyMethod_New(self->original, instance);
        PyObject *rest = bound ? PyTuple_New(nargs - 1) : NULL;
        PyObject *kwargs = rest ? kwargs_dict(args, nargs, kwnames) : NULL;
        PyObject *r = NULL;
        if (kwargs != NULL) {
            for (Py_ssize_t i = 1; i < nargs; i++)
                PyTuple_SET_ITEM(rest, i - 1, Py_NewRef(args[i]));
            r = PyObject_CallMethodObjArgs(self->owner, s_eager, self->op, bound, instance, rest, kwargs, NULL);
        }
        Py_XDECREF(bound);
        Py_XDECREF(rest);
        Py_XDECREF(kwargs);
        return r;
    }
    PyObject *result = PyObject_Vectorcall(self->original, args, nargsf, kwnames);
    PyObject *kwargs;
    if (result == NULL) { /* the app's exception: recorded on the eager span, then re-raised unchanged */
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyErr_NormalizeException(&type, &value, &tb);
        if (tb != NULL)
            PyException_SetTraceback(value, tb);
        int ok = detach(self, pending) == 0;
        kwargs = ok ? kwargs_dict(args, nargs, kwnames) : NULL;
        PyObject *r = kwargs ? PyObject_CallMethodObjArgs(self->owner, s_failed, self->op, pending, instance, kwargs,
                                                          value, NULL)
                             : NULL;
        Py_XDECREF(kwargs);
        Py_DECREF(pending);
        if (r == NULL) { /* only when an internal error propagates (tests): that error wins */
            Py_XDECREF(type);
            Py_XDECREF(value);
            Py_XDECREF(tb);
            return NULL;
        }
        Py_DECREF(r);
        PyErr_Restore(type, value, tb);
        return NULL;
    }
    PyObject *out = NULL;
    if (detach(self, pending) == 0) {
        kwargs = kwargs_dict(args, nargs, kwnames);
        if (kwargs == NULL) {
            if (internal_error(self, s_site_begin) == 0)
                out = Py_NewRef(result); /* no request attributes to keep: the call stays unrecorded */
        } else {
            out = complete(self, pending, instance, kwargs, result);
            Py_DECREF(kwargs);
        }
    }
    Py_DECREF(pending);
    Py_DECREF(result);
    return out;
}

static int fm_traverse(FastMethod *self, visitproc visit, void *arg)
{
    Py_VISIT(self->dict);
    Py_VISIT(self->original);
    Py_VISIT(self->owner);
    Py_VISIT(self->op);
    Py_VISIT(self->snapshot);
    Py_VISIT(self->plain);
    Py_VISIT(self->finish);
    Py_VISIT(self->inner_ids);
    Py_VISIT(self->bound);
    Py_VISIT(self->limit);
    return 0;
}

static int fm_clear(FastMethod *self)
{
    Py_CLEAR(self->dict);
    Py_CLEAR(self->original);
    Py_CLEAR(self->owner);
    Py_CLEAR(self->op);
    Py_CLEAR(self->snapshot);
    Py_CLEAR(self->plain);
    Py_CLEAR(self->finish);
    Py_CLEAR(self->inner_ids);
    Py_CLEAR(self->bound);
    Py_CLEAR(self->limit);
    return 0;
}

static void fm_dealloc(FastMethod *self)
{
    PyObject_GC_UnTrack(self);
    fm_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *fm_descr_get(PyObject *self, PyObject *obj, PyObject *Py_UNUSED(type))
{
    if (obj == NULL || obj == Py_None)
        return Py_NewRef(self);
    return PyMethod_New(self, obj);
}

static PyObject *fm_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *original, *owner, *op, *fast, *snapshot = NULL;
    static char *kwlist[] = {"original", "owner", "op", "fast", "snapshot", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOO|O:FastMethod", kwlist, &original, &owner, &op, &fast,
                                     &snapshot))
        return NULL;
    if (!configured) {
        PyErr_SetString(PyExc_RuntimeError, "FastMethod: configure() has not run");
        return NULL;
    }
    if (!PyCallable_Check(original)) {
        PyErr_SetString(PyExc_TypeError, "FastMethod: original must be callable");
        return NULL;
    }
    FastMethod *self = (FastMethod *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->vectorcall = fm_vectorcall;
    self->original = Py_NewRef(original);
    self->owner = Py_NewRef(owner);
    self->op = Py_NewRef(op);
    PyObject *random_ids = NULL;
    if (!(self->snapshot = snapshot ? Py_NewRef(snapshot) : PyObject_GetAttrString(op, "snapshot")) ||
        !(self->plain = PyObject_GetAttrString(owner, "_plain")) ||
        !(self->finish = PyObject_GetAttrString(owner, "_finish_pending")) ||
        !(self->inner_ids = PyObject_GetAttrString(fast, "inner_ids")) ||
        !(self->bound = PyObject_GetAttrString(fast, "bound")) ||
        !(self->limit = PyObject_GetAttrString(fast, "limit")) ||
        !(random_ids = PyObject_GetAttrString(fast, "random_ids")))
        goto fail;
    if (!PyDict_CheckExact(self->plain) || !PyLong_Check(self->bound) || !PyLong_Check(self->limit)) {
        PyErr_SetString(PyExc_TypeError, "FastMethod: owner._plain must be a dict, fast.bound/limit ints");
        goto fail;
    }
    if ((self->random_ids = PyObject_IsTrue(random_ids)) < 0)
        goto fail;
    unsigned long long limit = PyLong_AsUnsignedLongLong(self->limit);
    if (limit == ULLONG_MAX && !PyErr_Occurred()) {
        self->low64 = 1;
        self->ubound = PyLong_AsUnsignedLongLong(self->bound);
        if (self->ubound == ULLONG_MAX && PyErr_Occurred()) {
            if (!PyErr_ExceptionMatches(PyExc_OverflowError) || _PyLong_Sign(self->bound) < 0)
                goto fail;
            PyErr_Clear();
            self->always = 1; /* bound 2**64 (always on): every low 64 bits are below it */
        }
    } else {
        PyErr_Clear(); /* another limit: compared as Python ints */
    }
    self->active = 1;
    Py_DECREF(random_ids);
    return (PyObject *)self;
fail:
    Py_XDECREF(random_ids);
    Py_DECREF(self);
    return NULL;
}

static PyMemberDef fm_members[] = {
    {"original", T_OBJECT, offsetof(FastMethod, original), READONLY, "the SDK's own function"},
    {"active", T_BOOL, offsetof(FastMethod, active), 0, "False: calls go straight to the original"},
    {NULL},
};

static PyGetSetDef fm_getset[] = {
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {NULL},
};

static PyTypeObject FastMethodType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "monitor.instrumentation._fastcall.FastMethod",
    .tp_doc = "An SDK method replaced by the deferred fast path in C (see the module source).",
    .tp_basicsize = sizeof(FastMethod),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL |
                Py_TPFLAGS_METHOD_DESCRIPTOR,
    .tp_new = fm_new,
    .tp_dealloc = (destructor)fm_dealloc,
    .tp_traverse = (traverseproc)fm_traverse,
    .tp_clear = (inquiry)fm_clear,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(FastMethod, vectorcall),
    .tp_descr_get = fm_descr_get,
    .tp_dictoffset = offsetof(FastMethod, dict),
    .tp_members = fm_members,
    .tp_getset = fm_getset,
};

/* ---- ChatSnapshot: ``_openai_chat.chat_response_snapshot`` of the SDK's own ChatCompletion --------

The same flat tuple as ``_sdk_chat_snapshot``, read from the pydantic models' instance dicts (where their
fields live) instead of through attribute lookups. A field missing from a dict is looked up in the model's
``__pydantic_extra__`` (what pydantic's ``__getattr__`` does); a read the Python code makes strictly
(``response.usage``) that finds nothing, or any unexpected shape, hands the response to ``fallback`` (the
Python function), as do types not (yet) known to be the SDK's models (``sdk_types``, filled by it). */

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *fallback, *sdk_types;
} ChatSnapshot;

static PyObject *s_extra, *s_id, *s_model, *s_system_fingerprint, *s_service_tier, *s_usage, *s_prompt_tokens,
    *s_completion_tokens, *s_prompt_tokens_details, *s_completion_tokens_details, *s_cached_tokens,
    *s_cache_write_tokens, *s_reasoning_tokens, *s_choices, *s_message, *s_tool_calls, *s_index, *s_role,
    *s_content, *s_refusal, *s_finish_reason, *s_function, *s_name, *s_arguments;

#define UNHANDLED ((PyObject *)1) /* not an error: the Python snapshot reads this one */

/* ``model.name`` for a pydantic model: a new reference, UNHANDLED when absent (strict) or None (lenient),
   NULL on error. */
static PyObject *model_field(PyObject *model, PyObject *name, int strict)
{
    PyObject *dict = PyObject_GenericGetDict(model, NULL);
    if (dict == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError) && !PyErr_ExceptionMatches(PyExc_TypeError))
            return NULL;
        PyErr_Clear();
        return UNHANDLED;
    }
    PyObject *value = PyDict_Check(dict) ? PyDict_GetItemWithError(dict, name) : NULL;
    Py_DECREF(dict);
    if (value != NULL)
        return Py_NewRef(value);
    if (PyErr_Occurred())
        return NULL;
    PyObject *extra = PyObject_GetAttr(model, s_extra);
    if (extra == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError))
            return NULL;
        PyErr_Clear();
    } else {
        value = PyDict_Check(extra) ? PyDict_GetItemWithError(extra, name) : NULL;
        Py_XINCREF(value);
        Py_DECREF(extra);
        if (value != NULL)
            return value;
        if (PyErr_Occurred())
            return NULL;
    }
    return strict ? UNHANDLED : Py_NewRef(Py_None);
}

/* Append ``model.name`` to ``out`` (a list); 1 appended, 0 unhandled, -1 error. */
static int take(PyObject *out, PyObject *model, PyObject *name, int strict)
{
    PyObject *v = model_field(model, name, strict);
    if (v == NULL)
        return -1;
    if (v == UNHANDLED)
        return 0;
    int rc = PyList_Append(out, v);
    Py_DECREF(v);
    return rc < 0 ? -1 : 1;
}

/* ``(t.id, t.function.name, t.function.arguments)`` per tool call; UNHANDLED for unexpected shapes. */
static PyObject *tool_calls_tuple(PyObject *calls)
{
    if (!PyList_Check(calls))
        return UNHANDLED;
    Py_ssize_t n = PyList_GET_SIZE(calls);
    PyObject *out = PyTuple_New(n);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = PyList_GET_ITEM(calls, i), *entry = PyList_New(0), *fn = NULL;
        int rc = entry ? take(entry, t, s_id, 1) : -1;
        if (rc == 1) {
            fn = model_field(t, s_function, 0);
            if (fn == NULL)
                rc = -1;
            else if (fn == UNHANDLED || PyDict_Check(fn)) /* a Mapping: _genai.get's other branch */
                rc = 0;
            else if (fn == Py_None)
                rc = PyList_Append(entry, Py_None) < 0 || PyList_Append(entry, Py_None) < 0 ? -1 : 1;
            else if ((rc = take(entry, fn, s_name, 0)) == 1)
                rc = take(entry, fn, s_arguments, 0);
        }
        if (fn != UNHANDLED)
            Py_XDECREF(fn);
        if (rc == 1) {
            PyObject *tuple = PyList_AsTuple(entry);
            if (tuple == NULL)
                rc = -1;
            else
                PyTuple_SET_ITEM(out, i, tuple);
        }
        Py_XDECREF(entry);
        if (rc != 1) {
            Py_DECREF(out);
            return rc == 0 ? UNHANDLED : NULL;
        }
    }
    return out;
}

static PyObject *empty_calls;

/* The snapshot, or UNHANDLED, or NULL on error. */
static PyObject *chat_snapshot(PyObject *response)
{
    PyObject *out = PyList_New(0), *usage = NULL, *details = NULL, *choices = NULL, *result = UNHANDLED;
    int rc;
    if (out == NULL)
        return NULL;
    usage = model_field(response, s_usage, 1);
    if (usage == NULL || usage == UNHANDLED)
        goto done_usage;
    PyObject *head[] = {s_id, s_model, s_system_fingerprint, s_service_tier};
    for (int i = 0; i < 4; i++)
        if ((rc = take(out, response, head[i], 1)) != 1)
            goto fail_rc;
    if (usage == Py_None) {
        for (int i = 0; i < 5; i++)
            if (PyList_Append(out, Py_None) < 0)
                goto error;
    } else {
        PyObject *prompt = model_field(usage, s_prompt_tokens_details, 1);
        if (prompt == NULL)
            goto error;
        if (prompt == UNHANDLED)
            goto unhandled;
        details = prompt;
        PyObject *completion = model_field(usage, s_completion_tokens_details, 1);
        if (completion == NULL)
            goto error;
        if (completion == UNHANDLED)
            goto unhandled;
        if ((rc = take(out, usage, s_prompt_tokens, 1)) != 1 || (rc = take(out, usage, s_completion_tokens, 1)) != 1) {
            Py_DECREF(completion);
            goto fail_rc;
        }
        PyObject *reads[3][2] = {{prompt, s_cached_tokens}, {prompt, s_cache_write_tokens},
                                 {completion, s_reasoning_tokens}};
        for (int i = 0; i < 3; i++) {
            PyObject *model = reads[i][0];
            if (model == Py_None) {
                rc = PyList_Append(out, Py_None) < 0 ? -1 : 1;
            } else {
                rc = take(out, model, reads[i][1], 0);
            }
            if (rc != 1) {
                Py_DECREF(completion);
                goto fail_rc;
            }
        }
        Py_DECREF(completion);
    }
    choices = model_field(response, s_choices, 1);
    if (choices == NULL)
        goto error;
    if (choices == UNHANDLED)
        goto unhandled;
    if (choices != Py_None && !PyList_Check(choices))
        goto unhandled;
    Py_ssize_t n = choices == Py_None ? 0 : PyList_GET_SIZE(choices);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *ch = PyList_GET_ITEM(choices, i);
        PyObject *msg = model_field(ch, s_message, 1);
        if (msg == NULL)
            goto error;
        if (msg == UNHANDLED)
            goto unhandled;
        PyObject *calls = model_field(msg, s_tool_calls, 1);
        if (calls == NULL || calls == UNHANDLED) {
            Py_DECREF(msg);
            if (calls == NULL)
                goto error;
            goto unhandled;
        }
        rc = take(out, ch, s_index, 1);
        if (rc == 1)
            rc = take(out, msg, s_role, 1);
        if (rc == 1)
            rc = take(out, msg, s_content, 1);
        if (rc == 1)
            rc = take(out, msg, s_refusal, 1);
        if (rc == 1)
            rc = take(out, ch, s_finish_reason, 1);
        Py_DECREF(msg);
        if (rc == 1) {
            int truthy = PyObject_IsTrue(calls);
            PyObject *tuple = truthy < 0 ? NULL : truthy ? tool_calls_tuple(calls) : Py_NewRef(empty_calls);
            if (tuple == NULL) {
                rc = -1;
            } else if (tuple == UNHANDLED) {
                rc = 0;
            } else {
                rc = PyList_Append(out, tuple) < 0 ? -1 : 1;
                Py_DECREF(tuple);
            }
        }
        Py_DECREF(calls);
        if (rc != 1)
            goto fail_rc;
    }
    result = PyList_AsTuple(out);
    goto done;
fail_rc:
    if (rc == 0)
        goto unhandled;
error:
    result = NULL;
    goto done;
unhandled:
    result = UNHANDLED;
    goto done;
done_usage:
    result = usage == NULL ? NULL : UNHANDLED;
    usage = NULL;
done:
    Py_DECREF(out);
    if (usage != NULL && usage != UNHANDLED)
        Py_DECREF(usage);
    if (details != NULL && details != UNHANDLED)
        Py_DECREF(details);
    if (choices != NULL && choices != UNHANDLED)
        Py_DECREF(choices);
    return result;
}

static PyObject *cs_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    ChatSnapshot *self = (ChatSnapshot *)callable;
    if (PyVectorcall_NARGS(nargsf) != 1 || kwnames != NULL)
        return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
    PyObject *response = args[0];
    PyObject *known = PyDict_GetItemWithError(self->sdk_types, (PyObject *)Py_TYPE(response));
    if (known == Py_True) {
        PyObject *snap = chat_snapshot(response);
        if (snap != UNHANDLED)
            return snap;
    } else if (known == NULL && PyErr_Occurred()) {
        return NULL;
    }
    return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
}

static PyObject *cs_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *fallback, *sdk_types;
    static char *kwlist[] = {"fallback", "sdk_types", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO!:ChatSnapshot", kwlist, &fallback, &PyDict_Type, &sdk_types))
        return NULL;
    ChatSnapshot *self = (ChatSnapshot *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->vectorcall = cs_vectorcall;
    self->fallback = Py_NewRef(fallback);
    self->sdk_types = Py_NewRef(sdk_types);
    return (PyObject *)self;
}

static int cs_traverse(ChatSnapshot *self, visitproc visit, void *arg)
{
    Py_VISIT(self->fallback);
    Py_VISIT(self->sdk_types);
    return 0;
}

static int cs_clear(ChatSnapshot *self)
{
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->sdk_types);
    return 0;
}

static void cs_dealloc(ChatSnapshot *self)
{
    PyObject_GC_UnTrack(self);
    cs_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject ChatSnapshotType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "monitor.instrumentation._fastcall.ChatSnapshot",
    .tp_doc = "ChatSnapshot(fallback, sdk_types): chat_response_snapshot from the models' dicts (see the source).",
    .tp_basicsize = sizeof(ChatSnapshot),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = cs_new,
    .tp_dealloc = (destructor)cs_dealloc,
    .tp_traverse = (traverseproc)cs_traverse,
    .tp_clear = (inquiry)cs_clear,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(ChatSnapshot, vectorcall),
};

static PyMethodDef module_methods[] = {
    {"configure", configure, METH_VARARGS,
     "configure(PendingCall, Context, span_key, slot_key, current_var, root_flags, list_keys, "
     "finisher): once, before any FastMethod is built"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_fastcall", "The deferred model call's request path in C (see the source).", -1,
    module_methods,
};

#define INTERN(var, text)                                                                                      \
    if ((var = PyUnicode_InternFromString(text)) == NULL)                                                     \
        return NULL;

PyMODINIT_FUNC PyInit__fastcall(void)
{
    if (PyType_Ready(&FastMethodType) < 0 || PyType_Ready(&ChatSnapshotType) < 0)
        return NULL;
    INTERN(s_extra, "__pydantic_extra__");
    INTERN(s_id, "id");
    INTERN(s_model, "model");
    INTERN(s_system_fingerprint, "system_fingerprint");
    INTERN(s_service_tier, "service_tier");
    INTERN(s_usage, "usage");
    INTERN(s_prompt_tokens, "prompt_tokens");
    INTERN(s_completion_tokens, "completion_tokens");
    INTERN(s_prompt_tokens_details, "prompt_tokens_details");
    INTERN(s_completion_tokens_details, "completion_tokens_details");
    INTERN(s_cached_tokens, "cached_tokens");
    INTERN(s_cache_write_tokens, "cache_write_tokens");
    INTERN(s_reasoning_tokens, "reasoning_tokens");
    INTERN(s_choices, "choices");
    INTERN(s_message, "message");
    INTERN(s_tool_calls, "tool_calls");
    INTERN(s_index, "index");
    INTERN(s_role, "role");
    INTERN(s_content, "content");
    INTERN(s_refusal, "refusal");
    INTERN(s_finish_reason, "finish_reason");
    INTERN(s_function, "function");
    INTERN(s_name, "name");
    INTERN(s_arguments, "arguments");
    if ((empty_calls = PyTuple_New(0)) == NULL)
        return NULL;
    INTERN(s_wake, "wake");
    INTERN(s_submit, "submit");
    INTERN(s_get_span_context, "get_span_context");
    INTERN(s_generate_trace_id, "generate_trace_id");
    INTERN(s_generate_span_id, "generate_span_id");
    INTERN(s_eager, "_eager_call");
    INTERN(s_failed, "_call_failed");
    INTERN(s_other, "_complete_other");
    INTERN(s_internal, "_internal_error");
    INTERN(s_error, "_defer_failed");
    INTERN(s_is_plain, "_is_plain");
    INTERN(s_site_begin, "llm.fast.begin");
    INTERN(s_site_detach, "llm.fast.deactivate");
    if ((empty_tuple = PyTuple_New(0)) == NULL)
        return NULL;
    seed_random();
    pthread_atfork(NULL, NULL, seed_random); /* a child must not repeat its parent's ids */
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "FastMethod", (PyObject *)&FastMethodType) < 0 ||
        PyModule_AddObjectRef(m, "ChatSnapshot", (PyObject *)&ChatSnapshotType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
