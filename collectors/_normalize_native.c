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
 * No parsing of bytes happens here (orjson/json parse the message strings), so the memory-safety surface
 * is the C API use itself: every container access is bounds-checked through the API, items are held with a
 * new reference while Python callbacks run, and no recursion exists (message parts are flat).
 * Runs with the GIL held; keeps no state besides the configuration (set once at import).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <math.h>

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

/* otel_genai._content: returns the finish reason found in the output messages ("" if none) */
static PyObject *content(PyObject *attrs, PyObject *row) {
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
static PyObject *normalize_span(PyObject *self, PyObject *const *argv, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "normalize_span() takes 4 arguments");
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

static PyMethodDef methods[] = {
    {"apply_genai_core", apply_genai_core, METH_VARARGS,
     "apply_genai_core(attrs, row, kind): otel_genai.apply_genai up to finish_reason, in place."},
    {"parse_messages", py_parse_messages, METH_VARARGS, "parse_messages(value, default_role): messages.py's."},
    {"parse_parts", py_parse_parts, METH_O, "parse_parts(value): messages.py's."},
    {"messages_text", py_messages_text, METH_O, "messages_text(messages): messages.py's, for parsed messages."},
    {"normalize_span", (PyCFunction)(void (*)(void))normalize_span, METH_FASTCALL,
     "normalize_span(span, registry, res, now_ns): pipeline.normalize_span's row, or None (declined)."},
    {"configure_rows", configure_rows, METH_VARARGS,
     "configure_rows(defaults, status, epoch, min_ns, max_ns, user_keys, session_keys, error_type_key, "
     "stringify, genai_cls, content_events, tool_io)."},
    {"configure", configure, METH_VARARGS,
     "configure(loads, to_json, display_text, as_str_list, operation_kinds, provider_aliases, keys)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_normalize_native",
                                    "Native OTel GenAI normalization (see collectors/normalize/_native.py).", -1,
                                    methods};

PyMODINIT_FUNC PyInit__normalize_native(void) { return PyModule_Create(&module); }
