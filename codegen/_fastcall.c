/* The call path of a compiled graph's native entry, in C.

   A `Plan` holds everything one call of a graph's native entry needs for one set of input
   shapes: the argument table (with its own arena), where each input's and each output's
   address goes in it, the inputs' expected dtypes and shapes, the outputs' shapes, the worker
   pool and the status words of gathers. `plan.run(arrays)` checks that `arrays` (a list or
   tuple) are C-contiguous numpy arrays of exactly the expected dtypes and shapes, allocates the
   outputs, writes their addresses, runs the entry with the GIL released and returns the graph's
   outputs. Anything else returns None and the caller takes the Python path (codegen.plan
   NativeRun.run), which binds shapes, converts, and raises the errors: this path never raises
   for bad input, it only declines. It also declines while another thread is inside the same
   plan, when the worker pool is busy, after a fork, and when a gather's index was out of range
   (the Python path runs the graph again and raises the IndexError).

   It exists because the Python path costs 4-6 us a call (argument table, output allocation,
   ctypes), as much as a 64 x 64 matmul; this one costs well under a microsecond. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_22_API_VERSION
#include <numpy/arrayobject.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

typedef void (*entry_fn)(int64_t *table, int64_t state, int64_t dispatch);

static long fork_generation = 0; /* bumped in a forked child: plans from the parent decline */

static void forked_child(void) { fork_generation++; }

typedef struct {
    int type_num;
    int ndim;
    npy_intp dims[NPY_MAXDIMS];
    Py_ssize_t count; /* table positions */
    Py_ssize_t *positions;
} Slot;

typedef struct {
    Py_ssize_t buffer; /* output buffer index */
    int reshape;       /* 1: the graph output is the buffer in another shape */
    int ndim;
    npy_intp dims[NPY_MAXDIMS];
} Output;

typedef struct {
    PyObject_HEAD
    entry_fn entry;
    int64_t *table;
    int64_t state, dispatch;
    PyObject *lock; /* the pool's lock (acquired without blocking), or NULL */
    int64_t *status;
    Py_ssize_t nstatus;
    Py_ssize_t ninputs, nbuffers, noutputs;
    Slot *inputs, *buffers;
    Output *outputs;
    PyObject **fresh; /* the output buffers of the call in progress */
    PyObject *keep; /* the objects owning table, arena and status words */
    long generation;
    int busy;
} Plan;

static void free_slots(Slot *slots, Py_ssize_t n) {
    if (slots == NULL) return;
    for (Py_ssize_t i = 0; i < n; i++) PyMem_Free(slots[i].positions);
    PyMem_Free(slots);
}

static void Plan_dealloc(Plan *self) {
    free_slots(self->inputs, self->ninputs);
    free_slots(self->buffers, self->nbuffers);
    PyMem_Free(self->outputs);
    PyMem_Free(self->fresh);
    Py_XDECREF(self->lock);
    Py_XDECREF(self->keep);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* A shape (a sequence of ints) into ndim/dims; -1 with an exception on error. */
static int read_shape(PyObject *shape, int *ndim, npy_intp *dims) {
    PyObject *seq = PySequence_Fast(shape, "a shape must be a sequence of ints");
    if (seq == NULL) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n > NPY_MAXDIMS) {
        Py_DECREF(seq);
        PyErr_Format(PyExc_ValueError, "a shape has %zd dimensions, at most %d are possible", n, NPY_MAXDIMS);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        dims[i] = PyLong_AsSsize_t(PySequence_Fast_GET_ITEM(seq, i));
        if (dims[i] == -1 && PyErr_Occurred()) {
            Py_DECREF(seq);
            return -1;
        }
    }
    *ndim = (int)n;
    Py_DECREF(seq);
    return 0;
}

/* (positions, shape, dtype) triples into slots; -1 with an exception on error. */
static int read_slots(PyObject *specs, Slot **slots, Py_ssize_t *count) {
    PyObject *seq = PySequence_Fast(specs, "slots must be a sequence of (positions, shape, dtype)");
    if (seq == NULL) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    *slots = PyMem_Calloc(n ? n : 1, sizeof(Slot));
    *count = n;
    if (*slots == NULL) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *positions, *shape, *dtype;
        PyArray_Descr *descr = NULL;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "OOO", &positions, &shape, &dtype) ||
            !PyArray_DescrConverter(dtype, &descr) || read_shape(shape, &(*slots)[i].ndim, (*slots)[i].dims) < 0) {
            Py_XDECREF(descr);
            Py_DECREF(seq);
            return -1;
        }
        (*slots)[i].type_num = descr->type_num;
        Py_DECREF(descr);
        PyObject *where = PySequence_Fast(positions, "positions must be a sequence of ints");
        if (where == NULL) {
            Py_DECREF(seq);
            return -1;
        }
        Py_ssize_t m = PySequence_Fast_GET_SIZE(where);
        (*slots)[i].positions = PyMem_Calloc(m ? m : 1, sizeof(Py_ssize_t));
        (*slots)[i].count = m;
        if ((*slots)[i].positions == NULL) {
            Py_DECREF(where);
            Py_DECREF(seq);
            PyErr_NoMemory();
            return -1;
        }
        for (Py_ssize_t j = 0; j < m; j++) {
            Py_ssize_t p = PyLong_AsSsize_t(PySequence_Fast_GET_ITEM(where, j));
            if (p == -1 && PyErr_Occurred()) {
                Py_DECREF(where);
                Py_DECREF(seq);
                return -1;
            }
            (*slots)[i].positions[j] = p;
        }
        Py_DECREF(where);
    }
    Py_DECREF(seq);
    return 0;
}

static int check_positions(Slot *slots, Py_ssize_t n, Py_ssize_t size) {
    for (Py_ssize_t i = 0; i < n; i++)
        for (Py_ssize_t j = 0; j < slots[i].count; j++)
            if (slots[i].positions[j] < 0 || slots[i].positions[j] >= size) {
                PyErr_Format(PyExc_ValueError, "table position %zd is outside the table of %zd words",
                             slots[i].positions[j], size);
                return -1;
            }
    return 0;
}

/* Plan(entry, table, state, dispatch, lock, status, inputs, buffers, outputs, keep)
   entry: the native entry's address; table: a writable C-contiguous int64 array (the argument
   table, arena addresses filled in); state, dispatch: the worker pool's (0 when not parallel);
   lock: the pool's lock or None; status: an int64 array of status words or None; inputs and
   buffers: (table positions, shape, dtype) per graph input and per output buffer; outputs: per
   graph output, (output buffer index, shape); keep: anything that must outlive the plan. */
static PyObject *Plan_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    unsigned long long entry;
    long long state, dispatch;
    PyObject *table, *lock, *status, *inputs, *buffers, *outputs, *keep;
    if (!PyArg_ParseTuple(args, "KOLLOOOOOO", &entry, &table, &state, &dispatch, &lock, &status, &inputs,
                          &buffers, &outputs, &keep))
        return NULL;
    if (!PyArray_Check(table) || PyArray_TYPE((PyArrayObject *)table) != NPY_INT64 ||
        !PyArray_ISCARRAY((PyArrayObject *)table)) {
        PyErr_SetString(PyExc_TypeError, "Plan: the table must be a writable C-contiguous int64 array");
        return NULL;
    }
    if (status != Py_None && (!PyArray_Check(status) || PyArray_TYPE((PyArrayObject *)status) != NPY_INT64 ||
                              !PyArray_ISCARRAY((PyArrayObject *)status))) {
        PyErr_SetString(PyExc_TypeError, "Plan: status words must be a writable C-contiguous int64 array or None");
        return NULL;
    }
    Plan *self = (Plan *)type->tp_alloc(type, 0);
    if (self == NULL) return NULL;
    self->entry = (entry_fn)(uintptr_t)entry;
    self->table = PyArray_DATA((PyArrayObject *)table);
    self->state = state;
    self->dispatch = dispatch;
    self->generation = fork_generation;
    if (lock != Py_None) {
        Py_INCREF(lock);
        self->lock = lock;
    }
    if (status != Py_None) {
        self->status = PyArray_DATA((PyArrayObject *)status);
        self->nstatus = PyArray_SIZE((PyArrayObject *)status);
    }
    self->keep = Py_BuildValue("(OOO)", keep, table, status);
    Py_ssize_t size = PyArray_SIZE((PyArrayObject *)table);
    if (self->keep == NULL || read_slots(inputs, &self->inputs, &self->ninputs) < 0 ||
        read_slots(buffers, &self->buffers, &self->nbuffers) < 0 ||
        check_positions(self->inputs, self->ninputs, size) < 0 ||
        check_positions(self->buffers, self->nbuffers, size) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    PyObject *seq = PySequence_Fast(outputs, "outputs must be a sequence of (buffer, shape)");
    if (seq == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    self->noutputs = PySequence_Fast_GET_SIZE(seq);
    self->outputs = PyMem_Calloc(self->noutputs ? self->noutputs : 1, sizeof(Output));
    if (self->outputs == NULL) {
        Py_DECREF(seq);
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < self->noutputs; i++) {
        Output *o = &self->outputs[i];
        PyObject *shape;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "nO", &o->buffer, &shape) ||
            read_shape(shape, &o->ndim, o->dims) < 0) {
            Py_DECREF(seq);
            Py_DECREF(self);
            return NULL;
        }
        if (o->buffer < 0 || o->buffer >= self->nbuffers) {
            PyErr_Format(PyExc_ValueError, "output %zd names buffer %zd of %zd", i, o->buffer, self->nbuffers);
            Py_DECREF(seq);
            Py_DECREF(self);
            return NULL;
        }
        Slot *b = &self->buffers[o->buffer];
        o->reshape = o->ndim != b->ndim || memcmp(o->dims, b->dims, o->ndim * sizeof(npy_intp)) != 0;
    }
    Py_DECREF(seq);
    self->fresh = PyMem_Calloc(self->nbuffers ? self->nbuffers : 1, sizeof(PyObject *));
    if (self->fresh == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    return (PyObject *)self;
}

static int matches(PyObject *object, const Slot *slot) {
    if (!PyArray_Check(object)) return 0;
    PyArrayObject *a = (PyArrayObject *)object;
    if (PyArray_TYPE(a) != slot->type_num || !PyArray_ISNOTSWAPPED(a) || !PyArray_IS_C_CONTIGUOUS(a) ||
        PyArray_NDIM(a) != slot->ndim)
        return 0;
    const npy_intp *dims = PyArray_DIMS(a);
    for (int d = 0; d < slot->ndim; d++)
        if (dims[d] != slot->dims[d]) return 0;
    return 1;
}

static PyObject *Plan_run(Plan *self, PyObject *arrays) {
    PyObject **items;
    Py_ssize_t n;
    if (PyList_CheckExact(arrays)) {
        items = PySequence_Fast_ITEMS(arrays);
        n = PyList_GET_SIZE(arrays);
    } else if (PyTuple_CheckExact(arrays)) {
        items = PySequence_Fast_ITEMS(arrays);
        n = PyTuple_GET_SIZE(arrays);
    } else {
        Py_RETURN_NONE;
    }
    if (n != self->ninputs || self->busy || self->generation != fork_generation) Py_RETURN_NONE;
    for (Py_ssize_t i = 0; i < n; i++)
        if (!matches(items[i], &self->inputs[i])) Py_RETURN_NONE;
    PyObject **buffers = self->fresh; /* (one call at a time: busy is set before the GIL is released) */
    for (Py_ssize_t i = 0; i < self->nbuffers; i++) {
        Slot *b = &self->buffers[i];
        buffers[i] = PyArray_SimpleNew(b->ndim, b->dims, b->type_num);
        if (buffers[i] == NULL) {
            for (Py_ssize_t j = 0; j < i; j++) Py_DECREF(buffers[j]);
            return NULL;
        }
        int64_t address = (int64_t)(intptr_t)PyArray_DATA((PyArrayObject *)buffers[i]);
        for (Py_ssize_t j = 0; j < b->count; j++) self->table[b->positions[j]] = address;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t address = (int64_t)(intptr_t)PyArray_DATA((PyArrayObject *)items[i]);
        Slot *s = &self->inputs[i];
        for (Py_ssize_t j = 0; j < s->count; j++) self->table[s->positions[j]] = address;
    }
    PyObject *result = NULL;
    int locked = 0, declined = 0;
    if (self->lock != NULL) {
        PyObject *got = PyObject_CallMethod(self->lock, "acquire", "O", Py_False);
        if (got == NULL) goto done;
        declined = got != Py_True;
        Py_DECREF(got);
        if (declined) goto done;
        locked = 1;
    }
    if (self->nstatus) memset(self->status, 0, self->nstatus * sizeof(int64_t));
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    self->entry(self->table, self->state, self->dispatch);
    Py_END_ALLOW_THREADS
    self->busy = 0;
    if (locked) {
        PyObject *released = PyObject_CallMethod(self->lock, "release", NULL);
        if (released == NULL) goto done;
        Py_DECREF(released);
    }
    for (Py_ssize_t i = 0; i < self->nstatus; i++)
        if (self->status[i]) {
            declined = 1; /* an index out of range: the Python path runs it again and raises */
            goto done;
        }
    result = PyList_New(self->noutputs);
    if (result == NULL) goto done;
    for (Py_ssize_t i = 0; i < self->noutputs; i++) {
        Output *o = &self->outputs[i];
        PyObject *out = buffers[o->buffer];
        if (o->reshape) {
            PyArray_Dims shape = {o->dims, o->ndim};
            out = PyArray_Newshape((PyArrayObject *)out, &shape, NPY_CORDER);
            if (out == NULL) {
                Py_CLEAR(result);
                goto done;
            }
        } else {
            Py_INCREF(out);
        }
        PyList_SET_ITEM(result, i, out);
    }
done:
    for (Py_ssize_t i = 0; i < self->nbuffers; i++) Py_DECREF(buffers[i]);
    if (declined && !PyErr_Occurred()) Py_RETURN_NONE;
    return result;
}

static PyMethodDef Plan_methods[] = {
    {"run", (PyCFunction)Plan_run, METH_O,
     "run(arrays) -> list of outputs, or None where these arrays need the Python path"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject PlanType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "codegen._fastcall.Plan",
    .tp_basicsize = sizeof(Plan),
    .tp_dealloc = (destructor)Plan_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One set of input shapes' call of a graph's native entry (see the module's source).",
    .tp_methods = Plan_methods,
    .tp_new = Plan_new,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "codegen._fastcall", "The C call path of compiled graphs' native entries.", -1,
};

PyMODINIT_FUNC PyInit__fastcall(void) {
    import_array();
    if (PyType_Ready(&PlanType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Py_INCREF(&PlanType);
    if (PyModule_AddObject(m, "Plan", (PyObject *)&PlanType) < 0) {
        Py_DECREF(&PlanType);
        Py_DECREF(m);
        return NULL;
    }
    pthread_atfork(NULL, NULL, forked_child);
    return m;
}
