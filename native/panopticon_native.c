/*
 * Panopticon's native collector: the hot path of recording, in C.
 *
 * One source file, written against the C API of the interpreter it is built
 * for (CPython 3.8 to 3.13, with the GIL) and libc. The `panopticon` command
 * embeds it as text, builds it once per interpreter into a per-user cache
 * (src/native_build.ts) and collector.py loads it; collector.py stays the
 * glue and the fallback.
 *
 * What it does, once started:
 *
 * - 3.12+: sys.monitoring, with this module's C functions registered as the
 *   callbacks (PY_START, PY_RESUME, PY_THROW, PY_RETURN, PY_YIELD, PY_UNWIND,
 *   CALL, C_RETURN, C_RAISE). Code a filter leaves out is switched off at its
 *   source with DISABLE, where the event is a local one.
 * - 3.8 to 3.11 (and --engine setprofile or --manual on 3.12+): a C profile
 *   function on every thread. New threads get it from a wrapper of
 *   `_thread.start_new_thread` (and `start_joinable_thread`), which also
 *   names them.
 * - Per event: no Python object allocated, no bytecode run, no system call.
 *   The time comes from the TSC, calibrated to CLOCK_MONOTONIC, where the
 *   kernel trusts it; else from clock_gettime. Events are packed in a few
 *   bytes each (docs/protocol.md, `batch`) into one batch shared by every
 *   thread (the GIL serialises the callbacks); a full batch is handed to a
 *   writer thread of ours, which sends it while the program goes on, and
 *   sends what waits whenever the program has been quiet for 20 ms, so
 *   that a program killed in its sleep loses at most that.
 * - Decisions are made once per code object (the code's "extra" slot holds
 *   what was decided) and once per C function (a small hash table).
 * - Names, files and the JSON of the records are made here too, so that no
 *   Python code runs inside a callback: a signal's handler, which Python runs
 *   between bytecodes, then never runs inside the tracer.
 *
 * The protocol (records and the bytes of a batch) is docs/protocol.md.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <frameobject.h>
#include <opcode.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/syscall.h>
#endif
#if defined(__x86_64__)
#include <x86intrin.h>
#endif

/* --args reads a frame's fast locals where they are, without a locals dict
   (frame.f_locals copies them into one before 3.13, which the frame keeps).
   3.11 hid the frame's struct: it is in the internal headers, which the
   interpreters' development files install (Cython reads frames the same way). */
#if PY_VERSION_HEX >= 0x030B0000 && defined(__has_include)
#if __has_include(<internal/pycore_frame.h>)
#define Py_BUILD_CORE 1
#include <internal/pycore_frame.h>
#undef Py_BUILD_CORE
#define ARGS_READABLE 1
#ifndef CO_FAST_CELL
#define CO_FAST_CELL 0x40 /* internal/pycore_code.h: a local that is a cell */
#endif
#endif
#elif PY_VERSION_HEX < 0x030B0000
#define ARGS_READABLE 1
#endif
#ifndef ARGS_READABLE
#define ARGS_READABLE 0
#endif

#if PY_VERSION_HEX < 0x03080000
#error "Panopticon's native collector needs Python 3.8 or newer"
#endif
#ifdef Py_GIL_DISABLED
#error "Panopticon's native collector needs a Python with the GIL (not a free-threaded build)"
#endif

#define PY_3_9 (PY_VERSION_HEX >= 0x03090000)
#define PY_3_10 (PY_VERSION_HEX >= 0x030A0000)
#define PY_3_11 (PY_VERSION_HEX >= 0x030B0000)
#define PY_3_12 (PY_VERSION_HEX >= 0x030C0000)
#define PY_3_13 (PY_VERSION_HEX >= 0x030D0000)

/* The code "extra" slots (PEP 523): renamed PyUnstable_* in 3.12. */
#if PY_3_12
#define SET_CODE_EXTRA PyUnstable_Code_SetExtra
#define REQUEST_CODE_EXTRA_INDEX PyUnstable_Eval_RequestCodeExtraIndex
#else
#define SET_CODE_EXTRA _PyCode_SetExtra
#define REQUEST_CODE_EXTRA_INDEX _PyEval_RequestCodeExtraIndex
#endif

#if defined(__GNUC__)
#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define LIKELY(x) (x)
#define UNLIKELY(x) (x)
#endif

/* Event op codes (docs/protocol.md). */
enum {
    OP_CALL = 0,
    OP_RESUME = 1,
    OP_RETURN = 2,
    OP_UNWIND = 3,
    OP_SUSPEND = 4,
    OP_C_CALL = 5,
    OP_C_RETURN = 6,
    OP_C_RAISE = 7,
    OP_INSTANT = 8,
    OP_COUNTER = 9,
    OP_SPAN_BEGIN = 10,
    OP_SPAN_END = 11,
    OP_STOP = 12,
    OP_THREAD = 13,
    OP_SPAWN = 14,
    FLAG_FRAME = 0x10,
    FLAG_FRAME8 = 0x20,
    FLAG_THREAD_TIME = 0x40, /* ops 0 to 7, --cpu-time: the thread's CPU time follows */
};

#define CO_GENERATOR_LIKE (CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR | CO_ITERABLE_COROUTINE)

/* ------------------------------------------------------------------------ */
/* Growable text, for records                                               */
/* ------------------------------------------------------------------------ */

typedef struct {
    char *data;
    size_t len;
    size_t cap;
} Text;

static int
text_reserve(Text *t, size_t more)
{
    if (t->len + more <= t->cap) {
        return 0;
    }
    size_t cap = t->cap ? t->cap : 4096;
    while (cap < t->len + more) {
        cap *= 2;
    }
    char *data = realloc(t->data, cap);
    if (data == NULL) {
        return -1;
    }
    t->data = data;
    t->cap = cap;
    return 0;
}

static void
text_put(Text *t, const char *s, size_t n)
{
    if (text_reserve(t, n) == 0) {
        memcpy(t->data + t->len, s, n);
        t->len += n;
    }
}

static void
text_puts(Text *t, const char *s)
{
    text_put(t, s, strlen(s));
}

static void
text_printf(Text *t, const char *format, ...)
{
    char small[256];
    va_list args;
    va_start(args, format);
    int n = vsnprintf(small, sizeof small, format, args);
    va_end(args);
    if (n < 0) {
        return;
    }
    if ((size_t)n < sizeof small) {
        text_put(t, small, (size_t)n);
        return;
    }
    if (text_reserve(t, (size_t)n + 1) == 0) {
        va_start(args, format);
        vsnprintf(t->data + t->len, (size_t)n + 1, format, args);
        va_end(args);
        t->len += (size_t)n;
    }
}

/* A JSON string of UTF-8 bytes. Lone surrogates were replaced before. */
static void
text_json_bytes(Text *t, const char *s, Py_ssize_t n)
{
    static const char hex[] = "0123456789abcdef";
    text_put(t, "\"", 1);
    Py_ssize_t run = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            continue;
        }
        text_put(t, s + run, (size_t)(i - run));
        run = i + 1;
        switch (c) {
        case '"': text_put(t, "\\\"", 2); break;
        case '\\': text_put(t, "\\\\", 2); break;
        case '\n': text_put(t, "\\n", 2); break;
        case '\r': text_put(t, "\\r", 2); break;
        case '\t': text_put(t, "\\t", 2); break;
        default: {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            text_put(t, esc, 6);
        }
        }
    }
    text_put(t, s + run, (size_t)(n - run));
    text_put(t, "\"", 1);
}

/* A JSON string of a str object; anything else, or an error, is "". */
static void
text_json_str(Text *t, PyObject *str)
{
    if (str == NULL || !PyUnicode_Check(str)) {
        text_put(t, "\"\"", 2);
        return;
    }
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(str, &n);
    if (s != NULL) {
        text_json_bytes(t, s, n);
        return;
    }
    /* Lone surrogates (a file name from undecodable bytes) become U+FFFD:
       through UTF-16, where they pass and then fail to decode. */
    PyErr_Clear();
    PyObject *utf16 = PyUnicode_AsEncodedString(str, "utf-16-le", "surrogatepass");
    int order = -1;
    PyObject *clean = utf16 ? PyUnicode_DecodeUTF16(PyBytes_AS_STRING(utf16),
                                                    PyBytes_GET_SIZE(utf16), "replace", &order)
                            : NULL;
    Py_XDECREF(utf16);
    s = clean ? PyUnicode_AsUTF8AndSize(clean, &n) : NULL;
    if (s == NULL) {
        PyErr_Clear();
        text_put(t, "\"\"", 2);
    } else {
        text_json_bytes(t, s, n);
    }
    Py_XDECREF(clean);
}

/* ------------------------------------------------------------------------ */
/* The clock                                                                */
/* ------------------------------------------------------------------------ */

/*
 * Nanoseconds of CLOCK_MONOTONIC (what time.perf_counter_ns() reads on
 * Linux, so that the hello's t0, the flushes and the Python collector share
 * it). Measured here: clock_gettime costs about 20 ns, rdtsc about 8. The
 * TSC is used where the kernel itself uses it as its clock source (it has
 * then checked that it is invariant and synchronised across CPUs), mapped
 * to nanoseconds by a line through two readings of both clocks. The line is
 * re-anchored every few milliseconds of TSC time (one comparison an event),
 * and its slope refined over the whole run so far, so its error stays far
 * below a microsecond; times never go backwards within the stream (see
 * event_time).
 */

static int use_tsc = 0;
static uint64_t tsc_first, ns_first;   /* the first reading of both clocks */
static uint64_t tsc_anchor, ns_anchor; /* the latest */
static uint64_t ns_per_tick_q32;       /* nanoseconds per tick, times 2^32 */
#define REANCHOR_TICKS (1ull << 23)    /* about 3 ms at 3 GHz */

static inline uint64_t
monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

#if defined(__x86_64__)
static inline uint64_t
read_tsc(void)
{
    return __rdtsc();
}
#else
static inline uint64_t
read_tsc(void)
{
    return 0;
}
#endif

static void
tsc_reanchor(void)
{
    uint64_t tsc = read_tsc();
    uint64_t ns = monotonic_ns();
    if (tsc > tsc_first + 1000 && ns > ns_first) {
        ns_per_tick_q32 =
            (uint64_t)(((unsigned __int128)(ns - ns_first) << 32) / (tsc - tsc_first));
    }
    tsc_anchor = tsc;
    ns_anchor = ns;
}

static inline uint64_t
clock_now(void)
{
    if (!use_tsc) {
        return monotonic_ns();
    }
    uint64_t delta = read_tsc() - tsc_anchor;
    if (UNLIKELY(delta >= REANCHOR_TICKS)) {
        /* Also taken when the TSC of this CPU reads a hair behind the
           anchor's (the difference wraps): the anchor then moves here. */
        tsc_reanchor();
        return ns_anchor;
    }
    return ns_anchor + (uint64_t)(((unsigned __int128)delta * ns_per_tick_q32) >> 32);
}

static int
file_starts_with(const char *path, const char *prefix)
{
    char line[256];
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return 0;
    }
    int ok = fgets(line, sizeof line, f) != NULL && strncmp(line, prefix, strlen(prefix)) == 0;
    fclose(f);
    return ok;
}

/* Chooses the clock: "tsc" where it is safe, else "monotonic". */
static void
clock_init(const char *wanted)
{
    use_tsc = 0;
#if defined(__x86_64__) && defined(__linux__)
    if (strcmp(wanted, "monotonic") != 0 &&
        file_starts_with("/sys/devices/system/clocksource/clocksource0/current_clocksource",
                         "tsc")) {
        tsc_first = read_tsc();
        ns_first = monotonic_ns();
        /* A first slope over 100 us; the re-anchoring refines it. */
        uint64_t ns;
        do {
            ns = monotonic_ns();
        } while (ns - ns_first < 100000);
        tsc_reanchor();
        use_tsc = ns_per_tick_q32 != 0;
    }
#else
    (void)wanted;
#endif
}

/* ------------------------------------------------------------------------ */
/* State                                                                    */
/* ------------------------------------------------------------------------ */

typedef struct Thread {
    PyObject_HEAD
    uint64_t serial;        /* the thread's id on the wire */
    uint64_t tstate_id;     /* PyThreadState.id: unique for the process's life */
    unsigned long ident;    /* threading.get_ident() */
    unsigned long native_id;
    int paused;             /* our own code runs on it: record nothing */
    int named;              /* its name is known (else "Thread <ident>") */
    int live;               /* in the thread table */
    /* --exceptions before 3.12: the frame an exception has just entered,
       and the exception (addresses only: nothing is kept). */
    uintptr_t watch_frame;
    uintptr_t watch_exception;
} Thread;

enum { ENGINE_NONE = 0, ENGINE_MONITORING = 1, ENGINE_PROFILE = 2 };

/* What was decided about one code object, kept in its "extra" slot. */
typedef struct {
    uint32_t id;       /* 0: never recorded */
    uint8_t generator; /* generator-like: frames that suspend */
    uint8_t hidden;    /* the collector's own code */
    int32_t units;     /* code units in `points` */
    /* Profile engine, generator-like code only: per code unit, 1 where a
       'call' is a fresh start, 2 where a 'return' is a suspension. */
    uint8_t *points;
    uint8_t values;    /* VALUES_ARGS, VALUES_RETURNS: what --args, --returns record */
    uint8_t lines;     /* --lines selects it: each line it runs is an event */
} CodeInfo;

static CodeInfo EXCLUDED = {0, 0, 0, 0, NULL, 0, 0};

enum { VALUES_ARGS = 1, VALUES_RETURNS = 2 };

/* --args and --returns: their patterns (lists of (kind, glob)), and the
   number of the last `values` record. */
static struct {
    PyObject *args;
    PyObject *returns;
    uint32_t count;
} V = {NULL, NULL, 0};

/* --lines: its patterns (a list of (kind, glob)), or NULL; and, on 3.12+,
   sys.monitoring.events.LINE, switched on per selected code object. */
static struct {
    PyObject *patterns;
    long line_event;
} L = {NULL, 0};

static void lines_switch_on(PyCodeObject *code);
static void record_arguments(struct Thread *t, PyCodeObject *code, void *frame);
static void record_result(struct Thread *t, const char *label, PyObject *value);

#define BATCH_BYTES (64 * 1024)
/* The most one event takes: a thread switch (1 + 10), op and three fields,
   and a thread time (10). */
#define EVENT_MAX_BYTES 64
/* Batches in all, at most: one being filled, the others queued for the
   writer (4 MiB). More are made as needed: a program waits for the writer
   only when it is that far behind. */
#define MAX_BATCHES 64
/* How long events may wait in a batch the program has stopped filling:
   what a program killed in its sleep loses at most. */
#define IDLE_FLUSH_NS 20000000ull

/* The events of one batch frame, and the records that must go before them. */
typedef struct Batch {
    uint8_t data[BATCH_BYTES + EVENT_MAX_BYTES];
    size_t length;
    uint32_t events;
    uint64_t ts;     /* the frame's `ts`: the time before its first event */
    uint64_t thread; /* the frame's `thread` */
    Text records;    /* sent before the frame */
    struct Batch *next;
} Batch;

static struct {
    int fd;                 /* the channel; -1 when closed */
    int active;             /* recording */
    int started;            /* start() ran */
    int finished;
    int engine;
    int manual;
    int waiting;            /* for the program's <module> */
    int c_calls;
    int thread_time;        /* --cpu-time: events of ops 0 to 7 carry the thread's CPU time */
    int filtering;          /* any code can be excluded */
    long long events_left;  /* --max-events; -1: no limit */
    uint64_t events;        /* recorded in all */
    uint64_t sent;
    uint64_t dropped;
    uint64_t batches;
    /* The batch being filled (GIL). */
    Batch *batch;
    uint8_t *pos;
    uint8_t *end;           /* where a batch is full */
    uint64_t last_ts;
    Thread *thread;         /* of the last event */
    uint32_t batch_events;
    /* The writer thread and what it shares with the program's threads
       (under `lock`): the batches to send, the free ones, and how it went. */
    pthread_mutex_t lock;
    pthread_cond_t wake;    /* the writer: batches to send, or stop */
    pthread_cond_t freed;   /* a batch is free again */
    Batch *queue_head, *queue_tail, *free_batches;
    pthread_t writer;
    int writing;            /* the writer thread runs */
    int batches_made;
    int waiting_for_batch;  /* a thread waits for a free batch, without the GIL */
    int stopping;
    int broken;             /* the errno of a failed write, or 0 */
    uint64_t handed_at;     /* when the last batch was handed over */
    /* Everything else. */
    Py_ssize_t extra_index;
    uint32_t code_count;
    uint32_t cfunc_count;
    uint32_t mark_count;
    uint64_t thread_count;
    PyObject *own_file;     /* collector.py's co_filename: hidden code */
    PyObject *include;      /* list of (kind, glob) */
    PyObject *exclude;
    PyObject *stdlib;       /* tuple of directories, or NULL */
    PyObject *disable;      /* sys.monitoring.DISABLE */
    PyObject *monitoring;   /* sys.monitoring */
    int tool;
    long mask;
    long reported_mask;
    int meddled;
    PyObject *callbacks;    /* list of (event, callback) */
    PyObject *real_use_tool_id;
    PyObject *real_exit;
    PyObject *real_start_new_thread;
    PyObject *real_start_joinable_thread;
    int switching;          /* our own PyEval_SetProfile (3.12+) */
    /* Following the processes the program starts (docs/protocol.md,
       "Processes"): where they connect, and what their environment needs. */
    int follow;
    char *channel_path;
    PyObject *child_env;    /* list of bytes "NAME=VALUE": the collector's variables */
    PyObject *private_dir;  /* bytes: what PYTHONPATH must start with */
    uint64_t spawn_count;   /* tokens given so far */
    Text definitions;       /* every code and cfunc record sent: a forked child sends them anew */
    uint64_t fork_token;    /* the token of the fork in progress */
    int warned_profile;
    int warned_closed;
} S = {.fd = -1, .events_left = -1, .extra_index = -1};

/* Where records go: before the events of the batch being filled. */
#define RECORDS (&S.batch->records)

/* ------------------------------------------------------------------------ */
/* Threads                                                                  */
/* ------------------------------------------------------------------------ */

static PyTypeObject ThreadType;

/* The table of live threads, by PyThreadState.id: open addressing. */
static Thread **thread_table = NULL;
static size_t thread_slots = 0; /* a power of two */
static size_t thread_used = 0;  /* slots taken, tombstones included */
static Thread TOMBSTONE_THREAD;
#define TOMBSTONE (&TOMBSTONE_THREAD)

static Thread *cached_thread = NULL;
static PyThreadState *cached_tstate = NULL;
static Thread *main_thread = NULL;

static inline size_t
hash_u64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return (size_t)x;
}

/* A new table for the live threads, a quarter full at most. */
static int
thread_table_rehash(void)
{
    size_t live = 0;
    for (size_t i = 0; i < thread_slots; i++) {
        live += thread_table[i] != NULL && thread_table[i] != TOMBSTONE;
    }
    size_t slots = 64;
    while ((live + 1) * 4 > slots) {
        slots *= 2;
    }
    Thread **table = calloc(slots, sizeof *table);
    if (table == NULL) {
        return -1;
    }
    size_t used = 0;
    for (size_t i = 0; i < thread_slots; i++) {
        Thread *t = thread_table[i];
        if (t == NULL || t == TOMBSTONE) {
            continue;
        }
        size_t j = hash_u64(t->tstate_id) & (slots - 1);
        while (table[j] != NULL) {
            j = (j + 1) & (slots - 1);
        }
        table[j] = t;
        used++;
    }
    free(thread_table);
    thread_table = table;
    thread_slots = slots;
    thread_used = used;
    return 0;
}

static Thread *
thread_table_get(uint64_t id)
{
    if (thread_slots == 0) {
        return NULL;
    }
    size_t j = hash_u64(id) & (thread_slots - 1);
    for (;;) {
        Thread *t = thread_table[j];
        if (t == NULL) {
            return NULL;
        }
        if (t != TOMBSTONE && t->tstate_id == id) {
            return t;
        }
        j = (j + 1) & (thread_slots - 1);
    }
}

static int
tstate_id_live(PyInterpreterState *interp, uint64_t id)
{
    for (PyThreadState *ts = PyInterpreterState_ThreadHead(interp); ts != NULL;
         ts = PyThreadState_Next(ts)) {
        if (ts->id == id) {
            return 1;
        }
    }
    return 0;
}

/*
 * Forgets the threads whose thread state is gone: the table holds the live
 * threads, and those that ended since it last filled up. (A thread is not
 * forgotten when its function returns: Python code may still run on it,
 * finalizers and weak reference callbacks, and must find it.)
 */
static void
thread_table_purge(void)
{
    PyInterpreterState *interp = PyThreadState_Get()->interp;
    for (size_t i = 0; i < thread_slots; i++) {
        Thread *t = thread_table[i];
        if (t != NULL && t != TOMBSTONE && t != main_thread &&
            !tstate_id_live(interp, t->tstate_id)) {
            thread_table[i] = TOMBSTONE;
            t->live = 0;
            if (cached_thread == t) {
                cached_thread = NULL;
                cached_tstate = NULL;
            }
            Py_DECREF(t);
        }
    }
}

/* Takes a new reference to `t`. */
static int
thread_table_put(Thread *t)
{
    if ((thread_used + 1) * 2 > thread_slots) {
        if (thread_slots) {
            thread_table_purge();
        }
        if (thread_table_rehash() < 0) {
            return -1;
        }
    }
    size_t j = hash_u64(t->tstate_id) & (thread_slots - 1);
    while (thread_table[j] != NULL && thread_table[j] != TOMBSTONE) {
        j = (j + 1) & (thread_slots - 1);
    }
    if (thread_table[j] == NULL) {
        thread_used++;
    }
    Py_INCREF(t);
    thread_table[j] = t;
    t->live = 1;
    return 0;
}

static unsigned long
current_native_id(void)
{
#if defined(__linux__)
    return (unsigned long)syscall(SYS_gettid);
#else
    return PyThread_get_thread_native_id();
#endif
}

static void
announce_thread(Thread *t, PyObject *name)
{
    text_printf(RECORDS, "{\"kind\":\"thread\",\"thread\":%llu,\"native_id\":%lu,\"name\":",
                (unsigned long long)t->serial, t->native_id);
    if (name != NULL && PyUnicode_Check(name)) {
        text_json_str(RECORDS, name);
    } else {
        text_printf(RECORDS, "\"Thread %lu\"", t->ident);
    }
    text_printf(RECORDS, ",\"ident\":%lu}\n", t->ident);
}

static void cpu_thread_started(Thread *t);

/* A new Thread for the calling thread, in the table, announced. */
static Thread *
thread_new(PyThreadState *ts, PyObject *name)
{
    Thread *t = PyObject_New(Thread, &ThreadType);
    if (t == NULL) {
        return NULL;
    }
    t->serial = ++S.thread_count;
    t->tstate_id = ts->id;
    t->ident = PyThread_get_thread_ident();
    t->native_id = current_native_id();
    t->paused = 0;
    t->watch_frame = 0;
    t->watch_exception = 0;
    t->named = name != NULL;
    t->live = 0;
    if (thread_table_put(t) < 0) {
        Py_DECREF(t);
        return NULL;
    }
    Py_DECREF(t); /* the table holds it */
    announce_thread(t, name);
    cpu_thread_started(t);
    return t;
}

/*
 * The name `threading` gave the thread with `ident`, if threading is
 * imported and knows it: `threading._active[ident]._name`, read without
 * running any Python code (no properties, no __getattr__).
 */
static PyObject *
threading_name(unsigned long ident)
{
    PyObject *modules = PySys_GetObject("modules");
    PyObject *threading = modules ? PyDict_GetItemString(modules, "threading") : NULL;
    if (threading == NULL || !PyModule_Check(threading)) {
        return NULL;
    }
    PyObject *active = PyDict_GetItemString(PyModule_GetDict(threading), "_active");
    if (active == NULL || !PyDict_Check(active)) {
        return NULL;
    }
    PyObject *key = PyLong_FromUnsignedLong(ident);
    if (key == NULL) {
        PyErr_Clear();
        return NULL;
    }
    PyObject *thread = PyDict_GetItemWithError(active, key);
    Py_DECREF(key);
    if (thread == NULL) {
        PyErr_Clear();
        return NULL;
    }
    PyObject **dict = _PyObject_GetDictPtr(thread);
    if (dict == NULL || *dict == NULL) {
        return NULL;
    }
    PyObject *name = PyDict_GetItemString(*dict, "_name");
    return name != NULL && PyUnicode_Check(name) ? name : NULL;
}

/* The Thread of the calling thread, made at first sight. */
static Thread *
thread_lookup(PyThreadState *ts)
{
    Thread *t = thread_table_get(ts->id);
    if (t == NULL) {
        /* A thread not started through `_thread` (one made in C), or one
           started before recording: named by threading if it can be. */
        t = thread_new(ts, threading_name(PyThread_get_thread_ident()));
    }
    cached_tstate = ts;
    cached_thread = t;
    return t;
}

static inline PyThreadState *
unchecked_tstate(void)
{
#if PY_3_13
    return PyThreadState_GetUnchecked();
#else
    return _PyThreadState_UncheckedGet();
#endif
}

static inline Thread *
current_thread(void)
{
    PyThreadState *ts = unchecked_tstate();
    if (LIKELY(ts == cached_tstate && cached_thread != NULL && cached_thread->tstate_id == ts->id)) {
        return cached_thread;
    }
    return thread_lookup(ts);
}

/* Threads seen before they were named: named at a flush, when threading knows them. */
static void
name_threads(void)
{
    for (size_t i = 0; i < thread_slots; i++) {
        Thread *t = thread_table[i];
        if (t == NULL || t == TOMBSTONE || t->named) {
            continue;
        }
        PyObject *name = threading_name(t->ident);
        if (name != NULL) {
            t->named = 1;
            announce_thread(t, name);
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Writing events                                                           */
/* ------------------------------------------------------------------------ */

static inline uint8_t *
put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

/* A frame id, after the event's other fields; the op byte gets its flags. */
static inline uint8_t *
put_frame(uint8_t *p, uint8_t *op, uintptr_t frame)
{
    uint64_t value = (uint64_t)frame;
    memcpy(p, &value, 8); /* little-endian hosts; see the check in module exec */
    if (LIKELY(value >> 48 == 0)) {
        *op |= FLAG_FRAME;
        return p + 6;
    }
    *op |= FLAG_FRAME | FLAG_FRAME8;
    return p + 8;
}

/*
 * The calling thread's CPU time, in ns, for --cpu-time: the one system call
 * per event that the option costs (CLOCK_THREAD_CPUTIME_ID has no vDSO fast
 * path on Linux), which is why it is off by default.
 */
static inline uint64_t
thread_cpu_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) {
        return 0;
    }
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The thread time read with the event's time, last of its fields. */
static inline uint8_t *
put_thread_time(uint8_t *p, uint8_t *op, uint64_t cpu)
{
    *op |= FLAG_THREAD_TIME;
    return put_varint(p, cpu);
}

static void hand_over(Thread *t);
static void limit_reached(Thread *t);
static void start_recording(void);

/*
 * Room for one event of thread `t`, its thread switch first if needed;
 * returns where the op byte goes. `now` was read before: the event's time
 * is when it happened, not after a flush it triggered.
 */
static inline uint8_t *
event_begin(Thread *t, uint64_t now, uint64_t *dt)
{
    while (UNLIKELY(S.pos >= S.end)) {
        hand_over(t);
    }
    uint8_t *p = S.pos;
    if (UNLIKELY(t != S.thread)) {
        if (p == S.batch->data) {
            S.batch->thread = t->serial;
        } else {
            *p++ = OP_THREAD;
            p = put_varint(p, t->serial);
        }
        S.thread = t;
    }
    /* Times never go back within the stream. */
    *dt = now > S.last_ts ? now - S.last_ts : 0;
    S.last_ts += *dt;
    return p;
}

static inline void
event_end(Thread *t, uint8_t *p)
{
    S.pos = p;
    S.batch_events++;
    S.events++;
    if (UNLIKELY(S.events_left >= 0) && --S.events_left == 0) {
        limit_reached(t);
    }
}

/* Both clocks are read before event_begin, which may hand a batch over. */
static inline void
emit_code_event(Thread *t, int op, uint32_t code, uintptr_t frame)
{
    uint64_t dt, now = clock_now();
    uint64_t cpu = UNLIKELY(S.thread_time) ? thread_cpu_ns() : 0;
    uint8_t *p = event_begin(t, now, &dt);
    uint8_t *opb = p++;
    *opb = (uint8_t)op;
    p = put_varint(p, dt);
    p = put_varint(p, code);
    if (frame) {
        p = put_frame(p, opb, frame);
    }
    if (UNLIKELY(S.thread_time)) {
        p = put_thread_time(p, opb, cpu);
    }
    event_end(t, p);
}

/* An event that ends a slice reads the thread's CPU clock before the wall
   clock, one that starts a slice after it: a stall between the two reads
   then shortens the slice's thread time, never lengthens it past its wall
   time (in a VM, time the host steals counts as the thread's). */
static inline void
emit_end_event(Thread *t, int op, uintptr_t frame)
{
    uint64_t cpu = UNLIKELY(S.thread_time) ? thread_cpu_ns() : 0;
    uint64_t dt, now = clock_now();
    uint8_t *p = event_begin(t, now, &dt);
    uint8_t *opb = p++;
    *opb = (uint8_t)op;
    p = put_varint(p, dt);
    if (frame) {
        p = put_frame(p, opb, frame);
    }
    if (UNLIKELY(S.thread_time)) {
        p = put_thread_time(p, opb, cpu);
    }
    event_end(t, p);
}

static inline void
emit_ref_event(Thread *t, int op, uint64_t ref)
{
    uint64_t dt, now = clock_now();
    /* Of these ops only c_call (5) starts a slice. */
    int timed = UNLIKELY(S.thread_time) && op <= OP_C_RAISE;
    uint64_t cpu = timed ? thread_cpu_ns() : 0;
    uint8_t *p = event_begin(t, now, &dt);
    uint8_t *opb = p++;
    *opb = (uint8_t)op;
    p = put_varint(p, dt);
    p = put_varint(p, ref);
    if (timed) {
        p = put_thread_time(p, opb, cpu);
    }
    event_end(t, p);
}

static inline void
emit_bare_event(Thread *t, int op)
{
    /* c_return and c_raise (6, 7) end a slice; stop (12) does not. The
       thread's clock first, as in emit_end_event. */
    int timed = UNLIKELY(S.thread_time) && op <= OP_C_RAISE;
    uint64_t cpu = timed ? thread_cpu_ns() : 0;
    uint64_t dt, now = clock_now();
    uint8_t *p = event_begin(t, now, &dt);
    uint8_t *opb = p++;
    *opb = (uint8_t)op;
    p = put_varint(p, dt);
    if (timed) {
        p = put_thread_time(p, opb, cpu);
    }
    event_end(t, p);
}

static void
emit_span_event(Thread *t, int op, uint64_t span, uint64_t mark)
{
    uint64_t dt, now = clock_now();
    uint8_t *p = event_begin(t, now, &dt);
    *p++ = (uint8_t)op;
    p = put_varint(p, dt);
    p = put_varint(p, span);
    if (op == OP_SPAN_BEGIN) {
        p = put_varint(p, mark);
    }
    event_end(t, p);
}

/* ------------------------------------------------------------------------ */
/* Sending                                                                  */
/* ------------------------------------------------------------------------ */

static void warn(const char *format, ...);
static void engine_off(void);
static void check_tool(const char *when);

/* Writes all of the pieces, or fails: a signal's EINTR is retried, so a
   record is never cut in half. */
static int
write_all(struct iovec *iov, int count)
{
    while (count > 0) {
        ssize_t n = writev(S.fd, iov, count);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        while (count > 0 && (size_t)n >= iov->iov_len) {
            n -= (ssize_t)iov->iov_len;
            iov++;
            count--;
        }
        if (count > 0) {
            iov->iov_base = (char *)iov->iov_base + n;
            iov->iov_len -= (size_t)n;
        }
    }
    return 0;
}

/* Sends a batch: its records, then its frame. The writer thread's, or the
   program's once the writer has stopped. No GIL needed. */
static int
send_batch(Batch *batch)
{
    char header[160];
    struct iovec iov[3];
    int n = 0;
    if (batch->records.len) {
        iov[n].iov_base = batch->records.data;
        iov[n++].iov_len = batch->records.len;
    }
    if (batch->events) {
        iov[n].iov_base = header;
        iov[n++].iov_len = (size_t)snprintf(
            header, sizeof header,
            "{\"kind\":\"batch\",\"bytes\":%zu,\"events\":%u,\"ts\":%llu,\"thread\":%llu}\n",
            batch->length, batch->events, (unsigned long long)batch->ts,
            (unsigned long long)batch->thread);
        iov[n].iov_base = batch->data;
        iov[n++].iov_len = batch->length;
    }
    return n == 0 ? 0 : write_all(iov, n);
}

static void start_writer(void);
static void cpu_sample_maybe(void);
/* Inside os.fork, wrapped (see pause_writer). */
static int in_fork_wrapper = 0;
/*
 * In a forked child, from the fork until after_fork_child: the stream is
 * still the parent's, and the child must write nothing into it. Python's
 * own at-fork functions run before ours (and ours run Python code, the
 * hello's), all of it recorded: a batch filled then went out from the
 * child, into the parent's stream, beside the parent's writer (events
 * counted twice, or a record cut in two by the other's). Set at the fork
 * itself, by a pthread_atfork handler (see forked_child_at_fork).
 */
static volatile sig_atomic_t child_unsettled = 0;
/* A SIGTERM or SIGHUP to end the process by, once the stream is finished
   (see on_terminate_signal). */
static volatile sig_atomic_t terminate_signal = 0;
static int terminating = 0; /* the writer has started the terminator */
/* finish() is sending the stream's last batches and its end, the writer
   stopped: a signal then waits for it (see on_terminate_signal). */
static volatile sig_atomic_t finishing = 0;

/* Starts filling `batch`, empty, from where the stream is. */
static void
begin_batch(Batch *batch)
{
    batch->length = 0;
    batch->events = 0;
    batch->records.len = 0;
    batch->ts = S.last_ts;
    batch->thread = S.thread ? S.thread->serial : 0;
    S.batch = batch;
    S.pos = batch->data;
    S.end = batch->data + BATCH_BYTES;
    S.batch_events = 0;
}

/* The batch being filled, closed for sending. */
static Batch *
close_batch(void)
{
    Batch *batch = S.batch;
    batch->length = (size_t)(S.pos - batch->data);
    batch->events = S.batch_events;
    return batch;
}

static void
enqueue(Batch *batch)
{
    batch->next = NULL;
    if (S.queue_tail) {
        S.queue_tail->next = batch;
    } else {
        S.queue_head = batch;
    }
    S.queue_tail = batch;
}

/* The program goes on at full speed, rather than feeding callbacks whose
   events can go nowhere (a closed channel, a full disk). With the GIL. */
static void
notice_broken(void)
{
    if (S.active) {
        S.active = 0;
        engine_off();
    }
}

/* A free batch, or a new one while there are fewer than MAX_BATCHES; NULL
   when every batch is full. Under the lock. */
static Batch *
take_free_batch(void)
{
    Batch *batch = S.free_batches;
    if (batch != NULL) {
        S.free_batches = batch->next;
    } else if (S.batches_made < MAX_BATCHES && (batch = calloc(1, sizeof *batch)) != NULL) {
        S.batches_made++;
    }
    return batch;
}

/*
 * Waits until the thread that waits for a free batch has one, without the
 * GIL: the writer may need it meanwhile (idle_flush), and the program's
 * other threads may run, though none records an event until then (each
 * comes here). The GIL is never taken with the lock held: a thread that
 * has the GIL may be waiting for the lock.
 */
static void
wait_for_batch_elsewhere(void)
{
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&S.lock);
    while (S.waiting_for_batch) {
        pthread_cond_wait(&S.freed, &S.lock);
    }
    pthread_mutex_unlock(&S.lock);
    Py_END_ALLOW_THREADS
}

/*
 * Hands the batch being filled to the writer and goes on with a free one;
 * waits for one only when the writer is behind by every batch, and then
 * without the GIL. `t` is the thread that filled it, whose time this is: a
 * `flush` record; NULL for the writer's own hand-over of a quiet program's
 * batch. With the GIL.
 */
static void terminate_now(void);

static void
hand_over(Thread *t)
{
    if (UNLIKELY(child_unsettled)) {
        /* A forked child before its own stream: what it recorded so far is
           before its hello, and goes nowhere (after_fork_child starts anew). */
        begin_batch(S.batch);
        return;
    }
    if (UNLIKELY(terminate_signal) && t != NULL && !S.finished) {
        terminate_now(); /* a program's thread, with the GIL: not the writer */
    }
    uint64_t start = clock_now();
    if (S.waiting_for_batch) {
        /* Another thread handed the batch over and waits for a free one. */
        wait_for_batch_elsewhere();
        return;
    }
    Batch *full = close_batch();
    uint32_t count = full->events;
    Batch *next;
    int waited = 0;
    if (!S.writing && !S.finished && S.started && !in_fork_wrapper) {
        start_writer(); /* stopped for a fork */
    }
    pthread_mutex_lock(&S.lock);
    if (!S.writing) {
        /* No writer (it never started, or it has stopped): the batch goes
           out from here, as at the end. */
        pthread_mutex_unlock(&S.lock);
        if (S.fd >= 0 && !S.broken && send_batch(full) < 0) {
            S.broken = errno;
        }
        if (S.broken) {
            S.dropped += count;
        } else {
            S.sent += count;
        }
        next = full;
    } else {
        enqueue(full);
        pthread_cond_signal(&S.wake);
        next = take_free_batch();
        pthread_mutex_unlock(&S.lock);
        if (next == NULL) {
            /* The writer is MAX_BATCHES behind. S.pos and S.end still say
               "full", so that any other thread's event comes to
               wait_for_batch_elsewhere. */
            S.waiting_for_batch = 1;
            Py_BEGIN_ALLOW_THREADS
            pthread_mutex_lock(&S.lock);
            while ((next = take_free_batch()) == NULL) {
                pthread_cond_wait(&S.freed, &S.lock);
            }
            pthread_mutex_unlock(&S.lock);
            Py_END_ALLOW_THREADS
            waited = 1;
        }
    }
    begin_batch(next);
    if (waited) {
        pthread_mutex_lock(&S.lock);
        S.waiting_for_batch = 0;
        pthread_cond_broadcast(&S.freed);
        pthread_mutex_unlock(&S.lock);
    }
    S.handed_at = clock_now();
    if (S.broken) {
        notice_broken();
        return;
    }
    if (t != NULL && count) {
        text_printf(RECORDS,
                    "{\"kind\":\"flush\",\"thread\":%llu,\"start\":%llu,\"end\":%llu,\"events\":%u}\n",
                    (unsigned long long)t->serial, (unsigned long long)start,
                    (unsigned long long)S.handed_at, count);
    }
    /* Into the new batch: what these find is marked there. */
    if (S.engine == ENGINE_MONITORING) {
        check_tool("while recording");
    }
    name_threads();
}

/* A program that has gone quiet (asleep, blocked, waiting for input) with
   events in its batch: they go out now, from the writer thread, which takes
   the GIL for the hand-over only. */
static void
idle_flush(void)
{
    PyGILState_STATE gil = PyGILState_Ensure();
    /* Never to wait for a batch: this is the thread that frees them. */
    pthread_mutex_lock(&S.lock);
    int room = !S.waiting_for_batch && (S.free_batches != NULL || S.batches_made < MAX_BATCHES);
    pthread_mutex_unlock(&S.lock);
    if (room && S.active && !S.finished && S.batch != NULL &&
        (S.batch_events || S.batch->records.len)) {
        hand_over(NULL);
    }
    PyGILState_Release(gil);
}

/*
 * SIGTERM and SIGHUP, when the program leaves them to their default action
 * (the process ends at once): a process ended so, a multiprocessing worker
 * at Pool.terminate() above all, would lose the events of its batch, its
 * last work. Our handler only notes the signal; the writer notices within
 * IDLE_FLUSH_NS / 2 and starts `terminator`, which finishes the stream (an
 * `end` with the signal's name as its reason) and then ends the process by
 * the same signal, with its default action, so that its status is what it
 * would be. A watchdog ends it anyway after TERMINATE_WITHIN_NS, should the
 * GIL not come. The program still sees SIG_DFL (signal.getsignal reads the
 * table Python filled at start-up), and a handler it installs replaces ours.
 */
#define TERMINATE_WITHIN_NS 500000000ull
#define FINISH_WITHIN_NS 10000000000ull

static void
die_by(int signo)
{
    signal(signo, SIG_DFL);
    kill(getpid(), signo);
}

static void
on_terminate_signal(int signo)
{
    if (finishing) {
        /* The stream is ending (os._exit, the interpreter's exit): finish
           ends the process by the signal once the end record is out. A
           worker that exits as Pool.terminate() ends it lost its end. */
        terminate_signal = signo;
        return;
    }
    if (!S.writing) {
        die_by(signo); /* no writer to notice: as without us */
        return;
    }
    terminate_signal = signo;
    /* The next event of a running thread ends the process in hand_over,
       before the program runs another call: "full" sends it there. */
    S.end = S.pos;
}

static void
catch_terminate_signals(void)
{
    static const int signals[] = {SIGTERM, SIGHUP};
    for (size_t i = 0; i < sizeof signals / sizeof signals[0]; i++) {
        struct sigaction now;
        if (sigaction(signals[i], NULL, &now) == 0 && !(now.sa_flags & SA_SIGINFO) &&
            now.sa_handler == SIG_DFL) {
            struct sigaction ours;
            memset(&ours, 0, sizeof ours);
            ours.sa_handler = on_terminate_signal;
            ours.sa_flags = SA_RESTART; /* the program's blocking calls go on */
            sigemptyset(&ours.sa_mask);
            sigaction(signals[i], &ours, NULL);
        }
    }
}

/* Ends the process if the GIL has not come within TERMINATE_WITHIN_NS, or
   the stream is not finished within FINISH_WITHIN_NS (a converter that
   reads no more): the signal must end the process whatever happens. */
static void *
terminate_watchdog(void *arg)
{
    struct timespec step = {0, 50000000L};
    for (uint64_t waited = 0; waited < FINISH_WITHIN_NS; waited += 50000000ull) {
        if (waited >= TERMINATE_WITHIN_NS && !S.finished) {
            break; /* no thread of the program's let the GIL go */
        }
        nanosleep(&step, NULL);
    }
    die_by((int)(intptr_t)arg);
    return NULL;
}

static void finish(const char *reason);

/* With the GIL: the stream's end, then the process's. */
static void
terminate_now(void)
{
    int signo = terminate_signal;
    if (S.finished) {
        /* Another thread is finishing the stream (it lets the GIL go while
           the writer sends the rest): it ends the process when it is done
           (see finish), and this thread runs nothing of the program's more. */
        Py_BEGIN_ALLOW_THREADS
        for (;;) {
            struct timespec step = {1, 0};
            nanosleep(&step, NULL);
        }
        Py_END_ALLOW_THREADS
    }
    finish(signo == SIGHUP ? "SIGHUP" : "SIGTERM");
    die_by(signo);
}

/* For a program whose threads record nothing (asleep, blocked, or running
   code that calls nothing): takes the GIL to end the stream. */
static void *
terminator(void *arg)
{
    pthread_t watchdog;
    if (pthread_create(&watchdog, NULL, terminate_watchdog, arg) != 0) {
        die_by((int)(intptr_t)arg);
    }
    PyGILState_Ensure();
    terminate_now();
    return NULL;
}

/* In the writer, with the lock: a noted signal starts the terminator. */
static void
notice_terminate_signal(void)
{
    int signo = terminate_signal;
    if (signo == 0 || terminating) {
        return;
    }
    terminating = 1;
    pthread_t thread;
    pthread_attr_t attributes;
    pthread_attr_init(&attributes);
    pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&thread, &attributes, terminator, (void *)(intptr_t)signo) != 0) {
        die_by(signo);
    }
    pthread_attr_destroy(&attributes);
}

static void *
writer_main(void *unused)
{
    (void)unused;
    pthread_mutex_lock(&S.lock);
    for (;;) {
        while (S.queue_head == NULL && !S.stopping) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += (long)(IDLE_FLUSH_NS / 2);
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec += 1;
                until.tv_nsec -= 1000000000L;
            }
            int waited = pthread_cond_timedwait(&S.wake, &S.lock, &until);
            notice_terminate_signal();
            pthread_mutex_unlock(&S.lock);
            cpu_sample_maybe();
            pthread_mutex_lock(&S.lock);
            /* Racy reads, on purpose: a hint to take the GIL, which decides. */
            if (waited == ETIMEDOUT && S.queue_head == NULL && !S.stopping &&
                (S.batch_events || (S.batch && S.batch->records.len)) &&
                clock_now() - S.handed_at >= IDLE_FLUSH_NS) {
                pthread_mutex_unlock(&S.lock);
                idle_flush();
                pthread_mutex_lock(&S.lock);
            }
        }
        Batch *batch = S.queue_head;
        if (batch == NULL) {
            break; /* stopping, and nothing left */
        }
        S.queue_head = batch->next;
        if (S.queue_head == NULL) {
            S.queue_tail = NULL;
        }
        int broken = S.broken;
        pthread_mutex_unlock(&S.lock);
        int error = 0;
        if (!broken && S.fd >= 0 && send_batch(batch) < 0) {
            error = errno;
            warn("the trace channel closed (%s): recording stopped", strerror(error));
        }
        if (!error) {
            cpu_sample_maybe();
        }
        pthread_mutex_lock(&S.lock);
        if (error) {
            S.broken = error;
        }
        if (S.broken) {
            S.dropped += batch->events;
        } else {
            S.sent += batch->events;
            S.batches++;
        }
        batch->next = S.free_batches;
        S.free_batches = batch;
        /* Both kinds of waiter: for a batch, and for the one who waits. */
        pthread_cond_broadcast(&S.freed);
    }
    pthread_mutex_unlock(&S.lock);
    return NULL;
}

/* The first batch to fill; the others are made as they are needed. */
static int
make_batches(void)
{
    Batch *batch = calloc(1, sizeof *batch);
    if (batch == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    S.batches_made = 1;
    begin_batch(batch);
    pthread_mutex_init(&S.lock, NULL);
    pthread_cond_init(&S.wake, NULL);
    pthread_cond_init(&S.freed, NULL);
    return 0;
}

/* The writer thread, which takes no signal of the program's. */
static void
start_writer(void)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int r = pthread_create(&S.writer, NULL, writer_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    /* Without a writer the batches go out from the program's thread. */
    S.writing = r == 0;
}

/* Sends every batch still queued and stops the writer. With the GIL, which
   it lets go meanwhile: the writer may be waiting for it. */
static void
stop_writer(void)
{
    pthread_mutex_lock(&S.lock);
    int running = S.writing;
    S.stopping = 1;
    pthread_cond_signal(&S.wake);
    pthread_mutex_unlock(&S.lock);
    if (running) {
        Py_BEGIN_ALLOW_THREADS
        pthread_join(S.writer, NULL);
        Py_END_ALLOW_THREADS
        S.writing = 0;
    }
}

static void
warn(const char *format, ...)
{
    char message[1024];
    va_list args;
    va_start(args, format);
    vsnprintf(message, sizeof message, format, args);
    va_end(args);
    /* Straight to the descriptor: sys.stderr.write would be Python code. */
    char line[1100];
    int n = snprintf(line, sizeof line, "panopticon: warning: %s\n", message);
    if (n > 0) {
        ssize_t ignored = write(2, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
        (void)ignored;
    }
}

/* ------------------------------------------------------------------------ */
/* The runtime: garbage collection and CPU time (issue 14)                  */
/* ------------------------------------------------------------------------ */

/*
 * docs/protocol.md, "The runtime".
 *
 * - Garbage collection: a C function of ours appended to gc.callbacks (the
 *   one trace a program can see: the list is public). At a collection's
 *   start it takes the time; at its stop a `gc` record goes into the batch's
 *   records. gc calls it straight from C, so no engine sees the call, and it
 *   runs no Python code.
 * - CPU time: each thread's CPU clock (pthread_getcpuclockid, taken on the
 *   thread when it is first seen) goes into a table of our own; the writer
 *   thread reads every clock in it every CPU_SAMPLE_NS, without the GIL, and
 *   sends a `cpu` record between two batches (it is the one that writes to
 *   the channel). A clock that fails is a thread that has ended.
 */

#define CPU_SAMPLE_NS 10000000ull

typedef struct {
    uint64_t serial;
    clockid_t clock;
} CpuClock;

static struct {
    int gc;                  /* gc.callbacks holds our callback */
    int cpu;                 /* --no-cpu-counters not given */
    PyObject *gc_callbacks;  /* gc.callbacks */
    PyObject *gc_callback;   /* ours, in it */
    uint64_t gc_started;     /* when the collection in progress began; 0: none */
    pthread_mutex_t lock;    /* the clocks, shared with the writer */
    CpuClock *clocks;
    size_t clock_count, clock_slots;
    uint64_t sampled_at;     /* the writer's last sample (CLOCK_MONOTONIC) */
    Text sample;             /* the writer's record, reused */
} R = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* On a thread first seen: its CPU clock joins the table. */
static void
cpu_thread_started(Thread *t)
{
    clockid_t clock;
    if (!R.cpu || pthread_getcpuclockid(pthread_self(), &clock) != 0) {
        return;
    }
    pthread_mutex_lock(&R.lock);
    if (R.clock_count == R.clock_slots) {
        size_t slots = R.clock_slots ? R.clock_slots * 2 : 16;
        CpuClock *clocks = realloc(R.clocks, slots * sizeof *clocks);
        if (clocks == NULL) {
            pthread_mutex_unlock(&R.lock);
            return;
        }
        R.clocks = clocks;
        R.clock_slots = slots;
    }
    R.clocks[R.clock_count].serial = t->serial;
    R.clocks[R.clock_count].clock = clock;
    R.clock_count++;
    pthread_mutex_unlock(&R.lock);
}

/* A `cpu` record of every thread in the table into `out`, at `now`; the
   threads whose clock is gone leave the table. No GIL needed. */
static void
cpu_sample_into(Text *out, uint64_t now)
{
    pthread_mutex_lock(&R.lock);
    size_t kept = 0;
    int first = 1;
    for (size_t i = 0; i < R.clock_count; i++) {
        struct timespec ts;
        if (clock_gettime(R.clocks[i].clock, &ts) != 0) {
            continue; /* the thread has ended */
        }
        R.clocks[kept++] = R.clocks[i];
        if (first) {
            text_printf(out, "{\"kind\":\"cpu\",\"ts\":%llu,\"threads\":[", (unsigned long long)now);
        }
        text_printf(out, "%s[%llu,%llu]", first ? "" : ",", (unsigned long long)R.clocks[i].serial,
                    (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec);
        first = 0;
    }
    R.clock_count = kept;
    pthread_mutex_unlock(&R.lock);
    if (!first) {
        text_puts(out, "]}\n");
    }
}

/* The writer thread, between batches: a sample every CPU_SAMPLE_NS, sent at
   once. Its time is CLOCK_MONOTONIC, which the TSC clock is calibrated to
   (the TSC's anchors belong to the threads with the GIL). */
static void
cpu_sample_maybe(void)
{
    if (!R.cpu || S.broken || S.fd < 0) {
        return;
    }
    uint64_t now = monotonic_ns();
    if (now - R.sampled_at < CPU_SAMPLE_NS) {
        return;
    }
    R.sampled_at = now;
    R.sample.len = 0;
    cpu_sample_into(&R.sample, now);
    if (R.sample.len) {
        struct iovec iov = {R.sample.data, R.sample.len};
        /* A failure is the channel's: the next batch finds it, and says so. */
        (void)write_all(&iov, 1);
    }
}

static PyObject *
native_gc_callback(PyObject *unused, PyObject *args)
{
    (void)unused;
    PyObject *phase, *info;
    if (!PyArg_ParseTuple(args, "OO", &phase, &info)) {
        return NULL;
    }
    if (!PyUnicode_Check(phase) || !PyDict_Check(info)) {
        Py_RETURN_NONE;
    }
    if (PyUnicode_CompareWithASCIIString(phase, "start") == 0) {
        R.gc_started = clock_now();
        Py_RETURN_NONE;
    }
    uint64_t start = R.gc_started;
    R.gc_started = 0;
    /* Not while a thread waits for a free batch: the one being filled is
       then the writer's. */
    /* Nor before the program's <module>, when nothing is recorded yet. */
    if (start == 0 || !S.active || S.waiting || S.finished || S.batch == NULL ||
        S.waiting_for_batch) {
        Py_RETURN_NONE;
    }
    uint64_t end = clock_now();
    long long numbers[3] = {0, 0, 0};
    static const char *keys[3] = {"generation", "collected", "uncollectable"};
    for (int i = 0; i < 3; i++) {
        PyObject *value = PyDict_GetItemString(info, keys[i]);
        if (value != NULL && PyLong_Check(value)) {
            numbers[i] = PyLong_AsLongLong(value);
        }
    }
    PyErr_Clear();
    Thread *t = current_thread();
    if (t == NULL) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    text_printf(RECORDS,
                "{\"kind\":\"gc\",\"thread\":%llu,\"start\":%llu,\"end\":%llu,\"generation\":%lld,"
                "\"collected\":%lld,\"uncollectable\":%lld}\n",
                (unsigned long long)t->serial, (unsigned long long)start,
                (unsigned long long)end, numbers[0], numbers[1], numbers[2]);
    Py_RETURN_NONE;
}

static PyMethodDef gc_callback_def = {"panopticon_gc", native_gc_callback, METH_VARARGS,
                                      "Panopticon's record of each garbage collection."};

/*
 * runtime(gc_callbacks, cpu_counters, tasks=True, thread_time=False): before
 * start(). `gc_callbacks` is gc.callbacks, which gets our callback, or None
 * for no gc records; `tasks`: asyncio tasks (see "asyncio tasks");
 * `thread_time`: --cpu-time, each event of ops 0 to 7 with its thread's CPU
 * time (the hello said so).
 */
static void tasks_configure(int on);

static PyObject *
native_runtime(PyObject *module, PyObject *args)
{
    (void)module;
    PyObject *callbacks;
    int cpu = 1, tasks = 1, thread_time = 0;
    if (!PyArg_ParseTuple(args, "Op|pp", &callbacks, &cpu, &tasks, &thread_time)) {
        return NULL;
    }
    R.cpu = cpu;
    S.thread_time = thread_time;
    tasks_configure(tasks);
    if (cpu && main_thread != NULL) {
        cpu_thread_started(main_thread); /* configure() made it, on this thread */
    }
    if (callbacks != Py_None && !R.gc) {
        if (!PyList_Check(callbacks)) {
            PyErr_SetString(PyExc_TypeError, "runtime(): expected gc.callbacks, a list");
            return NULL;
        }
        PyObject *callback = PyCFunction_NewEx(&gc_callback_def, NULL, NULL);
        if (callback == NULL || PyList_Append(callbacks, callback) < 0) {
            Py_XDECREF(callback);
            return NULL;
        }
        Py_INCREF(callbacks);
        R.gc_callbacks = callbacks;
        R.gc_callback = callback;
        R.gc = 1;
    }
    Py_RETURN_NONE;
}

/* In a forked child: only the forking thread goes on, under a thread id of
   its own, and the table's lock may have been held at the fork. */
static void
runtime_after_fork_child(void)
{
    pthread_mutex_init(&R.lock, NULL);
    R.clock_count = 0;
    R.sampled_at = 0;
    R.gc_started = 0;
    PyThreadState *ts = unchecked_tstate();
    Thread *t = ts != NULL ? thread_table_get(ts->id) : NULL;
    if (t != NULL) {
        cpu_thread_started(t);
    }
}

/* At the end: the last sample goes before the `end` record, and our callback
   leaves gc.callbacks (found by identity: list.remove would compare with ==,
   which may be Python code). With the GIL, after the writer has stopped. */
static void
runtime_finish(void)
{
    if (R.cpu && S.batch != NULL) {
        cpu_sample_into(RECORDS, monotonic_ns());
    }
    if (R.gc) {
        R.gc = 0;
        PyObject *list = R.gc_callbacks;
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(list); i++) {
            if (PyList_GET_ITEM(list, i) == R.gc_callback) {
                if (PyList_SetSlice(list, i, i + 1, NULL) < 0) {
                    PyErr_Clear();
                }
                break;
            }
        }
        Py_CLEAR(R.gc_callbacks);
        Py_CLEAR(R.gc_callback);
    }
}

/* ------------------------------------------------------------------------ */
/* asyncio tasks (issue 14)                                                 */
/* ------------------------------------------------------------------------ */

/*
 * docs/protocol.md, "asyncio tasks". Without changing the program (no task
 * factory, no debug mode, no done callback), from what the engines already
 * see:
 *
 * - A task is created: the monitoring engine's CALL event for the
 *   _asyncio.Task type, whose first argument is the coroutine. An instant
 *   of the task's "created" mark goes on the timeline there, and the
 *   coroutine's address waits for the task's first step. (The profile
 *   engine sees no call of a type: there the task has no creation.)
 * - A task's first step: the first start of a coroutine frame while
 *   _asyncio._current_tasks holds a task of the running loop that was not
 *   seen before. That frame is the task's coroutine: an instant of the
 *   task's mark (its name, from get_name()) follows the frame's call
 *   event. Read only at a coroutine frame's first start, never per event.
 * - Its end: that frame's return or unwind; an unwind with CancelledError
 *   (monitoring engine: PY_UNWIND passes the exception) is preceded by an
 *   instant of the "cancelled" mark.
 *
 * No task is kept alive: tasks and coroutines are known by address only,
 * and forgotten when their coroutine frame ends.
 */

/* A map of 64-bit keys (addresses, never 0) to 64-bit values: open
   addressing, tombstones, a quarter full at most. */
typedef struct {
    uint64_t *keys;
    uint64_t *values;
    size_t slots, used, live;
} U64Map;

#define MAP_TOMBSTONE UINT64_MAX

static uint64_t *
map_find(U64Map *m, uint64_t key)
{
    if (m->slots == 0) {
        return NULL;
    }
    size_t j = hash_u64(key) & (m->slots - 1);
    for (;;) {
        if (m->keys[j] == 0) {
            return NULL;
        }
        if (m->keys[j] == key) {
            return &m->values[j];
        }
        j = (j + 1) & (m->slots - 1);
    }
}

static void
map_remove(U64Map *m, uint64_t key)
{
    uint64_t *value = map_find(m, key);
    if (value != NULL) {
        m->keys[value - m->values] = MAP_TOMBSTONE;
        m->live--;
    }
}

static int
map_put(U64Map *m, uint64_t key, uint64_t value)
{
    uint64_t *old = map_find(m, key);
    if (old != NULL) {
        *old = value;
        return 0;
    }
    if ((m->used + 1) * 4 > m->slots) {
        size_t slots = 64;
        while ((m->live + 1) * 4 > slots) {
            slots *= 2;
        }
        uint64_t *keys = calloc(slots, sizeof *keys);
        uint64_t *values = calloc(slots, sizeof *values);
        if (keys == NULL || values == NULL) {
            free(keys);
            free(values);
            return -1;
        }
        for (size_t i = 0; i < m->slots; i++) {
            if (m->keys[i] != 0 && m->keys[i] != MAP_TOMBSTONE) {
                size_t j = hash_u64(m->keys[i]) & (slots - 1);
                while (keys[j] != 0) {
                    j = (j + 1) & (slots - 1);
                }
                keys[j] = m->keys[i];
                values[j] = m->values[i];
            }
        }
        free(m->keys);
        free(m->values);
        m->keys = keys;
        m->values = values;
        m->slots = slots;
        m->used = m->live;
    }
    size_t j = hash_u64(key) & (m->slots - 1);
    while (m->keys[j] != 0 && m->keys[j] != MAP_TOMBSTONE) {
        j = (j + 1) & (m->slots - 1);
    }
    if (m->keys[j] == 0) {
        m->used++;
    }
    m->keys[j] = key;
    m->values[j] = value;
    m->live++;
    return 0;
}

static struct {
    int on;                     /* --no-tasks not given */
    PyObject *current_tasks;    /* _asyncio._current_tasks: {loop: task} */
    PyObject *get_running_loop; /* _asyncio._get_running_loop */
    PyTypeObject *task_type;    /* _asyncio.Task */
    PyObject *cancelled_error;  /* asyncio.exceptions.CancelledError */
    uint64_t count;             /* tasks numbered so far */
    uint32_t cancelled_mark;
    U64Map tasks;               /* task address -> its number, while its coroutine runs */
    U64Map tops;                /* the coroutine frame of each -> the task's address */
    U64Map pending;             /* coroutine address -> the number of its task, created */
    PyTypeObject *future_type;  /* _asyncio.Future */
    PyTypeObject *gathering;    /* asyncio.tasks._GatheringFuture, or NULL */
    PyObject *set_result;       /* Future.set_result, Future.set_exception (descriptors) */
    PyObject *set_exception;
} A;

/* _asyncio's pieces, once the program has imported it (never imported here). */
static int
asyncio_found(void)
{
    if (A.current_tasks != NULL) {
        return 1;
    }
    PyObject *modules = PySys_GetObject("modules");
    PyObject *module = modules ? PyDict_GetItemString(modules, "_asyncio") : NULL;
    if (module == NULL || !PyModule_Check(module)) {
        return 0;
    }
    PyObject *dict = PyModule_GetDict(module);
    PyObject *current = PyDict_GetItemString(dict, "_current_tasks");
    PyObject *running = PyDict_GetItemString(dict, "_get_running_loop");
    PyObject *type = PyDict_GetItemString(dict, "Task");
    if (current == NULL || !PyDict_Check(current) || running == NULL || type == NULL ||
        !PyType_Check(type)) {
        return 0;
    }
    Py_INCREF(current);
    Py_INCREF(running);
    Py_INCREF(type);
    A.current_tasks = current;
    A.get_running_loop = running;
    A.task_type = (PyTypeObject *)type;
    PyObject *exceptions = PyDict_GetItemString(modules, "asyncio.exceptions");
    PyObject *error = exceptions && PyModule_Check(exceptions)
                          ? PyDict_GetItemString(PyModule_GetDict(exceptions), "CancelledError")
                          : NULL;
    if (error != NULL && PyExceptionClass_Check(error)) {
        Py_INCREF(error);
        A.cancelled_error = error;
    }
    PyObject *future = PyDict_GetItemString(dict, "Future");
    if (future != NULL && PyType_Check(future)) {
        PyObject *members = ((PyTypeObject *)future)->tp_dict;
        PyObject *set_result = members ? PyDict_GetItemString(members, "set_result") : NULL;
        PyObject *set_exception = members ? PyDict_GetItemString(members, "set_exception") : NULL;
        PyObject *tasks = PyDict_GetItemString(modules, "asyncio.tasks");
        PyObject *gathering = tasks && PyModule_Check(tasks)
                                  ? PyDict_GetItemString(PyModule_GetDict(tasks), "_GatheringFuture")
                                  : NULL;
        if (set_result != NULL && set_exception != NULL) {
            Py_INCREF(future);
            Py_INCREF(set_result);
            Py_INCREF(set_exception);
            A.future_type = (PyTypeObject *)future;
            A.set_result = set_result;
            A.set_exception = set_exception;
            if (gathering != NULL && PyType_Check(gathering) &&
                PyType_IsSubtype((PyTypeObject *)gathering, A.future_type)) {
                Py_INCREF(gathering);
                A.gathering = (PyTypeObject *)gathering;
            }
        }
    }
    return 1;
}

/* An instant of a mark of ours: the record now, the event in the batch. */
static void
task_instant(Thread *t, uint32_t mark)
{
    emit_ref_event(t, OP_INSTANT, mark);
}

static uint32_t
task_mark(const char *name, const char *category, uint64_t task)
{
    uint32_t id = ++S.mark_count;
    text_printf(RECORDS, "{\"kind\":\"mark\",\"id\":%u,\"name\":\"%s\",\"category\":\"%s\",", id,
                name, category);
    if (task) {
        text_printf(RECORDS, "\"args\":{\"task\":%llu}}\n", (unsigned long long)task);
    } else {
        text_puts(RECORDS, "\"args\":{}}\n");
    }
    return id;
}

#if PY_3_12
/* The monitoring engine's CALL of a type: _asyncio.Task(coro, ...) makes a task. */
static void
task_created(Thread *t, PyObject *callable, PyObject *coro)
{
    if (A.task_type == NULL) {
        /* Before the first coroutine ran: _asyncio is known by the name of its type. */
        if (strcmp(((PyTypeObject *)callable)->tp_name, "_asyncio.Task") != 0 || !asyncio_found()) {
            return;
        }
    }
    if ((PyTypeObject *)callable != A.task_type || coro == NULL || !PyCoro_CheckExact(coro) ||
        PyErr_Occurred()) {
        return;
    }
    uint64_t number = ++A.count;
    if (map_put(&A.pending, (uintptr_t)coro, number) < 0) {
        return;
    }
    task_instant(t, task_mark("task created", "asyncio.created", number));
}
#endif

/* A coroutine frame's first start: the first step of a task not seen yet? */
static void
task_started(Thread *t, uintptr_t frame)
{
    /* Never over an exception being raised: the calls below would lose it. */
    if (!A.on || PyErr_Occurred() || !asyncio_found()) {
        return;
    }
    int paused = t->paused;
    t->paused = 1; /* a subclass's get_name() may be Python code */
    PyObject *loop = PyObject_CallObject(A.get_running_loop, NULL);
    PyObject *task = NULL;
    if (loop != NULL && loop != Py_None) {
        /* By identity: a loop's own __eq__ or __hash__ is never called. */
        Py_ssize_t pos = 0;
        PyObject *key, *value;
        while (PyDict_Next(A.current_tasks, &pos, &key, &value)) {
            if (key == loop) {
                task = value;
                break;
            }
        }
    }
    Py_XDECREF(loop);
    PyErr_Clear();
    if (task == NULL || map_find(&A.tasks, (uintptr_t)task) != NULL) {
        t->paused = paused;
        return; /* not in a task, or a coroutine its coroutine awaits */
    }
    Py_INCREF(task);
    uint64_t number = 0;
    PyObject *coro = PyObject_CallMethod(task, "get_coro", NULL);
    if (coro != NULL) {
        uint64_t *created = map_find(&A.pending, (uintptr_t)coro);
        if (created != NULL) {
            number = *created;
            map_remove(&A.pending, (uintptr_t)coro);
        }
        Py_DECREF(coro);
    }
    if (number == 0) {
        number = ++A.count; /* created unseen: a factory of the program's, or setprofile */
    }
    PyObject *name = PyObject_CallMethod(task, "get_name", NULL);
    PyErr_Clear();
    t->paused = paused;
    uint32_t id = ++S.mark_count;
    text_printf(RECORDS, "{\"kind\":\"mark\",\"id\":%u,\"name\":", id);
    if (name != NULL && PyUnicode_Check(name)) {
        text_json_str(RECORDS, name);
    } else {
        text_printf(RECORDS, "\"Task %llu\"", (unsigned long long)number);
    }
    text_printf(RECORDS, ",\"category\":\"asyncio.task\",\"args\":{\"task\":%llu}}\n",
                (unsigned long long)number);
    Py_XDECREF(name);
    if (map_put(&A.tasks, (uintptr_t)task, number) == 0 &&
        map_put(&A.tops, frame, (uintptr_t)task) < 0) {
        map_remove(&A.tasks, (uintptr_t)task);
    }
    Py_DECREF(task);
    task_instant(t, id);
}

/* A coroutine frame ends: a task's own? `exception` is the one it unwinds
   with (monitoring engine), else NULL. Before the frame's end event. */
static void
task_ended(Thread *t, uintptr_t frame, PyObject *exception)
{
    uint64_t *task = map_find(&A.tops, frame);
    if (task == NULL) {
        return;
    }
    map_remove(&A.tasks, *task);
    map_remove(&A.tops, frame);
    if (exception != NULL && A.cancelled_error != NULL &&
        PyObject_TypeCheck(exception, (PyTypeObject *)A.cancelled_error)) {
        if (A.cancelled_mark == 0) {
            A.cancelled_mark = task_mark("task cancelled", "asyncio.cancelled", 0);
        }
        task_instant(t, A.cancelled_mark);
    }
}

/*
 * Awaiting (monitoring engine only): a task's coroutine frame that yields a
 * future (what Future.__await__ yields; a Task is a future) awaits it, and
 * a future completes where Future.set_result or set_exception is called on
 * it, or, a task, where its coroutine ends: extended ops 20 and 21, keyed
 * by the future's address. Nothing is kept.
 */
#define EXT_AWAIT 20
#define EXT_DONE 21
static void emit_ext_event(Thread *t, int op, uint64_t ref, uintptr_t key);

#if PY_3_12
/* The monitoring engine's, which alone sees the awaits (3.12+). */

/* "_children", interned once (a _GatheringFuture's list of what it gathers). */
static PyObject *
children_name(void)
{
    static PyObject *name = NULL;
    if (name == NULL) {
        name = PyUnicode_InternFromString("_children");
    }
    return name;
}

/* PY_YIELD of `frame` with `value`, while some task runs. */
static void
task_awaits(Thread *t, uintptr_t frame, PyObject *value)
{
    if (A.future_type == NULL || value == NULL || !PyObject_TypeCheck(value, A.future_type) ||
        map_find(&A.tops, frame) == NULL) {
        return;
    }
    if (A.gathering == NULL || Py_TYPE(value) != A.gathering) {
        emit_ext_event(t, EXT_AWAIT, 0, (uintptr_t)value);
        return;
    }
    /* gather(): the children it waits for. */
    PyObject *children = PyObject_GenericGetAttr(value, children_name());
    if (children == NULL) {
        PyErr_Clear();
        return;
    }
    if (PyList_Check(children)) {
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(children); i++) {
            PyObject *child = PyList_GET_ITEM(children, i);
            if (PyObject_TypeCheck(child, A.future_type)) {
                emit_ext_event(t, EXT_AWAIT, 0, (uintptr_t)child);
            }
        }
    }
    Py_DECREF(children);
}

/* A task's coroutine frame ends (monitoring engine): the task completes. */
static void
task_done(Thread *t, uintptr_t frame)
{
    uint64_t *task = map_find(&A.tops, frame);
    if (task != NULL) {
        emit_ext_event(t, EXT_DONE, 0, (uintptr_t)*task);
    }
}

/* The monitoring engine's CALL of a C function: Future.set_result(future, …)? */
static void
future_completed(Thread *t, PyObject *callable, PyObject *future)
{
    if ((callable == A.set_result || callable == A.set_exception) && future != NULL &&
        PyObject_TypeCheck(future, A.future_type)) {
        emit_ext_event(t, EXT_DONE, 0, (uintptr_t)future);
    }
}
#endif

static void
tasks_configure(int on)
{
    A.on = on;
}

/* In a forked child: the parent's marks are not in the child's stream. */
static void
tasks_after_fork_child(void)
{
    A.cancelled_mark = 0;
}

/* ------------------------------------------------------------------------ */
/* Glob patterns, as Python's fnmatch.fnmatchcase reads them                */
/* ------------------------------------------------------------------------ */

/*
 * `*` any run of characters (`/` included), `?` one character, `[...]` a
 * set (`[!...]` its complement, `a-z` a range, a `]` first is literal, and
 * an unclosed `[` is a literal `[`). On code points, as Python matches str.
 * collector.py has the same matcher in Python (tests check both against
 * fnmatch.fnmatchcase).
 */
static int
glob_set(const Py_UCS4 *p, Py_ssize_t pn, Py_ssize_t *i, Py_UCS4 c, int *matched)
{
    Py_ssize_t j = *i + 1;
    int negate = 0;
    if (j < pn && p[j] == '!') {
        negate = 1;
        j++;
    }
    Py_ssize_t first = j;
    int found = 0;
    while (j < pn && (p[j] != ']' || j == first)) {
        if (j + 2 < pn && p[j + 1] == '-' && p[j + 2] != ']') {
            if (p[j] <= c && c <= p[j + 2]) {
                found = 1;
            }
            j += 3;
        } else {
            if (p[j] == c) {
                found = 1;
            }
            j++;
        }
    }
    if (j >= pn) {
        return 0; /* no closing ]: the [ is a literal */
    }
    *i = j;
    *matched = found != negate;
    return 1;
}

static int
glob_match(const Py_UCS4 *p, Py_ssize_t pn, const Py_UCS4 *s, Py_ssize_t sn)
{
    Py_ssize_t pi = 0, si = 0, star = -1, mark = 0;
    while (si < sn) {
        if (pi < pn && p[pi] == '*') {
            star = pi++;
            mark = si;
            continue;
        }
        if (pi < pn) {
            int ok;
            Py_ssize_t next = pi;
            if (p[pi] == '?') {
                ok = 1;
            } else if (p[pi] == '[' && glob_set(p, pn, &next, s[si], &ok)) {
                /* `next` is at the closing ] */
            } else {
                ok = p[pi] == s[si];
            }
            if (ok) {
                pi = next + 1;
                si++;
                continue;
            }
        }
        if (star < 0) {
            return 0;
        }
        pi = star + 1;
        si = ++mark;
    }
    while (pi < pn && p[pi] == '*') {
        pi++;
    }
    return pi == pn;
}

static int
glob_matches(PyObject *pattern, PyObject *value)
{
    Py_UCS4 *p = PyUnicode_AsUCS4Copy(pattern);
    Py_UCS4 *s = PyUnicode_AsUCS4Copy(value);
    int result = 0;
    if (p != NULL && s != NULL) {
        result = glob_match(p, PyUnicode_GET_LENGTH(pattern), s, PyUnicode_GET_LENGTH(value));
    } else {
        PyErr_Clear();
    }
    PyMem_Free(p);
    PyMem_Free(s);
    return result;
}

/* Whether one of `patterns`, a list of (kind, glob), matches. */
static int
patterns_match(PyObject *patterns, PyObject *module, PyObject *qualname, PyObject *file)
{
    Py_ssize_t n = PyList_GET_SIZE(patterns);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(patterns, i);
        PyObject *kind = PyTuple_GET_ITEM(item, 0);
        PyObject *glob = PyTuple_GET_ITEM(item, 1);
        PyObject *value = PyUnicode_CompareWithASCIIString(kind, "module") == 0 ? module
                          : PyUnicode_CompareWithASCIIString(kind, "file") == 0 ? file
                                                                                 : qualname;
        if (glob_matches(glob, value)) {
            return 1;
        }
    }
    return 0;
}

/* The --exclude-stdlib test, on the code's file name. */
static int
in_stdlib(PyObject *file)
{
    static PyObject *frozen = NULL, *site = NULL, *dist = NULL;
    if (frozen == NULL) {
        frozen = PyUnicode_FromString("<frozen");
        site = PyUnicode_FromString("site-packages");
        dist = PyUnicode_FromString("dist-packages");
        if (frozen == NULL || site == NULL || dist == NULL) {
            PyErr_Clear();
            return 0;
        }
    }
    if (PyUnicode_Tailmatch(file, frozen, 0, PY_SSIZE_T_MAX, -1) == 1) {
        return 1; /* the import machinery */
    }
    if (PyUnicode_Find(file, site, 0, PY_SSIZE_T_MAX, 1) >= 0 ||
        PyUnicode_Find(file, dist, 0, PY_SSIZE_T_MAX, 1) >= 0) {
        return 0;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(S.stdlib);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (PyUnicode_Tailmatch(file, PyTuple_GET_ITEM(S.stdlib, i), 0, PY_SSIZE_T_MAX, -1) == 1) {
            return 1;
        }
    }
    return 0;
}

/*
 * Code that is not from a file (`<string>`: what exec, eval and
 * namedtuple make) belongs to the code that runs it first: the standard
 * library's when its caller is. `frame` is the code's own (the profile
 * engine's), or NULL for the one running (sys.monitoring's).
 */
static int
run_by_stdlib(PyFrameObject *frame)
{
    PyFrameObject *own = frame != NULL ? frame : PyEval_GetFrame(); /* borrowed */
    if (own == NULL) {
        return 0;
    }
#if PY_3_9
    PyFrameObject *back = PyFrame_GetBack(own);
#else
    PyFrameObject *back = own->f_back;
    Py_XINCREF(back);
#endif
    int stdlib = 0;
    if (back != NULL) {
#if PY_3_9
        PyCodeObject *code = PyFrame_GetCode(back);
#else
        PyCodeObject *code = back->f_code;
        Py_INCREF(code);
#endif
        stdlib = PyUnicode_Check(code->co_filename) && in_stdlib(code->co_filename);
        Py_DECREF(code);
        Py_DECREF(back);
    }
    return stdlib;
}

static int
filters_allow(PyObject *module, PyObject *qualname, PyObject *file, PyFrameObject *frame)
{
    if (S.stdlib != NULL && in_stdlib(file)) {
        return 0;
    }
    if (S.stdlib != NULL && PyUnicode_GET_LENGTH(file) > 0 && PyUnicode_READ_CHAR(file, 0) == '<' &&
        run_by_stdlib(frame)) {
        return 0;
    }
    if (PyList_GET_SIZE(S.include) && !patterns_match(S.include, module, qualname, file)) {
        return 0;
    }
    return !patterns_match(S.exclude, module, qualname, file);
}

/* ------------------------------------------------------------------------ */
/* Naming code                                                              */
/* ------------------------------------------------------------------------ */

#if !PY_3_11
/* A function's code, if `candidate` is a Python function (anything else is
   passed over: reading an attribute of it could run Python code). */
static PyObject *
function_code(PyObject *candidate)
{
    if (candidate != NULL && PyFunction_Check(candidate)) {
        return PyFunction_GET_CODE(candidate);
    }
    return NULL;
}

static PyObject *
unwrap_method(PyObject *attr)
{
    if (PyObject_TypeCheck(attr, &PyStaticMethod_Type) ||
        PyObject_TypeCheck(attr, &PyClassMethod_Type)) {
        /* staticmethod and classmethod keep the function in __func__. */
        PyObject *func = PyObject_GetAttrString(attr, "__func__");
        if (func == NULL) {
            PyErr_Clear();
            return NULL;
        }
        Py_DECREF(func); /* the descriptor holds it */
        return func;
    }
    return attr;
}

static PyObject *
function_qualname(PyObject *function)
{
    PyObject *qualname = ((PyFunctionObject *)function)->func_qualname;
    if (qualname != NULL && PyUnicode_Check(qualname)) {
        Py_INCREF(qualname);
        return qualname;
    }
    return NULL;
}

static PyObject *qualname_of(PyCodeObject *code, PyFrameObject *frame, int depth);

/*
 * A qualified name on 3.8-3.10, where code objects have none: the function
 * among the module's globals and the methods (and properties) of its
 * classes; a nested function is named after the frame that defines it. Runs
 * once per code object, and runs no Python code.
 */
static PyObject *
search_qualname(PyCodeObject *code, PyFrameObject *frame, int depth)
{
    PyObject *name = code->co_name;
    if (PyUnicode_READ_CHAR(name, 0) == '<') {
        Py_INCREF(name);
        return name;
    }
    PyObject *globals = frame->f_globals;
    if (globals != NULL && PyDict_Check(globals)) {
        PyObject *obj = PyDict_GetItemWithError(globals, name);
        if (obj != NULL && function_code(obj) == (PyObject *)code) {
            return function_qualname(obj);
        }
        PyErr_Clear();
        Py_ssize_t pos = 0;
        PyObject *key, *value;
        while (PyDict_Next(globals, &pos, &key, &value)) {
            if (!PyType_Check(value)) {
                continue;
            }
            PyObject *dict = ((PyTypeObject *)value)->tp_dict;
            if (dict == NULL) {
                continue;
            }
            Py_ssize_t at = 0;
            PyObject *attr_name, *attr;
            while (PyDict_Next(dict, &at, &attr_name, &attr)) {
                if (PyObject_TypeCheck(attr, &PyProperty_Type)) {
                    static const char *accessors[] = {"fget", "fset", "fdel"};
                    for (int i = 0; i < 3; i++) {
                        PyObject *f = PyObject_GetAttrString(attr, accessors[i]);
                        if (f == NULL) {
                            PyErr_Clear();
                            continue;
                        }
                        int found = function_code(f) == (PyObject *)code;
                        PyObject *qualname = found ? function_qualname(f) : NULL;
                        Py_DECREF(f);
                        if (found) {
                            return qualname;
                        }
                    }
                    continue;
                }
                PyObject *candidate = unwrap_method(attr);
                if (function_code(candidate) == (PyObject *)code) {
                    return function_qualname(candidate);
                }
            }
        }
    }
    PyFrameObject *back = frame->f_back;
    if (back != NULL && depth < 20) {
        PyObject *consts = back->f_code->co_consts;
        int defined_there = 0;
        if (consts != NULL && PyTuple_Check(consts)) {
            for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(consts); i++) {
                if (PyTuple_GET_ITEM(consts, i) == (PyObject *)code) {
                    defined_there = 1;
                    break;
                }
            }
        }
        if (defined_there) {
            /* Defined by the caller: a class body or a function nested in it. */
            if (PyUnicode_CompareWithASCIIString(back->f_code->co_name, "<module>") == 0) {
                Py_INCREF(name);
                return name;
            }
            PyObject *outer = qualname_of(back->f_code, back, depth + 1);
            if (outer != NULL) {
                PyObject *full = PyUnicode_FromFormat("%U.<locals>.%U", outer, name);
                Py_DECREF(outer);
                if (full != NULL) {
                    return full;
                }
                PyErr_Clear();
            }
        }
    }
    Py_INCREF(name);
    return name;
}

static PyObject *
qualname_of(PyCodeObject *code, PyFrameObject *frame, int depth)
{
    if (frame == NULL) {
        Py_INCREF(code->co_name);
        return code->co_name;
    }
    PyObject *qualname = search_qualname(code, frame, depth);
    if (qualname == NULL) {
        PyErr_Clear();
        Py_INCREF(code->co_name);
        return code->co_name;
    }
    return qualname;
}
#endif

static const char *
code_type(int flags)
{
    if (flags & CO_ASYNC_GENERATOR) {
        return "async_generator";
    }
    if (flags & (CO_COROUTINE | CO_ITERABLE_COROUTINE)) {
        return "coroutine";
    }
    if (flags & CO_GENERATOR) {
        return "generator";
    }
    return "function";
}

/*
 * For the profile engine on generator-like code: where a 'call' event is a
 * fresh start, and where a 'return' event is a suspension, by f_lasti.
 *
 * 3.8-3.10: a fresh start has f_lasti -1 (checked at the event); a `yield`
 * sits on YIELD_VALUE, and inside `yield from` and `await` f_lasti points at
 * the instruction before YIELD_FROM, which is re-executed on resumption.
 * 3.11+: a fresh start stands on a RESUME whose oparg & 3 is 0; 3.11 and
 * 3.12 report a suspension on YIELD_VALUE, 3.13 on the RESUME after it.
 */
static uint8_t *
suspension_points(PyCodeObject *code, int32_t *units)
{
#if PY_3_11
    PyObject *bytes = PyCode_GetCode(code);
#else
    PyObject *bytes = code->co_code;
    Py_XINCREF(bytes);
#endif
    if (bytes == NULL || !PyBytes_Check(bytes)) {
        PyErr_Clear();
        Py_XDECREF(bytes);
        *units = 0;
        return NULL;
    }
    const uint8_t *raw = (const uint8_t *)PyBytes_AS_STRING(bytes);
    Py_ssize_t n = PyBytes_GET_SIZE(bytes) / 2;
    uint8_t *points = calloc((size_t)n + 1, 1);
    if (points != NULL) {
        for (Py_ssize_t i = 0; i < n; i++) {
            int op = raw[2 * i];
            if (op == YIELD_VALUE) {
                points[i] |= 2;
#if PY_3_13
                if (i + 1 < n && raw[2 * i + 2] == RESUME) {
                    points[i + 1] |= 2;
                }
#endif
            }
#if !PY_3_11
            if (op == YIELD_FROM && i > 0) {
                points[i - 1] |= 2;
            }
#else
            if (op == RESUME && (raw[2 * i + 1] & 3) == 0) {
                points[i] |= 1;
            }
#endif
        }
    }
    Py_DECREF(bytes);
    *units = (int32_t)n;
    return points;
}

/* A table of texts already sent, each numbered once: the code records (the
   same site, exec in a loop or a lambda made afresh, is sent once) and the
   names of C functions (the methods of a class made afresh each time share
   one record). It grows with the distinct texts only. */
typedef struct {
    uint64_t hash;
    char *text;
    size_t len;
    uint32_t id;
} Interned;

typedef struct {
    Interned *slots;
    size_t count, used;
    uint32_t *numbers; /* the counter that numbers new texts */
} InternTable;

static InternTable code_sites = {NULL, 0, 0, &S.code_count};
static InternTable cfunc_names = {NULL, 0, 0, &S.cfunc_count};

static uint64_t
fnv1a(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    }
    return h ? h : 1;
}

/* The number of `text` in `table`, or a new one (*fresh). Out of memory,
   a new number that is not remembered. */
static uint32_t
intern_text(InternTable *table, const char *text, size_t len, int *fresh)
{
    *fresh = 0;
    if ((table->used + 1) * 2 > table->count) {
        size_t count = table->count ? table->count * 2 : 1024;
        Interned *slots = calloc(count, sizeof *slots);
        if (slots == NULL) {
            *fresh = 1;
            return ++*table->numbers;
        }
        for (size_t i = 0; i < table->count; i++) {
            if (table->slots[i].hash) {
                size_t j = table->slots[i].hash & (count - 1);
                while (slots[j].hash) {
                    j = (j + 1) & (count - 1);
                }
                slots[j] = table->slots[i];
            }
        }
        free(table->slots);
        table->slots = slots;
        table->count = count;
    }
    uint64_t hash = fnv1a(text, len);
    size_t j = hash & (table->count - 1);
    Interned *slots = table->slots;
    while (slots[j].hash) {
        if (slots[j].hash == hash && slots[j].len == len && memcmp(slots[j].text, text, len) == 0) {
            return slots[j].id;
        }
        j = (j + 1) & (table->count - 1);
    }
    char *copy = malloc(len);
    if (copy == NULL) {
        *fresh = 1;
        return ++*table->numbers;
    }
    memcpy(copy, text, len);
    slots[j].hash = hash;
    slots[j].text = copy;
    slots[j].len = len;
    slots[j].id = ++*table->numbers;
    table->used++;
    *fresh = 1;
    return slots[j].id;
}

static void
free_code_info(void *extra)
{
    CodeInfo *info = extra;
    if (info != NULL && info != &EXCLUDED) {
        free(info->points);
        free(info);
    }
}

/*
 * What was decided about `code`, or NULL before it is registered. Read
 * straight from the code object's extra slots (CPython's
 * _PyCodeObjectExtra, the same from 3.6 to 3.13), which saves the call of
 * PyUnstable_Code_GetExtra on every event; that call sets the slot.
 */
typedef struct {
    Py_ssize_t size;
    void *extras[1];
} CodeExtras;

static inline CodeInfo *
code_info(PyObject *code)
{
    const CodeExtras *extras = (const CodeExtras *)((PyCodeObject *)code)->co_extra;
    if (extras == NULL || extras->size <= S.extra_index) {
        return NULL;
    }
    return (CodeInfo *)extras->extras[S.extra_index];
}

/*
 * Setting an extra slot makes the code object's array as long as the
 * number of indices requested so far, and code_dealloc calls the free
 * function of every index below that length, NULL slot or not. A program
 * that requests an index after ours (test_code does, with a ctypes callback
 * that is gone at shutdown) would have its function called for every code
 * object we noted: set back to end at the last slot in use, as when only
 * the program's own code objects have extras. A later SetExtra of the
 * program's grows it again; GetExtra past the end gives NULL, as before.
 */
static void
trim_code_extras(PyCodeObject *code)
{
    CodeExtras *extras = (CodeExtras *)code->co_extra;
    if (extras == NULL) {
        return;
    }
    Py_ssize_t size = extras->size;
    while (size > S.extra_index + 1 && extras->extras[size - 1] == NULL) {
        size--;
    }
    extras->size = size;
}

/*
 * Decides about `code`, once: whether it is recorded, and under which id
 * (sending its `code` record). `globals` are its frame's, for the module
 * name; `frame` (3.8-3.10) finds its qualified name. Runs no Python code.
 */
static CodeInfo *
register_code(PyCodeObject *code, PyObject *globals, PyFrameObject *frame)
{
    CodeInfo *info = &EXCLUDED;
    PyObject *module = NULL, *qualname = NULL;
    PyObject *file = code->co_filename;
    int hidden = S.own_file != NULL && PyUnicode_Check(file) &&
                 PyUnicode_Compare(file, S.own_file) == 0;
    if (PyErr_Occurred()) {
        PyErr_Clear();
    }
    if (globals != NULL && PyDict_Check(globals)) {
        module = PyDict_GetItemString(globals, "__name__");
    }
    if (module == NULL || !PyUnicode_Check(module)) {
        module = PyUnicode_FromString("");
    } else {
        Py_INCREF(module);
    }
    if (hidden) {
        Py_SETREF(module, PyUnicode_FromString("panopticon"));
        qualname = code->co_name;
        Py_INCREF(qualname);
    } else {
#if PY_3_11
        qualname = code->co_qualname;
        Py_INCREF(qualname);
#else
        qualname = qualname_of(code, frame, 0);
#endif
    }
    if (module == NULL || qualname == NULL || !PyUnicode_Check(file)) {
        PyErr_Clear();
        goto done;
    }
    if (!hidden && S.filtering && !filters_allow(module, qualname, file, frame)) {
        goto done;
    }
    Text text = {0};
    text_puts(&text, ",\"module\":");
    text_json_str(&text, module);
    text_puts(&text, ",\"qualname\":");
    text_json_str(&text, qualname);
    text_puts(&text, ",\"file\":");
    text_json_str(&text, file);
    text_printf(&text, ",\"line\":%d,\"type\":\"%s\"%s}\n", code->co_firstlineno,
                code_type(code->co_flags), hidden ? ",\"hidden\":true" : "");
    if (text.data == NULL) {
        goto done;
    }
    CodeInfo *made = calloc(1, sizeof *made);
    if (made == NULL) {
        free(text.data);
        goto done;
    }
    int fresh;
    made->id = intern_text(&code_sites, text.data, text.len, &fresh);
    if (fresh) {
        size_t before = RECORDS->len;
        text_printf(RECORDS, "{\"kind\":\"code\",\"id\":%u", made->id);
        text_put(RECORDS, text.data, text.len);
        text_put(&S.definitions, RECORDS->data + before, RECORDS->len - before);
    }
    free(text.data);
    made->hidden = (uint8_t)hidden;
    if (!hidden && V.args != NULL && patterns_match(V.args, module, qualname, file) == 1) {
        made->values |= VALUES_ARGS;
    }
    if (!hidden && V.returns != NULL && patterns_match(V.returns, module, qualname, file) == 1) {
        made->values |= VALUES_RETURNS;
    }
    if (!hidden && L.patterns != NULL && patterns_match(L.patterns, module, qualname, file) == 1) {
        made->lines = 1;
        lines_switch_on(code);
    }
    made->generator = (code->co_flags & CO_GENERATOR_LIKE) != 0;
    if (made->generator && S.engine == ENGINE_PROFILE) {
        made->points = suspension_points(code, &made->units);
    }
    info = made;
done:
    Py_XDECREF(module);
    Py_XDECREF(qualname);
    if (PyErr_Occurred()) {
        PyErr_Clear();
    }
    if (SET_CODE_EXTRA((PyObject *)code, S.extra_index, info) < 0) {
        PyErr_Clear();
        free_code_info(info);
        return &EXCLUDED;
    }
    trim_code_extras(code);
    return info;
}

/* ------------------------------------------------------------------------ */
/* C functions                                                              */
/* ------------------------------------------------------------------------ */

/*
 * C functions are numbered by their method definition and what they are
 * bound to (a module, a type, or the type of an instance): builtin methods
 * bound to an instance are made afresh for each call, so their own address
 * says nothing. An owner that is a heap type may die and its address be
 * reused, so it is checked through a weak reference.
 */
typedef struct {
    const void *method; /* PyMethodDef * */
    const void *owner;
    PyObject *weak;     /* a weak reference to a heap-type owner, or NULL */
    uint32_t id;
} CFuncSlot;

static CFuncSlot *cfuncs = NULL;
static size_t cfunc_slots = 0, cfunc_used = 0;

/* What a C function record names: `print`, `time.sleep`, `list.append`. */
static PyObject *
cfunc_name(PyObject *fn)
{
    PyObject *qualname = PyObject_GetAttrString(fn, "__qualname__");
    if (qualname == NULL || !PyUnicode_Check(qualname)) {
        PyErr_Clear();
        Py_XDECREF(qualname);
        qualname = PyObject_GetAttrString(fn, "__name__");
        if (qualname == NULL || !PyUnicode_Check(qualname)) {
            PyErr_Clear();
            Py_XDECREF(qualname);
            return PyUnicode_FromString("<C function>");
        }
    }
    PyObject *module = NULL;
    if (PyCFunction_Check(fn)) {
        module = ((PyCFunctionObject *)fn)->m_module;
        Py_XINCREF(module);
    }
    PyObject *name = qualname;
    if (module != NULL && PyUnicode_Check(module) &&
        PyUnicode_CompareWithASCIIString(module, "builtins") != 0 &&
        PyUnicode_FindChar(qualname, '.', 0, PyUnicode_GET_LENGTH(qualname), 1) < 0) {
        name = PyUnicode_FromFormat("%U.%U", module, qualname);
        Py_DECREF(qualname);
    }
    Py_XDECREF(module);
    if (name == NULL) {
        PyErr_Clear();
        return PyUnicode_FromString("<C function>");
    }
    return name;
}

/* Whether a slot's heap-type owner has died (its address may be another
   object's now), or the slot is one such death's tombstone. */
static int
cfunc_slot_dead(const CFuncSlot *slot)
{
    if (slot->method == NULL) {
        return 1;
    }
    if (slot->weak == NULL) {
        return 0;
    }
#if PY_3_13
    PyObject *alive = NULL;
    int live = PyWeakref_GetRef(slot->weak, &alive) == 1 && alive == slot->owner;
    Py_XDECREF(alive);
    return !live;
#else
    return PyWeakref_GET_OBJECT(slot->weak) != slot->owner;
#endif
}

/* The table again, with `slots` slots and only its live entries: the
   methods of heap types that died (a class made afresh in a loop) leave,
   so the table grows with what lives, not with what ever was. */
static int
cfunc_table_rebuild(size_t slots)
{
    CFuncSlot *table = calloc(slots, sizeof *table);
    if (table == NULL) {
        return -1;
    }
    size_t used = 0;
    for (size_t i = 0; i < cfunc_slots; i++) {
        CFuncSlot *old = &cfuncs[i];
        if (old->id == 0) {
            continue;
        }
        if (cfunc_slot_dead(old)) {
            Py_CLEAR(old->weak);
            continue;
        }
        size_t j = hash_u64((uint64_t)(uintptr_t)old->method ^ ((uint64_t)(uintptr_t)old->owner << 1)) &
                   (slots - 1);
        while (table[j].id) {
            j = (j + 1) & (slots - 1);
        }
        table[j] = *old;
        used++;
    }
    free(cfuncs);
    cfuncs = table;
    cfunc_slots = slots;
    cfunc_used = used;
    return 0;
}

/* Room for one more entry: the dead swept out first, the table doubled
   only if the living fill half of it. */
static int
cfunc_table_make_room(void)
{
    if (cfunc_slots == 0) {
        return cfunc_table_rebuild(1024);
    }
    if (cfunc_table_rebuild(cfunc_slots) < 0) {
        return -1;
    }
    if ((cfunc_used + 1) * 2 > cfunc_slots) {
        return cfunc_table_rebuild(cfunc_slots * 2);
    }
    return 0;
}

/* Which C function `fn` is; 0 for a callable that is not one. */
static uint32_t
cfunc_id(PyObject *fn)
{
    const void *method;
    PyObject *owner;
    PyTypeObject *type = Py_TYPE(fn);
    if (type == &PyCFunction_Type
#if PY_3_9
        || type == &PyCMethod_Type
#endif
    ) {
        PyCFunctionObject *f = (PyCFunctionObject *)fn;
        method = f->m_ml;
        owner = f->m_self;
        if (owner != NULL && !PyModule_Check(owner) && !PyType_Check(owner)) {
            owner = (PyObject *)Py_TYPE(owner);
        }
    } else if (type == &PyMethodDescr_Type) {
        method = ((PyMethodDescrObject *)fn)->d_method;
        owner = (PyObject *)((PyDescrObject *)fn)->d_type;
    } else {
        return 0;
    }
    if (cfunc_slots == 0 && cfunc_table_make_room() < 0) {
        return 0;
    }
    size_t j = hash_u64((uint64_t)(uintptr_t)method ^ ((uint64_t)(uintptr_t)owner << 1)) &
               (cfunc_slots - 1);
    for (;;) {
        CFuncSlot *slot = &cfuncs[j];
        if (slot->id == 0) {
            break;
        }
        if (slot->method == method && slot->owner == owner) {
            if (LIKELY(slot->weak == NULL)) {
                return slot->id;
            }
#if PY_3_13
            PyObject *alive = NULL;
            int live = PyWeakref_GetRef(slot->weak, &alive) == 1 && alive == owner;
            Py_XDECREF(alive);
#else
            int live = PyWeakref_GET_OBJECT(slot->weak) == owner;
#endif
            if (live) {
                return slot->id;
            }
            /* The heap type died and another object took its address. */
            Py_CLEAR(slot->weak);
            slot->owner = NULL;
            slot->method = NULL; /* keeps the probe chain; never matches */
        }
        j = (j + 1) & (cfunc_slots - 1);
    }
    if ((cfunc_used + 1) * 2 > cfunc_slots) {
        if (cfunc_table_make_room() < 0) {
            return 0;
        }
        return cfunc_id(fn);
    }
    PyObject *name = cfunc_name(fn);
    if (name == NULL) {
        PyErr_Clear();
        return 0;
    }
    /* Numbered by its name: the methods of classes made afresh (each a
       heap type of its own) share one id and one record. */
    Py_ssize_t length = 0;
    const char *utf8 = PyUnicode_AsUTF8AndSize(name, &length);
    int fresh = 1;
    uint32_t id;
    if (utf8 == NULL) {
        PyErr_Clear();
        id = ++S.cfunc_count;
    } else {
        id = intern_text(&cfunc_names, utf8, (size_t)length, &fresh);
    }
    if (fresh) {
        size_t before = RECORDS->len;
        text_printf(RECORDS, "{\"kind\":\"cfunc\",\"id\":%u,\"name\":", id);
        text_json_str(RECORDS, name);
        text_puts(RECORDS, "}\n");
        text_put(&S.definitions, RECORDS->data + before, RECORDS->len - before);
    }
    Py_DECREF(name);
    CFuncSlot *slot = &cfuncs[j];
    slot->method = method;
    slot->owner = owner;
    slot->weak = NULL;
    slot->id = id;
    if (owner != NULL && PyType_Check(owner) &&
        PyType_HasFeature((PyTypeObject *)owner, Py_TPFLAGS_HEAPTYPE)) {
        slot->weak = PyWeakref_NewRef(owner, NULL);
        if (slot->weak == NULL) {
            PyErr_Clear();
        }
    }
    cfunc_used++;
    return id;
}

static inline int
is_c_function(PyObject *fn)
{
    PyTypeObject *type = Py_TYPE(fn);
    return type == &PyCFunction_Type || type == &PyMethodDescr_Type
#if PY_3_9
           || type == &PyCMethod_Type
#endif
        ;
}

/* ------------------------------------------------------------------------ */
/* Engine: sys.monitoring (3.12+)                                           */
/* ------------------------------------------------------------------------ */

#if PY_3_12
/* The interpreter frame running the event: a generator's is part of the
   generator object, so its address is the frame instance's identity for as
   long as it lives, and reading it allocates nothing (PyEval_GetFrame would
   make a frame object). */
static inline uintptr_t
current_iframe(void)
{
    PyThreadState *ts = unchecked_tstate();
#if PY_3_13
    return (uintptr_t)ts->current_frame;
#else
    return (uintptr_t)ts->cframe->current_frame;
#endif
}

static inline PyObject *
disable(void)
{
    Py_INCREF(S.disable);
    return S.disable;
}

static inline CodeInfo *
monitored_code(PyObject *code)
{
    CodeInfo *info = code_info(code);
    if (UNLIKELY(info == NULL)) {
        info = register_code((PyCodeObject *)code, PyEval_GetGlobals(), NULL);
    }
    return info;
}

static PyObject *
on_py_start(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    (void)nargs;
    if (UNLIKELY(!S.active)) {
        Py_RETURN_NONE;
    }
    if (UNLIKELY(S.waiting)) {
        /* Only PY_START is on until the program's <module> starts; any other
           code is switched off at its source and back on by
           restart_events() (see start_recording). */
        PyCodeObject *code = (PyCodeObject *)args[0];
        PyObject *globals = PyEval_GetGlobals();
        PyObject *name = globals ? PyDict_GetItemString(globals, "__name__") : NULL;
        if (PyUnicode_CompareWithASCIIString(code->co_name, "<module>") != 0 || name == NULL ||
            !PyUnicode_Check(name) || PyUnicode_CompareWithASCIIString(name, "__main__") != 0) {
            return disable();
        }
        start_recording();
    }
    CodeInfo *info = monitored_code(args[0]);
    if (info->id == 0) {
        return disable();
    }
    Thread *t = current_thread();
    if (LIKELY(!t->paused)) {
        uintptr_t frame = info->generator ? current_iframe() : 0;
        emit_code_event(t, OP_CALL, info->id, frame);
        if (UNLIKELY(info->values & VALUES_ARGS)) {
            record_arguments(t, (PyCodeObject *)args[0], (void *)current_iframe());
        }
        if (UNLIKELY(A.on) && frame && (((PyCodeObject *)args[0])->co_flags & CO_COROUTINE)) {
            task_started(t, frame);
        }
    }
    Py_RETURN_NONE;
}

static PyObject *
on_py_resume(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    (void)nargs;
    if (UNLIKELY(!S.active)) {
        Py_RETURN_NONE;
    }
    CodeInfo *info = monitored_code(args[0]);
    if (info->id == 0) {
        return disable();
    }
    Thread *t = current_thread();
    if (LIKELY(!t->paused)) {
        emit_code_event(t, OP_RESUME, info->id, current_iframe());
    }
    Py_RETURN_NONE;
}

/* A generator thrown into resumes; PY_THROW cannot be DISABLEd. */
static PyObject *
on_py_throw(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    (void)nargs;
    if (UNLIKELY(!S.active)) {
        Py_RETURN_NONE;
    }
    CodeInfo *info = monitored_code(args[0]);
    Thread *t = current_thread();
    if (info->id && !t->paused) {
        emit_code_event(t, OP_RESUME, info->id, current_iframe());
    }
    Py_RETURN_NONE;
}

static PyObject *
on_py_return(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    (void)nargs;
    if (UNLIKELY(!S.active)) {
        Py_RETURN_NONE;
    }
    CodeInfo *info = monitored_code(args[0]);
    if (info->id == 0) {
        return disable();
    }
    Thread *t = current_thread();
    if (LIKELY(!t->paused)) {
        uintptr_t frame = info->generator ? current_iframe() : 0;
        if (UNLIKELY(info->values & VALUES_RETURNS)) {
            record_result(t, "return", args[2]);
        }
        if (UNLIKELY(A.tops.live) && frame) {
            task_done(t, frame);
            task_ended(t, frame, NULL);
        }
        emit_end_event(t, OP_RETURN, frame);
    }
    Py_RETURN_NONE;
}

static PyObject *
on_py_yield(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    (void)nargs;
    if (UNLIKELY(!S.active)) {
        Py_RETURN_NONE;
    }
    CodeInfo *info = monitored_code(args[0]);
    if (info->id == 0) {
        return disable();
    }
    Thread *t = current_thread();
    if (LIKELY(!t->paused)) {
        if (UNLIKELY(info->values & VALUES_RETURNS)) {
            record_result(t, "yield", args[2]);
        }
        uintptr_t frame = current_iframe();
        if (UNLIKELY(A.tops.live) && args[2] != Py_None) {
            task_awaits(t, frame, args[2]);
        }
        emit_end_event(t, OP_SUSPEND, frame);
    }
    Py_RETURN_NONE;
}

/* PY_UNWIND cannot be DISABLEd: code left out returns at once. */
static PyObject *
on_py_unwind(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    (void)nargs;
    if (UNLIKELY(!S.active)) {
        Py_RETURN_NONE;
    }
    CodeInfo *info = monitored_code(args[0]);
    Thread *t = current_thread();
    if (info->id && !t->paused) {
        uintptr_t frame = info->generator ? current_iframe() : 0;
        if (UNLIKELY(A.tops.live) && frame) {
            task_done(t, frame);
            task_ended(t, frame, nargs > 2 ? args[2] : NULL);
        }
        emit_end_event(t, OP_UNWIND, frame);
    }
    Py_RETURN_NONE;
}

/* CALL fires for every callable; only C functions are recorded, and only
   when the code that calls them is. */
static PyObject *
on_call(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    (void)nargs;
    if (UNLIKELY(A.on) && PyType_Check(args[2]) && S.active &&
        (A.task_type == NULL || (PyTypeObject *)args[2] == A.task_type)) {
        Thread *t = current_thread();
        if (!t->paused) {
            task_created(t, args[2], nargs > 3 ? args[3] : NULL);
        }
    }
    if (UNLIKELY(!S.active) || !is_c_function(args[2])) {
        Py_RETURN_NONE;
    }
    if (S.filtering && monitored_code(args[0])->id == 0) {
        return disable();
    }
    Thread *t = current_thread();
    if (LIKELY(!t->paused)) {
        uint32_t id = cfunc_id(args[2]);
        if (id) {
            emit_ref_event(t, OP_C_CALL, id);
        }
        if (UNLIKELY(A.set_result != NULL) && nargs > 3) {
            future_completed(t, args[2], args[3]);
        }
    }
    Py_RETURN_NONE;
}

/* C_RETURN and C_RAISE: the C call `callable` ends by `op`. */
static inline PyObject *
c_call_ends(PyObject *callable, int op)
{
    if (LIKELY(S.active) && is_c_function(callable)) {
        Thread *t = current_thread();
        if (LIKELY(!t->paused)) {
            emit_bare_event(t, op);
        }
    }
    Py_RETURN_NONE;
}

static PyObject *
on_c_return(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    (void)nargs;
    return c_call_ends(args[2], OP_C_RETURN);
}

static PyObject *
on_c_raise(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    (void)nargs;
    return c_call_ends(args[2], OP_C_RAISE);
}

static PyObject *
call_monitoring(const char *name, const char *format, ...)
{
    PyObject *function = PyObject_GetAttrString(S.monitoring, name);
    if (function == NULL) {
        return NULL;
    }
    va_list args;
    va_start(args, format);
    PyObject *arguments = Py_VaBuildValue(format, args);
    va_end(args);
    PyObject *result = arguments ? PyObject_CallObject(function, arguments) : NULL;
    Py_XDECREF(arguments);
    Py_DECREF(function);
    return result;
}

/* Calls a sys.monitoring function for its effect; failures are cleared. */
static int
monitoring_do(PyObject *result)
{
    if (result == NULL) {
        PyErr_Clear();
        return -1;
    }
    Py_DECREF(result);
    return 0;
}

static int
set_events(int tool, long mask)
{
    return monitoring_do(call_monitoring("set_events", "(il)", tool, mask));
}

static void
register_callbacks(int tool, int on)
{
    Py_ssize_t n = PyList_GET_SIZE(S.callbacks);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = PyList_GET_ITEM(S.callbacks, i);
        monitoring_do(call_monitoring("register_callback", "(iOO)", tool, PyTuple_GET_ITEM(pair, 0),
                                      on ? PyTuple_GET_ITEM(pair, 1) : Py_None));
    }
}

static void
release_tool(int tool)
{
    set_events(tool, 0);
    register_callbacks(tool, 0);
    monitoring_do(call_monitoring("free_tool_id", "(i)", tool));
}

static long
reported_events(int tool)
{
    PyObject *r = call_monitoring("get_events", "(i)", tool);
    long mask = r ? PyLong_AsLong(r) : -1;
    Py_XDECREF(r);
    if (PyErr_Occurred()) {
        PyErr_Clear();
    }
    return mask;
}

static void switch_on(long mask)
{
    S.mask = mask;
    set_events(S.tool, mask);
    /* As sys.monitoring reports it back (C_RETURN and C_RAISE come with CALL). */
    S.reported_mask = reported_events(S.tool);
}
#endif

/* ------------------------------------------------------------------------ */
/* Engine: a C profile function (3.8+)                                      */
/* ------------------------------------------------------------------------ */

static int profile(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg);
static void trace_thread(Thread *t);
static int wait_for_main(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg);

/*
 * Installs (or, with NULL, removes) our profile function on a thread, as
 * PyEval_SetProfile does, but without its `sys.setprofile` audit event
 * before 3.12: the program's own audit hooks see none of ours. From 3.12
 * the profile function runs on sys.monitoring, so only the API can set it.
 */
static void
set_profile(PyThreadState *ts, Py_tracefunc func, PyObject *obj)
{
#if PY_3_12
    /* Only for the calling thread: the API has nothing else from 3.13. */
    if (ts != PyThreadState_Get()) {
        return;
    }
    S.switching = 1;
    PyEval_SetProfile(func, obj);
    PyErr_Clear();
    S.switching = 0;
#else
    PyObject *old = ts->c_profileobj;
    Py_XINCREF(obj);
    ts->c_profilefunc = NULL;
    ts->c_profileobj = NULL;
#if PY_3_11
    ts->cframe->use_tracing = (ts->tracing == 0 && ts->c_tracefunc != NULL) ? 255 : 0;
#elif PY_3_10
    ts->cframe->use_tracing = ts->c_tracefunc != NULL;
#else
    ts->use_tracing = ts->c_tracefunc != NULL;
#endif
    Py_XDECREF(old);
    ts->c_profilefunc = func;
    ts->c_profileobj = obj;
#if PY_3_11
    ts->cframe->use_tracing =
        (ts->tracing == 0 && (func != NULL || ts->c_tracefunc != NULL)) ? 255 : 0;
#elif PY_3_10
    ts->cframe->use_tracing = func != NULL || ts->c_tracefunc != NULL;
#else
    ts->use_tracing = func != NULL || ts->c_tracefunc != NULL;
#endif
#endif
}

/* Removes our profile function from every thread that has it (from 3.12,
   only from the calling thread; the others' return at once when called). */
static void
unprofile_all(void)
{
    PyThreadState *self = PyThreadState_Get();
    PyInterpreterState *interp = self->interp;
    for (PyThreadState *ts = PyInterpreterState_ThreadHead(interp); ts != NULL;
         ts = PyThreadState_Next(ts)) {
        if (ts->c_profilefunc == profile || ts->c_profilefunc == wait_for_main) {
            set_profile(ts, NULL, NULL);
        }
    }
}

static inline PyCodeObject *
frame_code(PyFrameObject *frame)
{
#if PY_3_11
    /* A new reference, but the frame holds the code for as long as it runs. */
    PyCodeObject *code = PyFrame_GetCode(frame);
    Py_DECREF(code);
    return code;
#else
    return frame->f_code;
#endif
}

/* The byte offset of the frame's last instruction, as `frame.f_lasti` says
   it: 3.10's field counts code units (the attribute doubles it). */
static inline int
frame_lasti(PyFrameObject *frame)
{
#if PY_3_11
    return PyFrame_GetLasti(frame);
#elif PY_3_10
    return frame->f_lasti < 0 ? -1 : frame->f_lasti * 2;
#else
    return frame->f_lasti;
#endif
}

static inline PyObject *
frame_globals(PyFrameObject *frame)
{
#if PY_3_11
    PyObject *globals = PyFrame_GetGlobals(frame);
    Py_XDECREF(globals); /* the frame holds them */
    return globals;
#else
    return frame->f_globals;
#endif
}

static inline CodeInfo *
profiled_code(PyCodeObject *code, PyFrameObject *frame)
{
    CodeInfo *info = code_info((PyObject *)code);
    if (UNLIKELY(info == NULL)) {
        info = register_code(code, frame_globals(frame), frame);
    }
    return info;
}

/* Where a profiled frame's fast locals are, for record_arguments. */
static inline void *
profiled_frame(PyFrameObject *frame)
{
#if PY_3_11 && ARGS_READABLE
    return frame->f_frame;
#else
    return frame;
#endif
}

static inline int
at_point(CodeInfo *info, int lasti, int bit)
{
    int unit = lasti / 2;
    return info->points != NULL && lasti >= 0 && unit < info->units && (info->points[unit] & bit);
}

static int
profile(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg)
{
    Thread *t = (Thread *)obj;
    if (UNLIKELY(!S.active) || UNLIKELY(t->paused)) {
        return 0;
    }
    switch (what) {
    case PyTrace_CALL: {
        CodeInfo *info = profiled_code(frame_code(frame), frame);
        if (info->id == 0) {
            return 0;
        }
        if (!info->generator) {
            emit_code_event(t, OP_CALL, info->id, 0);
            if (UNLIKELY(info->values & VALUES_ARGS)) {
                record_arguments(t, frame_code(frame), profiled_frame(frame));
            }
            return 0;
        }
        int lasti = frame_lasti(frame);
#if PY_3_11
        int fresh = at_point(info, lasti, 1);
#else
        int fresh = lasti < 0;
#endif
        emit_code_event(t, fresh ? OP_CALL : OP_RESUME, info->id, (uintptr_t)frame);
        if (UNLIKELY(info->values & VALUES_ARGS) && fresh) {
            record_arguments(t, frame_code(frame), profiled_frame(frame));
        }
        if (UNLIKELY(A.on) && fresh && (frame_code(frame)->co_flags & CO_COROUTINE)) {
            task_started(t, (uintptr_t)frame);
        }
        return 0;
    }
    case PyTrace_RETURN: {
        CodeInfo *info = profiled_code(frame_code(frame), frame);
        if (info->id == 0) {
            return 0;
        }
        /* No value: an exception propagates out of the frame. */
        int op = arg == NULL ? OP_UNWIND : OP_RETURN;
        int suspends = info->generator && arg != NULL && at_point(info, frame_lasti(frame), 2);
        if (UNLIKELY(info->values & VALUES_RETURNS) && arg != NULL) {
            record_result(t, suspends ? "yield" : "return", arg);
        }
        if (!info->generator) {
            emit_end_event(t, op, 0);
        } else if (suspends) {
            emit_end_event(t, OP_SUSPEND, (uintptr_t)frame);
        } else {
            if (UNLIKELY(A.tops.live)) {
                /* The exception is put aside while a profile function runs. */
                task_ended(t, (uintptr_t)frame, NULL);
            }
            emit_end_event(t, op, (uintptr_t)frame);
        }
        return 0;
    }
    case PyTrace_C_CALL:
    case PyTrace_C_RETURN:
    case PyTrace_C_EXCEPTION:
        if (!S.c_calls) {
            return 0;
        }
        if (S.filtering && profiled_code(frame_code(frame), frame)->id == 0) {
            return 0;
        }
        if (what == PyTrace_C_CALL) {
            uint32_t id = cfunc_id(arg);
            if (id) {
                emit_ref_event(t, OP_C_CALL, id);
            }
        } else if (is_c_function(arg)) {
            emit_bare_event(t, what == PyTrace_C_RETURN ? OP_C_RETURN : OP_C_RAISE);
        }
        return 0;
    }
    return 0;
}

/* Before the program: site initialisation and runpy run first; recording
   starts at the program's own <module> frame. */
static int
wait_for_main(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg)
{
    if (what != PyTrace_CALL || !S.active) {
        return 0;
    }
    PyCodeObject *code = frame_code(frame);
    if (PyUnicode_CompareWithASCIIString(code->co_name, "<module>") != 0) {
        return 0;
    }
    PyObject *globals = frame_globals(frame);
    PyObject *name = globals ? PyDict_GetItemString(globals, "__name__") : NULL;
    if (name == NULL || !PyUnicode_Check(name) ||
        PyUnicode_CompareWithASCIIString(name, "__main__") != 0) {
        return 0;
    }
    start_recording();
    set_profile(PyThreadState_Get(), profile, obj);
    trace_thread((Thread *)obj);
    return profile(obj, frame, what, arg);
}

/* ------------------------------------------------------------------------ */
/* Exceptions and values (docs/protocol.md, "Exceptions and values")        */
/* ------------------------------------------------------------------------ */

/*
 * Exceptions: a `raise` event (op 16) where an exception starts in
 * recorded code, with its `exception` record (type, message, file, line,
 * the key of its context), and a `handled` event (op 17) where a handler
 * in recorded code starts; the converter decides whether it was swallowed.
 * 3.12+: sys.monitoring's RAISE and EXCEPTION_HANDLED. Before, and only
 * with --exceptions: a C trace function on every thread, which sees each
 * frame an exception enters (PyTrace_EXCEPTION) and, through the line
 * event that follows in that frame only, where its handler starts.
 *
 * Values are rendered here, without running the program's code unless
 * --repr asks for it, into the text of the records: nothing of the
 * program's is kept.
 */

enum { OP_EXTENDED = 15, EXT_RAISE = 16, EXT_HANDLED = 17, EXT_VALUES = 18, EXT_LINE = 19 };

#define VALUE_TEXT_MAX 200 /* characters of a str, items of bytes, shown */
#define VALUE_ITEMS_MAX 8  /* items of a container shown */
#define VALUE_DEPTH_MAX 2  /* containers within containers shown */

static struct {
    int exceptions;        /* record raises and handlers */
    int repr;              /* --repr */
    uint32_t exception_count;
} D = {0, 0, 0};

/* An extended event: op 15, the extended op minus 16, dt, ref, the key. */
static void
emit_ext_event(Thread *t, int op, uint64_t ref, uintptr_t key)
{
    uint64_t dt, now = clock_now();
    uint8_t *p = event_begin(t, now, &dt);
    uint8_t *opb = p++;
    *opb = OP_EXTENDED;
    p = put_varint(p, (uint64_t)(op - 16));
    p = put_varint(p, dt);
    p = put_varint(p, ref);
    if (key) {
        p = put_frame(p, opb, key);
    }
    event_end(t, p);
}

/* `text`'s UTF-8, appended. */
static void
text_put_str(Text *t, PyObject *text)
{
    Py_ssize_t n;
    const char *s = text != NULL ? PyUnicode_AsUTF8AndSize(text, &n) : NULL;
    if (s == NULL) {
        PyErr_Clear();
        text_puts(t, "?");
    } else {
        text_put(t, s, (size_t)n);
    }
}

/* A type's name as a reader expects it: `ValueError`, `json.decoder.JSONDecodeError`. */
static void
text_type_name(Text *t, PyTypeObject *type)
{
    if (type->tp_flags & Py_TPFLAGS_HEAPTYPE) {
        PyObject *module = type->tp_dict ? PyDict_GetItemString(type->tp_dict, "__module__") : NULL;
        if (module != NULL && PyUnicode_Check(module) &&
            PyUnicode_CompareWithASCIIString(module, "builtins") != 0) {
            text_put_str(t, module);
            text_puts(t, ".");
        }
        text_put_str(t, ((PyHeapTypeObject *)type)->ht_qualname);
    } else {
        text_puts(t, type->tp_name);
    }
    PyErr_Clear();
}

/* The repr() of a str or bytes, cut to VALUE_TEXT_MAX, with the length when cut. */
static void
text_short_repr(Text *t, PyObject *value)
{
    Py_ssize_t n = PyUnicode_Check(value) ? PyUnicode_GET_LENGTH(value) : PyBytes_GET_SIZE(value);
    PyObject *part = n <= VALUE_TEXT_MAX ? (Py_INCREF(value), value)
                     : PyUnicode_Check(value) ? PyUnicode_Substring(value, 0, VALUE_TEXT_MAX)
                                              : PyBytes_FromStringAndSize(PyBytes_AS_STRING(value),
                                                                          VALUE_TEXT_MAX);
    PyObject *repr = part != NULL ? PyObject_Repr(part) : NULL;
    text_put_str(t, repr);
    Py_XDECREF(repr);
    Py_XDECREF(part);
    if (n > VALUE_TEXT_MAX) {
        text_printf(t, "... (%zd %s)", n, PyUnicode_Check(value) ? "characters" : "bytes");
    }
}

/* `<module.Type object at 0x…>`, as object.__repr__ writes it, without calling it. */
static void
text_object(Text *t, PyObject *value)
{
    text_puts(t, "<");
    text_type_name(t, Py_TYPE(value));
    text_printf(t, " object at 0x%lx>", (unsigned long)(uintptr_t)value);
}

static void text_value(Text *t, PyObject *value, int depth);

/* The object's own repr(), for --repr: guarded, bounded, recorded by nothing. */
static void
text_own_repr(Text *t, PyObject *value)
{
    Thread *thread = current_thread();
    int paused = thread->paused;
    thread->paused = 1;
    PyObject *saved_type, *saved_value, *saved_tb;
    PyErr_Fetch(&saved_type, &saved_value, &saved_tb);
    PyObject *repr = PyObject_Repr(value);
    if (repr == NULL) {
        PyObject *type, *error, *tb;
        PyErr_Fetch(&type, &error, &tb);
        PyErr_NormalizeException(&type, &error, &tb);
        text_puts(t, "<repr failed: ");
        if (error != NULL) {
            text_type_name(t, Py_TYPE(error));
            PyObject *args = ((PyBaseExceptionObject *)error)->args;
            if (args != NULL && PyTuple_Check(args) && PyTuple_GET_SIZE(args) == 1 &&
                PyUnicode_CheckExact(PyTuple_GET_ITEM(args, 0))) {
                text_puts(t, ": ");
                text_put_str(t, PyTuple_GET_ITEM(args, 0));
            }
        }
        text_puts(t, ">");
        /* Ctrl-C in the middle of a repr is the program's: it is raised
           again at the next point Python checks for signals. */
        if (type != NULL && PyErr_GivenExceptionMatches(type, PyExc_KeyboardInterrupt)) {
            PyErr_SetInterrupt();
        }
        Py_XDECREF(type);
        Py_XDECREF(error);
        Py_XDECREF(tb);
    } else {
        Py_ssize_t n = PyUnicode_GET_LENGTH(repr);
        if (n > VALUE_TEXT_MAX) {
            PyObject *part = PyUnicode_Substring(repr, 0, VALUE_TEXT_MAX);
            text_put_str(t, part);
            Py_XDECREF(part);
            text_printf(t, "... (%zd characters)", n);
        } else {
            text_put_str(t, repr);
        }
        Py_DECREF(repr);
    }
    PyErr_Clear();
    PyErr_Restore(saved_type, saved_value, saved_tb);
    thread->paused = paused;
}

/* The items of a tuple, list, set or dict, between `open` and `close`. */
static void
text_items(Text *t, PyObject *value, int depth, const char *open, const char *close)
{
    Py_ssize_t n = PyDict_Check(value)                              ? PyDict_GET_SIZE(value)
                   : PySet_Check(value) || PyFrozenSet_Check(value) ? PySet_GET_SIZE(value)
                                                                    : PySequence_Fast_GET_SIZE(value);
    if (depth >= VALUE_DEPTH_MAX && n > 0) {
        text_printf(t, "%s... %zd items%s", open, n, close);
        return;
    }
    text_puts(t, open);
    Py_ssize_t shown = 0;
    if (PyDict_Check(value)) {
        Py_ssize_t pos = 0;
        PyObject *key, *item;
        while (shown < VALUE_ITEMS_MAX && PyDict_Next(value, &pos, &key, &item)) {
            text_puts(t, shown++ ? ", " : "");
            text_value(t, key, depth + 1);
            text_puts(t, ": ");
            text_value(t, item, depth + 1);
        }
    } else if (PySet_Check(value) || PyFrozenSet_Check(value)) {
        /* A set's own iterator: C, and it runs no code of the items. */
        PyObject *iterator = PyObject_GetIter(value);
        PyObject *key;
        while (iterator != NULL && shown < VALUE_ITEMS_MAX && (key = PyIter_Next(iterator)) != NULL) {
            text_puts(t, shown++ ? ", " : "");
            text_value(t, key, depth + 1);
            Py_DECREF(key);
        }
        Py_XDECREF(iterator);
        PyErr_Clear();
    } else {
        for (; shown < n && shown < VALUE_ITEMS_MAX; shown++) {
            text_puts(t, shown ? ", " : "");
            text_value(t, PySequence_Fast_GET_ITEM(value, shown), depth + 1);
        }
        if (n == 1 && PyTuple_CheckExact(value)) {
            text_puts(t, ",");
        }
    }
    if (n > shown) {
        text_printf(t, ", ... (%zd items)", n);
    }
    text_puts(t, close);
}

/*
 * A value as text, as repr() would show it, without running any of the
 * program's code: None, booleans, numbers, str and bytes (cut at
 * VALUE_TEXT_MAX), and tuples, lists, sets and dicts of those (of exactly
 * those types, to VALUE_DEPTH_MAX and VALUE_ITEMS_MAX); anything else as
 * `<Type object at 0x…>`, or with --repr by its own repr().
 */
static void
text_value(Text *t, PyObject *value, int depth)
{
    if (value == NULL) {
        text_puts(t, "<unbound>");
    } else if (value == Py_None) {
        text_puts(t, "None");
    } else if (value == Py_True || value == Py_False) {
        text_puts(t, value == Py_True ? "True" : "False");
    } else if (PyLong_CheckExact(value)) {
        int overflow;
        long long small = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (!overflow) {
            text_printf(t, "%lld", small);
        } else if (_PyLong_NumBits(value) <= 640) {
            PyObject *repr = PyObject_Repr(value);
            text_put_str(t, repr);
            Py_XDECREF(repr);
        } else {
            text_printf(t, "<int of %zu bits>", _PyLong_NumBits(value));
        }
    } else if (PyFloat_CheckExact(value)) {
        char *s = PyOS_double_to_string(PyFloat_AS_DOUBLE(value), 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
        text_puts(t, s != NULL ? s : "?");
        PyMem_Free(s);
    } else if (PyComplex_CheckExact(value)) {
        PyObject *repr = PyObject_Repr(value);
        text_put_str(t, repr);
        Py_XDECREF(repr);
    } else if (PyUnicode_CheckExact(value) || PyBytes_CheckExact(value)) {
        text_short_repr(t, value);
    } else if (PyTuple_CheckExact(value)) {
        text_items(t, value, depth, "(", ")");
    } else if (PyList_CheckExact(value)) {
        text_items(t, value, depth, "[", "]");
    } else if (PyDict_CheckExact(value)) {
        text_items(t, value, depth, "{", "}");
    } else if (Py_TYPE(value) == &PySet_Type || PyFrozenSet_CheckExact(value)) {
        int frozen = PyFrozenSet_CheckExact(value);
        if (PySet_GET_SIZE(value) == 0) {
            text_puts(t, frozen ? "frozenset()" : "set()");
        } else {
            text_items(t, value, depth, frozen ? "frozenset({" : "{", frozen ? "})" : "}");
        }
    } else if (D.repr) {
        text_own_repr(t, value);
    } else {
        text_object(t, value);
    }
    PyErr_Clear();
}

/* ------------------------------------------------------------------------ */
/* Arguments and return values (--args, --returns)                          */
/* ------------------------------------------------------------------------ */

/* Sends `values` (the JSON members, `"name":"text",…`) as a `values` record
   and the event that merges it into the innermost open frame's slice. */
static void
send_values(Thread *t, const Text *members)
{
    uint32_t id = ++V.count;
    text_printf(RECORDS, "{\"kind\":\"values\",\"id\":%u,\"values\":{", id);
    text_put(RECORDS, members->data, members->len);
    text_puts(RECORDS, "}}\n");
    emit_ext_event(t, EXT_VALUES, id, 0);
}

/* `"label":"text"` of `value`, appended to `members`. */
static void
put_member(Text *members, PyObject *label, const char *prefix, PyObject *value, int as_object)
{
    Text text = {0};
    text_puts(&text, prefix);
    text_put_str(&text, label);
    size_t label_end = text.len;
    if (value == NULL) {
        text_puts(&text, "<unbound>");
    } else if (as_object) {
        text_object(&text, value);
    } else {
        text_value(&text, value, 0);
    }
    if (text.data == NULL) {
        return;
    }
    if (members->len > 0) {
        text_puts(members, ",");
    }
    text_json_bytes(members, text.data, (Py_ssize_t)label_end);
    text_puts(members, ":");
    text_json_bytes(members, text.data + label_end, (Py_ssize_t)(text.len - label_end));
    free(text.data);
    PyErr_Clear();
}

/* The value of the fast local `i` (an argument) of `frame`, borrowed, or
   NULL: 3.8-3.10 move an argument that a closure captures into its cell
   (co_cell2arg), 3.11+ wrap it in a cell in its own slot (MAKE_CELL). */
static PyObject *
argument_value(PyCodeObject *code, void *frame, Py_ssize_t i)
{
#if !ARGS_READABLE
    (void)code;
    (void)frame;
    (void)i;
    return NULL;
#elif PY_3_11
    PyObject *value = ((_PyInterpreterFrame *)frame)->localsplus[i];
    unsigned char kind = (unsigned char)PyBytes_AS_STRING(code->co_localspluskinds)[i];
    if (value != NULL && (kind & CO_FAST_CELL) && PyCell_Check(value)) {
        value = PyCell_GET(value);
    }
    return value;
#else
    PyFrameObject *f = (PyFrameObject *)frame;
    PyObject *value = f->f_localsplus[i];
    if (value == NULL && code->co_cell2arg != NULL) {
        Py_ssize_t cells = PyTuple_GET_SIZE(code->co_cellvars);
        for (Py_ssize_t j = 0; j < cells; j++) {
            if (code->co_cell2arg[j] == i) {
                PyObject *cell = f->f_localsplus[code->co_nlocals + j];
                return cell != NULL && PyCell_Check(cell) ? PyCell_GET(cell) : NULL;
            }
        }
    }
    return value;
#endif
}

/*
 * The arguments of a frame of `code` that has just started, by parameter
 * name (`*args`, `**kwargs` with their stars), read from its fast locals
 * (`frame` as profiled_frame or current_iframe give it) and let go. `self`
 * is shown by its type and address whatever --repr says: its own repr
 * would run on an object its __init__ has not finished.
 */
static void
record_arguments(Thread *t, PyCodeObject *code, void *frame)
{
    if (!ARGS_READABLE || frame == NULL) {
        return;
    }
#if PY_3_11
    PyObject *names = code->co_localsplusnames;
#else
    PyObject *names = code->co_varnames;
#endif
    Py_ssize_t count = code->co_argcount + code->co_kwonlyargcount;
    Py_ssize_t all = count + ((code->co_flags & CO_VARARGS) != 0) +
                     ((code->co_flags & CO_VARKEYWORDS) != 0);
    if (names == NULL || !PyTuple_Check(names) || PyTuple_GET_SIZE(names) < all) {
        return;
    }
    Text members = {0};
    for (Py_ssize_t i = 0; i < all; i++) {
        PyObject *name = PyTuple_GET_ITEM(names, i);
        const char *prefix = "";
        if (i == count && (code->co_flags & CO_VARARGS)) {
            prefix = "*";
        } else if (i >= count) {
            prefix = "**";
        }
        int is_self = i == 0 && code->co_argcount > 0 &&
                      PyUnicode_CompareWithASCIIString(name, "self") == 0;
        put_member(&members, name, prefix, argument_value(code, frame, i), is_self);
    }
    if (members.data != NULL) {
        send_values(t, &members);
        free(members.data);
    }
}

/* What a frame returns (`return`) or yields (`yield`), before its end event. */
static void
record_result(Thread *t, const char *label, PyObject *value)
{
    PyObject *name = PyUnicode_FromString(label);
    if (name == NULL) {
        PyErr_Clear();
        return;
    }
    Text members = {0};
    put_member(&members, name, "", value, 0);
    Py_DECREF(name);
    if (members.data != NULL) {
        send_values(t, &members);
        free(members.data);
    }
}

/* StopIteration and its kin are how iteration ends, not errors. */
static int
is_iteration_exception(PyObject *exception)
{
    return PyErr_GivenExceptionMatches(exception, PyExc_StopIteration) ||
           PyErr_GivenExceptionMatches(exception, PyExc_StopAsyncIteration) ||
           PyErr_GivenExceptionMatches(exception, PyExc_GeneratorExit);
}

/* An exception's message, as the `exception` record holds it. */
static void
text_exception_message(Text *t, PyObject *exception)
{
    if (D.repr) {
        Thread *thread = current_thread();
        int paused = thread->paused;
        thread->paused = 1;
        PyObject *saved_type, *saved_value, *saved_tb;
        PyErr_Fetch(&saved_type, &saved_value, &saved_tb);
        PyObject *str = PyObject_Str(exception);
        if (str != NULL) {
            Py_ssize_t n = PyUnicode_GET_LENGTH(str);
            PyObject *part = n > VALUE_TEXT_MAX ? PyUnicode_Substring(str, 0, VALUE_TEXT_MAX)
                                                : (Py_INCREF(str), str);
            text_put_str(t, part);
            Py_XDECREF(part);
            Py_DECREF(str);
            PyErr_Restore(saved_type, saved_value, saved_tb);
            thread->paused = paused;
            return;
        }
        PyErr_Clear();
        PyErr_Restore(saved_type, saved_value, saved_tb);
        thread->paused = paused;
    }
    PyObject *args = ((PyBaseExceptionObject *)exception)->args;
    if (args == NULL || !PyTuple_Check(args) || PyTuple_GET_SIZE(args) == 0) {
        return;
    }
    if (PyTuple_GET_SIZE(args) > 1) {
        text_value(t, args, 0);
        return;
    }
    PyObject *only = PyTuple_GET_ITEM(args, 0);
    if (PyUnicode_CheckExact(only) && PyUnicode_GET_LENGTH(only) <= VALUE_TEXT_MAX) {
        text_put_str(t, only);
    } else {
        text_value(t, only, 0);
    }
}

/*
 * Whether `exception`, entering the frame of `code`, starts there as far
 * as the trace is concerned: raised in it (its traceback has this frame
 * only), or coming from code that is not recorded.
 */
static int
starts_here(PyObject *exception, PyObject *tb)
{
    if (tb == NULL) {
        tb = ((PyBaseExceptionObject *)exception)->traceback;
    }
    if (tb == NULL || !PyTraceBack_Check(tb) || ((PyTracebackObject *)tb)->tb_next == NULL) {
        return 1;
    }
    PyFrameObject *next = ((PyTracebackObject *)tb)->tb_next->tb_frame;
    if (next == NULL) {
        return 1;
    }
#if PY_3_9
    PyCodeObject *code = PyFrame_GetCode(next);
    CodeInfo *info = code_info((PyObject *)code);
    Py_DECREF(code);
#else
    CodeInfo *info = code_info((PyObject *)next->f_code);
#endif
    return info == NULL || info->id == 0;
}

/*
 * An exception enters a recorded frame of `code` at `line`: its raise, if
 * it starts there. `tb` is its traceback so far, or NULL for the one it
 * holds: before 3.12 an exception's __traceback__ is set only once it is
 * caught, and the trace function is given the traceback apart.
 */
static void
record_raise(Thread *t, PyCodeObject *code, int line, PyObject *exception, PyObject *tb)
{
    if (!PyExceptionInstance_Check(exception) || is_iteration_exception(exception) ||
        !starts_here(exception, tb)) {
        return;
    }
    PyBaseExceptionObject *base = (PyBaseExceptionObject *)exception;
    PyObject *context = base->context != NULL ? base->context : base->cause;
    uint32_t id = ++D.exception_count;
    Text text = {0};
    text_type_name(&text, Py_TYPE(exception));
    size_t type_end = text.len;
    text_exception_message(&text, exception);
    if (text.data == NULL) {
        return;
    }
    text_printf(RECORDS, "{\"kind\":\"exception\",\"id\":%u,\"type\":", id);
    text_json_bytes(RECORDS, text.data, (Py_ssize_t)type_end);
    text_puts(RECORDS, ",\"message\":");
    text_json_bytes(RECORDS, text.data + type_end, (Py_ssize_t)(text.len - type_end));
    text_puts(RECORDS, ",\"file\":");
    text_json_str(RECORDS, code->co_filename);
    text_printf(RECORDS, ",\"line\":%d,\"context\":%llu}\n", line,
                (unsigned long long)(uintptr_t)context);
    free(text.data);
    emit_ext_event(t, EXT_RAISE, id, (uintptr_t)exception);
}

#if PY_3_12
static void
record_handled(Thread *t, int line, PyObject *exception)
{
    if (!PyExceptionInstance_Check(exception) || is_iteration_exception(exception)) {
        return;
    }
    emit_ext_event(t, EXT_HANDLED, line > 0 ? (uint64_t)line : 0, (uintptr_t)exception);
}

/* The line of the instruction at byte `offset`, or of the first after it
   that has one: a handler's first instructions (PUSH_EXC_INFO) have none. */
static int
code_line(PyCodeObject *code, PyObject *offset)
{
    long at = PyLong_AsLong(offset);
    PyErr_Clear();
    for (int i = 0; i < 16 && at >= 0; i++, at += 2) {
        int line = PyCode_Addr2Line(code, (int)at);
        if (line > 0) {
            return line;
        }
    }
    return 0;
}

static PyObject *
on_raise(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    (void)nargs;
    if (UNLIKELY(!S.active)) {
        Py_RETURN_NONE;
    }
    CodeInfo *info = monitored_code(args[0]);
    Thread *t = current_thread();
    if (info->id && !info->hidden && !t->paused) {
        int line = code_line((PyCodeObject *)args[0], args[1]);
        record_raise(t, (PyCodeObject *)args[0], line, args[2], NULL);
    }
    Py_RETURN_NONE;
}

static PyObject *
on_exception_handled(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    (void)nargs;
    if (UNLIKELY(!S.active)) {
        Py_RETURN_NONE;
    }
    CodeInfo *info = monitored_code(args[0]);
    Thread *t = current_thread();
    if (info->id && !info->hidden && !t->paused) {
        int line = code_line((PyCodeObject *)args[0], args[1]);
        record_handled(t, line, args[2]);
    }
    Py_RETURN_NONE;
}

/* --lines on 3.12+: LINE is a local event, on only in the code objects
   that --lines selects (lines_switch_on), so the rest pays nothing. */
static PyObject *
on_line(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    (void)nargs;
    if (UNLIKELY(!S.active)) {
        Py_RETURN_NONE;
    }
    CodeInfo *info = code_info(args[0]);
    if (UNLIKELY(info == NULL || !info->lines)) {
        return disable();
    }
    Thread *t = current_thread();
    if (LIKELY(!t->paused)) {
        long line = PyLong_AsLong(args[1]);
        emit_ext_event(t, EXT_LINE, line > 0 ? (uint64_t)line : 0, 0);
    }
    Py_RETURN_NONE;
}

/* Called by register_code for the code --lines selects: its LINE events on,
   beside any local events already set for it. */
static void
lines_switch_on(PyCodeObject *code)
{
    if (S.engine != ENGINE_MONITORING || L.line_event == 0) {
        return;
    }
    PyObject *r = call_monitoring("get_local_events", "(iO)", S.tool, (PyObject *)code);
    long mask = r ? PyLong_AsLong(r) : 0;
    Py_XDECREF(r);
    PyErr_Clear();
    monitoring_do(call_monitoring("set_local_events", "(iOl)", S.tool, (PyObject *)code,
                                  mask | L.line_event));
}
#else
/* Before 3.12 line events come from the trace function (trace_details). */
static void
lines_switch_on(PyCodeObject *code)
{
    (void)code;
}
/* f_trace_lines: a field of the frame up to 3.10; 3.11 hides the struct. */
static void
set_trace_lines(PyFrameObject *frame, int on)
{
#if PY_3_11
    static PyObject *name = NULL;
    if (name == NULL && (name = PyUnicode_InternFromString("f_trace_lines")) == NULL) {
        PyErr_Clear();
        return;
    }
    if (PyObject_SetAttr((PyObject *)frame, name, on ? Py_True : Py_False) < 0) {
        PyErr_Clear();
    }
#else
    frame->f_trace_lines = (char)on;
#endif
}

/*
 * The trace function of --exceptions and --lines before 3.12. Line events
 * are off in every frame (f_trace_lines, set at its call and at each
 * resumption), but in the frames of the code --lines selects, and in the
 * frame an exception has just entered: its next line is where the handler
 * starts, if the frame handles it.
 */
static int
trace_details(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg)
{
    Thread *t = (Thread *)obj;
    if (UNLIKELY(!S.active)) {
        return 0;
    }
    switch (what) {
    case PyTrace_CALL: {
        /* The trace function is called before the profile function: the
           code may be new. */
        int lines = L.patterns != NULL && profiled_code(frame_code(frame), frame)->lines;
        set_trace_lines(frame, lines);
        return 0;
    }
    case PyTrace_EXCEPTION: {
        if (!D.exceptions || t->paused || !PyTuple_Check(arg) || PyTuple_GET_SIZE(arg) < 3) {
            return 0;
        }
        CodeInfo *info = profiled_code(frame_code(frame), frame);
        if (info->id == 0 || info->hidden) {
            return 0;
        }
        PyObject *exception = PyTuple_GET_ITEM(arg, 1);
        record_raise(t, frame_code(frame), PyFrame_GetLineNumber(frame), exception,
                     PyTuple_GET_ITEM(arg, 2));
        t->watch_frame = (uintptr_t)frame;
        t->watch_exception = (uintptr_t)exception;
        set_trace_lines(frame, 1);
        return 0;
    }
    case PyTrace_LINE: {
        if ((uintptr_t)frame == t->watch_frame) {
            t->watch_frame = 0;
            if (!t->paused) {
                emit_ext_event(t, EXT_HANDLED, (uint64_t)PyFrame_GetLineNumber(frame),
                               t->watch_exception);
            }
        }
        CodeInfo *info = code_info((PyObject *)frame_code(frame));
        if (info != NULL && info->lines) {
            if (!t->paused) {
                int line = PyFrame_GetLineNumber(frame);
                emit_ext_event(t, EXT_LINE, line > 0 ? (uint64_t)line : 0, 0);
            }
        } else {
            set_trace_lines(frame, 0);
        }
        return 0;
    }
    case PyTrace_RETURN:
        if ((uintptr_t)frame == t->watch_frame) {
            t->watch_frame = 0;
        }
        return 0;
    }
    return 0;
}
#endif

/* Installs the trace function of --exceptions and --lines on the calling thread (before 3.12). */
static void
trace_thread(Thread *t)
{
#if PY_3_12
    (void)t;
#else
    if ((D.exceptions || L.patterns != NULL) && S.engine == ENGINE_PROFILE) {
        /* Through the API, for the interpreter's count of threads that
           trace (it decides whether line events are looked for at all); a
           program's audit hooks see a sys.settrace event. */
        S.switching = 1;
        PyEval_SetTrace(trace_details, (PyObject *)t);
        S.switching = 0;
        PyErr_Clear();
    }
#endif
}

/* details(exceptions, repr, args, returns, lines): what is recorded beyond
   the calls, before start(). `args`, `returns` and `lines` are lists of
   (kind, glob) (--args, --returns, --lines). Returns whether arguments can be read: not on 3.11+
   without the internal headers (ARGS_READABLE). */
static PyObject *pattern_list(PyObject *value, const char *what);

static PyObject *
native_details(PyObject *module, PyObject *args)
{
    (void)module;
    int exceptions = 0, repr = 0;
    PyObject *arg_patterns = NULL, *return_patterns = NULL, *line_patterns = NULL;
    if (!PyArg_ParseTuple(args, "pp|OOO", &exceptions, &repr, &arg_patterns, &return_patterns,
                          &line_patterns)) {
        return NULL;
    }
    PyObject *chosen_args = pattern_list(arg_patterns, "args");
    PyObject *chosen_returns = pattern_list(return_patterns, "returns");
    PyObject *chosen_lines = pattern_list(line_patterns, "lines");
    if (chosen_args == NULL || chosen_returns == NULL || chosen_lines == NULL) {
        Py_XDECREF(chosen_args);
        Py_XDECREF(chosen_returns);
        Py_XDECREF(chosen_lines);
        return NULL;
    }
    D.exceptions = exceptions;
    D.repr = repr;
    /* An empty list selects nothing: NULL spares register_code the look. */
    if (PyList_GET_SIZE(chosen_args) == 0) {
        Py_CLEAR(chosen_args);
    }
    if (PyList_GET_SIZE(chosen_returns) == 0) {
        Py_CLEAR(chosen_returns);
    }
    if (PyList_GET_SIZE(chosen_lines) == 0) {
        Py_CLEAR(chosen_lines);
    }
    Py_XSETREF(L.patterns, chosen_lines);
    Py_XSETREF(V.args, chosen_args);
    Py_XSETREF(V.returns, chosen_returns);
    return PyBool_FromLong(ARGS_READABLE);
}

/* ------------------------------------------------------------------------ */
/* Threads started by the program                                           */
/* ------------------------------------------------------------------------ */

/*
 * `_thread.start_new_thread` (and 3.13's `start_joinable_thread`) is
 * wrapped: the new thread first runs a Trampoline, which gives it its
 * Thread (named after the threading.Thread being started, as the parent
 * saw it) and, with the profile engine, our profile function, then calls
 * the function the program passed. Being C, neither shows in a traceback
 * or in the trace.
 */
typedef struct {
    PyObject_HEAD
    PyObject *function;
    PyObject *name; /* or NULL */
} Trampoline;

static PyObject *
trampoline_call(PyObject *self, PyObject *args, PyObject *kwargs)
{
    Trampoline *tr = (Trampoline *)self;
    Thread *t = NULL;
    if (S.active) {
        PyThreadState *ts = PyThreadState_Get();
        t = thread_new(ts, tr->name);
        if (t == NULL) {
            PyErr_Clear();
        } else if (S.engine == ENGINE_PROFILE && !S.manual) {
            set_profile(ts, profile, (PyObject *)t);
            trace_thread(t);
        }
    }
    PyObject *result = PyObject_Call(tr->function, args, kwargs);
    if (result != NULL || PyErr_ExceptionMatches(PyExc_SystemExit)) {
        return result; /* _thread ignores a SystemExit, silently */
    }
    /*
     * Reported here as _thread itself reports it, naming the program's
     * function (test_thread checks the hook's object and message), not
     * this Trampoline.
     */
#if PY_VERSION_HEX >= 0x030D0000
    PyErr_FormatUnraisable("Exception ignored in thread started by %R", tr->function);
#else
    _PyErr_WriteUnraisableMsg("in thread started by", tr->function);
#endif
    Py_RETURN_NONE;
}

static void
trampoline_dealloc(PyObject *self)
{
    Trampoline *tr = (Trampoline *)self;
    Py_XDECREF(tr->function);
    Py_XDECREF(tr->name);
    PyObject_Free(self);
}

static PyTypeObject TrampolineType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "_panopticon_native.Trampoline",
    .tp_basicsize = sizeof(Trampoline),
    .tp_dealloc = trampoline_dealloc,
    .tp_call = trampoline_call,
    .tp_flags = Py_TPFLAGS_DEFAULT,
};

static void
thread_dealloc(PyObject *self)
{
    PyObject_Free(self);
}

static PyTypeObject ThreadType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "_panopticon_native.Thread",
    .tp_basicsize = sizeof(Thread),
    .tp_dealloc = thread_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
};

/* The name of the threading.Thread whose `_bootstrap` is `function`. */
static PyObject *
starting_thread_name(PyObject *function)
{
    if (function == NULL || !PyMethod_Check(function)) {
        return NULL;
    }
    PyObject **dict = _PyObject_GetDictPtr(PyMethod_GET_SELF(function));
    if (dict == NULL || *dict == NULL) {
        return NULL;
    }
    PyObject *name = PyDict_GetItemString(*dict, "_name");
    return name != NULL && PyUnicode_Check(name) ? name : NULL;
}

/* Calls `real` with its `function` argument (first, or by keyword) wrapped. */
static PyObject *
start_thread_through(PyObject *real, PyObject *args, PyObject *kwargs)
{
    if (real == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "panopticon: no thread starter");
        return NULL;
    }
    PyObject *function = PyTuple_GET_SIZE(args) > 0 ? PyTuple_GET_ITEM(args, 0)
                         : kwargs                  ? PyDict_GetItemString(kwargs, "function")
                                                   : NULL;
    if (function == NULL || !S.active) {
        return PyObject_Call(real, args, kwargs);
    }
    Trampoline *tr = PyObject_New(Trampoline, &TrampolineType);
    if (tr == NULL) {
        return NULL;
    }
    Py_INCREF(function);
    tr->function = function;
    tr->name = starting_thread_name(function);
    Py_XINCREF(tr->name);
    PyObject *result = NULL;
    if (PyTuple_GET_SIZE(args) > 0) {
        PyObject *wrapped = PyTuple_GetSlice(args, 0, PyTuple_GET_SIZE(args));
        if (wrapped != NULL) {
            Py_SETREF(((PyTupleObject *)wrapped)->ob_item[0], (PyObject *)tr);
            Py_INCREF(tr);
            result = PyObject_Call(real, wrapped, kwargs);
            Py_DECREF(wrapped);
        }
    } else {
        PyObject *wrapped = PyDict_Copy(kwargs);
        if (wrapped != NULL && PyDict_SetItemString(wrapped, "function", (PyObject *)tr) == 0) {
            result = PyObject_Call(real, args, wrapped);
        }
        Py_XDECREF(wrapped);
    }
    Py_DECREF(tr);
    return result;
}

static PyObject *
start_new_thread(PyObject *module, PyObject *args, PyObject *kwargs)
{
    (void)module;
    return start_thread_through(S.real_start_new_thread, args, kwargs);
}

static PyObject *
start_joinable_thread(PyObject *module, PyObject *args, PyObject *kwargs)
{
    (void)module;
    return start_thread_through(S.real_start_joinable_thread, args, kwargs);
}

/*
 * A wrapper has the docstring of the function it stands for, with its
 * signature line, and its module as `__self__` (which the signature's
 * `$module` needs): inspect.signature() of the wrapper is the original's
 * (test_inspect checks every builtin of os and _thread has one). Returns
 * the wrapper, a new reference; the C functions ignore their self.
 */
static PyObject *
wrapper_of(PyMethodDef *def, PyObject *real, const char *module_name)
{
    PyObject *self = NULL;
    if (real != NULL && PyCFunction_Check(real)) {
        def->ml_doc = ((PyCFunctionObject *)real)->m_ml->ml_doc;
        self = PyCFunction_GET_SELF(real);
    }
    PyObject *name = PyUnicode_FromString(module_name);
    PyObject *wrapper = name ? PyCFunction_NewEx(def, self, name) : NULL;
    Py_XDECREF(name);
    return wrapper;
}

static PyMethodDef start_new_thread_def = {
    "start_new_thread", (PyCFunction)(void (*)(void))start_new_thread,
    METH_VARARGS | METH_KEYWORDS, NULL};
static PyMethodDef start_joinable_thread_def = {
    "start_joinable_thread", (PyCFunction)(void (*)(void))start_joinable_thread,
    METH_VARARGS | METH_KEYWORDS, NULL};

/* Puts `wrapper` in place of `name` in `module` (and threading's copy). */
static int
wrap_starter(PyObject *thread_module, const char *name, PyMethodDef *def, PyObject **real,
             const char *threading_name)
{
    PyObject *original = PyObject_GetAttrString(thread_module, name);
    if (original == NULL) {
        PyErr_Clear();
        return 0; /* not in this version */
    }
    *real = original;
    PyObject *wrapper = wrapper_of(def, original, "_thread");
    if (wrapper == NULL || PyObject_SetAttrString(thread_module, name, wrapper) < 0) {
        Py_XDECREF(wrapper);
        return -1;
    }
    /* threading copies the function when it is imported: if it was, before us. */
    PyObject *modules = PySys_GetObject("modules");
    PyObject *threading = modules ? PyDict_GetItemString(modules, "threading") : NULL;
    if (threading != NULL) {
        PyObject *copy = PyObject_GetAttrString(threading, threading_name);
        if (copy == original) {
            PyObject_SetAttrString(threading, threading_name, wrapper);
        }
        Py_XDECREF(copy);
        PyErr_Clear();
    }
    Py_DECREF(wrapper);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Marks: what the program itself puts on the timeline                      */
/* ------------------------------------------------------------------------ */

/*
 * A value as JSON: None, booleans, numbers and strings as themselves (a
 * float that is not finite as its repr), dicts, lists and tuples to a depth
 * of 8, anything else as its repr(). repr() may run the program's code: the
 * thread is paused meanwhile, so that none of it is recorded.
 */
static void
json_value(Text *t, PyObject *value, int depth)
{
    if (value == Py_None) {
        text_puts(t, "null");
    } else if (value == Py_True) {
        text_puts(t, "true");
    } else if (value == Py_False) {
        text_puts(t, "false");
    } else if (PyLong_CheckExact(value)) {
        PyObject *digits = PyObject_Str(value);
        if (digits != NULL) {
            Py_ssize_t n;
            const char *s = PyUnicode_AsUTF8AndSize(digits, &n);
            if (s != NULL) {
                text_put(t, s, (size_t)n);
            }
            Py_DECREF(digits);
        }
        if (PyErr_Occurred()) {
            PyErr_Clear();
            text_puts(t, "null");
        }
    } else if (PyFloat_CheckExact(value)) {
        double d = PyFloat_AS_DOUBLE(value);
        char *s = PyOS_double_to_string(d, 'r', 0, 0, NULL);
        if (s == NULL) {
            PyErr_Clear();
            text_puts(t, "null");
        } else if (d == d && d != Py_HUGE_VAL && d != -Py_HUGE_VAL) {
            text_puts(t, s);
        } else {
            text_json_bytes(t, s, (Py_ssize_t)strlen(s));
        }
        PyMem_Free(s);
    } else if (PyUnicode_CheckExact(value)) {
        text_json_str(t, value);
    } else if (depth < 8 && PyDict_Check(value)) {
        text_puts(t, "{");
        Py_ssize_t pos = 0;
        PyObject *key, *item;
        int first = 1;
        while (PyDict_Next(value, &pos, &key, &item)) {
            if (!first) {
                text_puts(t, ",");
            }
            first = 0;
            PyObject *text = PyUnicode_Check(key) ? (Py_INCREF(key), key) : PyObject_Str(key);
            if (text == NULL) {
                PyErr_Clear();
                text_puts(t, "\"?\"");
            } else {
                text_json_str(t, text);
                Py_DECREF(text);
            }
            text_puts(t, ":");
            json_value(t, item, depth + 1);
        }
        text_puts(t, "}");
    } else if (depth < 8 && (PyList_Check(value) || PyTuple_Check(value))) {
        PyObject *items = PySequence_Fast(value, "");
        text_puts(t, "[");
        if (items != NULL) {
            for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(items); i++) {
                if (i) {
                    text_puts(t, ",");
                }
                json_value(t, PySequence_Fast_GET_ITEM(items, i), depth + 1);
            }
            Py_DECREF(items);
        }
        PyErr_Clear();
        text_puts(t, "]");
    } else {
        PyObject *repr = PyObject_Repr(value);
        if (repr == NULL) {
            PyErr_Clear();
            text_printf(t, "\"<%s>\"", Py_TYPE(value)->tp_name);
        } else {
            text_json_str(t, repr);
            Py_DECREF(repr);
        }
    }
}

/* A `mark` record; returns its id. */
static uint32_t
define_mark(Thread *t, const char *category, PyObject *name, PyObject *args)
{
    uint32_t id = ++S.mark_count;
    Text text = {0};
    int paused = t->paused;
    t->paused = 1;
    text_printf(&text, "{\"kind\":\"mark\",\"id\":%u,\"name\":", id);
    PyObject *name_text = PyUnicode_Check(name) ? (Py_INCREF(name), name) : PyObject_Str(name);
    if (name_text == NULL) {
        PyErr_Clear();
        text_puts(&text, "\"?\"");
    } else {
        text_json_str(&text, name_text);
        Py_DECREF(name_text);
    }
    text_puts(&text, ",\"category\":");
    text_json_bytes(&text, category, (Py_ssize_t)strlen(category));
    text_puts(&text, ",\"args\":");
    if (args != NULL && PyDict_Check(args)) {
        json_value(&text, args, 0);
    } else {
        text_puts(&text, "{}");
    }
    text_puts(&text, "}\n");
    t->paused = paused;
    if (text.data != NULL) {
        text_put(RECORDS, text.data, text.len);
        free(text.data);
    }
    return id;
}

/* The collector's own notice on the calling thread's timeline, with a
   `stop` after it when recording of the thread ends there. */
static void
notice(Thread *t, const char *name, const char *by, int stop)
{
    PyObject *title = PyUnicode_FromString(name);
    PyObject *args = Py_BuildValue("{ss}", "by", by);
    if (title != NULL && args != NULL) {
        uint32_t mark = define_mark(t, "panopticon", title, args);
        emit_ref_event(t, OP_INSTANT, mark);
        if (stop) {
            emit_bare_event(t, OP_STOP);
        }
    }
    Py_XDECREF(title);
    Py_XDECREF(args);
    PyErr_Clear();
}

/* `file:line (function)` of the innermost Python frame of this thread. */
static void
current_place(char *out, size_t size)
{
    snprintf(out, size, "%s", "Python (no frame)");
    PyFrameObject *frame = PyEval_GetFrame();
    if (frame == NULL) {
        return;
    }
    PyCodeObject *code = frame_code(frame);
    const char *file = PyUnicode_Check(code->co_filename) ? PyUnicode_AsUTF8(code->co_filename) : NULL;
    const char *function = PyUnicode_Check(code->co_name) ? PyUnicode_AsUTF8(code->co_name) : NULL;
    if (file != NULL && function != NULL) {
        snprintf(out, size, "%s:%d (%s)", file, PyFrame_GetLineNumber(frame), function);
    }
    PyErr_Clear();
}

/* ------------------------------------------------------------------------ */
/* Guards: the program takes the profiler or the tool id over               */
/* ------------------------------------------------------------------------ */

/*
 * An audit hook in C sees every `sys.setprofile`, cProfile's before 3.12
 * included. When it replaces our profile function on the calling thread,
 * the trace marks the moment with the culprit's place, and recording of the
 * thread stops there; the terminal is told once. (Python has no hook after
 * the change, so recording does not resume when the other tool lets go.)
 * A string comparison per audit event is all it costs.
 */
static void wrap_fork_exec(void);
static int fork_exec_wrapped;

static int
audit_hook(const char *event, PyObject *args, void *data)
{
    (void)data;
    if (event[0] == 'i' && S.follow && !fork_exec_wrapped && strcmp(event, "import") == 0 &&
        PyTuple_Check(args) && PyTuple_GET_SIZE(args) > 0 && PyUnicode_Check(PyTuple_GET_ITEM(args, 0))) {
        PyObject *name = PyTuple_GET_ITEM(args, 0);
        if (PyUnicode_CompareWithASCIIString(name, "subprocess") == 0 ||
            PyUnicode_CompareWithASCIIString(name, "multiprocessing") == 0) {
            wrap_fork_exec();
        }
        return 0;
    }
    if (event[0] != 's' || strcmp(event, "sys.setprofile") != 0 || S.switching || !S.active) {
        return 0;
    }
    PyThreadState *ts = PyThreadState_Get();
    if (ts->c_profilefunc != profile) {
        return 0;
    }
    Thread *t = (Thread *)ts->c_profileobj;
    char where[600];
    current_place(where, sizeof where);
    if (!S.warned_profile) {
        S.warned_profile = 1;
        warn("the program replaced the profile function at %s: recording of thread %llu stopped "
             "there (the trace marks the moment)",
             where, (unsigned long long)t->serial);
    }
    notice(t, "recording stopped: profile function replaced", where, 1);
    return 0;
}

#if PY_3_12
static void
report_tool(const char *name, const char *message, const char *where, int stop)
{
    static int warned = 0;
    if (!warned) {
        warned = 1;
        warn("%s", message);
    }
    notice(current_thread(), name, where, stop);
}

/* Hands our tool id to the program that claims it: recording moves to
   another free id first, and goes on. */
static void
move_tool(PyObject *claimant)
{
    int old = S.tool;
    int free_ids[] = {4, 3, 5, 1, 0, 2};
    int new_tool = -1;
    for (size_t i = 0; i < sizeof free_ids / sizeof free_ids[0]; i++) {
        if (free_ids[i] == old) {
            continue;
        }
        PyObject *owner = call_monitoring("get_tool", "(i)", free_ids[i]);
        int free = owner == Py_None;
        Py_XDECREF(owner);
        PyErr_Clear();
        if (free) {
            new_tool = free_ids[i];
            break;
        }
    }
    char where[600], name[200], message[1200];
    current_place(where, sizeof where);
    PyObject *repr = PyObject_Repr(claimant);
    const char *claim = repr ? PyUnicode_AsUTF8(repr) : "?";
    PyErr_Clear();
    if (new_tool < 0) {
        snprintf(name, sizeof name, "recording stopped: sys.monitoring tool %d claimed", old);
        snprintf(message, sizeof message,
                 "the program claimed sys.monitoring tool %d (as %s) at %s, and no other tool id "
                 "is free: recording stopped there",
                 old, claim ? claim : "?", where);
        report_tool(name, message, where, 1);
        release_tool(old);
        S.active = 0;
        Py_XDECREF(repr);
        return;
    }
    /* Off first: two tools on at once would record every event twice. */
    set_events(old, 0);
    monitoring_do(call_monitoring("use_tool_id", "(is)", new_tool, "panopticon"));
    register_callbacks(new_tool, 1);
    S.tool = new_tool;
    switch_on(S.mask);
    release_tool(old);
    snprintf(name, sizeof name, "recording moved to sys.monitoring tool %d", new_tool);
    snprintf(message, sizeof message,
             "the program claimed sys.monitoring tool %d (as %s) at %s: recording goes on with "
             "tool %d",
             old, claim ? claim : "?", where, new_tool);
    report_tool(name, message, where, 0);
    Py_XDECREF(repr);
}

/* sys.monitoring.use_tool_id, as the program sees it. */
static PyObject *
guarded_use_tool_id(PyObject *module, PyObject *args, PyObject *kwargs)
{
    (void)module;
    PyObject *tool = PyTuple_GET_SIZE(args) > 0 ? PyTuple_GET_ITEM(args, 0) : NULL;
    PyObject *name = PyTuple_GET_SIZE(args) > 1 ? PyTuple_GET_ITEM(args, 1) : Py_None;
    if (tool != NULL && PyLong_Check(tool) && S.active && S.engine == ENGINE_MONITORING &&
        PyLong_AsLong(tool) == S.tool) {
        move_tool(name);
    }
    PyErr_Clear();
    return PyObject_Call(S.real_use_tool_id, args, kwargs);
}

static PyMethodDef use_tool_id_def = {
    "use_tool_id", (PyCFunction)(void (*)(void))guarded_use_tool_id, METH_VARARGS | METH_KEYWORDS,
    NULL};

/* At each flush and at exit: our tool id changed under us without a claim? */
static void
check_tool(const char *when)
{
    if (!S.active || S.meddled || S.engine != ENGINE_MONITORING) {
        return;
    }
    PyObject *owner = call_monitoring("get_tool", "(i)", S.tool);
    int ours = owner != NULL && PyUnicode_Check(owner) &&
               PyUnicode_CompareWithASCIIString(owner, "panopticon") == 0;
    Py_XDECREF(owner);
    PyErr_Clear();
    if (ours && reported_events(S.tool) == S.reported_mask) {
        return;
    }
    S.meddled = 1;
    char name[200], message[600];
    snprintf(name, sizeof name, "sys.monitoring tool %d changed", S.tool);
    snprintf(message, sizeof message,
             "the program changed sys.monitoring tool %d, which Panopticon records with, without "
             "claiming it (noticed %s): the trace may lack events from then on",
             S.tool, when);
    report_tool(name, message, when, 0);
}
#else
static void
check_tool(const char *when)
{
    (void)when;
}
#endif

/* ------------------------------------------------------------------------ */
/* Starting and stopping                                                    */
/* ------------------------------------------------------------------------ */

/* Switches every hook of ours off; recording is over (or paused for good). */
static void
engine_off(void)
{
    if (S.engine == ENGINE_PROFILE) {
        unprofile_all();
    }
#if PY_3_12
    else if (S.engine == ENGINE_MONITORING && S.tool >= 0) {
        release_tool(S.tool);
        S.tool = -1;
    }
#endif
}

/* --max-events reached: nothing more is recorded, and the program runs on
   at full speed. */
static void
limit_reached(Thread *t)
{
    S.active = 0;
    S.events_left = -1;
    /* The writer thread samples no more CPU time: the counters stop with
       the slices (a sample it is taking now is dropped by the converter). */
    R.cpu = 0;
    text_printf(RECORDS, "{\"kind\":\"limit\",\"ts\":%llu,\"events\":%llu,\"thread\":%llu}\n",
                (unsigned long long)S.last_ts, (unsigned long long)S.events,
                (unsigned long long)t->serial);
    engine_off();
}

/*
 * At the program's first line, `sys.modules` holds what it holds under
 * python, plus `panopticon`: the entry site.py's `import sitecustomize` had
 * to leave for this file (the import system looks it up when the module's
 * code has run) goes now, unless the user's own sitecustomize took it.
 */
static void
forget_sitecustomize(void)
{
    PyObject *modules = PySys_GetObject("modules");
    PyObject *module = modules ? PyDict_GetItemString(modules, "sitecustomize") : NULL;
    if (module == NULL || !PyModule_Check(module) || S.own_file == NULL) {
        return;
    }
    PyObject *file = PyDict_GetItemString(PyModule_GetDict(module), "__file__");
    if (file != NULL && PyUnicode_Check(file) && PyUnicode_Compare(file, S.own_file) == 0) {
        PyDict_DelItemString(modules, "sitecustomize");
    }
    PyErr_Clear();
}

/* The start of recording at the program's <module> (or at once). */
static void
start_recording(void)
{
    S.waiting = 0;
    forget_sitecustomize();
#if PY_3_12
    if (S.engine == ENGINE_MONITORING) {
        PyObject *events = PyObject_GetAttrString(S.monitoring, "events");
        long mask = 0;
        static const char *names[] = {"PY_START", "PY_RESUME", "PY_RETURN", "PY_YIELD",
                                      "PY_UNWIND", "PY_THROW", NULL};
        static const char *c_names[] = {"CALL", "C_RETURN", "C_RAISE", NULL};
        /* Exceptions: these fire only when one is raised or handled. */
        static const char *exception_names[] = {"RAISE", "EXCEPTION_HANDLED", NULL};
        for (int pass = 0; pass < 3 && events != NULL; pass++) {
            const char **list = pass == 0 ? names : pass == 1 ? c_names : exception_names;
            if ((pass == 1 && !S.c_calls) || (pass == 2 && !D.exceptions)) {
                continue;
            }
            for (int i = 0; list[i]; i++) {
                PyObject *bit = PyObject_GetAttrString(events, list[i]);
                if (bit != NULL) {
                    mask |= PyLong_AsLong(bit);
                }
                Py_XDECREF(bit);
            }
        }
        Py_XDECREF(events);
        PyErr_Clear();
        switch_on(mask);
        monitoring_do(call_monitoring("restart_events", "()"));
    }
#endif
}

/* ------------------------------------------------------------------------ */
/* The module's functions                                                   */
/* ------------------------------------------------------------------------ */

/* A connection to the converter's socket, or -1 (errno set). */
static int
connect_channel(const char *path)
{
    struct sockaddr_un address;
    memset(&address, 0, sizeof address);
    address.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof address.sun_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    strcpy(address.sun_path, path);
    /* CLOEXEC: a program that execs hands it nothing; an exec'd Python
       connects anew. */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    int r;
    do {
        r = connect(fd, (struct sockaddr *)&address, sizeof address);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
        int error = errno;
        close(fd);
        errno = error;
        return -1;
    }
    return fd;
}

static PyObject *
native_open(PyObject *module, PyObject *arg)
{
    (void)module;
    const char *path = PyUnicode_AsUTF8(arg);
    if (path == NULL) {
        return NULL;
    }
    int fd = connect_channel(path);
    if (fd < 0) {
        return PyErr_SetFromErrnoWithFilename(PyExc_OSError, path);
    }
    S.fd = fd;
    free(S.channel_path);
    S.channel_path = strdup(path);
    Py_RETURN_NONE;
}

static PyObject *
native_send(PyObject *module, PyObject *arg)
{
    (void)module;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    int r = -1;
    if (S.fd >= 0) {
        struct iovec iov = {view.buf, (size_t)view.len};
        r = write_all(&iov, 1);
    }
    int error = errno;
    PyBuffer_Release(&view);
    if (r < 0) {
        errno = S.fd < 0 ? EBADF : error;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

static PyObject *
native_now(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    return PyLong_FromUnsignedLongLong(clock_now());
}

static PyObject *
native_clock(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    return PyUnicode_FromString(use_tsc ? "tsc" : "monotonic");
}

/* A filter list from Python: a list of 2-tuples of str. */
static PyObject *
pattern_list(PyObject *value, const char *what)
{
    if (value == NULL || value == Py_None) {
        return PyList_New(0);
    }
    PyObject *list = PySequence_List(value);
    if (list == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(list); i++) {
        PyObject *item = PyList_GET_ITEM(list, i);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2 ||
            !PyUnicode_Check(PyTuple_GET_ITEM(item, 0)) || !PyUnicode_Check(PyTuple_GET_ITEM(item, 1))) {
            Py_DECREF(list);
            PyErr_Format(PyExc_TypeError, "%s: expected (kind, glob) pairs of str", what);
            return NULL;
        }
    }
    return list;
}

/*
 * configure(engine, own_file, include, exclude, stdlib, c_calls, max_events,
 * clock): what to record, before start(). `engine` is "monitoring" or
 * "setprofile"; `stdlib` a tuple of directories (ending in "/") or None.
 * Makes the calling thread (the main thread) thread 1.
 */
static PyObject *
native_configure(PyObject *module, PyObject *args, PyObject *kwargs)
{
    (void)module;
    static char *keywords[] = {"engine",    "own_file",   "include", "exclude", "stdlib",
                               "c_calls",   "max_events", "clock",   NULL};
    const char *engine, *clock = "auto";
    PyObject *own_file, *include = NULL, *exclude = NULL, *stdlib = Py_None;
    int c_calls = 1;
    long long max_events = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "sU|OOOpLs", keywords, &engine, &own_file,
                                     &include, &exclude, &stdlib, &c_calls, &max_events, &clock)) {
        return NULL;
    }
    if (S.started) {
        PyErr_SetString(PyExc_RuntimeError, "configure() after start()");
        return NULL;
    }
    if (strcmp(engine, "monitoring") == 0) {
#if PY_3_12
        S.engine = ENGINE_MONITORING;
#else
        PyErr_SetString(PyExc_ValueError, "the monitoring engine needs Python 3.12 or newer");
        return NULL;
#endif
    } else if (strcmp(engine, "setprofile") == 0) {
        S.engine = ENGINE_PROFILE;
    } else {
        PyErr_Format(PyExc_ValueError, "unknown engine %s", engine);
        return NULL;
    }
    Py_XSETREF(S.include, pattern_list(include, "include"));
    Py_XSETREF(S.exclude, pattern_list(exclude, "exclude"));
    if (S.include == NULL || S.exclude == NULL) {
        return NULL;
    }
    if (stdlib != Py_None) {
        PyObject *dirs = PySequence_Tuple(stdlib);
        if (dirs == NULL) {
            return NULL;
        }
        Py_XSETREF(S.stdlib, dirs);
    }
    Py_INCREF(own_file);
    Py_XSETREF(S.own_file, own_file);
    S.c_calls = c_calls;
    S.filtering = PyList_GET_SIZE(S.include) || PyList_GET_SIZE(S.exclude) || S.stdlib != NULL;
    S.events_left = max_events > 0 ? max_events : -1;
    clock_init(clock);
    S.last_ts = clock_now();
    if (S.batch == NULL && make_batches() < 0) {
        return NULL;
    }
    if (main_thread == NULL) {
        PyObject *name = PyUnicode_FromString("MainThread");
        main_thread = thread_new(PyThreadState_Get(), name);
        Py_XDECREF(name);
        if (main_thread == NULL) {
            return NULL;
        }
    }
    return PyLong_FromUnsignedLongLong(main_thread->serial);
}

#if PY_3_12
static PyMethodDef monitoring_callbacks[];
#endif

/*
 * start(manual): installs the engine. Recording begins at the program's
 * <module> frame; with `manual`, only in record_thread() .. stop_thread().
 * Also wraps the thread starters, and adds the audit hook (profile engine).
 */
static PyObject *
native_start(PyObject *module, PyObject *args)
{
    (void)module;
    int manual = 0;
    if (!PyArg_ParseTuple(args, "|p", &manual)) {
        return NULL;
    }
    if (S.engine == ENGINE_NONE || S.started) {
        PyErr_SetString(PyExc_RuntimeError, "start() needs configure() first, and runs once");
        return NULL;
    }
    S.started = 1;
    S.active = 1;
    S.manual = manual;
    S.waiting = !manual;
    S.handed_at = clock_now();
    start_writer();
    catch_terminate_signals();
    PyObject *thread_module = PyImport_ImportModule("_thread");
    if (thread_module == NULL ||
        wrap_starter(thread_module, "start_new_thread", &start_new_thread_def,
                     &S.real_start_new_thread, "_start_new_thread") < 0 ||
        wrap_starter(thread_module, "start_joinable_thread", &start_joinable_thread_def,
                     &S.real_start_joinable_thread, "_start_joinable_thread") < 0) {
        Py_XDECREF(thread_module);
        return NULL;
    }
    Py_DECREF(thread_module);
    /* The guard on the profile function (setprofile), and following the
       processes the program starts (imports of subprocess). */
    if (PySys_AddAuditHook(audit_hook, NULL) < 0) {
        PyErr_Clear();
    }
    if (S.engine == ENGINE_PROFILE) {
        if (!manual) {
            set_profile(PyThreadState_Get(), wait_for_main, (PyObject *)main_thread);
        }
        Py_RETURN_NONE;
    }
#if PY_3_12
    S.monitoring = PySys_GetObject("monitoring");
    if (S.monitoring == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "no sys.monitoring");
        return NULL;
    }
    Py_INCREF(S.monitoring);
    S.disable = PyObject_GetAttrString(S.monitoring, "DISABLE");
    PyObject *events = PyObject_GetAttrString(S.monitoring, "events");
    if (S.disable == NULL || events == NULL) {
        Py_XDECREF(events);
        return NULL;
    }
    /* Tool ids 3 and 4 have no assigned role. PROFILER_ID (2) would be the
       natural choice, but cProfile claims it on 3.12+, and a program that
       profiles itself must run as it does without us. */
    S.tool = -1;
    for (int tool = 4; tool >= 3; tool--) {
        PyObject *owner = call_monitoring("get_tool", "(i)", tool);
        int free = owner == Py_None;
        Py_XDECREF(owner);
        if (free) {
            S.tool = tool;
            break;
        }
    }
    PyErr_Clear();
    if (S.tool < 0) {
        Py_DECREF(events);
        PyErr_SetString(PyExc_RuntimeError, "the sys.monitoring tool ids 3 and 4 are taken");
        return NULL;
    }
    if (monitoring_do(call_monitoring("use_tool_id", "(is)", S.tool, "panopticon")) < 0) {
        Py_DECREF(events);
        PyErr_SetString(PyExc_RuntimeError, "sys.monitoring.use_tool_id failed");
        return NULL;
    }
    S.callbacks = PyList_New(0);
    for (PyMethodDef *def = monitoring_callbacks; def->ml_name != NULL; def++) {
        PyObject *bit = PyObject_GetAttrString(events, def->ml_doc);
        PyObject *callback = PyCFunction_NewEx(def, module, NULL);
        PyObject *pair = bit && callback ? PyTuple_Pack(2, bit, callback) : NULL;
        if (pair == NULL || PyList_Append(S.callbacks, pair) < 0) {
            Py_XDECREF(bit);
            Py_XDECREF(callback);
            Py_XDECREF(pair);
            Py_DECREF(events);
            return NULL;
        }
        Py_DECREF(bit);
        Py_DECREF(callback);
        Py_DECREF(pair);
    }
    register_callbacks(S.tool, 1);
    PyObject *line_bit = PyObject_GetAttrString(events, "LINE");
    L.line_event = line_bit ? PyLong_AsLong(line_bit) : 0;
    Py_XDECREF(line_bit);
    PyObject *start_bit = PyObject_GetAttrString(events, "PY_START");
    long start_mask = start_bit ? PyLong_AsLong(start_bit) : 0;
    Py_XDECREF(start_bit);
    Py_DECREF(events);
    PyErr_Clear();
    switch_on(start_mask);
    /* The guard: a program that claims our id gets it, and we move. */
    S.real_use_tool_id = PyObject_GetAttrString(S.monitoring, "use_tool_id");
    PyObject *guarded = PyCFunction_NewEx(&use_tool_id_def, NULL, NULL);
    if (S.real_use_tool_id == NULL || guarded == NULL ||
        PyObject_SetAttrString(S.monitoring, "use_tool_id", guarded) < 0) {
        PyErr_Clear();
    }
    Py_XDECREF(guarded);
#endif
    Py_RETURN_NONE;
}

/* Manual recording: the calling thread records from now on. */
static PyObject *
native_record_thread(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    if (!S.active || S.engine != ENGINE_PROFILE) {
        Py_RETURN_NONE;
    }
    PyThreadState *ts = PyThreadState_Get();
    Thread *t = thread_table_get(ts->id);
    if (t == NULL) {
        t = thread_new(ts, threading_name(PyThread_get_thread_ident()));
        if (t == NULL) {
            return NULL;
        }
    }
    /* The last thing the thread does before it records. */
    set_profile(ts, profile, (PyObject *)t);
    Py_RETURN_NONE;
}

/* Manual recording: the calling thread's last event is a `stop`. */
static PyObject *
native_stop_thread(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    PyThreadState *ts = PyThreadState_Get();
    if (ts->c_profilefunc == profile) {
        Thread *t = (Thread *)ts->c_profileobj;
        if (S.active) {
            emit_bare_event(t, OP_STOP);
        }
        set_profile(ts, NULL, NULL);
    }
    Py_RETURN_NONE;
}

/* mark(op, span, name, args): an instant (8), counter (9) or span begin (10). */
static PyObject *
native_mark(PyObject *module, PyObject *args)
{
    (void)module;
    int op;
    unsigned long long span;
    PyObject *name, *values;
    if (!PyArg_ParseTuple(args, "iKOO", &op, &span, &name, &values)) {
        return NULL;
    }
    if (!S.active || (op != OP_INSTANT && op != OP_COUNTER && op != OP_SPAN_BEGIN)) {
        Py_RETURN_NONE;
    }
    Thread *t = current_thread();
    if (S.manual && unchecked_tstate()->c_profilefunc != profile) {
        Py_RETURN_NONE; /* this thread records nothing now */
    }
    uint32_t mark = define_mark(t, "mark", name, values);
    if (op == OP_SPAN_BEGIN) {
        emit_span_event(t, OP_SPAN_BEGIN, span, mark);
    } else {
        emit_ref_event(t, op, mark);
    }
    Py_RETURN_NONE;
}

static PyObject *
native_span_end(PyObject *module, PyObject *arg)
{
    (void)module;
    unsigned long long span = PyLong_AsUnsignedLongLong(arg);
    if (PyErr_Occurred()) {
        return NULL;
    }
    if (S.active && !(S.manual && unchecked_tstate()->c_profilefunc != profile)) {
        emit_span_event(current_thread(), OP_SPAN_END, span, 0);
    }
    Py_RETURN_NONE;
}

/* The process's peak resident memory, from /proc (Linux); 0 if unknown. */
static unsigned long long
max_rss(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    unsigned long long kb = 0;
    if (f != NULL) {
        char line[256];
        while (fgets(line, sizeof line, f)) {
            if (strncmp(line, "VmHWM:", 6) == 0) {
                kb = strtoull(line + 6, NULL, 10);
                break;
            }
        }
        fclose(f);
    }
    return kb * 1024;
}

/* Stops recording for good and sends the rest, then the `end` record. */
static void
finish(const char *reason)
{
    if (S.finished) {
        return;
    }
    S.finished = 1;
    int was_active = S.active;
    if (was_active) {
        check_tool("at exit");
    }
    S.active = 0;
    if (was_active) {
        engine_off();
    }
    if (S.batch == NULL) {
        return; /* never configured */
    }
    /* The last events go as any others, then the writer stops once it has
       sent everything; the `end` record, with what was sent, comes last. */
    finishing = 1;
    hand_over(S.thread ? S.thread : main_thread);
    stop_writer();
    runtime_finish();
    Text end = {0};
    text_printf(&end, "{\"kind\":\"end\",\"ts\":%llu,\"events\":%llu,\"dropped\":%llu,\"reason\":",
                (unsigned long long)clock_now(), (unsigned long long)S.events,
                (unsigned long long)(S.events - S.sent));
    text_json_bytes(&end, reason, (Py_ssize_t)strlen(reason));
    unsigned long long rss = max_rss();
    if (rss) {
        text_printf(&end, ",\"max_rss\":%llu", rss);
    }
    text_puts(&end, "}\n");
    if (end.data != NULL) {
        text_put(RECORDS, end.data, end.len);
        free(end.data);
    }
    if (S.fd >= 0 && !S.broken) {
        send_batch(close_batch());
    }
    if (S.fd >= 0) {
        close(S.fd);
        S.fd = -1;
    }
    finishing = 0;
    if (terminate_signal) {
        die_by(terminate_signal); /* it came while the stream was finishing */
    }
}

static PyObject *
native_finish(PyObject *module, PyObject *args)
{
    (void)module;
    const char *reason = "exit";
    if (!PyArg_ParseTuple(args, "|s", &reason)) {
        return NULL;
    }
    finish(reason);
    Py_RETURN_NONE;
}

/* os._exit, as the program sees it: what was recorded goes out first. */
static PyObject *
native_exit(PyObject *module, PyObject *args, PyObject *kwargs)
{
    (void)module;
    /* A call os._exit would refuse goes straight to it, for its own error. */
    if (PyTuple_GET_SIZE(args) == 1 && (kwargs == NULL || PyDict_GET_SIZE(kwargs) == 0) &&
        PyLong_Check(PyTuple_GET_ITEM(args, 0))) {
        finish("os._exit");
    }
    return PyObject_Call(S.real_exit, args, kwargs);
}

static PyMethodDef exit_def = {"_exit", (PyCFunction)(void (*)(void))native_exit,
                               METH_VARARGS | METH_KEYWORDS, NULL};

/* wrap_exit(real): the os._exit to install. */
static PyObject *
native_wrap_exit(PyObject *module, PyObject *real)
{
    (void)module;
    Py_INCREF(real);
    Py_XSETREF(S.real_exit, real);
    return wrapper_of(&exit_def, real, "posix");
}

/*
 * A process is never forked with the writer thread in it: 3.12+ would warn
 * the program of forking a multi-threaded process, and the child would
 * inherit a lock the thread may hold. So the writer stops before a fork
 * (sending what is queued) and starts again once the fork has returned in
 * the parent: os.fork and os.forkpty are wrapped for that (3.12 and 3.13
 * count the threads after the fork's own at-fork functions, which run the
 * program's Python code). A fork that bypasses them (an extension's) is
 * caught by the at-fork functions, and the writer starts again at the
 * program's next event.
 */
/* A pause_writer is joining the writer, with the GIL let go. */
static int writer_pausing = 0;

/*
 * Two threads may fork at once (test_threading does): the second waits
 * until the first has stopped the writer, rather than join the same thread
 * (the first restarts it after its fork: a second join would wait on the
 * new writer for ever).
 */
static void
pause_writer(void)
{
    while (writer_pausing) {
        Py_BEGIN_ALLOW_THREADS
        usleep(1000);
        Py_END_ALLOW_THREADS
    }
    if (S.started && !S.finished && S.writing) {
        writer_pausing = 1;
        stop_writer();
        S.stopping = 0;
        writer_pausing = 0;
    }
}

static void
resume_writer(void)
{
    if (S.started && !S.finished && !S.writing) {
        start_writer();
    }
}

/* A `spawn` event on the calling thread, inside the call that starts a
   child: its token, which the child's hello names; 0 when not recording. */
static uint64_t
record_spawn(void)
{
    if (!S.active || !S.follow) {
        return 0;
    }
    Thread *t = current_thread();
    if (t->paused || (S.manual && unchecked_tstate()->c_profilefunc != profile)) {
        return 0;
    }
    uint64_t token = ++S.spawn_count;
    emit_ref_event(t, OP_SPAWN, token);
    return token;
}

static PyObject *
native_before_fork(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    S.fork_token = record_spawn();
    pause_writer();
    Py_RETURN_NONE;
}

/* current_serial(): the calling thread's id on the wire. */
static PyObject *
native_current_serial(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    return PyLong_FromUnsignedLongLong(current_thread()->serial);
}

/* fork_token(): the token of the fork in progress, for the child's hello. */
static PyObject *
native_fork_token(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    return PyLong_FromUnsignedLongLong(S.fork_token);
}

/* os.fork and os.forkpty, as the program sees them (see pause_writer). */
static PyObject *
fork_through(PyObject *real, PyObject *args, PyObject *kwargs, int tuple_result)
{
    /* Counted: the writer starts again when the last fork in progress is done. */
    in_fork_wrapper++;
    pause_writer();
    PyObject *result = PyObject_Call(real, args, kwargs);
    in_fork_wrapper--;
    PyObject *pid = result != NULL && tuple_result && PyTuple_Check(result) && PyTuple_GET_SIZE(result)
                        ? PyTuple_GET_ITEM(result, 0)
                        : result;
    if (result != NULL && PyLong_Check(pid) && PyLong_AsLong(pid) == 0) {
        in_fork_wrapper = 0; /* the child: the other threads' forks are not in it */
    } else if (in_fork_wrapper == 0) {
        resume_writer(); /* the parent, or a fork that failed */
    }
    return result;
}

static PyObject *real_fork = NULL, *real_forkpty = NULL;

static PyObject *
wrapped_fork(PyObject *module, PyObject *args, PyObject *kwargs)
{
    (void)module;
    return fork_through(real_fork, args, kwargs, 0);
}

static PyObject *
wrapped_forkpty(PyObject *module, PyObject *args, PyObject *kwargs)
{
    (void)module;
    return fork_through(real_forkpty, args, kwargs, 1);
}

static PyMethodDef fork_def = {"fork", (PyCFunction)(void (*)(void))wrapped_fork,
                               METH_VARARGS | METH_KEYWORDS, NULL};
static PyMethodDef forkpty_def = {"forkpty", (PyCFunction)(void (*)(void))wrapped_forkpty,
                                  METH_VARARGS | METH_KEYWORDS, NULL};

/* wrap_fork(os.fork, os.forkpty or None): the two to install, as a tuple. */
static PyObject *
native_wrap_fork(PyObject *module, PyObject *args)
{
    (void)module;
    PyObject *fork, *forkpty;
    if (!PyArg_ParseTuple(args, "OO", &fork, &forkpty)) {
        return NULL;
    }
    Py_INCREF(fork);
    Py_XSETREF(real_fork, fork);
    PyObject *a = wrapper_of(&fork_def, fork, "posix");
    PyObject *b = Py_None;
    Py_INCREF(b);
    if (a != NULL && forkpty != Py_None) {
        Py_INCREF(forkpty);
        Py_XSETREF(real_forkpty, forkpty);
        Py_SETREF(b, wrapper_of(&forkpty_def, forkpty, "posix"));
    }
    PyObject *pair = a && b ? PyTuple_Pack(2, a, b) : NULL;
    Py_XDECREF(a);
    Py_XDECREF(b);
    return pair;
}

/* In the parent, after a fork: with --no-follow, the trace says the child is
   not traced. */
static PyObject *
native_after_fork_parent(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    if (!in_fork_wrapper && S.started && !S.finished && !S.writing) {
        /* A fork not through os.fork: the next event hands its batch over,
           which starts the writer again (see hand_over). */
        S.end = S.pos;
    }
    if (S.active && !S.follow && !(S.manual && unchecked_tstate()->c_profilefunc != profile)) {
        notice(current_thread(), "fork: the child process is not traced", "os.fork", 0);
    }
    Py_RETURN_NONE;
}

static PyObject *after_fork_child(PyObject *hello);

/*
 * after_fork_child(hello): in a forked child, which must write nothing into
 * its parent's stream. With `hello` (following the child): a stream of its
 * own, on a new connection, that begins with it; recording goes on where it
 * was, the batches the parent had not sent left behind. With None:
 * recording stops, and the converter waits for nothing (the socket is
 * closed).
 */
static PyObject *
native_after_fork_child(PyObject *module, PyObject *hello)
{
    (void)module;
    /* SIGTERM and SIGHUP wait until the writer runs: one that came between
       the hello and the writer's start (Pool.terminate() of a worker just
       forked) ended the process at once, its stream begun and never ended. */
    sigset_t terminating_signals, mask;
    sigemptyset(&terminating_signals);
    sigaddset(&terminating_signals, SIGTERM);
    sigaddset(&terminating_signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &terminating_signals, &mask);
    PyObject *result = after_fork_child(hello);
    pthread_sigmask(SIG_SETMASK, &mask, NULL);
    return result;
}

static PyObject *
after_fork_child(PyObject *hello)
{
    child_unsettled = 0;
    /* Done at the fork already (forked_child_at_fork), unless its handler
       could not be registered. */
    if (S.fd >= 0) {
        close(S.fd);
        S.fd = -1;
    }
    /* The parent's writer thread is not in the child, and its lock may
       have been held at the fork. */
    S.writing = 0;
    S.stopping = 0;
    pthread_mutex_init(&S.lock, NULL);
    pthread_cond_init(&S.wake, NULL);
    pthread_cond_init(&S.freed, NULL);
    S.queue_head = S.queue_tail = NULL;
    S.waiting_for_batch = 0;
    runtime_after_fork_child();
    tasks_after_fork_child();
    terminate_signal = 0; /* the parent's to handle */
    terminating = 0;
    if (S.batch != NULL) {
        begin_batch(S.batch);
    }
    int was_active = S.active && !S.finished;
    if (was_active && hello != Py_None && S.channel_path != NULL && PyBytes_Check(hello)) {
        int fd = connect_channel(S.channel_path);
        struct iovec iov = {PyBytes_AS_STRING(hello), (size_t)PyBytes_GET_SIZE(hello)};
        if (fd >= 0) {
            S.fd = fd;
            if (write_all(&iov, 1) == 0) {
                /* The child's own counts, from nothing. */
                S.events = S.sent = S.dropped = S.batches = 0;
                S.broken = 0;
                S.spawn_count = 0;
                S.last_ts = clock_now();
                begin_batch(S.batch);
                /* The child's stream is read on its own: the code and C
                   functions its events name are defined in it anew. */
                text_put(RECORDS, S.definitions.data, S.definitions.len);
                /* Its threads: only the forking one goes on. */
                Thread *t = current_thread();
                t->native_id = current_native_id();
                announce_thread(t, threading_name(t->ident));
                start_writer();
                S.handed_at = clock_now();
                Py_RETURN_NONE;
            }
            close(fd);
            S.fd = -1;
        }
        warn("cannot connect the forked process %ld to the converter (%s): it runs untraced",
             (long)getpid(), strerror(errno));
    }
    S.active = 0;
    S.finished = 1;
    if (was_active) {
        engine_off();
    }
    Py_RETURN_NONE;
}

/* --- the environment of the processes the program starts ----------------- */

/* Whether `entry` ("NAME=VALUE", as bytes) sets `name`. */
static int
sets(const char *entry, Py_ssize_t length, const char *name)
{
    size_t n = strlen(name);
    return (size_t)length > n && memcmp(entry, name, n) == 0 && entry[n] == '=';
}

/*
 * `entries` (a list of bytes "NAME=VALUE", a process's environment) with
 * the collector's variables in, for a Python child to be traced: the run's
 * channel and settings, `PANOPTICON_SPAWN` (this process and `token`), and
 * the private directory first on PYTHONPATH, the child's own PYTHONPATH
 * kept in PANOPTICON_PYTHONPATH for its collector to put back. A new list.
 */
static PyObject *
with_collector_variables(PyObject *entries, uint64_t token)
{
    PyObject *out = PyList_New(0);
    PyObject *user_path = NULL;
    if (out == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(entries); i++) {
        PyObject *entry = PyList_GET_ITEM(entries, i);
        if (!PyBytes_Check(entry)) {
            continue;
        }
        const char *text = PyBytes_AS_STRING(entry);
        Py_ssize_t length = PyBytes_GET_SIZE(entry);
        if (sets(text, length, "PYTHONPATH")) {
            /* This process's C environment still has the private directory
               first (only the os.environ view is the user's): not theirs. */
            const char *value = text + 11;
            Py_ssize_t size = length - 11;
            Py_ssize_t ours = PyBytes_GET_SIZE(S.private_dir);
            if (size >= ours && memcmp(value, PyBytes_AS_STRING(S.private_dir), ours) == 0 &&
                (size == ours || value[ours] == ':')) {
                value += size == ours ? ours : ours + 1;
                size -= size == ours ? ours : ours + 1;
                if (size == 0) {
                    continue;
                }
            }
            Py_XDECREF(user_path);
            user_path = PyBytes_FromStringAndSize(value, size);
            continue;
        }
        if (length > 11 && memcmp(text, "PANOPTICON_", 11) == 0) {
            continue; /* ours, stale or the parent's own: replaced below */
        }
        if (PyList_Append(out, entry) < 0) {
            goto fail;
        }
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(S.child_env); i++) {
        if (PyList_Append(out, PyList_GET_ITEM(S.child_env, i)) < 0) {
            goto fail;
        }
    }
    char spawn_text[64]; /* PyBytes_FromFormat has no %llu */
    snprintf(spawn_text, sizeof spawn_text, "PANOPTICON_SPAWN=%ld:%llu", (long)getpid(),
             (unsigned long long)token);
    PyObject *spawn = PyBytes_FromString(spawn_text);
    PyObject *path = user_path != NULL && PyBytes_GET_SIZE(user_path) > 0
                         ? PyBytes_FromFormat("PYTHONPATH=%s:%s", PyBytes_AS_STRING(S.private_dir),
                                              PyBytes_AS_STRING(user_path))
                         : PyBytes_FromFormat("PYTHONPATH=%s", PyBytes_AS_STRING(S.private_dir));
    PyObject *saved = user_path != NULL
                          ? PyBytes_FromFormat("PANOPTICON_PYTHONPATH=%s", PyBytes_AS_STRING(user_path))
                          : (Py_INCREF(Py_None), Py_None);
    int ok = spawn && path && saved && PyList_Append(out, spawn) == 0 &&
             PyList_Append(out, path) == 0 && (saved == Py_None || PyList_Append(out, saved) == 0);
    Py_XDECREF(spawn);
    Py_XDECREF(path);
    Py_XDECREF(saved);
    Py_XDECREF(user_path);
    if (!ok) {
        Py_DECREF(out);
        return NULL;
    }
    return out;
fail:
    Py_XDECREF(user_path);
    Py_DECREF(out);
    return NULL;
}

extern char **environ;

/* This process's own environment, the C one, as a list of bytes. */
static PyObject *
current_environment(void)
{
    PyObject *list = PyList_New(0);
    for (char **entry = environ; list != NULL && entry != NULL && *entry != NULL; entry++) {
        PyObject *bytes = PyBytes_FromString(*entry);
        if (bytes == NULL || PyList_Append(list, bytes) < 0) {
            Py_XDECREF(bytes);
            Py_CLEAR(list);
            break;
        }
        Py_DECREF(bytes);
    }
    return list;
}

/* A mapping of str or bytes (os.execve's and os.posix_spawn's `env`) as a
   list of bytes "NAME=VALUE", and back into the kind it was. */
static PyObject *
mapping_entries(PyObject *mapping, int *as_str)
{
    PyObject *items = PyMapping_Items(mapping);
    if (items == NULL) {
        return NULL;
    }
    PyObject *list = PyList_New(0);
    *as_str = 1;
    for (Py_ssize_t i = 0; list != NULL && i < PyList_GET_SIZE(items); i++) {
        PyObject *pair = PyList_GET_ITEM(items, i);
        PyObject *key = PyTuple_GET_ITEM(pair, 0), *value = PyTuple_GET_ITEM(pair, 1);
        PyObject *entry = NULL;
        if (PyUnicode_Check(key) && PyUnicode_Check(value)) {
            PyObject *k = PyUnicode_EncodeFSDefault(key), *v = PyUnicode_EncodeFSDefault(value);
            entry = k && v ? PyBytes_FromFormat("%s=%s", PyBytes_AS_STRING(k), PyBytes_AS_STRING(v))
                           : NULL;
            Py_XDECREF(k);
            Py_XDECREF(v);
        } else if (PyBytes_Check(key) && PyBytes_Check(value)) {
            *as_str = 0;
            entry = PyBytes_FromFormat("%s=%s", PyBytes_AS_STRING(key), PyBytes_AS_STRING(value));
        } else {
            continue; /* the real function will refuse it, with its own message */
        }
        if (entry == NULL || PyList_Append(list, entry) < 0) {
            Py_CLEAR(list);
        }
        Py_XDECREF(entry);
    }
    Py_DECREF(items);
    return list;
}

static PyObject *
entries_mapping(PyObject *entries, int as_str)
{
    PyObject *mapping = PyDict_New();
    for (Py_ssize_t i = 0; mapping != NULL && i < PyList_GET_SIZE(entries); i++) {
        PyObject *entry = PyList_GET_ITEM(entries, i);
        const char *text = PyBytes_AS_STRING(entry);
        const char *eq = strchr(text, '=');
        if (eq == NULL) {
            continue;
        }
        PyObject *key = as_str ? PyUnicode_DecodeFSDefaultAndSize(text, eq - text)
                               : PyBytes_FromStringAndSize(text, eq - text);
        PyObject *value = as_str ? PyUnicode_DecodeFSDefault(eq + 1) : PyBytes_FromString(eq + 1);
        if (key == NULL || value == NULL || PyDict_SetItem(mapping, key, value) < 0) {
            Py_CLEAR(mapping);
        }
        Py_XDECREF(key);
        Py_XDECREF(value);
    }
    return mapping;
}

/* `args` with item `index` (an environment mapping) given the collector's
   variables; a new tuple, or `args` itself when there is nothing to do. */
static PyObject *
args_with_env_mapping(PyObject *args, Py_ssize_t index, uint64_t token)
{
    if (!S.follow || S.child_env == NULL || PyTuple_GET_SIZE(args) <= index) {
        Py_INCREF(args);
        return args;
    }
    /* None (os.posix_spawn accepts it from 3.13) is this process's own. */
    PyObject *given = PyTuple_GET_ITEM(args, index);
    int as_str = 0;
    PyObject *entries = given == Py_None ? current_environment() : mapping_entries(given, &as_str);
    PyObject *ours = entries ? with_collector_variables(entries, token) : NULL;
    PyObject *mapping = ours ? entries_mapping(ours, as_str) : NULL;
    Py_XDECREF(entries);
    Py_XDECREF(ours);
    PyObject *copy = mapping ? PyTuple_GetSlice(args, 0, PyTuple_GET_SIZE(args)) : NULL;
    if (copy == NULL) {
        Py_XDECREF(mapping);
        PyErr_Clear();
        Py_INCREF(args);
        return args; /* the child goes untraced rather than the call failing */
    }
    Py_SETREF(((PyTupleObject *)copy)->ob_item[index], mapping);
    return copy;
}

static PyObject *real_execv = NULL, *real_execve = NULL, *real_posix_spawn = NULL,
                *real_posix_spawnp = NULL, *real_fork_exec = NULL;

/* os.execv and os.execve: the stream ends first (`end`, reason "exec"); a
   Python that the new program is sends its own. */
/* Whether an exec of args[0] can succeed: one that fails raises, and the
   program goes on, so only one that can run ends the stream. */
static int
exec_will_run(PyObject *args)
{
    PyObject *path = NULL;
    if (PyTuple_GET_SIZE(args) < 1 || !PyUnicode_FSConverter(PyTuple_GET_ITEM(args, 0), &path)) {
        PyErr_Clear();
        return 0;
    }
    int runs = access(PyBytes_AS_STRING(path), X_OK) == 0;
    Py_DECREF(path);
    return runs;
}

static PyObject *
wrapped_execv(PyObject *module, PyObject *args, PyObject *kwargs)
{
    (void)module;
    if (exec_will_run(args)) {
        finish("exec");
        /* The new program inherits this environment: it records again
           (collector.py, _TRACED_MARK). */
        unsetenv("PANOPTICON_TRACED_PID");
    }
    return PyObject_Call(real_execv, args, kwargs);
}

static PyObject *
wrapped_execve(PyObject *module, PyObject *args, PyObject *kwargs)
{
    (void)module;
    PyObject *call = args_with_env_mapping(args, 2, 0);
    if (exec_will_run(args)) {
        finish("exec");
    }
    PyObject *result = PyObject_Call(real_execve, call, kwargs);
    Py_DECREF(call);
    return result;
}

static PyObject *
spawn_through(PyObject *real, PyObject *args, PyObject *kwargs)
{
    uint64_t token = record_spawn();
    PyObject *call = args_with_env_mapping(args, 2, token);
    PyObject *result = PyObject_Call(real, call, kwargs);
    Py_DECREF(call);
    return result;
}

static PyObject *
wrapped_posix_spawn(PyObject *module, PyObject *args, PyObject *kwargs)
{
    (void)module;
    return spawn_through(real_posix_spawn, args, kwargs);
}

static PyObject *
wrapped_posix_spawnp(PyObject *module, PyObject *args, PyObject *kwargs)
{
    (void)module;
    return spawn_through(real_posix_spawnp, args, kwargs);
}

/*
 * _posixsubprocess.fork_exec, which subprocess and multiprocessing start
 * their children with: its `env_list` (the sixth argument, in every
 * version: a list of bytes, or None for this process's own) gets the
 * collector's variables.
 */
static PyObject *
wrapped_fork_exec(PyObject *module, PyObject *args, PyObject *kwargs)
{
    (void)module;
    uint64_t token = record_spawn();
    if (!S.follow || S.child_env == NULL || PyTuple_GET_SIZE(args) <= 5) {
        return PyObject_Call(real_fork_exec, args, kwargs);
    }
    PyObject *given = PyTuple_GET_ITEM(args, 5);
    PyObject *entries = given == Py_None ? current_environment()
                        : PyList_Check(given) ? (Py_INCREF(given), given)
                                              : PySequence_List(given);
    PyObject *ours = entries ? with_collector_variables(entries, token) : NULL;
    Py_XDECREF(entries);
    PyObject *call = ours ? PyTuple_GetSlice(args, 0, PyTuple_GET_SIZE(args)) : NULL;
    if (call == NULL) {
        Py_XDECREF(ours);
        PyErr_Clear();
        return PyObject_Call(real_fork_exec, args, kwargs);
    }
    Py_SETREF(((PyTupleObject *)call)->ob_item[5], ours);
    PyObject *result = PyObject_Call(real_fork_exec, call, kwargs);
    Py_DECREF(call);
    return result;
}

#define WRAPPER(name, function) \
    {name, (PyCFunction)(void (*)(void))function, METH_VARARGS | METH_KEYWORDS, NULL}
static PyMethodDef execv_def = WRAPPER("execv", wrapped_execv);
static PyMethodDef execve_def = WRAPPER("execve", wrapped_execve);
static PyMethodDef posix_spawn_def = WRAPPER("posix_spawn", wrapped_posix_spawn);
static PyMethodDef posix_spawnp_def = WRAPPER("posix_spawnp", wrapped_posix_spawnp);
static PyMethodDef fork_exec_def = WRAPPER("fork_exec", wrapped_fork_exec);

/* Puts a wrapper (named as the original, of `module_name`) in place of
   `module.name`, keeping the original in *real. */
static void
wrap_attribute(PyObject *module, const char *name, PyMethodDef *def, PyObject **real,
               const char *module_name)
{
    PyObject *original = PyObject_GetAttrString(module, name);
    if (original == NULL) {
        PyErr_Clear();
        return;
    }
    PyObject *owner = PyUnicode_FromString(module_name);
    PyObject *wrapper = owner ? PyCFunction_NewEx(def, NULL, owner) : NULL;
    if (wrapper != NULL && PyObject_SetAttrString(module, name, wrapper) == 0) {
        Py_XSETREF(*real, original);
    } else {
        Py_DECREF(original);
    }
    Py_XDECREF(owner);
    Py_XDECREF(wrapper);
    PyErr_Clear();
}

static int fork_exec_wrapped = 0;

/* subprocess (or multiprocessing) is being imported: its _posixsubprocess,
   which it imports next, gets the wrapped fork_exec first. */
static void
wrap_fork_exec(void)
{
    if (fork_exec_wrapped || !S.follow) {
        return;
    }
    fork_exec_wrapped = 1;
    PyObject *module = PyImport_ImportModule("_posixsubprocess");
    if (module == NULL) {
        PyErr_Clear();
        return;
    }
    wrap_attribute(module, "fork_exec", &fork_exec_def, &real_fork_exec, "_posixsubprocess");
    Py_DECREF(module);
}

/*
 * follow(os_module, child_env, private_dir): follow the processes the
 * program starts. `child_env` is the collector's variables for a child (a
 * list of bytes "NAME=VALUE"), `private_dir` (bytes) the directory that
 * must come first on a child's PYTHONPATH. Wraps os.execv, os.execve,
 * os.posix_spawn and os.posix_spawnp, and, once subprocess is imported,
 * _posixsubprocess.fork_exec.
 */
static PyObject *
native_follow(PyObject *module, PyObject *args)
{
    (void)module;
    PyObject *os, *env, *dir;
    if (!PyArg_ParseTuple(args, "OOO", &os, &env, &dir)) {
        return NULL;
    }
    /* Without `child_env` (--no-follow), an exec still ends the stream. */
    if (env != Py_None && PyList_Check(env) && PyBytes_Check(dir)) {
        Py_INCREF(env);
        Py_XSETREF(S.child_env, env);
        Py_INCREF(dir);
        Py_XSETREF(S.private_dir, dir);
        S.follow = 1;
    }
    wrap_attribute(os, "execv", &execv_def, &real_execv, "posix");
    wrap_attribute(os, "execve", &execve_def, &real_execve, "posix");
    wrap_attribute(os, "posix_spawn", &posix_spawn_def, &real_posix_spawn, "posix");
    wrap_attribute(os, "posix_spawnp", &posix_spawnp_def, &real_posix_spawnp, "posix");
    PyObject *modules = PySys_GetObject("modules");
    if (modules != NULL && PyDict_GetItemString(modules, "subprocess") != NULL) {
        wrap_fork_exec();
    }
    Py_RETURN_NONE;
}

static PyObject *
native_stats(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    return Py_BuildValue(
        "{sKsKsKsKsIsIsKsssssi}", "events", (unsigned long long)S.events, "sent",
        (unsigned long long)S.sent, "dropped", (unsigned long long)S.dropped, "batches",
        (unsigned long long)S.batches, "codes", S.code_count, "cfuncs", S.cfunc_count, "threads",
        (unsigned long long)S.thread_count, "engine",
        S.engine == ENGINE_MONITORING ? "monitoring" : S.engine == ENGINE_PROFILE ? "setprofile" : "",
        "clock", use_tsc ? "tsc" : "monotonic", "tool", S.engine == ENGINE_MONITORING ? S.tool : -1);
}

/*
 * encode_batch(ts, thread, events): the bytes of a batch frame whose record
 * says `ts` and `thread`, for `events`, a list of (op, thread, ts, frame,
 * ref, span) with absolute times, as the hot path writes them (with the
 * same functions), for the shared protocol fixtures.
 */
static PyObject *
native_encode_batch(PyObject *module, PyObject *args)
{
    (void)module;
    unsigned long long thread, last;
    PyObject *list;
    if (!PyArg_ParseTuple(args, "KKO", &last, &thread, &list)) {
        return NULL;
    }
    PyObject *events = PySequence_Fast(list, "encode_batch() takes a list of events");
    if (events == NULL) {
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(events);
    uint8_t *buf = malloc((size_t)n * EVENT_MAX_BYTES + 1);
    if (buf == NULL) {
        Py_DECREF(events);
        return PyErr_NoMemory();
    }
    uint8_t *p = buf;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned long long op, th, ts, frame, ref, span;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(events, i), "KKKKKK", &op, &th, &ts, &frame,
                              &ref, &span)) {
            free(buf);
            Py_DECREF(events);
            return NULL;
        }
        if (th != thread) {
            *p++ = OP_THREAD;
            p = put_varint(p, th);
            thread = th;
        }
        uint64_t dt = ts > last ? ts - last : 0;
        last += dt;
        uint8_t *opb = p++;
        *opb = (uint8_t)op;
        p = put_varint(p, dt);
        switch (op) {
        case OP_CALL:
        case OP_RESUME:
            p = put_varint(p, ref);
            break;
        case OP_C_CALL:
        case OP_INSTANT:
        case OP_COUNTER:
            p = put_varint(p, ref);
            break;
        case OP_SPAN_BEGIN:
            p = put_varint(p, span);
            p = put_varint(p, ref);
            break;
        case OP_SPAN_END:
            p = put_varint(p, span);
            break;
        default:
            break;
        }
        if (frame && op <= OP_SUSPEND) {
            p = put_frame(p, opb, (uintptr_t)frame);
        }
    }
    Py_DECREF(events);
    PyObject *bytes = PyBytes_FromStringAndSize((const char *)buf, p - buf);
    free(buf);
    return bytes;
}

/* glob_match(pattern, text): the filters' matcher, for tests against fnmatch. */
static PyObject *
native_glob_match(PyObject *module, PyObject *args)
{
    (void)module;
    PyObject *pattern, *text;
    if (!PyArg_ParseTuple(args, "UU", &pattern, &text)) {
        return NULL;
    }
    return PyBool_FromLong(glob_matches(pattern, text));
}

#if PY_3_12
/* The callbacks; ml_doc names the event each is registered for. */
static PyMethodDef monitoring_callbacks[] = {
    {"py_start", (PyCFunction)(void (*)(void))on_py_start, METH_FASTCALL, "PY_START"},
    {"py_resume", (PyCFunction)(void (*)(void))on_py_resume, METH_FASTCALL, "PY_RESUME"},
    {"py_throw", (PyCFunction)(void (*)(void))on_py_throw, METH_FASTCALL, "PY_THROW"},
    {"py_return", (PyCFunction)(void (*)(void))on_py_return, METH_FASTCALL, "PY_RETURN"},
    {"py_yield", (PyCFunction)(void (*)(void))on_py_yield, METH_FASTCALL, "PY_YIELD"},
    {"py_unwind", (PyCFunction)(void (*)(void))on_py_unwind, METH_FASTCALL, "PY_UNWIND"},
    {"call", (PyCFunction)(void (*)(void))on_call, METH_FASTCALL, "CALL"},
    {"c_return", (PyCFunction)(void (*)(void))on_c_return, METH_FASTCALL, "C_RETURN"},
    {"c_raise", (PyCFunction)(void (*)(void))on_c_raise, METH_FASTCALL, "C_RAISE"},
    {"raise", (PyCFunction)(void (*)(void))on_raise, METH_FASTCALL, "RAISE"},
    {"exception_handled", (PyCFunction)(void (*)(void))on_exception_handled, METH_FASTCALL,
     "EXCEPTION_HANDLED"},
    {"line", (PyCFunction)(void (*)(void))on_line, METH_FASTCALL, "LINE"},
    {NULL, NULL, 0, NULL},
};
#endif

static PyMethodDef native_methods[] = {
    {"open", native_open, METH_O, "open(path): connect to the converter's Unix socket."},
    {"send", native_send, METH_O, "send(data): write bytes to the channel (the hello)."},
    {"now", native_now, METH_NOARGS, "now(): the collector's clock, in ns (CLOCK_MONOTONIC)."},
    {"clock", native_clock, METH_NOARGS, "clock(): \"tsc\" or \"monotonic\"."},
    {"details", native_details, METH_VARARGS,
     "details(exceptions, repr, args, returns): what is recorded beyond the calls, before "
     "start()."},
    {"configure", (PyCFunction)(void (*)(void))native_configure, METH_VARARGS | METH_KEYWORDS,
     "configure(engine, own_file, include, exclude, stdlib, c_calls, max_events, clock): the "
     "main thread's id."},
    {"start", native_start, METH_VARARGS, "start(manual=False): install the engine."},
    {"record_thread", native_record_thread, METH_NOARGS, "Manual mode: record the calling thread."},
    {"stop_thread", native_stop_thread, METH_NOARGS, "Manual mode: stop recording the calling thread."},
    {"mark", native_mark, METH_VARARGS, "mark(op, span, name, args): an instant, counter or span."},
    {"span_end", native_span_end, METH_O, "span_end(span): a span closes."},
    {"finish", native_finish, METH_VARARGS, "finish(reason='exit'): the end of recording."},
    {"wrap_exit", native_wrap_exit, METH_O, "wrap_exit(os._exit): the os._exit to install."},
    {"before_fork", native_before_fork, METH_NOARGS, "os.register_at_fork hook."},
    {"wrap_fork", native_wrap_fork, METH_VARARGS,
     "wrap_fork(os.fork, os.forkpty or None): the two to install."},
    {"after_fork_parent", native_after_fork_parent, METH_NOARGS, "os.register_at_fork hook."},
    {"after_fork_child", native_after_fork_child, METH_O,
     "after_fork_child(hello or None): in a forked child, follow it (a new stream) or stop."},
    {"fork_token", native_fork_token, METH_NOARGS, "The spawn token of the fork in progress."},
    {"current_serial", native_current_serial, METH_NOARGS, "The calling thread's id on the wire."},
    {"follow", native_follow, METH_VARARGS,
     "follow(os, child_env, private_dir): trace the processes the program starts."},
    {"stats", native_stats, METH_NOARGS, "stats(): what was recorded so far."},
    {"runtime", native_runtime, METH_VARARGS,
     "runtime(gc_callbacks or None, cpu_counters, tasks=True): record collections, CPU time "
     "and asyncio tasks."},
    {"encode_batch", native_encode_batch, METH_VARARGS,
     "encode_batch(ts, thread, events): a batch frame's bytes."},
    {"glob_match", native_glob_match, METH_VARARGS, "glob_match(pattern, text): the filters' matcher."},
    {NULL, NULL, 0, NULL},
};

/*
 * In the child, at the fork itself, before any of Python's at-fork
 * functions (see child_unsettled): the parent's stream is closed here, and
 * the writer the child seems to have is the parent's, not in it.
 */
static void
forked_child_at_fork(void)
{
    if (S.fd >= 0) {
        close(S.fd);
        S.fd = -1;
    }
    S.writing = 0;
    child_unsettled = 1;
}

static int
native_exec(PyObject *module)
{
    (void)module;
    const uint16_t probe = 1;
    if (*(const uint8_t *)&probe != 1) {
        PyErr_SetString(PyExc_ImportError, "the native collector needs a little-endian host");
        return -1;
    }
    if (PyType_Ready(&ThreadType) < 0 || PyType_Ready(&TrampolineType) < 0) {
        return -1;
    }
    static int at_fork_registered = 0;
    if (!at_fork_registered && pthread_atfork(NULL, NULL, forked_child_at_fork) == 0) {
        at_fork_registered = 1;
    }
    if (S.extra_index < 0) {
        S.extra_index = REQUEST_CODE_EXTRA_INDEX(free_code_info);
        if (S.extra_index < 0) {
            PyErr_SetString(PyExc_ImportError, "no code extra slot is left");
            return -1;
        }
    }
    return 0;
}

static PyModuleDef_Slot native_slots[] = {
    {Py_mod_exec, native_exec},
#if PY_3_12
    /* One set of globals: one interpreter. */
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED},
#endif
    {0, NULL},
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_panopticon_native",
    .m_doc = "Panopticon's native collector (see collector.py).",
    .m_size = 0,
    .m_methods = native_methods,
    .m_slots = native_slots,
};

PyMODINIT_FUNC
PyInit__panopticon_native(void)
{
    return PyModuleDef_Init(&native_module);
}
