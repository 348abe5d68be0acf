/* libgreet: a private shared library, the kind of dependency a repair must graft. */
#include <stdio.h>

int greet(char *buf, int size, const char *name)
{
    return snprintf(buf, (size_t)size, "hello, %s, from libgreet", name);
}
