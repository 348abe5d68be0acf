/* The demo extension module: calls into libgreet. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

int greet(char *buf, int size, const char *name);

static PyObject *hello(PyObject *self, PyObject *args)
{
    const char *name;
    char buf[256];
    (void)self;
    if (!PyArg_ParseTuple(args, "s", &name))
        return NULL;
    greet(buf, (int)sizeof(buf), name);
    return PyUnicode_FromString(buf);
}

static PyMethodDef methods[] = {
    {"hello", hello, METH_VARARGS, "Greet someone through libgreet."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_greeter", NULL, -1, methods};

PyMODINIT_FUNC PyInit__greeter(void) { return PyModule_Create(&module); }
