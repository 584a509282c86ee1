/* Command-line pieces both programs use: "--name VALUE" and "--name=VALUE" options.
 * Pure functions; nothing here prints. */
#ifndef APP_CLI_H
#define APP_CLI_H

/* 1 when arg is the option name, alone or as "name=...". */
int app_opt_is(const char *arg, const char *name);

/* The value of the option argv[*i]: after its '=', else the next argument (then *i moves on to
 * it). 0 with *val set, or -1 when the value is missing. */
int app_opt_value(int argc, char **argv, int *i, const char **val);

#endif
