/*
 * The benchmark's C floor: the cheapest callback that still records
 * something, in C, on the same hooks as the native collector. Each event
 * takes a timestamp (the TSC on x86-64, else CLOCK_MONOTONIC) and stores it
 * in a ring of 8192; nothing is ever sent. bench/floor.py loads it (mode
 * `c`), and bench/overhead.ts compares the native collector with it.
 *
 * - monitoring (3.12+): C callbacks for the collector's nine events, on
 *   tool id 4;
 * - setprofile: a C profile function, put on each new thread by
 *   threading's profile hook (install_thread, a C function).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <frameobject.h>
#include <stdint.h>
#include <time.h>
#if defined(__x86_64__)
#include <x86intrin.h>
#endif

#define RING 8192
static uint64_t ring[RING];
static uint64_t position;

static inline void
record(void)
{
#if defined(__x86_64__)
    ring[position++ & (RING - 1)] = __rdtsc();
#else
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ring[position++ & (RING - 1)] = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
#endif
}

#if PY_VERSION_HEX >= 0x030C0000
#define UNUSED_UNLESS_MONITORING
#else
#define UNUSED_UNLESS_MONITORING __attribute__((unused))
#endif

static int
profile(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg)
{
    (void)obj;
    (void)frame;
    (void)what;
    (void)arg;
    record();
    return 0;
}

UNUSED_UNLESS_MONITORING static PyObject *
on_event(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    (void)args;
    (void)nargs;
    record();
    Py_RETURN_NONE;
}

/* threading's profile hook: called once as a profile function in each new
   thread, it puts the C one in its place. */
static PyObject *
install_thread(PyObject *module, PyObject *args)
{
    (void)module;
    (void)args;
    PyEval_SetProfile(profile, NULL);
    record();
    Py_RETURN_NONE;
}

static PyObject *
install(PyObject *module, PyObject *arg)
{
    (void)module;
    const char *engine = PyUnicode_AsUTF8(arg);
    if (engine == NULL) {
        return NULL;
    }
    if (strcmp(engine, "setprofile") == 0) {
        PyEval_SetProfile(profile, NULL);
        Py_RETURN_NONE;
    }
#if PY_VERSION_HEX >= 0x030C0000
    static const char *events[] = {"PY_START", "PY_RESUME", "PY_RETURN", "PY_YIELD", "PY_UNWIND",
                                   "PY_THROW", "CALL",      "C_RETURN",  "C_RAISE",  NULL};
    static PyMethodDef callback = {"floor_event", (PyCFunction)(void (*)(void))on_event,
                                   METH_FASTCALL, NULL};
    PyObject *monitoring = PySys_GetObject("monitoring");
    PyObject *bits = monitoring ? PyObject_GetAttrString(monitoring, "events") : NULL;
    PyObject *function = PyCFunction_NewEx(&callback, module, NULL);
    if (bits == NULL || function == NULL) {
        Py_XDECREF(bits);
        Py_XDECREF(function);
        return NULL;
    }
    PyObject *r = PyObject_CallMethod(monitoring, "use_tool_id", "is", 4, "floor");
    long mask = 0;
    for (int i = 0; r != NULL && events[i] != NULL; i++) {
        Py_DECREF(r);
        PyObject *bit = PyObject_GetAttrString(bits, events[i]);
        r = bit ? PyObject_CallMethod(monitoring, "register_callback", "iOO", 4, bit, function) : NULL;
        mask |= bit ? PyLong_AsLong(bit) : 0;
        Py_XDECREF(bit);
    }
    if (r != NULL) {
        Py_DECREF(r);
        r = PyObject_CallMethod(monitoring, "set_events", "il", 4, mask);
    }
    Py_DECREF(bits);
    Py_DECREF(function);
    if (r == NULL) {
        return NULL;
    }
    Py_DECREF(r);
    Py_RETURN_NONE;
#else
    PyErr_SetString(PyExc_ValueError, "the monitoring engine needs Python 3.12 or newer");
    return NULL;
#endif
}

static PyObject *
events_recorded(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    return PyLong_FromUnsignedLongLong(position);
}

static PyMethodDef methods[] = {
    {"install", install, METH_O, "install(engine): record on the calling thread (and all, 3.12+)."},
    {"install_thread", install_thread, METH_VARARGS, "threading.setprofile's hook."},
    {"events", events_recorded, METH_NOARGS, "How many events were recorded."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef floor_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_panopticon_floor",
    .m_doc = "The benchmark's C floor (bench/floor.c).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__panopticon_floor(void)
{
    return PyModule_Create(&floor_module);
}
