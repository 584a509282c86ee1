/* Command-line pieces both programs use (see cli.h). */
#include <string.h>

#include "cli.h"

int app_opt_is(const char *arg, const char *name)
{
    size_t n = strlen(name);
    return strncmp(arg, name, n) == 0 && (arg[n] == '\0' || arg[n] == '=');
}

int app_opt_value(int argc, char **argv, int *i, const char **val)
{
    const char *eq = strchr(argv[*i], '=');
    if (eq) {
        *val = eq + 1;
        return 0;
    }
    if (*i + 1 >= argc)
        return -1;
    *val = argv[++*i];
    return 0;
}
