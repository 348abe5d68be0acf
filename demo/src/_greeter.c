/* The demo extension module: calls into libgreet. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdio.h>

int greet(char *buf, int size, const char *name);

static PyObject *hello(PyObject *self, PyObject *args)
{
    const char *name;
    char who[128], buf[256];
    (void)self;
    if (!PyArg_ParseTuple(args, "s", &name))
        return NULL;
    /* A libc call: an extension links libc, which tells a repair glibc from musl, also under
       build flags with --as-needed (Python 3.9's here), where one calling none would not. */
    snprintf(who, sizeof(who), "%s", name);
    greet(buf, (int)sizeof(buf), who);
    return PyUnicode_FromString(buf);
}

static PyMethodDef methods[] = {
    {"hello", hello, METH_VARARGS, "Greet someone through libgreet."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_greeter", NULL, -1, methods};

PyMODINIT_FUNC PyInit__greeter(void) { return PyModule_Create(&module); }
