/* Native fast path for the OTel GenAI mapping (collectors/normalize/otel_genai.py + messages.py).
 *
 * A line-by-line mirror of the Python reference written against the C API, so the rows it fills are the
 * same objects' values, types and key orders: every value test the Python makes (type(v) is str,
 * isinstance(v, dict), ==, truthiness, int()/float() of a string, f-string formatting) is made here with
 * the C function CPython itself runs for it (PyLong_FromUnicodeObject, PyFloat_FromString,
 * PyObject_Format, PyObject_RichCompareBool, PyObject_IsTrue...). Rare or bulky paths call back into the
 * Python helpers handed to configure(): JSON parsing (common.loads), JSON writing (common.to_json),
 * display_text, as_str_list. Exceptions propagate like the Python code's would (the pipeline then falls
 * back to the generic mapping, as it does for the reference).
 *
 * Message JSON of the usual shapes is read and written directly by the "direct lane" (see its section:
 * a bounds-checked cursor over the str's UTF-8, declining anything unusual); everything else is parsed
 * by orjson/json. Elsewhere the memory-safety surface is the C API use itself: every container access is
 * bounds-checked through the API, items are held with a new reference while Python callbacks run.
 * Runs with the GIL held, except the lane's parse in content_batch(): a request's message JSON is read and
 * written there for all its spans at once with the GIL released (pure C over the strs' UTF-8, which the
 * batch holds references to; the raw allocator), and normalize_span() takes each span's result when its
 * strs are still the ones parsed. Keeps no state besides the configuration (set once at import).
 *
 * Also here, needing no configuration: price_usual(), pricing.Pricer.apply's loop over the usual rows (see
 * its section at the end), computing Price.cost's float operations in the same order; this file is built
 * with -ffp-contract=off (setup.py) so that none of them is fused.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* --- configuration: Python callables, dicts and the attribute keys (from monitor/semconv.py) ----------- */
static PyObject *py_loads, *py_to_json, *py_display_text, *py_as_str_list; /* callables */
static PyObject *operation_kinds, *provider_aliases;                       /* dicts */
/* orjson.loads / orjson.dumps and common.json_default when orjson is installed (else NULL): called directly,
 * the Python helper only when they raise what the helper catches (it then retries them and uses json) */
static PyObject *fast_loads, *fast_dumps, *json_default, *kw_default;

enum {
    K_OP,
    K_PROVIDER,
    K_SYSTEM,
    K_REQ_MODEL,
    K_RESP_MODEL,
    K_RESP_ID,
    K_TTFT,
    K_TEMPERATURE,
    K_TOP_P,
    K_MAX_TOKENS,
    K_STREAM,
    K_IN_TOKENS,
    K_PROMPT_TOKENS,
    K_OUT_TOKENS,
    K_COMPLETION_TOKENS,
    K_TOTAL_1,
    K_TOTAL_2,
    K_CONVERSATION,
    K_FINISH_REASONS,
    K_SYSTEM_INSTRUCTIONS,
    K_IN_MESSAGES,
    K_PROMPT,
    K_OUT_MESSAGES,
    K_COMPLETION,
    N_KEYS
};
static PyObject *keys[N_KEYS];

/* interned literals of the message shape and the row's column names */
static PyObject *S_role, *S_content, *S_parts, *S_name, *S_finish_reason, *S_type, *S_text, *S_function,
    *S_id, *S_arguments, *S_tool_call, *S_tool_call_response, *S_response, *S_result, *S_tool_call_id,
    *S_tool_calls, *S_tool, *S_system, *S_server_tool_call, *S_blob, *S_file, *S_uri, *S_modality,
    *S_mime_type, *S_empty, *S_nl, *S_nlnl, *S_user, *S_assistant, *S_llm, *S_true, *S_false, *S_strip,
    *S_lower;
static PyObject *C_provider, *C_request_model, *C_response_model, *C_model, *C_kind, *C_response_id,
    *C_ttft_ms, *C_temperature, *C_top_p, *C_max_tokens, *C_stream, *C_input_tokens, *C_output_tokens,
    *C_total_tokens, *C_session_id, *C_finish_reason, *C_input_messages, *C_input_text, *C_output_messages,
    *C_output_text;
static PyObject *zero_int, *max_uint32;
static int configured = 0;

static int intern(PyObject **slot, const char *s) {
    *slot = PyUnicode_InternFromString(s);
    return *slot ? 0 : -1;
}

static int init_literals(void) {
    struct {
        PyObject **slot;
        const char *s;
    } lits[] = {
        {&S_role, "role"},
        {&S_content, "content"},
        {&S_parts, "parts"},
        {&S_name, "name"},
        {&S_finish_reason, "finish_reason"},
        {&S_type, "type"},
        {&S_text, "text"},
        {&S_function, "function"},
        {&S_id, "id"},
        {&S_arguments, "arguments"},
        {&S_tool_call, "tool_call"},
        {&S_tool_call_response, "tool_call_response"},
        {&S_response, "response"},
        {&S_result, "result"},
        {&S_tool_call_id, "tool_call_id"},
        {&S_tool_calls, "tool_calls"},
        {&S_tool, "tool"},
        {&S_system, "system"},
        {&S_server_tool_call, "server_tool_call"},
        {&S_blob, "blob"},
        {&S_file, "file"},
        {&S_uri, "uri"},
        {&S_modality, "modality"},
        {&S_mime_type, "mime_type"},
        {&S_empty, ""},
        {&S_nl, "\n"},
        {&S_nlnl, "\n\n"},
        {&S_user, "user"},
        {&S_assistant, "assistant"},
        {&S_llm, "llm"},
        {&S_true, "true"},
        {&S_false, "false"},
        {&S_strip, "strip"},
        {&S_lower, "lower"},
        {&C_provider, "provider"},
        {&C_request_model, "request_model"},
        {&C_response_model, "response_model"},
        {&C_model, "model"},
        {&C_kind, "kind"},
        {&C_response_id, "response_id"},
        {&C_ttft_ms, "ttft_ms"},
        {&C_temperature, "temperature"},
        {&C_top_p, "top_p"},
        {&C_max_tokens, "max_tokens"},
        {&C_stream, "stream"},
        {&C_input_tokens, "input_tokens"},
        {&C_output_tokens, "output_tokens"},
        {&C_total_tokens, "total_tokens"},
        {&C_session_id, "session_id"},
        {&C_finish_reason, "finish_reason"},
        {&C_input_messages, "input_messages"},
        {&C_input_text, "input_text"},
        {&C_output_messages, "output_messages"},
        {&C_output_text, "output_text"},
    };
    for (size_t i = 0; i < sizeof(lits) / sizeof(lits[0]); i++)
        if (intern(lits[i].slot, lits[i].s) < 0) return -1;
    zero_int = PyLong_FromLong(0);
    max_uint32 = PyLong_FromUnsignedLongLong(0xFFFFFFFFULL);
    return (zero_int && max_uint32) ? 0 : -1;
}

/* --- small helpers -------------------------------------------------------------------------------------- */

/* d.get(k) as a borrowed reference (NULL + no error when missing, NULL + error on failure). */
static inline PyObject *dget(PyObject *d, PyObject *k) { return PyDict_GetItemWithError(d, k); }

/* a == b as Python's == decides it (-1 on error). */
static inline int eq(PyObject *a, PyObject *b) {
    if (a == b) return 1;
    if (PyUnicode_CheckExact(a) && PyUnicode_CheckExact(b)) return PyUnicode_Compare(a, b) == 0;
    return PyObject_RichCompareBool(a, b, Py_EQ);
}

static int set_item(PyObject *d, PyObject *k, PyObject *v_steal) {
    if (v_steal == NULL) return -1;
    int r = PyDict_SetItem(d, k, v_steal);
    Py_DECREF(v_steal);
    return r;
}

/* {"type": "text", "content": c} */
static PyObject *text_part(PyObject *c) {
    PyObject *d = PyDict_New();
    if (d == NULL) return NULL;
    if (PyDict_SetItem(d, S_type, S_text) < 0 || PyDict_SetItem(d, S_content, c) < 0) {
        Py_DECREF(d);
        return NULL;
    }
    return d;
}

/* {"role": role, "content": content, "parts": parts} (parts borrowed) */
static PyObject *new_message(PyObject *role, PyObject *content, PyObject *parts) {
    PyObject *d = PyDict_New();
    if (d == NULL) return NULL;
    if (PyDict_SetItem(d, S_role, role) < 0 || PyDict_SetItem(d, S_content, content) < 0 ||
        PyDict_SetItem(d, S_parts, parts) < 0) {
        Py_DECREF(d);
        return NULL;
    }
    return d;
}

/* messages._text_message */
static PyObject *text_message(PyObject *role, PyObject *text) {
    PyObject *part = text_part(text);
    if (part == NULL) return NULL;
    PyObject *parts = PyList_New(1);
    if (parts == NULL) {
        Py_DECREF(part);
        return NULL;
    }
    PyList_SET_ITEM(parts, 0, part);
    PyObject *m = new_message(role, text, parts);
    Py_DECREF(parts);
    return m;
}

/* display_text(v) through the Python helper */
static PyObject *display_text(PyObject *v) { return PyObject_CallOneArg(py_display_text, v); }

/* messages._value_text */
static PyObject *value_text(PyObject *v) {
    if (PyUnicode_CheckExact(v)) return Py_NewRef(v);
    return display_text(v);
}

/* --- messages.py mirror --------------------------------------------------------------------------------- */

/* _part(p): -1 error, 0 skipped (None), 1 *out set (new reference). */
static int part(PyObject *p, PyObject **out) {
    *out = NULL;
    if (PyUnicode_CheckExact(p)) {
        *out = text_part(p);
        return *out ? 1 : -1;
    }
    if (!PyDict_Check(p)) return 0;
    PyObject *t = dget(p, S_type);
    if (t == NULL && PyErr_Occurred()) return -1;
    if (t == NULL) t = Py_None;
    Py_INCREF(t);
    int is_text = eq(t, S_text);
    if (is_text < 0) goto fail;
    if (!is_text && t == Py_None) {
        int has = PyDict_Contains(p, S_content);
        if (has == 0) has = PyDict_Contains(p, S_text);
        if (has < 0) goto fail;
        is_text = has;
    }
    if (is_text) {
        PyObject *c = dget(p, S_content);
        if (c == NULL && PyErr_Occurred()) goto fail;
        if (c == NULL || c == Py_None) {
            c = dget(p, S_text);
            if (c == NULL && PyErr_Occurred()) goto fail;
            if (c == NULL) c = Py_None;
        }
        PyObject *text = value_text(c);
        if (text == NULL) goto fail;
        *out = text_part(text);
        Py_DECREF(text);
        Py_DECREF(t);
        return *out ? 1 : -1;
    }
    {
        PyObject *fn = dget(p, S_function);
        if (fn == NULL && PyErr_Occurred()) goto fail;
        if (fn == NULL) fn = Py_None;
        int is_fn = eq(t, S_function);
        if (is_fn < 0) goto fail;
        if (is_fn || (t == Py_None && PyDict_Check(fn))) {
            Py_INCREF(fn);
            PyObject *call = NULL, *empty = NULL;
            if (!PyDict_Check(fn)) {
                Py_DECREF(fn);
                fn = empty = PyDict_New();
                if (fn == NULL) goto fail;
                Py_INCREF(fn);
            }
            call = PyDict_New();
            if (call == NULL) goto fn_fail;
            if (PyDict_SetItem(call, S_type, S_tool_call) < 0) goto fn_fail;
            PyObject *name = dget(fn, S_name);
            if (name == NULL && PyErr_Occurred()) goto fn_fail;
            if (PyDict_SetItem(call, S_name, name ? name : S_empty) < 0) goto fn_fail;
            PyObject *id = dget(p, S_id);
            if (id == NULL && PyErr_Occurred()) goto fn_fail;
            if (id != NULL && id != Py_None && PyDict_SetItem(call, S_id, id) < 0) goto fn_fail;
            PyObject *args = dget(fn, S_arguments);
            if (args == NULL && PyErr_Occurred()) goto fn_fail;
            if (args != NULL && PyDict_SetItem(call, S_arguments, args) < 0) goto fn_fail;
            Py_DECREF(fn);
            Py_XDECREF(empty);
            Py_DECREF(t);
            *out = call;
            return 1;
        fn_fail:
            Py_XDECREF(call);
            Py_DECREF(fn);
            Py_XDECREF(empty);
            goto fail;
        }
    }
    {
        int is_resp = eq(t, S_tool_call_response);
        if (is_resp < 0) goto fail;
        if (is_resp) {
            int has_response = PyDict_Contains(p, S_response);
            if (has_response < 0) goto fail;
            if (!has_response) {
                int has_result = PyDict_Contains(p, S_result);
                if (has_result < 0) goto fail;
                if (has_result) {
                    PyObject *fixed = PyDict_Copy(p);
                    if (fixed == NULL) goto fail;
                    PyObject *result = dget(fixed, S_result);
                    if (result == NULL) { /* mutated under us by a callback: cannot happen, but be safe */
                        Py_DECREF(fixed);
                        if (!PyErr_Occurred()) PyErr_SetObject(PyExc_KeyError, S_result);
                        goto fail;
                    }
                    Py_INCREF(result);
                    if (PyDict_DelItem(fixed, S_result) < 0 || PyDict_SetItem(fixed, S_response, result) < 0) {
                        Py_DECREF(result);
                        Py_DECREF(fixed);
                        goto fail;
                    }
                    Py_DECREF(result);
                    Py_DECREF(t);
                    *out = fixed;
                    return 1;
                }
            }
        }
    }
    Py_DECREF(t);
    *out = Py_NewRef(p);
    return 1;
fail:
    Py_DECREF(t);
    return -1;
}

/* append _part(x) for each x of the list `items` to `parts` */
static int extend_parts(PyObject *parts, PyObject *items) {
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(items); i++) {
        PyObject *x = Py_NewRef(PyList_GET_ITEM(items, i));
        PyObject *np;
        int r = part(x, &np);
        Py_DECREF(x);
        if (r < 0) return -1;
        if (r > 0) {
            int a = PyList_Append(parts, np);
            Py_DECREF(np);
            if (a < 0) return -1;
        }
    }
    return 0;
}

/* messages._content: the text parts' contents, "\n"-joined */
static PyObject *content_of(PyObject *parts) {
    PyObject *texts = PyList_New(0);
    if (texts == NULL) return NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(parts); i++) {
        PyObject *p = PyList_GET_ITEM(parts, i);
        if (!PyDict_Check(p)) {
            PyErr_SetString(PyExc_AttributeError, "message part has no attribute 'get'");
            goto fail;
        }
        PyObject *t = dget(p, S_type);
        if (t == NULL && PyErr_Occurred()) goto fail;
        if (t == NULL) t = Py_None;
        Py_INCREF(t);
        int is_text = eq(t, S_text);
        Py_DECREF(t);
        if (is_text < 0) goto fail;
        if (!is_text) continue;
        PyObject *c = dget(p, S_content);
        if (c == NULL && PyErr_Occurred()) goto fail;
        if (c == NULL) continue;
        Py_INCREF(c);
        int truth = PyObject_IsTrue(c);
        if (truth < 0 || (truth && PyList_Append(texts, c) < 0)) {
            Py_DECREF(c);
            goto fail;
        }
        Py_DECREF(c);
    }
    PyObject *out;
    if (PyList_GET_SIZE(texts) == 1)
        out = Py_NewRef(PyList_GET_ITEM(texts, 0));
    else
        out = PyUnicode_Join(S_nl, texts);
    Py_DECREF(texts);
    return out;
fail:
    Py_DECREF(texts);
    return NULL;
}

/* messages._openai_style_parts */
static int openai_style_parts(PyObject *m, PyObject *parts) {
    PyObject *content = dget(m, S_content);
    if (content == NULL && PyErr_Occurred()) return -1;
    if (content == NULL) content = Py_None;
    Py_INCREF(content);
    PyObject *call_id = dget(m, S_tool_call_id);
    if (call_id == NULL && PyErr_Occurred()) goto fail;
    if (call_id == NULL) {
        call_id = dget(m, S_id);
        if (call_id == NULL && PyErr_Occurred()) goto fail;
    }
    if (call_id == NULL) call_id = Py_None;
    Py_INCREF(call_id);
    PyObject *role = dget(m, S_role);
    if (role == NULL && PyErr_Occurred()) goto fail2;
    int is_tool = 0;
    if (role != NULL) {
        Py_INCREF(role);
        is_tool = eq(role, S_tool);
        Py_DECREF(role);
        if (is_tool < 0) goto fail2;
    }
    if (is_tool && content != Py_None) {
        PyObject *d = PyDict_New();
        if (d == NULL) goto fail2;
        if (PyDict_SetItem(d, S_type, S_tool_call_response) < 0 || PyDict_SetItem(d, S_response, content) < 0 ||
            (call_id != Py_None && PyDict_SetItem(d, S_id, call_id) < 0) || PyList_Append(parts, d) < 0) {
            Py_DECREF(d);
            goto fail2;
        }
        Py_DECREF(d);
    } else if (PyUnicode_CheckExact(content)) {
        if (PyUnicode_GET_LENGTH(content)) {
            PyObject *d = text_part(content);
            if (d == NULL) goto fail2;
            int a = PyList_Append(parts, d);
            Py_DECREF(d);
            if (a < 0) goto fail2;
        }
    } else if (PyList_Check(content)) {
        if (extend_parts(parts, content) < 0) goto fail2;
    } else if (PyDict_Check(content)) {
        PyObject *np;
        int r = part(content, &np);
        if (r < 0) goto fail2;
        if (r > 0) {
            int a = PyList_Append(parts, np);
            Py_DECREF(np);
            if (a < 0) goto fail2;
        }
    }
    PyObject *calls = dget(m, S_tool_calls);
    if (calls == NULL && PyErr_Occurred()) goto fail2;
    if (calls != NULL && PyList_Check(calls)) {
        Py_INCREF(calls);
        int r = extend_parts(parts, calls);
        Py_DECREF(calls);
        if (r < 0) goto fail2;
    }
    Py_DECREF(call_id);
    Py_DECREF(content);
    return 0;
fail2:
    Py_DECREF(call_id);
fail:
    Py_DECREF(content);
    return -1;
}

/* messages._message: -1 error, 0 None, 1 *out set */
static int message(PyObject *m, PyObject *default_role, PyObject **out) {
    *out = NULL;
    if (PyUnicode_CheckExact(m)) {
        *out = text_message(default_role, m);
        return *out ? 1 : -1;
    }
    if (!PyDict_Check(m)) return 0;
    PyObject *role = dget(m, S_role);
    if (role == NULL && PyErr_Occurred()) return -1;
    if (role == NULL || !PyUnicode_CheckExact(role) || PyUnicode_GET_LENGTH(role) == 0) role = default_role;
    Py_INCREF(role);
    PyObject *parts = PyList_New(0), *content = NULL, *msg = NULL;
    if (parts == NULL) goto fail;
    PyObject *raw_parts = dget(m, S_parts);
    if (raw_parts == NULL && PyErr_Occurred()) goto fail;
    if (raw_parts != NULL && PyList_Check(raw_parts)) {
        Py_INCREF(raw_parts);
        int r = extend_parts(parts, raw_parts);
        Py_DECREF(raw_parts);
        if (r < 0) goto fail;
    } else if (openai_style_parts(m, parts) < 0) {
        goto fail;
    }
    content = content_of(parts);
    if (content == NULL) goto fail;
    msg = new_message(role, content, parts);
    if (msg == NULL) goto fail;
    PyObject *name = dget(m, S_name);
    if (name == NULL && PyErr_Occurred()) goto fail;
    if (name != NULL && PyUnicode_CheckExact(name) && PyUnicode_GET_LENGTH(name) &&
        PyDict_SetItem(msg, S_name, name) < 0)
        goto fail;
    PyObject *finish = dget(m, S_finish_reason);
    if (finish == NULL && PyErr_Occurred()) goto fail;
    if (finish != NULL && PyUnicode_CheckExact(finish) && PyUnicode_GET_LENGTH(finish) &&
        PyDict_SetItem(msg, S_finish_reason, finish) < 0)
        goto fail;
    Py_DECREF(content);
    Py_DECREF(parts);
    Py_DECREF(role);
    *out = msg;
    return 1;
fail:
    Py_XDECREF(msg);
    Py_XDECREF(content);
    Py_XDECREF(parts);
    Py_DECREF(role);
    return -1;
}

/* common.loads(s); ValueError → *failed = 1 (cleared). */
static PyObject *try_loads(PyObject *s, int *failed) {
    *failed = 0;
    PyObject *v = NULL;
    if (fast_loads != NULL) {
        v = PyObject_CallOneArg(fast_loads, s);
        if (v != NULL) return v;
        if (!PyErr_ExceptionMatches(PyExc_ValueError)) return NULL;
        PyErr_Clear(); /* what common.loads does next: orjson again (same refusal), then json.loads */
    }
    v = PyObject_CallOneArg(py_loads, s);
    if (v == NULL && PyErr_ExceptionMatches(PyExc_ValueError)) {
        PyErr_Clear();
        *failed = 1;
    }
    return v;
}

static inline int starts_json(PyObject *s) {
    Py_UCS4 c = PyUnicode_READ_CHAR(s, 0);
    return c == '[' || c == '{';
}

/* messages.parse_messages: new list, or Py_None (new reference), or NULL on error. */
static PyObject *parse_messages_impl(PyObject *value, PyObject *default_role) {
    PyObject *v;
    if (PyUnicode_CheckExact(value)) {
        if (PyUnicode_GET_LENGTH(value) == 0) Py_RETURN_NONE;
        if (!starts_json(value)) {
            PyObject *m = text_message(default_role, value);
            if (m == NULL) return NULL;
            PyObject *l = PyList_New(1);
            if (l == NULL) {
                Py_DECREF(m);
                return NULL;
            }
            PyList_SET_ITEM(l, 0, m);
            return l;
        }
        int failed;
        v = try_loads(value, &failed);
        if (failed) {
            PyObject *m = text_message(default_role, value);
            if (m == NULL) return NULL;
            PyObject *l = PyList_New(1);
            if (l == NULL) {
                Py_DECREF(m);
                return NULL;
            }
            PyList_SET_ITEM(l, 0, m);
            return l;
        }
        if (v == NULL) return NULL;
    } else {
        v = Py_NewRef(value);
    }
    if (PyDict_Check(v)) {
        PyObject *l = PyList_New(1);
        if (l == NULL) {
            Py_DECREF(v);
            return NULL;
        }
        PyList_SET_ITEM(l, 0, v); /* steals */
        v = l;
    }
    if (!PyList_Check(v)) {
        Py_DECREF(v);
        Py_RETURN_NONE;
    }
    PyObject *out = PyList_New(0);
    if (out == NULL) {
        Py_DECREF(v);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(v); i++) {
        PyObject *x = Py_NewRef(PyList_GET_ITEM(v, i));
        PyObject *msg;
        int r = message(x, default_role, &msg);
        Py_DECREF(x);
        if (r < 0 || (r > 0 && PyList_Append(out, msg) < 0)) {
            Py_XDECREF(msg);
            Py_DECREF(out);
            Py_DECREF(v);
            return NULL;
        }
        Py_XDECREF(msg);
    }
    Py_DECREF(v);
    return out;
}

/* messages.parse_parts: new list or NULL on error. */
static PyObject *parse_parts_impl(PyObject *value) {
    PyObject *v;
    if (PyUnicode_CheckExact(value)) {
        if (PyUnicode_GET_LENGTH(value) == 0) return PyList_New(0);
        int failed = 0;
        v = starts_json(value) ? try_loads(value, &failed) : NULL;
        if (!starts_json(value) || failed) {
            PyObject *p = text_part(value);
            if (p == NULL) return NULL;
            PyObject *l = PyList_New(1);
            if (l == NULL) {
                Py_DECREF(p);
                return NULL;
            }
            PyList_SET_ITEM(l, 0, p);
            return l;
        }
        if (v == NULL) return NULL;
    } else {
        v = Py_NewRef(value);
    }
    if (PyDict_Check(v)) {
        PyObject *l = PyList_New(1);
        if (l == NULL) {
            Py_DECREF(v);
            return NULL;
        }
        PyList_SET_ITEM(l, 0, v);
        v = l;
    }
    if (!PyList_Check(v)) {
        Py_DECREF(v);
        return PyList_New(0);
    }
    PyObject *out = PyList_New(0);
    if (out == NULL || extend_parts(out, v) < 0) {
        Py_XDECREF(out);
        Py_DECREF(v);
        return NULL;
    }
    Py_DECREF(v);
    return out;
}

/* messages.part_text for a non-"text" part (type t, borrowed, already fetched) */
static PyObject *part_text_other(PyObject *p, PyObject *t) {
    int r;
    if ((r = eq(t, S_tool_call)) != 0) {
        if (r < 0) return NULL;
        PyObject *args = dget(p, S_arguments);
        if (args == NULL && PyErr_Occurred()) return NULL;
        PyObject *name = dget(p, S_name);
        if (name == NULL && PyErr_Occurred()) return NULL;
        if (name == NULL) name = Py_None;
        Py_INCREF(name);
        int truth = PyObject_IsTrue(name);
        if (truth < 0) {
            Py_DECREF(name);
            return NULL;
        }
        if (!truth) Py_SETREF(name, Py_NewRef(S_empty));
        PyObject *fname = PyObject_Format(name, S_empty);
        Py_DECREF(name);
        if (fname == NULL) return NULL;
        PyObject *fargs;
        if (args == NULL || args == Py_None) {
            fargs = Py_NewRef(S_empty);
        } else {
            Py_INCREF(args);
            PyObject *vt = value_text(args);
            Py_DECREF(args);
            fargs = vt ? PyObject_Format(vt, S_empty) : NULL;
            Py_XDECREF(vt);
        }
        if (fargs == NULL) {
            Py_DECREF(fname);
            return NULL;
        }
        PyObject *s = PyUnicode_FromFormat("[tool_call] %U(%U)", fname, fargs);
        Py_DECREF(fname);
        Py_DECREF(fargs);
        return s;
    }
    if ((r = eq(t, S_tool_call_response)) != 0) {
        if (r < 0) return NULL;
        PyObject *resp = dget(p, S_response);
        if (resp == NULL && PyErr_Occurred()) return NULL;
        if (resp == NULL) resp = Py_None;
        Py_INCREF(resp);
        PyObject *vt = value_text(resp);
        Py_DECREF(resp);
        PyObject *f = vt ? PyObject_Format(vt, S_empty) : NULL;
        Py_XDECREF(vt);
        if (f == NULL) return NULL;
        PyObject *s = PyUnicode_FromFormat("[tool_result] %U", f);
        Py_DECREF(f);
        return s;
    }
    if ((r = eq(t, S_server_tool_call)) != 0) {
        if (r < 0) return NULL;
        PyObject *name = dget(p, S_name);
        if (name == NULL && PyErr_Occurred()) return NULL;
        if (name == NULL) name = Py_None;
        Py_INCREF(name);
        int truth = PyObject_IsTrue(name);
        if (truth < 0) {
            Py_DECREF(name);
            return NULL;
        }
        if (!truth) Py_SETREF(name, Py_NewRef(S_empty));
        PyObject *f = PyObject_Format(name, S_empty);
        Py_DECREF(name);
        if (f == NULL) return NULL;
        PyObject *s = PyUnicode_FromFormat("[server_tool_call] %U", f);
        Py_DECREF(f);
        return s;
    }
    int is_media = 0;
    PyObject *media[3] = {S_blob, S_file, S_uri};
    for (int i = 0; i < 3 && !is_media; i++) {
        is_media = eq(t, media[i]);
        if (is_media < 0) return NULL;
    }
    if (!is_media) return Py_NewRef(S_empty);
    /* label = p.get("modality") or p.get("mime_type") or t */
    PyObject *label = NULL;
    PyObject *cands[2] = {S_modality, S_mime_type};
    for (int i = 0; i < 2 && label == NULL; i++) {
        PyObject *x = dget(p, cands[i]);
        if (x == NULL && PyErr_Occurred()) return NULL;
        if (x == NULL) continue;
        Py_INCREF(x);
        int truth = PyObject_IsTrue(x);
        if (truth < 0) {
            Py_DECREF(x);
            return NULL;
        }
        if (truth)
            label = x;
        else
            Py_DECREF(x);
    }
    if (label == NULL) label = Py_NewRef(t);
    PyObject *flabel = PyObject_Format(label, S_empty);
    Py_DECREF(label);
    if (flabel == NULL) return NULL;
    PyObject *uri = dget(p, S_uri);
    if (uri == NULL && PyErr_Occurred()) {
        Py_DECREF(flabel);
        return NULL;
    }
    PyObject *s;
    if (uri != NULL && PyUnicode_CheckExact(uri))
        s = PyUnicode_FromFormat("[%U: %U]", flabel, uri);
    else
        s = PyUnicode_FromFormat("[%U]", flabel);
    Py_DECREF(flabel);
    return s;
}

/* messages.message_text */
static PyObject *message_text(PyObject *msg) {
    if (!PyDict_Check(msg)) {
        PyErr_SetString(PyExc_AttributeError, "message has no attribute 'get'");
        return NULL;
    }
    PyObject *parts = dget(msg, S_parts);
    if (parts == NULL && PyErr_Occurred()) return NULL;
    if (parts == NULL) return Py_NewRef(S_empty);
    if (!PyList_Check(parts)) {
        PyErr_SetString(PyExc_TypeError, "message parts is not a list");
        return NULL;
    }
    Py_INCREF(parts);
    PyObject *pieces = PyList_New(0);
    if (pieces == NULL) goto fail;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(parts); i++) {
        PyObject *p = Py_NewRef(PyList_GET_ITEM(parts, i));
        if (!PyDict_Check(p)) {
            Py_DECREF(p);
            PyErr_SetString(PyExc_AttributeError, "message part has no attribute 'get'");
            goto fail;
        }
        PyObject *t = dget(p, S_type);
        if (t == NULL && PyErr_Occurred()) {
            Py_DECREF(p);
            goto fail;
        }
        if (t == NULL) t = Py_None;
        Py_INCREF(t);
        PyObject *x;
        int is_text = eq(t, S_text);
        if (is_text < 0) {
            x = NULL;
        } else if (is_text) {
            x = dget(p, S_content);
            if (x == NULL && PyErr_Occurred()) {
                x = NULL;
            } else if (x == NULL || !PyUnicode_CheckExact(x)) {
                Py_DECREF(t);
                Py_DECREF(p);
                continue;
            } else {
                Py_INCREF(x);
            }
        } else {
            x = part_text_other(p, t);
        }
        Py_DECREF(t);
        Py_DECREF(p);
        if (x == NULL) goto fail;
        int truth = PyObject_IsTrue(x);
        if (truth < 0 || (truth && PyList_Append(pieces, x) < 0)) {
            Py_DECREF(x);
            goto fail;
        }
        Py_DECREF(x);
    }
    PyObject *out = PyUnicode_Join(S_nl, pieces);
    Py_DECREF(pieces);
    Py_DECREF(parts);
    return out;
fail:
    Py_XDECREF(pieces);
    Py_DECREF(parts);
    return NULL;
}

/* messages.messages_text */
static PyObject *messages_text_impl(PyObject *messages) {
    PyObject *texts = PyList_New(0);
    if (texts == NULL) return NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(messages); i++) {
        PyObject *m = Py_NewRef(PyList_GET_ITEM(messages, i));
        PyObject *x = message_text(m);
        Py_DECREF(m);
        if (x == NULL) goto fail;
        int truth = PyUnicode_GET_LENGTH(x) != 0;
        if (truth && PyList_Append(texts, x) < 0) {
            Py_DECREF(x);
            goto fail;
        }
        Py_DECREF(x);
    }
    PyObject *out = PyUnicode_Join(S_nlnl, texts);
    Py_DECREF(texts);
    return out;
fail:
    Py_DECREF(texts);
    return NULL;
}

/* messages.finish_reason over messages built by message(): the first truthy finish_reason, as str() */
static PyObject *finish_reason_impl(PyObject *messages) {
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(messages); i++) {
        PyObject *m = PyList_GET_ITEM(messages, i);
        if (!PyDict_Check(m)) continue; /* message() builds dicts only */
        PyObject *f = dget(m, S_finish_reason);
        if (f == NULL && PyErr_Occurred()) return NULL;
        if (f == NULL) continue;
        Py_INCREF(f);
        int truth = PyObject_IsTrue(f);
        if (truth < 0) {
            Py_DECREF(f);
            return NULL;
        }
        if (truth) {
            PyObject *s = PyObject_Str(f);
            Py_DECREF(f);
            return s;
        }
        Py_DECREF(f);
    }
    return Py_NewRef(S_empty);
}

/* --- common.py take_* mirror ---------------------------------------------------------------------------- */

/* take_str: new reference ("" when unusable) or NULL on error */
static PyObject *take_str(PyObject *attrs, PyObject *key) {
    PyObject *v = dget(attrs, key);
    if (v == NULL) return PyErr_Occurred() ? NULL : Py_NewRef(S_empty);
    if (PyUnicode_CheckExact(v)) {
        Py_INCREF(v);
        if (PyUnicode_GET_LENGTH(v) && PyDict_DelItem(attrs, key) < 0) {
            Py_DECREF(v);
            return NULL;
        }
        return v;
    }
    if (PyLong_CheckExact(v)) {
        PyObject *s = PyObject_Str(v);
        if (s == NULL) return NULL;
        if (PyDict_DelItem(attrs, key) < 0) {
            Py_DECREF(s);
            return NULL;
        }
        return s;
    }
    return Py_NewRef(S_empty);
}

/* strip() of an exact str */
static PyObject *strip(PyObject *s) { return PyObject_CallMethodNoArgs(s, S_strip); }

/* common.as_int: new reference or Py_None, NULL on error. `hi` is 2**63-1 when hi_obj is NULL. */
static PyObject *as_int(PyObject *v, PyObject *hi_obj) {
    PyObject *n;
    if (PyLong_CheckExact(v)) {
        n = Py_NewRef(v);
    } else if (PyFloat_CheckExact(v)) {
        double d = PyFloat_AS_DOUBLE(v);
        if (!isfinite(d) || floor(d) != d) Py_RETURN_NONE;
        n = PyLong_FromDouble(d);
        if (n == NULL) return NULL;
    } else if (PyUnicode_CheckExact(v)) {
        PyObject *s = strip(v);
        if (s == NULL) return NULL;
        n = PyLong_FromUnicodeObject(s, 10);
        Py_DECREF(s);
        if (n == NULL) {
            if (PyErr_ExceptionMatches(PyExc_ValueError)) {
                PyErr_Clear();
                Py_RETURN_NONE;
            }
            return NULL;
        }
    } else {
        Py_RETURN_NONE;
    }
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow(n, &overflow);
    if (x == -1 && PyErr_Occurred()) {
        Py_DECREF(n);
        return NULL;
    }
    int ok;
    if (overflow) {
        ok = 0; /* beyond ±2**63: outside [0, hi] for either bound used */
    } else if (x < 0) {
        ok = 0;
    } else if (hi_obj != NULL) {
        ok = PyObject_RichCompareBool(n, hi_obj, Py_LE);
        if (ok < 0) {
            Py_DECREF(n);
            return NULL;
        }
    } else {
        ok = 1; /* x <= 2**63-1 */
    }
    if (!ok) {
        Py_DECREF(n);
        Py_RETURN_NONE;
    }
    return n;
}

static PyObject *take_int(PyObject *attrs, PyObject *key, PyObject *hi_obj) {
    PyObject *v = dget(attrs, key);
    if (v == NULL) {
        if (PyErr_Occurred()) return NULL;
        Py_RETURN_NONE;
    }
    Py_INCREF(v);
    PyObject *n = as_int(v, hi_obj);
    Py_DECREF(v);
    if (n != NULL && n != Py_None && PyDict_DelItem(attrs, key) < 0) Py_CLEAR(n);
    return n;
}

/* common.as_float: 1 and *out set, 0 unusable, -1 error */
static int as_float(PyObject *v, double *out) {
    double x;
    if (PyFloat_CheckExact(v)) {
        x = PyFloat_AS_DOUBLE(v);
    } else if (PyLong_CheckExact(v)) {
        x = PyLong_AsDouble(v);
        if (x == -1.0 && PyErr_Occurred()) return -1;
    } else if (PyUnicode_CheckExact(v)) {
        PyObject *s = strip(v);
        if (s == NULL) return -1;
        PyObject *f = PyFloat_FromString(s);
        Py_DECREF(s);
        if (f == NULL) {
            if (PyErr_ExceptionMatches(PyExc_ValueError)) {
                PyErr_Clear();
                return 0;
            }
            return -1;
        }
        x = PyFloat_AS_DOUBLE(f);
        Py_DECREF(f);
    } else {
        return 0;
    }
    if (!isfinite(x)) return 0;
    *out = x;
    return 1;
}

static int take_float(PyObject *attrs, PyObject *key, double *out) {
    PyObject *v = dget(attrs, key);
    if (v == NULL) return PyErr_Occurred() ? -1 : 0;
    Py_INCREF(v);
    int r = as_float(v, out);
    Py_DECREF(v);
    if (r > 0 && PyDict_DelItem(attrs, key) < 0) return -1;
    return r;
}

/* take_float as an object: a float or None */
static PyObject *take_float_obj(PyObject *attrs, PyObject *key) {
    double x;
    int r = take_float(attrs, key, &x);
    if (r < 0) return NULL;
    if (r == 0) Py_RETURN_NONE;
    return PyFloat_FromDouble(x);
}

/* take_bool: Py_True/Py_False/Py_None (new reference) or NULL */
static PyObject *take_bool(PyObject *attrs, PyObject *key) {
    PyObject *v = dget(attrs, key);
    if (v == NULL) {
        if (PyErr_Occurred()) return NULL;
        Py_RETURN_NONE;
    }
    if (PyBool_Check(v)) {
        Py_INCREF(v);
        if (PyDict_DelItem(attrs, key) < 0) {
            Py_DECREF(v);
            return NULL;
        }
        return v;
    }
    if (PyUnicode_CheckExact(v)) {
        PyObject *low = PyObject_CallMethodNoArgs(v, S_lower);
        if (low == NULL) return NULL;
        int t = PyUnicode_Compare(low, S_true) == 0, f = PyUnicode_Compare(low, S_false) == 0;
        Py_DECREF(low);
        if (t || f) {
            if (PyDict_DelItem(attrs, key) < 0) return NULL;
            return Py_NewRef(t ? Py_True : Py_False);
        }
    }
    Py_RETURN_NONE;
}

/* --- otel_genai.py mirror ------------------------------------------------------------------------------- */

/* _take_first_finish_reason */
static PyObject *take_first_finish_reason(PyObject *attrs) {
    PyObject *key = keys[K_FINISH_REASONS];
    PyObject *v = dget(attrs, key);
    if (v == NULL) return PyErr_Occurred() ? NULL : Py_NewRef(S_empty);
    if (PyList_Check(v)) {
        Py_INCREF(v);
        PyObject *first = NULL;
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(v); i++) {
            PyObject *x = PyList_GET_ITEM(v, i);
            if (PyUnicode_CheckExact(x) && PyUnicode_GET_LENGTH(x)) {
                first = Py_NewRef(x);
                break;
            }
        }
        Py_DECREF(v);
        if (first == NULL) first = Py_NewRef(S_empty);
        if (PyDict_DelItem(attrs, key) < 0) {
            Py_DECREF(first);
            return NULL;
        }
        return first;
    }
    if (PyUnicode_CheckExact(v) && PyUnicode_GET_LENGTH(v)) {
        Py_INCREF(v);
        if (PyDict_DelItem(attrs, key) < 0) {
            Py_DECREF(v);
            return NULL;
        }
        if (PyUnicode_READ_CHAR(v, 0) != '[') return v;
        PyObject *lst = PyObject_CallOneArg(py_as_str_list, v);
        Py_DECREF(v);
        if (lst == NULL) return NULL;
        PyObject *first;
        if (PyList_Check(lst) && PyList_GET_SIZE(lst) > 0)
            first = Py_NewRef(PyList_GET_ITEM(lst, 0));
        else
            first = Py_NewRef(S_empty);
        Py_DECREF(lst);
        return first;
    }
    return Py_NewRef(S_empty);
}

/* common.to_json(v): orjson.dumps(v, default=json_default).decode(), the Python helper on TypeError */
static PyObject *to_json(PyObject *v) {
    if (fast_dumps != NULL) {
        PyObject *argv[2] = {v, json_default};
        PyObject *b = PyObject_Vectorcall(fast_dumps, argv, 1, kw_default);
        if (b != NULL) {
            PyObject *s = PyBytes_Check(b) ? PyUnicode_DecodeUTF8(PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b), NULL)
                                           : PyObject_CallMethod(b, "decode", NULL);
            Py_DECREF(b);
            return s;
        }
        if (!PyErr_ExceptionMatches(PyExc_TypeError)) return NULL;
        PyErr_Clear();
    }
    return PyObject_CallOneArg(py_to_json, v);
}

/* messages_json(list) into row[col_json] and messages_text(list) into row[col_text] */
static int set_messages(PyObject *row, PyObject *list, PyObject *col_json, PyObject *col_text) {
    if (set_item(row, col_json, to_json(list)) < 0) return -1;
    return set_item(row, col_text, messages_text_impl(list));
}

/* parse_messages(attrs.get(key), role), deleting key when it gave a list; else the legacy plain string */
static PyObject *take_messages(PyObject *attrs, PyObject *key, PyObject *legacy_key, PyObject *role) {
    PyObject *raw = dget(attrs, key);
    if (raw == NULL && PyErr_Occurred()) return NULL;
    PyObject *found;
    if (raw == NULL) {
        found = Py_NewRef(Py_None);
    } else {
        Py_INCREF(raw);
        found = parse_messages_impl(raw, role);
        Py_DECREF(raw);
        if (found == NULL) return NULL;
    }
    if (found != Py_None) {
        if (PyDict_DelItem(attrs, key) < 0) {
            Py_DECREF(found);
            return NULL;
        }
        return found;
    }
    PyObject *legacy = dget(attrs, legacy_key);
    if (legacy == NULL && PyErr_Occurred()) {
        Py_DECREF(found);
        return NULL;
    }
    if (legacy != NULL && PyUnicode_CheckExact(legacy) && PyUnicode_GET_LENGTH(legacy)) {
        Py_INCREF(legacy);
        Py_DECREF(found);
        if (PyDict_DelItem(attrs, legacy_key) < 0) {
            Py_DECREF(legacy);
            return NULL;
        }
        found = parse_messages_impl(legacy, role);
        Py_DECREF(legacy);
    }
    return found;
}

/* --- the direct lane: GenAI message JSON → stored JSON and text, without Python objects ----------------- *
 *
 * content() above parses each message attribute into Python objects (orjson), rebuilds them in the stored
 * shape and writes them out again (orjson): ≈ 40 objects and two JSON passes per LLM span. For the shapes
 * every current GenAI instrumentation sends (a JSON array of {role, parts[, name][, finish_reason]} whose
 * parts are text, tool_call or tool_call_response objects; system instructions as text parts) this lane
 * reads the UTF-8 text once and writes the stored JSON and the analyzers' text directly, byte for byte what
 * the reference writes (orjson's escaping, key order of the parts it keeps as sent).
 *
 * It declines (and touches nothing: content() then runs as before) on anything else: invalid JSON, floats or
 * 19+-digit integers inside a part kept as sent (their text would be re-formatted by a parse and a dump),
 * duplicate keys, lone surrogates, other part types, OpenAI-style messages, nesting deeper than 64, non-str
 * values. The parser is a bounds-checked cursor over the UTF-8 buffer CPython keeps for the str; it never
 * reads past `end`, and every byte it copies out is either copied from that valid UTF-8 or an escape it
 * decoded itself (surrogate pairs joined, lone surrogates declined). tests/unit/test_normalize_fast.py
 * compares it with the reference on the hypothesis-generated shapes; content_lane() counts its use. */

typedef struct {
    char *b;
    size_t n, cap;
} Buf;

static int buf_reserve(Buf *o, size_t extra) {
    if (o->n + extra <= o->cap) return 0;
    size_t cap = o->cap ? o->cap : 256;
    while (cap < o->n + extra) cap *= 2;
    /* the raw allocator: content_batch() parses with the GIL released (no exception set here: a lane
     * step that fails to allocate returns L_ERR and content_lane() raises MemoryError with the GIL) */
    char *nb = PyMem_RawRealloc(o->b, cap);
    if (nb == NULL) return -1;
    o->b = nb;
    o->cap = cap;
    return 0;
}
static inline int buf_put(Buf *o, const char *s, size_t n) {
    if (buf_reserve(o, n) < 0) return -1;
    memcpy(o->b + o->n, s, n);
    o->n += n;
    return 0;
}
static inline int buf_ch(Buf *o, char c) { return buf_put(o, &c, 1); }
#define BUF_LIT(o, s) buf_put((o), (s), sizeof(s) - 1)
static void buf_free(Buf *o) {
    PyMem_RawFree(o->b);
    o->b = NULL;
    o->n = o->cap = 0;
}

/* results of the lane's steps: OK, DECLINE (leave it to the reference), ERR (a Python exception is set) */
enum { L_OK = 0, L_DECLINE = 1, L_ERR = -1 };
#define L_TRY(x)                   \
    do {                           \
        int r_ = (x);              \
        if (r_ != L_OK) return r_; \
    } while (0)
#define L_PUT(x)                       \
    do {                               \
        if ((x) < 0) return L_ERR;     \
    } while (0)

typedef struct {
    const unsigned char *p, *end;
} Cur;

static inline void ws(Cur *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}
static inline int peek(Cur *c) { return c->p < c->end ? *c->p : -1; }

/* after an array item or an object member: ',' → L_MORE (another follows), `close` → L_END (consumed),
 * anything else declines */
enum { L_MORE = 2, L_END = 3 };
static inline int next_or_end(Cur *c, int close) {
    ws(c);
    if (peek(c) == ',') {
        c->p++;
        return L_MORE;
    }
    if (peek(c) == close) {
        c->p++;
        return L_END;
    }
    return 1; /* L_DECLINE */
}

static int hex4(Cur *c, unsigned *out) {
    if (c->end - c->p < 4) return L_DECLINE;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned ch = c->p[i], d;
        if (ch >= '0' && ch <= '9') d = ch - '0';
        else if (ch >= 'a' && ch <= 'f') d = ch - 'a' + 10;
        else if (ch >= 'A' && ch <= 'F') d = ch - 'A' + 10;
        else return L_DECLINE;
        v = v * 16 + d;
    }
    c->p += 4;
    *out = v;
    return L_OK;
}

static int put_utf8(Buf *o, unsigned cp) {
    char t[4];
    size_t n;
    if (cp < 0x80) { t[0] = (char)cp; n = 1; }
    else if (cp < 0x800) { t[0] = (char)(0xC0 | (cp >> 6)); t[1] = (char)(0x80 | (cp & 0x3F)); n = 2; }
    else if (cp < 0x10000) {
        t[0] = (char)(0xE0 | (cp >> 12)); t[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        t[2] = (char)(0x80 | (cp & 0x3F)); n = 3;
    } else {
        t[0] = (char)(0xF0 | (cp >> 18)); t[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        t[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); t[3] = (char)(0x80 | (cp & 0x3F)); n = 4;
    }
    return buf_put(o, t, n);
}

/* The first byte in [p, end) that ends a run of plain string bytes ('"', backslash or a control
 * character), or `end`; eight bytes at a time (a byte test that may only err towards stopping early, after
 * which the byte loop decides). */
static inline const unsigned char *scan_plain(const unsigned char *p, const unsigned char *end) {
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    while (end - p >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        uint64_t q = v ^ (ones * '"'), b = v ^ (ones * '\\');
        if ((((q - ones) & ~q) | ((b - ones) & ~b) | ((v - ones * 0x20) & ~v)) & highs) break;
        p += 8;
    }
    while (p < end && *p != '"' && *p != '\\' && *p >= 0x20) p++;
    return p;
}

/* A JSON string at the cursor (which is on its opening quote), decoded to UTF-8 and appended to `out`
 * (out NULL: validated only). Raw control characters, bad escapes and lone surrogates decline. */
static int jstr(Cur *c, Buf *out) {
    if (peek(c) != '"') return L_DECLINE;
    c->p++;
    for (;;) {
        const unsigned char *s = c->p;
        c->p = scan_plain(c->p, c->end);
        if (out != NULL && c->p > s) L_PUT(buf_put(out, (const char *)s, (size_t)(c->p - s)));
        if (c->p >= c->end) return L_DECLINE;
        unsigned char ch = *c->p;
        if (ch == '"') {
            c->p++;
            return L_OK;
        }
        if (ch < 0x20) return L_DECLINE;
        c->p++; /* backslash */
        if (c->p >= c->end) return L_DECLINE;
        ch = *c->p++;
        char e;
        switch (ch) {
        case '"': e = '"'; break;
        case '\\': e = '\\'; break;
        case '/': e = '/'; break;
        case 'b': e = '\b'; break;
        case 'f': e = '\f'; break;
        case 'n': e = '\n'; break;
        case 'r': e = '\r'; break;
        case 't': e = '\t'; break;
        case 'u': {
            unsigned cp;
            L_TRY(hex4(c, &cp));
            if (cp >= 0xDC00 && cp <= 0xDFFF) return L_DECLINE;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                unsigned lo;
                if (c->end - c->p < 2 || c->p[0] != '\\' || c->p[1] != 'u') return L_DECLINE;
                c->p += 2;
                L_TRY(hex4(c, &lo));
                if (lo < 0xDC00 || lo > 0xDFFF) return L_DECLINE;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            if (out != NULL) L_PUT(put_utf8(out, cp));
            continue;
        }
        default: return L_DECLINE;
        }
        if (out != NULL) L_PUT(buf_ch(out, e));
    }
}

/* s[0:n] (valid UTF-8) as a JSON string literal, escaped as orjson escapes it */
static int emit_str(Buf *o, const char *s, size_t n) {
    static const char hexd[] = "0123456789abcdef";
    if (buf_reserve(o, n + 2) < 0) return -1;
    o->b[o->n++] = '"';
    size_t i = 0;
    while (i < n) {
        size_t j = (size_t)((const char *)scan_plain((const unsigned char *)s + i, (const unsigned char *)s + n) - s);
        if (j > i && buf_put(o, s + i, j - i) < 0) return -1;
        if (j >= n) break;
        unsigned char ch = (unsigned char)s[j];
        char esc[6] = {'\\', 0, 0, 0, 0, 0};
        size_t k = 2;
        switch (ch) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            esc[1] = 'u'; esc[2] = '0'; esc[3] = '0'; esc[4] = hexd[ch >> 4]; esc[5] = hexd[ch & 15];
            k = 6;
        }
        if (buf_put(o, esc, k) < 0) return -1;
        i = j + 1;
    }
    return buf_ch(o, '"');
}

/* A string value read for writing: the source bytes themselves when it has no escape (then its JSON
 * literal is the source's, quotes included), else decoded into `tmp`. */
typedef struct {
    const char *s;
    size_t n;
    int plain;
    Buf tmp;
} Str;

static int jstr_s(Cur *c, Str *out) {
    out->plain = 0;
    if (peek(c) != '"') return L_DECLINE;
    const unsigned char *start = c->p + 1, *stop = scan_plain(start, c->end);
    if (stop < c->end && *stop == '"') {
        out->s = (const char *)start;
        out->n = (size_t)(stop - start);
        out->plain = 1;
        c->p = stop + 1;
        return L_OK;
    }
    out->tmp.n = 0;
    int r = jstr(c, &out->tmp);
    out->s = out->tmp.b ? out->tmp.b : "";
    out->n = out->tmp.n;
    return r;
}

/* its JSON literal, as orjson writes it */
static int emit_s(Buf *o, const Str *v) {
    if (!v->plain) return emit_str(o, v->s, v->n);
    if (buf_reserve(o, v->n + 2) < 0) return -1;
    o->b[o->n++] = '"';
    memcpy(o->b + o->n, v->s, v->n);
    o->n += v->n;
    o->b[o->n++] = '"';
    return 0;
}

/* A JSON number at the cursor. emit NULL: validated only (any JSON number). Else it must be an integer of
 * at most 18 digits (what a parse and a dump write back unchanged, "-0" becoming "0"). */
static int jnum(Cur *c, Buf *emit) {
    const unsigned char *s = c->p;
    int neg = 0;
    if (peek(c) == '-') {
        neg = 1;
        c->p++;
    }
    const unsigned char *d = c->p;
    if (peek(c) == '0') c->p++;
    else if (peek(c) >= '1' && peek(c) <= '9')
        while (peek(c) >= '0' && peek(c) <= '9') c->p++;
    else return L_DECLINE;
    size_t digits = (size_t)(c->p - d);
    int frac = 0;
    if (peek(c) == '.') {
        frac = 1;
        c->p++;
        if (!(peek(c) >= '0' && peek(c) <= '9')) return L_DECLINE;
        while (peek(c) >= '0' && peek(c) <= '9') c->p++;
    }
    if (peek(c) == 'e' || peek(c) == 'E') {
        frac = 1;
        c->p++;
        if (peek(c) == '+' || peek(c) == '-') c->p++;
        if (!(peek(c) >= '0' && peek(c) <= '9')) return L_DECLINE;
        while (peek(c) >= '0' && peek(c) <= '9') c->p++;
    }
    if (emit == NULL) return L_OK;
    if (frac || digits > 18) return L_DECLINE;
    if (neg && digits == 1 && *d == '0') s = d; /* -0 → 0 */
    return buf_put(emit, (const char *)s, (size_t)(c->p - s)) < 0 ? L_ERR : L_OK;
}

static int lit(Cur *c, const char *word, size_t n, Buf *emit) {
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0) return L_DECLINE;
    c->p += n;
    if (emit != NULL && buf_put(emit, word, n) < 0) return L_ERR;
    return L_OK;
}

/* whether the decoded key k[0:n] is among the `count` keys stored in `seen` (length-prefixed) */
static int seen_key(Buf *seen, const char *k, size_t n) {
    size_t i = 0;
    while (i < seen->n) {
        size_t len;
        memcpy(&len, seen->b + i, sizeof len);
        i += sizeof len;
        if (len == n && memcmp(seen->b + i, k, n) == 0) return 1;
        i += len;
    }
    return 0;
}

/* Any JSON value at the cursor. emit NULL: validated only. Else re-written as a parse and a dump would
 * write it (compact, keys in order, strings re-escaped); declines what that would change otherwise. */
static int jval(Cur *c, Buf *emit, int depth) {
    if (depth > 64) return L_DECLINE;
    ws(c);
    int ch = peek(c);
    if (ch == '"') {
        if (emit == NULL) return jstr(c, NULL);
        Str t = {0};
        int r = jstr_s(c, &t);
        if (r == L_OK && emit_s(emit, &t) < 0) r = L_ERR;
        buf_free(&t.tmp);
        return r;
    }
    if (ch == '{') {
        c->p++;
        if (emit != NULL) L_PUT(buf_ch(emit, '{'));
        Buf seen = {0}, key = {0};
        int r = L_OK, first = 1;
        ws(c);
        if (peek(c) == '}') {
            c->p++;
            return emit != NULL && buf_ch(emit, '}') < 0 ? L_ERR : L_OK;
        }
        for (;;) {
            ws(c);
            key.n = 0;
            if ((r = jstr(c, emit != NULL ? &key : NULL)) != L_OK) break;
            if (emit != NULL) {
                const char *kb = key.b ? key.b : "";
                if (seen_key(&seen, kb, key.n)) {
                    r = L_DECLINE;
                    break;
                }
                if (buf_put(&seen, (const char *)&key.n, sizeof key.n) < 0 || buf_put(&seen, kb, key.n) < 0 ||
                    (!first && buf_ch(emit, ',') < 0) || emit_str(emit, kb, key.n) < 0 || buf_ch(emit, ':') < 0) {
                    r = L_ERR;
                    break;
                }
            }
            first = 0;
            ws(c);
            if (peek(c) != ':') {
                r = L_DECLINE;
                break;
            }
            c->p++;
            if ((r = jval(c, emit, depth + 1)) != L_OK) break;
            if ((r = next_or_end(c, '}')) == L_MORE) continue;
            if (r == L_END) r = emit != NULL && buf_ch(emit, '}') < 0 ? L_ERR : L_OK;
            break;
        }
        buf_free(&seen);
        buf_free(&key);
        return r;
    }
    if (ch == '[') {
        c->p++;
        if (emit != NULL) L_PUT(buf_ch(emit, '['));
        ws(c);
        if (peek(c) == ']') {
            c->p++;
            return emit != NULL && buf_ch(emit, ']') < 0 ? L_ERR : L_OK;
        }
        for (int first = 1;; first = 0) {
            if (emit != NULL && !first) L_PUT(buf_ch(emit, ','));
            L_TRY(jval(c, emit, depth + 1));
            int r = next_or_end(c, ']');
            if (r == L_MORE) continue;
            if (r != L_END) return r;
            return emit != NULL && buf_ch(emit, ']') < 0 ? L_ERR : L_OK;
        }
    }
    if (ch == 't') return lit(c, "true", 4, emit);
    if (ch == 'f') return lit(c, "false", 5, emit);
    if (ch == 'n') return lit(c, "null", 4, emit);
    if (ch == '-' || (ch >= '0' && ch <= '9')) return jnum(c, emit);
    return L_DECLINE;
}

/* What _value_text / part_text write for a value at the cursor: a string as is, null as "", true/false,
 * an integer's digits, a list or object as compact JSON (display_text → to_json). */
static int value_text_at(const unsigned char *at, const unsigned char *end, Buf *out) {
    Cur c = {at, end};
    ws(&c);
    int ch = peek(&c);
    if (ch == '"') return jstr(&c, out);
    if (ch == 'n') return lit(&c, "null", 4, NULL);
    return jval(&c, out, 1);
}

/* --- messages ----------------------------------------------------------------------------------------- */

typedef struct {
    Buf json;  /* the stored JSON array, without its closing bracket */
    Buf text;  /* messages_text */
    Buf finish;
    int count; /* messages written */
    int has_finish;
} Msgs;

static void msgs_free(Msgs *m) {
    buf_free(&m->json);
    buf_free(&m->text);
    buf_free(&m->finish);
}

/* one message's pieces while its object is read (its keys come in any order) */
typedef struct {
    Buf parts;   /* the stored parts, comma-separated */
    Buf content; /* _content: truthy text contents, "\n"-joined */
    Buf text;    /* message_text: non-empty part texts, "\n"-joined */
    int n_parts, n_content, n_text;
} Parts;

static void parts_free(Parts *p) {
    buf_free(&p->parts);
    buf_free(&p->content);
    buf_free(&p->text);
}

static int add_text_part(Parts *ps, const Str *v) {
    const char *s = v->s;
    size_t n = v->n;
    if (ps->n_parts++ && buf_ch(&ps->parts, ',') < 0) return L_ERR;
    if (BUF_LIT(&ps->parts, "{\"type\":\"text\",\"content\":") < 0 || emit_s(&ps->parts, v) < 0 ||
        buf_ch(&ps->parts, '}') < 0)
        return L_ERR;
    if (n) {
        if ((ps->n_content++ && buf_ch(&ps->content, '\n') < 0) || buf_put(&ps->content, s, n) < 0) return L_ERR;
        if ((ps->n_text++ && buf_ch(&ps->text, '\n') < 0) || buf_put(&ps->text, s, n) < 0) return L_ERR;
    }
    return L_OK;
}

/* an object member's key at the cursor, decoded into `key`, and its ':' (the cursor then on the value) */
static int member_key(Cur *c, Buf *key) {
    ws(c);
    key->n = 0;
    L_TRY(jstr(c, key));
    ws(c);
    if (peek(c) != ':') return L_DECLINE;
    c->p++;
    ws(c);
    return L_OK;
}

/* one element of a parts array (messages._part, then its text for message_text) */
static int one_part(Cur *c, Parts *ps) {
    ws(c);
    int ch = peek(c);
    if (ch == '"') { /* a bare string is a text part */
        Str v = {0};
        int r = jstr_s(c, &v);
        if (r == L_OK) r = add_text_part(ps, &v);
        buf_free(&v.tmp);
        return r;
    }
    if (ch != '{') return jval(c, NULL, 1); /* skipped by _part (None), but must be valid */
    /* first pass: where the keys that decide the part's meaning are */
    const unsigned char *start = c->p, *at_type = NULL, *at_content = NULL, *at_text = NULL, *at_name = NULL,
                        *at_args = NULL, *at_response = NULL, *at_result = NULL;
    c->p++;
    ws(c);
    if (peek(c) == '}') {
        c->p++;
        return L_DECLINE; /* {} has no type: the reference's other branches */
    }
    Buf key = {0};
    int r = L_OK;
    for (;;) {
        if ((r = member_key(c, &key)) != L_OK) break;
        const unsigned char **slot = NULL;
#define KEY_IS(lit_) (key.n == sizeof(lit_) - 1 && memcmp(key.b, lit_, key.n) == 0)
        if (KEY_IS("type")) slot = &at_type;
        else if (KEY_IS("content")) slot = &at_content;
        else if (KEY_IS("text")) slot = &at_text;
        else if (KEY_IS("name")) slot = &at_name;
        else if (KEY_IS("arguments")) slot = &at_args;
        else if (KEY_IS("response")) slot = &at_response;
        else if (KEY_IS("result")) slot = &at_result;
#undef KEY_IS
        if (slot != NULL) {
            if (*slot != NULL) {
                r = L_DECLINE; /* a repeated key: the last one wins in a dict, keep it simple */
                break;
            }
            *slot = c->p;
        }
        if ((r = jval(c, NULL, 2)) != L_OK) break;
        if ((r = next_or_end(c, '}')) == L_MORE) continue;
        if (r == L_END) r = L_OK;
        break;
    }
    buf_free(&key);
    if (r != L_OK) return r;
    const unsigned char *after = c->p;
    if (at_type == NULL || *at_type != '"') return L_DECLINE;
    Buf t = {0};
    Cur tc = {at_type, c->end};
    if ((r = jstr(&tc, &t)) != L_OK) {
        buf_free(&t);
        return r;
    }
#define TYPE_IS(lit_) (t.n == sizeof(lit_) - 1 && memcmp(t.b, lit_, t.n) == 0)
    int is_text = TYPE_IS("text"), is_call = TYPE_IS("tool_call"), is_resp = TYPE_IS("tool_call_response");
#undef TYPE_IS
    buf_free(&t);
    if (is_text) {
        const unsigned char *src = at_content;
        if (src != NULL && *src == 'n') src = NULL; /* "content": null → the "text" key, as p.get() does */
        if (src == NULL) src = at_text;
        if (src == NULL || *src != '"') return L_DECLINE;
        Str v = {0};
        Cur sc_ = {src, c->end};
        r = jstr_s(&sc_, &v);
        if (r == L_OK) r = add_text_part(ps, &v);
        buf_free(&v.tmp);
        return r;
    }
    if (!is_call && !(is_resp && (at_response != NULL || at_result == NULL))) return L_DECLINE;
    /* kept as sent: the object re-written as a parse and a dump would, then its text */
    if (ps->n_parts++ && buf_ch(&ps->parts, ',') < 0) return L_ERR;
    Cur whole = {start, after};
    L_TRY(jval(&whole, &ps->parts, 1));
    Buf line = {0};
    if (is_call) {
        r = BUF_LIT(&line, "[tool_call] ") < 0 ? L_ERR : L_OK;
        if (r == L_OK && at_name != NULL && *at_name != 'n') {
            if (*at_name != '"') r = L_DECLINE; /* a name of another type: f-string formatting, not ours */
            else {
                Cur nc = {at_name, c->end};
                r = jstr(&nc, &line);
            }
        }
        if (r == L_OK && buf_ch(&line, '(') < 0) r = L_ERR;
        if (r == L_OK && at_args != NULL) r = value_text_at(at_args, c->end, &line);
        if (r == L_OK && buf_ch(&line, ')') < 0) r = L_ERR;
    } else {
        r = BUF_LIT(&line, "[tool_result] ") < 0 ? L_ERR : L_OK;
        if (r == L_OK && at_response != NULL) r = value_text_at(at_response, c->end, &line);
    }
    if (r == L_OK && ((ps->n_text++ && buf_ch(&ps->text, '\n') < 0) || buf_put(&ps->text, line.b, line.n) < 0))
        r = L_ERR;
    buf_free(&line);
    return r;
}

/* the items of the array at the cursor (on its '['), each read by `fn` */
typedef int (*ItemFn)(Cur *c, void *arg);
static int each_item(Cur *c, ItemFn fn, void *arg) {
    c->p++;
    ws(c);
    if (peek(c) == ']') {
        c->p++;
        return L_OK;
    }
    for (;;) {
        ws(c);
        L_TRY(fn(c, arg));
        int r = next_or_end(c, ']');
        if (r == L_END) return L_OK;
        if (r != L_MORE) return r;
    }
}

/* a whole attribute value: one object (read by `one`) or an array of items (read by `item`), then only
 * whitespace */
static int whole_value(const unsigned char *s, size_t n, ItemFn one, ItemFn item, void *arg) {
    Cur c = {s, s + n};
    L_TRY(peek(&c) == '{' ? one(&c, arg) : each_item(&c, item, arg));
    ws(&c);
    return c.p == c.end ? L_OK : L_DECLINE;
}

static int part_item(Cur *c, void *ps) { return one_part(c, (Parts *)ps); }

/* a message's text into the list's text ("\n\n" between non-empty ones) */
static int add_message_text(Msgs *out, const char *s, size_t n) {
    if (!n) return L_OK;
    if (out->text.n && BUF_LIT(&out->text, "\n\n") < 0) return L_ERR;
    return buf_put(&out->text, s, n) < 0 ? L_ERR : L_OK;
}

/* {"role":…,"content":…,"parts":[…](,"name":…)(,"finish_reason":…)} from the pieces */
static int write_message(Msgs *out, const char *role, size_t role_n, Parts *ps, Buf *name, Buf *finish) {
    Buf *o = &out->json;
    if (buf_ch(o, out->count++ ? ',' : '[') < 0) return L_ERR;
    if (BUF_LIT(o, "{\"role\":") < 0 || emit_str(o, role, role_n) < 0 || BUF_LIT(o, ",\"content\":") < 0 ||
        emit_str(o, ps->content.b ? ps->content.b : "", ps->content.n) < 0 || BUF_LIT(o, ",\"parts\":[") < 0 ||
        buf_put(o, ps->parts.b ? ps->parts.b : "", ps->parts.n) < 0 || buf_ch(o, ']') < 0)
        return L_ERR;
    if (name != NULL && name->n &&
        (BUF_LIT(o, ",\"name\":") < 0 || emit_str(o, name->b, name->n) < 0))
        return L_ERR;
    if (finish != NULL && finish->n) {
        if (BUF_LIT(o, ",\"finish_reason\":") < 0 || emit_str(o, finish->b, finish->n) < 0) return L_ERR;
        if (!out->has_finish) {
            out->has_finish = 1;
            if (buf_put(&out->finish, finish->b, finish->n) < 0) return L_ERR;
        }
    }
    if (buf_ch(o, '}') < 0) return L_ERR;
    return add_message_text(out, ps->text.b ? ps->text.b : "", ps->text.n);
}

/* a str value of a message key at the cursor: 1 → decoded into `into` (when non-empty counts), 0 → not a
 * str (the reference then ignores it), or a decline/error */
static int str_or_other(Cur *c, Buf *into, int *is_str) {
    ws(c);
    *is_str = peek(c) == '"';
    return *is_str ? jstr(c, into) : jval(c, NULL, 2);
}

/* messages._message for the object at the cursor */
static int one_message(Cur *c, Msgs *out, const char *default_role) {
    Parts ps = {0};
    Buf key = {0}, role = {0}, name = {0}, finish = {0};
    int r = L_OK, have_role = 0, have_parts = 0, have_name = 0, have_finish = 0, is_str;
    c->p++; /* '{' */
    ws(c);
    if (peek(c) == '}') {
        c->p++;
        r = L_DECLINE; /* no parts list: the OpenAI-style branch */
        goto done;
    }
    for (;;) {
        if ((r = member_key(c, &key)) != L_OK) break;
#define KEY_IS(lit_) (key.n == sizeof(lit_) - 1 && memcmp(key.b, lit_, key.n) == 0)
        if (KEY_IS("role")) {
            if (have_role++) r = L_DECLINE;
            else {
                r = str_or_other(c, &role, &is_str);
            }
        } else if (KEY_IS("parts")) {
            if (have_parts++ || peek(c) != '[') r = L_DECLINE; /* not a list: the OpenAI-style branch */
            else r = each_item(c, part_item, &ps);
        } else if (KEY_IS("name")) {
            r = have_name++ ? L_DECLINE : str_or_other(c, &name, &is_str);
        } else if (KEY_IS("finish_reason")) {
            r = have_finish++ ? L_DECLINE : str_or_other(c, &finish, &is_str);
        } else {
            r = jval(c, NULL, 2);
        }
#undef KEY_IS
        if (r != L_OK) break;
        if ((r = next_or_end(c, '}')) == L_MORE) continue;
        if (r == L_END) r = L_OK;
        break;
    }
    if (r == L_OK && !have_parts) r = L_DECLINE;
    if (r == L_OK) {
        const char *rb = role.n ? role.b : default_role;
        size_t rn = role.n ? role.n : strlen(default_role);
        r = write_message(out, rb, rn, &ps, &name, &finish);
    }
done:
    parts_free(&ps);
    buf_free(&key);
    buf_free(&role);
    buf_free(&name);
    buf_free(&finish);
    return r;
}

/* messages._text_message for a bare string element */
static int text_message_at(Cur *c, Msgs *out, const char *default_role) {
    Str v = {0};
    Parts ps = {0};
    int r = jstr_s(c, &v);
    if (r == L_OK) {
        /* _text_message: content is the text itself, even "" (add_text_part skips empty contents) */
        r = add_text_part(&ps, &v);
        if (r == L_OK) r = write_message(out, default_role, strlen(default_role), &ps, NULL, NULL);
    }
    buf_free(&v.tmp);
    parts_free(&ps);
    return r;
}

typedef struct {
    Msgs *out;
    const char *role;
} MsgCtx;

static int message_obj(Cur *c, void *ctx) {
    MsgCtx *m = ctx;
    return one_message(c, m->out, m->role);
}

/* an element of a messages array: a message, a bare string (a text message), or skipped (_message: None) */
static int message_item(Cur *c, void *ctx) {
    MsgCtx *m = ctx;
    int ch = peek(c);
    if (ch == '{') return one_message(c, m->out, m->role);
    if (ch == '"') return text_message_at(c, m->out, m->role);
    return jval(c, NULL, 1);
}

/* messages.parse_messages for a str value that starts with '[' or '{' */
static int parse_messages_lane(const unsigned char *s, size_t n, const char *default_role, Msgs *out) {
    MsgCtx ctx = {out, default_role};
    return whole_value(s, n, message_obj, message_item, &ctx);
}

/* messages.parse_parts for a str value that starts with '[' or '{' */
static int parse_parts_lane(const unsigned char *s, size_t n, Parts *ps) {
    return whole_value(s, n, part_item, part_item, ps);
}

static Py_ssize_t lane_hits = 0, lane_declines = 0;

/* attrs[key] as UTF-8 when it is a str starting with '[' or '{': 1 (*held: a new reference to the str, so
 * that its bytes outlive whatever later look-ups do to the dict); absent: 0; anything else: decline (2) */
static int json_attr(PyObject *attrs, PyObject *key, const char **s, Py_ssize_t *n, PyObject **held) {
    PyObject *v = dget(attrs, key);
    if (v == NULL) return PyErr_Occurred() ? -1 : 0;
    if (!PyUnicode_CheckExact(v)) return 2;
    Py_XSETREF(*held, Py_NewRef(v));
    *s = PyUnicode_AsUTF8AndSize(v, n);
    if (*s == NULL) {
        PyErr_Clear(); /* a lone surrogate: the reference decides */
        return 2;
    }
    return (*n > 0 && ((*s)[0] == '[' || (*s)[0] == '{')) ? 1 : 2;
}

static PyObject *buf_str(Buf *b) { return PyUnicode_DecodeUTF8(b->b ? b->b : "", (Py_ssize_t)b->n, "strict"); }

/* One span's message attributes for the lane: where their UTF-8 is, and what parsing it gave. The three
 * strs are held (strong references) while a Lane from content_batch() waits, so the bytes stay put. */
typedef struct {
    PyObject *held[3];
    const char *sys_s, *in_s, *out_s;
    Py_ssize_t sys_n, in_n, out_n;
    int has_sys, has_in, has_out;
    int state; /* LANE_EMPTY, LANE_TODO (checked, not parsed), LANE_DONE (parsed: r says how) */
    int r;
    Msgs in, out;
    Parts sys;
} Lane;
enum { LANE_EMPTY = 0, LANE_TODO = 1, LANE_DONE = 2 };

static void lane_free(Lane *L) {
    msgs_free(&L->in);
    msgs_free(&L->out);
    parts_free(&L->sys);
    for (int i = 0; i < 3; i++) Py_CLEAR(L->held[i]);
    L->state = LANE_EMPTY;
}

/* Whether the lane takes these attributes: 1 yes (pointers set, their strs held), 0 no message attribute
 * at all, 2 decline (the reference decides), -1 error. Needs the GIL; reads, never changes `attrs`. The
 * caller releases what L holds (lane_free) whatever the answer. */
static int lane_check(PyObject *attrs, Lane *L) {
    L->has_sys = json_attr(attrs, keys[K_SYSTEM_INSTRUCTIONS], &L->sys_s, &L->sys_n, &L->held[0]);
    L->has_in = json_attr(attrs, keys[K_IN_MESSAGES], &L->in_s, &L->in_n, &L->held[1]);
    L->has_out = json_attr(attrs, keys[K_OUT_MESSAGES], &L->out_s, &L->out_n, &L->held[2]);
    if (L->has_sys < 0 || L->has_in < 0 || L->has_out < 0) return -1;
    if (!L->has_sys && !L->has_in && !L->has_out) return 0; /* no messages at all: nothing to count */
    if (L->has_sys == 2 || L->has_in == 2 || L->has_out == 2 || (L->has_in | L->has_out) == 0) return 2;
    /* without the current key the reference reads the legacy one: leave that to it */
    if (!L->has_in) {
        int legacy = PyDict_Contains(attrs, keys[K_PROMPT]);
        if (legacy) return legacy < 0 ? -1 : 2;
    }
    if (!L->has_out) {
        int legacy = PyDict_Contains(attrs, keys[K_COMPLETION]);
        if (legacy) return legacy < 0 ? -1 : 2;
    }
    return 1;
}

/* The lane's parse of checked attributes: pure C over the UTF-8 buffers, safe without the GIL (no Python
 * object is touched, the raw allocator only). Sets and returns L->r. */
static int lane_parse(Lane *L) {
    int r = L_OK;
    if (L->has_sys) r = parse_parts_lane((const unsigned char *)L->sys_s, (size_t)L->sys_n, &L->sys);
    if (r == L_OK && L->has_sys && !L->sys.n_parts) r = L_DECLINE; /* empty: the attribute is kept; rare */
    if (r == L_OK && L->has_sys) {
        Buf none = {0};
        r = write_message(&L->in, "system", 6, &L->sys, &none, &none);
    }
    if (r == L_OK && L->has_in)
        r = parse_messages_lane((const unsigned char *)L->in_s, (size_t)L->in_n, "user", &L->in);
    if (r == L_OK && L->has_out)
        r = parse_messages_lane((const unsigned char *)L->out_s, (size_t)L->out_n, "assistant", &L->out);
    if (r == L_OK && L->in.count && buf_ch(&L->in.json, ']') < 0) r = L_ERR;
    if (r == L_OK && L->out.count && buf_ch(&L->out.json, ']') < 0) r = L_ERR;
    L->state = LANE_DONE;
    L->r = r;
    return r;
}

/* the span normalize_span() is working on, parsed beforehand by content_batch() (NULL: parse inline);
 * per thread, as request threads interleave wherever a Python callback lets the GIL go */
static _Thread_local Lane *current_lane = NULL;

static int same_input(const Lane *a, const Lane *b) {
    return a->has_sys == b->has_sys && a->has_in == b->has_in && a->has_out == b->has_out &&
           (!a->has_sys || (a->sys_s == b->sys_s && a->sys_n == b->sys_n)) &&
           (!a->has_in || (a->in_s == b->in_s && a->in_n == b->in_n)) &&
           (!a->has_out || (a->out_s == b->out_s && a->out_n == b->out_n));
}

/* content() through the lane: 1 handled (*finish set, a new reference), 0 declined (nothing changed), -1 error */
static int content_lane(PyObject *attrs, PyObject *row, PyObject **finish) {
    Lane own = {0};
    int chk = lane_check(attrs, &own);
    if (chk != 1) {
        lane_free(&own);
        if (chk < 0) return -1;
        if (chk == 0) return 0;
        goto decline;
    }
    /* parsed already (the same strs: the same buffers) when content_batch() saw this span, else here */
    Lane *pre = current_lane, *L = &own;
    if (pre != NULL && pre->state == LANE_DONE && same_input(pre, &own)) L = pre;
    else lane_parse(&own);
    int r = L->r;
    PyObject *in_json = NULL, *in_text = NULL, *out_json = NULL, *out_text = NULL, *fin = NULL;
    if (r == L_OK && L->in.count) {
        if ((in_json = buf_str(&L->in.json)) == NULL || (in_text = buf_str(&L->in.text)) == NULL) r = L_ERR;
    }
    if (r == L_OK && L->out.count) {
        if ((out_json = buf_str(&L->out.json)) == NULL || (out_text = buf_str(&L->out.text)) == NULL)
            r = L_ERR;
    }
    if (r == L_OK) {
        fin = L->out.has_finish ? buf_str(&L->out.finish) : Py_NewRef(S_empty);
        if (fin == NULL) r = L_ERR;
    }
    if (r == L_OK) {
        if ((own.has_sys && PyDict_DelItem(attrs, keys[K_SYSTEM_INSTRUCTIONS]) < 0) ||
            (own.has_in && PyDict_DelItem(attrs, keys[K_IN_MESSAGES]) < 0) ||
            (own.has_out && PyDict_DelItem(attrs, keys[K_OUT_MESSAGES]) < 0))
            r = L_ERR;
    }
    if (r == L_OK && in_json != NULL) {
        if (PyDict_SetItem(row, C_input_messages, in_json) < 0 || PyDict_SetItem(row, C_input_text, in_text) < 0)
            r = L_ERR;
    }
    if (r == L_OK && out_json != NULL) {
        if (PyDict_SetItem(row, C_output_messages, out_json) < 0 ||
            PyDict_SetItem(row, C_output_text, out_text) < 0)
            r = L_ERR;
    }
    Py_XDECREF(in_json);
    Py_XDECREF(in_text);
    Py_XDECREF(out_json);
    Py_XDECREF(out_text);
    lane_free(L); /* a pre-parsed lane is used once: a second look at the span parses again */
    lane_free(&own);
    if (r == L_OK) {
        *finish = fin;
        lane_hits++;
        return 1;
    }
    Py_XDECREF(fin);
    if (r == L_ERR) {
        if (!PyErr_Occurred()) PyErr_NoMemory(); /* the lane's steps fail only to allocate */
        return -1;
    }
decline:
    lane_declines++;
    return 0;
}

static int lane_on = 1;

/* otel_genai._content: returns the finish reason found in the output messages ("" if none) */
static PyObject *content(PyObject *attrs, PyObject *row) {
    if (lane_on && fast_dumps != NULL) { /* the lane mirrors orjson's output: only where orjson writes */
        PyObject *fin = NULL;
        int r = content_lane(attrs, row, &fin);
        if (r > 0) return fin;
        if (r < 0) return NULL;
    }
    PyObject *system_parts = NULL, *inputs = NULL, *input_list = NULL, *outputs = NULL, *out = NULL;
    PyObject *raw_system = dget(attrs, keys[K_SYSTEM_INSTRUCTIONS]);
    if (raw_system == NULL && PyErr_Occurred()) return NULL;
    if (raw_system != NULL && raw_system != Py_None) {
        Py_INCREF(raw_system);
        system_parts = parse_parts_impl(raw_system);
        Py_DECREF(raw_system);
        if (system_parts == NULL) goto done;
        if (PyList_GET_SIZE(system_parts) && PyDict_DelItem(attrs, keys[K_SYSTEM_INSTRUCTIONS]) < 0) goto done;
    }
    inputs = take_messages(attrs, keys[K_IN_MESSAGES], keys[K_PROMPT], S_user);
    if (inputs == NULL) goto done;
    input_list = inputs == Py_None ? PyList_New(0) : PyList_GetSlice(inputs, 0, PyList_GET_SIZE(inputs));
    if (input_list == NULL) goto done;
    if (system_parts != NULL && PyList_GET_SIZE(system_parts)) {
        PyObject *c = content_of(system_parts);
        if (c == NULL) goto done;
        PyObject *sm = new_message(S_system, c, system_parts);
        Py_DECREF(c);
        if (sm == NULL) goto done;
        int r = PyList_Insert(input_list, 0, sm);
        Py_DECREF(sm);
        if (r < 0) goto done;
    }
    if (PyList_GET_SIZE(input_list) && set_messages(row, input_list, C_input_messages, C_input_text) < 0)
        goto done;
    outputs = take_messages(attrs, keys[K_OUT_MESSAGES], keys[K_COMPLETION], S_assistant);
    if (outputs == NULL) goto done;
    if (outputs != Py_None && PyList_GET_SIZE(outputs)) {
        if (set_messages(row, outputs, C_output_messages, C_output_text) < 0) goto done;
        out = finish_reason_impl(outputs);
    } else {
        out = Py_NewRef(S_empty);
    }
done:
    Py_XDECREF(system_parts);
    Py_XDECREF(inputs);
    Py_XDECREF(input_list);
    Py_XDECREF(outputs);
    return out;
}

static int truthy_item(PyObject *row, PyObject *col) {
    PyObject *v = dget(row, col);
    if (v == NULL) {
        if (!PyErr_Occurred()) PyErr_SetObject(PyExc_KeyError, col);
        return -1;
    }
    Py_INCREF(v);
    int t = PyObject_IsTrue(v);
    Py_DECREF(v);
    return t;
}

/* apply_genai up to and including row["finish_reason"] (content events and tool_io stay in Python). */
static PyObject *apply_genai_core(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *attrs, *row, *kind_in;
    if (!PyArg_ParseTuple(args, "O!O!U:apply_genai_core", &PyDict_Type, &attrs, &PyDict_Type, &row, &kind_in))
        return NULL;
    if (!configured) {
        PyErr_SetString(PyExc_RuntimeError, "configure() was not called");
        return NULL;
    }
    PyObject *kind = NULL, *provider = NULL, *req = NULL, *resp = NULL, *tmp = NULL, *finish = NULL;
    PyObject *fim = NULL;
    PyObject *result = NULL;
    /* kind = kind or kind_from_operation(attrs.get(OP)) */
    if (PyUnicode_GET_LENGTH(kind_in)) {
        kind = Py_NewRef(kind_in);
    } else {
        PyObject *op = dget(attrs, keys[K_OP]);
        if (op == NULL && PyErr_Occurred()) goto done;
        if (op != NULL && PyUnicode_CheckExact(op)) {
            PyObject *k = dget(operation_kinds, op);
            if (k == NULL && PyErr_Occurred()) goto done;
            kind = Py_NewRef(k ? k : S_empty);
        } else {
            kind = Py_NewRef(S_empty);
        }
    }
    /* provider */
    provider = take_str(attrs, keys[K_PROVIDER]);
    if (provider == NULL) goto done;
    if (PyUnicode_GET_LENGTH(provider) == 0) {
        Py_SETREF(provider, take_str(attrs, keys[K_SYSTEM]));
        if (provider == NULL) goto done;
    }
    if (PyUnicode_GET_LENGTH(provider)) {
        PyObject *s = strip(provider);
        if (s == NULL) goto done;
        PyObject *p = PyObject_CallMethodNoArgs(s, S_lower);
        Py_DECREF(s);
        if (p == NULL) goto done;
        PyObject *alias = dget(provider_aliases, p);
        if (alias == NULL && PyErr_Occurred()) {
            Py_DECREF(p);
            goto done;
        }
        if (alias != NULL) Py_SETREF(p, Py_NewRef(alias));
        if (set_item(row, C_provider, p) < 0) goto done;
    }
    req = take_str(attrs, keys[K_REQ_MODEL]);
    if (req == NULL) goto done;
    resp = take_str(attrs, keys[K_RESP_MODEL]);
    if (resp == NULL) goto done;
    if (PyDict_SetItem(row, C_request_model, req) < 0 || PyDict_SetItem(row, C_response_model, resp) < 0 ||
        PyDict_SetItem(row, C_model, PyUnicode_GET_LENGTH(resp) ? resp : req) < 0)
        goto done;
    if (PyUnicode_GET_LENGTH(kind) == 0) {
        int t = truthy_item(row, C_model);
        if (t < 0) goto done;
        if (t) Py_SETREF(kind, Py_NewRef(S_llm));
    }
    if (PyUnicode_GET_LENGTH(kind) && PyDict_SetItem(row, C_kind, kind) < 0) goto done;

    if (set_item(row, C_response_id, take_str(attrs, keys[K_RESP_ID])) < 0) goto done;
    {
        double ttft;
        int r = take_float(attrs, keys[K_TTFT], &ttft);
        if (r < 0) goto done;
        if (r > 0 && ttft >= 0 && set_item(row, C_ttft_ms, PyFloat_FromDouble(ttft * 1000.0)) < 0) goto done;
    }
    if (set_item(row, C_temperature, take_float_obj(attrs, keys[K_TEMPERATURE])) < 0) goto done;
    if (set_item(row, C_top_p, take_float_obj(attrs, keys[K_TOP_P])) < 0) goto done;
    if (set_item(row, C_max_tokens, take_int(attrs, keys[K_MAX_TOKENS], max_uint32)) < 0) goto done;
    tmp = take_bool(attrs, keys[K_STREAM]);
    if (tmp == NULL) goto done;
    if (tmp != Py_None && PyDict_SetItem(row, C_stream, tmp) < 0) goto done;
    Py_CLEAR(tmp);

    {
        PyObject *tok[2][3] = {{keys[K_IN_TOKENS], keys[K_PROMPT_TOKENS], C_input_tokens},
                               {keys[K_OUT_TOKENS], keys[K_COMPLETION_TOKENS], C_output_tokens}};
        for (int i = 0; i < 2; i++) {
            PyObject *n = take_int(attrs, tok[i][0], NULL);
            if (n == Py_None) {
                Py_DECREF(n);
                n = take_int(attrs, tok[i][1], NULL);
            }
            if (n == NULL) goto done;
            /* inp or 0 */
            int t = n == Py_None ? 0 : PyObject_IsTrue(n);
            if (t < 0) {
                Py_DECREF(n);
                goto done;
            }
            if (!t) Py_SETREF(n, Py_NewRef(zero_int));
            if (set_item(row, tok[i][2], n) < 0) goto done;
        }
    }
    {
        PyObject *total = take_int(attrs, keys[K_TOTAL_1], NULL);
        if (total == Py_None) {
            Py_DECREF(total);
            total = take_int(attrs, keys[K_TOTAL_2], NULL);
        }
        if (total == NULL) goto done;
        int r = total == Py_None ? 0 : PyDict_SetItem(row, C_total_tokens, total);
        Py_DECREF(total);
        if (r < 0) goto done;
    }
    {
        PyObject *conv = dget(attrs, keys[K_CONVERSATION]);
        if (conv == NULL && PyErr_Occurred()) goto done;
        if (conv != NULL && PyUnicode_CheckExact(conv) && PyUnicode_GET_LENGTH(conv)) {
            Py_INCREF(conv);
            int has = truthy_item(row, C_session_id);
            int r = 0;
            if (has < 0) {
                r = -1;
            } else if (!has) {
                r = PyDict_SetItem(row, C_session_id, conv);
                if (r == 0) r = PyDict_DelItem(attrs, keys[K_CONVERSATION]);
            } else {
                PyObject *sid = dget(row, C_session_id);
                if (sid == NULL) {
                    if (!PyErr_Occurred()) PyErr_SetObject(PyExc_KeyError, C_session_id);
                    r = -1;
                } else {
                    Py_INCREF(sid);
                    int same = eq(conv, sid);
                    Py_DECREF(sid);
                    if (same < 0)
                        r = -1;
                    else if (same)
                        r = PyDict_DelItem(attrs, keys[K_CONVERSATION]);
                }
            }
            Py_DECREF(conv);
            if (r < 0) goto done;
        }
    }
    finish = take_first_finish_reason(attrs);
    if (finish == NULL) goto done;
    fim = content(attrs, row);
    if (fim == NULL) goto done;
    {
        int t = PyObject_IsTrue(finish);
        if (t < 0) goto done;
        if (PyDict_SetItem(row, C_finish_reason, t ? finish : fim) < 0) goto done;
    }
    result = Py_NewRef(Py_None);
done:
    Py_XDECREF(kind);
    Py_XDECREF(provider);
    Py_XDECREF(req);
    Py_XDECREF(resp);
    Py_XDECREF(tmp);
    Py_XDECREF(finish);
    Py_XDECREF(fim);
    return result;
}

/* --- pipeline.py mirror: one span → one row (normalize_span with _base_row) --------------------------- */

/* configuration of the row builder (configure_rows) */
static PyObject *span_defaults, *status_map, *epoch, *user_keys, *session_keys, *error_type_key;
static PyObject *py_stringify, *genai_cls, *py_content_events, *py_tool_io, *registry_cls;
static long long min_plausible_ns, max_ns;
static int rows_configured = 0;
static PyObject *A_trace_id, *A_span_id, *A_parent_span_id, *A_name, *A_start, *A_end, *A_attributes, *A_events,
    *A_status_code, *A_status_message, *A_pick, *A_normalize, *A_convention, *A_pick_cache, *A_scope_name,
    *A_resource, *A_sdk_name, *S_openlit;
static PyObject *C_project, *C_service, *C_environment, *C_resource, *C_trace_id, *C_span_id, *C_parent_span_id,
    *C_name, *C_start_time, *C_end_time, *C_duration_ms, *C_status, *C_error_type, *C_error_message, *C_user_id,
    *C_tags, *C_attributes, *C_convention, *S_error, *S_unset;

static int init_row_literals(void) {
    struct {
        PyObject **slot;
        const char *s;
    } lits[] = {
        {&A_trace_id, "trace_id"},
        {&A_span_id, "span_id"},
        {&A_parent_span_id, "parent_span_id"},
        {&A_name, "name"},
        {&A_start, "start_time_unix_nano"},
        {&A_end, "end_time_unix_nano"},
        {&A_attributes, "attributes"},
        {&A_events, "events"},
        {&A_status_code, "status_code"},
        {&A_status_message, "status_message"},
        {&A_pick, "pick"},
        {&A_normalize, "normalize"},
        {&A_convention, "convention"},
        {&A_pick_cache, "_pick_cache"},
        {&A_scope_name, "scope_name"},
        {&A_resource, "resource"},
        {&A_sdk_name, "telemetry.sdk.name"},
        {&S_openlit, "openlit"},
        {&C_project, "project"},
        {&C_service, "service"},
        {&C_environment, "environment"},
        {&C_resource, "resource"},
        {&C_trace_id, "trace_id"},
        {&C_span_id, "span_id"},
        {&C_parent_span_id, "parent_span_id"},
        {&C_name, "name"},
        {&C_start_time, "start_time"},
        {&C_end_time, "end_time"},
        {&C_duration_ms, "duration_ms"},
        {&C_status, "status"},
        {&C_error_type, "error_type"},
        {&C_error_message, "error_message"},
        {&C_user_id, "user_id"},
        {&C_tags, "tags"},
        {&C_attributes, "attributes"},
        {&C_convention, "convention"},
        {&S_error, "error"},
        {&S_unset, "unset"},
    };
    for (size_t i = 0; i < sizeof(lits) / sizeof(lits[0]); i++)
        if (intern(lits[i].slot, lits[i].s) < 0) return -1;
    PyDateTime_IMPORT;
    return PyDateTimeAPI ? 0 : -1;
}

/* common.ns_to_datetime: EPOCH + timedelta(microseconds=ns // 1000), clamped to [EPOCH, MAX_NS] */
static PyObject *ns_to_datetime(long long ns) {
    if (ns <= 0) return Py_NewRef(epoch);
    if (ns > max_ns) ns = max_ns;
    long long us = ns / 1000; /* ns > 0: floor division == C division */
    long long days = us / 86400000000LL, rem = us % 86400000000LL;
    PyObject *delta = PyDelta_FromDSU((int)days, (int)(rem / 1000000), (int)(rem % 1000000));
    if (delta == NULL) return NULL;
    PyObject *out = PyNumber_Add(epoch, delta);
    Py_DECREF(delta);
    return out;
}

/* common.stringify_map */
static PyObject *stringify_map(PyObject *d) {
    PyObject *out = PyDict_New();
    if (out == NULL) return NULL;
    PyObject *k, *v;
    Py_ssize_t pos = 0;
    while (PyDict_Next(d, &pos, &k, &v)) {
        PyObject *s;
        if (PyUnicode_CheckExact(v))
            s = Py_NewRef(v);
        else if (PyBool_Check(v))
            s = Py_NewRef(v == Py_True ? S_true : S_false);
        else if (PyLong_CheckExact(v) || PyFloat_CheckExact(v))
            s = PyObject_Repr(v);
        else if (v == Py_None)
            s = Py_NewRef(S_empty);
        else {
            Py_INCREF(k);
            Py_INCREF(v);
            s = PyObject_CallOneArg(py_stringify, v);
            Py_DECREF(v);
            if (s == NULL) {
                Py_DECREF(k);
                Py_DECREF(out);
                return NULL;
            }
            int r = PyDict_SetItem(out, k, s);
            Py_DECREF(k);
            Py_DECREF(s);
            if (r < 0) {
                Py_DECREF(out);
                return NULL;
            }
            continue;
        }
        if (s == NULL || PyDict_SetItem(out, k, s) < 0) {
            Py_XDECREF(s);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(s);
    }
    return out;
}

/* row[col] = span.<attr> */
static int copy_attr(PyObject *row, PyObject *col, PyObject *span, PyObject *attr) {
    return set_item(row, col, PyObject_GetAttr(span, attr));
}

/* an int attribute of the span as int64; 1 ok, 0 not an exact int in int64 range, -1 error */
static int span_ll(PyObject *span, PyObject *attr, long long *out) {
    PyObject *v = PyObject_GetAttr(span, attr);
    if (v == NULL) return -1;
    int ok = 0;
    if (PyLong_CheckExact(v)) {
        int overflow = 0;
        *out = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (*out == -1 && PyErr_Occurred()) {
            Py_DECREF(v);
            return -1;
        }
        ok = !overflow;
    }
    Py_DECREF(v);
    return ok;
}

/* registry.pick(span). For the built-in registry class its pick cache is read here first, as pick() does it:
 * key (scope_name, resource.get("telemetry.sdk.name") == "openlit", *attribute keys); a miss (or another
 * registry class, or no cache) calls pick(), which computes and stores the entry. New reference. */
static PyObject *cached_pick(PyObject *registry, PyObject *span) {
    if (registry_cls == NULL || Py_TYPE(registry) != (PyTypeObject *)registry_cls)
        return PyObject_CallMethodOneArg(registry, A_pick, span);
    PyObject *cache = PyObject_GetAttr(registry, A_pick_cache);
    if (cache == NULL) return NULL;
    if (!PyDict_CheckExact(cache)) {
        Py_DECREF(cache);
        return PyObject_CallMethodOneArg(registry, A_pick, span);
    }
    PyObject *key = NULL, *scope = NULL, *resource = NULL, *attrs = NULL, *found = NULL;
    scope = PyObject_GetAttr(span, A_scope_name);
    if (scope == NULL) goto done;
    resource = PyObject_GetAttr(span, A_resource);
    if (resource == NULL) goto done;
    attrs = PyObject_GetAttr(span, A_attributes);
    if (attrs == NULL) goto done;
    if (!PyDict_CheckExact(resource) || !PyDict_CheckExact(attrs)) { /* not the decoder's: let pick() decide */
        found = PyObject_CallMethodOneArg(registry, A_pick, span);
        goto done;
    }
    PyObject *sdk = dget(resource, A_sdk_name);
    if (sdk == NULL && PyErr_Occurred()) goto done;
    int openlit = 0;
    if (sdk != NULL) {
        Py_INCREF(sdk);
        openlit = eq(sdk, S_openlit);
        Py_DECREF(sdk);
        if (openlit < 0) goto done;
    }
    key = PyTuple_New(2 + PyDict_GET_SIZE(attrs));
    if (key == NULL) goto done;
    PyTuple_SET_ITEM(key, 0, Py_NewRef(scope));
    PyTuple_SET_ITEM(key, 1, Py_NewRef(openlit ? Py_True : Py_False));
    {
        Py_ssize_t pos = 0, i = 2;
        PyObject *k, *v;
        while (PyDict_Next(attrs, &pos, &k, &v) && i < PyTuple_GET_SIZE(key)) PyTuple_SET_ITEM(key, i++, Py_NewRef(k));
        if (i != PyTuple_GET_SIZE(key)) { /* cannot happen: the dict did not change size */
            found = PyObject_CallMethodOneArg(registry, A_pick, span);
            goto done;
        }
    }
    found = PyDict_GetItemWithError(cache, key);
    if (found != NULL && found != Py_None) {
        Py_INCREF(found);
    } else if (!PyErr_Occurred()) {
        found = PyObject_CallMethodOneArg(registry, A_pick, span);
    } else {
        found = NULL;
    }
done:
    Py_XDECREF(key);
    Py_XDECREF(scope);
    Py_XDECREF(resource);
    Py_XDECREF(attrs);
    Py_DECREF(cache);
    return found;
}

/* the GenAI normalizer's normalize(): apply_genai(attrs, row, span=span) */
static int genai_normalize(PyObject *span, PyObject *attrs, PyObject *row) {
    PyObject *args = PyTuple_Pack(3, attrs, row, S_empty);
    if (args == NULL) return -1;
    PyObject *r = apply_genai_core(NULL, args);
    Py_DECREF(args);
    if (r == NULL) return -1;
    Py_DECREF(r);
    PyObject *events = PyObject_GetAttr(span, A_events);
    if (events == NULL) return -1;
    int has_events = PyObject_IsTrue(events);
    Py_DECREF(events);
    if (has_events < 0) return -1;
    if (has_events) {
        int both = truthy_item(row, C_input_messages);
        if (both > 0) both = truthy_item(row, C_output_messages);
        if (both < 0) return -1;
        if (!both) {
            r = PyObject_CallFunctionObjArgs(py_content_events, span, row, NULL);
            if (r == NULL) return -1;
            Py_DECREF(r);
        }
    }
    PyObject *kind = dget(row, C_kind);
    if (kind == NULL) {
        if (!PyErr_Occurred()) PyErr_SetObject(PyExc_KeyError, C_kind);
        return -1;
    }
    Py_INCREF(kind);
    int is_tool = eq(kind, S_tool);
    Py_DECREF(kind);
    if (is_tool < 0) return -1;
    if (is_tool) {
        r = PyObject_CallFunctionObjArgs(py_tool_io, attrs, row, NULL);
        if (r == NULL) return -1;
        Py_DECREF(r);
    }
    return 0;
}

/* pipeline.normalize_span for the usual span; None (declined) where the Python reference must decide:
 * an error status or error.type (exception events are read), times outside int64, attributes not a dict.
 * Any exception means "use the reference for this span" to the caller (which re-runs it from scratch). */
/* --- content_batch(spans): every span's message JSON parsed up front, with the GIL released ----------- */

typedef struct {
    PyObject_HEAD
    Py_ssize_t n;
    Lane *lanes;
} LanesObject;

static void lanes_dealloc(LanesObject *self) {
    if (self->lanes != NULL) {
        for (Py_ssize_t i = 0; i < self->n; i++) lane_free(&self->lanes[i]);
        PyMem_Free(self->lanes);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *lanes_len(LanesObject *self, PyObject *Py_UNUSED(ignored)) {
    Py_ssize_t parsed = 0;
    for (Py_ssize_t i = 0; i < self->n; i++) parsed += self->lanes[i].state == LANE_DONE;
    return Py_BuildValue("(nn)", self->n, parsed);
}

static PyMethodDef lanes_methods[] = {
    {"counts", (PyCFunction)lanes_len, METH_NOARGS, "counts() -> (spans, lanes parsed and not used yet)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject LanesType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "collectors._normalize_native.Lanes",
    .tp_basicsize = sizeof(LanesObject),
    .tp_dealloc = (destructor)lanes_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "content_batch()'s parsed message attributes, one slot per span (pass to normalize_span).",
    .tp_methods = lanes_methods,
};

/* Below this many bytes of message JSON a request parses with the GIL held: not worth a hand-over. */
#define LANE_RELEASE_BYTES 16384

static PyObject *content_batch(PyObject *self, PyObject *spans) {
    (void)self;
    if (!configured || !rows_configured) {
        PyErr_SetString(PyExc_RuntimeError, "configure()/configure_rows() were not called");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(spans, "content_batch() takes a sequence of spans");
    if (seq == NULL) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    LanesObject *out = PyObject_New(LanesObject, &LanesType);
    if (out == NULL) {
        Py_DECREF(seq);
        return NULL;
    }
    out->n = 0;
    out->lanes = n ? PyMem_Calloc((size_t)n, sizeof(Lane)) : NULL;
    if (n && out->lanes == NULL) {
        Py_DECREF(seq);
        Py_DECREF(out);
        return PyErr_NoMemory();
    }
    out->n = n;
    size_t todo = 0, bytes = 0;
    if (lane_on && fast_dumps != NULL) { /* the lane runs only where content() would take it */
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *attrs = PyObject_GetAttr(PySequence_Fast_GET_ITEM(seq, i), A_attributes);
            if (attrs == NULL) {
                PyErr_Clear(); /* not a span: normalize_span reports it */
                continue;
            }
            Lane *L = &out->lanes[i];
            int chk = PyDict_CheckExact(attrs) ? lane_check(attrs, L) : 0;
            if (chk == 1) {
                L->state = LANE_TODO;
                todo++;
                bytes += (size_t)((L->has_sys ? L->sys_n : 0) + (L->has_in ? L->in_n : 0) +
                                  (L->has_out ? L->out_n : 0));
            } else {
                if (chk < 0) PyErr_Clear(); /* the span's own normalization meets (and reports) it again */
                lane_free(L);
            }
            Py_DECREF(attrs);
        }
    }
    Py_DECREF(seq);
    if (todo) {
        Lane *lanes = out->lanes;
        int release = bytes >= LANE_RELEASE_BYTES;
        PyThreadState *ts = release ? PyEval_SaveThread() : NULL;
        for (Py_ssize_t i = 0; i < n; i++)
            if (lanes[i].state == LANE_TODO) lane_parse(&lanes[i]);
        if (release) PyEval_RestoreThread(ts);
    }
    return (PyObject *)out;
}

static PyObject *normalize_span_impl(PyObject *self, PyObject *const *argv, Py_ssize_t nargs);

/* normalize_span(span, registry, res, now_ns[, lanes, index]): with content_batch()'s result and the
 * span's index in it, the span's message JSON parsed there is used (when the strs are still the same) */
static PyObject *normalize_span(PyObject *self, PyObject *const *argv, Py_ssize_t nargs) {
    if (nargs != 6) return normalize_span_impl(self, argv, nargs);
    if (!Py_IS_TYPE(argv[4], &LanesType) || !PyLong_Check(argv[5])) {
        PyErr_SetString(PyExc_TypeError, "normalize_span(): lanes must come from content_batch(), index an int");
        return NULL;
    }
    LanesObject *lanes = (LanesObject *)argv[4];
    Py_ssize_t i = PyLong_AsSsize_t(argv[5]);
    if (i == -1 && PyErr_Occurred()) return NULL;
    Lane *saved = current_lane;
    current_lane = (i >= 0 && i < lanes->n && lanes->lanes[i].state == LANE_DONE) ? &lanes->lanes[i] : NULL;
    PyObject *row = normalize_span_impl(self, argv, 4);
    current_lane = saved;
    return row;
}

static PyObject *normalize_span_impl(PyObject *self, PyObject *const *argv, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "normalize_span() takes 4 or 6 arguments");
        return NULL;
    }
    PyObject *span = argv[0], *registry = argv[1], *res = argv[2];
    if (!PyTuple_Check(res) || !PyLong_Check(argv[3])) {
        PyErr_SetString(PyExc_TypeError, "normalize_span(): res must be a tuple and now_ns an int");
        return NULL;
    }
    long long now_ns = PyLong_AsLongLong(argv[3]);
    if (now_ns == -1 && PyErr_Occurred()) return NULL;
    if (!configured || !rows_configured) {
        PyErr_SetString(PyExc_RuntimeError, "configure()/configure_rows() were not called");
        return NULL;
    }
    if (PyTuple_GET_SIZE(res) != 4) {
        PyErr_SetString(PyExc_TypeError, "normalize_span(): res must be a 4-tuple");
        return NULL;
    }
    long long start, end;
    int r = span_ll(span, A_start, &start);
    if (r <= 0) return r < 0 ? NULL : Py_NewRef(Py_None);
    r = span_ll(span, A_end, &end);
    if (r <= 0) return r < 0 ? NULL : Py_NewRef(Py_None);
    PyObject *span_attrs = PyObject_GetAttr(span, A_attributes);
    if (span_attrs == NULL) return NULL;
    if (!PyDict_CheckExact(span_attrs)) {
        Py_DECREF(span_attrs);
        Py_RETURN_NONE;
    }
    PyObject *attrs = PyDict_Copy(span_attrs);
    Py_DECREF(span_attrs);
    if (attrs == NULL) return NULL;
    PyObject *row = NULL, *status = NULL, *normalizer = NULL, *result = NULL;
    /* error path: declined */
    {
        PyObject *code = PyObject_GetAttr(span, A_status_code);
        if (code == NULL) goto done;
        status = PyDict_GetItemWithError(status_map, code); /* borrowed from the configured dict */
        Py_DECREF(code);
        if (status == NULL && PyErr_Occurred()) goto done;
        status = Py_NewRef(status ? status : S_unset);
        int is_error = eq(status, S_error);
        if (is_error < 0) goto done;
        int has_type = PyDict_Contains(attrs, error_type_key);
        if (has_type < 0) goto done;
        if (is_error || has_type) {
            result = Py_NewRef(Py_None);
            goto done;
        }
    }
    if (start < min_plausible_ns) start = end >= min_plausible_ns ? end : now_ns;
    if (end < start) end = start;
    if (start < 0) { /* only from a negative now_ns: keep end - start clear of int64 overflow */
        result = Py_NewRef(Py_None);
        goto done;
    }
    row = PyDict_Copy(span_defaults);
    if (row == NULL) goto done;
    if (PyDict_SetItem(row, C_project, PyTuple_GET_ITEM(res, 3)) < 0 ||
        PyDict_SetItem(row, C_service, PyTuple_GET_ITEM(res, 1)) < 0 ||
        PyDict_SetItem(row, C_environment, PyTuple_GET_ITEM(res, 2)) < 0 ||
        PyDict_SetItem(row, C_resource, PyTuple_GET_ITEM(res, 0)) < 0)
        goto done;
    if (copy_attr(row, C_trace_id, span, A_trace_id) < 0 || copy_attr(row, C_span_id, span, A_span_id) < 0 ||
        copy_attr(row, C_parent_span_id, span, A_parent_span_id) < 0 || copy_attr(row, C_name, span, A_name) < 0)
        goto done;
    if (set_item(row, C_start_time, ns_to_datetime(start)) < 0 || set_item(row, C_end_time, ns_to_datetime(end)) < 0 ||
        set_item(row, C_duration_ms, PyFloat_FromDouble((double)(end - start) / 1e6)) < 0)
        goto done;
    if (PyDict_SetItem(row, C_status, status) < 0 || PyDict_SetItem(row, C_error_type, S_empty) < 0 ||
        PyDict_SetItem(row, C_error_message, S_empty) < 0)
        goto done;
    {
        PyObject *key_sets[2] = {user_keys, session_keys};
        PyObject *cols[2] = {C_user_id, C_session_id};
        for (int i = 0; i < 2; i++) {
            PyObject *found = Py_NewRef(S_empty);
            for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(key_sets[i]); j++) {
                Py_SETREF(found, take_str(attrs, PyTuple_GET_ITEM(key_sets[i], j)));
                if (found == NULL || PyUnicode_GET_LENGTH(found)) break;
            }
            if (set_item(row, cols[i], found) < 0) goto done;
        }
    }
    if (set_item(row, C_tags, PyList_New(0)) < 0 || set_item(row, C_attributes, PyDict_New()) < 0) goto done;

    normalizer = cached_pick(registry, span);
    if (normalizer == NULL) goto done;
    if (Py_TYPE(normalizer) == (PyTypeObject *)genai_cls) {
        if (genai_normalize(span, attrs, row) < 0) goto done;
    } else {
        PyObject *x = PyObject_CallMethodObjArgs(normalizer, A_normalize, span, attrs, row, NULL);
        if (x == NULL) goto done;
        Py_DECREF(x);
    }
    if (set_item(row, C_convention, PyObject_GetAttr(normalizer, A_convention)) < 0) goto done;
    {
        int t = truthy_item(row, C_model);
        if (t < 0) goto done;
        if (!t) {
            int rm = truthy_item(row, C_response_model);
            if (rm < 0) goto done;
            PyObject *m = dget(row, rm ? C_response_model : C_request_model);
            if (m == NULL) {
                if (!PyErr_Occurred()) PyErr_SetObject(PyExc_KeyError, C_request_model);
                goto done;
            }
            if (PyDict_SetItem(row, C_model, m) < 0) goto done;
        }
        t = truthy_item(row, C_total_tokens);
        if (t < 0) goto done;
        if (!t) {
            PyObject *a = dget(row, C_input_tokens), *b = a ? dget(row, C_output_tokens) : NULL;
            if (b == NULL) {
                if (!PyErr_Occurred()) PyErr_SetObject(PyExc_KeyError, a ? C_output_tokens : C_input_tokens);
                goto done;
            }
            Py_INCREF(a);
            Py_INCREF(b);
            PyObject *sum = PyNumber_Add(a, b);
            Py_DECREF(a);
            Py_DECREF(b);
            if (set_item(row, C_total_tokens, sum) < 0) goto done;
        }
    }
    if (set_item(row, C_attributes, stringify_map(attrs)) < 0) goto done;
    result = Py_NewRef(row);
done:
    Py_XDECREF(normalizer);
    Py_XDECREF(status);
    Py_XDECREF(row);
    Py_DECREF(attrs);
    return result;
}

static PyObject *configure_rows(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *defaults, *smap, *ep, *ukeys, *skeys, *etype, *strfy, *gcls, *cevents, *tio, *rcls = Py_None;
    long long min_ns, mx_ns;
    if (!PyArg_ParseTuple(args, "O!O!OLLO!O!UOOOO|O:configure_rows", &PyDict_Type, &defaults, &PyDict_Type, &smap,
                          &ep, &min_ns, &mx_ns, &PyTuple_Type, &ukeys, &PyTuple_Type, &skeys, &etype, &strfy, &gcls,
                          &cevents, &tio, &rcls))
        return NULL;
    if (rcls != Py_None && !PyType_Check(rcls)) {
        PyErr_SetString(PyExc_TypeError, "configure_rows(): registry class must be a type");
        return NULL;
    }
    if (!PyCallable_Check(strfy) || !PyType_Check(gcls) || !PyCallable_Check(cevents) || !PyCallable_Check(tio)) {
        PyErr_SetString(PyExc_TypeError, "configure_rows(): bad helper");
        return NULL;
    }
    for (int t = 0; t < 2; t++) {
        PyObject *tup = t ? skeys : ukeys;
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(tup); i++)
            if (!PyUnicode_CheckExact(PyTuple_GET_ITEM(tup, i))) {
                PyErr_SetString(PyExc_TypeError, "configure_rows(): keys must be str");
                return NULL;
            }
    }
    if (S_role == NULL && init_literals() < 0) return NULL;
    if (A_trace_id == NULL && init_row_literals() < 0) return NULL;
    if (!PyDateTime_Check(ep)) {
        PyErr_SetString(PyExc_TypeError, "configure_rows(): epoch must be a datetime");
        return NULL;
    }
    Py_XSETREF(span_defaults, Py_NewRef(defaults));
    Py_XSETREF(status_map, Py_NewRef(smap));
    Py_XSETREF(epoch, Py_NewRef(ep));
    Py_XSETREF(user_keys, Py_NewRef(ukeys));
    Py_XSETREF(session_keys, Py_NewRef(skeys));
    Py_XSETREF(error_type_key, Py_NewRef(etype));
    Py_XSETREF(py_stringify, Py_NewRef(strfy));
    Py_XSETREF(genai_cls, Py_NewRef(gcls));
    Py_XSETREF(py_content_events, Py_NewRef(cevents));
    Py_XSETREF(py_tool_io, Py_NewRef(tio));
    Py_CLEAR(registry_cls);
    if (rcls != Py_None) registry_cls = Py_NewRef(rcls);
    min_plausible_ns = min_ns;
    max_ns = mx_ns;
    rows_configured = 1;
    Py_RETURN_NONE;
}

/* --- module functions ------------------------------------------------------------------------------------ */

static PyObject *py_parse_messages(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *value, *role;
    if (!PyArg_ParseTuple(args, "OU:parse_messages", &value, &role)) return NULL;
    if (!configured) {
        PyErr_SetString(PyExc_RuntimeError, "configure() was not called");
        return NULL;
    }
    return parse_messages_impl(value, role);
}

static PyObject *py_parse_parts(PyObject *self, PyObject *value) {
    (void)self;
    if (!configured) {
        PyErr_SetString(PyExc_RuntimeError, "configure() was not called");
        return NULL;
    }
    return parse_parts_impl(value);
}

static PyObject *py_messages_text(PyObject *self, PyObject *messages) {
    (void)self;
    if (!PyList_Check(messages)) {
        PyErr_SetString(PyExc_TypeError, "messages_text() takes a list");
        return NULL;
    }
    return messages_text_impl(messages);
}

static PyObject *configure(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *loads, *to_json, *display, *as_str_list, *kinds, *aliases, *key_tuple;
    PyObject *o_loads = Py_None, *o_dumps = Py_None, *o_default = Py_None;
    if (!PyArg_ParseTuple(args, "OOOOO!O!O!|OOO:configure", &loads, &to_json, &display, &as_str_list, &PyDict_Type,
                          &kinds, &PyDict_Type, &aliases, &PyTuple_Type, &key_tuple, &o_loads, &o_dumps,
                          &o_default))
        return NULL;
    int fast = o_loads != Py_None && o_dumps != Py_None && o_default != Py_None;
    if (fast && (!PyCallable_Check(o_loads) || !PyCallable_Check(o_dumps) || !PyCallable_Check(o_default))) {
        PyErr_SetString(PyExc_TypeError, "configure(): orjson helpers must be callable");
        return NULL;
    }
    if (!PyCallable_Check(loads) || !PyCallable_Check(to_json) || !PyCallable_Check(display) ||
        !PyCallable_Check(as_str_list)) {
        PyErr_SetString(PyExc_TypeError, "configure(): the helpers must be callable");
        return NULL;
    }
    if (PyTuple_GET_SIZE(key_tuple) != N_KEYS) {
        PyErr_Format(PyExc_TypeError, "configure(): expected %d attribute keys", N_KEYS);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < N_KEYS; i++) {
        if (!PyUnicode_CheckExact(PyTuple_GET_ITEM(key_tuple, i))) {
            PyErr_SetString(PyExc_TypeError, "configure(): attribute keys must be str");
            return NULL;
        }
    }
    if (S_role == NULL && init_literals() < 0) return NULL;
    Py_XSETREF(py_loads, Py_NewRef(loads));
    Py_XSETREF(py_to_json, Py_NewRef(to_json));
    Py_XSETREF(py_display_text, Py_NewRef(display));
    Py_XSETREF(py_as_str_list, Py_NewRef(as_str_list));
    if (kw_default == NULL) { /* interned: orjson matches keyword names by identity first */
        PyObject *name = PyUnicode_InternFromString("default");
        kw_default = name ? PyTuple_Pack(1, name) : NULL;
        Py_XDECREF(name);
        if (kw_default == NULL) return NULL;
    }
    Py_CLEAR(fast_loads);
    Py_CLEAR(fast_dumps);
    Py_CLEAR(json_default);
    if (fast) {
        fast_loads = Py_NewRef(o_loads);
        fast_dumps = Py_NewRef(o_dumps);
        json_default = Py_NewRef(o_default);
    }
    Py_XSETREF(operation_kinds, Py_NewRef(kinds));
    Py_XSETREF(provider_aliases, Py_NewRef(aliases));
    for (Py_ssize_t i = 0; i < N_KEYS; i++) Py_XSETREF(keys[i], Py_NewRef(PyTuple_GET_ITEM(key_tuple, i)));
    configured = 1;
    Py_RETURN_NONE;
}

static PyObject *py_content_lane(PyObject *self, PyObject *args) {
    (void)self;
    int enable = -1;
    if (!PyArg_ParseTuple(args, "|p", &enable)) return NULL;
    if (enable >= 0) lane_on = enable;
    return Py_BuildValue("(Onn)", lane_on ? Py_True : Py_False, lane_hits, lane_declines);
}


/* --- pricing.Pricer.apply's usual row, in C ---------------------------------------------------------------
 * price_usual(rows, memo, resolve, any_keys, priced_kinds, source) -> (priced, rest)
 * For each row that is "usual" (pricing.py: an exact dict with cost_source falsy, cost_usd None, attributes
 * empty or without any of any_keys) and exact, plain numbers (ints 0 <= n < 2**53): a kind not in
 * priced_kinds is left alone; otherwise its price (memo[(response_model, request_model, model)], else
 * resolve(names): None or the (input, cached_input, cache_write, output) rates, kept in memo) gives cost_usd
 * exactly as Price.cost computes it (the same float operations in the same order, then round(usd, 12)
 * through the same correctly rounded decimal conversion) and cost_source = source. Every other row
 * (unpriced, no usage, an odd shape or type) is returned in `rest`, untouched, for the Python path. */
static PyObject *P_keys[11];
enum { P_COST_SOURCE, P_COST_USD, P_ATTRIBUTES, P_KIND, P_IN, P_OUT, P_RESP, P_REQ, P_MODEL, P_CR, P_CW };

static int price_keys(void) {
    static const char *names[11] = {"cost_source",    "cost_usd",      "attributes", "kind",
                                    "input_tokens",   "output_tokens", "response_model", "request_model",
                                    "model",          "cache_read_tokens", "cache_write_tokens"};
    for (int i = 0; i < 11; i++) {
        if (P_keys[i] != NULL) continue;
        P_keys[i] = PyUnicode_InternFromString(names[i]);
        if (P_keys[i] == NULL) return -1;
    }
    return 0;
}

/* An exact int in [0, 2**53) (as a float it is exact): 1 and *out set, 0 not one, -1 error. */
static int plain_count(PyObject *v, long long *out) {
    if (v == NULL || !PyLong_CheckExact(v)) return 0;
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (x == -1 && PyErr_Occurred()) return -1;
    if (overflow || x < 0 || x >= (1LL << 53)) return 0;
    *out = x;
    return 1;
}

/* 1: the row is usual and priced or left alone; 0: for the Python path; -1: error. */
static int price_one(PyObject *row, PyObject *memo, PyObject *resolve, PyObject *any_keys, PyObject *kinds,
                     PyObject *source) {
    if (!PyDict_CheckExact(row)) return 0;
    PyObject *v = PyDict_GetItemWithError(row, P_keys[P_COST_SOURCE]);
    if (v == NULL) return PyErr_Occurred() ? -1 : 0;
    int t = PyObject_IsTrue(v);
    if (t != 0) return t < 0 ? -1 : 0;
    v = PyDict_GetItemWithError(row, P_keys[P_COST_USD]);
    if (v != Py_None) return v == NULL && PyErr_Occurred() ? -1 : 0;
    PyObject *attrs = PyDict_GetItemWithError(row, P_keys[P_ATTRIBUTES]);
    if (attrs == NULL) return PyErr_Occurred() ? -1 : 0;
    if (!PyDict_CheckExact(attrs)) return 0;
    Py_ssize_t pos = 0;
    PyObject *k, *x;
    while (PyDict_Next(attrs, &pos, &k, &x)) {
        int c = PySet_Contains(any_keys, k);
        if (c != 0) return c < 0 ? -1 : 0;
    }
    PyObject *kind = PyDict_GetItemWithError(row, P_keys[P_KIND]);
    if (kind == NULL) return PyErr_Occurred() ? -1 : 0;
    if (!PyUnicode_CheckExact(kind)) return 0;
    int priced = PySet_Contains(kinds, kind);
    if (priced <= 0) return priced < 0 ? -1 : 1; /* not a priced kind: nothing to do, as in Python */
    long long inp, out, cr, cw;
    int r;
    if ((r = plain_count(PyDict_GetItemWithError(row, P_keys[P_IN]), &inp)) <= 0 ||
        (r = plain_count(PyDict_GetItemWithError(row, P_keys[P_OUT]), &out)) <= 0)
        return r < 0 || PyErr_Occurred() ? -1 : 0;
    if (!inp && !out) return 0; /* no usage: price_row decides and counts */
    PyObject *names[3];
    for (int i = 0; i < 3; i++) {
        names[i] = PyDict_GetItemWithError(row, P_keys[P_RESP + i]);
        if (names[i] == NULL) return PyErr_Occurred() ? -1 : 0;
    }
    PyObject *key = PyTuple_Pack(3, names[0], names[1], names[2]);
    if (key == NULL) return -1;
    PyObject *rates = PyDict_GetItemWithError(memo, key); /* borrowed: memo holds it */
    if (rates == NULL) {
        if (PyErr_Occurred()) {
            Py_DECREF(key);
            return -1;
        }
        PyObject *got = PyObject_CallOneArg(resolve, key);
        if (got == NULL || PyDict_SetItem(memo, key, got) < 0) {
            Py_XDECREF(got);
            Py_DECREF(key);
            return -1;
        }
        rates = got;
        Py_DECREF(got); /* memo keeps it */
    }
    Py_DECREF(key);
    if (rates == Py_None) return 0; /* unknown model: price_row counts it */
    if (!PyTuple_CheckExact(rates) || PyTuple_GET_SIZE(rates) != 4) {
        PyErr_SetString(PyExc_TypeError, "price_usual(): resolve() must give None or 4 floats");
        return -1;
    }
    double rate[4];
    for (int i = 0; i < 4; i++) {
        PyObject *f = PyTuple_GET_ITEM(rates, i);
        if (!PyFloat_CheckExact(f)) {
            PyErr_SetString(PyExc_TypeError, "price_usual(): resolve() must give None or 4 floats");
            return -1;
        }
        rate[i] = PyFloat_AS_DOUBLE(f);
    }
    if ((r = plain_count(PyDict_GetItemWithError(row, P_keys[P_CR]), &cr)) <= 0 ||
        (r = plain_count(PyDict_GetItemWithError(row, P_keys[P_CW]), &cw)) <= 0)
        return r < 0 || PyErr_Occurred() ? -1 : 0;
    /* Price.cost: (uncached * input + cache_read * cached_input + cache_write * cache_write + out * output)
     * / 1e6, left to right, each int exactly a double here; the build keeps multiply-adds unfused */
    long long uncached = inp - cr - cw;
    if (uncached < 0) uncached = inp;
    double usd = (double)uncached * rate[0];
    usd = usd + (double)cr * rate[1];
    usd = usd + (double)cw * rate[2];
    usd = usd + (double)out * rate[3];
    usd = usd / 1e6;
    /* round(usd, 12): Python rounds through the correctly rounded 12-decimal string and back, as here */
    char *text = PyOS_double_to_string(usd, 'f', 12, 0, NULL);
    if (text == NULL) return -1;
    double rounded = PyOS_string_to_double(text, NULL, NULL);
    PyMem_Free(text);
    if (rounded == -1.0 && PyErr_Occurred()) return -1;
    PyObject *cost = PyFloat_FromDouble(rounded);
    if (cost == NULL) return -1;
    r = PyDict_SetItem(row, P_keys[P_COST_USD], cost);
    Py_DECREF(cost);
    if (r < 0 || PyDict_SetItem(row, P_keys[P_COST_SOURCE], source) < 0) return -1;
    return 2;
}

static PyObject *price_usual(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *rows, *memo, *resolve, *any_keys, *kinds, *source;
    if (!PyArg_ParseTuple(args, "O!O!OO!O!U:price_usual", &PyList_Type, &rows, &PyDict_Type, &memo, &resolve,
                          &PyFrozenSet_Type, &any_keys, &PyFrozenSet_Type, &kinds, &source))
        return NULL;
    if (!PyCallable_Check(resolve)) {
        PyErr_SetString(PyExc_TypeError, "price_usual(): resolve must be callable");
        return NULL;
    }
    if (price_keys() < 0) return NULL;
    PyObject *rest = PyList_New(0);
    if (rest == NULL) return NULL;
    Py_ssize_t priced = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(rows); i++) {
        PyObject *row = PyList_GET_ITEM(rows, i);
        Py_INCREF(row); /* resolve() runs Python code: keep the row while it is ours */
        int r = price_one(row, memo, resolve, any_keys, kinds, source);
        if (r == 0) r = PyList_Append(rest, row) < 0 ? -1 : 0;
        Py_DECREF(row);
        if (r < 0) {
            Py_DECREF(rest);
            return NULL;
        }
        priced += r == 2;
    }
    PyObject *out = Py_BuildValue("(nN)", priced, rest);
    return out;
}

static PyMethodDef methods[] = {
    {"price_usual", price_usual, METH_VARARGS,
     "price_usual(rows, memo, resolve, any_keys, priced_kinds, source) -> (priced, rest): pricing's usual rows."},
    {"apply_genai_core", apply_genai_core, METH_VARARGS,
     "apply_genai_core(attrs, row, kind): otel_genai.apply_genai up to finish_reason, in place."},
    {"parse_messages", py_parse_messages, METH_VARARGS, "parse_messages(value, default_role): messages.py's."},
    {"parse_parts", py_parse_parts, METH_O, "parse_parts(value): messages.py's."},
    {"messages_text", py_messages_text, METH_O, "messages_text(messages): messages.py's, for parsed messages."},
    {"normalize_span", (PyCFunction)(void (*)(void))normalize_span, METH_FASTCALL,
     "normalize_span(span, registry, res, now_ns[, lanes, index]): pipeline.normalize_span's row, or None "
     "(declined); lanes: content_batch()'s result for the request, index: the span's position in it."},
    {"content_batch", content_batch, METH_O,
     "content_batch(spans) -> Lanes: each span's message JSON parsed by the lane, with the GIL released."},
    {"configure_rows", configure_rows, METH_VARARGS,
     "configure_rows(defaults, status, epoch, min_ns, max_ns, user_keys, session_keys, error_type_key, "
     "stringify, genai_cls, content_events, tool_io)."},
    {"configure", configure, METH_VARARGS,
     "configure(loads, to_json, display_text, as_str_list, operation_kinds, provider_aliases, keys)."},
    {"content_lane", py_content_lane, METH_VARARGS,
     "content_lane([enable]) -> (on, spans written by the direct message lane, spans it declined)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_normalize_native",
                                    "Native OTel GenAI normalization (see collectors/normalize/_native.py).", -1,
                                    methods};

PyMODINIT_FUNC PyInit__normalize_native(void) {
    if (PyType_Ready(&LanesType) < 0) return NULL;
    return PyModule_Create(&module);
}
